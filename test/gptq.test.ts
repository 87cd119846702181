/**
 * Rounding a change against its layer's inputs (src/lowbit-diff/gptq.ts) and the input moments it reads
 * (src/train/calibrate.ts inputMoments).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { inverseCholesky, outputError, roundAgainstInputs, type InputMoments } from '../src/lowbit-diff/gptq.ts';
import { quantizeLowBit, lowbitDiff, scaleLayout } from '../src/lowbit-diff/encoder.ts';
import { inputMoments, outputImportance } from '../src/train/calibrate.ts';
import { getHasher } from '../src/core/hasher.ts';
import { MemoryWeightStore } from '../src/core/weight-store.ts';
import { applyPayload } from '../src/apply/apply.ts';
import { lowBitScales } from '../src/core/lowbit.ts';
import { seeded } from './helpers/graph-model.ts';

/** Inputs whose features are correlated (mixed from a few sources), as a layer's inputs are. */
function correlatedInputs(n: number, dim: number, seed: number): Float32Array {
  const r = seeded(seed);
  const sources = 4;
  const mix = Float32Array.from({ length: sources * dim }, () => r() * 2 - 1);
  const x = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) {
    const s = Array.from({ length: sources }, () => r() * 2 - 1);
    for (let j = 0; j < dim; j++) {
      let v = 0.05 * (r() - 0.5);
      for (let k = 0; k < sources; k++) v += s[k] * mix[k * dim + j];
      x[i * dim + j] = v;
    }
  }
  return x;
}

function momentsOf(x: Float32Array, n: number, dim: number): InputMoments {
  const h = new Float64Array(dim * dim);
  for (let i = 0; i < n; i++) for (let a = 0; a < dim; a++) for (let b = 0; b < dim; b++) h[a * dim + b] += (x[i * dim + a] * x[i * dim + b]) / n;
  return { rows: dim, hessian: h, samples: n };
}

