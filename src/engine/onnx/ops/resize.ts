/**
 * Resize (opsets 10, 11, 13, 18, 19) and Upsample (7, 9), as ONNX's reference implementation
 * defines them. Every mode is separable: each resized axis in turn, every output position reads
 * a few input positions (taps) with weights that depend only on its coordinate along that axis.
 * The taps and weights are computed here in float64 from the attributes and the shapes (known
 * when the graph runs); the tensor work is gathers along the axis and weighted sums, so the
 * output is differentiable in the input. `nearest` is a single gather and keeps any element type.
 *
 * Coordinates: an output position x maps to x_ori in the input by `coordinate_transformation_mode`
 * (half_pixel, half_pixel_symmetric, pytorch_half_pixel, align_corners, asymmetric,
 * tf_half_pixel_for_nn, tf_crop_and_resize with `roi` and `extrapolation_value`), where the
 * output length is taken as scale × input length (fractional when `scales` are given). Taps
 * beyond the input repeat its edge (or, with `exclude_outside`, weigh nothing and the others are
 * renormalized). Opset 10's Resize and Upsample use asymmetric coordinates and, for nearest,
 * onnxruntime's rounding (down when enlarging, up when shrinking).
 */
import * as tf from '@tensorflow/tfjs';
import { axisOf, float, floats, int, ints, need, str, unsupported, values, type OpArgs, type OpTable } from './op.ts';

/** How one axis is resized: a mode's taps, as ONNX's reference defines them. */
interface AxisResize {
  inSize: number;
  outSize: number;
  /** The scale factor the coordinates use (sizes / input when sizes are given). */
  scale: number;
  mode: 'nearest' | 'linear' | 'cubic';
  coordinates: string;
  /** Nearest rounding; 'simple' is opset 10's and Upsample's. */
  nearestMode: string;
  cubicA: number;
  excludeOutside: boolean;
  antialias: boolean;
  roi: [number, number];
}

/** Taps of one axis: for tap j and output position o, the input index `index[j][o]` and its weight. */
interface Taps {
  index: Int32Array[];
  weight: Float64Array[];
  /** Output positions outside the crop box (tf_crop_and_resize), which take `extrapolation_value`. */
  outside?: Uint8Array;
}

const fround = Math.fround;

/**
 * The input coordinate of output position `x` (undefined: outside tf_crop_and_resize's box), in
 * float32 arithmetic as onnxruntime (and ONNX's reference, with float32 scales) computes it: a
 * nearest index on an exact boundary (5 / 2.2 rounds to 5 in float32) depends on it.
 */
function sourceCoordinate(r: AxisResize, x: number): number | undefined {
  const scale = fround(r.scale);
  const outWidth = fround(scale * r.inSize);
  switch (r.coordinates) {
    case 'half_pixel':
      return fround(fround(fround(x + 0.5) / scale) - 0.5);
    case 'half_pixel_symmetric': {
      const offset = fround(fround(r.inSize / 2) * fround(1 - fround(r.outSize / outWidth)));
      return fround(offset + fround(fround(fround(x + 0.5) / scale) - 0.5));
    }
    case 'pytorch_half_pixel':
      return outWidth === 1 ? -0.5 : fround(fround(fround(x + 0.5) / scale) - 0.5);
    case 'align_corners':
      return outWidth === 1 ? 0 : fround(fround(x * (r.inSize - 1)) / fround(outWidth - 1));
    case 'asymmetric':
      return fround(x / scale);
    case 'tf_half_pixel_for_nn':
      return fround(fround(x + 0.5) / scale);
    default: {
      // tf_crop_and_resize
      const [start, end] = [fround(r.roi[0]), fround(r.roi[1])];
      const span = fround(end - start);
      const at = fround((outWidth === 1 ? fround(fround(span * (r.inSize - 1)) / 2) : fround(fround(fround(x * span) * (r.inSize - 1)) / fround(outWidth - 1))) + fround(start * (r.inSize - 1)));
      return at < 0 || at > r.inSize - 1 ? undefined : at;
    }
  }
}

