/**
 * Conv (1-D, 2-D, 3-D, grouped and depthwise) and ConvTranspose (1-D, 2-D, 3-D), over tfjs' NHWC
 * convolutions: ONNX's NCHW tensors are transposed in and out, explicit or automatic padding is
 * applied with tf.pad before a `valid` convolution, and dilation is applied to the kernel
 * (zeros inserted between its taps), because tfjs has no gradient for dilated convolutions.
 */
import * as tf from '@tensorflow/tfjs';
import { int, ints, need, str, unsupported, type OpArgs, type OpTable } from './op.ts';

/**
 * Begin and end padding of every spatial axis, from `pads` or `auto_pad`; the padded input
 * (`lead`: its batch and channel dimensions) is checked against the trainer's bound, as it is
 * built with tf.pad.
 */
export function spatialPads(a: OpArgs, inShape: number[], kernel: number[], strides: number[], dilations: number[], lead: number[]): [number, number][] {
  const pads = padsOf(a, inShape, kernel, strides, dilations);
  a.bound([...lead, ...inShape.map((d, i) => d + Math.max(0, pads[i][0]) + Math.max(0, pads[i][1]))]);
  return pads;
}

function padsOf(a: OpArgs, inShape: number[], kernel: number[], strides: number[], dilations: number[]): [number, number][] {
  const n = kernel.length;
  const auto = str(a, 'auto_pad', 'NOTSET');
  if (auto === 'NOTSET') {
    const p = ints(a, 'pads') ?? new Array(2 * n).fill(0);
    return kernel.map((_, i) => [p[i], p[i + n]]);
  }
  if (auto === 'VALID') return kernel.map(() => [0, 0]);
  return kernel.map((k, i) => {
    const out = Math.ceil(inShape[i] / strides[i]);
    const total = Math.max(0, (out - 1) * strides[i] + (k - 1) * dilations[i] + 1 - inShape[i]);
    const small = Math.floor(total / 2);
    return auto === 'SAME_LOWER' ? [total - small, small] : [small, total - small];
  });
}

/** The kernel `w` ([kH, kW, ..., in, out] layout, spatial axes first) with `d - 1` zeros between taps. */
function dilate(w: tf.Tensor, dilations: number[]): tf.Tensor {
  return spread(w, dilations, 0);
}

const toLast = (rank: number) => [0, ...Array.from({ length: rank - 2 }, (_, i) => i + 2), 1];
const toFirst = (rank: number) => [0, rank - 1, ...Array.from({ length: rank - 2 }, (_, i) => i + 1)];

/** One group of a 2-D or 3-D convolution in channels-last layout; `w` as ONNX [M, C, k...]. */
function convGroup(x: tf.Tensor, w: tf.Tensor, strides: number[], dilations: number[], depthwise: boolean): tf.Tensor {
  const n = strides.length;
  const spatial = Array.from({ length: n }, (_, i) => i + 2);
  if (depthwise) {
    // ONNX [C*m, 1, kH, kW] -> tfjs [kH, kW, C, m].
    const c = x.shape[x.rank - 1];
    const f = dilate(tf.transpose(w.reshape([c, w.shape[0] / c, ...w.shape.slice(2)]), [...spatial, 0, 1]), dilations);
    return tf.depthwiseConv2d(x as tf.Tensor4D, f as tf.Tensor4D, strides as [number, number], 'valid');
  }
  const f = dilate(tf.transpose(w, [...spatial, 1, 0]), dilations);
  if (n === 2) return tf.conv2d(x as tf.Tensor4D, f as tf.Tensor4D, strides as [number, number], 'valid');
  return tf.conv3d(x as tf.Tensor5D, f as tf.Tensor5D, strides as [number, number, number], 'valid');
}

