/**
 * Single-file models on disk (Node and Electron): ONNX (`.onnx`, with its external data files)
 * and LiteRT (`.tflite`). Open one as a {@link WeightStore}, and apply a payload to it
 * crash-safely, with the same checks, sequence file, recorded model id and health check as TF.js
 * model folders. Each format is a {@link WeightsFileFormat} (`src/io/onnx/files.ts`,
 * `src/io/tflite/files.ts`) over its pure store; what a model may contain and what is refused is
 * in {@link openWeightsFile} and docs/SECURITY.md.
 * The crash-safe apply, recovery and save-as are in `weights-file-update.ts`.
 */
import type { RebuildFilesFormat } from '../../apply/rebuild.ts';
import { constants, readSync, type Stats } from 'node:fs';
import { open, realpath, stat, type FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { ModelFormatError } from '../../core/errors.ts';
import type { TensorEntry, WeightStore } from '../../core/weight-store.ts';
import type { StorageGrid } from '../../core/grid.ts';
import { errCode, kindOf } from './durable.ts';

/**
 * An external data file read a range at a time (ONNX models ship gigabytes of external data):
 * offsets exact below 2^53.
 */
export interface ExternalSource {
  /** The file's size in bytes. */
  readonly size: number;
  /** `length` bytes at `offset` (a new array the store may keep and patch). */
  read(offset: number, length: number): Uint8Array;
}

/** A patched tensor's new bytes in an external file. */
export interface ExternalPatch {
  /** Byte offset in the file. */
  offset: number;
  /** The tensor's bytes as they must be written there. */
  bytes: Uint8Array;
}

/** The pure store over a model file's bytes that a {@link WeightsFileFormat} makes. */
export interface WeightsFileContents extends WeightStore {
  list(): TensorEntry[];
  /** Write handed-out copies into the file's bytes (in memory); typed error, nothing written, when a value cannot be stored. */
  commit(changed: readonly string[]): void;
  /** The model file's bytes, patched after {@link commit}. */
  modelBytes(): Uint8Array;
  /** The external location holding a tensor (undefined: the model file). */
  fileOf?(name: string): string | undefined;
  /** For tensors read through an {@link ExternalSource}: their new bytes, by location. */
  externalPatches?(changed: readonly string[]): Map<string, ExternalPatch[]>;
  /** Let go of a tensor's bytes once they are kept in `source` (see `OnnxWeightStore.release`). */
  release?(name: string, source: ExternalSource): boolean;
  forget?(name: string): boolean;
}

/** A model file format: how its bytes become a store, and what its files are called. */
export interface WeightsFileFormat<C extends WeightsFileContents = WeightsFileContents> {
  /** What the file is, for messages: `an ONNX model (.onnx)`. */
  readonly what: string;
  /** The model file's name test (`/\.onnx$/i`). */
  readonly extension: RegExp;
  /** The `format` field of its update journal. */
  readonly journal: string;
  /** The largest model file read whole, and what to say of a larger one. */
  readonly maxBytes: number;
  tooBig(file: string, size: number): string;
  /** The external data files the model names (relative to its folder). */
  externalLocations(bytes: Uint8Array, source: string): string[];
  /** The store over the model file's bytes and its external files. */
  contents(bytes: Uint8Array, external: Map<string, ExternalSource>, source: string): C;
  /**
   * How a structural payload reads the model with its external data files (the model file
   * first, then the data files in the order it references them); absent for a format whose
   * models are one file.
   */
  readonly files?: RebuildFilesFormat;
}

/** A temporary file of a writer: `<file>.tmp-<pid>-<hex>`. */
export const TEMP_FILE = /\.tmp-\d+-[0-9a-f]+$/;
/** Bytes read per call from an external data file (a tensor past 1 GiB is read in several calls). */
const READ_CHUNK = 2 ** 30;

/** A file opened by {@link openWeightsFile}: its handle, kept open while the store reads it, and its stats at open. */
export interface OpenedFile {
  path: string;
  fh: FileHandle;
  stats: Stats;
}

/**
 * Open `file` for reading without ever blocking on it (a FIFO with no writer would hang a plain
 * open): non-blocking, without following a final symlink, then fstat before anything is read;
 * anything but a regular file is refused.
 */
async function openRegular(file: string, what: string): Promise<OpenedFile> {
  let fh: FileHandle;
  try {
    fh = await open(file, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOFOLLOW ?? 0));
  } catch (err) {
    const code = errCode(err);
    throw new ModelFormatError(
      code === 'ENOENT' ? `no file at ${file}: expected ${what}; check the path`
      : code === 'ELOOP' ? `${file} is a symbolic link: expected ${what} as a regular file (symbolic links to model data are refused, see docs/SECURITY.md)`
      : `cannot open ${file} (${what}): ${(err as Error).message}; check the path and its permissions`,
      { file, code },
    );
  }
  try {
    const stats = await fh.stat();
    if (!stats.isFile()) throw new ModelFormatError(`${file} is ${kindOf(stats)}: expected ${what} as a regular file; nothing was read or written`, { file, found: kindOf(stats) });
    return { path: file, fh, stats };
  } catch (e) {
    await fh.close();
    throw e;
  }
}

