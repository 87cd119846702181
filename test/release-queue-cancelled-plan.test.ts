/**
 * A plan cancelled while its jobs sat on the queue, then planned again for the same model: the
 * plan's name on the queue is made of the release, the version and its fingerprint, so the new
 * `ndiff release run` found the cancelled plan's flow and resumed it, taking the results its
 * workers had made under the cancelled plan's policy (top-k payloads for a plan now exact, signed
 * with a warning). A run now resumes only a flow of the same plan (the same jobs); another is
 * cleared with its results and run afresh. A real `redis-server`, a real `ndiff worker` and a
 * real `ndiff release run` killed mid-plan.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { addVersion, cancelPending } from '../src/release/add.ts';
import { readRecord } from '../src/release/record.ts';
import { planStatus, runPlanOnQueue } from '../src/release/queue/plan.ts';
import { connectRedis, planNames } from '../src/release/queue/engine.ts';
import { releaseChain, inAnHour } from './helpers/release-chain.ts';
import { redisSkip, startRedis } from './helpers/redis.ts';
import { ENGINE_TEST_TIMEOUT, orTestEnd, until } from './helpers/waits.ts';

const cli = join(import.meta.dirname, '..', 'cli', 'ndiff.mjs');

function start(...args: string[]): ChildProcess & { log: string[] } {
  const child = spawn(process.execPath, [cli, ...args], { detached: true, stdio: ['ignore', 'ignore', 'pipe'] }) as ChildProcess & { log: string[] };
  child.log = [];
  child.stderr?.on('data', (d: Buffer) => child.log.push(...d.toString().split('\n').filter(Boolean)));
  return child;
}

async function kill(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const gone = new Promise((r) => p.once('exit', r));
  process.kill(-(p.pid as number), 'SIGKILL');
  await gone;
}

test('release run after a plan was cancelled and planned again: the cancelled plan\'s results on the queue are not taken', { skip: redisSkip, timeout: ENGINE_TEST_TIMEOUT }, async (t) => {
  const chain = await releaseChain(3, { history: 3 });
  // Version 4 planned top-k; its run is killed once the plan is on the queue.
  await chain.addNext({ planOnly: true, policy: { method: 'topk', budget: '1%' } });
  const redis = await startRedis({ signal: t.signal });
  const procs: (ChildProcess & { log: string[] })[] = [];
  try {
    const first = await readRecord(chain.releaseDir);
    const names = planNames(first!, chain.releaseDir);
    const run = start('release', 'run', '--release', chain.releaseDir, '--queue', redis.url);
    procs.push(run);
    await until(t.signal, 'the plan to be queued', () => run.log.some((l) => /payload job\(s\)/.test(l)));
    await kill(run);
    // A worker does the cancelled plan's jobs while no run watches.
    procs.push(start('worker', '--queue', redis.url, '--lock-seconds', '2'));
    await until(t.signal, 'the top-k jobs to be done', async () => (await planStatus(chain.releaseDir, redis.url)).jobs.every((j) => j.state === 'done'));
    // The killed run's lock lapses (within 30 s): let it go now.
    const client = await connectRedis(redis.url);
    await client.del(names.lockKey);
    client.disconnect();

    // Cancelled, then the same model planned again, exact: the same plan name on the queue.
    assert.equal(await cancelPending(chain.releaseDir), 4);
    await addVersion(chain.releaseDir, chain.versions[3], { planOnly: true, history: 3 });
    assert.equal(planNames((await readRecord(chain.releaseDir))!, chain.releaseDir).planId, names.planId);

    const lines: string[] = [];
    const res = await orTestEnd(t.signal, 'the plan to be published', runPlanOnQueue(chain.releaseDir, redis.url, { publish: { key: chain.key, expiresAt: inAnHour() }, onProgress: (l) => lines.push(l) }));
    assert.equal(res.published?.added, 3);
    assert.deepEqual(res.published?.lossy, [], 'no top-k payload of the cancelled plan was signed');
    assert.ok(res.published?.manifest.payloads.filter((p) => p.toVersion === 4).every((p) => p.exact && p.method === 'exact'));
    assert.match(lines.join('\n'), new RegExp(`plan ${names.planId} on the queue was planned otherwise`));
  } finally {
    for (const p of procs) await kill(p);
    await redis.close();
  }
});
