/**
 * The TF.js model folder as a WeightStore for the applier: lazy reads, digests, commits
 * through the atomic writer.
 */
import { SHARD_WRITERS, VERIFY_CHUNK, discardStreaming, newId, overlaps, readIfExists, sameBytes, settleAll, shardName, type PlannedGroup, type PlannedShard, type StagedShard, type StreamingShard, verifyWritten, writeModelAtomically, writeShardFile } from './write.ts';
import { gridOfEntry, quantizeOnGrid } from './grid.ts';
import type { OpenOptions, PassthroughEntry, RecordedDigest, TfjsTensorEntry } from './options.ts';
import { fileExists, fileIdent, groupRange, loadModel, readFileRange, readShardRange, shardBytes, shardRanges, storedRange, type GroupSource, type LoadedModel, type Shard } from './read.ts';
import { stat } from 'node:fs/promises';
import * as path from 'node:path';
import { ModelFormatError, ModelMismatchError, UsageError } from '../../core/errors.ts';
import type { WeightStore } from '../../core/weight-store.ts';
import { getHasher } from '../../core/hasher.ts';
import { asFloat32Entry, computeGroupLayout, concatBytes, decodePassthroughEntry, dequantizeEntry, encodeFloat32, manifestPaths, parseModelJson, replaceTopLevelValue, type EntryLayout, type PassthroughValues, type TfjsModelJson, type TfjsWeightEntry } from './manifest.ts';
import { nodeFileOps, type FileOps } from '../durable/durable.ts';
import { MODEL_JSON, modelFileNameProblem, modelFilesOf, type ModelFiles } from '../durable/control-files.ts';
import type { StorageGrid } from '../../core/grid.ts';
import { LITTLE_ENDIAN_HOST } from '../../core/endian.ts';
import { frameDocument, TFJS_FRAME, tfjsFrameValues } from './frame.ts';

interface Rec {
  layout: EntryLayout;
  entry: TfjsWeightEntry;
  /** Stored bytes of this entry, once read. */
  bytes?: Uint8Array;
  /** Dequantized values, once asked for. */
  values?: Float32Array;
  /** The buffer `values` is the only view of (read straight into it), which it may give back. */
  owned?: ArrayBuffer;
  /**
   * Its patched values were let go after the new shards holding them were written and verified
   * ({@link OpenOptions.releaseWritten}): `values` reads them from those files again.
   */
  released?: boolean;
  /** `values` are the ones {@link TfjsDirWeightStore.settled} was told of: not handed out since. */
  untouched?: boolean;
  /** `values` were read from the files the store holds now (not carried over a commit): {@link TfjsDirWeightStore.forget} can drop them. */
  fromStored?: boolean;
}

