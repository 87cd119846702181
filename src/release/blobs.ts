/**
 * The content-addressed files of a release folder: `blobs/<sha256>`, written once (temp file,
 * fsync, rename), never changed, so any static host or CDN may cache them forever. Only
 * `manifest.json` changes from one publication to the next.
 */
import { createHash, randomBytes } from 'node:crypto';
import { lstat, open, rename, rm, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { ModelFormatError } from '../core/errors.ts';
import { readRegularFile, syncDir, writeFileAtomically } from '../io/durable/durable.ts';
import { releaseSubdir } from './folder.ts';
import type { ReleaseFile } from '../updater/manifest.ts';

/** The folder of the blobs in a release folder. */
export const BLOBS = 'blobs';

/** SHA-256 of `bytes`, 64 lowercase hex chars. */
export function sha256Of(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Store `bytes` in the release folder under their SHA-256 (once: an existing blob of that name is
 * kept when its bytes hash to its name; a damaged one is written again).
 */
export async function writeBlob(releaseDir: string, bytes: Uint8Array): Promise<ReleaseFile> {
  const sha256 = sha256Of(bytes);
  const file = `${BLOBS}/${sha256}`;
  const at = path.join(await releaseSubdir(releaseDir, BLOBS), sha256);
  if (!(await isIntactBlob(releaseDir, { file, length: bytes.length, sha256 }))) await writeFileAtomically(at, bytes);
  return { file, length: bytes.length, sha256 };
}

/** Whether the blob's file is there, a regular file (no link) of its length whose bytes hash to its name. */
async function isIntactBlob(releaseDir: string, blob: ReleaseFile): Promise<boolean> {
  const existing = await lstat(path.join(releaseDir, blob.file)).catch(() => undefined);
  return !!existing?.isFile() && existing.size === blob.length && (await blobProblem(releaseDir, blob)) === null;
}

/**
 * Store the file at `file` as a blob, a slice at a time (a model file of gigabytes is never held
 * in memory): hashed as it is copied into a temporary file of the blobs folder, synced, then
 * renamed to its SHA-256 (an intact blob of that name is kept). A regular file only.
 */
export async function writeBlobFromFile(releaseDir: string, file: string): Promise<ReleaseFile> {
  const dir = await releaseSubdir(releaseDir, BLOBS);
  const src = await open(file, 'r');
  const tmp = path.join(dir, `.incoming.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
  try {
    const st = await src.stat();
    if (!st.isFile()) throw new ModelFormatError(`${file} is not a regular file: a release stores the model's own files only`, { file });
    const out = await open(tmp, 'wx');
    const hash = createHash('sha256');
    let length = 0;
    try {
      const chunk = new Uint8Array(4 << 20);
      for (;;) {
        const { bytesRead } = await src.read(chunk, 0, chunk.length, length);
        if (bytesRead === 0) break;
        const part = chunk.subarray(0, bytesRead);
        hash.update(part);
        await out.write(part, 0, bytesRead, length);
        length += bytesRead;
      }
      await out.sync();
    } finally {
      await out.close();
    }
    if (length !== st.size) throw new ModelFormatError(`${file} changed size while it was stored (${st.size} bytes, then ${length}): add it again when nothing writes it`, { file });
    const sha256 = hash.digest('hex');
    const blob = { file: `${BLOBS}/${sha256}`, length, sha256 };
    if (await isIntactBlob(releaseDir, blob)) return blob;
    await rename(tmp, path.join(dir, sha256));
    await syncDir(dir);
    return blob;
  } finally {
    await src.close();
    await rm(tmp, { force: true });
  }
}

/**
 * What is wrong with a blob of the release folder, or null when its file is a regular file of
 * the recorded length whose bytes hash to the recorded SHA-256 (read in chunks: a version's file
 * may be large).
 */
export async function blobProblem(releaseDir: string, blob: ReleaseFile): Promise<string | null> {
  let fh;
  try {
    fh = await open(path.join(releaseDir, blob.file), 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw e;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) return 'not a regular file';
    if (st.size !== blob.length) return `${st.size} bytes, not the recorded ${blob.length}`;
    const hash = createHash('sha256');
    const chunk = new Uint8Array(Math.min(blob.length, 1 << 20) || 1);
    let at = 0;
    for (;;) {
      const { bytesRead } = await fh.read(chunk, 0, chunk.length, at);
      if (bytesRead === 0) break;
      hash.update(chunk.subarray(0, bytesRead));
      at += bytesRead;
    }
    if (at !== blob.length) return `${at} bytes, not the recorded ${blob.length}`;
    const found = hash.digest('hex');
    return found === blob.sha256 ? null : `bytes whose SHA-256 is ${found}, not its name`;
  } finally {
    await fh.close();
  }
}

/**
 * Check every blob a manifest will list before it is published: a damaged one would be
 * downloaded by every device, refused there, and each would fall back to the full model.
 */
export async function verifyBlobs(releaseDir: string, blobs: readonly { blob: ReleaseFile; what: string }[]): Promise<void> {
  const damaged: { file: string; what: string; problem: string }[] = [];
  for (const { blob, what } of blobs) {
    const problem = await blobProblem(releaseDir, blob);
    if (problem) damaged.push({ file: blob.file, what, problem });
  }
  if (!damaged.length) return;
  throw new ModelFormatError(
    `release folder ${releaseDir}: ${damaged.map((d) => `${d.file} (${d.what}) is ${d.problem}`).join('; ')}; nothing was published: restore ${damaged.length === 1 ? 'that blob' : 'those blobs'} from a copy of the release folder (a blob's name is the SHA-256 of its bytes: \`sha256sum\` checks one), then publish again`,
    { damaged },
  );
}

/** Read a blob back, checking its length and hash (a damaged release folder is caught here). */
export async function readBlob(releaseDir: string, blob: ReleaseFile): Promise<Uint8Array> {
  await releaseSubdir(releaseDir, BLOBS);
  let bytes: Uint8Array;
  try {
    bytes = (await readRegularFile(path.join(releaseDir, blob.file), { maxBytes: blob.length })) ?? new Uint8Array();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EFBIG' && code !== 'EFTYPE') throw e;
    throw new ModelFormatError(`release folder ${releaseDir}: ${blob.file} is not the recorded blob (${(e as Error).message}): the folder was damaged or edited; restore it from a copy`, { file: blob.file });
  }
  if (bytes.length !== blob.length || sha256Of(bytes) !== blob.sha256) {
    throw new ModelFormatError(`release folder ${releaseDir}: ${blob.file} is ${bytes.length} bytes with another SHA-256 than recorded (${blob.length} bytes, ${blob.sha256}): the folder was damaged or edited; restore it from a copy`, { file: blob.file });
  }
  return bytes;
}

/** Copy a blob to `to` (a file of a model being materialized). */
export async function copyBlob(releaseDir: string, blob: ReleaseFile, to: string): Promise<void> {
  await writeFile(to, await readBlob(releaseDir, blob));
}
