import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readFile, readdir, rm, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { ModelFormatError, ModelMismatchError, UsageError } from '../src/core/errors.ts';
import {
  fileSystemIO,
  listStaleFiles,
  openTfjsModelDir,
  readModelTensors,
  referencedFiles,
  writeModelDir,
} from '../src/io/tfjs/index.ts';
import {
  computeGroupLayout,
  float16BitsToFloat32,
  parseModelJson,
  replaceTopLevelValue,
  type TfjsWeightEntry,
} from '../src/io/tfjs/manifest.ts';

// ---------------------------------------------------------------------------------------
// helpers

let root: string;
let counter = 0;
before(async () => {
  await tf.setBackend('cpu');
  root = await mkdtemp(path.join(tmpdir(), 'nd-tfjs-artifacts-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});
async function freshDir(): Promise<string> {
  const dir = path.join(root, `m${++counter}`);
  await mkdir(dir);
  return dir;
}

function bytesOf(a: ArrayBufferView): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}
function assertBitsEqual(actual: Float32Array, expected: Float32Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  if (Buffer.compare(bytesOf(actual), bytesOf(expected)) !== 0) {
    const i = actual.findIndex((v, k) => !Object.is(v, expected[k]));
    assert.fail(`${what}: differs at ${i}: ${actual[i]} vs ${expected[i]}`);
  }
}

/** Every file of a folder with its bytes. */
async function snapshot(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const name of (await readdir(dir)).sort()) out.set(name, await readFile(path.join(dir, name)));
  return out;
}
function assertSameSnapshot(a: Map<string, Buffer>, b: Map<string, Buffer>): void {
  assert.deepEqual([...b.keys()], [...a.keys()], 'same file names');
  for (const [k, v] of a) assert.ok(v.equals(b.get(k)!), `${k} unchanged byte for byte`);
}

/** Write a hand-made model folder with plain fs calls. */
async function writeRaw(dir: string, modelJson: unknown, files: Record<string, Uint8Array>): Promise<void> {
  await writeFile(path.join(dir, 'model.json'), typeof modelJson === 'string' ? modelJson : JSON.stringify(modelJson));
  for (const [name, data] of Object.entries(files)) await writeFile(path.join(dir, name), data);
}
function f32le(...values: number[]): Uint8Array {
  const b = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => b.writeFloatLE(v, i * 4));
  return b;
}
function i32le(...values: number[]): Uint8Array {
  const b = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => b.writeInt32LE(v, i * 4));
  return b;
}
function u16le(...values: number[]): Uint8Array {
  const b = Buffer.alloc(values.length * 2);
  values.forEach((v, i) => b.writeUInt16LE(v, i * 2));
  return b;
}
function cat(...parts: Uint8Array[]): Uint8Array {
  return Buffer.concat(parts);
}

/** conv2d + batchnorm + dense, with seeded, non-trivial weights (BN statistics included). */
function buildModel(): tf.Sequential {
  const model = tf.sequential();
  model.add(tf.layers.conv2d({ inputShape: [6, 6, 2], filters: 3, kernelSize: 3, activation: 'relu' }));
  model.add(tf.layers.batchNormalization());
  model.add(tf.layers.flatten());
  model.add(tf.layers.dense({ units: 4 }));
  model.setWeights(model.weights.map((w, i) => {
    const r = tf.randomUniform(w.shape as number[], -1, 1, 'float32', 1000 + i);
    return w.originalName.includes('variance') ? r.abs().add(0.5) : r;
  }));
  return model;
}
function fixedInput(): tf.Tensor {
  return tf.randomUniform([5, 6, 6, 2], -2, 2, 'float32', 7);
}
function predict(model: tf.LayersModel): Float32Array {
  return (model.predict(fixedInput()) as tf.Tensor).dataSync() as Float32Array;
}
/** Weights of a (possibly reloaded, renamed) model keyed by manifest name. */
function weightsByOriginalName(model: tf.LayersModel): Map<string, Float32Array> {
  return new Map(model.weights.map((w) => [w.originalName, w.read().dataSync() as Float32Array]));
}

// ---------------------------------------------------------------------------------------

