/**
 * Payload format v1: one msgpack document. See docs/FORMAT.md for the byte-level description.
 *
 * This module is pure (no node, no tfjs): it decodes bytes into a {@link Payload} (encoding is in
 * encode.ts, so a device bundle carries no encoder), checking every count and length against the bytes actually present before it
 * allocates anything, so hostile input costs at most a few times its own size.
 */
// msgpackr/unpack: in browser bundles only the decoder (the encoder lives in encode.ts).
import { Unpackr } from 'msgpackr/unpack';
import { PayloadFormatError, PayloadTooLargeError, UnsupportedVersionError, NonFiniteValueError } from './errors.ts';
import { readVarints } from './varint.ts';
import { msgpackStructureProblem, PAYLOAD_MSGPACK_LIMITS } from './msgpack-guard.ts';
import { bytesPerValue, decodeValues, VALUE_CODECS, type ValueCodec } from './values.ts';

/** The format version this code writes and reads. */
export const FORMAT_VERSION = 1;
export const SUPPORTED_VERSIONS: readonly number[] = [1];
/** Default cap on the size of a payload accepted for decoding (256 MiB). */
export const DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024 * 1024;
/** Largest tensor (in values) a patch may address: positions are uint32. */
export const MAX_TENSOR_SIZE = 0xffffffff;

/** How the diff was made; informative for reports (the applier treats all alike). */
export type DiffMethod = 'sparse' | 'hash' | 'topk' | 'drop' | 'lowrank' | 'full' | 'dense';
export const DIFF_METHODS: readonly DiffMethod[] = ['sparse', 'hash', 'topk', 'drop', 'lowrank', 'full', 'dense'];

export interface PayloadHeader {
  /** Format version (1). */
  version: number;
  method: DiffMethod;
  /** Free-form model identifier chosen by the publisher (e.g. `kws-en`). */
  modelId: string;
  /** Fingerprint (16 hex chars) of the model this payload applies to. */
  baseFingerprint: string;
  /** Fingerprint (16 hex chars) of the model after applying. */
  targetFingerprint: string;
  /** Monotonic update number; devices refuse a sequence at or below the one they hold. */
  sequence: number;
  /** The byte budget the payload was built for (0 when none was set). */
  budgetBytes: number;
  /** Tool and version that made it, e.g. `neural-diff 0.1.0`. */
  createdBy: string;
  /** Optional creation time (ISO 8601); absent by default so output stays deterministic. */
  createdAt?: string;
  /** Optional expiry, seconds since the Unix epoch; devices refuse the payload after it. */
  expiresAt?: number;
  /** Optional metadata: string or integer values (e.g. training metrics as strings). */
  meta?: Record<string, string | number>;
}

interface PatchCommon {
  /** Tensor name (the manifest name). */
  name: string;
  /** Expected shape of the tensor. */
  shape: number[];
  /** xxh64 digest of the tensor before patching (16 hex chars); see fingerprint.ts. */
  baseDigest: string;
  /** xxh64 digest of the tensor after patching (16 hex chars). */
  targetDigest: string;
  codec: ValueCodec;
  /** i8 only. */
  scale?: number;
}

/** Added values at sorted flat positions. */
export interface SparsePatch extends PatchCommon {
  kind: 'sparse';
  /** Strictly increasing flat (row-major) positions. */
  positions: Uint32Array;
  /** The exact float32 values added at `positions`. */
  values: Float32Array;
  /** Wire coding chosen for the positions: varint gaps or a bitmap. */
  positionCoding: 'gaps' | 'bitmap';
}

/** Every position i gets `sign(i) * buckets[bucketOf(i)]` added (see bucket.ts). */
export interface HashPatch extends PatchCommon {
  kind: 'hash';
  /** Per-tensor 32-bit seed of the position hash. */
  seed: number;
  /** Whether a +-1 sign per position multiplies the bucket value. */
  signed: boolean;
  /** Bucket values (exact float32). */
  buckets: Float32Array;
}

/** A whole-tensor delta. */
export interface DensePatch extends PatchCommon {
  kind: 'dense';
  values: Float32Array;
}

/**
 * A low-rank delta `U · V` with U of [rows x rank] and V of [rank x cols], where cols is the
 * tensor's last dimension and rows the product of the others (a 1-D tensor is one row).
 */
export interface LowRankPatch extends PatchCommon {
  kind: 'lowrank';
  rank: number;
  /** U, row-major [rows x rank]. */
  u: Float32Array;
  /** V, row-major [rank x cols]. */
  v: Float32Array;
}

export type TensorPatch = SparsePatch | HashPatch | DensePatch | LowRankPatch;

