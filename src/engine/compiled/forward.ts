/**
 * Forward-only passes of a frozen model compiled too (issue 63): the teacher's outputs on the
 * training data (computed once per dataset) and on each augmented batch run as a plan of kernel
 * calls (plan.ts) instead of through tfjs' engine, op by op.
 *
 * The same capture as a training step's (capture.ts), keyed by the pass and its inputs' shapes
 * and types (a smaller last batch gets its own plan). A pass updates nothing, so no state is
 * saved around the check: the plan replays the second recorded pass's inputs at once and must give
 * its outputs bit for bit. Progress hears once `teacher: compiled forward plan (...)`, and each
 * reason a key's passes run eagerly.
 */
import * as tf from '@tensorflow/tfjs';
import { CapturedRuns, planDetail, type CaptureNews } from './capture.ts';

export { bitDifference } from './capture.ts';

/** A forward pass from its feeds: the model's outputs (nothing assigned, no gradient). */
export type ForwardPass = (feeds: Record<string, tf.Tensor>) => tf.Tensor;

/**
 * A model that makes its forward pass's inputs itself from the trainers' `x` (a program's example
 * ids become its inputs' rows), so a compiled pass takes them as feeds; where it cannot (a model
 * carrying state from frame to frame), why its passes stay eager.
 */
export interface ForwardInputs {
  forwardInputs(x: tf.Tensor): { feeds: Record<string, tf.Tensor>; outputs: (feeds: Record<string, tf.Tensor>) => tf.Tensor | tf.Tensor[] } | { eager: string };
}

/**
 * A frozen model's pass over `x` (inside the caller's tf.tidy): `finish(outputs(x))` eagerly, or
 * through `plans` when given, its feeds `x` or what the model makes of it ({@link ForwardInputs};
 * `model` null: `x` is what `outputs` reads, whatever the model). `name` tells this pass from the
 * other passes `plans` serves over inputs of the same shapes (validation's accuracy reads the
 * first output, a closeness all of them; a cached prefix's activations can have the input's shape).
 */
export function frozenPass(plans: ForwardPlans | undefined, model: object | null, x: tf.Tensor, outputs: (x: tf.Tensor) => tf.Tensor | tf.Tensor[], finish: (o: tf.Tensor | tf.Tensor[]) => tf.Tensor, name: string): tf.Tensor {
  if (plans) {
    const own = (model ?? {}) as Partial<ForwardInputs>;
    const pass = own.forwardInputs ? own.forwardInputs(x) : { feeds: { x }, outputs: (f: Record<string, tf.Tensor>) => outputs(f.x) };
    if ('feeds' in pass) return plans.run(pass.feeds, (f) => finish(pass.outputs(f)), name);
    plans.eagerBecause(pass.eager);
  }
  return finish(outputs(x));
}

/** Benchmarks and tests switch this: `compiled` false runs every forward pass eagerly (the steps as asked). */
export const forwardSwitch = { compiled: true };

function keyOf(feeds: Record<string, tf.Tensor>, name: string): string {
  return `${name}|${tf.getBackend()}|${Object.entries(feeds).map(([role, t]) => `${role}:${t.dtype}[${t.shape.join(',')}]`).join('|')}`;
}

/** The compiled forward passes of one frozen model, by their inputs' shapes (one plan each that reached one). */
export class ForwardPlans extends CapturedRuns {
  private readonly news: CaptureNews;
  private said = false;

  /**
   * `what` names the passes in messages (`teacher`); `say` hears once the first plan's kernels,
   * and each reason a key runs eagerly once.
   */
  constructor(private readonly what: string, private readonly say: (message: string) => void) {
    super({ noun: 'pass', updates: false, profiled: false, staleTimes: (n) => `${n} times` });
    this.news = {
      ready: (plan) => {
        if (this.said) return;
        this.said = true;
        this.say(`${this.what}: compiled forward plan (${planDetail(plan)})`);
      },
      refused: (why) => this.say(`${this.what}: eager forward passes (${why})`),
    };
  }

  /**
   * One pass over `feeds` (tensors the caller made for this pass, in its tf.tidy); `pass` is the
   * eager pass, the same function for every call with this `name` and feeds of these shapes.
   */
  run(feeds: Record<string, tf.Tensor>, pass: ForwardPass, name = 'pass'): tf.Tensor {
    return this.captures.run(keyOf(feeds, name), feeds, (f) => [['out', pass(f)]], this.news)[0][1];
  }

  /** Say once why this model's passes run eagerly without asking for a plan (the model cannot give its inputs as feeds). */
  eagerBecause(why: string): void {
    if (this.said) return;
    this.said = true;
    this.say(`${this.what}: eager forward passes (${why})`);
  }
}
