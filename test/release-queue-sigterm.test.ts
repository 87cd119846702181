/**
 * `ndiff worker` stopped politely: SIGTERM or Ctrl-C (SIGINT) lets the running job finish on that
 * worker, which takes no new one and exits 0; a second signal hands the job back to the queue at
 * once (another worker takes it without waiting for its lock to lapse) and exits non-zero; a
 * rolling restart of the workers loses and repeats no job. The signal goes to the worker's whole
 * process group, as Ctrl-C in a terminal and systemd's stop send it (its job processes get it
 * too), or to the worker alone, as Kubernetes and `docker stop` send it. Before, a signal to the
 * group killed the job's process: the job failed (a try counted) and ran again elsewhere, and a
 * second signal killed the worker, its job locked until the lock lapsed. Real `redis-server`,
 * `ndiff worker` processes, the release folder served over HTTP by a server that holds each
 * job's inputs until the test lets them through, so a signal lands mid-job.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runPlanOnQueue } from '../src/release/queue/plan.ts';
import { JOBS_QUEUE } from '../src/release/queue/engine.ts';
import { inAnHour, plannedRelease, localPayloads } from './helpers/release-chain.ts';
import { redisSkip, startRedis } from './helpers/redis.ts';
import { killGroup, ndiffChild, startWorker, type NdiffChild } from './helpers/queue-processes.ts';
import { ENGINE_TEST_TIMEOUT, orTestEnd, until } from './helpers/waits.ts';



/**
 * The release folder over HTTP, each request held until the test serves it: a job fetches its
 * inputs one at a time, so a job whose request is held is mid-job and makes no other request.
 */
interface Gate {
  url: string;
  /** Requests held now, in the order they came. */
  held(): number;
  /** Serve the `i`th request held now. */
  serve(i: number): void;
  /** Serve the requests that come from now on (`true`), or hold them (`false`). */
  pass(on: boolean): void;
  /** Serve every request held, and all that come. */
  open(): void;
  close(): Promise<void>;
}

