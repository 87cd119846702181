/**
 * The gradient of GatherNd, which tfjs 4.22 does not register: without it a graph model that
 * gathers from a weight-dependent tensor (MoveNet decodes its keypoints in the graph: the offsets
 * and scores at each heatmap's argmax, read with GatherNd) cannot be trained at all.
 *
 * y = gather_nd(params, indices) reads slices of params at the positions indices names, so
 * dy/dparams = scatter_nd(indices, dy, shape(params)): each slice of dy is added at the position
 * it was read from, duplicates summed (tfjs' ScatterNd sums them, as TensorFlow's GatherNd
 * gradient does). indices are integers: a zero gradient (float32, as tfjs requires). A gradient, not a kernel: registered
 * for every backend, and only when tfjs has none of its own.
 */
import * as tf from '@tensorflow/tfjs';
import type { GradConfig } from '@tensorflow/tfjs';

/** The GatherNd gradient (module doc). */
export function gatherNdGradConfig(): GradConfig {
  return {
    kernelName: 'GatherNd',
    inputsToSave: ['params', 'indices'],
    gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
      const [params, indices] = saved;
      const grad = Array.isArray(dy) ? dy[0] : dy;
      return {
        params: () => tf.scatterND(indices, grad, params.shape),
        // tfjs wants a float32 gradient for every input a weight reaches, integer ones too.
        indices: () => tf.zeros(indices.shape, 'float32'),
      };
    },
  };
}
