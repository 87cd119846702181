/**
 * `ndiff release run --queue`: the pending plan of a release folder as a BullMQ flow (one payload
 * job per edge, the children; a publish job, their parent), and `ndiff release status`. The run
 * holds the release folder (and the key, when given): it writes each worker's result into `jobs/`
 * as it arrives and checks it with publish's own checks in check processes on this machine's
 * cores while the other jobs still run (arriving-checks.ts), then runs the publish job itself once
 * every payload job is done (a refused result is dropped, its reason kept for `status`, and
 * nothing is signed); publish takes a verdict only for the exact bytes it was given on. One plan of a release runs at a time (a lock in Redis, plan-lock.ts; a second run is refused, and
 * a run that lost the lock stops).
 */
import { hostname } from 'node:os';
import { createHash, randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import * as path from 'node:path';
import { NeuralDiffError, PayloadFormatError, UsageError } from '../../core/errors.ts';
import { readRegularFile, writeFileAtomically } from '../../io/durable/durable.ts';
import { MANIFEST_FILE } from '../../updater/manifest.ts';
import { jobFiles, readJobResult, verifyJobResult } from '../jobs.ts';
import { ArrivingChecks } from './arriving-checks.ts';
import { publishReleaseFolder, type PublishResult } from '../publish.ts';
import { JOBS_DIR, readRecord, type ReleaseRecord } from '../record.ts';
import { releaseSubdir } from '../folder.ts';
import { ticketsOf } from '../ticket.ts';
import { bullConnection, connectRedis, JOBS_QUEUE, loadBullmq, namesOnQueue, queueUrlOf, quietQueue, type PlanNames, type RedisClient } from './engine.ts';
import type { QueuedJobData, QueuedJobReturn } from './processor.ts';
import { DEFAULT_PLAN_LOCK_SECONDS, PlanLock } from './plan-lock.ts';
import { RetakeWatch } from './retake-watch.ts';
import { bucketOf } from './plan-status.ts';

/** Options of {@link runPlanOnQueue}. */
export interface RunPlanOptions {
  /** Where workers fetch the release folder's blobs: its http(s) URL, or a path they can read (default: the folder's absolute path). */
  source?: string;
  /** With a key, the run publishes once every result is checked; without, it leaves them in `jobs/` for `ndiff release publish`. */
  publish?: { key: import('node:crypto').KeyObject; expiresAt: number; accept?: string[] };
  /** Tries per job when a worker fails it (default 3; a worker that dies is covered by stalled-job recovery). */
  attempts?: number;
  onProgress?: (line: string) => void;
  /** How often the run looks at the plan (default 500 ms). */
  pollMs?: number;
  /** Results checked at once, each in its own process, as they arrive (default: this machine's cores). */
  checkConcurrency?: number;
  /**
   * Seconds the plan's lock in Redis lasts without renewal (default 30): a run that dies lets go
   * within it; a run that cannot renew it for half of it, or finds it
   * another run's, stops (`PlanLockLostError`, plan-lock.ts).
   */
  lockSeconds?: number;
}

/** What a plan run did. */
export interface RunPlanResult {
  planId: string;
  /** Payload jobs that ran (with or without a payload). */
  jobs: number;
  /** Set when the run published. */
  published?: PublishResult;
}

/**
 * What names the pending plan's jobs exactly (SHA-256 of the version, its fingerprint and every
 * job as recorded: bases, policies): a flow on the queue is resumed only when it carries this.
 */
export function planDigest(record: ReleaseRecord): string {
  const pending = record.pending;
  const version = record.versions.find((v) => v.version === pending?.version);
  return createHash('sha256').update(JSON.stringify({ version: pending?.version, fingerprint: version?.fingerprint, jobs: pending?.jobs })).digest('hex');
}

/** Counts of a plan's payload jobs by state. */
export interface PlanCounts {
  waiting: number;
  running: number;
  done: number;
  failed: number;
}

/**
 * Enqueue the pending plan of `releaseDir` on the queue at `queue` and see it through: wait for
 * the workers, check every result, publish (with a key). Resumes a plan already on the queue (the
 * job ids are the plan's own, so jobs done before a restart are not run again).
 */
export async function runPlanOnQueue(releaseDir: string, queue: string, options: RunPlanOptions = {}): Promise<RunPlanResult> {
  const url = queueUrlOf(queue);
  const lockSeconds = options.lockSeconds ?? DEFAULT_PLAN_LOCK_SECONDS;
  if (!Number.isSafeInteger(lockSeconds) || lockSeconds < 1 || lockSeconds > 3600) {
    throw new UsageError(`lockSeconds (--lock-seconds) must be a whole number of seconds from 1 to 3600, found ${lockSeconds}: give e.g. ${DEFAULT_PLAN_LOCK_SECONDS} (the default)`, { expected: '1 to 3600', found: lockSeconds });
  }
  const record = await readRecord(releaseDir);
  if (!record) throw new UsageError(`${releaseDir} holds no release (no release.json): add a version with plan (--plan) first`);
  if (!record.pending) await refuseHalfPublished(releaseDir, record);
  const progress = options.onProgress ?? (() => {});
  const bull = await loadBullmq();
  const connection = bullConnection(url);
  const names = await namesOnQueue(record, releaseDir, (name) => quietQueue(bull, name, connection));
  if (names.legacy) progress(`plan ${names.planId} is on the queue under the name an earlier neural-diff gave it (the model's, without the release folder): resuming it under that name`);
  const redis = await connectRedis(url);
  const holder = JSON.stringify({ plan: names.planId, host: hostname(), pid: process.pid, release: path.resolve(releaseDir), since: new Date().toISOString(), token: randomBytes(8).toString('hex') });
  let lock: PlanLock | undefined;
  let publishWorker: InstanceType<Bullmq['Worker']> | undefined;
  let checks: ArrivingChecks | undefined;
  const flows = new bull.FlowProducer({ connection });
  const publishQueue = new bull.Queue(names.publishQueue, { connection });
  // Each reconnects by itself (a Redis restart); the wait loop below says when the queue is not answering.
  flows.on('error', () => {});
  publishQueue.on('error', () => {});
  try {
    const taken = await PlanLock.take(redis, names.lockKey, holder, lockSeconds * 1000, { plan: names.planId, release: releaseDir, queue: url });
    if (!(taken instanceof PlanLock)) {
      const other = taken.heldBy;
      throw new UsageError(`another plan of release ${JSON.stringify(record.modelId)} is running on this queue (${other ?? 'its holder just finished'}): expected one plan per release at a time; wait for it (ndiff release status --release ${releaseDir} --queue ${url}) or stop it, then run again`, { holder: other });
    }
    // Renewed while the run lives (only while it holds this run's token); a run that dies lets go within lockSeconds.
    lock = taken;
    const held = taken;
    const source = options.source ?? path.resolve(releaseDir);
    const tickets = ticketsOf(record);
    await redis.del(names.refusedKey);
    // A finished run of this very plan (published, failed or refused, then planned again with the
    // same version) is cleared, so this run does its jobs afresh; an unfinished one is resumed.
    // A flow of another plan under this name (a version cancelled, then the same model planned
    // again with other jobs: another policy or history) is cleared too: its results are not this plan's.
    const plan = planDigest(record);
    const previous = await publishQueue.getJob(names.parentId);
    const previousState = previous ? await previous.getState() : undefined;
    const otherPlan = previous !== undefined && (previous.data as { plan?: unknown } | undefined)?.plan !== plan;
    if (previous && (previousState === 'completed' || previousState === 'failed' || otherPlan)) {
      await previous.remove({ removeChildren: true }).catch((e: Error) => {
        throw new UsageError(`plan ${names.planId} ran before and some of its jobs are still running on a worker (${e.message.split('\n')[0]}): wait for them to finish (ndiff release status), then run again`);
      });
      progress(otherPlan && previousState !== 'completed' && previousState !== 'failed'
        ? `plan ${names.planId} on the queue was planned otherwise (its version cancelled, then planned again with other jobs): its jobs and their results are cleared, and this plan's run afresh`
        : `plan ${names.planId} ran before (${previousState}): its jobs are cleared and run again`);
    } else if (previous) {
      progress(`plan ${names.planId} is already on the queue (${previousState}): resuming it (jobs done are not run again)`);
    } else {
      await clearOrphans(bull, names, tickets.map((t) => t.job.id), url, progress);
    }
    const keep = { age: 7 * 24 * 3600 };
    await flows.add({
      name: 'publish',
      queueName: names.publishQueue,
      data: { release: path.resolve(releaseDir), modelId: record.modelId, version: record.pending?.version, plan },
      opts: { jobId: names.parentId, removeOnComplete: keep, removeOnFail: keep },
      children: tickets.map((ticket) => ({
        name: ticket.job.id,
        queueName: JOBS_QUEUE,
        data: { ticket, source } satisfies QueuedJobData,
        opts: { jobId: names.childId(ticket.job.id), attempts: options.attempts ?? 3, backoff: { type: 'exponential', delay: 1000 }, failParentOnFailure: true, removeOnComplete: keep, removeOnFail: keep },
      })),
    });
    progress(`plan ${names.planId}: ${tickets.length} payload job(s) on ${url}, inputs from ${source}; start workers with \`ndiff worker --queue ${url}\``);
    const arriving = new ArrivingChecks(releaseDir, options.publish?.accept ?? [], options.checkConcurrency, (v) => {
      if ('refused' in v) {
        progress(`${v.job}: refused by publish's checks: ${v.refused}`);
        redis.hset(names.refusedKey, v.job, v.refused).catch(() => {});
      } else if ('entry' in v) progress(`${v.job}: checked, passes publish's checks`);
    });
    checks = arriving;
    const arrivals = new Map<string, Promise<void>>();
    let outcome: RunPlanResult | undefined;
    // A job whose worker died, found stalled and taken again, is said as it happens, with its attempt.
    const retakes = new RetakeWatch(redis, (id) => `bull:${JOBS_QUEUE}:${names.childId(id)}`, tickets.map((t) => t.job.id), progress);
    publishWorker = new bull.Worker(names.publishQueue, async (job) => {
      // Only this plan's own publish job: another in its queue (added by anyone who reaches the
      // queue, or replayed) is refused before it touches the results.
      if (job.id !== names.parentId) throw new bull.UnrecoverableError(`job ${JSON.stringify(job.id)} in the publish queue of plan ${names.planId} is not its publish job (${names.parentId}), which only ndiff release run adds: refused, nothing read or written`);
      // A stall, retake and finish quicker than the watch's poll (a busy run checking results) is
      // still said, before the results are taken in: the jobs' hashes keep their counts.
      await retakes.look().catch(() => {});
      const values = (await job.getChildrenValues()) as Record<string, QueuedJobReturn>;
      outcome = await collectAndPublish(releaseDir, record, names, values, redis, options, progress, bull, arriving, arrivals, held);
      return { jobs: outcome.jobs, release: outcome.published?.release ?? null };
    }, { connection, concurrency: 1 });
    publishWorker.on('error', () => {}); // reconnects by itself; the loop below reports an unreachable queue
    const arrive = async (jobsQueue: ArrivalLookup) => {
      await retakes.look();
      await takeArrivals(releaseDir, record, names, jobsQueue, arriving, arrivals, progress);
    };
    const stop = new AbortController();
    held.lost.catch((e: Error) => stop.abort(e));
    const watching = waitForParent(bull, url, publishQueue, names, record, progress, options.pollMs ?? 500, arrive, stop.signal);
    watching.catch(() => {}); // a run stopped by its lost lock ends the watch too, which then throws no one's error
    const parent = await Promise.race([watching, held.lost]);
    if (parent.state === 'failed') throw planFailed(names, parent.reason, releaseDir, url);
    return outcome ?? { planId: names.planId, jobs: tickets.length };
  } finally {
    await publishWorker?.close().catch(() => {});
    await checks?.close().catch(() => {});
    // Let go of the lock only if it is still this run's.
    await lock?.release();
    await Promise.allSettled([flows.close(), publishQueue.close()]);
    redis.disconnect();
  }
}

/**
 * With no version pending: refuse, saying so, a release whose record is ahead of its manifest (a
 * publication stopped between the two: publish writes the record first), so the user finishes it
 * rather than plan a version again.
 */
async function refuseHalfPublished(releaseDir: string, record: ReleaseRecord): Promise<void> {
  let served: number | undefined;
  try {
    const bytes = await readRegularFile(path.join(releaseDir, MANIFEST_FILE));
    served = bytes ? Number((JSON.parse(new TextDecoder().decode(bytes)) as { signed?: { release?: unknown } }).signed?.release ?? 0) : 0;
  } catch {
    return; // unreadable: planNames says what is missing
  }
  if (Number.isSafeInteger(served) && (served as number) < record.release) {
    throw new UsageError(`${releaseDir} recorded release ${record.release}, but its manifest.json is release ${served}: a publication stopped after recording it (release run or release publish interrupted), and devices do not see it yet; write its manifest with ndiff release publish --release ${releaseDir} --key KEY`, { recorded: record.release, served });
  }
}

type Bullmq = Awaited<ReturnType<typeof loadBullmq>>;
/** What this file asks of a BullMQ queue. */
interface JobLookup {
  getJob(id: string): Promise<{ getState(): Promise<string>; failedReason?: string } | undefined>;
  /** A job's state alone: one script in Redis, without the job's data or return value (a payload). */
  getJobState(id: string): Promise<string>;
}

function planFailed(names: PlanNames, reason: string, releaseDir: string, url: string): NeuralDiffError {
  const refused = /refused/.test(reason);
  const why = `plan ${names.planId} failed: ${reason}; nothing was signed`;
  const fix = refused
    ? `the refused results were dropped: run those jobs on a machine you trust (ndiff release job --release ${releaseDir} --id ID), then ndiff release publish`
    : `see which job failed and why (ndiff release status --release ${releaseDir} --queue ${url}), fix it, and run the plan again (jobs already done are not run again)`;
  return refused ? new PayloadFormatError(`${why}: ${fix}`, { plan: names.planId }) : new UsageError(`${why}: ${fix}`, { plan: names.planId });
}

/**
 * With no publish job on the queue, payload jobs under this plan's names are left from a plan
 * cancelled while they ran (ndiff release cancel --queue): a job added under the same id would be
 * taken as done with the cancelled plan's result. They are removed; one still running is waited for.
 */
async function clearOrphans(bull: Bullmq, names: PlanNames, ids: string[], url: string, progress: (line: string) => void): Promise<void> {
  const jobsQueue = new bull.Queue(JOBS_QUEUE, { connection: bullConnection(url) });
  jobsQueue.on('error', () => {});
  try {
    let cleared = 0;
    for (const id of ids) {
      const job = await jobsQueue.getJob(names.childId(id));
      if (!job) continue;
      const state = await job.getState();
      const stillRunning = () => new UsageError(`job ${id} of a cancelled plan under the name ${names.planId} is still running on a worker: wait for it to finish (a minute or so; ndiff worker prints it), then run again; its result is not taken`, { job: id });
      if (state === 'active') throw stillRunning();
      await job.remove({ removeChildren: false }).catch(async (e: Error) => {
        if ((await jobsQueue.getJobState(names.childId(id))) === 'active') throw stillRunning();
        throw e;
      });
      cleared++;
    }
    if (cleared) progress(`plan ${names.planId}: ${cleared} job(s) left on the queue by a cancelled plan of the same name cleared, with their results; this plan's run afresh`);
  } finally {
    await jobsQueue.close().catch(() => {});
  }
}

/** The publish job vanished from the queue: the plan was cancelled. */
class PlanGone extends Error {}

/** Poll the publish job until it is done or failed, printing the payload jobs' counts as they change. */
async function waitForParent(bull: Bullmq, url: string, publishQueue: JobLookup, names: PlanNames, record: ReleaseRecord, progress: (line: string) => void, pollMs: number, arrive: (jobsQueue: ArrivalLookup) => Promise<void>, stop: AbortSignal): Promise<{ state: 'completed' } | { state: 'failed'; reason: string }> {
  const jobsQueue = new bull.Queue(JOBS_QUEUE, { connection: bullConnection(url) });
  jobsQueue.on('error', () => {});
  let last = '';
  try {
    for (;;) {
      if (stop.aborted) throw stop.reason;
      try {
        const state = await publishQueue.getJobState(names.parentId);
        if (state === 'completed') return { state };
        if (state === 'unknown') throw new PlanGone(`plan ${names.planId} was taken off the queue while this run watched it (ndiff release cancel --queue): nothing was signed, and no more results are taken in`);
        if (state === 'failed') {
          const parent = await publishQueue.getJob(names.parentId);
          // A child that failed for good fails the plan: say which, and why, not only "child failed".
          const why: string[] = [];
          for (const job of record.pending?.jobs ?? []) {
            const j = await jobsQueue.getJob(names.childId(job.id));
            if (j && (await j.getState()) === 'failed') why.push(`job ${job.id} failed: ${j.failedReason ?? 'no reason given'}`);
          }
          return { state, reason: why.length ? why.join('; ') : parent?.failedReason ?? 'unknown' };
        }
        const counts = await countJobs(jobsQueue, names, record);
        const line = `${counts.waiting} waiting, ${counts.running} running, ${counts.done} done, ${counts.failed} failed`;
        if (line !== last) progress(line);
        last = line;
        await arrive(jobsQueue);
      } catch (e) {
        if (e instanceof PlanGone) throw new UsageError(e.message, { plan: names.planId });
        const line = `the queue is not answering (${(e as Error).message.split('\n')[0]}): waiting for it`;
        if (line !== last) progress(line);
        last = line;
      }
      await new Promise((r) => setTimeout(r, pollMs));
    }
  } finally {
    await jobsQueue.close().catch(() => {});
  }
}

/**
 * Count the plan's payload jobs by state. Polled every `pollMs`: states only, all sent at once
 * (one round trip), never the jobs themselves: their return values hold whole payloads, and
 * reading them on every poll moved each done job's payload out of Redis twice a second.
 */
export async function countJobs(jobsQueue: JobLookup, names: PlanNames, record: ReleaseRecord): Promise<PlanCounts> {
  const counts: PlanCounts = { waiting: 0, running: 0, done: 0, failed: 0 };
  const states = await Promise.all((record.pending?.jobs ?? []).map((job) => jobsQueue.getJobState(names.childId(job.id))));
  for (const state of states) counts[bucketOf(state)]++;
  return counts;
}


/**
 * The publish job: write each worker's result into `jobs/` under the job's own id, check each as
 * publish does (jobs ran on machines without the key: their results are claims), drop and record
 * the refused ones, then publish when a key was given.
 */
async function collectAndPublish(releaseDir: string, record: ReleaseRecord, names: PlanNames, values: Record<string, QueuedJobReturn>, redis: RedisClient, options: RunPlanOptions, progress: (line: string) => void, bull: Bullmq, checks: ArrivingChecks, arrivals: Map<string, Promise<void>>, lock: PlanLock): Promise<RunPlanResult> {
  const byChild = new Map(Object.entries(values).map(([key, v]) => [key.slice(key.lastIndexOf(':') + 1), v]));
  const jobs = record.pending?.jobs ?? [];
  // Results not taken in as they arrived (the last ones, or all after a resumed run) are taken now.
  for (const job of jobs) {
    if (!arrivals.has(job.id)) arrivals.set(job.id, writeArrival(releaseDir, job.id, byChild.get(names.childId(job.id))).then((has) => { if (has) void checks.check(job.id).catch(() => {}); }));
  }
  await Promise.all(arrivals.values());
  // Every check answered; one whose process failed left no verdict, and is checked below as publish does.
  await Promise.allSettled(jobs.filter((j) => checks.has(j.id)).map((j) => checks.check(j.id)));
  const early = jobs.flatMap((j) => {
    const v = checks.verdicts.get(j.id);
    return v && 'refused' in v ? [{ job: j.id, reason: v.refused }] : [];
  });
  try {
    if (early.length) throw new PayloadFormatError('refused', { refused: early });
    // Nothing is signed by a run that no longer holds the plan (it lapsed and another run took it).
    await lock.assertHeld();
    if (options.publish) {
      // Publish checks again anything whose bytes are not the ones a verdict was given on.
      const published = await publishReleaseFolder(releaseDir, { key: options.publish.key, expiresAt: options.publish.expiresAt, checkAll: true, verdicts: checks.passed(), ...(options.publish.accept ? { accept: options.publish.accept } : {}) });
      return { planId: names.planId, jobs: jobs.length, published };
    }
    // No key: the results without a verdict are checked now, so a refused result is reported while the plan is at hand.
    const refused: { job: string; reason: string }[] = [];
    for (const job of jobs) {
      if (checks.verdicts.has(job.id)) continue;
      try {
        const done = await readJobResult(releaseDir, job.id);
        if (done?.payload) await verifyJobResult(releaseDir, record, job, done.result, done.payload, []);
      } catch (e) {
        if (!(e instanceof NeuralDiffError)) throw e;
        refused.push({ job: job.id, reason: e.message.split(/; nothing was signed/)[0] });
      }
    }
    if (refused.length) throw new PayloadFormatError('refused', { refused });
    progress(`every result checked: ${jobs.length} job(s) in ${releaseDir}/jobs/`);
    return { planId: names.planId, jobs: jobs.length };
  } catch (e) {
    const refused = e instanceof PayloadFormatError ? (e.details as { refused?: { job: string; reason: string }[] }).refused : undefined;
    if (!refused) throw e;
    for (const r of refused) {
      await redis.hset(names.refusedKey, r.job, r.reason);
      const files = jobFiles(releaseDir, r.job);
      await rm(files.result, { force: true });
      await rm(files.payload, { force: true });
    }
    throw new bull.UnrecoverableError(`${refused.length} result(s) refused by publish's checks (${refused.map((r) => `${r.job}: ${r.reason}`).join('; ')})`);
  }
}

/** Write a worker's result into `jobs/` under the job's own id; false when it returned none (publish then says the job has not run). */
async function writeArrival(releaseDir: string, id: string, value: QueuedJobReturn | undefined): Promise<boolean> {
  await releaseSubdir(releaseDir, JOBS_DIR);
  const files = jobFiles(releaseDir, id);
  const result = value && typeof value === 'object' && typeof value.result === 'object' && value.result !== null ? { ...(value.result as object), id } : undefined;
  if (!result) {
    await rm(files.result, { force: true });
    await rm(files.payload, { force: true });
    return false;
  }
  await writeFileAtomically(files.result, new TextEncoder().encode(JSON.stringify(result, null, 2) + '\n'));
  if (typeof value?.payload === 'string') await writeFileAtomically(files.payload, new Uint8Array(Buffer.from(value.payload, 'base64')));
  else await rm(files.payload, { force: true });
  return true;
}

/** What taking arrivals asks of the jobs queue. */
interface ArrivalLookup extends JobLookup {
  getJob(id: string): Promise<{ getState(): Promise<string>; returnvalue?: unknown } | undefined>;
}

/**
 * Take in the results that arrived since the last look: each job done and not yet taken is
 * written into `jobs/` and its check started (not waited for: the run keeps watching the plan).
 */
async function takeArrivals(releaseDir: string, record: ReleaseRecord, names: PlanNames, jobsQueue: ArrivalLookup, checks: ArrivingChecks, arrivals: Map<string, Promise<void>>, progress: (line: string) => void): Promise<void> {
  const fresh = (record.pending?.jobs ?? []).filter((j) => !arrivals.has(j.id));
  const states = await Promise.all(fresh.map((j) => jobsQueue.getJobState(names.childId(j.id))));
  const left = states.filter((s) => s !== 'completed' && s !== 'failed').length;
  for (const [i, job] of fresh.entries()) {
    if (states[i] !== 'completed' || arrivals.has(job.id)) continue;
    const found = await jobsQueue.getJob(names.childId(job.id));
    if (!found) continue;
    const value = found.returnvalue as QueuedJobReturn | undefined;
    arrivals.set(job.id, writeArrival(releaseDir, job.id, value).then((has) => {
      if (!has) return;
      progress(`${job.id}: result in, checking it while ${left} job(s) still run`);
      void checks.check(job.id).catch(() => {});
    }).catch(() => { arrivals.delete(job.id); })); // not written: taken again at the next look, or by the publish job
  }
}

/** One payload job as `ndiff release status` shows it. */
export type { PlanJobStatus } from './status.ts';

export { planStatus } from './plan-status.ts';
