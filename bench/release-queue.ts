/**
 * `npm run bench:release -- --workers 1,2 [--kills N] [--quick]`: release plans on the job engine
 * (BullMQ on a local `redis-server`), run by 1, then 2, ... `ndiff worker` processes, against
 * the same plans run job by job on one machine: the wall time of each (from enqueue to every plan
 * published), and whether every signed payload is byte for byte the one-machine run's.
 *
 * The plans: 4 release folders of one model (exact payloads, and top-k within 1%, 2% and 5%),
 * versions 1..10 each (every version moves 1% of the previous one's weights), version 11 planned
 * with payloads from the last 10: 40 jobs. The model is the MobileNetV2 of the nsfwjs package
 * (2.6M weights; the keyword model's versions are not kept by its benchmark). `--quick`: the
 * small test model, 2 folders, 3 jobs each (used by a test). `--history N`: N versions a plan
 * instead of 10 (3 quick), so N jobs a folder.
 *
 * `--plan training`: learned (training) jobs instead, what a team's release trains: the keyword
 * CNN's version 4 from each of the last 3 versions, sparse and hashed diffs at 1%, 2% and 5%, 18
 * jobs of 20-60 CPU-seconds (release-train-plan.ts; `--quick`: 3 jobs of a few seconds). Each
 * job trains on one thread, in the workers and on one machine alike (OPENBLAS_NUM_THREADS and
 * OMP_NUM_THREADS 1 unless set), and every worker runs one job at a time.
 *
 * `--kills N`: with 2 workers, a worker is killed (its whole process group, SIGKILL) at a random
 * moment while it runs a job and a new one started, N times, plans run again until N kills happened; every plan
 * must still be published with the one-machine payloads. `--lock-seconds S`: the workers' lock
 * (default 10), so the cost of a kill can be measured at each value.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { cp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { MemoryWeightStore, type WeightStore } from '../src/core/weight-store.ts';
import { openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { addVersion } from '../src/release/add.ts';
import { runJob } from '../src/release/jobs.ts';
import { publishReleaseFolder } from '../src/release/publish.ts';
import { readRecord, type EdgePolicy } from '../src/release/record.ts';
import { runPlanOnQueue } from '../src/release/queue/plan.ts';
import { generateKeyPair, loadPrivateKey } from '../src/sign/node-keys.ts';
import { seededRandom } from '../src/core/random.ts';
import { baseAndTarget } from '../test/helpers/models.ts';
import { perturbed } from '../test/helpers/perturb.ts';
import { tempDir, writeStore } from '../test/helpers/dirs.ts';
import { serveRelease } from '../test/helpers/release-server.ts';
import { startRedis } from '../test/helpers/redis.ts';
import { pretrainedModelDir } from '../examples/pretrained/nsfwjs.ts';
import { trainingPlanSet, type PlannedPolicy, type TrainingPlanOptions } from './release-train-plan.ts';

const cli = join(import.meta.dirname, '..', 'cli', 'ndiff.mjs');

/** One run of the plans. */
export interface QueueBenchRow {
  /** Worker processes (`single machine`: each job run in turn in this process, no queue). */
  workers: number | 'single machine';
  jobs: number;
  seconds: number;
  /** Every signed payload byte for byte the single-machine run's. */
  identical: boolean;
  kills?: number;
  /**
   * CPU seconds (user + system) a job took, the whole run's CPU over its jobs: the worker
   * processes with their job processes, this process (the run: serving the inputs, publishing,
   * signing) with its check processes (each result checked as it arrives) and redis-server. Unlike wall time, it does not grow when
   * other work on the machine takes the cores.
   */
  cpuPerJob: number;
  /** Of which the worker processes (their job processes included). */
  workerCpuPerJob: number;
}

export interface QueueBenchResult {
  model: string;
  plans: number;
  jobs: number;
  rows: QueueBenchRow[];
}