/** Read `length` bytes at `offset` (exact below 2^53) into a new array (or the start of `into`); a short read means the file shrank. */
export function readAt(f: OpenedFile, offset: number, length: number, into?: Uint8Array): Uint8Array {
  const out = into ? into.subarray(0, length) : new Uint8Array(length);
  let at = 0;
  while (at < length) {
    const n = readSync(f.fh.fd, out, at, Math.min(READ_CHUNK, length - at), offset + at);
    if (n === 0) throw new ModelFormatError(`${f.path} shrank while it was read (expected ${length} bytes at offset ${offset}, read ${at}); another process is writing it: retry when it is done`, { file: f.path });
    at += n;
  }
  return out;
}

/** A file's identity: the same device and inode is the same file, whatever the path. */
function identity(st: Stats): string {
  return `${st.dev}:${st.ino}`;
}

/** True when `now` is the file `then` described, unchanged (size, mtime, ctime, inode, device). */
export function sameFile(now: Stats, then: Stats): boolean {
  return now.size === then.size && now.mtimeMs === then.mtimeMs && now.ctimeMs === then.ctimeMs && now.ino === then.ino && now.dev === then.dev;
}

/**
 * Why an external data file at `real` (inside `dir`) may not be one: a file of the applier's
 * (journal, kept previous version, state, lock, model id, temporary file: every name holding
 * `.ndiff-`, and `*.tmp-<pid>-<hex>`), or undefined.
 */
function controlFileProblem(real: string): string | undefined {
  const name = path.basename(real).toLowerCase();
  if (name.includes('.ndiff-')) return 'a file of the applier (journal, kept previous version, state, lock or model id)';
  if (TEMP_FILE.test(name)) return 'a temporary file of a writer';
  return undefined;
}

/** Options of {@link openWeightsFile}. */
export interface WeightsFileOpenOptions {
  /** Read the model from this file instead (the files of a version not yet switched). */
  replace?: ReadonlyMap<string, string>;
  /** Files no external location may name (the state file, wherever it is kept). */
  reserved?: readonly string[];
}

/**
 * A {@link WeightStore} over a model on disk (opened with {@link openWeightsFile}): the model
 * file is held in memory (at most 2 GiB), external data files are read a tensor at a time, and
 * patches go into memory until the file update (`UpdatingWeightsFile`) writes them. Call
 * {@link WeightsFileStore.close} when done (it holds the external files open, so what it reads is
 * the file it checked, whatever happens to the path).
 */
export class WeightsFileStore<C extends WeightsFileContents = WeightsFileContents> implements WeightStore {
  /** @internal use {@link openWeightsFile}. */
  constructor(
    /** The model file (its real path: a symbolic link to it is followed once). */
    readonly file: string,
    /** The in-memory store over the model file's bytes, reading the external files through their handles. */
    readonly contents: C,
    /** Each file opened: the model file (key `''`) and the external ones by location. */
    private readonly opened: ReadonlyMap<string, OpenedFile>,
  ) {}
  /** Each file's stats when opened: the model file (key `''`) and the external ones by location. */
  get stats(): ReadonlyMap<string, Stats> {
    return new Map([...this.opened].map(([k, v]) => [k, v.stats]));
  }
  list(): ReturnType<C['list']> {
    return this.contents.list() as ReturnType<C['list']>;
  }
  values(name: string): Float32Array {
    return this.contents.values(name);
  }
  read(name: string): Float32Array {
    return this.contents.read ? this.contents.read(name) : this.contents.values(name);
  }
  /** How a weight is stored (see the format store's `grid`): the applier refuses a payload rounding onto another grid. */
  grid(name: string): StorageGrid | undefined {
    return this.contents.grid?.(name);
  }
  /** Write patched copies into memory (nothing on disk). */
  commit(changed: readonly string[]): void {
    this.contents.commit(changed);
  }
  /** The path of the file holding `location` (`''`: the model file). */
  pathOf(location: string): string {
    return location === '' ? this.file : path.join(path.dirname(this.file), location);
  }
  /** The locations (`''` for the model file) holding any of `tensors`. */
  locationsOf(tensors: readonly string[]): string[] {
    return [...new Set(tensors.map((name) => this.contents.fileOf?.(name) ?? ''))].sort();
  }
  /** The open file at `location` (`''`: the model file). */
  openedAt(location: string): OpenedFile {
    return this.opened.get(location) as OpenedFile;
  }
  /** Close the files held open. */
  async close(): Promise<void> {
    for (const f of this.opened.values()) await f.fh.close().catch(() => {});
  }
}

