/**
 * The TF.js `model.json` weights manifest as data, and the pure byte-level math over it.
 *
 * No node imports, no tfjs import: this file can be bundled with the device applier.
 *
 * Semantics follow `@tensorflow/tfjs-core` 4.22 (`dist/io/io_utils.js`, `decodeWeights`):
 *
 * - The weights of one manifest group are the concatenation of its shard files, in `paths`
 *   order. Offsets are implicit: each entry starts where the previous one ended, in manifest
 *   order, and tensors may span shard boundaries.
 * - An entry's byte size is `size(shape) * bytes(quantization.dtype ?? dtype)`, except
 *   `string` entries, which are a run of `[u32 little-endian byte length][bytes]` per element
 *   and can only be measured by reading them.
 * - `quantization: {dtype: 'uint8' | 'uint16', scale, min}` decodes as `v * scale + min`
 *   (computed in double precision, then stored as float32); for an `int32` entry the result
 *   is `Math.round`ed. `quantization: {dtype: 'float16'}` is allowed on `float32` entries only.
 * - The python converter also writes `quantization.original_dtype` (equal to the entry's
 *   `dtype`). tfjs 4.22 ignores it and decodes by `dtype`; so do we. tfjs 4.22 has no affine /
 *   per-channel / zero-point variant: any other quantization dtype is refused.
 * - Multi-byte values are little-endian (tfjs uses the platform's typed arrays; every platform
 *   tfjs runs on is little-endian). This module reads and writes little-endian explicitly.
 *
 * Which entries the applier sees: only `float32` entries (quantized or not) are "float
 * tensors". `int32`, `bool`, `string` and `complex64` entries (step counters, lookup tables,
 * graph-model constants) are *pass-through*: never exposed as mutable floats, always written
 * back with their original bytes and their original manifest entry, so they stay bit-exact.
 */
import { ModelFormatError, UsageError } from '../../core/errors.ts';
import { LITTLE_ENDIAN_HOST } from '../../core/endian.ts';
import { measureJson } from '../../core/json-shape.ts';

/** Entry dtypes tfjs 4.22 writes into a weights manifest. */
export type TfjsDtype = 'float32' | 'int32' | 'bool' | 'string' | 'complex64';

/** Storage dtypes of a quantized entry. */
export type TfjsQuantizationDtype = 'uint8' | 'uint16' | 'float16';

/** The model formats tfjs knows. Other strings are accepted and preserved. */
export type TfjsModelFormat = 'layers-model' | 'graph-model';

/** `quantization` of a manifest entry. Unknown keys are preserved verbatim. */
export interface TfjsQuantization {
  /** Storage dtype. */
  dtype: TfjsQuantizationDtype;
  /** Step between quantized levels (uint8 / uint16 only). */
  scale?: number;
  /** Value of quantized level 0 (uint8 / uint16 only). */
  min?: number;
  /** Written by the python converter, equal to the entry's dtype; ignored by tfjs 4.22. */
  original_dtype?: string;
  [key: string]: unknown;
}

/** One entry of `weightsManifest[g].weights`. Unknown keys are preserved verbatim. */
export interface TfjsWeightEntry {
  /** The stable tensor name (what diffs key on). */
  name: string;
  /** Row-major shape; `[]` for a scalar. */
  shape: number[];
  /** Logical dtype of the tensor (after dequantization). */
  dtype: TfjsDtype;
  /** Present when the stored bytes are quantized. */
  quantization?: TfjsQuantization;
  /** `'model'` or `'optimizer'`. */
  group?: string;
  [key: string]: unknown;
}

/** One group of `weightsManifest`: the shard files and the entries they hold, in order. */
export interface TfjsWeightGroup {
  /** Shard file names, relative to the folder of model.json, in concatenation order. */
  paths: string[];
  /** Entries in storage order. */
  weights: TfjsWeightEntry[];
  [key: string]: unknown;
}

/** The parsed `model.json`. Every key besides `weightsManifest` is preserved verbatim. */
export interface TfjsModelJson {
  /** Keras JSON topology (layers-model) or GraphDef-as-JSON (graph-model). */
  modelTopology: unknown;
  /** `'layers-model'` or `'graph-model'`; absent in files from tfjs < 1.0. */
  format?: TfjsModelFormat | (string & {});
  /** Absent only for topology-only files; treated as no weights. */
  weightsManifest: TfjsWeightGroup[];
  generatedBy?: string;
  convertedBy?: string | null;
  [key: string]: unknown;
}

