/**
 * Live tf models on tfjs's `cpu` backend, where the store patches the backend's own arrays in
 * place (no copy): predictions change without reload, a failed apply restores them, and a
 * weight whose data is shared with another tensor is copied instead. (The wasm backend's copy
 * and assign path is covered in stores.test.ts on the pretrained models.)
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { applyPayload, MemorySequenceStore, TargetMismatchError } from '../src/apply/index.ts';
import { decodePayload } from '../src/core/format.ts';
import { encodePayload } from '../src/core/encode.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { getHasher } from '../src/core/hasher.ts';
import { buildPayload, type PatchSpec } from '../src/diff/build.ts';
import { fileSystemIO, openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { tfModelStore } from '../src/io/tfjs/live-model-store.ts';
import { pretrainedModelDir } from './helpers/pretrained.ts';
import { memoryCopy, perturbed } from './helpers/perturb.ts';
import { rng } from './helpers/models.ts';
import { topkDiff } from '../src/topk-diff/encoder.ts';

const hasher = await getHasher();
let work: string;
let dir: string;
before(async () => {
  await tf.setBackend('cpu');
  work = await mkdtemp(path.join(tmpdir(), 'nd-tf-cpu-'));
  dir = path.join(work, 'mlp');
  const model = tf.sequential({
    layers: [
      tf.layers.dense({ inputShape: [16], units: 32, activation: 'relu', name: 'hidden', kernelInitializer: tf.initializers.randomNormal({ seed: 1 }) }),
      tf.layers.dense({ units: 4, activation: 'softmax', name: 'out', kernelInitializer: tf.initializers.randomNormal({ seed: 2 }) }),
    ],
  });
  await model.save(fileSystemIO(dir));
  model.dispose();
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const input = () => tf.tensor2d(Float32Array.from({ length: 3 * 16 }, (_, i) => Math.sin(i)), [3, 16]);
function predict(model: tf.LayersModel | tf.GraphModel): Float32Array {
  return tf.tidy(() => (model.predict(input()) as tf.Tensor).dataSync() as Float32Array).slice();
}
const same = (a: Float32Array, b: Float32Array) => a.length === b.length && a.every((v, i) => Object.is(v, b[i]));

/** The model.json the live models are loaded from: with it, their fingerprint covers the frame as the folder's does. */
const modelJson = async () => JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8'));

async function payloadFor() {
  const base = memoryCopy(await openTfjsModelDir(dir));
  const r = rng(3);
  const specs: PatchSpec[] = [
    { kind: 'hash', name: 'hidden/kernel', seed: 7, signed: true, buckets: Float32Array.from({ length: 31 }, () => (r() - 0.5) * 0.2), codec: 'f32' },
    { kind: 'sparse', name: 'out/kernel', positions: Uint32Array.from([0, 5, 9, 100]), values: Float32Array.from([0.5, -0.5, 0.25, 1]), codec: 'f32' },
  ];
  return buildPayload(hasher, base, specs, { method: 'hash' });
}

for (const mode of ['auto', 'never'] as const) {
  test(`LayersModel on cpu, inPlace: ${mode}: predictions change without reload and equal the patched folder's`, async () => {
    const model = await tf.loadLayersModel(fileSystemIO(dir));
    const store = tfModelStore(model, { inPlace: mode, modelJson: await modelJson() });
    assert.equal(store.isInPlace('hidden/kernel'), mode === 'auto');
    const built = await payloadFor();
    const before = predict(model);
    const res = await applyPayload(store, built.bytes);
    assert.equal(res.status, 'applied');
    assert.equal(fingerprintStore(hasher, store).fingerprint, built.payload.header.targetFingerprint);
    const after = predict(model);
    assert.ok(!same(before, after), 'predictions changed');

    const patched = path.join(work, `patched-${mode}`);
    await (await tf.loadLayersModel(fileSystemIO(dir))).save(fileSystemIO(patched));
    await applyPayload(await openTfjsModelDir(patched), built.bytes);
    const reloaded = await tf.loadLayersModel(fileSystemIO(patched));
    assert.ok(same(predict(reloaded), after), 'equal to the model loaded from the patched folder');
    model.dispose();
    reloaded.dispose();
  });
}

