/**
 * Plan ids name the release folder as well as the model: two folders of one model (staging and
 * production) run their plans on one queue at once, where before the second was refused as
 * "another plan of release" (the lock and the ids named the model only). A plan an earlier
 * neural-diff queued under the model's name alone is still found, shown and cancelled. And
 * `ndiff release status` of a folder whose plan finished reports it (exit 0), where it was a
 * usage error (exit 2). A real `redis-server` and `ndiff worker` processes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cp } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { readRecord } from '../src/release/record.ts';
import { JOBS_QUEUE, planNames } from '../src/release/queue/engine.ts';
import { runPlanOnQueue } from '../src/release/queue/plan.ts';
import { ticketsOf } from '../src/release/ticket.ts';
import { releaseChain, inAnHour } from './helpers/release-chain.ts';
import { redisSkip, startRedis } from './helpers/redis.ts';
import { runNdiff } from './helpers/ndiff-run.ts';
import { killGroup, startWorker, type NdiffChild } from './helpers/queue-processes.ts';
import { ENGINE_TEST_TIMEOUT, orTestEnd } from './helpers/waits.ts';

test('staging and production folders of one model run their plans on one queue at once; status of a finished plan reports it (exit 0)', { skip: redisSkip, timeout: ENGINE_TEST_TIMEOUT }, async (t) => {
  const chain = await releaseChain(3, { history: 3 });
  await chain.addNext({ planOnly: true });
  const staging = join(chain.work, 'staging');
  await cp(chain.releaseDir, staging, { recursive: true });
  const production = chain.releaseDir;
  const record = (await readRecord(production))!;
  assert.notEqual(planNames(record, staging).planId, planNames(record, production).planId);
  assert.notEqual(planNames(record, staging).lockKey, planNames(record, production).lockKey);
  const redis = await startRedis({ signal: t.signal });
  let worker: NdiffChild | undefined;
  try {
    const publish = { key: chain.key, expiresAt: inAnHour() };
    const runs = [runPlanOnQueue(staging, redis.url, { publish }), runPlanOnQueue(production, redis.url, { publish })];
    for (const r of runs) r.catch(() => {}); // awaited below
    worker = startWorker(redis.url);
    const [a, b] = await orTestEnd(t.signal, () => `both plans to be published (worker: ${worker?.log.slice(-3).join(' | ')})`, Promise.all(runs));
    assert.equal(a.published?.added, 3);
    assert.equal(b.published?.added, 3);
    assert.match(a.planId, /^kws-[0-9a-f]{8}-staging-[0-9a-f]{8}-v4-[0-9a-f]{8}$/);
    assert.match(b.planId, /^kws-[0-9a-f]{8}-release-[0-9a-f]{8}-v4-[0-9a-f]{8}$/);
    // Nothing pending now: status says the plan finished, and where it was signed.
    const status = await runNdiff('release', 'status', '--release', production, '--queue', redis.url);
    assert.equal(status.code, 0, status.err);
    assert.equal(status.out, `${production}: no plan pending: version 4 is the latest, signed in manifest release ${b.published?.release}; nothing to run. Its plan ${b.planId} on the queue: published (completed)`);
  } finally {
    if (worker) await killGroup(worker);
    await redis.close();
  }
});

test('a plan queued under the model\'s name alone (an earlier neural-diff) is shown by status and cancelled with --queue; another folder\'s is left alone', { skip: redisSkip, timeout: ENGINE_TEST_TIMEOUT }, async (t) => {
  const chain = await releaseChain(3, { history: 3 });
  await chain.addNext({ planOnly: true });
  const record = (await readRecord(chain.releaseDir))!;
  const legacy = planNames(record);
  assert.match(legacy.planId, /^kws-[0-9a-f]{8}-v4-[0-9a-f]{8}$/);
  const redis = await startRedis({ signal: t.signal });
  const { FlowProducer } = await import('bullmq');
  const flows = new FlowProducer({ connection: { url: redis.url, maxRetriesPerRequest: null } });
  try {
    // The flow as an earlier `release run` queued it (its run since stopped).
    await flows.add({
      name: 'publish', queueName: legacy.publishQueue, data: { release: resolve(chain.releaseDir), modelId: 'kws', version: 4 }, opts: { jobId: legacy.parentId },
      children: ticketsOf(record).map((ticket) => ({ name: ticket.job.id, queueName: JOBS_QUEUE, data: { ticket, source: chain.releaseDir }, opts: { jobId: legacy.childId(ticket.job.id) } })),
    });
    // Another folder of the model does not take it for its own.
    const other = join(chain.work, 'staging');
    await cp(chain.releaseDir, other, { recursive: true });
    const elsewhere = await runNdiff('release', 'status', '--json', '--release', other, '--queue', redis.url);
    assert.equal((JSON.parse(elsewhere.out) as { planId: string }).planId, planNames(record, other).planId);
    const shown = await runNdiff('release', 'status', '--release', chain.releaseDir, '--queue', redis.url);
    assert.equal(shown.code, 0, shown.err);
    assert.match(shown.out, new RegExp(`^plan ${legacy.planId}: 3 waiting, 0 running, 0 done, 0 failed; publish: waiting-children`, 'm'));
    const cancelled = await runNdiff('release', 'cancel', '--json', '--release', chain.releaseDir, '--queue', redis.url);
    assert.equal(cancelled.code, 0, cancelled.err);
    const doc = JSON.parse(cancelled.out) as { queue: { plan: string; waiting: number; publish: boolean } };
    assert.deepEqual([doc.queue.plan, doc.queue.waiting, doc.queue.publish], [legacy.planId, 3, true]);
  } finally {
    await flows.close();
    await redis.close();
  }
});
