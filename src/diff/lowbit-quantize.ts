/**
 * Codec `l`'s quantizers (src/core/lowbit.ts is the device's decoder): a delta's values to
 * codes of 1 to 8 bits with a scale per group of values (an output channel, a row or the
 * tensor), the scales float16 times one power of two, and what the device will decode. Dense
 * and sparse patches alike; the allocation of bits among tensors is src/lowbit-diff/encoder.ts.
 */
import { fromHalfBits, toHalfBits } from '../core/float16.ts';
import { isLowBitWidth, LOWBIT_EXPONENT_RANGE, type LowBit } from '../core/lowbit.ts';
import { UsageError } from '../core/errors.ts';
import { shapeSize } from '../core/format.ts';

/** How the values of a tensor share scales. */
export type ScaleLayout = 'tensor' | 'first' | 'last';

/** `group` and `count` of a layout on a shape (see {@link LowBit}); null where it does not apply. */
export function scaleLayout(shape: readonly number[], layout: ScaleLayout): { group: number; count: number } | null {
  const n = shapeSize(shape);
  if (layout === 'tensor' || n === 0) return layout === 'tensor' ? { group: Math.max(1, n), count: 1 } : null;
  if (shape.length < 2) return null;
  if (layout === 'first') return { group: n / shape[0], count: shape[0] };
  return { group: 1, count: shape[shape.length - 1] };
}

/** A delta quantized to codec l: the layout and scales, the values the device will decode, their squared error. */
export interface QuantizedDelta {
  lowbit: LowBit;
  /** What the device decodes: `code * scale`, exactly. */
  decoded: Float32Array;
  /** Sum of (delta - decoded)^2. */
  squaredError: number;
}

/** Clipping factors tried for a channel's scale (of its largest |value| / the largest code), 2 bits and up. */
const CLIPS = [1, 0.92, 0.84, 0.76, 0.68, 0.6, 0.52, 0.44];

/**
 * The code of `x` at scale `s` and `bits` bits: its sign with 1 bit, else the nearest integer
 * within the width (+ 0: a code 0 decodes to +0, and Math.round of a small negative value is -0);
 * 0 where the scale is 0.
 */
export function lowBitCode(x: number, s: number, bits: number): number {
  if (bits === 1) return x >= 0 ? 1 : -1;
  const qmax = 2 ** (bits - 1) - 1;
  return s > 0 ? Math.max(-qmax - 1, Math.min(qmax, Math.round(x / s))) + 0 : 0;
}

/**
 * The bounds the hot loops clamp `y = value / scale` to before rounding it to a code of `qmax`:
 * `-qmax - 1.5` (which rounds to the lowest code, ties going up) and the double just below
 * `qmax + 0.5` (which rounds to `qmax`), so rounding within them needs no clamp after and never
 * sees an infinity. Within them `floor(2y) - floor(y)` is `Math.round(y)` exactly (2y and the
 * floors are exact, and their difference is 1 where y's fraction is 1/2 or more), but for the sign
 * of a zero code, which no product or sum here tells apart.
 */
function codeBounds(qmax: number): { below: number; above: number } {
  const h = qmax + 0.5;
  return { below: -qmax - 1.5, above: h - 2 ** (Math.floor(Math.log2(h)) - 52) };
}

/** The float16 bits of `s / 2^e`, rounded, and the scale they stand for. */
export function wireScale(s: number, e: number): { h: number; s: number } {
  const h = toHalfBits(s / 2 ** e);
  return { h, s: fromHalfBits(h) * 2 ** e };
}

/** The power of two a patch's scales share when the largest is `top`: it then fits a float16 with room (0 for no scale). */
export function scaleExponent(top: number): number {
  return top > 0 ? Math.min(LOWBIT_EXPONENT_RANGE[1], Math.max(LOWBIT_EXPONENT_RANGE[0], Math.ceil(Math.log2(top)) - 15)) : 0;
}

