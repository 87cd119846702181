/**
 * `ndiff release cancel --queue`: a cancelled plan's jobs leave the job engine with it. Before,
 * cancel dropped the version from the release folder only: the plan's waiting jobs stayed on the
 * queue and workers still ran them. A real `redis-server`, a real `ndiff release run` killed once
 * its plan is queued, and a real BullMQ worker on the jobs queue holding one job while cancel runs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UsageError } from '../src/core/errors.ts';
import { release } from '../src/front/release.ts';
import { addVersion } from '../src/release/add.ts';
import { RECORD_FILE, readRecord } from '../src/release/record.ts';
import { JOBS_QUEUE, planNames } from '../src/release/queue/engine.ts';
import { runPlanOnQueue } from '../src/release/queue/plan.ts';
import { main } from '../cli/ndiff.ts';
import { releaseChain } from './helpers/release-chain.ts';
import { redisSkip, startRedis } from './helpers/redis.ts';
import { ENGINE_TEST_TIMEOUT, orTestEnd, until } from './helpers/waits.ts';

const cli = join(import.meta.dirname, '..', 'cli', 'ndiff.mjs');

async function ndiff(...args: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { out: (l) => out.push(l), err: (l) => err.push(l), progress: () => {} });
  return { code, out, err };
}

test('release cancel --queue takes the plan\'s waiting jobs and publish job off the queue; a running job is left to finish; a second cancel changes nothing', { skip: redisSkip, timeout: ENGINE_TEST_TIMEOUT }, async (t) => {
  const chain = await releaseChain(3, { history: 3 });
  await chain.addNext({ planOnly: true });
  const record = (await readRecord(chain.releaseDir))!;
  const names = planNames(record, chain.releaseDir);
  const ids = record.pending!.jobs.map((j) => j.id);
  assert.equal(ids.length, 3);
  const redis = await startRedis({ signal: t.signal });
  const { Queue, Worker } = await import('bullmq');
  const connection = { url: redis.url, maxRetriesPerRequest: null };
  const jobsQueue = new Queue(JOBS_QUEUE, { connection });
  const publishQueue = new Queue(names.publishQueue, { connection });
  let run: ChildProcess | undefined;
  let worker: InstanceType<typeof Worker> | undefined;
  try {
    // The plan on the queue, its run killed: nobody watches it, as after a run stopped with Ctrl-C.
    const r = spawn(process.execPath, [cli, 'release', 'run', '--release', chain.releaseDir, '--queue', redis.url], { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
    run = r;
    let log = '';
    r.stderr?.on('data', (d: Buffer) => { log += d.toString(); });
    await until(t.signal, 'the plan to be queued', () => /payload job\(s\)/.test(log));
    const gone = new Promise((res) => r.once('exit', res));
    process.kill(-(r.pid as number), 'SIGKILL');
    await gone;
    assert.deepEqual((await Promise.all(ids.map((id) => jobsQueue.getJobState(names.childId(id))))).sort(), ['waiting', 'waiting', 'waiting']);

    // A worker takes one job and holds it: running while cancel runs.
    const taken: string[] = [];
    let letGo: () => void = () => {};
    const held = new Promise<void>((res) => { letGo = res; });
    worker = new Worker(JOBS_QUEUE, async (job) => { taken.push(job.id as string); await held; return { result: null }; }, { connection, concurrency: 1 });
    await until(t.signal, 'the worker to take a job', () => taken.length === 1);
    const running = taken[0].slice(names.planId.length + 1);

    // A wrong queue: a typed error, the folder and the queue as they were.
    const recordBytes = await readFile(join(chain.releaseDir, RECORD_FILE));
    await assert.rejects(release.cancel({ release: chain.releaseDir, queue: 'http://127.0.0.1:6379' }), (e: unknown) => e instanceof UsageError && /expected a redis:\/\/ or rediss:\/\/ URL/.test((e as Error).message));
    await assert.rejects(release.cancel({ release: chain.releaseDir, queue: 'redis://127.0.0.1:1' }), (e: unknown) => e instanceof UsageError && /no Redis answered there .*nothing was cancelled/.test((e as Error).message));
    assert.deepEqual(await readFile(join(chain.releaseDir, RECORD_FILE)), recordBytes, 'release.json untouched');
    assert.equal((await readRecord(chain.releaseDir))!.pending?.version, 4);
    assert.ok(await publishQueue.getJob(names.parentId), 'the publish job is still there');

    // The cancel: two waiting jobs and the publish job removed, the running one named.
    const res = await ndiff('release', 'cancel', '--release', chain.releaseDir, '--queue', redis.url);
    assert.equal(res.code, 0, res.err.join('\n'));
    const said = res.out.join('\n');
    assert.match(said, /version 4 dropped/);
    assert.match(said, new RegExp(`plan ${names.planId} taken off ${redis.url}: 2 waiting job\\(s\\) removed \\(no worker will run them\\), 0 finished job result\\(s\\) dropped, publish job removed`));
    assert.match(said, /the plan's run lock on the queue let go/);
    assert.match(said, new RegExp(`1 job\\(s\\) running on workers \\(${running}\\) are left to finish; their results will be discarded`));
    assert.equal((await readRecord(chain.releaseDir))!.pending, null);
    for (const id of ids) assert.equal(await jobsQueue.getJobState(names.childId(id)), id === running ? 'active' : 'unknown', id);
    assert.equal(await publishQueue.getJob(names.parentId), undefined);

    // The running job finishes; the worker, free again, asks the queue for its next job and finds
    // none ('drained': it would have taken a waiting job of the cancelled plan, had one been left).
    const drained = new Promise<void>((res) => worker!.once('drained', () => res()));
    letGo();
    await until(t.signal, 'the running job to finish', async () => (await jobsQueue.getJobState(taken[0])) === 'completed');
    await orTestEnd(t.signal, () => `the worker to find the queue empty (it took: ${taken.join(', ')})`, drained);
    assert.deepEqual(taken, [names.childId(running)], 'no waiting job of the cancelled plan was run');
    const counts = await jobsQueue.getJobCounts('waiting', 'delayed', 'active', 'prioritized');
    assert.deepEqual(counts, { waiting: 0, delayed: 0, active: 0, prioritized: 0 });

    // A second cancel: nothing pending, nothing changed, and it says so.
    const again = await ndiff('release', 'cancel', '--release', chain.releaseDir, '--queue', redis.url);
    assert.equal(again.code, 2);
    assert.match(again.err.join('\n'), /no pending version .*nothing to cancel, nothing was changed/);
    assert.equal(await jobsQueue.getJobState(taken[0]), 'completed');

    // The same model planned again (the same plan id on the queue): its run starts every job
    // afresh; the result the cancelled plan's running job left is not taken as this plan's.
    await worker.close();
    worker = undefined;
    await addVersion(chain.releaseDir, chain.versions[3], { planOnly: true, history: 3, policy: { method: 'topk', budget: '1%' } });
    assert.equal(planNames((await readRecord(chain.releaseDir))!, chain.releaseDir).planId, names.planId);
    const r2 = spawn(process.execPath, [cli, 'release', 'run', '--release', chain.releaseDir, '--queue', redis.url], { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
    run = r2;
    let log2 = '';
    r2.stderr?.on('data', (d: Buffer) => { log2 += d.toString(); });
    await until(t.signal, 'the new plan to be queued', () => /payload job\(s\)/.test(log2) || r2.exitCode !== null);
    assert.match(log2, /payload job\(s\)/);
    assert.deepEqual(await Promise.all(ids.map((id) => jobsQueue.getJobState(names.childId(id)))), ['waiting', 'waiting', 'waiting'], log2);
    assert.match(log2, /1 job\(s\) left on the queue by a cancelled plan of the same name cleared/);
  } finally {
    if (run && run.exitCode === null && run.signalCode === null) process.kill(-(run.pid as number), 'SIGKILL');
    await worker?.close(true).catch(() => {});
    await Promise.allSettled([jobsQueue.close(), publishQueue.close()]);
    await redis.close();
  }
});

test('release cancel without --queue says the queue was not touched and how to clear it', async () => {
  const chain = await releaseChain(2, { history: 3 });
  await chain.addNext({ planOnly: true });
  const planId = planNames((await readRecord(chain.releaseDir))!, chain.releaseDir).planId;
  const res = await ndiff('release', 'cancel', '--release', chain.releaseDir);
  assert.equal(res.code, 0, res.err.join('\n'));
  assert.match(res.out.join('\n'), new RegExp(`job queue not touched \\(no --queue\\): if plan ${planId} was run on one .*cancel with the queue \\(ndiff release cancel --release .* --queue redis://`));
});

test('a release run watching its plan stops, signing nothing, when the plan is cancelled with --queue', { skip: redisSkip, timeout: ENGINE_TEST_TIMEOUT }, async (t) => {
  const chain = await releaseChain(2, { history: 3 });
  await chain.addNext({ planOnly: true });
  const redis = await startRedis({ signal: t.signal });
  try {
    const lines: string[] = [];
    const run = runPlanOnQueue(chain.releaseDir, redis.url, { pollMs: 50, onProgress: (l) => lines.push(l) });
    run.catch(() => {});
    await until(t.signal, 'the plan to be queued', () => lines.some((l) => /payload job\(s\)/.test(l)));
    const res = await release.cancel({ release: chain.releaseDir, queue: redis.url });
    assert.equal(res.queue?.waiting, 2);
    assert.equal(res.queue?.lock, true);
    await assert.rejects(orTestEnd(t.signal, 'the run to stop', run), (e: unknown) => e instanceof UsageError && /was taken off the queue while this run watched it .*nothing was signed/.test((e as Error).message));
  } finally {
    await redis.close();
  }
});
