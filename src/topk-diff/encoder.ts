/**
 * Post-hoc magnitude top-k diff: keep the largest |target - base| entries across the whole model
 * that fit the byte budget, with the value codec (f32, f16 or int8) that leaves the smallest
 * squared error. The budget counts every byte of the payload. Asked for, the values can also
 * travel as codec `l` codes of 8 or 4 bits with a scale per output channel (`l8`, `l4`: format v6).
 */
import { BudgetError } from '../core/errors.ts';
import type { Hasher } from '../core/hasher.ts';
import { VALUE_CODECS, type ValueCodec } from '../core/values.ts';
import type { WeightStore } from '../core/weight-store.ts';
import { shapeSize } from '../core/format.ts';
import { quantizeSparseLowBit, scaleLayout, type QuantizedDelta, type ScaleLayout } from '../diff/lowbit-quantize.ts';
import { largestFitting } from '../diff/budget.ts';
import { modelDelta, squaredError } from '../diff/delta.ts';
import { confirmPayload } from '../diff/confirm.ts';
import { baseDigests, buildPayload, payloadSize, storageGrids, withoutStore, type BuiltPayload, type HeaderOptions, type PatchSpec, type StoreAs } from '../diff/build.ts';

export interface TopkOptions extends Omit<HeaderOptions, 'method' | 'budgetBytes' | 'grids'> {
  budgetBytes: number;
  /** Keep quantized tensors on their storage grid (default) or give float32 results: see {@link StoreAs}. */
  store?: StoreAs;
  /**
   * `auto` (default) tries f32, f16 and i8 and keeps the most accurate. `l8` and `l4`: codes of 8
   * or 4 bits with a scale per output channel (per tensor where that is closer), codec `l` of
   * format v6 (appliers of neural-diff 0.x from this version on; older ones refuse it).
   */
  codec?: TopkCodec | 'auto';
  /** Called with progress messages during the search. */
  onProgress?: (message: string) => void;
}

/** A top-k value codec: one of the value codecs, or codec `l` at 8 or 4 bits a value with a scale per output channel. */
export type TopkCodec = ValueCodec | 'l8' | 'l4';

/**
 * Codec `l` at `bits` for a sparse patch of `shape`: one scale for the tensor, or a scale per
 * output channel (first or last axis) where that removes more squared error than the values its
 * extra scales' bytes would have kept (2 bytes a scale; the tensor's smallest kept values, at
 * about `bits / 8` + 1 bytes each with their positions, stand for what they displace).
 */
function sparseLowBit(values: Float32Array, positions: Uint32Array, shape: readonly number[], bits: number): QuantizedDelta {
  const size = shapeSize(shape);
  let best = quantizeSparseLowBit(values, positions, size, bits, Math.max(1, size), 1);
  let bestScore = best.squaredError;
  let squares: Float64Array | null = null;
  for (const layout of ['last', 'first'] as ScaleLayout[]) {
    const l = scaleLayout(shape, layout);
    if (!l || l.count < 2) continue;
    const displaced = Math.ceil((2 * (l.count - 1)) / (bits / 8 + 1));
    if (displaced >= values.length) continue;
    squares ??= Float64Array.from(values, (x) => x * x).sort();
    let cost = 0;
    for (let i = 0; i < displaced; i++) cost += squares[i];
    const q = quantizeSparseLowBit(values, positions, size, bits, l.group, l.count);
    if (q.squaredError + cost < bestScore) {
      best = q;
      bestScore = q.squaredError + cost;
    }
  }
  return best;
}

export interface TopkResult extends BuiltPayload {
  /** Entries kept. */
  kept: number;
  /** Non-zero entries of the full delta. */
  changed: number;
  codec: ValueCodec | 'x' | 'xr' | 'xs' | 'l';
  /** Sum of squared differences between the target and base + payload, over all weights. */
  squaredError: number;
  /**
   * Sum of squared differences between the target and the base, over all weights (set by the
   * top-k search): `1 - squaredError / changeSquared` is the share of the change the payload carries.
   */
  changeSquared?: number;
}

/**
 * Rank entries of named deltas by magnitude, largest first (ties: tensor name, then position),
 * and return specs for the first k. Shared by the post-hoc baselines and the trainers.
 */
