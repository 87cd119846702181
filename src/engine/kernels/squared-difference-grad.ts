/**
 * The gradient of SquaredDifference with broadcasting. tfjs 4.22's own returns dy · 2(a − b) at
 * the broadcast output's shape for both inputs, without summing over the axes an input was
 * broadcast along, so backpropagation fails ("the gradient of input 'a' has shape [48, 48, 17],
 * which does not match the shape of the input [48, 48, 1]") as soon as the two inputs differ in
 * shape: MoveNet measures every keypoint's distance to a coordinate grid that way. This one sums
 * over those axes, as tfjs' Sub gradient does; with equal shapes it computes exactly the stock
 * gradient (same operations, same order). A gradient, not a kernel: for every backend.
 */
import * as tf from '@tensorflow/tfjs';
import type { GradConfig } from '@tensorflow/tfjs';

/** `g` (at the broadcast shape) summed back to `shape`. */
function reduceTo(g: tf.Tensor, shape: number[], outShape: number[]): tf.Tensor {
  const axes = tf.backend_util.getReductionAxes(shape, outShape);
  return tf.reshape(axes.length ? tf.sum(g, axes) : g, shape);
}

/** The SquaredDifference gradient (module doc). */
export function squaredDifferenceGradConfig(): GradConfig {
  return {
    kernelName: 'SquaredDifference',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
      const [a, b] = saved;
      const g = Array.isArray(dy) ? dy[0] : dy;
      const outShape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
      const two = tf.scalar(2);
      return {
        a: () => reduceTo(tf.mul(g, tf.mul(two, tf.sub(a, b))), a.shape, outShape),
        b: () => reduceTo(tf.mul(g, tf.mul(two, tf.sub(b, a))), b.shape, outShape),
      };
    },
  };
}
