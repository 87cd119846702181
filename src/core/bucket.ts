/**
 * The pinned position-to-bucket hash of hashed diffs. The trainer and the device must agree bit
 * for bit, so every step is fixed here and in docs/FORMAT-hashing.md, with test vectors in
 * test/vectors/bucket.json:
 *
 *   tensorSeed   = xxh32(UTF-8(tensorName), globalSeed)
 *   positionHash = xxh32(u32le(position), tensorSeed)
 *   bucket       = (positionHash >>> 1) % buckets
 *   sign         = positionHash & 1 ? -1 : +1
 */
import { encodeUtf8 } from './utf8.ts';
import { xxh32 } from './xxhash-pure.ts';

const P2 = 0x85ebca77;
const P3 = 0xc2b2ae3d;
const P4 = 0x27d4eb2f;
const P5 = 0x165667b1;


/**
 * The per-tensor seed: xxh32 of the UTF-8 bytes of `tensorName` with seed `globalSeed >>> 0`.
 * (Lone UTF-16 surrogates in a name are encoded as U+FFFD, as TextEncoder does.)
 */
export function tensorSeed(tensorName: string, globalSeed: number): number {
  return xxh32(encodeUtf8(tensorName), globalSeed >>> 0);
}

/**
 * xxh32 of the 4-byte little-endian encoding of `position` (an integer in [0, 2^32)) with `seed`
 * (taken modulo 2^32), in closed form: for a 4-byte input xxh32 is one 4-byte step plus the
 * avalanche. Equal to `xxh32(u32le(position), seed)`; unsigned 32-bit result.
 */
export function positionHash(position: number, seed: number): number {
  let h = ((seed | 0) + P5 + 4 + Math.imul(position, P3)) | 0;
  h = Math.imul((h << 17) | (h >>> 15), P4);
  h ^= h >>> 15;
  h = Math.imul(h, P2);
  h ^= h >>> 13;
  h = Math.imul(h, P3);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The bucket of a position hash: `(hash >>> 1) % buckets` (bit 0 is left for the sign). */
export function bucketOf(hash: number, buckets: number): number {
  return (hash >>> 1) % buckets;
}

/** The sign of a position hash: -1 when bit 0 is set, else +1. */
export function signOf(hash: number): 1 | -1 {
  return hash & 1 ? -1 : 1;
}

/**
 * Bucket (and sign, when `signed`) of every position 0..size-1 of a tensor whose seed is `seed`
 * (the trainer's gather indices). `outBucket` / `outSign` are reused when given (length >= size;
 * a longer array is returned as its first `size` entries).
 * @throws RangeError when `size` is not an integer in [0, 2^32], `buckets` not an integer in
 *   [1, 2^31], or an output array is too short.
 */
export function fillBuckets(
  size: number,
  seed: number,
  buckets: number,
  signed: boolean,
  outBucket?: Int32Array,
  outSign?: Float32Array,
): { bucket: Int32Array; sign: Float32Array | null } {
  if (!Number.isInteger(size) || size < 0 || size > 2 ** 32) throw new RangeError(`size must be an integer in [0, 2^32], got ${size}`);
  if (!Number.isInteger(buckets) || buckets < 1 || buckets > 2 ** 31) throw new RangeError(`buckets must be an integer in [1, 2^31], got ${buckets}`);
  const bucket = fit(outBucket, size, 'outBucket') ?? new Int32Array(size);
  const sign = signed ? (fit(outSign, size, 'outSign') ?? new Float32Array(size)) : null;
  for (let i = 0; i < size; i++) {
    const h = positionHash(i, seed);
    bucket[i] = (h >>> 1) % buckets;
    if (sign) sign[i] = h & 1 ? -1 : 1;
  }
  return { bucket, sign };
}

function fit<T extends Int32Array | Float32Array>(out: T | undefined, size: number, what: string): T | undefined {
  if (!out) return undefined;
  if (out.length < size) throw new RangeError(`${what} holds ${out.length} entries, ${size} needed`);
  return out.length === size ? out : (out.subarray(0, size) as T);
}
