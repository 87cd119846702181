/**
 * The device-side stores that need no Node, in Node: the live-model store's manifest check (a
 * missing, extra or reshaped weight named in the error; a matching manifest accepted under a
 * second load's renamed variables), and the key-value sequence store over an AsyncStorage-shaped
 * adapter (round trip, a malformed record refused by the applier, not taken for a new device).
 * IndexedDB and localStorage run in a real browser in browser-tfjs.test.ts.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { applyPayload, ModelMismatchError, StateStoreError, UsageError } from '../src/apply/index.ts';
import { browserSequenceStore, IndexedDbSequenceStore, KeyValueSequenceStore, type KeyValueStorage } from '../src/apply/sequence-stores.ts';
import { getHasher } from '../src/core/hasher.ts';
import { buildPayload } from '../src/diff/build.ts';
import { fileSystemIO, openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { tfModelStore, type ModelJsonWeights } from '../src/tfjs.ts';
import { memoryCopy } from './helpers/perturb.ts';

let work: string;
let dir: string;
let modelJson: ModelJsonWeights;
before(async () => {
  await tf.setBackend('cpu');
  work = await mkdtemp(path.join(tmpdir(), 'nd-device-stores-'));
  dir = path.join(work, 'mlp');
  const model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [8], units: 4, name: 'hidden' }), tf.layers.dense({ units: 2, name: 'out' })] });
  await model.save(fileSystemIO(dir));
  model.dispose();
  modelJson = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8')) as ModelJsonWeights;
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

test('tfModelStore with the manifest: a second load (renamed variables) matches; a missing, extra or reshaped weight is named', async () => {
  const first = await tf.loadLayersModel(fileSystemIO(dir));
  const model = await tf.loadLayersModel(fileSystemIO(dir));
  assert.ok(model.weights.some((w) => w.name !== w.originalName), 'the second load renames its variables');
  assert.deepEqual(tfModelStore(model, { manifest: modelJson }).list().map((e) => e.name), ['hidden/kernel', 'hidden/bias', 'out/kernel', 'out/bias']);
  tfModelStore(model, { manifest: modelJson.weightsManifest }); // the array alone is accepted too

  const withExtra = structuredClone(modelJson);
  withExtra.weightsManifest[0].weights.push({ name: 'head/kernel', shape: [2, 3], dtype: 'float32' });
  const withoutOne = structuredClone(modelJson);
  withoutOne.weightsManifest[0].weights = withoutOne.weightsManifest[0].weights.filter((w) => w.name !== 'out/bias');
  const reshaped = structuredClone(modelJson);
  reshaped.weightsManifest[0].weights.find((w) => w.name === 'hidden/kernel')!.shape = [8, 5];
  assert.throws(() => tfModelStore(model, { manifest: withExtra }), (e: unknown) => e instanceof ModelMismatchError && /missing 1 weight\(s\) its manifest names: "head\/kernel"/.test(e.message) && (e.details.missing as string[])[0] === 'head/kernel');
  assert.throws(() => tfModelStore(model, { manifest: withoutOne }), (e: unknown) => e instanceof ModelMismatchError && /1 weight\(s\) its manifest does not name: "out\/bias"/.test(e.message));
  assert.throws(() => tfModelStore(model, { manifest: reshaped }), (e: unknown) => e instanceof ModelMismatchError && /another shape than the manifest's: "hidden\/kernel"/.test(e.message));
  assert.throws(() => tfModelStore(model, { manifest: {} as ModelJsonWeights }), UsageError);
  first.dispose();
  model.dispose();
});

/** An AsyncStorage-shaped adapter over a Map (every call asynchronous, as React Native's is). */
function asyncStorage(): KeyValueStorage & { map: Map<string, string> } {
  const map = new Map<string, string>();
  return { map, getItem: async (k) => map.get(k) ?? null, setItem: async (k, v) => { map.set(k, v); } };
}

test('KeyValueSequenceStore over an AsyncStorage-shaped adapter: the applier records the sequence and refuses the replay; a damaged record is refused, not ignored', async () => {
  const hasher = await getHasher();
  const base = memoryCopy(await openTfjsModelDir(dir));
  const built = buildPayload(hasher, base, [{ kind: 'sparse', name: 'out/kernel', positions: Uint32Array.from([1, 3]), values: Float32Array.from([0.5, -0.25]), codec: 'f32' }], { method: 'sparse', modelId: 'mlp', sequence: 4 });
  const storage = asyncStorage();
  const sequences = new KeyValueSequenceStore(storage);
  const res = await applyPayload(base.clone(), built.bytes, { sequenceStore: sequences });
  assert.equal(res.sequenceRecorded, true);
  assert.deepEqual(JSON.parse(storage.map.get('neural-diff:sequence:mlp') ?? ''), { sequence: 4, fingerprint: built.payload.header.targetFingerprint });
  assert.equal(await sequences.get('mlp'), 4);
  await assert.rejects(applyPayload(base.clone(), built.bytes, { sequenceStore: new KeyValueSequenceStore(storage) }), /was already applied on this device/);

  for (const damaged of ['not json', '{"sequence": "4"}', '[]']) {
    storage.map.set('neural-diff:sequence:mlp', damaged);
    const store = base.clone();
    await assert.rejects(applyPayload(store, built.bytes, { sequenceStore: sequences }), StateStoreError, damaged);
    assert.deepEqual(store.values('out/kernel'), base.values('out/kernel'), 'nothing written');
  }
  assert.throws(() => new KeyValueSequenceStore({} as KeyValueStorage), UsageError);
});

test('without indexedDB or localStorage (Node, React Native) the browser store says what to use instead', () => {
  assert.throws(() => browserSequenceStore(), (e: unknown) => e instanceof UsageError && /KeyValueSequenceStore\(AsyncStorage\)/.test(e.message));
  assert.throws(() => new IndexedDbSequenceStore(), (e: unknown) => e instanceof UsageError && /no indexedDB/.test(e.message));
});