interface Options {
  workers: number[];
  kills?: number;
  quick?: boolean;
  /** Versions each plan diffs from (default 10, quick 3): jobs = plans x history. */
  history?: number;
  /** The workers' `--lock-seconds` (default 10): with --kills, how soon a killed worker's job is taken again. */
  lockSeconds?: number;
  /** `post-hoc` (default): exact and top-k jobs of the MobileNetV2 chain; `training`: learned jobs of the keyword model (release-train-plan.ts). */
  plan?: 'post-hoc' | 'training';
  training?: Omit<TrainingPlanOptions, 'log'>;
  log?: (line: string) => void;
}

/** Run the bench (see the module doc). */
export async function runReleaseQueueBench(options: Options): Promise<QueueBenchResult> {
  const log = options.log ?? console.log;
  const lockSeconds = options.lockSeconds ?? 10;
  const startWorker = (url: string) => startWorkerProcess(url, lockSeconds);
  const quick = options.quick ?? false;
  if (options.plan === 'training') {
    // One thread a job, in the workers' job processes and in this one (the one-machine run), unless set outside.
    for (const name of ['OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS']) process.env[name] ||= '1';
  }
  const work = await tempDir('nd-bench-release-queue-');
  const redis = await startRedis();
  try {
    const keys = generateKeyPair();
    const key = loadPrivateKey(keys.privateKeyPem);
    const expiresAt = Math.floor(Date.now() / 1000) + 3600;
    let modelName: string;
    let versions: string[];
    let plans: PlannedPolicy[];
    let history: number;
    if (options.plan === 'training') {
      const set = await trainingPlanSet(join(work, 'training'), { quick, ...options.training, log });
      ({ versions, plans } = set);
      history = versions.length - 1;
      modelName = `${set.model}; learned jobs trained on ${set.trainRows} utterances, measured on ${set.evalRows}, ${plans[0].learned?.epochs} epochs, 1 thread a job`;
    } else {
      const model: WeightStore = quick ? baseAndTarget(1).base : MemoryWeightStore.copyOf(await openTfjsModelDir(await pretrainedModelDir('layers')));
      const policies: EdgePolicy[] = quick ? [{ method: 'exact' }, { method: 'topk', budget: '5%' }] : [{ method: 'exact' }, { method: 'topk', budget: '1%' }, { method: 'topk', budget: '2%' }, { method: 'topk', budget: '5%' }];
      plans = policies.map((policy) => ({ policy }));
      history = options.history ?? (quick ? 3 : 10);
      // The versions, written once; each folder adds them with one exact payload each, then plans the last.
      versions = [];
      let m = model;
      for (let v = 1; v <= history + 1; v++) {
        if (v > 1) m = perturbed(m, quick ? 0.05 : 0.01, 200 + v);
        versions.push(join(work, 'models', `v${v}`));
        await writeStore(versions[v - 1], m as MemoryWeightStore);
      }
      modelName = quick ? 'test model (test/helpers/models.ts)' : 'MobileNetV2 (nsfwjs), float32';
    }
    const label = (p: PlannedPolicy) => `${p.learned ? `train ${p.learned.method}` : p.policy.method}${p.policy.budget ? ` ${p.policy.budget}` : ''}`;
    const planned: string[] = [];
    for (const [i, plan] of plans.entries()) {
      const dir = join(work, 'planned', `r${i}`);
      for (let v = 1; v <= history; v++) await addVersion(dir, versions[v - 1], { modelId: `bench-${label(plan).replace(/[^a-z0-9]+/g, '-')}`, history: 1, key, expiresAt });
      await addVersion(dir, versions[history], { history, policy: plan.policy, ...(plan.learned ? { learned: plan.learned } : {}), planOnly: true });
      planned.push(dir);
      log(`plan ${i + 1}/${plans.length} (${label(plan)}) ready`);
    }
    const jobs = (await Promise.all(planned.map(readRecord))).reduce((n, r) => n + (r?.pending?.jobs.length ?? 0), 0);
    const fresh = async (name: string) => {
      const dirs = planned.map((d, i) => join(work, name, `r${i}`));
      for (const [i, d] of dirs.entries()) await cp(planned[i], d, { recursive: true });
      return dirs;
    };
    const signed = async (dirs: string[]) => JSON.stringify(await Promise.all(dirs.map(async (d) => (await readRecord(d))?.payloads.map((p) => p.sha256))));
    const rows: QueueBenchRow[] = [];

    // One machine: each job in turn, then publish.
    const local = await fresh('local');
    let t0 = performance.now();
    let c0 = ownCpuSeconds();
    let checkCpu = 0;
    for (const [i, d] of local.entries()) {
      const record = await readRecord(d);
      const cJobs = ownCpuSeconds();
      for (const job of record?.pending?.jobs ?? []) await runJob(d, record!, job);
      const c1 = ownCpuSeconds();
      await publishReleaseFolder(d, { key, expiresAt });
      const planCheck = ownCpuSeconds() - c1;
      checkCpu += planCheck;
      // Each plan's check beside its jobs: publish checks every result (a top-k one in one pass, src/release/topk-check.ts).
      log(`  plan ${label(plans[i])}: the jobs ${(c1 - cJobs).toFixed(2)} CPU-s, publish checking and signing them ${planCheck.toFixed(2)} (${(planCheck / (c1 - cJobs)).toFixed(2)}x)`);
    }
    const localCpu = ownCpuSeconds() - c0;
    rows.push({ workers: 'single machine', jobs, seconds: (performance.now() - t0) / 1000, identical: true, cpuPerJob: localCpu / jobs, workerCpuPerJob: 0 });
    const reference = await signed(local);
    log(`single machine: ${rows[0].seconds.toFixed(1)} s, ${(localCpu / jobs).toFixed(2)} CPU-s a job (the jobs ${((localCpu - checkCpu) / jobs).toFixed(2)}, publish checking and signing their results ${(checkCpu / jobs).toFixed(2)})`);

    let round = 0;
    const runPlans = async (dirs: string[]) => {
      const server = await serveRelease(join(dirs[0], '..'));
      try {
        await Promise.all(dirs.map((d, i) => runPlanOnQueue(d, redis.url, { source: `${server.url}r${i}/`, publish: { key, expiresAt } })));
      } finally {
        await server.close();
      }
    };
    for (const n of options.workers) {
      const dirs = await fresh(`queue-${n}-${round++}`);
      const workers = await Promise.all(Array.from({ length: n }, () => startWorker(redis.url)));
      try {
        const cpu = startCpu(redis.pid(), workers);
        t0 = performance.now();
        await runPlans(dirs);
        const seconds = (performance.now() - t0) / 1000;
        const used = cpu.read(workers);
        rows.push({ workers: n, jobs, seconds, identical: (await signed(dirs)) === reference, cpuPerJob: used.total / jobs, workerCpuPerJob: used.workers / jobs });
        log(`${n} worker(s): ${seconds.toFixed(1)} s, ${(used.total / jobs).toFixed(2)} CPU-s a job (workers ${(used.workers / jobs).toFixed(2)}, of which their own processes ${(used.leaders / jobs).toFixed(2)} beside the job processes; run ${(used.run / jobs).toFixed(2)} with its check processes ${(used.checks / jobs).toFixed(2)}, redis ${(used.redis / jobs).toFixed(2)})`);
      } finally {
        await Promise.all(workers.map(killWorker));
      }
    }

    if (options.kills) {
      const random = seededRandom(66);
      let kills = 0;
      let identical = true;
      t0 = performance.now();
      const workers: WorkerProcess[] = await Promise.all([startWorker(redis.url), startWorker(redis.url)]);
      const cpu = startCpu(redis.pid(), workers);
      let runs = 0;
      try {
        while (kills < options.kills) {
          const dirs = await fresh(`kills-${round++}`);
          let finished = false;
          const done = runPlans(dirs).finally(() => { finished = true; });
          done.catch(() => {}); // awaited below: a failure there, not an unhandled rejection mid-loop
          while (!finished && kills < options.kills) {
            await new Promise((r) => setTimeout(r, 300 + random() * (quick ? 1500 : 6000)));
            // The kill lands mid-job: a worker killed between jobs costs nothing but its restart.
            while (!finished && !workers.some((w) => w.busy)) await new Promise((r) => setTimeout(r, 20));
            if (finished) break;
            const busy = workers.flatMap((w, i) => (w.busy ? [i] : []));
            const victim = busy[Math.floor(random() * busy.length)];
            cpu.gone(workers[victim]);
            await killWorker(workers[victim]);
            kills++;
            workers[victim] = await startWorker(redis.url);
          }
          await done;
          runs++;
          identical &&= (await signed(dirs)) === reference;
          log(`kills: ${kills}/${options.kills}, ${runs} run(s) of the plans published`);
        }
      } finally {
        const used = cpu.read(workers);
        await Promise.all(workers.map(killWorker));
        rows.push({ workers: 2, jobs: jobs * runs, seconds: (performance.now() - t0) / 1000, identical, kills, cpuPerJob: used.total / Math.max(1, jobs * runs), workerCpuPerJob: used.workers / Math.max(1, jobs * runs) });
      }
    }
    return { model: modelName, plans: planned.length, jobs, rows };
  } finally {
    await redis.close();
    await rm(work, { recursive: true, force: true });
  }
}