describe('fileSystemIO with tfjs layers models', () => {
  test('save then tf.loadLayersModel gives identical predictions and weights', async () => {
    const dir = await freshDir();
    const model = buildModel();
    const result = await model.save(fileSystemIO(dir));
    const files = (await readdir(dir)).sort();
    assert.equal(files.length, 2, `model.json + one shard, found ${files.join(', ')}`);
    assert.ok(files.includes('model.json'));
    assert.match(files.find((f) => f !== 'model.json')!, /^group1-shard1of1-[0-9a-f]{16}\.bin$/);
    const json = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8'));
    assert.equal(json.format, 'layers-model');
    assert.equal(json.modelTopology.class_name, 'Sequential', 'keras topology written');
    const paramBytes = model.weights.reduce((n, w) => n + (w.shape as number[]).reduce((a, b) => a * b, 1) * 4, 0);
    assert.equal(result.modelArtifactsInfo.weightDataBytes, paramBytes);

    const loaded = await tf.loadLayersModel(fileSystemIO(dir));
    assertBitsEqual(predict(loaded), predict(model), 'predictions');
    const a = weightsByOriginalName(model);
    const b = weightsByOriginalName(loaded);
    assert.deepEqual([...b.keys()], [...a.keys()]);
    for (const [k, v] of a) assertBitsEqual(b.get(k)!, v, k);
  });

  test('small shards: tensors span shard boundaries and still load bit-exactly', async () => {
    const dir = await freshDir();
    const model = buildModel();
    await model.save(fileSystemIO(dir, { shardBytes: 100 }));
    const json = parseModelJson(await readFile(path.join(dir, 'model.json'), 'utf8'));
    const paths = json.weightsManifest[0].paths;
    const layout = computeGroupLayout(json.weightsManifest[0].weights);
    assert.equal(paths.length, Math.ceil(layout.totalBytes / 100));
    paths.forEach((p, i) => assert.match(p, new RegExp(`^group1-shard${i + 1}of${paths.length}-[0-9a-f]{16}\\.bin$`)));
    const spanning = layout.entries.filter((e) => Math.floor(e.offset / 100) !== Math.floor((e.offset + e.byteLength - 1) / 100));
    assert.ok(spanning.length > 0, 'at least one tensor crosses a shard boundary');
    const loaded = await tf.loadLayersModel(fileSystemIO(dir));
    assertBitsEqual(predict(loaded), predict(model), 'predictions');
  });

  test('saving over an existing model replaces it and removes its shards', async () => {
    const dir = await freshDir();
    const m1 = buildModel();
    await m1.save(fileSystemIO(dir, { shardBytes: 200 }));
    const old = await referencedFiles(dir);
    const m2 = buildModel();
    m2.setWeights(m2.getWeights().map((w) => w.mul(2)));
    await m2.save(fileSystemIO(dir));
    const now = (await readdir(dir)).sort();
    for (const p of old.slice(1)) assert.ok(!now.includes(p), `old shard ${p} removed`);
    assert.deepEqual(now, [...(await referencedFiles(dir))].sort());
    const loaded = await tf.loadLayersModel(fileSystemIO(dir));
    assertBitsEqual(predict(loaded), predict(m2), 'new model loads');
  });
});

