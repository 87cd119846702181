/**
 * Patched `.tflite` files run in Google's LiteRT.js (`@litertjs/core`, CPU): a model built here
 * and MediaPipe's selfie segmentation model (a devDependency, float16 weights), updated with
 * exact and lossy payloads through the file apply devices use. Exact: the file is the target byte
 * for byte and LiteRT gives the target's outputs. Lossy: the device's file is the one the build
 * server predicts (`--model-out`), and LiteRT's outputs move from v1's toward v2's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { getHasher } from '../src/core/hasher.ts';
import { diffOnnxModels } from '../src/diff/onnx.ts';
import { TfliteWeightStore } from '../src/io/tflite/store.ts';
import { applyToTfliteFile } from '../src/io/tflite/files.ts';
import { writeUpdatedModel } from '../src/io/model-paths.ts';
import { fineTuneLike } from '../bench/tflite-corpus.ts';
import { runTflite } from '../bench/litert.ts';
import { buildTflite, f32Bytes, T } from './helpers/tflite-build.ts';

const hasher = await getHasher();
const require = createRequire(import.meta.url);
const SELFIE = path.join(path.dirname(require.resolve('@mediapipe/selfie_segmentation/package.json')), 'selfie_segmentation.tflite');

function rms(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return Math.sqrt(s / a.length);
}

/** One dense layer, y = relu(x W^T + b), built here. */
function dense(w: number[], b: number[]): Uint8Array {
  return buildTflite({
    tensors: [
      { name: 'x', shape: [1, 3], type: T.FLOAT32 },
      { name: 'dense/kernel', shape: [2, 3], type: T.FLOAT32, buffer: 1 },
      { name: 'dense/bias', shape: [2], type: T.FLOAT32, buffer: 2 },
      { name: 'y', shape: [1, 2], type: T.FLOAT32 },
    ],
    buffers: [f32Bytes(w), f32Bytes(b)],
    // FULLY_CONNECTED (9) with FullyConnectedOptions (8): fused activation RELU (1).
    operators: [{ op: 9, inputs: [0, 1, 2], outputs: [3], options: { type: 8, fields: [{ u8: 1 }] } }],
    inputs: [0],
    outputs: [3],
  });
}

test('a model built here, patched by an exact payload, runs in LiteRT.js with the target\'s outputs', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-litert-'));
  try {
    const v1 = dense([1, 2, 3, 4, 5, 6], [0.5, -0.5]);
    const v2 = dense([1, -2, 3, 4, 0.25, 6], [0.5, -20]);
    const x = [Float32Array.from([1, 1, 1])];
    assert.deepEqual([...(await runTflite(v1, x))[0].data], [6.5, 14.5]);
    const payload = diffOnnxModels(hasher, new TfliteWeightStore(v1.slice()), new TfliteWeightStore(v2.slice()), { mode: 'all', budgetBytes: 0, modelId: 'dense' }).bytes;
    const file = path.join(dir, 'dense.tflite');
    await writeFile(file, v1);
    await applyToTfliteFile(file, payload);
    const patched = new Uint8Array(await readFile(file));
    assert.deepEqual(patched, v2);
    assert.deepEqual([...(await runTflite(patched, x))[0].data], [2.5, 0]); // relu(1 - 2 + 3 + 0.5), relu(4 + 0.25 + 6 - 20)
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('MediaPipe selfie segmentation: exact and lossy payloads applied to the file run in LiteRT.js as the build server predicts', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-litert-'));
  try {
    const v1 = new Uint8Array(await readFile(SELFIE));
    const v2 = fineTuneLike(v1, 0.05);
    const [out1, out2] = [(await runTflite(v1))[0].data, (await runTflite(v2))[0].data];
    const apart = rms(out1, out2);
    assert.ok(apart > 1e-3, `v2 must behave differently from v1 (rms ${apart})`);

    const base = path.join(dir, 'v1.tflite');
    await writeFile(base, v1);
    const exact = diffOnnxModels(hasher, new TfliteWeightStore(v1.slice()), new TfliteWeightStore(v2.slice()), { mode: 'all', budgetBytes: 0, modelId: 'selfie' }).bytes;
    const exactFile = path.join(dir, 'exact.tflite');
    await writeFile(exactFile, v1);
    await applyToTfliteFile(exactFile, exact);
    const exactBytes = new Uint8Array(await readFile(exactFile));
    assert.deepEqual(exactBytes, v2);
    assert.deepEqual((await runTflite(exactBytes))[0].data, out2);

    for (const method of ['topk', 'lowbit'] as const) {
      const lossy = diffOnnxModels(hasher, new TfliteWeightStore(v1.slice()), new TfliteWeightStore(v2.slice()), { budgetBytes: 40_000, modelId: 'selfie', method }).bytes;
      const device = path.join(dir, `${method}.tflite`);
      await writeFile(device, v1);
      await applyToTfliteFile(device, lossy);
      const predicted = path.join(dir, `${method}-predicted.tflite`);
      await writeUpdatedModel(base, predicted, lossy);
      const bytes = new Uint8Array(await readFile(device));
      assert.deepEqual(bytes, new Uint8Array(await readFile(predicted)), `${method}: the device holds what --model-out predicts`);
      const out = (await runTflite(bytes))[0].data;
      assert.ok(rms(out, out2) < apart, `${method}: LiteRT's outputs move toward v2's (${rms(out, out2)} vs v1's ${apart})`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
