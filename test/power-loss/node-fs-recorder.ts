/**
 * Record the file-system operations of code that calls node:fs/promises directly, as fs-model.ts
 * models them ({@link FsOp}), for the power-loss harness.
 *
 * The TF.js folder writers take a `FileOps` (src/io/durable/durable.ts) and are recorded by
 * {@link RecordingFileOps}. The single-file appliers (an ONNX or LiteRT file rebuilt by a
 * structural payload, `rebuildWeightsFile`, and its recovery `recoverWeightsFile`) open, write,
 * fsync, link and rename with node:fs/promises themselves. Rather than change them, this module
 * wraps those functions for the duration of one call (module.syncBuiltinESMExports makes the ESM
 * bindings of the code under test see the wrappers, as test/crash/child.ts does) and the
 * FileHandle prototype (write, writeFile, sync, datasync, truncate). Each operation is performed
 * for real, then recorded with the bytes it wrote and the inode each name points to, in the order
 * the operations completed (the single-file appliers issue them one at a time).
 *
 * Only operations on the one folder are modelled. An existing file opened 'r+' (written in place,
 * never truncated) is recorded write by write. A mutating call the model has no rule for
 * (a truncating open of an existing file, rm, copyFile, fs.writeFile, truncate of a recorded
 * file, a change outside the folder) makes the recording fail, so a gap in the model cannot pass
 * unnoticed. chmod is performed and not recorded: a file's mode is not what a loader reads.
 */
import { constants } from 'node:fs';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import * as path from 'node:path';
import type { FolderImage, FsOp } from './fs-model.ts';

const require = createRequire(import.meta.url);
type AnyFn = (...a: unknown[]) => Promise<unknown>;
const fsp = require('node:fs/promises') as Record<string, AnyFn>;

/** What the recorder knows of an open file handle in the folder. */
interface Tracked {
  /** The folder itself (opened to be fsynced), or one of its files. */
  isDir: boolean;
  name: string;
  ino: number;
  /** Where the handle's next write without a position lands. */
  offset: number;
}

let active = false;

/** Whether open flags (a string such as 'wx', or O_* bits) may change the file, and whether they create it exclusively. */
function flagsOf(flags: unknown): { mutating: boolean; exclusive: boolean } {
  if (typeof flags === 'number') {
    const { O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND, O_EXCL } = constants;
    return { mutating: (flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND)) !== 0, exclusive: (flags & O_EXCL) !== 0 };
  }
  const f = String(flags);
  return { mutating: /[wa+]/.test(f), exclusive: f.includes('x') };
}

/**
 * Run `fn` with node:fs/promises recorded for the folder `dir`, whose files are `initial` (names
 * to inodes, as {@link snapshotFolder} read them). Returns the operations, as
 * {@link RecordingFileOps} records them. One recording at a time.
 */
