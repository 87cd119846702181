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
 * - **in place** (`inPlace: 'auto'`, the default): on tfjs's `cpu` backend, whose `dataSync()`
 *   returns the very array its kernels compute with, and where nothing else shares the weight's
 *   data, {@link TfModelWeightStore.values} is that array and the applier's writes are the patch:
 *   no copy at all. Do not run the model while a patch is being applied. Only the `cpu` backend
 *   qualifies: WebGL and WebGPU also return one cached array from every `dataSync()`, but it is a
 *   CPU-side copy of a texture or buffer the model computes with, so writing into it would change
 *   nothing the model runs (and a check reading the same array would be fooled).
 * - **copy and assign** (every other backend, or `inPlace: 'never'`): `values()` is a copy read with
 *   `dataSync()`, made only for the weights a payload patches (verification hashes the others
 *   through {@link TfModelWeightStore.read}, one transient copy at a time), and {@link TfModelWeightStore.commit} first creates every new tensor, then
 *   swaps them all in (LayersModel: `variable.assign`, which skips layer constraints, so the
 *   model holds exactly the verified values; GraphModel: one new weight map), then reads every
 *   swapped weight back from the backend through a kernel run on it (so on a GPU the values come
 *   from the texture or buffer inference uses) and compares it with the verified values, and only
 *   then disposes the old ones. If creating a tensor fails, or the backend does not hold what was
 *   verified (e.g. a GPU whose float textures are 16-bit), the old tensors are swapped back and the
 *   model is unchanged.
 *
 * Found on the way: tfjs applies a layer's weight constraint (e.g. `maxNorm`) when it loads
 * weights, so such a LayersModel does not hold its folder's values and a payload built from the
 * folder is refused (BaseMismatchError). Build payloads from the loaded model in that case.
 */
import * as tf from '@tensorflow/tfjs';
import { ModelMismatchError, TargetMismatchError, UsageError } from '../../core/errors.ts';
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
  /** The values read asynchronously by {@link TfModelWeightStore.prepare} (backends whose synchronous read is unreliable). */
  downloaded?: Float32Array;
  inPlace?: boolean;
}

type GraphExecutorLike = { weightMap: Record<string, tf.Tensor[]> };

function isLayersModel(model: tf.LayersModel | tf.GraphModel): model is tf.LayersModel {
  return Array.isArray((model as tf.LayersModel).weights);
}

/** The backend object that holds `t`'s data, from the engine's record (undefined where this tfjs version does not keep one). */
function ownerOf(t: tf.Tensor): unknown {
  const engine = tf.engine() as unknown as { state?: { tensorInfo?: { get(dataId: object): { backend?: unknown } | undefined } } };
  return engine.state?.tensorInfo?.get(t.dataId)?.backend;
}

/**
 * True if `t`'s data lives in tfjs's `cpu` backend, the one backend whose `dataSync()` array is
 * the memory its kernels read. Found through the engine's record of which backend owns the data
 * (a tensor made before `tf.setBackend('cpu')` stays on its old backend until an op moves it);
 * where that record is not found (another tfjs version), false: the store then copies and assigns.
 */
function onCpuBackend(t: tf.Tensor): boolean {
  const owner = ownerOf(t);
  return owner !== undefined && owner === initializedBackend('cpu');
}

/**
 * The backend of that name if the engine has already initialized it, else undefined. Never
 * `tf.findBackend`: for a backend registered but not yet initialized it starts the backend's
 * initialization, and one that initializes asynchronously (wasm, webgpu, the trainer's native
 * backend) leaves the engine refusing every op until `tf.ready()` ("Backend ... has not yet
 * been initialized"), in the middle of the caller's work.
 */
function initializedBackend(name: string): unknown {
  const registry = (tf.engine() as unknown as { registry?: Record<string, unknown> }).registry;
  return registry?.[name];
}

/**
 * Whether two float32 arrays hold the same values as a device computes with them: bit for bit,
 * except that a subnormal may come back as a zero of the same sign (GPUs flush subnormals, and a
 * model computes with the zero either way).
 */
function sameValues(expected: Float32Array, found: Float32Array): boolean {
  if (expected.length !== found.length) return false;
  const a = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  const b = new Uint32Array(found.buffer, found.byteOffset, found.length);
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue;
    const subnormal = (a[i] & 0x7f800000) === 0;
    if (!(subnormal && (b[i] & 0x7fffffff) === 0 && (a[i] >>> 31) === (b[i] >>> 31))) return false;
  }
  return true;
}

/**
 * Backends whose `dataSync()` gives the values the backend holds. WebGPU's synchronous read goes
 * through a canvas and returned zeros in headless Chromium; a backend not named here is read
 * asynchronously too ({@link TfModelWeightStore.prepare}), to be safe.
 */
const SYNC_READABLE = new Set(['cpu', 'wasm', 'native', 'webgl']);