/** A width a caller chose: an integer from 1 to 8 (FORMAT.md §4.4), or a UsageError. */
export function checkWidth(bits: unknown, what = 'bits'): asserts bits is number {
  if (!isLowBitWidth(bits)) throw new UsageError(`codec l: ${what} must be an integer from 1 to 8, found ${JSON.stringify(bits)}`, { bits });
}

/**
 * Quantize `delta` at `bits` bits with `count` scales shared by groups of `group` values (value k
 * takes scale `floor(k / group) mod count`). 1 bit: the sign of each value and, per scale, the
 * mean |value| (the scale of least squared error for signs). 2 to 8 bits: symmetric codes, each
 * scale the clipping of least squared error among a few (the largest |value| down to 44% of it).
 * With `weight`, every squared error is weighted by it (a value's importance, e.g. the Fisher
 * information of the model's outputs): the 1-bit scale is the weighted mean |value|, the
 * clipping the one of least weighted error, and `squaredError` is weighted. With `exponent`, the
 * scales share that power of two (it must leave the largest scale within a float16) instead of
 * their own.
 */
export function quantizeLowBit(delta: Float32Array, bits: number, group: number, count: number, weight?: Float32Array, exponent?: number): QuantizedDelta {
  checkWidth(bits);
  const n = delta.length;
  const qmax = bits === 1 ? 1 : 2 ** (bits - 1) - 1;
  // Value k takes scale floor(k / group) mod count: the loops walk the values a group at a time
  // (scale j), so each channel's sums add its values in the order of k, as one loop over k would.
  // This is the encoder's hottest code (every width, layout and outlier option of every tensor):
  // each pass over the values is a small function of its own (channelSums, clippingErrors,
  // decodeCodes), and a code is rounded as floor(2y) - floor(y) within codeBounds, the integer
  // Math.round gives at a third of its cost.
  const maxAbs = new Float64Array(count);
  const sumAbs = new Float64Array(count);
  const num = new Float64Array(count);
  if (weight) weightedChannelSums(delta, group, count, weight, maxAbs, sumAbs, num);
  else channelSums(delta, group, count, maxAbs, sumAbs, num);
  // The ideal scales first, then one exponent so the largest fits a float16 with room.
  const ideal = new Float64Array(count);
  for (let j = 0; j < count; j++) ideal[j] = bits === 1 ? (num[j] ? sumAbs[j] / num[j] : 0) : maxAbs[j] / qmax;
  let top = 0;
  for (let j = 0; j < count; j++) top = Math.max(top, ideal[j]);
  const e = exponent ?? scaleExponent(top);
  const scales = new Uint16Array(count);
  const scale = new Float64Array(count);
  if (bits === 1) {
    for (let j = 0; j < count; j++) ({ h: scales[j], s: scale[j] } = wireScale(ideal[j], e));
  } else {
    // Each clipping's squared error per channel, in one pass over the values per clipping.
    const best = new Float64Array(count).fill(Infinity);
    const trial = new Float64Array(count);
    const err = new Float64Array(count);
    for (const f of CLIPS) {
      for (let j = 0; j < count; j++) trial[j] = wireScale(ideal[j] * f, e).s;
      if (weight) weightedClippingErrors(delta, group, count, trial, qmax, weight, err);
      else clippingErrors(delta, group, count, trial, qmax, err);
      for (let j = 0; j < count; j++) {
        if (err[j] < best[j]) {
          best[j] = err[j];
          ({ h: scales[j], s: scale[j] } = wireScale(ideal[j] * f, e));
        }
      }
    }
  }
  const decoded = new Float32Array(n);
  const squaredError = weight ? weightedDecodeCodes(delta, group, count, scale, bits, qmax, weight, decoded) : decodeCodes(delta, group, count, scale, bits, qmax, decoded);
  return { lowbit: { bits, group, scales, exponent: e }, decoded, squaredError };
}

