/** Indexing operators: Gather, GatherElements, GatherND, Slice, OneHot, TopK. */
import * as tf from '@tensorflow/tfjs';
import { axisOf, int, ints, need, unsupported, values, type OpArgs, type OpTable } from './op.ts';

/** Indices with negative ones counted from the end of an axis of length `n`. */
function wrap(indices: tf.Tensor, n: number): tf.Tensor {
  const i = indices.toInt();
  return tf.where(tf.less(i, 0), tf.add(i, tf.scalar(n, 'int32')), i);
}

function gather(a: OpArgs): tf.Tensor[] {
  const x = need(a, 0);
  const axis = axisOf(int(a, 'axis', 0), x.rank);
  const idx = need(a, 1);
  a.bound([...x.shape.slice(0, axis), ...idx.shape, ...x.shape.slice(axis + 1)]);
  const flat = wrap(idx.reshape([idx.size]), x.shape[axis]);
  const out = tf.gather(x, flat, axis);
  return [out.reshape([...x.shape.slice(0, axis), ...idx.shape, ...x.shape.slice(axis + 1)])];
}

function gatherElements(a: OpArgs): tf.Tensor[] {
  const x = need(a, 0);
  const axis = axisOf(int(a, 'axis', 0), x.rank);
  const idx = wrap(need(a, 1), x.shape[axis]);
  // Flat position of every output element: its own coordinates, with the axis one replaced.
  const strides = x.shape.map((_, i) => x.shape.slice(i + 1).reduce((p, d) => p * d, 1));
  let flat = tf.mul(idx, tf.scalar(strides[axis], 'int32'));
  for (let d = 0; d < x.rank; d++) {
    if (d === axis) continue;
    const shape = idx.shape.map((_, i) => (i === d ? idx.shape[d] : 1));
    const coord = tf.range(0, idx.shape[d], 1, 'int32').reshape(shape);
    flat = tf.add(flat, tf.mul(coord, tf.scalar(strides[d], 'int32')));
  }
  return [tf.gather(x.reshape([x.size]), flat.reshape([flat.size])).reshape(idx.shape)];
}

/**
 * GatherND: each index tuple (the last axis of `indices`, k long) picks a slice of `data`; with
 * `batch_dims` b, the first b axes of both are paired, so the batch index is prepended to each
 * tuple of a flattened batch. Negative indices count from the end of their axis.
 */
function gatherND(a: OpArgs): tf.Tensor[] {
  const data = need(a, 0);
  const indices = need(a, 1).toInt();
  const b = int(a, 'batch_dims', 0);
  const k = indices.shape[indices.rank - 1];
  if (b < 0 || b >= Math.min(data.rank, indices.rank) || b + k > data.rank) {
    throw unsupported(a, `batch_dims ${b} with data [${data.shape.join(', ')}] and indices [${indices.shape.join(', ')}] (ONNX needs batch_dims < both ranks and batch_dims + indices' last dimension <= data's rank)`);
  }
  const dims = tf.tensor1d(data.shape.slice(b, b + k), 'int32');
  const wrapped = tf.where(tf.less(indices, 0), tf.add(indices, dims), indices);
  const batch = data.shape.slice(0, b).reduce((p, d) => p * d, 1);
  const tuples = indices.shape.slice(b, -1).reduce((p, d) => p * d, 1);
  const flat = wrapped.reshape([batch, tuples, k]);
  const batchIndex = tf.tile(tf.range(0, batch, 1, 'int32').reshape([batch, 1, 1]), [1, tuples, 1]);
  const picked = tf.gatherND(data.reshape([batch, ...data.shape.slice(b)]), tf.concat([batchIndex, flat], 2));
  return [picked.reshape([...indices.shape.slice(0, -1), ...data.shape.slice(b + k)])];
}

