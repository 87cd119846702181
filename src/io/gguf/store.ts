/**
 * A GGUF model as a {@link WeightStore}, read-only: the tensors the fingerprint covers
 * (`fingerprint.ts`: every dequantizable tensor as float32, and `gguf:frame`), each read from its
 * part when asked. Payloads do not patch GGUF models yet, so every entry is read-only and
 * {@link GgufWeightStore.values} refuses.
 *
 * Pure code (no node, no tfjs).
 */
import { ModelMismatchError } from '../../core/errors.ts';
import type { Hasher } from '../../core/hasher.ts';
import type { TensorEntry, WeightStore } from '../../core/weight-store.ts';
import { dequantize } from './blocks.ts';
import { checkNoFrameName, fingerprintGguf, ggufFrameValues, ggufShape, GGUF_FRAME, isGgufWeight } from './fingerprint.ts';
import { tensorBytes, type GgufModel, type GgufModelTensor } from './model.ts';

/** A tensor of a GGUF model as {@link GgufWeightStore.list} gives it: read-only, with its ggml type. */
export interface GgufTensorEntry extends TensorEntry {
  readonly patchable: false;
  /** ggml's type name (`Q4_K`, `F16`), `frame` for `gguf:frame`. */
  readonly dtype: string;
}

/** A read-only {@link WeightStore} over a GGUF model (see the module doc). */
export class GgufWeightStore implements WeightStore {
  private readonly byName: Map<string, GgufModelTensor>;
  private frame?: Float32Array;

  /**
   * @param model the model (one file or the parts of a split one).
   * @param hasher what hashes the frame (`getHasher()`).
   * @throws ModelFormatError a tensor named `gguf:frame`
   */
  constructor(readonly model: GgufModel, private readonly hasher: Hasher) {
    checkNoFrameName(model);
    this.byName = new Map(model.tensors.filter(isGgufWeight).map((t) => [t.info.name, t]));
  }

  /** The dequantizable tensors in file order, then `gguf:frame`. */
  list(): GgufTensorEntry[] {
    return [
      ...[...this.byName.values()].map((t): GgufTensorEntry => ({ name: t.info.name, shape: ggufShape(t.info.ne), patchable: false, dtype: t.info.type.name })),
      { name: GGUF_FRAME, shape: [8], patchable: false, dtype: 'frame' },
    ];
  }

  /** A tensor's float32 values, dequantized from its part (a new array each call). */
  read(name: string): Float32Array {
    if (name === GGUF_FRAME) return (this.frame ??= ggufFrameValues(this.hasher, this.model));
    const t = this.byName.get(name);
    if (!t) throw new ModelMismatchError(`no tensor named ${JSON.stringify(name)} among the ${this.byName.size} weights of ${this.model.parts[0].source.name}: the payload or the name was made for another model`, { name });
    return dequantize(t.info.type, tensorBytes(this.model, t));
  }

  /** Refused: payloads do not patch GGUF models yet. */
  values(name: string): Float32Array {
    throw new ModelMismatchError(`tensor ${JSON.stringify(name)} of ${this.model.parts[0].source.name} is read-only: GGUF models are inspected and fingerprinted here, not patched; ship the new .gguf file as a full download`, { name });
  }

  /** The fingerprint and every digest, hashed a range of blocks at a time (see `fingerprint.ts`). */
  fingerprint(): { fingerprint: string; digests: Map<string, string> } {
    return fingerprintGguf(this.hasher, this.model);
  }
}