// The passes of quantizeLowBit, each with and without a weight a value. Without one, a value's
// weight is 1 and every product by it exact, so both versions add the very same numbers. The
// per-channel passes walk one channel at a time (its groups of values in the order of k), so a
// channel's sums stay in registers: with a scale per last axis (group 1) they were read and
// written back at every value.

/** Per channel: the largest |value|, the sum of |value| and the count of values. */
function channelSums(delta: Float32Array, group: number, count: number, maxAbs: Float64Array, sumAbs: Float64Array, num: Float64Array): void {
  const n = delta.length;
  const stride = group * count;
  for (let j = 0; j < count; j++) {
    let m = 0;
    let sum = 0;
    let w = 0;
    for (let from = j * group; from < n; from += stride) {
      const to = Math.min(n, from + group);
      for (let k = from; k < to; k++) {
        const a = Math.abs(delta[k]);
        if (a > m) m = a;
        sum += a;
        w += 1;
      }
    }
    maxAbs[j] = m;
    sumAbs[j] = sum;
    num[j] = w;
  }
}

/** {@link channelSums} with each value weighted: the weighted sum of |value| and the sum of the weights. */
function weightedChannelSums(delta: Float32Array, group: number, count: number, weight: Float32Array, maxAbs: Float64Array, sumAbs: Float64Array, num: Float64Array): void {
  const n = delta.length;
  const stride = group * count;
  for (let j = 0; j < count; j++) {
    let m = 0;
    let sum = 0;
    let w = 0;
    for (let from = j * group; from < n; from += stride) {
      const to = Math.min(n, from + group);
      for (let k = from; k < to; k++) {
        const a = Math.abs(delta[k]);
        const wk = weight[k];
        if (a > m) m = a;
        sum += wk * a;
        w += wk;
      }
    }
    maxAbs[j] = m;
    sumAbs[j] = sum;
    num[j] = w;
  }
}

/** Per channel, the squared error of the codes at the scales `trial` (a scale of 0: every value left out), added to `err`. */
function clippingErrors(delta: Float32Array, group: number, count: number, trial: Float64Array, qmax: number, err: Float64Array): void {
  const n = delta.length;
  const stride = group * count;
  const { below, above } = codeBounds(qmax);
  for (let j = 0; j < count; j++) {
    const sj = trial[j];
    let ej = 0;
    if (group === 1 && sj > 0) {
      // A scale per last axis: the channel's values one stride apart.
      for (let k = j; k < n; k += count) {
        const x = delta[k];
        const y = Math.max(below, Math.min(above, x / sj));
        const q = Math.floor(2 * y) - Math.floor(y);
        const r = x - Math.fround(q * sj);
        ej += r * r;
      }
      err[j] = ej;
      continue;
    }
    for (let from = j * group; from < n; from += stride) {
      const to = Math.min(n, from + group);
      if (sj > 0) {
        for (let k = from; k < to; k++) {
          const x = delta[k];
          const y = Math.max(below, Math.min(above, x / sj));
          const q = Math.floor(2 * y) - Math.floor(y);
          const r = x - Math.fround(q * sj);
          ej += r * r;
        }
      } else {
        for (let k = from; k < to; k++) ej += delta[k] * delta[k];
      }
    }
    err[j] = ej;
  }
}

/** {@link clippingErrors} with each squared error weighted. */
function weightedClippingErrors(delta: Float32Array, group: number, count: number, trial: Float64Array, qmax: number, weight: Float32Array, err: Float64Array): void {
  const n = delta.length;
  const stride = group * count;
  const { below, above } = codeBounds(qmax);
  for (let j = 0; j < count; j++) {
    const sj = trial[j];
    let ej = 0;
    if (group === 1 && sj > 0) {
      // A scale per last axis: the channel's values one stride apart.
      for (let k = j; k < n; k += count) {
        const x = delta[k];
        const y = Math.max(below, Math.min(above, x / sj));
        const q = Math.floor(2 * y) - Math.floor(y);
        const r = x - Math.fround(q * sj);
        ej += weight[k] * (r * r);
      }
      err[j] = ej;
      continue;
    }
    for (let from = j * group; from < n; from += stride) {
      const to = Math.min(n, from + group);
      if (sj > 0) {
        for (let k = from; k < to; k++) {
          const x = delta[k];
          const y = Math.max(below, Math.min(above, x / sj));
          const q = Math.floor(2 * y) - Math.floor(y);
          const r = x - Math.fround(q * sj);
          ej += weight[k] * (r * r);
        }
      } else {
        for (let k = from; k < to; k++) ej += weight[k] * (delta[k] * delta[k]);
      }
    }
    err[j] = ej;
  }
}

