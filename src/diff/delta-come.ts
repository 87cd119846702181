/**
 * Delta-CoMe (Ping et al. 2024, arXiv 2406.08903), a baseline for the comparison report: a
 * fine-tune's delta compressed without data or training by a truncated SVD of each matrix's delta
 * whose singular directions get **mixed precision by singular value**: the first 2 directions at 8
 * bits, the next 32 at 3 bits, the rest at 2 bits (the paper's triple precision), each factor
 * vector quantized uniformly (min-max, round to nearest, an f16 scale and offset per vector; the
 * paper rounds with GPTQ, which needs calibration inputs this baseline does without). Vectors
 * (biases) are carried at f16. Directions are bought across tensors by singular value energy per
 * byte, a tensor's in order, until the budget is spent.
 *
 * This is the method as its paper stores it, measured beside ours at the same bytes: it returns
 * the deltas a device would reconstruct and the bytes they take in that storage (factor codes,
 * scales, f16 vectors), not a neural-diff payload (the payload format has no patch kind for
 * low-rank factors at mixed precision).
 */
import { matrixDims } from '../core/format.ts';
import { factorize } from './factorize.ts';
import { payloadSize, type HeaderOptions } from './build.ts';

/** A precision tier: `count` singular directions at `bits` bits (the last tier takes the rest). */
export interface DeltaComeTier {
  bits: number;
  count: number;
}

/** The paper's triple precision: 2 directions at 8 bits, 32 at 3, the rest at 2. */
export const DELTA_COME_TIERS: readonly DeltaComeTier[] = [{ bits: 8, count: 2 }, { bits: 3, count: 32 }, { bits: 2, count: Infinity }];

export interface DeltaComeOptions {
  /** Bytes the stored deltas may take. */
  budgetBytes: number;
  tiers?: readonly DeltaComeTier[];
  /** Directions factorized per matrix at most (default 256). */
  maxRank?: number;
  /**
   * Bytes a shipping format adds around the codes (counted in the budget and in `bytes`): once,
   * and per tensor carried. Default none: the paper's own storage.
   */
  framing?: { header: number; perTensor: (name: string) => number };
}

export interface DeltaComeResult {
  /** The reconstructed delta of every tensor carried (absent: left at the base). */
  deltas: Map<string, Float32Array>;
  /** Bytes in Delta-CoMe's storage: factor codes, an f16 scale and offset per factor vector, vectors at f16 (and `framing`). */
  bytes: number;
  /** Per matrix: directions kept and their bit widths, e.g. `dense/kernel 8x2+3x5`. */
  allocation: string[];
}

const f16Bytes = 2;

/** Round to the nearest float16 (the stored scales and offsets). */
function toF16(x: number): number {
  if (x === 0 || !Number.isFinite(x)) return x;
  const e = Math.floor(Math.log2(Math.abs(x)));
  const step = 2 ** (Math.max(e, -14) - 10);
  return Math.round(x / step) * step;
}

/** Uniform min-max quantization of `x` at `bits` bits, as decoded (f16 scale and offset). */
export function quantizeMinMax(x: Float32Array, bits: number): Float32Array {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of x) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  const levels = 2 ** bits - 1;
  const offset = toF16(lo);
  const scale = toF16((hi - offset) / levels);
  if (!(scale > 0)) return Float32Array.from(x, () => offset);
  return Float32Array.from(x, (v) => offset + scale * Math.max(0, Math.min(levels, Math.round((v - offset) / scale))));
}

function bitsAt(tiers: readonly DeltaComeTier[], index: number): number {
  let start = 0;
  for (const t of tiers) {
    if (index < start + t.count) return t.bits;
    start += t.count;
  }
  return tiers[tiers.length - 1].bits;
}

