/**
 * Shape and layout operators (Reshape, Transpose, Concat, Squeeze, Unsqueeze, Shape, Expand,
 * Pad, Split, Cast, ...) and the pass-through ones of inference (Identity, Dropout). Shapes,
 * axes and pads given as tensors are read when the graph runs.
 */
import * as tf from '@tensorflow/tfjs';
import { fromHalfBits, toHalfBits } from '../../../core/float16.ts';
import { axesOf, axisOf, broadcastShapes, float, int, ints, need, str, tensorOf, tfDtype, unsupported, values, type OpArgs, type OpTable } from './op.ts';

function reshape(a: OpArgs): tf.Tensor[] {
  const x = need(a, 0);
  const shape = a.opset >= 5 ? values(need(a, 1)) : (ints(a, 'shape') ?? []);
  const allowZero = int(a, 'allowzero', 0) === 1;
  const out = shape.map((d, i) => (d === 0 && !allowZero ? x.shape[i] : d));
  return [x.reshape(a.bound(out, true))];
}

function flatten(a: OpArgs): tf.Tensor[] {
  const x = need(a, 0);
  const axis = axisOf(int(a, 'axis', 1), x.rank);
  const rows = x.shape.slice(0, axis).reduce((p, d) => p * d, 1);
  const cols = x.shape.slice(axis).reduce((p, d) => p * d, 1);
  return [x.reshape([rows, cols])];
}

function squeeze(a: OpArgs): tf.Tensor[] {
  const x = need(a, 0);
  const axes = axesOf(a, 13, 1);
  return [axes && axes.length ? x.squeeze(axes.map((d) => axisOf(d, x.rank))) : x.squeeze()];
}

function unsqueeze(a: OpArgs): tf.Tensor[] {
  const x = need(a, 0);
  const axes = axesOf(a, 13, 1) ?? [];
  const rank = x.rank + axes.length;
  const at = new Set(axes.map((d) => axisOf(d, rank)));
  const shape: number[] = [];
  let k = 0;
  for (let i = 0; i < rank; i++) shape.push(at.has(i) ? 1 : x.shape[k++]);
  return [x.reshape(shape)];
}

function shapeOf(a: OpArgs): tf.Tensor[] {
  const x = need(a, 0);
  const r = x.rank;
  const clampAxis = (v: number) => Math.max(0, Math.min(r, v < 0 ? v + r : v));
  const start = clampAxis(int(a, 'start', 0));
  const end = clampAxis(int(a, 'end', r));
  return [tf.tensor1d(x.shape.slice(start, Math.max(start, end)), 'int32')];
}

function expand(a: OpArgs): tf.Tensor[] {
  const x = need(a, 0);
  const shape = a.bound(broadcastShapes(x.shape, values(need(a, 1))));
  const lifted = x.rank < shape.length ? x.reshape([...new Array(shape.length - x.rank).fill(1), ...x.shape]) : x;
  return [tf.broadcastTo(lifted, shape)];
}

/** Indices along an axis of length `n` for reflect or edge padding by `[begin, end]`. */
function padIndices(n: number, begin: number, end: number, mode: string): number[] {
  const out: number[] = [];
  for (let i = -begin; i < n + end; i++) {
    if (mode === 'edge') out.push(Math.max(0, Math.min(n - 1, i)));
    else {
      // reflect without repeating the edge: period 2(n - 1).
      const p = 2 * (n - 1);
      let j = p === 0 ? 0 : ((i % p) + p) % p;
      if (j >= n) j = p - j;
      out.push(j);
    }
  }
  return out;
}

