/**
 * Options and hooks of the TF.js folder store and writer, and the entries it lists.
 */
import type { TensorEntry } from '../../core/weight-store.ts';
import type { TfjsWeightEntry } from './manifest.ts';
import type { FileOps } from '../durable/durable.ts';

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
   * then confirms or rolls back (see src/io/tfjs/folder-update.ts). Refused while a previous
   * version is already kept.
   */
  keepPrevious?: boolean;
  /**
   * Runs once the new version is planned (shard names, the new model.json), while the new shards
   * and the new model.json's temporary file are written (no name a loader reads is created
   * before it resolves: the kept previous version and the switch come after); throwing aborts the
   * write with nothing changed. src/io/tfjs/folder-update.ts writes its update journal here.
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
   * src/io/tfjs/folder-update.ts); without them `digest` answers nothing.
   */
  recordedDigests?: ReadonlyMap<string, RecordedDigest>;
  /**
   * Write each new shard as soon as the tensors a patch changes in it are settled (see
   * {@link TfjsDirWeightStore.settled}), while the applier patches the rest, instead of all of
   * them in {@link TfjsDirWeightStore.commit}. Such files are named by nothing until the commit
   * switches to them; whoever opens the store with this option calls
   * {@link TfjsDirWeightStore.dropStaged} when the apply ends, however it ends
   * (src/io/tfjs/folder-update.ts does). Not with `shardBytes` or `quantizedUnchanged: 'float32'`
   * (every shard is cut again): then nothing is written before the commit.
   */
  stageWrites?: boolean;
  /**
   * With `stageWrites`: once every new shard holding a tensor's bytes is written, fsynced, read
   * back and renamed, the tensor's array is let go and its memory reused for the next tensors
   * read; asked for again, its values are read from those new files (a new array, the same
   * values), so hold on to no array `values` returned: it may come to hold another tensor. The
   * applier is also held back while `SHARD_WRITERS` (4) complete shards are not written yet:
   * an apply then holds a few shards in memory, not every tensor it patches (plain float32
   * tensors; quantized ones are kept, as their bytes are encoded again at the commit).
   */
  releaseWritten?: boolean;
  /**
   * Absolute paths the weights manifest must not name as shards, besides the files the applier
   * owns in the folder (see src/io/durable/control-files.ts), which are always refused: e.g. a state file
   * kept in the folder under another name.
   */
  reservedFiles?: readonly string[];
}

/** A float tensor of a TF.js model folder. */
export interface TfjsTensorEntry extends TensorEntry {
  /** How it is stored now: `'float32'`, or the quantization dtype. */
  readonly storage: 'float32' | 'uint8' | 'uint16' | 'float16';
  /** Index of its manifest group (-1 for the frame, `tfjs:frame`, which is in none). */
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