export async function recordNodeFs(dir: string, initial: FolderImage, fn: () => Promise<void>): Promise<FsOp[]> {
  if (active) throw new Error('one node:fs recording at a time');
  active = true;
  const root = path.resolve(dir);
  const log: FsOp[] = [];
  const names = new Map(initial.names);
  let nextIno = Math.max(0, ...initial.data.keys()) + 1;
  const handles = new WeakMap<object, Tracked>();
  const unmodelled: string[] = [];

  /** The name in the folder of `file`, or undefined for a path elsewhere. */
  const inFolder = (file: unknown): string | undefined => {
    const resolved = path.resolve(String(file));
    return path.dirname(resolved) === root ? path.basename(resolved) : undefined;
  };
  const isFolder = (file: unknown) => path.resolve(String(file)) === root;
  const refuse = (what: string) => {
    unmodelled.push(what);
    throw new Error(`the power-loss recorder has no model for ${what}`);
  };

  const probeHandle = (await fsp.open(root, 'r')) as { close(): Promise<void> };
  const proto = Object.getPrototypeOf(probeHandle) as Record<string, AnyFn>;
  await probeHandle.close();

  const originals = new Map<string, AnyFn>();
  const protoOriginals = new Map<string, AnyFn>();
  const wrap = (name: string, fnNew: (original: AnyFn) => AnyFn) => {
    originals.set(name, fsp[name]);
    fsp[name] = fnNew(fsp[name]);
  };
  const wrapProto = (name: string, fnNew: (original: AnyFn) => AnyFn) => {
    protoOriginals.set(name, proto[name]);
    proto[name] = fnNew(proto[name]);
  };

  wrap('open', (original) => async function (this: unknown, ...args: unknown[]) {
    const [file, flags = 'r'] = args;
    const name = inFolder(file);
    const { mutating, exclusive } = flagsOf(flags);
    if (name !== undefined && mutating) {
      // 'r+' writes an existing file in place (a GGUF model patched behind its undo journal): its writes are recorded at their positions.
      if (!exclusive && names.has(name) && flags !== 'r+') refuse(`open(${name}, ${String(flags)}) of an existing file`);
    } else if (name === undefined && !isFolder(file) && mutating) {
      refuse(`open(${String(file)}, ${String(flags)}) outside the folder`);
    }
    const handle = (await original.apply(this, args)) as object;
    if (isFolder(file)) {
      handles.set(handle, { isDir: true, name: '', ino: 0, offset: 0 });
    } else if (name !== undefined) {
      let ino = names.get(name);
      if (mutating && ino === undefined) {
        ino = nextIno++;
        names.set(name, ino);
        log.push({ op: 'create', name, ino });
      }
      if (ino !== undefined) handles.set(handle, { isDir: false, name, ino, offset: 0 });
    }
    return handle;
  });
  wrap('rename', (original) => async function (this: unknown, ...args: unknown[]) {
    const [from, to] = [inFolder(args[0]), inFolder(args[1])];
    if (from === undefined || to === undefined) refuse(`rename(${String(args[0])} -> ${String(args[1])}) outside the folder`);
    await original.apply(this, args);
    const ino = names.get(from!) as number;
    names.delete(from!);
    names.set(to!, ino);
    log.push({ op: 'rename', from: from!, to: to!, ino });
  });
  wrap('link', (original) => async function (this: unknown, ...args: unknown[]) {
    const [from, to] = [inFolder(args[0]), inFolder(args[1])];
    if (from === undefined || to === undefined) refuse(`link(${String(args[0])} -> ${String(args[1])}) outside the folder`);
    await original.apply(this, args);
    const ino = names.get(from!) as number;
    names.set(to!, ino);
    log.push({ op: 'link', from: from!, to: to!, ino });
  });
  wrap('unlink', (original) => async function (this: unknown, ...args: unknown[]) {
    const name = inFolder(args[0]);
    if (name === undefined) refuse(`unlink(${String(args[0])}) outside the folder`);
    await original.apply(this, args);
    const ino = names.get(name!) as number;
    names.delete(name!);
    log.push({ op: 'unlink', name: name!, ino });
  });
  wrap('mkdir', (original) => async function (this: unknown, ...args: unknown[]) {
    // mkdir of the folder (or a parent): it exists, nothing changes.
    if (!root.startsWith(path.resolve(String(args[0])))) refuse(`mkdir(${String(args[0])})`);
    return original.apply(this, args);
  });
  for (const name of ['rm', 'rmdir', 'copyFile', 'writeFile', 'appendFile', 'truncate', 'symlink', 'cp', 'utimes']) {
    if (typeof fsp[name] !== 'function') continue;
    wrap(name, () => async (...args: unknown[]) => refuse(`${name}(${String(args[0])})`));
  }

  wrapProto('write', (original) => async function (this: object, ...args: unknown[]) {
    const t = handles.get(this);
    if (t?.isDir) refuse('a write to the folder handle');
    const result = (await original.apply(this, args)) as { bytesWritten: number; buffer: Uint8Array };
    if (t) {
      // write(buffer, offset?, length?, position?) or write(buffer, { offset, length, position }); or write(string, position?)
      const [data, a1, , a3] = args;
      let bytes: Uint8Array;
      let position: number | null | undefined;
      if (typeof data === 'string') {
        bytes = new TextEncoder().encode(data).subarray(0, result.bytesWritten);
        position = typeof a1 === 'number' ? a1 : undefined;
      } else {
        const view = data as Uint8Array;
        const opts = a1 !== null && typeof a1 === 'object' ? (a1 as { offset?: number; position?: number | null }) : undefined;
        const offset = opts ? opts.offset ?? 0 : typeof a1 === 'number' ? a1 : 0;
        position = opts ? opts.position : (a3 as number | null | undefined);
        bytes = view.subarray(offset, offset + result.bytesWritten);
      }
      const at = typeof position === 'number' && position >= 0 ? position : t.offset;
      log.push({ op: 'write', name: t.name, ino: t.ino, offset: at, bytes: bytes.slice() });
      if (!(typeof position === 'number' && position >= 0)) t.offset = at + bytes.length;
    }
    return result;
  });
  wrapProto('writeFile', (original) => async function (this: object, ...args: unknown[]) {
    const t = handles.get(this);
    if (t?.isDir) refuse('a write to the folder handle');
    await original.apply(this, args);
    if (t) {
      const data = args[0];
      const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : new Uint8Array((data as Uint8Array).buffer, (data as Uint8Array).byteOffset, (data as Uint8Array).byteLength).slice();
      log.push({ op: 'write', name: t.name, ino: t.ino, offset: t.offset, bytes });
      t.offset += bytes.length;
    }
  });
  for (const method of ['sync', 'datasync']) {
    wrapProto(method, (original) => async function (this: object, ...args: unknown[]) {
      const t = handles.get(this);
      await original.apply(this, args);
      if (t?.isDir) log.push({ op: 'syncDir' });
      else if (t) log.push({ op: 'fsync', name: t.name, ino: t.ino });
    });
  }
  wrapProto('truncate', (original) => async function (this: object, ...args: unknown[]) {
    if (handles.has(this)) refuse('truncate of a file in the folder');
    return original.apply(this, args);
  });

  syncBuiltinESMExports();
  try {
    await fn();
  } finally {
    for (const [name, original] of originals) fsp[name] = original;
    for (const [name, original] of protoOriginals) proto[name] = original;
    syncBuiltinESMExports();
    active = false;
  }
  if (unmodelled.length) throw new Error(`the recorded call did what the power-loss model does not cover: ${unmodelled.join('; ')}`);
  return log;
}
