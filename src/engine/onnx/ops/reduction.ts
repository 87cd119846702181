/** Reductions (ReduceSum, ReduceMean, ReduceMax, ..., ArgMax, ArgMin). */
import * as tf from '@tensorflow/tfjs';
import { axesOf, axisOf, int, need, type OpArgs, type OpTable } from './op.ts';

/**
 * A reduction over the node's axes (an attribute, or input 1 from opset `inputSince`: 13 for
 * ReduceSum, 18 for the others); no axes means every axis unless `noop_with_empty_axes`.
 */
function reduce(inputSince: number, f: (x: tf.Tensor, axes: number[], keep: boolean) => tf.Tensor) {
  return (a: OpArgs) => {
    const x = need(a, 0);
    const keep = int(a, 'keepdims', 1) === 1;
    const axes = axesOf(a, inputSince, 1);
    if (!axes || axes.length === 0) {
      if (int(a, 'noop_with_empty_axes', 0) === 1) return [x];
      return [f(x, x.shape.map((_, i) => i), keep)];
    }
    return [f(x, axes.map((d) => axisOf(d, x.rank)), keep)];
  };
}

function argReduce(f: (x: tf.Tensor, axis: number) => tf.Tensor) {
  return (a: OpArgs) => {
    const x = need(a, 0);
    const axis = axisOf(int(a, 'axis', 0), x.rank);
    let idx: tf.Tensor;
    if (int(a, 'select_last_index', 0) === 1) idx = tf.sub(x.shape[axis] - 1, f(tf.reverse(x, axis), axis));
    else idx = f(x, axis);
    return [int(a, 'keepdims', 1) === 1 ? idx.expandDims(axis) : idx];
  };
}

/** Reduction operators. */
export const reduction: OpTable = {
  ReduceSum: reduce(13, (x, axes, keep) => tf.sum(x, axes, keep)),
  ReduceMean: reduce(18, (x, axes, keep) => tf.mean(x, axes, keep)),
  ReduceMax: reduce(18, (x, axes, keep) => tf.max(x, axes, keep)),
  ReduceMin: reduce(18, (x, axes, keep) => tf.min(x, axes, keep)),
  ReduceProd: reduce(18, (x, axes, keep) => tf.prod(x, axes, keep)),
  ReduceL1: reduce(18, (x, axes, keep) => tf.sum(tf.abs(x), axes, keep)),
  ReduceL2: reduce(18, (x, axes, keep) => tf.sqrt(tf.sum(tf.square(x), axes, keep))),
  ReduceSumSquare: reduce(18, (x, axes, keep) => tf.sum(tf.square(x), axes, keep)),
  ReduceLogSum: reduce(18, (x, axes, keep) => tf.log(tf.sum(x, axes, keep))),
  ReduceLogSumExp: reduce(18, (x, axes, keep) => tf.logSumExp(x, axes, keep)),
  ArgMax: argReduce((x, axis) => tf.argMax(x, axis)),
  ArgMin: argReduce((x, axis) => tf.argMin(x, axis)),
};