describe('rounding a change against its inputs', () => {
  test('the outputs on the inputs move less than with nearest rounding, at the same layout and scales; the codes decode as the device decodes them', () => {
    const [n, rows, cols] = [400, 24, 10];
    const x = correlatedInputs(n, rows, 3);
    const m = momentsOf(x, n, rows);
    const r = seeded(5);
    const delta = Float32Array.from({ length: rows * cols }, () => (r() - 0.5) * 0.2);
    const u = inverseCholesky(m);
    assert.ok(u, 'the damped moment is positive definite');
    for (const bits of [1, 2, 3, 4]) {
      for (const layout of ['tensor', 'first', 'last'] as const) {
        const l = scaleLayout([rows, cols], layout) as { group: number; count: number };
        const nearest = quantizeLowBit(delta, bits, l.group, l.count);
        const rounded = roundAgainstInputs(delta, nearest, rows, u as Float64Array);
        assert.deepEqual(rounded.lowbit, nearest.lowbit);
        const scales = lowBitScales(rounded.lowbit);
        const qmax = bits === 1 ? 1 : 2 ** (bits - 1) - 1;
        for (let k = 0; k < delta.length; k++) {
          const s = scales[Math.floor(k / l.group) % l.count];
          const code = s > 0 ? rounded.decoded[k] / s : 0;
          assert.ok(Number.isInteger(code) && code >= (bits === 1 ? -1 : -qmax - 1) && code <= qmax && (bits !== 1 || code !== 0), `value ${k} is a code of ${bits} bits times its scale`);
        }
        const before = outputError(delta, nearest.decoded, m);
        const after = outputError(delta, rounded.decoded, m);
        assert.ok(after < before, `${bits} bits, ${layout}: output error ${after} against nearest rounding's ${before}`);
      }
    }
  });

  test('outputError is the mean squared change of the layer\'s outputs on the inputs', () => {
    const [n, rows, cols] = [50, 6, 4];
    const x = correlatedInputs(n, rows, 9);
    const m = momentsOf(x, n, rows);
    const r = seeded(2);
    const d = Float32Array.from({ length: rows * cols }, () => r() - 0.5);
    const q = Float32Array.from(d, (v) => Math.round(v * 4) / 4);
    let want = 0;
    for (let i = 0; i < n; i++) for (let j = 0; j < cols; j++) {
      let y = 0;
      for (let a = 0; a < rows; a++) y += x[i * rows + a] * (d[a * cols + j] - q[a * cols + j]);
      want += (y * y) / n;
    }
    assert.ok(Math.abs(outputError(d, q, m) - want) <= 1e-9 * (1 + want));
  });

  test('lowbit with input moments: the payload meets the budget and the device holds what the builder computed', async () => {
    const [rows, cols] = [24, 10];
    const x = correlatedInputs(300, rows, 4);
    const m = momentsOf(x, 300, rows);
    const r = seeded(8);
    const w0 = Float32Array.from({ length: rows * cols }, () => r() - 0.5);
    const v1 = new MemoryWeightStore([['dense/kernel', { shape: [rows, cols], data: w0 }], ['dense/bias', { shape: [cols], data: new Float32Array(cols) }]]);
    const v2 = new MemoryWeightStore([['dense/kernel', { shape: [rows, cols], data: Float32Array.from(w0, (v) => v + (r() - 0.5) * 0.1) }], ['dense/bias', { shape: [cols], data: Float32Array.from({ length: cols }, () => r() * 0.1) }]]);
    const hasher = await getHasher();
    const budgetBytes = 600;
    const res = lowbitDiff(hasher, v1, v2, { budgetBytes, inputs: new Map([['dense/kernel', m]]), lowRank: false, outliers: false });
    assert.ok(res.bytes.length <= budgetBytes);
    const device = v1.clone();
    await applyPayload(device, res.bytes);
    for (const [name, values] of res.targetValues) assert.deepEqual(device.values(name), values);
    // Its kernel's output error is below nearest rounding's at the same widths and layouts.
    const plain = lowbitDiff(hasher, v1, v2, { budgetBytes, lowRank: false, outliers: false, widths: res.allocation.filter((a) => a.name === 'dense/kernel').map((a) => a.bits), layouts: res.allocation.filter((a) => a.name === 'dense/kernel').map((a) => a.layout as 'tensor') });
    const d = Float32Array.from(v2.values('dense/kernel'), (v, i) => v - w0[i]);
    const e = (vals: ReadonlyMap<string, Float32Array>) => outputError(d, Float32Array.from(vals.get('dense/kernel') as Float32Array, (v, i) => v - w0[i]), m);
    assert.ok(e(res.targetValues) < e(plain.targetValues), `${e(res.targetValues)} against ${e(plain.targetValues)}`);
  });
});