/** The rounded coordinate of nearest mode. */
function nearestIndex(r: AxisResize, at: number): number {
  if (Number.isInteger(at)) return at;
  switch (r.nearestMode) {
    case 'round_prefer_ceil':
      return at - Math.floor(at) >= 0.5 ? Math.ceil(at) : Math.floor(at);
    case 'floor':
      return Math.floor(at);
    case 'ceil':
      return Math.ceil(at);
    case 'simple':
      return r.scale < 1 ? Math.ceil(at) : Math.trunc(at);
    default:
      return at - Math.floor(at) > 0.5 ? Math.ceil(at) : Math.floor(at);
  }
}

/** The Keys cubic convolution kernel with coefficient `A` at distance `d`. */
function cubicKernel(d: number, A: number): number {
  const x = Math.abs(d);
  if (x <= 1) return ((A + 2) * x - (A + 3)) * x * x + 1;
  if (x < 2) return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
  return 0;
}

/**
 * Weights of the taps at offsets `first`, `first + 1`, ... from floor(x_ori), for `ratio` =
 * x_ori − floor(x_ori) in (0, 1] (ONNX's reference takes the tap left of an integer coordinate
 * as floor). Antialiasing stretches the kernel by 1 / scale when shrinking.
 */
function kernelWeights(r: AxisResize, ratio: number): { first: number; weights: number[] } {
  const s = r.antialias ? Math.min(r.scale, 1) : 1;
  const reach = r.mode === 'linear' ? 1 : 2;
  const first = Math.floor(-reach / s) + 1;
  const weights: number[] = [];
  for (let i = first; i < 2 - first; i++) {
    const d = (i - ratio) * s;
    weights.push(r.mode === 'linear' ? Math.max(0, 1 - Math.abs(d)) : cubicKernel(d, r.cubicA));
  }
  if (r.antialias) {
    const sum = weights.reduce((p, w) => p + w, 0);
    for (let k = 0; k < weights.length; k++) weights[k] /= sum;
  }
  return { first, weights };
}

/** The taps of one axis (module doc). */
function axisTaps(r: AxisResize): Taps {
  const clamp = (i: number) => Math.max(0, Math.min(r.inSize - 1, i));
  if (r.mode === 'nearest') {
    const index = new Int32Array(r.outSize);
    let outside: Uint8Array | undefined;
    for (let o = 0; o < r.outSize; o++) {
      const at = sourceCoordinate(r, o);
      if (at === undefined) (outside ??= new Uint8Array(r.outSize))[o] = 1;
      else index[o] = clamp(nearestIndex(r, at));
    }
    return { index: [index], weight: [new Float64Array(r.outSize).fill(1)], outside };
  }
  const index: Int32Array[] = [];
  const weight: Float64Array[] = [];
  let outside: Uint8Array | undefined;
  for (let o = 0; o < r.outSize; o++) {
    const at = sourceCoordinate(r, o);
    if (at === undefined) {
      (outside ??= new Uint8Array(r.outSize))[o] = 1;
      continue;
    }
    let base = Math.floor(at);
    let ratio = at - base;
    if (ratio === 0) {
      base -= 1;
      ratio = 1;
    }
    const { first, weights } = kernelWeights(r, ratio);
    if (r.excludeOutside) {
      let sum = 0;
      weights.forEach((w, k) => {
        const i = base + first + k;
        if (i < 0 || i >= r.inSize) weights[k] = 0;
        else sum += w;
      });
      for (let k = 0; k < weights.length; k++) weights[k] /= sum;
    }
    for (let k = 0; k < weights.length; k++) {
      index[k] ??= new Int32Array(r.outSize);
      weight[k] ??= new Float64Array(r.outSize);
      index[k][o] = clamp(base + first + k);
      weight[k][o] = weights[k];
    }
  }
  return { index, weight, outside };
}

