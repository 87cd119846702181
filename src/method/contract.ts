/**
 * What a training method implements for the shared training loop (src/train/loop.ts): a
 * {@link Parameterization} decides what weights the layers see (e.g. W0 + m ⊙ D) and turns
 * dL/dW into gradients of its own variables.
 *
 * The method folders (src/sparse-diff, src/hash-diff, src/lowrank-diff, src/composite-diff,
 * src/lowbit-diff) implement it and import nothing of the loop; the loop imports them. This
 * module holds types and the naming of the methods' variables, so it sits below both.
 */
import * as tf from '@tensorflow/tfjs';

/**
 * The tfjs name of a method's variable: `name` when it is free, else `name_1`, `name_2`, ... tfjs
 * needs unique names, and two runs of one method may be alive at once (`--method auto` by
 * successive halving suspends every candidate's run between epochs). Names key gradients and
 * optimizer moments only: the numbers do not depend on them.
 */
export function trainingVariableName(name: string): string {
  const taken = tf.engine().registeredVariables;
  let out = name;
  for (let k = 1; taken[out]; k++) out = `${name}_${k}`;
  return out;
}

/** How a method maps its own variables to the weights the model computes with. */
export interface Parameterization {
  /** Trainable tensors this method touches (manifest names). */
  readonly names: readonly string[];
  /** Weights the layers should use for tensor `name` this step (called inside tf.tidy); null: leave the variable as is. */
  effective(name: string): tf.Tensor | null;
  /** Gradients of the method's variables (by variable name) from dL/dW of tensor `name` (inside tf.tidy). */
  gradients(name: string, dW: tf.Tensor): tf.NamedTensorMap;
  /** Called after each optimizer step with the global step and the run's progress in [0, 1]. */
  afterStep?(step: number, progress: number): void;
  /** Summary for progress output (e.g. non-zeros, temperature). */
  status?(): Record<string, string | number>;
  /**
   * What the method's step computes now, as a key (its phase: e.g. hard mask and codec). A method
   * that gives one has its own kernels captured in the step's compiled plan (src/engine/compiled/),
   * a new plan whenever the key changes; without one (or null: in this phase a value changes at
   * every step), its part of the step runs eagerly around the plan of the model's forward and
   * backward pass.
   */
  planKey?(): string | null;
}
