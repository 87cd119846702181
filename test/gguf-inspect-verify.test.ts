/**
 * `ndiff inspect` and `ndiff verify` on GGUF block payloads (format v8), and the library's
 * `inspect()` and `verify()`: the header, the parts and the chunks shown; the signature and every
 * field checked as the device's decoder checks them; with `--model`, the apply's dry run against
 * the file's bytes (a wrong base, a tampered payload refused), the model untouched.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BaseMismatchError, PayloadFormatError, SignatureError } from '../src/core/errors.ts';
import { inspect } from '../src/front/inspect.ts';
import { verify } from '../src/front/verify.ts';
import { ggufFixture, perturbGguf } from './helpers/gguf-pairs.ts';
import { runNdiff } from './helpers/ndiff-run.ts';
import { generateKeyPair, signPayload } from '../src/sign/node-keys.ts';

const dir = mkdtempSync(join(tmpdir(), 'nd-gguf-inspect-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const [a, b, device, other, p] = ['v1.gguf', 'v2.gguf', 'device.gguf', 'other.gguf', 'p.ndiff'].map((x) => join(dir, x));
const v1 = ggufFixture('tiny-llama-q5_k_m.gguf');
const v2 = perturbGguf(v1, { blockShare: 0.1, seed: 8 });
writeFileSync(a, v1);
writeFileSync(b, v2);
writeFileSync(device, v1);
writeFileSync(other, perturbGguf(v1, { blockShare: 0.1, seed: 9 }));
const made = await runNdiff('diff', '--base', a, '--target', b, '--budget', 'all', '--model-id', 'tiny', '--sequence', '3', '--out', p, '--json');
assert.equal(made.code, 0, made.err);
const report = JSON.parse(made.out) as { baseFingerprint: string; targetFingerprint: string; bytes: number };
const same = (file: string, bytes: Uint8Array) => Buffer.compare(readFileSync(file), bytes) === 0;

test('inspect shows a GGUF payload\'s header, parts and chunks; the library returns the same fields', async () => {
  const r = await runNdiff('inspect', p);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /p\.ndiff: neural-diff GGUF block payload v8, .* \(\d+ bytes\)/);
  assert.match(r.out, new RegExp(`base +${report.baseFingerprint}`));
  assert.match(r.out, new RegExp(`target +${report.targetFingerprint}`));
  assert.match(r.out, /model +"?tiny"?/);
  assert.match(r.out, /sequence +3/);
  assert.match(r.out, /model file +1 file, .* \(\d+ bytes\)/);
  const lib = await inspect(p);
  assert.ok(lib.gguf);
  assert.equal(lib.bytes, report.bytes);
  assert.equal(lib.parts[0].length, v1.length);
  assert.ok(lib.chunks >= 1 && lib.runs >= lib.chunks && lib.byteDeltaChunks + lib.xorChunks === lib.chunks);
  // The bytes the payload rewrites are the bytes that differ between the two files, at most.
  let differ = 0;
  for (let i = 0; i < v1.length; i++) if (v1[i] !== v2[i]) differ++;
  assert.ok(lib.changedBytes >= differ && lib.changedBytes <= v1.length, `${lib.changedBytes} changed bytes against ${differ} that differ`);
  assert.match(r.out, new RegExp(`changes +${lib.changedBytes} bytes in ${lib.runs} ranges`));
});

test('verify checks a GGUF payload, and with --model dry-runs it against the file: applies, wrong base refused, the file untouched', async () => {
  const r = await runNdiff('verify', p, '--model', device);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /well-formed v8 GGUF block payload for model "tiny", sequence 3: \d+ chunks over 1 file/);
  assert.match(r.out, new RegExp(`applies cleanly to .*device\\.gguf in place .*: ${report.baseFingerprint} -> ${report.targetFingerprint}`));
  assert.ok(same(device, v1), 'nothing written');
  const wrong = await runNdiff('verify', p, '--model', other);
  assert.notEqual(wrong.code, 0);
  assert.match(wrong.err, /not the payload's base|payload targets base/);
  await assert.rejects(verify({ payload: p, model: other }), BaseMismatchError);
  const at = await runNdiff('verify', p, '--model', b);
  assert.equal(at.code, 0, at.err);
  assert.match(at.out, /is already at the target/);
  const onnx = await runNdiff('verify', p, '--model', join(dir, 'm.onnx'));
  assert.notEqual(onnx.code, 0);
  assert.match(onnx.err, /is not a \.gguf file/);
});

test('verify refuses a tampered GGUF payload and checks its signature', async () => {
  const bytes = readFileSync(p);
  const flipped = Uint8Array.from(bytes);
  flipped[flipped.length - 3] ^= 0x40;
  const bad = join(dir, 'flipped.ndiff');
  writeFileSync(bad, flipped);
  // A chunk's coded stream decodes against the model's bytes: checked with the model.
  await assert.rejects(verify({ payload: bad, model: device }), PayloadFormatError);
  assert.ok(same(device, v1));
  const keys = generateKeyPair();
  const signed = join(dir, 'p.signed.ndiff');
  writeFileSync(signed, signPayload(bytes, keys.privateKeyPem));
  const pub = join(dir, 'k.public.pem');
  writeFileSync(pub, keys.publicKeyPem);
  const ok = await runNdiff('verify', signed, '--public-key', pub, '--model', device);
  assert.equal(ok.code, 0, ok.err);
  assert.match(ok.out, /signature: valid/i);
  const shown = await runNdiff('inspect', signed);
  assert.equal(shown.code, 0, shown.err);
  assert.match(shown.out, /signed by +key id/);
  const otherKeys = generateKeyPair();
  const otherPub = join(dir, 'other.public.pem');
  writeFileSync(otherPub, otherKeys.publicKeyPem);
  await assert.rejects(verify({ payload: signed, publicKeys: [otherPub] }), SignatureError);
  await assert.rejects(verify({ payload: p, publicKeys: [pub] }), SignatureError, 'unsigned under a key: refused');
});
