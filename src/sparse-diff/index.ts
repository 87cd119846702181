/**
 * Sparse-mask diffs (`--method sparse`): a learned mask picks which weights change, and only
 * those travel, as positions and values.
 *
 * - Post-hoc encoder: none of its own; the post-hoc sparse diff is top-k (src/topk-diff), whose
 *   `MagnitudeRanking` also picks this trainer's exact hard mask within the byte budget.
 * - Trainer parameterization: {@link SparseMask} (trainer.ts): W = W0 + m ⊙ D, the mask hardening
 *   and pruning to the budget, then D fine-tuned under the hard mask; its `specs()` are the
 *   patches that ship. `topk-retrain` trains with it too, hardened to a full fine-tune's top-k.
 * - Patch kind: `sparse` (docs/FORMAT.md §3 positions, §4 values). The device decodes and adds it
 *   in the pure core, which stays tfjs-free: src/core/format.ts (`decodePayload`),
 *   src/core/patch-math.ts (`applyTensorPatch`).
 *
 * This index loads tfjs (the trainer).
 */
export { SparseMask, DEFAULT_SPARSE_MASK, type SparseMaskOptions } from './trainer.ts';
