/**
 * The TF.js model folder as a WeightStore for the applier: lazy reads, values, digests, and the
 * entries passed through bit-exact. Writing the patched model back lives beside it: the commit in
 * dir-commit.ts, the writes staged ahead of it in dir-staging.ts, and the arrays let go of once
 * written in dir-release.ts, each over what dir-entries.ts says they see of the store.
 */
import type { OpenOptions, PassthroughEntry, RecordedDigest, TfjsTensorEntry } from './options.ts';
import { groupRange, loadModel, readShardRange, shardRanges, type GroupSource, type LoadedModel } from './read.ts';
import * as path from 'node:path';
import { ModelFormatError, ModelMismatchError, UsageError } from '../../core/errors.ts';
import type { WeightStore } from '../../core/weight-store.ts';
import { decodePassthroughEntry, dequantizeEntry, manifestPaths, type PassthroughValues, type TfjsModelJson } from './manifest.ts';
import { MODEL_JSON, modelFileNameProblem, modelFilesOf, type ModelFiles } from '../durable/control-files.ts';
import { gridOfEntry } from './grid.ts';
import type { StorageGrid } from '../../core/grid.ts';
import { LITTLE_ENDIAN_HOST } from '../../core/endian.ts';
import { frameDocument, TFJS_FRAME, tfjsFrameValues } from './frame.ts';
import type { EntryRecord, StoreAccess } from './dir-entries.ts';
import { ReleasedTensors } from './dir-release.ts';
import { ShardStaging } from './dir-staging.ts';
import { writePatchedModel } from './dir-commit.ts';

/** Bytes `[offset, offset + into.length)` of a group's data, read from its shard files straight into `into`. */
function readGroupRangeInto(dir: string, src: GroupSource, offset: number, into: Uint8Array): void {
  for (const { shard, from, to } of shardRanges(src, offset, into.length)) {
    const at = shard.start + from - offset;
    readShardRange(dir, shard, from, to, into.subarray(at, at + to - from));
  }
}

/**
 * A {@link WeightStore} over a TF.js model folder, opened with {@link openTfjsModelDir}.
 *
 * - {@link list} gives the float32 tensors (plain or quantized) by manifest name, in manifest
 *   order; {@link values} gives their dequantized values as a mutable Float32Array (the same
 *   array on every call).
 * - int32 / bool / string / complex64 entries are not listed and not mutable: they are
 *   written back with their original bytes. Inspect them with {@link passthroughEntries} and
 *   {@link passthroughValues}.
 * - {@link commit} writes the patched model back with the atomic protocol of the module doc.
 *   When the patch keeps every entry's stored size (float32 tensors, or quantized ones left
 *   unchanged), the shard boundaries are kept and only shards holding changed bytes are
 *   written; the others stay the same files.
 * - Opened `lazy`, a shard is read the first time a tensor in it is asked for, and
 *   {@link digest} answers from `recordedDigests` for tensors whose files did not change.
 *
 * One writer per folder: the store refuses to commit if model.json changed since it was read.
 */
export class TfjsDirWeightStore implements WeightStore {
  /** The model folder. */
  readonly dir: string;
  private state: LoadedModel;
  private records = new Map<string, EntryRecord>();
  private readonly options: OpenOptions;
  private committing = false;
  /** The model file's name and the applier's files beside it (src/io/durable/control-files.ts). */
  readonly modelFiles: ModelFiles;
  /** The arrays let go of once written ({@link OpenOptions.releaseWritten}) and their buffers. */
  private readonly released = new ReleasedTensors();
  /** The shards written ahead of the commit ({@link OpenOptions.stageWrites}). */
  private readonly staging: ShardStaging;
  /** What the commit and the staged writes see of this store. */
  private readonly access: StoreAccess;

  /** @internal use {@link openTfjsModelDir}. */
  constructor(loaded: LoadedModel, options: OpenOptions = {}) {
    this.dir = loaded.dir;
    this.state = loaded;
    this.options = options;
    this.modelFiles = modelFilesOf(options.modelJsonFile ?? MODEL_JSON);
    this.index(loaded);
    this.access = {
      dir: this.dir,
      options,
      modelFiles: this.modelFiles,
      model: () => this.state,
      record: (name) => this.records.get(name),
      records: () => this.records.values(),
      floatRecord: (name) => this.floatRecord(name),
      bytesOf: (r) => this.bytesOf(r),
      readReleased: (r) => this.readReleased(r),
      committing: () => this.committing,
    };
    this.staging = new ShardStaging(this.access, this.released);
  }