/**
 * What the device decodes at the chosen scales, into `decoded`; returns the squared error. The
 * code as lowBitCode computes it, inline: the sign with 1 bit, else the nearest code within the
 * width (+ 0: a code 0 is +0).
 */
function decodeCodes(delta: Float32Array, group: number, count: number, scale: Float64Array, bits: number, qmax: number, decoded: Float32Array): number {
  const n = delta.length;
  const one = bits === 1;
  const { below, above } = codeBounds(qmax);
  let squaredError = 0;
  for (let from = 0, j = 0; from < n; from += group, j = j + 1 === count ? 0 : j + 1) {
    const to = Math.min(n, from + group);
    const sj = scale[j];
    for (let k = from; k < to; k++) {
      const x = delta[k];
      const t = Math.max(below, Math.min(above, x / sj));
      const q = one ? (x >= 0 ? 1 : -1) : sj > 0 ? Math.floor(2 * t) - Math.floor(t) + 0 : 0;
      const y = Math.fround(q * sj);
      decoded[k] = y;
      squaredError += (x - y) * (x - y);
    }
  }
  return squaredError;
}

/** {@link decodeCodes} with each squared error weighted. */
function weightedDecodeCodes(delta: Float32Array, group: number, count: number, scale: Float64Array, bits: number, qmax: number, weight: Float32Array, decoded: Float32Array): number {
  const n = delta.length;
  const one = bits === 1;
  const { below, above } = codeBounds(qmax);
  let squaredError = 0;
  for (let from = 0, j = 0; from < n; from += group, j = j + 1 === count ? 0 : j + 1) {
    const to = Math.min(n, from + group);
    const sj = scale[j];
    for (let k = from; k < to; k++) {
      const x = delta[k];
      const t = Math.max(below, Math.min(above, x / sj));
      const q = one ? (x >= 0 ? 1 : -1) : sj > 0 ? Math.floor(2 * t) - Math.floor(t) + 0 : 0;
      const y = Math.fround(q * sj);
      decoded[k] = y;
      squaredError += weight[k] * ((x - y) * (x - y));
    }
  }
  return squaredError;
}

/**
 * Quantize a sparse patch's values (at `positions` of a tensor of `size` values) as
 * {@link quantizeLowBit} does a dense one: value k takes the scale of its position,
 * `floor(positions[k] / group) mod count`, so `group` and `count` name the same channels as
 * a dense patch's layout. `decoded` and `squaredError` are the values' alone.
 */
export function quantizeSparseLowBit(values: Float32Array, positions: Uint32Array, size: number, bits: number, group: number, count: number): QuantizedDelta {
  checkWidth(bits);
  // The values in place in the tensor, weighted 1 where they are and 0 elsewhere: the other
  // positions then move no scale (their zeros set no maximum, and weigh nothing in the errors).
  const dense = new Float32Array(size);
  const weight = new Float32Array(size);
  for (let k = 0; k < positions.length; k++) {
    dense[positions[k]] = values[k];
    weight[positions[k]] = 1;
  }
  const q = quantizeLowBit(dense, bits, group, count, weight);
  const decoded = new Float32Array(values.length);
  for (let k = 0; k < positions.length; k++) decoded[k] = q.decoded[positions[k]];
  return { lowbit: q.lowbit, decoded, squaredError: q.squaredError };
}
