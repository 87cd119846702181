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
  const lo = -qmax - 1;
  // Value k takes scale floor(k / group) mod count: the loops walk the values a group at a time
  // (scale j), so each channel's sums add its values in the order of k, as one loop over k would.
  // This is the encoder's hottest loop (every width, layout and outlier option of every tensor):
  // the code is computed inline, as lowBitCode does.
  const maxAbs = new Float64Array(count);
  const sumAbs = new Float64Array(count);
  const num = new Float64Array(count);
  for (let from = 0, j = 0; from < n; from += group, j = j + 1 === count ? 0 : j + 1) {
    const to = Math.min(n, from + group);
    let m = maxAbs[j];
    let sum = sumAbs[j];
    let w = num[j];
    for (let k = from; k < to; k++) {
      const a = Math.abs(delta[k]);
      const wk = weight ? weight[k] : 1;
      if (a > m) m = a;
      sum += wk * a;
      w += wk;
    }
    maxAbs[j] = m;
    sumAbs[j] = sum;
    num[j] = w;
  }
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
      err.fill(0);
      for (let from = 0, j = 0; from < n; from += group, j = j + 1 === count ? 0 : j + 1) {
        const to = Math.min(n, from + group);
        const sj = trial[j];
        let ej = err[j];
        if (sj > 0 && !weight) {
          for (let k = from; k < to; k++) {
            const x = delta[k];
            const q = Math.max(lo, Math.min(qmax, Math.round(x / sj)));
            const r = x - Math.fround(q * sj);
            ej += r * r;
          }
        } else if (sj > 0) {
          for (let k = from; k < to; k++) {
            const x = delta[k];
            const q = Math.max(lo, Math.min(qmax, Math.round(x / sj)));
            ej += (weight as Float32Array)[k] * (x - Math.fround(q * sj)) ** 2;
          }
        } else {
          for (let k = from; k < to; k++) ej += (weight ? weight[k] : 1) * (delta[k] - 0) ** 2;
        }
        err[j] = ej;
      }
      for (let j = 0; j < count; j++) {
        if (err[j] < best[j]) {
          best[j] = err[j];
          ({ h: scales[j], s: scale[j] } = wireScale(ideal[j] * f, e));
        }
      }
    }
  }
  const decoded = new Float32Array(n);
  let squaredError = 0;
  for (let from = 0, j = 0; from < n; from += group, j = j + 1 === count ? 0 : j + 1) {
    const to = Math.min(n, from + group);
    const sj = scale[j];
    for (let k = from; k < to; k++) {
      const x = delta[k];
      // lowBitCode, inline: the sign with 1 bit, else the nearest code within the width (+ 0: a code 0 is +0).
      const q = bits === 1 ? (x >= 0 ? 1 : -1) : sj > 0 ? Math.max(lo, Math.min(qmax, Math.round(x / sj))) + 0 : 0;
      decoded[k] = q * sj;
      squaredError += (weight ? weight[k] : 1) * (x - decoded[k]) ** 2;
    }
  }
  return { lowbit: { bits, group, scales, exponent: e }, decoded, squaredError };
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
