/**
 * Unlabelled inputs get the teacher's outputs in batches the backend's memory holds: a
 * 256x256 segmentation model (MediaPipe selfie) labelling 96 frames in one batch of 256 broke
 * the wasm backend ("table index is out of bounds", exit 1) before training began.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { withLabels, type PreparedTeacher } from '../src/train/teacher.ts';

/** A layer whose declared output (what the memory estimate reads) is as large as a deep image model's activations. */
class WideActivations extends tf.layers.Layer {
  static className = 'WideActivations';
  override computeOutputShape(input: tf.Shape): tf.Shape {
    return [input[0], 50_000_000];
  }
}

test('the teacher labels unlabelled inputs in batches that fit the wasm backend, not 256 at once', async () => {
  await initBackend('wasm', { threads: 1 });
  const model = tf.sequential({ layers: [new WideActivations({ inputShape: [4] })] });
  const batches: number[] = [];
  // The model's outputs as the teacher gives them; only the batch sizes asked for are looked at.
  model.apply = ((x: tf.Tensor) => {
    batches.push(x.shape[0]);
    return tf.zeros([x.shape[0], 1]);
  }) as typeof model.apply;
  const teach = { model, rows: new Map(), target: { width: 1, segments: [{ offset: 0, classes: 1, values: true, classifier: false }] } } as unknown as PreparedTeacher;
  const x = tf.zeros([96, 4]);
  try {
    const labelled = withLabels({ x }, 'training data', teach);
    assert.equal(labelled.y.length, 96);
    assert.ok(batches.length > 1, `one batch of ${batches[0]}: the estimate (300 MB per example: 13 fit) was not used`);
    assert.ok(Math.max(...batches) <= 13, `batches of ${batches.join(', ')}`);
    assert.equal(batches.reduce((a, b) => a + b, 0), 96);
  } finally {
    x.dispose();
  }
});
