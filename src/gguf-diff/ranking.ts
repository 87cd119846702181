/**
 * The ranking of an on-grid GGUF payload (docs/format/gguf.md §18.6): every changed unit of two
 * GGUF models of one layout scored by the squared dequantized change it removes per byte it is
 * estimated to cost, and those scores gathered in a histogram of log-spaced bins (pass 1, one
 * streaming read of both models, a slice at a time). A unit is a ggml block of its tensor's type
 * (34 bytes for Q8_0, 144 for Q4_K), or {@link PLAIN_GROUP} weights of an F32, F16 or BF16
 * tensor. A unit's bin is a pure function of its bytes in the two models, so the second pass
 * (`mixed.ts`) decides each unit again from its bytes alone, in any read order: the selection is
 * "every unit whose bin is at or above a threshold", deterministic, ties (one bin) taken or left
 * together.
 *
 * With calibration weights (`--calibrate TEXT`, src/front/measure/gguf-calibrate.ts), a unit's
 * squared change is multiplied by its tensor's weight before it is binned: the weight turns a
 * tensor's squared change into the runtime's measured effect of that tensor's change (KL on the
 * text per unit of squared change), so the blocks are ranked across tensors by what they do to
 * the outputs and within a tensor by their change. The bin stays a pure function of the unit's
 * bytes and its tensor's name. The figures summed per bin stay the unweighted squared change.
 *
 * Pure code (no node, no tfjs). Memory: one slice of each model and the histogram.
 */
import { dequantizeInto } from '../io/gguf/blocks.ts';
import type { GgufTensorInfo } from '../io/gguf/header.ts';
import type { GgufModel } from '../io/gguf/model.ts';

/** Weights per unit of an F32, F16 or BF16 tensor (their ggml block is one weight). */
export const PLAIN_GROUP = 32;
/** Histogram bins per octave of score per byte. */
const BINS_PER_OCTAVE = 64;
/** The lowest octave a positive score per byte is binned at (below it: the lowest positive bin). */
const LOWEST_OCTAVE = -160;
/** Octaves covered by the histogram (above them: the top bin). */
const OCTAVES = 256;
/** Bins: 0 holds changed units whose dequantized values do not change (a zero's sign: a NaN's other bits score as the largest change), 1.. the positive scores. */
export const RANKING_BINS = 1 + OCTAVES * BINS_PER_OCTAVE;
/** Estimated payload bytes a changed unit costs besides its changed bytes (its range's varints, its share of a chunk). */
const UNIT_OVERHEAD = 3;
/** Bytes compared per read while ranking. */
const SLICE_BYTES = 4 << 20;

/** Bytes of a unit of tensor `t` (the last unit of a plain tensor may be shorter). */
export function unitBytes(t: GgufTensorInfo): number {
  return t.type.blockSize === 1 ? PLAIN_GROUP * t.type.typeSize : t.type.typeSize;
}

/**
 * A unit's score and estimated cost from its bytes in the base (`a`) and the target (`b`), from
 * `from` for `n` bytes (whole blocks of `t`'s type): the sum over its weights of
 * (deq(b) - deq(a))^2 (a non-finite change counts as the largest), and its changed bytes plus
 * {@link UNIT_OVERHEAD}. Undefined when the unit's bytes are the same.
 */
export class UnitScorer {
  private x = new Float32Array(256);
  private y = new Float32Array(256);

  score(t: GgufTensorInfo, a: Uint8Array, b: Uint8Array, from: number, n: number): { score: number; cost: number } | undefined {
    let changed = 0;
    for (let k = from; k < from + n; k++) if (a[k] !== b[k]) changed++;
    if (changed === 0) return undefined;
    const values = (n / t.type.typeSize) * t.type.blockSize;
    if (this.x.length < values) {
      this.x = new Float32Array(values);
      this.y = new Float32Array(values);
    }
    dequantizeInto(t.type, a.subarray(from, from + n), this.x);
    dequantizeInto(t.type, b.subarray(from, from + n), this.y);
    let score = 0;
    for (let i = 0; i < values; i++) {
      const d = this.y[i] - this.x[i];
      if (d !== 0) score += Number.isFinite(d) ? d * d : Number.MAX_VALUE;
    }
    if (!Number.isFinite(score)) score = Number.MAX_VALUE;
    return { score, cost: changed + UNIT_OVERHEAD };
  }
}

