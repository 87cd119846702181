/** Model and payload files for the CLI. */
import { access, constants, cp, mkdir, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { applyPayload } from '../src/apply/index.ts';
import { getHasher } from '../src/core/hasher.ts';
import { openTfjsModelDir } from '../src/io/tfjs-artifacts.ts';
import { UsageError } from '../src/core/errors.ts';
import type { WeightStore } from '../src/core/weight-store.ts';
import { isMissingFile } from './common.ts';

/** Read a payload file with an error that says what to do when it is missing. */
export async function readPayloadFile(path: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (e) {
    if (isMissingFile(e)) throw new UsageError(`no payload file at ${path}: check the path (payloads are written by \`ndiff diff\` or \`ndiff train\`)`, { path });
    throw e;
  }
}


/** `--expires` as seconds since the epoch: an ISO date or a duration from now (`30d`, `12h`, `90m`). */
export function parseExpiry(s: string, now = Date.now()): number {
  const d = /^(\d+)\s*([dhm])$/.exec(s.trim());
  if (d) return Math.floor(now / 1000) + Number(d[1]) * { d: 86400, h: 3600, m: 60 }[d[2] as 'd' | 'h' | 'm'];
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw new UsageError(`--expires ${JSON.stringify(s)} is not understood: use an ISO date (2027-01-31T00:00:00Z) or a duration from now (30d, 12h, 90m)`);
  return Math.floor(t / 1000);
}

/**
 * `--model-out`: copy the base folder to `outDir` and apply the payload to it, giving the model
 * exactly as a device holds it after this update (the base of the next diff in a chain: base +
 * payload can differ from the target in the last bit of a weight). Returns its fingerprint.
 */
export async function writeUpdatedModel(baseDir: string, outDir: string, payload: Uint8Array): Promise<string> {
  await mkdir(outDir, { recursive: true });
  await cp(baseDir, outDir, { recursive: true });
  return (await applyPayload(await openTfjsModelDir(outDir), payload, { hasher: await getHasher() })).targetFingerprint;
}

/**
 * Check, before any long work, that `path` can be written as the output of `flag`: its folder is
 * created if missing and must be writable, and `path` must not be a folder. Training for an hour
 * and then failing to write the payload is the failure this prevents.
 */
export async function checkOutputPath(path: string, flag: string, kind: 'file' | 'folder' = 'file'): Promise<void> {
  const existing = await stat(path).catch(() => undefined);
  if (existing && kind === 'file' && existing.isDirectory()) {
    throw new UsageError(`${flag} ${path} is a folder: name a file to write`, { path });
  }
  const parent = kind === 'folder' && !existing ? dirname(path) : kind === 'folder' ? path : dirname(path);
  try {
    await mkdir(parent, { recursive: true });
    await access(parent, constants.W_OK);
    if (existing && kind === 'file') await access(path, constants.W_OK);
  } catch (e) {
    throw new UsageError(`cannot write ${flag} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message} on ${existing && kind === 'file' ? path : parent}; choose a writable location`, { path });
  }
}
