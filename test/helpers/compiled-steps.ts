/**
 * A training step run several times, eagerly or replayed through {@link CompiledSteps}: what the
 * compiled-step tests compare between the two paths (losses, the plan's kernels, the weights after).
 */
import * as tf from '@tensorflow/tfjs';
import { CompiledSteps } from '../../src/engine/compiled/step.ts';
import type { StepOutputs } from '../../src/engine/compiled/plan.ts';

export interface StepRuns {
  /** What the compiled steps' progress said (nothing for eager runs). */
  said: string[];
  /** The first output's value ('loss') after each step. */
  losses: number[];
  /** The kernels of the first plan, in order (empty when eager or not planned). */
  names: string[];
  /** Each of `weights`' values after the last step. */
  weights: Float32Array[];
}

/** `step` run `count` times on `feeds`, eagerly or compiled under `key`. */
export function runSteps(mode: 'eager' | 'compiled', key: string, feeds: Record<string, tf.Tensor>, step: (feeds: Record<string, tf.Tensor>) => StepOutputs, weights: tf.Tensor[], count = 8): StepRuns {
  const said: string[] = [];
  const compiled = new CompiledSteps((m) => said.push(m));
  try {
    const losses: number[] = [];
    for (let i = 0; i < count; i++) tf.tidy(() => losses.push((mode === 'eager' ? step(feeds) : compiled.run(key, feeds, step))[0][1].dataSync()[0]));
    return { said, losses, names: compiled.plans()[0]?.kernelNames() ?? [], weights: weights.map((t) => Float32Array.from(t.dataSync())) };
  } finally {
    compiled.dispose();
  }
}
