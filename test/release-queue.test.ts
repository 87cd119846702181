/**
 * A release's plan on a job engine (BullMQ on a real `redis-server`, skipped with a message where
 * it is not installed): `ndiff worker` processes fetch each job's inputs by content from the
 * release folder served over HTTP (no shared disk), `runPlanOnQueue` (`ndiff release run`) checks
 * every result as publish does and publishes. Faults with real processes: a worker killed mid-job,
 * Redis restarted mid-plan, a worker returning a forged result, two plans of a release at once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { cp, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { runJob } from '../src/release/jobs.ts';
import { publishReleaseFolder } from '../src/release/publish.ts';
import { readRecord } from '../src/release/record.ts';
import { planStatus, runPlanOnQueue } from '../src/release/queue/plan.ts';
import { JOBS_QUEUE, planNames } from '../src/release/queue/engine.ts';
import { releaseChain, inAnHour, type ReleaseChain } from './helpers/release-chain.ts';
import { serveRelease } from './helpers/release-server.ts';
import { redisSkip, startRedis } from './helpers/redis.ts';

const cli = join(import.meta.dirname, '..', 'cli', 'ndiff.mjs');

/** An `ndiff worker` process (its own process group, so a kill takes its sandboxed children too). */
function startWorker(url: string, ...extra: string[]): ChildProcess & { log: string[] } {
  const child = spawn(process.execPath, [cli, 'worker', '--queue', url, '--lock-seconds', '2', ...extra], { detached: true, stdio: ['ignore', 'ignore', 'pipe'] }) as ChildProcess & { log: string[] };
  child.log = [];
  child.stderr?.on('data', (d: Buffer) => child.log.push(...d.toString().split('\n').filter(Boolean)));
  return child;
}

/** Kill a worker and everything it started, at once (a machine lost mid-job). */
async function killWorker(w: ChildProcess): Promise<void> {
  if (w.exitCode !== null || w.signalCode !== null) return;
  const gone = new Promise((r) => w.once('exit', r));
  process.kill(-(w.pid as number), 'SIGKILL');
  await gone;
}

/** A release with `versions` published and the next one planned (exact payloads from the last 3). */
async function plannedRelease(versions = 3): Promise<ReleaseChain> {
  const chain = await releaseChain(versions);
  await chain.addNext({ planOnly: true });
  return chain;
}

/** The manifest entries the same plan gets on one machine: each job run here, then published. */
async function localPayloads(chain: ReleaseChain): Promise<string[]> {
  const copy = join(chain.work, 'local');
  await cp(chain.releaseDir, copy, { recursive: true });
  const record = await readRecord(copy);
  for (const job of record?.pending?.jobs ?? []) await runJob(copy, record!, job);
  const r = await publishReleaseFolder(copy, { key: chain.key, expiresAt: inAnHour() });
  return r.manifest.payloads.map((p) => `${p.fromVersion}->${p.toVersion} ${p.sha256}`);
}

test('a plan on two worker processes, inputs over HTTP: published, every payload the bytes of a single-machine run', { skip: redisSkip, timeout: 120_000 }, async () => {
  const chain = await plannedRelease();
  const expected = await localPayloads(chain);
  const redis = await startRedis();
  const server = await serveRelease(chain.releaseDir);
  const workers = [startWorker(redis.url), startWorker(redis.url)];
  try {
    const lines: string[] = [];
    const res = await runPlanOnQueue(chain.releaseDir, redis.url, { source: server.url, publish: { key: chain.key, expiresAt: inAnHour() }, onProgress: (l) => lines.push(l) });
    assert.equal(res.jobs, 3);
    assert.equal(res.published?.added, 3);
    const got = res.published?.manifest.payloads.map((p) => `${p.fromVersion}->${p.toVersion} ${p.sha256}`);
    assert.deepEqual(got, expected, 'the queue run signs the same payloads, byte for byte, as one machine');
    assert.ok(server.log.some((q) => q.path.startsWith('/blobs/')), 'workers fetched their inputs over HTTP');
    assert.deepEqual(await readdir(join(chain.releaseDir, 'jobs')), [], 'publish took the job files in');
    assert.match(lines.join('\n'), /plan kws-[0-9a-f]{8}-v4-[0-9a-f]{8}: 3 payload job\(s\)/);
  } finally {
    await Promise.all(workers.map(killWorker));
    await server.close();
    await redis.close();
  }
});
