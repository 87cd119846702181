/**
 * A job pushed into a plan's publish queue by something other than `ndiff release run` (the queue
 * is shared: anyone who can reach Redis can add one, or an old job can be replayed under another
 * id): the run's publish worker must not take it as the plan's publish job. Taking it, the run
 * marked every payload job as taken in with no result, so the plan's real results were never
 * written and the plan failed once its workers had done their jobs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { runPlanOnQueue } from '../src/release/queue/plan.ts';
import { bullConnection, loadBullmq, planNames } from '../src/release/queue/engine.ts';
import { readRecord } from '../src/release/record.ts';
import { releaseChain, inAnHour } from './helpers/release-chain.ts';
import { redisSkip, startRedis } from './helpers/redis.ts';
import { ENGINE_TEST_TIMEOUT, orTestEnd, until } from './helpers/waits.ts';

const cli = join(import.meta.dirname, '..', 'cli', 'ndiff.mjs');

test('a forged job in a plan\'s publish queue is refused; the plan is published from its own jobs', { skip: redisSkip, timeout: ENGINE_TEST_TIMEOUT }, async (t) => {
  const chain = await releaseChain(2, { history: 1 });
  await chain.addNext({ planOnly: true });
  const record = await readRecord(chain.releaseDir);
  const names = planNames(record!, chain.releaseDir);
  const redis = await startRedis({ signal: t.signal });
  let worker: ChildProcess | undefined;
  const bull = await loadBullmq();
  const publishQueue = new bull.Queue(names.publishQueue, { connection: bullConnection(redis.url) });
  try {
    const lines: string[] = [];
    const run = runPlanOnQueue(chain.releaseDir, redis.url, { publish: { key: chain.key, expiresAt: inAnHour() }, onProgress: (l) => lines.push(l) });
    run.catch(() => {});
    await until(t.signal, 'the plan to be queued', () => lines.some((l) => /payload job\(s\)/.test(l)));
    await publishQueue.add('publish', { release: chain.releaseDir }, { jobId: 'forged-publish' });
    await until(t.signal, 'the forged job to be taken', async () => ['completed', 'failed'].includes(await publishQueue.getJobState('forged-publish')));
    assert.equal(await publishQueue.getJobState('forged-publish'), 'failed', 'the forged job is refused');
    // Now a worker does the plan's jobs.
    worker = spawn(process.execPath, [cli, 'worker', '--queue', redis.url, '--lock-seconds', '2'], { detached: true, stdio: 'ignore' });
    const res = await orTestEnd(t.signal, 'the plan to be published', run);
    assert.equal(res.published?.added, 1, lines.join('\n'));
  } finally {
    if (worker && worker.exitCode === null && worker.signalCode === null) {
      const gone = new Promise((r) => worker!.once('exit', r));
      process.kill(-(worker.pid as number), 'SIGKILL');
      await gone;
    }
    await publishQueue.close();
    await redis.close();
  }
});
