/**
 * The release record, `release.json`: the build server's memory of one model's releases. It is
 * where the model id and the version numbers (the payloads' sequence numbers) come from, never a
 * folder name or a hand-kept counter. It stays on the build server with the folder (a static
 * host may serve it: it holds nothing secret, but devices never read it).
 *
 * ```json
 * {"format": "neural-diff-release-record", "version": 1, "modelId": "kws", "modelKind": "tfjs",
 *  "history": 3, "release": 4, "versions": [...], "payloads": [...], "pending": null}
 * ```
 */
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { ModelFormatError, UsageError } from '../core/errors.ts';
import { writeFileAtomically } from '../io/durable/durable.ts';
import type { ManifestPayload, ManifestVersion } from '../updater/manifest.ts';

/** The record's file name in the release folder. */
export const RECORD_FILE = 'release.json';
/** Where finished jobs leave their results until the next publication. */
export const JOBS_DIR = 'jobs';

/** How payloads into a new version are made. */
export interface EdgePolicy {
  /** `exact`: every changed weight, bit for bit (default). `topk`: the largest changes within `budget`. */
  method: 'exact' | 'topk';
  /** With `topk`: the byte budget (`1%`, `40KB`, bytes). */
  budget?: string;
}

/** One payload to make: from a state of an older version to the new one. */
export interface ReleaseJob {
  /** `v4-from-v2`, or `v4-from-v2-<8 hex>` from a state a lossy payload reached. */
  id: string;
  fromVersion: number;
  toVersion: number;
  /** The fingerprint of the base. */
  base: string;
  /** When the base is a state a lossy payload reached: that payload's SHA-256. */
  via?: string;
  policy: EdgePolicy;
}

/** What a finished job left: the payload, or why none was published. */
export interface JobResult {
  id: string;
  payload?: ManifestPayload;
  skipped?: string;
  /** How the payload was built (`ndiff release job`); absent for a payload taken in with `--payload`. */
  policy?: EdgePolicy;
}

/** A version of the record (the manifest's, plus where it came from). */
export interface RecordVersion extends ManifestVersion {
  addedAt: string;
  /** The path it was added from (informative only). */
  source: string;
}

/** The record. */
export interface ReleaseRecord {
  format: 'neural-diff-release-record';
  version: 1;
  modelId: string;
  modelKind: 'tfjs' | 'onnx';
  /** Payloads are made from each of the last `history` versions. */
  history: number;
  /** The release number of the last manifest written (0 before the first). */
  release: number;
  versions: RecordVersion[];
  payloads: ManifestPayload[];
  /** A version added with `--plan` whose jobs are not all published yet. */
  pending: { version: number; jobs: ReleaseJob[] } | null;
}

/** Read the record of `releaseDir`; undefined when the folder has none yet. */
export async function readRecord(releaseDir: string): Promise<ReleaseRecord | undefined> {
  let text: string;
  try {
    text = await readFile(path.join(releaseDir, RECORD_FILE), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  let doc: ReleaseRecord;
  try {
    doc = JSON.parse(text) as ReleaseRecord;
  } catch (e) {
    throw new ModelFormatError(`${path.join(releaseDir, RECORD_FILE)} is not JSON (${(e as Error).message}): restore it from a copy; without it the release's version numbers are lost`);
  }
  if (doc?.format !== 'neural-diff-release-record' || doc.version !== 1 || typeof doc.modelId !== 'string' || !Array.isArray(doc.versions) || !Array.isArray(doc.payloads)) {
    throw new ModelFormatError(`${path.join(releaseDir, RECORD_FILE)} is not a release record (expected format "neural-diff-release-record", version 1): is this the right folder?`);
  }
  return doc;
}

/** Write the record atomically. */
export async function writeRecord(releaseDir: string, record: ReleaseRecord): Promise<void> {
  await writeFileAtomically(path.join(releaseDir, RECORD_FILE), new TextEncoder().encode(JSON.stringify(record, null, 2) + '\n'));
}

/** The record's version `n`. */
export function recordVersion(record: ReleaseRecord, n: number): RecordVersion {
  const v = record.versions.find((x) => x.version === n);
  if (!v) throw new UsageError(`release of ${JSON.stringify(record.modelId)} has no version ${n} (it has ${record.versions.map((x) => x.version).join(', ') || 'none'})`);
  return v;
}

/** The newest version (undefined before the first). */
export function newestVersion(record: ReleaseRecord): RecordVersion | undefined {
  return record.versions.reduce<RecordVersion | undefined>((a, v) => (!a || v.version > a.version ? v : a), undefined);
}
