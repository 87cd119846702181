/**
 * A folder in memory as a {@link GgufVolume}, for the device's in-place apply (src/io/gguf/opfs.ts)
 * in Node: every change (a file created or emptied, a write, a flush, a rename, a delete) counted,
 * and the run cut before the change numbered `cutAt` (an Error thrown, the files as they are: a
 * killed worker or a closed tab, whose writes through OPFS access handles already reached the file).
 */
import { ModelFormatError } from '../../src/core/errors.ts';
import type { GgufVolume, VolumeFile } from '../../src/io/gguf/volume.ts';

/** Thrown by a {@link MemoryVolume} at its cut. */
export class Cut extends Error {}

export interface MemoryVolume extends GgufVolume {
  readonly files: Map<string, Uint8Array>;
  /** Changes made so far. */
  readonly changes: string[];
}

export function memoryVolume(files: Map<string, Uint8Array>, cutAt = Infinity): MemoryVolume {
  const changes: string[] = [];
  const change = (what: string) => {
    if (changes.length + 1 >= cutAt) throw new Cut(`cut before ${what}`);
    changes.push(what);
  };
  const volume: MemoryVolume = {
    files,
    changes,
    describe: (name) => `mem:${name}`,
    async open(name, mode): Promise<VolumeFile> {
      if (mode === 'wx' && files.has(name)) throw new Error(`${name} exists`);
      if ((mode === 'r' || mode === 'r+') && !files.has(name)) throw new ModelFormatError(`no file ${name}`);
      if (mode === 'w' || mode === 'wx') {
        change(`create(${name})`);
        files.set(name, new Uint8Array(0));
      }
      return {
        size: async () => (files.get(name) as Uint8Array).length,
        read: async (position, length) => {
          const b = files.get(name) as Uint8Array;
          if (position + length > b.length) throw new ModelFormatError(`${name} ended at ${b.length}`);
          return b.slice(position, position + length);
        },
        write: async (bytes, position) => {
          change(`write(${name}, ${position}, ${bytes.length})`);
          let b = files.get(name) as Uint8Array;
          if (position + bytes.length > b.length) {
            const grown = new Uint8Array(position + bytes.length);
            grown.set(b);
            b = grown;
          }
          b.set(bytes, position);
          files.set(name, b);
        },
        sync: async () => change(`sync(${name})`),
        close: async () => {},
      };
    },
    size: async (name) => files.get(name)?.length,
    readText: async (name) => (files.has(name) ? new TextDecoder().decode(files.get(name)) : undefined),
    async remove(name) {
      if (!files.has(name)) return false;
      change(`remove(${name})`);
      files.delete(name);
      return true;
    },
    async rename(from, to) {
      change(`rename(${from} -> ${to})`);
      const b = files.get(from);
      if (!b) throw new Error(`no ${from}`);
      files.delete(from);
      files.set(to, b);
    },
    syncFolder: async () => change('syncFolder'),
  };
  return volume;
}