/**
 * Open a model file of `format` (and the external data files it names, relative to its folder) as a
 * {@link WeightStore}. The model file is read whole (at most the format's `maxBytes`);
 * external data files are opened and read a tensor at a time, with 64-bit offsets, whatever
 * their size.
 *
 * What is refused, before anything is read past an fstat (docs/SECURITY.md): a path that is not
 * a regular file (a FIFO, a device, a folder; opened non-blocking, so never waited on); an
 * external location reached through a symbolic link (a link in any part of it: the data must
 * lie inside the model's folder); two locations naming one file (`w.bin` and `./w.bin`, or hard
 * links: compared by device and inode), a location naming the model file itself, or a file of
 * the applier's (`.ndiff-*`, temporary files, `reserved`). The model path itself may be a
 * symbolic link: it is resolved once, and the real file is read (and patched by an apply).
 *
 * @throws ModelFormatError a missing or refused file, or bytes that are not a well-formed model of the format.
 */
export async function openWeightsFile<C extends WeightsFileContents>(file: string, format: WeightsFileFormat<C>, options: WeightsFileOpenOptions = {}): Promise<WeightsFileStore<C>> {
  const real = await realModelPath(file, format);
  const dir = path.dirname(real);
  const opened = new Map<string, OpenedFile>();
  try {
    const model = await openRegular(options.replace?.get('') ?? real, format.what);
    opened.set('', model);
    if (model.stats.size > format.maxBytes) throw new ModelFormatError(format.tooBig(real, model.stats.size), { file: real, size: model.stats.size });
    const bytes = readAt(model, 0, model.stats.size);
    const seen = new Map<string, string>([[identity(model.stats), 'the model file itself']]);
    for (const r of options.reserved ?? []) {
      const st = await stat(r).catch(() => undefined);
      if (st) seen.set(identity(st), `the state file ${r}`);
    }
    for (const loc of format.externalLocations(bytes, real)) {
      const what = `the external data file ${JSON.stringify(loc)} that ${path.basename(real)} names`;
      const replaced = options.replace?.get(loc);
      const at = path.resolve(dir, loc);
      if (replaced === undefined) {
        const problem = controlFileProblem(at);
        if (problem) throw new ModelFormatError(`${real}: external location ${JSON.stringify(loc)} names ${problem}: expected a weights file of the model; refused, nothing was read or written`, { file: real, location: loc });
        // Every part of the location must be a plain folder or file inside the model's folder.
        const resolved = await realpath(at).catch((e: unknown) => (errCode(e) === 'ENOENT' ? at : Promise.reject(e)));
        if (resolved !== at) {
          throw new ModelFormatError(`${real}: external location ${JSON.stringify(loc)} goes through a symbolic link (to ${resolved}): expected a file inside the model's folder reached without links; refused, nothing was read or written`, { file: real, location: loc });
        }
      }
      const f = await openRegular(replaced ?? at, what);
      opened.set(loc, f);
      const id = identity(f.stats);
      const other = seen.get(id);
      if (other !== undefined) {
        throw new ModelFormatError(`${real}: external location ${JSON.stringify(loc)} is the same file as ${other}: expected each external data file named once, by one location; refused, nothing was read or written. Save the model with one spelling of each location`, { file: real, location: loc });
      }
      seen.set(id, `location ${JSON.stringify(loc)}`);
    }
    const external = new Map<string, ExternalSource>();
    for (const [loc, f] of opened) if (loc !== '') external.set(loc, { size: f.stats.size, read: (offset, length) => readAt(f, offset, length) });
    return new WeightsFileStore(real, format.contents(bytes, external, real), opened);
  } catch (e) {
    for (const f of opened.values()) await f.fh.close().catch(() => {});
    throw e;
  }
}

/**
 * The bytes of a model file and of each external data file it names, read whole, for a
 * trainer or an evaluation that needs every tensor in memory. Read through {@link openWeightsFile},
 * so with the same checks before a byte is read: regular files only (a FIFO is never waited on,
 * a link to a device never followed), external data inside the model's folder and named once.
 */
export async function readWeightsFileBytes(file: string, format: WeightsFileFormat): Promise<{ bytes: Uint8Array; external: Map<string, Uint8Array> }> {
  const store = await openWeightsFile(file, format);
  try {
    const external = new Map<string, Uint8Array>();
    for (const [loc, st] of store.stats) if (loc !== '') external.set(loc, readAt(store.openedAt(loc), 0, st.size));
    const model = store.openedAt('');
    return { bytes: readAt(model, 0, model.stats.size), external };
  } finally {
    await store.close();
  }
}

/** The real path of the model file (a symbolic link to it followed once). */
export async function realModelPath(file: string, format: WeightsFileFormat): Promise<string> {
  try {
    return await realpath(file);
  } catch (err) {
    const code = errCode(err);
    throw new ModelFormatError(code === 'ENOENT' ? `no file at ${file}: expected ${format.what}; check the path` : `cannot open ${file}: ${(err as Error).message}; check the path and its permissions`, { file, code });
  }
}