/** The bin of a unit's score per estimated byte: 0 for no dequantized change, else 1 + its log2 in 1/64 octaves (clamped). */
export function binOf(score: number, cost: number): number {
  if (!(score > 0)) return 0;
  const octave = Math.log2(score / cost);
  const k = Math.floor((octave - LOWEST_OCTAVE) * BINS_PER_OCTAVE);
  return 1 + Math.min(RANKING_BINS - 2, Math.max(0, k));
}

/**
 * A tensor's calibration weight: one multiplier of its units' squared change, and for a tensor
 * indexed by token (the output head, the token embeddings) a multiplier per row as well (its
 * `ne[1]` rows of `ne[0]` weights; a unit is weighed by the row its first weight is in).
 */
export interface TensorWeight {
  scale: number;
  rows?: Float64Array;
}

/** The calibration weights by tensor name (a tensor not named weighs 1). */
export type TensorWeights = ReadonlyMap<string, TensorWeight>;

/** Bytes of one row (`ne[0]` weights) of tensor `t`. */
export function rowBytes(t: GgufTensorInfo): number {
  return (t.ne[0] / t.type.blockSize) * t.type.typeSize;
}

/** The multiplier of the unit of tensor `t` at byte `offset` of the tensor's data (1 when unweighted). */
export function unitWeight(weights: TensorWeights | undefined, t: GgufTensorInfo, offset: number): number {
  const w = weights?.get(t.name);
  if (!w) return 1;
  if (!w.rows) return w.scale;
  return w.scale * w.rows[Math.min(w.rows.length - 1, Math.floor(offset / rowBytes(t)))];
}

/** What pass 1 found: the changed units by bin, and what the units without a score need. */
export interface GgufRanking {
  /** Per bin: changed units, their estimated payload bytes, their bytes in the model, their squared dequantized change. */
  units: Float64Array;
  cost: Float64Array;
  bytes: Float64Array;
  score: Float64Array;
  /** Changed bytes outside the scored units (header, padding, tensors of types without a dequantizer): always carried. */
  mandatoryBytes: number;
  /** The bytes of the changed blocks of tensors without a dequantizer. */
  opaqueBytes: number;
  /** Changed units of tensors without a dequantizer (always carried). */
  opaqueUnits: number;
  /** Changed scored units, and their squared dequantized change together. */
  changedUnits: number;
  totalScore: number;
  /** Per dequantizable tensor with a changed unit: its squared dequantized change, unweighted. */
  tensorScore: Map<string, number>;
}

/** The tensors of a part in file order, and the bytes between them. */
export function tensorsInOrder(model: GgufModel, part: number): GgufTensorInfo[] {
  return [...model.parts[part].header.tensors].sort((x, y) => x.offset - y.offset);
}

/**
 * Pass 1: read both models (one layout, checked by the caller) a slice at a time and bin every
 * changed unit of every dequantizable tensor; count the other changed bytes as always carried.
 */
