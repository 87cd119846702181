/**
 * Low-bit codes on a quantized store (issue #64, deliverable 4): a uint8 model's change carried as
 * codec-l codes whose scales are whole numbers of grid steps, so applying adds `code × steps` to
 * each stored integer (clamped at the ends of the range), post hoc and trained.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { BudgetError, NeuralDiffError, UsageError } from '../src/core/errors.ts';
import { fromHalfBits } from '../src/core/float16.ts';
import { affineStep, snapValue, type AffineGrid, type IntegerGrid } from '../src/core/grid.ts';
import { getHasher } from '../src/core/hasher.ts';
import type { TensorPatch } from '../src/core/format.ts';
import type { WeightStore } from '../src/core/weight-store.ts';
import { storedModelBytes } from '../src/diff/build.ts';
import { lowbitFromDeltas, quantizeLowBit, type LowBitOptions } from '../src/lowbit-diff/encoder.ts';
import { gridSteps, quantizeOnGrid } from '../src/lowbit-diff/grid-codes.ts';
import { applyToModelDir } from '../src/io/tfjs/folder-update.ts';
import { fileSystemIO, openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { evaluate } from '../src/train/data.ts';
import { setModelWeights } from '../src/engine/model-weights.ts';
import { modelToStore } from '../src/engine/model-weights.ts';
import type { MnistSplits } from '../examples/lib/mnist-task.ts';
import { trainDiff } from '../src/train/train-diff.ts';
import { LowBitScales } from '../src/lowbit-diff/trainer.ts';
import type { LowBit } from '../src/core/lowbit.ts';
import { tempDir } from './helpers/dirs.ts';
import { disposeSplits, quantizedMnist } from './helpers/quantized-mnist.ts';

/** A seeded uniform in [0, 1). */
function random(seed: number): () => number {
  let s = seed;
  return () => (s = (s * 16807) % 2147483647) / 2147483647;
}

const grid: AffineGrid = { dtype: 'uint8', scale: 0.003921568859368563, min: -0.5 };
/** 600 stored uint8 values (some at the ends of the range) and a change of -3 to 3 grid steps, mostly under one, not whole ones. */
function tensorOnGrid(): { w0: Float32Array; delta: Float32Array } {
  const r = random(7);
  const w0 = Float32Array.from({ length: 600 }, (_, i) => Math.fround((i < 20 ? 0 : i < 40 ? 255 : Math.floor(r() * 256)) * grid.scale + grid.min));
  // A fine-tune's change: most values within a step, a few up to 3 steps.
  const delta = Float32Array.from({ length: 600 }, () => Math.fround((r() * 2 - 1) ** 3 * 3 * grid.scale));
  return { w0, delta };
}

/** Each value's stored step after the device adds `change` (the float32 sum, rounded onto the grid). */
function landedSteps(w0: Float32Array, change: Float32Array, g: IntegerGrid): Int32Array {
  return Int32Array.from(w0, (w, k) => affineStep(snapValue(Math.fround(w + change[k]), g), g));
}

