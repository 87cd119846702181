/**
 * The signed envelope: a fixed binary framing around the exact payload bytes, parsed with a few
 * byte comparisons before anything is decoded (docs/SECURITY.md has the byte-by-byte table).
 *
 * ```
 * offset      size  field
 * 0           4     magic "NDSG" (4e 44 53 47)
 * 4           1     envelope version, 1
 * 5           8     key id: first 8 bytes of SHA-512(raw 32-byte Ed25519 public key)
 * 13          N     the payload, byte for byte
 * 13 + N      64    Ed25519 signature over bytes [0, 13 + N): the header and the payload
 * ```
 *
 * The signature covers the header too (magic, version, key id), so none of them can be
 * changed without breaking it, and it cannot be confused with a signature over anything else.
 * Signing the contiguous prefix means neither side copies the payload to verify or sign it.
 */
import { SignatureError } from '../core/errors.ts';
import { SIGNATURE_BYTES, toHex } from './ed25519.ts';

export const ENVELOPE_MAGIC: readonly number[] = [0x4e, 0x44, 0x53, 0x47]; // "NDSG"
export const ENVELOPE_VERSION = 1;
export const SUPPORTED_ENVELOPE_VERSIONS: readonly number[] = [1];
/** Magic, version, key id. */
export const ENVELOPE_HEADER_BYTES = 13;
/** Bytes an envelope adds to its payload. */
export const ENVELOPE_OVERHEAD = ENVELOPE_HEADER_BYTES + SIGNATURE_BYTES;

/** An envelope split into its parts (views into the input, no copies). */
export interface SignedEnvelope {
  version: number;
  /** 16 hex chars. */
  keyId: string;
  /** The payload bytes. */
  payload: Uint8Array;
  /** What the signature covers: header and payload. */
  signedBytes: Uint8Array;
  signature: Uint8Array;
}

/** True if `bytes` start with the envelope magic (a payload starts with a msgpack map byte). */
export function isSignedEnvelope(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && ENVELOPE_MAGIC.every((b, i) => bytes[i] === b);
}

/**
 * Split a signed envelope into its parts: the envelope version, the signer's key id (16 hex
 * chars), the payload, the bytes the signature covers and the signature (views into `bytes`,
 * no copies). Checks only the framing (magic, version, length): the signature is **not**
 * verified, so the payload it returns is untrusted. Use it to see which key signed a file or to
 * look at the payload (e.g. {@link isSignedEnvelope} first, then whether it is structural); to
 * apply, go through `applyPayload` / `verifyPayload`, or `openSignedPayload` (signature.ts),
 * which verify it by a signature policy (docs/SECURITY.md, "Signatures").
 *
 * @throws SignatureError if `bytes` do not start with the magic "NDSG", are too short to hold a
 *   header, a payload and a signature (truncated), or carry an envelope version this applier
 *   does not read.
 */
export function parseEnvelope(bytes: Uint8Array): SignedEnvelope {
  if (!isSignedEnvelope(bytes)) {
    throw new SignatureError('expected a signed envelope starting with "NDSG", found other bytes: this is not a signed payload', { found: toHex(bytes.subarray(0, 4)) });
  }
  if (bytes.length < ENVELOPE_HEADER_BYTES + 1 + SIGNATURE_BYTES) {
    throw new SignatureError(
      `signed envelope is ${bytes.length} bytes: expected at least ${ENVELOPE_OVERHEAD + 1} (a ${ENVELOPE_HEADER_BYTES}-byte header, the payload and a ${SIGNATURE_BYTES}-byte signature); it was truncated: fetch it again`,
      { found: bytes.length, expected: ENVELOPE_OVERHEAD + 1 },
    );
  }
  const version = bytes[4];
  if (!SUPPORTED_ENVELOPE_VERSIONS.includes(version)) {
    throw new SignatureError(
      `signed envelope version ${version} is not supported (this applier reads version ${SUPPORTED_ENVELOPE_VERSIONS.join(', ')}): update neural-diff on the device, or ask the server for an envelope of version ${ENVELOPE_VERSION}`,
      { found: version, supported: SUPPORTED_ENVELOPE_VERSIONS },
    );
  }
  const sigAt = bytes.length - SIGNATURE_BYTES;
  return {
    version,
    keyId: toHex(bytes.subarray(5, ENVELOPE_HEADER_BYTES)),
    payload: bytes.subarray(ENVELOPE_HEADER_BYTES, sigAt),
    signedBytes: bytes.subarray(0, sigAt),
    signature: bytes.subarray(sigAt),
  };
}

/** Header and payload: the bytes a signer signs (then appends the signature with {@link sealEnvelope}). */
export function envelopeSigningInput(payload: Uint8Array, keyIdHex: string): Uint8Array {
  if (!/^[0-9a-f]{16}$/.test(keyIdHex)) throw new RangeError(`key id must be 16 lowercase hex chars, got ${JSON.stringify(keyIdHex)}`);
  const out = new Uint8Array(ENVELOPE_HEADER_BYTES + payload.length + SIGNATURE_BYTES);
  out.set(ENVELOPE_MAGIC, 0);
  out[4] = ENVELOPE_VERSION;
  for (let i = 0; i < 8; i++) out[5 + i] = parseInt(keyIdHex.slice(2 * i, 2 * i + 2), 16);
  out.set(payload, ENVELOPE_HEADER_BYTES);
  return out.subarray(0, ENVELOPE_HEADER_BYTES + payload.length);
}

/** The full envelope: `signingInput` (from {@link envelopeSigningInput}) followed by `signature`. */
export function sealEnvelope(signingInput: Uint8Array, signature: Uint8Array): Uint8Array {
  if (signature.length !== SIGNATURE_BYTES) throw new RangeError(`an Ed25519 signature is ${SIGNATURE_BYTES} bytes, got ${signature.length}`);
  const out = new Uint8Array(signingInput.length + SIGNATURE_BYTES);
  out.set(signingInput, 0);
  out.set(signature, signingInput.length);
  return out;
}
