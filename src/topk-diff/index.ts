/**
 * Top-k diffs (`--method topk`, `topk-retrain`): the largest changes of a fine-tune, shipped as
 * sparse patches.
 *
 * - Post-hoc encoder: {@link topkDiff} and {@link topkFromDeltas} (encoder.ts): the largest
 *   |target - base| entries across the model that fit the byte budget, in the value codec that
 *   leaves the least squared error. Its {@link MagnitudeRanking} also picks the sparse trainer's
 *   exact mask (src/sparse-diff).
 * - Trainer parameterization: none of its own. `topk-retrain` (src/train/train-diff.ts) retrains
 *   the top-k positions of a full fine-tune from the base with the sparse mask's parameterization
 *   (src/sparse-diff `SparseMask`, hardened to those positions).
 * - Patch kind: `sparse` (docs/FORMAT.md §3 positions, §4 values; codec `l` for `l8`/`l4`,
 *   §4.4). The device decodes it in the pure core, which stays tfjs-free: src/core/format.ts
 *   (`decodePayload`), src/core/lowbit.ts (`decodeLowBit`, codec `l`), src/core/patch-math.ts
 *   (`applyTensorPatch`).
 *
 * Nothing here loads tfjs.
 */
export { topkDiff, topkFromDeltas, MagnitudeRanking, type TopkOptions, type TopkResult, type TopkCodec } from './encoder.ts';
