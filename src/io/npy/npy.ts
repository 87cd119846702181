/**
 * NumPy `.npy` reader and writer in plain TypeScript (no node imports), so datasets written by
 * NumPy load in the trainer, in a browser or on a device, and the data tools here write files
 * that `numpy.load` reads back.
 *
 * Format (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html):
 * `\x93NUMPY`, a major and minor version byte, the header length (uint16 LE in v1, uint32 LE in
 * v2 and v3), then an ASCII (v1, v2) or UTF-8 (v3) Python dict literal such as
 * `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }` padded with spaces and a newline,
 * then the raw array bytes in C (row-major) order.
 *
 * @module
 */
import { ModelFormatError, UsageError } from '../../core/errors.ts';
import { LITTLE_ENDIAN_HOST } from '../../core/endian.ts';

/** Typed arrays that {@link parseNpy} returns. */
export type NpyData =
  | Float32Array
  | Float64Array
  | Int8Array
  | Int16Array
  | Int32Array
  | Uint8Array
  | Uint16Array
  | Uint32Array;

/** Typed arrays that {@link writeNpy} accepts (BigInt64Array for int64, e.g. Silero VAD's `sr` input). */
export type NpyWritable = Float32Array | Int32Array | Uint8Array | BigInt64Array;

/** A decoded `.npy` array. */
export interface NpyArray {
  /** The dtype descriptor exactly as written in the file, e.g. `'<f4'`, `'>i8'`, `'|b1'`. */
  dtype: string;
  /** Array shape; `[]` for a scalar. */
  shape: number[];
  /**
   * Element values in native byte order, always a fresh copy (never a view into the input).
   * `f2` becomes Float32Array; `i8`/`u8` become Int32Array (an error if a value does not fit);
   * `b1` becomes Uint8Array of 0/1.
   */
  data: NpyData;
  /** True only when the file is column-major and {@link ParseNpyOptions.allowFortranOrder} was set. */
  fortranOrder: boolean;
}

/** Options for {@link parseNpy}. */
export interface ParseNpyOptions {
  /**
   * Accept `fortran_order: True` and return the data in the file's (column-major) order with
   * `fortranOrder: true`. Default false: such files are rejected, because every consumer here
   * assumes row-major data.
   */
  allowFortranOrder?: boolean;
  /** Name used in error messages (a file path, say). Default `'npy data'`. */
  source?: string;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

type Kind = 'f' | 'i' | 'u' | 'b';

interface DtypeInfo {
  kind: Kind;
  size: number;
  littleEndian: boolean;
}

const SUPPORTED_DTYPES = "f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1 (any byte order: '<', '>', '=', '|')";

function parseDtype(descr: string, source: string): DtypeInfo {
  const m = /^([<>=|]?)([fiub])(\d+)$/.exec(descr);
  const fail = (): never => {
    throw new ModelFormatError(
      `${source}: dtype '${descr}' is not supported: expected one of ${SUPPORTED_DTYPES}; convert the array first, e.g. numpy.save(path, a.astype(numpy.float32))`,
      { source, dtype: descr },
    );
  };
  if (!m) return fail();
  const order = m[1];
  const kind = m[2] as Kind;
  const size = Number(m[3]);
  const ok =
    (kind === 'f' && (size === 2 || size === 4 || size === 8)) ||
    ((kind === 'i' || kind === 'u') && (size === 1 || size === 2 || size === 4 || size === 8)) ||
    (kind === 'b' && size === 1);
  if (!ok) return fail();
  // '|' means "not applicable" (single byte); '=' means native, which for files written by
  // NumPy on every common platform is little-endian. Treat both as little-endian.
  const littleEndian = order !== '>';
  return { kind, size, littleEndian };
}

// ---------------------------------------------------------------------------------------------
// Header dict parser: a tiny tokenizer for the Python literal NumPy writes. Accepts single or
// double quoted strings, True/False, integers, tuples and lists, and trailing commas.

type PyValue = string | number | boolean | null | PyValue[] | { [k: string]: PyValue };

class HeaderParser {
  private pos = 0;
  constructor(
    private readonly text: string,
    private readonly source: string,
  ) {}

  private fail(what: string): never {
    throw new ModelFormatError(
      `${this.source}: the .npy header is malformed (${what} at character ${this.pos}): expected a Python dict like {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }, found ${JSON.stringify(this.text.slice(0, 120))}; re-save the file with numpy.save`,
      { source: this.source, header: this.text.slice(0, 200) },
    );
  }

