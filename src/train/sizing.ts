/**
 * Fitting a method to the byte budget before training: how many sparse entries, hashed buckets
 * or adapter ranks the payload encoder will take, and the codec of a dense delta.
 */
import { BudgetError } from '../core/errors.ts';
import { isIntegerGrid, type StorageGrid } from '../core/grid.ts';
import type { ValueCodec } from '../core/values.ts';
import { payloadSize, type HeaderOptions, type PatchSpec } from '../diff/build.ts';
import { largestFitting } from '../diff/budget.ts';
import { loraEligible } from '../lowrank-diff/index.ts';

/** A weight tensor that trains, with its base values. */
export interface TrainableTensor {
  name: string;
  shape: number[];
  values: Float32Array;
}

/** Largest count K of entries spread evenly over the tensors that fits the budget (a pre-training estimate). */
export function estimateSparseCount(tensors: TrainableTensor[], shapes: Map<string, readonly number[]>, header: HeaderOptions, codec: ValueCodec, budget: number): number {
  const total = tensors.reduce((n, t) => n + t.values.length, 0);
  const specs = (k: number): PatchSpec[] =>
    tensors.flatMap((t) => {
      const kt = Math.round((k * t.values.length) / total);
      if (!kt) return [];
      const step = t.values.length / kt;
      const positions = Uint32Array.from({ length: kt }, (_, i) => Math.floor(i * step));
      return [{ kind: 'sparse' as const, name: t.name, positions, values: new Float32Array(kt).fill(1e-3), codec }];
    });
  return largestFitting(total, (k) => payloadSize(specs(k), shapes, header) <= budget);
}

/** Bucket counts proportional to tensor size that fit the budget. */
export function chooseBucketCounts(tensors: TrainableTensor[], shapes: Map<string, readonly number[]>, header: HeaderOptions, codec: ValueCodec, budget: number, signed: boolean): Map<string, number> {
  const counts = (alpha: number) => new Map(tensors.map((t) => [t.name, Math.min(t.values.length, Math.max(1, Math.round(alpha * t.values.length)))]));
  // Seed 0xffffffff and non-integer values: the largest msgpack encodings a real seed and an
  // int8 scale can take (msgpack writes an integer-valued scale in fewer bytes), so sizes are upper bounds.
  const specs = (alpha: number): PatchSpec[] => [...counts(alpha)].map(([name, nb]) => ({ kind: 'hash', name, seed: 0xffffffff, signed, buckets: new Float32Array(nb).fill(1e-3), codec }));
  if (payloadSize(specs(0), shapes, header) > budget) {
    throw new BudgetError(`a budget of ${budget} bytes cannot give even one bucket to each of the ${tensors.length} tensors (needs ${payloadSize(specs(0), shapes, header)} bytes): raise the budget`);
  }
  let lo = 0;
  let hi = 1;
  for (let i = 0; i < 40; i++) {
    const mid = (lo + hi) / 2;
    if (payloadSize(specs(mid), shapes, header) <= budget) lo = mid;
    else hi = mid;
  }
  return counts(lo);
}

/**
 * Ranks of LoRA adapters that fit the budget: the largest rank every adapted matrix can share,
 * after taking matrices from the output end of the model while even rank 1 for all does not fit
 * (adapting the last layers first is the usual choice when few bytes are available).
 */
export function chooseLoraRanks(tensors: TrainableTensor[], shapes: Map<string, readonly number[]>, header: HeaderOptions, codec: ValueCodec, budget: number): Map<string, number> {
  const eligible = tensors.filter((t) => loraEligible(t.shape));
  const specs = (chosen: TrainableTensor[], rank: number): PatchSpec[] =>
    chosen.map((t) => {
      const cols = t.shape[t.shape.length - 1];
      const rows = t.values.length / cols;
      const r = Math.min(rank, rows, cols);
      return { kind: 'lowrank', name: t.name, rank: r, u: new Float32Array(rows * r).fill(1e-3), v: new Float32Array(r * cols).fill(1e-3), codec };
    });
  const fits = (chosen: TrainableTensor[], rank: number) => payloadSize(specs(chosen, rank), shapes, header) <= budget;
  // From the output end: the longest tail of eligible matrices that fits at rank 1.
  const n = largestFitting(eligible.length, (k) => fits(eligible.slice(eligible.length - k), 1));
  if (n === 0) throw new BudgetError(`a budget of ${budget} bytes cannot hold even a rank-1 adapter of one weight matrix: raise the budget`);
  const chosen = eligible.slice(eligible.length - n);
  const maxRank = Math.max(...chosen.map((t) => Math.min(t.values.length / t.shape[t.shape.length - 1], t.shape[t.shape.length - 1])));
  const rank = Math.max(1, largestFitting(maxRank, (r) => r >= 1 && fits(chosen, r)));
  return new Map(chosen.map((t) => {
    const cols = t.shape[t.shape.length - 1];
    return [t.name, Math.min(rank, t.values.length / cols, cols)] as [string, number];
  }));
}

/** Codec of a dense delta on a tensor's storage grid: whole steps as i8 when they fit, else f16/f32. */
export function denseCodec(delta: Float32Array, grid: StorageGrid | undefined): ValueCodec {
  if (!grid || grid.dtype === 'float32') return 'f32';
  let max = 0;
  for (let i = 0; i < delta.length; i++) max = Math.max(max, Math.abs(delta[i]));
  if (isIntegerGrid(grid) && Math.round(max / grid.scale) <= 127) return 'i8';
  return max <= 65504 ? 'f16' : 'f32';
}
