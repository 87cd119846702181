/**
 * GGUF (ggml's model file, versions 2 and 3) read without trusting a length: the header (magic,
 * version, counts, typed metadata, tensor infos) parsed from a {@link GgufSource}, a reader of
 * byte ranges, so a file of many gigabytes is never loaded whole; every count, string length,
 * array length and nesting, dimension, type id, offset and size checked against the file before
 * anything is allocated or read (ggml's `gguf.c` and gguf-py's `gguf_reader.py` read the same
 * layout). The values are kept as stored (strings as their UTF-8 bytes, numeric arrays as typed
 * arrays) so `write.ts` writes an unmodified file back byte for byte.
 *
 * Layout, little-endian: "GGUF", u32 version, u64 tensor_count, u64 metadata_kv_count; each
 * metadata entry a string key, a u32 value type and the value; each tensor info a string name,
 * u32 n_dims, n_dims u64 dimensions (innermost first), u32 ggml type, u64 offset into the data
 * section; padding to `general.alignment` (default 32); the data section. A string is a u64 byte
 * length and UTF-8 bytes; an array a u32 item type, a u64 count and the items.
 *
 * Pure code (no node, no tfjs): a device can read a header with it.
 */
import { ModelFormatError } from '../../core/errors.ts';
import { decodeUtf8StrictPure } from '../../core/utf8-decode.ts';
import { LITTLE_ENDIAN_HOST } from '../../core/endian.ts';
import { GGML_REFUSED_TYPES, ggmlTensorBytes, ggmlTypeById, type GgmlType } from './types.ts';

/** Where a GGUF file's bytes come from: its size and a reader of any range inside it. */
export interface GgufSource {
  /** Name for messages (a path). */
  readonly name: string;
  /** The file's length in bytes. */
  readonly size: number;
  /** `length` bytes from `offset` (the caller keeps inside `size`); may be a view, never written into. */
  read(offset: number, length: number): Uint8Array;
}

/** A {@link GgufSource} over bytes in memory. */
export function bytesSource(bytes: Uint8Array, name = 'GGUF data'): GgufSource {
  return { name, size: bytes.length, read: (offset, length) => bytes.subarray(offset, offset + length) };
}

/** "GGUF" read as a little-endian u32. */
export const GGUF_MAGIC = 0x46554747;
/** `general.alignment` when the file names none. */
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** `GGML_MAX_DIMS`: the most dimensions a tensor has. */
export const GGML_MAX_DIMS = 4;
/** The largest header (magic to the end of the tensor infos) read: real ones are a few MB (a 150k-token vocabulary and its merges). */
export const MAX_GGUF_HEADER_BYTES = 256 * 1024 * 1024;
/** The deepest array nesting (an array of arrays is 2). */
export const MAX_GGUF_ARRAY_DEPTH = 8;

/** The metadata value types, by their stored id. */
export const GGUF_VALUE_TYPES = ['UINT8', 'INT8', 'UINT16', 'INT16', 'UINT32', 'INT32', 'FLOAT32', 'BOOL', 'STRING', 'ARRAY', 'UINT64', 'INT64', 'FLOAT64'] as const;
/** A metadata value type. */
export type GgufValueType = (typeof GGUF_VALUE_TYPES)[number];

/** Bytes of one value of a fixed-size type. */
export const GGUF_VALUE_BYTES: Readonly<Partial<Record<GgufValueType, number>>> = { UINT8: 1, INT8: 1, UINT16: 2, INT16: 2, UINT32: 4, INT32: 4, FLOAT32: 4, BOOL: 1, UINT64: 8, INT64: 8, FLOAT64: 8 };

/** The items of a metadata array, by item type: typed arrays for numbers, UTF-8 bytes for strings, arrays for arrays. */
export type GgufArrayItems =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array | Float32Array | Float64Array | BigUint64Array | BigInt64Array
  | boolean[] | Uint8Array[] | GgufArray[];

