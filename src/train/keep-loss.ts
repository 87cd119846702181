/**
 * The distillation term that keeps the base model's behaviour where it was right (see
 * {@link Teacher}), used by the training loop (src/train/loop.ts) and by each thread's shard of a
 * step (src/train/parallel/shard-step.ts).
 */
import * as tf from '@tensorflow/tfjs';

/**
 * The base model's outputs on the training examples, for a distillation term that keeps its
 * behaviour where it was right (learning without forgetting, Li & Hoiem 2016, here with the
 * replayed examples a user trains on): per example, the base's class probabilities and whether
 * it predicted the label. The loss adds `weight` · T² · KL(base_T ‖ model_T) averaged over the
 * batch, counting only the examples the base got right (on examples of a new class the base
 * cannot be right, so they learn from their labels alone).
 */
export interface Teacher {
  /**
   * examples x classes, row-major: the base's class probabilities for a model that ends in a
   * softmax, its log-probabilities (log-softmax of the logits) for one that outputs logits. A
   * logit model's teacher is kept in log space so that no floor flattens a confident base's
   * distribution: the term is exactly 0 at the base's weights either way.
   */
  outputs: Float32Array;
  /** 1 where the base predicted the example's label. */
  right: Uint8Array;
  weight: number;
  /** Softens both distributions (T = 2 is usual); the T² factor keeps the gradient's scale. */
  temperature: number;
}

/** The teacher's rows and the kept flags of examples `idx` (what {@link keepLossOf} takes). */
export function keepRows(idx: Int32Array, t: Teacher, classes: number): { rows: tf.Tensor2D; keep: tf.Tensor1D } {
  const size = idx.length;
  const rows = new Float32Array(size * classes);
  const keep = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    rows.set(t.outputs.subarray(idx[i] * classes, (idx[i] + 1) * classes), i * classes);
    keep[i] = t.right[idx[i]];
  }
  return { rows: tf.tensor2d(rows, [size, classes]), keep: tf.tensor1d(keep) };
}

/** The distillation term of a batch whose examples are rows `idx` of the teacher's data. */
export function keepLoss(out: tf.Tensor, idx: Int32Array, t: Teacher, fromLogits: boolean): tf.Scalar {
  const { rows, keep } = keepRows(idx, t, out.shape[out.shape.length - 1] as number);
  return keepLossOf(out, rows, keep, t, fromLogits);
}

/** The distillation term from the batch's teacher rows and kept flags ({@link keepRows}). */
export function keepLossOf(out: tf.Tensor, rows: tf.Tensor, keep: tf.Tensor, t: Teacher, fromLogits: boolean): tf.Scalar {
  const size = rows.shape[0] as number;
  const T = t.temperature;
  // The same transform on both sides (the softmax model's probabilities floored alike), so the
  // term and its gradient vanish where the model still computes the base's outputs.
  const logp = fromLogits ? tf.logSoftmax(out) : tf.log(tf.clipByValue(out, 1e-7, 1));
  const logq = tf.logSoftmax(tf.div(logp, T));
  const teacherLog = fromLogits ? rows : tf.log(tf.clipByValue(rows, 1e-7, 1));
  const target = tf.softmax(tf.div(teacherLog, T));
  const kl = tf.sum(tf.mul(target, tf.sub(tf.log(tf.clipByValue(target, 1e-12, 1)), logq)), -1);
  return tf.mul(tf.div(tf.sum(tf.mul(kl, keep)), size), t.weight * T * T) as tf.Scalar;
}
