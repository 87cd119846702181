/** Model and payload files for the CLI. */
import { cp, mkdir } from 'node:fs/promises';
import { applyPayload } from '../src/apply/index.ts';
import { getHasher } from '../src/core/hasher.ts';
import { openTfjsModelDir } from '../src/io/tfjs-artifacts.ts';
import { readFolderModelId, recordFolderModelId } from '../src/io/model-dir-update.ts';
import { decodePayload } from '../src/core/format.ts';
import { UsageError } from '../src/core/errors.ts';
import { readPayloadFile as readPayloadFileWithin } from '../src/io/payload-file.ts';
import type { WeightStore } from '../src/core/weight-store.ts';

/** Bytes of the model as float32 (4 per weight): what `1%` budgets are a percentage of. */
export function modelBytes(store: WeightStore): number {
  return store.list().reduce((n, t) => n + 4 * t.shape.reduce((a, b) => a * b, 1), 0);
}

/**
 * Read a payload file: refused from its size when over `maxPayloadBytes` (never read whole),
 * and refused when it is not a regular file (see src/io/payload-file.ts).
 */
export async function readPayloadFile(path: string, maxPayloadBytes?: number): Promise<Uint8Array> {
  return readPayloadFileWithin(path, maxPayloadBytes === undefined ? {} : { maxPayloadBytes });
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
  const fingerprint = (await applyPayload(await openTfjsModelDir(outDir), payload, { hasher: await getHasher() })).targetFingerprint;
  // The folder holds this payload's model: the next diff against it defaults to the same id.
  await recordFolderModelId(outDir, decodePayload(payload).header.modelId);
  return fingerprint;
}

/**
 * The model id a diff of `baseDir` carries when `--model-id` is not given: the one the folder
 * recorded (an apply, or `--model-out`, writes it), else the folder's name. One id along a chain
 * of updates is what the device's rollback protection keys on.
 */
export async function defaultModelId(baseDir: string): Promise<string> {
  return (await readFolderModelId(baseDir)) ?? (baseDir.replace(/\/+$/, '').split('/').pop() || 'model');
}