describe('codes in whole grid steps (quantizeOnGrid)', () => {
  test('every stored integer moves by code x steps, clamped at the ends of the range', () => {
    const { w0, delta } = tensorOnGrid();
    const q0 = gridSteps(w0, grid);
    for (const bits of [1, 2, 3, 4, 8]) {
      for (const [group, count] of [[600, 1], [1, 6], [100, 6]]) {
        const q = quantizeOnGrid(delta, w0, grid, bits, group, count);
        const scales = Float64Array.from(q.lowbit.scales, (h) => fromHalfBits(h) * 2 ** q.lowbit.exponent);
        const after = landedSteps(w0, q.decoded, grid);
        for (let k = 0; k < w0.length; k++) {
          const j = Math.floor(k / group) % count;
          const m = q.steps[j];
          const code = scales[j] > 0 ? Math.round(q.decoded[k] / scales[j]) : 0;
          const want = Math.min(255, Math.max(0, q0[k] + code * m));
          if (after[k] !== want) assert.fail(`${bits} bits, ${count} scales: value ${k} landed on step ${after[k]}, expected ${q0[k]} + ${code} x ${m}`);
        }
      }
    }
  });

  test('changes of a few steps: whole steps leave no more error on the grid than scales chosen for the float change, whose estimate misses the rounding', () => {
    const { w0, delta } = tensorOnGrid();
    for (const bits of [1, 2, 3, 4, 8]) {
      const free = quantizeLowBit(delta, bits, 1, 6);
      let freeError = 0;
      const landed = landedSteps(w0, free.decoded, grid);
      for (let k = 0; k < w0.length; k++) freeError += (delta[k] - (Math.fround(landed[k] * grid.scale + grid.min) - w0[k])) ** 2;
      const whole = quantizeOnGrid(delta, w0, grid, bits, 1, 6);
      assert.ok(whole.squaredError <= freeError * (1 + 1e-6), `${bits} bits: ${whole.squaredError} on the grid with whole steps, ${freeError} with free scales`);
      if (bits >= 3) assert.ok(free.squaredError < 0.5 * freeError, `${bits} bits: free scales estimated ${free.squaredError} before the rounding, ${freeError} after`);
    }
  });

  test('a base off its grid, or of another length, is refused with a typed error', () => {
    const { w0, delta } = tensorOnGrid();
    const off = w0.slice();
    off[5] += grid.scale / 3;
    assert.throws(() => quantizeOnGrid(delta, off, grid, 4, 600, 1, undefined, undefined, 'dense/kernel'), (e: unknown) => e instanceof UsageError && /dense\/kernel: .*value 5 is .* off the grid/.test(e.message));
    assert.throws(() => quantizeOnGrid(delta, w0.subarray(1), grid, 4, 600, 1), UsageError);
  });
});

interface ManifestEntry { name: string; dtype: string; quantization?: { dtype: string; scale?: number; min?: number } }
async function manifest(dir: string): Promise<ManifestEntry[]> {
  const json = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as { weightsManifest: { weights: ManifestEntry[] }[] };
  return json.weightsManifest.flatMap((g) => g.weights);
}
/** Every file of a folder, by name: what an apply must leave untouched when it refuses. */
async function snapshot(dir: string): Promise<Map<string, Buffer>> {
  return new Map(await Promise.all((await readdir(dir)).map(async (f) => [f, await readFile(join(dir, f))] as [string, Buffer])));
}

/**
 * The stored steps of the folder after the apply against before: for a dense patch in whole grid
 * steps, each moved by code x steps (clamped); every patched value on its grid.
 */
function checkOnGrid(before: WeightStore, after: WeightStore, patches: readonly TensorPatch[]): number {
  let whole = 0;
  for (const p of patches) {
    const g = before.grid?.(p.name) as IntegerGrid;
    assert.equal(g.dtype, 'uint8', `${p.name} is stored as uint8`);
    assert.deepEqual(after.grid?.(p.name), g, `${p.name} keeps its grid`);
    const w0 = before.values(p.name);
    const w1 = after.values(p.name);
    for (let i = 0; i < w1.length; i++) if (!Object.is(snapValue(w1[i], g), w1[i])) assert.fail(`${p.name}[${i}] = ${w1[i]} is off its grid`);
    if (p.kind !== 'dense' || p.codec !== 'l' || !p.lowbit) continue;
    whole++;
    const lb = p.lowbit;
    const scales = Float64Array.from(lb.scales, (h) => fromHalfBits(h) * 2 ** lb.exponent);
    for (let k = 0; k < w0.length; k++) {
      const s = scales[Math.floor(k / lb.group) % scales.length];
      const m = Math.round(s / g.scale);
      assert.ok(Math.abs(s / g.scale - m) * 2 ** lb.bits < 0.5, `${p.name}: scale ${s} is ${s / g.scale} grid steps, not a whole number`);
      const code: number = s > 0 ? Math.round(p.values[k] / s) : 0;
      const want = Math.min(255, Math.max(0, affineStep(w0[k], g) + code * m));
      if (affineStep(w1[k], g) !== want) assert.fail(`${p.name}[${k}]: stored ${affineStep(w1[k], g)}, expected ${affineStep(w0[k], g)} + ${code} x ${m} steps`);
    }
  }
  return whole;
}

