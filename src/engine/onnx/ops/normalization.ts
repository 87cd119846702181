/**
 * Normalizations: BatchNormalization (with its stored statistics, as a model is fine-tuned with
 * BatchNorm frozen; with the batch's own in training mode, when the model asks for it),
 * LayerNormalization, InstanceNormalization, LRN, MeanVarianceNormalization and LpNormalization.
 */
import * as tf from '@tensorflow/tfjs';
import { axisOf, float, int, ints, need, unsupported, type OpArgs, type OpTable } from './op.ts';

/** A per-channel vector shaped to broadcast against an NC... tensor of `rank` (per-activation statistics as they are). */
const perChannel = (v: tf.Tensor, rank: number) => (v.rank > 1 ? v.expandDims(0) : v.reshape([1, v.size, ...new Array(Math.max(0, rank - 2)).fill(1)]));

/**
 * BatchNormalization. In inference form it normalizes by the stored statistics. In training mode
 * (opset 14 on: `training_mode` 1; before: the running-statistics outputs asked for, and `is_test`
 * 0 before opset 9) it normalizes by the batch's own mean and (population) variance, over every
 * axis but the channels (only the batch axis with opset 7-8's `spatial` 0), differentiably, and
 * returns the running statistics updated with `momentum`: stored × momentum + batch × (1 − momentum).
 */
function batchNorm(a: OpArgs): tf.Tensor[] {
  const x = need(a, 0);
  const [scale, bias, mean, variance] = [need(a, 1), need(a, 2), need(a, 3), need(a, 4)];
  const eps = float(a, 'epsilon', 1e-5);
  const r = x.rank;
  const outputs = a.node.outputs;
  const training = a.opset >= 14 ? int(a, 'training_mode', 0) === 1 : outputs.slice(1).some(Boolean) && (a.opset >= 9 || int(a, 'is_test', 0) === 0);
  const normalize = (m: tf.Tensor, v: tf.Tensor) =>
    tf.add(tf.mul(tf.mul(tf.sub(x, m), tf.rsqrt(tf.add(v, eps))), perChannel(scale, r)), perChannel(bias, r));
  if (!training) return [normalize(perChannel(mean, r), perChannel(variance, r))];
  if (a.opset < 14 && outputs[4]) {
    throw unsupported(a, 'the saved_var output of training mode before opset 14 (runtimes disagree on it: a variance or an inverse standard deviation)');
  }
  const spatial = !(a.opset < 9 && int(a, 'spatial', 1) === 0);
  const axes = spatial ? [0, ...Array.from({ length: r - 2 }, (_, i) => i + 2)] : [0];
  const batch = tf.moments(x, axes, true);
  const momentum = float(a, 'momentum', 0.9);
  const running = (stored: tf.Tensor, current: tf.Tensor) => tf.add(tf.mul(stored, momentum), tf.mul(current.reshape(stored.shape), 1 - momentum));
  const y = normalize(batch.mean, batch.variance);
  return [y, running(mean, batch.mean), running(variance, batch.variance), batch.mean.reshape(mean.shape)];
}

function layerNorm(a: OpArgs): tf.Tensor[] {
  const x = need(a, 0);
  const axis = axisOf(int(a, 'axis', -1), x.rank);
  const eps = float(a, 'epsilon', 1e-5);
  const axes = Array.from({ length: x.rank - axis }, (_, i) => axis + i);
  const mean = tf.mean(x, axes, true);
  const centered = tf.sub(x, mean);
  const invStd = tf.rsqrt(tf.add(tf.mean(tf.square(centered), axes, true), eps));
  let y = tf.mul(centered, invStd);
  y = tf.mul(y, need(a, 1));
  if (a.inputs[2]) y = tf.add(y, a.inputs[2]);
  return [y, mean, invStd];
}

function instanceNorm(a: OpArgs): tf.Tensor[] {
  const x = need(a, 0);
  const eps = float(a, 'epsilon', 1e-5);
  const axes = Array.from({ length: x.rank - 2 }, (_, i) => i + 2);
  const { mean, variance } = tf.moments(x, axes, true);
  const y = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps)));
  return [tf.add(tf.mul(y, perChannel(need(a, 1), x.rank)), perChannel(need(a, 2), x.rank))];
}

function lrn(a: OpArgs): tf.Tensor[] {
  const x = need(a, 0);
  const size = int(a, 'size', 1);
  if (x.rank !== 4 || size % 2 === 0) throw unsupported(a, `LRN over a rank-${x.rank} input with size ${size} (implemented: 4-D, odd size)`);
  const nhwc = tf.transpose(x, [0, 2, 3, 1]) as tf.Tensor4D;
  const y = tf.localResponseNormalization(nhwc, (size - 1) / 2, float(a, 'bias', 1), float(a, 'alpha', 1e-4) / size, float(a, 'beta', 0.75));
  return [tf.transpose(y, [0, 3, 1, 2])];
}

function meanVarianceNorm(a: OpArgs): tf.Tensor[] {
  const x = need(a, 0);
  const axes = (ints(a, 'axes') ?? [0, 2, 3]).map((d) => axisOf(d, x.rank));
  const { mean, variance } = tf.moments(x, axes, true);
  return [tf.div(tf.sub(x, mean), tf.add(tf.sqrt(variance), 1e-9))];
}

function lpNorm(a: OpArgs): tf.Tensor[] {
  const x = need(a, 0);
  const axis = axisOf(int(a, 'axis', -1), x.rank);
  const p = int(a, 'p', 2);
  const norm = p === 1 ? tf.sum(tf.abs(x), axis, true) : tf.sqrt(tf.sum(tf.square(x), axis, true));
  return [tf.div(x, norm)];
}

/** Normalization operators. */
export const normalization: OpTable = {
  BatchNormalization: batchNorm,
  LayerNormalization: layerNorm,
  InstanceNormalization: instanceNorm,
  LRN: lrn,
  MeanVarianceNormalization: meanVarianceNorm,
  LpNormalization: lpNorm,
};