describe('openTfjsModelDir on a saved layers model', () => {
  test('lists the float tensors by manifest name and shape, values bit-exact', async () => {
    const dir = await freshDir();
    const model = buildModel();
    await model.save(fileSystemIO(dir));
    const store = await openTfjsModelDir(dir);
    assert.equal(store.format, 'layers-model');
    const listed = store.list();
    // The float tensors by manifest name, then the model's frame (read-only).
    assert.deepEqual(listed.map((e) => e.name), [...model.weights.map((w) => w.originalName), 'tfjs:frame']);
    assert.deepEqual(listed.map((e) => [...e.shape]), [...model.weights.map((w) => w.shape), [8]]);
    assert.ok(listed.some((e) => e.name.includes('moving_variance')), 'non-trainable BN statistics are listed');
    assert.ok(listed.every((e) => e.storage === 'float32'));
    const w = weightsByOriginalName(model);
    for (const e of listed.filter((x) => x.patchable !== false)) assertBitsEqual(store.values(e.name), w.get(e.name)!, e.name);
    assert.equal(store.values(listed[0].name), store.values(listed[0].name), 'same array on every call');
    assert.throws(() => store.values('no/such/tensor'), ModelMismatchError);
  });

  test('patch + commit: reload gives the patched values bit for bit, old shards are gone', async () => {
    const dir = await freshDir();
    const model = buildModel();
    await model.save(fileSystemIO(dir, { shardBytes: 256 }));
    const oldFiles = await referencedFiles(dir);
    const oldJson = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8'));
    const store = await openTfjsModelDir(dir, { shardBytes: 256 });
    const kernel = store.list().find((e) => e.name.includes('dense') && e.name.endsWith('kernel'))!.name;
    const gamma = store.list().find((e) => e.name.endsWith('gamma'))!.name;
    const kv = store.values(kernel);
    kv[0] = 1.2345678;
    kv[kv.length - 1] = -0;
    kv[7] = 3.4028234663852886e38;
    store.values(gamma)[1] = 1e-30;
    const expected = new Map([...store.list()].filter((e) => e.patchable !== false).map((e) => [e.name, store.values(e.name).slice()]));
    await store.commit([kernel, gamma]);

    const now = (await readdir(dir)).sort();
    for (const p of oldFiles.slice(1)) {
      if (!store.files().includes(p)) assert.ok(!now.includes(p), `old shard ${p} deleted`);
    }
    assert.deepEqual(now, [...store.files()].sort(), 'folder holds exactly the new model, no temp files');
    assert.ok(store.files().slice(1).some((p) => !oldFiles.includes(p)), 'new shard names');
    const newJson = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8'));
    for (const k of Object.keys(oldJson)) if (k !== 'weightsManifest') assert.deepEqual(newJson[k], oldJson[k], `${k} preserved`);
    assert.deepEqual(Object.keys(newJson), Object.keys(oldJson), 'key order preserved');

    const reread = await readModelTensors(dir);
    for (const [name, v] of expected) assertBitsEqual(reread.get(name)!.data, v, `reread ${name}`);
    const loaded = await tf.loadLayersModel(fileSystemIO(dir));
    const lw = weightsByOriginalName(loaded);
    for (const [name, v] of expected) assertBitsEqual(lw.get(name)!, v, `tfjs ${name}`);
    assert.ok(Object.is(lw.get(kernel)![kv.length - 1], -0), 'negative zero kept');

    // the store follows its own commit: values are the same arrays, a second commit works
    assert.equal(store.values(kernel), kv);
    const firstCommitFiles = store.files();
    kv[1] = 42;
    await store.commit([kernel]);
    assert.equal((await readModelTensors(dir)).get(kernel)!.data[1], 42);
    const after2 = await readdir(dir);
    for (const p of firstCommitFiles.slice(1)) {
      if (!store.files().includes(p)) assert.ok(!after2.includes(p), `first commit's shard ${p} deleted`);
    }
  });

  test('a crash before the switch leaves exactly the old model; loaders see the old model until then', async () => {
    const dir = await freshDir();
    const model = buildModel();
    await model.save(fileSystemIO(dir));
    const before = await snapshot(dir);
    let crash = true;
    let seenInside: Map<string, { data: Float32Array }> | undefined;
    const store = await openTfjsModelDir(dir, {
      onBeforeSwitch: async ({ tempModelJson, newShards }) => {
        // new files are complete on disk, model.json still the old one
        assert.ok((await readFile(tempModelJson, 'utf8')).includes(newShards[0]));
        seenInside = await readModelTensors(dir);
        if (crash) throw new Error('simulated power loss');
      },
    });
    const name = store.list()[0].name;
    const original = store.values(name).slice();
    store.values(name)[0] += 1;
    await assert.rejects(store.commit([name]), /simulated power loss/);
    assertBitsEqual(seenInside!.get(name)!.data, original, 'loader during the write sees the old values');
    assertSameSnapshot(before, await snapshot(dir));
    const loaded = await tf.loadLayersModel(fileSystemIO(dir));
    assertBitsEqual(predict(loaded), predict(model), 'old model still loads');

    crash = false;
    await store.commit([name]);
    assert.equal((await readModelTensors(dir)).get(name)!.data[0], Math.fround(original[0] + 1));
    assert.ok(Object.is(seenInside!.get(name)!.data[0], original[0]), 'even the last moment before the switch shows the old model');
  });

  test('commit errors leave model.json and every file byte-for-byte unchanged', async () => {
    const dir = await freshDir();
    await buildModel().save(fileSystemIO(dir));
    const before = await snapshot(dir);
    const store = await openTfjsModelDir(dir);
    const name = store.list()[0].name;
    store.values(name)[0] = 9;
    await assert.rejects(store.commit([name, 'not/a/tensor']), (e: unknown) => e instanceof ModelMismatchError && /not\/a\/tensor/.test(e.message));
    assertSameSnapshot(before, await snapshot(dir));

    // someone else replaced model.json after we opened it: refuse, keep their version
    const other = Buffer.concat([before.get('model.json')!, Buffer.from(' ')]);
    await writeFile(path.join(dir, 'model.json'), other);
    const expectedAfter = await snapshot(dir);
    await assert.rejects(store.commit([name]), (e: unknown) => e instanceof ModelFormatError && /changed while/.test(e.message));
    assertSameSnapshot(expectedAfter, await snapshot(dir));
  });

  test('another writer replacing model.json during the write wins; our new files are removed', async () => {
    const dir = await freshDir();
    await buildModel().save(fileSystemIO(dir));
    const theirs = Buffer.from(JSON.stringify({ modelTopology: { theirs: true }, weightsManifest: [] }));
    const store = await openTfjsModelDir(dir, {
      onBeforeSwitch: async () => { await writeFile(path.join(dir, 'model.json'), theirs); },
    });
    const oldShards = store.files().slice(1);
    const name = store.list()[0].name;
    store.values(name)[0] = 5;
    await assert.rejects(store.commit([name]), (e: unknown) => e instanceof ModelFormatError && /changed while this write was in progress/.test(e.message));
    assert.ok((await readFile(path.join(dir, 'model.json'))).equals(theirs), 'their model.json kept');
    assert.deepEqual((await readdir(dir)).sort(), ['model.json', ...oldShards].sort(), 'no temp or new shard files left');
  });
});

// ---------------------------------------------------------------------------------------
// hand-written quantized manifests

/**
 * A folder with every storage kind. Expected values are worked out by hand:
 *  q8  uint8,  scale 0.5,  min -1:  [0, 1, 2, 255] -> [-1, -0.5, 0, 126.5]
 *  q8b uint8,  scale 0.1,  min -0.3: [7] -> fround(7*0.1 - 0.3) = fround(0.40000000000000013) = 0.4f
 *  q16 uint16, scale 0.25, min 10:  [0, 258, 65535] -> [10, 74.5, 16393.75]
 *  h   float16: 0x3C00=1, 0xC000=-2, 0x3555=0.333251953125, 0x0001=2^-24, 0x03FF=1023*2^-24,
 *      0x0400=2^-14, 0x7BFF=65504, 0x7C00=+Inf, 0x8000=-0, 0xFC00=-Inf
 *  f   float32 [1.5, -2.25]
 *  step int32 123456789, mask bool [1,0,1], qi int32 uint8 scale 2 min -3: [5] -> 7
 */