function conv(a: OpArgs): tf.Tensor[] {
  let x = need(a, 0);
  let w = need(a, 1);
  const b = a.inputs[2];
  let n = x.rank - 2;
  if (n < 1 || n > 3) throw unsupported(a, `a ${n}-D convolution (only 1-D, 2-D and 3-D are implemented)`);
  let kernel = w.shape.slice(2);
  let strides = ints(a, 'strides') ?? kernel.map(() => 1);
  let dilations = ints(a, 'dilations') ?? kernel.map(() => 1);
  let pads = spatialPads(a, x.shape.slice(2), kernel, strides, dilations, x.shape.slice(0, 2));
  // The kernel is dilated by inserting zeros: its size grows with the dilations.
  a.bound([...kernel.map((k, i) => (k - 1) * (dilations[i] ?? 1) + 1), ...w.shape.slice(0, 2)]);
  const oneD = n === 1;
  if (oneD) {
    // As 2-D with a height of 1.
    x = x.expandDims(2);
    w = w.expandDims(2);
    kernel = [1, ...kernel];
    strides = [1, ...strides];
    dilations = [1, ...dilations];
    pads = [[0, 0], ...pads];
    n = 2;
  }
  const group = int(a, 'group', 1);
  const c = x.shape[1];
  let y = tf.transpose(x, toLast(x.rank));
  y = tf.pad(y, [[0, 0], ...pads, [0, 0]]);
  let out: tf.Tensor;
  if (group === 1) out = convGroup(y, w, strides, dilations, false);
  else if (group === c && n === 2) out = convGroup(y, w, strides, dilations, true);
  else {
    const xs = tf.split(y, group, y.rank - 1);
    const ws = tf.split(w, group, 0);
    out = tf.concat(xs.map((xi, i) => convGroup(xi, ws[i], strides, dilations, false)), y.rank - 1);
  }
  out = tf.transpose(out, toFirst(out.rank));
  if (b) out = tf.add(out, b.reshape([1, b.shape[0], ...new Array(n).fill(1)]));
  return [oneD ? out.squeeze([2]) : out];
}

/** Zeros inserted between the elements of axes `from`, `from + 1`, ... of `x` (`d - 1` after each but the last). */
function spread(x: tf.Tensor, factors: number[], from: number): tf.Tensor {
  let out = x;
  factors.forEach((d, i) => {
    if (d === 1) return;
    const axis = from + i;
    const n = out.shape[axis];
    // [.., n, ..] -> [.., n, 1, ..] padded to [.., n, d, ..] -> [.., n*d, ..] -> first (n-1)*d+1.
    const shape = out.shape.slice();
    const expanded = out.expandDims(axis + 1);
    const pads = expanded.shape.map((_, j) => (j === axis + 1 ? [0, d - 1] : [0, 0]) as [number, number]);
    shape[axis] = n * d;
    const size = shape.slice();
    size[axis] = (n - 1) * d + 1;
    out = tf.slice(tf.pad(expanded, pads).reshape(shape), new Array(shape.length).fill(0), size);
  });
  return out;
}

/**
 * One group of a 3-D transposed convolution as a forward one, because tfjs has no gradient for
 * conv3dTranspose: the input spread by the strides (zeros between its elements) and padded by
 * the dilated kernel's extent less one, convolved with the dilated kernel flipped and its
 * channel axes swapped. `x` is channels-last, `w` ONNX [C/g, M/g, k...]; the result is the full
 * output, (in - 1) * stride + (k - 1) * dilation + 1 long on every spatial axis.
 */
function convTranspose3dGroup(x: tf.Tensor, w: tf.Tensor, strides: number[], dilations: number[]): tf.Tensor {
  const f = tf.reverse(dilate(tf.transpose(w, [2, 3, 4, 0, 1]), dilations), [0, 1, 2]);
  const reach = f.shape.slice(0, 3).map((k) => k - 1);
  const up = tf.pad(spread(x, strides, 1), [[0, 0], ...reach.map((r) => [r, r] as [number, number]), [0, 0]]);
  return tf.conv3d(up as tf.Tensor5D, f as tf.Tensor5D, [1, 1, 1], 'valid');
}

