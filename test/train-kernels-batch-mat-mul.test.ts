/**
 * Batched matrix products on wasm (src/engine/kernels/batch-mat-mul.c and .ts): the SIMD kernel, its
 * scalar twin and the stock tfjs-backend-wasm BatchMatMul give the same bits on many shapes (every
 * transpose combination, broadcast batches, sizes not a multiple of 4, size-1 and empty axes, the
 * shared dimension across the stock kernel's blocks of 48, signed zeros, infinities and NaN), and
 * tf.matMul on wasm gives the stock kernel's bits wherever that kernel would run its loop (batches
 * and transposed operands); the attention program trains to the same payload bytes with the kernel
 * on and off.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { UsageError } from '../src/core/errors.ts';
import { batchMatMulInWasm, batchMatMulReference, STOCK_BLOCK } from '../src/engine/kernels/batch-mat-mul.ts';
import { simdKernelSwitch, trainKernelsUnavailable } from '../src/engine/kernels/train-kernels-simd.ts';
import { asWasm, runStock } from '../src/engine/kernels/util.ts';
import { trainOnnxDiff } from '../src/train/onnx/train-onnx.ts';
import { randomValues } from './helpers/kernel-tests.ts';
import { attention, tokenSequences } from './helpers/onnx-models.ts';

before(async () => {
  await initBackend('wasm');
});

/** [batchA, batchB, m, k, n]: the attention's own, odd sizes, size-1 axes, k across blocks of 48. */
const SHAPES: [number, number, number, number, number][] = [
  [128, 128, 32, 16, 32], [128, 128, 32, 32, 16], [32, 32, 6, 4, 6], [3, 3, 5, 7, 9], [4, 1, 1, 1, 1], [1, 5, 7, 2, 3],
  [2, 2, 33, 3, 6], [6, 6, 4, 16, 5], [3, 1, 9, 13, 11], [1, 1, 1, 1, 1], [2, 2, 1, 5, 1], [2, 2, 4, 48, 8],
  [2, 2, 5, 49, 12], [2, 2, 3, 96, 7], [3, 3, 6, 97, 10], [1, 2, 70, 130, 90], [2, 2, 8, 0, 4], [2, 2, 0, 3, 4],
];

/**
 * The bits of float32 values (tells -0 from 0), every NaN as one: neither WebAssembly nor
 * JavaScript fixes the sign of a NaN an operation makes, and no payload holds one (training
 * refuses a NaN loss).
 */
const bits = (v: ArrayLike<number>) => Array.from(new Uint32Array(Float32Array.from(v, (x) => (Number.isNaN(x) ? NaN : x)).buffer), (u, i) => (Number.isNaN(v[i]) ? 0x7fc00000 : u));

/** Inputs with signed zeros, infinities, NaN and values of very different sizes mixed into random ones. */
function operand(n: number, seed: number, special: boolean): Float32Array {
  const v = randomValues(n, seed);
  if (special) {
    const odd = [-0, 0, Infinity, -Infinity, NaN, 3e38, -1e-40, 1e20];
    for (let i = 0; i < n; i += 5) v[i] = odd[(i / 5 + seed) % odd.length];
  }
  return v;
}

interface Case { av: Float32Array; bv: Float32Array; aShape: number[]; bShape: number[]; batchA: number; batchB: number; m: number; k: number; n: number; transposeA: boolean; transposeB: boolean; name: string }

function* cases(special = false): Generator<Case> {
  let seed = 1;
  for (const [batchA, batchB, m, k, n] of SHAPES) {
    for (const transposeA of [false, true]) {
      for (const transposeB of [false, true]) {
        seed++;
        yield {
          av: operand(batchA * m * k, seed, special), bv: operand(batchB * k * n, seed + 1000, special),
          aShape: transposeA ? [batchA, k, m] : [batchA, m, k], bShape: transposeB ? [batchB, n, k] : [batchB, k, n],
          batchA, batchB, m, k, n, transposeA, transposeB,
          name: `[${batchA}|${batchB}] ${m}x${k}x${n} transposeA ${transposeA} transposeB ${transposeB}${special ? ' (special values)' : ''}`,
        };
      }
    }
  }
}

