/**
 * The fingerprint of a GGUF model (docs/format/gguf.md): the model fingerprint of every other
 * format (docs/format/applying.md §6), over
 *
 * - every tensor whose type `blocks.ts` dequantizes (F32, F16, BF16, Q4_0 ... Q8_0, the
 *   K-quants), named as in the file, its shape ggml's dimensions outermost first, its values
 *   dequantized to float32;
 * - one read-only tensor `gguf:frame`, shape [8]: the 8 bytes, most significant first, of XXH64
 *   (seed 0) over each part's header bytes as stored (magic to the last tensor info: version,
 *   metadata, tensor infos with their types and offsets) followed by the stored bytes of that
 *   part's other tensors (IQ*, TQ*, integer, F64) in tensor-info order; each byte a float32
 *   0..255.
 *
 * So two models with one fingerprint differ at most in padding and in data bytes no tensor
 * covers. The values are hashed a range of blocks at a time: a tensor is never dequantized whole.
 *
 * Pure code (no node, no tfjs).
 */
import { ModelFormatError } from '../../core/errors.ts';
import { combineDigests, tensorDigestStream } from '../../core/fingerprint.ts';
import { hex64, type Hasher } from '../../core/hasher.ts';
import { dequantizeInto } from './blocks.ts';
import { tensorBytes, type GgufModel, type GgufModelTensor } from './model.ts';

/** The name of the frame tensor. */
export const GGUF_FRAME = 'gguf:frame';

/** A tensor's row-major shape: ggml's dimensions, outermost first (`[]` for none). */
export function ggufShape(ne: readonly number[]): number[] {
  return [...ne].reverse();
}

/** Whether a tensor is one of the weights (its values dequantized) or a part of the frame (its bytes). */
export function isGgufWeight(t: GgufModelTensor): boolean {
  return t.info.type.dequantizable;
}

/** Blocks dequantized at a time while hashing (about 1M values). */
function blocksPerChunk(t: GgufModelTensor): number {
  return Math.max(1, Math.floor((1 << 20) / t.info.type.blockSize));
}

/** The tensor digest (§6.1) of one weight, hashed a range of blocks at a time. */
export function ggufTensorDigest(hasher: Hasher, model: GgufModel, t: GgufModelTensor): string {
  const { type, bytes } = t.info;
  const stream = tensorDigestStream(hasher, t.info.name, ggufShape(t.info.ne));
  const step = blocksPerChunk(t) * type.typeSize;
  const values = new Float32Array(Math.min(bytes / type.typeSize, blocksPerChunk(t)) * type.blockSize);
  for (let at = 0; at < bytes; at += step) {
    const n = dequantizeInto(type, tensorBytes(model, t, at, Math.min(step, bytes - at)), values);
    stream.update(values, 0, n);
  }
  return stream.digest();
}

/** The 8 bytes of the frame's XXH64, most significant first (see the module doc). */
export function ggufFrameBytes(hasher: Hasher, model: GgufModel): Uint8Array {
  const stream = hasher.create64(0n);
  model.parts.forEach((p, i) => {
    stream.update(p.source.read(0, p.header.headerBytes));
    for (const t of model.tensors) {
      if (t.part !== i || isGgufWeight(t)) continue;
      const step = 16 * 1024 * 1024;
      for (let at = 0; at < t.info.bytes; at += step) stream.update(tensorBytes(model, t, at, Math.min(step, t.info.bytes - at)));
    }
  });
  const hex = hex64(stream.digest());
  return Uint8Array.from({ length: 8 }, (_, i) => parseInt(hex.slice(2 * i, 2 * i + 2), 16));
}

/** The frame tensor's values: its bytes as float32 0..255. */
export function ggufFrameValues(hasher: Hasher, model: GgufModel): Float32Array {
  return Float32Array.from(ggufFrameBytes(hasher, model));
}

/** Refuse a model with a tensor named like the frame. */
export function checkNoFrameName(model: GgufModel): void {
  const clash = model.tensors.find((t) => t.info.name === GGUF_FRAME);
  if (clash) throw new ModelFormatError(`${model.parts[clash.part].source.name}: a tensor is named ${JSON.stringify(GGUF_FRAME)}, the name the fingerprint gives the model's frame; expected any other name: rename the tensor`, { tensor: GGUF_FRAME });
}

/**
 * Every tensor's digest (the weights', then `gguf:frame`'s) and the model fingerprint.
 * @throws ModelFormatError a tensor named `gguf:frame`
 */
export function fingerprintGguf(hasher: Hasher, model: GgufModel): { fingerprint: string; digests: Map<string, string> } {
  checkNoFrameName(model);
  const digests = new Map<string, string>();
  for (const t of model.tensors) if (isGgufWeight(t)) digests.set(t.info.name, ggufTensorDigest(hasher, model, t));
  const frame = tensorDigestStream(hasher, GGUF_FRAME, [8]);
  const values = ggufFrameValues(hasher, model);
  frame.update(values, 0, 8);
  digests.set(GGUF_FRAME, frame.digest());
  return { fingerprint: combineDigests(hasher, digests), digests };
}
