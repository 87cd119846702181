/**
 * The capture machine behind compiled training steps (step.ts) and compiled forward passes
 * (forward.ts), per key (a phase of training, a pass over inputs of one shape):
 *
 *   first -> second -> (verify) -> ready, or eager with the reason said once.
 *
 * The first two runs of a key run eagerly while recorded (record.ts); if both ran the same kernels
 * on the same values they become a {@link StepPlan}. The plan is checked before it is trusted:
 * - a run that updates variables (a training step) checks its first replay: the variables are
 *   saved, the plan replayed, what it left kept and the variables restored, then the eager run
 *   goes from the same state; outputs and variables must agree within {@link TOLERANCE} (fused
 *   kernels sum in another order), and the eager run's state is kept, right or wrong;
 * - a run that updates nothing (a forward pass) is checked at once: the plan replays the second
 *   recording's feeds and must give its outputs bit for bit (the same kernels, so anything less
 *   means a pass of the plan changed the arithmetic).
 * From then on the key's runs replay the plan. A plan that went stale (a tensor it reads was
 * replaced) is dropped and the key captured again from its next run, {@link MAX_RECAPTURES} times
 * at most. Whatever the plan cannot hold (a value read into JavaScript, a random draw, a value
 * that changes between runs), a replay that fails or disagrees makes the key's runs eager.
 */
import * as tf from '@tensorflow/tfjs';
import { TrainingStepError } from '../../core/errors.ts';
import { record } from './record.ts';
import { PlanRefused, replayProfiler, resolve, StepPlan, type Resolved, type StepOutputs } from './plan.ts';

/** Relative tolerance of a step's check (float32 sums in another order stay well inside it). */
export const TOLERANCE = 1e-4;
/** A key whose plan went stale this often (a tensor it reads replaced) stays eager. */
export const MAX_RECAPTURES = 4;

/** What differs between the users of the machine. */
export interface CaptureRules {
  /** What one run is called in the reasons given: `step`, `pass`. */
  noun: string;
  /**
   * Runs assign variables (training steps): the first replay is checked against an eager run from
   * the same state, within {@link TOLERANCE}. Otherwise (forward passes) the plan is checked at
   * once against the second recording, bit for bit.
   */
  updates: boolean;
  /** Replays after the check add their time to {@link replayProfiler} (what the step profiles read). */
  profiled: boolean;
  /** The words after a stale plan's reason when the key is refused for it the `n`th time. */
  staleTimes: (n: number) => string;
}

/** What the caller of one run hears when its key gets a plan or is refused one. */
export interface CaptureNews {
  ready(plan: StepPlan): void;
  refused(why: string): void;
}

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
  let unscaled = false;
  // Plain comparisons: this loop runs once over every weight and moment at a plan's check, before
  // the JavaScript engine has optimised it (an array and four calls an element took 19 ms there).
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const y = b[i];
    if (x !== x || y !== y) {
      if (x !== x && y !== y) continue;
      return Infinity;
    }
    const m = x < 0 ? -x : x;
    const d = x < y ? y - x : x - y;
    if (d !== d) unscaled = true; // an infinity on both sides: NaN at the end, as Math.max made it
    if (m > scale) scale = m;
    if (d > worst) worst = d;
  }
  return unscaled ? NaN : worst / (scale > 1e-6 ? scale : 1e-6);
}

/**
 * Why two outputs differ in any bit (undefined when they are the same values): shapes, types,
 * or the first element whose bits differ.
 */
export function bitDifference(eager: tf.Tensor, replayed: tf.Tensor): string | undefined {
  if (eager.dtype !== replayed.dtype || eager.shape.join() !== replayed.shape.join()) {
    return `its shape or type (${eager.dtype} [${eager.shape.join(', ')}] eager, ${replayed.dtype} [${replayed.shape.join(', ')}] replayed)`;
  }
  const a = eager.dataSync() as Float32Array | Int32Array | Uint8Array;
  const b = replayed.dataSync() as Float32Array | Int32Array | Uint8Array;
  const bytesA = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const bytesB = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 0; i < bytesA.length; i++) {
    if (bytesA[i] !== bytesB[i]) {
      const e = Math.floor(i / a.BYTES_PER_ELEMENT);
      return `element ${e} (${a[e]} eager, ${b[e]} replayed)`;
    }
  }
  return undefined;
}