function pad(a: OpArgs): tf.Tensor[] {
  let x = need(a, 0);
  const mode = str(a, 'mode', 'constant');
  const r = x.rank;
  let p: number[];
  let value: number;
  if (a.opset < 11) {
    p = ints(a, 'pads') ?? ints(a, 'paddings') ?? [];
    value = float(a, 'value', 0);
  } else {
    p = values(need(a, 1));
    value = a.inputs[2] && a.inputs[2].size ? Number(a.inputs[2].dataSync()[0]) : 0;
  }
  let axes = Array.from({ length: r }, (_, i) => i);
  if (a.opset >= 18 && a.inputs[3]) axes = values(a.inputs[3]).map((d) => axisOf(d, r));
  const spec: [number, number][] = x.shape.map(() => [0, 0]);
  axes.forEach((axis, i) => (spec[axis] = [p[i], p[i + axes.length]]));
  // Negative pads crop.
  if (spec.some(([b, e]) => b < 0 || e < 0)) {
    const begin = spec.map(([b]) => Math.max(0, -b));
    const size = spec.map(([b, e], i) => x.shape[i] - Math.max(0, -b) - Math.max(0, -e));
    x = tf.slice(x, begin, size);
  }
  const grow = spec.map(([b, e]) => [Math.max(0, b), Math.max(0, e)] as [number, number]);
  a.bound(x.shape.map((d, i) => d + grow[i][0] + grow[i][1]));
  if (mode === 'constant') return [tf.pad(x, grow, value)];
  if (mode !== 'reflect' && mode !== 'edge') throw unsupported(a, `pad mode ${JSON.stringify(mode)} (implemented: constant, reflect, edge)`);
  let y = x;
  grow.forEach(([b, e], axis) => {
    if (b || e) {
      if (mode === 'reflect' && (b >= y.shape[axis] || e >= y.shape[axis])) throw unsupported(a, `reflect padding of ${Math.max(b, e)} on an axis of ${y.shape[axis]}`);
      y = tf.gather(y, tf.tensor1d(padIndices(y.shape[axis], b, e, mode), 'int32'), axis);
    }
  });
  return [y];
}

function split(a: OpArgs): tf.Tensor[] {
  const x = need(a, 0);
  const axis = axisOf(int(a, 'axis', 0), x.rank);
  const n = a.node.outputs.length;
  let sizes = a.opset >= 13 ? (a.inputs[1] ? values(a.inputs[1]) : undefined) : ints(a, 'split');
  if (!sizes || !sizes.length) {
    const parts = a.opset >= 18 ? int(a, 'num_outputs', n) : n;
    const each = Math.ceil(x.shape[axis] / parts);
    sizes = Array.from({ length: parts }, (_, i) => Math.max(0, Math.min(each, x.shape[axis] - i * each)));
  }
  // tfjs' split gradient fails for a single piece (its dy is then not a list).
  return sizes.length === 1 ? [x] : tf.split(x, sizes, axis);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** `v` rounded to the nearest FLOAT16 (10) or BFLOAT16 (16) value, ties to even. */
function roundHalf(v: number, to: number): number {
  if (to === 10) return fromHalfBits(toHalfBits(v));
  f32[0] = v;
  if (Number.isNaN(v)) return v;
  const bits = u32[0];
  u32[0] = ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) << 16;
  return f32[0];
}

/**
 * A cast to a 16-bit float type: the values rounded as the model computes them, the gradient
 * passed straight through (the rounding's own gradient is zero almost everywhere).
 */
function toHalf(x: tf.Tensor, to: number): tf.Tensor {
  const f = tf.customGrad(((input: tf.Tensor) => {
    const v = input.dataSync() as Float32Array;
    return { value: tf.tensor(Float32Array.from(v, (e) => roundHalf(e, to)), input.shape, 'float32'), gradFunc: (dy: tf.Tensor) => [dy] };
  }) as never);
  return f(x) as tf.Tensor;
}

function cast(a: OpArgs, to: number): tf.Tensor[] {
  const x = need(a, 0);
  const dtype = tfDtype(to);
  if (!dtype || dtype === 'string' || x.dtype === 'string') throw unsupported(a, `a cast ${x.dtype === 'string' ? 'from STRING' : `to data type ${to}`}`);
  if ((to === 10 || to === 16) && x.dtype === 'float32') return [toHalf(x, to)];
  if (x.dtype === dtype) return [x];
  if (dtype === 'int32' && x.dtype === 'float32') return [tf.cast(tf.sign(x).mul(tf.floor(tf.abs(x))), 'int32')];
  return [tf.cast(x, dtype)];
}

function constantOfShape(a: OpArgs): tf.Tensor[] {
  const shape = a.bound(values(need(a, 0)));
  const t = a.node.attributes.get('value')?.t;
  const dtype = t ? (tfDtype(t.dataType) ?? 'float32') : 'float32';
  const v = t ? Number(t.values[0]) : 0;
  return [tensorOf(new Array(shape.reduce((p, d) => p * d, 1)).fill(v), shape, dtype)];
}

function range(a: OpArgs): tf.Tensor[] {
  const [start, limit, delta] = [0, 1, 2].map((i) => Number(need(a, i).dataSync()[0]));
  const n = Math.max(0, Math.ceil((limit - start) / delta));
  a.bound([Number.isFinite(n) ? n : -1]);
  const dtype = need(a, 0).dtype;
  return [tensorOf(Array.from({ length: n }, (_, i) => start + i * delta), [n], dtype)];
}

