/**
 * Every trainer a build script calls directly refuses a learning rate of 0, below 0 or not finite
 * first, before it reads the model or the data: trainOnnxDiff with a teacher computed the teacher's
 * outputs and evaluated the base before the learning-rate search refused -1 (16 progress lines
 * later), and with `method: 'topk'` and a teacher (no training run, so no search) it resolved with
 * a payload at learning rate 0. Likewise epochs that are not a whole number of at least 1: 0
 * trained one epoch, NaN none and still returned a payload. `train()` has its own checks, naming
 * `--lr` and `--epochs` (test/cli-missing-value.test.ts, test/train-front.test.ts).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { UsageError } from '../src/core/errors.ts';
import { fileSystemIO, openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { initBackend } from '../src/engine/backend.ts';
import { trainAuto } from '../src/train/auto.ts';
import { trainOnnxDiff } from '../src/train/onnx/train-onnx.ts';
import { trainTfjsGraphDiff } from '../src/train/tfjs-graph/train-graph.ts';
import { trainTfliteDiff } from '../src/train/tflite/train-tflite.ts';
import { trainDiff } from '../src/train/train-diff.ts';
import { cnn, images } from './helpers/onnx-models.ts';
import { SIDE, cnnInputs, cnnWeights, retrained, writeGraphCnn } from './helpers/graph-model.ts';
import { mlpTflite } from './helpers/tflite-build.ts';

await initBackend('cpu');

/** Options no trainer may run with, and the start of the refusal each gets. */
const BAD: { options: { learningRate?: number; epochs?: number }; says: string }[] = [
  ...[0, -1e-3, Number.NaN, Number.POSITIVE_INFINITY].map((lr) => ({ options: { learningRate: lr }, says: `learningRate must be a number above 0, e.g. 1e-3, found ${lr}:` })),
  ...[0, 2.5, Number.NaN, undefined].map((epochs) => ({ options: { epochs }, says: `epochs must be a whole number of at least 1 (passes over the training data), found ${epochs ?? 'nothing'}:` })),
];
const common = { budgetBytes: 400, epochs: 1, tune: 'off' as const, seed: 3, batchSize: 16, allowWorse: true, header: { modelId: 'rate', sequence: 1 } };
type Bad = { learningRate?: number; epochs: number };

/** Each bad option through `run` (with topk and a teacher, and with sparse): refused, and nothing said before the refusal. */
async function refusesEveryBadRate(run: (bad: Bad, method: 'topk' | 'sparse', onProgress: (m: string) => void) => Promise<unknown>): Promise<void> {
  for (const { options, says } of BAD) {
    for (const method of ['topk', 'sparse'] as const) {
      const said: string[] = [];
      const what = `${method} with ${JSON.stringify(options)}`;
      await assert.rejects(run({ epochs: 1, ...options } as Bad, method, (m) => said.push(m)), (e: unknown) => e instanceof UsageError && e.message.startsWith(says), what);
      assert.deepEqual(said, [], `${what}: refused before any work`);
    }
  }
}

test('trainOnnxDiff refuses a learning rate or epochs that cannot train before reading the model', async () => {
  const [v1, v2, train] = [cnn(), cnn(0.5, 60), images(40, 1)];
  await refusesEveryBadRate((bad, method, onProgress) => trainOnnxDiff(v1, train, { ...common, method, ...bad, teacher: v2, onProgress }));
});

test('trainTfliteDiff refuses a learning rate or epochs that cannot train before reading the model', async () => {
  const [v1, v2] = [mlpTflite(0, false), mlpTflite(0.6, false)];
  const train = { inputs: { x: { values: new Float32Array(8 * 40).map((_, i) => Math.sin(i)), shape: [8] } } };
  await refusesEveryBadRate((bad, method, onProgress) => trainTfliteDiff(v1, train, { ...common, method, ...bad, teacher: v2, onProgress }));
});

test('trainTfjsGraphDiff refuses a learning rate or epochs that cannot train, the graph model left as it was', async () => {
  const root = mkdtempSync(path.join(tmpdir(), 'nd-rate-entry-'));
  try {
    const w1 = cnnWeights(11);
    await writeGraphCnn(path.join(root, 'v1'), w1);
    await writeGraphCnn(path.join(root, 'v2'), retrained(w1, 12));
    const store = await openTfjsModelDir(path.join(root, 'v1'));
    const model = await tf.loadGraphModel(fileSystemIO(path.join(root, 'v1')));
    const teacher = await tf.loadGraphModel(fileSystemIO(path.join(root, 'v2')));
    const before = Object.fromEntries(Object.entries(model.weights).map(([k, [t]]) => [k, Array.from(t.dataSync())]));
    const train = { inputs: { x: { values: cnnInputs(40, 1), shape: [SIDE, SIDE, 1] } } };
    await refusesEveryBadRate((bad, method, onProgress) => trainTfjsGraphDiff(model, store, train, { ...common, method, ...bad, teacher, onProgress }));
    assert.deepEqual(Object.fromEntries(Object.entries(model.weights).map(([k, [t]]) => [k, Array.from(t.dataSync())])), before, 'the graph model holds its weights');
    model.dispose();
    teacher.dispose();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('trainDiff and trainAuto refuse a learning rate or epochs that cannot train before reading the data', async () => {
  const layers = () => tf.sequential({ layers: [tf.layers.dense({ inputShape: [4], units: 3, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) })] });
  const [model, teacher] = [layers(), layers()];
  const x = tf.tensor2d(Array.from({ length: 80 }, (_, i) => Math.sin(i)), [20, 4]);
  const data = { x, y: new Int32Array(20).map((_, i) => i % 3) };
  await refusesEveryBadRate((bad, method, onProgress) => trainDiff(model, data, { ...common, method, ...bad, teacher, onProgress }));
  for (const { options, says } of BAD) {
    const said: string[] = [];
    await assert.rejects(trainAuto(model, data, { ...common, ...(options as Bad), candidates: ['sparse', 'topk-retrain'], onProgress: (m) => said.push(m) }), (e: unknown) => e instanceof UsageError && e.message.startsWith(says));
    assert.deepEqual(said, [], `auto with ${JSON.stringify(options)}: refused before any work`);
  }
  x.dispose();
  model.dispose();
  teacher.dispose();
});
