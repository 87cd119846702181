/**
 * A small FlatBuffers reader that checks every offset before it follows it, for `.tflite` files
 * read on a device (plain TypeScript, no node imports). The `flatbuffers` npm package reads
 * through whatever offsets a file holds (its JavaScript runtime has no verifier), so a hostile
 * file could send it anywhere; here every table, vtable, vector and string is checked to lie
 * inside the bytes before it is read, field offsets inside their table, and the total work a
 * walk may do is bounded by the file's size (a vector of a million offsets all naming one big
 * table is refused, not walked a million times).
 *
 * Binary layout (flatbuffers.dev, "Internals"): little-endian; a table starts with an int32
 * `soffset` back to its vtable (vtable = table − soffset); a vtable is uint16 `vtableSize`,
 * uint16 `tableSize`, then one uint16 offset per field (0: absent); a reference field holds a
 * uint32 offset from the field itself; a vector is a uint32 length then its elements; a string
 * is a vector of bytes followed by a 0 byte.
 */
import { ModelFormatError } from '../../core/errors.ts';
import { decodeUtf8Strict } from '../../core/utf8-decode.ts';

/** A vector's place: its elements start at `at`, `length` of them. */
export interface FbVector {
  at: number;
  length: number;
}

/** A checked reader over one FlatBuffer (the bytes of a whole file). */
export class FlatBufferReader {
  readonly bytes: Uint8Array;
  private readonly view: DataView;
  /** Elements and tables left to visit before the walk is refused as looping. */
  private budget: number;
  /** Every structural region read (tables, vtables, vectors, strings), flat (start, end): what weight bytes must never overlap. */
  readonly structure: number[] = [];

