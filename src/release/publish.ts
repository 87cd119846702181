/**
 * Publishing: sign the payloads the jobs left, list them in the record, and write the signed
 * manifest with a new release number. The record is written before the manifest, so a crash in
 * between costs a release number, never reuses one (devices refuse two manifests under one
 * number). Publishing again without a new version re-signs the manifest with a fresh expiry:
 * do it before the manifest expires.
 */
import { createHash, sign as nodeSign, type KeyObject } from 'node:crypto';
import { rm } from 'node:fs/promises';
import * as path from 'node:path';
import { NeuralDiffError, PayloadFormatError, UsageError } from '../core/errors.ts';
import { keyIdOf } from '../apply/ed25519.ts';
import { toHex } from '../core/hex.ts';
import { writeFileAtomically } from '../io/durable/durable.ts';
import { rawPublicKey, signPayload } from '../sign/node-keys.ts';
import { manifestSigningInput, serializeManifest, MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_FORMAT_VERSION, type ManifestPayload, type ReleaseFile, type ReleaseManifest, type SignedManifest } from '../updater/manifest.ts';
import { readBlob, verifyBlobs, writeBlob } from './blobs.ts';
import { isStructuralPayload } from '../apply/rebuild.ts';
import { jobFiles, readJobResult, verifyJobResult } from './jobs.ts';
import { newestVersion, readRecord, writeRecord, type EdgePolicy, type JobResult, type ReleaseJob, type ReleaseRecord } from './record.ts';
import { lockRelease } from './folder.ts';
import { learnedBlobs } from './learned.ts';

/** Options of {@link publishRelease}. */
export interface PublishOptions {
  /** The Ed25519 private key that signs the manifest and the payloads. */
  key: KeyObject;
  /** Seconds since 1970 from which devices refuse the manifest. */
  expiresAt: number;
  /** Default: now. */
  createdAt?: string;
  /**
   * SHA-256s (16 or more leading hex digits) of lossy payloads publish cannot rebuild (learned
   * ones taken in with `release job --payload`) that the key holder vouches for.
   */
  accept?: string[];
  /**
   * Check every job's result before refusing (default: refuse at the first): the error then names
   * each refused job and why (`details.refused`: `{job, reason}`), as `ndiff release run` shows them.
   */
  checkAll?: boolean;
  /** Called once the new manifest is written (the publication is out: nothing to undo after it). */
  onManifestWritten?: () => void;
  /**
   * Results already checked (by `release run` as they arrived), by job id: a verdict is taken
   * only when its key is {@link verdictKey} of the job, result, payload bytes and accepted
   * hashes publish reads now; any other result is checked again here.
   */
  verdicts?: ReadonlyMap<string, CheckedResult>;
}

/** A result that passed `verifyJobResult` (src/release/jobs.ts), bound to the exact inputs checked. */
export interface CheckedResult {
  key: string;
  entry: ManifestPayload;
}

/**
 * What a check's verdict is bound to: SHA-256 over the model id, the versions' fingerprints, the
 * job (as the record plans it), its result,
 * the payload's bytes and the accepted hashes. Another byte anywhere, another key.
 */
export function verdictKey(record: ReleaseRecord, job: ReleaseJob, result: JobResult, payload: Uint8Array, accepted: readonly string[]): string {
  const h = createHash('sha256');
  for (const part of [record.modelId, JSON.stringify(record.versions.map((v) => v.fingerprint)), JSON.stringify(job), JSON.stringify(result), JSON.stringify(accepted.map((a) => a.toLowerCase()))]) {
    h.update(part).update('\0');
  }
  return h.update(payload).digest('hex');
}

/**
 * Remove the blobs of a plan's learned inputs (`inputs`: training data, eval inputs, a teacher)
 * that no version or payload of `record` uses: once the plan is published or cancelled, nothing
 * reads them, and the folder is served (a file that cannot go is left).
 */
export async function dropPlanInputs(releaseDir: string, record: ReleaseRecord, inputs: readonly ReleaseFile[]): Promise<void> {
  const used = new Set([...record.versions.flatMap((v) => v.files.map((f) => f.file)), ...record.payloads.map((p) => p.file)]);
  for (const f of inputs) if (!used.has(f.file)) await rm(path.join(releaseDir, f.file), { force: true }).catch(() => {});
}

/** What a publication wrote. */
export interface PublishResult {
  release: number;
  latest: number;
  /** Payloads added by this publication. */
  added: number;
  /** Jobs whose payload was not kept, and why. */
  skipped: { id: string; why: string }[];
  /**
   * Lossy payloads this publication signed (they end near their version, not at it), each with
   * the policy its job was planned with and the one its result was built by (a job may give its
   * edge its own budget).
   */
  lossy: { id: string; payload: ManifestPayload; planned: EdgePolicy; built?: EdgePolicy }[];
  manifest: ReleaseManifest;
}

/** The signed manifest of `record` (its versions and payloads), as it would be written. */
export function signManifest(manifest: ReleaseManifest, key: KeyObject): SignedManifest {
  const sig = new Uint8Array(nodeSign(null, manifestSigningInput(manifest), key));
  return { signed: manifest, signatures: [{ keyId: keyIdOf(rawPublicKey(key)), sig: toHex(sig) }] };
}

/**
 * Read the release folder's record and publish it ({@link publishRelease}), under the folder's
 * lock: one `add`, `publish` or `cancel` at a time.
 */
export async function publishReleaseFolder(releaseDir: string, options: PublishOptions): Promise<PublishResult> {
  const unlock = await lockRelease(releaseDir);
  try {
    const record = await readRecord(releaseDir);
    if (!record) throw new UsageError(`${releaseDir} holds no release (no release.json): create it with \`ndiff release add --release ${releaseDir} --model PATH --model-id ID --key private.pem\``);
    return await publishRelease(releaseDir, record, options);
  } finally {
    await unlock();
  }
}

