/**
 * The gradient of one shard of a batch: the piece of a training step that data-parallel training
 * runs on every thread (src/train/parallel/pool.ts). The parent thread and each worker call this
 * same function on their own backend, so a shard's gradient does not depend on which thread
 * computed it.
 *
 * Every loss term of the training loop is a mean over the batch, so the batch's gradient is the
 * sum over shards of (shard size / batch size) × the shard's mean-loss gradient: each shard's loss
 * is scaled by that fraction here and the caller sums the shards in a fixed order.
 */
import * as tf from '@tensorflow/tfjs';
import { sparseCrossEntropy } from '../data.ts';
import { keepLoss, type Teacher } from '../keep-loss.ts';
import { teacherTerm, type TeacherTarget } from '../teacher.ts';
import { forwardFromCut } from '../prefix-cache.ts';
import { copyOfValues } from './heap.ts';

/** The loss of the run, the same for every shard (plain data: it crosses to the workers). */
export interface ShardLossSpec {
  /** Whether the model outputs logits. */
  fromLogits: boolean;
  /** Distillation toward the base's outputs (see {@link Teacher}); its rows come with each shard. */
  keep?: { weight: number; temperature: number };
  /** Teacher diffs' target (see `LoopOptions.target`); its rows come with each shard. */
  target?: TeacherTarget;
  /**
   * The examples are this layer's activations, not the model's inputs: the run caches a frozen
   * prefix (src/train/prefix-cache.ts) and the shard runs the model from there.
   */
  inputsAt?: string;
}

/** The examples of one shard, as plain arrays (row-major). */
export interface ShardExamples {
  x: Float32Array;
  /** Shape of x, the first dimension being the shard's example count. */
  xShape: number[];
  y: Int32Array;
  /** The base's rows and right-flags of these examples when the keep term is on. */
  keepRows?: { outputs: Float32Array; right: Uint8Array };
  /** The teacher's rows of these examples for teacher diffs. */
  targetRows?: Float32Array;
}

/** What one shard gives back: dL/dW per target (in the order asked), its scaled loss and hits. */
export interface ShardResult {
  /** Empty for a target the loss does not depend on (the loop then leaves it to its optimizer untouched). */
  grads: Float32Array[];
  /** The shard's mean loss × its fraction of the batch. */
  loss: number;
  /** Examples whose top output equals the label. */
  hits: number;
}

/**
 * Forward and backward pass of `model` over one shard, with `variables` (the step's weights
 * already assigned) as the parameters. `fraction` is the shard's share of the batch.
 */
export function shardGradients(model: tf.LayersModel, variables: tf.Variable[], shard: ShardExamples, spec: ShardLossSpec, fraction: number): ShardResult {
  let result: ShardResult | undefined;
  // The result leaves tf.tidy through a closure: returned, its arrays would be walked value by value.
  tf.tidy(() => {
    const size = shard.y.length;
    const x = tf.tensor(shard.x, shard.xShape, 'float32');
    const y = tf.tensor1d(shard.y, 'int32');
    let logits: tf.Tensor | null = null;
    const { value, grads } = tf.variableGrads(() => {
      const applied = spec.inputsAt ? forwardFromCut(model, spec.inputsAt, x) : (model.apply(x, { training: false }) as tf.Tensor | tf.Tensor[]);
      const outs = Array.isArray(applied) ? applied : [applied];
      const out = outs[0];
      logits = tf.keep(out);
      let loss: tf.Scalar;
      if (spec.target) {
        const term = teacherTerm(outs, tf.tensor2d(shard.targetRows as Float32Array, [size, spec.target.width]), spec.target);
        const lw = spec.target.labelWeight;
        loss = lw > 0 ? (tf.add(term, tf.mul(sparseCrossEntropy(out, y, spec.fromLogits), lw)) as tf.Scalar) : term;
      } else {
        loss = sparseCrossEntropy(out, y, spec.fromLogits);
        if (spec.keep && shard.keepRows) {
          const teacher: Teacher = { outputs: shard.keepRows.outputs, right: shard.keepRows.right, weight: spec.keep.weight, temperature: spec.keep.temperature };
          loss = tf.add(loss, keepLoss(out, Int32Array.from({ length: size }, (_, i) => i), teacher, spec.fromLogits)) as tf.Scalar;
        }
      }
      return tf.mul(loss, fraction) as tf.Scalar;
    }, variables);
    const hits = tf.sum(tf.cast(tf.equal(tf.argMax(logits as unknown as tf.Tensor, -1), y), 'int32')).dataSync()[0];
    (logits as unknown as tf.Tensor).dispose();
    result = {
      grads: variables.map((v) => {
        const g = grads[v.name];
        return g ? copyOfValues(g) : new Float32Array(0);
      }),
      loss: value.dataSync()[0],
      hits,
    };
  });
  return result as ShardResult;
}