function quantizedFixture(): { json: Record<string, unknown>; files: Record<string, Uint8Array> } {
  const weights: TfjsWeightEntry[] = [
    { name: 'q8', shape: [2, 2], dtype: 'float32', quantization: { dtype: 'uint8', scale: 0.5, min: -1, original_dtype: 'float32' } },
    { name: 'step', shape: [], dtype: 'int32' },
    { name: 'q16', shape: [3], dtype: 'float32', quantization: { dtype: 'uint16', scale: 0.25, min: 10 } },
    { name: 'h', shape: [10], dtype: 'float32', quantization: { dtype: 'float16', original_dtype: 'float32' } },
    { name: 'mask', shape: [3], dtype: 'bool' },
    { name: 'q8b', shape: [1], dtype: 'float32', quantization: { dtype: 'uint8', scale: 0.1, min: -0.3 } },
    { name: 'qi', shape: [1], dtype: 'int32', quantization: { dtype: 'uint8', scale: 2, min: -3 } },
    { name: 'f', shape: [2], dtype: 'float32', customNote: 'kept' },
  ];
  const data = cat(
    Uint8Array.from([0, 1, 2, 255]),
    i32le(123456789),
    u16le(0, 258, 65535),
    u16le(0x3c00, 0xc000, 0x3555, 0x0001, 0x03ff, 0x0400, 0x7bff, 0x7c00, 0x8000, 0xfc00),
    Uint8Array.from([1, 0, 1]),
    Uint8Array.from([7]),
    Uint8Array.from([5]),
    f32le(1.5, -2.25),
  );
  // cut in two shards at an odd place (inside the float16 tensor)
  return {
    json: {
      modelTopology: { note: 'hand written' },
      format: 'layers-model',
      generatedBy: 'hand',
      convertedBy: null,
      weightsManifest: [{ paths: ['group1-shard1of2.bin', 'group1-shard2of2.bin'], weights }],
      userDefinedMetadata: { owner: 'test' },
    },
    files: { 'group1-shard1of2.bin': data.subarray(0, 17), 'group1-shard2of2.bin': data.subarray(17) },
  };
}
const EXPECTED: Record<string, number[]> = {
  q8: [-1, -0.5, 0, 126.5],
  q8b: [Math.fround(0.4)],
  q16: [10, 74.5, 16393.75],
  h: [1, -2, 0.333251953125, 2 ** -24, 1023 * 2 ** -24, 2 ** -14, 65504, Infinity, -0, -Infinity],
  f: [1.5, -2.25],
};