function twin(c: Case): Float32Array {
  const out = new Float32Array(Math.max(c.batchA, c.batchB) * c.m * c.n);
  batchMatMulReference(c.av, c.bv, out, c.batchA, c.batchB, c.m, c.k, c.n, c.transposeA, c.transposeB);
  return out;
}

/** Run `kernel` on the case's operands as wasm tensors and read its output. */
function onWasm(c: Case, kernel: (backend: ReturnType<typeof asWasm>, a: tf.Tensor, b: tf.Tensor) => tf.TensorInfo | null): Float32Array {
  return tf.tidy(() => {
    const backend = asWasm(tf.backend());
    const [a, b] = [tf.tensor(c.av, c.aShape), tf.tensor(c.bv, c.bShape)];
    const r = kernel(backend, a, b);
    assert.ok(r !== null, 'the SIMD kernel ran');
    return tf.engine().makeTensorFromTensorInfo(r).dataSync() as Float32Array;
  });
}

const stock = (c: Case) => onWasm(c, (backend, a, b) => runStock('BatchMatMul', backend, { a, b }, { transposeA: c.transposeA, transposeB: c.transposeB }));
const simd = (c: Case) => onWasm(c, (backend, a, b) => batchMatMulInWasm(backend, a, b, c.transposeA, c.transposeB));

