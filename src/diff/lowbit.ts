/**
 * Post-hoc low-bit diffs (`ndiff diff --method lowbit`): every weight of the delta `target - base`
 * carried at 1 to 8 bits with a scale per output channel (or per row, or one per tensor), codec
 * `l` of format v6 (src/core/lowbit.ts), the bit width and scale layout of each tensor chosen to
 * spend the byte budget where it removes the most squared error (mixed precision).
 *
 * A fine-tuned model moves every weight a little; top-k spends its bytes on a few positions at 8
 * bits or more. Here every position is carried, coarsely: a delta's sign and a scale per channel
 * (1 bit, BitDelta's code) already carry most of a fine-tune.
 *
 * The error measure is the squared error in weight space (no data needed): each tensor's options
 * (0 bits, or a layout and a width) are points of bytes against error, and a Lagrangian search
 * picks, for one price per byte, the option of each tensor with the least error + price x bytes,
 * the price set so the payload fits; the bytes left then buy the upgrades that remove the most
 * error per byte. The payload is built and measured, and the search repeated with less room
 * when the estimate of the msgpack framing fell short.
 */
import { BudgetError } from '../core/errors.ts';
import { fromHalfBits, toHalfBits } from '../core/float16.ts';
import type { Hasher } from '../core/hasher.ts';
import { LOWBIT_EXPONENT_RANGE, lowBitBytes, type LowBit } from '../core/lowbit.ts';
import { shapeSize } from '../core/format.ts';
import type { WeightStore } from '../core/weight-store.ts';
import { confirmPayload } from './confirm.ts';
import { baseDigests, buildPayload, payloadSize, storageGrids, withoutStore, type BuiltPayload, type HeaderOptions, type PatchSpec } from './build.ts';
import { modelDelta, squaredError, type TopkOptions, type TopkResult } from './topk.ts';

/** The bit widths the allocator chooses from (7 would rarely pay over 6 and 8). */
export const LOWBIT_WIDTHS: readonly number[] = [1, 2, 3, 4, 5, 6, 8];

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

/** The float16 bits of `s / 2^e`, rounded, and the scale they stand for. */
function wireScale(s: number, e: number): { h: number; s: number } {
  const h = toHalfBits(s / 2 ** e);
  return { h, s: fromHalfBits(h) * 2 ** e };
}

/**
 * Quantize `delta` at `bits` bits with `count` scales shared by groups of `group` values (value k
 * takes scale `floor(k / group) mod count`). 1 bit: the sign of each value and, per scale, the
 * mean |value| (the scale of least squared error for signs). 2 to 8 bits: symmetric codes, each
 * scale the clipping of least squared error among a few (the largest |value| down to 44% of it).
 */