/** Where one entry lives inside the concatenated shards of its group. */
export interface EntryLayout {
  /** The manifest entry (the same object as in the manifest). */
  entry: TfjsWeightEntry;
  /** Index of the group in `weightsManifest`. */
  group: number;
  /** Index of the entry within its group. */
  index: number;
  /** Byte offset within the concatenation of the group's shards. */
  offset: number;
  /** Stored byte length. */
  byteLength: number;
  /** Number of elements (product of the shape). */
  size: number;
  /** How the bytes are stored: the quantization dtype, or the entry dtype. */
  storage: TfjsQuantizationDtype | TfjsDtype;
  /** True for float32 entries (quantized or not): the tensors the applier may patch. */
  isFloat: boolean;
}

/** Layout of one group. */
export interface GroupLayout {
  entries: EntryLayout[];
  /** Bytes the entries need in total (the shards must hold exactly this many). */
  totalBytes: number;
}

/** Shard size tfjs and the python converter use: 4 MiB (the browser cache limit). */
export const DEFAULT_SHARD_BYTES = 4 * 1024 * 1024;

const DTYPES: ReadonlySet<string> = new Set(['float32', 'int32', 'bool', 'string', 'complex64']);
const QUANT_DTYPES: ReadonlySet<string> = new Set(['uint8', 'uint16', 'float16']);
const BYTES_PER_VALUE: Readonly<Record<string, number>> = {
  float32: 4, int32: 4, bool: 1, complex64: 8, uint8: 1, uint16: 2, float16: 2,
};

const FIX_MANIFEST =
  'regenerate model.json with tfjs (model.save) or tensorflowjs_converter, or fix the entry by hand';

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Number of elements of a shape; `1` for `[]`. */
export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Check that a parsed JSON value is a usable model.json and return it typed. A missing
 * `weightsManifest` becomes `[]` (a topology-only file). Throws {@link ModelFormatError}
 * naming the first bad field, what was expected, and what to do.
 *
 * Checks: object shape; every group has `paths` (strings: relative, no `..`, no NUL) and
 * `weights`; every entry has a unique string `name`, a shape of non-negative safe integers,
 * a known `dtype`, and a quantization tfjs 4.22 can decode (`uint8`/`uint16` with finite
 * `scale` and `min` on float32/int32 entries, `float16` on float32 entries only).
 */
export function validateModelJson(value: unknown, source = 'model.json'): TfjsModelJson {
  if (!isPlainObject(value)) {
    throw new ModelFormatError(
      `${source}: expected a JSON object with modelTopology and weightsManifest, found ${describe(value)}: ${FIX_MANIFEST}`,
      { source, found: describe(value) },
    );
  }
  if (value.format !== undefined && value.format !== null && typeof value.format !== 'string') {
    throw new ModelFormatError(
      `${source}: expected "format" to be a string such as "layers-model" or "graph-model", found ${describe(value.format)}: ${FIX_MANIFEST}`,
      { source, found: value.format },
    );
  }
  if (value.weightsManifest === undefined || value.weightsManifest === null) {
    (value as Record<string, unknown>).weightsManifest = [];
  }
  const manifest = value.weightsManifest;
  if (!Array.isArray(manifest)) {
    throw new ModelFormatError(
      `${source}: expected "weightsManifest" to be an array of {paths, weights} groups, found ${describe(manifest)}: ${FIX_MANIFEST}`,
      { source, found: describe(manifest) },
    );
  }
  const names = new Set<string>();
  manifest.forEach((group: unknown, g: number) => {
    const where = `${source}: weightsManifest[${g}]`;
    if (!isPlainObject(group) || !Array.isArray(group.paths) || !Array.isArray(group.weights)) {
      throw new ModelFormatError(
        `${where}: expected {paths: string[], weights: [...]}, found ${describe(group)}: ${FIX_MANIFEST}`,
        { source, group: g, found: describe(group) },
      );
    }
    group.paths.forEach((p: unknown, i: number) => {
      const problem = shardPathProblem(p);
      if (problem) {
        throw new ModelFormatError(
          `${where}.paths[${i}]: expected a relative file name inside the model folder, found ${describe(p)} (${problem}): ${FIX_MANIFEST}`,
          { source, group: g, path: p, problem },
        );
      }
    });
    group.weights.forEach((e: unknown, i: number) => {
      validateEntry(e, `${where}.weights[${i}]`, { source, group: g, index: i });
      const name = (e as TfjsWeightEntry).name;
      if (names.has(name)) {
        throw new ModelFormatError(
          `${where}.weights[${i}]: the weight name "${name}" appears twice in the manifest; expected unique names (tfjs would silently keep only the last one): ${FIX_MANIFEST}`,
          { source, group: g, index: i, name },
        );
      }
      names.add(name);
    });
  });
  return value as TfjsModelJson;
}

