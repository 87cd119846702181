/**
 * TF.js model folders on disk (`model.json` + weight shard files), for Node without
 * tfjs-node:
 *
 * - {@link openTfjsModelDir}: a {@link WeightStore} over a folder, for the applier;
 * - {@link fileSystemIO}: a `tf.io.IOHandler`, so `tf.loadLayersModel(fileSystemIO(dir))`,
 *   `tf.loadGraphModel(fileSystemIO(dir))` and `model.save(fileSystemIO(dir))` work;
 * - {@link readModelTensors} / {@link writeModelDir}: plain named-array convenience;
 * - {@link referencedFiles} / {@link listStaleFiles}: what a folder uses, what is left over.
 *
 * Every write uses one protocol, so a loader of the folder sees exactly the old model until
 * the switch and exactly the new one after it, even across a crash or power loss (every change
 * to the folder goes through the `fileOps` of src/io/durable.ts, which the power-loss harness
 * records):
 *
 * 0. with `onBeforeWrite`, the caller's hook runs once the new version is planned, while steps
 *    2 and 3's files are written, and resolves before anything a loader reads is created (the
 *    kept previous version, the switch): src/io/model-dir-update.ts writes its update journal there;
 * 1. the new weight bytes are cut into ~4 MiB shards named
 *    `group<g>-shard<i>of<n>-<16 hex of xxh64(shard)>.bin` (content-addressed: a name
 *    never holds two different contents, so a live file is never overwritten);
 * 2. each shard is written to `<name>.tmp-<id>`, fsynced, closed (with `verifyWrites`, read
 *    back and compared with the bytes meant), renamed to `<name>`, four at a time (shards
 *    whose bytes a patch left unchanged are not written: they stay the same files);
 * 3. the new model.json is written to `model.json.tmp-<id>`, fsynced, closed (and verified), at the
 *    same time as the shards; once all are written, with `keepPrevious`, model.json is
 *    hard-linked as `model.json.prev`; the folder is fsynced;
 * 4. model.json is checked to still be the bytes the operation started from (else a
 *    {@link ModelFormatError}: someone else changed the model), then the temp file is renamed
 *    over `model.json` (the atomic switch) and the folder is fsynced;
 * 5. shards the old model.json named and the new one does not are deleted (best effort:
 *    the switch already happened; {@link listStaleFiles} finds anything left behind).
 *
 * Any failure before step 4's rename removes the temporary and newly created files and leaves
 * `model.json` and the old shards byte for byte as they were.
 *
 * A weights manifest that names a file the applier owns (model.json itself, the kept previous
 * version, the journal, the lock, the state file, temporary files: src/io/control-files.ts) as
 * a shard is refused when the folder is opened: a write would rewrite and delete it.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync, type BigIntStats } from 'node:fs';
import { constants, open, readdir, readFile, stat } from 'node:fs/promises';
import * as path from 'node:path';
import type { IOHandler, IOModelArtifacts, IOSaveResult, IOTrainingConfig, IOWeightsManifestEntry } from './tfjs-io-types.ts';
import { ModelFormatError, ModelMismatchError, NeuralDiffError, TargetMismatchError, UsageError } from '../core/errors.ts';
import type { TensorEntry, WeightStore } from '../core/weight-store.ts';
import { getHasher, hex64, type Hasher } from '../core/hasher.ts';
import {
  DEFAULT_SHARD_BYTES,
  asFloat32Entry,
  computeGroupLayout,
  concatBytes,
  decodePassthroughEntry,
  dequantizeEntry,
  encodeFloat32,
  entryByteLength,
  manifestPaths,
  parseModelJson,
  replaceTopLevelValue,
  shapeSize,
  splitIntoShards,
  validateModelJson,
  type EntryLayout,
  type GroupLayout,
  type PassthroughValues,
  type TfjsModelJson,
  type TfjsWeightEntry,
  type TfjsWeightGroup,
} from './tfjs-manifest.ts';
import { errCode, forEachLimited, nodeFileOps, readRegularFile, type FileOps, type NewFile } from './durable.ts';
import { MODEL_JSON, PREVIOUS_MODEL_JSON, controlFileProblem } from './control-files.ts';
import { affineStep, snapValue, type StorageGrid } from '../core/grid.ts';
import { toHalfBits } from '../core/float16.ts';
import { LITTLE_ENDIAN_HOST } from '../core/endian.ts';

export { MODEL_JSON, PREVIOUS_MODEL_JSON };

/** Called after every new file is durable and right before the switch (see the module doc). */
export type BeforeSwitchHook = (info: {
  /** The model folder. */
  dir: string;
  /** Path of the fully written, fsynced `model.json.tmp-<id>`. */
  tempModelJson: string;
  /** Shard names (relative to `dir`) the new model.json references. */
  newShards: readonly string[];
  /** The shards of `newShards` this write created (the others were already in the folder). */
  writtenShards: readonly string[];
}) => void | Promise<void>;

/** Options for writes into a model folder. */
export interface WriteOptions {
  /** Maximum shard size in bytes; default 4 MiB, as tfjs and the converter use. */
  shardBytes?: number;
  /**
   * Runs after all new files are written and fsynced and before model.json is replaced.
   * Throwing aborts the write with nothing changed. Meant for tests that simulate a crash at
   * the worst moment and for callers that want to verify the new files first.
   */
  onBeforeSwitch?: BeforeSwitchHook;
  /**
   * Keep the previous version: before the switch, its model.json is copied durably to
   * {@link PREVIOUS_MODEL_JSON}, and its shards are not deleted after the switch. The caller
   * then confirms or rolls back (see src/io/model-dir-update.ts). Refused while a previous
   * version is already kept.
   */
  keepPrevious?: boolean;
  /**
   * Runs once the new version is planned (shard names, the new model.json), while the new shards
   * and the new model.json's temporary file are written (no name a loader reads is created
   * before it resolves: the kept previous version and the switch come after); throwing aborts the
   * write with nothing changed. src/io/model-dir-update.ts writes its update journal here.
   */
  onBeforeWrite?: BeforeWriteHook;
  /** The file operations that change the folder (default: node:fs; tests record them). */
  fileOps?: FileOps;
  /**
   * Read every new file back once it is written and fsynced (each shard into one reused
   * buffer, while other shards are still being written) and compare it with the bytes meant:
   * a difference aborts the write with a {@link TargetMismatchError}, before the switch.
   */
  verifyWrites?: boolean;
}

/** See {@link WriteOptions.onBeforeWrite}. */
export type BeforeWriteHook = (info: {
  /** The model folder. */
  dir: string;
  /** The write's id, in its temporary files' names (`<name>.tmp-<id>`). */
  id: string;
  /** The bytes of model.json the write starts from (null: there is none). */
  previousModelJson: Uint8Array | null;
  /** The bytes of the new model.json. */
  nextModelJson: Uint8Array;
  /** Shard names (relative to `dir`) this write will create. */
  createdShards: readonly string[];
  /** Shard paths the old model.json names and the new one does not. */
  retiredShards: readonly string[];
}) => void | Promise<void>;

