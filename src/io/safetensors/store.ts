/**
 * safetensors (https://huggingface.co/docs/safetensors) in plain TypeScript: no node imports, no
 * tfjs, so the same parser runs on a device next to the applier. The file I/O (atomic
 * write-back) is in `safetensors-files.ts`.
 *
 * Layout: u64 little-endian header length N, N bytes of UTF-8 JSON
 * `{"__metadata__": {str: str}?, "<name>": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...}`,
 * then the data section; offsets are relative to its start, and the tensors tile it exactly.
 *
 * Decisions, as a {@link WeightStore}:
 * - `F32` tensors are exposed as they are; when the data is 4-byte aligned (writers pad the
 *   header to 8 bytes) and the host is little-endian, {@link SafetensorsWeightStore.values} is a
 *   view into the file's bytes, so patching in place needs no second copy of the model.
 * - `F16` and `BF16` tensors are exposed dequantized to float32 (exact: every half and bfloat16
 *   value is a float32). On write-back an unchanged one keeps its bytes and dtype; a patched one
 *   is written in its own dtype when every patched value is exactly representable there, and
 *   as `F32` otherwise, because rounding would change the weights the applier just verified.
 * - Every other dtype (`F64`, integers, `BOOL`, 8-bit floats, ...) is not listed and is written
 *   back byte for byte.
 *
 * @module neural-diff/safetensors
 */
import { ModelFormatError, ModelMismatchError, UsageError } from '../../core/errors.ts';
import type { TensorEntry, WeightStore } from '../../core/weight-store.ts';
import { encodeUtf8 } from '../../core/utf8.ts';
import { decodeUtf8Strict } from '../../core/utf8-decode.ts';
import type { StorageGrid } from '../../core/grid.ts';
import { LITTLE_ENDIAN_HOST } from '../../core/endian.ts';
import { concatBytes } from '../../core/bytes.ts';

/** Bytes per element of the dtypes the format defines (sub-byte dtypes are passed through unchecked). */
const DTYPE_BYTES: Readonly<Record<string, number>> = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, F8_E8M0: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8,
};

/** Float dtypes exposed as float32 tensors. */
export type SafetensorsFloatDtype = 'F32' | 'F16' | 'BF16';
const FLOAT_DTYPES: readonly string[] = ['F32', 'F16', 'BF16'];

/** Largest header accepted (the reference implementation's limit). */
export const MAX_HEADER_BYTES = 100_000_000;

/** One tensor of a safetensors file, as its header describes it. */
export interface SafetensorsEntry {
  readonly name: string;
  /** The dtype string of the header, e.g. `F32`, `BF16`, `I64`. */
  readonly dtype: string;
  readonly shape: readonly number[];
  /** Byte range in the data section: `[begin, end)`. */
  readonly dataOffsets: readonly [number, number];
}

/** A parsed header. */
export interface SafetensorsHeader {
  /** `__metadata__` (string to string), or undefined. */
  readonly metadata: Readonly<Record<string, string>> | undefined;
  /** Entries in data order (ascending offsets). */
  readonly entries: readonly SafetensorsEntry[];
  /** Byte offset of the data section in the file: 8 + header length. */
  readonly dataStart: number;
}

function bad(source: string, what: string, details: Record<string, unknown> = {}): never {
  throw new ModelFormatError(`${source}: ${what}; the file is truncated, corrupt or not a safetensors file: copy it again from its source`, { source, ...details });
}

function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Parse and validate the header of a safetensors file: header length within the bytes and
 * {@link MAX_HEADER_BYTES}, JSON object, every entry with a dtype, a shape of non-negative
 * integers and offsets whose length matches, entries tiling the data section without gap or
 * overlap up to the end of `bytes`.
 *
 * @param bytes the whole file.
 * @param source name for error messages (a path, say).
 * @throws ModelFormatError
 */
