/**
 * The protobuf wire format as ONNX files use it: one cursor over a message's fields that checks
 * every tag, wire type and length before it is used. Both readers of ONNX files go through it:
 * the weight store's scan (`proto.ts`, on the device) and the trainer's decoding of the graph
 * (`src/engine/onnx/model.ts`), so a file one of them refuses the other refuses the same way.
 *
 * Plain TypeScript with no node imports: it runs on a device next to the applier.
 */
import { decodeUtf8Strict } from '../../core/utf8-decode.ts';

/** The protobuf wire types by number, for messages. */
export const WIRE_NAMES: readonly string[] = ['varint', 'fixed64', 'length-delimited', 'start-group', 'end-group', 'fixed32', 'wire type 6', 'wire type 7'];

/**
 * Thrown by the cursor (and by the readers built on it) for bytes that are not the message
 * expected; each reader turns it into a `ModelFormatError` naming its source.
 */
export class ProtoMalformed extends Error {}

/** A varint's two halves as a signed 64-bit integer (exact below 2^53 in magnitude). */
export function signed64(lo: number, hi: number): number {
  return (hi | 0) * 4294967296 + (lo >>> 0);
}

/**
 * A cursor over one protobuf message in `b`, between `p` and `end`. Every length is checked
 * against the bytes left before it is used; a field number 0, a tag past 32 bits and the group
 * wire types (which ONNX never uses) are refused.
 */
export class ProtoFields {
  /** Field number and wire type of the field just read. */
  field = 0;
  wire = 0;
  /** For a length-delimited field: its contents `[start, stop)`; for a fixed or varint field: its bytes. */
  start = 0;
  stop = 0;
  /** The value of a varint field (as a number; exact below 2^53) and its two 32-bit halves. */
  value = 0;
  lo = 0;
  hi = 0;
  constructor(readonly b: Uint8Array, public p: number, readonly end: number) {}

  /** Read a varint at `p` into lo/hi/value. */
  varint(): void {
    const { b, end } = this;
    let lo = 0;
    let hi = 0;
    for (let i = 0; ; i++) {
      if (this.p >= end) throw new ProtoMalformed(`a varint runs past the end of its message at byte ${this.p}`);
      if (i === 10) throw new ProtoMalformed(`a varint at byte ${this.p - 10} is longer than 10 bytes`);
      const x = b[this.p++];
      if (i < 4) lo |= (x & 0x7f) << (7 * i);
      else if (i === 4) {
        lo |= (x & 0x0f) << 28;
        hi |= (x & 0x7f) >>> 4;
      } else hi |= (x & 0x7f) << (7 * i - 32);
      if (x < 0x80) break;
    }
    this.lo = lo >>> 0;
    this.hi = hi >>> 0;
    this.value = this.hi * 4294967296 + this.lo;
  }

  /** Advance to the next field; false at the end of the message. */
  next(): boolean {
    if (this.p >= this.end) return false;
    const tagAt = this.p;
    this.varint();
    if (this.hi !== 0 || this.lo >>> 3 === 0) throw new ProtoMalformed(`field tag ${this.value} at byte ${tagAt} is not a valid field number`);
    this.field = this.lo >>> 3;
    this.wire = this.lo & 7;
    const at = this.p;
    switch (this.wire) {
      case 0:
        this.start = at;
        this.varint();
        this.stop = this.p;
        break;
      case 1:
      case 5: {
        const n = this.wire === 1 ? 8 : 4;
        if (at + n > this.end) throw new ProtoMalformed(`a ${n}-byte field at byte ${at} runs past the end of its message (${this.end})`);
        this.start = at;
        this.stop = this.p = at + n;
        break;
      }
      case 2: {
        this.varint();
        const len = this.value;
        if (this.hi !== 0 || len > this.end - this.p) {
          throw new ProtoMalformed(`field ${this.field} at byte ${tagAt} says it holds ${len} bytes, but only ${this.end - this.p} are left in its message`);
        }
        this.start = this.p;
        this.stop = this.p = this.p + len;
        break;
      }
      default:
        throw new ProtoMalformed(`field ${this.field} at byte ${tagAt} has ${WIRE_NAMES[this.wire]}, which ONNX files never use`);
    }
    return true;
  }

  /** The contents of the current length-delimited field as a string. */
  string(): string {
    this.need(2, 'a string');
    try {
      return decodeUtf8Strict(this.b.subarray(this.start, this.stop));
    } catch {
      throw new ProtoMalformed(`field ${this.field} at byte ${this.start} should be UTF-8 text but is not`);
    }
  }

  /** Refuse the current field unless it has wire type `wire` (`what` names it in the message). */
  need(wire: number, what: string): void {
    if (this.wire !== wire) throw new ProtoMalformed(`field ${this.field} (${what}) has ${WIRE_NAMES[this.wire]}, expected ${WIRE_NAMES[wire]}`);
  }

  /** A nested cursor over the current length-delimited field. */
  sub(what: string): ProtoFields {
    this.need(2, what);
    return new ProtoFields(this.b, this.start, this.stop);
  }

  /** The current varint field as a signed 64-bit integer (an `int64`/`int32` field). */
  int(what: string): number {
    this.need(0, what);
    return signed64(this.lo, this.hi);
  }

  /** The current fixed32 field as a float (a `float` field). */
  float(what: string): number {
    this.need(5, what);
    return new DataView(this.b.buffer, this.b.byteOffset + this.start, 4).getFloat32(0, true);
  }

  /** Every value of a repeated varint field (one varint, or a packed run), as signed 64-bit integers, pushed on `out`. */
  varints(what: string, out: number[]): void {
    if (this.wire === 0) out.push(signed64(this.lo, this.hi));
    else {
      this.need(2, what);
      eachVarint(this.b, this.start, this.stop, (lo, hi) => out.push(signed64(lo, hi)));
    }
  }

  /** Every value of a repeated fixed-width float field (`width` 4: float32, 8: float64; one value or a packed run), pushed on `out`. */
  fixedFloats(what: string, width: 4 | 8, out: number[]): void {
    if (this.wire !== 2) this.need(width === 4 ? 5 : 1, what);
    const n = this.stop - this.start;
    if (n % width) throw new ProtoMalformed(`field ${this.field} (${what}) holds ${n} bytes, not a multiple of ${width}`);
    const dv = new DataView(this.b.buffer, this.b.byteOffset + this.start, n);
    for (let p = 0; p < n; p += width) out.push(width === 4 ? dv.getFloat32(p, true) : dv.getFloat64(p, true));
  }
}

/** Read every varint of a packed field `[start, stop)` (or one varint), calling `each(lo, hi)`; returns how many. */
export function eachVarint(b: Uint8Array, start: number, stop: number, each: (lo: number, hi: number) => void): number {
  const f = new ProtoFields(b, start, stop);
  let n = 0;
  while (f.p < stop) {
    f.varint();
    each(f.lo, f.hi);
    n++;
  }
  return n;
}