/** Options of {@link openTfjsModelDir}. */
export interface OpenOptions extends WriteOptions {
  /**
   * Read this file of the folder instead of model.json (e.g. a fully written
   * `model.json.tmp-<id>`, to check a new version before the switch). Such a store cannot commit.
   */
  modelJsonFile?: string;
  /**
   * What {@link TfjsDirWeightStore.commit} does with quantized (uint8/uint16/float16) float
   * tensors the patch did not change: `'keep'` (default) writes their original bytes and
   * manifest entry back, bit-exact and small; `'float32'` rewrites every float tensor as
   * float32. A changed quantized tensor keeps its dtype and quantization when every new value
   * is on its grid (what a format v2 patch with the tensor's grid gives, bit-exact); otherwise
   * (a payload without a grid) it is written as float32, never re-rounded, so the stored values
   * are exactly the ones the applier verified.
   */
  quantizedUnchanged?: 'keep' | 'float32';
  /**
   * Read a shard only when a tensor in it is first asked for (synchronously, in `values`),
   * instead of every shard at open. Opening then checks the shards' sizes, not their bytes, and
   * a shard that changes on disk after the open is refused when read.
   */
  lazy?: boolean;
  /**
   * Digests recorded by an earlier verified apply (see {@link TfjsDirWeightStore.digest} and
   * src/io/model-dir-update.ts); without them `digest` answers nothing.
   */
  recordedDigests?: ReadonlyMap<string, RecordedDigest>;
  /**
   * Write each new shard as soon as the tensors a patch changes in it are settled (see
   * {@link TfjsDirWeightStore.settled}), while the applier patches the rest, instead of all of
   * them in {@link TfjsDirWeightStore.commit}. Such files are named by nothing until the commit
   * switches to them; whoever opens the store with this option calls
   * {@link TfjsDirWeightStore.dropStaged} when the apply ends, however it ends
   * (src/io/model-dir-update.ts does). Not with `shardBytes` or `quantizedUnchanged: 'float32'`
   * (every shard is cut again): then nothing is written before the commit.
   */
  stageWrites?: boolean;
  /**
   * With `stageWrites`: once every new shard holding a tensor's bytes is written, fsynced, read
   * back and renamed, the tensor's array is let go and its memory reused for the next tensors
   * read; asked for again, its values are read from those new files (a new array, the same
   * values), so hold on to no array `values` returned: it may come to hold another tensor. The
   * applier is also held back while {@link SHARD_WRITERS} complete shards are not written yet:
   * an apply then holds a few shards in memory, not every tensor it patches (plain float32
   * tensors; quantized ones are kept, as their bytes are encoded again at the commit).
   */
  releaseWritten?: boolean;
  /**
   * Absolute paths the weights manifest must not name as shards, besides the files the applier
   * owns in the folder (see src/io/control-files.ts), which are always refused: e.g. a state file
   * kept in the folder under another name.
   */
  reservedFiles?: readonly string[];
}

/** A float tensor of a TF.js model folder. */
export interface TfjsTensorEntry extends TensorEntry {
  /** How it is stored now: `'float32'`, or the quantization dtype. */
  readonly storage: 'float32' | 'uint8' | 'uint16' | 'float16';
  /** Index of its manifest group. */
  readonly group: number;
}

/** A non-float entry (int32, bool, string, complex64), passed through bit-exact. */
export interface PassthroughEntry {
  readonly name: string;
  readonly shape: readonly number[];
  readonly dtype: TfjsWeightEntry['dtype'];
  /** Stored byte length. */
  readonly byteLength: number;
  /** Index of its manifest group. */
  readonly group: number;
}

// ---------------------------------------------------------------------------------------
// reading

/** One shard file of a weight group, as found when the folder was opened. */
interface Shard {
  /** The path model.json lists (relative to the folder). */
  path: string;
  /** Byte offset of the shard within its group's concatenated data. */
  start: number;
  size: number;
  /**
   * The file's identity when opened (device, inode, size, mtime and ctime in ns): a later read
   * checks the file is still that file, and recorded digests are tied to it.
   */
  ident: string;
  /** Its bytes, once read. */
  bytes?: Uint8Array;
}

/** The shards of one weight group. */
interface GroupSource {
  shards: Shard[];
  /** Sum of the shard sizes. */
  total: number;
}

interface LoadedModel {
  dir: string;
  /** Exact bytes of model.json as read. */
  jsonBytes: Uint8Array;
  /** model.json decoded as UTF-8 (BOM kept). */
  jsonText: string;
  modelJson: TfjsModelJson;
  /** Each group's shard files (read at open, or on first use when opened `lazy`). */
  groups: GroupSource[];
  layouts: GroupLayout[];
}

function fileIdent(st: BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

async function folderListing(dir: string): Promise<string> {
  try {
    const names = (await readdir(dir)).sort();
    if (names.length === 0) return 'the folder is empty';
    return `the folder holds ${names.slice(0, 8).join(', ')}${names.length > 8 ? `, ... (${names.length} entries)` : ''}`;
  } catch {
    return 'the folder cannot be listed';
  }
}

async function readModelJsonFile(dir: string, name = MODEL_JSON): Promise<{ bytes: Uint8Array; text: string; modelJson: TfjsModelJson }> {
  const file = path.join(dir, name);
  let bytes: Uint8Array;
  try {
    // A FIFO or device named model.json is refused, never waited on.
    const read = await readRegularFile(file);
    if (read === null) throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
    bytes = read;
  } catch (err) {
    const code = errCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      let dirExists = false;
      try { dirExists = (await stat(dir)).isDirectory(); } catch { /* reported below */ }
      const found = dirExists ? `${await folderListing(dir)}, but no ${MODEL_JSON}` : 'no such folder';
      throw new ModelFormatError(
        `no ${MODEL_JSON} in ${dir}: expected a TF.js model folder (model.json plus the .bin shard files it lists), found ${found}. Point to the folder that holds model.json, or save the model there first (model.save(fileSystemIO(dir)))`,
        { dir, expected: MODEL_JSON, found },
      );
    }
    throw new ModelFormatError(`cannot read ${file}: ${(err as Error).message}: check the path and its permissions`, { dir, code });
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new ModelFormatError(
      `${file}: expected UTF-8 JSON, found bytes that are not UTF-8: the file is corrupt or not a model.json; copy the model folder again`,
      { dir },
    );
  }
  return { bytes, text, modelJson: parseModelJson(text, file) };
}

/** Shard stats asked for at once when a folder is opened lazily. */
const STAT_AHEAD = 8;