/** Why a manifest path is unsafe or unusable, or `undefined` if it is fine. */
function shardPathProblem(p: unknown): string | undefined {
  if (typeof p !== 'string' || p.length === 0) return 'not a non-empty string';
  if (p.includes('\0')) return 'contains a NUL byte';
  if (p.startsWith('/') || p.startsWith('\\') || /^[A-Za-z]:/.test(p)) return 'absolute path';
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(p)) return 'a URL';
  if (p.split(/[\\/]/).some((part) => part === '..')) return 'leaves the model folder with ..';
  return undefined;
}

function validateEntry(e: unknown, where: string, details: Record<string, unknown>): void {
  const fail = (expected: string, found: unknown): never => {
    throw new ModelFormatError(`${where}: expected ${expected}, found ${describe(found)}: ${FIX_MANIFEST}`, {
      ...details, expected, found: describe(found),
    });
  };
  if (!isPlainObject(e)) fail('an object {name, shape, dtype}', e);
  const entry = e as Record<string, unknown>;
  if (typeof entry.name !== 'string' || entry.name.length === 0) fail('"name" to be a non-empty string', entry.name);
  if (!Array.isArray(entry.shape) || !entry.shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
    fail(`"shape" of ${String(entry.name)} to be an array of non-negative integers`, entry.shape);
  }
  const size = shapeSize(entry.shape as number[]);
  if (!Number.isSafeInteger(size * 8)) fail(`a tensor small enough to address (shape of ${String(entry.name)})`, entry.shape);
  if (typeof entry.dtype !== 'string' || !DTYPES.has(entry.dtype)) {
    fail(`"dtype" of ${String(entry.name)} to be one of float32, int32, bool, string, complex64`, entry.dtype);
  }
  const q = entry.quantization;
  if (q === undefined) return;
  if (!isPlainObject(q) || typeof q.dtype !== 'string' || !QUANT_DTYPES.has(q.dtype)) {
    fail(`"quantization" of ${String(entry.name)} to be {dtype: 'uint8'|'uint16'|'float16', ...} (tfjs 4.22 knows no other scheme)`, q);
  }
  const qq = q as Record<string, unknown>;
  if (qq.dtype === 'float16') {
    if (entry.dtype !== 'float32') fail(`float16 quantization only on a float32 entry (${String(entry.name)})`, entry.dtype);
  } else {
    if (entry.dtype !== 'float32' && entry.dtype !== 'int32') {
      fail(`${String(qq.dtype)} quantization only on a float32 or int32 entry (${String(entry.name)})`, entry.dtype);
    }
    if (typeof qq.scale !== 'number' || !Number.isFinite(qq.scale)) fail(`a finite "quantization.scale" for ${String(entry.name)}`, qq.scale);
    if (typeof qq.min !== 'number' || !Number.isFinite(qq.min)) fail(`a finite "quantization.min" for ${String(entry.name)}`, qq.min);
  }
}

/**
 * The deepest a model JSON may nest (docs/FORMAT.md §14). Real models nest a few levels a layer
 * (a Keras model inside another adds four or five); the frame of a deeper one is walked
 * recursively, so a 5 million deep file overflowed the stack.
 */
export const MAX_MODEL_JSON_DEPTH = 512;
/**
 * The most values (objects, arrays, keys, strings, numbers, literals) a model JSON may hold:
 * a large graph model holds a few hundred thousand. A rebuilt model JSON just under 4 million
 * took 724 MiB and 20 s to refuse by its fingerprint; 2 million keeps that well within 1 GiB.
 */
export const MAX_MODEL_JSON_VALUES = 2_000_000;

