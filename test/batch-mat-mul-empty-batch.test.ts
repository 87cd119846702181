/**
 * Batched products with an empty batch on wasm (src/engine/kernels/batch-mat-mul.ts): an operand
 * of no items against one of a single item makes no products, and the kernel writes nothing. In
 * a file of its own: a write past an output of no items corrupts the wasm heap, which later
 * allocations then trip over.
 */
import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { batchMatMulReference } from '../src/engine/kernels/batch-mat-mul.ts';
import { randomValues } from './helpers/kernel-tests.ts';

before(async () => {
  await initBackend('wasm');
});

it('an empty batch against a batch of one gives an empty product and leaves the heap whole', () => {
  for (const [transposeA, transposeB] of [[false, true], [true, false], [true, true]] as const) {
    const [m, k, n] = [3, 4, 5];
    const r = tf.tidy(() => tf.matMul(tf.zeros(transposeA ? [0, k, m] : [0, m, k]), tf.ones(transposeB ? [1, n, k] : [1, k, n]), transposeA, transposeB));
    assert.deepEqual(r.shape, [0, m, n]);
    assert.equal(r.dataSync().length, 0);
    r.dispose();
  }
  // Products and allocations after it come out right (a write past the empty output broke the
  // allocator's records: 'memory access out of bounds' or wrong values here).
  for (let round = 0; round < 4; round++) {
    const [batch, m, k, n] = [3, 5, 60, 7];
    const av = randomValues(batch * m * k, 10 + round);
    const bv = randomValues(k * n, 20 + round);
    const want = new Float32Array(batch * m * n);
    batchMatMulReference(av, bv, want, batch, 1, m, k, n, false, true);
    const got = tf.tidy(() => tf.matMul(tf.tensor(av, [batch, m, k]), tf.tensor(bv, [1, n, k]), false, true).dataSync());
    assert.deepEqual(Array.from(got), Array.from(want), `round ${round}`);
    tf.tidy(() => tf.randomNormal([300, 300]).dataSync());
  }
});