/** True when the taps copy the input as it is (an axis with scale 1 in most modes). */
function isIdentity(t: Taps, inSize: number, outSize: number): boolean {
  if (inSize !== outSize || t.outside) return false;
  for (let o = 0; o < outSize; o++) {
    let self = 0;
    for (let j = 0; j < t.index.length; j++) {
      const w = t.weight[j][o];
      if (t.index[j][o] === o) self += w;
      else if (w !== 0) return false;
    }
    if (Math.abs(self - 1) > 1e-12) return false;
  }
  return true;
}

/** Resize `x` along `axis` with `taps`: a gather per tap, weighted and summed. */
function resizeAxis(x: tf.Tensor, axis: number, taps: Taps, outSize: number, extrapolation: number): tf.Tensor {
  const along = (v: ArrayLike<number>, dtype: 'float32' | 'bool') => {
    const shape = x.shape.map((_, i) => (i === axis ? outSize : 1));
    return dtype === 'bool' ? tf.tensor(Uint8Array.from(v), shape, 'bool') : tf.tensor(Float32Array.from(v), shape, 'float32');
  };
  let y: tf.Tensor;
  if (taps.index.length === 1 && taps.weight[0].every((w) => w === 1)) y = tf.gather(x, tf.tensor1d(taps.index[0], 'int32'), axis);
  else {
    const terms = taps.index.map((index, j) => tf.mul(tf.gather(x, tf.tensor1d(index, 'int32'), axis), along(taps.weight[j], 'float32')));
    y = terms.length === 1 ? terms[0] : tf.addN(terms);
  }
  if (taps.outside) y = tf.where(along(taps.outside, 'bool'), tf.fill(y.shape, extrapolation, y.dtype), y);
  return y;
}

/** The values of an optional tensor input, undefined when absent or empty (ONNX's "not given"). */
function given(a: OpArgs, i: number): number[] | undefined {
  const t = a.inputs[i];
  return t && t.size > 0 ? values(t) : undefined;
}

