/**
 * Training steps compiled once per phase and replayed (issue 63, first part: capture and replay).
 *
 * For each phase of a run (its key: the feeds' shapes, the backend, what the method's state
 * looks like), the first two steps run eagerly while recorded (record.ts); if both ran the same
 * kernels on the same values, they become a {@link StepPlan}. The plan's first replay is checked
 * against an eager step from the same state (every output within float tolerance) before it
 * is trusted; after that, steps of the phase replay the plan. Whatever cannot be replayed (a value
 * read into JavaScript mid-step, a random draw, a value that changes between steps, a kernel
 * failing, a replay that disagrees with the eager step) makes that phase's steps eager, and the
 * reason is said once.
 */
import * as tf from '@tensorflow/tfjs';
import { record } from './record.ts';
import { PlanRefused, replayProfiler, resolve, StepPlan, type Resolved, type StepOutputs } from './plan.ts';

export { PlanRefused, replayProfile, replayProfiler, StepPlan, type ReplayProfile, type StepOutputs } from './plan.ts';

/** Which step runs: compiled where a plan verifies (default), or always eager. */
export type StepMode = 'eager' | 'compiled';

/** The path a phase's steps took: a compiled plan (its kernels and memory) or eager (why). */
export interface StepPath {
  compiled: boolean;
  detail: string;
}

/** Relative tolerance of the verification (float32 sums in another order stay well inside it). */
const TOLERANCE = 1e-4;
/** A phase whose plan went stale this often (a tensor it reads replaced) stays eager. */
const MAX_RECAPTURES = 4;

type Entry =
  | { state: 'first'; recaptures: number }
  | { state: 'second'; first: Resolved; recaptures: number }
  | { state: 'verify' | 'ready'; plan: StepPlan; recaptures: number }
  | { state: 'eager'; why: string };

/**
 * The largest difference between two outputs relative to the eager one's largest magnitude
 * (Infinity when their shapes or types differ, or one holds a NaN where the other does not).
 */
export function outputDifference(eager: tf.Tensor, replayed: tf.Tensor): number {
  if (eager.dtype !== replayed.dtype || eager.shape.join() !== replayed.shape.join()) return Infinity;
  const a = eager.dataSync() as ArrayLike<number>;
  const b = replayed.dataSync() as ArrayLike<number>;
  let scale = 0;
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const [x, y] = [a[i], b[i]];
    if (Number.isNaN(x) || Number.isNaN(y)) {
      if (Number.isNaN(x) && Number.isNaN(y)) continue;
      return Infinity;
    }
    scale = Math.max(scale, Math.abs(x));
    worst = Math.max(worst, Math.abs(x - y));
  }
  return worst / Math.max(scale, 1e-6);
}

/** What a plan runs, as progress says it: its kernels, what was folded or fused, its memory. */
export function planDetail(plan: StepPlan): string {
  const optimizer = plan.optimizerKernels ? `, ${plan.optimizerKernels} of them the optimizer's` : '';
  return `${plan.kernelCount} kernels${optimizer}${plan.folded ? `, ${plan.folded} folded` : ''}${plan.viewed ? `, ${plan.viewed} reshapes read in place` : ''}${plan.fusedChains ? `, ${plan.fusedChains} element-wise chains of ${plan.fusedKernels} kernels fused` : ''}${plan.fusedBiases ? `, ${plan.fusedBiases} bias adds in their GEMM` : ''}, ${(plan.bytes / 1048576).toFixed(1)} MB`;
}

/** Plans of one training run, by phase. */
export class CompiledSteps {
  private readonly entries = new Map<string, Entry>();
  /** Steps run by a replayed plan, and eagerly. */
  replayed = 0;
  eager = 0;

  /**
   * `say` hears each phase's path once: the message, and the path apart (compiled or not, and the
   * words in its parentheses) for a caller that gathers the paths of several threads.
   */
  constructor(private readonly say: (message: string, path?: StepPath) => void) {}

  /** Has this phase been refused a plan (its steps run eagerly)? */
  refused(key: string): boolean {
    return this.entries.get(key)?.state === 'eager';
  }