/**
 * Parse the text of a model.json (a leading byte-order mark is allowed) and validate it
 * with {@link validateModelJson}. Throws {@link ModelFormatError} on bad JSON, and on JSON
 * deeper than {@link MAX_MODEL_JSON_DEPTH} or with more than {@link MAX_MODEL_JSON_VALUES}
 * values, measured before it is parsed.
 */
export function parseModelJson(text: string, source = 'model.json'): TfjsModelJson {
  const shape = measureJson(text, MAX_MODEL_JSON_DEPTH, MAX_MODEL_JSON_VALUES);
  if (shape.over) {
    const found = shape.over === 'depth' ? `JSON nested more than ${MAX_MODEL_JSON_DEPTH} levels deep` : `more than ${MAX_MODEL_JSON_VALUES} JSON values`;
    throw new ModelFormatError(
      `${source}: expected a TF.js model JSON of at most ${MAX_MODEL_JSON_DEPTH} levels and ${MAX_MODEL_JSON_VALUES} values, found ${found} (${text.length} characters): the file is corrupt or hostile; nothing was changed: copy the model again from its source, or fetch the full model`,
      { source, limit: shape.over, depth: shape.depth, values: shape.values },
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  } catch (err) {
    throw new ModelFormatError(
      `${source}: expected JSON, found text that does not parse (${(err as Error).message}): the file is truncated or not a TF.js model.json; copy it again from the source of the model`,
      { source, cause: (err as Error).message },
    );
  }
  return validateModelJson(value, source);
}

/** Stored bytes per element of an entry (`undefined` for `string`, which is variable). */
export function bytesPerStoredValue(entry: TfjsWeightEntry): number | undefined {
  if (entry.quantization) return BYTES_PER_VALUE[entry.quantization.dtype];
  return entry.dtype === 'string' ? undefined : BYTES_PER_VALUE[entry.dtype];
}

/**
 * Byte length of a fixed-size entry: `size(shape) * bytes(storage dtype)`. Throws
 * {@link UsageError} for a `string` entry (use {@link computeGroupLayout} with the data).
 */
export function entryByteLength(entry: TfjsWeightEntry): number {
  const per = bytesPerStoredValue(entry);
  if (per === undefined) {
    throw new UsageError(`weight ${entry.name} is a string tensor: its byte length depends on its data; call computeGroupLayout(weights, data)`);
  }
  return shapeSize(entry.shape) * per;
}

/**
 * Offsets and lengths of every entry of a group within the concatenation of its shards: the
 * running sum of the entries' byte lengths in manifest order.
 *
 * @param weights the group's entries.
 * @param data the concatenated shard bytes; needed only if the group has `string` entries
 *   (their lengths are read from the data). When given, entries that run past its end throw
 *   {@link ModelFormatError}.
 * @param group index of the group, copied into each {@link EntryLayout}.
 */
export function computeGroupLayout(weights: readonly TfjsWeightEntry[], data?: Uint8Array, group = 0): GroupLayout {
  const entries: EntryLayout[] = [];
  let offset = 0;
  weights.forEach((entry, index) => {
    const size = shapeSize(entry.shape);
    let byteLength: number;
    if (entry.dtype === 'string' && !entry.quantization) {
      if (!data) {
        throw new UsageError(`weight ${entry.name} is a string tensor: pass the group's data to computeGroupLayout to measure it`);
      }
      byteLength = 0;
      for (let i = 0; i < size; i++) {
        const at = offset + byteLength;
        if (at + 4 > data.length) {
          throw new ModelFormatError(
            `string weight ${entry.name}: expected a 4-byte length for element ${i} at byte ${at}, found the end of the weight data (${data.length} bytes): a shard is truncated; copy the model folder again`,
            { name: entry.name, element: i, offset: at, available: data.length },
          );
        }
        // The length as an unsigned 32-bit number (`>>> 0` before adding: `4 + x >>> 0` would
        // wrap a length near 2^32 to a small one), and it must fit in the data that is left.
        const length = (data[at] | (data[at + 1] << 8) | (data[at + 2] << 16) | (data[at + 3] << 24)) >>> 0;
        if (at + 4 + length > data.length) {
          throw new ModelFormatError(
            `string weight ${entry.name}: element ${i} at byte ${at} declares ${length} bytes, but only ${data.length - at - 4} bytes of weight data follow: a shard is truncated or the data is not this manifest's; copy the model folder again`,
            { name: entry.name, element: i, offset: at, declared: length, available: data.length - at - 4 },
          );
        }
        byteLength += 4 + length;
      }
    } else {
      byteLength = entryByteLength(entry);
    }
    const storage = entry.quantization ? entry.quantization.dtype : entry.dtype;
    entries.push({ entry, group, index, offset, byteLength, size, storage, isFloat: entry.dtype === 'float32' });
    offset += byteLength;
  });
  if (data && offset > data.length) {
    const last = entries.find((l) => l.offset + l.byteLength > data.length)!;
    throw new ModelFormatError(
      `weights of group ${group + 1}: expected ${offset} bytes for ${entries.length} weights, found ${data.length}; weight ${last.entry.name} (bytes ${last.offset}..${last.offset + last.byteLength}) runs past the end: a shard is truncated; copy the model folder again`,
      { group, expected: offset, found: data.length, name: last.entry.name },
    );
  }
  return { entries, totalBytes: offset };
}

/** Layouts of every group of a manifest, given each group's concatenated bytes. */
export function computeManifestLayout(manifest: readonly TfjsWeightGroup[], groupData?: readonly Uint8Array[]): GroupLayout[] {
  return manifest.map((g, i) => computeGroupLayout(g.weights, groupData?.[i], i));
}

/** Every shard path of a manifest, in order, without duplicates. */
export function manifestPaths(modelJson: Pick<TfjsModelJson, 'weightsManifest'>): string[] {
  const out: string[] = [];
  for (const g of modelJson.weightsManifest ?? []) for (const p of g.paths) if (!out.includes(p)) out.push(p);
  return out;
}

/**
 * Decode IEEE half-precision bit patterns to float32, bit-exactly like tfjs's table-based
 * decoder (including NaN payloads and subnormals; every half is exactly representable).
 */
export function float16BitsToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const u32 = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i];
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) {
      // zero or subnormal: mant * 2^-24, exact in float32
      out[i] = mant * 2 ** -24;
      u32[i] |= sign;
    } else if (exp === 31) {
      u32[i] = (sign | 0x7f800000 | (mant << 13)) >>> 0;
    } else {
      u32[i] = (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
    }
  }
  return out;
}

