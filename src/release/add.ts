/**
 * Adding a version to a release folder: store its full package, plan the payloads into it from
 * the last K versions (jobs.ts), and, unless only planned, run them and publish.
 */
import type { KeyObject } from 'node:crypto';
import { lstat, readdir, rm, rmdir } from 'node:fs/promises';
import * as path from 'node:path';
import { UsageError } from '../core/errors.ts';
import { parseBudget } from '../diff/budget.ts';
import { errCode, makeDirs, readRegularFile, writeFileAtomically } from '../io/durable/durable.ts';
import { BLOBS } from './blobs.ts';
import { lockRelease, releaseSubdir } from './folder.ts';
import { ggufMethodRefused } from './gguf.ts';
import { modelKindOf, storePackage } from './package.ts';
import { jobFiles, planJobs, runJob, type RunJobResult } from './jobs.ts';
import { dropPlanInputs, publishRelease, type PublishResult } from './publish.ts';
import { isLearnedSpec, learnedBlobs, storeDataFolder, type LearnedInputs, type LearnedSpec } from './learned.ts';
import { JOBS_DIR, RECORD_FILE, lossyChain, newestVersion, readRecord, writeRecord, type EdgePolicy, type ReleaseJob, type ReleaseRecord } from './record.ts';

/** Options of {@link addVersion}. */
export interface AddVersionOptions {
  /** Required for the first version (the id every payload carries); later, must match the record's if given. */
  modelId?: string;
  /** Payloads from each of the last K versions (default 3; the record keeps it once set). */
  history?: number;
  /** How each payload is made (default exact). */
  policy?: EdgePolicy;
  /**
   * With a learned policy (`method: 'learned'`, planned only): the training data, eval inputs and
   * teacher (default: the new version), stored as blobs of the folder and named in each job.
   */
  learned?: LearnedInputs;
  /** Only plan: record the version and its jobs; run them with `runJob`, then `publishRelease`. */
  planOnly?: boolean;
  /** Needed unless `planOnly`: signs the payloads and the manifest. */
  key?: KeyObject;
  /** Needed unless `planOnly`: the manifest's expiry, seconds since 1970. */
  expiresAt?: number;
  onProgress?: (line: string) => void;
  /**
   * Called once the jobs have run and before anything is signed, with the lossy payloads (top-k
   * payloads that end near the version, not at it), so a caller can measure them (`ndiff release
   * add --eval`). A throw refuses the add: the folder is left as it was.
   */
  beforePublish?: (lossy: LossyJobPayload[]) => Promise<void>;
  /**
   * Keyframes: once the jobs have run (before `beforePublish`), each lossy payload is measured
   * by `agreement`, and one whose devices would agree with the version less than `threshold`
   * is made again exact (the keyframe: devices on that chain end at the version exactly).
   */
  keyframes?: KeyframePolicy;
}

/** When a lossy chain gets its keyframe (see {@link AddVersionOptions.keyframes}). */
export interface KeyframePolicy {
  /** The least agreement (0-1) with the version a lossy payload may leave devices at. */
  threshold: number;
  /**
   * The agreement (0-1) with the new version of the model devices hold once they took the
   * payload (its base, a version or the state its chain reached, rebuilt by applying the chain's
   * payloads, then the payload), on calibration inputs; undefined when it cannot be measured
   * (no keyframe is decided then).
   */
  agreement: (lossy: LossyJobPayload) => Promise<number | undefined>;
  /**
   * Before the exact payload, larger top-k payloads to try, as multiples of the job's budget
   * (e.g. `[2, 4]`; default none): the first whose devices agree at or above the threshold is
   * shipped. A multiple that reaches 100% of the model is skipped.
   */
  larger?: number[];
  /**
   * Instead of `larger`: the budgets to try, in order (`budget: 'auto'` of a release: the rest of
   * its grid, ascending), the first whose devices agree at or above the threshold shipped.
   */
  budgets?: readonly string[];
}

