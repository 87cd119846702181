/**
 * On-grid GGUF diffs (`ndiff diff` of two .gguf models under a byte budget other than `all`):
 * a lossy update that stays on the device's grid, every ggml block of the result the base's or
 * the target's byte for byte (docs/format/gguf.md §18.6).
 *
 * - Encoder: {@link ongridGgufDiff} (encoder.ts), the blocks ranked by the squared dequantized
 *   change they remove per payload byte (ranking.ts), the mixed model they make (mixed.ts).
 * - Payload: the exact GGUF block payload (format v8, src/io/gguf/payload.ts) whose target is the
 *   mixed model; the device applies it as it applies any block payload (src/io/gguf/in-place.ts).
 *
 * Pure code (no node, no tfjs).
 */
export { ongridGgufDiff, MAX_TRIES, type OngridGgufResult } from './encoder.ts';
export { PLAIN_GROUP, rankGgufChange, rowChange, type TensorWeight, type TensorWeights } from './ranking.ts';
