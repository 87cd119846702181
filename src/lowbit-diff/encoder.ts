/**
 * Post-hoc low-bit diffs (`ndiff diff --method lowbit`): every changed tensor of the delta
 * `target - base` carried at 1 to 8 bits with a scale per output channel (or per row, or one per
 * tensor), codec `l` of format v6 (src/core/lowbit.ts), or as low-rank factors of its change with a
 * width per singular direction (codec `l` on factors);
 * each tensor's choice made to spend the byte budget where it removes the most error (mixed
 * precision).
 *
 * A fine-tuned model moves every weight a little; top-k spends its bytes on a few positions at 8
 * bits or more. Here every position is carried, coarsely: a delta's sign and a scale per channel
 * (1 bit, BitDelta's code) already carry most of a fine-tune.
 *
 * The error measure needs no data: each tensor's squared error, relative to its norm by default
 * (or weighted by a given importance). Each tensor's options (0 bits, a layout and a width, or a
 * rank) are points of bytes against error, and {@link allocate} picks the combination of least
 * total error within the room (a knapsack solved by dynamic programming). The payload is built and
 * measured, and the search repeated with less room when the estimate of the msgpack framing fell
 * short.
 */
import { BudgetError, UsageError } from '../core/errors.ts';
import { fromHalfBits, toHalfBits } from '../core/float16.ts';
import type { Hasher } from '../core/hasher.ts';
import { lowBitBytes, type LowBit, type LowBitFactors } from '../core/lowbit.ts';
import { matrixDims } from '../core/format.ts';
import { encodeValues } from '../core/values.ts';
import { encodePositions } from '../core/encode.ts';
import { factorize } from '../diff/factorize.ts';
import { isIntegerGrid } from '../core/grid.ts';
import { gridSteps, quantizeOnGrid, roundedChange, squaredFrom } from './grid-codes.ts';
import { inverseCholesky, outputError, relativeOutput, roundAgainstInputs, type InputMoments } from './gptq.ts';
import { keep, keptFromBase, LowBitCache } from './cache.ts';
import { allocate, improveJointly } from './allocate.ts';
import { checkWidth, quantizeLowBit, scaleExponent, scaleLayout, type QuantizedDelta, type ScaleLayout } from '../diff/lowbit-quantize.ts';

export { lowBitCode, quantizeLowBit, quantizeSparseLowBit, scaleExponent, scaleLayout, wireScale, type QuantizedDelta, type ScaleLayout } from '../diff/lowbit-quantize.ts';

export { allocate } from './allocate.ts';

export { LowBitCache } from './cache.ts';
import type { WeightStore } from '../core/weight-store.ts';
import { confirmPayload } from '../diff/confirm.ts';
import { baseDigests, buildPayload, payloadSize, storageGrids, withoutStore, type BuiltPayload, type HeaderOptions, type PatchSpec } from '../diff/build.ts';
import { modelDelta, squaredError } from '../diff/delta.ts';
import type { TopkOptions, TopkResult } from '../topk-diff/encoder.ts';

/**
 * The bit widths the allocator chooses from. A large tensor's step from one width to the next
 * costs an eighth of its values in bytes: without 7, Silero v6's calibrated payload at 10% left
 * 27 KB of its 232 KB unspent (6 to 8 bits did not fit).
 */
export const LOWBIT_WIDTHS: readonly number[] = [1, 2, 3, 4, 5, 6, 7, 8];

/** Low-rank factors rounded to int8 as the payload builder rounds them (one scale for U and V together). */
export function int8Factors(u: Float32Array, v: Float32Array): { u: Float32Array; v: Float32Array } {
  const uv = new Float32Array(u.length + v.length);
  uv.set(u);
  uv.set(v, u.length);
  const enc = encodeValues(uv, 'i8');
  if (!enc) return { u, v };
  return { u: enc.decoded.subarray(0, u.length), v: enc.decoded.subarray(u.length) };
}

/** One tensor's choice: its bytes (estimated framing included) and the squared error it leaves. */
interface Option {
  /** Bits a code (0: the change left out; 8 for low-rank factors, int8). */
  bits: number;
  layout: ScaleLayout | null;
  /** A low-rank option: the rank of its factors (codec l, a width a direction). */
  rank?: number;
  /** Codes with this many of the largest changes carried apart at float16 (a composite patch). */
  outliers?: number;
  /** Codes of the tensor's new values, not of its change (kind `n`). */
  replace?: boolean;
  bytes: number;
  error: number;
}

/** A tensor's share of the search: every option, cheapest first. */
interface TensorOptions {
  name: string;
  options: Option[];
}

/** Bytes of msgpack framing a dense codec-l patch adds to its codes and scales (name, shape, digests, keys). */
function framing(name: string, shape: readonly number[]): number {
  return 72 + new TextEncoder().encode(name).length + 5 * shape.length;
}

