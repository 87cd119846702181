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
import { ModelFormatError, PayloadFormatError, UsageError } from '../core/errors.ts';
import { writeFileAtomically } from '../io/durable/durable.ts';
import { isLearnedSpec, learnedIdSuffix, type LearnedCloseness, type LearnedSpec } from './learned.ts';
import { MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_FORMAT_VERSION, validateManifest, type ManifestPayload, type ManifestVersion } from '../updater/manifest.ts';

/**
 * The id of a planned job: `v4-from-v2`, `v4-from-v2-<8 hex>` from a state a lossy payload
 * reached, and for a learned job its method after `-train-` (`v4-from-v3-train-sparse`).
 */
export const JOB_ID = /^v\d+-from-v\d+(-[0-9a-f]{8})?(-train-[a-z][a-z-]{0,30})?$/;

/** The record's file name in the release folder. */
export const RECORD_FILE = 'release.json';
/** Where finished jobs leave their results until the next publication. */
export const JOBS_DIR = 'jobs';

/** How payloads into a new version are made. */
export interface EdgePolicy {
  /**
   * `exact`: every changed weight, bit for bit (default). `topk`: the largest changes within
   * `budget`. `learned`: a diff trained toward the version within `budget`, as `learned` says.
   */
  method: 'exact' | 'topk' | 'learned';
  /** With `topk` and `learned`: the byte budget (`1%`, `40KB`, bytes). */
  budget?: string;
  /** With `learned`: how the worker trains the payload, and the inputs the run measures it on (learned.ts). */
  learned?: LearnedSpec;
  /**
   * With `topk`, for a payload from a state a lossy payload reached (a lossy chain): true
   * (default) carries what the earlier payloads left out into this one's target (the payload
   * goes from the state toward the version itself); false ships only the version's own change
   * (from the previous version), so what was left out stays out. Kept for comparison: devices
   * drift further without it.
   */
  errorFeedback?: boolean;
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
  /** A learned job: the closeness the worker measured (a claim: the run measures it again before signing). */
  closeness?: LearnedCloseness;
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
  modelKind: 'tfjs' | 'onnx' | 'tflite' | 'safetensors' | 'gguf';
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
  validateRecord(doc, path.join(releaseDir, RECORD_FILE));
  await checkAgainstManifest(releaseDir, doc);
  return doc;
}

/**
 * Check every field of a record read back (every command reads it before acting, and `publish`
 * signs what it says): the model id, release and version numbers, files and payloads as a
 * manifest must hold them (the manifest's own rules, src/updater/manifest.ts), versions numbered
 * 1, 2, 3... and a pending version that is the newest. A record edited by hand or by an attacker
 * is refused, never signed.
 * @throws ModelFormatError naming the first field that is wrong
 */
export function validateRecord(doc: ReleaseRecord, file: string): void {
  const bad = (what: string, found: unknown): never => {
    throw new ModelFormatError(`${file}: expected ${what}, found ${JSON.stringify(found)?.slice(0, 80)}: the record was edited or damaged, and publishing it would sign what it says; restore it from a copy (or from the folder's backups)`, { file, field: what });
  };
  const whole = (v: unknown, min: number) => typeof v === 'number' && Number.isSafeInteger(v) && v >= min;
  if (!/^[^\u0000-\u001f\u007f]{1,200}$/.test(doc.modelId)) bad('a model id of 1 to 200 characters without control characters', doc.modelId);
  if (!['tfjs', 'onnx', 'tflite', 'safetensors', 'gguf'].includes(doc.modelKind)) bad('modelKind "tfjs", "onnx", "tflite", "safetensors" or "gguf"', doc.modelKind);
  if (!whole(doc.history, 1)) bad('history to be a whole number >= 1', doc.history);
  if (!whole(doc.release, 0)) bad('release to be a whole number >= 0 (the last manifest\'s release number)', doc.release);
  doc.versions.forEach((v, i) => {
    if (v?.version !== i + 1) bad(`versions[${i}].version to be ${i + 1} (versions are numbered 1, 2, 3... in order)`, v?.version);
  });
  if (doc.versions.length) {
    try {
      validateManifest({
        format: MANIFEST_FORMAT, formatVersion: MANIFEST_FORMAT_VERSION, modelId: doc.modelId, modelKind: doc.modelKind, release: Math.max(1, doc.release),
        createdAt: '', expiresAt: 1, latest: doc.versions.length,
        versions: doc.versions.map((v) => ({ version: v?.version, fingerprint: v?.fingerprint, files: v?.files })),
        payloads: doc.payloads,
      });
    } catch (e) {
      if (!(e instanceof PayloadFormatError)) throw e;
      bad(`what a manifest may list (${e.message.replace(/^release manifest: /, '').replace(/: the manifest is not one[\s\S]*$/, '')})`, 'that');
    }
  } else if (doc.payloads.length) {
    bad('no payloads before the first version', doc.payloads.length);
  }
  if (doc.pending !== null) {
    const p = doc.pending;
    if (typeof p !== 'object' || p.version !== doc.versions.length || doc.versions.length === 0 || !Array.isArray(p.jobs)) bad('pending to be null or the newest version with its jobs', p);
    if (doc.payloads.some((x) => x.toVersion === p.version)) bad(`no payloads into the pending version ${p.version} yet`, p.version);
    p.jobs.forEach((j, i) => {
      const ok = typeof j === 'object' && j !== null && typeof j.id === 'string' && JOB_ID.test(j.id) && j.toVersion === p.version && whole(j.fromVersion, 1) && j.fromVersion < p.version
        && typeof j.base === 'string' && /^[0-9a-f]{16}$/.test(j.base) && (j.via === undefined || (typeof j.via === 'string' && /^[0-9a-f]{64}$/.test(j.via)))
        && typeof j.policy === 'object' && j.policy !== null && (j.policy.method === 'exact' || (j.policy.method === 'topk' && typeof j.policy.budget === 'string')
          || (j.policy.method === 'learned' && typeof j.policy.budget === 'string' && isLearnedSpec(j.policy.learned) && j.id.endsWith(learnedIdSuffix(j.policy.learned.method))))
        && (j.policy.method === 'learned' || !/-train-/.test(j.id))
        && (j.policy.errorFeedback === undefined || typeof j.policy.errorFeedback === 'boolean');
      if (!ok) bad(`pending.jobs[${i}] to be a job \`ndiff release add --plan\` writes`, j);
    });
  }
}

