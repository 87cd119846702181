/**
 * Composite diffs (`--method sparse-lora`): a low-rank part and a sparse part of the same
 * weights, trained jointly (after RoSA).
 *
 * - Post-hoc encoder: none; both parts are trained. {@link compositeSpecs} turns a rank per
 *   tensor and the sparse positions into the patches the budget is sized with.
 * - Trainer parameterization: {@link FisherWarmup} (a LoRA warm-up summing squared gradients,
 *   with src/lowrank-diff's adapters), {@link FisherRanking} (the mask from those sums) and
 *   {@link SparseLowRank} (both parts from a restart) in trainer.ts.
 * - Patch kind: `composite` (`k` = `c`, format v5, docs/FORMAT.md §5.2). The device applies it in
 *   the pure core, which stays tfjs-free: src/core/format.ts (`decodePayload`),
 *   src/core/patch-math.ts (`applyTensorPatch`).
 *
 * This index loads tfjs (the trainer).
 */
export { compositeSpecs, FisherRanking, FisherWarmup, SparseLowRank } from './trainer.ts';
