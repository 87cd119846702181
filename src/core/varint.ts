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
  let p = 0;
  for (let k = 0; k < count; k++) {
    let value = 0;
    let shift = 0;
    for (;;) {
      if (p >= bytes.length || shift > 28) return null;
      const b = bytes[p++];
      if (shift === 28 && b > 0x0f) return null; // would exceed 32 bits
      value += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) break;
      shift += 7;
    }
    out[k] = value;
  }
  return p === bytes.length ? out : null;
}