/** One option's carried change: codec-l codes, or low-rank factors before their int8 rounding (the payload builder rounds them). */
/** `change`: on an integer grid, what the device holds after rounding less the base (else `decoded` is the change). */
type Carried = { decoded: Float32Array; squaredError: number; change?: Float32Array } & ({ lowbit: LowBit; factors?: undefined; outliers?: Outliers; newValues?: Float32Array } | { lowbit?: undefined; factors: QuantizedFactors; outliers?: undefined; newValues?: undefined });

/** The largest changes of a tensor carried apart from its codes: positions, float16 values, and what the codes alone decode to. */
export interface Outliers {
  positions: Uint32Array;
  values: Float32Array;
  codes: Float32Array;
}

/** Positions by |change| (weighted by the importance's square root), largest first. */
export function outlierOrder(delta: Float32Array, weight?: Float32Array): Uint32Array {
  const size = Float64Array.from(delta, (d, i) => Math.abs(d) * (weight ? Math.sqrt(weight[i]) : 1));
  return Uint32Array.from({ length: delta.length }, (_, i) => i).sort((a, b) => size[b] - size[a] || a - b);
}

/** Shares of a tensor's values offered as float16 outliers beside its codes. */
const OUTLIER_SHARES = [0.002, 0.01, 0.03];

/**
 * `delta` at `bits` bits with its `m` largest changes (by |value|, weighted by the importance)
 * carried apart at float16: the codes and scales fit the rest, the outliers ride in a sparse part
 * whose value joins the code's before the weight is written (a composite patch, FORMAT.md 5.2).
 * Null when a value overflows float16.
 */
export function quantizeWithOutliers(delta: Float32Array, bits: number, group: number, count: number, m: number, weight?: Float32Array, order = outlierOrder(delta, weight)): (QuantizedDelta & { outliers: Outliers }) | null {
  const n = delta.length;
  const positions = order.slice(0, m).sort();
  const rest = delta.slice();
  for (const p of positions) rest[p] = 0;
  const q = quantizeLowBit(rest, bits, group, count, weight);
  const values = new Float32Array(m);
  const decoded = q.decoded.slice();
  for (let k = 0; k < m; k++) {
    const p = positions[k];
    const h = toHalfBits(delta[p] - q.decoded[p]);
    if ((h & 0x7c00) === 0x7c00) return null;
    values[k] = fromHalfBits(h);
    decoded[p] = Math.fround(q.decoded[p] + values[k]);
  }
  return { lowbit: q.lowbit, decoded, squaredError: squaredFrom(delta, decoded, weight), outliers: { positions, values, codes: q.decoded } };
}

/** 1 / (the mean of a tensor's base and target squared norms): its errors as relative changes of the layer (the `relative` proxy). */
function relativeWeight(w: Float32Array, d: Float32Array): number {
  let before = 0;
  let after = 0;
  for (let i = 0; i < d.length; i++) {
    before += w[i] * w[i];
    after += (w[i] + d[i]) ** 2;
  }
  const norm = (before + after) / 2;
  return norm > 0 ? 1 / norm : 1;
}

/** `base + change`, rounded to float32: a tensor's new values. */
function sumOf(base: Float32Array, change: Float32Array): Float32Array {
  const out = new Float32Array(change.length);
  for (let k = 0; k < change.length; k++) out[k] = base[k] + change[k];
  return out;
}

/** The change a device makes writing `values` (+0 + value) over `base`, rounded to float32. */
function changeTo(values: Float32Array, base: Float32Array): Float32Array {
  const out = new Float32Array(values.length);
  for (let k = 0; k < values.length; k++) out[k] = values[k] + 0 - base[k];
  return out;
}

/** Widths a singular direction's factor vectors may take. */
const FACTOR_WIDTHS = [1, 2, 3, 4, 5, 6, 8];

/** Low-rank factors in codec l: what the device decodes, and the layout. */
export interface QuantizedFactors {
  rank: number;
  /** U [rows x rank] and V [rank x cols] as decoded. */
  u: Float32Array;
  v: Float32Array;
  lowbitFactors: LowBitFactors;
}

/**
 * Factors U [rows x rank] and V [rank x cols] at mixed precision: direction k's column of U and
 * row of V at `widths[k]` bits, each vector with its scale (the clipping of least squared error,
 * as {@link quantizeLowBit} chooses it), every scale sharing one power of two.
 */
