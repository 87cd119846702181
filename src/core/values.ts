/**
 * Value codecs for patch values. Every codec decodes to float32 values that are exact and
 * identical on every platform: f32 as is, f16 widened exactly, i8 as fround(q * scale) where
 * `scale` is itself a float32. The applier then computes fround(w + value).
 */
import { LITTLE_ENDIAN_HOST } from './endian.ts';
import { fromHalfBits, toHalfBits, HALF_MAX } from './float16.ts';
import { alignedOffset, wordsOf } from './varint.ts';

export type ValueCodec = 'f32' | 'f16' | 'i8';
export const VALUE_CODECS: readonly ValueCodec[] = ['f32', 'f16', 'i8'];

/** Bytes one value takes on the wire. */
export function bytesPerValue(codec: ValueCodec): number {
  return codec === 'f32' ? 4 : codec === 'f16' ? 2 : 1;
}

/** Encoded values: the wire bytes and the exact float32 values a device will decode from them. */
export interface EncodedValues {
  codec: ValueCodec;
  /** i8 only: the float32 scale. */
  scale?: number;
  bytes: Uint8Array;
  decoded: Float32Array;
}

/**
 * Encode float32 values with a codec. `f16` refuses values beyond the float16 range (returns
 * null) rather than silently saturating; `i8` uses a symmetric per-tensor scale maxAbs / 127.
 */
export function encodeValues(values: Float32Array, codec: ValueCodec, stepScale?: number): EncodedValues | null {
  const n = values.length;
  if (codec === 'f32') {
    const bytes = new Uint8Array(n * 4);
    const dv = new DataView(bytes.buffer);
    for (let i = 0; i < n; i++) dv.setFloat32(i * 4, values[i], true);
    return { codec, bytes, decoded: Float32Array.from(values) };
  }
  if (codec === 'f16') {
    const bytes = new Uint8Array(n * 2);
    const decoded = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      if (!(Math.abs(values[i]) <= HALF_MAX)) return null;
      const h = toHalfBits(values[i]);
      bytes[2 * i] = h & 0xff;
      bytes[2 * i + 1] = h >>> 8;
      decoded[i] = fromHalfBits(h);
    }
    return { codec, bytes, decoded };
  }
  let maxAbs = 0;
  for (let i = 0; i < n; i++) maxAbs = Math.max(maxAbs, Math.abs(values[i]));
  // A grid step as the scale (a quantized tensor's deltas are whole steps) when every value is
  // within ±127 of them; else the symmetric scale maxAbs / 127.
  const scale = stepScale !== undefined && stepScale > 0 && Math.round(maxAbs / stepScale) <= 127 ? stepScale : Math.fround(maxAbs > 0 ? maxAbs / 127 : 1);
  if (!(scale > 0) || !Number.isFinite(scale)) return null;
  const bytes = new Uint8Array(n);
  const decoded = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const q = Math.max(-127, Math.min(127, Math.round(values[i] / scale)));
    bytes[i] = q & 0xff;
    decoded[i] = Math.fround(q * scale);
  }
  return { codec, scale, bytes, decoded };
}

/** Per high 6 bits of a half (sign, exponent): the implicit leading bit and the scale 2^(e-25) (see decodeValues). */
const HALF_IMPLICIT = new Float64Array(64);
const HALF_SCALE = new Float64Array(64);
for (let i = 0; i < 64; i++) {
  const e = i & 31;
  HALF_IMPLICIT[i] = e ? 0x400 : 0;
  HALF_SCALE[i] = e === 31 ? NaN : (i & 32 ? -1 : 1) * 2 ** (Math.max(e, 1) - 25);
}

/**
 * The index of the first value of `bytes` (`count * bytesPerValue(codec)` of them) that would
 * decode to NaN or infinity, or -1: a check on the wire bytes, without decoding (f32 and f16 by
 * their exponent bits; i8 only when its scale lets a value overflow).
 */
export function firstNonFinite(bytes: Uint8Array, codec: ValueCodec, scale?: number): number {
  if (codec === 'f16') {
    // Exponent 31 is 0x7c in a half's high byte: adding 4 to the masked exponent carries into
    // bit 7 then only. Two halves per 32-bit word where the host is little-endian.
    const n = bytes.length >> 1;
    let any = 0;
    let i = 1;
    if (LITTLE_ENDIAN_HOST) {
      const base = bytes.byteOffset;
      const aligned = alignedOffset(base);
      const words = wordsOf(bytes);
      // The high bytes are the odd ones of the halves: bytes 1 and 3 of a word, or 0 and 2.
      const [mask, add] = (aligned - base) & 1 ? [0x007c007c, 0x00040004] : [0x7c007c00, 0x04000400];
      for (let j = 0; j < words.length; j++) any |= (words[j] & mask) + add;
      any = any & (mask << 1) & 0x80808080 ? 0x80 : 0;
      for (; i < aligned - base && i < bytes.length; i += 2) any |= (bytes[i] & 0x7c) + 4;
      i = aligned - base + 4 * words.length + 1 - ((aligned - base) & 1);
    }
    for (; i < bytes.length; i += 2) any |= (bytes[i] & 0x7c) + 4;
    if (!(any & 0x80)) return -1;
    for (let k = 0; k < n; k++) if ((bytes[2 * k + 1] & 0x7c) === 0x7c) return k;
    return -1;
  }
  if (codec === 'f32') {
    // Exponent 255: bits 0x7f of the last byte and 0x80 of the one before (little-endian).
    const n = bytes.length >> 2;
    for (let i = 0; i < n; i++) if ((bytes[4 * i + 3] & 0x7f) === 0x7f && bytes[4 * i + 2] & 0x80) return i;
    return -1;
  }
  const s = Math.fround(scale as number);
  if (Number.isFinite(Math.fround(128 * s))) return -1;
  for (let i = 0; i < bytes.length; i++) if (!Number.isFinite(Math.fround(((bytes[i] << 24) >> 24) * s))) return i;
  return -1;
}