/** What a plan runs, as progress says it: its kernels, what was folded or fused, its memory. */
export function planDetail(plan: StepPlan): string {
  const optimizer = plan.optimizerKernels ? `, ${plan.optimizerKernels} of them the optimizer's` : '';
  return `${plan.kernelCount} kernels${optimizer}${plan.folded ? `, ${plan.folded} folded` : ''}${plan.viewed ? `, ${plan.viewed} reshapes read in place` : ''}${plan.fusedChains ? `, ${plan.fusedChains} element-wise chains of ${plan.fusedKernels} kernels fused` : ''}${plan.fusedBiases ? `, ${plan.fusedBiases} bias adds in their GEMM` : ''}${plan.fusedRelus ? `, ${plan.fusedRelus} ReLUs in their epilogue` : ''}${plan.fusedPoolGrads ? `, ${plan.fusedPoolGrads} Relu gradients in a max pool's` : ''}, ${plan.memoryDetail()}`;
}

const failed = (err: unknown) => `the replay failed: ${err instanceof Error ? err.message : String(err)}`;

/** Plans by key, captured, checked, replayed and refused by one set of {@link CaptureRules}. */
export class Captures {
  private readonly entries = new Map<string, Entry>();
  /** Runs done by a replayed plan, and eagerly (recorded or not). */
  replayed = 0;
  eager = 0;

  constructor(private readonly rules: CaptureRules) {}

  /** Has this key been refused a plan (its runs are eager)? */
  refused(key: string): boolean {
    return this.entries.get(key)?.state === 'eager';
  }

  /**
   * One run of `key` on `feeds` (tensors the caller made for this run, in its tf.tidy); `eager` is
   * the run without a plan, the same function for every run of the key.
   */
  run(key: string, feeds: Record<string, tf.Tensor>, eager: (feeds: Record<string, tf.Tensor>) => StepOutputs, news: CaptureNews): StepOutputs {
    const e = this.entries.get(key) ?? { state: 'first', recaptures: 0 };
    this.entries.set(key, e);
    if (e.state === 'eager') {
      this.eager++;
      return eager(feeds);
    }
    if (e.state === 'first' || e.state === 'second') {
      const rec = record(() => eager(feeds), feeds);
      this.eager++;
      try {
        if (e.state === 'first') this.entries.set(key, { state: 'second', first: resolve(rec, feeds), recaptures: e.recaptures });
        else {
          const plan = StepPlan.build(e.first, rec, feeds);
          if (this.rules.updates) this.entries.set(key, { state: 'verify', plan, recaptures: e.recaptures });
          else this.checkAtOnce(key, plan, feeds, rec.result, e.recaptures, news);
        }
      } catch (err) {
        if (!(err instanceof PlanRefused)) throw err;
        this.refuse(key, err.message, news);
      }
      return rec.result;
    }
    const plan = e.plan;
    const stale = plan.stale(feeds);
    if (stale) {
      plan.dispose();
      const recaptures = e.recaptures + 1;
      if (recaptures > MAX_RECAPTURES) this.refuse(key, `${stale}, ${this.rules.staleTimes(recaptures)}`, news);
      else this.entries.set(key, { state: 'first', recaptures });
      this.eager++;
      return eager(feeds);
    }
    if (e.state === 'verify') return this.checkFirstReplay(key, plan, feeds, eager, e.recaptures, news);
    try {
      const out = plan.replay(feeds, this.rules.profiled ? replayProfiler.into : null);
      this.replayed++;
      return out;
    } catch (err) {
      // The optimizer's state took part of the step already: running it again would be wrong.
      if (err instanceof TrainingStepError) {
        plan.dispose();
        this.refuse(key, failed(err), news);
        throw err;
      }
      return this.fallBack(key, plan, failed(err), news, () => eager(feeds));
    }
  }

