/**
 * The on-grid GGUF encoder (docs/format/gguf.md §18.6): a lossy update of a GGUF model under a
 * byte budget that stays on the device's grid. The device ends with a valid GGUF of the same
 * types in which every unit (a ggml block, or 32 weights of an F32/F16/BF16 tensor) is the base's
 * or the target's byte for byte, the units chosen by the squared dequantized change they remove
 * per payload byte, the header taken from the target. The payload is the exact block payload
 * (format v8, `src/io/gguf/diff.ts`) whose target is that mixed file, so its target digest names
 * the mixed file and any device that applies a block payload applies it unchanged: no float
 * arithmetic on the device, every device gets the same bytes.
 *
 * Two streaming passes over the models: pass 1 (`ranking.ts`) bins every changed unit's score
 * per estimated byte; a threshold on the bins takes the best units whose estimate fits; pass 2
 * codes the mixed model (`mixed.ts`) with the exact encoder. The real size is known only after
 * coding, so the take is corrected from it a bounded number of times ({@link MAX_TRIES}), and
 * the largest payload that fits is kept. Deterministic: the same models and budget give the same
 * bytes. Memory: the exact encoder's (a slice of each model, a chunk) and a 12k-bin histogram.
 *
 * Pure code (no node, no tfjs).
 */
import { BudgetError, ModelMismatchError } from '../core/errors.ts';
import type { Hasher } from '../core/hash-types.ts';
import { diffGgufModels, ggufChanges, ggufLayoutDifference, type GgufDiffOptions, type GgufDiffResult } from '../io/gguf/diff.ts';
import type { GgufModel } from '../io/gguf/model.ts';
import { mixedGgufModel } from './mixed.ts';
import { rankGgufChange, RANKING_BINS, takenFrom, thresholdFor, type GgufRanking, type TensorWeights } from './ranking.ts';

/** Codings of the mixed model tried at most (each a pass over both models). */
export const MAX_TRIES = 6;
/** A payload within this share under the budget is taken without another try. */
const CLOSE_ENOUGH = 0.97;

/** What {@link ongridGgufDiff} returns: the exact encoder's result for the mixed model, and what was taken. */
export interface OngridGgufResult extends GgufDiffResult {
  /** The byte budget it was made under. */
  budgetBytes: number;
  /** Scored units (blocks, or 32-weight groups of plain tensors) that changed, and those carried. */
  changedBlocks: number;
  takenBlocks: number;
  /** Changed units of tensors without a dequantizer (always carried). */
  opaqueBlocks: number;
  /** The share of the squared dequantized change carried (1 when every scored change is; 1 when none changed). */
  changeCarried: number;
  /** Bytes of the changed blocks carried (scored and opaque ones) plus the changed bytes outside blocks, and the same for every change. */
  keptBytes: number;
  changedBlockBytes: number;
  /** Codings tried. */
  tries: number;
  /** True when every changed unit is carried (the payload is the exact one). */
  exact: boolean;
}

/**
 * The on-grid payload from `base` to `target` (one layout) in at most `budgetBytes` bytes.
 * `weights`: per-tensor calibration weights (src/front/measure/gguf-calibrate.ts) multiplying each
 * unit's squared change before it is ranked; without them every tensor weighs 1.
 * @throws ModelMismatchError two models laid out differently; BudgetError when even the payload
 *   carrying no scored unit (the header and the opaque blocks only) is over the budget
 */
export function ongridGgufDiff(hasher: Hasher, base: GgufModel, target: GgufModel, budgetBytes: number, o: GgufDiffOptions, weights?: TensorWeights): OngridGgufResult {
  const difference = ggufLayoutDifference(base, target);
  if (difference) {
    throw new ModelMismatchError(`the two GGUF models are laid out differently (${difference}): an on-grid payload takes each changed block from one version or the other in place, so tensors, types, shapes, data offsets and the header's length must stay; ship the new .gguf file whole, or diff two versions of one layout`, { difference, structural: true });
  }
  const ranking = rankGgufChange(base, target, weights);
  // Every mix differs from the base only where the target does: each try compares those ranges alone.
  const within = ggufChanges(hasher, base, target);
  const tried = new Map<number, GgufDiffResult>();
  const code = (threshold: number) => {
    let r = tried.get(threshold);
    if (!r) {
      r = diffGgufModels(hasher, base, mixedGgufModel(base, target, threshold, weights), { ...o, within });
      tried.set(threshold, r);
    }
    return r;
  };
  // The payload carrying no scored unit: the fixed cost, and the refusal when it does not fit.
  const none = code(RANKING_BINS);
  if (none.payload.length > budgetBytes) {
    throw new BudgetError(`a budget of ${budgetBytes} bytes cannot hold an on-grid GGUF payload of these two models: the smallest one, carrying the changed header and padding bytes and the blocks of types without a dequantizer (${ranking.mandatoryBytes} changed bytes) and no other block, is ${none.payload.length} bytes; give a budget of at least ${none.payload.length} bytes, or budget all (--budget all) for the exact payload`, { budgetBytes, minimumBytes: none.payload.length });
  }
  const fixed = none.payload.length;
  // best: the lowest threshold (the most taken) known to fit; worst: the highest known not to.
  let best = RANKING_BINS;
  let worst = -1;
  let threshold = thresholdFor(ranking, budgetBytes - fixed);
  for (let i = 0; i < MAX_TRIES && threshold > worst && threshold < best; i++) {
    const r = code(threshold);
    const fits = r.payload.length <= budgetBytes;
    if (fits) best = threshold;
    else worst = threshold;
    if (fits && (threshold === 0 || r.payload.length >= CLOSE_ENOUGH * budgetBytes)) break;
    // The real bytes per estimated byte of what this try took, applied to what the budget leaves.
    const estimate = takenFrom(ranking, threshold).cost;
    const per = estimate > 0 && r.payload.length > fixed ? (r.payload.length - fixed) / estimate : 1;
    let next = thresholdFor(ranking, Math.floor((CLOSE_ENOUGH * 1.01 * budgetBytes - fixed) / per));
    if (next <= worst) next = worst + 1;
    if (next >= best) next = best - 1;
    if (next === threshold) next = fits ? nextBinBelow(ranking, threshold) : threshold + 1;
    threshold = next;
  }
  const r = code(best);
  const taken = takenFrom(ranking, best);
  return summarize(r, ranking, budgetBytes, taken, tried.size);
}

/** The highest threshold below `threshold` that takes one more non-empty bin (-1 when none is left). */
function nextBinBelow(r: GgufRanking, threshold: number): number {
  for (let k = threshold - 1; k >= 0; k--) if (r.units[k] > 0) return k;
  return -1;
}

function summarize(r: GgufDiffResult, ranking: GgufRanking, budgetBytes: number, taken: { units: number; bytes: number; score: number }, tries: number): OngridGgufResult {
  const fixed = ranking.mandatoryBytes + ranking.opaqueBytes;
  return {
    keptBytes: taken.bytes + fixed,
    changedBlockBytes: takenFrom(ranking, 0).bytes + fixed,
    ...r,
    budgetBytes,
    changedBlocks: ranking.changedUnits,
    takenBlocks: taken.units,
    opaqueBlocks: ranking.opaqueUnits,
    changeCarried: ranking.totalScore > 0 ? taken.score / ranking.totalScore : 1,
    tries,
    exact: taken.units === ranking.changedUnits,
  };
}
