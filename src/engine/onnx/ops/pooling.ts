/**
 * MaxPool, AveragePool (1-D, 2-D, 3-D) and their global forms, over tfjs' NHWC pools: padding
 * is applied explicitly (-inf for max; for averages the divisor counts what ONNX counts,
 * `count_include_pad` or not) and `ceil_mode` becomes extra padding at the end. MaxPool takes
 * int8/uint8 values too, and gives its Indices output.
 */
import * as tf from '@tensorflow/tfjs';
import { spatialPads } from './convolution.ts';
import { int, ints, need, unsupported, type OpArgs, type OpTable } from './op.ts';

interface Geometry {
  kernel: number[];
  strides: number[];
  dilations: number[];
  /** Padding ONNX counts as the input's (explicit or automatic). */
  pads: [number, number][];
  /** Extra padding at the end that ceil_mode adds (never counted). */
  extra: number[];
}

function geometry(a: OpArgs, x: tf.Tensor): Geometry {
  const kernel = ints(a, 'kernel_shape') ?? [];
  const n = x.rank - 2;
  if (kernel.length !== n) throw unsupported(a, `kernel_shape has ${kernel.length} axes for a ${n}-D input`);
  const strides = ints(a, 'strides') ?? kernel.map(() => 1);
  const dilations = ints(a, 'dilations') ?? kernel.map(() => 1);
  const inShape = x.shape.slice(2);
  const pads = spatialPads(a, inShape, kernel, strides, dilations, x.shape.slice(0, 2));
  const ceil = int(a, 'ceil_mode', 0) === 1;
  const extra = kernel.map((k, i) => {
    const ek = (k - 1) * dilations[i] + 1;
    const span = inShape[i] + pads[i][0] + pads[i][1];
    if (!ceil) return 0;
    let out = Math.ceil((span - ek) / strides[i]) + 1;
    // A window that would start in the end padding is dropped.
    if ((out - 1) * strides[i] >= inShape[i] + pads[i][0]) out--;
    return Math.max(0, (out - 1) * strides[i] + ek - span);
  });
  return { kernel, strides, dilations, pads, extra };
}

/** A `valid` max or average pool over channels-last `x` (2-D or 3-D). */
function pool(x: tf.Tensor, g: Geometry, type: 'max' | 'avg', a: OpArgs): tf.Tensor {
  const n = g.kernel.length;
  const dilated = g.dilations.some((d) => d > 1);
  if (n === 3) {
    if (dilated) throw unsupported(a, 'dilated 3-D pooling');
    const k = g.kernel as [number, number, number];
    const s = g.strides as [number, number, number];
    if (type === 'avg') return tf.avgPool3d(x as tf.Tensor5D, k, s, 'valid');
    // tfjs-backend-wasm's MaxPool3D starts every window at FLT_MIN (a positive number), so it
    // never returns a negative maximum: pool values shifted to be at least 1, then shift back.
    let low = Infinity;
    for (const v of x.dataSync() as Float32Array) if (v < low && v > -Infinity) low = v;
    const shift = low < Infinity ? 1 - low : 0;
    return tf.sub(tf.maxPool3d(tf.add(x, shift) as tf.Tensor5D, k, s, 'valid'), shift);
  }
  if (!dilated) {
    const f = type === 'max' ? tf.maxPool : tf.avgPool;
    return f(x as tf.Tensor4D, g.kernel as [number, number], g.strides as [number, number], 'valid');
  }
  // tfjs pools with dilation only at stride 1: pool densely, then take every stride-th window.
  const dense = tf.pool(x as tf.Tensor4D, g.kernel as [number, number], type, 'valid', g.dilations as [number, number], [1, 1]);
  return tf.stridedSlice(dense, [0, 0, 0, 0], dense.shape, [1, g.strides[0], g.strides[1], 1]);
}

/** Run `f` on `x` as a 2-D NHWC (1-D inputs get a height of 1) and return NCHW. */
function channelsLast(x: tf.Tensor, g: Geometry, f: (xl: tf.Tensor, g: Geometry) => tf.Tensor): tf.Tensor {
  const oneD = x.rank === 3;
  const xx = oneD ? x.expandDims(2) : x;
  const gg: Geometry = oneD
    ? { kernel: [1, ...g.kernel], strides: [1, ...g.strides], dilations: [1, ...g.dilations], pads: [[0, 0], ...g.pads], extra: [0, ...g.extra] }
    : g;
  const r = xx.rank;
  const xl = tf.transpose(xx, [0, ...Array.from({ length: r - 2 }, (_, i) => i + 2), 1]);
  const y = f(xl, gg);
  const out = tf.transpose(y, [0, r - 1, ...Array.from({ length: r - 2 }, (_, i) => i + 1)]);
  return oneD ? out.squeeze([2]) : out;
}

const padSpec = (g: Geometry, withExtra: boolean, withPads = true): [number, number][] =>
  [[0, 0], ...g.pads.map(([b, e], i) => [withPads ? b : 0, (withPads ? e : 0) + (withExtra ? g.extra[i] : 0)] as [number, number]), [0, 0]];

