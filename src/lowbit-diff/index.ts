/**
 * Low-bit diffs (`--method lowbit`): every changed weight carried coarsely, at 1 to 8 bits with a
 * scale per group of values (codec `l`, format v6), or a tensor's change as low-rank factors in
 * codec `l`; mixed precision, each tensor's width chosen where it removes the most error.
 *
 * - Post-hoc encoder: {@link lowbitDiff} and {@link lowbitFromDeltas} (encoder.ts), with the
 *   allocation of bytes among tensors (allocate.ts), quantizations kept between encodings
 *   (cache.ts) and the rounding of a change against its layer's inputs (gptq.ts). Codec `l`'s
 *   quantizers are shared with top-k's `l8`/`l4` and live below both: src/diff/lowbit-quantize.ts.
 * - Trainer parameterization: {@link LowBitScales} (trainer.ts, `ndiff train --method lowbit`):
 *   the post-hoc payload's codes kept, its scales (and factors' scales) distilled.
 * - Patch kinds: `dense` and `sparse` patches in codec `l`, kind `n` (a tensor's new values) and
 *   `lowrank` factors in codec `l` (docs/FORMAT.md §4.4). The device decodes codec `l` in the pure
 *   core, which stays tfjs-free: src/core/lowbit.ts (`decodeLowBit`, `decodeLowBitFactors`),
 *   applied by src/core/patch-math.ts (`applyTensorPatch`).
 *
 * This index loads tfjs (the trainer): code that must not imports encoder.ts or gptq.ts.
 */
export { lowbitDiff, lowbitFromDeltas, lowbitVariants, describeWidths, BITDELTA_CODE, type LowBitOptions, type LowBitResult } from './encoder.ts';
export { LowBitScales } from './trainer.ts';
