/** File-system durability helpers shared by every store that writes model files atomically. */
import { open } from 'node:fs/promises';

/** The `code` of a Node file-system error, if any. */
export function errCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null ? (err as NodeJS.ErrnoException).code : undefined;
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