/** Read `n` little-endian u16 from bytes (any alignment). */
function readU16LE(bytes: Uint8Array, n: number): Uint16Array {
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) out[i] = bytes[2 * i] | (bytes[2 * i + 1] << 8);
  return out;
}

/** Copy little-endian 4-byte values into a fresh aligned buffer of the host's order. */
function copy4LE(bytes: Uint8Array, n: number): ArrayBuffer {
  const buf = new ArrayBuffer(n * 4);
  const dst = new Uint8Array(buf);
  dst.set(bytes.subarray(0, n * 4));
  if (!LITTLE_ENDIAN_HOST) {
    for (let i = 0; i < dst.length; i += 4) {
      const a = dst[i], b = dst[i + 1];
      dst[i] = dst[i + 3]; dst[i + 1] = dst[i + 2]; dst[i + 2] = b; dst[i + 3] = a;
    }
  }
  return buf;
}

function checkLength(entry: TfjsWeightEntry, bytes: Uint8Array, expected: number): void {
  if (bytes.length !== expected) {
    throw new ModelFormatError(
      `weight ${entry.name}: expected ${expected} stored bytes, found ${bytes.length}: a shard is truncated or the manifest does not match the shards; copy the model folder again`,
      { name: entry.name, expected, found: bytes.length },
    );
  }
}

/**
 * Decode the stored bytes of a `float32` entry (plain or quantized) to a fresh Float32Array,
 * with tfjs 4.22's arithmetic: uint8/uint16 as `v * scale + min` rounded to float32, float16
 * as exact half-to-single conversion, float32 copied bit for bit.
 *
 * @param bytes exactly the entry's stored bytes (see {@link computeGroupLayout}).
 */