export function quantizeLowBit(delta: Float32Array, bits: number, group: number, count: number): QuantizedDelta {
  const n = delta.length;
  const qmax = bits === 1 ? 1 : 2 ** (bits - 1) - 1;
  const qmin = bits === 1 ? -1 : -(2 ** (bits - 1));
  const chan = (k: number) => Math.floor(k / group) % count;
  // The code of x at scale s, 2 bits and up (+ 0: a code 0 decodes to +0, and Math.round of a
  // small negative value is -0).
  const code = (x: number, s: number) => (s > 0 ? Math.max(qmin, Math.min(qmax, Math.round(x / s))) + 0 : 0);
  const maxAbs = new Float64Array(count);
  const sumAbs = new Float64Array(count);
  const num = new Float64Array(count);
  for (let k = 0; k < n; k++) {
    const j = chan(k);
    const a = Math.abs(delta[k]);
    if (a > maxAbs[j]) maxAbs[j] = a;
    sumAbs[j] += a;
    num[j]++;
  }
  // The ideal scales first, then one exponent so the largest fits a float16 with room.
  const ideal = new Float64Array(count);
  for (let j = 0; j < count; j++) ideal[j] = bits === 1 ? (num[j] ? sumAbs[j] / num[j] : 0) : maxAbs[j] / qmax;
  let top = 0;
  for (let j = 0; j < count; j++) top = Math.max(top, ideal[j]);
  const e = top > 0 ? Math.min(LOWBIT_EXPONENT_RANGE[1], Math.max(LOWBIT_EXPONENT_RANGE[0], Math.ceil(Math.log2(top)) - 15)) : 0;
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
      for (let k = 0; k < n; k++) {
        const j = chan(k);
        const s = trial[j];
        err[j] += (delta[k] - Math.fround(code(delta[k], s) * s)) ** 2;
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
  for (let k = 0; k < n; k++) {
    const s = scale[chan(k)];
    const q = bits === 1 ? (delta[k] >= 0 ? 1 : -1) : code(delta[k], s);
    decoded[k] = q * s;
    squaredError += (delta[k] - decoded[k]) ** 2;
  }
  return { lowbit: { bits, group, scales, exponent: e }, decoded, squaredError };
}

/** One tensor's choice: its bytes (estimated framing included) and the squared error it leaves. */
interface Option {
  bits: number;
  layout: ScaleLayout | null;
  bytes: number;
  error: number;
}

/** A tensor's share of the search: its options, cheapest first, on their lower convex hull. */
interface TensorOptions {
  name: string;
  options: Option[];
}

/** Bytes of msgpack framing a dense codec-l patch adds to its codes and scales (name, shape, digests, keys). */
function framing(name: string, shape: readonly number[]): number {
  return 72 + new TextEncoder().encode(name).length + 5 * shape.length;
}

/** The options on the lower convex hull of (bytes, error), cheapest first. */
function hull(options: Option[]): Option[] {
  const sorted = [...options].sort((a, b) => a.bytes - b.bytes || a.error - b.error);
  const out: Option[] = [];
  for (const o of sorted) {
    if (out.length && o.error >= out[out.length - 1].error) continue;
    while (out.length >= 2) {
      const [a, b] = [out[out.length - 2], out[out.length - 1]];
      // b is above the line from a to o: never the best at any price.
      if ((b.error - a.error) * (o.bytes - a.bytes) >= (o.error - a.error) * (b.bytes - a.bytes)) out.pop();
      else break;
    }
    out.push(o);
  }
  return out;
}

/** Per tensor, the option chosen at `price` (error + price x bytes least). */
function choose(tensors: TensorOptions[], price: number): number[] {
  return tensors.map((t) => {
    let best = 0;
    for (let i = 1; i < t.options.length; i++) {
      const [a, b] = [t.options[best], t.options[i]];
      if (b.error + price * b.bytes < a.error + price * a.bytes) best = i;
    }
    return best;
  });
}

/**
 * The option of each tensor within `room` bytes (estimated): the lowest price whose choices fit,
 * then upgrades along each tensor's hull while bytes are left, the most error removed per byte first.
 */
export function allocate(tensors: TensorOptions[], room: number): number[] {
  const total = (picks: number[]) => picks.reduce((s, p, i) => s + tensors[i].options[p].bytes, 0);
  let lo = 0;
  let hi = 1;
  while (total(choose(tensors, hi)) > room && hi < 1e300) hi *= 16;
  let picks = choose(tensors, hi);
  if (total(picks) > room) picks = tensors.map(() => 0);
  for (let it = 0; it < 200 && hi > 0; it++) {
    const mid = lo === 0 ? hi / 16 : Math.sqrt(lo * hi);
    if (mid <= 0 || mid === hi) break;
    const p = choose(tensors, mid);
    if (total(p) <= room) {
      hi = mid;
      picks = p;
    } else lo = mid;
    if (lo > 0 && hi / lo < 1 + 1e-9) break;
  }
  let left = room - total(picks);
  for (;;) {
    let bestI = -1;
    let bestQ = -1;
    let bestRate = 0;
    for (let i = 0; i < tensors.length; i++) {
      const o = tensors[i].options;
      const p = picks[i];
      for (let q = p + 1; q < o.length; q++) {
        const extra = o[q].bytes - o[p].bytes;
        if (extra > left) break;
        const rate = (o[p].error - o[q].error) / extra;
        if (rate > bestRate) {
          bestRate = rate;
          bestI = i;
          bestQ = q;
        }
      }
    }
    if (bestI < 0) break;
    left -= tensors[bestI].options[bestQ].bytes - tensors[bestI].options[picks[bestI]].bytes;
    picks[bestI] = bestQ;
  }
  return picks;
}

export interface LowBitOptions extends Omit<TopkOptions, 'codec'> {
  /** The widths to choose from (default {@link LOWBIT_WIDTHS}); one width for every tensor with `[b]`. */
  widths?: readonly number[];
  /** The scale layouts to choose from (default all three). */
  layouts?: readonly ScaleLayout[];
  /**
   * The error of carrying `delta` for tensor `name` instead of its whole change, measured on the
   * model's outputs (every other tensor at the target): e.g. the mean squared difference from the
   * target's outputs on calibration inputs. Without it the error is the squared error of the
   * weights. Called once per tensor and option (about 20 a tensor).
   */
  measure?: (name: string, delta: Float32Array) => number;
  /**
   * The error of the whole model carrying `deltas` (tensors not in it stay at the base), measured
   * on its outputs: with it the weight-space allocation is improved by a local search, one
   * tensor's choice changed at a time, each change measured with every other tensor at its current
   * choice (the errors of tensors measured alone do not add up). Called once per option of every
   * tensor per step (about 20 x tensors).
   */
  measureModel?: (deltas: ReadonlyMap<string, Float32Array>) => number;
}

/**
 * A local search from `start` (the weight-space allocation) within `room`: each step tries every
 * other option of every tensor that fits the bytes left, measures the model with that one change,
 * and keeps the change that lowers the error most; it stops when none does. Starting from a point
 * where every tensor carries something matters: one tensor's change alone barely moves the
 * outputs, so upgrades bought from nothing are myopic.
 */
function improveJointly(tensors: TensorOptions[], room: number, start: number[], errorOf: (picks: number[]) => number): number[] {
  const picks = start.slice();
  const bytes = (p: number[]) => p.reduce((s, q, i) => s + tensors[i].options[q].bytes, 0);
  let current = errorOf(picks);
  for (let step = 0; step < 64; step++) {
    const left = room - bytes(picks);
    let best: { i: number; q: number; error: number } | null = null;
    for (let i = 0; i < tensors.length; i++) {
      const o = tensors[i].options;
      for (let q = 0; q < o.length; q++) {
        if (q === picks[i] || o[q].bytes - o[picks[i]].bytes > left) continue;
        const trial = picks.slice();
        trial[i] = q;
        const error = errorOf(trial);
        if (error < (best ? best.error : current)) best = { i, q, error };
      }
    }
    if (!best) break;
    picks[best.i] = best.q;
    current = best.error;
  }
  return picks;
}

export interface LowBitResult extends TopkResult {
  /** Per patched tensor: its width, scale layout and bytes of codes and scales. */
  allocation: { name: string; bits: number; layout: ScaleLayout; bytes: number }[];
}

/** The post-hoc low-bit payload from `base` to `target` within `options.budgetBytes`. */
export function lowbitDiff(hasher: Hasher, base: WeightStore, target: WeightStore, options: LowBitOptions): LowBitResult {
  return lowbitFromDeltas(hasher, base, modelDelta(base, target), options);
}

/** {@link lowbitDiff} from precomputed deltas (ONNX models: onnxDeltas). */
export function lowbitFromDeltas(hasher: Hasher, base: WeightStore, deltas: ReadonlyMap<string, Float32Array>, options: LowBitOptions): LowBitResult {
  const shapes = new Map(base.list().map((t) => [t.name, t.shape] as const));
  const { widths = LOWBIT_WIDTHS, layouts = ['tensor', 'first', 'last'], measure, measureModel: joint, ...headerOptions } = options;
  const header: HeaderOptions = { ...withoutStore(headerOptions), method: 'lowbit', budgetBytes: options.budgetBytes, grids: storageGrids(base, options.store) };
  const empty = payloadSize([], shapes, header);
  if (empty > options.budgetBytes) throw new BudgetError(`a budget of ${options.budgetBytes} bytes is smaller than an empty payload's header: raise the budget`, { budget: options.budgetBytes, min: empty });
  // Every option of every changed tensor, quantized once (the search only compares numbers).
  const names = [...deltas.keys()].sort();
  const tensors: TensorOptions[] = [];
  const quantized = new Map<string, QuantizedDelta>();
  let changed = 0;
  let changeSquared = 0;
  const changedIn = new Map<string, number>();
  for (const name of names) {
    const d = deltas.get(name) as Float32Array;
    let sq = 0;
    let nz = 0;
    for (let i = 0; i < d.length; i++) if (d[i] !== 0) (sq += d[i] * d[i]), nz++;
    changed += nz;
    changeSquared += sq;
    changedIn.set(name, nz);
    if (!nz) continue;
    const shape = shapes.get(name) as readonly number[];
    const choices: Option[] = [{ bits: 0, layout: null, bytes: 0, error: measure ? measure(name, new Float32Array(d.length)) : sq }];
    const seen = new Set<string>();
    for (const layout of layouts) {
      const l = scaleLayout(shape, layout);
      if (!l || seen.has(`${l.group}/${l.count}`)) continue;
      seen.add(`${l.group}/${l.count}`);
      for (const bits of widths) {
        const q = quantizeLowBit(d, bits, l.group, l.count);
        quantized.set(`${name}\u0000${layout}\u0000${bits}`, q);
        choices.push({ bits, layout, bytes: lowBitBytes(d.length, bits) + 2 * l.count + framing(name, shape), error: measure ? measure(name, q.decoded) : q.squaredError });
      }
    }
    // Jointly measured, options are tried by size (errors measured alone are no guide to a hull).
    tensors.push({ name, options: joint ? choices.sort((a, b) => a.bytes - b.bytes || a.error - b.error) : hull(choices) });
  }
  const specsOf = (picks: number[]): PatchSpec[] =>
    picks.flatMap((p, i) => {
      const o = tensors[i].options[p];
      if (!o.bits) return [];
      const q = quantized.get(`${tensors[i].name}\u0000${o.layout}\u0000${o.bits}`) as QuantizedDelta;
      return [{ kind: 'dense' as const, name: tensors[i].name, values: q.decoded, codec: 'l' as const, lowbit: q.lowbit }];
    });
  // The framing estimate is close, not exact: build, measure, and search again with less room if over.
  let room = options.budgetBytes - empty;
  const decodedOf = (i: number, p: number): Float32Array | null => {
    const o = tensors[i].options[p];
    return o.bits ? (quantized.get(`${tensors[i].name}\u0000${o.layout}\u0000${o.bits}`) as QuantizedDelta).decoded : null;
  };
  const errorOf = (picks: number[]): number => {
    const carried = new Map<string, Float32Array>();
    picks.forEach((p, i) => {
      const d = decodedOf(i, p);
      if (d) carried.set(tensors[i].name, d);
    });
    return (joint as NonNullable<typeof joint>)(carried);
  };
  const allocateIn = (r: number) => (joint ? improveJointly(tensors, r, allocate(tensors, r), errorOf) : allocate(tensors, r));
  let picks = allocateIn(room);
  for (let attempt = 0; ; attempt++) {
    const size = payloadSize(specsOf(picks), shapes, header);
    if (size <= options.budgetBytes || attempt >= 12) break;
    room -= size - options.budgetBytes + 8 * (attempt + 1);
    picks = room > 0 ? allocateIn(room) : tensors.map(() => 0);
  }
  const specs = specsOf(picks);
  const built: BuiltPayload = buildPayload(hasher, base, specs, header, baseDigests(hasher, base));
  const allocation: LowBitResult['allocation'] = [];
  tensors.forEach((t, i) => {
    const o = t.options[picks[i]];
    if (o.bits) allocation.push({ name: t.name, bits: o.bits, layout: o.layout as ScaleLayout, bytes: o.bytes - framing(t.name, shapes.get(t.name) as readonly number[]) });
  });
  const kept = allocation.reduce((s, a) => s + (changedIn.get(a.name) as number), 0);
  // Measured on what the device will hold (a stored grid rounds the sums), as top-k measures it.
  const error = squaredError(deltas, base, built);
  options.onProgress?.(`lowbit: ${allocation.length} of ${tensors.length} changed tensors carried (${describeWidths(allocation)}), ${built.bytes.length} bytes (squared error ${error.toExponential(3)} of ${changeSquared.toExponential(3)})`);
  confirmPayload(hasher, base, built);
  return { ...built, kept, changed, codec: 'l', squaredError: error, changeSquared, allocation };
}

/** "3 x 1 bit, 2 x 4 bits" */
function describeWidths(allocation: LowBitResult['allocation']): string {
  const by = new Map<number, number>();
  for (const a of allocation) by.set(a.bits, (by.get(a.bits) ?? 0) + 1);
  return [...by].sort((a, b) => a[0] - b[0]).map(([b, k]) => `${k} x ${b} bit${b > 1 ? 's' : ''}`).join(', ') || 'none';
}
