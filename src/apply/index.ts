/**
 * `neural-diff/apply`: the device entry point. Imports only the pure core (no tfjs, no node
 * modules) so it can be bundled alone for browsers, Electron, Node and React Native.
 */
export { applyPayload, applyDecodedPayload, checkPayloadFitsModel, type ApplyOptions, type ApplyResult } from './apply.ts';
export { decodePayload, encodePayload, FORMAT_VERSION, SUPPORTED_VERSIONS, DEFAULT_MAX_PAYLOAD_BYTES, type Payload, type PayloadHeader, type TensorPatch, type SparsePatch, type HashPatch, type DensePatch, type DecodeOptions } from '../core/format.ts';
export { fingerprintStore, tensorDigest, combineDigests } from '../core/fingerprint.ts';
export { getHasher, type Hasher } from '../core/hasher.ts';
export { MemoryWeightStore, type WeightStore, type TensorEntry } from '../core/weight-store.ts';
export * from '../core/errors.ts';
