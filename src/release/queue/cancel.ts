/**
 * `ndiff release cancel --queue`: take the pending plan's jobs off the job engine before its
 * version is dropped from the release folder, so that no worker starts one of them afterwards.
 * Jobs a worker is running are left to finish (BullMQ holds their lock); their results stay
 * unread: no run watches the plan any more, and a later `release run` clears them.
 */
import { UsageError } from '../../core/errors.ts';
import type { ReleaseRecord } from '../record.ts';
import { bullConnection, JOBS_QUEUE, loadBullmq, namesOnQueue, quietQueue, reachRedis } from './engine.ts';
import type { QueueCancel } from './status.ts';

export type { QueueCancel } from './status.ts';

/** States in which no worker holds a job: it can be removed. */
const NOT_STARTED = new Set(['waiting', 'delayed', 'prioritized', 'waiting-children', 'paused']);

/**
 * Remove the pending plan of `record` from the queue at `url` (already checked): its payload jobs
 * that no worker runs, its publish job and the reasons publish's checks refused results. Throws a
 * UsageError, having removed nothing, when no Redis answers at `url`.
 */
export async function cancelPlanOnQueue(record: ReleaseRecord, url: string, releaseDir: string): Promise<QueueCancel> {
  const bull = await loadBullmq();
  const redis = await reachRedis(url, `nothing was cancelled: ${releaseDir} and the queue are as they were`);
  const connection = bullConnection(url);
  // A plan queued by an earlier neural-diff, under the model's name alone, is cancelled under that name.
  const names = await namesOnQueue(record, releaseDir, (name) => quietQueue(bull, name, connection)).catch((e: unknown) => {
    redis.disconnect();
    throw e;
  });
  const jobsQueue = new bull.Queue(JOBS_QUEUE, { connection });
  const publishQueue = new bull.Queue(names.publishQueue, { connection });
  jobsQueue.on('error', () => {});
  publishQueue.on('error', () => {});
  const out: QueueCancel = { plan: names.planId, waiting: 0, finished: 0, running: [], publish: false, lock: false };
  try {
    // The publish job first: with its last waiting job gone it would move on to publishing,
    // taken by the plan's run if one still watches.
    const parent = await publishQueue.getJob(names.parentId);
    if (parent) {
      await parent.remove({ removeChildren: false }).catch(async (e: Error) => {
        const state = await publishQueue.getJobState(names.parentId);
        throw new UsageError(`plan ${names.planId} could not be taken off the queue at ${url}: its publish job is ${state === 'active' ? 'running (every job is done and its run is checking or signing the results)' : state} (${e.message.split('\n')[0]}); nothing was cancelled, ${releaseDir} and the queue are as they were: let the run finish (nothing is pending then), or stop it and cancel again`, { plan: names.planId, publish: state });
      });
      out.publish = true;
    }
    for (const job of record.pending?.jobs ?? []) {
      const found = await jobsQueue.getJob(names.childId(job.id));
      if (!found) continue;
      const state = await found.getState();
      if (state === 'active') {
        out.running.push(job.id);
        continue;
      }
      try {
        await found.remove({ removeChildren: false });
      } catch (e) {
        // Taken by a worker between the look and the removal: it runs, like the others running.
        if (await jobsQueue.getJobState(names.childId(job.id)) === 'active') {
          out.running.push(job.id);
          continue;
        }
        throw new UsageError(`job ${job.id} of plan ${names.planId} could not be taken off the queue at ${url} (${(e as Error).message.split('\n')[0]}); ${releaseDir} is as it was, the plan's publish job is off the queue: run the cancel again`, { job: job.id });
      }
      if (NOT_STARTED.has(state)) out.waiting++;
      else out.finished++;
    }
    await redis.del(names.refusedKey);
    // The plan's run lock (a run killed keeps it for up to 30 s): let go, so the version can be
    // planned and run again at once. A run still watching stops when it finds its publish job gone.
    const holder = await redis.get(names.lockKey);
    let holderPlan: unknown;
    try {
      holderPlan = holder ? (JSON.parse(holder) as { plan?: unknown }).plan : undefined;
    } catch {
      holderPlan = undefined;
    }
    if (holder && holderPlan === names.planId) {
      await redis.eval("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end", 1, names.lockKey, holder);
      out.lock = true;
    }
    return out;
  } finally {
    await Promise.allSettled([jobsQueue.close(), publishQueue.close()]);
    redis.disconnect();
  }
}