describe('quantized manifests', () => {
  test('uint8, uint16 and float16 dequantize to the hand-computed values', async () => {
    const dir = await freshDir();
    const { json, files } = quantizedFixture();
    await writeRaw(dir, json, files);
    const store = await openTfjsModelDir(dir);
    assert.deepEqual(store.list().map((e) => [e.name, e.storage]), [['q8', 'uint8'], ['q16', 'uint16'], ['h', 'float16'], ['q8b', 'uint8'], ['f', 'float32'], ['tfjs:frame', 'float32']]);
    for (const [name, expected] of Object.entries(EXPECTED)) {
      assertBitsEqual(store.values(name), Float32Array.from(expected), name);
    }
    assert.equal(store.values('q8b')[0], 0.4000000059604645);
  });

  test('dequantization matches tfjs 4.22 decodeWeights bit for bit', async () => {
    const dir = await freshDir();
    const { json, files } = quantizedFixture();
    await writeRaw(dir, json, files);
    const store = await openTfjsModelDir(dir);
    const artifacts = await fileSystemIO(dir).load();
    const decoded = tf.io.decodeWeights(artifacts.weightData!, artifacts.weightSpecs!);
    for (const e of store.list().filter((x) => x.patchable !== false)) assertBitsEqual(store.values(e.name), decoded[e.name].dataSync() as Float32Array, `tfjs ${e.name}`);
    assert.deepEqual(Array.from(decoded.qi.dataSync()), [7], 'tfjs rounds quantized int32');
    assert.deepEqual(Array.from((store.passthroughValues('qi').data as Int32Array)), [7]);
  });

  test('every float16 bit pattern decodes like tfjs (NaN payloads, subnormals, signed zero)', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const ours = float16BitsToFloat32(all);
    const theirs = tf.io.decodeWeights(all.buffer, [{ name: 'x', shape: [65536], dtype: 'float32', quantization: { dtype: 'float16' } }]).x.dataSync() as Float32Array;
    assertBitsEqual(ours, theirs, 'float16 table');
    assert.equal(new Uint32Array(ours.buffer)[0x7e01], 0x7fc02000, 'NaN payload kept');
  });

  test('int32 and bool entries are not exposed as floats and stay bit-exact through a commit', async () => {
    const dir = await freshDir();
    const { json, files } = quantizedFixture();
    await writeRaw(dir, json, files);
    const store = await openTfjsModelDir(dir);
    assert.ok(!store.list().some((e) => ['step', 'mask', 'qi'].includes(e.name)));
    assert.throws(() => store.values('step'), (e: unknown) => e instanceof ModelMismatchError && /int32/.test(e.message));
    assert.deepEqual(store.passthroughEntries().map((e) => [e.name, e.dtype, e.byteLength]), [['step', 'int32', 4], ['mask', 'bool', 3], ['qi', 'int32', 1]]);
    assert.deepEqual(Array.from(store.passthroughValues('step').data as Int32Array), [123456789]);
    assert.deepEqual(Array.from(store.passthroughValues('mask').data as Uint8Array), [1, 0, 1]);
    await assert.rejects(store.commit(['step']), ModelMismatchError);

    const passBefore = Object.fromEntries(['step', 'mask', 'qi', 'h', 'q16'].map((n) => [n, store.storedBytes(n)]));
    store.values('q8')[1] = 0.123;
    await store.commit(['q8']);
    const after = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8'));
    const entries = new Map<string, TfjsWeightEntry>(after.weightsManifest[0].weights.map((w: TfjsWeightEntry) => [w.name, w]));
    assert.deepEqual(entries.get('q8'), { name: 'q8', shape: [2, 2], dtype: 'float32' }, 'patched tensor now plain float32');
    assert.deepEqual(entries.get('h')!.quantization, { dtype: 'float16', original_dtype: 'float32' }, 'untouched float16 kept');
    assert.deepEqual(entries.get('qi')!.quantization, { dtype: 'uint8', scale: 2, min: -3 }, 'quantized int32 kept verbatim');
    assert.equal(entries.get('f')!.customNote, 'kept', 'unknown entry keys kept');
    assert.deepEqual(after.userDefinedMetadata, { owner: 'test' });

    const reopened = await openTfjsModelDir(dir);
    for (const [n, b] of Object.entries(passBefore)) assert.ok(Buffer.from(reopened.storedBytes(n)).equals(Buffer.from(b)), `${n} stored bytes unchanged`);
    assertBitsEqual(reopened.values('q8'), Float32Array.from([-1, 0.123, 0, 126.5]), 'patched values');
    for (const n of ['q16', 'h', 'q8b', 'f']) assertBitsEqual(reopened.values(n), Float32Array.from(EXPECTED[n]), `${n} unchanged`);
    // tfjs reads the mixed folder the same way
    const artifacts = await fileSystemIO(dir).load();
    const decoded = tf.io.decodeWeights(artifacts.weightData!, artifacts.weightSpecs!);
    assert.deepEqual(Array.from(decoded.step.dataSync()), [123456789]);
    assertBitsEqual(decoded.q8.dataSync() as Float32Array, Float32Array.from([-1, 0.123, 0, 126.5]), 'tfjs q8');
  });

  test("quantizedUnchanged: 'float32' rewrites every float tensor as float32 with the same values", async () => {
    const dir = await freshDir();
    const { json, files } = quantizedFixture();
    await writeRaw(dir, json, files);
    const store = await openTfjsModelDir(dir, { quantizedUnchanged: 'float32' });
    store.values('f')[0] = 2;
    await store.commit(['f']);
    const after = parseModelJson(await readFile(path.join(dir, 'model.json'), 'utf8'));
    for (const w of after.weightsManifest[0].weights) {
      if (w.dtype === 'float32') assert.equal(w.quantization, undefined, `${w.name} float32`);
    }
    assert.deepEqual(after.weightsManifest[0].weights.find((w) => w.name === 'qi')!.quantization, { dtype: 'uint8', scale: 2, min: -3 });
    const t = await readModelTensors(dir);
    for (const n of ['q8', 'q16', 'h', 'q8b']) assertBitsEqual(t.get(n)!.data, Float32Array.from(EXPECTED[n]), n);
    assertBitsEqual(t.get('f')!.data, Float32Array.from([2, -2.25]), 'f');
  });

  test('a quantized tensor written to but not listed as changed is still saved as float32', async () => {
    const dir = await freshDir();
    const { json, files } = quantizedFixture();
    await writeRaw(dir, json, files);
    const store = await openTfjsModelDir(dir);
    store.values('q16')[0] = 11.1;
    store.values('f')[1] = 0.5;
    await store.commit(['f']);
    const t = await readModelTensors(dir);
    assertBitsEqual(t.get('q16')!.data, Float32Array.from([11.1, 74.5, 16393.75]), 'q16 not lost');
  });
});

