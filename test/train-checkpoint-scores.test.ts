/**
 * The validation figure a run reports is the payload's: base + payload, exactly as a device gets
 * it. The README's quick-start task (a classifier that knows three of four classes, the update
 * teaching the fourth) at a budget of a few weights: the soft mask moves every weight, the hard
 * mask keeps a handful in one tensor, and the checkpoint taken right after hardening was once
 * scored with the other tensors still holding what the soft phase left in them (validation 100%
 * reported, the payload itself 75%, the base's). With the validation set given as `eval` too,
 * the two figures must be the same.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { modelToStore } from '../src/engine/model-weights.ts';
import { trainDiff } from '../src/train/train-diff.ts';
import { seededRandom } from '../src/core/random.ts';

test('a sparse run\'s reported validation accuracy is what base + payload scores on those examples', { timeout: 120_000 }, async () => {
  await initBackend('wasm');
  const random = seededRandom(7);
  const centers = Array.from({ length: 4 }, () => Array.from({ length: 32 }, () => random() * 2 - 1));
  const examples = (n: number, classes: number[]) => {
    const x = new Float32Array(n * 32), y = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      y[i] = classes[i % classes.length];
      for (let j = 0; j < 32; j++) x[i * 32 + j] = centers[y[i]][j] + (random() - 0.5) * 2;
    }
    return { x: tf.tensor2d(x, [n, 32]), y };
  };
  const model = tf.sequential({ layers: [
    tf.layers.dense({ inputShape: [32], units: 256, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }),
    tf.layers.dense({ units: 4, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }),
  ] });
  model.compile({ optimizer: tf.train.adam(1e-3), loss: 'sparseCategoricalCrossentropy' });
  const old = examples(600, [0, 1, 2]);
  await model.fit(old.x, tf.tensor1d(old.y, 'float32'), { epochs: 10, verbose: 0, shuffle: false });
  const base = modelToStore(model);
  const update = examples(720, [0, 1, 2, 3]);
  const val = examples(80, [0, 1, 2, 3]);
  const res = await trainDiff(model, update, {
    method: 'sparse', budgetBytes: 189, epochs: 10, seed: 0, tune: 'off', learningRate: 9e-3, base,
    validation: val, eval: val, allowWorse: true, header: { modelId: 'demo-classifier', sequence: 1 },
  });
  assert.ok(res.validation, 'the run reports a validation figure');
  assert.equal(res.validation.accuracy, res.accuracyAfter, `validation ${res.validation.accuracy} is reported for the payload; base + payload scores ${res.accuracyAfter} on the same examples`);
});
