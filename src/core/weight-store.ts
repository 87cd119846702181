/**
 * Where the weights live. The applier is written once against this interface; adapters
 * exist for plain named Float32Arrays (here), TF.js artifacts on disk (`src/io`), and more.
 *
 * Tensors are float32, row-major. A store backed by a quantized file dequantizes on read and
 * says how the tensor is stored ({@link WeightStore.grid}).
 */
import type { StorageGrid } from './grid.ts';

export interface TensorEntry {
  /** Stable tensor name: the TF.js manifest name (never a runtime variable `.name`). */
  readonly name: string;
  /** Row-major shape; `[]` for a scalar. */
  readonly shape: readonly number[];
  /**
   * False for a read-only part the fingerprint covers but no payload may patch (a model's
   * frame, an integer tensor): `values` refuses it, `read` gives it. Absent means patchable.
   */
  readonly patchable?: boolean;
}

/** True unless the entry says it is read-only ({@link TensorEntry.patchable} false). */
export function isPatchable(entry: TensorEntry): boolean {
  return entry.patchable !== false;
}

export interface WeightStore {
  /** Every tensor of the model, in any order. */
  list(): TensorEntry[];
  /**
   * The tensor's values as a mutable Float32Array. Writes into it change the model held by the
   * store (for stores that cannot expose live memory, the store persists them in {@link commit}).
   * Must return the same array on every call until {@link commit}, except that a store may let
   * go of a tensor's array once {@link settled} was told of it and its final values are kept
   * elsewhere (a file written ahead): the next call then gives a new array with those values.
   */
  values(name: string): Float32Array;
  /**
   * Optional: forget the values handed out for `name` since the store last read or committed
   * them, so that the next {@link values} gives the stored copy again; true if it did, false
   * when it cannot (nothing handed out, or the stored copy is no longer what they were before
   * the changes). The applier undoes a failed patch this way where it can, instead of writing
   * the old values back: for a store whose stored copy it had not changed yet (files on disk
   * before the commit).
   */
  forget?(name: string): boolean;
  /**
   * Optional: the tensor's current values for reading only (hashing), without keeping them. A
   * store that must copy to hand values out (a tf model on the wasm or webgl backend) returns a
   * transient copy and does not cache it, so verifying a model never holds a second copy of it;
   * only the tensors a payload patches go through {@link values}. Defaults to `values(name)`.
   * Callers must not write into the result.
   */
  read?(name: string): Float32Array;
  /**
   * Optional: make the tensors readable synchronously, for stores whose memory can only be read
   * asynchronously (a tf model on the WebGPU backend, whose synchronous read is unreliable). The
   * applier awaits it once before it reads anything; call it yourself before
   * `fingerprintStore` on such a store.
   */
  prepare?(): Promise<void>;
  /**
   * Optional: the tensor digest (src/core/fingerprint.ts) of the tensor's current values,
   * when the store can vouch for it without reading them (e.g. recorded by an earlier verified
   * apply, for files unchanged since); `undefined` to have the caller hash the values. The
   * applier asks only for tensors the payload does not patch: the ones it writes are always
   * read and hashed.
   */
  digest?(name: string): string | undefined;
  /**
   * Optional: how the tensor is stored (uint8/uint16 with scale and min, float16, bfloat16, or
   * `{dtype: 'float32'}`); `undefined` when the store does not know. A payload that rounds a
   * tensor onto a grid (format v2) is refused unless the grids agree, and a store that writes
   * quantized tensors keeps a patched tensor in its dtype when its values are on its grid.
   */
  grid?(name: string): StorageGrid | undefined;
  /**
   * Called once after a patch was applied and verified, with the names of the tensors that
   * changed and the digests of every tensor of the model as committed. Stores that need to
   * write back (files, GPU variables) do it here.
   */
  commit?(changed: readonly string[], info?: CommitInfo): void | Promise<void>;
  /**
   * Optional: during an apply, `name` holds its final values (its patch is applied and the
   * tensor hashed as the payload's base and target for it), and `pending` names the patched
   * tensors still to come. The apply may still fail (another tensor, the model's fingerprint)
   * and undo everything; so a store may prepare its commit here (e.g. write new files that
   * nothing names yet, while the applier patches the next tensors), but must not change the
   * model until {@link commit}. The applier awaits the result before the next tensor.
   */
  settled?(name: string, pending: ReadonlySet<string>): void | Promise<void>;
}

/** What the applier knows about the model it commits. */
export interface CommitInfo {
  /** Tensor name → tensor digest, for every tensor of the model as committed. */
  digests: ReadonlyMap<string, string>;
  /** The model fingerprint (the combination of `digests`). */
  fingerprint: string;
}

/** `store.read(name)` where the store has it, else `store.values(name)`: values for hashing only. */
export function readForDigest(store: WeightStore, name: string): Float32Array {
  return store.read ? store.read(name) : store.values(name);
}

/** A tensor of a {@link MemoryWeightStore}: `patchable: false` marks a read-only part (a frame). */
export interface MemoryTensor {
  shape: readonly number[];
  data: Float32Array;
  patchable?: boolean;
}

/** A store over plain named Float32Arrays, patched in place. */
export class MemoryWeightStore implements WeightStore {
  private readonly tensors: Map<string, MemoryTensor>;
  constructor(tensors: Iterable<[string, MemoryTensor]> | Record<string, MemoryTensor>) {
    this.tensors = new Map(Symbol.iterator in tensors ? (tensors as Iterable<[string, MemoryTensor]>) : Object.entries(tensors));
    for (const [name, t] of this.tensors) {
      const size = t.shape.reduce((a, b) => a * b, 1);
      if (size !== t.data.length) {
        throw new RangeError(`tensor ${name}: shape [${t.shape.join(', ')}] holds ${size} values but the array has ${t.data.length}`);
      }
    }
  }
  list(): TensorEntry[] {
    return [...this.tensors].map(([name, t]) => (t.patchable === false ? { name, shape: t.shape, patchable: false } : { name, shape: t.shape }));
  }
  values(name: string): Float32Array {
    const t = this.tensors.get(name);
    if (!t) throw new RangeError(`no tensor named ${name}`);
    return t.data;
  }
  read(name: string): Float32Array {
    const t = this.tensors.get(name);
    if (!t) throw new RangeError(`no tensor named ${name}`);
    return t.data;
  }
  /** A deep copy (for tests and for keeping the previous version). */
  clone(): MemoryWeightStore {
    return MemoryWeightStore.copyOf(this);
  }
  /** A writable in-memory copy of any store's tensors (dry runs, test fixtures); read-only parts stay read-only. */
  static copyOf(store: WeightStore): MemoryWeightStore {
    return new MemoryWeightStore(store.list().map((t) => [t.name, isPatchable(t)
      ? { shape: [...t.shape], data: store.values(t.name).slice() }
      : { shape: [...t.shape], data: readForDigest(store, t.name).slice(), patchable: false }] as [string, MemoryTensor]));
  }
}
