/**
 * The file layer of the model-folder writers.
 *
 * Every file-system operation that changes a model folder during an apply (create and write a
 * file, fsync it, rename, hard link, unlink, mkdir, fsync a folder) goes through a
 * {@link FileOps}. The default, {@link nodeFileOps}, is plain node:fs; a test passes its own to
 * record the operations (the power-loss harness in test/power-loss/ rebuilds, from such a record,
 * every folder a power cut could leave) or to make one fail. Reads go straight to node:fs: they
 * change nothing a crash could leave behind.
 *
 * The durability rules the writers follow, and the harness checks:
 * - a file's bytes are durable only after its fsync ({@link FileOps.writeNewFile} with `sync`);
 * - a name (created, renamed, linked or unlinked) is durable only after an fsync of its folder
 *   ({@link FileOps.syncDir});
 * - so a file is renamed into place only after its fsync, and a step that must not be undone by
 *   a power cut is followed by a folder fsync before anything that depends on it.
 */
import { randomBytes } from 'node:crypto';
import { constants, link, mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import * as path from 'node:path';

/** The operations that change a folder. Paths are absolute or relative to the working directory. */
export interface FileOps {
  /**
   * Create `file` (it must not exist: `EEXIST` otherwise), write `parts` in order, fsync it when
   * `sync` is set, close it. On a failure the partly written file is removed.
   */
  writeNewFile(file: string, parts: readonly Uint8Array[], options?: { sync?: boolean }): Promise<void>;
  /**
   * Optional: create `file` (`EEXIST` if it exists) to be written a piece at a time, so a writer
   * can start on the first bytes while later ones are still being made. The caller closes it,
   * and removes it if it is not wanted. Writers fall back to {@link writeNewFile} without it.
   */
  openNewFile?(file: string): Promise<NewFile>;
  /** rename(2): atomic, replaces `to`. */
  rename(from: string, to: string): Promise<void>;
  /** link(2): a second name for `existing`; `EEXIST` if `newPath` exists. */
  link(existing: string, newPath: string): Promise<void>;
  unlink(file: string): Promise<void>;
  /** mkdir -p. */
  mkdir(dir: string): Promise<void>;
  /** fsync a folder, so the names created, renamed or removed in it are durable. */
  syncDir(dir: string): Promise<void>;
}

/** A file being written a piece at a time ({@link FileOps.openNewFile}). */
export interface NewFile {
  /** Write all of `bytes` after the bytes written so far. */
  append(bytes: Uint8Array): Promise<void>;
  /** fsync(2). */
  sync(): Promise<void>;
  close(): Promise<void>;
}

/** The `code` of a Node file-system error, if any. */
export function errCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null ? (err as NodeJS.ErrnoException).code : undefined;
}

/** A file's bytes, or null when it does not exist (any other error is thrown). */
export async function readIfExists(file: string): Promise<Uint8Array | null> {
  try {
    return await readFile(file);
  } catch (e) {
    if (errCode(e) === 'ENOENT') return null;
    throw e;
  }
}

/**
 * fsync a folder so a rename in it is durable. Some platforms (Windows) cannot open or fsync a
 * folder; there nothing more can be done, so those errors are ignored.
 */
export async function syncDir(dir: string): Promise<void> {
  let fh;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch (err) {
    if (!['EISDIR', 'EINVAL', 'EPERM', 'EACCES', 'EBADF'].includes(errCode(err) ?? '')) throw err;
  } finally {
    await fh?.close();
  }
}

/** {@link FileOps} on node:fs (the bindings are looked up at each call, so a test may patch them). */
export const nodeFileOps: FileOps = {
  async writeNewFile(file, parts, options = {}) {
    const fh = await open(file, 'wx');
    try {
      for (const part of parts) await fh.writeFile(part);
      if (options.sync) await fh.sync();
    } catch (err) {
      await fh.close().catch(() => {});
      await unlink(file).catch(() => {});
      throw err;
    }
    await fh.close();
  },
  async openNewFile(file) {
    const fh = await open(file, 'wx');
    return {
      // As writeNewFile writes: FileHandle.writeFile writes all of it at the file's position.
      append: (bytes) => fh.writeFile(bytes),
      sync: () => fh.sync(),
      close: () => fh.close(),
    };
  },
  rename: (from, to) => rename(from, to),
  link: (existing, newPath) => link(existing, newPath),
  unlink: (file) => unlink(file),
  mkdir: (dir) => makeDirs(dir),
  syncDir: (dir) => syncDir(dir),
};

/**
 * `mkdir -p`: create `dir` and its missing parents, one level at a time. Not Node's
 * `mkdir(dir, { recursive: true })`, which never returns for a path under `/proc` (Node 20:
 * the kernel answers ENOENT for a folder whose parent exists, and the recursive walk retries
 * forever); here that is an error with the code the kernel gave (ENOENT, EACCES, ENOTDIR, ...).
 */