  private index(loaded: LoadedModel): void {
    this.frameValues = undefined;
    const records = new Map<string, EntryRecord>();
    loaded.layouts.forEach((layout) => {
      for (const l of layout.entries) {
        const prev = this.records.get(l.entry.name);
        if (l.entry.name === TFJS_FRAME) {
          throw new ModelFormatError(`${path.join(loaded.dir, this.modelFiles.model)} names a weight ${JSON.stringify(TFJS_FRAME)}, the name the model fingerprint gives the model's frame: rename the weight (and its graph node) and convert the model again`, { dir: loaded.dir, name: TFJS_FRAME });
        }
        records.set(l.entry.name, { layout: l, entry: l.entry, values: prev?.values });
      }
    });
    this.records = records;
  }

  /** The stored bytes of an entry (reads its shards if needed). */
  private bytesOf(r: EntryRecord): Uint8Array {
    r.bytes ??= groupRange(this.dir, this.state.groups[r.layout.group], r.layout.offset, r.layout.byteLength);
    return r.bytes;
  }

  /** The parsed model.json as it is on disk now (treat as read-only). */
  get modelJson(): TfjsModelJson {
    return this.state.modelJson;
  }

  /** `'layers-model'`, `'graph-model'`, or whatever model.json says (undefined if absent). */
  get format(): string | undefined {
    return this.state.modelJson.format;
  }

  /**
   * The float tensors, in manifest order, then the model's frame (`tfjs:frame`, read-only: see
   * src/io/tfjs/frame.ts), which the fingerprint covers and no payload patches.
   */
  list(): TfjsTensorEntry[] {
    const out: TfjsTensorEntry[] = [];
    for (const [name, r] of this.records) {
      if (!r.layout.isFloat) continue;
      out.push({ name, shape: r.entry.shape, storage: (r.entry.quantization?.dtype ?? 'float32'), group: r.layout.group });
    }
    out.push({ name: TFJS_FRAME, shape: [8], storage: 'float32', group: -1, patchable: false });
    return out;
  }

  /** The frame's values, computed once per model.json (see src/io/tfjs/frame.ts). */
  private frameValues?: Float32Array;

  /** The JSON document the frame hashes (model.json with its manifest cut to the non-float entries). */
  frameDocument(): Record<string, unknown> {
    return frameDocument(this.state.modelJson);
  }

  /** The 8 values of `tfjs:frame`: a digest of everything but the float weights' values. */
  frame(): Float32Array {
    this.frameValues ??= tfjsFrameValues(this.state.modelJson, (entry) => {
      const r = this.records.get(entry.name) as EntryRecord;
      return this.bytesOf(r);
    });
    return this.frameValues;
  }

  /**
   * How the tensor is stored: its manifest quantization (uint8/uint16 with scale and min,
   * float16) or float32. A patch onto this grid keeps the tensor in its dtype (see commit).
   */
  grid(name: string): StorageGrid {
    if (name === TFJS_FRAME) return { dtype: 'float32' };
    return gridOfEntry(this.floatRecord(name).entry);
  }

  /** True if `name` is a float tensor of this model. */
  has(name: string): boolean {
    return this.records.get(name)?.layout.isFloat === true;
  }

  /**
   * Dequantized values of a float tensor; writes into the array are the patch. Throws
   * {@link ModelMismatchError} for an unknown name or a pass-through (non-float) entry.
   */
  values(name: string): Float32Array {
    const r = this.floatRecord(name);
    // Handed out: whoever holds it may write to it.
    r.untouched = false;
    if (r.released) this.readReleased(r);
    if (!r.values) {
      const src = this.state.groups[r.layout.group];
      const { offset, byteLength } = r.layout;
      if (!r.bytes && !r.entry.quantization && LITTLE_ENDIAN_HOST && byteLength === r.layout.size * 4 && shardRanges(src, offset, byteLength).every(({ shard }) => !shard.bytes)) {
        // Read straight into the array handed out: no shard kept, no second copy. (The old
        // bytes stay on disk until a commit; bytesOf reads them there if they are needed.)
        const buffer = this.released.takeBuffer(byteLength);
        readGroupRangeInto(this.dir, src, offset, new Uint8Array(buffer, 0, byteLength));
        r.values = new Float32Array(buffer, 0, r.layout.size);
        r.owned = buffer;
      } else {
        r.values = dequantizeEntry(r.entry, this.bytesOf(r));
      }
      r.fromStored = true;
    }
    return r.values;
  }

