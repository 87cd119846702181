/**
 * Low-bit codes on a quantized store: a tensor the device stores on an integer grid (TF.js
 * uint8/uint16 with a scale and a min, ONNX int8/uint8 with a scale and a zero point) keeps its
 * change as codec-l codes whose every scale is a **whole number of grid steps** m. The device adds
 * `code × scale` and rounds the sum onto the grid (FORMAT.md §5.1) as it does for every grid
 * patch: the scale's float16 misses m steps by at most a quarter step over the largest code, so the
 * stored integer changes by exactly `code × m`, clamped to the grid's range.
 *
 * Scales that are fractions of a step (what {@link quantizeLowBit} picks for a float change) lose
 * to the rounding: a change under half a step vanishes, and codes 1 and 2 at 0.7 steps both land
 * one step away. Here each code is chosen on the grid the device will hold, and the error is
 * measured after the rounding.
 */
import { UsageError } from '../core/errors.ts';
import { affineStep, snapValue, stepRange, type IntegerGrid } from '../core/grid.ts';
import { checkWidth, scaleExponent, wireScale, type QuantizedDelta } from '../diff/lowbit-quantize.ts';

/** A delta quantized to whole grid steps: {@link QuantizedDelta} and each scale's number of steps. */
export interface GridQuantizedDelta extends QuantizedDelta {
  /** Each scale's whole number of grid steps (0: the channel is left as it is). */
  steps: Int32Array;
  /** What the device holds after rounding onto the grid, less the base: the change it makes. */
  change: Float32Array;
}

/** Multiples of a channel's largest change over the largest code tried for its step count, 2 bits and up. */
const CLIPS = [1, 0.92, 0.84, 0.76, 0.68, 0.6, 0.52, 0.44];
/** How far (in grid steps) a scale's float16 may miss its whole steps over the largest code: far from the half step where rounding would turn. */
const SLACK = 0.25;

/**
 * The grid step ({@link affineStep}) of every base value: the integer the device stores, less the
 * zero point on an ONNX grid.
 *
 * @throws UsageError when a base value is not on the grid (the store's values are the grid's, so
 *   the base given is not the model the device holds).
 */
export function gridSteps(w0: Float32Array, grid: IntegerGrid, name = 'tensor'): Int32Array {
  const q = new Int32Array(w0.length);
  for (let i = 0; i < w0.length; i++) {
    if (!Object.is(snapValue(w0[i], grid), w0[i])) {
      throw new UsageError(`${name}: grid codes need the base as the device stores it, on its ${grid.dtype} grid; value ${i} is ${w0[i]}, off the grid: pass the quantized model's own store (or store: 'float32' to widen the tensor)`, { tensor: name, index: i });
    }
    q[i] = affineStep(w0[i], grid);
  }
  return q;
}

/**
 * Quantize `delta` of a tensor whose base `w0` is on the integer grid `grid` to codes of `bits`
 * bits with `count` scales shared by groups of `group` values (value k takes scale
 * `floor(k / group) mod count`, as {@link quantizeLowBit}), every scale a whole number of grid
 * steps. Each channel's step count is the one of least (weighted) squared error after the
 * device's rounding among a few: 1 bit, the mean |change| in steps and its neighbours; more bits,
 * the whole numbers either side of the largest |change| over the largest code and of fractions of
 * it. A code may step past an end of the grid's range, where the device clamps: the stored
 * integer then lands on the end, the nearest stored value to a change beyond it.
 *
 * `decoded` is what the device decodes (`code × scale`, exactly); `squaredError` is measured on
 * what it holds after rounding onto the grid.
 */