/** The post-hoc lowbit payload from the folder's store to the teacher's weights (teacher − base). */
function lowbitDiff(hasher: Awaited<ReturnType<typeof getHasher>>, base: WeightStore, teacher: WeightStore, options: LowBitOptions) {
  const deltas = new Map<string, Float32Array>();
  for (const t of base.list()) {
    if (t.patchable === false) continue;
    const w0 = base.values(t.name);
    const w1 = teacher.values(t.name);
    deltas.set(t.name, Float32Array.from(w0, (x, i) => w1[i] - x));
  }
  return lowbitFromDeltas(hasher, base, deltas, options);
}

describe('lowbit on a uint8 TF.js folder: post hoc and trained', () => {
  let splits: MnistSplits;
  let root: string;
  let teacher: tf.LayersModel;

  before(async () => {
    ({ splits, root } = await quantizedMnist(['uint8']));
    // The new version, trained elsewhere in float32 from the uint8 model: off the grid.
    teacher = await tf.loadLayersModel(fileSystemIO(join(root, 'uint8')));
    await trainDiff(teacher, splits.updateTrain, { method: 'full', budgetBytes: 0, epochs: 2, seed: 5, tune: 'off', validation: 0, store: 'float32', allowWorse: true });
  });
  after(() => {
    teacher?.dispose();
    disposeSplits(splits);
  });

  test('post hoc: whole grid steps, the folder stays uint8 and predicts what the payload promised, within budget, same bytes twice', async () => {
    const hasher = await getHasher();
    const disk = await openTfjsModelDir(join(root, 'uint8'));
    const budgetBytes = Math.floor(storedModelBytes(disk) * 0.05);
    const target = modelToStore(teacher);
    const res = lowbitDiff(hasher, disk, target, { budgetBytes, modelId: 'digits' });
    assert.ok(res.bytes.length <= budgetBytes, `${res.bytes.length} > ${budgetBytes}`);
    assert.ok(res.allocation.length > 0, 'the payload carries some change');
    assert.deepEqual(lowbitDiff(hasher, disk, target, { budgetBytes, modelId: 'digits' }).bytes, res.bytes, 'same inputs, same bytes');
    // What the payload promised, on the model: its target values.
    const promised = await tf.loadLayersModel(fileSystemIO(join(root, 'uint8')));
    setModelWeights(promised, (n) => res.targetValues.get(n));
    const want = evaluate(promised, splits.eval);
    promised.dispose();
    const dir = join(await tempDir(), 'device');
    await cp(join(root, 'uint8'), dir, { recursive: true });
    const entries = await manifest(dir);
    await applyToModelDir(dir, res.bytes, { state: null });
    assert.deepEqual((await manifest(dir)).map((e) => [e.name, e.dtype, e.quantization?.dtype]), entries.map((e) => [e.name, e.dtype, e.quantization?.dtype]), 'dtypes and quantization kept');
    const whole = checkOnGrid(disk, await openTfjsModelDir(dir), res.payload.patches);
    assert.ok(whole > 0, 'some tensor carried as codes in whole grid steps');
    const loaded = await tf.loadLayersModel(fileSystemIO(dir));
    const got = evaluate(loaded, splits.eval);
    loaded.dispose();
    assert.deepEqual(Array.from(got.predictions), Array.from(want.predictions), 'the folder loaded by stock tfjs predicts what the payload promised');
    // Codes quantized for the float change, the sums left to the device's rounding: no closer at these bytes.
    const free = lowbitDiff(hasher, disk, target, { budgetBytes, modelId: 'digits', gridCodes: false });
    assert.ok(res.squaredError <= free.squaredError * 1.25, `whole steps ${res.squaredError}, free scales ${free.squaredError}`);
  });

  test('an error measured on the model sees the change the device makes: every carried change lands on the grid', async () => {
    const hasher = await getHasher();
    const disk = await openTfjsModelDir(join(root, 'uint8'));
    let seen = 0;
    const measure = (name: string, delta: Float32Array): number => {
      const g = disk.grid?.(name) as IntegerGrid;
      const w0 = disk.values(name);
      // (Within a thousandth of a step: the change is a float32 difference of two grid values.)
      for (let i = 0; i < delta.length; i++) {
        const x = w0[i] + delta[i];
        if (Math.abs(x - snapValue(x, g)) > 1e-3 * g.scale) assert.fail(`${name}[${i}]: ${w0[i]} + ${delta[i]} is ${Math.abs(x - snapValue(x, g)) / g.scale} steps off the grid`);
      }
      seen++;
      return delta.reduce((a, x) => a + x * x, 0);
    };
    lowbitDiff(hasher, disk, modelToStore(teacher), { budgetBytes: Math.floor(storedModelBytes(disk) * 0.05), measure });
    assert.ok(seen > 20, `${seen} options measured`);
  });

  test('refused: a payload for the uint8 folder on the float32 one (typed, folder untouched); a budget under the header', async () => {
    const hasher = await getHasher();
    const disk = await openTfjsModelDir(join(root, 'uint8'));
    const res = lowbitDiff(hasher, disk, modelToStore(teacher), { budgetBytes: Math.floor(storedModelBytes(disk) * 0.05) });
    const dir = join(await tempDir(), 'f32');
    await cp(join(root, 'f32'), dir, { recursive: true });
    const files = await snapshot(dir);
    await assert.rejects(applyToModelDir(dir, res.bytes, { state: null }), (e: unknown) => e instanceof NeuralDiffError && /fetch|full|another/i.test(e.message));
    assert.deepEqual(await snapshot(dir), files, 'the float32 folder is untouched');
    assert.throws(() => lowbitDiff(hasher, disk, modelToStore(teacher), { budgetBytes: 40 }), BudgetError);
  });

  test('training the scales keeps them whole grid steps: a multiplier of 1.3 moves each to a whole number of steps', async () => {
    const hasher = await getHasher();
    const disk = await openTfjsModelDir(join(root, 'uint8'));
    const post = lowbitDiff(hasher, disk, modelToStore(teacher), { budgetBytes: Math.floor(storedModelBytes(disk) * 0.05), lowRank: false });
    const patches = post.payload.patches.filter((p) => p.kind === 'dense');
    assert.ok(patches.length > 0);
    const param = new LowBitScales(new Map(patches.map((p) => [p.name, { shape: [...p.shape], values: disk.values(p.name) }])), patches);
    try {
      for (const v of tf.engine().state.registeredVariables ? Object.values(tf.engine().state.registeredVariables) : []) if (v.name.startsWith('nd_lowbit_s/')) v.assign(tf.fill(v.shape, 1.3));
      const specs = param.specs();
      let moved = 0;
      for (const sp of specs) {
        const lb = (sp as { lowbit: LowBit }).lowbit;
        const g = disk.grid?.(sp.name) as IntegerGrid;
        const before = patches.find((p) => p.name === sp.name)?.lowbit as LowBit;
        for (let j = 0; j < lb.scales.length; j++) {
          const steps = (fromHalfBits(lb.scales[j]) * 2 ** lb.exponent) / g.scale;
          assert.ok(Math.abs(steps - Math.round(steps)) * 2 ** lb.bits < 0.5, `${sp.name} scale ${j}: ${steps} grid steps`);
          const was = (fromHalfBits(before.scales[j]) * 2 ** before.exponent) / g.scale;
          if (Math.round(steps) !== Math.round(was)) moved++;
        }
      }
      assert.ok(moved > 0, 'the multipliers moved some scale');
    } finally {
      param.dispose();
    }
  });

  test('a step count whose float16 strays from whole steps (hundreds of steps of a uint16 grid) keeps its post-hoc scale while training', () => {
    const g16: AffineGrid = { dtype: 'uint16', scale: 2 / 65535, min: -1 };
    const r = random(11);
    const w0 = Float32Array.from({ length: 256 }, () => Math.fround(Math.floor(10000 + r() * 40000) * g16.scale + g16.min));
    const delta = Float32Array.from({ length: 256 }, () => Math.fround((r() * 2 - 1) * 500 * g16.scale));
    const q = quantizeOnGrid(delta, w0, g16, 8, 256, 1);
    const patch = { kind: 'dense', name: 'wide/kernel', shape: [256], codec: 'l', lowbit: q.lowbit, values: q.decoded, grid: g16, baseDigest: '', targetDigest: '' } as unknown as TensorPatch;
    const param = new LowBitScales(new Map([['wide/kernel', { shape: [256], values: w0 }]]), [patch]);
    try {
      const v = Object.values(tf.engine().state.registeredVariables).find((x) => x.name === 'nd_lowbit_s/wide/kernel') as tf.Variable;
      v.assign(tf.fill([1], 97.3));
      const lb = (param.specs()[0] as { lowbit: LowBit }).lowbit;
      const steps = (fromHalfBits(lb.scales[0]) * 2 ** lb.exponent) / g16.scale;
      assert.ok(Math.abs(steps - Math.round(steps)) * 128 <= 0.25, `${steps} grid steps: code 127 would land ${Math.abs(steps - Math.round(steps)) * 127} steps off`);
    } finally {
      param.dispose();
    }
  });

  test('trained toward the teacher: scales in whole grid steps, the applied folder predicts what the trainer reported, same bytes twice', async () => {
    const disk = await openTfjsModelDir(join(root, 'uint8'));
    const budgetBytes = Math.floor(storedModelBytes(disk) * 0.05);
    const run = async () => {
      const model = await tf.loadLayersModel(fileSystemIO(join(root, 'uint8')));
      try {
        return await trainDiff(model, { x: splits.updateTrain.x }, { method: 'lowbit', teacher, budgetBytes, epochs: 1, seed: 3, base: disk, eval: splits.eval, tune: 'off', allowWorse: true, threads: 1 });
      } finally {
        model.dispose();
      }
    };
    const res = await run();
    assert.ok(res.bytes.length <= budgetBytes, `${res.bytes.length} > ${budgetBytes}`);
    const dir = join(await tempDir(), 'device');
    await cp(join(root, 'uint8'), dir, { recursive: true });
    const entries = await manifest(dir);
    await applyToModelDir(dir, res.bytes, { state: null });
    assert.deepEqual((await manifest(dir)).map((e) => [e.name, e.dtype, e.quantization?.dtype]), entries.map((e) => [e.name, e.dtype, e.quantization?.dtype]), 'dtypes and quantization kept');
    assert.ok(checkOnGrid(disk, await openTfjsModelDir(dir), res.payload.patches) > 0, 'some tensor carried as codes in whole grid steps');
    const loaded = await tf.loadLayersModel(fileSystemIO(dir));
    const got = evaluate(loaded, splits.eval);
    loaded.dispose();
    assert.deepEqual(Array.from(got.predictions), Array.from(res.predictions as Int32Array), 'the folder predicts what the trainer reported');
    assert.deepEqual((await run()).bytes, res.bytes, 'same inputs and seed, same bytes');
  });
});