export function quantizeFactors(u: Float32Array, v: Float32Array, rows: number, cols: number, widths: readonly number[]): QuantizedFactors {
  for (const b of widths) checkWidth(b, 'each direction\'s width');
  const r = widths.length;
  const columns = Array.from({ length: r }, (_, k) => [Float32Array.from({ length: rows }, (_, i) => u[i * r + k]), v.subarray(k * cols, (k + 1) * cols)]);
  let top = 0;
  for (const pair of columns) for (const x of pair) for (const a of x) top = Math.max(top, Math.abs(a));
  const e = scaleExponent(top);
  const qu = new Float32Array(rows * r);
  const qv = new Float32Array(r * cols);
  const scales = new Uint16Array(2 * r);
  columns.forEach(([a, b], k) => {
    const qa = quantizeLowBit(a, widths[k], rows, 1, undefined, e);
    const qb = quantizeLowBit(b, widths[k], cols, 1, undefined, e);
    for (let i = 0; i < rows; i++) qu[i * r + k] = qa.decoded[i];
    qv.set(qb.decoded, k * cols);
    scales[2 * k] = qa.lowbit.scales[0];
    scales[2 * k + 1] = qb.lowbit.scales[0];
  });
  return { rank: r, u: qu, v: qv, lowbitFactors: { widths: [...widths], scales, exponent: e } };
}

/** U·V as the device adds it (float32, k ascending, each product rounded; FORMAT.md §5). */
function lowRankProduct(f: QuantizedFactors, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  const { u, v, rank: r } = f;
  // Row by row, direction by direction: each value still sums its terms in float32 in the order
  // of k (as the applier does), and V's rows are read in order.
  for (let i = 0; i < rows; i++) {
    const row = out.subarray(i * cols, (i + 1) * cols);
    for (let k = 0; k < r; k++) {
      const a = u[i * r + k];
      const vk = k * cols;
      for (let j = 0; j < cols; j++) row[j] += Math.fround(a * v[vk + j]);
    }
  }
  return out;
}

/** Directions factorized per matrix at most. */
const MAX_FACTOR_RANK = 128;

/**
 * The low-rank options of a matrix's change at mixed precision (Delta-CoMe's idea, with the
 * widths chosen instead of fixed): its truncated SVD, then each direction's factor vectors at 0
 * to 8 bits, bought greedily where they remove the most squared error per byte (a direction's
 * error at a width measured on its own rank-1 term; directions are orthogonal, so they nearly
 * add). The state is taken as an option each time the bytes grow by a tenth, up to the bytes
 * of 4-bit codes of every value, each option's error measured exactly on the product the device
 * will add.
 */
function lowRankOptions(name: string, d: Float32Array, shape: readonly number[], weight?: Float32Array): (Option & { quantized: Carried })[] {
  const { rows, cols } = matrixDims(shape);
  if (shape.length < 2 || rows < 2 || cols < 2 || Math.min(rows, cols) > 512) return [];
  const most = lowBitBytes(d.length, 4);
  const f = factorize(name, d, shape, Math.min(MAX_FACTOR_RANK, rows - 1, cols - 1));
  // Directions a millionth of the first one's energy are rounding noise (float32 data, the eigensolver), not change.
  const comps = f.components.filter((c, _, all) => c.energy > 1e-6 * all[0].energy);
  if (!comps.length) return [];
  // Each direction's error at each width: |a b' - qa qb'|^2 from dot products.
  const dot = (x: ArrayLike<number>, y: ArrayLike<number>) => {
    let t = 0;
    for (let i = 0; i < x.length; i++) t += x[i] * y[i];
    return t;
  };
  const errAt = comps.map((c) => {
    const e0 = dot(c.u, c.u) * dot(c.v, c.v);
    return [e0, ...FACTOR_WIDTHS.map((b) => {
      const qa = quantizeLowBit(c.u, b, rows, 1).decoded;
      const qb = quantizeLowBit(c.v, b, cols, 1).decoded;
      return Math.max(0, e0 - 2 * dot(c.u, qa) * dot(c.v, qb) + dot(qa, qa) * dot(qb, qb));
    })];
  });
  const widthOf = (level: number) => (level ? FACTOR_WIDTHS[level - 1] : 0);
  // A direction's bytes at a width: its codes, two scales and its entry in "lb".
  const cost = (level: number) => (level ? ((rows + cols) * widthOf(level)) / 8 + 5 : 0);
  const level = comps.map(() => 0);
  let bytes = 8 + framing(name, shape);
  const out: (Option & { quantized: Carried })[] = [];
  const snapshot = () => {
    const kept = level.flatMap((l, k) => (l ? [k] : []));
    const r = kept.length;
    const u = new Float32Array(rows * r);
    const v = new Float32Array(r * cols);
    kept.forEach((k, c) => {
      for (let i = 0; i < rows; i++) u[i * r + c] = comps[k].u[i];
      v.set(comps[k].v, c * cols);
    });
    const q = quantizeFactors(u, v, rows, cols, kept.map((k) => widthOf(level[k])));
    const decoded = lowRankProduct(q, rows, cols);
    const error = squaredFrom(d, decoded, weight);
    out.push({ bits: Math.max(...q.lowbitFactors.widths), layout: null, rank: r, bytes: Math.ceil(bytes), error, quantized: { decoded, squaredError: error, factors: q } });
  };
  let next = 0;
  for (;;) {
    let best: { k: number; l: number; rate: number } | null = null;
    comps.forEach((_, k) => {
      for (let l = level[k] + 1; l <= FACTOR_WIDTHS.length; l++) {
        const extra = cost(l) - cost(level[k]);
        if (bytes + extra > most) break;
        const rate = (errAt[k][level[k]] - errAt[k][l]) / extra;
        if (!best || rate > best.rate) best = { k, l, rate };
      }
    });
    if (!best || !((best as { rate: number }).rate > 0)) break;
    const { k, l } = best as { k: number; l: number };
    bytes += cost(l) - cost(level[k]);
    level[k] = l;
    if (bytes >= next) {
      snapshot();
      next = bytes * 1.1;
    }
  }
  if (out.length && out[out.length - 1].bytes !== Math.ceil(bytes)) snapshot();
  return out;
}

