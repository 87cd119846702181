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
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { readRecord } from '../src/release/record.ts';
import { planStatus, runPlanOnQueue } from '../src/release/queue/plan.ts';
import { JOBS_QUEUE, planNames } from '../src/release/queue/engine.ts';
import { inAnHour, plannedRelease, localPayloads } from './helpers/release-chain.ts';
import { serveRelease } from './helpers/release-server.ts';
import { redisSkip, startRedis } from './helpers/redis.ts';
import { ENGINE_TEST_TIMEOUT, orTestEnd, until } from './helpers/waits.ts';
import { main } from '../cli/ndiff.ts';

const cli = join(import.meta.dirname, '..', 'cli', 'ndiff.mjs');

/** An `ndiff worker` process (its own process group, so a kill takes its job processes too). */
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



test('a plan on two worker processes, inputs over HTTP: published, every payload the bytes of a single-machine run', { skip: redisSkip, timeout: ENGINE_TEST_TIMEOUT }, async (t) => {
  const chain = await plannedRelease();
  const expected = await localPayloads(chain);
  const redis = await startRedis({ signal: t.signal });
  const server = await serveRelease(chain.releaseDir);
  const workers = [startWorker(redis.url), startWorker(redis.url)];
  try {
    const lines: string[] = [];
    const res = await orTestEnd(t.signal, 'the plan to be published', runPlanOnQueue(chain.releaseDir, redis.url, { source: server.url, publish: { key: chain.key, expiresAt: inAnHour() }, onProgress: (l) => lines.push(l) }));
    assert.equal(res.jobs, 3);
    assert.equal(res.published?.added, 3);
    const got = res.published?.manifest.payloads.map((p) => `${p.fromVersion}->${p.toVersion} ${p.sha256}`);
    assert.deepEqual(got, expected, 'the queue run signs the same payloads, byte for byte, as one machine');
    assert.ok(server.log.some((q) => q.path.startsWith('/blobs/')), 'workers fetched their inputs over HTTP');
    assert.deepEqual(await readdir(join(chain.releaseDir, 'jobs')), [], 'publish took the job files in');
    assert.match(lines.join('\n'), /plan kws-[0-9a-f]{8}-release-[0-9a-f]{8}-v4-[0-9a-f]{8}: 3 payload job\(s\)/);
  } finally {
    await Promise.all(workers.map(killWorker));
    await server.close();
    await redis.close();
  }
});

test('a worker killed mid-job: the job is taken again by another worker and the plan is published as on one machine', { skip: redisSkip, timeout: ENGINE_TEST_TIMEOUT }, async (t) => {
  const chain = await plannedRelease();
  const expected = await localPayloads(chain);
  const redis = await startRedis({ signal: t.signal });
  const server = await serveRelease(chain.releaseDir);
  // The first input a worker asks for never comes: the worker is mid-job when it is killed.
  server.faults.push({ match: (p) => p.startsWith('/blobs/'), times: 1, kind: 'stall' });
  const first = startWorker(redis.url);
  let second: (ChildProcess & { log: string[] }) | undefined;
  // A folder of another worker running on this machine (a test run beside this one; this process
  // stands in for it): the sweep keeps it, and it is not this test's to count.
  const othersFolder = await mkdtemp(join(tmpdir(), `ndiff-worker-${process.pid}-`));
  try {
    const run = runPlanOnQueue(chain.releaseDir, redis.url, { source: server.url, publish: { key: chain.key, expiresAt: inAnHour() } });
    run.catch(() => {}); // awaited below
    await until(t.signal, 'the first worker to be stuck on its input', () => server.log.some((q) => q.fault === 'stall'));
    await killWorker(first);
    second = startWorker(redis.url);
    // The second worker finds the job stalled once the killed worker's lock lapses (2 s here).
    const res = await orTestEnd(t.signal, () => `the plan to be published (second worker: ${second?.log.slice(-5).join(' | ')})`, run);
    assert.deepEqual(res.published?.manifest.payloads.map((p) => `${p.fromVersion}->${p.toVersion} ${p.sha256}`), expected);
    const done = second.log.filter((l) => /: done$/.test(l));
    assert.equal(done.length, 3, `the second worker finished every job, the killed one's too: ${second.log.join(' | ')}`);
    // The killed worker's folder (its fetched inputs, the job it was in) went when the next worker
    // started: of this test's two workers' folders, only the live worker's is left. (Other
    // workers on the machine, of tests run at the same time, make and sweep folders of their own.)
    const ours = (await readdir(tmpdir())).filter((n) => n.startsWith(`ndiff-worker-${first.pid}-`) || n.startsWith(`ndiff-worker-${second!.pid}-`));
    assert.deepEqual(ours.map((n) => Number(n.split('-')[2])), [second.pid], `worker folders left: ${ours.join(', ')}`);
    assert.ok(existsSync(othersFolder), 'a live worker\'s folder is kept');
  } finally {
    await rm(othersFolder, { recursive: true, force: true });
    await killWorker(first);
    if (second) await killWorker(second);
    await server.close();
    await redis.close();
  }
});