export function rankGgufChange(base: GgufModel, target: GgufModel, weights?: TensorWeights): GgufRanking {
  const r: GgufRanking = { units: new Float64Array(RANKING_BINS), cost: new Float64Array(RANKING_BINS), bytes: new Float64Array(RANKING_BINS), score: new Float64Array(RANKING_BINS), mandatoryBytes: 0, opaqueBytes: 0, opaqueUnits: 0, changedUnits: 0, totalScore: 0, tensorScore: new Map() };
  const scorer = new UnitScorer();
  for (let p = 0; p < base.parts.length; p++) {
    const a = base.parts[p].source;
    const b = target.parts[p].source;
    const h = base.parts[p].header;
    const countBytes = (from: number, to: number) => {
      for (let at = from; at < to; at += SLICE_BYTES) {
        const n = Math.min(SLICE_BYTES, to - at);
        const x = a.read(at, n);
        const y = b.read(at, n);
        for (let k = 0; k < n; k++) if (x[k] !== y[k]) r.mandatoryBytes++;
      }
    };
    let at = 0;
    for (const t of tensorsInOrder(base, p)) {
      const from = h.dataStart + t.offset;
      if (from > at) countBytes(at, from);
      at = from + t.bytes;
      if (!t.type.dequantizable) {
        const unit = t.type.typeSize;
        forEachUnit(a, b, from, t.bytes, unit, (x, y, u, n) => {
          for (let k = u; k < u + n; k++) {
            if (x[k] !== y[k]) {
              r.opaqueUnits++;
              r.opaqueBytes += n;
              for (let j = u; j < u + n; j++) if (x[j] !== y[j]) r.mandatoryBytes++;
              break;
            }
          }
        });
        continue;
      }
      let tensorScore = 0;
      forEachUnit(a, b, from, t.bytes, unitBytes(t), (x, y, u, n, offset) => {
        const s = scorer.score(t, x, y, u, n);
        if (!s) return;
        tensorScore += s.score;
        const bin = binOf(s.score * unitWeight(weights, t, offset), s.cost);
        r.units[bin]++;
        r.cost[bin] += s.cost;
        r.bytes[bin] += n;
        r.score[bin] += s.score;
        r.changedUnits++;
        r.totalScore += s.score;
      });
      if (tensorScore > 0) r.tensorScore.set(t.name, tensorScore);
    }
    if (h.fileSize > at) countBytes(at, h.fileSize);
  }
  return r;
}

/**
 * Call `visit(x, y, from, n, offset)` for each unit of `unit` bytes of `[start, start + length)`
 * of two sources (the last unit may be shorter), `x` and `y` a slice of each holding it at
 * `from`, `offset` the unit's place from `start`.
 */
export function forEachUnit(a: { read(o: number, n: number): Uint8Array }, b: { read(o: number, n: number): Uint8Array }, start: number, length: number, unit: number, visit: (x: Uint8Array, y: Uint8Array, from: number, n: number, offset: number) => void): void {
  const slice = Math.max(unit, Math.floor(SLICE_BYTES / unit) * unit);
  for (let at = 0; at < length; at += slice) {
    const n = Math.min(slice, length - at);
    const x = a.read(start + at, n);
    const y = b.read(start + at, n);
    for (let u = 0; u < n; u += unit) visit(x, y, u, Math.min(unit, n - u), at + u);
  }
}

/** The squared dequantized change of each row (`ne[1]` rows) of the tensor named `name`, between two models of one layout. */
export function rowChange(base: GgufModel, target: GgufModel, name: string): Float64Array {
  for (let p = 0; p < base.parts.length; p++) {
    const h = base.parts[p].header;
    const t = h.tensors.find((x) => x.name === name);
    if (!t) continue;
    const rows = new Float64Array(t.ne[1] ?? 1);
    const scorer = new UnitScorer();
    const per = rowBytes(t);
    forEachUnit(base.parts[p].source, target.parts[p].source, h.dataStart + t.offset, t.bytes, unitBytes(t), (x, y, u, n, offset) => {
      const s = scorer.score(t, x, y, u, n);
      if (s) rows[Math.min(rows.length - 1, Math.floor(offset / per))] += s.score;
    });
    return rows;
  }
  throw new Error(`no tensor ${name}`);
}

/** The estimated payload bytes, units, model bytes and squared change of every bin at or above `threshold`. */
export function takenFrom(r: GgufRanking, threshold: number): { cost: number; units: number; bytes: number; score: number } {
  let cost = 0;
  let units = 0;
  let bytes = 0;
  let score = 0;
  for (let k = Math.max(0, threshold); k < RANKING_BINS; k++) {
    cost += r.cost[k];
    units += r.units[k];
    bytes += r.bytes[k];
    score += r.score[k];
  }
  return { cost, units, bytes, score };
}

/** The lowest threshold whose bins' estimated bytes fit `take` ({@link RANKING_BINS} when not even the top bin does). */
export function thresholdFor(r: GgufRanking, take: number): number {
  let cost = 0;
  for (let k = RANKING_BINS - 1; k >= 0; k--) {
    if (cost + r.cost[k] > take) return k + 1;
    cost += r.cost[k];
  }
  return 0;
}
