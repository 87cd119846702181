/**
 * What the job engine costs beside the jobs themselves, on a real `redis-server` (skipped with a
 * message where it is not installed): `release run` watches a plan by its jobs' states alone, never
 * reading back their return values (each holds a whole payload); a worker gives each job its share
 * of the cores.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readRecord } from '../src/release/record.ts';
import { countJobs } from '../src/release/queue/plan.ts';
import { bullConnection, connectRedis, JOBS_QUEUE, loadBullmq, planNames } from '../src/release/queue/engine.ts';
import { sandboxEnv, threadsPerJob } from '../src/release/queue/worker.ts';
import { releaseChain } from './helpers/release-chain.ts';
import { redisSkip, startRedis } from './helpers/redis.ts';
import { ENGINE_TEST_TIMEOUT, until } from './helpers/waits.ts';

/** Bytes Redis has sent to its clients so far. */
async function bytesSent(redis: Awaited<ReturnType<typeof connectRedis>>): Promise<number> {
  const info = await redis.info('stats');
  return Number(/total_net_output_bytes:(\d+)/.exec(info)?.[1]);
}

test('release run counts a plan\'s jobs by state without reading their return values back', { skip: redisSkip, timeout: ENGINE_TEST_TIMEOUT }, async (t) => {
  const chain = await releaseChain(3, { history: 3 });
  await chain.addNext({ planOnly: true });
  const record = await readRecord(chain.releaseDir);
  const names = planNames(record!, chain.releaseDir);
  const ids = record!.pending!.jobs.map((j) => j.id);
  assert.equal(ids.length, 3);
  const redis = await startRedis({ signal: t.signal });
  const bull = await loadBullmq();
  const connection = bullConnection(redis.url);
  const queue = new bull.Queue(JOBS_QUEUE, { connection });
  const client = await connectRedis(redis.url);
  // Each job returns 1 MB, as a job returning a payload of that size does.
  const big = 'p'.repeat(1 << 20);
  const worker = new bull.Worker(JOBS_QUEUE, async () => ({ payload: big }), { connection });
  try {
    for (const id of ids.slice(0, 2)) await queue.add(id, {}, { jobId: names.childId(id) });
    await until(t.signal, 'the first two jobs to be done', async () => (await queue.getCompletedCount()) === 2, 50);
    await worker.close();
    await queue.add(ids[2], {}, { jobId: names.childId(ids[2]) });
    const before = await bytesSent(client);
    const counts = await countJobs(queue, names, record!);
    const sent = (await bytesSent(client)) - before;
    assert.deepEqual(counts, { waiting: 1, running: 0, done: 2, failed: 0 });
    assert.ok(sent < 16_384, `counting 3 jobs moved ${sent} bytes out of Redis: expected their states alone, not their 1 MB return values`);
  } finally {
    await worker.close();
    await queue.close();
    client.disconnect();
    await redis.close();
  }
});

test('a worker gives each job its share of the cores as threads, unless the environment sets them', () => {
  assert.deepEqual([threadsPerJob(1, 2), threadsPerJob(2, 2), threadsPerJob(3, 2), threadsPerJob(2, 8), threadsPerJob(3, 8)], [2, 1, 1, 4, 2]);
  const env = sandboxEnv({ PATH: '/bin' }, '/tmp/cache', 1);
  assert.deepEqual([env.PATH, env.NDIFF_WORKER_CACHE, env.OPENBLAS_NUM_THREADS, env.OMP_NUM_THREADS], ['/bin', '/tmp/cache', '1', '1']);
  assert.equal(sandboxEnv({ OPENBLAS_NUM_THREADS: '3' }, '/c', 1).OPENBLAS_NUM_THREADS, '3', 'a count the user set is kept');
});
