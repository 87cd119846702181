/**
 * The lock that lets one plan of a release run at a time (`ndiff release run`), held across a
 * stall: a run stopped (SIGSTOP) past its lock's life lets the lock lapse, another run takes the
 * plan, and the first, resumed, must stop without writing over the other's token. Before, its
 * renewal (`SET ... XX`) wrote its own token back whatever the key held, so two runs of one plan
 * went on at once, neither knowing. A real `redis-server`, a real `ndiff release run` process.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readRecord } from '../src/release/record.ts';
import { connectRedis, planNames } from '../src/release/queue/engine.ts';
import { releaseChain } from './helpers/release-chain.ts';
import { redisSkip, startRedis } from './helpers/redis.ts';
import { killGroup, ndiffChild, startWorker, type NdiffChild } from './helpers/queue-processes.ts';
import { ENGINE_TEST_TIMEOUT, orTestEnd, until } from './helpers/waits.ts';

const token = (holder: string | null) => (holder ? (JSON.parse(holder) as { token: string }).token : null);

test('a run stalled past its lock\'s life, the plan taken by another run: resumed, it stops (exit 2, saying why) and leaves the other\'s lock as it is; the other publishes', { skip: redisSkip || (process.platform === 'win32' && 'SIGSTOP'), timeout: ENGINE_TEST_TIMEOUT }, async (t) => {
  const chain = await releaseChain(3, { history: 3 });
  await chain.addNext({ planOnly: true });
  const names = planNames((await readRecord(chain.releaseDir))!, chain.releaseDir);
  const redis = await startRedis({ signal: t.signal });
  const client = await connectRedis(redis.url);
  let first: NdiffChild | undefined;
  let second: NdiffChild | undefined;
  let worker: NdiffChild | undefined;
  try {
    // The first run, with a lock of 4 s; no worker yet, so it waits on its jobs.
    first = ndiffChild(['release', 'run', '--release', chain.releaseDir, '--queue', redis.url, '--lock-seconds', '4']);
    const run1 = first;
    await until(t.signal, 'the first run to queue its plan', () => run1.log.some((l) => /payload job\(s\)/.test(l)) || run1.exitCode !== null);
    const firstHolder = await client.get(names.lockKey);
    assert.ok(firstHolder, `the first run holds the lock: ${run1.log.join(' | ')}`);
    // Stalled (a machine paused, a partition): its lock lapses.
    process.kill(run1.pid as number, 'SIGSTOP');
    await until(t.signal, 'the stalled run\'s lock to lapse', async () => (await client.get(names.lockKey)) === null);
    // A second run takes the plan (it resumes the flow on the queue).
    const keyFile = join(chain.work, 'release.private.pem');
    await writeFile(keyFile, chain.keys.privateKeyPem);
    second = ndiffChild(['release', 'run', '--release', chain.releaseDir, '--queue', redis.url, '--key', keyFile]);
    const run2 = second;
    await until(t.signal, 'the second run to take the plan', () => run2.log.some((l) => /already on the queue \(waiting-children\): resuming it/.test(l)) || run2.exitCode !== null);
    const secondHolder = await client.get(names.lockKey);
    assert.ok(secondHolder && token(secondHolder) !== token(firstHolder), `the second run holds the lock: ${secondHolder}`);
    // Resumed: its next renewal finds the lock another's.
    process.kill(run1.pid as number, 'SIGCONT');
    await until(t.signal, 'the resumed run to stop, or to write over the lock', async () => run1.exitCode !== null || (await client.get(names.lockKey)) !== secondHolder);
    assert.equal(await client.get(names.lockKey), secondHolder, 'the second run\'s lock is left as it was');
    const exit = await orTestEnd(t.signal, 'the resumed run to exit', run1.exited);
    assert.equal(exit.code, 2, run1.log.join('\n'));
    const said = run1.log.join('\n');
    assert.match(said, new RegExp(`plan ${names.planId} stopped: its lock in Redis (lapsed .* and another run holds it now \\(.*"token":"${token(secondHolder)}"|could not be renewed for [\\d.]+ s, more than half its life \\(4 s)`));
    assert.match(said, /nothing was signed by this run, and the lock was left as it is\. Expected one run of a plan at a time: see which run holds it \(ndiff release status/);
    assert.equal(await client.get(names.lockKey), secondHolder, 'the stopped run let go of nothing but its own');
    // The second run sees the plan through.
    worker = startWorker(redis.url);
    const done = await orTestEnd(t.signal, () => `the second run to publish (worker: ${worker?.log.slice(-3).join(' | ')})`, run2.exited);
    assert.equal(done.code, 0, run2.log.join('\n'));
    assert.match(run2.out.join('\n'), /plan .* done \(3 job\(s\)\); manifest release \d+ signed, 3 payload\(s\) added/);
  } finally {
    if (first) await killGroup(first);
    if (second) await killGroup(second);
    if (worker) await killGroup(worker);
    client.disconnect();
    await redis.close();
  }
});
