/**
 * `ndiff release run` checks each worker's result as it arrives, in check processes, while the
 * other jobs still run (a real `redis-server`, skipped with a message where it is not installed);
 * a forged result is still refused with the reason and nothing is signed; publish takes a check's
 * verdict only for the exact bytes it was given on.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runJob, jobFiles } from '../src/release/jobs.ts';
import { publishReleaseFolder, verdictKey } from '../src/release/publish.ts';
import { readRecord } from '../src/release/record.ts';
import { planStatus, runPlanOnQueue, type PlanJobStatus } from '../src/release/queue/plan.ts';
import { JOBS_QUEUE } from '../src/release/queue/engine.ts';
import { checkResult } from '../src/release/queue/check-process.ts';
import { inAnHour, plannedRelease } from './helpers/release-chain.ts';
import { redisSkip, startRedis } from './helpers/redis.ts';
import { ENGINE_TEST_TIMEOUT, orTestEnd, until } from './helpers/waits.ts';

test('results are checked as they arrive: the first, forged, is refused with the reason and the second passes while the last job still runs; nothing is signed', { skip: redisSkip, timeout: ENGINE_TEST_TIMEOUT }, async (t) => {
  const chain = await plannedRelease();
  const redis = await startRedis({ signal: t.signal });
  const { Worker } = await import('bullmq');
  const { runTicket, checkTicket, ticketsOf } = await import('../src/release/ticket.ts');
  const manifestBefore = await readFile(join(chain.releaseDir, 'manifest.json'));
  const record = (await readRecord(chain.releaseDir))!;
  const lines: string[] = [];
  const verdictLines = () => lines.filter((l) => /: (checked, passes|refused by) publish's checks/.test(l));
  // One job at a time, in order: the first answered with another job's result (a forgery), the
  // last held until the run has given its verdicts on the two before it (for as long as the test runs).
  let taken = 0;
  let forged: string | undefined;
  let seenWhileLastRan: { lines: string[]; status?: PlanJobStatus[] } | undefined;
  const cache = join(chain.work, 'cache');
  const worker = new Worker(JOBS_QUEUE, async (job) => {
    const n = ++taken;
    const ticket = checkTicket(job.data.ticket);
    if (n === 3) {
      await until(t.signal, `the run's verdicts on the two results before the last job (lines: ${lines.join(' | ')})`, () => verdictLines().length >= 2);
      seenWhileLastRan = { lines: verdictLines() };
      seenWhileLastRan.status = (await planStatus(chain.releaseDir, redis.url)).jobs;
    }
    if (n === 1) forged = ticket.job.id;
    const answer = n === 1 ? ticketsOf(record).find((t) => t.job.id !== ticket.job.id)! : ticket;
    const out = await runTicket(answer, { source: job.data.source, cacheDir: cache });
    return { result: out.result, ...(out.payload ? { payload: Buffer.from(out.payload).toString('base64') } : {}) };
  }, { connection: { url: redis.url, maxRetriesPerRequest: null }, concurrency: 1 });
  try {
    await assert.rejects(orTestEnd(t.signal, 'the plan to be refused', runPlanOnQueue(chain.releaseDir, redis.url, { publish: { key: chain.key, expiresAt: inAnHour() }, checkConcurrency: 2, pollMs: 100, onProgress: (l) => lines.push(l) })), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'ND_PAYLOAD_FORMAT', e.message);
      assert.match(e.message, new RegExp(`1 result\\(s\\) refused by publish's checks \\(${forged}: job ${forged}: its payload patches base [0-9a-f]{16}, the job's base is`));
      assert.match(e.message, /nothing was signed/);
      return true;
    });
    assert.ok(seenWhileLastRan, 'the last job ran');
    assert.equal(seenWhileLastRan.lines.length, 2, `both results before the last job were checked while it ran: ${lines.join(' | ')}`);
    assert.match(seenWhileLastRan.lines.join('\n'), new RegExp(`${forged}: refused by publish's checks: job ${forged}: its payload patches base`));
    assert.match(seenWhileLastRan.lines.join('\n'), /: checked, passes publish's checks/);
    const during = seenWhileLastRan.status ?? [];
    assert.equal(during.find((j) => j.id === forged)?.state, 'refused', 'status shows the refusal while the plan still runs');
    assert.match(during.find((j) => j.id === forged)?.reason ?? '', /its payload patches base/);
    assert.equal(during.filter((j) => j.state === 'running').length, 1, JSON.stringify(during));
    assert.deepEqual(await readFile(join(chain.releaseDir, 'manifest.json')), manifestBefore, 'nothing was signed');
    assert.equal((await readRecord(chain.releaseDir))?.pending?.version, 4, 'the version is still pending');
  } finally {
    await worker.close();
    await redis.close();
  }
});

test('publish takes a verdict only for the bytes it was given on: a result replaced after its check is checked again and refused', { timeout: 120_000 }, async () => {
  const chain = await plannedRelease();
  const record = (await readRecord(chain.releaseDir))!;
  const [a, b, c] = record.pending!.jobs;
  for (const job of [a, b, c]) await runJob(chain.releaseDir, record, job);
  // The check a check process runs: it passes, bound to what it read.
  const verdict = await checkResult({ releaseDir: chain.releaseDir, job: a.id, accept: [] });
  assert.ok('entry' in verdict, JSON.stringify(verdict));
  const files = jobFiles(chain.releaseDir, a.id);
  const passed = new Map([[a.id, { key: verdict.key, entry: verdict.entry }]]);
  const checked = { result: await readFile(files.result), payload: await readFile(files.payload) };
  // Then job b's result and payload are put in job a's place (a well-formed result of another job).
  const other = jobFiles(chain.releaseDir, b.id);
  const bResult = JSON.parse(await readFile(other.result, 'utf8'));
  await writeFile(files.result, JSON.stringify({ ...bResult, id: a.id }));
  await writeFile(files.payload, await readFile(other.payload));
  const now = JSON.parse(await readFile(files.result, 'utf8'));
  assert.notEqual(verdictKey(record, a, now, new Uint8Array(await readFile(files.payload)), []), verdict.key);
  await assert.rejects(publishReleaseFolder(chain.releaseDir, { key: chain.key, expiresAt: inAnHour(), verdicts: passed }), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'ND_PAYLOAD_FORMAT', e.message);
    assert.match(e.message, new RegExp(`job ${a.id}: its payload patches base`));
    return true;
  });
  // With the checked bytes back, the verdict is taken and the payloads are those of a plain publish.
  await writeFile(files.result, checked.result);
  await writeFile(files.payload, checked.payload);
  const plainDir = join(chain.work, 'plain');
  await cp(chain.releaseDir, plainDir, { recursive: true });
  const plain = await publishReleaseFolder(plainDir, { key: chain.key, expiresAt: inAnHour() });
  const r = await publishReleaseFolder(chain.releaseDir, { key: chain.key, expiresAt: inAnHour(), verdicts: passed });
  assert.equal(r.added, 3);
  assert.deepEqual(r.manifest.payloads, plain.manifest.payloads, 'the same signed payloads, byte for byte, as publish checking everything itself');
});
