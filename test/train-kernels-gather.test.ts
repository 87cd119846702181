/**
 * GatherV2 on wasm as row copies (src/engine/kernels/gather.ts): on many shapes, axes and index
 * counts (runs shorter and longer than the element-by-element limit), float32 and int32, the bits
 * of the stock kernel it replaces and of the scalar twin; an index outside the axis is refused
 * as the stock kernel refuses it; batch dimensions still go to the stock kernel.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import type { TensorInfo } from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { gatherReference } from '../src/engine/kernels/gather.ts';
import { stockKernel } from '../src/engine/kernels/util.ts';
import { randomValues } from './helpers/kernel-tests.ts';

before(async () => {
  await initBackend('wasm');
});

/** [x shape, axis, indices shape]: the transformer's embedding, short and long runs, inner axes, one row. */
const CASES: [number[], number, number[]][] = [
  [[64, 64], 0, [32, 32]], [[10], 0, [7]], [[5, 3], 0, [4]], [[5, 3], 1, [6]], [[4, 17], 0, [2, 3]], [[2, 9, 20], 1, [5]],
  [[3, 4, 5, 6], 2, [3, 2]], [[7, 1], 0, [1]], [[6, 16], 0, [0]], [[3, 5], 1, []],
];

function ids(n: number, dim: number, seed: number): Int32Array {
  return Int32Array.from(randomValues(n, seed), (v) => Math.min(dim - 1, Math.floor(((v + 1) / 2) * dim)));
}

describe('GatherV2 on wasm', () => {
  it('gives the stock kernel\'s bits and the twin\'s, float32 and int32, on every shape and axis', () => {
    for (const [c, [shape, axis, idShape]] of CASES.entries()) {
      for (const dtype of ['float32', 'int32'] as const) {
        const n = shape.reduce((a, d) => a * d, 1);
        const values = dtype === 'float32' ? randomValues(n, c) : Int32Array.from(randomValues(n, c), (v) => Math.round(v * 1e6));
        const index = ids(idShape.reduce((a, d) => a * d, 1), shape[axis], c + 50);
        tf.tidy(() => {
          const x = tf.tensor(values, shape, dtype);
          const i = tf.tensor(index, idShape, 'int32');
          const ours = tf.gather(x, i, axis);
          const backend = tf.backend();
          const info = stockKernel('GatherV2').kernelFunc({ inputs: { x, indices: i }, attrs: { axis, batchDims: 0 }, backend }) as TensorInfo;
          const stock = tf.engine().makeTensorFromTensorInfo(info, backend);
          assert.deepEqual(ours.shape, stock.shape, `[${shape}] axis ${axis}: shape`);
          assert.deepEqual(ours.dataSync(), stock.dataSync(), `[${shape}] axis ${axis} ${dtype}: the stock kernel's bits`);
          assert.deepEqual(Array.from(ours.dataSync()), gatherReference(values, shape, index, axis), `[${shape}] axis ${axis} ${dtype}: the twin`);
        });
      }
    }
  });

  it('refuses an index outside the axis, as the stock kernel does; batch dimensions go to the stock kernel', () => {
    tf.tidy(() => {
      const x = tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2]);
      assert.throws(() => tf.gather(x, tf.tensor1d([0, 3], 'int32')), /GatherV2: the index value 3 is not in \[0, 2\]/);
      assert.throws(() => tf.gather(x, tf.tensor1d([-1], 'int32')), /GatherV2: the index value -1 is not in \[0, 2\]/);
      const batched = tf.gather(tf.tensor2d([1, 2, 3, 4], [2, 2]), tf.tensor2d([1, 0, 0, 0], [2, 2], 'int32'), 1, 1);
      assert.deepEqual(Array.from(batched.dataSync()), [2, 1, 3, 3]);
    });
  });
});