/** A lossy payload's drift as {@link KeyframePolicy} measured it. */
export interface DriftCheck {
  job: string;
  fromVersion: number;
  toVersion: number;
  /** Lossy payloads a device on this chain has taken with this one (1: the payload starts from a version). */
  chain: number;
  /** The budget of the payload measured first (the job's own, for a top-k job). */
  budget?: string;
  /** Agreement with the version after the chain (undefined: not measurable). */
  agreement?: number;
  threshold: number;
  /** True when the payload was made again exact: the chain ends at the version. */
  keyframe: boolean;
  /** When a larger top-k payload was shipped instead: its budget, bytes and agreement. */
  larger?: { budget: string; bytes: number; agreement: number };
  /** The keyframe's payload bytes (absent when it is not smaller than the package: devices take that). */
  keyframeBytes?: number;
}

/** A lossy payload an add made, as {@link AddVersionOptions.beforePublish} sees it. */
export interface LossyJobPayload {
  job: ReleaseJob;
  result: RunJobResult;
  /** The payload's bytes (unsigned). */
  bytes: Uint8Array;
  /** The record as the add left it (the new version pending), e.g. for `exportJob`. */
  record: ReleaseRecord;
}

/** What {@link addVersion} did. */
export interface AddVersionResult {
  modelId: string;
  version: number;
  fingerprint: string;
  /** Bytes of the new version's full package. */
  packageBytes: number;
  jobs: ReleaseJob[];
  /** What each job did (unless `planOnly`), in the order of `jobs`. */
  results?: RunJobResult[];
  /** Set unless `planOnly`. */
  published?: PublishResult;
  /** With `keyframes`: each lossy payload's drift and whether it became a keyframe. */
  drift?: DriftCheck[];
}

/**
 * Add the model at `modelPath` as the next version of the release in `releaseDir`, under the
 * folder's lock (a second `add`, `publish` or `cancel` at the same time is refused). A failed add
 * leaves the folder as it found it: the record as before, no new blob, no job file.
 */
export async function addVersion(releaseDir: string, modelPath: string, options: AddVersionOptions = {}): Promise<AddVersionResult> {
  if (!options.planOnly && (!options.key || options.expiresAt === undefined)) throw new UsageError('adding a version without plan (--plan) publishes it: key (--key) and expires (--expires) are needed, the signing key and the manifest\'s expiry');
  const existed = (await lstat(releaseDir).catch(() => undefined)) !== undefined;
  await makeDirs(releaseDir);
  const unlock = await lockRelease(releaseDir);
  let before: { record: Uint8Array | null; blobs: Set<string> } | undefined;
  let published = false;
  try {
    before = { record: await readRegularFile(path.join(releaseDir, RECORD_FILE)), blobs: new Set(await listBlobs(releaseDir)) };
    return await addLocked(releaseDir, modelPath, options, () => { published = true; });
  } catch (e) {
    // Once the manifest is written the version is out: nothing to undo.
    if (before && !published) await undoAdd(releaseDir, before);
    throw e;
  } finally {
    await unlock();
    if (!existed) await rmdir(releaseDir).catch(() => {}); // only if the failed first add left it empty
  }
}

/** The add's policy; a learned one with its inputs stored as blobs (removed again by a failed add). */
async function policyOf(releaseDir: string, options: AddVersionOptions, kind: ReleaseRecord['modelKind']): Promise<EdgePolicy> {
  const policy = options.policy ?? { method: 'exact' };
  if (kind === 'gguf' && policy.method === 'learned') throw ggufMethodRefused(options.learned?.method ?? policy.method);
  if (policy.method !== 'learned') return policy;
  if (!options.planOnly) throw new UsageError('learned payloads are trained by jobs: add with plan (--plan), then run the plan on a job queue (ndiff release run) or each job (ndiff release job)');
  const l = options.learned;
  if (!l || !policy.budget) throw new UsageError('a learned plan needs its training data (--train), its eval inputs (--eval) and a budget (--budget)');
  const spec: LearnedSpec = {
    method: l.method, train: await storeDataFolder(releaseDir, l.train, 'train (--train)'), eval: await storeDataFolder(releaseDir, l.eval, 'eval (--eval)'),
    epochs: l.epochs, seed: l.seed, tune: l.tune, threads: l.threads,
  };
  if (l.teacher !== undefined) {
    if (modelKindOf(l.teacher) !== kind) throw new UsageError(`teacher (--teacher) ${l.teacher} is not the kind of model this release holds (${kind}): give the teacher as the versions are given`, { expected: kind, found: modelKindOf(l.teacher) });
    spec.teacher = await storePackage(releaseDir, l.teacher).catch((e: unknown) => {
      throw e instanceof UsageError ? new UsageError(`teacher (--teacher): ${e.message.replace(/^model \(--model\) /, '')}`, e.details) : e;
    });
  }
  if (!isLearnedSpec(spec)) throw new UsageError(`the learned plan's options are out of range (epochs 1 to 10000, a whole seed, tune quick, thorough or off, threads 1 to 256): found ${JSON.stringify({ epochs: l.epochs, seed: l.seed, tune: l.tune, threads: l.threads })}`);
  return { ...policy, learned: spec };
}