/** A staged shard written, verified and renamed: its file and the file's identity. */
interface FinishedShard {
  file: string;
  ident: string;
}

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
  private records = new Map<string, Rec>();
  private readonly options: OpenOptions;
  private committing = false;
  /** The model file's name and the applier's files beside it (src/io/durable/control-files.ts). */
  readonly modelFiles: ModelFiles;

  /** @internal use {@link openTfjsModelDir}. */
  constructor(loaded: LoadedModel, options: OpenOptions = {}) {
    this.dir = loaded.dir;
    this.state = loaded;
    this.options = options;
    this.modelFiles = modelFilesOf(options.modelJsonFile ?? MODEL_JSON);
    this.index(loaded);
  }

  private index(loaded: LoadedModel): void {
    this.frameValues = undefined;
    const records = new Map<string, Rec>();
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
  private bytesOf(r: Rec): Uint8Array {
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
      const r = this.records.get(entry.name) as Rec;
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
        const buffer = this.takeBuffer(byteLength);
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
    if (!r || !r.layout.isFloat || !r.fromStored || this.committedSinceStaging) return false;
    r.values = undefined;
    r.owned = undefined;
    r.released = false;
    r.untouched = false;
    r.fromStored = false;
    return true;
  }

  /** A commit succeeded since the store was opened or {@link dropStaged} last ran: {@link forget} refuses. */
  private committedSinceStaging = false;
  /** Buffers of released tensors ({@link OpenOptions.releaseWritten}), for the next ones read. */
  private pool: ArrayBuffer[] = [];
  /** The staged shards written, verified and renamed, by `<group>/<shard index>`. */
  private finished = new Map<string, FinishedShard>();

  /** A buffer of at least `n` bytes: the smallest pooled one up to 2n, else a new one. */
  private takeBuffer(n: number): ArrayBuffer {
    let best = -1;
    for (let k = 0; k < this.pool.length; k++) {
      const size = this.pool[k].byteLength;
      if (size >= n && size <= 2 * n && (best < 0 || size < this.pool[best].byteLength)) best = k;
    }
    return best < 0 ? new ArrayBuffer(n) : this.pool.splice(best, 1)[0];
  }

  /** The values of a released tensor, read again from the new shards that hold them. */
  private readReleased(r: Rec): void {
    const g = r.layout.group;
    const src = this.state.groups[g];
    const { offset, byteLength } = r.layout;
    const buffer = this.takeBuffer(byteLength);
    const into = new Uint8Array(buffer, 0, byteLength);
    try {
      for (const { shard, from, to } of shardRanges(src, offset, byteLength)) {
        const done = this.finished.get(`${g}/${src.shards.indexOf(shard)}`);
        if (!done) throw new Error(`internal: ${r.entry.name} was let go before every new shard holding it was written`);
        const at = shard.start + from - offset;
        readFileRange(this.dir, done.file, path.basename(done.file), done.ident, shard.size, from, to, into.subarray(at, at + to - from));
      }
    } catch (e) {
      this.pool.push(buffer);
      throw e;
    }
    r.values = new Float32Array(buffer, 0, r.layout.size);
    r.owned = buffer;
    r.released = false;
    r.untouched = false;
  }

  /**
   * Staged shard `key` is written, verified and renamed ({@link OpenOptions.releaseWritten}):
   * let go of the arrays of its changed tensors whose every new shard is, if nobody was handed
   * them since they settled; their buffers take the next tensors read.
   */
  private releaseWritten(key: string, done: FinishedShard, changed: readonly string[]): void {
    this.finished.set(key, done);
    if (!this.options.releaseWritten || this.stagingOver || this.committing) return;
    for (const name of changed) {
      const r = this.records.get(name);
      if (!r || !r.untouched || !r.owned || !r.values || r.released) continue;
      const g = r.layout.group;
      const src = this.state.groups[g];
      if (!shardRanges(src, r.layout.offset, r.layout.byteLength).every(({ shard }) => this.finished.has(`${g}/${src.shards.indexOf(shard)}`))) continue;
      this.pool.push(r.owned);
      r.owned = undefined;
      r.values = undefined;
      r.released = true;
    }
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
  private spansOf(r: Rec): string[] {
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

  private floatRecord(name: string): Rec {
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
      const allFloat32 = this.options.quantizedUnchanged === 'float32';
      const used = new Set<StagedShard>();
      const groups: PlannedGroup[] = this.state.modelJson.weightsManifest.map((group, g) => {
        const entries = this.state.layouts[g].entries;
        const recs = entries.map((l) => this.records.get(l.entry.name)!);
        const encode = (k: number) => this.encodeForCommit(recs[k], changedSet.has(entries[k].entry.name), allFloat32);
        let planned = entries.map((_, k) => encode(k));
        // A released tensor's new bytes, when a commit needs them: read again from its new shards.
        const materialize = (k: number) => {
          this.readReleased(recs[k]);
          return encode(k);
        };
        const src = this.state.groups[g];
        // Keep the shard boundaries unless a size changed or the caller asked for a shard size
        // (a released tensor kept its size: its new shards were written with these boundaries).
        const sameLayout = this.options.shardBytes === undefined && planned.every((x, i) => x.bytes === undefined || x.bytes.length === entries[i].byteLength);
        if (sameLayout) {
          // Keep the shard boundaries: a shard with no new bytes stays the same file.
          const shards: PlannedShard[] = src.shards.map((s, i) => {
            const dirty = planned.map((x, k) => ({ x, k, l: entries[k] })).filter(({ x, l }) => (x.bytes !== undefined || x.released) && overlaps(l, s));
            if (dirty.length === 0) return { keep: s };
            // The new bytes: a released tensor's are read again from the files they were written to.
            const parts = () => this.shardParts(s, dirty.map(({ x, k, l }) => ({ l, bytes: (x.released ? materialize(k).bytes : x.bytes) ?? this.bytesOf(recs[k]) })));
            // Written ahead (stageWrites) from the same entries' bytes: the file to use, unless
            // an earlier commit already switched to it (a second commit, e.g. going back after
            // a failed health check, writes its own bytes).
            const staged = this.staged.get(`${g}/${i}`);
            if (staged && !staged.consumed && staged.changed.length === dirty.length && dirty.every(({ l }, k) => staged.changed[k] === l.entry.name)) {
              used.add(staged);
              return { staged, size: s.size, parts };
            }
            return { parts: parts() };
          });
          return { base: group as Record<string, unknown>, weights: planned.map((x) => x.out), shards };
        }
        // Laid out again: every released tensor's values are read again first.
        if (recs.some((r) => r.released)) planned = entries.map((_, k) => (recs[k].released ? materialize(k) : planned[k]));
        const weights = planned.map((x) => x.out);
        const data = concatBytes(planned.map((x, i) => x.bytes ?? this.bytesOf(this.records.get(entries[i].entry.name)!)));
        return { base: group as Record<string, unknown>, weights, data };
      });
      // Staged writes this commit does not use (a group laid out again) finish first, so none
      // renames a file over one this commit writes; dropStaged deletes them.
      await Promise.all([...[...this.staged.values()].filter((st) => !used.has(st)).map((st) => st.job.catch(() => {})), ...this.abandoned]);
      const oldText = this.state.jsonText;
      const result = await writeModelAtomically({
        ...this.options,
        dir: this.dir,
        groups,
        expectedModelJson: this.state.jsonBytes,
        render: (manifest) => replaceTopLevelValue(oldText, 'weightsManifest', JSON.stringify(manifest)),
        files: this.modelFiles,
      });
      const modelJson = parseModelJson(result.text, path.join(this.dir, this.modelFiles.model));
      const layouts = modelJson.weightsManifest.map((grp, g) => {
        const hasStrings = grp.weights.some((w) => w.dtype === 'string' && !w.quantization);
        return computeGroupLayout(grp.weights, hasStrings ? concatBytes(result.groups[g].shards.map((s) => shardBytes(this.dir, s))) : undefined, g);
      });
      this.state = { dir: this.dir, jsonBytes: result.bytes, jsonText: result.text, modelJson, groups: result.groups, layouts };
      this.index(this.state);
      this.committedSinceStaging = true;
      // What staged shards were finished is of the apply before this commit.
      this.finished.clear();
    } finally {
      this.committing = false;
    }
  }

  /**
   * A shard's new bytes as parts, in order: the changed entries' new bytes (`dirty`, in
   * manifest order, each overlapping `s`), and the old shard's bytes between them (the old
   * shard is read only if there is such a gap).
   */
  private shardParts(s: Shard, dirty: readonly { bytes: Uint8Array; l: EntryLayout }[]): Uint8Array[] {
    const end = s.start + s.size;
    const old = (from: number, to: number) => storedRange(this.dir, s, from, to);
    const parts: Uint8Array[] = [];
    let at = s.start;
    for (const { bytes, l } of dirty) {
      const from = Math.max(l.offset, s.start);
      const to = Math.min(l.offset + l.byteLength, end);
      if (from > at) parts.push(old(at, from));
      parts.push(bytes.subarray(from - l.offset, to - l.offset));
      at = to;
    }
    if (at < end) parts.push(old(at, end));
    return parts;
  }

  /** Shards written ahead of the commit (`stageWrites`), by `<group>/<shard index>`. */
  private staged = new Map<string, StagedShard>();
  /** The tensors {@link settled} was told of since the last {@link dropStaged}. */
  private settledNames = new Set<string>();
  /** Staged writes running, and the ones waiting for a writer (at most {@link SHARD_WRITERS} at once). */
  private stageRunning = 0;
  private stageWaiting: (() => void)[] = [];
  private stageBuffers: Uint8Array[] = [];
  /** Set by {@link dropStaged}: staged writes that have not started yet do not start. */
  private stagingOver = false;

  /**
   * See {@link WeightStore.settled}. With `stageWrites`, each shard whose changed tensors are
   * all settled (none of its tensors still `pending`) is written now, in the background, as the
   * commit would write it (temp file, fsync, read back, renamed to its content-addressed name:
   * a file nothing names, which recovery deletes after a crash); {@link commit} then waits for
   * it instead of writing it. Yields to the event loop, so the writes in flight go on while the
   * applier patches the next tensor.
   */
  async settled(name: string, pending: ReadonlySet<string>): Promise<void> {
    const o = this.options;
    if (!o.stageWrites || o.shardBytes !== undefined || o.quantizedUnchanged === 'float32' || this.committing) return;
    await this.stageSettled(name, pending);
    if (o.releaseWritten) await this.holdBack();
    await this.yieldToWrites();
  }

  /**
   * With {@link OpenOptions.releaseWritten}: while {@link SHARD_WRITERS} staged shards are not
   * finished, wait for the oldest, so the applier reads no further ahead than the writes go
   * (the arrays it reads next can take the finished shards' buffers).
   */
  private async holdBack(): Promise<void> {
    for (;;) {
      const running = [...this.staged.values()].filter((st) => !st.finished);
      if (running.length < SHARD_WRITERS) return;
      await running[0].job.catch(() => {});
    }
  }

  /**
   * The staging part of {@link settled}. A shard is staged once none of its tensors is still
   * pending. Where the file layer writes files a piece at a time ({@link FileOps.openNewFile}),
   * a shard's bytes are appended to its temp file as they become final, in order, while the
   * next tensors are patched; the last piece, the fsync (with the read-back beside it) and the
   * rename follow when the shard is complete. A shard is never written a piece at a time
   * without that: files from a layer without it are written whole, as before.
   */
  private async stageSettled(name: string, pending: ReadonlySet<string>): Promise<void> {
    const r = this.floatRecord(name);
    this.settledNames.add(name);
    r.untouched = true;
    const g = r.layout.group;
    const src = this.state.groups[g];
    const entries = this.state.layouts[g].entries;
    const ops = this.options.fileOps ?? nodeFileOps;
    for (const [i, s] of src.shards.entries()) {
      const key = `${g}/${i}`;
      if (this.staged.has(key) || this.unstageable.has(key) || !overlaps(r.layout, s)) continue;
      const inShard = entries.filter((l) => overlaps(l, s));
      const streaming = this.streaming.get(key);
      if (!streaming && !ops.openNewFile && inShard.some((l) => pending.has(l.entry.name))) continue; // a tensor in it is still to be patched
      // The shard's bytes from where the last call stopped, up to the first tensor still to be
      // patched: the new bytes of the settled ones, the stored bytes of the others.
      const progress: StreamingShard['progress'] = streaming?.progress ?? { next: 0, at: s.start, parts: [], changed: [] };
      const fresh: Uint8Array[] = [];
      const end = s.start + s.size;
      const old = (from: number, to: number) => storedRange(this.dir, s, from, to);
      let k = progress.next;
      let at = progress.at;
      for (; k < inShard.length && !pending.has(inShard[k].entry.name); k++) {
        const l = inShard[k];
        const from = Math.max(l.offset, s.start);
        const to = Math.min(l.offset + l.byteLength, end);
        if (from > at) fresh.push(old(at, from));
        if (this.settledNames.has(l.entry.name)) {
          const { bytes } = this.encodeForCommit(this.records.get(l.entry.name)!, true, false);
          // A tensor whose stored size changes (off its grid: written as float32) lays the group
          // out again at the commit: nothing to stage.
          if (bytes === undefined || bytes.length !== l.byteLength) {
            // The whole group is laid out again: none of its shards is staged any more.
            for (const j of src.shards.keys()) {
              const other = `${g}/${j}`;
              this.unstageable.add(other);
              const st = this.streaming.get(other);
              if (st) this.abandon(other, st);
            }
            break;
          }
          fresh.push(bytes.subarray(from - l.offset, to - l.offset));
          progress.changed.push(l.entry.name);
        } else fresh.push(old(from, to));
        at = to;
      }
      if (this.unstageable.has(key)) continue;
      const complete = k === inShard.length;
      if (complete && at < end) fresh.push(old(at, end));
      progress.parts.push(...fresh);
      progress.next = k;
      progress.at = complete ? end : at;
      if (!complete) {
        if (fresh.length === 0) continue;
        // Not complete: write what is final so far (the file is opened on the first piece).
        const st = streaming ?? this.openStreaming(key, `${this.modelFiles.shardPrefix}group${g + 1}-shard${i + 1}of${src.shards.length}.bin`, progress);
        st.io = st.io.then(async (file) => {
          for (const part of fresh) await file.append(part);
          return file;
        });
        st.io.catch(() => {});
        continue;
      }
      const shardFile = shardName(await getHasher(), g, i, src.shards.length, progress.parts, this.modelFiles.shardPrefix);
      if (!streaming) {
        this.staged.set(key, this.stage(key, shardFile, progress.parts, progress.changed));
        continue;
      }
      this.streaming.delete(key);
      this.staged.set(key, this.finishStreaming(key, streaming, shardFile, fresh));
    }
  }

  /** Shards being written a piece at a time, not complete yet, by `<group>/<shard index>`. */
  private streaming = new Map<string, StreamingShard>();
  /** Shards that cannot be staged in this apply (their group is laid out again): the commit writes them. */
  private unstageable = new Set<string>();

  /** Open the temp file of a shard to be written a piece at a time. */
  private openStreaming(key: string, base: string, progress: StreamingShard['progress']): StreamingShard {
    const ops = this.options.fileOps ?? nodeFileOps;
    // A temp name (recovery deletes it after a crash); the content-addressed one comes at the end.
    const tmp = path.join(this.dir, `${base}.tmp-${newId()}`);
    const st: StreamingShard = { tmp, progress, io: (ops.openNewFile as NonNullable<FileOps['openNewFile']>)(tmp).then((file) => (st.file = file)) };
    st.io.catch(() => {});
    this.streaming.set(key, st);
    return st;
  }

  /** Stop writing a shard a piece at a time: its temp file is closed and deleted. */
  private abandon(key: string, st: StreamingShard): void {
    const ops = this.options.fileOps ?? nodeFileOps;
    this.streaming.delete(key);
    this.abandoned.push(discardStreaming(ops, st));
  }
  private abandoned: Promise<void>[] = [];

  /**
   * The rest of a shard written a piece at a time, as {@link stage} does for a whole one: its
   * last pieces, fsync, read back, renamed to its content-addressed `name` (unless a file of that
   * name is there already: then the temp file is deleted and the commit checks that file).
   */
  private finishStreaming(key: string, st: StreamingShard, name: string, fresh: readonly Uint8Array[]): StagedShard {
    const ops = this.options.fileOps ?? nodeFileOps;
    const file = path.join(this.dir, name);
    const verify = this.options.verifyWrites === true;
    const { parts, changed } = st.progress;
    const job = (async () => {
      let renamed = false;
      if (!(await this.writerSlot())) {
        await discardStreaming(ops, st);
        return { created: false };
      }
      try {
        const open = await st.io;
        for (const part of fresh) await open.append(part);
        if (await fileExists(file)) {
          await discardStreaming(ops, st);
          return { created: false };
        }
        // The read-back runs while the fsync does: both see what the file system holds for the
        // file (a read after an fsync is served from the same page cache).
        const readBack = async () => {
          if (!verify) return;
          const buf = this.stageBuffers.pop() ?? new Uint8Array(VERIFY_CHUNK);
          try {
            await verifyWritten(this.dir, st.tmp, parts, buf);
          } finally {
            this.stageBuffers.push(buf);
          }
        };
        await settleAll([open.sync(), readBack()]);
        st.file = undefined;
        await open.close();
        await ops.rename(st.tmp, file);
        renamed = true;
        const ident = fileIdent(await stat(file, { bigint: true }));
        this.releaseWritten(key, { file, ident }, changed);
        return { created: true, ident };
      } catch (e) {
        if (renamed) await ops.unlink(file).catch(() => {});
        else await discardStreaming(ops, st);
        throw e;
      } finally {
        this.releaseWriter();
      }
    })();
    return this.staging(name, file, changed, job);
  }

  /** The record of a staged write (`finished` once its job settles). */
  private staging(name: string, file: string, changed: string[], job: StagedShard['job']): StagedShard {
    const st: StagedShard = { name, file, changed, job, consumed: false, finished: false };
    const end = () => {
      st.finished = true;
    };
    job.then(end, end); // awaited by the commit or by dropStaged
    return st;
  }

  private yieldToWrites(): Promise<void> {
    return new Promise((resolve) => setImmediate(resolve));
  }

  /** Start writing one staged shard (when a writer is free). */
  private stage(key: string, name: string, parts: readonly Uint8Array[], changed: string[]): StagedShard {
    const ops = this.options.fileOps ?? nodeFileOps;
    const file = path.join(this.dir, name);
    const tmp = `${file}.tmp-${newId()}`;
    const verify = this.options.verifyWrites === true;
    const job = (async () => {
      // The apply ended (failed, and its values were put back) while this one waited: nothing to write.
      if (!(await this.writerSlot())) return { created: false };
      const buf = verify ? (this.stageBuffers.pop() ?? new Uint8Array(VERIFY_CHUNK)) : undefined;
      let renamed = false;
      try {
        if (await fileExists(file)) return { created: false };
        const ident = await writeShardFile(ops, this.dir, tmp, file, parts, buf, () => (renamed = true));
        this.releaseWritten(key, { file, ident }, changed);
        return { created: true, ident };
      } catch (e) {
        await ops.unlink(renamed ? file : tmp).catch(() => {});
        throw e;
      } finally {
        if (buf) this.stageBuffers.push(buf);
        this.releaseWriter();
      }
    })();
    return this.staging(name, file, changed, job);
  }

  /**
   * Wait for one of the {@link SHARD_WRITERS} slots of staged writes (whole shards, and the
   * fsync and read-back that finish a shard written a piece at a time). False when staging
   * ended meanwhile (the apply failed): then nothing is to be written.
   */
  private async writerSlot(): Promise<boolean> {
    if (this.stageRunning >= SHARD_WRITERS) await new Promise<void>((resolve) => this.stageWaiting.push(resolve));
    if (this.stagingOver) {
      this.stageWaiting.shift()?.();
      return false;
    }
    this.stageRunning++;
    return true;
  }

  private releaseWriter(): void {
    this.stageRunning--;
    this.stageWaiting.shift()?.();
  }

  /**
   * End staging (see {@link OpenOptions.stageWrites}): wait for the staged writes in flight,
   * then delete every staged file no commit switched to (never a file model.json names).
   */
  async dropStaged(): Promise<void> {
    const ops = this.options.fileOps ?? nodeFileOps;
    const jobs = [...this.staged.values()];
    const unfinished = [...this.streaming.values()];
    this.stagingOver = true;
    this.staged.clear();
    this.streaming.clear();
    this.unstageable.clear();
    this.settledNames.clear();
    // Shards begun a piece at a time and never completed: nothing names their temp files.
    await Promise.all([...unfinished.map((st) => discardStreaming(ops, st)), ...this.abandoned.splice(0)]);
    const results = await Promise.all(jobs.map((st) => st.job.catch(() => undefined)));
    this.stagingOver = false;
    // Tensors let go of and not committed: read from the model's files again, as before the apply.
    this.finished.clear();
    this.pool = [];
    this.committedSinceStaging = false;
    for (const r of this.records.values()) r.released = false;
    const leftover = jobs.filter((st, k) => !st.consumed && results[k]?.created);
    if (leftover.length === 0) return; // every staged file was taken over by a commit, or none was made
    // Never a file model.json or a kept model.json.prev names on disk now (whatever a failed
    // commit left), nor one the store's model names.
    const live = new Set(manifestPaths(this.state.modelJson).map((p) => path.resolve(this.dir, p)));
    for (const name of [this.modelFiles.model, this.modelFiles.previous]) {
      try {
        const bytes = await readIfExists(path.join(this.dir, name));
        if (bytes) for (const p of manifestPaths(parseModelJson(new TextDecoder().decode(bytes)))) live.add(path.resolve(this.dir, p));
      } catch {
        return; // cannot tell what the folder names: delete nothing (recovery deletes what nothing names)
      }
    }
    for (const st of leftover) {
      if (live.has(path.resolve(st.file))) continue;
      await ops.unlink(st.file).catch(() => {});
    }
  }

  /**
   * The manifest entry and bytes an entry is committed with; `bytes` undefined means the
   * stored bytes, unchanged (not read if they were not).
   */
  private encodeForCommit(r: Rec, isChanged: boolean, allFloat32: boolean): { out: TfjsWeightEntry; bytes?: Uint8Array; released?: boolean } {
    if (!r.layout.isFloat) return { out: r.entry };
    // Let go of after its new shards were written ({@link OpenOptions.releaseWritten}): a
    // float32 tensor of the same size, whose bytes are in those files (read only if needed).
    if (r.released) return { out: r.entry, released: true };
    const quantized = r.entry.quantization !== undefined;
    if (!quantized) {
      if (!r.values) return { out: r.entry };
      // A view where the host is little-endian: the shard is assembled from a copy anyway.
      const bytes = LITTLE_ENDIAN_HOST ? new Uint8Array(r.values.buffer, r.values.byteOffset, r.values.byteLength) : encodeFloat32(r.values);
      // A tensor handed out but not listed as changed is rewritten only if its bytes differ.
      return { out: r.entry, bytes: !isChanged && sameBytes(bytes, this.bytesOf(r)) ? undefined : bytes };
    }
    if (allFloat32) return { out: asFloat32Entry(r.entry), bytes: encodeFloat32(r.values ?? dequantizeEntry(r.entry, this.bytesOf(r))) };
    if (!r.values) return { out: r.entry };
    if (!isChanged) {
      // Not listed as changed, but handed out: keep the stored bytes if the values are
      // bit-identical to what they decode to.
      const fresh = dequantizeEntry(r.entry, this.bytesOf(r));
      if (sameBytes(encodeFloat32(fresh), encodeFloat32(r.values))) return { out: r.entry };
    }
    // Changed values that are all on the tensor's grid (a format v2 patch rounded them there)
    // are stored in the same dtype with the same parameters: same size, same manifest entry.
    const requantized = quantizeOnGrid(r.entry, r.values);
    if (requantized) return { out: r.entry, bytes: requantized };
    // Off the grid (a payload without a grid, built with --store float32 or by an older tool).
    return { out: asFloat32Entry(r.entry), bytes: encodeFloat32(r.values) };
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

/** A tensor for {@link writeModelDir}: Float32Array for float32, Int32Array for int32, Uint8Array for bool. */
