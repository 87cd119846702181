/**
 * `neural-diff/tfjs`: a live TF.js model (`tf.LayersModel` or `tf.GraphModel`) as a weight store,
 * for devices that run TF.js: browsers, React Native (tfjs-react-native), Electron renderers.
 * It imports `@tensorflow/tfjs` (the app's own dependency: a peer of neural-diff) and nothing of
 * Node, so it bundles for a browser or Metro beside `neural-diff/apply`:
 *
 * ```ts
 * import * as tf from '@tensorflow/tfjs';
 * import { applyPayload } from 'neural-diff/apply';
 * import { browserSequenceStore } from 'neural-diff/sequence-stores';
 * import { tfModelStore } from 'neural-diff/tfjs';
 *
 * const model = await tf.loadLayersModel('/models/kws/model.json');
 * await applyPayload(tfModelStore(model), payloadBytes, { trustedKeys: [releaseKey], sequenceStore: browserSequenceStore() });
 * ```
 *
 * Weights are keyed by their manifest names (a LayersModel weight's `originalName`), never by the
 * runtime `.name`, which tfjs renames when a model is loaded twice; pass the model's `model.json`
 * as `manifest` to have a model that differs from it refused with the missing and extra weights
 * named.
 *
 * @module neural-diff/tfjs
 */
export { tfModelStore, TfModelWeightStore, type TfModelStoreOptions, type ModelJsonWeights, type ManifestWeightEntry } from './io/tfjs/live-model-store.ts';
