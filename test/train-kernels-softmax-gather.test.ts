/**
 * Softmax's gradient and a first-axis Gather's gradient as one kernel each (issue #63,
 * src/engine/kernels/softmax-grad.ts and gather-grad.ts): the SIMD kernels (softmax-gather-grad.c)
 * and their JavaScript twins beside float64 twins on many shapes, with tails that no vector fills;
 * through tf.grad on wasm, the bits of tfjs' own gradients (the chains they replace), in one kernel
 * call where tfjs ran four or five.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { GATHER_GRAD, gatherGradJs, gatherGradReference } from '../src/engine/kernels/gather-grad.ts';
import { SOFTMAX_GRAD, softmaxGradJs, softmaxGradReference } from '../src/engine/kernels/softmax-grad.ts';
import { simdKernelSwitch, trainKernelsUnavailable } from '../src/engine/kernels/train-kernels-simd.ts';
import { asWasm } from '../src/engine/kernels/util.ts';
import { randomValues } from './helpers/kernel-tests.ts';

/** Largest |a - b| relative to the largest |b|; refuses a comparison against zeros. */
function worst(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'sizes differ');
  let d = 0;
  let m = 0;
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  assert.ok(m > 0 && Number.isFinite(d), 'a comparison against zeros or with non-finite values proves nothing');
  return d / m;
}

/** Softmax rows: rank 1 to 4, widths with and without a tail of 1-3 past a vector of 4, the attention's [32, 4, 32, 32]. */
const SOFTMAX_SHAPES = [[1], [3], [4], [5], [2, 7], [3, 8], [6, 33], [2, 3, 13], [4, 1, 64], [1, 130], [2, 2, 2, 3], [32, 4, 32, 32], [9, 4097]];
/** Gathers: [rows, ...inner] of x, and how many indices (inner 1, tails, the transformer's 64 x 64 embedding of 1,024 tokens). */
const GATHER_CASES: [number[], number[]][] = [[[5], [9]], [[7], [1]], [[3, 1], [4]], [[4, 3], [10]], [[10, 4], [3, 5]], [[6, 7], [25]], [[64, 64], [32, 32]], [[2, 2, 3], [8]], [[100, 9], [2, 3, 7]], [[1, 130], [6]], [[50000], [4000]]];

/** `n` indices into `rows` from `seed`, some repeated. */
function ids(n: number, rows: number, seed: number): Int32Array {
  return Int32Array.from(randomValues(n, seed), (v) => Math.min(rows - 1, Math.floor(((v + 1) / 2) * rows)));
}

/** A softmax's output (rows that sum to 1) of `shape` from `seed`. */
function probabilities(shape: number[], seed: number): Float32Array {
  return tf.tidy(() => Float32Array.from(tf.softmax(tf.tensor(Float32Array.from(randomValues(shape.reduce((a, d) => a * d, 1), seed), (v) => 3 * v), shape)).dataSync()));
}

before(async () => {
  await initBackend('wasm');
});

describe('the JavaScript twins beside the float64 twins', () => {
  it('softmax gradient: within float32 rounding of y (dy - sum dy y) on every shape', () => {
    for (const shape of SOFTMAX_SHAPES) {
      const n = shape.reduce((a, d) => a * d, 1);
      const width = shape[shape.length - 1];
      const y = probabilities(shape, n);
      const dy = randomValues(n, n + 1);
      const dx = new Float32Array(n);
      softmaxGradJs(dy, y, dx, width);
      const ref = softmaxGradReference(dy, y, width);
      if (width > 1) assert.ok(worst(dx, ref) < 1e-5, `shape [${shape}]: off by ${worst(dx, ref)}`);
      else assert.ok(dx.every((v) => Math.abs(v) < 1e-6), 'a softmax over one value has no gradient');
    }
  });

  it('gather gradient: each row of dx is the float64 sum of the rows of dy gathered from it, rounded once (the same bits); ids out of range dropped', () => {
    for (const [x, idx] of GATHER_CASES) {
      const rows = x[0];
      const inner = x.slice(1).reduce((a, d) => a * d, 1);
      const n = idx.reduce((a, d) => a * d, 1);
      const indices = ids(n, rows, n + rows);
      if (n > 2) [indices[0], indices[n - 1]] = [-1, rows];
      const dy = randomValues(n * inner, n + 7);
      const dx = new Float32Array(rows * inner);
      gatherGradJs(dy, indices, dx, inner);
      assert.deepEqual(dx, Float32Array.from(gatherGradReference(dy, indices, rows, inner)), `x [${x}], indices [${idx}]`);
    }
  });
});

