/**
 * The TF.js model's frame in the fingerprint (docs/FORMAT.md, section 14): a graph change with
 * identical weights changes the fingerprint and is refused by the diff as a graph-only change; an
 * int32 tensor that changes is in the frame; the frame is the documented XXH64 (a fixed vector);
 * an apply keeps it; a payload made before the frame (weights-only fingerprint) is refused saying so.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { cp, readFile } from 'node:fs/promises';
import { getHasher } from '../src/core/hasher.ts';
import { BaseMismatchError, ModelMismatchError } from '../src/core/errors.ts';
import { combineDigests, fingerprintStore } from '../src/core/fingerprint.ts';
import { MemoryWeightStore } from '../src/core/weight-store.ts';
import { applyPayload } from '../src/apply/index.ts';
import { buildPayload } from '../src/diff/build.ts';
import { exactDiff } from '../src/diff/exact.ts';
import { topkDiff } from '../src/topk-diff/encoder.ts';
import { openTfjsModelDir, writeModelDir } from '../src/io/tfjs/index.ts';
import { tfjsFrameValues, TFJS_FRAME } from '../src/io/tfjs/frame.ts';
import { canonicalJson } from '../src/core/canonical-json.ts';
import { main } from '../cli/ndiff.ts';
import { applyToModelDir } from '../src/io/tfjs/folder-update.ts';
import { firstJsonDifference } from '../src/diff/json-difference.ts';
import { tempDir } from './helpers/dirs.ts';

const hasher = await getHasher();
const w = Float32Array.from({ length: 24 }, (_, i) => Math.fround(Math.cos(i) / 7));
const topology = (nodes: number) => ({ node: Array.from({ length: nodes }, (_, i) => ({ name: `n${i}`, op: i ? 'Relu' : 'Placeholder' })) });

async function model(dir: string, nodes: number, steps: Int32Array, weights = w): Promise<void> {
  await writeModelDir(dir, { format: 'graph-model', generatedBy: 'tests', modelTopology: topology(nodes), signature: { inputs: { x: { name: 'n0' } } } }, { w: { shape: [4, 6], data: weights }, steps: { shape: [2], data: steps } });
}

test('canonical JSON and the frame of a fixed model.json (a vector for other implementations)', () => {
  assert.equal(canonicalJson({ b: [1, 2.5, -0, 1e21, 'é\n'], a: { y: null, x: true } }), '{"a":{"x":true,"y":null},"b":[1,2.5,0,1e+21,"é\\n"]}');
  const json = { format: 'graph-model', modelTopology: { node: [{ name: 'n0', op: 'Placeholder' }] }, weightsManifest: [{ paths: ['g.bin'], weights: [{ name: 'w', shape: [2], dtype: 'float32' as const }, { name: 'k', shape: [1], dtype: 'int32' as const }] }] };
  const frame = tfjsFrameValues(json, () => Uint8Array.of(7, 0, 0, 0));
  const hex = Array.from(frame, (b) => b.toString(16).padStart(2, '0')).join('');
  // XXH64 (seed 0) of the canonical JSON below followed by the int32 entry's bytes 07 00 00 00,
  // computed here by xxhash-wasm (the frame uses the pure TypeScript XXH64), and pinned.
  const text = new TextEncoder().encode('{"format":"graph-model","modelTopology":{"node":[{"name":"n0","op":"Placeholder"}]},"weightsManifest":[{"dtype":"int32","name":"k","shape":[1]}]}');
  const input = new Uint8Array(text.length + 4);
  input.set(text);
  input.set([7, 0, 0, 0], text.length);
  assert.equal(hex, hasher.h64(input, 0n).toString(16).padStart(16, '0'));
  assert.equal(hex, FRAME_VECTOR);
});

test('a graph change with the same weights: another fingerprint, refused as graph-only; an int32 change too', async () => {
  const dir = await tempDir('nd-frame-');
  await model(join(dir, 'v1'), 3, Int32Array.of(1, 2));
  await model(join(dir, 'v2'), 4, Int32Array.of(1, 2)); // one more node
  await model(join(dir, 'v3'), 3, Int32Array.of(1, 3)); // an int32 constant changed
  const [v1, v2, v3] = await Promise.all(['v1', 'v2', 'v3'].map((v) => openTfjsModelDir(join(dir, v))));
  assert.ok(v1.list().some((e) => e.name === TFJS_FRAME && e.patchable === false));
  const fp = (s: typeof v1) => fingerprintStore(hasher, s).fingerprint;
  assert.notEqual(fp(v1), fp(v2), 'the graph is in the fingerprint');
  assert.notEqual(fp(v1), fp(v3), 'the int32 tensor is in the fingerprint');
  for (const target of [v2, v3]) {
    for (const run of [() => exactDiff(hasher, v1, target), () => topkDiff(hasher, v1, target, { budgetBytes: 1000 })]) {
      assert.throws(run, (e: unknown) => e instanceof ModelMismatchError && /the graph changed; the weights did not \(all 1 weight tensors are bit-identical\): ship the new model file/.test(e.message) && (e.details as { graphOnly: boolean }).graphOnly === true);
    }
  }
  // It says where model.json first differs (v2's extra node; v3's frame differs only in bytes).
  assert.throws(() => exactDiff(hasher, v1, v2), (e: unknown) => e instanceof ModelMismatchError && e.message.includes('(first difference in model.json: modelTopology.node[3]: (absent) -> {"name":"n3","op":"Relu"})'));
  assert.throws(() => exactDiff(hasher, v1, v3), (e: unknown) => e instanceof ModelMismatchError && !e.message.includes('first difference in model.json'));
  // No value payload joins them: the CLI writes a structural payload (format v7, FORMAT.md §17)
  // carrying the graph's change, and a device rebuilding v1 with it holds v2.
  const errs: string[] = [];
  const lines: string[] = [];
  assert.equal(await main(['diff', '--base', join(dir, 'v1'), '--target', join(dir, 'v2'), '--budget', 'all', '--model-id', 'pose', '--out', join(dir, 'p.ndiff'), '--json'], { out: (l) => lines.push(l), err: (l) => errs.push(l), progress: () => {} }), 0, errs.join('\n'));
  const doc = JSON.parse(lines.join('\n')) as { structural: boolean; graphChanged: boolean; keptChanged: number };
  assert.equal(doc.structural, true);
  assert.equal(doc.graphChanged, true);
  assert.equal(doc.keptChanged, 0);
  const device = join(dir, 'device');
  await cp(join(dir, 'v1'), device, { recursive: true });
  const applied = await applyToModelDir(device, new Uint8Array(await readFile(join(dir, 'p.ndiff'))), { state: null });
  assert.equal(applied.targetFingerprint, fp(v2));
  assert.equal(fingerprintStore(hasher, await openTfjsModelDir(device)).fingerprint, fp(v2));
  // Weights and graph both changed: counted.
  await model(join(dir, 'v4'), 4, Int32Array.of(1, 2), w.map((x) => x + 1));
  const v4 = await openTfjsModelDir(join(dir, 'v4'));
  assert.throws(() => exactDiff(hasher, v1, v4), /1 of 1 weight tensors changed as well/);
});

test('an apply keeps the frame; a payload made with a weights-only fingerprint is refused saying why', async () => {
  const dir = await tempDir('nd-frame-');
  await model(join(dir, 'v1'), 3, Int32Array.of(1, 2));
  await model(join(dir, 'v2'), 3, Int32Array.of(1, 2), w.map((x, i) => (i % 3 ? x : x * 2)));
  const [v1, v2] = await Promise.all(['v1', 'v2'].map((v) => openTfjsModelDir(join(dir, v))));
  const built = exactDiff(hasher, v1, v2);
  const res = await applyPayload(await openTfjsModelDir(join(dir, 'v1')), built.bytes, { hasher });
  assert.equal(res.targetFingerprint, fingerprintStore(hasher, await openTfjsModelDir(join(dir, 'v2'))).fingerprint);
  // The previous tool's fingerprint: the float tensors only.
  await model(join(dir, 'old'), 3, Int32Array.of(1, 2));
  const weightsOnly = new MemoryWeightStore({ w: { shape: [4, 6], data: w.slice() } });
  const legacy = buildPayload(hasher, weightsOnly, [{ kind: 'sparse', name: 'w', positions: Uint32Array.of(0), values: Float32Array.of(0.5), codec: 'f32' }], { method: 'topk' });
  assert.equal(legacy.payload.header.baseFingerprint, combineDigests(hasher, new Map([['w', fingerprintStore(hasher, weightsOnly).digests.get('w') as string]])));
  const before = await readFile(join(dir, 'old', 'model.json'));
  await assert.rejects(applyPayload(await openTfjsModelDir(join(dir, 'old')), legacy.bytes, { hasher }), (e: unknown) => e instanceof BaseMismatchError && /left the frame out/.test(e.message) && (e.details as { withoutFrame: boolean }).withoutFrame);
  assert.deepEqual(await readFile(join(dir, 'old', 'model.json')), before, 'untouched');
  // A folder whose weights are already that payload's target (applied before the frame existed):
  // refused the same way, not reported as applied, since its graph was never checked either.
  await model(join(dir, 'at-target'), 3, Int32Array.of(1, 2), Float32Array.from(legacy.targetValues.get('w') as Float32Array));
  const atTarget = await openTfjsModelDir(join(dir, 'at-target'));
  await assert.rejects(applyPayload(atTarget, legacy.bytes, { hasher }), (e: unknown) => e instanceof BaseMismatchError && /which is this model's fingerprint without its frame \(its weights are already that target\).*left the frame out/.test(e.message));
});

const FRAME_VECTOR = '7de80fe4a8d7534f';

test('firstJsonDifference: depth first, keys sorted, quoted where needed, values cut', () => {
  assert.equal(firstJsonDifference({ a: [1, { b: 2 }] }, { a: [1, { b: 2 }] }), undefined);
  assert.deepEqual(firstJsonDifference({ z: 1, a: { 'x.y': [1, 2] } }, { z: 2, a: { 'x.y': [1, 3] } }), { path: 'a["x.y"][1]', base: '2', target: '3' });
  assert.deepEqual(firstJsonDifference({ config: { name: 'sequential_1' } }, { config: { name: 'sequential_3' } }), { path: 'config.name', base: '"sequential_1"', target: '"sequential_3"' });
  assert.deepEqual(firstJsonDifference([1], [1, 'x'.repeat(100)]), { path: '[1]', base: '(absent)', target: `"${'x'.repeat(76)}...` });
});
