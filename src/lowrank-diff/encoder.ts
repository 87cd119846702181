/**
 * The post-hoc low-rank diff (`--method lowrank`), a baseline for the comparison report: the
 * truncated SVD of each tensor's delta as a matrix (`matrixDims`, src/diff/factorize.ts), ranks
 * given out greedily by singular value energy per payload byte across tensors, shipped as
 * low-rank patches in the budget.
 */
import { BudgetError } from '../core/errors.ts';
import { matrixDims } from '../core/format.ts';
import type { Hasher } from '../core/hasher.ts';
import { bytesPerValue } from '../core/values.ts';
import type { WeightStore } from '../core/weight-store.ts';
import type { BaselineOptions, BaselineResult } from '../diff/baselines.ts';
import { largestFitting } from '../diff/budget.ts';
import { baseDigests, buildPayload, payloadSize, storageGrids, withoutStore, type HeaderOptions, type PatchSpec } from '../diff/build.ts';
import { confirmPayload } from '../diff/confirm.ts';
import { factorize } from '../diff/factorize.ts';

/** Low-rank diff of `deltas` within the budget. */
export function lowRankDiff(hasher: Hasher, base: WeightStore, deltas: ReadonlyMap<string, Float32Array>, options: BaselineOptions): BaselineResult {
  const codec = options.codec ?? 'f16';
  const shapes = new Map(base.list().map((t) => [t.name, t.shape] as const));
  const bpv = bytesPerValue(codec);
  const facts = [...deltas.keys()].sort().map((n) => {
    const shape = shapes.get(n) as readonly number[];
    const { rows, cols } = matrixDims(shape);
    const maxRank = Math.max(1, Math.floor(options.budgetBytes / (bpv * (rows + cols))));
    return factorize(n, deltas.get(n) as Float32Array, shape, Math.min(maxRank, 256));
  });
  // Greedy order: energy per byte, across tensors (within a tensor energies are descending).
  const picks: { f: number; c: number; score: number }[] = [];
  facts.forEach((fa, f) => fa.components.forEach((co, c) => picks.push({ f, c, score: co.energy / ((fa.rows + fa.cols) * bpv) })));
  picks.sort((a, b) => b.score - a.score || a.f - b.f || a.c - b.c);
  const specs = (k: number): PatchSpec[] => {
    const rank = facts.map(() => 0);
    for (let i = 0; i < k; i++) rank[picks[i].f] = Math.max(rank[picks[i].f], picks[i].c + 1);
    const out: PatchSpec[] = [];
    facts.forEach((fa, f) => {
      const r = rank[f];
      if (!r) return;
      const u = new Float32Array(fa.rows * r);
      const v = new Float32Array(r * fa.cols);
      for (let c = 0; c < r; c++) {
        const co = fa.components[c];
        for (let i = 0; i < fa.rows; i++) u[i * r + c] = co.u[i];
        v.set(co.v, c * fa.cols);
      }
      out.push({ kind: 'lowrank', name: fa.name, rank: r, u, v, codec });
    });
    return out;
  };
  const header: HeaderOptions = { ...withoutStore(options), method: 'lowrank', budgetBytes: options.budgetBytes, grids: storageGrids(base, options.store) };
  const k = largestFitting(picks.length, (k) => payloadSize(specs(k), shapes, header) <= options.budgetBytes);
  if (k === 0 && payloadSize([], shapes, header) > options.budgetBytes) throw new BudgetError(`a budget of ${options.budgetBytes} bytes cannot hold even an empty payload`);
  const digests = baseDigests(hasher, base);
  const built = buildPayload(hasher, base, specs(k), header, digests);
  confirmPayload(hasher, base, built, undefined, digests);
  return { ...built, kept: k };
}
