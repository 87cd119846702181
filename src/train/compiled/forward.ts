/**
 * Forward-only passes of a frozen model compiled too (issue 63): the teacher's outputs on the
 * training data (computed once per dataset) and on each augmented batch run as a plan of kernel
 * calls (plan.ts) instead of through tfjs' engine, op by op.
 *
 * The same capture as a training step's (step.ts), keyed by the pass and its inputs' shapes
 * and types (a smaller last batch gets its own plan): the first two passes of a key run eagerly
 * while recorded (record.ts); if both ran the same kernels on the same values they become a
 * {@link StepPlan}, replayed at once on the second pass's inputs and compared with what the
 * eager pass gave, bit for bit (a forward plan runs the same kernels as the engine does, so
 * anything less means a pass of the plan changed the arithmetic). From then on the key's passes
 * replay the plan. A pass nothing updates needs no state saved around the check: the second
 * pass's eager outputs are the reference.
 *
 * Whatever the plan cannot hold (a value read into JavaScript mid-pass, a random op, a value that
 * changes between passes) or a replay that differs makes that key's passes eager, and the reason
 * is said once.
 */
import * as tf from '@tensorflow/tfjs';
import { record } from './record.ts';
import { PlanRefused, resolve, StepPlan, type Resolved, type StepOutputs } from './plan.ts';
import { planDetail } from './step.ts';

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

/** A key whose plan went stale this often (a weight it reads replaced) stays eager. */
const MAX_RECAPTURES = 4;

type Entry =
  | { state: 'first'; recaptures: number }
  | { state: 'second'; first: Resolved; recaptures: number }
  | { state: 'ready'; plan: StepPlan; recaptures: number }
  | { state: 'eager'; why: string };

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

function keyOf(feeds: Record<string, tf.Tensor>, name: string): string {
  return `${name}|${tf.getBackend()}|${Object.entries(feeds).map(([role, t]) => `${role}:${t.dtype}[${t.shape.join(',')}]`).join('|')}`;
}

/** The compiled forward passes of one frozen model, by their inputs' shapes. */
export class ForwardPlans {
  private readonly entries = new Map<string, Entry>();
  /** Passes run by a replayed plan, and eagerly (recorded or not). */
  replayed = 0;
  eager = 0;
  private said = false;

  /**
   * `what` names the passes in messages (`teacher`); `say` hears once the first plan's kernels,
   * and each reason a key runs eagerly once.
   */
  constructor(private readonly what: string, private readonly say: (message: string) => void) {}

  /**
   * One pass over `feeds` (tensors the caller made for this pass, in its tf.tidy); `pass` is the
   * eager pass, the same function for every call with this `name` and feeds of these shapes.
   */
  run(feeds: Record<string, tf.Tensor>, pass: ForwardPass, name = 'pass'): tf.Tensor {
    const key = keyOf(feeds, name);
    const e = this.entries.get(key) ?? { state: 'first', recaptures: 0 };
    this.entries.set(key, e);
    if (e.state === 'eager') {
      this.eager++;
      return pass(feeds);
    }
    const step = (f: Record<string, tf.Tensor>): StepOutputs => [['out', pass(f)]];
    if (e.state === 'first' || e.state === 'second') {
      const rec = record(() => step(feeds), feeds);
      this.eager++;
      const out = rec.result[0][1];
      try {
        if (e.state === 'first') {
          this.entries.set(key, { state: 'second', first: resolve(rec, feeds), recaptures: e.recaptures });
          return out;
        }
        const plan = StepPlan.build(e.first, rec, feeds);
        this.check(key, plan, feeds, out, e.recaptures);
      } catch (err) {
        if (!(err instanceof PlanRefused)) throw err;
        this.refuse(key, err.message);
      }
      return out;
    }
    const plan = e.plan;
    const stale = plan.stale(feeds);
    if (stale) {
      plan.dispose();
      const recaptures = e.recaptures + 1;
      if (recaptures > MAX_RECAPTURES) this.refuse(key, `${stale}, ${recaptures} times`);
      else this.entries.set(key, { state: 'first', recaptures });
      return this.run(feeds, pass, name);
    }
    try {
      const out = plan.replay(feeds)[0][1];
      this.replayed++;
      return out;
    } catch (err) {
      plan.dispose();
      this.refuse(key, `the replay failed: ${err instanceof Error ? err.message : String(err)}`);
      this.eager++;
      return pass(feeds);
    }
  }

  /** The plan replayed on the inputs the eager pass `out` came from; kept when it gives the same bits. */
  private check(key: string, plan: StepPlan, feeds: Record<string, tf.Tensor>, out: tf.Tensor, recaptures: number): void {
    let replayed: tf.Tensor;
    try {
      replayed = plan.replay(feeds)[0][1];
    } catch (err) {
      plan.dispose();
      throw new PlanRefused(`the replay failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    const differs = bitDifference(out, replayed);
    replayed.dispose();
    if (differs) {
      plan.dispose();
      throw new PlanRefused(`the replayed pass differs from the eager pass in ${differs}`);
    }
    this.entries.set(key, { state: 'ready', plan, recaptures });
    if (!this.said) {
      this.said = true;
      this.say(`${this.what}: compiled forward plan (${planDetail(plan)})`);
    }
  }

  private refuse(key: string, why: string): void {
    this.entries.set(key, { state: 'eager', why });
    this.say(`${this.what}: eager forward passes (${why})`);
  }

  /** Say once why this model's passes run eagerly without asking for a plan (the model cannot give its inputs as feeds). */
  eagerBecause(why: string): void {
    if (this.said) return;
    this.said = true;
    this.say(`${this.what}: eager forward passes (${why})`);
  }

  /** Plans ready now (one per inputs' shapes that reached one). */
  plans(): StepPlan[] {
    return [...this.entries.values()].flatMap((e) => (e.state === 'ready' ? [e.plan] : []));
  }

  dispose(): void {
    for (const e of this.entries.values()) if (e.state === 'ready') e.plan.dispose();
    this.entries.clear();
  }
}