/** This process's CPU seconds so far (user + system). */
function ownCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/**
 * CPU seconds of this process's children that have exited and been reaped (cutime + cstime of
 * /proc/self/stat; 0 elsewhere): the check processes of `release run`, closed at the end of each
 * plan, and (with --kills) the worker processes killed.
 */
function reapedChildrenCpuSeconds(): number {
  try {
    const text = readFileSync('/proc/self/stat', 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return (Number(f[13]) + Number(f[14])) / TICKS;
  } catch {
    return 0;
  }
}

const TICKS = 100; // Linux's USER_HZ: /proc counts CPU time in 1/100 s

/**
 * CPU seconds of the live processes of process group `pgid` (a worker started detached and the
 * job processes it forked), their reaped children's included: from /proc, so Linux only
 * (0 elsewhere).
 */
function groupCpuSeconds(pgid: number, only?: 'leader'): number {
  if (only) return (procStat(pgid)?.ticks ?? 0) / TICKS;
  let ticks = 0;
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((n) => /^\d+$/.test(n));
  } catch {
    return 0;
  }
  for (const pid of pids) {
    const f = procStat(Number(pid));
    if (f && f.pgrp === pgid) ticks += f.ticks;
  }
  return ticks / TICKS;
}

/** A process's group and CPU ticks (its own and its reaped children's), or undefined once gone. */
function procStat(pid: number): { pgrp: number; ticks: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces): state ppid pgrp ... utime(14) stime cutime cstime.
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { pgrp: Number(f[2]), ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) };
  } catch {
    return undefined;
  }
}

