/**
 * The release folder as a place one writer changes at a time: the lock `ndiff release add`,
 * `publish` and `cancel` take (the apply lock of model folders, src/io/durable/lock.ts), and the
 * checks that keep every file it writes inside it (`blobs/` and `jobs/` are real folders, never
 * links to another place).
 */
import { lstat } from 'node:fs/promises';
import * as path from 'node:path';
import { ModelFormatError } from '../core/errors.ts';
import { errCode, makeDirs } from '../io/durable/durable.ts';
import { lockModelDir } from '../io/durable/lock.ts';

/** Take the release folder's lock (one `add`, `publish` or `cancel` at a time); returns the release function. */
export function lockRelease(releaseDir: string): Promise<() => Promise<void>> {
  return lockModelDir(releaseDir, { writer: 'ndiff release command', what: 'release folder' });
}

/**
 * The path of `name` (`blobs`, `jobs`) in the release folder, created if missing, after checking
 * it is a folder of its own: a symlink there would send the release's files somewhere else.
 */
export async function releaseSubdir(releaseDir: string, name: string): Promise<string> {
  const at = path.join(releaseDir, name);
  const st = await lstat(at).catch((e) => {
    if (errCode(e) === 'ENOENT') return undefined;
    throw e;
  });
  if (st && !st.isDirectory()) {
    throw new ModelFormatError(`release folder ${releaseDir}: ${name}/ is ${st.isSymbolicLink() ? 'a symbolic link' : 'not a folder'}; the release keeps its files in a folder of its own, never through a link to another place. Replace it with a real folder (move the files in), then retry`, { file: at });
  }
  if (!st) await makeDirs(at);
  return at;
}