export interface LowBitOptions extends Omit<TopkOptions, 'codec'> {
  /** The widths to choose from (default {@link LOWBIT_WIDTHS}); one width for every tensor with `[b]`. */
  widths?: readonly number[];
  /** The scale layouts to choose from (default all three). */
  layouts?: readonly ScaleLayout[];
  /**
   * Each value's importance to the model's outputs, per tensor (same length as its values): every
   * squared error is weighted by it, in the quantization and in the allocation. The diagonal of
   * the Fisher information of the target's outputs on calibration inputs (src/train/calibrate.ts)
   * makes the summed error a second-order estimate of the outputs' divergence from the target, so
   * tensors whose changes matter more to the outputs (biases, first layers) get the bits. Tensors
   * not in the map weigh 1 a value.
   */
  importance?: ReadonlyMap<string, Float32Array>;
  /**
   * Carry every changed tensor, at its cheapest option at least, whenever the budget holds all of
   * them (default true); the bits left go where they remove the most error. A fine-tune's changes
   * work together: leaving one tensor's whole change out moves the outputs far more than its
   * squared error (or a diagonal importance) says, while the noise of a coarse code mostly averages
   * out. On the digits update (examples/teacher-digits) the 8-bit changes of every tensor but the
   * largest gave 84.3% / 37.5% (clean / drifted), below the unpatched base's 88.7% clean, where
   * 1 bit for every tensor gave 89.2% / 41.7% at more bytes.
   */
  cover?: boolean;
  /**
   * Without `importance`, how errors of different tensors compare (default `relative`):
   * `relative` weighs a tensor's squared error by 1 / its squared norm (the mean of the base's and
   * the target's), the relative change of that layer's outputs, so a bias or a first layer with small
   * weights is not starved by the large matrices; `squared` adds plain squared errors. On the digits
   * update (examples/teacher-digits, two seeds) relative gave 92.9-93.0% / 55.5-55.8% (clean /
   * drifted) at BitDelta's bytes where squared gave 89.1-90.7% / 42.9-52.7%.
   */
  proxy?: 'relative' | 'squared';
  /**
   * Also offer each matrix (up to 512 on its smaller side) its change's truncated SVD as low-rank
   * factors at mixed precision: each singular direction at its own width (1 to 8 bits, a scale
   * per factor vector), the widths bought where they remove the most error per byte, from a few
   * bytes up to the bytes of 4-bit codes (Delta-CoMe's idea, with the widths chosen instead of
   * fixed). Below 1 bit a value a large tensor can then still carry its change (default true).
   * Codec `l` on factors came later within format v6: false for devices whose applier predates it
   * (FORMAT.md §8).
   */
  lowRank?: boolean;
  /**
   * Also offer codes of every width with the tensor's largest changes (0.2%, 1% or 3% of its
   * changed values) carried apart at float16, so the scales fit the rest: a retrained tensor's few
   * changes as large as its weights otherwise set the scales and leave the rest at code 0
   * (default true; a composite patch of dense codes, FORMAT.md 5.2, which came later within
   * format v6 as factors in codec l did).
   */
  outliers?: boolean;
  /**
   * Also offer each tensor's new values (not its change) as codes of every width and layout, a
   * patch of kind `n` (FORMAT.md §4.4, later within format v6): a retrained tensor whose change is
   * as large as its weights is closer to its target that way (Silero VAD v6's retrained tensors:
   * about half the squared error at the same width). A fine-tune's small changes never choose it.
   * Default true; false for devices whose applier predates kind `n`.
   */
  newValues?: boolean;
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
   * choice (the errors of tensors measured alone do not add up). Called for up to 8 options of
   * every tensor per step (the neighbours of its current one in bytes).
   */
  measureModel?: (deltas: ReadonlyMap<string, Float32Array>) => number;
  /**
   * The second moment of each layer's inputs on calibration inputs, by kernel tensor name
   * (src/train/calibrate.ts's `inputMoments`): those tensors' codes are rounded against them
   * (gptq.ts: each row's rounding error carried into the rows after it, GPTQ's update) and their
   * every option's error is the layer's output change on those inputs, relative to its output
   * energy (the mean of the base's and the target's), instead of a weight-space proxy. Other
   * tensors are quantized and weighed as without it.
   */
  inputs?: ReadonlyMap<string, InputMoments>;
  /**
   * Quantizations kept from an earlier encoding of the same changes (see {@link LowBitCache}):
   * the variants {@link lowbitVariants} returns share one, so comparing them quantizes each
   * tensor's change once. The payload is the same bytes with or without it.
   */
  cache?: LowBitCache;
  /**
   * On a tensor the device stores on an integer grid (TF.js uint8/uint16, ONNX int8/uint8; the
   * payload's grid `g`), codes whose scales are whole numbers of grid steps, chosen and measured
   * on the grid the device holds after rounding (grid-codes.ts): applying adds `code × steps` to
   * each stored integer. Its low-rank factors, whose products the device rounds onto the grid,
   * are measured after that rounding; outliers and new values, whose sums fall between grid
   * values, are not offered. Default true; false quantizes its change as a float tensor's and
   * lets the device round the sums.
   */
  gridCodes?: boolean;
}

