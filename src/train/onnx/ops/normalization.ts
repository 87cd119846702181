/**
 * Normalizations in inference form (BatchNormalization with its stored statistics, as a model
 * is fine-tuned with BatchNorm frozen), LayerNormalization, InstanceNormalization, LRN,
 * MeanVarianceNormalization and LpNormalization.
 */
import * as tf from '@tensorflow/tfjs';
import { axisOf, float, int, ints, need, unsupported, type OpArgs, type OpTable } from './op.ts';

/** A per-channel vector shaped to broadcast against an NC... tensor of `rank`. */
const perChannel = (v: tf.Tensor, rank: number) => v.reshape([1, v.size, ...new Array(Math.max(0, rank - 2)).fill(1)]);

function batchNorm(a: OpArgs): tf.Tensor[] {
  if (int(a, 'training_mode', 0) === 1 || (a.opset < 9 && int(a, 'is_test', 0) === 0 && a.node.outputs.length > 1)) {
    throw unsupported(a, 'training mode (batch statistics and running-average outputs); a model is fine-tuned with its BatchNorm statistics frozen');
  }
  const x = need(a, 0);
  const [scale, bias, mean, variance] = [need(a, 1), need(a, 2), need(a, 3), need(a, 4)];
  const eps = float(a, 'epsilon', 1e-5);
  const r = x.rank;
  const inv = tf.rsqrt(tf.add(perChannel(variance, r), eps));
  return [tf.add(tf.mul(tf.mul(tf.sub(x, perChannel(mean, r)), inv), perChannel(scale, r)), perChannel(bias, r))];
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