async function readGroupSources(dir: string, modelJson: TfjsModelJson, lazy: boolean): Promise<{ groups: GroupSource[]; layouts: GroupLayout[] }> {
  const groups: GroupSource[] = [];
  const layouts: GroupLayout[] = [];
  for (const [g, group] of modelJson.weightsManifest.entries()) {
    // A string tensor's length is in its data, so such a group is read whole even when lazy.
    const hasStrings = group.weights.some((w) => w.dtype === 'string' && !w.quantization);
    const readNow = !lazy || hasStrings;
    const shards: Shard[] = [];
    let total = 0;
    // Lazily, only each shard's size and identity, asked for up to STAT_AHEAD shards ahead
    // (each stat is a round trip to the thread pool) and used in order, so the first failure
    // reported is the same.
    const ahead: Promise<BigIntStats>[] = [];
    const statAhead = (k: number): Promise<BigIntStats> => {
      for (let j = ahead.length; j < Math.min(group.paths.length, k + STAT_AHEAD); j++) {
        const pending = stat(path.join(dir, group.paths[j]), { bigint: true });
        pending.catch(() => {}); // awaited in order below, or not at all after an earlier failure
        ahead.push(pending);
      }
      return ahead[k];
    };
    for (const [i, p] of group.paths.entries()) {
      const file = path.join(dir, p);
      try {
        if (readNow) {
          // Non-blocking, so a FIFO is refused by the check below instead of hanging the open.
          const fh = await open(file, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
          try {
            const st = await fh.stat({ bigint: true });
            if (!st.isFile()) throw Object.assign(new Error('not a regular file'), { code: 'EFTYPE' });
            const buf = await fh.readFile();
            // A plain Uint8Array view: Buffer's slice() would not copy.
            const bytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
            shards.push({ path: p, start: total, size: bytes.length, ident: fileIdent(st), bytes });
            total += bytes.length;
          } finally {
            await fh.close();
          }
        } else {
          const st = await statAhead(i);
          if (!st.isFile()) throw Object.assign(new Error('not a regular file'), { code: 'EISDIR' });
          shards.push({ path: p, start: total, size: Number(st.size), ident: fileIdent(st) });
          total += Number(st.size);
        }
      } catch (err) {
        const code = errCode(err);
        const missing = code === 'ENOENT';
        const found = missing ? 'no such file' : `${(err as Error).message}`;
        throw new ModelFormatError(
          `model.json names ${p}, which is ${missing ? 'missing' : 'unreadable'} in ${dir}: expected shard ${i + 1} of ${group.paths.length} of weight group ${g + 1}, found ${found} (${await folderListing(dir)}). Copy the complete model folder again (model.json together with every file it lists), or restore ${p} from the source of the model`,
          { dir, path: p, group: g, shard: i, code },
        );
      }
    }
    const sizes = shards.map((s) => s.size);
    let needed: number | undefined;
    if (!hasStrings) needed = group.weights.reduce((n, w) => n + entryByteLength(w), 0);
    if (needed !== undefined && total < needed) throw shortShards(dir, g, group.paths, sizes, needed);
    let layout: GroupLayout;
    try {
      layout = computeGroupLayout(group.weights, hasStrings ? concatBytes(shards.map((s) => s.bytes as Uint8Array)) : undefined, g);
    } catch (err) {
      if (err instanceof ModelFormatError) throw shortShards(dir, g, group.paths, sizes, undefined, err.message);
      throw err;
    }
    if (layout.totalBytes !== total) {
      throw new ModelFormatError(
        `weight group ${g + 1} in ${dir}: the shards (${group.paths.join(', ')}) hold ${total} bytes but model.json describes ${layout.totalBytes} bytes of weights: expected them to match exactly; found ${total - layout.totalBytes} extra bytes, so model.json and the shards come from different models. Copy the model folder again from one source`,
        { dir, group: g, expected: layout.totalBytes, found: total },
      );
    }
    groups.push({ shards, total });
    layouts.push(layout);
  }
  return { groups, layouts };
}

/**
 * Bytes `[from, to)` of a shard file, read now (synchronously: the store's `values` is
 * synchronous). Refuses a file that is no longer the one the folder was opened with.
 */
function readShardRange(dir: string, shard: Shard, from: number, to: number, into?: Uint8Array): Uint8Array {
  return readFileRange(dir, path.join(dir, shard.path), shard.path, shard.ident, shard.size, from, to, into);
}

/** Bytes `[from, to)` of `file` (of `size` bytes, identity `ident`), into `into` when given (its length must be `to - from`). */
function readFileRange(dir: string, file: string, name: string, ident: string, size: number, from: number, to: number, into?: Uint8Array): Uint8Array {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw new ModelFormatError(`${file} disappeared after the model folder was opened: expected the shard model.json names, found ${errCode(err) ?? (err as Error).message}. Another program changed the folder; reopen it and retry (one writer per model folder)`, { dir, path: name });
  }
  try {
    const st = fstatSync(fd, { bigint: true });
    if (fileIdent(st) !== ident) {
      throw new ModelFormatError(`${file} changed after the model folder was opened (expected file ${ident}, found ${fileIdent(st)}): another program writes to the folder; reopen it and retry (one writer per model folder)`, { dir, path: name });
    }
    const bytes = into ?? new Uint8Array(to - from);
    for (let at = 0; at < bytes.length;) {
      const n = readSync(fd, bytes, at, bytes.length - at, from + at);
      if (n === 0) throw new ModelFormatError(`${file} ended after ${from + at} of its ${size} bytes while being read: it was truncated after the folder was opened; reopen it and retry`, { dir, path: name });
      at += n;
    }
    return bytes;
  } finally {
    closeSync(fd);
  }
}

/** The bytes of a shard, read and kept the first time they are needed. */
function shardBytes(dir: string, shard: Shard): Uint8Array {
  shard.bytes ??= readShardRange(dir, shard, 0, shard.size);
  return shard.bytes;
}

/** The stored bytes of `shard` at group offsets `[from, to)` (within the shard). */
function storedRange(dir: string, shard: Shard, from: number, to: number): Uint8Array {
  return shardBytes(dir, shard).subarray(from - shard.start, to - shard.start);
}

/** Whether `file` exists (a failure other than ENOENT is thrown). */
async function fileExists(file: string): Promise<boolean> {
  return (await stat(file).catch((e) => (errCode(e) === 'ENOENT' ? null : Promise.reject(e)))) !== null;
}

/**
 * Where bytes `[offset, offset + length)` of a group lie: each shard holding some of them, with
 * the range `[from, to)` within that shard (none for an empty range).
 */
function shardRanges(src: GroupSource, offset: number, length: number): { shard: Shard; from: number; to: number }[] {
  const end = offset + length;
  return src.shards
    .filter((s) => s.size > 0 && s.start < end && s.start + s.size > offset)
    .map((shard) => ({ shard, from: Math.max(offset, shard.start) - shard.start, to: Math.min(end, shard.start + shard.size) - shard.start }));
}

/**
 * Bytes `[offset, offset + length)` of a group's data (a view when they lie in one shard). With
 * `keep` false, shards not read yet are read for this range only and not kept (hashing a tensor
 * never holds its whole shard).
 */
function groupRange(dir: string, src: GroupSource, offset: number, length: number, keep = true): Uint8Array {
  const parts = shardRanges(src, offset, length).map(({ shard, from, to }) =>
    shard.bytes || keep ? shardBytes(dir, shard).subarray(from, to) : readShardRange(dir, shard, from, to));
  return parts.length === 1 ? parts[0] : concatBytes(parts);
}

function shortShards(dir: string, g: number, paths: readonly string[], sizes: readonly number[], needed?: number, detail?: string): ModelFormatError {
  const total = sizes.reduce((a, b) => a + b, 0);
  // tfjs and the converter write equal shards and a shorter last one; a shorter shard before
  // the last one is the likely truncated file, else the last one.
  const full = Math.max(0, ...sizes.slice(0, -1));
  let suspect = sizes.findIndex((s, i) => i < sizes.length - 1 && s < full);
  if (suspect < 0) suspect = sizes.length - 1;
  const who = suspect >= 0 ? `${paths[suspect]} (${sizes[suspect]} bytes) is likely short` : 'the group lists no shard files';
  const need = needed !== undefined ? `${needed} bytes` : 'more bytes';
  return new ModelFormatError(
    `weight group ${g + 1} in ${dir} is short: expected ${need} of weights, found ${total} bytes in ${paths.length} shard file(s); ${who}${detail ? ` (${detail})` : ''}. The copy was interrupted or the file was truncated: copy the complete model folder again`,
    { dir, group: g, expected: needed, found: total, sizes, suspect: suspect >= 0 ? paths[suspect] : undefined },
  );
}

async function loadModel(dir: string, modelJsonName = MODEL_JSON, lazy = false, reserved: readonly string[] = []): Promise<LoadedModel> {
  const { bytes, text, modelJson } = await readModelJsonFile(dir, modelJsonName);
  checkNoControlFiles(dir, modelJson, reserved);
  const { groups, layouts } = await readGroupSources(dir, modelJson, lazy);
  return { dir, jsonBytes: bytes, jsonText: text, modelJson, groups, layouts };
}

/**
 * Refuse a manifest that names a file the applier owns (model.json, the kept previous version,
 * the journal, the lock, the state file, ...) as a weight shard: an update would rewrite it as a
 * shard and delete it with the old shards. See src/io/control-files.ts.
 */
function checkNoControlFiles(dir: string, modelJson: TfjsModelJson, reserved: readonly string[]): void {
  for (const [g, group] of modelJson.weightsManifest.entries()) {
    for (const p of group.paths) {
      const problem = controlFileProblem(dir, p, reserved);
      if (problem) {
        throw new ModelFormatError(
          `${path.join(dir, MODEL_JSON)} names ${JSON.stringify(p)} as a weight shard of group ${g + 1}, which is ${problem}: expected weight files only (an update rewrites and deletes shards, and would destroy it). Nothing was read or written; fix the weights manifest (tensorflowjs_converter names shards group<g>-shard<i>of<n>.bin), or copy the model folder again from its source`,
          { dir, path: p, group: g, problem },
        );
      }
    }
  }
}