function maxPool(a: OpArgs): tf.Tensor[] {
  const x = need(a, 0);
  // int8 and uint8 (int32 here) pool in float32, which holds every such value exactly.
  if (x.dtype !== 'float32' && x.dtype !== 'int32') throw unsupported(a, `MaxPool over ${x.dtype} values`);
  const g = geometry(a, x);
  const xf = x.dtype === 'int32' ? x.toFloat() : x;
  const pooled = channelsLast(xf, g, (xl, gg) => pool(tf.pad(xl, padSpec(gg, true), -Infinity), gg, 'max', a));
  const y = x.dtype === 'int32' ? pooled.toInt() : pooled;
  if (!a.node.outputs[1]) return [y];
  return [y, maxPoolIndices(x, g, y.shape.slice(2), int(a, 'storage_order', 0))];
}

/**
 * MaxPool's second output: for every window, the position of its maximum in the input as ONNX
 * (and onnxruntime) number it: batch and channel first, then the spatial axes in row-major order
 * (`storage_order` 0) or column-major (1: the first spatial axis fastest); padding is never
 * chosen, and the first of equal maxima wins. Integers, computed from the values (no gradient).
 */
function maxPoolIndices(x: tf.Tensor, g: Geometry, outShape: number[], storageOrder: number): tf.Tensor {
  const xs = x.dataSync() as ArrayLike<number>;
  const inShape = x.shape.slice(2);
  const n = inShape.length;
  const plane = inShape.reduce((p, d) => p * d, 1);
  const outPlane = outShape.reduce((p, d) => p * d, 1);
  const rowStride = inShape.map((_, i) => inShape.slice(i + 1).reduce((p, d) => p * d, 1));
  const colStride = inShape.map((_, i) => inShape.slice(0, i).reduce((p, d) => p * d, 1));
  const stride = storageOrder === 1 ? colStride : rowStride;
  const [batch, channels] = x.shape as number[];
  const planes = batch * channels;
  const out = new Int32Array(planes * outPlane);
  const at = new Array<number>(n).fill(0);
  const tap = new Array<number>(n).fill(0);
  for (let o = 0; o < outPlane; o++) {
    let rest = o;
    for (let i = n - 1; i >= 0; i--) {
      at[i] = (rest % outShape[i]) * g.strides[i] - g.pads[i][0];
      rest = Math.floor(rest / outShape[i]);
    }
    for (let c = 0; c < planes; c++) {
      let best = -1;
      let bestValue = -Infinity;
      tap.fill(0);
      // Every tap of the window in row-major order.
      for (;;) {
        let inside = true;
        let row = 0;
        let index = 0;
        for (let i = 0; i < n && inside; i++) {
          const p = at[i] + tap[i] * g.dilations[i];
          inside = p >= 0 && p < inShape[i];
          row += p * rowStride[i];
          index += p * stride[i];
        }
        if (inside) {
          const v = xs[c * plane + row];
          if (best < 0 || v > bestValue) {
            best = index;
            bestValue = v;
          }
        }
        let i = n - 1;
        while (i >= 0 && ++tap[i] === g.kernel[i]) tap[i--] = 0;
        if (i < 0) break;
      }
      out[c * outPlane + o] = best < 0 ? -1 : c * plane + best;
    }
  }
  return tf.tensor(out, [batch, channels, ...outShape], 'int32');
}

function averagePool(a: OpArgs): tf.Tensor[] {
  const x = need(a, 0);
  const g = geometry(a, x);
  const include = int(a, 'count_include_pad', 0) === 1;
  return [
    channelsLast(x, g, (xl, gg) => {
      const sum = pool(tf.pad(xl, padSpec(gg, true)), gg, 'avg', a);
      const unpadded = gg.pads.every(([b, e]) => b === 0 && e === 0) && gg.extra.every((e) => e === 0);
      if (unpadded) return sum;
      // Divide by what ONNX counts: the window's elements in the input (and its pads when count_include_pad).
      const ones = tf.ones([1, ...xl.shape.slice(1, -1), 1]);
      const mask = include ? tf.pad(tf.pad(ones, padSpec(gg, false), 1), padSpec(gg, true, false)) : tf.pad(ones, padSpec(gg, true));
      const frac = pool(mask, gg, 'avg', a);
      return tf.div(sum, frac);
    }),
  ];
}

/** Pooling operators. */
export const pooling: OpTable = {
  MaxPool: maxPool,
  AveragePool: averagePool,
  GlobalAveragePool: (a) => {
    const x = need(a, 0);
    return [tf.mean(x, Array.from({ length: x.rank - 2 }, (_, i) => i + 2), true)];
  },
  GlobalMaxPool: (a) => {
    const x = need(a, 0);
    return [tf.max(x, Array.from({ length: x.rank - 2 }, (_, i) => i + 2), true)];
  },
};