export function dequantizeEntry(entry: TfjsWeightEntry, bytes: Uint8Array): Float32Array {
  if (entry.dtype !== 'float32') {
    throw new UsageError(`weight ${entry.name} is ${entry.dtype}, not float32: it is passed through untouched; read it with decodePassthroughEntry`);
  }
  const n = shapeSize(entry.shape);
  const q = entry.quantization;
  checkLength(entry, bytes, entryByteLength(entry));
  if (!q) return new Float32Array(copy4LE(bytes, n));
  if (q.dtype === 'float16') return float16BitsToFloat32(readU16LE(bytes, n));
  const scale = q.scale as number;
  const min = q.min as number;
  const out = new Float32Array(n);
  if (q.dtype === 'uint8') {
    for (let i = 0; i < n; i++) out[i] = bytes[i] * scale + min;
  } else {
    for (let i = 0; i < n; i++) out[i] = (bytes[2 * i] | (bytes[2 * i + 1] << 8)) * scale + min;
  }
  return out;
}

/** Decoded values of a pass-through (non-float32) entry; a copy, read-only by contract. */
export type PassthroughValues =
  | { dtype: 'int32'; data: Int32Array }
  | { dtype: 'bool'; data: Uint8Array }
  | { dtype: 'complex64'; data: Float32Array /* interleaved re, im */ }
  | { dtype: 'string'; data: Uint8Array[] };

/**
 * Decode a pass-through entry (int32, bool, complex64, string) the way tfjs 4.22 does
 * (quantized int32: `Math.round(v * scale + min)`). For inspection only: the stores never
 * re-encode these; they write the original bytes back.
 */
export function decodePassthroughEntry(entry: TfjsWeightEntry, bytes: Uint8Array): PassthroughValues {
  const n = shapeSize(entry.shape);
  switch (entry.dtype) {
    case 'int32': {
      const q = entry.quantization;
      checkLength(entry, bytes, entryByteLength(entry));
      if (!q) return { dtype: 'int32', data: new Int32Array(copy4LE(bytes, n)) };
      const data = new Int32Array(n);
      const vals = q.dtype === 'uint8' ? bytes : readU16LE(bytes, n);
      for (let i = 0; i < n; i++) data[i] = Math.round(vals[i] * (q.scale as number) + (q.min as number));
      return { dtype: 'int32', data };
    }
    case 'bool':
      checkLength(entry, bytes, n);
      return { dtype: 'bool', data: bytes.slice() };
    case 'complex64':
      checkLength(entry, bytes, n * 8);
      return { dtype: 'complex64', data: new Float32Array(copy4LE(bytes, 2 * n)) };
    case 'string': {
      const data: Uint8Array[] = [];
      let at = 0;
      for (let i = 0; i < n; i++) {
        if (at + 4 > bytes.length) checkLength(entry, bytes, at + 4);
        const len = (bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24)) >>> 0;
        at += 4;
        if (at + len > bytes.length) checkLength(entry, bytes, at + len);
        data.push(bytes.slice(at, at + len));
        at += len;
      }
      return { dtype: 'string', data };
    }
    default:
      throw new UsageError(`weight ${entry.name} is float32: read it with dequantizeEntry`);
  }
}

/** Encode float32 values as little-endian bytes (a fresh array; NaN payloads kept). */
export function encodeFloat32(values: Float32Array): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  out.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  if (!LITTLE_ENDIAN_HOST) {
    for (let i = 0; i < out.length; i += 4) {
      const a = out[i], b = out[i + 1];
      out[i] = out[i + 3]; out[i + 1] = out[i + 2]; out[i + 2] = b; out[i + 3] = a;
    }
  }
  return out;
}

/**
 * The manifest entry to write for a float32 entry stored as plain float32: the same object
 * with `dtype: 'float32'` and without `quantization`; every other key kept in place.
 */
export function asFloat32Entry(entry: TfjsWeightEntry): TfjsWeightEntry {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(entry)) if (k !== 'quantization') out[k] = v;
  out.dtype = 'float32';
  return out as TfjsWeightEntry;
}

/** Split a group's bytes into shards of at most `shardBytes` (the last may be shorter). */
export function splitIntoShards(data: Uint8Array, shardBytes = DEFAULT_SHARD_BYTES): Uint8Array[] {
  if (!Number.isSafeInteger(shardBytes) || shardBytes <= 0) {
    throw new UsageError(`shardBytes must be a positive integer, got ${String(shardBytes)}`);
  }
  const out: Uint8Array[] = [];
  for (let at = 0; at < data.length; at += shardBytes) out.push(data.subarray(at, Math.min(at + shardBytes, data.length)));
  return out;
}

export { concatBytes } from '../../core/bytes.ts';

export { replaceTopLevelValue } from '../../core/json-top-level.ts';