  constructor(bytes: Uint8Array, private readonly source: string) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.budget = 4 * bytes.length + 4096;
  }

  fail(what: string): never {
    throw new ModelFormatError(`${this.source}: ${what}`, { source: this.source });
  }

  /** Charge `n` units of work (elements read); throws once the file's budget is spent. */
  spend(n: number): void {
    this.budget -= n;
    if (this.budget < 0) this.fail('its tables and vectors refer to the same data over and over (more reads than the file could hold): expected each part of the model stored once; a hostile or corrupt file');
  }

  /** Throws unless `[at, at + n)` lies inside the bytes. */
  check(at: number, n: number, what: string): void {
    if (!(at >= 0 && n >= 0 && at + n <= this.bytes.length)) this.fail(`${what} at offset ${at} (${n} bytes) lies outside the file's ${this.bytes.length} bytes: the file is cut short or corrupt`);
  }

  u8(at: number): number {
    this.check(at, 1, 'a byte');
    return this.view.getUint8(at);
  }
  u16(at: number): number {
    this.check(at, 2, 'a uint16');
    return this.view.getUint16(at, true);
  }
  i32(at: number): number {
    this.check(at, 4, 'an int32');
    return this.view.getInt32(at, true);
  }
  u32(at: number): number {
    this.check(at, 4, 'a uint32');
    return this.view.getUint32(at, true);
  }
  f32(at: number): number {
    this.check(at, 4, 'a float32');
    return this.view.getFloat32(at, true);
  }
  /** An int64 as a number; refused past ±2^53 (no offset, size or zero point of a model is). */
  i64(at: number): number {
    this.check(at, 8, 'an int64');
    const lo = this.view.getUint32(at, true);
    const hi = this.view.getInt32(at + 4, true);
    if (hi > 0x1fffff || hi < -0x200000) this.fail(`an int64 at offset ${at} is beyond 2^53: expected an offset, size or zero point a model can hold`);
    return hi * 4294967296 + lo;
  }
  /** A uint64 as a number; refused past 2^53. */
  u64(at: number): number {
    this.check(at, 8, 'a uint64');
    const hi = this.view.getUint32(at + 4, true);
    if (hi > 0x1fffff) this.fail(`a uint64 at offset ${at} is beyond 2^53: expected an offset or size inside a file`);
    return hi * 4294967296 + this.view.getUint32(at, true);
  }

  /** The root table of the buffer, checking the 4-byte file identifier when one is given. */
  root(identifier?: string): number {
    if (this.bytes.length < 8) this.fail(`it is ${this.bytes.length} bytes: expected at least a FlatBuffer's 8-byte header`);
    if (identifier !== undefined) {
      const found = String.fromCharCode(...this.bytes.subarray(4, 8));
      if (found !== identifier) this.fail(`its file identifier is ${JSON.stringify(found)}: expected ${JSON.stringify(identifier)}`);
    }
    this.structure.push(0, 8);
    return this.table(this.u32(0), 'the root table');
  }

  /** Check the table at `at` (its vtable inside the file, well-formed) and return `at`. */
  table(at: number, what: string): number {
    this.spend(1);
    this.check(at, 4, what);
    const vt = at - this.i32(at);
    this.check(vt, 4, `the vtable of ${what}`);
    const size = this.u16(vt);
    const tableSize = this.u16(vt + 2);
    if (size < 4 || size % 2) this.fail(`the vtable of ${what} at offset ${vt} is ${size} bytes: expected an even size of at least 4`);
    this.check(vt, size, `the vtable of ${what}`);
    if (tableSize < 4) this.fail(`${what} at offset ${at} says it is ${tableSize} bytes: expected at least its 4-byte vtable offset`);
    this.check(at, tableSize, what);
    this.structure.push(vt, vt + size, at, at + tableSize);
    return at;
  }

  /** Where field `field` (0-based) of the table at `t` lies, or -1 when absent; `width`: its inline size, checked against the table's size. */
  field(t: number, field: number, width: number): number {
    const vt = t - this.i32(t);
    const size = this.u16(vt);
    const slot = 4 + 2 * field;
    if (slot + 2 > size) return -1;
    const off = this.u16(vt + slot);
    if (off === 0) return -1;
    if (off < 4 || off + width > this.u16(vt + 2)) this.fail(`field ${field} of the table at offset ${t} lies at ${off}, past the table's ${this.u16(vt + 2)} bytes: a corrupt file`);
    return t + off;
  }

  fieldU8(t: number, field: number, dflt: number): number {
    const p = this.field(t, field, 1);
    return p < 0 ? dflt : this.u8(p);
  }
  fieldI32(t: number, field: number, dflt: number): number {
    const p = this.field(t, field, 4);
    return p < 0 ? dflt : this.i32(p);
  }
  fieldU32(t: number, field: number, dflt: number): number {
    const p = this.field(t, field, 4);
    return p < 0 ? dflt : this.u32(p);
  }
  fieldU64(t: number, field: number, dflt: number): number {
    const p = this.field(t, field, 8);
    return p < 0 ? dflt : this.u64(p);
  }

  /** The target of the reference field at `p` (a uint32 offset from `p`); must point forward. */
  deref(p: number, what: string): number {
    const off = this.u32(p);
    if (off === 0) this.fail(`${what} at offset ${p} refers to itself: a corrupt file`);
    return p + off;
  }

  /** The table in field `field` of `t`, or -1 when absent. */
  fieldTable(t: number, field: number, what: string): number {
    const p = this.field(t, field, 4);
    return p < 0 ? -1 : this.table(this.deref(p, what), what);
  }

  /**
   * The vector in field `field` of `t` with elements of `width` bytes, or null when absent.
   * `data`: a vector of weight bytes, not recorded in {@link structure} (the others are).
   */
  fieldVector(t: number, field: number, width: number, what: string, data = false): FbVector | null {
    const p = this.field(t, field, 4);
    if (p < 0) return null;
    const v = this.deref(p, what);
    this.check(v, 4, `the length of ${what}`);
    const length = this.u32(v);
    this.check(v + 4, length * width, `${what} (${length} elements of ${width} bytes)`);
    this.spend(width === 1 ? 1 : length);
    if (data) this.structure.push(v, v + 4);
    else this.structure.push(v, v + 4 + length * width + (width === 1 ? 1 : 0));
    return { at: v + 4, length };
  }

  /** Element `i` of a vector of tables. */
  tableAt(v: FbVector, i: number, what: string): number {
    const p = v.at + 4 * i;
    return this.table(this.deref(p, what), what);
  }

  /** The string in field `field` of `t`, or `dflt` when absent (UTF-8, checked). */
  fieldString(t: number, field: number, what: string, dflt = ''): string {
    const v = this.fieldVector(t, field, 1, what);
    if (!v) return dflt;
    const raw = this.bytes.subarray(v.at, v.at + v.length);
    try {
      return decodeUtf8Strict(raw);
    } catch {
      return this.fail(`${what} at offset ${v.at} is not valid UTF-8`);
    }
  }

  /** A vector of int32 as numbers. */
  ints(v: FbVector | null): number[] {
    if (!v) return [];
    const out = new Array<number>(v.length);
    for (let i = 0; i < v.length; i++) out[i] = this.view.getInt32(v.at + 4 * i, true);
    return out;
  }
  /** A vector of float32 as numbers. */
  floats(v: FbVector | null): number[] {
    if (!v) return [];
    const out = new Array<number>(v.length);
    for (let i = 0; i < v.length; i++) out[i] = this.view.getFloat32(v.at + 4 * i, true);
    return out;
  }
  /** A vector of int64 as numbers (each within ±2^53). */
  longs(v: FbVector | null): number[] {
    if (!v) return [];
    const out = new Array<number>(v.length);
    for (let i = 0; i < v.length; i++) out[i] = this.i64(v.at + 8 * i);
    return out;
  }
}
