/**
 * `release.run` and `release.status` (src/front/release.ts): a release's plan on a job engine
 * (BullMQ on Redis, optional dependencies loaded only by these calls), as `ndiff release run` and
 * `ndiff release status` do.
 */
import type { KeyObject } from 'node:crypto';
import { UsageError } from '../core/errors.ts';
import { planStatus, runPlanOnQueue } from '../release/queue/plan.ts';
import type { PlanJobStatus } from '../release/queue/status.ts';
import { NO_PROGRESS, type Progress } from './progress.ts';
import { expiryOf, lossySignedWarnings, privateKeyOf, type ReleaseDirOptions } from './release-common.ts';

/** What `release.run` takes (`ndiff release run`). */
export interface ReleaseRunOptions extends ReleaseDirOptions {
  /** The job queue: `redis://HOST[:PORT]` (`rediss://` for TLS). */
  queue: string;
  /** The URL or path workers fetch the release's blobs from (default: `release`). */
  source?: string;
  /** The Ed25519 private key (a path or a KeyObject): publish once every result is checked. Without it the results are left in `jobs/`. */
  key?: string | KeyObject;
  /** With `key`: the manifest's expiry (a Date, an ISO date or a duration; default 30d). */
  expires?: string | Date;
  /** With `key`: SHA-256s of learned lossy payloads the key holder vouches for, as `release.publish` takes them. */
  accept?: string[];
  /** Tries per job a worker fails (1 to 100, default 3). */
  attempts?: number;
  /** Results checked at once as they arrive, each in its own process (1 to 64; default this machine's cores). */
  checkConcurrency?: number;
  /**
   * Seconds the plan's lock in Redis lasts without renewal (1 to 3600, default 30): a run that
   * dies lets go of the plan within it; a run that cannot renew it for half of it, or finds it
   * another run's, stops (exit 2) without signing.
   */
  lockSeconds?: number;
  /** Progress lines, as `ndiff release run` prints them on stderr. */
  onProgress?: Progress;
}

/** What `release.run` returns: the fields `ndiff release run --json` prints, and the warnings. */
export interface ReleaseRunResult {
  /** The plan's id on the queue. */
  plan: string;
  jobs: number;
  /** With `key`: the manifest's release number, the payloads signed and those not kept. */
  release?: number;
  added?: number;
  skipped?: { id: string; why: string }[];
  warnings: string[];
}

/** What `release.status` returns: the plan's jobs on the queue and whether publish may run. */
export interface ReleaseStatus {
  planId: string;
  publish: string;
  publishReason?: string;
  jobs: PlanJobStatus[];
  /** With no version pending: the last version and the manifest release it was signed in (nothing to run). */
  finished?: { version: number; release: number };
}

/**
 * Run the pending plan on a queue (workers started by `ndiff worker` take its jobs), each result
 * checked as it arrives; with `key`, publish once all are checked.
 */
export async function releaseRun(o: ReleaseRunOptions): Promise<ReleaseRunResult> {
  const attempts = o.attempts ?? 3;
  if (!Number.isSafeInteger(attempts) || attempts < 1 || attempts > 100) throw new UsageError(`attempts (--attempts) must be a whole number from 1 to 100, found ${attempts}`, { expected: '1 to 100', found: attempts });
  if (o.checkConcurrency !== undefined && (!Number.isSafeInteger(o.checkConcurrency) || o.checkConcurrency < 1 || o.checkConcurrency > 64)) throw new UsageError(`checkConcurrency (--check-concurrency) must be a whole number from 1 to 64, found ${o.checkConcurrency}`, { expected: '1 to 64', found: o.checkConcurrency });
  const warnings: string[] = [];
  const publish = o.key ? { key: await privateKeyOf(o.key, warnings), expiresAt: expiryOf(o.expires), ...(o.accept ? { accept: o.accept } : {}) } : undefined;
  const res = await runPlanOnQueue(o.release, o.queue, { ...(o.source ? { source: o.source } : {}), ...(publish ? { publish } : {}), attempts, ...(o.checkConcurrency !== undefined ? { checkConcurrency: o.checkConcurrency } : {}), ...(o.lockSeconds !== undefined ? { lockSeconds: o.lockSeconds } : {}), onProgress: o.onProgress ?? NO_PROGRESS });
  if (res.published) warnings.push(...lossySignedWarnings(res.published));
  return { plan: res.planId, jobs: res.jobs, ...(res.published ? { release: res.published.release, added: res.published.added, skipped: res.published.skipped } : {}), warnings };
}

/** The pending plan's jobs on the queue: waiting, running, done, failed; with none pending, the last plan, finished. */
export async function releaseStatus(o: ReleaseDirOptions & { queue: string }): Promise<ReleaseStatus> {
  return planStatus(o.release, o.queue);
}
