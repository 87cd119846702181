/**
 * `ndiff verify` and `ndiff inspect` on structural payloads (format v7, FORMAT.md §17): issue #61
 * found both refusing every v7 payload ("unsupported version 7"), valid ones included, though
 * `ndiff apply` takes them. They now read them with neural-diff/rebuild's checks: a valid payload
 * (bare or signed; `.onnx`, `.tflite` and a TF.js folder) is described and, with `--model`,
 * rebuilt in memory with nothing written; a malformed one is still refused with
 * neural-diff/rebuild's typed error (exit 3), saying what is wrong.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { main } from '../cli/ndiff.ts';
import { EXIT, type CliIO } from '../cli/common.ts';
import { structuralDiff, structuralDiffFiles } from '../src/diff/structural.ts';
import { getHasher } from '../src/core/hasher.ts';
import { readMsgpack } from '../src/core/msgpack-read.ts';
import { OnnxWeightStore } from '../src/io/onnx/store.ts';
import { TfliteWeightStore } from '../src/io/tflite/store.ts';
import { TFJS_REBUILD } from '../src/io/tfjs/folder-rebuild.ts';
import { generateKeyPair, signPayload } from '../src/sign/node-keys.ts';
import { Packr } from 'msgpackr';
import { structuralPair } from './helpers/structural-pairs.ts';

const hasher = await getHasher();

async function ndiff(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const results: Record<string, unknown>[] = [];
  const io: CliIO = { out: (l) => out.push(l), err: (l) => err.push(l), progress: (l) => err.push(l), result: (r) => results.push(r as Record<string, unknown>) };
  const code = await main(argv, io);
  return { code, out: out.join('\n'), err: err.join('\n'), result: results[0] };
}

/** Every file under `dir` with its bytes (what a dry run must leave as it was). */
async function snapshotDir(dir: string): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) files.set(path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name), Buffer.from(await readFile(path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name))).toString('hex'));
  }
  return files;
}

describe('ndiff verify and ndiff inspect read structural payloads (format v7)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nd-verify-v7-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  for (const format of ['onnx', 'tflite'] as const) {
    test(`${format}: a valid payload, bare and signed, is verified, inspected and rebuilt in memory; nothing written`, async () => {
      const pair = structuralPair(format, 7);
      const model = path.join(dir, `model.${format}`);
      await writeFile(model, pair.base);
      const built = structuralDiff(hasher, pair.base, pair.target, { kind: format, open: (b) => (format === 'onnx' ? new OnnxWeightStore(b) : new TfliteWeightStore(b)) }, { modelId: 'net', sequence: 2 });
      const payload = path.join(dir, `${format}.ndiff`);
      await writeFile(payload, built.bytes);
      const keys = generateKeyPair();
      const signed = path.join(dir, `${format}.signed.ndiff`);
      await writeFile(signed, signPayload(built.bytes, keys.privateKeyPem));
      const publicKey = path.join(dir, `${format}.public.pem`);
      await writeFile(publicKey, keys.publicKeyPem);
      const before = await snapshotDir(dir);

      const v = await ndiff('verify', payload);
      assert.equal(v.code, 0, v.err);
      assert.match(v.out, /well-formed v7 structural payload \((onnx|tflite)\) for model "net", sequence 2: a byte delta rebuilds a \d+-byte base into \d+ bytes, then \d+ patches \(v\d\)/);
      assert.equal(v.result?.structural, true);
      assert.equal(v.result?.intermediateFingerprint, Buffer.from((readMsgpack(built.bytes) as { if: Uint8Array }).if).toString('hex'));

      const withModel = await ndiff('verify', payload, '--model', model);
      assert.equal(withModel.code, 0, withModel.err);
      assert.match(withModel.out, /rebuilds .* cleanly \(in memory, nothing written\)/);
      const s = await ndiff('verify', signed, '--public-key', publicKey, '--model', model);
      assert.equal(s.code, 0, s.err);
      assert.match(s.out, new RegExp(`signature: valid, trusted key id ${keys.keyId}`));

      const i = await ndiff('inspect', signed);
      assert.equal(i.code, 0, i.err);
      assert.match(i.out, /neural-diff structural payload v7 \((onnx|tflite)\)/);
      assert.match(i.out, /rebuilt {4}[0-9a-f]{16} \(the intermediate file/);
      assert.match(i.out, new RegExp(`signed by  key id ${keys.keyId}`));
      assert.match(i.out, /tensor\s+kind\s+shape/);
      assert.deepEqual(await snapshotDir(dir), before, 'verify and inspect wrote nothing');
    });
  }

  test('a TF.js folder: verified with --model (its files listed), nothing written', async () => {
    const pair = structuralPair('tfjs', 11);
    const folder = path.join(dir, 'tfjs-model');
    await mkdir(folder, { recursive: true });
    for (const f of pair.baseFiles ?? []) await writeFile(path.join(folder, f.path), f.bytes);
    const built = structuralDiffFiles(hasher, pair.baseFiles ?? [], pair.targetFiles ?? [], TFJS_REBUILD, { modelId: 'net', sequence: 2 });
    const payload = path.join(dir, 'tfjs.ndiff');
    await writeFile(payload, built.bytes);
    const before = await snapshotDir(folder);
    const v = await ndiff('verify', payload, '--model', folder);
    assert.equal(v.code, 0, v.err);
    assert.match(v.out, /well-formed v7 structural payload \(tfjs, \d+ files\)/);
    assert.match(v.out, /rebuilds .* cleanly/);
    const i = await ndiff('inspect', payload);
    assert.equal(i.code, 0, i.err);
    assert.match(i.out, /file {7}model\.json \(\d+ bytes\)/);
    assert.deepEqual(await snapshotDir(folder), before);
  });

  test('malformed v7 payloads are still refused as payload errors (exit 3), saying what is wrong', async () => {
    const pair = structuralPair('onnx', 9);
    const model = path.join(dir, 'm.onnx');
    await writeFile(model, pair.base);
    const built = structuralDiff(hasher, pair.base, pair.target, { kind: 'onnx', open: (b) => new OnnxWeightStore(b) }, { modelId: 'net', sequence: 2 });
    const doc = readMsgpack(built.bytes) as Record<string, unknown>;
    const packr = new Packr({ useRecords: false, variableMapSize: true });
    const bad: [string, Record<string, unknown>, RegExp][] = [
      ['a value payload naming another sequence', { ...doc, sq: 3 }, /structural payload: its value payload "pv" names sequence 2, not 3/],
      ['no byte delta', Object.fromEntries(Object.entries(doc).filter(([k]) => k !== 'rb')), /"rb" must be binary/],
      ['an unknown file kind', { ...doc, fk: 'pt' }, /"fk" must be one of onnx, tflite, tfjs/],
      ['a byte delta cut short', { ...doc, rb: (doc.rb as Uint8Array).subarray(0, 1) }, /byte delta/],
    ];
    for (const [what, d, pattern] of bad) {
      const file = path.join(dir, 'bad.ndiff');
      await writeFile(file, packr.pack(d));
      for (const argv of [['verify', file], ['verify', file, '--model', model], ['inspect', file]]) {
        const r = await ndiff(...argv);
        assert.equal(r.code, EXIT.payload, `${what}, ${argv.join(' ')}: exit ${r.code}\n${r.err}`);
        assert.match(r.err, pattern, `${what}, ${argv.join(' ')}`);
      }
    }
  });
});