test('an inconsistent payload is undone in the live arrays: the model predicts as before', async () => {
  const model = await tf.loadLayersModel(fileSystemIO(dir));
  const store = tfModelStore(model, { modelJson: await modelJson() });
  const built = await payloadFor();
  const bad = decodePayload(built.bytes);
  bad.header.targetFingerprint = '0123456789abcdef';
  const before = predict(model);
  await assert.rejects(applyPayload(store, encodePayload(bad)), TargetMismatchError);
  assert.ok(same(predict(model), before));
  assert.equal(fingerprintStore(hasher, store).fingerprint, built.payload.header.baseFingerprint);
  model.dispose();
});

test('a weight whose data another tensor shares is copied, so the other tensor never changes', async () => {
  const model = await tf.loadLayersModel(fileSystemIO(dir));
  const shared = tf.clone(model.getLayer('hidden').getWeights()[0]);
  const sharedBefore = (shared.dataSync() as Float32Array).slice();
  const store = tfModelStore(model, { modelJson: await modelJson() });
  assert.equal(store.isInPlace('hidden/kernel'), false, 'shared data is not patched in place');
  assert.equal(store.isInPlace('out/kernel'), true);
  await applyPayload(store, (await payloadFor()).bytes);
  assert.ok(same(shared.dataSync() as Float32Array, sharedBefore));
  assert.ok(!same(model.getLayer('hidden').getWeights()[0].dataSync() as Float32Array, sharedBefore));
  shared.dispose();
  model.dispose();
});

test('pretrained graph-model (nsfwjs MobileNetV2) patched in place on cpu', async () => {
  const gdir = await pretrainedModelDir('graph');
  const model = await tf.loadGraphModel(fileSystemIO(gdir));
  const store = tfModelStore(model);
  assert.ok(store.list().every((e) => store.isInPlace(e.name)), 'every weight in place');
  const base = memoryCopy(store);
  const built = topkDiff(hasher, base, perturbed(base, 0.005, 4), { budgetBytes: 20_000, codec: 'f16' });
  await applyPayload(store, built.bytes);
  const fresh = tfModelStore(model, { inPlace: 'never' });
  assert.equal(fingerprintStore(hasher, fresh).fingerprint, built.payload.header.targetFingerprint, 'the model\'s tensors hold the target');
  model.dispose();
});

test('a backend that does not hold the verified values (16-bit storage) is caught by the read-back: refused, model at v1, sequence not recorded', async () => {
  // What a GPU with 16-bit float textures does to a weight: its kernels compute with the value
  // rounded to float16. The cpu backend's Multiply is replaced by one that rounds so for the test,
  // and the store's copy-and-assign path (inPlace: 'never', as on every GPU backend) must see it.
  const model = await tf.loadLayersModel(fileSystemIO(dir));
  const store = tfModelStore(model, { inPlace: 'never', modelJson: await modelJson() });
  const built = await payloadFor();
  const before = predict(model);
  const beforeFingerprint = fingerprintStore(hasher, store).fingerprint;
  const tensorsBefore = tf.memory().numTensors;
  const original = tf.getKernel('Multiply', 'cpu');
  assert.ok(original, 'the cpu backend has a Multiply kernel');
  tf.unregisterKernel('Multiply', 'cpu');
  tf.registerKernel({
    ...original,
    kernelFunc: (args) => {
      const out = original.kernelFunc(args) as tf.TensorInfo;
      const values = (tf.backend() as unknown as { data: { get(id: object): { values: Float32Array } } }).data.get(out.dataId).values;
      for (let i = 0; i < values.length; i++) values[i] = Math.round(values[i] * 1024) / 1024; // 10 fractional bits, as float16 keeps near 1
      return out;
    },
  });
  const sequences = new MemorySequenceStore();
  let error: unknown;
  try {
    await applyPayload(store, built.bytes, { sequenceStore: sequences });
  } catch (e) {
    error = e;
  } finally {
    tf.unregisterKernel('Multiply', 'cpu');
    tf.registerKernel(original);
  }
  assert.ok(error instanceof TargetMismatchError, `refused with TargetMismatchError, got ${String(error)}`);
  assert.match((error as Error).message, /backend does not hold the verified values of "(hidden|out)\/kernel".*left at its previous version/);
  assert.equal(await sequences.get(built.payload.header.modelId as string), undefined, 'no sequence recorded');
  assert.ok(same(before, predict(model)), 'the model predicts as v1');
  assert.equal(fingerprintStore(hasher, store).fingerprint, beforeFingerprint, 'the store reads v1');
  assert.equal(tf.memory().numTensors, tensorsBefore, 'the new tensors and the kept references are all released');
  model.dispose();
});