/** Sign and list the pending jobs' payloads (all must have run), then write a new manifest. */
export async function publishRelease(releaseDir: string, record: ReleaseRecord, options: PublishOptions): Promise<PublishResult> {
  const latest = newestVersion(record);
  if (!latest) throw new UsageError(`release folder ${releaseDir} has no version yet: add one first (ndiff release add --release ${releaseDir} --model PATH ...)`);
  const accept = (options.accept ?? []).map((a) => a.toLowerCase());
  for (const a of accept) if (!/^[0-9a-f]{16,64}$/.test(a)) throw new UsageError(`accept (--accept) ${JSON.stringify(a)}: expected the SHA-256 of a payload (16 to 64 hex digits, as publish prints it)`);
  const skipped: { id: string; why: string }[] = [];
  const lossy: PublishResult['lossy'] = [];
  let added = 0;
  const finished = record.pending?.jobs.map((j) => j.id) ?? [];
  // Learned jobs' training data, eval inputs and teacher: needed by the plan only, not served once it is published.
  const planInputs = record.pending?.jobs.flatMap((j) => learnedBlobs(j.policy.learned)) ?? [];
  if (record.pending) {
    const refused: { job: string; reason: string }[] = [];
    // With checkAll, a job's refusal is noted and the next job checked; else the first throws.
    const check = async <T>(job: ReleaseJob, step: () => Promise<T>): Promise<T | undefined> => {
      try {
        return await step();
      } catch (e) {
        if (!options.checkAll || !(e instanceof NeuralDiffError)) throw e;
        refused.push({ job: job.id, reason: e.message.split(/; nothing was signed/)[0] });
        return undefined;
      }
    };
    const results = await Promise.all(record.pending.jobs.map(async (j) => ({ job: j, done: await check(j, () => readJobResult(releaseDir, j.id).then((r) => r ?? null)) })));
    const missing = results.filter((r) => r.done === null).map((r) => r.job.id);
    if (missing.length) {
      throw new UsageError(`version ${record.pending.version} has ${missing.length} job(s) not run yet (${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}): run each with \`ndiff release job --release ${releaseDir} --id <id>\` (or copy their jobs/ files here), then publish`, { missing });
    }
    // Every result is checked before anything is signed (jobs run without the key: their files are claims).
    const verified: { entry: ManifestPayload; payload: Uint8Array; job: ReleaseJob; result: JobResult }[] = [];
    for (const { job, done } of results) {
      if (!done) continue; // refused (checkAll)
      const { result, payload } = done;
      if (!result.payload || !payload) {
        skipped.push({ id: job.id, why: result.skipped ?? 'no payload' });
        continue;
      }
      const verdict = options.verdicts?.get(job.id);
      const entry = verdict && verdict.key === verdictKey(record, job, result, payload, accept) ? verdict.entry : await check(job, () => verifyJobResult(releaseDir, record, job, result, payload, accept));
      if (entry) verified.push({ entry, payload, job, result });
    }
    if (refused.length) {
      throw new PayloadFormatError(`${refused.length} job result(s) refused (${refused.map((r) => `${r.job}: ${r.reason}`).join('; ')}); nothing was signed: run those jobs again on a machine you trust (ndiff release job --release ${releaseDir} --id ID), then publish`, { refused });
    }
    for (const { entry, payload, job, result } of verified) {
      const blob = await writeBlob(releaseDir, signPayload(payload, options.key));
      record.payloads.push({ ...entry, ...blob });
      if (!entry.exact) lossy.push({ id: job.id, payload: { ...entry, ...blob }, planned: job.policy, ...(result.policy ? { built: result.policy } : {}) });
      added++;
    }
    record.pending = null;
  }
  // Every blob the manifest lists is checked first: a damaged one would reach every device.
  await verifyBlobs(releaseDir, [
    ...record.versions.flatMap((v) => v.files.map((f) => ({ blob: f, what: `version ${v.version}'s ${f.path}` }))),
    ...record.payloads.map((p) => ({ blob: p, what: `the payload from version ${p.fromVersion} to ${p.toVersion}` })),
  ]);
  // Payloads recorded before structural ones were marked: marked now, so that devices that
  // cannot rebuild files plan around them (only an exact payload can be structural).
  for (const [i, p] of record.payloads.entries()) {
    if (p.exact && p.structural === undefined && isStructuralPayload(await readBlob(releaseDir, p))) record.payloads[i] = { ...p, structural: true };
  }
  record.release += 1;
  const manifest: ReleaseManifest = {
    format: MANIFEST_FORMAT,
    formatVersion: MANIFEST_FORMAT_VERSION,
    modelId: record.modelId,
    modelKind: record.modelKind,
    release: record.release,
    createdAt: options.createdAt ?? new Date().toISOString(),
    expiresAt: options.expiresAt,
    latest: latest.version,
    versions: record.versions.map(({ version, fingerprint, files }) => ({ version, fingerprint, files })),
    payloads: record.payloads,
  };
  await writeRecord(releaseDir, record);
  await writeFileAtomically(path.join(releaseDir, MANIFEST_FILE), serializeManifest(signManifest(manifest, options.key)));
  options.onManifestWritten?.();
  // The jobs' files are in the blobs and the record now (a file that cannot go is left: publish again removes it).
  for (const id of finished) {
    const f = jobFiles(releaseDir, id);
    await rm(f.result, { force: true }).catch(() => {});
    await rm(f.payload, { force: true }).catch(() => {});
  }
  await dropPlanInputs(releaseDir, record, planInputs);
  return { release: record.release, latest: latest.version, added, skipped, lossy, manifest };
}