  /**
   * One step of the phase `key` on `feeds` (tensors the caller made for this step: the batch,
   * the teacher's rows); `step` is the eager step (called inside the caller's tf.tidy).
   */
  run(key: string, feeds: Record<string, tf.Tensor>, step: (feeds: Record<string, tf.Tensor>) => StepOutputs, what = 'step'): StepOutputs {
    let e = this.entries.get(key) ?? { state: 'first', recaptures: 0 };
    this.entries.set(key, e);
    if (e.state === 'eager') {
      this.eager++;
      return step(feeds);
    }
    if (e.state === 'first' || e.state === 'second') {
      const rec = record(() => step(feeds), feeds);
      this.eager++;
      try {
        if (e.state === 'first') this.entries.set(key, { state: 'second', first: resolve(rec, feeds), recaptures: e.recaptures });
        else this.entries.set(key, { state: 'verify', plan: StepPlan.build(e.first, rec, feeds), recaptures: e.recaptures });
      } catch (err) {
        if (!(err instanceof PlanRefused)) throw err;
        this.refuse(key, err.message, what);
      }
      return rec.result;
    }
    const plan = e.plan;
    const stale = plan.stale(feeds);
    if (stale) {
      plan.dispose();
      const recaptures = e.recaptures + 1;
      if (recaptures > MAX_RECAPTURES) {
        this.refuse(key, `${stale}, ${recaptures} times in this phase`, what);
      } else this.entries.set(key, { state: 'first', recaptures });
      this.eager++;
      return step(feeds);
    }
    if (e.state === 'verify') {
      // The same state twice: the plan, then the eager step from the state saved before the
      // replay (the plan updates the weights, the optimizer's moments and its step count), and
      // the state each left compared; the eager step's state is kept, right or wrong.
      const variables = plan.variables();
      const saved = variables.map((v) => ({ v, values: v.dataSync().slice() }));
      const restore = () => {
        for (const { v, values } of saved) v.assign(tf.tensor(values, v.shape, v.dtype));
      };
      let replayed: StepOutputs;
      let after: tf.Tensor[];
      try {
        replayed = plan.replay(feeds);
        after = variables.map((v) => tf.tensor(v.dataSync().slice(), v.shape, v.dtype));
        restore();
      } catch (err) {
        restore();
        plan.dispose();
        this.refuse(key, `the replay failed: ${err instanceof Error ? err.message : String(err)}`, what);
        this.eager++;
        return step(feeds);
      }
      const eager = step(feeds);
      for (let i = 0; i < eager.length; i++) {
        const [name, t] = eager[i];
        const got = replayed[i];
        const diff = got && got[0] === name ? outputDifference(t, got[1]) : Infinity;
        if (!(diff <= TOLERANCE)) {
          for (const [, r] of replayed) r.dispose();
          plan.dispose();
          this.refuse(key, `the replayed step differs from the eager step in ${name} (by ${diff.toExponential(2)} of its scale, tolerance ${TOLERANCE})`, what);
          this.eager++;
          return eager;
        }
      }
      for (let i = 0; i < variables.length; i++) {
        const diff = outputDifference(variables[i], after[i]);
        if (!(diff <= TOLERANCE)) {
          for (const [, r] of replayed) r.dispose();
          plan.dispose();
          this.refuse(key, `the replayed step leaves variable ${variables[i].name} different from the eager step's (by ${diff.toExponential(2)} of its scale, tolerance ${TOLERANCE})`, what);
          this.eager++;
          return eager;
        }
      }
      tf.dispose(after);
      for (const [, t] of eager) t.dispose();
      this.entries.set(key, { state: 'ready', plan, recaptures: e.recaptures });
      const detail = planDetail(plan);
      this.say(`${what}: compiled plan (${detail})`, { compiled: true, detail });
      this.replayed++;
      return replayed;
    }
    try {
      const out = plan.replay(feeds, replayProfiler.into);
      this.replayed++;
      return out;
    } catch (err) {
      plan.dispose();
      this.refuse(key, `the replay failed: ${err instanceof Error ? err.message : String(err)}`, what);
      this.eager++;
      return step(feeds);
    }
  }

  private refuse(key: string, why: string, what: string): void {
    this.entries.set(key, { state: 'eager', why });
    this.say(`${what}: eager (${why})`, { compiled: false, detail: why });
  }

  /** Compiled plans ready now. */
  plans(): StepPlan[] {
    return [...this.entries.values()].flatMap((e) => (e.state === 'ready' || e.state === 'verify' ? [e.plan] : []));
  }

  dispose(): void {
    for (const e of this.entries.values()) if (e.state === 'ready' || e.state === 'verify') e.plan.dispose();
    this.entries.clear();
  }
}

const onceBy = new WeakMap<(message: string) => void, (message: string) => void>();

/** `say` once per distinct message (a run's many loops repeat the same paths); the same function for the same `say`. */
export function sayOnce(say: (message: string) => void): (message: string) => void {
  const known = onceBy.get(say);
  if (known) return known;
  const said = new Set<string>();
  const once = (m: string) => {
    if (said.has(m)) return;
    said.add(m);
    say(m);
  };
  onceBy.set(say, once);
  return once;
}