/**
 * BitDelta's post-hoc code in lowbit's terms: the sign of every change (1 bit) and one scale per
 * tensor, nothing else lowbit offers (no factors, outliers or new values). Its size is fixed:
 * give it a budget that holds it.
 */
export const BITDELTA_CODE = { widths: [1], layouts: ['tensor'], lowRank: false, outliers: false, newValues: false } as const satisfies Partial<LowBitOptions>;

/** How one tensor's change is carried: codes of `bits` bits with scales by `layout`, or low-rank factors of `rank` at `widths` (the widest `bits`). */
export type LowBitAllocation = { name: string; bytes: number } & ({ bits: number; layout: ScaleLayout; rank?: undefined; outliers?: number; newValues?: true } | { bits: number; layout: 'lowrank'; rank: number; widths: number[]; outliers?: undefined; newValues?: undefined });

/** "conv/kernel 3 bits/last", "dense/kernel rank 4 (8x2+3x2)", "conv/kernel 4 bits/first, new values" */
export function describeAllocation(a: LowBitAllocation): string {
  return a.rank ? `${a.name} rank ${a.rank} (${describeFactorWidths(a.widths)})` : `${a.name} ${a.bits} bit${a.bits > 1 ? 's' : ''}/${a.layout}${a.outliers ? ` + ${a.outliers} f16` : ''}${a.newValues ? ', new values' : ''}`;
}

/** The widths of a low-rank option's directions, widest first: "8x2+3x5+2x9". */
export function describeFactorWidths(widths: readonly number[]): string {
  const count = new Map<number, number>();
  for (const b of widths) count.set(b, (count.get(b) ?? 0) + 1);
  return [...count].sort((x, y) => y[0] - x[0]).map(([b, n]) => `${b}x${n}`).join('+');
}

export interface LowBitResult extends TopkResult {
  /** Per patched tensor: its width and scale layout (or low-rank factors), and bytes of codes and scales. */
  allocation: LowBitAllocation[];
}

/** The post-hoc low-bit payload from `base` to `target` within `options.budgetBytes`. */
export function lowbitDiff(hasher: Hasher, base: WeightStore, target: WeightStore, options: LowBitOptions): LowBitResult {
  return lowbitFromDeltas(hasher, base, modelDelta(base, target), options);
}

