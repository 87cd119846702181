/**
 * A folder on disk as a {@link GgufVolume} (Node): node:fs/promises, one call per operation, so
 * the crash and power-loss harnesses, which record those calls, see every step of the in-place
 * apply as it happens.
 */
import { open, readFile, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { ModelFormatError } from '../../core/errors.ts';
import { errCode, syncDir } from '../durable/durable.ts';
import type { GgufVolume, VolumeFile, VolumeOpenMode } from './volume.ts';

/** Write all of `bytes` at `position`. */
export async function writeFully(fh: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let at = 0;
  while (at < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, at, bytes.length - at, position + at);
    at += bytesWritten;
  }
}

/** Read exactly `length` bytes at `position`, or throw. */
export async function readFully(fh: FileHandle, length: number, position: number, what: string): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  await readFullyInto(fh, out, position, what);
  return out;
}

/** Fill `into` from `position`, or throw. */
async function readFullyInto(fh: FileHandle, into: Uint8Array, position: number, what: string): Promise<void> {
  let at = 0;
  while (at < into.length) {
    const { bytesRead } = await fh.read(into, at, into.length - at, position + at);
    if (bytesRead === 0) throw new ModelFormatError(`${what} ended at ${position + at} bytes while ${into.length} bytes from ${position} were read: it changed meanwhile or is damaged`, { what });
    at += bytesRead;
  }
}

/** An open file handle as a {@link VolumeFile}; `name` is how errors name it. */
export function nodeVolumeFile(fh: FileHandle, name: string): VolumeFile {
  return {
    size: async () => (await fh.stat()).size,
    read: (position, length) => readFully(fh, length, position, name),
    readInto: (into, position) => readFullyInto(fh, into, position, name),
    write: (bytes, position) => writeFully(fh, bytes, position),
    sync: () => fh.sync(),
    close: () => fh.close(),
  };
}

/** The folder `dir` on disk. */
export function nodeVolume(dir: string): GgufVolume {
  const at = (name: string) => path.join(dir, name);
  return {
    describe: at,
    open: async (name: string, mode: VolumeOpenMode) => nodeVolumeFile(await open(at(name), mode), at(name)),
    size: async (name) => {
      try {
        return (await stat(at(name))).size;
      } catch (e) {
        if (errCode(e) === 'ENOENT') return undefined;
        throw e;
      }
    },
    readText: async (name) => {
      try {
        return await readFile(at(name), 'utf8');
      } catch (e) {
        if (errCode(e) === 'ENOENT') return undefined;
        throw e;
      }
    },
    remove: async (name) => {
      try {
        await unlink(at(name));
        return true;
      } catch (e) {
        if (errCode(e) === 'ENOENT') return false;
        throw e;
      }
    },
    rename: (from, to) => rename(at(from), at(to)),
    syncFolder: () => syncDir(dir),
  };
}