function depthToSpace(a: OpArgs): tf.Tensor[] {
  const x = need(a, 0);
  const b = int(a, 'blocksize', 1);
  const [n, c, h, w] = x.shape;
  if (str(a, 'mode', 'DCR') === 'CRD') return [x.reshape([n, c / (b * b), b, b, h, w]).transpose([0, 1, 4, 2, 5, 3]).reshape([n, c / (b * b), h * b, w * b])];
  return [x.reshape([n, b, b, c / (b * b), h, w]).transpose([0, 3, 4, 1, 5, 2]).reshape([n, c / (b * b), h * b, w * b])];
}

function spaceToDepth(a: OpArgs): tf.Tensor[] {
  const x = need(a, 0);
  const b = int(a, 'blocksize', 1);
  const [n, c, h, w] = x.shape;
  return [x.reshape([n, c, h / b, b, w / b, b]).transpose([0, 3, 5, 1, 2, 4]).reshape([n, c * b * b, h / b, w / b])];
}

function trilu(a: OpArgs): tf.Tensor[] {
  const x = need(a, 0);
  const k = a.inputs[1] ? Number(a.inputs[1].dataSync()[0]) : 0;
  const upper = int(a, 'upper', 1) === 1;
  const [rows, cols] = x.shape.slice(-2);
  const mask = new Uint8Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) mask[i * cols + j] = upper ? +(j - i >= k) : +(j - i <= k);
  return [tf.where(tf.broadcastTo(tf.tensor(mask, [rows, cols], 'bool'), x.shape), x, tf.zerosLike(x))];
}

/** Shape, layout and pass-through operators. */
export const shape: OpTable = {
  Reshape: reshape,
  Flatten: flatten,
  Squeeze: squeeze,
  Unsqueeze: unsqueeze,
  Transpose: (a) => {
    const x = need(a, 0);
    return [tf.transpose(x, ints(a, 'perm') ?? x.shape.map((_, i) => x.rank - 1 - i))];
  },
  Concat: (a) => {
    const xs = a.inputs.filter((x): x is tf.Tensor => !!x);
    const axis = axisOf(int(a, 'axis', 0), xs[0].rank);
    const kept = xs.filter((x) => x.size > 0);
    if (kept.length === 0) {
      const shape = xs[0].shape.slice();
      shape[axis] = 0;
      return [tf.zeros(shape, xs[0].dtype)];
    }
    return [kept.length === 1 ? kept[0] : tf.concat(kept, axis)];
  },
  Shape: shapeOf,
  Size: (a) => [tf.scalar(need(a, 0).size, 'int32')],
  Expand: expand,
  Tile: (a) => {
    const x = need(a, 0);
    const repeats = values(need(a, 1));
    a.bound(x.shape.map((d, i) => d * (repeats[i] ?? 1)));
    return [tf.tile(x, repeats)];
  },
  Pad: pad,
  Split: split,
  Identity: (a) => [need(a, 0)],
  Dropout: (a) => {
    const x = need(a, 0);
    const training = a.opset >= 12 ? !!a.inputs[2] && Boolean(a.inputs[2].dataSync()[0]) : a.opset < 7 && int(a, 'is_test', 0) === 0;
    const ratio = a.opset >= 12 ? (a.inputs[1] ? Number(a.inputs[1].dataSync()[0]) : 0.5) : float(a, 'ratio', 0.5);
    // ONNX leaves the generator to each runtime: no mask drawn here would be the one another runtime
    // (or ONNX's own test data: numpy's Mersenne Twister reseeded with `seed` at every call) draws.
    if (training && ratio > 0) throw unsupported(a, `Dropout in training mode with ratio ${ratio} (a random mask, whose generator ONNX leaves to each runtime); the executor runs Dropout as inference does: export the model with training_mode false`);
    return [x, a.node.outputs.length > 1 ? tf.onesLike(x).cast('bool') : undefined];
  },
  Cast: (a) => cast(a, int(a, 'to', 1)),
  CastLike: (a) => cast(a, a.dataType(1) ?? (need(a, 1).dtype === 'float32' ? 1 : need(a, 1).dtype === 'bool' ? 9 : 6)),
  ConstantOfShape: constantOfShape,
  Range: range,
  DepthToSpace: depthToSpace,
  SpaceToDepth: spaceToDepth,
  Trilu: trilu,
};