/** {@link lowbitDiff} from precomputed deltas (ONNX models: onnxDeltas). */
export function lowbitFromDeltas(hasher: Hasher, base: WeightStore, deltas: ReadonlyMap<string, Float32Array>, options: LowBitOptions): LowBitResult {
  const shapes = new Map(base.list().map((t) => [t.name, t.shape] as const));
  const { widths = LOWBIT_WIDTHS, layouts = ['tensor', 'first', 'last'], measure, measureModel: joint, importance, cover = true, lowRank = true, outliers = true, newValues = true, proxy = 'relative', cache, inputs, gridCodes = true, ...headerOptions } = options;
  if (!Array.isArray(widths) || widths.length === 0) throw new UsageError(`lowbit: widths must be a list of integers from 1 to 8, found ${JSON.stringify(widths)}`, { widths });
  for (const b of widths) checkWidth(b, 'each of the widths');
  const header: HeaderOptions = { ...withoutStore(headerOptions), method: 'lowbit', budgetBytes: options.budgetBytes, grids: storageGrids(base, options.store) };
  const empty = payloadSize([], shapes, header);
  if (empty > options.budgetBytes) throw new BudgetError(`a budget of ${options.budgetBytes} bytes is smaller than an empty payload's header: raise the budget`, { budget: options.budgetBytes, min: empty });
  // Every option of every changed tensor, quantized once (the search only compares numbers).
  const names = [...deltas.keys()].sort();
  /** Every option of each changed tensor, 0 bits (its change left out) first. */
  const raw: TensorOptions[] = [];
  const quantized = new Map<string, Carried>();
  let changed = 0;
  let changeSquared = 0;
  const changedIn = new Map<string, number>();
  for (const name of names) {
    const d = deltas.get(name) as Float32Array;
    const weight = importance?.get(name);
    if (weight && weight.length !== d.length) throw new UsageError(`importance of ${JSON.stringify(name)} has ${weight.length} values, the tensor ${d.length}: expected one weight a value`);
    let sq = 0;
    let weighted = 0;
    let nz = 0;
    for (let i = 0; i < d.length; i++) if (d[i] !== 0) (sq += d[i] * d[i]), (weighted += (weight ? weight[i] : 1) * d[i] * d[i]), nz++;
    changed += nz;
    changeSquared += sq;
    changedIn.set(name, nz);
    if (!nz) continue;
    // Without an importance, the relative proxy scales each tensor's errors by one number: the
    // quantization itself does not change with a uniform weight.
    const factor = !importance && proxy === 'relative' ? relativeWeight(base.values(name), d) : 1;
    const shape = shapes.get(name) as readonly number[];
    // A tensor stored on an integer grid: codes in whole grid steps.
    const g = gridCodes ? header.grids?.get(name) : undefined;
    const onGrid = g && isIntegerGrid(g) ? g : undefined;
    // With the layer's input moments: codes rounded against them, errors as output changes.
    const moments = inputs?.get(name);
    const rounding = moments && !onGrid && shape.length >= 2 && moments.rows === matrixDims(shape).rows ? moments : undefined;
    const outFactor = rounding ? relativeOutput(base.values(name), d, rounding) : 1;
    const u = rounding ? inverseCholesky(rounding) : null;
    const errorOf = (decoded: Float32Array, plain: number): number => (measure ? measure(name, decoded) : rounding ? outFactor * outputError(d, decoded, rounding) : factor * plain);
    const choices: Option[] = [{ bits: 0, layout: null, bytes: 0, error: errorOf(new Float32Array(d.length), weighted) }];
    const seen = new Set<string>();
    const kept = cache?.of(name, d, weight);
    // Grid codes depend on the base's values too (each value's stored step).
    const onBase = onGrid ? keptFromBase(kept, base.values(name)) : undefined;
    const steps = onGrid ? keep(onBase, 'steps', () => gridSteps(base.values(name), onGrid, name)) : undefined;
    let order: Uint32Array | undefined;
    // New values (kind n) are offered beside the change's codes, except when rounded against inputs.
    const w0 = newValues && !rounding && !onGrid ? base.values(name) : undefined;
    const fromBase = w0 ? keptFromBase(kept, w0) : undefined;
    for (const layout of layouts) {
      const l = scaleLayout(shape, layout);
      if (!l || seen.has(`${l.group}/${l.count}`)) continue;
      seen.add(`${l.group}/${l.count}`);
      for (const bits of widths) {
        const nearest = onGrid
          ? keep(onBase, `g/${bits}/${l.group}/${l.count}/${onGrid.dtype}/${onGrid.scale}`, () => quantizeOnGrid(d, base.values(name), onGrid, bits, l.group, l.count, weight, steps))
          : keep(kept, `q/${bits}/${l.group}/${l.count}`, () => quantizeLowBit(d, bits, l.group, l.count, weight));
        const q = rounding && u ? roundAgainstInputs(d, nearest, rounding.rows, u) : nearest;
        quantized.set(`${name}\u0000${layout}\u0000${bits}`, q);
        const bytes = lowBitBytes(d.length, bits) + 2 * l.count + framing(name, shape);
        choices.push({ bits, layout, bytes, error: errorOf((q as Carried).change ?? q.decoded, q.squaredError) });
        // The tensor's new values at these bits (kind n): the change the device then makes is
        // new - base, measured as any change is.
        if (w0) {
          const target = keep(fromBase, 'target', () => sumOf(w0, d));
          const nv = keep(fromBase, `n/${bits}/${l.group}/${l.count}`, () => quantizeLowBit(target, bits, l.group, l.count, weight));
          // The device writes +0 + value; the change that makes, in float64 (the weights are exact).
          const change = changeTo(nv.decoded, w0);
          quantized.set(`${name}\u0000${layout}\u0000${bits}\u0000n`, { ...nv, decoded: change, newValues: nv.decoded });
          choices.push({ bits, layout, replace: true, bytes: bytes + 1, error: errorOf(change, nv.squaredError) });
        }
        // The largest changes apart at float16, so the scales fit the rest (a retrained tensor's
        // few large changes would otherwise set them).
        if (outliers && !onGrid) {
          for (const m of new Set(OUTLIER_SHARES.map((f) => Math.round(f * nz)))) {
            if (m < 1 || m >= nz) continue;
            const o = keep(kept, `o/${bits}/${l.group}/${l.count}/${m}`, () => quantizeWithOutliers(d, bits, l.group, l.count, m, weight, (order ??= keep(kept, 'order', () => outlierOrder(d, weight)))));
            if (!o) continue;
            quantized.set(`${name}\u0000${layout}\u0000${bits}\u0000${m}`, o);
            const at = encodePositions(o.outliers.positions, d.length).bytes.length;
            choices.push({ bits, layout, outliers: m, bytes: bytes + at + 2 * m + 16, error: errorOf(o.decoded, o.squaredError) });
          }
        }
      }
    }
    if (lowRank) for (const o of keep(kept, 'lowrank', () => lowRankOptions(name, d, shape, weight))) {
      quantized.set(`${name}\u0000lowrank\u0000${o.bytes}`, o.quantized);
      const { quantized: _q, ...option } = o;
      // On an integer grid the device rounds the factors' product onto it: measured after that rounding.
      const change = onGrid ? keep(onBase, `lowrank/${o.bytes}/${onGrid.scale}`, () => roundedChange(base.values(name), o.quantized.decoded, onGrid)) : undefined;
      if (change) quantized.set(`${name}\u0000lowrank\u0000${o.bytes}`, { ...o.quantized, change });
      choices.push({ ...option, error: errorOf(change ?? o.quantized.decoded, change ? squaredFrom(d, change, weight) : option.error) });
    }
    raw.push({ name, options: choices });
  }
  // The search's view of the options, cheapest first. Covering, a tensor's 0-bit option is left
  // out while the cheapest option of every tensor fits.
  const view = (covering: boolean): TensorOptions[] => raw.map(({ name, options: o }) => ({
    name,
    options: (covering ? o.filter((x) => x.bits) : [...o]).sort((a, b) => a.bytes - b.bytes || a.error - b.error),
  }));
  const free = view(false);
  const covered = cover ? view(true) : free;
  const floor = covered.reduce((sum, t) => sum + t.options[0].bytes, 0);
  const quantizedOf = (name: string, o: Option) => quantized.get(o.rank ? `${name}\u0000lowrank\u0000${o.bytes}` : `${name}\u0000${o.layout}\u0000${o.bits}${o.outliers ? `\u0000${o.outliers}` : ''}${o.replace ? '\u0000n' : ''}`) as Carried;
  const specsOf = (chosen: Option[]): PatchSpec[] =>
    chosen.flatMap((o, i): PatchSpec[] => {
      if (!o.bits) return [];
      const q = quantizedOf(raw[i].name, o);
      if (q.factors) return [{ kind: 'lowrank' as const, name: raw[i].name, rank: q.factors.rank, u: q.factors.u, v: q.factors.v, codec: 'l' as const, lowbitFactors: q.factors.lowbitFactors }];
      if (q.outliers) return [{ kind: 'composite' as const, name: raw[i].name, dense: q.outliers.codes, lowbit: q.lowbit as LowBit, positions: q.outliers.positions, values: q.outliers.values, codec: 'l' as const, sparseCodec: 'f16' as const }];
      if (q.newValues) return [{ kind: 'dense' as const, name: raw[i].name, values: q.newValues, codec: 'l' as const, lowbit: q.lowbit as LowBit, replace: true }];
      return [{ kind: 'dense' as const, name: raw[i].name, values: q.decoded, codec: 'l' as const, lowbit: q.lowbit as LowBit }];
    });
  const errorOf = (tensors: TensorOptions[]) => (picks: number[]): number => {
    const carried = new Map<string, Float32Array>();
    picks.forEach((p, i) => {
      const o = tensors[i].options[p];
      if (o.bits) {
        const q = quantizedOf(raw[i].name, o);
        carried.set(raw[i].name, q.change ?? q.decoded);
      }
    });
    return (joint as NonNullable<typeof joint>)(carried);
  };
  const allocateIn = (r: number): Option[] => {
    const tensors = r >= floor ? covered : free;
    const picks = joint ? improveJointly(tensors, r, allocate(tensors, r), errorOf(tensors)) : allocate(tensors, r);
    return picks.map((p, i) => tensors[i].options[p]);
  };
  // The framing estimate is close, not exact: build, measure, and search again with less room
  // if over, or (twice at most) with the bytes it left if under.
  let room = options.budgetBytes - empty;
  let chosen = allocateIn(room);
  let fits: Option[] | null = null;
  for (let attempt = 0, grown = 0; attempt < 14; attempt++) {
    const size = payloadSize(specsOf(chosen), shapes, header);
    if (size <= options.budgetBytes) {
      fits = chosen;
      if (options.budgetBytes - size < 16 || grown >= 2) break;
      grown++;
      room += options.budgetBytes - size;
    } else {
      if (fits) break;
      room -= size - options.budgetBytes + 8 * (attempt + 1);
    }
    chosen = room > 0 ? allocateIn(room) : free.map((t) => t.options[0]);
  }
  chosen = fits ?? chosen;
  const specs = specsOf(chosen);
  const built: BuiltPayload = buildPayload(hasher, base, specs, header, baseDigests(hasher, base));
  const allocation: LowBitResult['allocation'] = [];
  chosen.forEach((o, i) => {
    const { name } = raw[i];
    const bytes = o.bytes - framing(name, shapes.get(name) as readonly number[]);
    if (o.rank) {
      const f = (quantizedOf(name, o).factors as QuantizedFactors).lowbitFactors;
      allocation.push({ name, bits: o.bits, layout: 'lowrank', rank: o.rank, widths: [...f.widths], bytes });
    }
    else if (o.bits) allocation.push({ name, bits: o.bits, layout: o.layout as ScaleLayout, ...(o.outliers ? { outliers: o.outliers } : {}), ...(o.replace ? { newValues: true as const } : {}), bytes });
  });
  const kept = allocation.reduce((s, a) => s + (changedIn.get(a.name) as number), 0);
  // Measured on what the device will hold (a stored grid rounds the sums), as top-k measures it.
  const error = squaredError(deltas, base, built);
  options.onProgress?.(`lowbit: ${allocation.length} of ${raw.length} changed tensors carried (${describeWidths(allocation)}), ${built.bytes.length} bytes (squared error ${error.toExponential(3)} of ${changeSquared.toExponential(3)})`);
  confirmPayload(hasher, base, built);
  return { ...built, kept, changed, codec: 'l', squaredError: error, changeSquared, allocation };
}

