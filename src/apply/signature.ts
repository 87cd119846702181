/**
 * The signature policy of a device: which keys it trusts and whether it accepts unsigned
 * payloads. Runs on the raw bytes, before anything is decoded.
 */
import { PayloadTooLargeError, SignatureError, UsageError } from '../core/errors.ts';
import { payloadLimit } from '../core/format.ts';
import { parsePublicKey, resolveVerifier, toHex, verifyEd25519, type Ed25519Verifier, type TrustedKey } from './ed25519.ts';
import { ENVELOPE_OVERHEAD, isSignedEnvelope, parseEnvelope } from './envelope.ts';

/** A trusted key as a device may hold it: PEM text, 64 hex chars, base64, raw 32 bytes, or parsed. */
export type PublicKeyInput = Uint8Array | string | TrustedKey;

export interface SignaturePolicy {
  /** Public keys whose signatures are accepted. */
  trustedKeys?: readonly PublicKeyInput[];
  /**
   * Refuse payloads without a valid signature by a trusted key. Default: `true` when
   * `trustedKeys` is non-empty, else `false`. `true` with no trusted key is a usage error.
   */
  requireSignature?: boolean;
  /** Ed25519 implementation (default `'auto'`: WebCrypto where it has Ed25519, else pure JS). */
  verifier?: Ed25519Verifier;
  /** Size cap of the payload inside (the envelope may be 77 bytes more). Default 256 MiB. */
  maxPayloadBytes?: number;
}

/** What the signature check found. */
export interface SignatureCheck {
  /** Whether the bytes were a signed envelope. */
  signed: boolean;
  /** The envelope's key id (16 hex chars) when signed. */
  keyId?: string;
  /**
   * True when the signature was verified against a trusted key. A signed payload is passed
   * unverified (false) only when no trusted key is configured and no signature is required.
   */
  verified: boolean;
  /** The implementation that verified it. */
  verifier?: 'webcrypto' | 'pure';
}

function isTrustedKey(k: PublicKeyInput): k is TrustedKey {
  return typeof k === 'object' && !(k instanceof Uint8Array) && k !== null && (k as TrustedKey).raw instanceof Uint8Array;
}

/** Parse every trusted key (see {@link parsePublicKey}); throws UsageError for a bad one. */
export function parseTrustedKeys(keys: readonly PublicKeyInput[] = []): TrustedKey[] {
  return keys.map((k, i) => (isTrustedKey(k) ? parsePublicKey(k.raw, `trusted key #${i + 1}`) : parsePublicKey(k, `trusted key #${i + 1}`)));
}

/**
 * Apply the signature policy to raw bytes (a payload, or a payload in a signed envelope) and
 * return the payload bytes to decode. Nothing is decoded here.
 *
 * @throws PayloadTooLargeError over the size cap; SignatureError unsigned under a require
 *   policy, unknown key id, or a signature that does not verify; UsageError for a bad policy.
 */
export async function openSignedPayload(bytes: Uint8Array, policy: SignaturePolicy = {}): Promise<{ payload: Uint8Array; signature: SignatureCheck }> {
  if (!(bytes instanceof Uint8Array)) throw new UsageError(`expected the payload bytes as a Uint8Array, found ${typeof bytes}`);
  const limit = payloadLimit(policy.maxPayloadBytes);
  if (bytes.length > limit + ENVELOPE_OVERHEAD) throw new PayloadTooLargeError(bytes.length, limit);
  const keys = parseTrustedKeys(policy.trustedKeys);
  const require = policy.requireSignature ?? keys.length > 0;
  if (require && keys.length === 0) {
    throw new UsageError('requireSignature is set but no trusted key is configured: pass the publisher\'s public key (trustedKeys, or --public-key FILE on the command line)');
  }

  if (!isSignedEnvelope(bytes)) {
    if (require) {
      throw new SignatureError(
        `payload is not signed: expected a signed envelope starting with "NDSG", found a bare payload (first bytes ${toHex(bytes.subarray(0, 4)) || 'none'}); this device accepts only payloads signed by one of its ${keys.length} trusted key(s) (${keys.map((k) => k.keyId).join(', ')}): sign it on the build server with \`ndiff sign <payload> --key <private.pem>\``,
        { trusted: keys.map((k) => k.keyId) },
      );
    }
    return { payload: bytes, signature: { signed: false, verified: false } };
  }

  const env = parseEnvelope(bytes);
  if (keys.length === 0) return { payload: env.payload, signature: { signed: true, keyId: env.keyId, verified: false } };
  const key = keys.find((k) => k.keyId === env.keyId);
  if (!key) {
    throw new SignatureError(
      `payload is signed by key id ${env.keyId}, which is not one of the ${keys.length} key(s) this device trusts (${keys.map((k) => k.keyId).join(', ')}): it was signed with another key (a test key, a rotated-out key, or an attacker's); re-sign it with a trusted key, or add that publisher's public key to the device if it is legitimate`,
      { keyId: env.keyId, trusted: keys.map((k) => k.keyId) },
    );
  }
  const impl = await resolveVerifier(policy.verifier);
  if (!(await verifyEd25519(key, env.signature, env.signedBytes, impl))) {
    throw new SignatureError(
      `the Ed25519 signature does not match the payload for trusted key id ${env.keyId}: the payload or its signature was altered after signing (corruption in transit or storage, or tampering); do not apply it: fetch it again`,
      { keyId: env.keyId, verifier: impl },
    );
  }
  return { payload: env.payload, signature: { signed: true, keyId: env.keyId, verified: true, verifier: impl } };
}
