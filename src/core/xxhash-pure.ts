/**
 * Pure TypeScript xxHash (XXH32 and XXH64) as specified by the xxHash project
 * (https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md), bit for bit equal to
 * xxhash-wasm. For runtimes without WebAssembly (React Native's Hermes): it uses only
 * Uint8Array, Math.imul and BigInt (BigInt only at the API edge, never in the inner loop).
 *
 * Inputs may be any Uint8Array view (any byteOffset, any length); bytes are read one by one
 * and assembled little-endian, so alignment and host byte order never matter.
 */

// ---------------------------------------------------------------------------------------------
// XXH32

const P32_1 = 0x9e3779b1;
const P32_2 = 0x85ebca77;
const P32_3 = 0xc2b2ae3d;
const P32_4 = 0x27d4eb2f;
const P32_5 = 0x165667b1;

/** Little-endian 32-bit word at `p`, as an int32 (the bits are what matter). */
function u32(b: Uint8Array, p: number): number {
  return b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24);
}

function rotl32(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

function round32(acc: number, lane: number): number {
  return Math.imul(rotl32((acc + Math.imul(lane, P32_2)) | 0, 13), P32_1);
}

/**
 * XXH32 of `input` with `seed` (taken modulo 2^32, as xxhash-wasm does).
 * @returns the hash as an unsigned 32-bit integer.
 */
export function xxh32(input: Uint8Array, seed = 0): number {
  const b = input;
  const len = b.length;
  const s = seed >>> 0;
  let p = 0;
  let acc: number;
  if (len >= 16) {
    let v1 = (s + P32_1 + P32_2) | 0;
    let v2 = (s + P32_2) | 0;
    let v3 = s | 0;
    let v4 = (s - P32_1) | 0;
    const limit = len - 16;
    while (p <= limit) {
      v1 = round32(v1, u32(b, p));
      v2 = round32(v2, u32(b, p + 4));
      v3 = round32(v3, u32(b, p + 8));
      v4 = round32(v4, u32(b, p + 12));
      p += 16;
    }
    acc = rotl32(v1, 1) + rotl32(v2, 7) + rotl32(v3, 12) + rotl32(v4, 18);
  } else {
    acc = s + P32_5;
  }
  acc = (acc + len) | 0;
  for (; p + 4 <= len; p += 4) {
    acc = Math.imul(rotl32((acc + Math.imul(u32(b, p), P32_3)) | 0, 17), P32_4);
  }
  for (; p < len; p++) {
    acc = Math.imul(rotl32((acc + Math.imul(b[p], P32_5)) | 0, 11), P32_1);
  }
  acc ^= acc >>> 15;
  acc = Math.imul(acc, P32_2);
  acc ^= acc >>> 13;
  acc = Math.imul(acc, P32_3);
  acc ^= acc >>> 16;
  return acc >>> 0;
}

// ---------------------------------------------------------------------------------------------
// XXH64 on pairs of 32-bit halves. A 64-bit value is (hi, lo), each an int32 holding the bits.
// The helpers below return through the registers H and L (no allocation); each reads all of its
// arguments before writing them, so passing H and L back in is safe.

let H = 0;
let L = 0;

const P1H = 0x9e3779b1 | 0, P1L = 0x85ebca87 | 0;
const P2H = 0xc2b2ae3d | 0, P2L = 0x27d4eb4f | 0;
const P3H = 0x165667b1 | 0, P3L = 0x9e3779f9 | 0;
const P4H = 0x85ebca77 | 0, P4L = 0xc2b2ae63 | 0;
const P5H = 0x27d4eb2f | 0, P5L = 0x165667c5 | 0;

/** (ah,al) * (bh,bl) mod 2^64. The 32x32->64 product al*bl is built from 16-bit limbs. */
function mul64(ah: number, al: number, bh: number, bl: number): void {
  const a0 = al & 0xffff, a1 = al >>> 16, b0 = bl & 0xffff, b1 = bl >>> 16;
  const t = a0 * b0; // < 2^32
  const c = (t >>> 16) + a1 * b0; // < 2^32
  const d = (c & 0xffff) + a0 * b1; // < 2^32
  const hi = a1 * b1 + (c >>> 16) + (d >>> 16); // high word of al*bl, < 2^32
  L = (d << 16) | (t & 0xffff);
  H = (hi + Math.imul(ah, bl) + Math.imul(al, bh)) | 0;
}

/** (ah,al) + (bh,bl) mod 2^64. */
function add64(ah: number, al: number, bh: number, bl: number): void {
  const lo = (al >>> 0) + (bl >>> 0);
  L = lo | 0;
  H = (ah + bh + (lo > 0xffffffff ? 1 : 0)) | 0;
}

/** Rotate left by 0 < r < 32. */
function rotl64(h: number, l: number, r: number): void {
  H = (h << r) | (l >>> (32 - r));
  L = (l << r) | (h >>> (32 - r));
}

/** acc = rotl(acc + lane * P2, 31) * P1 */
function round64(ah: number, al: number, xh: number, xl: number): void {
  mul64(xh, xl, P2H, P2L);
  add64(ah, al, H, L);
  rotl64(H, L, 31);
  mul64(H, L, P1H, P1L);
}

/** acc = (acc ^ round(0, v)) * P1 + P4 */
function merge64(ah: number, al: number, vh: number, vl: number): void {
  round64(0, 0, vh, vl);
  mul64(ah ^ H, al ^ L, P1H, P1L);
  add64(H, L, P4H, P4L);
}

/**
 * The inner-loop round, v[i..i+1] = round64(v[i..i+1], lane), written out with locals only:
 * faster on V8 (10-50% in runs here) than composing the helpers above through H/L.
 */
function roundAt(v: Int32Array, i: number, xh: number, xl: number): void {
  // m = lane * P2 (mul64 with the constant's 16-bit limbs)
  let a0 = xl & 0xffff, a1 = xl >>> 16;
  let t = a0 * (P2L & 0xffff);
  let c = (t >>> 16) + a1 * (P2L & 0xffff);
  let d = (c & 0xffff) + a0 * (P2L >>> 16);
  const ml = (d << 16) | (t & 0xffff);
  const mh = (a1 * (P2L >>> 16) + (c >>> 16) + (d >>> 16) + Math.imul(xh, P2L) + Math.imul(xl, P2H)) | 0;
  // s = acc + m
  const lo = (v[i + 1] >>> 0) + (ml >>> 0);
  const sl = lo | 0;
  const sh = (v[i] + mh + (lo > 0xffffffff ? 1 : 0)) | 0;
  // r = rotl(s, 31)
  const rh = (sh << 31) | (sl >>> 1);
  const rl = (sl << 31) | (sh >>> 1);
  // acc = r * P1
  a0 = rl & 0xffff;
  a1 = rl >>> 16;
  t = a0 * (P1L & 0xffff);
  c = (t >>> 16) + a1 * (P1L & 0xffff);
  d = (c & 0xffff) + a0 * (P1L >>> 16);
  v[i + 1] = (d << 16) | (t & 0xffff);
  v[i] = (a1 * (P1L >>> 16) + (c >>> 16) + (d >>> 16) + Math.imul(rh, P1L) + Math.imul(rl, P1H)) | 0;
}

/**
 * Streaming XXH64. Feed any number of chunks with {@link Xxh64.update}; the result does not
 * depend on how the input is split. {@link Xxh64.digest} does not change the state, so more
 * input may follow it (as with xxhash-wasm's `create64`).
 */
export class Xxh64 {
  /** v1..v4 as hi,lo pairs. */
  private readonly v = new Int32Array(8);
  private readonly seedH: number;
  private readonly seedL: number;
  /** Bytes not yet forming a whole 32-byte stripe. */
  private readonly buf = new Uint8Array(32);
  private bufLen = 0;
  private total = 0;

  /** @param seed taken modulo 2^64 (as xxhash-wasm does). */
  constructor(seed: bigint = 0n) {
    const s = BigInt.asUintN(64, seed);
    const sh = Number(s >> 32n) | 0;
    const sl = Number(s & 0xffffffffn) | 0;
    this.seedH = sh;
    this.seedL = sl;
    const v = this.v;
    add64(sh, sl, P1H, P1L);
    add64(H, L, P2H, P2L);
    v[0] = H; v[1] = L;
    add64(sh, sl, P2H, P2L);
    v[2] = H; v[3] = L;
    v[4] = sh; v[5] = sl;
    add64(sh, sl, ~P1H, ~P1L); // seed - P1 = seed + ~P1 + 1
    add64(H, L, 0, 1);
    v[6] = H; v[7] = L;
  }

  /** Consume whole 32-byte stripes of `b` from `p` while they fit before `end`; returns the new p. */
  private stripes(b: Uint8Array, p: number, end: number): number {
    const v = this.v;
    for (; p + 32 <= end; p += 32) {
      roundAt(v, 0, u32(b, p + 4), u32(b, p));
      roundAt(v, 2, u32(b, p + 12), u32(b, p + 8));
      roundAt(v, 4, u32(b, p + 20), u32(b, p + 16));
      roundAt(v, 6, u32(b, p + 28), u32(b, p + 24));
    }
    return p;
  }

  /** Append `input` to the hashed data. */
  update(input: Uint8Array): this {
    const len = input.length;
    this.total += len;
    if (this.bufLen + len < 32) {
      this.buf.set(input, this.bufLen);
      this.bufLen += len;
      return this;
    }
    let p = 0;
    if (this.bufLen > 0) {
      p = 32 - this.bufLen;
      this.buf.set(input.subarray(0, p), this.bufLen);
      this.stripes(this.buf, 0, 32);
      this.bufLen = 0;
    }
    p = this.stripes(input, p, len);
    if (p < len) {
      this.buf.set(input.subarray(p), 0);
      this.bufLen = len - p;
    }
    return this;
  }

  /** XXH64 of everything passed to {@link Xxh64.update} so far, as an unsigned 64-bit BigInt. */
  digest(): bigint {
    const v = this.v;
    let h: number, l: number;
    if (this.total >= 32) {
      rotl64(v[0], v[1], 1);
      let ah = H, al = L;
      rotl64(v[2], v[3], 7);
      add64(ah, al, H, L);
      ah = H; al = L;
      rotl64(v[4], v[5], 12);
      add64(ah, al, H, L);
      ah = H; al = L;
      rotl64(v[6], v[7], 18);
      add64(ah, al, H, L);
      merge64(H, L, v[0], v[1]);
      merge64(H, L, v[2], v[3]);
      merge64(H, L, v[4], v[5]);
      merge64(H, L, v[6], v[7]);
    } else {
      add64(this.seedH, this.seedL, P5H, P5L);
    }
    add64(H, L, Math.floor(this.total / 4294967296) | 0, this.total | 0);
    h = H; l = L;

    const b = this.buf, n = this.bufLen;
    let p = 0;
    for (; p + 8 <= n; p += 8) {
      round64(0, 0, u32(b, p + 4), u32(b, p));
      rotl64(h ^ H, l ^ L, 27);
      mul64(H, L, P1H, P1L);
      add64(H, L, P4H, P4L);
      h = H; l = L;
    }
    if (p + 4 <= n) {
      mul64(0, u32(b, p), P1H, P1L);
      rotl64(h ^ H, l ^ L, 23);
      mul64(H, L, P2H, P2L);
      add64(H, L, P3H, P3L);
      h = H; l = L;
      p += 4;
    }
    for (; p < n; p++) {
      mul64(0, b[p], P5H, P5L);
      rotl64(h ^ H, l ^ L, 11);
      mul64(H, L, P1H, P1L);
      h = H; l = L;
    }

    // avalanche
    l ^= h >>> 1; // h ^= h >> 33
    mul64(h, l, P2H, P2L);
    h = H; l = L;
    l ^= (l >>> 29) | (h << 3); // h ^= h >> 29
    h ^= h >>> 29;
    mul64(h, l, P3H, P3L);
    h = H; l = L;
    l ^= h; // h ^= h >> 32
    return (BigInt(h >>> 0) << 32n) | BigInt(l >>> 0);
  }
}

/**
 * XXH64 of `input` with `seed` (taken modulo 2^64).
 * @returns the hash as an unsigned 64-bit BigInt.
 */
export function xxh64(input: Uint8Array, seed: bigint = 0n): bigint {
  return new Xxh64(seed).update(input).digest();
}
