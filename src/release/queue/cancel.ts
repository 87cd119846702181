/**
 * `ndiff release cancel --queue`: take the pending plan's jobs off the job engine before its
 * version is dropped from the release folder, so that no worker starts one of them afterwards.
 * Jobs a worker is running are left to finish (BullMQ holds their lock); their results stay
 * unread: no run watches the plan any more, and a later `release run` clears them.
 */
import { UsageError } from '../../core/errors.ts';
import type { ReleaseRecord } from '../record.ts';
import { bullConnection, JOBS_QUEUE, loadBullmq, planNames, reachRedis } from './engine.ts';
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
  const names = planNames(record);
  const bull = await loadBullmq();
  const redis = await reachRedis(url, `nothing was cancelled: ${releaseDir} and the queue are as they were`);
  const connection = bullConnection(url);
  const jobsQueue = new bull.Queue(JOBS_QUEUE, { connection });
  const publishQueue = new bull.Queue(names.publishQueue, { connection });
  jobsQueue.on('error', () => {});
  publishQueue.on('error', () => {});
  const out: QueueCancel = { plan: names.planId, waiting: 0, finished: 0, running: [], publish: false };
  try {
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
        throw new UsageError(`job ${job.id} of plan ${names.planId} could not be taken off the queue at ${url} (${(e as Error).message.split('\n')[0]}); ${releaseDir} is as it was: run the cancel again`, { job: job.id });
      }
      if (NOT_STARTED.has(state)) out.waiting++;
      else out.finished++;
    }
    const parent = await publishQueue.getJob(names.parentId);
    if (parent) {
      await parent.remove({ removeChildren: false });
      out.publish = true;
    }
    await redis.del(names.refusedKey);
    return out;
  } finally {
    await Promise.allSettled([jobsQueue.close(), publishQueue.close()]);
    redis.disconnect();
  }
}