  private skipSpace(): void {
    while (this.pos < this.text.length && /\s/.test(this.text[this.pos])) this.pos++;
  }

  parseTop(): PyValue {
    const v = this.value();
    this.skipSpace();
    if (this.pos !== this.text.length) this.fail('unexpected trailing text');
    return v;
  }

  private value(): PyValue {
    this.skipSpace();
    const c = this.text[this.pos];
    if (c === undefined) this.fail('unexpected end of header');
    if (c === '{') return this.dict();
    if (c === '(' || c === '[') return this.sequence(c === '(' ? ')' : ']');
    if (c === "'" || c === '"') return this.string();
    if (/[-+0-9]/.test(c)) return this.number();
    for (const [word, val] of [
      ['True', true],
      ['False', false],
      ['None', null],
    ] as const) {
      if (this.text.startsWith(word, this.pos)) {
        this.pos += word.length;
        return val;
      }
    }
    return this.fail(`unexpected character ${JSON.stringify(c)}`);
  }

  private dict(): { [k: string]: PyValue } {
    this.pos++; // {
    const out: { [k: string]: PyValue } = {};
    for (;;) {
      this.skipSpace();
      if (this.text[this.pos] === '}') {
        this.pos++;
        return out;
      }
      const key = this.value();
      if (typeof key !== 'string') this.fail('dict key is not a string');
      this.skipSpace();
      if (this.text[this.pos] !== ':') this.fail("expected ':'");
      this.pos++;
      out[key] = this.value();
      this.skipSpace();
      const c = this.text[this.pos];
      if (c === ',') this.pos++;
      else if (c !== '}') this.fail("expected ',' or '}'");
    }
  }

  private sequence(close: string): PyValue[] {
    this.pos++;
    const out: PyValue[] = [];
    for (;;) {
      this.skipSpace();
      if (this.text[this.pos] === close) {
        this.pos++;
        return out;
      }
      out.push(this.value());
      this.skipSpace();
      const c = this.text[this.pos];
      if (c === ',') this.pos++;
      else if (c !== close) this.fail(`expected ',' or '${close}'`);
    }
  }

  private string(): string {
    const quote = this.text[this.pos++];
    let out = '';
    while (this.pos < this.text.length) {
      const c = this.text[this.pos++];
      if (c === quote) return out;
      if (c === '\\') {
        const n = this.text[this.pos++];
        if (n === undefined) break;
        out += n;
      } else out += c;
    }
    return this.fail('unterminated string');
  }