  /** A plan of a run that updates nothing, replayed on the feeds the eager `reference` came from: kept when it gives the same bits. */
  private checkAtOnce(key: string, plan: StepPlan, feeds: Record<string, tf.Tensor>, reference: StepOutputs, recaptures: number, news: CaptureNews): void {
    let replayed: StepOutputs;
    try {
      replayed = plan.replay(feeds);
    } catch (err) {
      plan.dispose();
      throw new PlanRefused(failed(err));
    }
    const noun = this.rules.noun;
    try {
      for (let i = 0; i < reference.length; i++) {
        const got = replayed[i];
        const differs = got && got[0] === reference[i][0] ? bitDifference(reference[i][1], got[1]) : `its output ${reference[i][0]} (missing)`;
        if (differs) {
          plan.dispose();
          throw new PlanRefused(`the replayed ${noun} differs from the eager ${noun} in ${differs}`);
        }
      }
    } finally {
      for (const [, t] of replayed) t.dispose();
    }
    this.entries.set(key, { state: 'ready', plan, recaptures });
    news.ready(plan);
  }

  /**
   * The first replay of a plan that updates variables, and the eager run from the state saved
   * before it (the plan updates the weights, the optimizer's moments and its step count): the
   * state each left compared, the eager run's kept.
   */
  private checkFirstReplay(key: string, plan: StepPlan, feeds: Record<string, tf.Tensor>, run: (feeds: Record<string, tf.Tensor>) => StepOutputs, recaptures: number, news: CaptureNews): StepOutputs {
    const noun = this.rules.noun;
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
      return this.fallBack(key, plan, failed(err), news, () => run(feeds));
    }
    const eager = run(feeds);
    const reject = (why: string): StepOutputs => {
      for (const [, r] of replayed) r.dispose();
      tf.dispose(after);
      return this.fallBack(key, plan, why, news, () => eager);
    };
    for (let i = 0; i < eager.length; i++) {
      const [name, t] = eager[i];
      const got = replayed[i];
      const diff = got && got[0] === name ? outputDifference(t, got[1]) : Infinity;
      if (!(diff <= TOLERANCE)) return reject(`the replayed ${noun} differs from the eager ${noun} in ${name} (by ${diff.toExponential(2)} of its scale, tolerance ${TOLERANCE})`);
    }
    for (let i = 0; i < variables.length; i++) {
      const diff = outputDifference(variables[i], after[i]);
      if (!(diff <= TOLERANCE)) return reject(`the replayed ${noun} leaves variable ${variables[i].name} different from the eager ${noun}'s (by ${diff.toExponential(2)} of its scale, tolerance ${TOLERANCE})`);
    }
    tf.dispose(after);
    for (const [, t] of eager) t.dispose();
    this.entries.set(key, { state: 'ready', plan, recaptures });
    news.ready(plan);
    this.replayed++;
    return replayed;
  }

  /** `plan` dropped, the key refused for `why`, and this run's outputs from `eager`. */
  private fallBack(key: string, plan: StepPlan, why: string, news: CaptureNews, eager: () => StepOutputs): StepOutputs {
    plan.dispose();
    this.refuse(key, why, news);
    this.eager++;
    return eager();
  }

  private refuse(key: string, why: string, news: CaptureNews): void {
    this.entries.set(key, { state: 'eager', why });
    news.refused(why);
  }

  /** Plans ready now (and one awaiting its check). */
  plans(): StepPlan[] {
    return [...this.entries.values()].flatMap((e) => (e.state === 'ready' || e.state === 'verify' ? [e.plan] : []));
  }

  dispose(): void {
    for (const e of this.entries.values()) if (e.state === 'ready' || e.state === 'verify') e.plan.dispose();
    this.entries.clear();
  }
}

/** What the users of {@link Captures} (compiled steps, forward plans) show alike: their counts and plans. */
export abstract class CapturedRuns {
  protected readonly captures: Captures;

  constructor(rules: CaptureRules) {
    this.captures = new Captures(rules);
  }

  /** Runs done by a replayed plan, and eagerly (recorded or not). */
  get replayed(): number {
    return this.captures.replayed;
  }

  get eager(): number {
    return this.captures.eager;
  }

  /** Plans ready now. */
  plans(): StepPlan[] {
    return this.captures.plans();
  }

  dispose(): void {
    this.captures.dispose();
  }
}