export async function makeDirs(dir: string): Promise<void> {
  const missing: string[] = [];
  for (let at = path.resolve(dir); ; ) {
    const st = await stat(at).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return undefined;
      throw e;
    });
    if (st) {
      if (!st.isDirectory()) throw Object.assign(new Error(`ENOTDIR: ${at} is not a folder`), { code: 'ENOTDIR', path: at });
      break;
    }
    missing.push(at);
    const up = path.dirname(at);
    if (up === at) break;
    at = up;
  }
  for (const d of missing.reverse()) {
    await mkdir(d).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'EEXIST') throw e;
    });
  }
}

/**
 * Run `job` on every item, at most `limit` at a time (`worker` is the index of the slot running
 * it, for per-slot buffers). After a failure no new item starts; the ones running finish, then
 * the first error is thrown.
 */
export async function forEachLimited<T>(items: readonly T[], limit: number, job: (item: T, k: number, worker: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: { err: unknown } | undefined;
  const run = async (worker: number): Promise<void> => {
    while (next < items.length && !failed) {
      const k = next++;
      try {
        await job(items[k], k, worker);
      } catch (err) {
        failed ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, (_, w) => run(w)));
  if (failed) throw failed.err;
}

/** Temporary files of this project's writers: `<name>.tmp-<pid>-<hex>`. */
export const TEMP_FILE = /\.tmp-\d+-[0-9a-f]+$/;

/**
 * Temp files this process is writing now: the sweep of a write leaves them alone, so two writes of
 * one file at once in one process (a release run taking a job's arrival while it collects) both land,
 * where the second's sweep removed the first's temp file before its rename.
 */
const writing = new Set<string>();

/**
 * Write `file` so that it holds the old or the new bytes at every instant, durably (temp file,
 * fsync, rename, fsync of the folder), unless `durable: false`: then neither the file nor the
 * folder is fsynced, and after a power cut the file may be the previous one, empty or cut short
 * (for caches, whose readers ignore a file they cannot parse).
 */
export async function writeFileAtomically(file: string, bytes: Uint8Array, options: { durable?: boolean; fileOps?: FileOps; sweep?: boolean } = {}): Promise<void> {
  const durable = options.durable !== false;
  const ops = options.fileOps ?? nodeFileOps;
  const dir = path.dirname(file);
  const base = path.basename(file);
  // Leftovers of an earlier interrupted write of this same file (`sweep: false`: a caller whose
  // folder was just cleaned of every temp file, as a model folder's recovery does).
  if (options.sweep !== false) {
    try {
      for (const name of await readdir(dir)) {
        if (name.startsWith(`${base}.tmp-`) && TEMP_FILE.test(name) && !writing.has(path.join(dir, name))) await ops.unlink(path.join(dir, name)).catch(() => {});
      }
    } catch {
      /* the folder is checked by the write below */
    }
  }
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  writing.add(path.join(dir, path.basename(tmp)));
  try {
    await ops.writeNewFile(tmp, [bytes], { sync: durable });
    await ops.rename(tmp, file);
  } catch (e) {
    await ops.unlink(tmp).catch(() => {});
    throw e;
  } finally {
    writing.delete(path.join(dir, path.basename(tmp)));
  }
  if (durable) await ops.syncDir(dir);
}

/** What a path is, for messages about files that are not regular files. */
export function kindOf(st: { isDirectory(): boolean; isFIFO(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean; isSocket(): boolean }): string {
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/**
 * Read a whole file that must be a regular file, without blocking on anything else: it is
 * opened non-blocking (a FIFO with no writer would otherwise hang the open) and checked with
 * fstat before a byte is read. With `maxBytes`, a larger file is refused from its size, and at
 * most `maxBytes + 1` bytes are ever read (a file that grows while read is refused too).
 *
 * @returns the bytes, or null when the file does not exist.
 * @throws an Error with `code` `'EFTYPE'` (not a regular file; `found` says what it is) or
 *   `'EFBIG'` (over `maxBytes`; `size` is what fstat or the read found); other node:fs errors as they are.
 */
export async function readRegularFile(file: string, options: { maxBytes?: number } = {}): Promise<Uint8Array | null> {
  let fh;
  try {
    fh = await open(file, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  } catch (err) {
    if (errCode(err) === 'ENOENT') return null;
    throw err;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) {
      const found = kindOf(st);
      throw Object.assign(new Error(`${file} is ${found}, not a regular file`), { code: 'EFTYPE', found });
    }
    const max = options.maxBytes ?? Infinity;
    const tooBig = (size: number) => Object.assign(new Error(`${file} is ${size} bytes, over the limit of ${max}`), { code: 'EFBIG', size });
    if (st.size > max) throw tooBig(st.size);
    // Room for one byte more than fstat said, to see a file that grew.
    const out = new Uint8Array(Math.min(st.size, max) + 1);
    let at = 0;
    for (;;) {
      const { bytesRead } = await fh.read(out, at, out.length - at, at);
      if (bytesRead === 0) break;
      at += bytesRead;
      if (at > max) throw tooBig(at);
      if (at === out.length) break; // grew past its fstat size but within the limit: refused below
    }
    if (at > st.size) throw Object.assign(new Error(`${file} grew while it was read (fstat said ${st.size} bytes): another program is writing it; retry when it is complete`), { code: 'EAGAIN' });
    return out.subarray(0, at);
  } finally {
    await fh.close();
  }
}
