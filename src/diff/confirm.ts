/**
 * The last check before a payload is handed out: decode its bytes, apply them to a copy of the
 * base in memory with the device's arithmetic, and confirm the result is the target the header
 * names (and, for an exact payload, the target model itself, fingerprint for fingerprint). A
 * payload that would not take the base where it says is never written.
 *
 * Pure code (no node, no tfjs).
 */
import { TargetMismatchError } from '../core/errors.ts';
import { combineDigests, fingerprintStore, tensorDigest } from '../core/fingerprint.ts';
import { decodePayload } from '../core/format.ts';
import type { Hasher } from '../core/hasher.ts';
import { applyTensorPatch } from '../core/patch-math.ts';
import { readForDigest, type WeightStore } from '../core/weight-store.ts';
import { baseDigests, type BuiltPayload } from './build.ts';

/** What `confirmPayload` found: the fingerprint base + payload has. */
export interface Confirmation {
  baseFingerprint: string;
  reachedFingerprint: string;
}

/**
 * Apply `built.bytes` to a copy of `base` (patched tensors only; `base` is not written) and
 * check the header: its base fingerprint is `base`'s, its target is what the copy ends at, and,
 * with `target`, that is `target`'s fingerprint.
 * @throws TargetMismatchError naming the tensors that end elsewhere
 */
export function confirmPayload(hasher: Hasher, base: WeightStore, built: Pick<BuiltPayload, 'bytes'>, target?: WeightStore, digests = baseDigests(hasher, base)): Confirmation {
  const payload = decodePayload(built.bytes);
  const { header } = payload;
  const baseFingerprint = combineDigests(hasher, digests);
  if (baseFingerprint !== header.baseFingerprint) {
    throw new TargetMismatchError(`the payload names base ${header.baseFingerprint}, but the base model is ${baseFingerprint}: it was built from another model; nothing was written`, { expected: baseFingerprint, found: header.baseFingerprint });
  }
  const after = new Map(digests);
  for (const patch of payload.patches) {
    const w = readForDigest(base, patch.name).slice();
    applyTensorPatch(w, patch, false);
    after.set(patch.name, tensorDigest(hasher, patch.name, patch.shape, w));
  }
  const reached = combineDigests(hasher, after);
  if (reached !== header.targetFingerprint) {
    throw new TargetMismatchError(`applied to a copy of the base, the payload ends at ${reached}, not at the target ${header.targetFingerprint} its header names: nothing was written. This is a bug of the builder: please report it`, { expected: header.targetFingerprint, found: reached });
  }
  if (target) {
    const want = fingerprintStore(hasher, target);
    if (want.fingerprint !== reached) {
      const names = new Set([...after.keys(), ...want.digests.keys()]);
      const differ = [...names].filter((n) => after.get(n) !== want.digests.get(n)).sort();
      throw new TargetMismatchError(
        `applied to a copy of the base, the payload ends at ${reached}, but the target model is ${want.fingerprint}: ${differ.length} tensor(s) differ (${differ.slice(0, 4).map((n) => JSON.stringify(n)).join(', ')}${differ.length > 4 ? ', ...' : ''}). Nothing was written: ship the new model file`,
        { expected: want.fingerprint, found: reached, tensors: differ },
      );
    }
  }
  return { baseFingerprint, reachedFingerprint: reached };
}
