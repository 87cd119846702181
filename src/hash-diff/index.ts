/**
 * Hashed-bucket diffs (`--method hash`): every position of a tensor maps through a seeded hash
 * to one of b buckets and a ±1 sign; only the bucket values are learned and shipped, no indices.
 *
 * - Post-hoc encoder: none; buckets are learned, not computed from a fine-tune's delta.
 * - Trainer parameterization: {@link HashedBuckets} (trainer.ts): W = W0 + sign(i) · B[bucket(i)];
 *   its `specs()` are the patches that ship (a seed and the bucket values per tensor).
 * - Patch kind: `hash` (`k` = `h`, docs/FORMAT.md §2.3; the hash pinned in
 *   docs/FORMAT-hashing.md). The device recomputes every position's bucket and sign in the pure
 *   core, which stays tfjs-free and must agree bit for bit with the trainer:
 *   src/core/bucket.ts (`fillBuckets`, `positionHash`), src/core/patch-math.ts
 *   (`applyTensorPatch`, or the WebAssembly kernel of src/core/hash-kernel.wat).
 *
 * This index loads tfjs (the trainer).
 */
export { HashedBuckets } from './trainer.ts';
