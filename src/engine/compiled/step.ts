/**
 * Training steps compiled once per phase and replayed (issue 63, first part: capture and replay).
 *
 * For each phase of a run (its key: the feeds' shapes, the backend, what the method's state
 * looks like), capture.ts records the first two steps, builds a plan, checks its first replay
 * against an eager step from the same state (every output and variable within float tolerance)
 * and replays it from then on; a phase it refuses runs eagerly, and progress hears once per phase
 * `step: compiled plan (...)` or `step: eager (why)`.
 */
import type * as tf from '@tensorflow/tfjs';
import { CapturedRuns, planDetail, type CaptureNews } from './capture.ts';
import type { StepOutputs } from './plan.ts';

export { outputDifference, planDetail } from './capture.ts';
export { PlanRefused, replayProfile, replayProfiler, StepPlan, type ReplayProfile, type StepOutputs } from './plan.ts';

/** Which step runs: compiled where a plan verifies (default), or always eager. */
export type StepMode = 'eager' | 'compiled';

/** The path a phase's steps took: a compiled plan (its kernels and memory) or eager (why). */
export interface StepPath {
  compiled: boolean;
  detail: string;
}

/** Plans of one training run, by phase (capture.ts: steps update variables, their first replay checked against an eager step). */
export class CompiledSteps extends CapturedRuns {
  /** What each name of steps (`step`, `shard`) hears of its phases' paths. */
  private readonly news = new Map<string, CaptureNews>();

  /**
   * `say` hears each phase's path once: the message, and the path apart (compiled or not, and the
   * words in its parentheses) for a caller that gathers the paths of several threads.
   */
  constructor(private readonly say: (message: string, path?: StepPath) => void) {
    super({ noun: 'step', updates: true, profiled: true, staleTimes: (n) => `${n} times in this phase` });
  }

  /** Has this phase been refused a plan (its steps run eagerly)? */
  refused(key: string): boolean {
    return this.captures.refused(key);
  }

  /**
   * One step of the phase `key` on `feeds` (tensors the caller made for this step: the batch,
   * the teacher's rows); `step` is the eager step (called inside the caller's tf.tidy).
   */
  run(key: string, feeds: Record<string, tf.Tensor>, step: (feeds: Record<string, tf.Tensor>) => StepOutputs, what = 'step'): StepOutputs {
    return this.captures.run(key, feeds, step, this.newsFor(what));
  }

  private newsFor(what: string): CaptureNews {
    let news = this.news.get(what);
    if (!news) {
      news = {
        ready: (plan) => {
          const detail = planDetail(plan);
          this.say(`${what}: compiled plan (${detail})`, { compiled: true, detail });
        },
        refused: (why) => this.say(`${what}: eager (${why})`, { compiled: false, detail: why }),
      };
      this.news.set(what, news);
    }
    return news;
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
