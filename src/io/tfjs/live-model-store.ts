/**
 * A live TF.js model in memory (`tf.LayersModel` or `tf.GraphModel`) as a {@link WeightStore}:
 * the applier patches it without reloading the model.
 *
 * Names are the manifest names the model was saved with, so a payload built from the model's
 * folder applies to the loaded model: a LayersModel's weights are keyed by their
 * `originalName` (the layer weight path, e.g. `block_1_expand/kernel`), never by the runtime
 * `.name`, which gets a `_1` suffix when the same model is loaded twice in one process; a
 * GraphModel's by the keys of its weight map (the manifest names). Only float32 weights are
 * listed (a graph's int32 constants are left alone).
 *
 * How values reach the model:
 * - **in place** (`inPlace: 'auto'`, the default): where the backend hands out its own memory
 *   (tfjs's `cpu` backend: `dataSync()` returns the stored array) and nothing else shares the
 *   weight's data, {@link TfModelWeightStore.values} is that array and the applier's writes are
 *   the patch: no copy at all. Do not run the model while a patch is being applied.
 * - **copy and assign** (other backends, or `inPlace: 'never'`): `values()` is a copy read with
 *   `dataSync()`, made only for the weights a payload patches (verification hashes the others
 *   through {@link TfModelWeightStore.read}, one transient copy at a time), and {@link TfModelWeightStore.commit} first creates every new tensor, then
 *   swaps them all in (LayersModel: `variable.assign`, which skips layer constraints, so the
 *   model holds exactly the verified values; GraphModel: one new weight map), then disposes the
 *   old ones. If creating a tensor fails, the model is unchanged.
 *
 * Found on the way: tfjs applies a layer's weight constraint (e.g. `maxNorm`) when it loads
 * weights, so such a LayersModel does not hold its folder's values and a payload built from the
 * folder is refused (BaseMismatchError). Build payloads from the loaded model in that case.
 */
import * as tf from '@tensorflow/tfjs';
import { ModelMismatchError, UsageError } from '../../core/errors.ts';
import type { TensorEntry, WeightStore } from '../../core/weight-store.ts';
import { frameDocument, TFJS_FRAME, tfjsFrameValues } from './frame.ts';
import type { TfjsModelJson, TfjsWeightEntry } from './manifest.ts';

/** One entry of a TF.js `weightsManifest` group, as `model.json` holds it. */
export interface ManifestWeightEntry {
  /** The manifest name (a LayersModel's weight path, a GraphModel's node name). */
  name: string;
  /** The stored shape. */
  shape: number[];
  /** `'float32'`, `'int32'`, ... (quantized entries say `'float32'` with a `quantization`). */
  dtype: string;
}

/** The parts of a TF.js `model.json` that name its weights. */
export interface ModelJsonWeights {
  /** The weight groups, each naming its entries. */
  weightsManifest: { weights: ManifestWeightEntry[] }[];
}

/** Options of {@link tfModelStore}. */
export interface TfModelStoreOptions {
  /** `'auto'` (default): patch the backend's memory directly where that is safe; `'never'`: always copy and assign. */
  inPlace?: 'auto' | 'never';
  /**
   * The model.json the model was loaded from (parsed). With it the store lists the model's frame
   * (`tfjs:frame`, src/io/tfjs/frame.ts), so its fingerprint is the folder's and payloads built
   * from folders apply; the frame's int32/bool entries are read from the live model. Without it
   * the fingerprint leaves the frame out and differs from the folder's: payloads made from
   * folders are then refused (base mismatch).
   */
  modelJson?: TfjsModelJson;
  /**
   * The model's `model.json` (parsed), or its `weightsManifest`: when given, the store checks
   * that the live model holds exactly the manifest's float32 weights, by manifest name, with
   * their shapes, and names every missing or extra one in the error. Payloads are fingerprinted
   * over the manifest's weights on the build server, so a model that differs from its manifest
   * would be refused as another base without saying which weights differ.
   */
  manifest?: ModelJsonWeights | ModelJsonWeights['weightsManifest'];
}

interface Slot {
  name: string;
  shape: readonly number[];
  /** The tensor that holds the weight now. */
  current: () => tf.Tensor;
  /** Handed-out values. */
  values?: Float32Array;
  inPlace?: boolean;
}

type GraphExecutorLike = { weightMap: Record<string, tf.Tensor[]> };

function isLayersModel(model: tf.LayersModel | tf.GraphModel): model is tf.LayersModel {
  return Array.isArray((model as tf.LayersModel).weights);
}

/** The engine-side reference count of a tensor's data, or undefined if the backend does not say. */
function dataRefCount(t: tf.Tensor): number | undefined {
  const backend = tf.engine().backend as unknown as { refCount?: (dataId: object) => number };
  return typeof backend.refCount === 'function' ? backend.refCount(t.dataId) : undefined;
}

/**
 * A {@link WeightStore} over a live tf.LayersModel or tf.GraphModel; see the module doc.
 * Create it with {@link tfModelStore}.
 */