  /**
   * See {@link WeightStore.forget}: drops the values handed out for `name` (written to or not,
   * let go of or not) when they were read from the files the store holds now, which a write of
   * this store never changes before its commit; the next {@link values} reads them again.
   * False after a commit (the files then hold the committed values), until {@link dropStaged}
   * ends the apply.
   */
  forget(name: string): boolean {
    const r = this.records.get(name);
    if (!r || !r.layout.isFloat || !r.fromStored || this.staging.committedSinceStaging) return false;
    r.values = undefined;
    r.owned = undefined;
    r.released = false;
    r.untouched = false;
    r.fromStored = false;
    return true;
  }

  /** The values of a released tensor, read again from the new shards that hold them. */
  private readReleased(r: EntryRecord): void {
    this.released.readBack(this.dir, this.state.groups, r);
  }

  /**
   * Values for reading only (hashing): the patched array if handed out; else a view of the
   * stored bytes for aligned float32 on a little-endian host (no copy), or a transient decode.
   */
  read(name: string): Float32Array {
    if (name === TFJS_FRAME) return this.frame();
    const r = this.floatRecord(name);
    if (r.released) this.readReleased(r);
    if (r.values) return r.values;
    // Not kept: hashing every tensor of a large model holds one tensor at a time, not the model.
    const bytes = r.bytes ?? groupRange(this.dir, this.state.groups[r.layout.group], r.layout.offset, r.layout.byteLength, false);
    if (!r.entry.quantization && LITTLE_ENDIAN_HOST && bytes.byteOffset % 4 === 0) {
      return new Float32Array(bytes.buffer, bytes.byteOffset, r.layout.size);
    }
    return dequantizeEntry(r.entry, bytes);
  }

  /** `<path>|<identity>|<from>|<to>` of every shard an entry's bytes lie in. */
  private spansOf(r: EntryRecord): string[] {
    const src = this.state.groups[r.layout.group];
    const { offset, byteLength } = r.layout;
    return shardRanges(src, offset, byteLength).map(({ shard, from, to }) => `${shard.path}|${shard.ident}|${from}|${to}`);
  }

  /**
   * The recorded digest of a tensor (see {@link RecordedDigest}) if the store was opened with
   * `recordedDigests`, the tensor's values were not handed out by {@link values}, and its
   * manifest entry and files are exactly as recorded; else undefined (hash it).
   */
  digest(name: string): string | undefined {
    const rec = this.options.recordedDigests?.get(name);
    const r = this.records.get(name);
    if (!rec || !r || !r.layout.isFloat || r.values || r.released) return undefined;
    if (rec.entry !== JSON.stringify(r.entry)) return undefined;
    const spans = this.spansOf(r);
    if (spans.length !== rec.spans.length || spans.some((s, i) => s !== rec.spans[i])) return undefined;
    return rec.digest;
  }

  /**
   * Records tying `digests` (tensor name → digest of its current values) to the files they are
   * stored in now, for {@link OpenOptions.recordedDigests} of a later open. Names in `except`
   * and names the model does not have are left out.
   */
  digestRecords(digests: ReadonlyMap<string, string>, except: Iterable<string> = []): Map<string, RecordedDigest> {
    const skip = new Set(except);
    const out = new Map<string, RecordedDigest>();
    for (const [name, r] of this.records) {
      const d = digests.get(name);
      if (!r.layout.isFloat || d === undefined || skip.has(name)) continue;
      out.set(name, { entry: JSON.stringify(r.entry), spans: this.spansOf(r), digest: d });
    }
    return out;
  }

  private floatRecord(name: string): EntryRecord {
    if (name === TFJS_FRAME) {
      throw new ModelMismatchError(
        `${TFJS_FRAME} is the model's frame (its topology, format, signature and non-float tensors), which a payload never changes: the patch was made for another model or by another tool; ask the server for a full download`,
        { name, dir: this.dir },
      );
    }
    const r = this.records.get(name);
    if (!r) {
      throw new ModelMismatchError(
        `tensor ${name} is not in ${path.join(this.dir, this.modelFiles.model)}: expected one of its ${this.list().length} float tensors (e.g. ${this.list().slice(0, 3).map((e) => e.name).join(', ')}), found no such name. The patch was made for another model: check the model id, or ask the server for a full download`,
        { name, dir: this.dir },
      );
    }
    if (!r.layout.isFloat) {
      throw new ModelMismatchError(
        `tensor ${name} is ${r.entry.dtype}: expected a float32 tensor, found a ${r.entry.dtype} entry, which this store passes through bit-exact and never patches. The patch was made for another model or by a tool that diffs integer weights; ask the server for a full download`,
        { name, dtype: r.entry.dtype, dir: this.dir },
      );
    }
    return r;
  }