/** The matrix view of a tensor for low-rank patches: cols = last dimension. */
export function matrixDims(shape: readonly number[]): { rows: number; cols: number } {
  const cols = shape.length ? shape[shape.length - 1] : 1;
  return { rows: cols === 0 ? 0 : shapeSize(shape) / cols, cols };
}

export interface Payload {
  header: PayloadHeader;
  patches: TensorPatch[];
}

/** Number of values a shape holds. */
export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

// int64AsType 'auto': a uint64/int64-encoded integer (0xcf/0xd3, as other languages' encoders write
// u64 fields) decodes to a number up to 2^53, like any shorter encoding of the same value; beyond
// that it stays a BigInt and the integer checks below refuse it. (msgpackr's typings omit 'auto'.)
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'auto' as 'bigint' });

/** 8 bytes to 16 hex chars (big-endian, as the bytes read). */
export function bytes8ToHex(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += b[i].toString(16).padStart(2, '0');
  return s;
}


export interface DecodeOptions {
  /** Refuse larger inputs before parsing (default 256 MiB). */
  maxPayloadBytes?: number;
}

function fail(message: string, details: Record<string, unknown> = {}): never {
  throw new PayloadFormatError(`${message}; the payload is corrupt or not a neural-diff payload: fetch it again or fall back to the full model`, details);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}
function isUint(v: unknown, max = Number.MAX_SAFE_INTEGER): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;
}
function own(o: Record<string, unknown>, k: string): unknown {
  return Object.prototype.hasOwnProperty.call(o, k) ? o[k] : undefined;
}
function bin(o: Record<string, unknown>, k: string, where: string, len?: number): Uint8Array {
  const v = own(o, k);
  if (!(v instanceof Uint8Array)) fail(`${where}: field "${k}" must be binary, found ${describe(v)}`);
  if (len !== undefined && v.length !== len) fail(`${where}: field "${k}" must be ${len} bytes, found ${v.length}`);
  return v;
}
function str(o: Record<string, unknown>, k: string, where: string, maxLen = 4096): string {
  const v = own(o, k);
  if (typeof v !== 'string' || v.length > maxLen) fail(`${where}: field "${k}" must be a string of at most ${maxLen} chars, found ${describe(v)}`);
  return v;
}
function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v instanceof Uint8Array) return `${v.length} bytes of binary`;
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
  return `${typeof v} ${typeof v === 'object' ? '' : String(v)}`.trim();
}

/**
 * Decode and validate payload bytes. Checks structure, types, counts, position order and
 * range within each tensor's declared shape, and that every value is finite. It does not
 * look at any model: the applier checks the payload against the model next.
 *
 * @throws PayloadTooLargeError, PayloadFormatError, UnsupportedVersionError, NonFiniteValueError
 */
