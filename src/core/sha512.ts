/**
 * SHA-512 (FIPS 180-4), over one or more byte arrays taken as one message, for the device: the hash the pure Ed25519 path needs
 * (React Native's Hermes and other runtimes without WebCrypto Ed25519) and that names trusted
 * keys. Written here rather than taken from `@noble/hashes` because the applier's bundle has a
 * size it promises (30 KB min+gzip) and this is about a tenth of that library's SHA-2 module
 * with its helpers; it is checked against `node:crypto` on every length across the block
 * boundaries and on megabytes of random input (test/sha512.test.ts), and through the RFC 8032
 * Ed25519 vectors.
 *
 * 64-bit words are pairs of 32-bit integers (high, low); additions carry through float64 sums
 * of the unsigned low halves (exact below 2^53). The round constants and initial value are
 * computed once, on first use, as the standard defines them (the first 64 bits of the
 * fractional parts of the cube roots of the first 80 primes, and of the square roots of the
 * first 8), with BigInt integer roots: no table to mistype.
 */

let K: Int32Array | undefined;
let IV: Int32Array;

/** floor(p^(1/n) × 2^64) mod 2^64: the first 64 bits of the fractional part of p's n-th root. */
function rootBits(p: bigint, n: 2 | 3): bigint {
  const x = p << BigInt(64 * n);
  const k = BigInt(n);
  // Integer Newton from above: decreases to floor(x^(1/n)).
  let r = BigInt(Math.ceil(Math.pow(Number(p), 1 / n)) + 1) << 64n;
  for (;;) {
    const next = ((k - 1n) * r + x / r ** (k - 1n)) / k;
    if (next >= r) return r & 0xffffffffffffffffn;
    r = next;
  }
}

function constants(): Int32Array {
  const primes: number[] = [];
  for (let n = 2; primes.length < 80; n++) if (primes.every((p) => n % p)) primes.push(n);
  const k = new Int32Array(160);
  IV = new Int32Array(16);
  const put = (v: bigint, out: Int32Array, i: number): void => {
    out[2 * i] = Number(v >> 32n) | 0;
    out[2 * i + 1] = Number(v & 0xffffffffn) | 0;
  };
  primes.forEach((p, i) => {
    put(rootBits(BigInt(p), 3), k, i);
    if (i < 8) put(rootBits(BigInt(p), 2), IV, i);
  });
  return k;
}

const TWO32 = 4294967296;

/**
 * SHA-512 fed a part at a time ({@link Sha512.update}), for a message read as it streams past (a
 * payload file verified a window at a time): full blocks are read in place from each part, only a
 * block that straddles two parts (or the last one, with the padding) goes through a 128-byte
 * buffer, so hashing N bytes allocates no copy of them.
 */
export class Sha512 {
  private readonly k = (K ??= constants());
  private readonly h = IV.slice();
  private readonly w = new Int32Array(160);
  private readonly block = new Uint8Array(128);
  private readonly blockView = new DataView(this.block.buffer);
  private filled = 0;
  private len = 0;

  /** Add `part` to the message. */
  update(part: Uint8Array): this {
    const { h, w, k, block, blockView } = this;
    this.len += part.length;
    let at = 0;
    if (this.filled > 0) {
      at = Math.min(128 - this.filled, part.length);
      block.set(part.subarray(0, at), this.filled);
      this.filled += at;
      if (this.filled < 128) return this;
      compress(h, w, k, blockView, 0);
      this.filled = 0;
    }
    const view = new DataView(part.buffer, part.byteOffset, part.byteLength);
    for (; at + 128 <= part.length; at += 128) compress(h, w, k, view, at);
    block.set(part.subarray(at), 0);
    this.filled = part.length - at;
    return this;
  }

  /** The digest (64 bytes) of everything added; the hash is spent after it. */
  digest(): Uint8Array<ArrayBuffer> {
    const { h, w, k, block, blockView, filled, len } = this;
    // A 1 bit, zeros, and the length in bits (128-bit big-endian): one block more, or two.
    block.fill(0, filled);
    block[filled] = 0x80;
    if (filled >= 112) {
      compress(h, w, k, blockView, 0);
      block.fill(0);
    }
    blockView.setUint32(120, Math.floor(len / 0x20000000));
    blockView.setUint32(124, (len * 8) % TWO32);
    compress(h, w, k, blockView, 0);
    const out = new Uint8Array(64);
    const o = new DataView(out.buffer);
    for (let i = 0; i < 16; i++) o.setInt32(4 * i, h[i]);
    return out;
  }
}

