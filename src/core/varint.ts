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