test('a worker returning another job\'s result and a corrupt one: both refused by publish\'s checks, the jobs shown failed with the reason, nothing signed', { skip: redisSkip, timeout: ENGINE_TEST_TIMEOUT }, async (t) => {
  const chain = await plannedRelease();
  const redis = await startRedis({ signal: t.signal });
  const { Worker } = await import('bullmq');
  const { runTicket, checkTicket, ticketsOf } = await import('../src/release/ticket.ts');
  const manifestBefore = await readFile(join(chain.releaseDir, 'manifest.json'));
  const record = await readRecord(chain.releaseDir);
  const [forgedJob, other, corruptJob] = record!.pending!.jobs;
  // A worker that does the work honestly, except that it answers one job with another job's
  // (well-formed, consistent) result, and another with its payload's last byte flipped.
  const cache = join(chain.work, 'rogue-cache');
  const rogue = new Worker(JOBS_QUEUE, async (job) => {
    const ticket = checkTicket(job.data.ticket);
    const answer = ticket.job.id === forgedJob.id ? ticketsOf(record!).find((t) => t.job.id === other.id)! : ticket;
    const out = await runTicket(answer, { source: job.data.source, cacheDir: cache });
    if (ticket.job.id === corruptJob.id && out.payload) out.payload[out.payload.length - 1] ^= 1;
    return { result: out.result, ...(out.payload ? { payload: Buffer.from(out.payload).toString('base64') } : {}) };
  }, { connection: { url: redis.url, maxRetriesPerRequest: null } });
  try {
    await assert.rejects(orTestEnd(t.signal, 'the plan to be refused', runPlanOnQueue(chain.releaseDir, redis.url, { publish: { key: chain.key, expiresAt: inAnHour() } })), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'ND_PAYLOAD_FORMAT', e.message);
      assert.match(e.message, /2 result\(s\) refused by publish's checks \(/);
      assert.match(e.message, new RegExp(`${forgedJob.id}: job ${forgedJob.id}: its payload patches base [0-9a-f]{16}, the job's base is ${forgedJob.base}`));
      assert.match(e.message, new RegExp(`${corruptJob.id}: job ${corruptJob.id}: .* does not match its result file`));
      assert.match(e.message, /nothing was signed/);
      return true;
    });
    assert.deepEqual(await readFile(join(chain.releaseDir, 'manifest.json')), manifestBefore, 'the manifest is as it was');
    assert.equal((await readRecord(chain.releaseDir))?.pending?.version, 4, 'the version is still pending');
    const status = await planStatus(chain.releaseDir, redis.url);
    const shown = status.jobs.find((j) => j.id === forgedJob.id);
    assert.equal(shown?.state, 'refused');
    assert.match(shown?.reason ?? '', /its payload patches base/);
    assert.equal(status.jobs.find((j) => j.id === corruptJob.id)?.state, 'refused');
    assert.equal(status.jobs.find((j) => j.id === other.id)?.state, 'done');
    // What `ndiff release status` prints.
    const out: string[] = [];
    assert.equal(await main(['release', 'status', '--release', chain.releaseDir, '--queue', redis.url], { out: (l) => out.push(l), err: () => {}, progress: () => {} }), 0);
    assert.match(out.join('\n'), /plan kws-[0-9a-f]{8}-release-[0-9a-f]{8}-v4-[0-9a-f]{8}: 0 waiting, 0 running, 1 done, 2 failed \(2 refused by publish's checks\); publish: failed/);
    assert.match(out.join('\n'), new RegExp(`${forgedJob.id} +refused +1 +job ${forgedJob.id}: its payload patches base`));
    assert.equal(status.publish, 'failed');
    assert.deepEqual(await readdir(join(chain.releaseDir, 'jobs')).then((f) => f.filter((n) => n.startsWith(forgedJob.id))), [], 'the refused result was dropped');
    // Run again on an honest worker: the failed run's jobs are cleared and done afresh, and the plan is published.
    await rogue.close();
    const honest = startWorker(redis.url);
    try {
      const res = await orTestEnd(t.signal, 'the plan to be published on an honest worker', runPlanOnQueue(chain.releaseDir, redis.url, { publish: { key: chain.key, expiresAt: inAnHour() } }));
      assert.equal(res.published?.added, 3);
    } finally {
      await killWorker(honest);
    }
  } finally {
    await rogue.close();
    await redis.close();
  }
});

test('two plans of one release at once: the second is refused while the first runs, which then finishes', { skip: redisSkip, timeout: ENGINE_TEST_TIMEOUT }, async (t) => {
  const chain = await plannedRelease();
  const redis = await startRedis({ signal: t.signal });
  let worker: (ChildProcess & { log: string[] }) | undefined;
  try {
    const lines: string[] = [];
    const first = runPlanOnQueue(chain.releaseDir, redis.url, { publish: { key: chain.key, expiresAt: inAnHour() }, onProgress: (l) => lines.push(l) });
    first.catch(() => {}); // awaited below
    await until(t.signal, 'the first plan to be queued', () => lines.some((l) => /payload job\(s\)/.test(l)));
    await assert.rejects(runPlanOnQueue(chain.releaseDir, redis.url, {}), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'ND_USAGE');
      assert.match(e.message, /another plan of release "kws" is running on this queue \(\{"plan":"kws-[0-9a-f]{8}-release-[0-9a-f]{8}-v4-[0-9a-f]{8}"/);
      return true;
    });
    worker = startWorker(redis.url);
    const res = await orTestEnd(t.signal, 'the first plan to be published', first);
    assert.equal(res.published?.added, 3);
  } finally {
    if (worker) await killWorker(worker);
    await redis.close();
  }
});

/** The release folder over HTTP, each request held until `open()` (a slow network the test controls). */
async function gatedServer(root: string): Promise<{ url: string; held: () => number; open: () => void; close: () => Promise<void> }> {
  const { createServer } = await import('node:http');
  let opened = false;
  const waiting: (() => void)[] = [];
  const server = createServer((req, res) => {
    const serve = () => readFile(join(root, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)))
      .then((b) => res.end(b), () => { res.statusCode = 404; res.end(); });
    if (opened) serve();
    else waiting.push(serve);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}/`,
    held: () => waiting.length,
    open: () => { opened = true; for (const w of waiting.splice(0)) w(); },
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

test('Redis restarted mid-plan (append-only file): the worker and the run reconnect, and the plan is published as on one machine', { skip: redisSkip, timeout: ENGINE_TEST_TIMEOUT }, async (t) => {
  const chain = await plannedRelease();
  const expected = await localPayloads(chain);
  const redis = await startRedis({ persist: true, signal: t.signal });
  const server = await gatedServer(chain.releaseDir);
  const worker = startWorker(redis.url);
  try {
    const run = runPlanOnQueue(chain.releaseDir, redis.url, { source: server.url, publish: { key: chain.key, expiresAt: inAnHour() } });
    run.catch(() => {}); // awaited below
    await until(t.signal, 'the worker to be fetching a job\'s inputs', () => server.held() > 0);
    await redis.stop();
    await new Promise((r) => setTimeout(r, 1000)); // Redis down for a second: nothing is timed by it
    await redis.start();
    server.open();
    const res = await orTestEnd(t.signal, () => `the plan to be published after the restart (worker: ${worker.log.slice(-5).join(' | ')})`, run);
    assert.equal(res.published?.added, 3);
    assert.deepEqual(res.published?.manifest.payloads.map((p) => `${p.fromVersion}->${p.toVersion} ${p.sha256}`), expected);
    assert.equal(worker.exitCode, null, 'the same worker ran the plan through the restart');
    assert.equal(worker.log.filter((l) => /: done$/.test(l)).length, 3, worker.log.join(' | '));
  } finally {
    await killWorker(worker);
    await server.close();
    await redis.close();
  }
});

/** The first process `worker` starts to run jobs in, found in /proc as soon as it exists (for as long as the test runs). */
async function jobProcessOf(worker: ChildProcess, signal: AbortSignal): Promise<number> {
  let found: number | undefined;
  await until(signal, `the worker to start a job process (worker: ${worker.pid})`, async () => {
    for (const pid of await readdir('/proc').catch(() => [] as string[])) {
      if (!/^\d+$/.test(pid)) continue;
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) !== worker.pid) continue;
      // The job process (job-process.ts), or BullMQ's sandbox (main.js); not tsx's esbuild service.
      const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      if (/job-process|main\.js/.test(cmd)) found = Number(pid);
    }
    return found !== undefined;
  }, 10);
  return found!;
}

test('a job process killed while it starts: the job is tried again in a new one, and the plan finishes (it waited for a process that was gone)', { skip: redisSkip || (process.platform !== 'linux' && 'reads /proc'), timeout: ENGINE_TEST_TIMEOUT }, async (t) => {
  const chain = await plannedRelease();
  const expected = await localPayloads(chain);
  const redis = await startRedis({ signal: t.signal });
  const server = await serveRelease(chain.releaseDir);
  let worker: (ChildProcess & { log: string[] }) | undefined;
  try {
    const run = runPlanOnQueue(chain.releaseDir, redis.url, { source: server.url, publish: { key: chain.key, expiresAt: inAnHour() } });
    run.catch(() => {}); // awaited below
    worker = startWorker(redis.url);
    const pid = await jobProcessOf(worker, t.signal);
    process.kill(pid, 'SIGKILL');
    // Before the fix, the plan never finished: a job waited on a process that was gone.
    const res = await orTestEnd(t.signal, () => `the plan to finish after the job process was killed: does a job wait on a process that is gone? (worker: ${worker?.log.slice(-5).join(' | ')})`, run);
    assert.deepEqual(res.published?.manifest.payloads.map((p) => `${p.fromVersion}->${p.toVersion} ${p.sha256}`), expected);
  } finally {
    if (worker) await killWorker(worker);
    await server.close();
    await redis.close();
  }
});
