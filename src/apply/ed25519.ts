/**
 * Ed25519 verification for the device, with no node module:
 *
 * - `'webcrypto'`: `globalThis.crypto.subtle` (Node >= 20, current browsers);
 * - `'pure'`: our own RFC 8032 verifier (ed25519-point.ts: strict decoding, the cofactorless
 *   equation, the verdicts of OpenSSL's and WebCrypto's Ed25519) with our SHA-512 (src/core/sha512.ts), for runtimes without WebCrypto
 *   Ed25519 (React Native's Hermes, older browsers); small enough to ship in the applier itself;
 * - `'auto'` (default): WebCrypto when it verifies a known signature and refuses it with one bit
 *   flipped, else pure.
 *
 * Both paths get the same inputs: signatures whose scalar S is not below the group order are
 * refused before either runs (no malleable signatures), and trusted keys are checked once, when
 * parsed, to be canonical curve points of full order. Signing is not here: it happens on the
 * build server (src/sign/node-keys.ts).
 */
import { sha512 } from '../core/sha512.ts';
import { publicKeyProblem, verifySignature } from './ed25519-point.ts';
import { UsageError } from '../core/errors.ts';
import { fromHex, toHex } from '../core/hex.ts';

export { toHex };

export type Ed25519Verifier = 'auto' | 'webcrypto' | 'pure';

/** Bytes of a raw Ed25519 public key, and of a signature. */
export const PUBLIC_KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;

/** DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the raw key follows. */
const SPKI_PREFIX = Uint8Array.from([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]);
/** The order L of the Ed25519 base point. */
const GROUP_ORDER = 2n ** 252n + 27742317777372353535851937790883648493n;

/** A public key this device trusts. */
export interface TrustedKey {
  /** The 32-byte raw public key. */
  readonly raw: Uint8Array;
  /** 16 hex chars: the first 8 bytes of SHA-512(raw). Names the key in envelopes and messages. */
  readonly keyId: string;
}

/** Key id of a raw 32-byte public key: the first 8 bytes of its SHA-512, as 16 hex chars. */
export function keyIdOf(raw: Uint8Array): string {
  return toHex(sha512(raw).subarray(0, 8));
}


const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
/** Standard or URL-safe base64 (padding optional) to bytes; null if malformed. No Buffer/atob. */
export function base64ToBytes(text: string): Uint8Array | null {
  const s = text.replace(/[\s=]+/g, '').replace(/-/g, '+').replace(/_/g, '/');
  if (s.length % 4 === 1 || /[^A-Za-z0-9+/]/.test(s)) return null;
  const out = new Uint8Array(Math.floor((s.length * 3) / 4));
  let bits = 0;
  let acc = 0;
  let o = 0;
  for (let i = 0; i < s.length; i++) {
    acc = (acc << 6) | B64.indexOf(s[i]);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >>> bits) & 0xff;
    }
  }
  return out;
}

/**
 * What was given instead of a public key, for a message. Key material is described, never quoted:
 * the text may be a private key or a secret seed passed by mistake, and messages end up in logs.
 */
function describeKeyInput(input: unknown): string {
  if (input instanceof Uint8Array) return `${input.length} bytes`;
  if (typeof input !== 'string') return typeof input;
  const text = input.trim();
  const pem = /-----BEGIN ([A-Z0-9 ]+)-----/.exec(text);
  if (pem) return `a PEM block labelled ${pem[1]} (its body not shown)`;
  if (/^[0-9a-fA-F]+$/.test(text)) return `${text.length} characters of hex (not shown)`;
  if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(text)) return `${text.length} characters of base64 (not shown)`;
  return `the text ${JSON.stringify(text.length > 50 ? text.slice(0, 50) + '…' : text)}`;
}

/**
 * Parse a trusted public key from what a device engineer has at hand: the PEM file `ndiff
 * keygen` wrote (`-----BEGIN PUBLIC KEY-----`), the raw 32 bytes, 64 hex chars, base64 of the
 * raw key, or the 44-byte DER SubjectPublicKeyInfo. The point is checked (canonical encoding,
 * on the curve, full order).
 *
 * @throws UsageError if it is none of these or not a valid Ed25519 key.
 */