  private number(): number {
    const m = /^[-+]?\d+L?/.exec(this.text.slice(this.pos));
    if (!m) this.fail('bad number');
    this.pos += m[0].length;
    return Number(m[0].replace('L', ''));
  }
}

// ---------------------------------------------------------------------------------------------

function bytesToAscii(bytes: Uint8Array, utf8: boolean): string {
  if (utf8) return new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return s;
}

/**
 * Decodes a `.npy` file (format versions 1, 2 and 3).
 *
 * @param bytes - the whole file.
 * @param options - see {@link ParseNpyOptions}.
 * @returns the dtype, shape and a fresh typed array of the values in native byte order.
 * @throws ModelFormatError when the bytes are not a `.npy` file, the header is malformed, the
 *   dtype is unsupported, the data is truncated, an int64 value does not fit in int32, or the
 *   array is column-major (unless allowed).
 */
export function parseNpy(bytes: Uint8Array, options: ParseNpyOptions = {}): NpyArray {
  const source = options.source ?? 'npy data';
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b)) {
    const head = Array.from(bytes.subarray(0, 6), (b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new ModelFormatError(
      `${source}: not a .npy file: expected the magic bytes 93 4e 55 4d 50 59 ("\\x93NUMPY"), found ${head || 'an empty input'} (${bytes.length} bytes); pass a file written by numpy.save`,
      { source, length: bytes.length },
    );
  }
  const major = bytes[6];
  const minor = bytes[7];
  let headerLen: number;
  let headerStart: number;
  if (major === 1) {
    headerLen = bytes[8] | (bytes[9] << 8);
    headerStart = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) {
      throw new ModelFormatError(
        `${source}: truncated .npy file: expected at least 12 bytes for a v${major} preamble, found ${bytes.length}; the file was cut short, write it again`,
        { source, length: bytes.length },
      );
    }
    headerLen = (bytes[8] | (bytes[9] << 8) | (bytes[10] << 16) | (bytes[11] << 24)) >>> 0;
    headerStart = 12;
  } else {
    throw new ModelFormatError(
      `${source}: .npy format version ${major}.${minor} is not supported: expected 1.x, 2.x or 3.x; re-save the file with numpy.save`,
      { source, major, minor },
    );
  }
  const dataStart = headerStart + headerLen;
  if (dataStart > bytes.length) {
    throw new ModelFormatError(
      `${source}: truncated .npy file: the header says it is ${headerLen} bytes long but only ${bytes.length - headerStart} bytes follow the preamble; the file was cut short, write it again`,
      { source, headerLen, length: bytes.length },
    );
  }
  const headerText = bytesToAscii(bytes.subarray(headerStart, dataStart), major === 3);
  const header = new HeaderParser(headerText.replace(/\x00+$/, ''), source).parseTop();
  if (header === null || typeof header !== 'object' || Array.isArray(header)) {
    throw new ModelFormatError(
      `${source}: the .npy header is not a dict: expected {'descr': ..., 'fortran_order': ..., 'shape': ...}, found ${JSON.stringify(headerText.slice(0, 120))}; re-save the file with numpy.save`,
      { source },
    );
  }
  const descr = header['descr'];
  const fortran = header['fortran_order'];
  const shapeVal = header['shape'];
  if (typeof descr !== 'string') {
    throw new ModelFormatError(
      `${source}: the .npy header's 'descr' is ${JSON.stringify(descr ?? null)}: expected a simple dtype string such as '<f4' (structured dtypes are not supported); save a plain numeric array`,
      { source, descr },
    );
  }
  if (typeof fortran !== 'boolean') {
    throw new ModelFormatError(
      `${source}: the .npy header's 'fortran_order' is ${JSON.stringify(fortran ?? null)}: expected True or False; re-save the file with numpy.save`,
      { source },
    );
  }
  if (
    !Array.isArray(shapeVal) ||
    shapeVal.some((d) => typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0)
  ) {
    throw new ModelFormatError(
      `${source}: the .npy header's 'shape' is ${JSON.stringify(shapeVal ?? null)}: expected a tuple of non-negative integers such as (100, 49, 40, 1); re-save the file with numpy.save`,
      { source },
    );
  }
  const shape = shapeVal as number[];
  if (fortran && !options.allowFortranOrder) {
    throw new ModelFormatError(
      `${source}: the array is stored in Fortran (column-major) order, expected C (row-major) order; save it with numpy.save(path, numpy.ascontiguousarray(a)) or pass allowFortranOrder to get the raw column-major data`,
      { source, shape },
    );
  }
  const info = parseDtype(descr, source);
  const count = shape.reduce((a, b) => a * b, 1);
  const byteLen = count * info.size;
  const available = bytes.length - dataStart;
  if (available < byteLen) {
    throw new ModelFormatError(
      `${source}: truncated .npy data: shape (${shape.join(', ')}) of ${descr} needs ${byteLen} bytes, found ${available}; the file was cut short, write it again`,
      { source, shape, dtype: descr, expected: byteLen, found: available },
    );
  }
  const raw = bytes.subarray(dataStart, dataStart + byteLen);
  return { dtype: descr, shape, data: decodeData(raw, info, count, descr, source), fortranOrder: fortran };
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

function decodeData(raw: Uint8Array, info: DtypeInfo, count: number, descr: string, source: string): NpyData {
  const { kind, size, littleEndian } = info;
  // A fresh, aligned copy of the bytes, byte-swapped to native order when needed. (Not
  // raw.slice(): for a node Buffer that is a view into shared memory.)
  const copy = new Uint8Array(raw);
  if (size > 1 && littleEndian !== LITTLE_ENDIAN_HOST) {
    for (let i = 0; i < copy.length; i += size) {
      for (let a = i, b = i + size - 1; a < b; a++, b--) {
        const t = copy[a];
        copy[a] = copy[b];
        copy[b] = t;
      }
    }
  }
  const buf = copy.buffer;
  if (kind === 'f') {
    if (size === 4) return new Float32Array(buf, 0, count);
    if (size === 8) return new Float64Array(buf, 0, count);
    const h = new Uint16Array(buf, 0, count);
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = halfToFloat(h[i]);
    return out;
  }
  if (kind === 'b') {
    for (let i = 0; i < count; i++) copy[i] = copy[i] ? 1 : 0;
    return copy;
  }
  if (size === 1) return kind === 'i' ? new Int8Array(buf, 0, count) : copy;
  if (size === 2) return kind === 'i' ? new Int16Array(buf, 0, count) : new Uint16Array(buf, 0, count);
  if (size === 4) return kind === 'i' ? new Int32Array(buf, 0, count) : new Uint32Array(buf, 0, count);
  // 64-bit integers: narrowed to int32, refusing values that do not fit.
  const words = new Uint32Array(buf, 0, count * 2);
  const lo = LITTLE_ENDIAN_HOST ? 0 : 1;
  const hi = 1 - lo;
  const out = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const l = words[2 * i + lo];
    const h = words[2 * i + hi];
    const fits =
      kind === 'i'
        ? (h === 0 && l <= 0x7fffffff) || (h === 0xffffffff && l >= 0x80000000)
        : h === 0 && l <= 0x7fffffff;
    if (!fits) {
      const value = kind === 'i' ? (BigInt(h | 0) << 32n) | BigInt(l) : (BigInt(h) << 32n) | BigInt(l);
      throw new ModelFormatError(
        `${source}: element ${i} of the ${descr} array is ${value}, which does not fit in int32 (expected -2147483648..2147483647); 64-bit integers are read as int32, so store labels or indices in range (e.g. a.astype(numpy.int32))`,
        { source, index: i, dtype: descr },
      );
    }
    out[i] = l | 0;
  }
  return out;
}

