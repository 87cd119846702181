/**
 * `ndiff worker`: run payload jobs from the queue on this machine, each in a job process of its
 * own (sandbox.ts: started with the worker, kept from job to job), until stopped. A worker needs
 * the queue and the place the release folder is served (named in each job), never the release
 * folder on its disk nor the signing key. A worker that
 * dies mid-job stops renewing the job's lock; once it lapses (`lockSeconds`), the next look for
 * stalled jobs by a live worker (every `lockSeconds`) puts the job back, and a worker takes it
 * again (BullMQ's stalled-job recovery). A worker stopped politely (`close()`, SIGTERM) takes no
 * new job and lets its running jobs finish; one stopped at once (`handBack()`, a second SIGTERM)
 * kills its jobs' processes and puts the jobs back on the queue itself, so another worker takes
 * them now rather than after their locks lapse.
 */
import type { Job } from 'bullmq';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { availableParallelism, hostname, tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../../core/errors.ts';
import { bullConnection, JOBS_QUEUE, loadBullmq, queueUrlOf } from './engine.ts';
import { JobProcesses, JobStoppedError } from './sandbox.ts';

/**
 * Seconds of a job's lock when none is given (BullMQ's own is 30). A worker killed mid-job costs
 * about one to two of these before its job runs again: measured at 30 s, a kill added 50 s to a
 * plan; at 10 s, 14 s; at 5 s, 6 s (docs/cli/worker.md). The lock is renewed by the worker's own process, which
 * runs no job (jobs run in job processes), so 10 s leaves it ample room on a busy machine.
 */
export const DEFAULT_LOCK_SECONDS = 10;

/** Options of {@link startQueueWorker}. */
export interface QueueWorkerOptions {
  /** Jobs run at once (each in its own process; default 1). */
  concurrency?: number;
  /**
   * Seconds a job's lock lasts without renewal, and how often the worker looks for jobs whose
   * worker is gone: a dead worker's job is taken again within about twice this (a whole number
   * from 1 to 3600; default 10, {@link DEFAULT_LOCK_SECONDS}). Lower it where jobs are short, to find a dead
   * worker sooner; the lock is renewed every half of it, so jobs longer than it are kept.
   */
  lockSeconds?: number;
  /** How many times a job may be found stalled (its worker gone) before it fails (a whole number from 0 to 1000; default 5). */
  maxStalls?: number;
  /** A line per job started, finished or failed. */
  onLine?: (line: string) => void;
}

/**
 * Threads each job gets: the machine's cores shared among the jobs a worker runs at once (at
 * least 1). Two jobs that each used every core would fight for them, each running slower.
 */
export function threadsPerJob(concurrency: number, cores: number = availableParallelism()): number {
  return Math.max(1, Math.floor(cores / concurrency));
}

/**
 * The environment of a job process: the worker's own, the blob cache, and the thread
 * count of the libraries a job may start threads in (OpenBLAS, OpenMP) set to `threads`, unless
 * the worker's environment already sets them. Only threads that do not change a job's bytes: a
 * learned job's data-parallel thread count is part of the job, so the payload stays the same on
 * any worker.
 */
export function sandboxEnv(env: NodeJS.ProcessEnv, cacheDir: string, threads: number): NodeJS.ProcessEnv {
  const own = (name: string) => (env[name] !== undefined && env[name] !== '' ? env[name] : String(threads));
  return { ...env, NDIFF_WORKER_CACHE: cacheDir, OPENBLAS_NUM_THREADS: own('OPENBLAS_NUM_THREADS'), OMP_NUM_THREADS: own('OMP_NUM_THREADS') };
}

/** A running worker. */
export interface QueueWorker {
  /** Threads each job gets ({@link threadsPerJob}). */
  threads: number;
  /** The ids of the processes jobs run in. */
  pids(): number[];
  /** The ids of the jobs running now, in the order they started. */
  running(): string[];
  /** Stop taking jobs, wait for the running ones, and clean up. */
  close(): Promise<void>;
  /**
   * Stop at once: stop taking jobs, kill the running jobs' processes and put those jobs back on
   * the queue (waiting, first in line, no try counted), then clean up as {@link close} does.
   * Resolves with the ids handed back. Called while a `close()` waits for running jobs, it ends
   * that wait too.
   */
  handBack(): Promise<string[]>;
}

/** A process entry file of this folder (`job-process`, `check-process`), as this build has it (TypeScript in the checkout, JavaScript in dist/). */
export function processorFile(name = 'job-process'): { file: string; execArgv?: string[] } {
  const here = fileURLToPath(import.meta.url);
  const file = path.join(path.dirname(here), `${name}${path.extname(here)}`);
  if (path.extname(here) !== '.ts') return { file };
  // Run from the sources (`node cli/ndiff.mjs`, tests): the child needs tsx's loader to read .ts.
  const argv = process.execArgv.filter((a) => !a.startsWith('--inspect'));
  const hasTsx = argv.some((a, i) => /tsx/.test(a) && (argv[i - 1] === '--import' || a.startsWith('--import=')));
  return { file, execArgv: hasTsx ? argv : [...argv, '--import', import.meta.resolve('tsx'), '--conditions=neural-diff-source'] };
}

/**
 * Remove the folders of workers on this machine that died without cleaning up (killed mid-job):
 * their pid, in the folder's name, is no longer running.
 */
async function sweepDeadWorkers(): Promise<void> {
  for (const name of await readdir(tmpdir()).catch(() => [] as string[])) {
    const pid = Number(/^ndiff-worker-(\d+)-/.exec(name)?.[1]);
    if (!pid || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ESRCH') await rm(path.join(tmpdir(), name), { recursive: true, force: true }).catch(() => {});
    }
  }
}

/** The name a worker gives BullMQ, which each job it takes records (`processedBy`), and `release status` shows: `HOST:PID`. */
export function workerName(): string {
  return `${hostname()}:${process.pid}`;
}

/** Start a worker on the queue at `queue` (redis://HOST[:PORT]). */
export async function startQueueWorker(queue: string, options: QueueWorkerOptions = {}): Promise<QueueWorker> {
  const url = queueUrlOf(queue);
  const concurrency = options.concurrency ?? 1;
  const lockSeconds = options.lockSeconds ?? DEFAULT_LOCK_SECONDS;
  const maxStalls = options.maxStalls ?? 5;
  if (!Number.isSafeInteger(concurrency) || concurrency < 1 || concurrency > 64) throw new UsageError(`concurrency (--concurrency) must be a whole number from 1 to 64, found ${concurrency}`);
  if (!Number.isSafeInteger(lockSeconds) || lockSeconds < 1 || lockSeconds > 3600) {
    throw new UsageError(`lockSeconds (--lock-seconds) must be a whole number of seconds from 1 to 3600, found ${lockSeconds}: give e.g. 10 (the default), or 30 where a worker's machine may pause longer`);
  }
  if (!Number.isSafeInteger(maxStalls) || maxStalls < 0 || maxStalls > 1000) throw new UsageError(`maxStalls must be a whole number from 0 to 1000, found ${maxStalls}: give e.g. 5 (the default)`);
  const bull = await loadBullmq();
  const log = options.onLine ?? (() => {});
  await sweepDeadWorkers();
  const cacheDir = await mkdtemp(path.join(tmpdir(), `ndiff-worker-${process.pid}-`));
  const proc = processorFile();
  const threads = threadsPerJob(concurrency);
  // Each job process's TMPDIR is a folder of its own in the worker's: removed when the process
  // exits, and with the worker's folder by the next worker on the machine when the worker dies.
  const processes = new JobProcesses({ file: proc.file, ...(proc.execArgv ? { execArgv: proc.execArgv } : {}), env: sandboxEnv(process.env, cacheDir, threads), tempIn: cacheDir });
  processes.warm(concurrency);
  const name = workerName();
  // The jobs running now, each with what ends it at once (for a hand-back).
  const running = new Map<string, AbortController>();
  let stopping = false;
  const handedBack: string[] = [];
  const giveBack = async (job: Job, token: string | undefined): Promise<never> => {
    await job.moveToWait(token);
    handedBack.push(String(job.id));
    log(`${job.id}: handed back to the queue (the worker is stopping): another worker takes it now`);
    throw new bull.WaitingError();
  };
  const processJob = async (job: Job, token: string | undefined): Promise<unknown> => {
    const id = String(job.id);
    // Taken in the moment the worker was told to stop: not started here, put back at once.
    if (stopping) return giveBack(job, token);
    const stop = new AbortController();
    running.set(id, stop);
    try {
      // Each progress value carries when it was reported and by whom, for `release status`.
      return await processes.run(job.data, (value) => { job.updateProgress({ ...value, worker: name, at: Date.now() }).catch(() => {}); }, stop.signal);
    } catch (e) {
      if (e instanceof JobStoppedError) return giveBack(job, token);
      throw e;
    } finally {
      running.delete(id);
    }
  };
  const worker = new bull.Worker(JOBS_QUEUE, processJob, {
    name,
    connection: bullConnection(url),
    concurrency,
    lockDuration: lockSeconds * 1000,
    stalledInterval: lockSeconds * 1000,
    maxStalledCount: maxStalls,
  });
  // Every start counts, a stalled job's taken again too (attemptsMade counts failures only).
  worker.on('active', (job) => log(`${job.id}: started (attempt ${Math.max(job.attemptsStarted ?? 0, job.attemptsMade + 1)})`));
  worker.on('completed', (job) => log(`${job.id}: done`));
  worker.on('failed', (job, err) => log(`${job?.id ?? '?'}: failed: ${err.message.split('\n')[0]}`));
  worker.on('error', (err) => log(`queue: ${err.message.split('\n')[0]}`));
  await worker.waitUntilReady();
  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    stopping = true;
    closed ??= (async () => {
      await worker.close();
      await processes.close();
      await rm(cacheDir, { recursive: true, force: true });
    })();
    return closed;
  };
  return {
    threads,
    pids: () => processes.pids(),
    running: () => [...running.keys()],
    close,
    handBack: async () => {
      stopping = true;
      for (const stop of running.values()) stop.abort();
      await close();
      return [...handedBack];
    },
  };
}
