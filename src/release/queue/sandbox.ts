/**
 * The processes `ndiff worker` runs payload jobs in: as many as jobs run at once, started with
 * the worker (so the first job does not wait for one), each kept for job after job. A CPU-heavy
 * job never stops the worker from renewing its jobs' locks, and a job that crashes takes its own
 * process down, not the worker. A process that exits at any moment, starting or mid-job, fails
 * the job it was to run with the reason (the queue retries it) and is replaced: no job waits on
 * a process that is gone. A job process ignores SIGINT and SIGTERM (Ctrl-C in a terminal and
 * systemd's stop signal reach every process of the worker's group): the worker decides whether
 * its job finishes or is handed back, and stops the process itself (SIGKILL: an idle process
 * holds no work, and a job handed back is left for another worker).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';

/** Worker to job process. */
export interface JobProcessRequest {
  type: 'run';
  data: unknown;
}

/** Job process to worker. */
export type JobProcessMessage =
  | { type: 'ready' }
  | { type: 'progress'; value: object }
  | { type: 'done'; value: unknown }
  | { type: 'failed'; name: string; message: string };

/** How to start a job process. */
export interface JobProcessOptions {
  /** The entry file (job-process.ts or .js). */
  file: string;
  execArgv?: string[];
  env: NodeJS.ProcessEnv;
  /**
   * Each process's temporary folder is a folder of its own made in here (the process takes it with
   * {@link useJobTemp}), removed when the process exits: what a job killed mid-way left there (a
   * version's files copied out, a learned job's training folder) goes with it.
   */
  tempIn?: string;
}

/** The variable that names a job process's own temporary folder (see {@link useJobTemp}). */
export const JOB_TMPDIR = 'NDIFF_JOB_TMPDIR';

/**
 * In a job process: the folder its pool made for it (`tempIn`) becomes its temporary folder
 * (TMPDIR, TMP and TEMP, which `os.tmpdir()` reads at each call). Taken once the process has
 * started rather than given at the fork, so a loader's own cache (tsx keeps its compiled files in
 * the machine's temporary folder) stays shared between processes.
 */
export function useJobTemp(): void {
  const temp = process.env[JOB_TMPDIR];
  if (!temp) return;
  process.env.TMPDIR = temp;
  process.env.TMP = temp;
  process.env.TEMP = temp;
}

/** A job that failed in its process, or because its process exited. */
export class JobProcessError extends Error {
  constructor(message: string, name = 'JobProcessError') {
    super(message);
    this.name = name;
  }
}

/** A job ended by its worker (`stop` of {@link JobProcesses.run}): its process was killed, the job is to be handed back. */
export class JobStoppedError extends JobProcessError {
  constructor() {
    super('the worker is stopping at once: the job was ended to be handed back to the queue', 'JobStoppedError');
  }
}

interface Slot {
  child: ChildProcess;
  ready: Promise<void>;
  /** Set while a job runs in it. */
  onMessage?: (m: JobProcessMessage) => void;
  onExit?: (why: string) => void;
  gone?: string;
}

/** A pool of job processes (see the module doc). */
export class JobProcesses {
  private idle: Slot[] = [];
  private all = new Set<Slot>();
  private closed = false;
  /** The removals of exited processes' temporary folders under way. */
  private removals = new Set<Promise<void>>();

  constructor(private readonly options: JobProcessOptions) {}

  /** Start `n` processes now, so jobs find them ready. */
  warm(n: number): void {
    for (let i = 0; i < n; i++) this.idle.push(this.start());
  }

  /** The process ids running now (for tests and logs). */
  pids(): number[] {
    return [...this.all].map((s) => s.child.pid).filter((p): p is number => p !== undefined);
  }

  private start(): Slot {
    const temp = this.options.tempIn === undefined ? undefined : mkdtempSync(path.join(this.options.tempIn, 'tmp-'));
    const env = temp === undefined ? this.options.env : { ...this.options.env, [JOB_TMPDIR]: temp };
    const child = fork(this.options.file, [], { ...(this.options.execArgv ? { execArgv: this.options.execArgv } : {}), env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let readyResolve!: () => void;
    let readyReject!: (e: Error) => void;
    const slot: Slot = { child, ready: new Promise<void>((res, rej) => { readyResolve = res; readyReject = rej; }) };
    slot.ready.catch(() => {}); // awaited by the job that takes the slot, if any
    this.all.add(slot);
    child.on('message', (m: JobProcessMessage) => {
      if (m?.type === 'ready') readyResolve();
      else slot.onMessage?.(m);
    });
    child.on('error', () => {}); // an exit follows and says why
    child.once('exit', (code, signal) => {
      if (temp !== undefined) {
        const removed = rm(temp, { recursive: true, force: true }).catch(() => {});
        this.removals.add(removed);
        void removed.then(() => this.removals.delete(removed));
      }
      slot.gone = `the job's process (pid ${child.pid}) exited${signal ? ` on ${signal}` : ` with code ${code}`}`;
      this.all.delete(slot);
      this.idle = this.idle.filter((s) => s !== slot);
      readyReject(new JobProcessError(`${slot.gone} while starting`));
      slot.onExit?.(slot.gone);
    });
    return slot;
  }

  /**
   * Run one job in a process of the pool; `onProgress` gets what the job reports. `stop` aborted
   * ends the job at once: its process is killed and the call rejects with {@link JobStoppedError}
   * (the caller hands the job back).
   */
  async run(data: unknown, onProgress: (value: object) => void, stop?: AbortSignal): Promise<unknown> {
    if (this.closed) throw new JobProcessError('the worker is stopping: the job is left for another worker');
    const slot = this.idle.pop() ?? this.start();
    let stopped = false;
    let onStop: (() => void) | undefined;
    try {
      await slot.ready;
      return await new Promise<unknown>((resolve, reject) => {
        if (slot.gone) return reject(new JobProcessError(`${slot.gone} before the job started: the job is tried again`));
        onStop = () => {
          stopped = true;
          slot.child.kill('SIGKILL');
          reject(new JobStoppedError());
        };
        if (stop?.aborted) return onStop();
        stop?.addEventListener('abort', onStop, { once: true });
        slot.onExit = (why) => reject(new JobProcessError(`${why} mid-job (killed, or out of memory): the job is tried again`));
        slot.onMessage = (m) => {
          if (m.type === 'progress') onProgress(m.value);
          else if (m.type === 'done') resolve(m.value);
          else if (m.type === 'failed') reject(new JobProcessError(m.message, m.name));
        };
        slot.child.send({ type: 'run', data } satisfies JobProcessRequest, (e) => {
          if (e) reject(new JobProcessError(`the job could not be handed to its process (${e.message}): the job is tried again`));
        });
      });
    } finally {
      if (onStop) stop?.removeEventListener('abort', onStop);
      slot.onExit = undefined;
      slot.onMessage = undefined;
      if (!slot.gone && !this.closed && !stopped) this.idle.push(slot);
      else if (!slot.gone) slot.child.kill('SIGKILL');
    }
  }

  /** Stop every process (running jobs are waited for, or handed back, by the worker before this). */
  async close(): Promise<void> {
    this.closed = true;
    const slots = [...this.all];
    await Promise.all(slots.map((s) => new Promise<void>((resolve) => {
      if (s.gone) return resolve();
      s.child.once('exit', () => resolve());
      s.child.kill('SIGKILL');
    })));
    await Promise.all(this.removals);
  }
}