/** A metadata array: its item type and its items (strings as their stored UTF-8 bytes). */
export interface GgufArray {
  readonly type: 'ARRAY';
  readonly itemType: GgufValueType;
  readonly items: GgufArrayItems;
}

/** A metadata value as stored. Strings are their UTF-8 bytes ({@link ggufText} decodes them). */
export type GgufValue =
  | { readonly type: 'UINT8' | 'INT8' | 'UINT16' | 'INT16' | 'UINT32' | 'INT32'; readonly value: number }
  /** `raw`: the stored bytes, so a NaN is written back with its own bits. */
  | { readonly type: 'FLOAT32' | 'FLOAT64'; readonly value: number; readonly raw?: Uint8Array }
  | { readonly type: 'UINT64' | 'INT64'; readonly value: bigint }
  | { readonly type: 'BOOL'; readonly value: boolean }
  | { readonly type: 'STRING'; readonly value: Uint8Array }
  | GgufArray;

/** One metadata entry, in file order. */
export interface GgufMetadataEntry {
  readonly key: string;
  readonly value: GgufValue;
}

/** One tensor info. */
export interface GgufTensorInfo {
  readonly name: string;
  /** ggml's dimensions, innermost first (`ne[0]` is the row length). */
  readonly ne: readonly number[];
  readonly type: GgmlType;
  /** Offset of its data from the start of the data section. */
  readonly offset: number;
  /** Weights (the product of `ne`). */
  readonly elements: number;
  /** Bytes of its data (whole blocks). */
  readonly bytes: number;
}

/** A parsed GGUF header and where its parts lie in the file. */
export interface GgufHeader {
  readonly version: 2 | 3;
  readonly metadata: readonly GgufMetadataEntry[];
  readonly tensors: readonly GgufTensorInfo[];
  /** `general.alignment`, or 32. */
  readonly alignment: number;
  /** Bytes from the magic to the end of the last tensor info. */
  readonly headerBytes: number;
  /** Offset of the data section: `headerBytes` rounded up to `alignment`. */
  readonly dataStart: number;
  /** The file's length. */
  readonly fileSize: number;
}

/** `n` rounded up to a multiple of `align` (a power of two). */
export function padTo(n: number, align: number): number {
  return Math.ceil(n / align) * align;
}

/** The UTF-8 text of a stored string (invalid sequences shown as U+FFFD). */
export function ggufText(bytes: Uint8Array): string {
  return new TextDecoder('utf-8', { ignoreBOM: true }).decode(bytes);
}

/** The value of `key`, or undefined. */
export function metadataValue(header: Pick<GgufHeader, 'metadata'>, key: string): GgufValue | undefined {
  return header.metadata.find((e) => e.key === key)?.value;
}

/**
 * A ModelFormatError about `source`: `what` says what was expected and found; the advice is the
 * same for every malformed header (the file is damaged or not what its name says).
 */
export function ggufError(source: string, what: string, details: Record<string, unknown> = {}): ModelFormatError {
  return new ModelFormatError(`${source}: ${what}; the file is truncated, corrupt or not a GGUF model: nothing was read past this point; download or convert it again (llama.cpp's convert_hf_to_gguf.py writes GGUF v3)`, { source, ...details });
}

/**
 * The header bytes, read from the source as the parser asks for them (never past the file's
 * end or {@link MAX_GGUF_HEADER_BYTES}), grown by doubling into one buffer, so string values can
 * stay views into it.
 */
class HeaderCursor {
  private buf = new Uint8Array(0);
  private view = new DataView(this.buf.buffer);
  /** Next byte to parse. */
  pos = 0;
  constructor(private readonly source: GgufSource) {}

  /** Bytes left in the file after `pos`. */
  left(): number {
    return this.source.size - this.pos;
  }

