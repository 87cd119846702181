/**
 * Training data for the trainers: inputs as one float32 tensor, labels as class indices, and
 * a seeded batch order so the same seed gives the same training run.
 */
import * as tf from '@tensorflow/tfjs';
import { DataError, UsageError } from '../core/errors.ts';
import { seededRandom } from '../core/random.ts';
import { frozenPass, type ForwardPlans } from '../engine/compiled/forward.ts';

export { seededRandom };

/** A labelled classification dataset held in memory. */
export interface LabelledData {
  /** Inputs, `[n, ...featureShape]`, float32. */
  x: tf.Tensor;
  /** Class index per example. */
  y: Int32Array;
  /**
   * Training data only, optional: 1 for an example replayed from earlier data (what the model
   * already learned), 0 for the update's own. When given, the distillation term keeps the base's
   * outputs on the replayed examples only (see `TrainDiffOptions.distill`).
   */
  replay?: Uint8Array;
}

/** Inputs with labels or without (teacher diffs need none: the teacher's outputs are the targets). */
export interface InputData {
  /** Inputs, `[n, ...featureShape]`, float32. */
  x: tf.Tensor;
  /** Class index per example, when known. */
  y?: Int32Array;
  /** See {@link LabelledData.replay}. */
  replay?: Uint8Array;
}

/** A permutation of 0..n-1 from `random` (Fisher-Yates). */
export function permutation(n: number, random: () => number): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}

/** Batches of one epoch in a seeded order. Each batch's tensors are disposed by the caller. */
export function* epochBatches(data: LabelledData, batchSize: number, random: () => number): Generator<{ x: tf.Tensor; y: tf.Tensor1D; size: number; idx: Int32Array }> {
  const n = data.y.length;
  const order = permutation(n, random);
  for (let start = 0; start < n; start += batchSize) {
    const idx = order.subarray(start, Math.min(n, start + batchSize));
    const idxT = tf.tensor1d(idx, 'int32');
    const x = tf.gather(data.x, idxT);
    idxT.dispose();
    const y = tf.tensor1d(Int32Array.from(idx, (i) => data.y[i]), 'int32');
    yield { x, y, size: idx.length, idx: Int32Array.from(idx) };
  }
}

/** Check inputs and labels agree with the model before training starts. */
export function checkData(data: LabelledData, inputShape: (number | null)[], numClasses: number, what: string): void {
  const n = data.x.shape[0];
  if (n !== data.y.length) throw new DataError(`${what}: ${n} inputs but ${data.y.length} labels; x and y must have the same first dimension`);
  if (data.replay && data.replay.length !== n) throw new DataError(`${what}: ${data.replay.length} replay marks for ${n} examples; give one mark per example (1 replayed, 0 the update's own)`);
  checkInputs(data.x.shape, inputShape, what);
  for (let i = 0; i < data.y.length; i++) {
    if (data.y[i] < 0 || data.y[i] >= numClasses) throw new DataError(`${what}: label ${data.y[i]} at example ${i} is outside the model's ${numClasses} classes`);
  }
}

/** Inputs of shape `xShape` (examples first) fit a model taking `inputShape`, and are not empty; else a DataError saying what to do. */
export function checkInputs(xShape: readonly number[], inputShape: readonly (number | null)[], what: string): void {
  if (xShape[0] === 0) throw new DataError(`${what}: the dataset is empty`);
  const feat = xShape.slice(1);
  const want = inputShape.slice(1);
  if (feat.length !== want.length || want.some((d, i) => d !== null && d !== feat[i])) {
    throw new DataError(`${what}: inputs are [${feat.join(', ')}] per example but the model takes [${want.map((d) => d ?? '?').join(', ')}]: reshape the data or pick the matching model`);
  }
}

