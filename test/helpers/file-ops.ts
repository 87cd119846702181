/** File-operation layers for tests: a process that dies at a chosen operation, in-process. */
import * as path from 'node:path';
import { nodeFileOps, type FileOps } from '../../src/io/durable/durable.ts';

/** Thrown by {@link crashingFileOps} from the chosen operation on. */
export class SimulatedCrash extends Error {
  constructor(readonly op: string) {
    super(`simulated crash at ${op}`);
  }
}

/**
 * {@link FileOps} that behave like node:fs until `crashAt` says yes for an operation (given as
 * `rename a -> b`, `unlink a`, `create a`, `link a -> b`, `fsync the folder`, with base names);
 * from then on every operation throws {@link SimulatedCrash} and changes nothing, as if the
 * process had died there: the folder keeps exactly what the operations before it did, and the
 * applier's cleanup paths (which run after the throw) cannot change it.
 */
export function crashingFileOps(crashAt: (op: string) => boolean): FileOps & { crashed: () => string | undefined } {
  let crashed: string | undefined;
  const step = (op: string) => {
    if (crashed === undefined && crashAt(op)) crashed = op;
    if (crashed !== undefined) throw new SimulatedCrash(crashed);
  };
  const b = (p: string) => path.basename(p);
  return {
    crashed: () => crashed,
    async writeNewFile(file, parts, options) {
      step(`create ${b(file)}`);
      await nodeFileOps.writeNewFile(file, parts, options);
    },
    async openNewFile(file) {
      step(`create ${b(file)}`);
      const real = await (nodeFileOps.openNewFile as NonNullable<FileOps['openNewFile']>)(file);
      // After the crash nothing more reaches the file either.
      const alive = () => {
        if (crashed !== undefined) throw new SimulatedCrash(crashed);
      };
      return {
        async append(bytes) {
          alive();
          await real.append(bytes);
        },
        async sync() {
          alive();
          await real.sync();
        },
        close: () => real.close(),
      };
    },
    async rename(from, to) {
      step(`rename ${b(from)} -> ${b(to)}`);
      await nodeFileOps.rename(from, to);
    },
    async link(existing, newPath) {
      step(`link ${b(existing)} -> ${b(newPath)}`);
      await nodeFileOps.link(existing, newPath);
    },
    async unlink(file) {
      step(`unlink ${b(file)}`);
      await nodeFileOps.unlink(file);
    },
    async mkdir(dir) {
      step(`mkdir ${b(dir)}`);
      await nodeFileOps.mkdir(dir);
    },
    async syncDir(dir) {
      step('fsync the folder');
      await nodeFileOps.syncDir(dir);
    },
  };
}
