/**
 * The gradient of FusedBatchNorm without Tile. tfjs' own gradient broadcasts 1/sqrt(variance + ε)
 * to the whole input with a Tile before multiplying it into dy: a copy the size of every batch-norm
 * input, once per layer and step. In a MobileNetV2 training step at batch 4 on wasm the Tiles took
 * about a quarter of the kernel time (bench/profile-train-step.ts), more than any convolution.
 * Multiplying with broadcasting gives each element the very same product (a tiled copy of a
 * value is that value), so the gradients are bit for bit those of the stock gradient, only
 * without the copy.
 *
 * y = (x − mean) · r · scale + offset with r = 1/sqrt(variance + ε), per channel (the last axis, or
 * elementwise when the statistics have the input's rank):
 *   dy/dx = dy · r · scale;  dy/dscale = Σ dy · (x − mean) · r;  dy/doffset = Σ dy;
 *   dy/dmean = Σ −r · dy · scale;  dy/dvariance = Σ −½ r³ · (x − mean) · dy · scale,
 * the sums over every axis the statistics were broadcast along. A gradient, not a kernel: it is
 * registered for every backend (the values are unchanged on all of them).
 */
import * as tf from '@tensorflow/tfjs';
import type { GradConfig, NamedAttrMap } from '@tensorflow/tfjs';

function batchNormGrad(dy: tf.Tensor, saved: tf.Tensor[], attrs: NamedAttrMap): Record<string, () => tf.Tensor> {
  const { varianceEpsilon } = attrs as unknown as { varianceEpsilon: number };
  const [x, mean, variance, scale] = saved;
  const scaleValue = scale ?? tf.scalar(1);
  const axes = tf.backend_util.getReductionAxes(mean.shape, x.shape);
  const reduce = (t: tf.Tensor) => (mean.rank === 1 ? tf.sum(t, axes) : t);
  const r = tf.rsqrt(tf.add(variance, tf.scalar(varianceEpsilon)));
  const xMinusMean = () => tf.sub(x, mean);
  const dyTimesScale = () => tf.mul(dy, scaleValue);
  return {
    // Same operation order as the stock gradient, (dy · r) · scale, so the same rounding.
    x: () => tf.reshape(tf.mul(tf.mul(dy, r), scaleValue), x.shape),
    mean: () => tf.reshape(reduce(tf.mul(tf.mul(r, tf.scalar(-1)), dyTimesScale())), mean.shape),
    variance: () => {
      const minusHalfRCube = tf.mul(tf.mul(tf.mul(r, r), r), tf.scalar(-0.5));
      return tf.reshape(reduce(tf.mul(tf.mul(minusHalfRCube, xMinusMean()), dyTimesScale())), mean.shape);
    },
    scale: () => tf.reshape(reduce(tf.mul(dy, tf.mul(xMinusMean(), r))), mean.shape),
    offset: () => tf.reshape(reduce(dy), mean.shape),
  };
}

/** The FusedBatchNorm gradient above (replaces tfjs' own, for every backend). */
export function batchNormGradConfig(): GradConfig {
  return {
    kernelName: 'FusedBatchNorm',
    inputsToSave: ['x', 'mean', 'variance', 'scale'],
    gradFunc: (dy, saved, attrs) => batchNormGrad(dy as tf.Tensor, saved, attrs),
  };
}
