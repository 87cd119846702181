/**
 * A browser page that updates a live TF.js model: stock tfjs loads it, `neural-diff/tfjs` makes it
 * a weight store (keyed by manifest names, checked against its model.json), `neural-diff/apply`
 * verifies and patches it in place, and the applied sequence persists in IndexedDB
 * (`browserSequenceStore()`; `?store=local` uses localStorage instead), so reloading the page
 * and offering the same payload again is refused as a replay.
 *
 * Bundled with esbuild (tfjs is the app's own dependency); `test/browser-tfjs.test.ts` serves it
 * with a real pretrained model and runs it in headless Chromium on each backend. Query:
 * `?backend=webgl|webgpu|wasm|cpu` (default: tfjs's own choice, WebGL in a browser),
 * `?store=local`, `?manifest=drop` (a manifest missing one weight, to see the refusal),
 * `?keep=no` (do not load the kept updated model: the published v1 again, as an app that forgets
 * its update does).
 *
 * As quick start 3 in the README: the updated model is kept in IndexedDB (`model.save`) and loaded
 * from there first, so after a reload the page runs v2 and the payload is `already-applied`.
 */
import * as tf from '@tensorflow/tfjs';
import { applyPayload, fingerprintStore, getHasher, NeuralDiffError } from 'neural-diff/apply';
import { browserSequenceStore, KeyValueSequenceStore } from 'neural-diff/sequence-stores';
import { tfModelStore, type ModelJsonWeights } from 'neural-diff/tfjs';
import type { TfjsModelJson } from 'neural-diff';

const query = new URLSearchParams(location.search);
/** Where the updated model is kept between page loads. */
const KEPT = 'indexeddb://neural-diff-example';
const report: Record<string, unknown> = {};
const show = (state: 'done' | 'error') => {
  (document.getElementById('report') as HTMLElement).textContent = JSON.stringify(report, null, 2);
  document.body.dataset.report = JSON.stringify(report);
  document.body.dataset.state = state;
};

try {
  // The store patches whatever the backend computes with: the cpu backend's own arrays in place,
  // a GPU backend's textures or buffers through new tensors swapped in and read back.
  const wanted = query.get('backend');
  if (wanted === 'webgpu') await import('@tensorflow/tfjs-backend-webgpu');
  if (wanted === 'wasm') (await import('@tensorflow/tfjs-backend-wasm')).setWasmPaths('wasm/'); // the page serves the package's .wasm files there
  if (wanted && !(await tf.setBackend(wanted))) throw new Error(`the ${wanted} backend is not available in this browser`);
  await tf.ready();
  report.backend = tf.getBackend();
  const modelJson = (await (await fetch('model/model.json')).json()) as TfjsModelJson;
  // The manifest the store checks the live model against (one weight left out with ?manifest=drop).
  const manifest = structuredClone(modelJson) as ModelJsonWeights;
  if (query.get('manifest') === 'drop') manifest.weightsManifest[0].weights.shift();
  // Loaded twice, as an app that reloads its model does: tfjs renames the second copy's
  // variables (`_1`); the store keys weights by their manifest names, so that does not matter.
  const first = await tf.loadLayersModel('model/model.json');
  const kept = query.get('keep') !== 'no' && (await tf.io.listModels())[KEPT] !== undefined;
  report.loadedFrom = kept ? 'indexeddb' : 'files';
  const model = await tf.loadLayersModel(kept ? KEPT : 'model/model.json');
  report.renamed = model.weights.some((w) => w.name !== w.originalName);
  const store = tfModelStore(model, { modelJson, manifest }); // modelJson: the frame, as the folder's fingerprint has it
  const hasher = await getHasher();
  await store.prepare(); // WebGPU's weights are read asynchronously (applyPayload does this itself)
  report.before = fingerprintStore(hasher, store).fingerprint;
  const input = tf.tidy(() => tf.linspace(0, 1, 224 * 224 * 3).reshape([1, 224, 224, 3]));
  report.predictionBefore = Array.from(await (model.predict(input) as tf.Tensor).data());
  const payload = new Uint8Array(await (await fetch('update.ndiff')).arrayBuffer());
  const sequenceStore = query.get('store') === 'local' ? new KeyValueSequenceStore(localStorage) : browserSequenceStore();
  report.sequenceStore = sequenceStore.constructor.name;
  const result = await applyPayload(store, payload, { sequenceStore });
  report.status = result.status;
  report.sequenceRecorded = result.sequenceRecorded;
  if (result.status === 'applied') await model.save(KEPT); // the next load starts from v2
  report.after = fingerprintStore(hasher, store).fingerprint;
  report.prediction = Array.from(await (model.predict(input) as tf.Tensor).data());
  const firstStore = tfModelStore(first, { modelJson });
  await firstStore.prepare();
  report.firstUnchanged = fingerprintStore(hasher, firstStore).fingerprint === report.before;
  show('done');
} catch (e) {
  report.error = e instanceof NeuralDiffError ? `${e.code}: ${e.message}` : String(e);
  show('error');
}