/**
 * CPU accounting of one run from now: the workers (read before each is killed, `gone`), this
 * process and redis-server.
 */
function startCpu(redisPid: number | undefined, workers: ChildProcess[]) {
  const own0 = ownCpuSeconds();
  const reaped0 = reapedChildrenCpuSeconds();
  const redis0 = redisPid ? (procStat(redisPid)?.ticks ?? 0) / TICKS : 0;
  const start = new Map(workers.map((w) => [w.pid as number, groupCpuSeconds(w.pid as number)]));
  const startLeader = new Map(workers.map((w) => [w.pid as number, groupCpuSeconds(w.pid as number, 'leader')]));
  let finished = 0;
  let finishedLeader = 0;
  return {
    gone(w: ChildProcess) {
      finished += groupCpuSeconds(w.pid as number) - (start.get(w.pid as number) ?? 0);
      finishedLeader += groupCpuSeconds(w.pid as number, 'leader') - (startLeader.get(w.pid as number) ?? 0);
      start.delete(w.pid as number);
    },
    read(live: ChildProcess[]) {
      const workerCpu = finished + live.reduce((s, w) => s + groupCpuSeconds(w.pid as number) - (start.get(w.pid as number) ?? 0), 0);
      // The worker processes themselves (BullMQ: taking jobs, renewing locks, sending results to Redis), without their job processes.
      const leaders = finishedLeader + live.reduce((s, w) => s + groupCpuSeconds(w.pid as number, 'leader') - (startLeader.get(w.pid as number) ?? 0), 0);
      // The run's check processes (reaped once each plan is done); a killed worker, reaped too, is counted with the workers already.
      const checks = Math.max(0, reapedChildrenCpuSeconds() - reaped0 - finishedLeader);
      const run = ownCpuSeconds() - own0 + checks;
      const redis = redisPid ? (procStat(redisPid)?.ticks ?? 0) / TICKS - redis0 : 0;
      return { workers: workerCpu, leaders, run, checks, redis, total: workerCpu + run + redis };
    },
  };
}

