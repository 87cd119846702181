/**
 * A worker killed mid-job (`kill -9` of its process group), as `ndiff release status` and `ndiff
 * release run` show it. Before, status showed the job `running` with its last progress cut at
 * 160 characters (mid-URL), no worker, no sign of whether it lived; the run said nothing when the
 * job stalled and was taken again, and the worker that took it logged `attempt 1`. Now status
 * names the worker, its last progress's age and when the job's lock expires, or that it expired
 * (the job will be taken again); the run says the job stalled and who took it, at attempt 2. A
 * real `redis-server`, real `ndiff worker` and `ndiff release run` processes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { readRecord } from '../src/release/record.ts';
import { planNames } from '../src/release/queue/engine.ts';
import { releaseChain } from './helpers/release-chain.ts';
import { serveRelease } from './helpers/release-server.ts';
import { redisSkip, startRedis } from './helpers/redis.ts';
import { runNdiff } from './helpers/ndiff-run.ts';
import { killGroup, ndiffChild, startWorker, type NdiffChild } from './helpers/queue-processes.ts';
import { ENGINE_TEST_TIMEOUT, orTestEnd, until } from './helpers/waits.ts';

test('a worker killed mid-job: status names the worker, its last progress whole and when the lock expires, then that it expired; the run says the job stalled and was taken again at attempt 2', { skip: redisSkip, timeout: ENGINE_TEST_TIMEOUT }, async (t) => {
  const chain = await releaseChain(3, { history: 3 });
  await chain.addNext({ planOnly: true });
  const names = planNames((await readRecord(chain.releaseDir))!, chain.releaseDir);
  const redis = await startRedis({ signal: t.signal });
  const server = await serveRelease(chain.releaseDir);
  // The first input a worker asks for never comes: the worker is mid-job when it is killed.
  server.faults.push({ match: (p) => p.startsWith('/blobs/'), times: 1, kind: 'stall' });
  const first = startWorker(redis.url);
  let second: NdiffChild | undefined;
  const run = ndiffChild(['release', 'run', '--release', chain.releaseDir, '--queue', redis.url, '--source', server.url]);
  const status = async () => (await runNdiff('release', 'status', '--release', chain.releaseDir, '--queue', redis.url)).out;
  try {
    await until(t.signal, 'the first worker to be stuck on its input', () => server.log.some((q) => q.fault === 'stall'));
    const live = new RegExp(`^(v\\d+-from-v\\d+(?:-[0-9a-f]{8})?): running on worker ${hostname()}:${first.pid} \\(attempt 1\\), last progress [\\d.]+ s ago; its lock expires in [\\d.]+ s unless the worker renews it$`, 'm');
    let shown = '';
    await until(t.signal, 'status to show the running job with its worker and progress', async () => live.test(shown = await status()));
    const job = live.exec(shown)![1];
    // The last progress whole, the URL of the input to its last hex digit.
    assert.match(shown, new RegExp(`^${job} +running +1 +fetching blobs/[0-9a-f]{64} \\(\\d+ bytes\\) from http://127\\.0\\.0\\.1:\\d+/blobs/[0-9a-f]{64}$`, 'm'), shown);
    await killGroup(first);
    // No worker left: the job stays running in Redis, its lock lapses, and status says so.
    const expired = new RegExp(`^${job}: running on worker ${hostname()}:${first.pid} \\(attempt 1\\), last progress [\\d.]+ s ago; its lock expired: the worker is gone \\(killed, or its machine lost\\), and a live worker takes the job again at its next look for stalled jobs$`, 'm');
    await until(t.signal, 'status to say the dead worker\'s lock expired', async () => expired.test(shown = await status()));
    const doc = JSON.parse((await runNdiff('release', 'status', '--json', '--release', chain.releaseDir, '--queue', redis.url)).out) as { jobs: { id: string; worker?: string; lockExpiresInMs?: number }[] };
    assert.deepEqual(doc.jobs.filter((j) => j.id === job).map((j) => [j.worker, j.lockExpiresInMs]), [[`${hostname()}:${first.pid}`, 0]]);
    second = startWorker(redis.url);
    const res = await orTestEnd(t.signal, () => `the run to finish (run: ${run.log.slice(-4).join(' | ')})`, run.exited);
    assert.equal(res.code, 0, run.log.join('\n'));
    const said = run.log.join('\n');
    assert.match(said, new RegExp(`^${job}: stalled: its worker stopped renewing the job's lock \\(killed, or its machine lost\\), so the job went back on the queue for a live worker \\(stall 1\\)$`, 'm'));
    assert.match(said, new RegExp(`^${job}: started again by worker ${hostname()}:${second.pid} \\(attempt 2\\)$`, 'm'));
    assert.ok(said.indexOf(`${job}: stalled`) < said.indexOf(`${job}: started again`), said);
    assert.ok(second.log.includes(`${names.childId(job)}: started (attempt 2)`), second.log.join(' | '));
  } finally {
    await killGroup(run);
    await killGroup(first);
    if (second) await killGroup(second);
    await server.close();
    await redis.close();
  }
});
