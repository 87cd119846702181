/**
 * What the folder store (`TfjsDirWeightStore`, dir-store.ts) keeps per manifest entry,
 * what its commit (dir-commit.ts) and its writes staged ahead of the commit (dir-staging.ts) see
 * of it, and the bytes an entry is written with.
 */
import { sameBytes } from './write.ts';
import { quantizeOnGrid } from './grid.ts';
import type { OpenOptions } from './options.ts';
import type { LoadedModel } from './read.ts';
import { asFloat32Entry, dequantizeEntry, encodeFloat32, type EntryLayout, type TfjsWeightEntry } from './manifest.ts';
import type { ModelFiles } from '../durable/control-files.ts';
import { LITTLE_ENDIAN_HOST } from '../../core/endian.ts';

/** What the folder store knows of one manifest entry: where it lies, and its values once read. */
export interface EntryRecord {
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
  /** `values` are the ones the store's `settled` was told of: not handed out since. */
  untouched?: boolean;
  /** `values` were read from the files the store holds now (not carried over a commit): the store's `forget` can drop them. */
  fromStored?: boolean;
}

/** A staged shard written, verified and renamed: its file and the file's identity. */
export interface FinishedShard {
  file: string;
  ident: string;
}

/**
 * What the commit and the staged writes see of the folder store: its folder and options, the
 * model as loaded now, and its entries. The store hands this over and keeps the rest private.
 */
export interface StoreAccess {
  /** The model folder. */
  readonly dir: string;
  readonly options: OpenOptions;
  /** The model file's name and the applier's files beside it. */
  readonly modelFiles: ModelFiles;
  /** The model as loaded now (a commit replaces it). */
  model(): LoadedModel;
  /** The record of a manifest entry, if the model has it. */
  record(name: string): EntryRecord | undefined;
  /** Every entry's record, in manifest order. */
  records(): Iterable<EntryRecord>;
  /** The record of a float tensor; throws the store's ModelMismatchError for any other name. */
  floatRecord(name: string): EntryRecord;
  /** The stored bytes of an entry (reads its shards if needed). */
  bytesOf(r: EntryRecord): Uint8Array;
  /** Read a released tensor's values again from the new shards that hold them. */
  readReleased(r: EntryRecord): void;
  /** True while a commit runs. */
  committing(): boolean;
}

/**
 * The manifest entry and bytes an entry is committed with; `bytes` undefined means the
 * stored bytes, unchanged (not read if they were not).
 */
export function encodeForCommit(store: StoreAccess, r: EntryRecord, isChanged: boolean, allFloat32: boolean): { out: TfjsWeightEntry; bytes?: Uint8Array; released?: boolean } {
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
    return { out: r.entry, bytes: !isChanged && sameBytes(bytes, store.bytesOf(r)) ? undefined : bytes };
  }
  if (allFloat32) return { out: asFloat32Entry(r.entry), bytes: encodeFloat32(r.values ?? dequantizeEntry(r.entry, store.bytesOf(r))) };
  if (!r.values) return { out: r.entry };
  if (!isChanged) {
    // Not listed as changed, but handed out: keep the stored bytes if the values are
    // bit-identical to what they decode to.
    const fresh = dequantizeEntry(r.entry, store.bytesOf(r));
    if (sameBytes(encodeFloat32(fresh), encodeFloat32(r.values))) return { out: r.entry };
  }
  // Changed values that are all on the tensor's grid (a format v2 patch rounded them there)
  // are stored in the same dtype with the same parameters: same size, same manifest entry.
  const requantized = quantizeOnGrid(r.entry, r.values);
  if (requantized) return { out: r.entry, bytes: requantized };
  // Off the grid (a payload without a grid, built with --store float32 or by an older tool).
  return { out: asFloat32Entry(r.entry), bytes: encodeFloat32(r.values) };
}
