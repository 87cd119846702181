/**
 * ScatterND, ScatterElements and the old Scatter: a copy of `data` with `updates` written where
 * `indices` point, or combined with what is there (`reduction` add, mul, and from opset 18 max,
 * min). Both operators come down to rows: `data` as [rows, slice], each update a row of `updates`
 * aimed at one row of `data` (a whole slice for ScatterND, one element for ScatterElements). The
 * targets are read from the indices when the graph runs (negative ones count from the end); the
 * writes are tensor ops, so the output is differentiable in `data` and `updates`:
 * add is one segment sum; the others apply the updates in layers (the first update of each row,
 * then the second, ...), as ONNX's reference applies them one after another, so with repeated
 * indices and no reduction the last update wins.
 */
import * as tf from '@tensorflow/tfjs';
import { axisOf, int, need, str, unsupported, values, type OpArgs, type OpTable } from './op.ts';

type Reduction = 'none' | 'add' | 'mul' | 'max' | 'min';

function reductionOf(a: OpArgs): Reduction {
  const r = str(a, 'reduction', 'none');
  const allowed = a.opset >= 18 ? ['none', 'add', 'mul', 'max', 'min'] : ['none', 'add', 'mul'];
  if (!allowed.includes(r)) throw unsupported(a, `reduction ${JSON.stringify(r)} at opset ${a.opset} (ONNX defines ${allowed.join(', ')})`);
  return r as Reduction;
}

/** `data2d` [rows, slice] with row `targets[u]` combined with `updates2d` row u, for every u. */
function scatterRows(data2d: tf.Tensor, updates2d: tf.Tensor, targets: Int32Array, reduction: Reduction): tf.Tensor {
  const rows = data2d.shape[0] as number;
  const updates = updates2d.dtype === data2d.dtype ? updates2d : updates2d.cast(data2d.dtype);
  if (reduction === 'add') return tf.add(data2d, tf.unsortedSegmentSum(updates, tf.tensor1d(targets, 'int32'), rows));
  // Layer k holds, for every row, its k-th update (-1: none).
  const layers: Int32Array[] = [];
  const seen = new Int32Array(rows);
  targets.forEach((row, u) => {
    const k = seen[row]++;
    (layers[k] ??= new Int32Array(rows).fill(-1))[row] = u;
  });
  let out = data2d;
  for (const layer of layers) {
    const mask = tf.tensor2d(Uint8Array.from(layer, (u) => (u >= 0 ? 1 : 0)), [rows, 1], 'bool');
    const picked = tf.gather(updates, tf.tensor1d(Int32Array.from(layer, (u) => Math.max(0, u)), 'int32'));
    const combined = reduction === 'none' ? picked : reduction === 'mul' ? tf.mul(out, picked) : reduction === 'max' ? tf.maximum(out, picked) : tf.minimum(out, picked);
    out = tf.where(mask, combined, out);
  }
  return out;
}

/** An index into an axis of length `n`, negative ones counted from the end (the executor names the node of an error). */
function checkedIndex(i: number, n: number): number {
  const j = i < 0 ? i + n : i;
  if (j < 0 || j >= n) throw new Error(`index ${i} is outside an axis of length ${n} (ONNX requires indices in [-${n}, ${n - 1}])`);
  return j;
}

function scatterND(a: OpArgs): tf.Tensor[] {
  const data = need(a, 0);
  const indices = need(a, 1);
  const updates = need(a, 2);
  const k = indices.shape[indices.rank - 1] as number;
  if (indices.rank < 1 || k > data.rank) throw new Error(`index tuples of ${k} for rank-${data.rank} data (ONNX requires at most the rank)`);
  const sliceShape = data.shape.slice(k);
  const sliceSize = sliceShape.reduce((p, d) => p * d, 1);
  const rows = data.shape.slice(0, k).reduce((p, d) => p * d, 1);
  const count = indices.shape.slice(0, -1).reduce((p, d) => p * d, 1);
  const wantShape = [...indices.shape.slice(0, -1), ...sliceShape];
  if (updates.rank !== wantShape.length || updates.shape.some((d, i) => d !== wantShape[i])) {
    throw new Error(`updates of shape [${updates.shape.join(', ')}] (ONNX requires [${wantShape.join(', ')}] for these data and indices)`);
  }
  const idx = values(indices);
  const targets = new Int32Array(count);
  for (let u = 0; u < count; u++) {
    let row = 0;
    for (let j = 0; j < k; j++) row = row * data.shape[j] + checkedIndex(idx[u * k + j], data.shape[j]);
    targets[u] = row;
  }
  const out = scatterRows(data.reshape([rows, sliceSize]), updates.reshape([count, sliceSize]), targets, reductionOf(a));
  return [out.reshape(data.shape)];
}

function scatterElements(a: OpArgs): tf.Tensor[] {
  const data = need(a, 0);
  const indices = need(a, 1);
  const updates = need(a, 2);
  const axis = axisOf(int(a, 'axis', 0), data.rank);
  if (indices.rank !== data.rank || updates.shape.some((d, i) => d !== indices.shape[i]) || updates.rank !== indices.rank) {
    throw new Error(`data [${data.shape.join(', ')}], indices [${indices.shape.join(', ')}] and updates [${updates.shape.join(', ')}] (ONNX requires one rank, and updates shaped as indices)`);
  }
  const idx = values(indices);
  const strides = data.shape.map((_, i) => data.shape.slice(i + 1).reduce((p, d) => p * d, 1));
  const targets = new Int32Array(idx.length);
  const at = new Array<number>(indices.rank).fill(0);
  for (let u = 0; u < idx.length; u++) {
    let flat = 0;
    for (let d = 0; d < indices.rank; d++) {
      const c = d === axis ? checkedIndex(idx[u], data.shape[d]) : at[d];
      if (c >= data.shape[d]) throw new Error(`indices [${indices.shape.join(', ')}] larger than data [${data.shape.join(', ')}] on axis ${d}`);
      flat += c * strides[d];
    }
    targets[u] = flat;
    // The next position of indices, in row-major order.
    for (let d = indices.rank - 1; d >= 0 && ++at[d] === indices.shape[d]; d--) at[d] = 0;
  }
  const reduction = a.node.opType === 'Scatter' ? 'none' : reductionOf(a);
  const out = scatterRows(data.reshape([data.size, 1]), updates.reshape([updates.size, 1]), targets, reduction);
  return [out.reshape(data.shape)];
}

/** Scatter operators. */
export const scatter: OpTable = {
  ScatterND: scatterND,
  ScatterElements: scatterElements,
  Scatter: scatterElements,
};