/**
 * Decode wire bytes into exact float32 values, into `out` when given (as many values as it
 * holds). The caller has checked that `bytes.length === count * bytesPerValue(codec)`. Returns
 * the index of the first non-finite value instead of the values when there is one.
 */
export function decodeValues(bytes: Uint8Array, codec: ValueCodec, scale: number | undefined, out: Float32Array = new Float32Array(bytes.length / bytesPerValue(codec))): Float32Array | { nonFiniteAt: number } {
  const n = out.length;
  if (codec === 'f32') {
    if (LITTLE_ENDIAN_HOST) {
      new Uint8Array(out.buffer, out.byteOffset, out.byteLength).set(bytes);
    } else {
      const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let i = 0; i < n; i++) out[i] = dv.getFloat32(i * 4, true);
    }
  } else if (codec === 'f16') {
    // Half to single as (mantissa + implicit bit) * 2^(exponent - 25), with the sign in the
    // scale: a product of an 11-bit integer and a power of two, exact in float64 and in float32,
    // subnormals included. The 6 high bits (sign, exponent) pick the scale; exponent 31
    // (infinity, NaN) has a NaN scale, refused here at its index.
    for (let i = 0; i < n; i++) {
      const h = bytes[2 * i] | (bytes[2 * i + 1] << 8);
      const hi = h >>> 10;
      const x = ((h & 0x3ff) + HALF_IMPLICIT[hi]) * HALF_SCALE[hi];
      if (x - x !== 0) return { nonFiniteAt: i };
      out[i] = x;
    }
    return out;
  } else {
    const s = Math.fround(scale as number);
    for (let i = 0; i < n; i++) out[i] = Math.fround(((bytes[i] << 24) >> 24) * s);
  }
  for (let i = 0; i < n; i++) if (!Number.isFinite(out[i])) return { nonFiniteAt: i };
  return out;
}

// ---------------------------------------------------------------------------------------------
// Codec `x` (format v2): exact new bits, as the XOR of the new and the old float32 bits.

/**
 * The codecs a patch may name on the wire: the additive value codecs, `x` (format v2), `xr` (v3),
 * `xs` (v4: exact stored bits of a tensor stored in 1 or 2 bytes, docs/FORMAT.md §4.3) and `l`
 * (v6: low-bit codes with a scale per group, lowbit.ts).
 */
export type WireCodec = ValueCodec | 'x' | 'xr' | 'xs' | 'l';

/**
 * Codecs `x`, `xr` and `xs`: the values are XOR masks of the new and old bits (exact bits), not
 * deltas; of the float32 bits for `x` and `xr`, of the stored code on the patch's grid for `xs`.
 */
export function exactBits(codec: WireCodec): codec is 'x' | 'xr' | 'xs' {
  return codec === 'x' || codec === 'xr' || codec === 'xs';
}

/**
 * Layout of codec `x` for `n` values: `ceil(n / 4)` bytes of 2-bit lengths (value k's in bits
 * 2(k mod 4) of byte floor(k / 4), least significant first; a length field L means L + 1 bytes),
 * then each value's XOR mask in its length, least significant byte first. Returns the byte size
 * the lengths call for, or -1 when the bytes cannot hold the lengths or the last length byte has
 * bits set past value n - 1.
 */
export function xorByteLength(bytes: Uint8Array, n: number): number {
  const head = (n + 3) >> 2;
  if (bytes.length < head) return -1;
  if (n & 3 && bytes[head - 1] >> (2 * (n & 3))) return -1;
  let total = head + n;
  for (let i = 0; i < head; i++) {
    const b = bytes[i];
    total += (b & 3) + ((b >> 2) & 3) + ((b >> 4) & 3) + (b >> 6);
  }
  return total;
}

/**
 * Decode masks `from .. from + out.length - 1` of a codec-`x` value block of `n` values, the
 * first of which starts at byte `at` (pass the return value of the previous call; the first
 * call passes `ceil(n / 4)`). Returns where the next mask starts. The caller checked the block
 * with {@link xorByteLength}.
 */
export function decodeXorMasks(bytes: Uint8Array, from: number, at: number, out: Uint32Array): number {
  for (let j = 0; j < out.length; j++) {
    const k = from + j;
    const len = ((bytes[k >> 2] >> (2 * (k & 3))) & 3) + 1;
    let m = 0;
    for (let b = len - 1; b >= 0; b--) m = m * 256 + bytes[at + b];
    out[j] = m;
    at += len;
  }
  return at;
}

/** Encode XOR masks as codec `x` (the shortest length of each, at least one byte). */
export function encodeXorMasks(masks: Uint32Array): Uint8Array {
  const n = masks.length;
  const head = (n + 3) >> 2;
  const lens = new Uint8Array(n);
  let total = head;
  for (let k = 0; k < n; k++) {
    const m = masks[k];
    lens[k] = m > 0xffffff ? 4 : m > 0xffff ? 3 : m > 0xff ? 2 : 1;
    total += lens[k];
  }
  const out = new Uint8Array(total);
  let at = head;
  for (let k = 0; k < n; k++) {
    out[k >> 2] |= (lens[k] - 1) << (2 * (k & 3));
    for (let b = 0, m = masks[k]; b < lens[k]; b++, m >>>= 8) out[at++] = m & 0xff;
  }
  return out;
}