/** The names in `blobs/` (none when it does not exist). */
async function listBlobs(releaseDir: string): Promise<string[]> {
  return readdir(path.join(releaseDir, BLOBS)).catch((e) => {
    if (errCode(e) === 'ENOENT' || errCode(e) === 'ENOTDIR') return [];
    throw e;
  });
}

/** Put a release folder back as a failed add found it: the record's bytes, and only the blobs and job files it had. */
async function undoAdd(releaseDir: string, before: { record: Uint8Array | null; blobs: Set<string> }): Promise<void> {
  const record = await readRecord(releaseDir).catch(() => undefined);
  for (const job of record?.pending?.jobs ?? []) {
    const f = jobFiles(releaseDir, job.id);
    await rm(f.result, { force: true });
    await rm(f.payload, { force: true });
  }
  if (before.record) await writeFileAtomically(path.join(releaseDir, RECORD_FILE), before.record);
  else await rm(path.join(releaseDir, RECORD_FILE), { force: true });
  for (const name of await listBlobs(releaseDir)) if (!before.blobs.has(name)) await rm(path.join(releaseDir, BLOBS, name), { force: true });
  for (const dir of [BLOBS, JOBS_DIR]) await rmdir(path.join(releaseDir, dir)).catch(() => {});
}

async function addLocked(releaseDir: string, modelPath: string, options: AddVersionOptions, onPublished: () => void): Promise<AddVersionResult> {
  const progress = options.onProgress ?? (() => {});
  const kind = modelKindOf(modelPath);
  let record: ReleaseRecord | undefined = await readRecord(releaseDir);
  if (!record) {
    if (!options.modelId) {
      throw new UsageError(`${releaseDir} holds no release yet: name the model with modelId (--model-id) (the id every payload carries and devices check; it is kept in ${releaseDir}/release.json, never taken from a folder name)`);
    }
    record = { format: 'neural-diff-release-record', version: 1, modelId: options.modelId, modelKind: kind, history: options.history ?? 3, release: 0, versions: [], payloads: [], pending: null };
  }
  if (options.modelId !== undefined && options.modelId !== record.modelId) {
    throw new UsageError(`${releaseDir} is the release of model ${JSON.stringify(record.modelId)}, not ${JSON.stringify(options.modelId)}: one release folder per model id; drop modelId (--model-id): the record keeps it; or use another folder`, { expected: record.modelId, found: options.modelId });
  }
  const kinds = { onnx: ['.onnx files', 'an .onnx file'], tflite: ['.tflite files', 'a .tflite file'], safetensors: ['.safetensors files', 'a .safetensors file'], gguf: ['.gguf models', 'a .gguf model'], tfjs: ['TF.js folders', 'a TF.js folder'] } as const;
  if (record.modelKind !== kind) throw new UsageError(`${releaseDir} holds ${kinds[record.modelKind][0]}, and ${modelPath} is ${kinds[kind][1]}: add versions of the same kind`);
  if (record.pending) {
    throw new UsageError(`version ${record.pending.version} of ${JSON.stringify(record.modelId)} was planned but not published: run its jobs (ndiff release job) and publish it (ndiff release publish), or drop it (ndiff release cancel --release ${releaseDir}), before adding another`, { pending: record.pending.version });
  }
  if (options.history !== undefined) {
    if (!Number.isSafeInteger(options.history) || options.history < 1) throw new UsageError(`history (--history) must be a whole number >= 1, found ${options.history}`, { expected: 'a whole number >= 1', found: options.history });
    record.history = options.history;
  }
  progress(`storing ${modelPath} as a full package`);
  const { files, fingerprint } = await storePackage(releaseDir, modelPath);
  const newest = newestVersion(record);
  if (newest?.fingerprint === fingerprint) throw new UsageError(`${modelPath} is version ${newest.version} again (fingerprint ${fingerprint}): nothing to add (if the add that made it was interrupted before its manifest was written, \`ndiff release publish --release ${releaseDir} --key ...\` writes it)`);
  const version = (newest?.version ?? 0) + 1;
  record.versions.push({ version, fingerprint, files, addedAt: new Date().toISOString(), source: modelPath });
  const jobs = planJobs(record, version, await policyOf(releaseDir, options, record.modelKind));
  // No job of this plan has run: a result in jobs/ under one of its ids is another plan's, written
  // after that plan was cancelled by a `release run` still live then (it takes results in without
  // this folder's lock). Taken for this plan's, publish would sign it (a top-k payload into a
  // version planned exact, say). Cleared before the plan is recorded (jobs/ checked to be no link).
  const hasJobs = (await lstat(path.join(releaseDir, JOBS_DIR)).catch(() => undefined)) !== undefined;
  if (hasJobs) await releaseSubdir(releaseDir, JOBS_DIR);
  for (const job of hasJobs ? jobs : []) {
    const f = jobFiles(releaseDir, job.id);
    const stale = (await lstat(f.result).catch(() => undefined)) !== undefined || (await lstat(f.payload).catch(() => undefined)) !== undefined;
    if (!stale) continue;
    await rm(f.result, { force: true });
    await rm(f.payload, { force: true });
    progress(`${job.id}: a result left in jobs/ by a cancelled plan (written after its cancel) removed; this plan's job has not run`);
  }
  record.pending = { version, jobs };
  await writeRecord(releaseDir, record);
  const packageBytes = files.reduce((n, f) => n + f.length, 0);
  progress(`version ${version} (${fingerprint}, ${packageBytes} bytes as a package): ${jobs.length} payload job(s)`);
  const out: AddVersionResult = { modelId: record.modelId, version, fingerprint, packageBytes, jobs };
  if (options.planOnly) return out;
  out.results = [];
  for (const job of jobs) out.results.push(await runJob(releaseDir, record, job, progress));
  if (options.keyframes) out.drift = await keyframeChains(releaseDir, record, jobs, out.results, options.keyframes, progress);
  if (options.beforePublish) {
    const lossy: LossyJobPayload[] = [];
    for (const [i, result] of out.results.entries()) {
      if (!result.payload || result.payload.exact) continue;
      const bytes = await readRegularFile(jobFiles(releaseDir, jobs[i].id).payload);
      if (!bytes) throw new UsageError(`the payload of job ${jobs[i].id} went missing from ${releaseDir}/jobs/ while the add ran: is another program writing the release folder?`);
      lossy.push({ job: jobs[i], result, bytes, record });
    }
    await options.beforePublish(lossy);
  }
  out.published = await publishRelease(releaseDir, record, { key: options.key as KeyObject, expiresAt: options.expiresAt as number, onManifestWritten: onPublished });
  return out;
}