  /** Make `[pos, pos + n)` readable, or refuse (truncated, or a header past the limit). */
  need(n: number, what: string): void {
    const end = this.pos + n;
    if (end > this.source.size) throw ggufError(this.source.name, `${what}: expected ${n} bytes at offset ${this.pos}, found the file ends at ${this.source.size}`, { offset: this.pos, expected: n, found: this.source.size - this.pos });
    if (end > MAX_GGUF_HEADER_BYTES) throw ggufError(this.source.name, `${what}: the header runs past ${MAX_GGUF_HEADER_BYTES} bytes (offset ${end}), more than any model's metadata needs`, { offset: this.pos, limit: MAX_GGUF_HEADER_BYTES });
    if (end <= this.buf.length) return;
    const size = Math.min(Math.max(end, 2 * this.buf.length, 65536), this.source.size, MAX_GGUF_HEADER_BYTES);
    const grown = new Uint8Array(size);
    grown.set(this.buf);
    grown.set(this.source.read(this.buf.length, size - this.buf.length), this.buf.length);
    this.buf = grown;
    this.view = new DataView(grown.buffer);
  }

  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  /** A u64 that must be a safe integer (larger ones are refused by the caller's bound anyway). */
  u64(what: string): bigint {
    this.need(8, what);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    return v;
  }

