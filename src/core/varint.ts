/**
 * Unsigned LEB128 varints for sorted position gaps. Values are limited to 2^32 - 1 (positions
 * are uint32), so a varint is at most 5 bytes.
 */

/** Bytes needed to write `value` (0 <= value < 2^32) as a varint. */
export function varintSize(value: number): number {
  return value < 0x80 ? 1 : value < 0x4000 ? 2 : value < 0x200000 ? 3 : value < 0x10000000 ? 4 : 5;
}

/** A growable byte writer. */
export class ByteWriter {
  private buf: Uint8Array;
  length = 0;
  constructor(initial = 256) {
    this.buf = new Uint8Array(initial);
  }
  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.length + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }
  varint(value: number): void {
    this.reserve(5);
    let v = value >>> 0;
    while (v >= 0x80) {
      this.buf[this.length++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[this.length++] = v;
  }
  bytes(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

/**
 * Reads `count` varints from `bytes`. Returns null when the input is malformed (truncated,
 * longer than 5 bytes, over 2^32 - 1, or trailing bytes) so the caller can raise its own error.
 */
export function readVarints(bytes: Uint8Array, count: number): Uint32Array | null {
  const out = new Uint32Array(count);
  return readVarintsInto(bytes, 0, out) === bytes.length ? out : null;
}

/**
 * Reads `out.length` varints from `bytes` at `at` into `out`. Returns where the next one would
 * start, or -1 when the input is malformed (truncated, longer than 5 bytes, over 2^32 - 1).
 */
export function readVarintsInto(bytes: Uint8Array, at: number, out: Uint32Array): number {
  const end = bytes.length;
  let p = at;
  for (let k = 0; k < out.length; k++) {
    if (p >= end) return -1;
    let b = bytes[p++];
    if (b < 0x80) {
      out[k] = b; // one byte: the common case for the gaps of a dense-enough diff
      continue;
    }
    let value = b & 0x7f;
    for (let shift = 7; ; shift += 7) {
      if (p >= end) return -1;
      b = bytes[p++];
      if (shift === 28) {
        if (b > 0x0f) return -1; // past 32 bits, or a sixth byte
        value += b * 0x10000000;
        break;
      }
      value |= (b & 0x7f) << shift;
      if (b < 0x80) break;
    }
    out[k] = value;
  }
  return p;
}

/**
 * Reads `out.length` position gaps from `bytes` at `at` and writes the positions they lead to
 * (`prev + 1 + gap`, running on from `prev`) into `out`. Returns where the next varint would
 * start, or -1 when a varint is malformed or a position reaches `size`: the caller then decodes
 * the same bytes with {@link readVarintsInto} to say which.
 */
export function readGapsInto(bytes: Uint8Array, at: number, out: Uint32Array, prev: number, size: number): number {
  const end = bytes.length;
  let p = at;
  let pos = prev;
  for (let k = 0; k < out.length; k++) {
    if (p >= end) return -1;
    let b = bytes[p++];
    if (b >= 0x80) {
      let value = b & 0x7f;
      for (let shift = 7; ; shift += 7) {
        if (p >= end) return -1;
        b = bytes[p++];
        if (shift === 28) {
          if (b > 0x0f) return -1;
          value += b * 0x10000000;
          break;
        }
        value |= (b & 0x7f) << shift;
        if (b < 0x80) break;
      }
      b = value;
    }
    pos += b + 1;
    if (pos >= size) return -1;
    out[k] = pos;
  }
  return p;
}

/** The last position {@link scanGaps} reached. */
export let scannedPosition = 0;

/**
 * Check `count` position gaps at `at` as {@link readGapsInto} reads them, without writing the
 * positions: every varint well-formed and the last position (`prev + count + the gaps' sum`;
 * positions only grow) below `size`. Four one-byte varints are summed at once where a 32-bit
 * word holds them. Returns where the next varint would start (and sets
 * {@link scannedPosition}), or -1: the caller then decodes the bytes to say what is wrong.
 */
export function scanGaps(bytes: Uint8Array, at: number, count: number, prev: number, size: number): number {
  const end = bytes.length;
  const base = bytes.byteOffset;
  const aligned = alignedOffset(base);
  const words = wordsOf(bytes);
  let p = at;
  let k = 0;
  let sum = 0;
  while (k < count) {
    if ((base + p) % 4 === 0) {
      // Whole words of four one-byte varints: their bytes summed two at a time in 16-bit
      // lanes (at most 2 * 127 per word, so 128 words fit a lane), folded every 128 words.
      const first = (base + p - aligned) >> 2;
      const last = first + Math.min((count - k) >> 2, (end - p) >> 2);
      let j = first;
      while (j < last) {
        const stop = Math.min(last, j + 128);
        let lanes = 0;
        for (; j < stop; j++) {
          const w = words[j];
          if (w & 0x80808080) break;
          lanes += (w & 0x00ff00ff) + ((w >>> 8) & 0x00ff00ff);
        }
        sum += (lanes & 0xffff) + (lanes >>> 16);
        if (j < stop) break;
      }
      p += 4 * (j - first);
      k += 4 * (j - first);
      if (k >= count) break;
    }
    // One varint, byte by byte.
    if (p >= end) return -1;
    let b = bytes[p++];
    let value = b & 0x7f;
    for (let shift = 7; b >= 0x80; shift += 7) {
      if (p >= end || shift > 28) return -1;
      b = bytes[p++];
      if (shift === 28 && b > 0x0f) return -1;
      value += (b & 0x7f) * 2 ** shift;
    }
    sum += value;
    k++;
  }
  const last = prev + count + sum;
  if (count > 0 && last >= size) return -1;
  scannedPosition = last;
  return p;
}

/**
 * The first 4-byte boundary at or after byte `offset` of a buffer. Plain arithmetic: a view can
 * start past 2 GiB in a large buffer, where `(offset + 3) & ~3` turns negative.
 */
export function alignedOffset(offset: number): number {
  return offset + ((4 - (offset % 4)) % 4);
}

/** The aligned 32-bit words inside `bytes` (from its first 4-byte boundary), as a view. */
export function wordsOf(bytes: Uint8Array): Uint32Array {
  const aligned = alignedOffset(bytes.byteOffset);
  const n = (bytes.byteOffset + bytes.length - aligned) >> 2;
  return n > 0 ? new Uint32Array(bytes.buffer, aligned, n) : new Uint32Array(0);
}