/**
 * Measure each lossy payload's drift (the agreement with the version of the model its devices
 * hold after it) and make the ones below the threshold again exact, in place in `jobs` (their
 * policy) and `results`; the record is written again when one changed.
 */
async function keyframeChains(releaseDir: string, record: ReleaseRecord, jobs: ReleaseJob[], results: RunJobResult[], policy: KeyframePolicy, progress: (line: string) => void): Promise<DriftCheck[]> {
  if (!(policy.threshold >= 0 && policy.threshold <= 1)) throw new UsageError(`the keyframe threshold must be an agreement from 0 to 1, found ${policy.threshold}`, { expected: '0 to 1', found: policy.threshold });
  const checks: DriftCheck[] = [];
  let changed = false;
  for (const [i, result] of results.entries()) {
    if (!result.payload || result.payload.exact) continue;
    const job = jobs[i];
    const bytes = await readRegularFile(jobFiles(releaseDir, job.id).payload);
    if (!bytes) throw new UsageError(`the payload of job ${job.id} went missing from ${releaseDir}/jobs/ while the add ran: is another program writing the release folder?`);
    const agreement = await policy.agreement({ job, result, bytes, record });
    const check: DriftCheck = { job: job.id, fromVersion: job.fromVersion, toVersion: job.toVersion, chain: (job.via ? lossyChain(record, job.via).length : 0) + 1, threshold: policy.threshold, keyframe: false, ...(job.policy.budget !== undefined ? { budget: job.policy.budget } : {}), ...(agreement !== undefined ? { agreement } : {}) };
    if (agreement !== undefined && agreement < policy.threshold) {
      changed = true;
      for (const budget of policy.budgets ?? largerBudgets(job.policy, policy.larger ?? [])) {
        job.policy = { ...job.policy, budget };
        results[i] = await runJob(releaseDir, record, job, progress);
        const larger = results[i].payload;
        if (!larger || larger.exact) break; // the package, or an exact payload within the budget
        const bytes = await readRegularFile(jobFiles(releaseDir, job.id).payload);
        const a = bytes ? await policy.agreement({ job, result: results[i], bytes, record }) : undefined;
        if (a !== undefined && a >= policy.threshold) {
          check.larger = { budget, bytes: larger.length, agreement: a };
          break;
        }
      }
      if (!check.larger && !results[i].payload?.exact && results[i].payload) {
        job.policy = { method: 'exact' };
        results[i] = await runJob(releaseDir, record, job, progress);
      }
      if (!check.larger) {
        check.keyframe = true;
        if (results[i].payload) check.keyframeBytes = results[i].payload!.length;
      }
    }
    checks.push(check);
  }
  if (changed) await writeRecord(releaseDir, record);
  return checks;
}

