/**
 * `--calibrate` chooses among candidate payloads by the measure that fits the outputs (issue 62,
 * finding 7): for a classifier, top-1 agreement with the target, which a divergence of
 * probabilities need not follow; every candidate's agreement is reported.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { calibrationMeasure, chooseOnCalibration } from '../src/train/calibrate.ts';
import { modelToStore } from '../src/engine/model-weights.ts';
import { exactDiff } from '../src/diff/exact.ts';
import { getHasher } from '../src/core/hasher.ts';

await initBackend('cpu');

/** Two classes from one input: logits [0, w·x + b] through a softmax. */
function classifier(w: number, b: number): tf.LayersModel {
  const m = tf.sequential({ layers: [tf.layers.dense({ name: 'head', inputShape: [1], units: 2, activation: 'softmax' })] });
  m.layers[0].setWeights([tf.tensor2d([[0, w]]), tf.tensor1d([0, b])]);
  return m;
}

test('--calibrate on a classifier: chosen by top-1 agreement with the target (not by a KL that prefers flipped decisions), each candidate\'s agreement reported', async () => {
  const hasher = await getHasher();
  const base = classifier(1, 0.5);
  const target = classifier(1, 0);
  const baseStore = modelToStore(base);
  // Inputs around the decision boundary: the target decides by the sign of x.
  const x = tf.tensor2d(Float32Array.from({ length: 200 }, (_, i) => -0.5 + i / 199), [200, 1]);
  // "confident": the target's decisions everywhere, its probabilities far sharper (a large KL);
  // "shifted": probabilities near the target's but a bias that flips the decisions for x in (-0.3, 0).
  const made = (w: number, b: number) => () => exactDiff(hasher, baseStore, modelToStore(classifier(w, b)), { modelId: 'm', sequence: 1 });
  const measure = calibrationMeasure(base, target, baseStore, x);
  const { name, scores } = chooseOnCalibration([{ name: 'shifted', build: made(1, 0.3) }, { name: 'confident', build: made(12, 0) }], measure);
  const byName = new Map(scores.map((s) => [s.name, s]));
  const shifted = byName.get('shifted');
  const confident = byName.get('confident');
  assert.ok(shifted && confident);
  assert.ok(shifted.loss < confident.loss, `the loss prefers the shifted one: ${shifted.loss} < ${confident.loss}`);
  assert.equal(confident.agreement, 1, 'the confident one agrees on every input');
  assert.ok((shifted.agreement ?? 1) < 0.9, `the shifted one flips decisions: ${shifted.agreement}`);
  assert.equal(name, 'confident', 'chosen by agreement');
  assert.ok(measure.baseCloseness && measure.baseCloseness.agreement < 1, 'the base\'s own agreement is measured');
  x.dispose();
});