describe('batched matrix products on wasm: SIMD kernel, scalar twin and stock kernel', () => {
  it('runs SIMD here', () => {
    assert.equal(trainKernelsUnavailable(asWasm(tf.backend())), null);
  });

  it('the scalar twin gives the stock kernel\'s bits on every shape', () => {
    let checked = 0;
    for (const special of [false, true]) {
      for (const c of cases(special)) {
        assert.deepEqual(bits(twin(c)), bits(stock(c)), c.name);
        checked++;
      }
    }
    assert.equal(checked, 2 * 4 * SHAPES.length);
  });

  it('the SIMD kernel gives the scalar twin\'s bits on every shape, with and without special values', () => {
    for (const special of [false, true]) {
      for (const c of cases(special)) {
        const want = twin(c);
        assert.deepEqual(bits(simd(c)), bits(want), c.name);
        if (!special && c.m * c.n * c.k > 0) assert.ok(want.some((v) => v !== 0), `${c.name}: a product of zeros would prove nothing`);
      }
    }
  });

  it('sums the shared dimension in blocks of 48 as the stock kernel does (one long sum differs)', () => {
    const c = [...cases()].find((x) => x.k === 97 && !x.transposeA && !x.transposeB)!;
    const plain = new Float32Array(twin(c).length);
    const f = Math.fround;
    for (let t = 0; t < Math.max(c.batchA, c.batchB); t++) for (let i = 0; i < c.m; i++) for (let j = 0; j < c.n; j++) {
      let acc = 0;
      for (let p = 0; p < c.k; p++) acc = f(acc + f(c.av[(c.batchA === 1 ? 0 : t * c.m * c.k) + i * c.k + p] * c.bv[(c.batchB === 1 ? 0 : t * c.k * c.n) + p * c.n + j]));
      plain[t * c.m * c.n + i * c.n + j] = acc;
    }
    assert.equal(STOCK_BLOCK, 48);
    assert.notDeepEqual(bits(plain), bits(stock(c)), 'the block order matters on these values');
    assert.deepEqual(bits(simd(c)), bits(stock(c)));
  });

  it('tf.matMul on wasm gives the stock kernel\'s bits on batches and transposed products, with and without SIMD, and on small batches with the kernel switched off', () => {
    // Besides the cases: products of one item with a transposed operand, as a dense layer's
    // gradients are (dx = dy·Wᵀ, dW = xᵀ·dy), which ran through transposes and XNNPACK before.
    const dense: Case[] = [[40, 30, 50], [33, 70, 9], [8, 200, 12], [16, 64, 300]].flatMap(([m, k, n], i) => [[true, false], [false, true], [true, true]].map(([transposeA, transposeB]) => ({
      av: randomValues(m * k, 70 + i), bv: randomValues(k * n, 80 + i), aShape: transposeA ? [k, m] : [m, k], bShape: transposeB ? [n, k] : [k, n],
      batchA: 1, batchB: 1, m, k, n, transposeA, transposeB, name: `${m}x${k}x${n} transposeA ${transposeA} transposeB ${transposeB}`,
    })));
    const matMul = (c: Case, on: boolean, simd = true) => tf.tidy(() => {
      simdKernelSwitch.batchMatMulInWasm = on;
      simdKernelSwitch.enabled = simd;
      return bits(tf.matMul(tf.tensor(c.av, c.aShape), tf.tensor(c.bv, c.bShape), c.transposeA, c.transposeB).dataSync());
    });
    try {
      for (const c of [...cases(), ...dense]) {
        const want = bits(stock(c));
        assert.deepEqual(matMul(c, true), want, c.name);
        // Where SIMD cannot run, the stock kernel: the same bits.
        assert.deepEqual(matMul(c, true, false), want, `${c.name}, without SIMD`);
        if (Math.max(c.batchA, c.batchB) > 1 && c.m * c.k * c.n < 1 << 15) assert.deepEqual(matMul(c, false), want, `${c.name}, switched off`);
      }
    } finally {
      simdKernelSwitch.batchMatMulInWasm = true;
      simdKernelSwitch.enabled = true;
    }
  });

  it('refuses batches that neither match nor broadcast, saying which', () => {
    const c = [...cases()][0];
    const bad = { ...c, aShape: [2, 1, c.m, c.k], bShape: [1, 3, c.k, c.n], av: new Float32Array(2 * c.m * c.k), bv: new Float32Array(3 * c.k * c.n) };
    assert.throws(() => onWasm(bad, (backend, a, b) => batchMatMulInWasm(backend, a, b, false, false)), (e: unknown) => e instanceof UsageError && /found \[2,1\] and \[1,3\]: broadcast the operands/.test(e.message));
  });

  it('refuses batch shapes of equal size that broadcast to a larger batch ([2,1] against [1,2] is 4 products, not 2)', () => {
    // Paired item by item, [2,1] and [1,2] would give 2 products into an output of 4 items, half
    // of it never written: refused like any batch shape the kernel cannot broadcast.
    const [m, k, n] = [3, 5, 4];
    const a = tf.tensor(randomValues(2 * m * k, 1), [2, 1, m, k]);
    const b = tf.tensor(randomValues(2 * k * n, 2), [1, 2, k, n]);
    try {
      assert.throws(() => onWasm({ av: randomValues(2 * m * k, 1), bv: randomValues(2 * k * n, 2), aShape: [2, 1, m, k], bShape: [1, 2, k, n] } as Case, (backend, x, y) => batchMatMulInWasm(backend, x, y, false, false)), (e: unknown) => e instanceof UsageError && /found \[2,1\] and \[1,2\]: broadcast the operands/.test(e.message));
      for (const [transposeA, transposeB] of [[false, false], [false, true], [true, false]] as const) {
        const x = transposeA ? tf.transpose(a, [0, 1, 3, 2]) : a;
        const y = transposeB ? tf.transpose(b, [0, 1, 3, 2]) : b;
        assert.throws(() => tf.matMul(x, y, transposeA, transposeB), (e: unknown) => e instanceof UsageError && /broadcast the operands/.test((e as Error).message), `transposeA ${transposeA} transposeB ${transposeB}`);
      }
    } finally {
      a.dispose();
      b.dispose();
    }
  });
});

describe('training through the kernel', () => {
  it('the attention program trains to the same payload bytes with the kernel on and off, compiled and eager', async () => {
    const { data, labels } = tokenSequences(64, 2);
    const common = { method: 'full' as const, budgetBytes: 0, epochs: 2, tune: 'off' as const, seed: 4, batchSize: 16, learningRate: 1e-2, validation: 0, allowWorse: true, threads: 1, header: { modelId: 'attention', sequence: 1 } };
    const payload = async (on: boolean, step: 'compiled' | 'eager') => {
      simdKernelSwitch.batchMatMulInWasm = on;
      try {
        return Buffer.from((await trainOnnxDiff(attention(), { ...data, labels }, { ...common, step })).bytes);
      } finally {
        simdKernelSwitch.batchMatMulInWasm = true;
      }
    };
    const compiledOn = await payload(true, 'compiled');
    assert.deepEqual(compiledOn, await payload(false, 'compiled'), 'compiled step');
    assert.deepEqual(await payload(true, 'eager'), await payload(false, 'eager'), 'eager step');
  });
});