describe('input moments of a model\'s layers', () => {
  test('dense and convolution layers (same and valid padding, strides, dilation): the layer\'s mean squared output for any kernel is tr(W\' H W)', () => {
    const input = tf.input({ shape: [12, 5] });
    const c1 = tf.layers.conv1d({ name: 'c1', filters: 6, kernelSize: 3, strides: 2, padding: 'same', useBias: false }).apply(input) as tf.SymbolicTensor;
    const c2 = tf.layers.conv1d({ name: 'c2', filters: 4, kernelSize: 3, dilationRate: 2, padding: 'valid', useBias: false }).apply(c1) as tf.SymbolicTensor;
    const r2 = tf.layers.reshape({ targetShape: [2, 1, 4] }).apply(c2) as tf.SymbolicTensor;
    const c3 = tf.layers.conv2d({ name: 'c3', filters: 3, kernelSize: 2, padding: 'same', useBias: false }).apply(r2) as tf.SymbolicTensor;
    const flat = tf.layers.flatten().apply(c3) as tf.SymbolicTensor;
    const out = tf.layers.dense({ name: 'd', units: 3, useBias: false }).apply(flat) as tf.SymbolicTensor;
    const model = tf.model({ inputs: input, outputs: out });
    const n = 40;
    const r = seeded(1);
    const x = tf.tensor3d(Float32Array.from({ length: n * 12 * 5 }, () => r() - 0.5), [n, 12, 5]);
    try {
      const moments = inputMoments(model, x);
      assert.deepEqual([...moments.keys()].sort(), ['c1/kernel', 'c2/kernel', 'c3/kernel', 'd/kernel']);
      // Batches of another size sum to the same moments; a cap on the patches takes every k-th across batches.
      const other = inputMoments(model, x, { batchSize: 7 });
      for (const [name, m] of moments) {
        const o = other.get(name) as InputMoments;
        assert.equal(o.samples, m.samples);
        for (let i = 0; i < m.hessian.length; i++) assert.ok(Math.abs(o.hessian[i] - m.hessian[i]) <= 1e-5 * (1 + Math.abs(m.hessian[i])), `${name}: batches of 7 and of 16`);
      }
      const capped = inputMoments(model, x, { batchSize: 7, maxSamples: 30 });
      assert.equal(moments.get('c1/kernel')?.samples, n * 6);
      assert.equal(capped.get('c1/kernel')?.samples, 30);
      for (const name of ['c1', 'c2', 'c3', 'd']) {
        const layer = model.getLayer(name);
        const m = moments.get(`${name}/kernel`) as InputMoments;
        const kernel = layer.getWeights()[0].clone();
        // Another kernel of the same shape: the layer's output with it, squared, averaged over positions.
        const w = Float32Array.from({ length: kernel.size }, () => r() - 0.5);
        layer.setWeights([tf.tensor(w, kernel.shape)]);
        const probe = tf.model({ inputs: input, outputs: layer.output as tf.SymbolicTensor });
        const y = probe.predict(x) as tf.Tensor;
        const cols = kernel.shape[kernel.shape.length - 1] as number;
        const positions = y.size / cols;
        const want = (tf.sum(tf.square(y)).dataSync()[0]) / positions;
        assert.equal(m.rows, kernel.size / cols);
        const got = outputError(w, new Float32Array(w.length), m);
        layer.setWeights([kernel]); // the next layers' inputs, as the moments saw them
        assert.ok(Math.abs(got - want) <= 1e-4 * want, `${name}: tr(W'HW) ${got} against the layer's ${want}`);
      }
    } finally {
      x.dispose();
      model.dispose();
    }
  });

  test('the moments and the output importance hand tf.tidy no arrays of values (it walks every element of what it is given back, looking for tensors) and leave no tensor behind', () => {
    const input = tf.input({ shape: [6, 4] });
    const c = tf.layers.conv1d({ filters: 8, kernelSize: 3, padding: 'same' }).apply(input) as tf.SymbolicTensor;
    const out = tf.layers.dense({ units: 3, activation: 'softmax' }).apply(tf.layers.flatten().apply(c) as tf.SymbolicTensor) as tf.SymbolicTensor;
    const model = tf.model({ inputs: input, outputs: out });
    const r = seeded(4);
    const x = tf.tensor3d(Float32Array.from({ length: 12 * 6 * 4 }, () => r() - 0.5), [12, 6, 4]);
    const engine = tf.engine() as unknown as { tidy: (...args: unknown[]) => unknown };
    const tidy = engine.tidy;
    const returned: string[] = [];
    engine.tidy = function (...args: unknown[]) {
      const result = tidy.apply(this, args);
      if (ArrayBuffer.isView(result)) returned.push(`${result.constructor.name} of ${(result as Float32Array).length}`);
      return result;
    };
    try {
      const before = tf.memory().numTensors;
      const moments = inputMoments(model, x);
      const importance = outputImportance(model, x, { examples: 4 });
      assert.equal(tf.memory().numTensors, before, 'no tensor left behind');
      assert.ok(moments.size === 2 && importance.size > 0);
      assert.deepEqual(returned, [], 'arrays of values given back through tf.tidy');
    } finally {
      engine.tidy = tidy;
      x.dispose();
      model.dispose();
    }
  });
});