/** What the attributes and inputs ask for, axis by axis, before any tensor work. */
function plan(a: OpArgs, x: tf.Tensor, scalesIn: number[] | undefined, sizesIn: number[] | undefined, roiIn: number[] | undefined, legacy: boolean): AxisResize[] {
  const rank = x.rank;
  const modeName = str(a, 'mode', 'nearest');
  const mode = modeName === 'bilinear' || modeName === 'trilinear' ? 'linear' : modeName;
  if (mode !== 'nearest' && mode !== 'linear' && mode !== 'cubic') throw unsupported(a, `mode ${JSON.stringify(modeName)} (implemented: nearest, linear, cubic)`);
  if (legacy && mode === 'cubic') throw unsupported(a, `mode cubic before opset 11`);
  if (mode !== 'nearest' && x.dtype !== 'float32') throw unsupported(a, `${mode} interpolation of ${x.dtype} values (ONNX leaves their rounding back to integers open)`);
  const coordinates = legacy ? 'asymmetric' : str(a, 'coordinate_transformation_mode', 'half_pixel');
  const known = ['half_pixel', 'half_pixel_symmetric', 'pytorch_half_pixel', 'align_corners', 'asymmetric', 'tf_half_pixel_for_nn', 'tf_crop_and_resize'];
  if (!known.includes(coordinates)) throw unsupported(a, `coordinate_transformation_mode ${JSON.stringify(coordinates)} (implemented: ${known.join(', ')})`);
  const nearestMode = legacy ? 'simple' : str(a, 'nearest_mode', 'round_prefer_floor');
  if (!['round_prefer_floor', 'round_prefer_ceil', 'floor', 'ceil', 'simple'].includes(nearestMode)) throw unsupported(a, `nearest_mode ${JSON.stringify(nearestMode)}`);
  const axes = (ints(a, 'axes') ?? Array.from({ length: rank }, (_, i) => i)).map((d) => axisOf(d, rank));
  if (scalesIn && sizesIn) throw unsupported(a, 'both scales and sizes given (ONNX allows one of them)');
  if (!scalesIn && !sizesIn) throw unsupported(a, 'neither scales nor sizes given');
  const count = (scalesIn ?? sizesIn ?? []).length;
  if (count !== axes.length) throw unsupported(a, `${count} ${scalesIn ? 'scales' : 'sizes'} for ${axes.length} axes of a rank-${rank} input`);
  if (coordinates === 'tf_crop_and_resize' && (!roiIn || roiIn.length !== 2 * axes.length)) throw unsupported(a, `tf_crop_and_resize with roi ${roiIn ? `of ${roiIn.length} values` : 'missing'} (it needs ${2 * axes.length})`);
  const scale = x.shape.map(() => 1);
  const outSize = x.shape.slice();
  const roi = x.shape.map(() => [0, 1] as [number, number]);
  axes.forEach((d, i) => {
    if (roiIn) roi[d] = [roiIn[i], roiIn[axes.length + i]];
    if (scalesIn) {
      if (!(scalesIn[i] > 0)) throw unsupported(a, `scale ${scalesIn[i]} on axis ${d} (scales must be positive)`);
      scale[d] = scalesIn[i];
      outSize[d] = Math.floor(scalesIn[i] * x.shape[d]);
    }
  });
  if (sizesIn) {
    const policy = str(a, 'keep_aspect_ratio_policy', 'stretch');
    const ratios = axes.map((d, i) => sizesIn[i] / x.shape[d]);
    if (policy === 'stretch') axes.forEach((d, i) => ((outSize[d] = sizesIn[i]), (scale[d] = ratios[i])));
    else if (policy === 'not_larger' || policy === 'not_smaller') {
      const s = policy === 'not_larger' ? Math.min(...ratios) : Math.max(...ratios);
      // ONNX rounds half up here.
      for (const d of axes) ((scale[d] = s), (outSize[d] = Math.floor(s * x.shape[d] + 0.5)));
    } else throw unsupported(a, `keep_aspect_ratio_policy ${JSON.stringify(policy)} (implemented: stretch, not_larger, not_smaller)`);
  }
  a.bound(outSize);
  return x.shape.map((inSize, d) => ({
    inSize, outSize: outSize[d], scale: scale[d], mode, coordinates, nearestMode,
    cubicA: float(a, 'cubic_coeff_a', -0.75), excludeOutside: int(a, 'exclude_outside', 0) === 1,
    antialias: int(a, 'antialias', 0) === 1 && mode !== 'nearest', roi: roi[d],
  }));
}

/** Resize every axis of `x` as `axes` plans it (identity axes skipped). */
function resizeAll(x: tf.Tensor, axes: AxisResize[], extrapolation: number): tf.Tensor {
  let y = x;
  axes.forEach((r, d) => {
    const taps = axisTaps(r);
    if (!isIdentity(taps, r.inSize, r.outSize)) y = resizeAxis(y, d, taps, r.outSize, extrapolation);
  });
  return y;
}

function resize(a: OpArgs): tf.Tensor[] {
  const x = need(a, 0);
  const legacy = a.opset < 11;
  const axes = legacy
    ? plan(a, x, values(need(a, 1)), undefined, undefined, true)
    : plan(a, x, given(a, 2), given(a, 3), given(a, 1), false);
  return [resizeAll(x, axes, float(a, 'extrapolation_value', 0))];
}

function upsample(a: OpArgs): tf.Tensor[] {
  const x = need(a, 0);
  const scales = a.opset >= 9 ? values(need(a, 1)) : floats(a, 'scales');
  if (!scales) throw unsupported(a, 'the scales attribute is missing');
  if (scales.some((s) => s < 1)) throw unsupported(a, `scales [${scales.join(', ')}] (Upsample's are at least 1; shrinking is Resize's)`);
  return [resizeAll(x, plan(a, x, scales, undefined, undefined, true), 0)];
}

/** Resizing operators. */
export const resizing: OpTable = {
  Resize: resize,
  Upsample: upsample,
};