export function decodePayload(bytes: Uint8Array, options: DecodeOptions = {}): Payload {
  const limit = options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
  if (!(bytes instanceof Uint8Array)) throw new PayloadFormatError(`expected the payload as a Uint8Array, found ${describe(bytes)}`);
  if (bytes.length > limit) throw new PayloadTooLargeError(bytes.length, limit);
  if (bytes.length === 0) fail('the payload is empty');
  // A v1 document is a map whose first key is "nd": check the leading bytes before parsing.
  const first = bytes[0];
  const isMap = (first & 0xf0) === 0x80 || first === 0xde || first === 0xdf;
  if (!isMap) {
    if (bytes.length >= 4 && bytes[0] === 0x4e && bytes[1] === 0x44 && bytes[2] === 0x53 && bytes[3] === 0x47) {
      throw new PayloadFormatError('expected a payload (a msgpack map), found a signed envelope ("NDSG"): pass the envelope to applyPayload / verifyPayload, which check the signature and unwrap it', { signedEnvelope: true });
    }
    fail(`expected a msgpack map at byte 0, found 0x${first.toString(16).padStart(2, '0')}`);
  }
  // Bound msgpackr before it runs: every declared length within the input, no extension types,
  // bounded nesting, nothing after the document (see msgpack-guard.ts for what it costs without).
  const problem = msgpackStructureProblem(bytes, PAYLOAD_MSGPACK_LIMITS);
  if (problem !== null) fail(`malformed msgpack: ${problem}`);
  let doc: unknown;
  try {
    // A fresh view: msgpackr attaches a `dataView` property to the object it decodes.
    doc = unpackr.unpack(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  } catch (e) {
    fail(`msgpack decoding failed (${(e as Error).message})`, { cause: (e as Error).message });
  }
  if (!isObject(doc)) fail(`expected a map at the top level, found ${describe(doc)}`);
  const version = own(doc, 'nd');
  if (version === undefined) fail('missing the format version field "nd"');
  if (!SUPPORTED_VERSIONS.includes(version as number)) throw new UnsupportedVersionError(version, SUPPORTED_VERSIONS);

  const method = str(doc, 'm', 'header', 32) as DiffMethod;
  if (!DIFF_METHODS.includes(method)) fail(`header: unknown method ${JSON.stringify(method)} (known: ${DIFF_METHODS.join(', ')})`);
  const sequence = own(doc, 'sq');
  if (!isUint(sequence)) fail(`header: sequence "sq" must be a non-negative integer, found ${describe(sequence)}`);
  const budget = own(doc, 'bb');
  if (!isUint(budget)) fail(`header: budget "bb" must be a non-negative integer, found ${describe(budget)}`);
  const header: PayloadHeader = {
    version: version as number,
    method,
    modelId: str(doc, 'id', 'header', 256),
    baseFingerprint: bytes8ToHex(bin(doc, 'bf', 'header', 8)),
    targetFingerprint: bytes8ToHex(bin(doc, 'tf', 'header', 8)),
    sequence,
    budgetBytes: budget,
    createdBy: str(doc, 'cb', 'header', 256),
  };
  if (own(doc, 'ct') !== undefined) header.createdAt = str(doc, 'ct', 'header', 64);
  const ex = own(doc, 'ex');
  if (ex !== undefined) {
    if (!isUint(ex)) fail(`header: expiry "ex" must be a non-negative integer (seconds since 1970), found ${describe(ex)}`);
    header.expiresAt = ex;
  }
  const meta = own(doc, 'x');
  if (meta !== undefined) {
    if (!isObject(meta)) fail(`header: metadata "x" must be a map, found ${describe(meta)}`);
    const m: Record<string, string | number> = {};
    for (const [k, v] of Object.entries(meta)) {
      if (typeof v !== 'string' && typeof v !== 'number') fail(`header: metadata value "${k}" must be a string or number, found ${describe(v)}`);
      m[k] = v;
    }
    header.meta = m;
  }

  const rawPatches = own(doc, 'p');
  if (!Array.isArray(rawPatches)) fail(`expected the patch list "p" to be an array, found ${describe(rawPatches)}`);
  const names = new Set<string>();
  const patches: TensorPatch[] = rawPatches.map((raw, index) => {
    const patch = decodePatch(raw, index);
    if (names.has(patch.name)) fail(`patch ${index}: tensor ${JSON.stringify(patch.name)} is patched twice`);
    names.add(patch.name);
    return patch;
  });
  return { header, patches };
}

function decodePatch(raw: unknown, index: number): TensorPatch {
  let where = `patch ${index}`;
  if (!isObject(raw)) fail(`${where}: expected a map, found ${describe(raw)}`);
  const name = str(raw, 't', where, 1024);
  where = `patch ${index} (${JSON.stringify(name)})`;
  const shapeRaw = own(raw, 's');
  if (!Array.isArray(shapeRaw) || shapeRaw.length > 16 || !shapeRaw.every((d) => isUint(d, MAX_TENSOR_SIZE))) {
    fail(`${where}: shape "s" must be an array of at most 16 non-negative integers, found ${describe(shapeRaw)}`);
  }
  const shape = shapeRaw as number[];
  const size = shapeSize(shape);
  if (size > MAX_TENSOR_SIZE) fail(`${where}: shape [${shape.join(', ')}] holds ${size} values, more than a patch can address (2^32 - 1)`);
  const kind = own(raw, 'k');
  const codec = own(raw, 'c') as ValueCodec;
  if (!VALUE_CODECS.includes(codec)) fail(`${where}: value codec "c" must be one of ${VALUE_CODECS.join(', ')}, found ${describe(codec)}`);
  let scale: number | undefined;
  if (codec === 'i8') {
    const q = own(raw, 'q');
    if (typeof q !== 'number' || !Number.isFinite(q) || q <= 0 || Math.fround(q) !== q) fail(`${where}: int8 scale "q" must be a positive finite float32, found ${describe(q)}`);
    scale = q;
  }
  const common = {
    name,
    shape,
    baseDigest: bytes8ToHex(bin(raw, 'b', where, 8)),
    targetDigest: bytes8ToHex(bin(raw, 'a', where, 8)),
    codec,
    ...(scale !== undefined ? { scale } : {}),
  };
  const v = bin(raw, 'v', where);
  const bpv = bytesPerValue(codec);
  const values = (count: number, what: string): Float32Array => {
    if (v.length !== count * bpv) fail(`${where}: ${what} "v" must be ${count} x ${bpv} = ${count * bpv} bytes for codec ${codec}, found ${v.length}`);
    const out = decodeValues(v, codec, scale);
    if (!(out instanceof Float32Array)) {
      throw new NonFiniteValueError(`${where}: value ${out.nonFiniteAt} is NaN or infinite; a valid payload never carries one: rebuild the payload (the model it came from may have diverged)`, { tensor: name, index: out.nonFiniteAt });
    }
    return out;
  };

  if (kind === 's') {
    const n = own(raw, 'n');
    const coding = own(raw, 'ic');
    const posBytes = bin(raw, 'i', where);
    if (!isUint(n, size)) fail(`${where}: count "n" must be an integer from 0 to the tensor size ${size}, found ${describe(n)}`);
    // Check the value bytes against the count before allocating positions for it.
    if (v.length !== n * bpv) fail(`${where}: values "v" must be ${n} x ${bpv} = ${n * bpv} bytes for codec ${codec}, found ${v.length}`);
    let positions: Uint32Array;
    if (coding === 'm') {
      const expected = Math.ceil(size / 8);
      if (posBytes.length !== expected) fail(`${where}: bitmap "i" must be ${expected} bytes for ${size} values, found ${posBytes.length}`);
      if (size % 8 !== 0 && posBytes[posBytes.length - 1] >>> (size % 8) !== 0) fail(`${where}: bitmap marks positions past the tensor's end (${size} values)`);
      positions = new Uint32Array(n);
      let k = 0;
      for (let byte = 0; byte < posBytes.length; byte++) {
        let bits = posBytes[byte];
        while (bits) {
          const bit = 31 - Math.clz32(bits & -bits);
          if (k >= n) fail(`${where}: bitmap marks more positions than the count ${n}`);
          positions[k++] = byte * 8 + bit;
          bits &= bits - 1;
        }
      }
      if (k !== n) fail(`${where}: bitmap marks ${k} positions, the count says ${n}`);
    } else if (coding === 'g') {
      if (n > posBytes.length) fail(`${where}: count ${n} needs at least ${n} bytes of gaps, found ${posBytes.length}`);
      const gaps = readVarints(posBytes, n);
      if (!gaps) fail(`${where}: position gaps "i" are not ${n} well-formed varints filling ${posBytes.length} bytes`);
      // The running sum turns the gaps into positions in place.
      let prev = -1;
      for (let k = 0; k < n; k++) {
        const pos = prev + 1 + gaps[k];
        if (pos >= size) fail(`${where}: position ${pos} (entry ${k}) is out of range for shape [${shape.join(', ')}] (${size} values)`);
        gaps[k] = pos;
        prev = pos;
      }
      positions = gaps;
    } else {
      fail(`${where}: position coding "ic" must be "g" (gaps) or "m" (bitmap), found ${describe(coding)}`);
    }
    return { kind: 'sparse', ...common, positions, positionCoding: coding === 'm' ? 'bitmap' : 'gaps', values: values(n, 'values') };
  }
  if (kind === 'h') {
    const seed = own(raw, 'h');
    const nb = own(raw, 'nb');
    const signed = own(raw, 'sg');
    if (!isUint(seed, 0xffffffff)) fail(`${where}: hash seed "h" must be a uint32, found ${describe(seed)}`);
    if (!isUint(nb, 0xffffffff) || nb < 1) fail(`${where}: bucket count "nb" must be a positive integer, found ${describe(nb)}`);
    if (typeof signed !== 'boolean') fail(`${where}: sign flag "sg" must be a boolean, found ${describe(signed)}`);
    return { kind: 'hash', ...common, seed, signed, buckets: values(nb, 'bucket values') };
  }
  if (kind === 'd') {
    return { kind: 'dense', ...common, values: values(size, 'dense values') };
  }
  if (kind === 'r') {
    const rank = own(raw, 'r');
    const { rows, cols } = matrixDims(shape);
    if (!isUint(rank) || rank < 1 || rank > Math.min(rows, cols)) fail(`${where}: rank "r" must be an integer from 1 to ${Math.min(rows, cols)} for shape [${shape.join(', ')}], found ${describe(rank)}`);
    const all = values(rows * rank + rank * cols, 'low-rank factors');
    return { kind: 'lowrank', ...common, rank, u: all.subarray(0, rows * rank), v: all.subarray(rows * rank) };
  }
  fail(`${where}: patch kind "k" must be "s", "h", "d" or "r", found ${describe(kind)}`);
}
