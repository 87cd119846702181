/**
 * What the kernel tests (test/train-kernels.test.ts, test/train-native.test.ts) share: deterministic
 * inputs (the same values for a seed on every run and backend) and one measure of agreement.
 */
import assert from 'node:assert/strict';
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

/**
 * Largest |a - b| relative to the largest |b|: robust to near-zero entries, strict on the whole.
 * `nonZero` also fails when the expected output is all zeros (the comparison would prove nothing).
 */
export function relError(actual: Float32Array, expected: Float32Array, nonZero = false): number {
  assert.equal(actual.length, expected.length, 'output sizes differ');
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  assert.ok(Number.isFinite(diff), 'non-finite output');
  if (nonZero) assert.ok(scale > 0, 'the expected output is all zeros: the comparison would prove nothing');
  return diff / Math.max(scale, 1e-30);
}
