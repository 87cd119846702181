/**
 * A `.safetensors` file through `fingerprint` and `verify --model`, which read it (they said "not
 * a model JSON file (its name does not end in .json)", though `ndiff diff` makes payloads for such
 * files and names them by that fingerprint). `apply`, `update` and `release add` take one as they
 * take `.onnx` and `.tflite` files: test/safetensors-apply.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BaseMismatchError, UsageError } from '../src/core/errors.ts';
import { writeSafetensorsFile } from '../src/io/safetensors/files.ts';
import { diff } from '../src/front/diff.ts';
import { fingerprint } from '../src/front/fingerprint.ts';
import { verify } from '../src/front/verify.ts';
import { runNdiff } from './helpers/ndiff-run.ts';

const root = mkdtempSync(path.join(tmpdir(), 'nd-safetensors-front-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

const ndiff = (argv: string[]) => runNdiff(...argv);

const v1 = path.join(root, 'v1.safetensors');
const v2 = path.join(root, 'v2.safetensors');
const payloadFile = path.join(root, 'v1-v2.ndiff');
const w = new Float32Array(256).map((_, i) => Math.sin(i));
await writeSafetensorsFile(v1, { 'fc.weight': { shape: [16, 16], data: w }, 'fc.bias': { shape: [4], data: new Float32Array([0.1, 0.2, 0.3, 0.4]) } });
await writeSafetensorsFile(v2, { 'fc.weight': { shape: [16, 16], data: w.map((v, i) => v + (i % 9 === 0 ? 0.25 : 0)) }, 'fc.bias': { shape: [4], data: new Float32Array([0.1, 0.25, 0.3, 0.4]) } });
const made = await diff({ base: v1, target: v2, budget: 'all', modelId: 'st', out: payloadFile });

test('fingerprint reads a .safetensors file: the fingerprint its payloads name, the same from the command', async () => {
  const base = await fingerprint({ model: v1 });
  assert.equal(base.fingerprint, made.baseFingerprint);
  assert.equal((await fingerprint({ model: v2 })).fingerprint, made.targetFingerprint);
  assert.equal(base.unfinishedUpdate, undefined);
  const tensors = (await fingerprint({ model: v1, tensors: true })).tensors ?? [];
  assert.deepEqual(tensors.map((t) => t.name).sort(), ['fc.bias', 'fc.weight']);
  const cli = await ndiff(['fingerprint', v1]);
  assert.equal(cli.code, 0, cli.err);
  assert.equal(cli.out.trim(), made.baseFingerprint);
  await assert.rejects(fingerprint({ model: v1, record: true }), (e: unknown) => e instanceof UsageError && /record \(--record\) is for TF\.js model folders: an \.onnx, \.tflite or \.safetensors file/.test(e.message));
});

test('verify --model checks a payload against a .safetensors file in memory, writing nothing', async () => {
  const before = readFileSync(v1);
  const ok = await verify({ payload: payloadFile, model: v1 });
  assert.equal(ok.model?.status, 'applies');
  assert.ok(readFileSync(v1).equals(before), 'the file is not written');
  assert.equal((await verify({ payload: payloadFile, model: v2 })).model?.status, 'already-applied');
  const other = path.join(root, 'other.safetensors');
  await writeSafetensorsFile(other, { 'fc.weight': { shape: [16, 16], data: w.map((v) => -v) }, 'fc.bias': { shape: [4], data: new Float32Array(4) } });
  await assert.rejects(verify({ payload: payloadFile, model: other }), BaseMismatchError);
  assert.equal((await ndiff(['verify', payloadFile, '--model', v1])).code, 0);
  assert.equal((await ndiff(['verify', payloadFile, '--model', other])).code, 4);
});