/** Slice: start, end and step of every sliced axis, clamped as numpy does (negative steps too). */
function slice(a: OpArgs): tf.Tensor[] {
  const x = need(a, 0);
  let starts: number[];
  let ends: number[];
  let axes: number[] | undefined;
  let steps: number[] | undefined;
  if (a.opset < 10) {
    starts = ints(a, 'starts') ?? [];
    ends = ints(a, 'ends') ?? [];
    axes = ints(a, 'axes');
  } else {
    starts = values(need(a, 1));
    ends = values(need(a, 2));
    axes = a.inputs[3] ? values(a.inputs[3]) : undefined;
    steps = a.inputs[4] ? values(a.inputs[4]) : undefined;
  }
  axes ??= starts.map((_, i) => i);
  const begin = x.shape.map(() => 0);
  const end = x.shape.slice();
  const stride = x.shape.map(() => 1);
  axes.forEach((ax, i) => {
    const axis = axisOf(ax, x.rank);
    const n = x.shape[axis];
    const step = steps?.[i] ?? 1;
    if (step === 0) throw unsupported(a, 'a Slice step of 0');
    let s = starts[i] < 0 ? starts[i] + n : starts[i];
    let e = ends[i] < 0 ? ends[i] + n : ends[i];
    if (step > 0) {
      s = Math.max(0, Math.min(n, s));
      e = Math.max(0, Math.min(n, e));
    } else {
      s = Math.max(-1, Math.min(n - 1, s));
      e = Math.max(-1, Math.min(n - 1, e));
    }
    begin[axis] = s;
    end[axis] = e;
    stride[axis] = step;
  });
  let y = x;
  for (let axis = 0; axis < x.rank; axis++) {
    const [s, e, step] = [begin[axis], end[axis], stride[axis]];
    if (step === 1 && s === 0 && e === x.shape[axis]) continue;
    const idx: number[] = [];
    for (let i = s; step > 0 ? i < e : i > e; i += step) idx.push(i);
    if (step === 1) {
      const b = y.shape.map(() => 0);
      const size = y.shape.slice();
      b[axis] = s;
      size[axis] = Math.max(0, e - s);
      y = tf.slice(y, b, size);
    } else if (idx.length === 0) {
      const shape = y.shape.slice();
      shape[axis] = 0;
      y = tf.zeros(shape, y.dtype);
    } else y = tf.gather(y, tf.tensor1d(idx, 'int32'), axis);
  }
  return [y];
}

function oneHot(a: OpArgs): tf.Tensor[] {
  const idx = need(a, 0);
  const depth = Number(need(a, 1).dataSync()[0]);
  a.bound([...idx.shape, depth]);
  const [off, on] = values(need(a, 2));
  const axis = int(a, 'axis', -1);
  const hot = tf.oneHot(wrap(idx, depth).reshape([idx.size]), depth).reshape([...idx.shape, depth]);
  const rank = idx.rank + 1;
  const at = axisOf(axis, rank);
  const perm = Array.from({ length: rank }, (_, i) => (i < at ? i : i === at ? rank - 1 : i - 1));
  const placed = tf.transpose(hot, perm);
  const out = tf.add(tf.mul(placed.toFloat(), on - off), off);
  return [need(a, 2).dtype === 'int32' ? out.toInt() : out];
}

function topK(a: OpArgs): tf.Tensor[] {
  const x = need(a, 0);
  const k = a.opset >= 10 ? Number(need(a, 1).dataSync()[0]) : int(a, 'k', 1);
  const axis = axisOf(int(a, 'axis', -1), x.rank);
  const largest = int(a, 'largest', 1) === 1;
  const perm = x.shape.map((_, i) => i);
  perm[axis] = x.rank - 1;
  perm[x.rank - 1] = axis;
  const moved = tf.transpose(x, perm);
  const r = tf.topk(largest ? moved : tf.neg(moved), k, true);
  const vals = largest ? r.values : tf.neg(r.values);
  return [tf.transpose(vals, perm), tf.transpose(r.indices, perm)];
}

/** Indexing operators. */
export const indexing: OpTable = {
  Gather: gather,
  GatherElements: gatherElements,
  GatherND: gatherND,
  Slice: slice,
  OneHot: oneHot,
  TopK: topK,
};