/** Mean sparse categorical cross-entropy of `probs` (softmax outputs) against class indices. */
export function sparseCrossEntropy(probs: tf.Tensor, labels: tf.Tensor1D, fromLogits: boolean): tf.Scalar {
  return tf.tidy(() => {
    const numClasses = probs.shape[probs.shape.length - 1] as number;
    const oneHot = tf.oneHot(labels, numClasses);
    const logp = fromLogits ? tf.logSoftmax(probs) : tf.log(tf.clipByValue(probs, 1e-7, 1));
    return tf.neg(tf.mean(tf.sum(tf.mul(oneHot, logp), -1))) as tf.Scalar;
  });
}

/** What {@link evaluate} measures. */
export interface Evaluation {
  /** Fraction of examples predicted right. */
  accuracy: number;
  /** Predicted class per example. */
  predictions: Int32Array;
  /** Mean cross-entropy (nats). */
  loss: number;
  /** Share of the examples predicted as the most predicted class (1: everything is one class). */
  topClassShare: number;
}

/**
 * Accuracy, loss and per-example predictions of a model on `data`, `batchSize` examples at a time.
 * `predict` replaces `model.predict` (the model run from a frozen prefix's cached activations,
 * which `data.x` then holds).
 */
export function evaluate(model: tf.LayersModel, data: LabelledData, batchSize = 256, fromLogits = outputIsLogits(model), predict?: (x: tf.Tensor) => tf.Tensor): Evaluation {
  return evaluateWith(undefined, model, data, batchSize, fromLogits, predict);
}

/** {@link evaluate} through the model's compiled forward passes `forward` (src/engine/compiled/forward.ts; the eager passes' bits). */
export function evaluateWith(forward: ForwardPlans | undefined, model: tf.LayersModel, data: LabelledData, batchSize = 256, fromLogits = outputIsLogits(model), predict?: (x: tf.Tensor) => tf.Tensor): Evaluation {
  const n = data.y.length;
  const predictions = new Int32Array(n);
  let lossSum = 0;
  for (let start = 0; start < n; start += batchSize) {
    const end = Math.min(n, start + batchSize);
    const [pred, loss] = tf.tidy(() => {
      const x = data.x.slice(start, end - start);
      const run = (v: tf.Tensor) => (predict ? predict(v) : (model.predict(v) as tf.Tensor | tf.Tensor[]));
      const out = frozenPass(forward, predict ? null : model, x, run, (o) => (Array.isArray(o) ? o[0] : o), predict ? 'evaluate (given predict)' : 'evaluate');
      const labels = tf.tensor1d(data.y.subarray(start, end), 'int32');
      return [tf.argMax(out, -1), sparseCrossEntropy(out, labels, fromLogits)] as const;
    });
    predictions.set(pred.dataSync() as Int32Array, start);
    lossSum += (loss.dataSync()[0] as number) * (end - start);
    pred.dispose();
    loss.dispose();
  }
  let correct = 0;
  const counts = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    if (predictions[i] === data.y[i]) correct++;
    counts.set(predictions[i], (counts.get(predictions[i]) ?? 0) + 1);
  }
  return { accuracy: correct / n, predictions, loss: lossSum / n, topClassShare: Math.max(0, ...counts.values()) / Math.max(1, n) };
}

/** Does the model end in logits (no softmax on its last layer)? */
export function outputIsLogits(model: tf.LayersModel): boolean {
  const last = model.layers[model.layers.length - 1];
  return (last.getConfig() as { activation?: string }).activation !== 'softmax';
}

/** Rows `idx` of `data` as a new dataset (its own tensor: dispose it). */
export function pick(data: LabelledData, idx: Int32Array): LabelledData {
  const x = tf.tidy(() => tf.gather(data.x, tf.tensor1d(idx, 'int32')));
  const replay = data.replay;
  return { x, y: Int32Array.from(idx, (i) => data.y[i]), ...(replay ? { replay: Uint8Array.from(idx, (i) => replay[i]) } : {}) };
}