  /** The non-float entries, which commit writes back unchanged. */
  passthroughEntries(): PassthroughEntry[] {
    const out: PassthroughEntry[] = [];
    for (const [name, r] of this.records) {
      if (r.layout.isFloat) continue;
      out.push({ name, shape: r.entry.shape, dtype: r.entry.dtype, byteLength: r.layout.byteLength, group: r.layout.group });
    }
    return out;
  }

  /** Decoded copy of a pass-through entry (see `decodePassthroughEntry`). */
  passthroughValues(name: string): PassthroughValues {
    const r = this.records.get(name);
    if (!r || r.layout.isFloat) {
      throw new ModelMismatchError(`no pass-through (int32/bool/string/complex64) entry named ${name} in ${this.dir}`, { name });
    }
    return decodePassthroughEntry(r.entry, this.bytesOf(r));
  }

  /** A copy of the stored bytes of any entry (float or not), exactly as on disk. */
  storedBytes(name: string): Uint8Array {
    const r = this.records.get(name);
    if (!r) throw new ModelMismatchError(`no entry named ${name} in ${this.dir}`, { name });
    return this.bytesOf(r).slice();
  }

  /** Files the model uses now, relative to the folder: its model file (`model.json`) first, then the shards. */
  files(): string[] {
    return [this.modelFiles.model, ...manifestPaths(this.state.modelJson)];
  }

  /**
   * Write the patched model back (the atomic protocol of the module doc). Tensors in
   * `changed`, and any whose values differ from the stored ones, are written in their stored
   * dtype when their values are on its grid, else as float32;
   * unchanged quantized tensors keep their bytes unless `quantizedUnchanged: 'float32'`;
   * pass-through entries always keep their bytes. Every key of model.json other than
   * `weightsManifest` keeps its exact text. An empty `changed` writes nothing.
   *
   * Throws {@link ModelMismatchError} for a name that is not a float tensor (before writing
   * anything), {@link ModelFormatError} if model.json changed since it was read. On any
   * error, model.json and the old shards are untouched.
   */
  async commit(changed: readonly string[]): Promise<void> {
    if (this.committing) throw new UsageError(`a commit to ${this.dir} is already in progress: await it before committing again`);
    const problem = this.modelFiles.model === MODEL_JSON ? undefined : modelFileNameProblem(this.modelFiles.model);
    if (problem) {
      throw new UsageError(`this store was opened from ${this.modelFiles.model}, which is ${problem}: it is for reading only; open the model's own file to patch it`);
    }
    const changedSet = new Set(changed);
    for (const name of changedSet) this.floatRecord(name);
    if (changedSet.size === 0) return;
    this.committing = true;
    try {
      this.state = await writePatchedModel(this.access, this.staging, changedSet);
      this.index(this.state);
      this.staging.noteCommit();
    } finally {
      this.committing = false;
    }
  }

  /**
   * See {@link WeightStore.settled}. With `stageWrites`, each shard whose changed tensors are
   * all settled (none of its tensors still `pending`) is written now, in the background, as the
   * commit would write it (temp file, fsync, read back, renamed to its content-addressed name:
   * a file nothing names, which recovery deletes after a crash); {@link commit} then waits for
   * it instead of writing it. Yields to the event loop, so the writes in flight go on while the
   * applier patches the next tensor.
   */
  settled(name: string, pending: ReadonlySet<string>): Promise<void> {
    return this.staging.settled(name, pending);
  }

  /**
   * End staging (see {@link OpenOptions.stageWrites}): wait for the staged writes in flight,
   * then delete every staged file no commit switched to (never a file model.json names).
   */
  dropStaged(): Promise<void> {
    return this.staging.dropStaged();
  }
}

/**
 * Open a TF.js model folder (layers-model or graph-model) as a {@link WeightStore}. Reads
 * model.json and every shard (only their sizes when `lazy`), and checks them against each other.
 *
 * @throws ModelFormatError no model.json, malformed model.json, a shard missing, short or
 *   with extra bytes, or a quantization tfjs 4.22 cannot decode. Opening never writes.
 */
export async function openTfjsModelDir(dir: string, options: OpenOptions = {}): Promise<TfjsDirWeightStore> {
  return new TfjsDirWeightStore(await loadModel(dir, options.modelJsonFile ?? MODEL_JSON, options.lazy === true, options.reservedFiles), options);
}

/**
 * The float tensors of a model folder, dequantized: manifest name → `{shape, data}`, in
 * manifest order. Pass-through entries (int32, bool, ...) are not included.
 */
export async function readModelTensors(dir: string): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
  const store = await openTfjsModelDir(dir);
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const e of store.list()) if (e.patchable !== false) out.set(e.name, { shape: [...e.shape], data: store.values(e.name) });
  return out;
}
