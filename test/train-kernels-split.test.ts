/**
 * SplitV on wasm through our Slice (src/engine/kernels/slice.ts): on many shapes, axes and splits
 * (equal parts, given sizes, a -1 size, the transformer's [32, 32, 192] into three), float32,
 * int32 and bool, the parts the stock kernel gives, element for element.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { simdKernelSwitch } from '../src/engine/kernels/train-kernels-simd.ts';
import { randomValues } from './helpers/kernel-tests.ts';

before(async () => {
  await initBackend('wasm');
});

const CASES: [number[], number | number[], number][] = [
  [[32, 32, 192], 3, 2], [[6], 3, 0], [[4, 6], [1, 2, 3], 1], [[4, 6], [3, -1], 0], [[2, 3, 4, 5], 5, 3],
  [[2, 3, 4, 5], [1, 1, 1], 1], [[7, 5], 1, 0], [[3, 8, 2], [2, 6], 1], [[5, 4], [0, 4], 1],
];

describe('SplitV on wasm', () => {
  it('gives the stock kernel\'s parts on every shape, axis and split, float32, int32 and bool', () => {
    try {
      for (const [c, [shape, splits, axis]] of CASES.entries()) {
        const n = shape.reduce((a, d) => a * d, 1);
        for (const dtype of ['float32', 'int32', 'bool'] as const) {
          const values = dtype === 'float32' ? randomValues(n, c) : dtype === 'int32' ? Int32Array.from(randomValues(n, c), (v) => Math.round(v * 1e6)) : Uint8Array.from(randomValues(n, c), (v) => (v > 0 ? 1 : 0));
          const parts = (inMemory: boolean) => tf.tidy(() => {
            simdKernelSwitch.splitInMemory = inMemory;
            return tf.split(tf.tensor(values, shape, dtype), splits, axis).map((t) => ({ shape: t.shape, values: Array.from(t.dataSync() as ArrayLike<number>) }));
          });
          const ours = parts(true);
          const stock = parts(false);
          assert.ok(ours.length > 0);
          assert.deepEqual(ours, stock, `[${shape}] split ${JSON.stringify(splits)} on axis ${axis}, ${dtype}`);
        }
      }
    } finally {
      simdKernelSwitch.splitInMemory = true;
    }
  });
});
