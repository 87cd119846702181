/**
 * Low-rank diffs: a change W - W0 carried as factors U · V of each weight matrix.
 *
 * - Post-hoc encoder: {@link lowRankDiff} (encoder.ts, `--method lowrank`): the truncated SVD of
 *   a fine-tune's delta, ranks given out by singular value energy per payload byte.
 * - Trainer parameterization: {@link LowRankAdapters} (trainer.ts, `--method lora`): LoRA-style
 *   adapters beside the frozen base, W = W0 + U · V, quantization-aware; {@link loraEligible}
 *   says which tensors an adapter can serve.
 * - Patch kind: `lowrank` (docs/FORMAT.md §2.3, the arithmetic §5; factors in codec `l`, §4.4).
 *   The device multiplies the factors out in a pinned order in the pure core, which stays
 *   tfjs-free: src/core/format.ts (`decodePayload`), src/core/patch-math.ts (`applyTensorPatch`).
 *
 * This index loads tfjs (the trainer): code that must not imports encoder.ts.
 */
export { lowRankDiff } from './encoder.ts';
export { LowRankAdapters, loraEligible } from './trainer.ts';
