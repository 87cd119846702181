/**
 * The live store (`tfModelStore`) asks which backend holds a weight's data without starting any
 * backend: tfjs's `findBackend` initializes a registered backend it has not met, and one that
 * initializes asynchronously (wasm, webgpu, the trainer's native backend) then leaves the engine
 * refusing every op ("Backend ... has not yet been initialized"). That broke `ndiff train` of a
 * TF.js graph model whose teacher is read through the live store, on the native backend.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { tfModelStore } from '../src/io/tfjs/live-model-store.ts';

test('reading a live model held by a backend other than cpu starts no other backend', async () => {
  // A synchronous backend that is not "cpu" holds the model; an asynchronous one is registered
  // under "wasm" (as tfjs-backend-wasm registers itself, not imported here) and never used.
  tf.registerBackend('held', () => new MathBackendCPU(), 1);
  for (const k of tf.getKernelsForBackend('cpu')) tf.registerKernel({ ...k, backendName: 'held' });
  let started = 0;
  tf.registerBackend('wasm', async () => {
    started++;
    await new Promise((r) => setTimeout(r, 50));
    return new MathBackendCPU();
  }, 0);
  assert.ok(await tf.setBackend('held'));
  const model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [3], units: 2, name: 'd' })] });
  const store = tfModelStore(model);
  await store.prepare();
  const names = store.list().map((t) => t.name);
  assert.deepEqual(names.sort(), ['d/bias', 'd/kernel']);
  for (const n of names) assert.equal(store.values(n).length, n === 'd/kernel' ? 6 : 2);
  assert.equal(started, 0, 'no other backend was started');
  // And the engine still runs ops.
  assert.deepEqual(Array.from((model.predict(tf.ones([1, 3])) as tf.Tensor).shape), [1, 2]);
});
