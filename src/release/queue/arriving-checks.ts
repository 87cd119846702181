/**
 * `ndiff release run` checks each worker's result as it arrives, while other jobs still run:
 * the result is written into `jobs/` and checked in one of `concurrency` check processes
 * (check-process.ts, kept from check to check), publish's own check each time. The verdicts are
 * kept bound to the bytes checked ({@link verdictKey}); publish takes a verdict only for those
 * exact bytes, and checks anything else again. Nothing here signs or trusts a result. Plans run
 * at once in one process share one pool of check processes (sized by the first run), so each
 * process's start is paid once, not once a plan.
 */
import { availableParallelism } from 'node:os';
import { JobProcesses } from './sandbox.ts';
import { processorFile, sandboxEnv, threadsPerJob } from './worker.ts';
import type { CheckRequest, CheckVerdict } from './check-process.ts';
import type { CheckedResult } from '../publish.ts';

/** Check processes and the turns to use them (at most `size` checks at once). */
class CheckPool {
  readonly processes: JobProcesses;
  private readonly waiters: (() => void)[] = [];
  private active = 0;
  users = 0;

  constructor(readonly size: number) {
    const proc = processorFile('check-process');
    // Each check process gets its share of the cores (a top-k rebuild may start BLAS threads).
    const env: NodeJS.ProcessEnv = { ...sandboxEnv(process.env, '', threadsPerJob(size)), NDIFF_CHECK_PROCESS: '1' };
    delete env.NDIFF_WORKER_CACHE;
    this.processes = new JobProcesses({ file: proc.file, ...(proc.execArgv ? { execArgv: proc.execArgv } : {}), env });
    this.processes.warm(size);
  }

  async run(req: CheckRequest): Promise<CheckVerdict> {
    if (this.active < this.size) this.active++;
    else await new Promise<void>((resolve) => this.waiters.push(resolve)); // handed the turn of a check that ended
    try {
      return (await this.processes.run(req, () => {})) as CheckVerdict;
    } finally {
      const next = this.waiters.shift();
      if (next) next();
      else this.active--;
    }
  }
}

let shared: CheckPool | undefined;

/** The checks of one plan run. */
export class ArrivingChecks {
  private readonly pool: CheckPool;
  private readonly running = new Map<string, Promise<CheckVerdict>>();
  private closed = false;
  /** Verdicts by job id, as they came. */
  readonly verdicts = new Map<string, CheckVerdict>();

  /** Starts the check processes now (or joins those of a plan already running in this process), so the first result finds them ready. */
  constructor(private readonly releaseDir: string, private readonly accept: string[], concurrency: number = availableParallelism(), private readonly onVerdict: (v: CheckVerdict) => void = () => {}) {
    shared ??= new CheckPool(concurrency);
    this.pool = shared;
    this.pool.users++;
  }

  /** Checks run at once in this process. */
  get concurrency(): number {
    return this.pool.size;
  }

  /** Whether job `id`'s files are checked or being checked. */
  has(id: string): boolean {
    return this.running.has(id);
  }

  /** Check job `id`'s files (already written in `jobs/`); at most `concurrency` at once, the rest wait in turn. */
  check(id: string): Promise<CheckVerdict> {
    const known = this.running.get(id);
    if (known) return known;
    const p = this.pool.run({ releaseDir: this.releaseDir, job: id, accept: this.accept }).then((v) => {
      this.verdicts.set(id, v);
      this.onVerdict(v);
      return v;
    });
    // A check whose process died is forgotten: asked again, it runs again.
    p.catch(() => this.running.delete(id));
    this.running.set(id, p);
    return p;
  }

  /** The passed verdicts, as publish takes them. */
  passed(): Map<string, CheckedResult> {
    const out = new Map<string, CheckedResult>();
    for (const [id, v] of this.verdicts) if ('entry' in v) out.set(id, { key: v.key, entry: v.entry });
    return out;
  }

  /** Done with the checks; the last plan of this process to close stops the check processes. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (--this.pool.users > 0) return;
    if (shared === this.pool) shared = undefined;
    await this.pool.processes.close();
  }
}