/** Delta-CoMe's compression of `deltas` (each tensor's v2 - v1, by name) within `options.budgetBytes`. */
export function deltaCome(deltas: ReadonlyMap<string, Float32Array>, shapes: ReadonlyMap<string, readonly number[]>, options: DeltaComeOptions): DeltaComeResult {
  const tiers = options.tiers ?? DELTA_COME_TIERS;
  const names = [...deltas.keys()].sort();
  const out = new Map<string, Float32Array>();
  const framing = options.framing ?? { header: 0, perTensor: () => 0 };
  let bytes = framing.header;
  // Vectors first, at f16 (tiny beside the matrices), while they fit.
  const matrices: { name: string; rows: number; cols: number; comps: ReturnType<typeof factorize>['components']; taken: number }[] = [];
  for (const name of names) {
    const d = deltas.get(name) as Float32Array;
    if (!d.some((v) => v !== 0)) continue;
    const shape = shapes.get(name) as readonly number[];
    const { rows, cols } = matrixDims(shape);
    if (rows > 1 && cols > 1) {
      matrices.push({ name, rows, cols, comps: factorize(name, d, shape, Math.min(options.maxRank ?? 256, rows, cols)).components, taken: 0 });
    } else if (bytes + f16Bytes * d.length + framing.perTensor(name) <= options.budgetBytes) {
      bytes += f16Bytes * d.length + framing.perTensor(name);
      out.set(name, Float32Array.from(d, toF16));
    }
  }
  const cost = (m: (typeof matrices)[number], k: number) => Math.ceil(((m.rows + m.cols) * bitsAt(tiers, k)) / 8) + 4 * f16Bytes + (k === 0 ? framing.perTensor(m.name) : 0);
  // Buy directions by energy per byte, each matrix's in order.
  for (;;) {
    let best = -1;
    let bestScore = 0;
    matrices.forEach((m, i) => {
      if (m.taken >= m.comps.length || bytes + cost(m, m.taken) > options.budgetBytes) return;
      const score = m.comps[m.taken].energy / cost(m, m.taken);
      if (score > bestScore) {
        best = i;
        bestScore = score;
      }
    });
    if (best < 0) break;
    bytes += cost(matrices[best], matrices[best].taken);
    matrices[best].taken++;
  }
  const allocation: string[] = [];
  for (const m of matrices) {
    if (!m.taken) continue;
    const d = new Float32Array(m.rows * m.cols);
    const widths = new Map<number, number>();
    for (let k = 0; k < m.taken; k++) {
      const bits = bitsAt(tiers, k);
      widths.set(bits, (widths.get(bits) ?? 0) + 1);
      const u = quantizeMinMax(m.comps[k].u, bits);
      const v = quantizeMinMax(m.comps[k].v, bits);
      for (let r = 0; r < m.rows; r++) for (let c = 0; c < m.cols; c++) d[r * m.cols + c] += u[r] * v[c];
    }
    out.set(m.name, d);
    allocation.push(`${m.name} ${[...widths].map(([b, n]) => `${b}x${n}`).join('+')}`);
  }
  return { deltas: out, bytes, allocation };
}

/**
 * The bytes a neural-diff payload spends around values, for {@link DeltaComeOptions.framing}: its
 * header (with `header`'s fields), and per tensor its name, shape, digests and keys (measured on
 * an f16 dense patch of the tensor, less its values).
 */
export function payloadFraming(shapes: ReadonlyMap<string, readonly number[]>, header: HeaderOptions): { header: number; perTensor: (name: string) => number } {
  const empty = payloadSize([], shapes, header);
  const perTensor = (name: string) => {
    const n = (shapes.get(name) as readonly number[]).reduce((a, b) => a * b, 1);
    return payloadSize([{ kind: 'dense', name, values: new Float32Array(n), codec: 'f16' }], shapes, header) - empty - 2 * n;
  };
  return { header: empty, perTensor };
}

/** The deltas of every tensor `base` and `target` both hold with one shape (target - base). */
export function storeDeltas(base: { list(): readonly { name: string; shape: readonly number[]; patchable?: boolean }[]; values(name: string): Float32Array }, target: { list(): readonly { name: string; shape: readonly number[] }[]; values(name: string): Float32Array }): { deltas: Map<string, Float32Array>; shapes: Map<string, readonly number[]> } {
  const theirs = new Map(target.list().map((t) => [t.name, t.shape] as const));
  const deltas = new Map<string, Float32Array>();
  const shapes = new Map<string, readonly number[]>();
  for (const t of base.list()) {
    const other = theirs.get(t.name);
    if (t.patchable === false || !other || other.length !== t.shape.length || other.some((d, i) => d !== t.shape[i])) continue;
    const a = base.values(t.name);
    const b = target.values(t.name);
    deltas.set(t.name, Float32Array.from(b, (x, i) => x - a[i]));
    shapes.set(t.name, t.shape);
  }
  return { deltas, shapes };
}
