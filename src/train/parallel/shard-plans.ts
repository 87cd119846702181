/**
 * Each thread of the pool compiles its shard's step (src/engine/compiled/): the forward pass, the
 * loss and the backward pass of {@link shardGradients}, one plan per shard shape, replayed on the
 * thread's own backend. The optimizer stays on the parent thread. A thread tells the parent which
 * path its steps took in its reply; the parent says it once for the pool
 * ({@link poolPathMessages}).
 */
import { CompiledSteps, type StepMode, type StepPath } from '../../engine/compiled/step.ts';

/** What a thread's compiled steps did: the paths said since its last step, and its counts so far. */
export interface ShardStepsReport {
  paths: StepPath[];
  /** Plans ready (one per shard shape that verified). */
  plans: number;
  /** Shard steps run by a plan, and eagerly (recording and verification steps included). */
  replayed: number;
  eager: number;
}

/** One thread's compiled shard steps for one training loop. */
export class ShardSteps {
  /** The compiled steps (undefined when the loop asked for eager steps). */
  readonly steps: CompiledSteps | undefined;
  private paths: StepPath[] = [];

  constructor(mode: StepMode) {
    this.steps = mode === 'compiled'
      ? new CompiledSteps((_message, path) => {
        if (path) this.paths.push(path);
      })
      : undefined;
  }

  /** The paths said since the last report, and the counts so far. */
  report(): ShardStepsReport {
    const paths = this.paths;
    this.paths = [];
    return { paths, plans: this.steps?.plans().length ?? 0, replayed: this.steps?.replayed ?? 0, eager: this.steps?.eager ?? 0 };
  }

  dispose(): void {
    this.steps?.dispose();
  }
}

/**
 * The pool's progress lines for one step, from each thread's report (index 0 the parent; undefined
 * for a thread that had no shard this step): threads that took the same path with the same plan
 * size (or the same reason to stay eager) are said together,
 * `step: compiled plan in each of 2 threads (812 kernels, 3.1 MB)`.
 */
export function poolPathMessages(reports: (ShardStepsReport | undefined)[]): string[] {
  const threads = reports.length;
  const ran = reports.filter((r) => r !== undefined).length;
  const groups = new Map<string, { path: StepPath; threads: number[] }>();
  reports.forEach((r, i) => {
    for (const path of r?.paths ?? []) {
      const key = `${path.compiled} ${path.detail}`;
      const g = groups.get(key) ?? { path, threads: [] };
      if (!g.threads.includes(i + 1)) g.threads.push(i + 1);
      groups.set(key, g);
    }
  });
  return [...groups.values()].map(({ path, threads: which }) => {
    const where = which.length === threads && ran === threads ? `in each of ${threads} threads` : which.length === 1 ? `in thread ${which[0]} of ${threads}` : `in threads ${which.join(', ')} of ${threads}`;
    return `step: ${path.compiled ? 'compiled plan' : 'eager'} ${where} (${path.detail})`;
  });
}
