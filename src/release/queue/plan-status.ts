/**
 * `ndiff release status`: the plan of a release folder on the queue, each job's state, and for a
 * running job the worker that runs it, how long since it reported progress and when its lock
 * lapses (or that it has: the worker is gone, and the job will be taken again). With no version
 * pending, the last plan is reported finished, with the release it was signed in.
 */
import { UsageError } from '../../core/errors.ts';
import { readRecord } from '../record.ts';
import type { PlanJobStatus } from './status.ts';
import { bullConnection, connectRedis, JOBS_QUEUE, loadBullmq, namesOnQueue, planNames, queueUrlOf, quietQueue, type RedisClient } from './engine.ts';

/** Counts of a plan's payload jobs by state. */
type Bucket = 'waiting' | 'running' | 'done' | 'failed';

/** The bucket of a BullMQ job state. */
export function bucketOf(state: string): Bucket {
  return state === 'active' ? 'running' : state === 'completed' ? 'done' : state === 'failed' ? 'failed' : 'waiting';
}

/**
 * Who runs a running job and whether it is alive: the worker that took it, how long since it
 * reported progress, and when the job's lock lapses (0: it has, the worker is gone).
 */
async function runningJob(redis: RedisClient, jobKey: string, j: { processedBy?: string; progress?: unknown }): Promise<Pick<PlanJobStatus, 'worker' | 'progressAgeMs' | 'lockExpiresInMs'>> {
  const reported = typeof j.progress === 'object' && j.progress !== null ? j.progress as { worker?: unknown; at?: unknown } : {};
  const worker = j.processedBy ?? (typeof reported.worker === 'string' ? reported.worker : undefined);
  const ttl = await redis.pttl(`${jobKey}:lock`);
  return {
    ...(worker ? { worker } : {}),
    ...(typeof reported.at === 'number' ? { progressAgeMs: Math.max(0, Date.now() - reported.at) } : {}),
    lockExpiresInMs: Math.max(0, ttl),
  };
}

/** What {@link planStatus} reports. */
export interface PlanStatus {
  planId: string;
  /** The publish job's state on the queue, or `not queued`. */
  publish: string;
  publishReason?: string;
  jobs: PlanJobStatus[];
  /** With no version pending: the last version and the manifest release it was signed in (its plan, if any, finished). */
  finished?: { version: number; release: number };
}

/** The state of the pending plan of `releaseDir` on the queue; with none pending, the last one, finished. */
export async function planStatus(releaseDir: string, queue: string): Promise<PlanStatus> {
  const url = queueUrlOf(queue);
  const record = await readRecord(releaseDir);
  if (!record) throw new UsageError(`${releaseDir} holds no release (no release.json)`);
  const bull = await loadBullmq();
  const connection = bullConnection(url);
  if (!record.pending) {
    const last = record.versions.at(-1);
    if (!last) throw new UsageError(`${releaseDir} holds no version yet: add one (ndiff release add --release ${releaseDir} --model PATH --plan), then run its plan`);
    const names = planNames(record, releaseDir, last.version);
    const publishQueue = quietQueue(bull, names.publishQueue, connection);
    try {
      const state = await publishQueue.getJobState(names.parentId);
      return { planId: names.planId, publish: state === 'unknown' ? 'not queued' : state, jobs: [], finished: { version: last.version, release: record.release } };
    } finally {
      await publishQueue.close().catch(() => {});
    }
  }
  const names = await namesOnQueue(record, releaseDir, (name) => quietQueue(bull, name, connection));
  const redis = await connectRedis(url);
  const jobsQueue = new bull.Queue(JOBS_QUEUE, { connection });
  const publishQueue = new bull.Queue(names.publishQueue, { connection });
  // Each reconnects by itself (a Redis restart); the wait loop below says when the queue is not answering.
  jobsQueue.on('error', () => {});
  publishQueue.on('error', () => {});
  try {
    const refused = await redis.hgetall(names.refusedKey);
    const jobs: PlanJobStatus[] = [];
    for (const job of record.pending?.jobs ?? []) {
      const j = await jobsQueue.getJob(names.childId(job.id));
      if (!j) {
        jobs.push({ id: job.id, state: 'not queued', attempts: 0 });
        continue;
      }
      const state = refused[job.id] ? 'refused' : bucketOf(await j.getState());
      const line = typeof j.progress === 'object' && j.progress !== null ? (j.progress as { line?: unknown }).line : undefined;
      const reason = refused[job.id] ?? (j.failedReason || undefined);
      jobs.push({ id: job.id, state, attempts: j.attemptsStarted ?? j.attemptsMade, ...(typeof line === 'string' ? { progress: line } : {}), ...(reason ? { reason } : {}), ...(state === 'running' ? await runningJob(redis, jobsQueue.toKey(names.childId(job.id)), j) : {}) });
    }
    const parent = await publishQueue.getJob(names.parentId);
    const publish = parent ? await parent.getState() : 'not queued';
    return { planId: names.planId, publish, ...(parent?.failedReason ? { publishReason: parent.failedReason } : {}), jobs };
  } finally {
    await Promise.allSettled([jobsQueue.close(), publishQueue.close()]);
    redis.disconnect();
  }
}