/**
 * A seeded, stratified split: `fraction` of each class's examples (rounded, at least one of any
 * class with two or more) go to the second part, the rest to the first, both in the original
 * order. The same data and seed give the same split.
 */
export function stratifiedSplit(y: Int32Array, fraction: number, seed: number): { rest: Int32Array; part: Int32Array } {
  const random = seededRandom(seed);
  const byClass = new Map<number, number[]>();
  for (let i = 0; i < y.length; i++) (byClass.get(y[i]) ?? byClass.set(y[i], []).get(y[i])!).push(i);
  const chosen = new Uint8Array(y.length);
  for (const cls of [...byClass.keys()].sort((a, b) => a - b)) {
    const idx = byClass.get(cls)!;
    const take = idx.length < 2 ? 0 : Math.min(idx.length - 1, Math.max(1, Math.round(fraction * idx.length)));
    const order = permutation(idx.length, random);
    for (let k = 0; k < take; k++) chosen[idx[order[k]]] = 1;
  }
  const part: number[] = [];
  const rest: number[] = [];
  for (let i = 0; i < y.length; i++) (chosen[i] ? part : rest).push(i);
  return { rest: Int32Array.from(rest), part: Int32Array.from(part) };
}

/**
 * Materialize a `tf.data.Dataset` of `{xs, ys}` elements (single examples or batches; `ys` as
 * class indices or one-hot) into {@link LabelledData} for the trainers. The dataset is read
 * once, in order; its tensors are disposed.
 */
export async function fromDataset(dataset: tf.data.Dataset<{ xs: tf.Tensor; ys: tf.Tensor }>): Promise<LabelledData> {
  const xs: tf.Tensor[] = [];
  const ys: number[] = [];
  await dataset.forEachAsync((el) => {
    const { xs: x, ys: y } = el as { xs?: tf.Tensor; ys?: tf.Tensor };
    if (!x || !y) throw new UsageError('dataset elements must be {xs, ys} tensors (use dataset.map to shape them)');
    // A batch is [n, ...features] with labels [n] or [n, classes]; otherwise one example with a
    // scalar or one-hot label.
    const batched = y.rank === 2 || (y.rank === 1 && x.rank >= 2 && x.shape[0] === y.shape[0]);
    const labels = tf.tidy(() => {
      if (!batched) return (y.rank === 0 ? y.reshape([1]) : tf.argMax(y, -1).reshape([1])).toInt();
      return y.rank === 2 ? tf.argMax(y, -1).toInt() : y.toInt();
    });
    ys.push(...(labels.dataSync() as Int32Array));
    labels.dispose();
    xs.push(batched ? x.clone() : x.expandDims(0));
    x.dispose();
    y.dispose();
  });
  if (!xs.length) throw new UsageError('the dataset is empty');
  const x = tf.concat(xs, 0);
  for (const t of xs) t.dispose();
  return { x, y: Int32Array.from(ys) };
}

/**
 * Below this many validation examples a warning says so: every choice (learning rate,
 * checkpoint, the refusal of a worse result) is made on them, and one example is more than 3% of
 * every score (3 points of an agreement).
 */
export const MIN_VALIDATION_EXAMPLES = 30;

/** Warn (through `warn`) when `count` validation examples are too few to choose on, saying how to give more. */
export function warnFewValidation(count: number, trainCount: number, given: boolean, warn: (message: string) => void): void {
  if (count >= MIN_VALIDATION_EXAMPLES) return;
  const how = given ? 'pass more validation inputs' : `pass --val DATA with a few hundred inputs from where the model runs, more --train data, or a larger --val-fraction (${count} of ${trainCount} held out now)`;
  warn(`only ${count} validation example(s): the learning rate, the checkpoint and the refusal of a result below the base are all decided on them, and at this size each example is ${(100 / count).toFixed(1)}% of every score (of an agreement or accuracy, that many points; of a mean output difference, that share of it); ${how}`);
}
