/**
 * `release.run`, `release.status` and `release.worker` (src/front/release.ts): a release's plan on
 * a job engine (BullMQ on Redis, optional dependencies loaded only by these calls), as `ndiff
 * release run`, `ndiff release status` and `ndiff worker` do.
 */
import type { KeyObject } from 'node:crypto';
import { UsageError } from '../core/errors.ts';
import { planStatus, runPlanOnQueue } from '../release/queue/plan.ts';
import { DEFAULT_LOCK_SECONDS, startQueueWorker } from '../release/queue/worker.ts';
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

/** What `release.worker` takes (`ndiff worker`). */
export interface ReleaseWorkerOptions {
  /** The job queue: a Redis URL (`redis://HOST[:PORT]`, `rediss://` for TLS). */
  queue: string;
  /** Jobs run at once, each in a process of its own (1 to 64; default 1). */
  concurrency?: number;
  /** Whole seconds a dead worker holds its job before another takes it (1 to 3600; default 30, BullMQ's own). */
  lockSeconds?: number;
  /** A line per job started, finished or failed (what `ndiff worker` prints on stderr). */
  onProgress?: Progress;
}

/** A running worker (`release.worker`): stop it with `close()` (running jobs finish) or `handBack()` (at once). */
export interface ReleaseWorker {
  /** Threads each job gets: this machine's cores divided by `concurrency` (at least 1), unless the environment sets them. */
  threads: number;
  /** The ids of the jobs this worker runs now (what a stop would wait for, or hand back). */
  running(): string[];
  /** Stop taking jobs, let the running ones finish (their results reported to the queue), and clean up. */
  close(): Promise<void>;
  /**
   * Stop at once: take no new job, kill the running jobs' processes and put those jobs back on
   * the queue (first in line; no try counted), so another worker takes them now instead of after
   * their locks lapse (`lockSeconds`); then clean up as `close()` does. Resolves with the ids of
   * the jobs handed back. Call it while a `close()` waits, for a second stop signal: that
   * `close()` then resolves too.
   */
  handBack(): Promise<string[]>;
}

/**
 * Start running payload jobs of release plans from the queue on this machine, as `ndiff worker`
 * does, until `close()` is called: the plans come from `release.run`; each job's inputs are
 * fetched by SHA-256 from the plan's source (no shared disk). Needs `bullmq` and `ioredis`
 * (`npm install bullmq ioredis`; `MissingDependencyError` otherwise).
 *
 * ```ts
 * import { release } from 'neural-diff';
 * const worker = await release.worker({ queue: 'redis://queue.internal:6379', concurrency: 4, onProgress: console.error });
 * process.once('SIGTERM', () => {
 *   void worker.close();                                      // running jobs finish first
 *   process.once('SIGTERM', () => void worker.handBack());   // a second SIGTERM: hand them back now
 * });
 * ```
 */
export async function releaseWorker(o: ReleaseWorkerOptions): Promise<ReleaseWorker> {
  const w = await startQueueWorker(o.queue, { concurrency: o.concurrency ?? 1, lockSeconds: o.lockSeconds ?? DEFAULT_LOCK_SECONDS, onLine: o.onProgress ?? NO_PROGRESS });
  return { threads: w.threads, running: () => w.running(), close: () => w.close(), handBack: () => w.handBack() };
}