export function parseSafetensorsHeader(bytes: Uint8Array, source = 'safetensors data'): SafetensorsHeader {
  if (bytes.length < 8) bad(source, `expected at least 8 bytes (the header length), found ${bytes.length}`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lo = dv.getUint32(0, true);
  const hi = dv.getUint32(4, true);
  const headerLength = hi * 2 ** 32 + lo;
  if (headerLength > MAX_HEADER_BYTES || headerLength > bytes.length - 8) {
    bad(source, `the header length field says ${headerLength} bytes, but only ${bytes.length - 8} bytes follow (limit ${MAX_HEADER_BYTES})`, { headerLength });
  }
  let json: unknown;
  try {
    json = JSON.parse(decodeUtf8Strict(bytes.subarray(8, 8 + headerLength)));
  } catch (e) {
    bad(source, `the ${headerLength}-byte header is not UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) bad(source, 'expected the header to be a JSON object');
  const dataStart = 8 + headerLength;
  const dataLength = bytes.length - dataStart;
  let metadata: Record<string, string> | undefined;
  const entries: SafetensorsEntry[] = [];
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw) || !Object.values(raw).every((v) => typeof v === 'string')) {
        bad(source, 'expected "__metadata__" to map strings to strings');
      }
      metadata = { ...(raw as Record<string, string>) };
      continue;
    }
    const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
    const where = `tensor ${JSON.stringify(name)}`;
    if (typeof e !== 'object' || e === null) bad(source, `${where}: expected {dtype, shape, data_offsets}`);
    if (typeof e.dtype !== 'string' || !/^[A-Z0-9_]{1,16}$/.test(e.dtype)) bad(source, `${where}: expected a dtype such as "F32", found ${JSON.stringify(e.dtype)}`);
    if (!Array.isArray(e.shape) || e.shape.length > 64 || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      bad(source, `${where}: expected the shape to be a list of non-negative integers, found ${JSON.stringify(e.shape)}`);
    }
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isSafeInteger(d) && d >= 0) || off[0] > off[1] || off[1] > dataLength) {
      bad(source, `${where}: expected data_offsets [begin, end] within the ${dataLength}-byte data section, found ${JSON.stringify(off)}`);
    }
    const shape = e.shape as number[];
    const size = DTYPE_BYTES[e.dtype];
    if (size !== undefined && elementCount(shape) * size !== off[1] - off[0]) {
      bad(source, `${where}: a ${e.dtype} tensor of shape [${shape.join(', ')}] needs ${elementCount(shape) * size} bytes, its data_offsets span ${off[1] - off[0]}`);
    }
    entries.push({ name, dtype: e.dtype, shape, dataOffsets: [off[0], off[1]] });
  }
  entries.sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  let at = 0;
  for (const e of entries) {
    if (e.dataOffsets[0] !== at) {
      bad(source, `tensor ${JSON.stringify(e.name)} starts at data byte ${e.dataOffsets[0]}, expected ${at}: the tensors must tile the data section without gaps or overlaps`);
    }
    at = e.dataOffsets[1];
  }
  if (at !== dataLength) bad(source, `the tensors cover ${at} bytes of data, but ${dataLength} bytes follow the header`);
  return { metadata, entries, dataStart };
}

/** bfloat16 bits (little-endian bytes) to float32, exactly. */
function decodeBf16(bytes: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < n; i++) u[i] = ((bytes[2 * i] | (bytes[2 * i + 1] << 8)) << 16) >>> 0;
  return out;
}

/** IEEE half bits (little-endian bytes) to float32, exactly (NaN payloads and subnormals included). */
function decodeF16(bytes: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < n; i++) {
    const h = bytes[2 * i] | (bytes[2 * i + 1] << 8);
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) {
      out[i] = mant * 2 ** -24;
      u[i] |= sign;
    } else if (exp === 31) {
      u[i] = (sign | 0x7f800000 | (mant << 13)) >>> 0;
    } else {
      u[i] = (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
    }
  }
  return out;
}

/**
 * Encode float32 values as F16 or BF16 bytes if that is lossless (every value decodes back to the
 * same float32 bits), else return null.
 */
function encodeHalfExactly(values: Float32Array, dtype: 'F16' | 'BF16'): Uint8Array | null {
  const n = values.length;
  const out = new Uint8Array(2 * n);
  const bits = new Uint32Array(values.buffer, values.byteOffset, n);
  for (let i = 0; i < n; i++) {
    const x = bits[i];
    let h: number;
    if (dtype === 'BF16') {
      if ((x & 0xffff) !== 0) return null;
      h = x >>> 16;
    } else {
      const sign = (x >>> 16) & 0x8000;
      const exp = (x >>> 23) & 0xff;
      const mant = x & 0x7fffff;
      if (exp === 0 && mant === 0) h = sign;
      else if (exp === 0xff) {
        if (mant & 0x1fff) return null;
        h = sign | 0x7c00 | (mant >>> 13);
      } else {
        const e = exp - 112;
        if (e >= 31) return null;
        if (e >= 1) {
          if (mant & 0x1fff) return null;
          h = sign | (e << 10) | (mant >>> 13);
        } else {
          // half subnormal: value = m * 2^-24 with m < 1024
          const m = Math.abs(values[i]) * 2 ** 24;
          if (!Number.isInteger(m) || m >= 1024) return null;
          h = sign | m;
        }
      }
    }
    out[2 * i] = h & 0xff;
    out[2 * i + 1] = h >>> 8;
  }
  return out;
}

/** Little-endian float32 bytes of `values` (a fresh array). */
function f32Bytes(values: Float32Array): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  if (LITTLE_ENDIAN_HOST) {
    out.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  } else {
    const dv = new DataView(out.buffer);
    for (let i = 0; i < values.length; i++) dv.setFloat32(4 * i, values[i], true);
  }
  return out;
}

/** A safetensors float tensor, as listed by {@link SafetensorsWeightStore.list}. */
export interface SafetensorsTensorEntry extends TensorEntry {
  /** How it is stored in the bytes the store was opened on. */
  readonly dtype: SafetensorsFloatDtype;
}

/** A tensor for {@link serializeSafetensors}. */
export interface SafetensorsTensorInput {
  shape: readonly number[];
  /** Float32Array for F32 (or F16/BF16 with `dtype`, encoded exactly or refused), or raw bytes with a `dtype`. */
  data: Float32Array | Uint8Array;
  /** Default `F32` for a Float32Array; required for raw bytes. */
  dtype?: string;
}

/**
 * Build a safetensors file from named tensors, in the given order; the header is padded with
 * spaces to a multiple of 8 bytes so every tensor's data is aligned, as the reference writer
 * does. Returns the file as chunks (header, then each tensor's bytes) so large models need no
 * concatenated copy; {@link concatChunks} joins them.
 *
 * @throws UsageError a shape that does not match the data, or a Float32Array that the requested
 *   F16/BF16 dtype cannot hold exactly.
 */
export function serializeSafetensors(
  tensors: ReadonlyMap<string, SafetensorsTensorInput> | Readonly<Record<string, SafetensorsTensorInput>>,
  metadata?: Readonly<Record<string, string>>,
): Uint8Array[] {
  const map = tensors instanceof Map ? tensors : new Map(Object.entries(tensors as Record<string, SafetensorsTensorInput>));
  // No prototype: a tensor named "__proto__" (a name a file may hold) is then a key like any other.
  const header: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  if (metadata) header.__metadata__ = { ...metadata };
  const parts: Uint8Array[] = [];
  let at = 0;
  for (const [name, t] of map) {
    if (name === '__metadata__') throw new UsageError('serializeSafetensors: "__metadata__" is reserved and cannot name a tensor');
    const dtype = t.dtype ?? (t.data instanceof Float32Array ? 'F32' : undefined);
    if (!dtype) throw new UsageError(`serializeSafetensors: tensor ${name} is raw bytes: pass its dtype (e.g. "I64")`, { name });
    let bytes: Uint8Array;
    if (t.data instanceof Float32Array) {
      if (t.data.length !== elementCount(t.shape)) {
        throw new UsageError(`serializeSafetensors: tensor ${name} has shape [${t.shape.join(', ')}] (${elementCount(t.shape)} values) but ${t.data.length} values`, { name });
      }
      if (dtype === 'F32') bytes = f32Bytes(t.data);
      else if (dtype === 'F16' || dtype === 'BF16') {
        const enc = encodeHalfExactly(t.data, dtype);
        if (!enc) throw new UsageError(`serializeSafetensors: tensor ${name} holds values that ${dtype} cannot represent exactly: round them first or write F32`, { name, dtype });
        bytes = enc;
      } else throw new UsageError(`serializeSafetensors: tensor ${name}: a Float32Array can be written as F32, F16 or BF16, not ${dtype}`, { name, dtype });
    } else {
      bytes = t.data;
      const size = DTYPE_BYTES[dtype];
      if (size !== undefined && bytes.length !== elementCount(t.shape) * size) {
        throw new UsageError(`serializeSafetensors: tensor ${name}: ${dtype} of shape [${t.shape.join(', ')}] needs ${elementCount(t.shape) * size} bytes, got ${bytes.length}`, { name });
      }
    }
    header[name] = { dtype, shape: [...t.shape], data_offsets: [at, at + bytes.length] };
    at += bytes.length;
    parts.push(bytes);
  }
  const json = encodeUtf8(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  const head = new Uint8Array(8 + padded).fill(0x20, 8);
  new DataView(head.buffer).setUint32(0, padded, true);
  head.set(json, 8);
  return [head, ...parts];
}

/** Join chunks into one array. */
export const concatChunks = concatBytes;

interface Slot {
  entry: SafetensorsEntry;
  /** Handed-out values (a view into the file bytes for aligned F32, else a decoded copy). */
  values?: Float32Array;
  /** True when `values` is a view into the file bytes. */
  inPlace?: boolean;
}

/**
 * A {@link WeightStore} over the bytes of a safetensors file (see the module doc for the dtype
 * decisions). Pure: hand it the bytes, patch, then get the new file's bytes with
 * {@link serialize}; `safetensors-files.ts` adds reading and atomic writing of files.
 */
export class SafetensorsWeightStore implements WeightStore {
  /** The parsed header of the bytes the store holds. */
  readonly header: SafetensorsHeader;
  private readonly bytes: Uint8Array;
  private readonly slots = new Map<string, Slot>();
  /** Name used in error messages. */
  readonly source: string;

  /**
   * @param bytes the whole file; aligned F32 tensors are patched in it, in place.
   * @param source name for error messages.
   * @throws ModelFormatError when the header is malformed (see {@link parseSafetensorsHeader}).
   */
  constructor(bytes: Uint8Array, source = 'safetensors data') {
    this.bytes = bytes;
    this.source = source;
    this.header = parseSafetensorsHeader(bytes, source);
    for (const e of this.header.entries) this.slots.set(e.name, { entry: e });
  }

  /** The F32, F16 and BF16 tensors, in data order. */
  list(): SafetensorsTensorEntry[] {
    const out: SafetensorsTensorEntry[] = [];
    for (const { entry } of this.slots.values()) {
      if (FLOAT_DTYPES.includes(entry.dtype)) out.push({ name: entry.name, shape: entry.shape, dtype: entry.dtype as SafetensorsFloatDtype });
    }
    return out;
  }

  /** Every entry of the header (float or not), in data order. */
  entries(): readonly SafetensorsEntry[] {
    return this.header.entries;
  }

  /** The stored bytes of any entry, as a view into the file bytes (read-only by contract). */
  storedBytes(name: string): Uint8Array {
    const s = this.slots.get(name);
    if (!s) throw new ModelMismatchError(`no tensor named ${JSON.stringify(name)} in ${this.source}`, { name });
    const start = this.header.dataStart + s.entry.dataOffsets[0];
    return this.bytes.subarray(start, this.header.dataStart + s.entry.dataOffsets[1]);
  }

  /**
   * The float32 values of a float tensor: a view into the file bytes (aligned F32 on a
   * little-endian host) or a decoded copy, the same array on every call.
   * @throws ModelMismatchError for an unknown name or a tensor that is not F32/F16/BF16.
   */
  values(name: string): Float32Array {
    const s = this.slots.get(name);
    if (!s || !FLOAT_DTYPES.includes(s.entry.dtype)) {
      const floats = this.list();
      throw new ModelMismatchError(
        s
          ? `tensor ${JSON.stringify(name)} in ${this.source} is ${s.entry.dtype}: expected F32, F16 or BF16; other dtypes are passed through and never patched. The payload was made for another model: ask the server for a full download`
          : `no tensor named ${JSON.stringify(name)} in ${this.source}: expected one of its ${floats.length} float tensors (e.g. ${floats.slice(0, 3).map((e) => JSON.stringify(e.name)).join(', ')}). The payload was made for another model: ask the server for a full download`,
        { name, source: this.source },
      );
    }
    if (s.values) return s.values;
    const bytes = this.storedBytes(name);
    const n = elementCount(s.entry.shape);
    if (s.entry.dtype === 'F32') {
      const at = bytes.byteOffset;
      if (LITTLE_ENDIAN_HOST && at % 4 === 0) {
        s.values = new Float32Array(bytes.buffer, at, n);
        s.inPlace = true;
      } else {
        const copy = new Uint8Array(n * 4);
        copy.set(bytes);
        const dv = new DataView(copy.buffer);
        s.values = new Float32Array(n);
        for (let i = 0; i < n; i++) s.values[i] = dv.getFloat32(4 * i, true);
      }
    } else {
      s.values = s.entry.dtype === 'BF16' ? decodeBf16(bytes, n) : decodeF16(bytes, n);
    }
    return s.values;
  }

  /**
   * The values for hashing only: the handed-out array if there is one, the zero-copy view of an
   * aligned F32 tensor, else a transient decoded copy that is not kept (so verifying an F16 file
   * neither holds a second copy nor makes {@link serialize} rebuild it).
   */
  read(name: string): Float32Array {
    const s = this.slots.get(name);
    if (!s || s.values || !FLOAT_DTYPES.includes(s.entry.dtype)) return this.values(name);
    const bytes = this.storedBytes(name);
    const n = elementCount(s.entry.shape);
    if (s.entry.dtype === 'F32') {
      if (LITTLE_ENDIAN_HOST && bytes.byteOffset % 4 === 0) return this.values(name);
      const copy = new Uint8Array(n * 4);
      copy.set(bytes);
      const dv = new DataView(copy.buffer);
      return Float32Array.from({ length: n }, (_, i) => dv.getFloat32(4 * i, true));
    }
    return s.entry.dtype === 'BF16' ? decodeBf16(bytes, n) : decodeF16(bytes, n);
  }

  /**
   * How the tensor is stored: F16 → float16, BF16 → bfloat16, F32 → float32 (see
   * `WeightStore.grid`); a patch onto that grid keeps the tensor in its dtype when serialized.
   */
  grid(name: string): StorageGrid | undefined {
    const dtype = this.slots.get(name)?.entry.dtype;
    return dtype === 'F16' ? { dtype: 'float16' } : dtype === 'BF16' ? { dtype: 'bfloat16' } : dtype === 'F32' ? { dtype: 'float32' } : undefined;
  }

  /** True if `name`'s values are patched directly in the file bytes (no copy). */
  isInPlace(name: string): boolean {
    this.values(name);
    return this.slots.get(name)?.inPlace === true;
  }

  /** True when {@link serialize} must rebuild the file (some handed-out values are copies, not views). */
  needsRebuild(): boolean {
    for (const s of this.slots.values()) if (s.values && !s.inPlace) return true;
    return false;
  }

  /**
   * The file as it should be written now, as chunks. When every handed-out tensor is patched
   * in place, that is the original bytes (one chunk, no copy). Otherwise the file is rebuilt:
   * handed-out tensors are encoded from their values (F16/BF16 kept when exact, else F32),
   * all others keep their bytes; `__metadata__` and the data order are kept.
   */
  serialize(): Uint8Array[] {
    if (!this.needsRebuild()) return [this.bytes];
    const tensors = new Map<string, SafetensorsTensorInput>();
    for (const s of this.slots.values()) {
      const { entry } = s;
      if (!s.values || s.inPlace) {
        tensors.set(entry.name, { shape: entry.shape, dtype: entry.dtype, data: this.storedBytes(entry.name) });
      } else if (entry.dtype === 'F16' || entry.dtype === 'BF16') {
        const exact = encodeHalfExactly(s.values, entry.dtype);
        tensors.set(entry.name, exact ? { shape: entry.shape, dtype: entry.dtype, data: exact } : { shape: entry.shape, dtype: 'F32', data: s.values });
      } else {
        tensors.set(entry.name, { shape: entry.shape, dtype: 'F32', data: s.values });
      }
    }
    return serializeSafetensors(tensors, this.header.metadata);
  }

  /**
   * The patches of `changed` are kept (aligned F32 tensors are patched in the file's bytes
   * already; the others are written by {@link modelBytes}, which rebuilds the file then). Never
   * refuses a value: one its half dtype cannot hold exactly is stored as F32 (see the module doc).
   * The crash-safe file apply (`src/io/safetensors/files.ts`) writes {@link modelBytes} to disk after it.
   * @throws ModelMismatchError for a name that is not a float tensor of the file (nothing changed).
   */
  commit(changed: readonly string[]): void {
    for (const name of changed) this.values(name);
  }

  /**
   * The whole file as it should be written now, in one array: the bytes as opened (with the
   * in-place patches, no copy), or the rebuilt file when some handed-out values are copies
   * (see {@link serialize}).
   */
  modelBytes(): Uint8Array {
    const chunks = this.serialize();
    return chunks.length === 1 ? chunks[0] : concatBytes(chunks);
  }
}