describe('the registered kernels on wasm: SIMD and JavaScript beside the twins and tfjs\' own gradients', () => {
  it('the SIMD module runs here', () => {
    assert.equal(trainKernelsUnavailable(asWasm(tf.backend())), null);
  });

  /** Run `f` with the SIMD kernels on or off and our gradients on or off (tfjs' own), switches restored. */
  const withSwitches = <T>(simd: boolean, ours: boolean, f: () => T): T => {
    const saved = { ...simdKernelSwitch };
    Object.assign(simdKernelSwitch, { enabled: simd, fuseSoftmaxGrad: ours, fuseGatherGrad: ours });
    try {
      return f();
    } finally {
      Object.assign(simdKernelSwitch, saved);
    }
  };

  it('softmax gradient through tf.grad: SIMD, JavaScript and tfjs\' Multiply, Sum, Multiply, Sub give the same bits, near the float64 twin, on every shape', () => {
    for (const shape of SOFTMAX_SHAPES) {
      const n = shape.reduce((a, d) => a * d, 1);
      const logits = Float32Array.from(randomValues(n, n + 2), (v) => 3 * v);
      const dy = randomValues(n, n + 3);
      const grad = () => tf.tidy(() => {
        const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.softmax(t), tf.tensor(dy, shape))))(tf.tensor(logits, shape));
        return Float32Array.from(g.dataSync());
      });
      const [simd, js, stock] = [withSwitches(true, true, grad), withSwitches(false, true, grad), withSwitches(true, false, grad)];
      const label = `shape [${shape}]`;
      assert.deepEqual(simd, js, `${label}: SIMD and JavaScript`);
      assert.deepEqual(simd, stock, `${label}: ours and tfjs' own gradient`);
      const y = tf.tidy(() => Float32Array.from(tf.softmax(tf.tensor(logits, shape)).dataSync()));
      if (shape[shape.length - 1] > 1) assert.ok(worst(simd, softmaxGradReference(dy, y, shape[shape.length - 1])) < 1e-5, label);
    }
  });

  it('gather gradient through tf.grad: SIMD, JavaScript and tfjs\' Reshape, Transpose, UnsortedSegmentSum, Transpose give the same bits, equal to the float64 twin rounded once', () => {
    for (const [x, idx] of GATHER_CASES) {
      const rows = x[0];
      const inner = x.slice(1).reduce((a, d) => a * d, 1);
      const n = idx.reduce((a, d) => a * d, 1);
      const indices = ids(n, rows, n + 3 * rows);
      const dy = randomValues(n * inner, n + 11);
      const grad = () => tf.tidy(() => {
        const w = tf.tensor(randomValues(rows * inner, 5), x);
        const probe = tf.tensor(dy, [...idx, ...x.slice(1)]);
        const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.gather(t, tf.tensor(indices, idx, 'int32')), probe)))(w);
        return Float32Array.from(g.dataSync());
      });
      const [simd, js, stock] = [withSwitches(true, true, grad), withSwitches(false, true, grad), withSwitches(true, false, grad)];
      const label = `x [${x}], indices [${idx}]`;
      assert.deepEqual(simd, js, `${label}: SIMD and JavaScript`);
      assert.deepEqual(simd, stock, `${label}: ours and tfjs' own gradient`);
      assert.deepEqual(simd, Float32Array.from(gatherGradReference(dy, indices, rows, inner)), `${label}: the float64 twin`);
    }
  });

  it('the gather kernel drops ids outside [0, rows), SIMD and JavaScript alike', () => {
    const run = (simd: boolean) => withSwitches(simd, true, () => tf.tidy(() => {
      const dy = tf.tensor(randomValues(5 * 6, 3), [5, 6]);
      const out = tf.engine().runKernel(GATHER_GRAD, { dy, indices: tf.tensor1d([2, -1, 3, 4, 2], 'int32') }, { shape: [4, 6] }) as tf.Tensor;
      return Float32Array.from(out.dataSync());
    }));
    const dy = randomValues(30, 3);
    const expected = Float32Array.from(gatherGradReference(dy, [2, -1, 3, 4, 2], 4, 6));
    assert.deepEqual(run(true), expected);
    assert.deepEqual(run(false), expected);
    assert.ok(expected.slice(0, 12).every((v) => v === 0) && expected.slice(12).some((v) => v !== 0), 'rows 0 and 1 receive nothing, rows 2 and 3 their ids\' rows');
  });

  it('one kernel call each where tfjs ran four (softmax) and five (gather); on the cpu backend, tfjs\' own gradients', async () => {
    const kernels = async () => {
      const info = await tf.profile(() => {
        const [s, g] = tf.tidy(() => {
          const w = tf.variable(tf.tensor(randomValues(40, 1), [10, 4]));
          const f = () => tf.sum(tf.softmax(tf.reshape(tf.gather(w, tf.tensor1d([1, 3, 3, 9, 0, 2], 'int32')), [3, 8])).square()) as tf.Scalar;
          const { grads } = tf.variableGrads(f, [w]);
          w.dispose();
          return [grads[w.name].shape, Object.keys(grads).length];
        });
        assert.deepEqual([s, g], [[10, 4], 1]);
      });
      return info.kernels.map((k) => k.name);
    };
    const ours = await kernels();
    assert.equal(ours.filter((k) => k === SOFTMAX_GRAD).length, 1, ours.join(' '));
    assert.equal(ours.filter((k) => k === GATHER_GRAD).length, 1, ours.join(' '));
    assert.ok(!ours.includes('UnsortedSegmentSum'), ours.join(' '));
    const theirs = await withSwitches(true, false, kernels);
    assert.ok(theirs.includes('UnsortedSegmentSum') && !theirs.includes(SOFTMAX_GRAD) && !theirs.includes(GATHER_GRAD), theirs.join(' '));
    assert.ok(ours.length <= theirs.length - 6, `${ours.length} kernel calls against ${theirs.length}`);
    await tf.setBackend('cpu');
    try {
      const cpu = await kernels();
      assert.ok(cpu.includes('UnsortedSegmentSum') && !cpu.includes(GATHER_GRAD), cpu.join(' '));
    } finally {
      await initBackend('wasm');
    }
  });
});
