/**
 * safetensors files on disk (Node): {@link SAFETENSORS_FILE}, the format the crash-safe file
 * applier takes (`ndiff apply`, `apply()`, `ndiff update`: the journal, kept previous version,
 * recovery, recorded model id, replay state and health check of `.onnx` and `.tflite` files, in
 * `src/io/durable/weights-file.ts` and `weights-file-update.ts`); and
 * {@link openSafetensorsFile}, a {@link WeightStore} whose F32 tensors are views into the file's
 * bytes, patched in memory and written back atomically (no journal, no replay state). The format
 * itself is in the pure `store.ts`.
 *
 * Write-back protocol: the new bytes go to `<file>.tmp-<pid>-<random>`, which is fsynced and
 * closed; the original file is checked to be unchanged since it was read (size, mtime, inode),
 * then the temporary is renamed over it (the atomic switch) and the folder is fsynced. A crash
 * or error at any point leaves either the old file or the new one, never a mix.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, stat, unlink } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import * as path from 'node:path';
import { ModelFormatError, UsageError } from '../../core/errors.ts';
import type { StorageGrid } from '../../core/grid.ts';
import type { WeightStore } from '../../core/weight-store.ts';
import { SafetensorsWeightStore, serializeSafetensors, type SafetensorsTensorEntry, type SafetensorsTensorInput } from './store.ts';
import { errCode, syncDir } from '../durable/durable.ts';
import { openWeightsFile, WeightsFileStore, type WeightsFileFormat, type WeightsFileOpenOptions } from '../durable/weights-file.ts';
import { applyToWeightsFile, recoverWeightsFile, type WeightsFileApplyOptions, type WeightsFileApplyResult } from '../durable/weights-file-update.ts';
import type { PendingOptions } from '../durable/pending-update.ts';
import type { RecoveryReport } from '../durable/lock.ts';

/**
 * The largest `.safetensors` file read through {@link SAFETENSORS_FILE} (whole, into memory: the
 * apply, `diff`, `verify --model`, `fingerprint`): 4 GiB - 1 bytes, the largest array Node 20 makes.
 */
export const MAX_SAFETENSORS_FILE_BYTES = 2 ** 32 - 1;

/**
 * `bytes` (a whole file) where its data section starts 8-byte aligned, so every F32 tensor of a
 * well-formed file is a zero-copy view (as {@link openSafetensorsFile} reads it): the same array
 * when it is already, else a shifted copy. The header's length is checked by the store's parser.
 */
function alignData(bytes: Uint8Array): Uint8Array {
  if (bytes.length < 8) return bytes;
  const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getUint32(0, true);
  const shift = (8 - ((bytes.byteOffset + 8 + n) % 8)) % 8;
  if (shift === 0) return bytes;
  const out = new Uint8Array(new ArrayBuffer(bytes.length + shift), shift, bytes.length);
  out.set(bytes);
  return out;
}

/** safetensors as a {@link WeightsFileFormat}: one file, no external data, its header checked before a tensor is read. */
export const SAFETENSORS_FILE: WeightsFileFormat<SafetensorsWeightStore> = {
  what: 'a safetensors file (.safetensors)',
  extension: /\.safetensors$/i,
  journal: 'neural-diff-safetensors-update',
  maxBytes: MAX_SAFETENSORS_FILE_BYTES,
  tooBig: (file, size) => `${file} is ${size} bytes: a .safetensors file is read whole into memory, at most 4 GiB - 1 bytes: split the weights into several .safetensors files under that size (a sharded checkpoint), each updated as a model of its own`,
  externalLocations: () => [],
  contents: (bytes, _external, source) => new SafetensorsWeightStore(alignData(bytes), source),
};

/** A safetensors file on disk for the crash-safe apply (see `WeightsFileStore`). */
export type SafetensorsUpdateStore = WeightsFileStore<SafetensorsWeightStore>;

/**
 * Open a `.safetensors` file for the crash-safe apply: regular files only, checked before a byte
 * is read, the header before a tensor (see `openWeightsFile`). Call `close()` when done.
 */
export function openSafetensorsUpdateStore(file: string, options: WeightsFileOpenOptions = {}): Promise<SafetensorsUpdateStore> {
  return openWeightsFile(file, SAFETENSORS_FILE, options);
}

/** Bring a `.safetensors` file back to a confirmed version after an interrupted update (see `recoverWeightsFile`). */
export function recoverSafetensorsFile(file: string, options: PendingOptions = {}): Promise<RecoveryReport> {
  return recoverWeightsFile(file, SAFETENSORS_FILE, options);
}

/**
 * Verify a payload and apply it to the `.safetensors` file `file`, crash-safely (see
 * `applyToWeightsFile`): the sequence kept in `<file>.ndiff-state.json`, the model id recorded in
 * `<file>.ndiff-model.json` by the first confirmed apply, a health check that rolls back.
 */
export function applyToSafetensorsFile(file: string, payloadBytes: Uint8Array, options: WeightsFileApplyOptions = {}): Promise<WeightsFileApplyResult> {
  return applyToWeightsFile(file, payloadBytes, SAFETENSORS_FILE, options);
}


/**
 * Read a safetensors file into memory positioned so that its data section starts 8-byte
 * aligned: every F32 tensor of a well-formed file can then be a zero-copy view.
 */