export class TfModelWeightStore implements WeightStore {
  /** `'layers'` or `'graph'`. */
  readonly kind: 'layers' | 'graph';
  private readonly slots = new Map<string, Slot>();
  private readonly model: tf.LayersModel | tf.GraphModel;
  private readonly options: TfModelStoreOptions;
  private readonly assigners = new Map<string, (t: tf.Tensor) => tf.Tensor>();

  /** @internal use {@link tfModelStore}. */
  constructor(model: tf.LayersModel | tf.GraphModel, options: TfModelStoreOptions = {}) {
    this.model = model;
    this.options = options;
    if (isLayersModel(model)) {
      this.kind = 'layers';
      for (const lv of model.weights) {
        if (lv.dtype !== 'float32') continue;
        const name = lv.originalName;
        if (this.slots.has(name)) {
          throw new UsageError(`the LayersModel has two weights saved as ${JSON.stringify(name)}: expected unique weight paths (layer name / weight name); rename a layer so payloads can address each weight`, { name });
        }
        this.slots.set(name, { name, shape: lv.shape as number[], current: () => lv.read() });
        this.assigners.set(name, (t) => {
          (lv.read() as tf.Variable).assign(t);
          return t; // the variable now shares t's data; the caller disposes t
        });
      }
    } else {
      this.kind = 'graph';
      for (const [name, tensors] of Object.entries(model.weights)) {
        if (tensors.length !== 1 || tensors[0].dtype !== 'float32') continue;
        this.slots.set(name, { name, shape: tensors[0].shape, current: () => this.executor().weightMap[name][0] });
      }
    }
    if (options.manifest !== undefined) this.checkAgainstManifest(options.manifest);
  }

  /** Compare the model's float32 weights with the manifest's; throws naming what differs. */
  private checkAgainstManifest(manifest: NonNullable<TfModelStoreOptions['manifest']>): void {
    const groups = Array.isArray(manifest) ? manifest : manifest?.weightsManifest;
    if (!Array.isArray(groups)) throw new UsageError('options.manifest: expected the parsed model.json (with weightsManifest) or its weightsManifest array');
    const expected = new Map<string, number[]>();
    for (const g of groups) for (const w of g.weights ?? []) if (w.dtype === 'float32') expected.set(w.name, w.shape);
    const missing = [...expected.keys()].filter((n) => !this.slots.has(n));
    const extra = [...this.slots.keys()].filter((n) => !expected.has(n));
    const reshaped = [...expected].filter(([n, shape]) => {
      const s = this.slots.get(n);
      return s !== undefined && (s.shape.length !== shape.length || s.shape.some((d, i) => d !== shape[i]));
    }).map(([n]) => n);
    if (missing.length === 0 && extra.length === 0 && reshaped.length === 0) return;
    const list = (names: string[]) => names.slice(0, 5).map((n) => JSON.stringify(n)).join(', ') + (names.length > 5 ? `, and ${names.length - 5} more` : '');
    const found = [
      missing.length ? `missing ${missing.length} weight(s) its manifest names: ${list(missing)}` : '',
      extra.length ? `${extra.length} weight(s) its manifest does not name: ${list(extra)}` : '',
      reshaped.length ? `${reshaped.length} weight(s) of another shape than the manifest's: ${list(reshaped)}` : '',
    ].filter(Boolean).join('; ');
    throw new ModelMismatchError(
      `the live ${this.kind} model does not hold the weights of the manifest it was given (${found}). Expected the model loaded from that model.json; weights are keyed by their manifest names (a LayersModel weight's originalName, never its runtime .name): load the model from the same files, or pass the manifest of the model you loaded`,
      { missing, extra, reshaped },
    );
  }

  private executor(): GraphExecutorLike {
    const ex = (this.model as unknown as { executor?: GraphExecutorLike }).executor;
    if (!ex || typeof ex.weightMap !== 'object') {
      throw new UsageError('this GraphModel has no weight map (is it loaded? call tf.loadGraphModel first); this tfjs version may be unsupported (tested with 4.22)');
    }
    return ex;
  }

  /** Float32 weights by manifest name, in the model's order; then `tfjs:frame` when the store was given the model.json. */
  list(): TensorEntry[] {
    const out: TensorEntry[] = [...this.slots.values()].map((s) => ({ name: s.name, shape: s.shape }));
    if (this.options.modelJson) out.push({ name: TFJS_FRAME, shape: [8], patchable: false });
    return out;
  }

  private frameValues?: Float32Array;

  /** The JSON document the frame hashes, when the store was given the model.json. */
  frameDocument(): Record<string, unknown> | undefined {
    return this.options.modelJson && frameDocument(this.options.modelJson);
  }

  /** The frame's values, from the model.json given and the live model's non-float tensors. */
  private frame(modelJson: TfjsModelJson): Float32Array {
    this.frameValues ??= tfjsFrameValues(modelJson, (entry) => this.nonFloatBytes(entry));
    return this.frameValues;
  }