function dtypeOf(data: unknown): { descr: string; size: number } {
  if (data instanceof Float32Array) return { descr: '<f4', size: 4 };
  if (data instanceof Int32Array) return { descr: '<i4', size: 4 };
  if (data instanceof Uint8Array) return { descr: '|u1', size: 1 };
  if (data instanceof BigInt64Array) return { descr: '<i8', size: 8 };
  const found = data === null || typeof data !== 'object' ? typeof data : (data as object).constructor?.name;
  throw new UsageError(
    `writeNpy: expected a Float32Array, Int32Array, Uint8Array or BigInt64Array (int64), found ${found}; convert the values first (e.g. Float32Array.from(values), BigInt64Array.of(16000n))`,
    { found },
  );
}

/**
 * Encodes an array as a `.npy` file (version 1.0, or 2.0 when the header needs more than
 * 65535 bytes) in C order, little-endian, readable by `numpy.load`.
 *
 * @param data - Float32Array (`<f4`), Int32Array (`<i4`), Uint8Array (`|u1`) or BigInt64Array (`<i8`).
 * @param shape - the array shape; its product must equal `data.length` (`[]` for one scalar).
 * @returns the complete file bytes.
 * @throws UsageError for another array type or a shape that does not match the data.
 */
export function writeNpy(data: NpyWritable, shape: readonly number[]): Uint8Array {
  const { descr, size } = dtypeOf(data);
  if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
    throw new UsageError(
      `writeNpy: shape must be an array of non-negative integers, found ${JSON.stringify(shape)}`,
      { shape },
    );
  }
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length) {
    throw new UsageError(
      `writeNpy: shape [${shape.join(', ')}] holds ${count} elements but the data has ${data.length}; pass the shape of this array`,
      { shape: [...shape], length: data.length },
    );
  }
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  // Pad so that the data starts on a multiple of 64 bytes; the header ends with '\n'.
  let preamble = 10;
  let major = 1;
  if (Math.ceil((preamble + dict.length + 1) / 64) * 64 - preamble > 0xffff) {
    major = 2;
    preamble = 12;
  }
  const total = Math.ceil((preamble + dict.length + 1) / 64) * 64;
  const headerLen = total - preamble;
  const out = new Uint8Array(total + count * size);
  out.set(MAGIC, 0);
  out[6] = major;
  out[7] = 0;
  if (major === 1) {
    out[8] = headerLen & 0xff;
    out[9] = headerLen >> 8;
  } else {
    new DataView(out.buffer).setUint32(8, headerLen, true);
  }
  for (let i = 0; i < dict.length; i++) out[preamble + i] = dict.charCodeAt(i);
  for (let i = preamble + dict.length; i < total - 1; i++) out[i] = 0x20;
  out[total - 1] = 0x0a;
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  out.set(bytes, total);
  if (!LITTLE_ENDIAN_HOST && size > 1) {
    for (let i = total; i < out.length; i += size) {
      for (let a = i, b = i + size - 1; a < b; a++, b--) {
        const t = out[a];
        out[a] = out[b];
        out[b] = t;
      }
    }
  }
  return out;
}
