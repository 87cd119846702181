/**
 * `npm run bench:release -- --quick` in the suite: every device on an older version reaches the
 * newest on payloads with fewer bytes than the full model, the bytes the server sent are the
 * planner's, and a device with an unknown model downloads the full model. `--workers --kills
 * --quick`: plans on the job engine (a real redis-server) sign the one-machine payloads; with
 * `--plan training`, learned jobs of the keyword model trained by the workers do too.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { releaseBenchTable, runReleaseBench } from '../bench/release.ts';
import { redisSkip } from './helpers/redis.ts';
import { benchmarkSkip } from './helpers/benchmarks.ts';

test('bench:release --quick: bytes per starting version against the full model', async () => {
  const r = await runReleaseBench({ quick: true, log: () => {} });
  assert.equal(r.rows.length, r.versions);
  const older = r.rows.filter((x) => x.from !== 'unknown');
  assert.deepEqual(older.map((x) => x.from), ['v1', 'v2', 'v3', 'v4']);
  for (const x of older) {
    assert.ok(x.path.startsWith(`${x.from} -> `) && x.path.endsWith(`-> v${r.versions}`), x.path);
    assert.ok(x.bytes > 0 && x.bytes < x.fullBytes, `${x.from}: ${x.bytes} of ${x.fullBytes}`);
  }
  // A device further behind never pays less than one closer to the newest (each moved the model further).
  for (let i = 1; i < older.length; i++) assert.ok(older[i].bytes <= older[i - 1].bytes, `${older[i].from} ${older[i].bytes} > ${older[i - 1].from} ${older[i - 1].bytes}`);
  const unknown = r.rows.find((x) => x.from === 'unknown');
  assert.deepEqual([unknown?.path, unknown?.bytes], ['full model', unknown?.fullBytes]);
  assert.match(releaseBenchTable(r), /\| v1 \| v1 -> [\s\S]*\| unknown \| full model \| [\d,]+ \| 100\.0% \|/);
});

test('bench:release --workers 2 --kills 1 --quick: plans on the job engine publish the one-machine payloads, a worker killed or not', { skip: redisSkip || benchmarkSkip, timeout: 240_000 }, async () => {
  const { runReleaseQueueBench, releaseQueueTable } = await import('../bench/release-queue.ts');
  const r = await runReleaseQueueBench({ workers: [2], kills: 1, quick: true, log: () => {} });
  assert.equal(r.jobs, 6);
  assert.deepEqual(r.rows.map((x) => [x.workers, x.kills, x.identical]), [['single machine', undefined, true], [2, undefined, true], [2, 1, true]]);
  assert.match(releaseQueueTable(r), /\| 2 worker\(s\), 1 killed \| \d+ \| [\d.]+ \| {2}\| [\d.]+ \([\d.]+\) \| yes \|/);
  // CPU-seconds a job, counted from /proc (Linux): the workers' share is part of the whole.
  for (const x of r.rows.filter((row) => row.workers !== 'single machine')) assert.ok(process.platform !== 'linux' || (x.workerCpuPerJob > 0 && x.workerCpuPerJob < x.cpuPerJob), JSON.stringify(x));
});

test('bench:release --workers 2 --plan training --quick: learned jobs of the keyword model trained by workers sign the one-machine payloads', { skip: redisSkip || benchmarkSkip, timeout: 600_000 }, async (t) => {
  const { runReleaseQueueBench } = await import('../bench/release-queue.ts');
  const { ToolsUnavailableError } = await import('../examples/keyword-spotting/data.ts');
  let r;
  try {
    r = await runReleaseQueueBench({ workers: [2], plan: 'training', quick: true, log: () => {} });
  } catch (e) {
    // The keyword data is rendered with espeak-ng and flite, installed with apt-get when missing (as root).
    if (e instanceof ToolsUnavailableError && process.getuid?.() !== 0) return t.skip(`speech tools unavailable and not root: ${(e as Error).message}`);
    throw e;
  }
  assert.equal(r.jobs, 3, 'version 4 from each of the last 3 versions, sparse at 5%');
  assert.match(r.model, /keyword CNN/);
  assert.deepEqual(r.rows.map((x) => [x.workers, x.identical]), [['single machine', true], [2, true]]);
  for (const x of r.rows.filter((row) => row.workers !== 'single machine')) assert.ok(process.platform !== 'linux' || (x.workerCpuPerJob > 0 && x.workerCpuPerJob < x.cpuPerJob), JSON.stringify(x));
});