describe('shards', () => {
  test('tensors spanning shard boundaries over several groups read correctly', async () => {
    const dir = await freshDir();
    // group 1: a [3] float32 (bytes 0..12) and b [2] float32 (12..20) over shards of 10, 10, 0 bytes + rest
    const g1 = cat(f32le(0.5, -1.25, 3e-3), f32le(7, -8.5));
    const g2 = cat(Uint8Array.from([10, 20]), f32le(99));
    await writeRaw(dir, {
      modelTopology: {},
      format: 'layers-model',
      weightsManifest: [
        { paths: ['group1-shard1of3.bin', 'group1-shard2of3.bin', 'group1-shard3of3.bin'], weights: [{ name: 'a', shape: [3], dtype: 'float32' }, { name: 'b', shape: [2, 1], dtype: 'float32' }] },
        { paths: ['group2-shard1of1.bin'], weights: [{ name: 'c', shape: [2], dtype: 'float32', quantization: { dtype: 'uint8', scale: 0.5, min: 0 } }, { name: 'd', shape: [], dtype: 'float32' }] },
      ],
    }, { 'group1-shard1of3.bin': g1.subarray(0, 10), 'group1-shard2of3.bin': g1.subarray(10, 19), 'group1-shard3of3.bin': g1.subarray(19), 'group2-shard1of1.bin': g2 });
    const t = await readModelTensors(dir);
    assertBitsEqual(t.get('a')!.data, Float32Array.from([0.5, -1.25, 3e-3]), 'a');
    assertBitsEqual(t.get('b')!.data, Float32Array.from([7, -8.5]), 'b');
    assert.deepEqual(t.get('b')!.shape, [2, 1]);
    assertBitsEqual(t.get('c')!.data, Float32Array.from([5, 10]), 'c');
    assertBitsEqual(t.get('d')!.data, Float32Array.from([99]), 'd');

    // commit with tiny shards keeps the group structure and splits again
    const store = await openTfjsModelDir(dir, { shardBytes: 8 });
    store.values('d')[0] = -1;
    await store.commit(['d']);
    const json = parseModelJson(await readFile(path.join(dir, 'model.json'), 'utf8'));
    assert.equal(json.weightsManifest.length, 2);
    assert.equal(json.weightsManifest[0].paths.length, 3, '20 bytes in shards of 8');
    assert.ok(json.weightsManifest[1].paths.every((p) => p.startsWith('group2-')));
    for (const p of json.weightsManifest[0].paths) assert.ok((await readFile(path.join(dir, p))).length <= 8);
    const t2 = await readModelTensors(dir);
    assertBitsEqual(t2.get('a')!.data, Float32Array.from([0.5, -1.25, 3e-3]), 'a after');
    assertBitsEqual(t2.get('d')!.data, Float32Array.from([-1]), 'd after');
    assert.deepEqual((await readdir(dir)).sort(), (await referencedFiles(dir)).sort(), 'old hand-named shards deleted');
  });

  test('a missing shard is a ModelFormatError naming the file, and nothing is written', async () => {
    const dir = await freshDir();
    const model = buildModel();
    await model.save(fileSystemIO(dir, { shardBytes: 300 }));
    const files = await referencedFiles(dir);
    assert.ok(files.length >= 4, 'at least 3 shards');
    const victim = files[2];
    await unlink(path.join(dir, victim));
    const before = await snapshot(dir);
    await assert.rejects(openTfjsModelDir(dir), (e: unknown) => {
      assert.ok(e instanceof ModelFormatError);
      assert.equal(e.code, 'ND_MODEL_FORMAT');
      assert.ok(e.message.startsWith(`model.json names ${victim}, which is missing in ${dir}`), e.message);
      assert.match(e.message, /Copy the complete model folder again/);
      assert.equal(e.details.path, victim);
      return true;
    });
    await assert.rejects(fileSystemIO(dir).load(), ModelFormatError);
    await assert.rejects(readModelTensors(dir), ModelFormatError);
    assertSameSnapshot(before, await snapshot(dir));
  });

  test('a short shard is a ModelFormatError that points at the truncated file', async () => {
    const dir = await freshDir();
    await buildModel().save(fileSystemIO(dir, { shardBytes: 300 }));
    const files = await referencedFiles(dir);
    const victim = files[1]; // first shard, not the last
    await truncate(path.join(dir, victim), 123);
    const before = await snapshot(dir);
    await assert.rejects(openTfjsModelDir(dir), (e: unknown) => {
      assert.ok(e instanceof ModelFormatError);
      assert.match(e.message, /is short: expected \d+ bytes of weights, found \d+ bytes/);
      assert.ok(e.message.includes(`${victim} (123 bytes) is likely short`), e.message);
      assert.equal(e.details.suspect, victim);
      return true;
    });
    await assert.rejects(fileSystemIO(dir).load(), ModelFormatError);
    assertSameSnapshot(before, await snapshot(dir));
  });

  test('extra bytes after the last weight are refused (model.json and shards disagree)', async () => {
    const dir = await freshDir();
    await writeRaw(dir, { modelTopology: {}, weightsManifest: [{ paths: ['w.bin'], weights: [{ name: 'a', shape: [2], dtype: 'float32' }] }] }, { 'w.bin': f32le(1, 2, 3) });
    await assert.rejects(openTfjsModelDir(dir), (e: unknown) => e instanceof ModelFormatError && /4 extra bytes/.test(e.message));
  });
});

describe('malformed model folders', () => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['not JSON', '{"modelTopology": {', /expected JSON/],
    ['not an object', '[1,2]', /expected a JSON object/],
    ['weightsManifest not an array', { modelTopology: {}, weightsManifest: { paths: [] } }, /weightsManifest.*array/],
    ['group without weights', { modelTopology: {}, weightsManifest: [{ paths: ['a.bin'] }] }, /weightsManifest\[0\]: expected \{paths/],
    ['negative shape', { modelTopology: {}, weightsManifest: [{ paths: [], weights: [{ name: 'a', shape: [-1], dtype: 'float32' }] }] }, /non-negative integers/],
    ['unknown dtype', { modelTopology: {}, weightsManifest: [{ paths: [], weights: [{ name: 'a', shape: [1], dtype: 'float64' }] }] }, /"dtype" of a/],
    ['unknown quantization', { modelTopology: {}, weightsManifest: [{ paths: [], weights: [{ name: 'a', shape: [1], dtype: 'float32', quantization: { dtype: 'int4' } }] }] }, /tfjs 4.22 knows no other scheme/],
    ['uint8 without scale', { modelTopology: {}, weightsManifest: [{ paths: [], weights: [{ name: 'a', shape: [1], dtype: 'float32', quantization: { dtype: 'uint8', min: 0 } }] }] }, /quantization.scale/],
    ['float16 on int32', { modelTopology: {}, weightsManifest: [{ paths: [], weights: [{ name: 'a', shape: [1], dtype: 'int32', quantization: { dtype: 'float16' } }] }] }, /float16 quantization only on a float32/],
    ['path escaping the folder', { modelTopology: {}, weightsManifest: [{ paths: ['../secret.bin'], weights: [] }] }, /leaves the model folder/],
    ['absolute path', { modelTopology: {}, weightsManifest: [{ paths: ['/etc/passwd'], weights: [] }] }, /absolute path/],
    ['duplicate names', { modelTopology: {}, weightsManifest: [{ paths: [], weights: [{ name: 'a', shape: [0], dtype: 'float32' }, { name: 'a', shape: [0], dtype: 'float32' }] }] }, /appears twice/],
  ];
  for (const [what, json, pattern] of cases) {
    test(`${what} -> ModelFormatError`, async () => {
      const dir = await freshDir();
      await writeRaw(dir, json, {});
      const before = await snapshot(dir);
      await assert.rejects(openTfjsModelDir(dir), (e: unknown) => {
        assert.ok(e instanceof ModelFormatError, `got ${String(e)}`);
        assert.match(e.message, pattern);
        return true;
      });
      await assert.rejects(fileSystemIO(dir).load(), ModelFormatError);
      assertSameSnapshot(before, await snapshot(dir));
    });
  }

  test('no model.json / no folder -> ModelFormatError saying what was found', async () => {
    const dir = await freshDir();
    await writeFile(path.join(dir, 'weights.bin'), 'x');
    await assert.rejects(openTfjsModelDir(dir), (e: unknown) => e instanceof ModelFormatError && /no model\.json in .*found the folder holds weights\.bin, but no model\.json/.test(e.message));
    await assert.rejects(openTfjsModelDir(path.join(dir, 'nope')), (e: unknown) => e instanceof ModelFormatError && /found no such folder/.test(e.message));
  });
});