  /** The stored (little-endian) bytes of a non-float weight, read from the live model. */
  private nonFloatBytes(entry: TfjsWeightEntry): Uint8Array {
    const t = this.kind === 'graph'
      ? this.executor().weightMap[entry.name]?.[0]
      : (this.model as tf.LayersModel).weights.find((w) => w.originalName === entry.name)?.read();
    if (!t || (entry.dtype !== 'int32' && entry.dtype !== 'bool') || entry.quantization) {
      throw new UsageError(`the model's frame needs the bytes of its ${entry.dtype}${entry.quantization ? ' (quantized)' : ''} weight ${JSON.stringify(entry.name)}, which ${t ? 'cannot be rebuilt from' : 'is not in'} the live ${this.kind} model: open the model's folder instead (openTfjsModelDir), or build payloads from the loaded model without modelJson`, { name: entry.name });
    }
    const data = t.dataSync() as Int32Array | Uint8Array;
    if (entry.dtype === 'bool') return Uint8Array.from(data as ArrayLike<number>, (x) => (x ? 1 : 0));
    const out = new Uint8Array(4 * data.length);
    const dv = new DataView(out.buffer);
    for (let i = 0; i < data.length; i++) dv.setInt32(4 * i, data[i], true);
    return out;
  }

  private slot(name: string): Slot {
    const s = this.slots.get(name);
    if (!s) {
      const known = [...this.slots.keys()];
      throw new ModelMismatchError(
        `the ${this.kind} model has no float32 weight named ${JSON.stringify(name)}: expected one of its ${known.length} weights (e.g. ${known.slice(0, 3).map((n) => JSON.stringify(n)).join(', ')}). The payload was made for another model: check the model id, or ask for a full download`,
        { name },
      );
    }
    return s;
  }

  /** The weight's values: the backend's own array (in place) or a copy; the same array until {@link commit}. */
  values(name: string): Float32Array {
    const s = this.slot(name);
    if (s.values) return s.values;
    const t = s.current();
    const data = t.dataSync() as Float32Array;
    const live = data === t.dataSync(); // the backend hands out its own array
    s.inPlace = this.options.inPlace !== 'never' && live && dataRefCount(t) === 1;
    s.values = s.inPlace || !live ? data : data.slice();
    return s.values;
  }

  /**
   * The weight's values for hashing only: the array {@link values} handed out if there is one,
   * else what `dataSync()` returns (in place on `cpu`; a transient copy elsewhere, not kept).
   */
  read(name: string): Float32Array {
    if (name === TFJS_FRAME && this.options.modelJson) return this.frame(this.options.modelJson);
    const s = this.slot(name);
    return s.values ?? (s.current().dataSync() as Float32Array);
  }

  /** Names of the weights whose values are held as copies until {@link commit} (not in place). */
  get heldCopies(): string[] {
    return [...this.slots.values()].filter((s) => s.values && !s.inPlace).map((s) => s.name);
  }

  /** True if `name` is patched directly in the backend's memory. */
  isInPlace(name: string): boolean {
    this.values(name);
    return this.slots.get(name)?.inPlace === true;
  }

  /**
   * Put the patched values into the model (see the module doc). Weights patched in place need
   * nothing; the others get new tensors, all created before any is swapped in.
   */
  async commit(changed: readonly string[]): Promise<void> {
    const todo = [...new Set(changed)].map((n) => this.slot(n)).filter((s) => !s.inPlace && s.values);
    const fresh: tf.Tensor[] = [];
    try {
      for (const s of todo) fresh.push(tf.tensor(s.values as Float32Array, s.shape as number[], 'float32'));
    } catch (err) {
      for (const t of fresh) t.dispose();
      throw err;
    }
    if (this.kind === 'layers') {
      todo.forEach((s, i) => {
        (this.assigners.get(s.name) as (t: tf.Tensor) => tf.Tensor)(fresh[i]);
        fresh[i].dispose();
      });
    } else {
      const ex = this.executor();
      const map = { ...ex.weightMap };
      const old: tf.Tensor[] = [];
      todo.forEach((s, i) => {
        old.push(...map[s.name]);
        map[s.name] = [fresh[i]];
      });
      ex.weightMap = map; // the setter also updates the ids the executor must never dispose
      for (const t of old) t.dispose();
    }
    // Copies are released; the next values() reads the model again.
    for (const s of this.slots.values()) {
      if (!s.inPlace) s.values = undefined;
    }
  }
}

/**
 * Open a live tf.LayersModel or tf.GraphModel as a {@link WeightStore}.
 *
 * @example
 * ```ts
 * const model = await tf.loadLayersModel('/models/kws/model.json');
 * await applyPayload(tfModelStore(model), payloadBytes);   // model.predict now uses v+1
 * ```
 */
export function tfModelStore(model: tf.LayersModel | tf.GraphModel, options: TfModelStoreOptions = {}): TfModelWeightStore {
  return new TfModelWeightStore(model, options);
}