export function parsePublicKey(input: Uint8Array | string, label = 'public key'): TrustedKey {
  const bad = (why: string): never => {
    throw new UsageError(
      `${label} is not an Ed25519 public key (${why}): expected the .public.pem file written by \`ndiff keygen\`, 64 hex chars or base64 of the 32-byte key; found ${describeKeyInput(input)}`,
      { label },
    );
  };
  let raw: Uint8Array | null = null;
  if (input instanceof Uint8Array) {
    raw = input;
  } else if (typeof input === 'string') {
    const text = input.trim();
    // One key per file: with two, which one is trusted would be a guess.
    if (/-----BEGIN[\s\S]*-----BEGIN/.test(text)) bad('more than one PEM block: give one key per file');
    const pem = /-----BEGIN PUBLIC KEY-----([\s\S]*?)-----END PUBLIC KEY-----/.exec(text);
    if (pem) raw = base64ToBytes(pem[1]) ?? bad('the PEM body is not base64');
    else if (/-----BEGIN/.test(text)) bad('this PEM block is not a PUBLIC KEY; a private key must never be given to a device');
    else if (/^[0-9a-fA-F]{64}$/.test(text)) raw = fromHex(text);
    else raw = base64ToBytes(text) ?? bad('not PEM, hex or base64');
  } else {
    bad('wrong type');
  }
  raw = raw as Uint8Array;
  if (raw.length === SPKI_PREFIX.length + PUBLIC_KEY_BYTES && SPKI_PREFIX.every((b, i) => raw![i] === b)) raw = raw.slice(SPKI_PREFIX.length);
  if (raw.length !== PUBLIC_KEY_BYTES) bad(`${raw.length} bytes where an Ed25519 key has 32${raw.length > 32 ? ', or the DER of another key type' : ''}`);
  const rawHex = toHex(raw);
  const known = validatedKeys.get(rawHex);
  if (known) return known;
  const problem = publicKeyProblem(raw);
  if (problem) bad(problem);
  const copy = raw.slice();
  const key: TrustedKey = Object.freeze({ raw: copy, keyId: keyIdOf(copy) });
  if (validatedKeys.size >= 256) validatedKeys.clear();
  validatedKeys.set(rawHex, key);
  return key;
}

/** Keys already checked (the point checks cost milliseconds in pure JS), by raw hex. */
const validatedKeys = new Map<string, TrustedKey>();

/** True if the signature's scalar S (bytes 32-63, little-endian) is below the group order. */
export function hasCanonicalScalar(signature: Uint8Array): boolean {
  let s = 0n;
  for (let i = 63; i >= 32; i--) s = (s << 8n) | BigInt(signature[i]);
  return s < GROUP_ORDER;
}

let webCryptoWorks: Promise<boolean> | undefined;

/** S of the self-test signature in {@link webCryptoHasEd25519} (little-endian hex). */
export const SELF_TEST_S = '6a903b5a7e2425be930561a81a11ee345b2dd7f3249d4c1a64bbfcf5bc16ad06';

function subtle(): SubtleCrypto | undefined {
  const c = (globalThis as { crypto?: Crypto }).crypto;
  return c && c.subtle && typeof c.subtle.importKey === 'function' ? c.subtle : undefined;
}

/** Whether this runtime's WebCrypto verifies Ed25519 (checked once, then cached). */
export function webCryptoHasEd25519(): Promise<boolean> {
  webCryptoWorks ??= (async () => {
    const s = subtle();
    if (!s) return false;
    try {
      // A known signature of the empty message: the key is the base point B (secret scalar 1),
      // R = B (nonce 1) and S = 1 + SHA-512(R || B) mod L, so only S is not compressible
      // (test/signature.test.ts derives it again and checks it with node:crypto and the pure path).
      const base = '58' + '66'.repeat(31);
      const key = await s.importKey('raw', fromHex(base), { name: 'Ed25519' }, false, ['verify']);
      const signature = fromHex(base + SELF_TEST_S);
      if (!(await s.verify({ name: 'Ed25519' }, key, signature, new Uint8Array(0)))) return false;
      // And a wrong one refused: a crypto.subtle that says yes to everything is no verifier.
      signature[40] ^= 1;
      return (await s.verify({ name: 'Ed25519' }, key, signature, new Uint8Array(0))) === false;
    } catch {
      return false;
    }
  })();
  return webCryptoWorks;
}

/** Which implementation `verifier` resolves to here. */
export async function resolveVerifier(verifier: Ed25519Verifier = 'auto'): Promise<'webcrypto' | 'pure'> {
  if (verifier === 'pure') return 'pure';
  const ok = await webCryptoHasEd25519();
  if (verifier === 'webcrypto' && !ok) {
    throw new UsageError("verifier 'webcrypto' was asked for, but this runtime's crypto.subtle cannot verify Ed25519: use verifier 'auto' or 'pure'");
  }
  return ok ? 'webcrypto' : 'pure';
}

/**
 * Verify an Ed25519 signature over `message`. False for a wrong signature, a non-canonical S,
 * or a wrong length; never throws for hostile input.
 */
export async function verifyEd25519(key: TrustedKey, signature: Uint8Array, message: Uint8Array, impl: 'webcrypto' | 'pure'): Promise<boolean> {
  if (signature.length !== SIGNATURE_BYTES || !hasCanonicalScalar(signature)) return false;
  if (impl === 'pure') return verifySignature(key.raw, signature, message);
  const s = subtle() as SubtleCrypto;
  let k = importedKeys.get(key);
  if (!k) {
    k = s.importKey('raw', key.raw as Uint8Array<ArrayBuffer>, { name: 'Ed25519' }, false, ['verify']);
    importedKeys.set(key, k);
  }
  return s.verify({ name: 'Ed25519' }, await k, signature as Uint8Array<ArrayBuffer>, message as Uint8Array<ArrayBuffer>);
}

/** WebCrypto key objects of trusted keys, imported once. */
const importedKeys = new WeakMap<TrustedKey, Promise<CryptoKey>>();