// ---------------------------------------------------------------------------------------
// graph models

/** y = x @ w + b, with an unrelated int32 weight and oddly formatted extra keys. */
const GRAPH_PREFIX = `{
  "format":  "graph-model",
  "generatedBy": "2.15.0", "convertedBy": "TensorFlow.js Converter v4.22.0",
  "modelTopology": {"node": [
    {"name": "x", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"}, "shape": {"shape": {"dim": [{"size": "-1"}, {"size": "3"}]}}}},
    {"name": "w", "op": "Const", "attr": {"value": {"tensor": {"dtype": "DT_FLOAT", "tensorShape": {"dim": [{"size": "3"}, {"size": "2"}]}}}, "dtype": {"type": "DT_FLOAT"}}},
    {"name": "b", "op": "Const", "attr": {"value": {"tensor": {"dtype": "DT_FLOAT", "tensorShape": {"dim": [{"size": "2"}]}}}, "dtype": {"type": "DT_FLOAT"}}},
    {"name": "mm", "op": "MatMul", "input": ["x", "w"], "attr": {"transpose_a": {"b": false}, "transpose_b": {"b": false}, "T": {"type": "DT_FLOAT"}}},
    {"name": "y", "op": "AddV2", "input": ["mm", "b"], "attr": {"T": {"type": "DT_FLOAT"}}}
  ], "library": {}, "versions": {"producer": 1482}},
  "note": "braces } in \\"strings\\" ] and numbers 1.50e+0 kept",
  `;
const GRAPH_SUFFIX = `,
  "userDefinedMetadata": {"version": 1.0}
}
`;

describe('graph models', () => {
  test('a graph-model folder is read, patched and re-loaded by tf.loadGraphModel; other keys kept byte for byte', async () => {
    const dir = await freshDir();
    const manifest = [{ paths: ['group1-shard1of1.bin'], weights: [
      { name: 'w', shape: [3, 2], dtype: 'float32' },
      { name: 'counter', shape: [2], dtype: 'int32' },
      { name: 'b', shape: [2], dtype: 'float32' },
    ] }];
    const text = `${GRAPH_PREFIX}"weightsManifest": ${JSON.stringify(manifest)}${GRAPH_SUFFIX}`;
    await writeRaw(dir, text, { 'group1-shard1of1.bin': cat(f32le(1, 2, 3, 4, 5, 6), i32le(-7, 2147483647), f32le(0.5, -0.5)) });

    const x = tf.tensor2d([[1, 0, 2]]);
    const g1 = await tf.loadGraphModel(fileSystemIO(dir));
    assert.deepEqual(Array.from((g1.execute(x, 'y') as tf.Tensor).dataSync()), [1 + 10 + 0.5, 2 + 12 - 0.5]);

    const store = await openTfjsModelDir(dir);
    assert.equal(store.format, 'graph-model');
    assert.deepEqual(store.list().map((e) => [e.name, [...e.shape]]), [['w', [3, 2]], ['b', [2]], ['tfjs:frame', [8]]]);
    assert.deepEqual(Array.from(store.passthroughValues('counter').data as Int32Array), [-7, 2147483647]);
    store.values('w')[0] = 100;
    await store.commit(['w']);

    const after = await readFile(path.join(dir, 'model.json'), 'utf8');
    assert.ok(after.startsWith(`${GRAPH_PREFIX}"weightsManifest": `), 'everything before the manifest kept byte for byte');
    assert.ok(after.endsWith(GRAPH_SUFFIX), 'everything after the manifest kept byte for byte');
    const g2 = await tf.loadGraphModel(fileSystemIO(dir));
    assert.deepEqual(Array.from((g2.execute(x, 'y') as tf.Tensor).dataSync()), [100 + 10 + 0.5, 2 + 12 - 0.5]);
    const reopened = await openTfjsModelDir(dir);
    assert.deepEqual(Array.from(reopened.passthroughValues('counter').data as Int32Array), [-7, 2147483647]);
  });
});