/**
 * Refuse (ModelFormatError) a folder whose model.json names a file the applier owns as a weight
 * shard (see src/io/control-files.ts), reading model.json only: an apply checks this before it
 * takes its lock or recovers anything, since both delete files of the applier's (stale locks,
 * temporary files). A missing or unreadable model.json is left for {@link openTfjsModelDir} to
 * report.
 */
export async function checkManifestNamesNoControlFiles(dir: string, reservedFiles: readonly string[] = []): Promise<void> {
  let modelJson: TfjsModelJson;
  try {
    modelJson = (await readModelJsonFile(dir)).modelJson;
  } catch {
    return;
  }
  checkNoControlFiles(dir, modelJson, reservedFiles);
}

// ---------------------------------------------------------------------------------------
// writing

/**
 * A shard of a planned write: an existing file kept as it is, or new bytes, given as the parts
 * they are made of in order (views of the tensors' values and of the old shard: a patched
 * shard is never assembled into a copy).
 */
type PlannedShard =
  | { keep: Shard }
  | { parts: Uint8Array[] }
  /** Written ahead (see {@link StagedShard}); `parts` gives its bytes in the rare case they are needed (it was not created by its job). */
  | { staged: StagedShard; size: number; parts: () => Uint8Array[] };

/** A shard being written a piece at a time (see TfjsDirWeightStore.stageSettled). */
interface StreamingShard {
  /** Its temp file. */
  tmp: string;
  /**
   * How far it is made: the entries of the shard (in order) taken so far (`next`), the group
   * offset its bytes reach (`at`), those bytes as parts, and the settled entries among them.
   */
  progress: { next: number; at: number; parts: Uint8Array[]; changed: string[] };
  /** The open file, once every piece asked for so far is written. */
  io: Promise<NewFile>;
  /** The file once opened, until closed (for the cleanup after a failed write). */
  file?: NewFile;
}

/** Close a shard's file written a piece at a time (if open) and delete its temp file. */
async function discardStreaming(ops: FileOps, st: StreamingShard): Promise<void> {
  await st.io.catch(() => {});
  const file = st.file;
  st.file = undefined;
  await file?.close().catch(() => {});
  await ops.unlink(st.tmp).catch(() => {});
}

/** A shard written ahead of the commit (see {@link OpenOptions.stageWrites}). */
interface StagedShard {
  /** Its content-addressed name in the folder, and the path. */
  name: string;
  file: string;
  /** The names of the entries whose new bytes it holds. */
  changed: string[];
  /**
   * Settles when it is written, fsynced, read back and renamed to `name` (`created`, with the
   * file's identity), or found already there (not `created`: the commit then treats the shard
   * as if it had not been staged). Rejects when writing failed (its temp file removed).
   */
  job: Promise<{ created: boolean; ident?: string }>;
  /**
   * Set once a commit took the file over (it is among the files that commit created: the
   * commit's cleanup, or the journal's recovery, deletes it if the update does not happen).
   */
  consumed: boolean;
  /** Set once `job` settled. */
  finished: boolean;
}

interface PlannedGroup {
  /** The original group object (its keys other than paths/weights are kept), or `{}`. */
  base: Record<string, unknown>;
  weights: TfjsWeightEntry[];
  /** Concatenated bytes of `weights`, in order, cut into shards of `shardBytes`; or … */
  data?: Uint8Array;
  /** … the shards themselves (a patch that keeps the layout keeps the unchanged files). */
  shards?: PlannedShard[];
}

interface WritePlan extends WriteOptions {
  dir: string;
  groups: PlannedGroup[];
  /** Render the new model.json text for the new manifest. */
  render: (manifest: TfjsWeightGroup[]) => string;
  /** If set, model.json must still hold exactly these bytes (`null`: must not exist). */
  expectedModelJson?: Uint8Array | null;
}

interface WriteResult {
  text: string;
  bytes: Uint8Array;
  manifest: TfjsWeightGroup[];
  /** The new version's shards, group by group. */
  groups: GroupSource[];
}

function newId(): string {
  return `${process.pid}-${randomBytes(6).toString('hex')}`;
}

async function readIfExists(file: string): Promise<Uint8Array | null> {
  try {
    return await readFile(file);
  } catch (err) {
    if (errCode(err) === 'ENOENT') return null;
    throw err;
  }
}

function sameBytes(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === null || b === null) return a === b;
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

/**
 * A content-addressed shard name. xxh64 (a third of sha256's time here) is enough: names only
 * keep one file from holding two contents, and a name that collides with a live shard of other
 * bytes is refused before anything is overwritten (see writeModelAtomically).
 */
function shardName(hasher: Hasher, g: number, i: number, n: number, parts: readonly Uint8Array[]): string {
  const h = hasher.create64(0n);
  for (const part of parts) h.update(part);
  return `group${g + 1}-shard${i + 1}of${n}-${hex64(h.digest())}.bin`;
}

/** Whether `bytes` are the concatenation of `parts`. */
function sameAsParts(bytes: Uint8Array, parts: readonly Uint8Array[]): boolean {
  let at = 0;
  for (const part of parts) {
    if (!sameBytes(bytes.subarray(at, at + part.length), part)) return false;
    at += part.length;
  }
  return at === bytes.length;
}

function groupObject(base: Record<string, unknown>, paths: string[], weights: TfjsWeightEntry[]): TfjsWeightGroup {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(base)) out[k] = k === 'paths' ? paths : k === 'weights' ? weights : v;
  if (!('paths' in out)) out.paths = paths;
  if (!('weights' in out)) out.weights = weights;
  return out as TfjsWeightGroup;
}

/** New shards written at once: libuv's default thread pool size, so one write's fsync overlaps the others' writes. */
const SHARD_WRITERS = 4;

/** Bytes read at a time when a written file is compared with what was meant (a buffer per writer). */
const VERIFY_CHUNK = 1 << 20;

/**
 * Read `file` back and compare it with `parts`, in order, through `buf`; a difference (or a
 * size that is not theirs) is a {@link TargetMismatchError}: the storage did not keep the
 * bytes.
 */
async function verifyWritten(dir: string, file: string, parts: readonly Uint8Array[], buf: Uint8Array): Promise<void> {
  const size = parts.reduce((n, part) => n + part.length, 0);
  const fh = await open(file, 'r');
  let equal = 0;
  try {
    const st = await fh.stat();
    let part = 0;
    let inPart = 0;
    for (let at = 0; at < size && st.size === size;) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - at), at);
      if (bytesRead === 0) break;
      // Compare the bytes read with the parts they should be.
      let k = 0;
      while (k < bytesRead) {
        const want = parts[part].subarray(inPart, inPart + bytesRead - k);
        if (Buffer.compare(buf.subarray(k, k + want.length), want) !== 0) break;
        k += want.length;
        inPart += want.length;
        if (inPart === parts[part].length) {
          part++;
          inPart = 0;
        }
      }
      equal = at + k;
      if (k < bytesRead) break;
      at += bytesRead;
    }
    if (st.size === size && equal === size) return;
    throw new TargetMismatchError(
      `the new model files in ${dir} read back as other bytes than were written (${path.basename(file)}: ${st.size} bytes, ${equal} of the ${size} meant read back equal), not the target version: the disk did not keep what was written; nothing was switched and the model is unchanged: check the storage, then retry`,
      { file: path.basename(file), expected: size, found: st.size },
    );
  } finally {
    await fh.close();
  }
}

/**
 * One new shard (step 2 of the module doc): `parts` written to `tmp`, fsynced, read back through
 * `buf` and compared (when given), renamed to `file` (`renamed` runs right after); returns the
 * file's identity.
 */
async function writeShardFile(ops: FileOps, dir: string, tmp: string, file: string, parts: readonly Uint8Array[], buf: Uint8Array | undefined, renamed: () => void): Promise<string> {
  await ops.writeNewFile(tmp, parts, { sync: true });
  if (buf) await verifyWritten(dir, tmp, parts, buf);
  await ops.rename(tmp, file);
  renamed();
  return fileIdent(await stat(file, { bigint: true })); // after the rename, which sets ctime
}

