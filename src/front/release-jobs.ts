/**
 * `release.job`, `release.publish`, `release.show` and `release.cancel` (src/front/release.ts):
 * what `ndiff release job|publish|show|cancel` do, as library calls.
 */
import type { KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { UsageError } from '../core/errors.ts';
import { cancelPending } from '../release/add.ts';
import { adoptJobPayload, exportJob, runJob, type RunJobResult } from '../release/jobs.ts';
import { publishReleaseFolder } from '../release/publish.ts';
import type { JobResult, ReleaseJob, ReleaseRecord } from '../release/record.ts';
import { cancelPlanOnQueue } from '../release/queue/cancel.ts';
import type { QueueCancel } from '../release/queue/status.ts';
import { planNames, queueUrlOf } from '../release/queue/engine.ts';
import { NO_PROGRESS, type Progress } from './progress.ts';
import { budgetOf, expiryOf, lossySignedWarnings, lossyText, privateKeyOf, readExisting, type ReleaseDirOptions } from './release-common.ts';

/** What `release.job` takes (`ndiff release job`): the job by `id` or `index`, and what to do with it. */
export interface ReleaseJobOptions extends ReleaseDirOptions {
  /** The job's id (`v3-from-v1`), as the plan prints it. */
  id?: string;
  /** Instead of `id`: the job's place in the plan, from 0 (a Kubernetes Indexed Job's JOB_COMPLETION_INDEX). */
  index?: number;
  /** This edge's method (default: the plan's). */
  method?: 'exact' | 'topk';
  /** With `topk`: this edge's budget (`1%`, `40KB`, a number of bytes). */
  budget?: string | number;
  /** Write the job's base and target as `base/` and `target/` in this folder, to learn the payload elsewhere; runs nothing. */
  export?: string;
  /** Take this payload (a path or its bytes, unsigned, from `train` or `diff`) as the job's, checked against its base. */
  payload?: string | Uint8Array;
  /** Progress lines, as `ndiff release job` prints them on stderr. */
  onProgress?: Progress;
}

/** What `release.job` returns with `export`: where the job's models are (the fields `--json` prints). */
export interface ReleaseJobExport {
  id: string;
  /** The job's base (a version, or the state a lossy chain reached): the `base` of a training. */
  base: string;
  /** The version the job ends at: the training's `teacher`. */
  teacher: string;
  /** The model id and sequence the learned payload must carry. */
  modelId: string;
  sequence: number;
}

/**
 * What `release.job` returns: with `export`, where the models are; else the job's result
 * (the payload left in `jobs/`, or why none was kept). `job` is the planned job; `warnings` what
 * `ndiff release job` prints on stderr.
 */
export type ReleaseJobResult = (ReleaseJobExport | RunJobResult) & { job: ReleaseJob; warnings: string[] };

/** The pending job named by `id` or `index`. */
function pendingJob(o: ReleaseJobOptions, record: ReleaseRecord): ReleaseJob {
  if ((o.id === undefined) === (o.index === undefined)) throw new UsageError('name the job with id (--id v3-from-v1) or index (--index), its place in the plan from 0 (a Kubernetes Indexed Job\'s JOB_COMPLETION_INDEX): one of the two');
  const jobs = record.pending?.jobs ?? [];
  if (o.index !== undefined) {
    if (!Number.isSafeInteger(o.index) || o.index < 0 || o.index >= jobs.length) throw new UsageError(`index (--index) ${o.index}: the plan of ${o.release} has ${jobs.length} job(s), numbered 0 to ${jobs.length - 1}${jobs.length ? '' : ' (no version is pending: add one with plan (--plan) first)'}`, { expected: `0 to ${jobs.length - 1}`, found: o.index });
    return jobs[o.index];
  }
  const job = jobs.find((j) => j.id === o.id);
  if (!job) throw new UsageError(`no pending job ${JSON.stringify(o.id)} in ${o.release}: ${jobs.length ? `the pending jobs are ${jobs.map((j) => j.id).join(', ')}` : 'no version is pending (add one with plan (--plan) first)'}`, { found: o.id });
  return job;
}

/**
 * Run one planned job, as `ndiff release job` does (it needs the folder, not the key): the
 * payload is left in `jobs/` for `publish`. With `export`, the job's models are written for a
 * training instead; with `payload`, a trained payload is checked against the job's base and
 * taken as its result.
 */
export async function releaseJob(o: ReleaseJobOptions): Promise<ReleaseJobResult> {
  const record = await readExisting(o.release);
  const job = pendingJob(o, record);
  const progress = o.onProgress ?? NO_PROGRESS;
  const budget = budgetOf(o.budget);
  if (o.export !== undefined && o.payload !== undefined) throw new UsageError('export (--export) writes the job\'s models for training, payload (--payload) takes the trained payload back: run them as two steps');
  if ((o.export !== undefined || o.payload !== undefined) && (o.method !== undefined || budget !== undefined)) throw new UsageError('method (--method) and budget (--budget) choose how this call builds the payload; with export (--export) or payload (--payload) the payload is made by your training command');
  if (o.export !== undefined) {
    const out = await exportJob(o.release, record, job, o.export);
    return { id: job.id, base: out.base, teacher: out.target, modelId: record.modelId, sequence: job.toVersion, job, warnings: [] };
  }
  if (o.payload !== undefined) {
    const bytes = typeof o.payload === 'string' ? new Uint8Array(await readFile(o.payload)) : o.payload;
    const res: JobResult = await adoptJobPayload(o.release, record, job, bytes, progress);
    return { ...res, job, warnings: [] };
  }
  // A policy for this edge alone (a CI matrix may give each edge its own budget).
  if (o.method !== undefined || budget !== undefined) {
    const method = o.method ?? (budget ? 'topk' : 'exact');
    if (method !== 'exact' && method !== 'topk') throw new UsageError(`method (--method) ${JSON.stringify(method)}: expected exact or topk`, { expected: ['exact', 'topk'], found: method });
    if (method === 'topk' && !budget) throw new UsageError('method topk (--method topk) needs budget (--budget), e.g. 2%');
    if (method === 'exact' && budget) throw new UsageError('budget (--budget) applies to method topk; exact payloads carry every change');
    if (job.via && method !== 'exact' && job.policy.method === 'exact') throw new UsageError(`job ${job.id} starts from a state a lossy payload reached and ends its chain: its payload is exact, so that the chain ends at version ${job.toVersion} exactly`);
    job.policy = { method, ...(budget ? { budget } : {}) };
  }
  const res = await runJob(o.release, record, job, progress);
  const warnings = res.payload && !res.payload.exact && job.policy.method === 'learned' ? [lossyText(job, res)] : res.payload && !res.payload.exact ? [`${lossyText(job, res)}. Measure it on inputs before publishing: export the job's base and version (ndiff release job --export DIR) and measure the payload between them (ndiff diff --base DIR/base --target DIR/target --budget ${job.policy.budget} --eval INPUTS)`] : [];
  return { ...res, job, warnings };
}

/** What `release.publish` takes (`ndiff release publish`). */
export interface ReleasePublishOptions extends ReleaseDirOptions {
  /** The Ed25519 private key: a `.private.pem` path from `ndiff keygen`, or a KeyObject. */
  key: string | KeyObject;
  /** The manifest's expiry: a Date, an ISO date or a duration from now (`30d`, `12h`; default 30d). */
  expires?: string | Date;
  /** SHA-256s (16 or more leading hex digits) of learned lossy payloads the key holder vouches for. */
  accept?: string[];
}

/** What `release.publish` returns: the fields `ndiff release publish --json` prints, and the warnings. */
export interface ReleasePublishResult {
  /** The manifest's release number. */
  release: number;
  /** The newest version. */
  latest: number;
  /** Payloads signed in this publication. */
  added: number;
  skipped: { id: string; why: string }[];
  /** Seconds since 1970 from which devices refuse the manifest. */
  expiresAt: number;
  /** Payloads the manifest lists. */
  payloads: number;
  warnings: string[];
}

/**
 * Sign the planned jobs' payloads (every job must have run) into a new manifest, as `ndiff
 * release publish` does; with no version pending, re-sign the manifest with a fresh expiry (do it
 * before the manifest expires). Every job's result is checked before anything is signed.
 */
export async function releasePublish(o: ReleasePublishOptions): Promise<ReleasePublishResult> {
  if (!o.key) throw new UsageError('key (--key) is needed to publish: the Ed25519 private key from ndiff keygen');
  const expiresAt = expiryOf(o.expires);
  await readExisting(o.release);
  const warnings: string[] = [];
  const res = await publishReleaseFolder(o.release, { key: await privateKeyOf(o.key, warnings), expiresAt, ...(o.accept ? { accept: o.accept } : {}) });
  warnings.push(...lossySignedWarnings(res));
  return { release: res.release, latest: res.latest, added: res.added, skipped: res.skipped, expiresAt: res.manifest.expiresAt, payloads: res.manifest.payloads.length, warnings };
}

/** The record of a release folder, as `ndiff release show` prints it. */
export async function releaseShow(o: ReleaseDirOptions): Promise<ReleaseRecord> {
  return readExisting(o.release);
}

/** What `release.cancel` takes (`ndiff release cancel`). */
export interface ReleaseCancelOptions extends ReleaseDirOptions {
  /** The job queue the plan ran on (`redis://HOST[:PORT]`, as `release.run` took it): its jobs are taken off it first. */
  queue?: string;
}

/** What `release.cancel` returns: the fields `ndiff release cancel --json` prints. */
export interface ReleaseCancelResult {
  /** The version dropped. */
  cancelled: number;
  /** The plan's id on a job queue. */
  plan: string;
  /** With `queue`: what was taken off it; without, null (the queue was not touched). */
  queue: QueueCancel | null;
}

/**
 * Drop the pending version (planned, not published) with its jobs and job files, as `ndiff
 * release cancel` does: the release is as it was before the version was planned. With `queue`,
 * the plan's jobs are first taken off the job queue (those no worker runs yet, and its publish
 * job); a wrong or unreachable queue is refused with nothing changed.
 */
export async function releaseCancel(o: ReleaseCancelOptions): Promise<ReleaseCancelResult> {
  const url = o.queue !== undefined ? queueUrlOf(o.queue) : undefined;
  let plan = '';
  let queue: QueueCancel | null = null;
  const cancelled = await cancelPending(o.release, async (record) => {
    plan = planNames(record, o.release).planId;
    if (url !== undefined) queue = await cancelPlanOnQueue(record, url, o.release);
  });
  return { cancelled, plan, queue };
}
