/**
 * A real published graph model trains: nsfwjs's MobileNetV2 graph-model (tensorflowjs_converter
 * 1.7 output, uint8-quantized, fused convolutions with Relu6, depthwise convolutions, AvgPool,
 * Squeeze, a fused MatMul and a Softmax; test/helpers/pretrained.ts unpacks it from the
 * devDependency, no download) passes the gradient probe, trains a step of a sparse diff, and the
 * payload applied to a copy of the folder by the device applier gives what the trainer evaluated.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { storedModelBytes } from '../src/diff/build.ts';
import { applyToModelDir } from '../src/io/tfjs/folder-update.ts';
import { fileSystemIO, openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { initBackend } from '../src/engine/backend.ts';
import { trainTfjsGraphDiff } from '../src/train/tfjs-graph/train-graph.ts';
import { pretrainedModelDir } from './helpers/pretrained.ts';
import { seeded } from './helpers/graph-model.ts';
import { onceSkip } from './helpers/benchmarks.ts';

// Trains in this process only, through the readers and writers other files test on every Node
// release (whose CLI training cases run there too): checked once per CI (test/helpers/benchmarks.ts).
const once = { skip: onceSkip('the in-process training of the pretrained graph model is') };

await initBackend('wasm');

test('nsfwjs MobileNetV2 (a uint8 graph-model) trains a step; the patched folder computes what the trainer evaluated', once, async (t) => {
  const dir = await pretrainedModelDir('graph');
  const work = mkdtempSync(path.join(tmpdir(), 'nd-graph-pretrained-'));
  try {
    const store = await openTfjsModelDir(dir);
    const model = await tf.loadGraphModel(fileSystemIO(dir));
    const r = seeded(5);
    const pixels = (n: number) => Float32Array.from({ length: n * 224 * 224 * 3 }, () => (r() + 1) / 2);
    const evalImages = pixels(1);
    const budgetBytes = Math.round(0.01 * storedModelBytes(store));
    const res = await trainTfjsGraphDiff(model, store, { inputs: { input: { values: pixels(2), shape: [224, 224, 3] } }, labels: Int32Array.of(0, 3) }, {
      method: 'sparse', budgetBytes, epochs: 1, batchSize: 2, tune: 'off', validation: 0, allowWorse: true,
      eval: { inputs: { input: { values: evalImages, shape: [224, 224, 3] } }, labels: Int32Array.of(1) }, source: 'mobilenet_v2_mid',
    });
    // Every float weight is reached, none is refused; the rank-0 preprocessing constants (x * (1/127.5) - 1) stay.
    assert.deepEqual(res.unreachable, []);
    assert.equal(res.scalars.length, 2);
    assert.equal(res.trainable.trained.length, store.list().filter((e) => e.patchable !== false).length - 2);
    assert.ok(res.bytes.length <= budgetBytes && res.epochs.length === 1);
    const patched = path.join(work, 'patched');
    cpSync(dir, patched, { recursive: true });
    await applyToModelDir(patched, res.bytes);
    const m2 = await tf.loadGraphModel(fileSystemIO(patched));
    const got = tf.tidy(() => (m2.execute(tf.tensor(evalImages, [1, 224, 224, 3])) as tf.Tensor).dataSync() as Float32Array);
    const want = res.evalOutputs as Float32Array;
    let gap = 0;
    for (let i = 0; i < got.length; i++) gap = Math.max(gap, Math.abs(got[i] - want[i]));
    const top = Math.max(...Array.from(want, Math.abs));
    assert.ok(gap / top <= 1e-5, `patched folder vs trainer: ${gap / top}`);
    model.dispose();
    m2.dispose();
    t.diagnostic(`${res.bytes.length} of ${budgetBytes} bytes, ${res.trainable.trained.length} tensors trained; patched folder vs trainer ${gap / top}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