async function gatedRelease(root: string): Promise<Gate> {
  let passing = false;
  const waiting: (() => void)[] = [];
  const server = createServer((req, res) => {
    const serve = () => readFile(join(root, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)))
      .then((b) => res.end(b), () => { res.statusCode = 404; res.end(); });
    if (passing) serve();
    else waiting.push(serve);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}/`,
    held: () => waiting.length,
    serve: (i) => waiting.splice(i, 1)[0]!(),
    pass: (on) => { passing = on; },
    open: () => { passing = true; for (const w of waiting.splice(0)) w(); },
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

/** The first line of `child`'s log `re` matches, waited for; the test fails at once if the worker exits without it. */
async function lineOf(signal: AbortSignal, child: NdiffChild, re: RegExp, what: string): Promise<RegExpMatchArray> {
  let m: RegExpMatchArray | undefined;
  await until(signal, what, () => {
    m = child.log.map((l) => l.match(re)).find((x) => x !== null) ?? undefined;
    return m !== undefined || child.exitCode !== null || child.signalCode !== null;
  });
  assert.ok(m, `${what}: the worker exited (${child.exitCode ?? child.signalCode}) without saying it: ${child.log.join(' | ')}`);
  return m;
}

/** The ids of the jobs a worker started, by its log (`JOB: started (attempt N)`), with the attempt. */
const startedBy = (w: NdiffChild) => w.log.map((l) => /^(\S+): started \(attempt (\d+)\)$/.exec(l)).filter((m) => m !== null).map((m) => `${m[1]} ${m[2]}`);
/** The ids of the jobs a worker finished, by its log (`JOB: done`). */
const doneBy = (w: NdiffChild) => w.log.map((l) => /^(\S+): done$/.exec(l)?.[1]).filter((id) => id !== undefined);

const payloadsOf = (res: Awaited<ReturnType<typeof runPlanOnQueue>>) => res.published?.manifest.payloads.map((p) => `${p.fromVersion}->${p.toVersion} ${p.sha256}`);

test('SIGTERM mid-job (to the worker\'s process group, as systemd stops a service): the job finishes on that worker, which takes none of the other jobs and exits 0; a worker started after runs the rest, and the plan publishes the bytes of one machine', { skip: redisSkip, timeout: ENGINE_TEST_TIMEOUT }, async (t) => {
  const chain = await plannedRelease(3);
  const expected = await localPayloads(chain);
  const redis = await startRedis({ signal: t.signal });
  const gate = await gatedRelease(chain.releaseDir);
  const first = startWorker(redis.url);
  let second: NdiffChild | undefined;
  try {
    const run = runPlanOnQueue(chain.releaseDir, redis.url, { source: gate.url, publish: { key: chain.key, expiresAt: inAnHour() } });
    run.catch(() => {}); // awaited below
    await until(t.signal, 'the worker to be mid-job (its input held)', () => gate.held() === 1);
    const [job] = startedBy(first).map((s) => s.split(' ')[0]);
    assert.ok(job, first.log.join(' | '));
    process.kill(-(first.pid as number), 'SIGTERM');
    await lineOf(t.signal, first, new RegExp(`^stopping: finishing job ${job}, taking no new one \\(SIGTERM; a second SIGINT or SIGTERM hands it back to the queue for another worker\\)$`), 'the worker to say it finishes its job');
    // Two jobs wait on the queue as the stopping worker's job finishes: it takes neither.
    gate.open();
    const exit = await orTestEnd(t.signal, () => `the stopping worker to exit (${first.log.slice(-4).join(' | ')})`, first.exited);
    assert.deepEqual(exit, { code: 0, signal: null }, first.log.join('\n'));
    assert.deepEqual(startedBy(first), [`${job} 1`], `the stopping worker started no job after its first: ${first.log.join(' | ')}`);
    assert.deepEqual(doneBy(first), [job], `the job finished on the worker told to stop, and said so: ${first.log.join(' | ')}`);
    assert.equal(first.log.at(-1), `stopped: job ${job} finished; took no new job`);
    second = startWorker(redis.url);
    const res = await orTestEnd(t.signal, () => `the plan to be published (second worker: ${second?.log.slice(-4).join(' | ')})`, run);
    assert.deepEqual(payloadsOf(res), expected, 'the same payloads, byte for byte, as one machine');
    assert.equal(doneBy(second).length, 2, second.log.join(' | '));
    assert.ok(!doneBy(second).includes(job), 'the stopped worker\'s job ran once, there');
    assert.ok(startedBy(second).every((s) => s.endsWith(' 1')), `no job was tried twice: ${second.log.join(' | ')}`);
  } finally {
    await killGroup(first);
    if (second) await killGroup(second);
    await gate.close();
    await redis.close();
  }
});

test('a rolling restart mid-plan (two workers, each stopped mid-job and replaced: the first by SIGTERM to its group, the second by SIGTERM to it alone, as Kubernetes sends it): every job starts and finishes exactly once, the plan publishes the bytes of one machine', { skip: redisSkip, timeout: ENGINE_TEST_TIMEOUT }, async (t) => {
  const chain = await plannedRelease(5);
  const expected = await localPayloads(chain);
  const redis = await startRedis({ signal: t.signal });
  const gate = await gatedRelease(chain.releaseDir);
  const workers: NdiffChild[] = [];
  const start = () => {
    const w = startWorker(redis.url);
    workers.push(w);
    return w;
  };
  try {
    const run = runPlanOnQueue(chain.releaseDir, redis.url, { source: gate.url, publish: { key: chain.key, expiresAt: inAnHour() } });
    run.catch(() => {}); // awaited below
    // Each worker's first input held in turn, so the held requests are known to be theirs: the
    // first worker's, then the second's.
    const a = start();
    await until(t.signal, 'the first worker to be mid-job', () => gate.held() === 1);
    const b = start();
    await until(t.signal, 'the second worker to be mid-job', () => gate.held() === 2);
    const jobA = startedBy(a)[0]!.split(' ')[0];
    const jobB = startedBy(b)[0]!.split(' ')[0];
    process.kill(-(a.pid as number), 'SIGTERM');
    await lineOf(t.signal, a, new RegExp(`^stopping: finishing job ${jobA}, taking no new one`), 'the first worker to say it finishes its job');
    const c = start(); // its replacement
    await until(t.signal, 'the replacement to be mid-job', () => gate.held() === 3);
    // Only the first worker's job goes on: its request served, and the requests it makes next.
    gate.serve(0);
    gate.pass(true);
    assert.deepEqual(await orTestEnd(t.signal, () => `the first worker to exit (${a.log.slice(-4).join(' | ')})`, a.exited), { code: 0, signal: null }, a.log.join('\n'));
    gate.pass(false);
    process.kill(b.pid as number, 'SIGTERM');
    await lineOf(t.signal, b, new RegExp(`^stopping: finishing job ${jobB}, taking no new one`), 'the second worker to say it finishes its job');
    const d = start(); // its replacement
    await until(t.signal, 'the second replacement to be mid-job', () => gate.held() === 3);
    gate.open();
    assert.deepEqual(await orTestEnd(t.signal, () => `the second worker to exit (${b.log.slice(-4).join(' | ')})`, b.exited), { code: 0, signal: null }, b.log.join('\n'));
    const res = await orTestEnd(t.signal, () => `the plan to be published (${[c, d].map((w) => w.log.slice(-3).join(' | ')).join(' || ')})`, run);
    assert.equal(res.jobs, 5);
    assert.deepEqual(payloadsOf(res), expected, 'the same payloads, byte for byte, as one machine');
    const logs = workers.map((w) => w.log.join(' | ')).join('\n');
    assert.deepEqual(doneBy(a), [jobA], logs);
    assert.deepEqual(doneBy(b), [jobB], logs);
    const started = workers.flatMap(startedBy).sort();
    const done = workers.flatMap(doneBy).sort();
    assert.equal(started.length, 5, `every job started exactly once: ${logs}`);
    assert.ok(started.every((s) => s.endsWith(' 1')), `no job was tried twice: ${logs}`);
    assert.deepEqual(done, started.map((s) => s.split(' ')[0]), `every job finished exactly once: ${logs}`);
    assert.equal(new Set(done).size, 5, logs);
  } finally {
    for (const w of workers) await killGroup(w);
    await gate.close();
    await redis.close();
  }
});

test('a second Ctrl-C (SIGINT) while the job finishes hands it back to the queue at once: the worker exits 130 saying so, and another worker takes the job without waiting for its lock (an hour here) to lapse, no try counted', { skip: redisSkip, timeout: ENGINE_TEST_TIMEOUT }, async (t) => {
  const chain = await plannedRelease(3);
  const expected = await localPayloads(chain);
  const redis = await startRedis({ signal: t.signal });
  const gate = await gatedRelease(chain.releaseDir);
  // An hour's lock: a job left locked by its worker would not run again within the test.
  const worker = (): NdiffChild => ndiffChild(['worker', '--queue', redis.url, '--lock-seconds', '3600']);
  const first = worker();
  let second: NdiffChild | undefined;
  const { Queue } = await import('bullmq');
  const jobs = new Queue(JOBS_QUEUE, { connection: { url: redis.url, maxRetriesPerRequest: null } });
  try {
    const run = runPlanOnQueue(chain.releaseDir, redis.url, { source: gate.url, publish: { key: chain.key, expiresAt: inAnHour() } });
    run.catch(() => {}); // awaited below
    await until(t.signal, 'the worker to be mid-job (its input held)', () => gate.held() === 1);
    const job = startedBy(first)[0]!.split(' ')[0];
    process.kill(-(first.pid as number), 'SIGINT');
    await lineOf(t.signal, first, new RegExp(`^stopping: finishing job ${job}, taking no new one \\(SIGINT;`), 'the worker to say it finishes its job');
    process.kill(-(first.pid as number), 'SIGINT');
    const exit = await orTestEnd(t.signal, () => `the worker to exit on the second signal (${first.log.slice(-4).join(' | ')})`, first.exited);
    assert.deepEqual(exit, { code: 130, signal: null }, first.log.join('\n'));
    const said = first.log.join('\n');
    assert.match(said, new RegExp(`^stopping now \\(a second SIGINT\\): handing job ${job} back to the queue$`, 'm'));
    assert.match(said, new RegExp(`^${job}: handed back to the queue \\(the worker is stopping\\): another worker takes it now$`, 'm'));
    assert.equal(first.log.at(-1), `stopped: job ${job} handed back to the queue, for another worker to take now`);
    assert.deepEqual(doneBy(first), [], said);
    assert.ok(!/: failed:/.test(said), `the job was not failed: ${said}`);
    const back = await jobs.getJob(job);
    assert.equal(await back?.getState(), 'waiting', 'the job is back on the queue, not locked by the gone worker');
    assert.equal(back?.attemptsMade, 0, 'no try counted against it');
    second = worker();
    gate.open();
    const res = await orTestEnd(t.signal, () => `the plan to be published (second worker: ${second?.log.slice(-4).join(' | ')})`, run);
    assert.deepEqual(payloadsOf(res), expected, 'the same payloads, byte for byte, as one machine');
    assert.ok(startedBy(second).includes(`${job} 2`), `the handed-back job started again on the other worker: ${second.log.join(' | ')}`);
    assert.deepEqual(doneBy(second).sort(), startedBy(second).map((s) => s.split(' ')[0]).sort());
    assert.equal(doneBy(second).length, 3, second.log.join(' | '));
  } finally {
    await killGroup(first);
    if (second) await killGroup(second);
    await jobs.close();
    await gate.close();
    await redis.close();
  }
});