export class MagnitudeRanking {
  readonly names: string[];
  /** Each rank's tensor, largest change first. */
  private readonly tensorOf: Uint32Array;
  readonly total: number;
  constructor(private readonly deltas: ReadonlyMap<string, Float32Array>) {
    this.names = [...deltas.keys()].sort();
    let n = 0;
    for (const name of this.names) {
      const d = deltas.get(name) as Float32Array;
      for (let i = 0; i < d.length; i++) if (d[i] !== 0) n++;
    }
    this.total = n;
    const mag = new Float32Array(n);
    const tensorOf = new Uint32Array(n);
    const posOf = new Uint32Array(n);
    let k = 0;
    this.names.forEach((name, ti) => {
      const d = deltas.get(name) as Float32Array;
      for (let i = 0; i < d.length; i++) {
        if (d[i] !== 0) {
          mag[k] = Math.abs(d[i]);
          tensorOf[k] = ti;
          posOf[k] = i;
          k++;
        }
      }
    });
    // Entries are laid out by (tensor, position), so the index breaks ties deterministically.
    const order = largestFirst(mag);
    this.tensorOf = new Uint32Array(n);
    this.rankOf = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      this.tensorOf[i] = tensorOf[order[i]];
      this.rankOf[order[i]] = i;
    }
    this.laidOut = posOf;
    this.firstOf = new Uint32Array(this.names.length + 1);
    for (let i = 0; i < n; i++) this.firstOf[tensorOf[i] + 1]++;
    for (let t = 0; t < this.names.length; t++) this.firstOf[t + 1] += this.firstOf[t];
  }
  /** Each entry's rank, by its place in the (tensor, position) layout. */
  private readonly rankOf: Uint32Array;
  /** Each entry's position, in the (tensor, position) layout. */
  private readonly laidOut: Uint32Array;
  /** Where each tensor's entries start in that layout (and where the last ends). */
  private readonly firstOf: Uint32Array;
  /** Sparse specs for the top `k` entries, with `codec` (`l8`, `l4`: the tensors' `shapes` are needed). */
  specs(k: number, codec: TopkCodec, shapes?: ReadonlyMap<string, readonly number[]>): PatchSpec[] {
    // Each tensor's kept positions in order, without sorting: its entries walked in the
    // (tensor, position) layout, the ones ranked below k kept.
    const count = new Uint32Array(this.names.length);
    for (let i = 0; i < k; i++) count[this.tensorOf[i]]++;
    const specs: PatchSpec[] = [];
    this.names.forEach((name, ti) => {
      if (!count[ti]) return;
      const positions = new Uint32Array(count[ti]);
      for (let e = this.firstOf[ti], j = 0; j < positions.length; e++) if (this.rankOf[e] < k) positions[j++] = this.laidOut[e];
      const d = this.deltas.get(name) as Float32Array;
      const values = new Float32Array(positions.length);
      for (let j = 0; j < positions.length; j++) values[j] = d[positions[j]];
      if (codec === 'l8' || codec === 'l4') {
        const shape = shapes?.get(name);
        if (!shape) throw new RangeError(`codec ${codec} needs the shape of ${JSON.stringify(name)}`);
        const q = sparseLowBit(values, positions, shape, codec === 'l8' ? 8 : 4);
        specs.push({ kind: 'sparse', name, positions, values: q.decoded, codec: 'l', lowbit: q.lowbit });
      } else specs.push({ kind: 'sparse', name, positions, values, codec });
    });
    return specs;
  }
}

/**
 * The indices of `mag` (magnitudes, none negative) by magnitude, largest first, ties by index:
 * what sorting by `mag[b] - mag[a] || a - b` gives, by a stable radix sort of the float32 bits
 * (ordered as the magnitudes are) in two passes of 16 bits instead of a comparison sort.
 * With a NaN (no order), the comparison sort itself.
 */
export function largestFirst(mag: Float32Array): Uint32Array {
  const n = mag.length;
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  if (mag.some(Number.isNaN)) return order.sort((a, b) => mag[b] - mag[a] || a - b);
  // Largest first: sort ascending on the complement of the bits.
  const bits = new Uint32Array(mag.buffer, mag.byteOffset, n);
  const key = new Uint32Array(n);
  for (let i = 0; i < n; i++) key[i] = ~bits[i] >>> 0;
  const other = new Uint32Array(n);
  const count = new Uint32Array(65537);
  let from = order;
  let to = other;
  for (const shift of [0, 16]) {
    count.fill(0);
    for (let i = 0; i < n; i++) count[((key[from[i]] >>> shift) & 0xffff) + 1]++;
    for (let d = 0; d < 65536; d++) count[d + 1] += count[d];
    for (let i = 0; i < n; i++) to[count[(key[from[i]] >>> shift) & 0xffff]++] = from[i];
    [from, to] = [to, from];
  }
  return from;
}

/** Build the post-hoc top-k payload from `base` to `target` within `options.budgetBytes`. */
export function topkDiff(hasher: Hasher, base: WeightStore, target: WeightStore, options: TopkOptions): TopkResult {
  const deltas = modelDelta(base, target);
  return topkFromDeltas(hasher, base, deltas, options, 'topk');
}

/** {@link topkDiff} from precomputed deltas (also used by the drop and low-rank baselines). */
export function topkFromDeltas(hasher: Hasher, base: WeightStore, deltas: ReadonlyMap<string, Float32Array>, options: TopkOptions, method: HeaderOptions['method']): TopkResult {
  const ranking = new MagnitudeRanking(deltas);
  const shapes = new Map(base.list().map((t) => [t.name, t.shape] as const));
  const header: HeaderOptions = { ...withoutStore(options), method, budgetBytes: options.budgetBytes, grids: storageGrids(base, options.store) };
  const digests = baseDigests(hasher, base);
  const codecs = options.codec && options.codec !== 'auto' ? [options.codec] : [...VALUE_CODECS];
  let best: TopkResult | null = null;
  let changeSquared = 0;
  for (const d of deltas.values()) for (let i = 0; i < d.length; i++) changeSquared += d[i] * d[i];
  for (const codec of codecs) {
    const k = largestFitting(ranking.total, (k) => payloadSize(ranking.specs(k, codec, shapes), shapes, header) <= options.budgetBytes);
    if (k === 0 && payloadSize([], shapes, header) > options.budgetBytes) continue;
    const built = buildPayload(hasher, base, ranking.specs(k, codec, shapes), header, digests);
    const err = squaredError(deltas, base, built);
    options.onProgress?.(`codec ${codec}: ${k} of ${ranking.total} changed values fit in ${built.bytes.length} bytes (squared error ${err.toExponential(3)})`);
    if (!best || err < best.squaredError) best = { ...built, kept: k, changed: ranking.total, codec: codec === 'l8' || codec === 'l4' ? 'l' : codec, squaredError: err, changeSquared };
  }
  if (!best) {
    throw new BudgetError(`a budget of ${options.budgetBytes} bytes is smaller than an empty payload's header: raise the budget`, { budget: options.budgetBytes, min: payloadSize([], shapes, header) });
  }
  // Applied to a copy of the base, the bytes must end where the header says.
  confirmPayload(hasher, base, best, undefined, digests);
  return best;
}
