/**
 * A tensor carried as its new values at b bits (kind n, codec l, later within format v6):
 *  - lowbit offers it beside the change's codes, and a retrained tensor (its change as large as
 *    its weights) takes it: less error at the same budget than without the option;
 *  - a fine-tune's small changes never take it;
 *  - the device ends at the builder's weights, the same inputs give the same bytes, and a payload
 *    that fails after a kind-n patch leaves the model byte for byte as it was;
 *  - the distilled lowbit parameterization trains such a tensor from +0, and writes kind n again.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodePayload, type DensePatch } from '../src/core/format.ts';
import { packPayload, wireOf } from '../src/core/encode.ts';
import { TargetMismatchError } from '../src/core/errors.ts';
import { getHasher } from '../src/core/hasher.ts';
import { MemoryWeightStore } from '../src/core/weight-store.ts';
import { applyPayload } from '../src/apply/apply.ts';
import { storedModelBytes } from '../src/diff/build.ts';
import { lowbitDiff } from '../src/lowbit-diff/encoder.ts';
import { LowBitScales } from '../src/lowbit-diff/trainer.ts';
import { seeded } from './helpers/graph-model.ts';
import { sameBytes, snapshot } from './helpers/models.ts';

/** Two tensors: `retrained/kernel` replaced by other weights of the same spread, `tuned/kernel` moved by 1%. */
function pair(): { base: MemoryWeightStore; target: MemoryWeightStore } {
  const r = seeded(11);
  const a = new Float32Array(48 * 32).map(() => r());
  const b = new Float32Array(32 * 16).map(() => r());
  // Retrained from scratch: new weights of the same spread, unrelated to the old (a change about
  // 1.4 times as large as the weights, as Silero VAD v6's first convolution's).
  const a2 = a.map(() => r());
  const b2 = b.map((w) => w + 0.01 * r());
  const base = new MemoryWeightStore({ 'retrained/kernel': { shape: [48, 32], data: a }, 'tuned/kernel': { shape: [32, 16], data: b } });
  const target = new MemoryWeightStore({ 'retrained/kernel': { shape: [48, 32], data: a2 }, 'tuned/kernel': { shape: [32, 16], data: b2 } });
  return { base, target };
}

const copy = (s: MemoryWeightStore) => new MemoryWeightStore(Object.fromEntries(s.list().map((t) => [t.name, { shape: t.shape, data: s.values(t.name).slice() }])));

test('lowbit carries a retrained tensor as its new values (kind n), closer than its change at the same bytes; a fine-tuned one as its change', async () => {
  const hasher = await getHasher();
  const { base, target } = pair();
  const budgetBytes = Math.floor(0.12 * storedModelBytes(base));
  const res = lowbitDiff(hasher, base, target, { budgetBytes, lowRank: false, outliers: false });
  const without = lowbitDiff(hasher, base, target, { budgetBytes, lowRank: false, outliers: false, newValues: false });
  assert.ok(res.bytes.length <= budgetBytes && without.bytes.length <= budgetBytes);
  const by = new Map(res.allocation.map((a) => [a.name, a]));
  assert.equal(by.get('retrained/kernel')?.newValues, true, JSON.stringify(res.allocation));
  assert.equal(by.get('tuned/kernel')?.newValues, undefined, JSON.stringify(res.allocation));
  assert.ok(res.squaredError < 0.8 * without.squaredError, `squared error ${res.squaredError} with new values, ${without.squaredError} without`);
  // On the wire: kind n for the retrained tensor, a dense delta for the other.
  const patches = decodePayload(res.bytes).patches as DensePatch[];
  assert.deepEqual(patches.map((p) => [p.name, p.kind, p.replace ?? false]).sort(), [['retrained/kernel', 'dense', true], ['tuned/kernel', 'dense', false]]);
  assert.deepEqual(packPayload(res.payload.header, patches.map(wireOf)), res.bytes);
  // The device ends at the builder's weights; the same inputs give the same bytes.
  const device = copy(base);
  await applyPayload(device, res.bytes, { hasher });
  for (const [name, values] of res.targetValues) assert.deepEqual(device.values(name), values, name);
  assert.deepEqual(lowbitDiff(hasher, base, target, { budgetBytes, lowRank: false, outliers: false }).bytes, res.bytes);
  // The new values' patch ignores what the tensor held: only its base digest ties it to v1.
  const retrained = patches.find((p) => p.name === 'retrained/kernel') as DensePatch;
  assert.deepEqual(device.values('retrained/kernel'), retrained.values.map((x) => x + 0));
});

test('a payload that fails after a kind-n patch leaves the model byte for byte as it was', async () => {
  const hasher = await getHasher();
  const { base, target } = pair();
  const res = lowbitDiff(hasher, base, target, { budgetBytes: Math.floor(0.12 * storedModelBytes(base)), lowRank: false, outliers: false });
  // The second tensor's after-digest broken: it is patched after the new values were written.
  const wires = decodePayload(res.bytes).patches.map(wireOf).map((w) => (w.t === 'tuned/kernel' ? { ...w, a: new Uint8Array(8) } : w));
  assert.deepEqual(wires.map((w) => w.k), ['n', 'd']);
  const device = copy(base);
  const before = snapshot(device);
  await assert.rejects(applyPayload(device, packPayload(res.payload.header, wires), { hasher }), TargetMismatchError);
  assert.ok(sameBytes(before, snapshot(device)));
});

test('distilled lowbit trains a tensor carried as its new values from +0, and writes kind n again', async () => {
  const hasher = await getHasher();
  const { base, target } = pair();
  const res = lowbitDiff(hasher, base, target, { budgetBytes: Math.floor(0.12 * storedModelBytes(base)), lowRank: false, outliers: false });
  const patches = decodePayload(res.bytes).patches;
  const shapes = new Map(base.list().map((t) => [t.name, { shape: [...t.shape], values: base.values(t.name) }]));
  const deltas = new Map(base.list().map((t) => [t.name, Float32Array.from(target.values(t.name), (x, k) => x - base.values(t.name)[k])]));
  const param = new LowBitScales(shapes, patches, deltas);
  try {
    // Untrained, the weights it runs with are the payload's: the new values, not base + values.
    const w = param.effective('retrained/kernel');
    assert.deepEqual(w.dataSync(), res.targetValues.get('retrained/kernel'));
    w.dispose();
    const specs = param.specs();
    const spec = specs.find((s) => s.name === 'retrained/kernel');
    assert.ok(spec && spec.kind === 'dense' && spec.codec === 'l' && spec.replace === true);
  } finally {
    param.dispose();
  }
});