/**
 * The SHA-512 digest (64 bytes) of `parts` one after the other, as of their concatenation,
 * without making it. Ed25519 hashes R || A || M this way, so verifying a payload of N bytes
 * allocates no copy of it.
 */
export function sha512(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const s = new Sha512();
  for (const part of parts) s.update(part);
  return s.digest();
}

/** One 128-byte block of `dv` at byte `at` into the state `h` (`w`: the message schedule's space). */
function compress(h: Int32Array, w: Int32Array, k: Int32Array, dv: DataView, at: number): void {
  for (let i = 0; i < 32; i++) w[i] = dv.getInt32(at + 4 * i);
  for (let i = 32; i < 160; i += 2) {
    // σ0(w[t-15]) = rotr 1 ^ rotr 8 ^ shr 7; σ1(w[t-2]) = rotr 19 ^ rotr 61 ^ shr 6
    let xh = w[i - 30];
    let xl = w[i - 29];
    const s0h = ((xh >>> 1) | (xl << 31)) ^ ((xh >>> 8) | (xl << 24)) ^ (xh >>> 7);
    const s0l = ((xl >>> 1) | (xh << 31)) ^ ((xl >>> 8) | (xh << 24)) ^ ((xl >>> 7) | (xh << 25));
    xh = w[i - 4];
    xl = w[i - 3];
    const s1h = ((xh >>> 19) | (xl << 13)) ^ ((xl >>> 29) | (xh << 3)) ^ (xh >>> 6);
    const s1l = ((xl >>> 19) | (xh << 13)) ^ ((xh >>> 29) | (xl << 3)) ^ ((xl >>> 6) | (xh << 26));
    const lo = (w[i - 31] >>> 0) + (s0l >>> 0) + (w[i - 13] >>> 0) + (s1l >>> 0);
    w[i] = (w[i - 32] + s0h + w[i - 14] + s1h + ((lo / TWO32) | 0)) | 0;
    w[i + 1] = lo | 0;
  }
  let [ah, al, bh, bl, ch, cl, dh, dl, eh, el, fh, fl, gh, gl, hh, hl] = h;
  for (let i = 0; i < 160; i += 2) {
    // t1 = h + Σ1(e) + Ch(e, f, g) + K[t] + W[t]; Σ1 = rotr 14 ^ rotr 18 ^ rotr 41
    const s1h = ((eh >>> 14) | (el << 18)) ^ ((eh >>> 18) | (el << 14)) ^ ((el >>> 9) | (eh << 23));
    const s1l = ((el >>> 14) | (eh << 18)) ^ ((el >>> 18) | (eh << 14)) ^ ((eh >>> 9) | (el << 23));
    let lo = (hl >>> 0) + (s1l >>> 0) + (((el & fl) ^ (~el & gl)) >>> 0) + (k[i + 1] >>> 0) + (w[i + 1] >>> 0);
    const t1h = (hh + s1h + ((eh & fh) ^ (~eh & gh)) + k[i] + w[i] + ((lo / TWO32) | 0)) | 0;
    const t1l = lo >>> 0;
    // t2 = Σ0(a) + Maj(a, b, c); Σ0 = rotr 28 ^ rotr 34 ^ rotr 39
    const s0h = ((ah >>> 28) | (al << 4)) ^ ((al >>> 2) | (ah << 30)) ^ ((al >>> 7) | (ah << 25));
    const s0l = ((al >>> 28) | (ah << 4)) ^ ((ah >>> 2) | (al << 30)) ^ ((ah >>> 7) | (al << 25));
    const mh = (ah & bh) ^ (ah & ch) ^ (bh & ch);
    const ml = (al & bl) ^ (al & cl) ^ (bl & cl);
    hh = gh;
    hl = gl;
    gh = fh;
    gl = fl;
    fh = eh;
    fl = el;
    lo = (dl >>> 0) + t1l;
    eh = (dh + t1h + ((lo / TWO32) | 0)) | 0;
    el = lo | 0;
    dh = ch;
    dl = cl;
    ch = bh;
    cl = bl;
    bh = ah;
    bl = al;
    lo = t1l + (s0l >>> 0) + (ml >>> 0);
    ah = (t1h + s0h + mh + ((lo / TWO32) | 0)) | 0;
    al = lo | 0;
  }
  const v = [ah, al, bh, bl, ch, cl, dh, dl, eh, el, fh, fl, gh, gl, hh, hl];
  for (let i = 0; i < 16; i += 2) {
    const lo = (h[i + 1] >>> 0) + (v[i + 1] >>> 0);
    h[i] = (h[i] + v[i] + ((lo / TWO32) | 0)) | 0;
    h[i + 1] = lo | 0;
  }
}
