/**
 * Parameterizations of full fine-tuning (the `full` method, and the fine-tune behind the post-hoc
 * methods and `topk-retrain`).
 */
import * as tf from '@tensorflow/tfjs';
import { trainingVariableName, type Parameterization } from '../method/contract.ts';
import type { TrainableTensor } from './sizing.ts';

/** Fine-tune the model's own variables (the `full` method without storage grids). */
export class Identity implements Parameterization {
  /** @param variableOf manifest name -> the tf.Variable name the optimizer knows it by */
  constructor(readonly names: string[], private readonly variableOf: ReadonlyMap<string, string>) {}
  effective(): null {
    return null;
  }
  planKey(): string {
    return 'identity';
  }
  gradients(name: string, dW: tf.Tensor): tf.NamedTensorMap {
    return { [this.variableOf.get(name) as string]: dW };
  }
  dispose(): void {}
}

/**
 * Fine-tune float copies of the weights (the `full` method on storage grids): the layers see the
 * copies rounded onto the grid while the copies keep accumulating small steps.
 */
export class Shadow implements Parameterization {
  readonly names: string[];
  private readonly vars = new Map<string, tf.Variable>();
  constructor(tensors: TrainableTensor[]) {
    this.names = tensors.map((t) => t.name);
    for (const t of tensors) this.vars.set(t.name, tf.variable(tf.tensor(t.values, t.shape, 'float32'), true, trainingVariableName(`nd_full/${t.name}`)));
  }
  effective(name: string): tf.Tensor {
    return (this.vars.get(name) as tf.Variable).clone();
  }
  planKey(): string {
    return 'shadow';
  }
  gradients(name: string, dW: tf.Tensor): tf.NamedTensorMap {
    return { [(this.vars.get(name) as tf.Variable).name]: dW };
  }
  dispose(): void {
    for (const v of this.vars.values()) v.dispose();
  }
}