/** "3 x 1 bit, 2 x 4 bits, 1 x rank 8" */
export function describeWidths(allocation: readonly LowBitAllocation[]): string {
  const by = new Map<string, { order: number; count: number }>();
  for (const a of allocation) {
    const key = a.rank ? `rank ${a.rank}` : `${a.bits} bit${a.bits > 1 ? 's' : ''}`;
    const order = a.rank ? 100 + a.rank : a.bits;
    by.set(key, { order, count: (by.get(key)?.count ?? 0) + 1 });
  }
  return [...by].sort((a, b) => a[1].order - b[1].order).map(([key, { count }]) => `${count} x ${key}`).join(', ') || 'none';
}

/**
 * The lowbit variants a calibrated diff chooses among (`ndiff diff --calibrate`), in order of
 * preference on a tie: errors relative to each layer (the default) or plain squared, or each
 * weight weighed by `importance` (e.g. its Fisher information on the calibration inputs; left out
 * without it), each with and without low-rank factors. Which is best depends on the model and the
 * budget (examples/teacher-digits); measuring decides. With `inputs` (each layer's input moments
 * on the calibration inputs), also the codes rounded against them (GPTQ's update, gptq.ts). The
 * variants share `cache`: each tensor's nearest-rounded codes are quantized once for all of them.
 */
export function lowbitVariants(importance?: () => ReadonlyMap<string, Float32Array>, cache = new LowBitCache(), inputs?: () => ReadonlyMap<string, InputMoments>): { name: string; options: () => Partial<LowBitOptions> }[] {
  return [
    { name: 'lowbit (relative errors, low-rank)', options: () => ({ cache }) },
    { name: 'lowbit (relative errors, codes only)', options: () => ({ lowRank: false, cache }) },
    { name: 'lowbit (squared errors, low-rank)', options: () => ({ proxy: 'squared', cache }) },
    { name: 'lowbit (squared errors, codes only)', options: () => ({ proxy: 'squared', lowRank: false, cache }) },
    ...(importance ? [
      { name: 'lowbit (Fisher importance, low-rank)', options: () => ({ importance: importance(), cache }) },
      { name: 'lowbit (Fisher importance, codes only)', options: () => ({ importance: importance(), lowRank: false, cache }) },
    ] : []),
    // Codes rounded against each layer's inputs (GPTQ's update), errors as its output changes.
    ...(inputs ? [{ name: 'lowbit (rounded against the inputs, codes only)', options: () => ({ inputs: inputs(), lowRank: false, outliers: false, cache }) }] : []),
  ];
}