/**
 * The record against the manifest the folder serves (signed, so what devices already hold): the
 * same model id, and a release number at least the manifest's (a record whose number went back
 * would sign a number devices already saw).
 */
async function checkAgainstManifest(releaseDir: string, record: ReleaseRecord): Promise<void> {
  let signed: { modelId?: unknown; release?: unknown } | undefined;
  try {
    signed = (JSON.parse(await readFile(path.join(releaseDir, MANIFEST_FILE), 'utf8')) as { signed?: typeof signed })?.signed;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new ModelFormatError(`${path.join(releaseDir, MANIFEST_FILE)} cannot be read (${(e as Error).message}): the release folder was damaged; restore it from a copy`);
  }
  const file = path.join(releaseDir, RECORD_FILE);
  if (signed?.modelId !== record.modelId) {
    throw new ModelFormatError(`${file} names model ${JSON.stringify(record.modelId)}, the manifest this folder serves is for ${JSON.stringify(signed?.modelId)}: the record was edited (a release folder keeps one model id for good); restore it from a copy`, { expected: signed?.modelId, found: record.modelId });
  }
  if (typeof signed.release !== 'number' || record.release < signed.release) {
    throw new ModelFormatError(`${file} says release ${record.release}, the manifest this folder serves is release ${String(signed.release)}: publishing would reuse release numbers devices have seen; restore the record from a copy`, { expected: signed.release, found: record.release });
  }
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

/**
 * The lossy payloads a device took, in order, to reach the state that payload `sha256` leads to:
 * from a version (the first payload's base is a version's fingerprint) through the states
 * earlier lossy payloads reached. The state is rebuilt by applying them, never assumed.
 * @throws ModelFormatError when the record does not list a payload of the chain
 */
export function lossyChain(record: ReleaseRecord, sha256: string): ManifestPayload[] {
  const chain: ManifestPayload[] = [];
  let at = record.payloads.find((p) => p.sha256 === sha256);
  if (!at) throw new ModelFormatError(`release record: a state names payload ${sha256}, which the record does not list: the folder was damaged or edited`);
  while (at) {
    chain.unshift(at);
    const base: string = at.base;
    const toward: number = at.fromVersion;
    const before = record.payloads.find((p) => !p.exact && p.target === base && p.toVersion === toward);
    if (!before) {
      const from = recordVersion(record, toward);
      if (from.fingerprint !== base) throw new ModelFormatError(`release record: payload ${at.sha256} starts from ${base}, neither version ${toward} nor a state a listed lossy payload reached: the folder was damaged or edited`);
      return chain;
    }
    if (chain.length > record.payloads.length) throw new ModelFormatError('release record: its lossy payloads lead in a circle: the folder was damaged or edited');
    at = before;
  }
  return chain;
}
