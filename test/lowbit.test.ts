/**
 * Low-bit deltas (format v6, codec l) and the post-hoc lowbit diff:
 *  - every bit width and scale layout round-trips exactly: what the encoder decoded is what the
 *    payload decoder gives, in one piece and in pieces that start mid-byte and mid-group;
 *  - malformed codec-l patches are refused before any write, the model byte for byte;
 *  - a lowbit payload applied by the device equals what the builder computed, with the same bytes
 *    from the same inputs;
 *  - the allocation is the least total error within the room (checked against every combination);
 *    every changed tensor is carried when the budget holds all of them; a change of low rank is
 *    carried as low-rank factors;
 *  - on a real full fine-tune (an MLP trained here), post-hoc lowbit at 5% of the model beats
 *    post-hoc top-k at the same budget, and at BitDelta's bytes beats BitDelta, by accuracy on
 *    held-out examples.
 */
import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import { decodePayload, openPayload, type CompositePatch, type DensePatch, type LowRankPatch, type PayloadHeader } from '../src/core/format.ts';
import { lowBitCodes, lowBitFactorCodes, packPayload, wirePatch, type WirePatch } from '../src/core/encode.ts';
import { decodeLowBit, lowBitScales } from '../src/core/lowbit.ts';
import { PayloadFormatError } from '../src/core/errors.ts';
import { getHasher } from '../src/core/hasher.ts';
import { MemoryWeightStore } from '../src/core/weight-store.ts';
import { applyPayload } from '../src/apply/apply.ts';
import { buildPayload, storedModelBytes } from '../src/diff/build.ts';
import { allocate, BITDELTA_CODE, describeAllocation, LowBitCache, lowbitDiff, lowbitVariants, quantizeFactors, quantizeLowBit, quantizeSparseLowBit, scaleLayout, type ScaleLayout } from '../src/lowbit-diff/encoder.ts';
import { UsageError } from '../src/core/errors.ts';
import { topkDiff } from '../src/topk-diff/encoder.ts';
import { seeded } from './helpers/graph-model.ts';
import { snapshot, sameBytes } from './helpers/models.ts';
import { clusterData, fineTunePair, FT_INPUTS } from './helpers/finetune.ts';
import { saveNpy } from '../src/io/npy/files.ts';
import { trainDiff } from '../src/train/train-diff.ts';
import { trainAuto } from '../src/train/auto.ts';
import { BudgetError } from '../src/core/errors.ts';
import { LowBitScales } from '../src/lowbit-diff/trainer.ts';
import * as tf from '@tensorflow/tfjs';
import { tempDir } from './helpers/dirs.ts';
import { main } from '../cli/ndiff.ts';
import { openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const hasher = await getHasher();

/** A delta of `n` values, most small, some large (a fine-tune's shape), seeded. */
function delta(n: number, seed: number): Float32Array {
  const r = seeded(seed);
  return Float32Array.from({ length: n }, () => (Math.abs(r()) < 0.05 ? 0.05 : 0.004) * r());
}

describe('codec l round-trips exactly at every width and layout', () => {
  const shape = [37, 19]; // 703 values: codes end mid-byte at every odd width
  for (const layout of ['tensor', 'first', 'last'] as ScaleLayout[]) {
    for (let bits = 1; bits <= 8; bits++) {
      test(`${bits} bit${bits > 1 ? 's' : ''}, scales per ${layout === 'tensor' ? 'tensor' : `${layout} axis`}`, () => {
        const { group, count } = scaleLayout(shape, layout) as { group: number; count: number };
        const d = delta(703, bits * 7 + count);
        const q = quantizeLowBit(d, bits, group, count);
        assert.equal(q.lowbit.scales.length, count);
        const base = new MemoryWeightStore({ w: { shape, data: delta(703, 1) } });
        const built = buildPayload(hasher, base, [{ kind: 'dense', name: 'w', values: q.decoded, codec: 'l', lowbit: q.lowbit }], { method: 'lowbit' });
        assert.equal(built.payload.header.version, 6);
        const p = decodePayload(built.bytes).patches[0] as DensePatch;
        assert.equal(p.codec, 'l');
        assert.deepEqual(new Uint8Array(p.values.buffer), new Uint8Array(q.decoded.buffer), 'the decoder gives the encoder\'s values, bit for bit');
        // Pieces from any offset (mid-byte, mid-group) give the same values.
        const codes = lowBitCodes(q.decoded, q.lowbit);
        const scales = lowBitScales(q.lowbit);
        for (const from of [0, 1, 5, 18, 19, 350, 702]) {
          const piece = decodeLowBit(codes, q.lowbit, scales, from, new Float32Array(Math.min(41, 703 - from)));
          assert.deepEqual(Array.from(piece), Array.from(q.decoded.subarray(from, from + piece.length)), `from ${from}`);
        }
        // Fewer bits, more error: 1 bit keeps signs, 8 bits nearly everything.
        let sq = 0;
        for (const x of d) sq += x * x;
        assert.ok(q.squaredError < sq, `${bits} bits remove some of the error`);
        if (bits === 8) assert.ok(q.squaredError < 1e-3 * sq);
      });
    }
  }

  test('a tensor past the decoder\'s piece size (65,536 values) applies in pieces to the builder\'s values', async () => {
    const n = 70_001;
    const base = new MemoryWeightStore({ big: { shape: [n], data: delta(n, 3) }, w: { shape: [8, 4], data: delta(32, 4) } });
    const change = delta(n, 5);
    const target = new MemoryWeightStore({ big: { shape: [n], data: base.values('big').map((v, i) => v + change[i]) }, w: { shape: [8, 4], data: base.values('w').map((v) => v * 1.01) } });
    const built = lowbitDiff(hasher, base, target, { budgetBytes: 40_000 });
    assert.ok(built.allocation.some((a) => a.name === 'big'));
    assert.ok(openPayload(built.bytes).patches.every((p) => p.wire === undefined), 'codec l takes the generic path, not the region kernel');
    const device = base.clone();
    await applyPayload(device, built.bytes);
    for (const [name, v] of built.targetValues) assert.deepEqual(new Uint8Array(device.values(name).buffer), new Uint8Array(v.buffer), `${name}: the device holds what the builder computed`);
    const again = lowbitDiff(hasher, base, target, { budgetBytes: 40_000 });
    assert.deepEqual(again.bytes, built.bytes, 'the same inputs give the same payload bytes');
  });
});

describe('codec l on low-rank factors: a width a singular direction', () => {
  // rows + cols = 24: direction k's codes end mid-byte at every odd width.
  const [rows, cols] = [13, 11];
  const cases: [string, number[]][] = [...[1, 2, 3, 4, 5, 6, 7, 8].map((b): [string, number[]] => [`every direction at ${b} bit${b > 1 ? 's' : ''}`, [b, b, b]]), ['mixed, widest first', [8, 3, 3, 2, 1]], ['mixed, in any order', [1, 8, 2, 7]]];
  for (const [name, widths] of cases) {
    test(`${name}: the decoder gives the encoder's factors bit for bit, the device the builder's weights`, async () => {
      const r = widths.length;
      const u = delta(rows * r, 40 + r);
      const v = delta(r * cols, 50 + widths[0]);
      const q = quantizeFactors(u, v, rows, cols, widths);
      assert.deepEqual([...q.lowbitFactors.widths], widths);
      const base = new MemoryWeightStore({ w: { shape: [rows, cols], data: delta(rows * cols, 6) }, c: { shape: [rows, cols], data: delta(rows * cols, 7) } });
      const built = buildPayload(hasher, base, [
        { kind: 'lowrank', name: 'w', rank: r, u: q.u, v: q.v, codec: 'l', lowbitFactors: q.lowbitFactors },
        { kind: 'composite', name: 'c', rank: r, u: q.u, v: q.v, codec: 'l', lowbitFactors: q.lowbitFactors, positions: Uint32Array.of(0, 17, 142), values: Float32Array.of(0.5, -0.25, 2), sparseCodec: 'f16' },
      ], { method: 'lowbit' });
      assert.equal(built.payload.header.version, 6);
      const [c, w] = decodePayload(built.bytes).patches as [CompositePatch, LowRankPatch];
      for (const p of [w, c]) {
        assert.equal(p.codec, 'l');
        assert.deepEqual(new Uint8Array(p.u.buffer.slice(0)), new Uint8Array(q.u.buffer.slice(0)), `${p.name}: U`);
        assert.deepEqual(new Uint8Array(p.v.buffer.slice(0)), new Uint8Array(q.v.buffer.slice(0)), `${p.name}: V`);
      }
      const device = base.clone();
      await applyPayload(device, built.bytes);
      for (const [n, want] of built.targetValues) assert.deepEqual(new Uint8Array(device.values(n).buffer), new Uint8Array(want.buffer), `${n}: the device holds what the builder computed`);
      // Fewer bits, more error on the factors.
      let err = 0;
      for (let i = 0; i < u.length; i++) err += (u[i] - q.u[i]) ** 2;
      if (widths.every((b) => b === 8)) assert.ok(err < 1e-3 * u.reduce((t, x) => t + x * x, 0));
    });
  }

  test('malformed factor layouts are refused before any write', async () => {
    const q = quantizeFactors(delta(rows * 2, 60), delta(2 * cols, 61), rows, cols, [4, 2]);
    const base = new MemoryWeightStore({ w: { shape: [rows, cols], data: delta(rows * cols, 8) } });
    const built = buildPayload(hasher, base, [{ kind: 'lowrank', name: 'w', rank: 2, u: q.u, v: q.v, codec: 'l', lowbitFactors: q.lowbitFactors }], { method: 'lowbit' });
    const good = wirePatch(built.payload.patches[0], lowBitFactorCodes(q.u, q.v, [rows, cols], q.lowbitFactors));
    const cases: [string, WirePatch, RegExp][] = [
      ['a width per direction', { ...good, lb: [4] }, /"lb" must be 2 widths from 1 to 8/],
      ['widths of 1 to 8', { ...good, lb: [4, 9] }, /"lb" must be 2 widths/],
      ['an array, not a uint', { ...good, lb: 4 }, /"lb" must be 2 widths from 1 to 8 \(one a direction\), found \[\]/],
      ['no group', { ...good, lg: 1 }, /take no group "lg"/],
      ['two scales a direction', { ...good, ls: (good.ls as Uint8Array).slice(0, 6) }, /"ls" must be 4 float16 scales/],
      ['codes of the right length', { ...good, v: good.v.slice(0, -1) }, /"v" must be 18 bytes/],
      ['a rank within the matrix', { ...good, r: 12, lb: Array(12).fill(1) }, /rank "r" must be an integer from 1 to 11/],
      // Issue #61: "4" and true passed JavaScript's comparisons as widths, and "4" was decoded with
      // string arithmetic (bit offsets "04", "044", ...), not as FORMAT.md §4.4 reads 4 bits.
      ['widths as strings', { ...good, lb: ['4', '2'] as unknown as number[] }, /"lb" must be 2 widths from 1 to 8 \(one a direction\), found \["4", "2"\]/],
      ['a width of true', { ...good, lb: [4, true] as unknown as number[] }, /"lb" must be 2 widths from 1 to 8 \(one a direction\), found \[4, true\]/],
      ['a width of 2.5', { ...good, lb: [4, 2.5] }, /"lb" must be 2 widths from 1 to 8 \(one a direction\), found \[4, 2.5\]/],
    ];
    for (const [what, wire, pattern] of cases) {
      const device = base.clone();
      const before = snapshot(device);
      await assert.rejects(applyPayload(device, packPayload(built.payload.header, [wire])), (e: unknown) => e instanceof PayloadFormatError && pattern.test((e as Error).message), what);
      assert.ok(sameBytes(before, snapshot(device)), `${what}: the model is untouched`);
    }
    const device = base.clone();
    await applyPayload(device, packPayload(built.payload.header, [good]));
    assert.deepEqual(device.values('w'), built.targetValues.get('w'));
  });
});

describe('codec l encoders take only integer widths from 1 to 8 (issue #61)', () => {
  const d = delta(64, 80);
  const notWidths: unknown[] = ['8', true, 2.5, 0, 9, null];
  test('quantizeLowBit, quantizeSparseLowBit and quantizeFactors refuse any other width with a UsageError', () => {
    for (const b of notWidths) {
      assert.throws(() => quantizeLowBit(d, b as number, 1, 8), (e: unknown) => e instanceof UsageError && /bits must be an integer from 1 to 8/.test((e as Error).message), String(b));
      assert.throws(() => quantizeSparseLowBit(d.subarray(0, 3), Uint32Array.of(1, 5, 9), 64, b as number, 1, 8), UsageError, String(b));
      assert.throws(() => quantizeFactors(d.subarray(0, 8), d.subarray(0, 8), 8, 8, [b as number]), (e: unknown) => e instanceof UsageError && /width must be an integer from 1 to 8/.test((e as Error).message), String(b));
    }
  });
  test('lowbitDiff refuses widths that are not integers from 1 to 8, and an empty list', () => {
    const base = new MemoryWeightStore({ w: { shape: [8, 8], data: delta(64, 81) } });
    const target = new MemoryWeightStore({ w: { shape: [8, 8], data: delta(64, 82) } });
    for (const widths of [['8'], [true], [3, 2.5], []]) {
      assert.throws(() => lowbitDiff(hasher, base, target, { budgetBytes: 2000, widths: widths as number[] }), (e: unknown) => e instanceof UsageError && /widths/.test((e as Error).message), JSON.stringify(widths));
    }
  });
  test('buildPayload refuses a codec-l spec whose width is "3" or true before sizing codes by it', () => {
    const base = new MemoryWeightStore({ w: { shape: [8, 8], data: delta(64, 83) } });
    const q = quantizeLowBit(delta(64, 84), 3, 1, 8);
    for (const bits of ['3', true, 1e9]) {
      assert.throws(() => buildPayload(hasher, base, [{ kind: 'dense', name: 'w', values: q.decoded, codec: 'l', lowbit: { ...q.lowbit, bits: bits as number } }], { method: 'lowbit' }), (e: unknown) => e instanceof UsageError && /bit widths must be integers from 1 to 8/.test((e as Error).message), String(bits));
    }
    const f = quantizeFactors(delta(16, 85), delta(16, 86), 8, 8, [4, 2]);
    assert.throws(() => buildPayload(hasher, base, [{ kind: 'lowrank', name: 'w', rank: 2, u: f.u, v: f.v, codec: 'l', lowbitFactors: { ...f.lowbitFactors, widths: ['4', '2'] as unknown as number[] } }], { method: 'lowbit' }), (e: unknown) => e instanceof UsageError && /bit widths must be integers from 1 to 8, found \["4","2"\]/.test((e as Error).message));
  });
});

describe('low-rank factors are checked against the model before they are decoded (issue #61)', () => {
  // A low-rank patch in 1-bit codec l declaring [65535, 65535] at rank R for a [4, 4] tensor: its
  // codes are R * 131070 bits, and decoding them makes R * 131070 float32s, 32 times the payload.
  // At R = 3000 that is a 49 MB payload and 1.6 GB of factors, once decoded before the applier
  // compared the patch's shape with the model's tensor. Run in a child to read its peak memory.
  const script = (rank: number) => `
import { packPayload, wirePatch } from './src/core/encode.ts';
import { buildPayload } from './src/diff/build.ts';
import { getHasher } from './src/core/hasher.ts';
import { MemoryWeightStore } from './src/core/weight-store.ts';
import { applyPayload, verifyPayload } from './src/apply/apply.ts';
import { main } from './cli/ndiff.ts';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
const hasher = await getHasher();
const base = new MemoryWeightStore({ w: { shape: [4, 4], data: Float32Array.from({ length: 16 }, (_, i) => i / 16) } });
const built = buildPayload(hasher, base, [{ kind: 'dense', name: 'w', values: new Float32Array(16).fill(0.5), codec: 'f32' }], { method: 'lowrank' });
const n = 65535, rank = ${rank};
const hostile = { ...wirePatch(built.payload.patches[0], new Uint8Array(0)), s: [n, n], k: 'r', r: rank, c: 'l', v: new Uint8Array(Math.ceil((rank * 2 * n) / 8)), lb: new Array(rank).fill(1), le: 0, ls: new Uint8Array(4 * rank) };
delete hostile.q;
const bytes = packPayload({ ...built.payload.header, version: 6 }, [hostile]);
const before = Array.from(base.values('w'));
const out = { payloadBytes: bytes.length };
// ndiff inspect describes it (well-formed on its own) without decoding its factors either.
const dir = mkdtempSync(join(tmpdir(), 'nd-lowrank-'));
writeFileSync(join(dir, 'p.ndiff'), bytes);
const lines = [];
out.inspect = await main(['inspect', join(dir, 'p.ndiff')], { out: (l) => lines.push(l), err: (l) => lines.push(l), progress: () => {} });
out.inspectRow = lines.join('\\n').split('\\n').some((l) => l.startsWith('w ') && l.includes('[65535x65535]') && l.includes('all (rank ' + rank + ')'));
rmSync(dir, { recursive: true, force: true });
try { await verifyPayload(bytes); out.verified = true; } catch (e) { out.verifyError = e.constructor.name + ': ' + e.message; }
try { await applyPayload(base, bytes); out.applied = true; } catch (e) { out.name = e.constructor.name; out.code = e.code; out.message = e.message; }
out.untouched = Array.from(base.values('w')).every((x, i) => Object.is(x, before[i]));
out.peakMb = process.resourceUsage().maxRSS / 1024;
console.log(JSON.stringify(out));`;

  test('a 49 MB payload declaring [65535, 65535] for a [4, 4] tensor: refused for its shape within 1 GiB, the model untouched; ndiff inspect within 1 GiB too', { timeout: 120_000 }, async (t) => {
    const r = spawnSync(process.execPath, ['--conditions=neural-diff-source', '--import', 'tsx', '--input-type=module', '-e', script(3000)], { encoding: 'utf8', cwd: process.cwd(), maxBuffer: 1 << 20 });
    const line = r.stdout.trim().split('\n').pop() as string;
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const out = JSON.parse(line) as { payloadBytes: number; verified?: boolean; inspect?: number; inspectRow?: boolean; lines?: string[]; name?: string; code?: string; message?: string; untouched: boolean; peakMb: number };
    assert.ok(out.payloadBytes > 45e6, `${out.payloadBytes} bytes`);
    assert.equal(out.verified, true, 'well-formed on its own: the codes fill exactly the bytes the declared shape needs');
    assert.equal(out.inspect, 0, 'ndiff inspect describes it');
    assert.ok(out.inspectRow, `ndiff inspect shows its row: ${JSON.stringify(out)}`);
    assert.equal(out.code, 'ND_MODEL_MISMATCH', JSON.stringify(out));
    assert.match(out.message as string, /has shape \[4, 4\] in this model but the payload expects \[65535, 65535\]/);
    assert.ok(out.untouched, 'the model is untouched');
    t.diagnostic(`${out.payloadBytes} bytes: peak RSS ${out.peakMb.toFixed(0)} MB`);
    assert.ok(out.peakMb < 1024, `peak RSS ${out.peakMb.toFixed(0)} MB, more than 1 GiB`);
  });
});

describe('codes with the largest changes apart at float16 (a composite patch of dense codes)', () => {
  test('a retrained tensor whose few changes are as large as its weights: chosen, far less error, applied as built, and distilled from it', async () => {
    const n = 64 * 32;
    const base = new MemoryWeightStore({ w: { shape: [64, 32], data: delta(n, 70) } });
    const change = delta(n, 71);
    for (let k = 0; k < 12; k++) change[(k * 173) % n] = k & 1 ? -5 : 4;
    const target = new MemoryWeightStore({ w: { shape: [64, 32], data: base.values('w').map((v, i) => v + change[i]) } });
    const budgetBytes = 900;
    const res = lowbitDiff(hasher, base, target, { budgetBytes, lowRank: false });
    const a = res.allocation[0];
    assert.ok(!a.rank && (a.outliers ?? 0) >= 12, describeAllocation(a));
    const p = decodePayload(res.bytes).patches[0] as CompositePatch;
    assert.ok(p.kind === 'composite' && p.codec === 'l' && p.dense && p.rank === 0);
    const without = lowbitDiff(hasher, base, target, { budgetBytes, lowRank: false, outliers: false });
    assert.ok(res.squaredError < without.squaredError / 4, `with outliers ${res.squaredError}, without ${without.squaredError}`);
    const device = base.clone();
    await applyPayload(device, res.bytes);
    assert.deepEqual(device.values('w'), res.targetValues.get('w'));
    // The distilled lowbit starts from it: the same patch back before any step.
    const scales = new LowBitScales(new Map([['w', { shape: [64, 32], values: base.values('w') }]]), decodePayload(res.bytes).patches);
    try {
      const again = buildPayload(hasher, base, scales.specs(), { method: 'lowbit' });
      assert.deepEqual(again.targetValues.get('w'), res.targetValues.get('w'));
      assert.deepEqual(Array.from(scales.effective('w').dataSync()), Array.from(res.targetValues.get('w') as Float32Array));
    } finally {
      scales.dispose();
    }
  });
});

describe('distilled codes: straight through their rounding', () => {
  test('start at the post-hoc codes, move with their float change, and build what the trainer evaluates', () => {
    const n = 48 * 16;
    const base = new MemoryWeightStore({ w: { shape: [48, 16], data: delta(n, 80) } });
    const change = delta(n, 81);
    const target = new MemoryWeightStore({ w: { shape: [48, 16], data: base.values('w').map((v, i) => v + change[i]) } });
    const post = lowbitDiff(hasher, base, target, { budgetBytes: 600, lowRank: false, widths: [3] });
    const shapes = new Map([['w', { shape: [48, 16], values: base.values('w') }]]);
    const scales = new LowBitScales(shapes, post.payload.patches, new Map([['w', change]]));
    const opt: tf.Optimizer = tf.train.adam(0.2);
    try {
      assert.deepEqual(Array.from(scales.effective('w').dataSync()), Array.from(post.targetValues.get('w') as Float32Array), 'the post-hoc payload before any step');
      // A gradient pushing every weight up: changes cross their rounding points, codes move.
      const grads = tf.tidy(() => scales.gradients('w', tf.fill([48, 16], -1)));
      assert.ok(Object.keys(grads).some((k) => k.startsWith('nd_lowbit_d/')), 'the float changes train');
      for (let step = 0; step < 5; step++) opt.applyGradients(tf.tidy(() => scales.gradients('w', tf.fill([48, 16], -1))));
      tf.dispose(grads);
      const after = Array.from(scales.effective('w').dataSync());
      const built = buildPayload(hasher, base, scales.specs(), { method: 'lowbit' });
      assert.deepEqual(Array.from(built.targetValues.get('w') as Float32Array), after, 'the payload holds what the trainer evaluates');
      const moved = after.filter((x, i) => x > (post.targetValues.get('w') as Float32Array)[i]).length;
      assert.ok(moved > n / 10, `${moved} of ${n} weights moved up with their codes`);
    } finally {
      opt.dispose();
      scales.dispose();
    }
  });
});

describe('malformed codec-l patches are refused before any write', () => {
  const shape = [16, 8];
  const base = new MemoryWeightStore({ w: { shape, data: delta(128, 9) } });
  const q = quantizeLowBit(delta(128, 10), 3, 1, 8);
  const built = buildPayload(hasher, base, [{ kind: 'dense', name: 'w', values: q.decoded, codec: 'l', lowbit: q.lowbit }], { method: 'lowbit' });
  const header: PayloadHeader = built.payload.header;
  const good = wirePatch(built.payload.patches[0], lowBitCodes(q.decoded, q.lowbit));
  const cases: [string, (p: WirePatch) => WirePatch, RegExp, number?][] = [
    ['0 bits', (p) => ({ ...p, lb: 0 }), /"lb" must be an integer from 1 to 8, found 0/],
    ['9 bits', (p) => ({ ...p, lb: 9 }), /"lb" must be an integer from 1 to 8, found 9/],
    ['bits as a string', (p) => ({ ...p, lb: '3' as unknown as number }), /"lb" must be an integer from 1 to 8, found "3"/],
    ['bits of true', (p) => ({ ...p, lb: true as unknown as number }), /"lb" must be an integer from 1 to 8, found true/],
    ['a group as a string', (p) => ({ ...p, lg: '1' as unknown as number }), /"lg" must be a positive integer, found "1"/],
    ['group 0', (p) => ({ ...p, lg: 0 }), /"lg" must be a positive integer, found 0/],
    ['exponent past 32', (p) => ({ ...p, le: 40 }), /"le" must be an integer from -64 to 32, found 40/],
    ['more scales than groups', (p) => ({ ...p, lg: 64 }), /"ls" must be 1 to 2 float16 scales, found 8/],
    ['no scales', (p) => ({ ...p, ls: new Uint8Array(0) }), /"ls" must be 1 to 128 float16 scales, found 0/],
    ['scales of an odd byte count', (p) => ({ ...p, ls: (p.ls as Uint8Array).subarray(0, 15) }), /"ls" must be float16 scales, found 15 bytes/],
    ['a negative scale', (p) => ({ ...p, ls: Uint8Array.from(p.ls as Uint8Array, (b, i) => (i === 5 ? b | 0x80 : b)) }), /"ls" must be finite and not negative, found -[\d.e-]+/],
    ['an infinite scale', (p) => ({ ...p, ls: Uint8Array.from(p.ls as Uint8Array, (b, i) => (i === 1 ? 0x7c : i === 0 ? 0 : b)) }), /"ls" must be finite and not negative, found Infinity/],
    ['a NaN scale', (p) => ({ ...p, ls: Uint8Array.from(p.ls as Uint8Array, (b, i) => (i === 1 ? 0x7e : b)) }), /"ls" must be finite and not negative, found NaN/],
    ['codes a byte short', (p) => ({ ...p, v: p.v.subarray(1) }), /"v" must be 48 bytes with no bits set past the last code, found 47 bytes/],
    ['codes a byte long', (p) => ({ ...p, v: Uint8Array.from([...p.v, 0]) }), /"v" must be 48 bytes/],
    ['on a hashed patch', (p) => ({ ...p, k: 'h', h: 1, nb: 4, sg: false }), /codec "l" is not for hashed patches/],
    ['on a sparse patch of one position with every value\'s codes', (p) => ({ ...p, k: 's', n: 1, ic: 'g', i: Uint8Array.of(0) }), /values of codec l: "v" must be 1 bytes/],
    ['in a format v5 payload', (p) => p, /value codec "c" must be one of f32, f16, i8, x, xr, xs, found the string "l"/, 5],
  ];
  for (const [name, mutate, pattern, version] of cases) {
    test(name, async () => {
      const bytes = packPayload({ ...header, version: 6 }, [mutate({ ...good })]);
      if (version) {
        // An older header: the encoder refuses to write it, so the bytes are patched after.
        bytes[bytes.indexOf(0xa2) + 3] = version; // "nd" is the first key: a2 6e 64 <version>
      }
      const before = snapshot(base);
      await assert.rejects(applyPayload(base, bytes), (e: unknown) => {
        assert.ok(e instanceof PayloadFormatError, `expected PayloadFormatError, got ${(e as Error).constructor.name}: ${(e as Error).message}`);
        assert.match((e as Error).message, pattern);
        return true;
      });
      assert.ok(sameBytes(before, snapshot(base)), 'the model is untouched');
    });
  }

  test('bits set past the last code', async () => {
    const q5 = quantizeLowBit(delta(125, 11), 3, 125, 1); // 375 bits: 7 bits of padding
    const b5 = new MemoryWeightStore({ w: { shape: [125], data: delta(125, 12) } });
    const p = buildPayload(hasher, b5, [{ kind: 'dense', name: 'w', values: q5.decoded, codec: 'l', lowbit: q5.lowbit }], { method: 'lowbit' });
    const w = wirePatch(p.payload.patches[0], lowBitCodes(q5.decoded, q5.lowbit));
    w.v = Uint8Array.from(w.v, (b, i) => (i === w.v.length - 1 ? b | 0x80 : b));
    const before = snapshot(b5);
    await assert.rejects(applyPayload(b5, packPayload(p.payload.header, [w])), /"v" must be 47 bytes with no bits set past the last code, found 47 bytes/);
    assert.ok(sameBytes(before, snapshot(b5)));
  });

  test('the encoder refuses values that are not what their codes decode to', () => {
    const off = q.decoded.slice();
    off[3] += 1e-3;
    assert.throws(() => buildPayload(hasher, base, [{ kind: 'dense', name: 'w', values: off, codec: 'l', lowbit: q.lowbit }], { method: 'lowbit' }), /codec l: the values are not what their codes decode to/);
  });
});

describe('the allocation', () => {
  test('is the least total error within the room: every combination checked, 300 random cases', () => {
    const r = seeded(7);
    for (let c = 0; c < 300; c++) {
      const tensors = Array.from({ length: 2 + (c % 3) }, (_, t) => {
        // Options cheapest first, errors not necessarily convex in bytes (as real options are not).
        let bytes = 0;
        const options = [{ bits: 0, layout: null, bytes: 0, error: 50 + 50 * Math.abs(r()) }];
        for (let q = 0; q < 4; q++) options.push({ bits: q + 1, layout: null, bytes: (bytes += 1 + Math.floor(400 * Math.abs(r()))), error: options[q].error * (0.2 + 0.7 * Math.abs(r())) });
        return { name: `t${t}`, options };
      });
      const room = 1 + Math.floor(1200 * Math.abs(r()));
      const picks = allocate(tensors, room);
      const cost = (p: number[]) => p.reduce((s, q, i) => s + tensors[i].options[q].bytes, 0);
      const error = (p: number[]) => p.reduce((s, q, i) => s + tensors[i].options[q].error, 0);
      assert.ok(cost(picks) <= room, `case ${c}: ${cost(picks)} bytes in a room of ${room}`);
      let best = Infinity;
      const walk = (i: number, p: number[]) => {
        if (i === tensors.length) {
          if (cost(p) <= room) best = Math.min(best, error(p));
          return;
        }
        for (let q = 0; q < tensors[i].options.length; q++) walk(i + 1, [...p, q]);
      };
      walk(0, []);
      assert.ok(Math.abs(error(picks) - best) < 1e-9, `case ${c}: error ${error(picks)}, the best combination ${best}`);
    }
  });

  const [w, b] = [delta(4096, 11), delta(16, 12)];
  const baseStore = new MemoryWeightStore([['w', { shape: [64, 64], data: new Float32Array(4096).fill(0.1) }], ['b', { shape: [16], data: new Float32Array(16).fill(0.01) }]]);
  const targetStore = new MemoryWeightStore([['w', { shape: [64, 64], data: Float32Array.from(w, (x) => 0.1 + x) }], ['b', { shape: [16], data: Float32Array.from(b, (x) => 0.01 + 0.01 * x) }]]);

  test('every changed tensor is carried when the budget holds them all (cover), and within the budget below that', () => {
    const covered = lowbitDiff(hasher, baseStore, targetStore, { budgetBytes: 900, proxy: 'squared' });
    assert.deepEqual(covered.allocation.map((a) => a.name).sort(), ['b', 'w']);
    assert.ok(covered.bytes.length <= 900);
    // Near the floor (the cheapest option of each, as framing is estimated), still both.
    const floor = lowbitDiff(hasher, baseStore, targetStore, { budgetBytes: 10_000, widths: [1], layouts: ['tensor'], lowRank: false }).bytes.length;
    const atFloor = lowbitDiff(hasher, baseStore, targetStore, { budgetBytes: floor + 64, proxy: 'squared', lowRank: false });
    assert.deepEqual(atFloor.allocation.map((a) => a.name).sort(), ['b', 'w']);
    // Below the floor of the codes, a tensor left out or carried as a few low-bit directions.
    const tiny = lowbitDiff(hasher, baseStore, targetStore, { budgetBytes: 300 });
    assert.ok(tiny.bytes.length <= 300 && tiny.allocation.every((a) => a.name === 'b' || a.rank), tiny.allocation.map(describeAllocation).join(', '));
  });

  test('a change of rank 1 is carried as low-rank factors, applied by the device as the builder computed them', async () => {
    const u = delta(64, 13);
    const v = delta(64, 14);
    const rank1 = new Float32Array(4096);
    for (let i = 0; i < 64; i++) for (let j = 0; j < 64; j++) rank1[i * 64 + j] = 4 * u[i] * v[j];
    const target = new MemoryWeightStore([['w', { shape: [64, 64], data: Float32Array.from(rank1, (x) => 0.1 + x) }]]);
    const base = new MemoryWeightStore([['w', { shape: [64, 64], data: new Float32Array(4096).fill(0.1) }]]);
    const res = lowbitDiff(hasher, base, target, { budgetBytes: 400 });
    assert.match(res.allocation.map(describeAllocation).join(', '), /^w rank 1 \([1-8]x1\)$/);
    assert.equal(decodePayload(res.bytes).patches[0].kind, 'lowrank');
    assert.ok(res.squaredError < 1e-3 * (res.changeSquared as number), `error ${res.squaredError} of ${res.changeSquared}`);
    const device = base.clone();
    await applyPayload(device, res.bytes);
    assert.equal(device.values('w').length, 4096);
    const again = lowbitDiff(hasher, base, target, { budgetBytes: 400 });
    assert.deepEqual(again.bytes, res.bytes, 'deterministic');
  });

  test('an importance of the wrong length is a usage error', () => {
    assert.throws(() => lowbitDiff(hasher, baseStore, targetStore, { budgetBytes: 900, importance: new Map([['w', new Float32Array(3)]]) }), (e: unknown) => e instanceof UsageError && /importance of "w" has 3 values, the tensor 4096/.test((e as Error).message));
  });

  test('weighted quantization: the 1-bit scale is the importance-weighted mean |value|', () => {
    const d = Float32Array.of(1, -3, 2, -2);
    const q = quantizeLowBit(d, 1, 4, 1, Float32Array.of(1, 0, 1, 0));
    assert.equal(Math.abs(q.decoded[0]), 1.5);
    assert.equal(quantizeLowBit(d, 1, 4, 1).decoded[0], 2);
  });
});

describe('post-hoc lowbit on a full fine-tune', () => {
  let pair: Awaited<ReturnType<typeof fineTunePair>>;
  before(async () => {
    pair = await fineTunePair();
  });

  test('at 5% of the model, lowbit beats top-k by accuracy on held-out examples', async (t) => {
    const { v1, v2, accuracy } = pair;
    const budgetBytes = Math.floor(0.05 * storedModelBytes(v1));
    const topk = topkDiff(hasher, v1, v2, { budgetBytes });
    const low = lowbitDiff(hasher, v1, v2, { budgetBytes });
    assert.ok(low.bytes.length <= budgetBytes && topk.bytes.length <= budgetBytes);
    const [a, b] = [v1.clone(), v1.clone()];
    await applyPayload(a, topk.bytes);
    await applyPayload(b, low.bytes);
    const acc = { v1: accuracy(v1), v2: accuracy(v2), topk: accuracy(a), lowbit: accuracy(b) };
    t.diagnostic(`v1 ${acc.v1}, v2 ${acc.v2}; at ${budgetBytes} bytes: top-k ${acc.topk} (${topk.bytes.length} B), lowbit ${acc.lowbit} (${low.bytes.length} B: ${low.allocation.map(describeAllocation).join(', ')})`);
    assert.ok(acc.v2 > acc.v1 + 0.15, 'v2 learned the new classes');
    assert.ok(acc.lowbit > acc.topk + 0.08, `lowbit ${acc.lowbit} against top-k ${acc.topk}`);
    assert.ok(low.squaredError < topk.squaredError, 'and it leaves less of the change behind');
  });

  test('at BitDelta\'s bytes (the sign of every change, a scale per tensor), lowbit is at least as accurate', async (t) => {
    const { v1, v2, accuracy } = pair;
    const bitdelta = lowbitDiff(hasher, v1, v2, { budgetBytes: 10 * storedModelBytes(v1), ...BITDELTA_CODE });
    assert.ok(bitdelta.allocation.every((a) => a.bits === 1 && a.layout === 'tensor'));
    const low = lowbitDiff(hasher, v1, v2, { budgetBytes: bitdelta.bytes.length });
    const [a, b] = [v1.clone(), v1.clone()];
    await applyPayload(a, bitdelta.bytes);
    await applyPayload(b, low.bytes);
    t.diagnostic(`BitDelta ${accuracy(a)} (${bitdelta.bytes.length} B), lowbit ${accuracy(b)} (${low.bytes.length} B: ${low.allocation.map(describeAllocation).join(', ')})`);
    assert.ok(low.bytes.length <= bitdelta.bytes.length);
    assert.ok(accuracy(b) >= accuracy(a), `lowbit ${accuracy(b)} against BitDelta ${accuracy(a)}`);
  });

  test('the variants sharing one cache give the bytes each gives alone; a changed tensor is quantized again', () => {
    const { v1, v2 } = pair;
    const budgetBytes = Math.floor(0.05 * storedModelBytes(v1));
    const cache = new LowBitCache();
    for (const v of lowbitVariants(undefined, cache)) {
      const { cache: _shared, ...alone } = v.options();
      assert.ok(_shared === cache);
      const shared = lowbitDiff(hasher, v1, v2, { budgetBytes, ...v.options() });
      assert.deepEqual(shared.bytes, lowbitDiff(hasher, v1, v2, { budgetBytes, ...alone }).bytes, v.name);
    }
    // Another target under the same names: the kept quantizations of the old changes are not used.
    const moved = v2.clone();
    const name = v2.list()[0].name;
    const w = moved.values(name);
    for (let i = 0; i < w.length; i++) w[i] = 1.5 * w[i] + 0.01;
    const again = lowbitDiff(hasher, v1, moved, { budgetBytes, cache });
    assert.deepEqual(again.bytes, lowbitDiff(hasher, v1, moved, { budgetBytes }).bytes);
    assert.notDeepEqual(again.bytes, lowbitDiff(hasher, v1, v2, { budgetBytes, cache }).bytes);
  });

  test('distilled lowbit: before training, the trainable scales and factors rebuild the post-hoc patches exactly, at the same size; the gradient of a scale multiplier is the sum of dL/dW times the codes over its group, times the scale', () => {
    const { v1, v2 } = pair;
    const post = lowbitDiff(hasher, v1, v2, { budgetBytes: Math.floor(0.05 * storedModelBytes(v1)) });
    assert.ok(post.allocation.some((a) => a.rank) && post.allocation.some((a) => !a.rank), 'both kinds of patch');
    const shapes = new Map(v1.list().map((t) => [t.name, { shape: [...t.shape], values: v1.values(t.name) }]));
    const param = new LowBitScales(shapes, post.payload.patches);
    try {
      const again = buildPayload(hasher, v1, param.specs(), { method: 'lowbit', budgetBytes: post.payload.header.budgetBytes });
      assert.equal(again.bytes.length, post.bytes.length);
      assert.deepEqual(again.payload.patches, post.payload.patches);
      assert.deepEqual(again.targetValues, post.targetValues);
      // The forward pass uses what the device will hold: codes exactly, low-rank factors' product
      // from one matrix product (float32 sums in another order: within a few units in the last place).
      for (const p of post.payload.patches) {
        const got = param.effective(p.name).dataSync() as Float32Array;
        const want = post.targetValues.get(p.name) as Float32Array;
        if (p.kind !== 'lowrank') assert.deepEqual(got, want);
        else {
          assert.equal(got.length, want.length);
          let top = 0;
          for (const x of want) top = Math.max(top, Math.abs(x));
          for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i] - want[i]) <= 1e-6 * top, `${p.name}[${i}]: ${got[i]} against ${want[i]}`);
        }
      }
      const dense = post.payload.patches.find((p) => p.kind === 'dense') as DensePatch;
      const lb = dense.lowbit as NonNullable<DensePatch['lowbit']>;
      const n = dense.values.length;
      const r = seeded(31);
      const dW = Float32Array.from({ length: n }, () => r());
      const grads = tf.tidy(() => Object.values(param.gradients(dense.name, tf.tensor(dW, shapes.get(dense.name)?.shape))).map((g) => g.dataSync() as Float32Array))[0];
      const scales = lowBitScales(lb);
      const want = new Float64Array(lb.scales.length);
      for (let k = 0; k < n; k++) {
        const j = Math.floor(k / lb.group) % lb.scales.length;
        want[j] += dW[k] * (scales[j] > 0 ? Math.round(dense.values[k] / scales[j]) : 1) * scales[j];
      }
      for (let j = 0; j < want.length; j++) assert.ok(Math.abs(grads[j] - want[j]) <= 1e-4 * (1 + Math.abs(want[j])), `scale ${j}: ${grads[j]} against ${want[j]}`);
    } finally {
      param.dispose();
    }
  });

  test('ndiff train --method lowbit: the post-hoc payload\'s scales and factors distilled toward v2 on unlabeled inputs, within the budget, at least as close to v2 on validation as post hoc, and the device holds what the trainer measured', async (t) => {
    const { v1, v2, accuracy, model } = pair;
    const budgetBytes = Math.floor(0.05 * storedModelBytes(v1));
    const [student, teacher] = [model(v1), model(v2)];
    const inputs = clusterData(1200, 23);
    const x = tf.tensor2d(inputs.x, [1200, FT_INPUTS]);
    try {
      const lines: string[] = [];
      const res = await trainDiff(student, { x }, { method: 'lowbit', teacher, budgetBytes, epochs: 4, seed: 3, base: v1, tune: 'off', onProgress: (l) => lines.push(l) });
      assert.ok(res.bytes.length <= budgetBytes);
      assert.equal(res.payload.header.method, 'lowbit');
      assert.match(lines.join('\n'), /lowbit: post hoc \d+ bytes .*now train/);
      const device = v1.clone();
      await applyPayload(device, res.bytes);
      for (const [name, values] of res.targetValues) assert.deepEqual(device.values(name), values, name);
      const post = v1.clone();
      await applyPayload(post, lowbitDiff(hasher, v1, v2, { budgetBytes }).bytes);
      t.diagnostic(`v1 ${accuracy(v1)}, v2 ${accuracy(v2)}, post hoc ${accuracy(post)}, distilled ${accuracy(device)}; validation ${JSON.stringify(res.teacher?.validation)}`);
      const v = res.teacher?.validation as NonNullable<NonNullable<typeof res.teacher>['validation']>;
      assert.ok(v.agreement >= v.baseAgreement, 'closer to v2 than the base on validation');
      assert.ok(accuracy(device) >= accuracy(v1) + 0.15, `distilled ${accuracy(device)} against v1 ${accuracy(v1)}`);
    } finally {
      x.dispose();
      student.dispose();
      teacher.dispose();
    }
  });

  test('trainAuto reports a candidate that cannot run and throws the first refusal when none can; it needs validation', async () => {
    const { v1, v2, model } = pair;
    const [student, teacher] = [model(v1), model(v2)];
    const x = tf.tensor2d(clusterData(200, 29).x, [200, FT_INPUTS]);
    try {
      const seen: string[] = [];
      await assert.rejects(
        trainAuto(student, { x }, { teacher, budgetBytes: 40, epochs: 1, base: v1, tune: 'off', candidates: ['lowbit', 'sparse'] }, (c) => seen.push(`${c.method}: ${c.refused ? 'refused' : 'ran'}`)),
        (e: unknown) => e instanceof BudgetError,
      );
      assert.deepEqual(seen, ['lowbit: refused', 'sparse: refused']);
      await assert.rejects(trainAuto(student, { x }, { teacher, budgetBytes: 4000, epochs: 1, base: v1, tune: 'off', validation: 0 }), /chooses on validation/);
    } finally {
      x.dispose();
      student.dispose();
      teacher.dispose();
    }
  });

  test('ndiff diff --method lowbit writes it for two TF.js folders, within the budget, and apply takes it', async () => {
    const { v1, v2, accuracy, save } = pair;
    const dir = await tempDir();
    try {
      await save(join(dir, 'v1'), v1);
      await save(join(dir, 'v2'), v2);
      const lines: string[] = [];
      const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l), progress: () => {} };
      const out = join(dir, 'v1-v2.ndiff');
      const args = ['diff', '--model-id', 'mlp', '--base', join(dir, 'v1'), '--target', join(dir, 'v2'), '--budget', '5%', '--method', 'lowbit', '--out', out];
      assert.equal(await main(args, io), 0, lines.join('\n'));
      assert.match(lines.join('\n'), /every change of \d+ tensor\(s\) \(\d+ x [^;]+; \d+ of \d+ changed values\), share of the squared change carried \d+\.\d%/);
      const bytes = new Uint8Array(await readFile(out));
      assert.ok(bytes.length <= Math.floor(0.05 * storedModelBytes(v1)));
      assert.equal(decodePayload(bytes).header.method, 'lowbit');
      assert.equal(await main([...args.slice(0, -1), join(dir, 'again.ndiff')], io), 0);
      assert.deepEqual(new Uint8Array(await readFile(join(dir, 'again.ndiff'))), bytes, 'deterministic');
      // At 5% the fine-tune's matrices travel as low-rank factors in codec l; --lowbit-codes-only keeps to dense codes.
      assert.ok(decodePayload(bytes).patches.some((p) => p.kind === 'lowrank' && p.codec === 'l'));
      assert.equal(await main([...args.slice(0, -1), join(dir, 'codes.ndiff'), '--lowbit-codes-only'], io), 0);
      const codesOnly = decodePayload(new Uint8Array(await readFile(join(dir, 'codes.ndiff'))));
      assert.ok(codesOnly.patches.length > 0 && codesOnly.patches.every((p) => p.kind === 'dense' && p.codec === 'l'));
      // Top-k with its values as 4-bit codes (--codec l4): sparse patches in codec l, format v6.
      const l4Out = join(dir, 'l4.ndiff');
      assert.equal(await main(['diff', '--model-id', 'mlp', '--base', join(dir, 'v1'), '--target', join(dir, 'v2'), '--budget', '10%', '--codec', 'l4', '--out', l4Out], io), 0, lines.join('\n'));
      const l4 = decodePayload(new Uint8Array(await readFile(l4Out)));
      assert.equal(l4.header.version, 6);
      assert.ok(l4.patches.length > 0 && l4.patches.every((p) => p.kind === 'sparse' && p.codec === 'l' && p.lowbit?.bits === 4));
      lines.length = 0;
      assert.equal(await main(['apply', '--model', join(dir, 'v1'), '--patch', out], io), 0, lines.join('\n'));
      const patched = await openTfjsModelDir(join(dir, 'v1'));
      const got = new MemoryWeightStore(v1.list().map((t) => [t.name, { shape: t.shape, data: patched.values(t.name).slice() }]));
      assert.ok(accuracy(got) > accuracy(v1) + 0.1, `patched ${accuracy(got)} against v1 ${accuracy(v1)}`);
      // --calibrate: every lowbit variant measured on unlabeled inputs, the closest written.
      const calib = clusterData(300, 21);
      saveNpy(join(dir, 'x.npy'), calib.x, [300, FT_INPUTS]);
      const calOut = join(dir, 'cal.ndiff');
      const json = join(dir, 'cal.json');
      lines.length = 0;
      const progress: string[] = [];
      const cio = { ...io, progress: (l: string) => progress.push(l) };
      assert.equal(await main([...args.slice(0, -1), calOut, '--calibrate', join(dir, 'x.npy'), '--metrics-out', json], cio), 0, lines.join('\n'));
      const metrics = JSON.parse(await readFile(json, 'utf8')) as { method: string; calibration: { examples: number; chosen: string; candidates: { name: string; bytes: number; loss: number; agreement?: number }[] } };
      assert.equal(metrics.calibration.examples, 300);
      assert.equal(metrics.calibration.candidates.length, 7);
      assert.ok(metrics.calibration.candidates.some((c) => c.name === "lowbit (rounded against the inputs, codes only)"));
      // A classifier: the closest is the one agreeing most with v2's decisions, the lower loss breaking a tie.
      const measured = metrics.calibration.candidates.filter((c) => Number.isFinite(c.loss));
      assert.ok(measured.every((c) => typeof c.agreement === 'number'), 'each candidate\'s agreement is reported');
      const mostAgreeing = Math.max(...measured.map((c) => c.agreement as number));
      const best = Math.min(...measured.filter((c) => c.agreement === mostAgreeing).map((c) => c.loss));
      const chosen = metrics.calibration.candidates.find((c) => c.name === metrics.calibration.chosen);
      assert.equal(chosen?.agreement, mostAgreeing, 'the closest candidate is the one written');
      assert.equal(chosen?.loss, best, 'the lower loss breaks a tie');
      assert.ok(metrics.calibration.candidates.every((c) => c.bytes <= Math.floor(0.05 * storedModelBytes(v1))));
      assert.match(progress.join('\n'), /calibrating on 300 inputs .*\n(.*\n)*  chose lowbit \(/);
      // --method auto adds top-k, which loses on a fine-tune; without inputs it is a usage error.
      const autoJson = join(dir, 'auto.json');
      assert.equal(await main([...args.slice(0, 8), '5%', '--method', 'auto', '--out', join(dir, 'auto.ndiff'), '--calibrate', join(dir, 'x.npy'), '--metrics-out', autoJson], cio), 0, lines.join('\n'));
      const auto = JSON.parse(await readFile(autoJson, 'utf8')) as typeof metrics;
      assert.deepEqual(auto.calibration.candidates.map((c) => c.name).slice(-1), ['top-k']);
      assert.equal(auto.method, 'lowbit');
      const topkLoss = auto.calibration.candidates.at(-1)?.loss as number;
      assert.ok(auto.calibration.candidates.slice(0, -1).every((c) => c.loss < topkLoss), 'every lowbit variant is closer to v2 than top-k');
      lines.length = 0;
      assert.equal(await main([...args.slice(0, 8), '5%', '--method', 'auto', '--out', join(dir, 'x.ndiff')], io), 2);
      assert.match(lines.join('\n'), /--method auto measures every candidate on inputs: add --calibrate INPUTS/);
      assert.equal(await main([...args.slice(0, 8), '5%', '--method', 'topk', '--out', join(dir, 'y.ndiff'), '--calibrate', join(dir, 'x.npy')], io), 2);
      assert.match(lines.join('\n'), /top-k alone has nothing to choose/);
      // Without --method, --calibrate chooses among lowbit's variants (the default with inputs).
      progress.length = 0;
      assert.equal(await main([...args.slice(0, 8), '5%', '--out', join(dir, 'z.ndiff'), '--calibrate', join(dir, 'x.npy')], cio), 0, lines.join('\n'));
      assert.match(progress.join('\n'), /method lowbit \(the default: its variant chosen on the --calibrate inputs/);
      assert.deepEqual(new Uint8Array(await readFile(join(dir, 'z.ndiff'))), new Uint8Array(await readFile(calOut)), 'the same payload as --method lowbit --calibrate');
      // Inputs the model does not take: a data error naming both shapes, nothing written.
      await mkdir(join(dir, 'bad'));
      saveNpy(join(dir, 'bad', 'x.npy'), new Float32Array(70), [10, 7]);
      lines.length = 0;
      assert.equal(await main([...args.slice(0, -1), join(dir, 'bad.ndiff'), '--calibrate', join(dir, 'bad')], io), 8);
      assert.match(lines.join('\n'), /--calibrate .*bad: inputs are \[7\] per example but the model takes \[32\]/);
      await assert.rejects(readFile(join(dir, 'bad.ndiff')), /ENOENT/);
      // ndiff train --method lowbit --teacher: distilled on the same unlabeled inputs.
      const trained = join(dir, 'trained.ndiff');
      lines.length = 0;
      assert.equal(await main(['train', '--model-id', 'mlp', '--base', join(dir, 'v1'), '--teacher', join(dir, 'v2'), '--train', join(dir, 'x.npy'), '--method', 'lowbit', '--budget', '5%', '--epochs', '2', '--tune', 'off', '--out', trained, '--metrics-out', join(dir, 'trained.json'), '--eval', join(dir, 'x.npy')], cio), 0, lines.join('\n'));
      const trainedBytes = new Uint8Array(await readFile(trained));
      assert.ok(trainedBytes.length <= Math.floor(0.05 * storedModelBytes(v1)));
      assert.equal(decodePayload(trainedBytes).header.method, 'lowbit');
      assert.match(progress.join('\n'), /lowbit: post hoc \d+ bytes/);
      // ndiff train --method auto: every candidate trained, the best on validation written.
      const autoTrained = join(dir, 'auto-trained.ndiff');
      const autoMetrics = join(dir, 'auto-trained.json');
      assert.equal(await main(['train', '--model-id', 'mlp', '--base', join(dir, 'v1'), '--teacher', join(dir, 'v2'), '--train', join(dir, 'x.npy'), '--method', 'auto', '--budget', '5%', '--epochs', '2', '--tune', 'off', '--out', autoTrained, '--metrics-out', autoMetrics, '--eval', join(dir, 'x.npy')], cio), 0, lines.join('\n'));
      const am = JSON.parse(await readFile(autoMetrics, 'utf8')) as { method: string; trainSeconds: number; auto: { chosen: string; candidates: { method: string; score?: number; bytes?: number; seconds: number }[] } };
      // The run's time is every candidate's, not only the chosen one's.
      assert.ok(Math.abs(am.trainSeconds - am.auto.candidates.reduce((t, c) => t + c.seconds, 0)) < 1e-6, `trainSeconds ${am.trainSeconds}`);
      assert.deepEqual(am.auto.candidates.map((c) => c.method), ['lowbit', 'sparse', 'lora', 'sparse-lora', 'topk-retrain']);
      const top = Math.max(...am.auto.candidates.map((c) => c.score ?? -Infinity));
      assert.equal(am.auto.candidates.find((c) => c.method === am.auto.chosen)?.score, top);
      assert.equal(am.method, am.auto.chosen);
      assert.equal(new Uint8Array(await readFile(autoTrained)).length, am.auto.candidates.find((c) => c.method === am.auto.chosen)?.bytes);
      // ndiff report reads what both runs wrote: a lowbit row beside the chosen candidate's.
      lines.length = 0;
      assert.equal(await main(['report', join(dir, 'trained.json'), autoMetrics, '--out', join(dir, 'report')], io), 0, lines.join('\n'));
      const md = await readFile(join(dir, 'report', 'report.md'), 'utf8');
      assert.match(md, /\| lowbit \(teacher\) \| 5% \|/);
      assert.match(md, new RegExp(`\\| ${am.auto.chosen} \\(teacher; auto's choice of 5\\) \\| 5% \\|`));
      // A lowbit budget must be a size, and top-k's codec is not lowbit's.
      lines.length = 0;
      assert.equal(await main([...args.slice(0, 8), 'all', ...args.slice(9)], io), 2);
      assert.match(lines.join('\n'), /--method lowbit carries changes within a byte budget/);
      assert.equal(await main([...args, '--codec', 'i8'], io), 2);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