// ---------------------------------------------------------------------------------------

describe('writeModelDir, readModelTensors, file lists', () => {
  test('round trip, manifest order from the template, replacing the old model', async () => {
    const dir = await freshDir();
    const tensors = new Map([
      ['dense/kernel', { shape: [2, 2], data: Float32Array.from([1, 2, 3, 4]) }],
      ['dense/bias', { shape: [2], data: Float32Array.from([-1, 1]) }],
      ['step', { shape: [], data: Int32Array.from([5]) }],
    ]);
    const written = await writeModelDir(dir, { modelTopology: { k: 1 }, format: 'layers-model', extra: [1, 2] }, tensors);
    assert.deepEqual(written.weightsManifest[0].weights, [
      { name: 'dense/kernel', shape: [2, 2], dtype: 'float32' },
      { name: 'dense/bias', shape: [2], dtype: 'float32' },
      { name: 'step', shape: [], dtype: 'int32' },
    ]);
    assert.deepEqual(written.extra, [1, 2]);
    const back = await readModelTensors(dir);
    assert.deepEqual([...back.keys()], ['dense/kernel', 'dense/bias']);
    assertBitsEqual(back.get('dense/kernel')!.data, Float32Array.from([1, 2, 3, 4]), 'kernel');
    assert.deepEqual(Array.from((await openTfjsModelDir(dir)).passthroughValues('step').data as Int32Array), [5]);
    const firstFiles = await referencedFiles(dir);

    // template with a quantized manifest: order kept, written as float32
    const template = { modelTopology: {}, weightsManifest: [{ paths: ['x.bin'], weights: [
      { name: 'dense/bias', shape: [2], dtype: 'float32' as const, quantization: { dtype: 'uint8' as const, scale: 1, min: 0 } },
      { name: 'dense/kernel', shape: [2, 2], dtype: 'float32' as const },
    ] }] };
    await writeModelDir(dir, template, { 'dense/kernel': { shape: [2, 2], data: Float32Array.from([4, 3, 2, 1]) }, 'dense/bias': { shape: [2], data: Float32Array.from([0.25, 0.75]) } });
    const back2 = await readModelTensors(dir);
    assert.deepEqual([...back2.keys()], ['dense/bias', 'dense/kernel']);
    assertBitsEqual(back2.get('dense/bias')!.data, Float32Array.from([0.25, 0.75]), 'bias not re-quantized');
    const now = await readdir(dir);
    for (const p of firstFiles.slice(1)) assert.ok(!now.includes(p), `old shard ${p} removed`);

    await assert.rejects(writeModelDir(dir, template, { 'dense/kernel': { shape: [4], data: new Float32Array(4) }, 'dense/bias': { shape: [2], data: new Float32Array(2) } }), UsageError);
    await assert.rejects(writeModelDir(dir, template, { 'dense/kernel': { shape: [2, 2], data: new Float32Array(4) } }), UsageError);
    assertBitsEqual((await readModelTensors(dir)).get('dense/bias')!.data, Float32Array.from([0.25, 0.75]), 'failed writes changed nothing');
  });

  test('referencedFiles and listStaleFiles', async () => {
    const dir = await freshDir();
    await buildModel().save(fileSystemIO(dir, { shardBytes: 500 }));
    const refs = await referencedFiles(dir);
    assert.equal(refs[0], 'model.json');
    assert.deepEqual([...refs].sort(), (await readdir(dir)).sort());
    assert.deepEqual(await listStaleFiles(dir), []);
    await writeFile(path.join(dir, 'model.json.tmp-123-abcdef'), '{}');
    await writeFile(path.join(dir, 'group1-shard1of1-0000000000000000.bin'), 'x');
    await writeFile(path.join(dir, 'README.md'), 'mine');
    assert.deepEqual(await listStaleFiles(dir), ['group1-shard1of1-0000000000000000.bin', 'model.json.tmp-123-abcdef']);
  });
});

describe('replaceTopLevelValue', () => {
  test('replaces only the value, keeps all other bytes', () => {
    const text = '\uFEFF{ "a" : "x\\"}{[" ,\n "weightsManifest":[{"paths":["p"]}] , "b": {"weightsManifest": 1}, "c": 1.50 }';
    assert.equal(replaceTopLevelValue(text, 'weightsManifest', '[]'), '\uFEFF{ "a" : "x\\"}{[" ,\n "weightsManifest":[] , "b": {"weightsManifest": 1}, "c": 1.50 }');
  });
  test('last duplicate wins (like JSON.parse); absent keys are appended', () => {
    assert.equal(replaceTopLevelValue('{"k":1,"k":2}', 'k', '3'), '{"k":1,"k":3}');
    assert.equal(replaceTopLevelValue('{"a":1}', 'k', '[]'), '{"a":1,"k":[]}');
    assert.equal(replaceTopLevelValue('{}', 'k', '[]'), '{"k":[]}');
    assert.deepEqual(JSON.parse(replaceTopLevelValue('{"a":true,"k":null,"z":[1,{"k":2}]}', 'k', '{"v":1}')), { a: true, k: { v: 1 }, z: [1, { k: 2 }] });
  });
});
