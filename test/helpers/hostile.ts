/**
 * Payloads the build server would refuse to make but a hostile (or broken) signer can: the
 * patches are encoded and their target digests computed with the device's own arithmetic, so
 * the payload is self-consistent, without the encoder's checks (finite results).
 */
import { encodeSpec, CREATED_BY, type PatchSpec } from '../../src/diff/build.ts';
import { packPayload, wirePatch } from '../../src/core/encode.ts';
import { combineDigests, tensorDigest } from '../../src/core/fingerprint.ts';
import { FORMAT_VERSION, type PayloadHeader, type TensorPatch } from '../../src/core/format.ts';
import type { Hasher } from '../../src/core/hasher.ts';
import { applyTensorPatch } from '../../src/core/patch-math.ts';
import type { MemoryWeightStore } from '../../src/core/weight-store.ts';

export function consistentPayload(hasher: Hasher, base: MemoryWeightStore, specs: PatchSpec[], header: { modelId?: string; sequence?: number } = {}): Uint8Array {
  const digests = new Map(base.list().map((t) => [t.name, tensorDigest(hasher, t.name, t.shape, base.values(t.name))]));
  const after = new Map(digests);
  const wires = [...specs].sort((a, b) => (a.name < b.name ? -1 : 1)).map((spec) => {
    const shape = base.list().find((t) => t.name === spec.name)!.shape;
    const enc = encodeSpec(spec, shape)!;
    const w = base.values(spec.name).slice();
    applyTensorPatch(w, enc.patch, false);
    const targetDigest = tensorDigest(hasher, spec.name, shape, w);
    after.set(spec.name, targetDigest);
    const patch: TensorPatch = { ...enc.patch, baseDigest: digests.get(spec.name)!, targetDigest };
    return wirePatch(patch, enc.valueBytes);
  });
  const h: PayloadHeader = {
    version: FORMAT_VERSION,
    method: 'topk',
    modelId: header.modelId ?? 'hostile',
    baseFingerprint: combineDigests(hasher, digests),
    targetFingerprint: combineDigests(hasher, after),
    sequence: header.sequence ?? 1,
    budgetBytes: 0,
    createdBy: CREATED_BY,
  };
  return packPayload(h, wires);
}
