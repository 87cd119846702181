/**
 * `ndiff release run` checks each worker's result as it arrives, while other jobs still run:
 * the result is written into `jobs/` and checked in one of `concurrency` check processes
 * (check-process.ts, kept from check to check), publish's own check each time. The verdicts are
 * kept bound to the bytes checked ({@link verdictKey}); publish takes a verdict only for those
 * exact bytes, and checks anything else again. Nothing here signs or trusts a result.
 */
import { availableParallelism } from 'node:os';
import { JobProcesses } from './sandbox.ts';
import { processorFile, sandboxEnv, threadsPerJob } from './worker.ts';
import type { CheckRequest, CheckVerdict } from './check-process.ts';
import type { CheckedResult } from '../publish.ts';

/** The checks of one plan run. */
export class ArrivingChecks {
  private readonly processes: JobProcesses;
  private readonly running = new Map<string, Promise<CheckVerdict>>();
  private readonly waiters: (() => void)[] = [];
  private active = 0;
  /** Verdicts by job id, as they came. */
  readonly verdicts = new Map<string, CheckVerdict>();

  constructor(private readonly releaseDir: string, private readonly accept: string[], readonly concurrency: number = availableParallelism(), private readonly onVerdict: (v: CheckVerdict) => void = () => {}) {
    const proc = processorFile('check-process');
    // Each check process gets its share of the cores (a top-k rebuild may start BLAS threads).
    const env: NodeJS.ProcessEnv = { ...sandboxEnv(process.env, '', threadsPerJob(concurrency)), NDIFF_CHECK_PROCESS: '1' };
    delete env.NDIFF_WORKER_CACHE;
    this.processes = new JobProcesses({ file: proc.file, ...(proc.execArgv ? { execArgv: proc.execArgv } : {}), env });
  }

  /** Start `concurrency` check processes now, so the first result finds them ready. */
  warm(): void {
    this.processes.warm(this.concurrency);
  }

  /** Whether job `id`'s files are checked or being checked. */
  has(id: string): boolean {
    return this.running.has(id);
  }

  /** Check job `id`'s files (already written in `jobs/`); at most `concurrency` at once, the rest wait in turn. */
  check(id: string): Promise<CheckVerdict> {
    const known = this.running.get(id);
    if (known) return known;
    const p = this.turn().then(async () => {
      try {
        const v = (await this.processes.run({ releaseDir: this.releaseDir, job: id, accept: this.accept } satisfies CheckRequest, () => {})) as CheckVerdict;
        this.verdicts.set(id, v);
        this.onVerdict(v);
        return v;
      } finally {
        this.active--;
        this.waiters.shift()?.();
      }
    });
    // A check whose process died is forgotten: asked again, it runs again.
    p.catch(() => this.running.delete(id));
    this.running.set(id, p);
    return p;
  }

  private turn(): Promise<void> {
    if (this.active < this.concurrency) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiters.push(() => { this.active++; resolve(); }));
  }

  /** Checks started and not yet answered. */
  pending(): number {
    return this.running.size - this.verdicts.size;
  }

  /** The passed verdicts, as publish takes them. */
  passed(): Map<string, CheckedResult> {
    const out = new Map<string, CheckedResult>();
    for (const [id, v] of this.verdicts) if ('entry' in v) out.set(id, { key: v.key, entry: v.entry });
    return out;
  }

  /** Stop the check processes. */
  async close(): Promise<void> {
    await this.processes.close();
  }
}