async function readAligned(file: string): Promise<{ bytes: Uint8Array; stats: Stats }> {
  let fh;
  try {
    fh = await open(file, 'r');
  } catch (err) {
    const code = errCode(err);
    throw new ModelFormatError(
      code === 'ENOENT'
        ? `no file at ${file}: expected a .safetensors file; check the path`
        : `cannot open ${file}: ${(err as Error).message}; check the path and its permissions`,
      { file, code },
    );
  }
  try {
    const stats = await fh.stat();
    const size = stats.size;
    let shift = 0;
    if (size >= 8) {
      const head = new Uint8Array(8);
      await fh.read(head, 0, 8, 0);
      const n = new DataView(head.buffer).getUint32(0, true);
      shift = (8 - ((8 + n) % 8)) % 8;
    }
    const buf = new Uint8Array(new ArrayBuffer(size + shift), shift, size);
    let at = 0;
    while (at < size) {
      const { bytesRead } = await fh.read(buf, at, size - at, at);
      if (bytesRead === 0) break;
      at += bytesRead;
    }
    if (at !== size) throw new ModelFormatError(`${file} shrank while it was read (expected ${size} bytes, read ${at}); another process is writing it: retry when it is done`, { file });
    return { bytes: buf, stats };
  } finally {
    await fh.close();
  }
}


/** Write chunks to `file` atomically (temp file, fsync, rename, fsync folder). */
async function writeChunksAtomically(file: string, chunks: readonly Uint8Array[], before?: () => Promise<void>): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  let created = false;
  try {
    const fh = await open(tmp, 'wx');
    created = true;
    try {
      for (const c of chunks) {
        let at = 0;
        while (at < c.length) {
          const { bytesWritten } = await fh.write(c, at, c.length - at);
          at += bytesWritten;
        }
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    await before?.();
    await rename(tmp, file);
    created = false;
    await syncDir(path.dirname(file));
  } catch (err) {
    if (created) {
      try { await unlink(tmp); } catch { /* already gone */ }
    }
    throw err;
  }
}

/**
 * Write named tensors as a safetensors file, atomically (see the module doc). See
 * {@link serializeSafetensors} for the accepted tensors.
 */
export async function writeSafetensorsFile(
  file: string,
  tensors: ReadonlyMap<string, SafetensorsTensorInput> | Readonly<Record<string, SafetensorsTensorInput>>,
  metadata?: Readonly<Record<string, string>>,
): Promise<void> {
  await writeChunksAtomically(file, serializeSafetensors(tensors, metadata));
}

/**
 * A {@link WeightStore} over a safetensors file on disk (opened with {@link openSafetensorsFile}):
 * patches go into the file's bytes in memory and {@link commit} writes the file back atomically.
 */
export class SafetensorsFileStore implements WeightStore {
  /** The file. */
  readonly file: string;
  private inner: SafetensorsWeightStore;
  private stats: Stats;
  private committing = false;

  /** @internal use {@link openSafetensorsFile}. */
  constructor(file: string, inner: SafetensorsWeightStore, stats: Stats) {
    this.file = file;
    this.inner = inner;
    this.stats = stats;
  }

  /** The in-memory store over the file's bytes (its header, entries, stored bytes). */
  get contents(): SafetensorsWeightStore {
    return this.inner;
  }

  /** The F32, F16 and BF16 tensors, in data order. */
  list(): SafetensorsTensorEntry[] {
    return this.inner.list();
  }

  /** See {@link SafetensorsWeightStore.read}. */
  read(name: string): Float32Array {
    return this.inner.read(name);
  }

  /** See {@link SafetensorsWeightStore.grid}. */
  grid(name: string): StorageGrid | undefined {
    return this.inner.grid(name);
  }

  /** See {@link SafetensorsWeightStore.values}. */
  values(name: string): Float32Array {
    return this.inner.values(name);
  }

  /**
   * Write the patched file back atomically. An empty `changed` writes nothing. Refuses (with
   * nothing written) if the file changed on disk since it was read.
   *
   * @throws ModelFormatError the file was changed by someone else; UsageError a commit already runs.
   */
  async commit(changed: readonly string[]): Promise<void> {
    if (changed.length === 0) return;
    if (this.committing) throw new UsageError(`a commit to ${this.file} is already in progress: await it before committing again`);
    this.committing = true;
    try {
      for (const name of changed) this.inner.values(name); // unknown names throw before writing
      const rebuilt = this.inner.needsRebuild();
      const chunks = this.inner.serialize();
      await writeChunksAtomically(this.file, chunks, async () => {
        let now: Stats;
        try {
          now = await stat(this.file);
        } catch {
          throw this.changedOnDisk('it is gone');
        }
        if (now.size !== this.stats.size || now.mtimeMs !== this.stats.mtimeMs || now.ino !== this.stats.ino) throw this.changedOnDisk('its size, time or inode differ');
      });
      if (rebuilt) {
        // The layout changed (a half tensor became F32): reopen so views and dtypes match the disk.
        const { bytes, stats } = await readAligned(this.file);
        this.inner = new SafetensorsWeightStore(bytes, this.file);
        this.stats = stats;
      } else {
        this.stats = await stat(this.file);
      }
    } finally {
      this.committing = false;
    }
  }

  private changedOnDisk(found: string): ModelFormatError {
    return new ModelFormatError(
      `${this.file} changed on disk while it was being patched (${found}): expected the version read when it was opened. Nothing was written; reopen the file and apply again (one writer per file)`,
      { file: this.file },
    );
  }
}

/**
 * Open a safetensors file as a {@link WeightStore}. The file is read once into memory, aligned
 * so F32 tensors are views (no second copy); see `safetensors.ts` for the dtype decisions.
 *
 * @throws ModelFormatError missing file or malformed header.
 */
export async function openSafetensorsFile(file: string): Promise<SafetensorsFileStore> {
  const { bytes, stats } = await readAligned(file);
  return new SafetensorsFileStore(file, new SafetensorsWeightStore(bytes, file), stats);
}