/** The budgets `factors` times a top-k policy's own, below the whole model (none for another policy). */
export function largerBudgets(policy: EdgePolicy, factors: readonly number[]): string[] {
  if (policy.method !== 'topk' || !policy.budget) return [];
  const pct = /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(policy.budget);
  const out: string[] = [];
  for (const f of factors) {
    if (pct) {
      const p = Number(pct[1]) * f;
      if (p < 100) out.push(`${Number(p.toPrecision(6))}%`);
    } else {
      out.push(String(Math.floor(parseBudget(policy.budget, 1) * f)));
    }
  }
  return out;
}

/**
 * Drop the pending version (planned with `--plan`, not published): its entry in the record, its
 * job files, and the blobs of its package no other version uses. Under the folder's lock;
 * `beforeDrop` runs under it first, with the record (the plan's jobs taken off a job queue): when
 * it throws, nothing is dropped.
 * @returns the version dropped.
 */
export async function cancelPending(releaseDir: string, beforeDrop?: (record: ReleaseRecord) => Promise<void>): Promise<number> {
  const unlock = await lockRelease(releaseDir);
  try {
    const record = await readRecord(releaseDir);
    if (!record) throw new UsageError(`${releaseDir} holds no release (no release.json): nothing to cancel`);
    if (!record.pending) throw new UsageError(`${releaseDir} has no pending version (the newest, ${newestVersion(record)?.version ?? 'none'}, is published): nothing to cancel, nothing was changed`);
    if (beforeDrop) await beforeDrop(record);
    const { version, jobs } = record.pending;
    const planInputs = jobs.flatMap((j) => learnedBlobs(j.policy.learned));
    const dropped = record.versions.find((v) => v.version === version);
    record.versions = record.versions.filter((v) => v.version !== version);
    record.pending = null;
    await writeRecord(releaseDir, record);
    for (const job of jobs) {
      const f = jobFiles(releaseDir, job.id);
      await rm(f.result, { force: true });
      await rm(f.payload, { force: true });
    }
    const used = new Set([...record.versions.flatMap((v) => v.files.map((f) => f.file)), ...record.payloads.map((p) => p.file)]);
    for (const f of dropped?.files ?? []) if (!used.has(f.file)) await rm(path.join(releaseDir, f.file), { force: true });
    await dropPlanInputs(releaseDir, record, planInputs);
    return version;
  } finally {
    await unlock();
  }
}
