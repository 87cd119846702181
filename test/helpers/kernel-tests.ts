/**
 * Deterministic test inputs for kernel tests (test/train-kernels.test.ts, test/train-native.test.ts):
 * the same values for a seed on every run and backend.
 */
import * as tf from '@tensorflow/tfjs';

/** Deterministic float32 values in [-1, 1) (a mulberry32-style integer hash of the seed and index). */
export function randomValues(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((t ^ (t >>> 14)) >>> 0) / 2 ** 31 - 1;
  }
  return out;
}

/** A float32 tensor of `shape` holding {@link randomValues}. */
export function rand(shape: number[], seed: number): tf.Tensor {
  return tf.tensor(randomValues(shape.reduce((a, b) => a * b, 1), seed), shape);
}
