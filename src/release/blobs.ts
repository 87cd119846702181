/**
 * The content-addressed files of a release folder: `blobs/<sha256>`, written once (temp file,
 * fsync, rename), never changed, so any static host or CDN may cache them forever. Only
 * `manifest.json` changes from one publication to the next.
 */
import { createHash } from 'node:crypto';
import { lstat, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { ModelFormatError } from '../core/errors.ts';
import { readRegularFile, writeFileAtomically } from '../io/durable/durable.ts';
import { releaseSubdir } from './folder.ts';
import type { ReleaseFile } from '../updater/manifest.ts';

/** The folder of the blobs in a release folder. */
export const BLOBS = 'blobs';

/** SHA-256 of `bytes`, 64 lowercase hex chars. */
export function sha256Of(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Store `bytes` in the release folder under their SHA-256 (once: an existing blob of that name is kept). */
export async function writeBlob(releaseDir: string, bytes: Uint8Array): Promise<ReleaseFile> {
  const sha256 = sha256Of(bytes);
  const file = `${BLOBS}/${sha256}`;
  const at = path.join(await releaseSubdir(releaseDir, BLOBS), sha256);
  const existing = await lstat(at).catch(() => undefined);
  if (!existing || !existing.isFile() || existing.size !== bytes.length) {
    await writeFileAtomically(at, bytes);
  }
  return { file, length: bytes.length, sha256 };
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
