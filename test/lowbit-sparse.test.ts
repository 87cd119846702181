/**
 * Codec l on sparse patches (format v6, later within it): top-k's values as 8- or 4-bit codes
 * with a scale per output channel (`ndiff diff --codec l8` / `l4`).
 *  - each value takes the scale of its position's channel, and what the builder decoded is what
 *    the device adds: the payload applied to a copy of the base ends at the builder's weights;
 *  - 4-bit codes keep more of a change than int8 on a tight budget, and 8-bit codes with a scale
 *    per output channel more than int8 with one scale a tensor where the budget reaches small channels;
 *  - the same inputs give the same bytes; a malformed scale count is refused with the model untouched.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodePayload, type SparsePatch } from '../src/core/format.ts';
import { packPayload, wireOf } from '../src/core/encode.ts';
import { lowBitScales } from '../src/core/lowbit.ts';
import { PayloadFormatError } from '../src/core/errors.ts';
import { getHasher } from '../src/core/hasher.ts';
import { MemoryWeightStore } from '../src/core/weight-store.ts';
import { applyPayload } from '../src/apply/apply.ts';
import { quantizeSparseLowBit } from '../src/lowbit-diff/encoder.ts';
import { topkDiff } from '../src/topk-diff/encoder.ts';
import { seeded } from './helpers/graph-model.ts';
import { sameBytes, snapshot } from './helpers/models.ts';

/** A [64, 32] kernel whose change in output channel j is spread^(j mod 4) times channel j - (j mod 4)'s, and a bias. */
function pair(spread: number): { base: MemoryWeightStore; target: MemoryWeightStore } {
  const r = seeded(7);
  const kernel = new Float32Array(64 * 32).map(() => r());
  const bias = new Float32Array(32).map(() => r() * 0.1);
  const k2 = kernel.map((w, i) => w + 0.001 * spread ** ((i % 32) % 4) * r());
  const b2 = bias.map((w) => w + 0.01 * r());
  const base = new MemoryWeightStore({ 'dense/kernel': { shape: [64, 32], data: kernel }, 'dense/bias': { shape: [32], data: bias } });
  const target = new MemoryWeightStore({ 'dense/kernel': { shape: [64, 32], data: k2 }, 'dense/bias': { shape: [32], data: b2 } });
  return { base, target };
}

test('quantizeSparseLowBit: a value takes the scale of its position, and decodes to code x scale exactly', () => {
  // Positions 1 and 7 in column 1 of a [2, 6] tensor, position 4 in column 4: a scale a column.
  const q = quantizeSparseLowBit(Float32Array.of(0.5, -3, 0.25), Uint32Array.of(1, 4, 7), 12, 4, 1, 6);
  const s = lowBitScales(q.lowbit);
  assert.equal(q.lowbit.scales.length, 6);
  // Column 1 holds 0.5 and 0.25: its scale is set by 0.5 (7 codes), not by column 4's -3.
  assert.ok(s[1] < 0.5 / 6 && s[4] > 3 / 8, `scales ${[...s]}`);
  for (const [k, pos] of [1, 4, 7].entries()) {
    const code = q.decoded[k] / s[pos % 6];
    assert.ok(Number.isInteger(code) && code >= -8 && code <= 7, `value ${k}: code ${code}`);
  }
  assert.ok(Math.abs(q.decoded[0] - 0.5) < 0.5 / 14 && Math.abs(q.decoded[1] + 3) < 3 / 14);
});

test('top-k --codec l8 / l4: the device ends where the builder said; 4 bits keep more of a change on a tight budget, per-channel 8 bits where small channels are kept', async () => {
  const hasher = await getHasher();
  for (const [codec, spread, budgetBytes] of [['l4', 4, 1000], ['l8', 16, 3000]] as const) {
    const { base, target } = pair(spread);
    const res = topkDiff(hasher, base, target, { budgetBytes, codec });
    assert.ok(res.bytes.length <= budgetBytes, `${res.bytes.length} bytes`);
    assert.equal(res.codec, 'l');
    assert.equal(res.payload.header.version, 6);
    const patches = decodePayload(res.bytes).patches as SparsePatch[];
    assert.ok(patches.every((p) => p.kind === 'sparse' && p.codec === 'l' && p.lowbit?.bits === (codec === 'l8' ? 8 : 4)));
    // Re-encoding the decoded patches gives the same bytes.
    assert.deepEqual(packPayload(res.payload.header, patches.map(wireOf)), res.bytes);
    // Applied on a copy of the base: exactly the builder's weights.
    const device = new MemoryWeightStore(Object.fromEntries(base.list().map((t) => [t.name, { shape: t.shape, data: base.values(t.name).slice() }])));
    await applyPayload(device, res.bytes, { hasher });
    for (const [name, values] of res.targetValues) assert.deepEqual(device.values(name), values, name);
    // Same inputs, same bytes.
    assert.deepEqual(topkDiff(hasher, base, target, { budgetBytes, codec }).bytes, res.bytes);
    // Against int8 with one scale a tensor at the same budget.
    const i8 = topkDiff(hasher, base, target, { budgetBytes, codec: 'i8' });
    assert.ok(res.squaredError < i8.squaredError / 2, `${codec}: squared error ${res.squaredError} against i8's ${i8.squaredError} (${res.kept} against ${i8.kept} values)`);
    // 8 bits: the budget keeps the small channels too, and the kernel's scales are per output channel (last axis).
    if (codec === 'l8') assert.equal(patches.find((p) => p.name === 'dense/kernel')?.lowbit?.scales.length, 32);
  }
  // auto keeps to f32, f16 and i8 (payloads older appliers read).
  const { base, target } = pair(4);
  assert.notEqual(topkDiff(hasher, base, target, { budgetBytes: 1000 }).codec, 'l');
});

test('a sparse codec-l patch with more scales than its tensor has groups is refused, the model untouched', async () => {
  const hasher = await getHasher();
  const { base, target } = pair(4);
  const res = topkDiff(hasher, base, target, { budgetBytes: 1500, codec: 'l4' });
  const patches = decodePayload(res.bytes).patches as SparsePatch[];
  // The bias [32]: a scale per value at most, 32; "lg" = 2 allows 16.
  const wires = patches.map(wireOf).map((w) => (w.t === 'dense/bias' ? { ...w, lg: 2, ls: new Uint8Array(64) } : w));
  const bad = packPayload(res.payload.header, wires);
  const device = new MemoryWeightStore(Object.fromEntries(base.list().map((t) => [t.name, { shape: t.shape, data: base.values(t.name).slice() }])));
  const before = snapshot(device);
  await assert.rejects(applyPayload(device, bad, { hasher }), (e: unknown) => e instanceof PayloadFormatError && /16 float16 scales/.test((e as Error).message));
  assert.ok(sameBytes(before, snapshot(device)));
});