/** The name of the backend that holds `t`'s data (the current one where the engine does not say). */
function backendOf(t: tf.Tensor): string {
  const owner = ownerOf(t);
  for (const name of ['cpu', 'wasm', 'native', 'webgl', 'webgpu']) if (owner !== undefined && initializedBackend(name) === owner) return name;
  return owner === undefined ? tf.getBackend() : 'unknown';
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
  /** Non-float tensors (the frame's) read by {@link prepare}, by manifest name. */
  private readonly downloadedOther = new Map<string, ArrayLike<number>>();

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
    const data = (this.downloadedOther.get(entry.name) ?? (SYNC_READABLE.has(backendOf(t)) ? t.dataSync() : this.unreadable(entry.name, backendOf(t)))) as Int32Array | Uint8Array;
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
    if (s.downloaded) return (s.values = s.downloaded.slice());
    const t = s.current();
    const data = this.readSync(s);
    const live = data === t.dataSync(); // the backend hands out one array (its own, or a cached copy)
    s.inPlace = this.options.inPlace !== 'never' && live && onCpuBackend(t) && dataRefCount(t) === 1;
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
    return s.values ?? s.downloaded ?? this.readSync(s);
  }

  /** `dataSync()` of the weight, refused on a backend whose synchronous read is unreliable. */
  private readSync(s: Slot): Float32Array {
    const t = s.current();
    const backend = backendOf(t);
    return SYNC_READABLE.has(backend) ? (t.dataSync() as Float32Array) : this.unreadable(s.name, backend);
  }

  private unreadable(name: string, backend: string): never {
    throw new UsageError(`the weight ${JSON.stringify(name)} lives on the ${backend} backend, which cannot be read synchronously reliably: call \`await store.prepare()\` first (applyPayload does it for you), or use the cpu, wasm or webgl backend`, { name, backend });
  }

  /**
   * Read the weights of a backend whose synchronous read is unreliable (WebGPU) asynchronously,
   * so {@link values} and {@link read} can give them; on cpu, wasm and webgl nothing is read.
   * The applier awaits it before it reads anything. The copies are kept (and kept current by
   * {@link commit}) while the store is alive: drop the store after the update.
   */
  async prepare(): Promise<void> {
    for (const s of this.slots.values()) {
      if (s.downloaded || s.values) continue;
      const t = s.current();
      if (SYNC_READABLE.has(backendOf(t))) continue;
      s.downloaded = (await t.data()) as Float32Array;
    }
    const modelJson = this.options.modelJson;
    if (modelJson && !this.frameValues) {
      for (const group of modelJson.weightsManifest ?? []) {
        for (const entry of group.weights ?? []) {
          if (entry.dtype === 'float32' || this.downloadedOther.has(entry.name)) continue;
          const t = this.kind === 'graph' ? this.executor().weightMap[entry.name]?.[0] : (this.model as tf.LayersModel).weights.find((w) => w.originalName === entry.name)?.read();
          if (t && !SYNC_READABLE.has(backendOf(t))) this.downloadedOther.set(entry.name, (await t.data()) as ArrayLike<number>);
        }
      }
    }
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
    // Swap in, keeping the old data alive until the backend is known to hold the new values.
    let swapBack: () => void;
    let releaseOld: () => void;
    if (this.kind === 'layers') {
      const kept = todo.map((s) => tf.clone(s.current())); // shares the old data, so assign does not free it
      todo.forEach((s, i) => {
        (this.assigners.get(s.name) as (t: tf.Tensor) => tf.Tensor)(fresh[i]);
        fresh[i].dispose();
      });
      swapBack = () => todo.forEach((s, i) => {
        (this.assigners.get(s.name) as (t: tf.Tensor) => tf.Tensor)(kept[i]);
        kept[i].dispose(); // the variable holds the old data again, by its own reference
      });
      releaseOld = () => kept.forEach((t) => t.dispose());
    } else {
      const ex = this.executor();
      const before = ex.weightMap;
      const map = { ...before };
      const old: tf.Tensor[] = [];
      todo.forEach((s, i) => {
        old.push(...map[s.name]);
        map[s.name] = [fresh[i]];
      });
      ex.weightMap = map; // the setter also updates the ids the executor must never dispose
      swapBack = () => {
        ex.weightMap = before;
        fresh.forEach((t) => t.dispose());
      };
      releaseOld = () => old.forEach((t) => t.dispose());
    }
    let wrong: string | undefined;
    try {
      wrong = await this.readBack(todo);
    } catch (e) {
      swapBack();
      throw e;
    }
    if (wrong !== undefined) {
      swapBack();
      throw new TargetMismatchError(
        `after the update was written into the live ${this.kind} model, the ${tf.getBackend()} backend does not hold the verified values of ${JSON.stringify(wrong)} (read back through a kernel run on the backend): the model was left at its previous version. A backend that stores float32 weights at lower precision (e.g. WebGL with 16-bit float textures) cannot hold the update exactly: apply it on the cpu or wasm backend, or load the updated model from files`,
        { name: wrong, backend: tf.getBackend() },
      );
    }
    releaseOld();
    // Copies are released; the next values() reads the model again.
    for (const s of this.slots.values()) {
      if (!s.inPlace) s.values = undefined;
    }
  }

  /**
   * Read each swapped weight back from the backend that holds it, through a kernel the backend
   * runs (`x * 1`, exact in float32), so the values come from the memory inference reads (a GPU
   * texture or buffer) and not from a CPU-side cache; the name of the first weight that differs
   * from its verified values, or undefined.
   */
  private async readBack(todo: Slot[]): Promise<string | undefined> {
    for (const s of todo) {
      const probe = tf.tidy(() => tf.mul(s.current(), tf.scalar(1, 'float32')));
      try {
        const held = (await probe.data()) as Float32Array;
        if (!sameValues(s.values as Float32Array, held)) return s.name;
        if (s.downloaded) s.downloaded = held;
      } finally {
        probe.dispose();
      }
    }
    return undefined;
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