/** A worker process and whether it is running a job now (its log: started, then done or failed). */
type WorkerProcess = ChildProcess & { busy: boolean };

/** An `ndiff worker` process, once it waits for jobs. */
async function startWorkerProcess(url: string, lockSeconds: number): Promise<WorkerProcess> {
  const child = spawn(process.execPath, [cli, 'worker', '--queue', url, '--lock-seconds', String(lockSeconds)], { detached: true, stdio: ['ignore', 'ignore', 'pipe'] }) as WorkerProcess;
  child.busy = false;
  await new Promise<void>((resolve, reject) => {
    let text = '';
    child.stderr?.on('data', (d: Buffer) => {
      text += d.toString();
      for (const line of d.toString().split('\n')) {
        if (/: started \(attempt/.test(line)) child.busy = true;
        else if (/: (done|failed)/.test(line)) child.busy = false;
      }
      if (/waiting for jobs/.test(text)) resolve();
    });
    child.once('exit', (code) => reject(new Error(`ndiff worker exited (${code}): ${text.slice(-400)}`)));
  });
  child.stderr?.resume();
  return child;
}

async function killWorker(w: ChildProcess): Promise<void> {
  if (w.exitCode !== null || w.signalCode !== null) return;
  const gone = new Promise((r) => w.once('exit', r));
  process.kill(-(w.pid as number), 'SIGKILL');
  await gone;
}

/** The rows as a Markdown table. */
export function releaseQueueTable(r: QueueBenchResult): string {
  const single = r.rows.find((x) => x.workers === 'single machine');
  const one = r.rows.find((x) => x.workers === 1 && x.kills === undefined);
  return [
    `${r.model}; ${r.plans} plans, ${r.jobs} payload jobs`,
    '',
    '| run | jobs | seconds | vs 1 worker | CPU-s a job (workers) | payloads as on one machine |',
    '| --- | ---: | ---: | ---: | ---: | --- |',
    ...r.rows.map((x) => `| ${x.workers === 'single machine' ? 'one machine, no queue' : `${x.workers} worker(s)${x.kills ? `, ${x.kills} killed` : ''}`} | ${x.jobs} | ${x.seconds.toFixed(1)} | ${one && !x.kills && x.workers !== 'single machine' ? `${(x.seconds / one.seconds).toFixed(2)}x` : ''} | ${x.cpuPerJob.toFixed(2)}${x.workers === 'single machine' ? '' : ` (${x.workerCpuPerJob.toFixed(2)})`} | ${x.identical ? 'yes' : 'NO'} |`),
    '',
    single ? `One machine runs the jobs in turn in one process (the \`ndiff release job\` loop).` : '',
  ].join('\n');
}