export function quantizeOnGrid(delta: Float32Array, w0: Float32Array, grid: IntegerGrid, bits: number, group: number, count: number, weight?: Float32Array, steps?: Int32Array, name?: string): GridQuantizedDelta {
  checkWidth(bits);
  if (w0.length !== delta.length) throw new UsageError(`grid codes: the base has ${w0.length} values and the change ${delta.length}: expected one change a base value`);
  const q = steps ?? gridSteps(w0, grid, name);
  const n = delta.length;
  const [lo, hi] = stepRange(grid);
  const gs = grid.scale;
  const mn = 'min' in grid ? grid.min : 0;
  const qmax = bits === 1 ? 1 : 2 ** (bits - 1) - 1;
  const cmin = bits === 1 ? -1 : -qmax - 1;
  // Each value's wanted change in grid steps (fractional), from its base's step.
  const t = new Float64Array(n);
  for (let k = 0; k < n; k++) t[k] = (w0[k] + delta[k] - mn) / gs - q[k];
  // A code for t at m steps a code unit: the sign with 1 bit; else the nearest code. Past an end
  // of the range the device clamps, which lands on the end: the nearest stored value to a target
  // beyond it.
  const codeOf = (k: number, m: number): number => {
    if (bits === 1) return t[k] >= 0 ? 1 : -1;
    if (m === 0) return 0;
    const c = Math.round(t[k] / m);
    return (c < cmin ? cmin : c > qmax ? qmax : c) + 0;
  };
  // The step the device lands on: q + code × m, clamped to the range.
  const landed = (k: number, c: number, m: number): number => {
    const s = q[k] + c * m;
    return (s < lo ? lo : s > hi ? hi : s) - q[k];
  };
  // Candidate step counts per channel.
  const maxAbs = new Float64Array(count);
  const sumAbs = new Float64Array(count);
  const num = new Float64Array(count);
  for (let from = 0, j = 0; from < n; from += group, j = j + 1 === count ? 0 : j + 1) {
    for (let k = from, to = Math.min(n, from + group); k < to; k++) {
      const a = Math.abs(t[k]);
      const wk = weight ? weight[k] : 1;
      if (a > maxAbs[j]) maxAbs[j] = a;
      sumAbs[j] += wk * a;
      num[j] += wk;
    }
  }
  const candidates: number[][] = [];
  let top = 0;
  for (let j = 0; j < count; j++) {
    const set = new Set<number>();
    if (bits === 1) {
      const m0 = Math.round(num[j] ? sumAbs[j] / num[j] : 0);
      for (const m of [m0 - 1, m0, m0 + 1]) if (m >= 0) set.add(m);
    } else {
      // Both whole numbers around each clipping's step (a step count is coarse where it is small).
      for (const f of CLIPS) for (const m of [Math.floor((maxAbs[j] * f) / qmax), Math.ceil((maxAbs[j] * f) / qmax)]) set.add(Math.max(1, m));
    }
    const c = [...set].sort((a, b) => a - b);
    candidates.push(c);
    top = Math.max(top, c[c.length - 1] * gs);
  }
  const e = scaleExponent(top);
  const wideCode = Math.max(-cmin, qmax);
  const scales = new Uint16Array(count);
  const scale = new Float64Array(count);
  const chosen = new Int32Array(count);
  const best = new Float64Array(count).fill(Infinity);
  for (let j = 0; j < count; j++) {
    for (const m of candidates[j]) {
      const w = wireScale(m * gs, e);
      // A scale whose float16 strays too far from m steps could round onto another step: not offered.
      if (m > 0 && Math.abs(w.s / gs - m) * wideCode > SLACK) continue;
      let err = 0;
      for (let from = j * group; from < n; from += group * count) {
        for (let k = from, to = Math.min(n, from + group); k < to; k++) {
          const r = t[k] - landed(k, codeOf(k, m), m);
          err += (weight ? weight[k] : 1) * r * r;
        }
      }
      if (err < best[j]) [best[j], chosen[j], scales[j], scale[j]] = [err, m, w.h, w.s];
    }
    // No step count held (a scale beyond the float16's reach at whole steps): the channel stays as it is.
    if (best[j] === Infinity) [chosen[j], scales[j], scale[j]] = [0, 0, 0];
  }
  const decoded = new Float32Array(n);
  for (let from = 0, j = 0; from < n; from += group, j = j + 1 === count ? 0 : j + 1) {
    for (let k = from, to = Math.min(n, from + group); k < to; k++) decoded[k] = codeOf(k, chosen[j]) * scale[j];
  }
  // Measured on what the device holds: the sum in float32, rounded onto the grid.
  const change = roundedChange(w0, decoded, grid);
  return { lowbit: { bits, group, scales, exponent: e }, decoded, squaredError: squaredFrom(delta, change, weight), steps: chosen, change };
}

/** What adding `change` to `w0` changes once the device rounds the float32 sum onto the grid. */
export function roundedChange(w0: Float32Array, change: Float32Array, grid: IntegerGrid): Float32Array {
  return Float32Array.from(w0, (w, k) => snapValue(Math.fround(w + change[k]), grid) - w);
}

/** The (weighted) squared error of `carried` from `delta`. */
export function squaredFrom(delta: Float32Array, carried: Float32Array, weight?: Float32Array): number {
  let e = 0;
  // Two loops, the weight's test out of the one run on every value (a weight of 1 changes no product).
  if (weight) {
    for (let k = 0; k < delta.length; k++) {
      const r = delta[k] - carried[k];
      e += weight[k] * (r * r);
    }
  } else {
    for (let k = 0; k < delta.length; k++) {
      const r = delta[k] - carried[k];
      e += r * r;
    }
  }
  return e;
}

/**
 * The whole step count of each scale of a codec-l patch on an integer grid, or null when a scale
 * is not within {@link SLACK} steps (over its largest code) of a whole number of steps: codes
 * {@link quantizeOnGrid} did not make.
 */
export function wholeSteps(scales: Float64Array, grid: IntegerGrid, bits: number): Int32Array | null {
  const wide = bits === 1 ? 1 : 2 ** (bits - 1);
  const out = new Int32Array(scales.length);
  for (let j = 0; j < scales.length; j++) {
    const m = Math.round(scales[j] / grid.scale);
    if (Math.abs(scales[j] / grid.scale - m) * wide > SLACK) return null;
    out[j] = m;
  }
  return out;
}

export { SLACK as GRID_CODE_SLACK };
