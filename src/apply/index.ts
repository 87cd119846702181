/**
 * `neural-diff/apply`: the device entry point. Imports only the pure core (no tfjs, no node
 * modules) so it can be bundled alone for browsers, Electron, Node and React Native. What only
 * a build server needs (`decodePayload`, which keeps every patch decoded; `applyDecodedPayload`;
 * `sealEnvelope`, `envelopeSigningInput`) is in `neural-diff/kit`.
 *
 * @module neural-diff/apply
 */
export { applyPayload, applyVerifiedPayload, verifyPayload, checkPayloadFitsModel, type ApplyOptions, type ApplyResult, type HealthCheck, type TwoPhaseWeightStore, type VerifiedPayload } from './apply.ts';
export { openSignedPayload, parseTrustedKeys, type SignaturePolicy, type SignatureCheck, type PublicKeyInput } from './signature.ts';
export { parsePublicKey, keyIdOf, webCryptoHasEd25519, resolveVerifier, type TrustedKey, type Ed25519Verifier } from './ed25519.ts';
export { isSignedEnvelope, parseEnvelope, ENVELOPE_MAGIC, ENVELOPE_VERSION, ENVELOPE_OVERHEAD, type SignedEnvelope } from './envelope.ts';
export { MemorySequenceStore, type SequenceStore, type SequenceRecord } from './freshness.ts';
export { openPayload, FORMAT_VERSION, SUPPORTED_VERSIONS, DEFAULT_MAX_PAYLOAD_BYTES, type Payload, type PayloadHeader, type TensorPatch, type SparsePatch, type HashPatch, type DensePatch, type LowRankPatch, type CompositePatch, type DecodeOptions, type OpenedPayload, type PatchSource, type PatchChunk } from '../core/format.ts';
export type { LowBit, LowBitFactors } from '../core/lowbit.ts';
export { fingerprintStore, tensorDigest, combineDigests } from '../core/fingerprint.ts';
export { getHasher, type Hasher } from '../core/hasher.ts';
export { MemoryWeightStore, type WeightStore, type TensorEntry } from '../core/weight-store.ts';
export * from '../core/errors.ts';
// Types named in the signatures above, so callers can name them too.
export type { DiffMethod } from '../core/format.ts';
export type { WireCodec, ValueCodec } from '../core/values.ts';
export type { StorageGrid, LinearQuantGrid, Float32Grid, AffineGrid, HalfGrid } from '../core/grid.ts';
export type { Hash64Stream } from '../core/hash-types.ts';
export type { CommitInfo, MemoryTensor } from '../core/weight-store.ts';