function convTranspose(a: OpArgs): tf.Tensor[] {
  let x = need(a, 0);
  let w = need(a, 1);
  const b = a.inputs[2];
  const n = x.rank - 2;
  if (n < 1 || n > 3) throw unsupported(a, `a ${n}-D transposed convolution (only 1-D, 2-D and 3-D are implemented)`);
  const group = int(a, 'group', 1);
  const kernel0 = w.shape.slice(2);
  const strides0 = ints(a, 'strides') ?? kernel0.map(() => 1);
  const dil0 = ints(a, 'dilations') ?? kernel0.map(() => 1);
  const outPad0 = ints(a, 'output_padding') ?? kernel0.map(() => 0);
  const inShape = x.shape.slice(2);
  // The full output before cropping: (in - 1) * stride + (k - 1) * dilation + 1.
  const full0 = inShape.map((d, i) => (d - 1) * strides0[i] + (kernel0[i] - 1) * dil0[i] + 1);
  const channelsOut = (w.shape[1] as number) * group;
  a.bound([x.shape[0] as number, channelsOut, ...full0.map((f, i) => f + (outPad0[i] ?? 0))]);
  const outShapeAttr = ints(a, 'output_shape');
  const auto = str(a, 'auto_pad', 'NOTSET');
  let begins: number[];
  let lengths: number[];
  if (outShapeAttr && outShapeAttr.length) {
    const want = outShapeAttr.slice(-n);
    lengths = want;
    begins = want.map((L, i) => {
      const total = full0[i] + outPad0[i] - L;
      return auto === 'SAME_UPPER' ? Math.floor(total / 2) : total - Math.floor(total / 2);
    });
  } else if (auto === 'SAME_UPPER' || auto === 'SAME_LOWER') {
    lengths = inShape.map((d, i) => d * strides0[i]);
    begins = lengths.map((L, i) => {
      const total = full0[i] + outPad0[i] - L;
      return auto === 'SAME_UPPER' ? Math.floor(total / 2) : total - Math.floor(total / 2);
    });
  } else {
    const p = auto === 'VALID' ? new Array(2 * n).fill(0) : (ints(a, 'pads') ?? new Array(2 * n).fill(0));
    begins = kernel0.map((_, i) => p[i]);
    lengths = full0.map((f, i) => f + outPad0[i] - p[i] - p[i + n]);
  }
  a.bound([x.shape[0] as number, channelsOut, ...lengths]);
  let strides = strides0;
  let dil = dil0;
  let full = full0;
  if (n === 1) {
    x = x.expandDims(2);
    w = w.expandDims(2);
    strides = [1, ...strides];
    dil = [1, ...dil];
    full = [1, ...full];
    begins = [0, ...begins];
    lengths = [1, ...lengths];
  }
  const s = full.length;
  const xl = tf.transpose(x, toLast(x.rank));
  const xs = group === 1 ? [xl] : tf.split(xl, group, s + 1);
  const ws = group === 1 ? [w] : tf.split(w, group, 0);
  const parts = xs.map((xi, i) => {
    if (s === 3) return convTranspose3dGroup(xi, ws[i], strides, dil);
    // ONNX [C/g, M/g, kH, kW] -> tfjs [kH, kW, M/g, C/g].
    const f = dilate(tf.transpose(ws[i], [2, 3, 1, 0]), dil) as tf.Tensor4D;
    return tf.conv2dTranspose(xi as tf.Tensor4D, f, [x.shape[0], full[0], full[1], f.shape[2]], strides as [number, number], 'valid');
  });
  let y: tf.Tensor = parts.length === 1 ? parts[0] : tf.concat(parts, s + 1);
  // Crop (or extend with zeros) to [begin, begin + length) on every spatial axis.
  const padSpec: [number, number][] = [[0, 0]];
  for (let i = 0; i < s; i++) padSpec.push([Math.max(0, -begins[i]), Math.max(0, begins[i] + lengths[i] - full[i])]);
  padSpec.push([0, 0]);
  y = tf.pad(y, padSpec);
  y = tf.slice(y, [0, ...begins.map((v) => Math.max(0, v)), 0], [-1, ...lengths, -1]);
  y = tf.transpose(y, toFirst(y.rank));
  if (b) y = tf.add(y, b.reshape([1, b.shape[0], ...new Array(s).fill(1)]));
  return [n === 1 ? y.squeeze([2]) : y];
}

/** Convolution operators. */
export const convolution: OpTable = {
  Conv: conv,
  ConvTranspose: convTranspose,
};
