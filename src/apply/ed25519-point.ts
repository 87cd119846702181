/**
 * Ed25519 on the device without WebCrypto (React Native's Hermes, older browsers), in BigInt
 * arithmetic over extended coordinates: the check a trusted public key gets when it is parsed
 * (RFC 8032 §5.1.3 decoding, then the order: the 32 bytes must be the canonical encoding of a
 * point on edwards25519 whose order is the group order L, not of small order, no torsion
 * component), and signature verification (RFC 8032 §5.1.7, strict decoding of R, the
 * cofactorless equation [S]B = R + [k]A as OpenSSL and BoringSSL check it, so a device on this
 * path decides as one on node:crypto or a browser's WebCrypto), with our SHA-512.
 *
 * It replaced `@noble/ed25519` as the pure verifier (noble's strict mode checks the cofactored
 * equation, which accepts signatures with a small-order part in R that OpenSSL refuses; only the
 * key holder can make them) in a few hundred bytes over the point code the key check already needed, where
 * noble cost the applier 3.7 KB min+gzip, which put it over its 30 KB goal once an app bundles it
 * as one file. test/ed25519-point.test.ts checks both against noble and node:crypto; it is
 * simpler than noble (no precomputed tables, no constant time, which verification of public data
 * does not need) and about as fast (0.9-1.4x noble's time side by side in V8, ~8 ms a signature).
 */
import { sha512 } from '../core/sha512.ts';

const P = 2n ** 255n - 19n;
const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const mod = (a: bigint): bigint => {
  const r = a % P;
  return r < 0n ? r + P : r;
};
function pow(base: bigint, exp: bigint): bigint {
  let r = 1n;
  let b = mod(base);
  for (let e = exp; e > 0n; e >>= 1n) {
    if (e & 1n) r = (r * b) % P;
    b = (b * b) % P;
  }
  return r;
}
const D = mod(-121665n * pow(121666n, P - 2n));
const D2 = (2n * D) % P;
const SQRT_M1 = pow(2n, (P - 1n) / 4n);

/** A point in extended coordinates (X : Y : Z : T), x = X/Z, y = Y/Z, x y = T/Z. */
type Point = [bigint, bigint, bigint, bigint];

function add([x1, y1, z1, t1]: Point, [x2, y2, z2, t2]: Point): Point {
  const a = mod((y1 - x1) * (y2 - x2));
  const b = mod((y1 + x1) * (y2 + x2));
  const c = mod(t1 * D2 * t2);
  const d = mod(2n * z1 * z2);
  const e = b - a;
  const f = d - c;
  const g = d + c;
  const h = b + a;
  return [mod(e * f), mod(g * h), mod(f * g), mod(e * h)];
}

function times(point: Point, n: bigint): Point {
  let r: Point = [0n, 1n, 1n, 0n];
  for (let i = BigInt(n.toString(2).length - 1); i >= 0n; i--) {
    r = add(r, r);
    if ((n >> i) & 1n) r = add(r, point);
  }
  return r;
}

const isIdentity = ([x, y, z]: Point): boolean => x === 0n && y === z;

/** The point `raw` encodes (RFC 8032 §5.1.3, strict: y < p, no x = 0 with the sign bit set), or undefined. */
function decodePoint(raw: Uint8Array): Point | undefined {
  let y = 0n;
  for (let i = 31; i >= 0; i--) y = (y << 8n) | BigInt(raw[i]);
  const sign = y >> 255n;
  y &= (1n << 255n) - 1n;
  if (y >= P) return undefined;
  const yy = (y * y) % P;
  const u = mod(yy - 1n);
  const v = mod(D * yy + 1n);
  const v3 = (v * v * v) % P;
  let x = mod(u * v3 * pow(u * v3 * v3 * v, (P - 5n) / 8n));
  const vxx = mod(v * x * x);
  if (vxx === mod(-u)) x = mod(x * SQRT_M1);
  else if (vxx !== u) return undefined;
  if (x === 0n && sign === 1n) return undefined;
  if ((x & 1n) !== sign) x = P - x;
  return [x, y, 1n, mod(x * y)];
}

/**
 * Why the 32 bytes `raw` are not a usable Ed25519 public key, or undefined when they are: the
 * canonical encoding of a point on the curve, of order L.
 */
export function publicKeyProblem(raw: Uint8Array): string | undefined {
  const point = decodePoint(raw);
  if (!point) return 'not a point on the curve';
  if (isIdentity(times(point, 8n)) || !isIdentity(times(point, L))) return 'a point of small or mixed order, which no real key is';
  return undefined;
}

/** The base point B. */
const B: Point = (() => {
  const y = (4n * pow(5n, P - 2n)) % P;
  const encoded = new Uint8Array(32);
  for (let i = 0, v = y; i < 32; i++, v >>= 8n) encoded[i] = Number(v & 0xffn);
  return decodePoint(encoded) as Point;
})();

const littleEndian = (bytes: Uint8Array): bigint => {
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]);
  return n;
};

/**
 * Whether `signature` (64 bytes) signs `message` under the public key `publicKey` (32 bytes).
 * RFC 8032's strict checks (S below L, canonical encodings of A and R, A not of small order) and
 * the cofactorless equation [S]B = R + [k]A, as OpenSSL and BoringSSL (node:crypto, Chromium's
 * WebCrypto) decide it: a device without WebCrypto reaches the verdict one with it reaches.
 * Never throws on hostile bytes of the right lengths.
 */
export function verifySignature(publicKey: Uint8Array, signature: Uint8Array, message: Uint8Array): boolean {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  // k = SHA-512(R || A || M), hashed over the three parts in place: no copy of the payload.
  return verifySignatureDigest(publicKey, signature, sha512(signature.subarray(0, 32), publicKey, message));
}

/**
 * {@link verifySignature} given SHA-512(R || A || M) instead of M: for a message read a piece at
 * a time (a payload file of hundreds of MB hashed as it streams past), never held whole.
 */
export function verifySignatureDigest(publicKey: Uint8Array, signature: Uint8Array, digest: Uint8Array): boolean {
  if (publicKey.length !== 32 || signature.length !== 64 || digest.length !== 64) return false;
  const A = decodePoint(publicKey);
  const R = decodePoint(signature.subarray(0, 32));
  if (!A || !R || isIdentity(times(A, 8n))) return false;
  const s = littleEndian(signature.subarray(32, 64));
  if (s >= L) return false;
  const k = littleEndian(digest) % L;
  // [S]B - [k]A, both scalars in one double-and-add pass (Shamir's trick), then compared with R
  // exactly: no cofactor, so R + (a point of small order) is refused, as OpenSSL refuses it.
  const minusA: Point = [mod(-A[0]), A[1], A[2], mod(-A[3])];
  const both = add(B, minusA);
  let sum: Point = [0n, 1n, 1n, 0n];
  for (let i = 252n; i >= 0n; i--) {
    sum = add(sum, sum);
    const bits = ((s >> i) & 1n) | (((k >> i) & 1n) << 1n);
    if (bits) sum = add(sum, bits === 1n ? B : bits === 2n ? minusA : both);
  }
  return isIdentity(add(R, [mod(-sum[0]), sum[1], sum[2], mod(-sum[3])]));
}
