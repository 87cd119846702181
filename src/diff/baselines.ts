/**
 * Post-hoc baselines for the comparison report, each from the delta of a fully fine-tuned model
 * and pushed through the same payload codec and byte budget as the learned diffs:
 * - top-k by magnitude (src/topk-diff);
 * - random drop and rescale (here): keep a seeded random subset of the changed entries and scale
 *   the survivors by (changed / kept), so the expected delta is unchanged;
 * - low-rank (src/lowrank-diff/encoder.ts);
 * - Delta-CoMe (delta-come.ts).
 *
 * The options and result types are shared by the drop and low-rank baselines.
 */
import { BudgetError } from '../core/errors.ts';
import { seededRandom } from '../core/random.ts';
import { matrixDims } from '../core/format.ts';
import type { Hasher } from '../core/hasher.ts';
import { bytesPerValue, type ValueCodec } from '../core/values.ts';
import type { WeightStore } from '../core/weight-store.ts';
import { baseDigests, buildPayload, payloadSize, storageGrids, withoutStore, type BuiltPayload, type HeaderOptions, type PatchSpec, type StoreAs } from './build.ts';
import { confirmPayload } from './confirm.ts';
import { largestFitting } from './budget.ts';
import { factorize } from './factorize.ts';

export interface BaselineOptions extends Omit<HeaderOptions, 'method' | 'budgetBytes' | 'grids'> {
  budgetBytes: number;
  /** Keep quantized tensors on their storage grid (default) or give float32 results: see {@link StoreAs}. */
  store?: StoreAs;
  codec?: ValueCodec;
  seed?: number;
}

export interface BaselineResult extends BuiltPayload {
  /** Entries (drop) or rank-1 terms (low-rank) kept. */
  kept: number;
}

/** Random drop-and-rescale of `deltas` within the budget. */
export function dropDiff(hasher: Hasher, base: WeightStore, deltas: ReadonlyMap<string, Float32Array>, options: BaselineOptions): BaselineResult {
  const codec = options.codec ?? 'f16';
  const names = [...deltas.keys()].sort();
  const entries: [number, number][] = [];
  names.forEach((n, ti) => {
    const d = deltas.get(n) as Float32Array;
    for (let i = 0; i < d.length; i++) if (d[i] !== 0) entries.push([ti, i]);
  });
  const random = seededRandom(options.seed ?? 0);
  for (let i = entries.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [entries[i], entries[j]] = [entries[j], entries[i]];
  }
  const specs = (k: number): PatchSpec[] => {
    const scale = k ? entries.length / k : 1;
    const per: number[][] = names.map(() => []);
    for (let i = 0; i < k; i++) per[entries[i][0]].push(entries[i][1]);
    const out: PatchSpec[] = [];
    names.forEach((n, ti) => {
      if (!per[ti].length) return;
      const positions = Uint32Array.from(per[ti]).sort();
      const d = deltas.get(n) as Float32Array;
      out.push({ kind: 'sparse', name: n, positions, values: Float32Array.from(positions, (p) => d[p] * scale), codec });
    });
    return out;
  };
  const shapes = new Map(base.list().map((t) => [t.name, t.shape] as const));
  const header: HeaderOptions = { ...withoutStore(options), method: 'drop', budgetBytes: options.budgetBytes, grids: storageGrids(base, options.store) };
  const k = largestFitting(entries.length, (k) => payloadSize(specs(k), shapes, header) <= options.budgetBytes);
  if (k === 0 && payloadSize([], shapes, header) > options.budgetBytes) throw new BudgetError(`a budget of ${options.budgetBytes} bytes cannot hold even an empty payload`);
  const built = buildPayload(hasher, base, specs(k), header);
  confirmPayload(hasher, base, built);
  return { ...built, kept: k };
}