  bytes(n: number, what: string): Uint8Array {
    this.need(n, what);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  dataView(): DataView {
    return this.view;
  }
}

/** A count or length read as u64, refused when more than `max` (the bytes left could not hold it). */
function boundedCount(c: HeaderCursor, source: string, what: string, max: number): number {
  const at = c.pos;
  const n = c.u64(what);
  const limit = Math.max(0, max);
  if (n > BigInt(limit)) throw ggufError(source, `${what} at offset ${at}: expected at most ${limit} (what the ${c.left()} bytes left in the file can hold), found ${n}`, { offset: at, found: n.toString(), limit });
  return Number(n);
}

function readString(c: HeaderCursor, source: string, what: string): Uint8Array {
  const n = boundedCount(c, source, `${what}: length`, c.left() - 8);
  return c.bytes(n, what);
}

/** A key or tensor name: UTF-8 (a byte-order mark kept), refused otherwise. */
function readName(c: HeaderCursor, source: string, what: string): string {
  const at = c.pos;
  const bytes = readString(c, source, what);
  try {
    return decodeUtf8StrictPure(bytes, true);
  } catch {
    throw ggufError(source, `${what} at offset ${at}: expected UTF-8 text, found bytes that are not`, { offset: at });
  }
}

function valueType(c: HeaderCursor, source: string, what: string): GgufValueType {
  const at = c.pos;
  const id = c.u32(what);
  const type = GGUF_VALUE_TYPES[id];
  if (type === undefined) throw ggufError(source, `${what} at offset ${at}: expected a value type 0-12, found ${id}`, { offset: at, found: id });
  return type;
}

/** Least bytes an item of `type` takes (what bounds an array's count). */
function leastItemBytes(type: GgufValueType): number {
  return GGUF_VALUE_BYTES[type] ?? (type === 'STRING' ? 8 : 12);
}

type TypedArrayOf = new (n: number) => Exclude<GgufArrayItems, unknown[]>;
const TYPED: Partial<Record<GgufValueType, TypedArrayOf>> = {
  UINT8: Uint8Array, INT8: Int8Array, UINT16: Uint16Array, INT16: Int16Array, UINT32: Uint32Array, INT32: Int32Array,
  FLOAT32: Float32Array, FLOAT64: Float64Array, UINT64: BigUint64Array, INT64: BigInt64Array,
};
const GETTERS: Partial<Record<GgufValueType, (dv: DataView, at: number) => number | bigint>> = {
  UINT8: (dv, at) => dv.getUint8(at), INT8: (dv, at) => dv.getInt8(at), UINT16: (dv, at) => dv.getUint16(at, true), INT16: (dv, at) => dv.getInt16(at, true),
  UINT32: (dv, at) => dv.getUint32(at, true), INT32: (dv, at) => dv.getInt32(at, true), FLOAT32: (dv, at) => dv.getFloat32(at, true), FLOAT64: (dv, at) => dv.getFloat64(at, true),
  UINT64: (dv, at) => dv.getBigUint64(at, true), INT64: (dv, at) => dv.getBigInt64(at, true),
};

function readBool(c: HeaderCursor, source: string, what: string): boolean {
  const at = c.pos;
  const b = c.bytes(1, what)[0];
  if (b > 1) throw ggufError(source, `${what} at offset ${at}: expected a BOOL (0 or 1), found ${b}`, { offset: at, found: b });
  return b === 1;
}

function readValue(c: HeaderCursor, source: string, type: GgufValueType, what: string, depth: number): GgufValue {
  if (type === 'STRING') return { type, value: readString(c, source, what) };
  if (type === 'BOOL') return { type, value: readBool(c, source, what) };
  if (type === 'ARRAY') return readArray(c, source, what, depth + 1);
  const size = GGUF_VALUE_BYTES[type] as number;
  c.need(size, what);
  const at = c.pos;
  const v = (GETTERS[type] as (dv: DataView, at: number) => number | bigint)(c.dataView(), at);
  const raw = c.bytes(size, what);
  if (type === 'UINT64' || type === 'INT64') return { type, value: v as bigint };
  if (type === 'FLOAT32' || type === 'FLOAT64') return Number.isNaN(v) ? { type, value: v as number, raw } : { type, value: v as number };
  return { type, value: v as number };
}

function readArray(c: HeaderCursor, source: string, what: string, depth: number): GgufArray {
  if (depth > MAX_GGUF_ARRAY_DEPTH) throw ggufError(source, `${what} at offset ${c.pos}: arrays nested ${depth} deep, expected at most ${MAX_GGUF_ARRAY_DEPTH}`, { offset: c.pos, limit: MAX_GGUF_ARRAY_DEPTH });
  const itemType = valueType(c, source, `${what}: item type`);
  const least = leastItemBytes(itemType);
  const n = boundedCount(c, source, `${what}: item count`, Math.floor((c.left() - 8) / least));
  const fixed = GGUF_VALUE_BYTES[itemType];
  if (itemType === 'BOOL') {
    const items: boolean[] = [];
    for (let i = 0; i < n; i++) items.push(readBool(c, source, `${what}[${i}]`));
    return { type: 'ARRAY', itemType, items };
  }
  if (fixed !== undefined) {
    const bytes = c.bytes(n * fixed, what);
    const Ctor = TYPED[itemType] as TypedArrayOf;
    const items = new Ctor(n);
    if (LITTLE_ENDIAN_HOST) new Uint8Array(items.buffer).set(bytes);
    else {
      const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
      const get = GETTERS[itemType] as (dv: DataView, at: number) => number | bigint;
      for (let i = 0; i < n; i++) (items as unknown as (number | bigint)[])[i] = get(dv, i * fixed);
    }
    return { type: 'ARRAY', itemType, items };
  }
  if (itemType === 'STRING') {
    const items: Uint8Array[] = [];
    for (let i = 0; i < n; i++) items.push(readString(c, source, `${what}[${i}]`));
    return { type: 'ARRAY', itemType, items };
  }
  const items: GgufArray[] = [];
  for (let i = 0; i < n; i++) items.push(readArray(c, source, `${what}[${i}]`, depth + 1));
  return { type: 'ARRAY', itemType, items };
}

/** The version field, refused unless 2 or 3 with a message for v1 and for big-endian files. */
function readVersion(c: HeaderCursor, source: string): 2 | 3 {
  const version = c.u32('version');
  if (version === 2 || version === 3) return version;
  if (version === 1) throw ggufError(source, 'expected GGUF version 2 or 3, found version 1 (2023, 32-bit counts), which this reader refuses', { expected: '2 or 3', found: 1 });
  const swapped = ((version & 0xff) << 24 | (version & 0xff00) << 8 | (version >>> 8) & 0xff00 | version >>> 24) >>> 0;
  if (swapped === 2 || swapped === 3) throw ggufError(source, `expected a little-endian GGUF file, found a big-endian one (version ${swapped} read backwards), which this reader refuses`, { expected: 'little-endian', found: 'big-endian' });
  throw ggufError(source, `expected GGUF version 2 or 3, found ${version}`, { expected: '2 or 3', found: version });
}

/**
 * Read and check a GGUF header from `source`: magic, version 2 or 3, counts bounded by the bytes
 * left, metadata of every value type (arrays nested at most {@link MAX_GGUF_ARRAY_DEPTH} deep, no
 * key twice), `general.alignment` a UINT32 power of two, tensor infos with at most
 * {@link GGML_MAX_DIMS} dimensions, a known ggml type whose blocks divide the row, no name twice,
 * every tensor's data aligned, inside the data section and overlapping no other's. Reads only
 * the header's bytes.
 * @throws ModelFormatError saying what was expected and what was found, and where
 */
export function readGgufHeader(source: GgufSource): GgufHeader {
  const s = source.name;
  const c = new HeaderCursor(source);
  const magic = c.u32('magic');
  if (magic !== GGUF_MAGIC) {
    const found = [0, 8, 16, 24].map((b) => ((magic >>> b) & 0xff).toString(16).padStart(2, '0')).join(' ');
    throw ggufError(s, `expected the magic "GGUF" (47 47 55 46) at offset 0, found ${found}`, { expected: 'GGUF', found });
  }
  const version = readVersion(c, s);
  const tensorCount = boundedCount(c, s, 'tensor count', Math.floor((c.left() - 16) / 24));
  const kvCount = boundedCount(c, s, 'metadata count', Math.floor((c.left() - 8) / 12));
  const metadata: GgufMetadataEntry[] = [];
  const keys = new Set<string>();
  for (let i = 0; i < kvCount; i++) {
    const at = c.pos;
    const key = readName(c, s, `metadata entry ${i}: key`);
    if (keys.has(key)) throw ggufError(s, `metadata entry ${i} at offset ${at}: expected each key once, found ${JSON.stringify(key)} again`, { offset: at, key });
    keys.add(key);
    const type = valueType(c, s, `metadata ${JSON.stringify(key)}: value type`);
    metadata.push({ key, value: readValue(c, s, type, `metadata ${JSON.stringify(key)}`, 0) });
  }
  const alignment = alignmentOf(metadata, s);
  const tensors: GgufTensorInfo[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) tensors.push(readTensorInfo(c, s, i, names));
  const headerBytes = c.pos;
  const dataStart = padTo(headerBytes, alignment);
  if (dataStart > source.size) throw ggufError(s, `expected the data section at offset ${dataStart} (the header padded to ${alignment}), found the file ends at ${source.size}`, { expected: dataStart, found: source.size });
  checkTensorData(tensors, source.size - dataStart, alignment, s);
  return { version, metadata, tensors, alignment, headerBytes, dataStart, fileSize: source.size };
}

function alignmentOf(metadata: readonly GgufMetadataEntry[], s: string): number {
  const v = metadataValue({ metadata }, 'general.alignment');
  if (v === undefined) return GGUF_DEFAULT_ALIGNMENT;
  if (v.type !== 'UINT32') throw ggufError(s, `expected general.alignment to be a UINT32, found a ${v.type}`, { expected: 'UINT32', found: v.type });
  if (v.value === 0 || (v.value & (v.value - 1)) !== 0) throw ggufError(s, `expected general.alignment to be a power of two, found ${v.value}`, { found: v.value });
  return v.value;
}

function readTensorInfo(c: HeaderCursor, s: string, i: number, names: Set<string>): GgufTensorInfo {
  const at = c.pos;
  const name = readName(c, s, `tensor info ${i}: name`);
  const where = `tensor ${JSON.stringify(name)} (info at offset ${at})`;
  if (names.has(name)) throw ggufError(s, `${where}: expected each tensor name once, found it again`, { offset: at, tensor: name });
  names.add(name);
  const nDims = c.u32(`${where}: n_dims`);
  if (nDims > GGML_MAX_DIMS) throw ggufError(s, `${where}: expected at most ${GGML_MAX_DIMS} dimensions (GGML_MAX_DIMS), found ${nDims}`, { offset: at, tensor: name, found: nDims, limit: GGML_MAX_DIMS });
  const ne: number[] = [];
  let elements = 1;
  for (let d = 0; d < nDims; d++) {
    const dim = c.u64(`${where}: dimension ${d}`);
    if (dim > BigInt(Number.MAX_SAFE_INTEGER)) throw ggufError(s, `${where}: expected dimension ${d} to be at most 2^53, found ${dim}`, { offset: at, tensor: name, found: dim.toString() });
    ne.push(Number(dim));
    elements *= Number(dim);
    if (elements > Number.MAX_SAFE_INTEGER) throw ggufError(s, `${where}: expected at most 2^53 weights, found dimensions [${ne.join(', ')}...] that multiply past it`, { offset: at, tensor: name });
  }
  const typeAt = c.pos;
  const typeId = c.u32(`${where}: type`);
  const type = ggmlTypeById(typeId);
  if (!type) {
    const refused = GGML_REFUSED_TYPES.get(typeId);
    throw ggufError(s, `${where}: expected a ggml tensor type this reader knows, found type id ${typeId}${refused ? ` (${refused})` : ' (unknown: a newer llama.cpp may have added it)'}`, { offset: typeAt, tensor: name, found: typeId });
  }
  const bytes = ggmlTensorBytes(type, nDims === 0 ? 1 : ne[0], elements);
  if (typeof bytes === 'string') throw ggufError(s, `${where}: expected whole ${type.name} blocks, found dimensions [${ne.join(', ')}]: ${bytes}`, { offset: at, tensor: name });
  const offset = c.u64(`${where}: offset`);
  if (offset > BigInt(Number.MAX_SAFE_INTEGER)) throw ggufError(s, `${where}: expected a data offset within the file, found ${offset}`, { offset: at, tensor: name, found: offset.toString() });
  return { name, ne, type, offset: Number(offset), elements, bytes };
}

/** Every tensor's data aligned, inside the data section of `dataSize` bytes, and no two overlapping. */
function checkTensorData(tensors: readonly GgufTensorInfo[], dataSize: number, alignment: number, s: string): void {
  for (const t of tensors) {
    const where = `tensor ${JSON.stringify(t.name)}`;
    if (t.offset % alignment !== 0) throw ggufError(s, `${where}: expected its data offset to be a multiple of the alignment ${alignment}, found ${t.offset}`, { tensor: t.name, found: t.offset, alignment });
    if (t.offset + t.bytes > dataSize) throw ggufError(s, `${where}: expected its ${t.bytes} bytes of ${t.type.name} data at data offset ${t.offset} inside the data section's ${dataSize} bytes, found they end past it`, { tensor: t.name, offset: t.offset, bytes: t.bytes, dataSize });
  }
  const order = [...tensors].filter((t) => t.bytes > 0).sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < order.length; i++) {
    const prev = order[i - 1];
    if (order[i].offset < prev.offset + prev.bytes) {
      throw ggufError(s, `tensor ${JSON.stringify(order[i].name)}: its data at data offset ${order[i].offset} overlaps tensor ${JSON.stringify(prev.name)}'s (${prev.offset} to ${prev.offset + prev.bytes}); expected each tensor's bytes to be its own`, { tensor: order[i].name, other: prev.name });
    }
  }
}