/**
 * Write new shards (step 2 of the module doc: temp file, fsync, rename), {@link SHARD_WRITERS}
 * at a time, and set each entry's file identity. Every temp file name is in `temps` while it may
 * exist and every renamed file in `created`, for the caller's cleanup; on an error the writes
 * in flight finish first, so nothing is created after this returns or throws.
 */
async function writeShards(ops: FileOps, writes: readonly { entry: Shard; file: string; parts: readonly Uint8Array[] }[], id: string, temps: string[], created: string[], written: string[], dir: string, verify: boolean): Promise<void> {
  const tmps = writes.map((w) => `${w.file}.tmp-${id}`);
  temps.push(...tmps);
  const bufs: Uint8Array[] = [];
  await forEachLimited(writes, SHARD_WRITERS, async (w, k, worker) => {
    const buf = verify ? (bufs[worker] ??= new Uint8Array(VERIFY_CHUNK)) : undefined;
    w.entry.ident = await writeShardFile(ops, dir, tmps[k], w.file, w.parts, buf, () => created.push(w.file));
  });
  for (const t of tmps) temps.splice(temps.indexOf(t), 1);
  for (const w of writes) written.push(w.entry.path);
}

/** The write protocol of the module doc. */
async function writeModelAtomically(plan: WritePlan): Promise<WriteResult> {
  const { dir } = plan;
  const ops = plan.fileOps ?? nodeFileOps;
  const shardBytes = plan.shardBytes ?? DEFAULT_SHARD_BYTES;
  if (!Number.isSafeInteger(shardBytes) || shardBytes <= 0) {
    throw new UsageError(`shardBytes must be a positive integer number of bytes, got ${String(shardBytes)}`, { shardBytes });
  }
  await ops.mkdir(dir);
  const hasher = await getHasher();
  const modelFile = path.join(dir, MODEL_JSON);
  const startBytes = await readIfExists(modelFile);
  if (plan.expectedModelJson !== undefined && !sameBytes(startBytes, plan.expectedModelJson)) {
    throw concurrentChange(dir);
  }
  let oldPaths: string[] = [];
  if (startBytes) {
    try {
      // Never a file the applier owns (a manifest naming one is refused when the folder is
      // opened; this keeps a write from deleting one even so).
      oldPaths = manifestPaths(parseModelJson(new TextDecoder().decode(startBytes))).filter((p) => !controlFileProblem(dir, p));
    } catch {
      oldPaths = []; // an unreadable old model: replace it, delete nothing we cannot attribute
    }
  }
  const oldResolved = new Set(oldPaths.map((p) => path.resolve(dir, p)));
  const prevFile = path.join(dir, PREVIOUS_MODEL_JSON);
  if (plan.keepPrevious && (await readIfExists(prevFile)) !== null) {
    throw new ModelFormatError(
      `${prevFile} exists: expected no previous version kept. Either an earlier update of ${dir} is still waiting to be confirmed or rolled back (recoverModelDir, or running \`ndiff apply\` again, finishes it), or the file is not the applier's (no update journal names it: someone's copy of model.json?): move it out of the folder, then retry`,
      { dir },
    );
  }

  // Whether a new shard's file already holds its bytes (content-addressed: then it is not
  // written; its identity is set); a live shard whose bytes are not its name's is refused.
  const alreadyThere = async (entry: Shard, file: string, parts: readonly Uint8Array[]): Promise<boolean> => {
    const existing = await readIfExists(file);
    if (existing && sameAsParts(existing, parts)) {
      entry.ident = fileIdent(await stat(file, { bigint: true }));
      return true;
    }
    if (existing && oldResolved.has(path.resolve(file))) throw corruptShard(dir, file, entry.path);
    return false;
  };
  const id = newId();
  let switched = false;
  const created: string[] = [];
  const temps: string[] = [];
  const manifest: TfjsWeightGroup[] = [];
  const newShards: string[] = [];
  const writtenShards: string[] = [];
  const sources: GroupSource[] = [];
  try {
    const writes: { entry: Shard; file: string; parts: readonly Uint8Array[] }[] = [];
    const stagedWrites: { entry: Shard; file: string; parts: () => readonly Uint8Array[]; staged: StagedShard }[] = [];
    for (const [g, group] of plan.groups.entries()) {
      const planned: PlannedShard[] = group.shards ?? splitIntoShards(group.data ?? new Uint8Array(0), shardBytes).map((bytes) => ({ parts: [bytes] }));
      const paths: string[] = [];
      const source: GroupSource = { shards: [], total: 0 };
      sources.push(source);
      for (const [i, p] of planned.entries()) {
        if ('keep' in p) {
          paths.push(p.keep.path);
          newShards.push(p.keep.path);
          source.shards.push({ ...p.keep, start: source.total });
          source.total += p.keep.size;
          continue;
        }
        if ('staged' in p) {
          // Written ahead of the commit (or being written): awaited below with the other writes.
          const file = path.join(dir, p.staged.name);
          paths.push(p.staged.name);
          newShards.push(p.staged.name);
          const entry: Shard = { path: p.staged.name, start: source.total, size: p.size, ident: '' };
          source.shards.push(entry);
          source.total += p.size;
          stagedWrites.push({ entry, file, parts: p.parts, staged: p.staged });
          continue;
        }
        const { parts } = p;
        const size = parts.reduce((n, part) => n + part.length, 0);
        const name = shardName(hasher, g, i, planned.length, parts);
        const file = path.join(dir, name);
        paths.push(name);
        newShards.push(name);
        // A single part is a buffer of its own (a new model's data); a patched shard's parts are
        // views of live values, so its bytes are read from the file when needed.
        const entry: Shard = { path: name, start: source.total, size, ident: '', ...(group.shards ? {} : { bytes: parts[0] }) };
        source.shards.push(entry);
        source.total += size;
        if (!(await alreadyThere(entry, file, parts))) writes.push({ entry, file, parts });
      }
      manifest.push(groupObject(group.base, paths, group.weights));
    }
    const text = plan.render(manifest);
    const bytes = new TextEncoder().encode(text);
    const keepNames = new Set(newShards.map((p) => path.resolve(dir, p)));
    const tmpJson = `${modelFile}.tmp-${id}`;
    temps.push(tmpJson);
    // The caller's hook (the update journal), the new shards and the new model.json's temp file
    // at the same time: until the link and the switch below, nothing names the new files, and
    // recovery deletes such files whether or not a journal lists them. Every one has settled
    // before anything else happens (or the cleanup below runs).
    await settleAll([
      (async () => {
        await plan.onBeforeWrite?.({
          dir,
          id,
          previousModelJson: startBytes,
          nextModelJson: bytes,
          createdShards: [...stagedWrites, ...writes].map((w) => path.basename(w.file)),
          retiredShards: oldPaths.filter((p) => !keepNames.has(path.resolve(dir, p))),
        });
      })(),
      writeShards(ops, writes, id, temps, created, writtenShards, dir, plan.verifyWrites === true),
      // A staged shard found already in the folder (not written by its job) is checked and
      // written here like any other. One this write takes over is in `created`: this write's
      // cleanup (or the journal's recovery) deletes it if the update does not happen, never
      // dropStaged.
      settleAll(stagedWrites.map(async (w) => {
        const done = await w.staged.job;
        if (done.created) {
          created.push(w.file);
          w.staged.consumed = true;
          writtenShards.push(w.entry.path);
          w.entry.ident = done.ident as string;
          return;
        }
        const parts = w.parts();
        if (!(await alreadyThere(w.entry, w.file, parts))) await writeShards(ops, [{ entry: w.entry, file: w.file, parts }], id, temps, created, writtenShards, dir, plan.verifyWrites === true);
      })),
      (async () => {
        await ops.writeNewFile(tmpJson, [bytes], { sync: true });
        if (plan.verifyWrites) await verifyWritten(dir, tmpJson, [bytes], new Uint8Array(bytes.length));
      })(),
    ]);
    if (plan.keepPrevious && startBytes) {
      // The previous version's model.json under a second name (its shards stay): a hard link,
      // so nothing is copied; a durable copy where the file system has no hard links.
      try {
        await ops.link(modelFile, prevFile);
      } catch (err) {
        if (!['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'EXDEV', 'ENOSYS', 'EMLINK'].includes(errCode(err) ?? '')) throw err;
        const tmpPrev = `${prevFile}.tmp-${id}`;
        temps.push(tmpPrev);
        await ops.writeNewFile(tmpPrev, [startBytes], { sync: true });
        await ops.rename(tmpPrev, prevFile);
        temps.pop();
      }
      created.push(prevFile);
    }
    // One folder fsync makes the new shards' and the kept version's names durable.
    await ops.syncDir(dir);
    await plan.onBeforeSwitch?.({ dir, tempModelJson: tmpJson, newShards: [...newShards], writtenShards: [...writtenShards] });

    if (!sameBytes(await readIfExists(modelFile), startBytes)) throw concurrentChange(dir);
    await ops.rename(tmpJson, modelFile); // the switch
    switched = true;
    temps.splice(temps.indexOf(tmpJson), 1);
    await ops.syncDir(dir);

    // After the switch: the old shards are garbage (unless the previous version is kept).
    // Best effort and not fsynced: the switch is durable, and a deletion lost in a crash
    // leaves only files listStaleFiles (or the next apply's recovery) finds.
    const keep = new Set(newShards.map((p) => path.resolve(dir, p)));
    for (const old of plan.keepPrevious ? [] : oldResolved) {
      if (keep.has(old)) continue;
      try { await ops.unlink(old); } catch { /* left for listStaleFiles */ }
    }
    return { text, bytes, manifest, groups: sources };
  } catch (err) {
    // After the switch the new files are the model: removing them would break it.
    for (const f of switched ? [] : [...temps, ...created]) {
      try { await ops.unlink(f); } catch { /* already gone */ }
    }
    try { await ops.syncDir(dir); } catch { /* nothing more to undo */ }
    throw err;
  }
}

/** Wait for every promise to settle, then throw the first rejection (if any). */
async function settleAll(jobs: readonly Promise<unknown>[]): Promise<void> {
  const failed = (await Promise.allSettled(jobs)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/** Whether an entry's bytes lie partly in shard `s`. */
function overlaps(l: EntryLayout, s: Shard): boolean {
  return l.offset < s.start + s.size && l.offset + l.byteLength > s.start;
}

/** A live shard whose bytes are not the ones its content-addressed name says. */
function corruptShard(dir: string, file: string, name: string): ModelFormatError {
  return new ModelFormatError(
    `${file} is part of the current model but its content does not match the hash in its name: expected ${name} to hold those bytes, found other bytes. The folder is corrupt; copy the model folder again`,
    { dir, path: name },
  );
}

function concurrentChange(dir: string): ModelFormatError {
  return new ModelFormatError(
    `model.json in ${dir} changed while this write was in progress: expected the version this operation started from, found different bytes. Nothing was written; reopen the model and retry (only one writer per model folder at a time)`,
    { dir },
  );
}

// ---------------------------------------------------------------------------------------
// the WeightStore

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
 * A tensor digest recorded by an earlier verified apply, and what ties it to the bytes it was
 * computed from. {@link TfjsDirWeightStore.digest} vouches for it only while the tensor's
 * manifest entry and every byte range it is read from (file path, file identity, offsets) are
 * exactly as recorded.
 */
export interface RecordedDigest {
  /** The tensor's manifest entry, as JSON. */
  entry: string;
  /** `<shard path>|<file identity>|<from>|<to>` (offsets within the shard) per shard it spans. */
  spans: string[];
  /** The xxh64 tensor digest (16 hex chars, src/core/fingerprint.ts). */
  digest: string;
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

  /** @internal use {@link openTfjsModelDir}. */
  constructor(loaded: LoadedModel, options: OpenOptions = {}) {
    this.dir = loaded.dir;
    this.state = loaded;
    this.options = options;
    this.index(loaded);
  }

  private index(loaded: LoadedModel): void {
    const records = new Map<string, Rec>();
    loaded.layouts.forEach((layout) => {
      for (const l of layout.entries) {
        const prev = this.records.get(l.entry.name);
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

  /** The float tensors, in manifest order. */
  list(): TfjsTensorEntry[] {
    const out: TfjsTensorEntry[] = [];
    for (const [name, r] of this.records) {
      if (!r.layout.isFloat) continue;
      out.push({ name, shape: r.entry.shape, storage: (r.entry.quantization?.dtype ?? 'float32'), group: r.layout.group });
    }
    return out;
  }

  /**
   * How the tensor is stored: its manifest quantization (uint8/uint16 with scale and min,
   * float16) or float32. A patch onto this grid keeps the tensor in its dtype (see commit).
   */
  grid(name: string): StorageGrid {
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
    const r = this.records.get(name);
    if (!r) {
      throw new ModelMismatchError(
        `tensor ${name} is not in ${path.join(this.dir, MODEL_JSON)}: expected one of its ${this.list().length} float tensors (e.g. ${this.list().slice(0, 3).map((e) => e.name).join(', ')}), found no such name. The patch was made for another model: check the model id, or ask the server for a full download`,
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

  /** Decoded copy of a pass-through entry (see {@link decodePassthroughEntry}). */
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

  /** Files the model uses now, relative to the folder: `model.json` first, then the shards. */
  files(): string[] {
    return [MODEL_JSON, ...manifestPaths(this.state.modelJson)];
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
    if (this.options.modelJsonFile !== undefined && this.options.modelJsonFile !== MODEL_JSON) {
      throw new UsageError(`this store was opened from ${this.options.modelJsonFile}, not ${MODEL_JSON}: it is for reading only; open the folder without modelJsonFile to patch it`);
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
      });
      const modelJson = parseModelJson(result.text, path.join(this.dir, MODEL_JSON));
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
        const st = streaming ?? this.openStreaming(key, `group${g + 1}-shard${i + 1}of${src.shards.length}.bin`, progress);
        st.io = st.io.then(async (file) => {
          for (const part of fresh) await file.append(part);
          return file;
        });
        st.io.catch(() => {});
        continue;
      }
      const shardFile = shardName(await getHasher(), g, i, src.shards.length, progress.parts);
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
    for (const name of [MODEL_JSON, PREVIOUS_MODEL_JSON]) {
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
  for (const e of store.list()) out.set(e.name, { shape: [...e.shape], data: store.values(e.name) });
  return out;
}

/** A tensor for {@link writeModelDir}: Float32Array for float32, Int32Array for int32, Uint8Array for bool. */
export interface TensorInput {
  shape: readonly number[];
  data: Float32Array | Int32Array | Uint8Array;
}

/** A model.json to write: like {@link TfjsModelJson}, with an optional manifest. */
export type ModelJsonTemplate = Omit<TfjsModelJson, 'weightsManifest'> & { weightsManifest?: TfjsWeightGroup[] };

/**
 * Write a model folder from a model.json and named tensors, with the atomic protocol of the
 * module doc (replacing any model already in `dir`; its shards are deleted after the switch).
 *
 * If `modelJson.weightsManifest` lists entries, it fixes the groups, order and names: every
 * entry needs a tensor of the same shape (float32 entries a Float32Array, and they are written
 * as plain float32 even if the template was quantized; int32 an Int32Array; bool a
 * Uint8Array; string/complex64 entries are refused). Without a manifest, one group is made
 * from `tensors` in iteration order, dtype taken from the array type. Every other key of
 * `modelJson` is written as given, in its order. Returns the model.json written.
 *
 * @throws UsageError a tensor missing, extra, of the wrong shape or array type.
 */
export async function writeModelDir(
  dir: string,
  modelJson: ModelJsonTemplate,
  tensors: ReadonlyMap<string, TensorInput> | Readonly<Record<string, TensorInput>>,
  options: WriteOptions = {},
): Promise<TfjsModelJson> {
  const map = new Map<string, TensorInput>(tensors instanceof Map ? tensors : Object.entries(tensors as Record<string, TensorInput>));
  const templateGroups = modelJson.weightsManifest ?? [];
  const hasEntries = templateGroups.some((g) => g.weights.length > 0);
  const used = new Set<string>();
  const dtypeOf = (data: TensorInput['data']): TfjsWeightEntry['dtype'] =>
    data instanceof Float32Array ? 'float32' : data instanceof Int32Array ? 'int32' : 'bool';

  const take = (name: string, shape: readonly number[], dtype: TfjsWeightEntry['dtype']): Uint8Array => {
    const t = map.get(name);
    if (!t) throw new UsageError(`writeModelDir: model.json lists ${name} but no tensor of that name was given: pass every weight the manifest lists`, { name });
    used.add(name);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new UsageError(`writeModelDir: tensor ${name} has shape [${t.shape.join(', ')}] but model.json says [${shape.join(', ')}]`, { name, expected: shape, found: t.shape });
    }
    if (t.data.length !== shapeSize(shape)) {
      throw new UsageError(`writeModelDir: tensor ${name}: shape [${shape.join(', ')}] holds ${shapeSize(shape)} values, the array has ${t.data.length}`, { name });
    }
    const got = dtypeOf(t.data);
    if (dtype === 'string' || dtype === 'complex64') {
      throw new UsageError(`writeModelDir: ${name} is a ${dtype} entry, which this writer cannot encode; patch such models with openTfjsModelDir(...).commit, which passes them through`, { name, dtype });
    }
    if (got !== dtype) {
      throw new UsageError(`writeModelDir: ${name} is ${dtype} in model.json but was given as ${t.data.constructor.name}; expected ${dtype === 'float32' ? 'Float32Array' : dtype === 'int32' ? 'Int32Array' : 'Uint8Array'}`, { name, expected: dtype, found: got });
    }
    if (t.data instanceof Float32Array) return encodeFloat32(t.data);
    if (t.data instanceof Int32Array) return encodeFloat32(new Float32Array(t.data.buffer, t.data.byteOffset, t.data.length));
    return t.data.slice();
  };

  let groups: PlannedGroup[];
  if (hasEntries) {
    groups = templateGroups.map((group) => {
      const weights: TfjsWeightEntry[] = [];
      const parts: Uint8Array[] = [];
      for (const e of group.weights) {
        parts.push(take(e.name, e.shape, e.dtype));
        weights.push(e.dtype === 'float32' ? asFloat32Entry(e) : withoutQuantization(e));
      }
      return { base: group as Record<string, unknown>, weights, data: concatBytes(parts) };
    });
    const extra = [...map.keys()].filter((n) => !used.has(n));
    if (extra.length > 0) {
      throw new UsageError(`writeModelDir: tensors ${extra.slice(0, 5).join(', ')} are not in model.json's weightsManifest: remove them or add them to the manifest`, { extra });
    }
  } else {
    const weights: TfjsWeightEntry[] = [];
    const parts: Uint8Array[] = [];
    for (const [name, t] of map) {
      const dtype = dtypeOf(t.data);
      parts.push(take(name, t.shape, dtype));
      weights.push({ name, shape: [...t.shape], dtype });
    }
    groups = [{ base: {}, weights, data: concatBytes(parts) }];
  }
  // Validate the result the same way a reader will.
  validateModelJson({ ...modelJson, weightsManifest: groups.map((g) => ({ paths: [], weights: g.weights })) }, 'writeModelDir');
  const result = await writeModelAtomically({
    ...options,
    dir,
    groups,
    render: (manifest) => JSON.stringify(withManifest(modelJson, manifest)),
  });
  return parseModelJson(result.text);
}

function withoutQuantization(e: TfjsWeightEntry): TfjsWeightEntry {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(e)) if (k !== 'quantization') out[k] = v;
  return out as TfjsWeightEntry;
}

/** `modelJson` with `weightsManifest` replaced in place (or appended), key order kept. */
function withManifest(modelJson: Record<string, unknown>, manifest: TfjsWeightGroup[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(modelJson)) out[k] = k === 'weightsManifest' ? manifest : v;
  if (!('weightsManifest' in out)) out.weightsManifest = manifest;
  return out;
}

// ---------------------------------------------------------------------------------------
// storage grids of quantized entries

/** The storage grid of a float manifest entry (its quantization, or float32). */
export function gridOfEntry(entry: TfjsWeightEntry): StorageGrid {
  const q = entry.quantization;
  if (!q) return { dtype: 'float32' };
  if (q.dtype === 'float16') return { dtype: 'float16' };
  return { dtype: q.dtype, scale: q.scale as number, min: q.min as number };
}

/**
 * The stored bytes of `values` in the entry's quantized dtype, if every value is exactly on the
 * entry's grid (decoding the bytes gives the same float32 bits back); else null.
 */
export function quantizeOnGrid(entry: TfjsWeightEntry, values: Float32Array): Uint8Array | null {
  const grid = gridOfEntry(entry);
  if (grid.dtype === 'float32') return null;
  const n = values.length;
  const bits = new Uint32Array(values.buffer, values.byteOffset, n);
  const check = new Float32Array(1);
  const checkBits = new Uint32Array(check.buffer);
  const onGridAt = (i: number): boolean => {
    check[0] = snapValue(values[i], grid);
    return checkBits[0] === bits[i];
  };
  if (grid.dtype === 'float16') {
    const out = new Uint8Array(2 * n);
    for (let i = 0; i < n; i++) {
      if (!onGridAt(i)) return null;
      const h = toHalfBits(values[i]);
      out[2 * i] = h & 0xff;
      out[2 * i + 1] = h >>> 8;
    }
    return out;
  }
  const out = new Uint8Array(grid.dtype === 'uint8' ? n : 2 * n);
  for (let i = 0; i < n; i++) {
    if (!onGridAt(i)) return null;
    const q = affineStep(values[i], grid as Extract<StorageGrid, { scale: number }>);
    if (grid.dtype === 'uint8') out[i] = q;
    else {
      out[2 * i] = q & 0xff;
      out[2 * i + 1] = q >>> 8;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// tf.io.IOHandler

/** Options of {@link fileSystemIO}. */
export type FileSystemIOOptions = WriteOptions;

/**
 * A `tf.io.IOHandler` for a model folder, for Node without tfjs-node (whose `file://`
 * handler is the only one tfjs has):
 *
 * - `load()` reads model.json and its shards (checked as in {@link openTfjsModelDir}) and
 *   hands tfjs the raw, possibly quantized weights, which tfjs decodes itself. Works with
 *   `tf.loadLayersModel` and `tf.loadGraphModel`.
 * - `save(artifacts)` writes the weights exactly as tfjs encoded them (float32 for
 *   `model.save`) into ~4 MiB content-named shards and model.json, with the atomic protocol of
 *   the module doc, replacing any model already in `dir`.
 */
export function fileSystemIO(dir: string, options: FileSystemIOOptions = {}): IOHandler {
  return {
    async load(): Promise<IOModelArtifacts> {
      const m = await loadModel(dir);
      const j = m.modelJson;
      const artifacts: IOModelArtifacts = {
        modelTopology: j.modelTopology as {},
        format: j.format,
        generatedBy: j.generatedBy,
        convertedBy: j.convertedBy,
      };
      if (j.trainingConfig != null) artifacts.trainingConfig = j.trainingConfig as IOTrainingConfig;
      if (j.weightsManifest.length > 0) {
        artifacts.weightSpecs = j.weightsManifest.flatMap((g) => g.weights) as IOWeightsManifestEntry[];
        const all = concatBytes(m.groups.flatMap((g) => g.shards.map((sh) => sh.bytes as Uint8Array)));
        artifacts.weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength) as ArrayBuffer;
      }
      if (j.signature != null) artifacts.signature = j.signature as {};
      if (j.userDefinedMetadata != null) artifacts.userDefinedMetadata = j.userDefinedMetadata as { [key: string]: {} };
      if (j.modelInitializer != null) artifacts.modelInitializer = j.modelInitializer as {};
      if (j.initializerSignature != null) artifacts.initializerSignature = j.initializerSignature as {};
      return artifacts;
    },

    async save(artifacts: IOModelArtifacts): Promise<IOSaveResult> {
      if (artifacts.modelTopology instanceof ArrayBuffer) {
        throw new UsageError('fileSystemIO.save: expected a JSON model topology, found a binary (ArrayBuffer) GraphDef; save a layers model or convert the graph with tensorflowjs_converter');
      }
      const specs = (artifacts.weightSpecs ?? []) as TfjsWeightEntry[];
      const wd = artifacts.weightData;
      const data = wd === undefined ? new Uint8Array(0)
        : Array.isArray(wd) ? concatBytes(wd.map((b) => new Uint8Array(b)))
          : new Uint8Array(wd);
      const json: Record<string, unknown> = {
        modelTopology: artifacts.modelTopology,
        format: artifacts.format,
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy,
        weightsManifest: [{ paths: [], weights: specs }],
      };
      if (artifacts.signature != null) json.signature = artifacts.signature;
      if (artifacts.userDefinedMetadata != null) json.userDefinedMetadata = artifacts.userDefinedMetadata;
      if (artifacts.modelInitializer != null) json.modelInitializer = artifacts.modelInitializer;
      if (artifacts.initializerSignature != null) json.initializerSignature = artifacts.initializerSignature;
      if (artifacts.trainingConfig != null) json.trainingConfig = artifacts.trainingConfig;
      try {
        validateModelJson(json, 'fileSystemIO.save artifacts');
        const layout = computeGroupLayout(specs, data);
        if (layout.totalBytes !== data.length) {
          throw new ModelFormatError(`expected ${layout.totalBytes} bytes of weight data for ${specs.length} weight specs, found ${data.length}`);
        }
      } catch (err) {
        if (err instanceof NeuralDiffError && !(err instanceof UsageError)) {
          throw new UsageError(`fileSystemIO.save: the artifacts tfjs handed over are inconsistent (${err.message}); nothing was written`, { cause: err.message });
        }
        throw err;
      }
      const groups: PlannedGroup[] = specs.length > 0 ? [{ base: {}, weights: specs, data }] : [];
      await writeModelAtomically({ ...options, dir, groups, render: (manifest) => JSON.stringify(withManifest(json, manifest)) });
      const enc = new TextEncoder();
      return {
        modelArtifactsInfo: {
          dateSaved: new Date(),
          modelTopologyType: 'JSON',
          modelTopologyBytes: artifacts.modelTopology == null ? 0 : enc.encode(JSON.stringify(artifacts.modelTopology)).length,
          weightSpecsBytes: enc.encode(JSON.stringify(specs)).length,
          weightDataBytes: data.length,
        },
      };
    },
  };
}

// ---------------------------------------------------------------------------------------
// files

/**
 * The files a model folder uses, relative to it: `model.json` first, then every shard path
 * its manifest lists (in order, without duplicates). Reads and validates model.json only.
 */
export async function referencedFiles(dir: string): Promise<string[]> {
  const { modelJson } = await readModelJsonFile(dir);
  return [MODEL_JSON, ...manifestPaths(modelJson)];
}

/**
 * Files in the top level of a model folder that look like leftovers of this module or of an
 * older model: temporary files (`*.tmp-<id>`) and `.bin` files model.json does not reference.
 * Lists, never deletes: the caller decides (another model may share the folder).
 */
export async function listStaleFiles(dir: string): Promise<string[]> {
  const referenced = new Set((await referencedFiles(dir)).map((p) => path.resolve(dir, p)));
  const out: string[] = [];
  for (const name of (await readdir(dir)).sort()) {
    if (referenced.has(path.resolve(dir, name))) continue;
    if (/\.tmp-[0-9]+-[0-9a-f]+$/.test(name) || name.endsWith('.bin')) out.push(name);
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// quantizing a folder the converter's way

/** What {@link quantizeModelDir} does to every float32 tensor. */
export type ConverterQuantization = 'uint8' | 'uint16' | 'float16';

/** numpy's `round`: the nearest integer, ties to even. */
function roundEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * The affine quantization `tensorflowjs_converter --quantize_uint8/--quantize_uint16` gives a
 * tensor (tensorflowjs 4.x `quantize_weights`, written here from its description): per tensor,
 * scale = (max - min) / qmax in float64; when the range covers 0 it is nudged so that 0 is a grid
 * value (min = -round(-min / scale) x scale); values are clipped to the range and stored as
 * round((v - min) / scale), ties to even. A constant tensor is all zeros with scale 1.
 */
export function converterQuantize(values: Float32Array, dtype: 'uint8' | 'uint16'): { q: Uint8Array | Uint16Array; scale: number; min: number } {
  const qmax = dtype === 'uint8' ? 255 : 65535;
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const q = dtype === 'uint8' ? new Uint8Array(values.length) : new Uint16Array(values.length);
  if (!(hi > lo)) return { q, scale: 1, min: values.length ? lo : 0 };
  const scale = (hi - lo) / qmax;
  let min = lo;
  let max = hi;
  if (lo <= 0 && 0 <= hi) {
    min = -roundEven(-lo / scale) * scale;
    max = qmax * scale + min;
  }
  for (let i = 0; i < values.length; i++) {
    const c = values[i] < min ? min : values[i] > max ? max : values[i];
    q[i] = Math.min(qmax, Math.max(0, roundEven((c - min) / scale)));
  }
  return { q, scale, min };
}

/**
 * Write `dir`'s model to `outDir` with every float32 weight quantized as the TF.js converter
 * does (`uint8`/`uint16` affine per tensor, see {@link converterQuantize}; `float16` to the
 * nearest half), the rest of model.json unchanged: the model as a quantized app would ship it.
 * Returns the bytes of the weights before and after.
 */
export async function quantizeModelDir(dir: string, outDir: string, dtype: ConverterQuantization): Promise<{ bytesBefore: number; bytesAfter: number }> {
  const m = await loadModel(dir);
  const store = new TfjsDirWeightStore(m);
  let before = 0;
  let after = 0;
  const groups: PlannedGroup[] = m.modelJson.weightsManifest.map((group, g) => {
    const parts: Uint8Array[] = [];
    const weights = m.layouts[g].entries.map((l) => {
      const e = l.entry;
      before += l.byteLength;
      if (!l.isFloat) {
        parts.push(store.storedBytes(e.name));
        after += l.byteLength;
        return e;
      }
      const v = store.values(e.name);
      let bytes: Uint8Array;
      let quantization: TfjsWeightEntry['quantization'];
      if (dtype === 'float16') {
        bytes = new Uint8Array(2 * v.length);
        for (let i = 0; i < v.length; i++) {
          const h = toHalfBits(v[i]);
          bytes[2 * i] = h & 0xff;
          bytes[2 * i + 1] = h >>> 8;
        }
        quantization = { dtype: 'float16', original_dtype: 'float32' };
      } else {
        const { q, scale, min } = converterQuantize(v, dtype);
        bytes = new Uint8Array(q.buffer, q.byteOffset, q.byteLength);
        if (!LITTLE_ENDIAN_HOST && dtype === 'uint16') bytes = Uint8Array.from({ length: 2 * q.length }, (_, i) => (q[i >> 1] >> (8 * (i & 1))) & 0xff);
        quantization = { dtype, scale, min, original_dtype: 'float32' };
      }
      parts.push(bytes);
      after += bytes.length;
      const { quantization: _old, ...rest } = e;
      return { ...rest, quantization } as TfjsWeightEntry;
    });
    return { base: group as Record<string, unknown>, weights, data: concatBytes(parts) };
  });
  await writeModelAtomically({ dir: outDir, groups, render: (manifest) => replaceTopLevelValue(m.jsonText, 'weightsManifest', JSON.stringify(manifest)) });
  return { bytesBefore: before, bytesAfter: after };
}
