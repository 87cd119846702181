/**
 * Payload format v1 to v6: one msgpack document (v2 adds storage grids, key `g` of a patch, and
 * codec `x`; v3 codec `xr`; v4 codec `xs`; v5 the composite patch kind `c`; v6 codec `l`, low-bit
 * codes with a scale per group). See docs/FORMAT.md for the
 * byte-level description.
 *
 * This module is pure (no node, no tfjs): it decodes bytes into a {@link Payload} (encoding is in
 * encode.ts, so a device bundle carries no encoder), checking every count and length against the bytes actually present before it
 * allocates anything, so hostile input costs at most a few times its own size.
 */
import { PayloadFormatError, PayloadTooLargeError, UnsupportedVersionError, NonFiniteValueError, UsageError } from './errors.ts';
import { readGapsInto, readVarintsInto, scanGaps, scannedPosition } from './varint.ts';
import { toHex } from './hex.ts';
import { bin, describe, fail, isObject, isUint, own, str } from './format-fields.ts';
import { readMsgpack } from './msgpack-read.ts';
import { bytesPerValue, decodeValues, decodeXorMasks, firstNonFinite, VALUE_CODECS, xorByteLength, type ValueCodec, type WireCodec } from './values.ts';
import { openXr, type XrReader } from './xr.ts';
import { decodeLowBit, decodeLowBitFactors, lowBitFactorProblem, lowBitProblem, lowBitScales, type LowBit, type LowBitFactors } from './lowbit.ts';
import { gridBytesPerValue, type StorageGrid } from './grid.ts';

/**
 * The newest format version this code reads and writes. The encoder writes the oldest version
 * that holds the payload (so devices with an older applier still take it): 1, 2 when a patch
 * carries a storage grid or codec `x`, 3 when one uses codec `xr`, 4 when one uses codec `xs`,
 * 5 when one is composite, 6 when one uses codec `l`.
 */
export const FORMAT_VERSION = 6;
export const SUPPORTED_VERSIONS: readonly number[] = [1, 2, 3, 4, 5, 6];
/** Default cap on the size of a payload accepted for decoding (256 MiB). */
export const DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024 * 1024;

/**
 * The size cap to apply: `maxPayloadBytes`, or the default. NaN or a value that is not a number
 * is refused: it would make every size comparison false and so disable the cap.
 * @throws UsageError
 */
export function payloadLimit(maxPayloadBytes = DEFAULT_MAX_PAYLOAD_BYTES): number {
  if (typeof maxPayloadBytes !== 'number' || !(maxPayloadBytes >= 0)) throw new UsageError(`maxPayloadBytes: expected a number of bytes, found ${maxPayloadBytes}`);
  return maxPayloadBytes;
}
/** Largest tensor (in values) a patch may address: positions are uint32. */
export const MAX_TENSOR_SIZE = 0xffffffff;

/** How the diff was made; informative for reports (the applier treats all alike). */
export type DiffMethod = 'sparse' | 'hash' | 'topk' | 'drop' | 'lowrank' | 'full' | 'dense' | 'lowbit';
export const DIFF_METHODS: readonly DiffMethod[] = ['sparse', 'hash', 'topk', 'drop', 'lowrank', 'full', 'dense', 'lowbit'];

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
  /**
   * How `values` are coded. With `x` (format v2, sparse and dense patches) they are not
   * deltas: each holds the XOR of the new and the old float32 bits (read them as bits, through a
   * Uint32Array view, never as numbers); with `xs` (format v4) the XOR of the new and the old
   * stored code on the patch's grid (1 or 2 bytes; see `gridCode` in grid.ts).
   */
  codec: WireCodec;
  /** i8 only. */
  scale?: number;
  /** Codec `l` only (format v6): bits a value, the scales and how values share them (lowbit.ts). */
  lowbit?: LowBit;
  /**
   * Format v2: the storage grid of the tensor (docs/FORMAT.md §5.1). Every value the patch
   * writes is rounded onto it, so the tensor stays storable in its own dtype.
   */
  grid?: StorageGrid;
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

/** A whole-tensor delta, or (`replace`) the tensor's new values. */
export interface DensePatch extends PatchCommon {
  kind: 'dense';
  values: Float32Array;
  /**
   * Kind `n` on the wire (codec `l` only, later within v6): `values` are the tensor's new values,
   * not a delta; each weight becomes its value (rounded onto the grid when there is one).
   */
  replace?: true;
}

/**
 * A low-rank delta `U · V` with U of [rows x rank] and V of [rank x cols], where cols is the
 * tensor's last dimension and rows the product of the others (a 1-D tensor is one row).
 */
export interface LowRankPatch extends PatchCommon {
  kind: 'lowrank';
  rank: number;
  /** Codec `l` only: each direction's width and its factor vectors' scales (lowbit.ts). */
  lowbitFactors?: LowBitFactors;
  /** U, row-major [rows x rank]. */
  u: Float32Array;
  /** V, row-major [rank x cols]. */
  v: Float32Array;
}

/**
 * Format v5: a low-rank part and a sparse part of one tensor, applied together with one write
 * per weight: at every position the low-rank delta (accumulated as in {@link LowRankPatch}),
 * plus the sparse value where the position is one of `positions`, is added to the weight
 * (docs/FORMAT.md §5.2). The factors use the patch's `codec` and `scale`; the sparse values
 * have their own.
 */
export interface CompositePatch extends PatchCommon {
  kind: 'composite';
  /** The rank of the factors; 0 for a dense part in codec l (`dense`, `lowbit`) instead. */
  rank: number;
  /**
   * Codec `l` only: a dense part instead of the factors, every value as its code decodes it
   * (`lowbit` the layout): the largest changes then ride in the sparse part at higher precision.
   */
  dense?: Float32Array;
  /** Codec `l` only: each direction's width and its factor vectors' scales (lowbit.ts). */
  lowbitFactors?: LowBitFactors;
  /** U, row-major [rows x rank]. */
  u: Float32Array;
  /** V, row-major [rank x cols]. */
  v: Float32Array;
  /** Strictly increasing flat positions of the sparse part. */
  positions: Uint32Array;
  /** The sparse part's exact float32 values, one per position. */
  values: Float32Array;
  /** Wire coding chosen for the positions. */
  positionCoding: 'gaps' | 'bitmap';
  /** Codec of the sparse values (`f32`, `f16` or `i8`). */
  sparseCodec: ValueCodec;
  /** i8 sparse values only: their float32 scale. */
  sparseScale?: number;
}

export type TensorPatch = SparsePatch | HashPatch | DensePatch | LowRankPatch | CompositePatch;

/** The matrix view of a tensor for low-rank patches: cols = last dimension. */
export function matrixDims(shape: readonly number[]): { rows: number; cols: number } {
  const cols = shape.length ? shape[shape.length - 1] : 1;
  return { rows: cols === 0 ? 0 : shapeSize(shape) / cols, cols };
}

export interface Payload {
  header: PayloadHeader;
  patches: TensorPatch[];
}

/** Values (sparse entries, dense values) per piece when a patch is decoded a piece at a time. */
export const CHUNK_VALUES = 1 << 16;

/** A piece of a patch (see {@link PatchSource.chunks}). */
export interface PatchChunk {
  /**
   * A sparse patch with some of the entries (positions are the tensor's), a dense patch with
   * the values from `offset` on, or the whole hashed or low-rank patch.
   */
  patch: TensorPatch;
  /** Where a dense piece's values start in the tensor; 0 otherwise. */
  offset: number;
}

/**
 * A patch the decoder checked, without its arrays: they are decoded again, a piece at a time,
 * each time {@link chunks} is iterated, so applying a payload never holds all of it decoded.
 */
export interface PatchSource {
  name: string;
  shape: number[];
  kind: TensorPatch['kind'];
  codec: WireCodec;
  scale?: number;
  grid?: StorageGrid;
  baseDigest: string;
  targetDigest: string;
  /** Values the patch writes: its entries (sparse) or the tensor's size. */
  written: number;
  /**
   * The patch in pieces of at most `CHUNK_VALUES` (65,536) values (hashed and low-rank: one
   * piece). A piece's arrays are reused for the next one: copy what must outlive the step.
   * Each piece is checked again as it is decoded (the bytes may have changed since the check).
   * With `count`, only the first `count` entries (sparse) or values (dense) are decoded: what
   * undoing a patch applied that far needs.
   */
  chunks(count?: number): Iterable<PatchChunk>;
  /**
   * Check the whole patch as {@link chunks} would, piece by piece, without decoding its values
   * (their bytes are checked for NaN and infinity): throws what decoding would throw.
   */
  check(): void;
  /**
   * A sparse or dense patch's bytes as the payload holds them (views; {@link check} checked
   * them), for an applier that decodes and applies in one step: the position coding and bytes
   * of a sparse patch, and the value bytes.
   */
  wire?: { coding?: 'gaps' | 'bitmap'; positions?: Uint8Array; values: Uint8Array };
}

/** A payload checked by {@link openPayload}: the header and a source per patch. */
export interface OpenedPayload {
  header: PayloadHeader;
  patches: PatchSource[];
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


/** 8 bytes to 16 hex chars (big-endian, as the bytes read). */
export const bytes8ToHex: (b: Uint8Array) => string = toHex;


export interface DecodeOptions {
  /** Refuse larger inputs before parsing (default 256 MiB). */
  maxPayloadBytes?: number;
}

/**
 * Decode and validate payload bytes. Checks structure, types, counts, position order and
 * range within each tensor's declared shape, and that every value is finite. It does not
 * look at any model: the applier checks the payload against the model next.
 *
 * @throws PayloadTooLargeError, PayloadFormatError, UnsupportedVersionError, NonFiniteValueError
 */
export function decodePayload(bytes: Uint8Array, options: DecodeOptions = {}): Payload {
  return readPayload(bytes, options, materialize);
}

/**
 * Check payload bytes as {@link decodePayload} does (every position and value is decoded once)
 * but keep only what the patches need to be decoded again, a piece at a time: the applier
 * holds a piece of a patch at a time, not the whole payload decoded.
 *
 * @throws PayloadTooLargeError, PayloadFormatError, UnsupportedVersionError, NonFiniteValueError
 */
export function openPayload(bytes: Uint8Array, options: DecodeOptions = {}): OpenedPayload {
  return readPayload(bytes, options, (patch) => {
    // Every position and value checked, nothing kept: a bad one is refused here, before
    // anything is written.
    patch.check();
    return patch;
  });
}

/** A decoded patch as a source of one piece (for payloads decoded with {@link decodePayload}). */
export function patchSource(patch: TensorPatch): PatchSource {
  const { name, shape, kind, codec, scale, grid, baseDigest, targetDigest } = patch;
  return {
    name, shape, kind, codec, ...(scale !== undefined ? { scale } : {}), ...(grid ? { grid } : {}), baseDigest, targetDigest,
    written: kind === 'sparse' ? patch.positions.length : shapeSize(shape),
    chunks: () => [{ patch, offset: 0 }],
    check: () => {},
  };
}

/** The whole patch from its pieces (copied: a piece is valid only until the next). */
function materialize(src: PatchSource): TensorPatch {
  const n = src.written;
  let positions: Uint32Array | undefined;
  let values: Float32Array | undefined;
  let first: TensorPatch | undefined;
  let at = 0;
  for (const { patch } of src.chunks()) {
    if (patch.kind === 'hash' || patch.kind === 'lowrank' || patch.kind === 'composite') return patch; // one piece, not a scratch view
    first ??= patch;
    values ??= new Float32Array(n);
    values.set(patch.values, at);
    if (patch.kind === 'sparse') (positions ??= new Uint32Array(n)).set(patch.positions, at);
    at += patch.values.length;
  }
  return { ...(first as TensorPatch), values, ...(positions ? { positions } : {}) } as TensorPatch;
}

/** Piece buffers for the decoders, reused while no other iteration holds them. */
let scratch: { positions: Uint32Array; values: Float32Array } | undefined;
let scratchBusy = false;

function takeScratch(): { positions: Uint32Array; values: Float32Array } {
  if (scratchBusy) return { positions: new Uint32Array(CHUNK_VALUES), values: new Float32Array(CHUNK_VALUES) };
  scratchBusy = true;
  return (scratch ??= { positions: new Uint32Array(CHUNK_VALUES), values: new Float32Array(CHUNK_VALUES) });
}

function releaseScratch(buf: { positions: Uint32Array }): void {
  if (buf === scratch) scratchBusy = false;
}

/** Decode the header and pass each patch, in order, through `each` (which decodes its pieces). */
function readPayload<T>(bytes: Uint8Array, options: DecodeOptions, each: (patch: PatchSource) => T): { header: PayloadHeader; patches: T[] } {
  const limit = payloadLimit(options.maxPayloadBytes);
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
  let doc: unknown;
  try {
    // One pass that checks the structure as it reads (msgpack-read.ts): every declared length
    // within the input, no extension types, bounded nesting and value count, nothing after the
    // document. Integers of any width (uint64 0xcf as other languages write u64 fields) become
    // numbers; beyond 2^53 the range checks below refuse them. Binaries are views into `bytes`.
    doc = readMsgpack(bytes);
  } catch (e) {
    fail(`malformed msgpack: ${(e as Error).message}`, { cause: (e as Error).message });
  }
  if (!isObject(doc)) fail(`expected a map at the top level, found ${describe(doc)}`);
  const version = own(doc, 'nd');
  if (version === undefined) fail('missing the format version field "nd"');
  if (version === 7) {
    // A structural payload (FORMAT.md §17) changes the model's structure: no store of weights in
    // memory (a live tfjs model, a model loaded by a runtime) can take it.
    throw new UnsupportedVersionError(version, SUPPORTED_VERSIONS, 'it is a structural payload (the model\'s tensors or graph changed): apply it to the model\'s files with neural-diff/rebuild (rebuildModelDir, rebuildOnnxFile, rebuildTfliteFile) or `ndiff apply`, then reload the model from them');
  }
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
  const patches = rawPatches.map((raw, index) => {
    const patch = readPatch(raw, index, version as number);
    if (names.has(patch.name)) fail(`patch ${index}: tensor ${JSON.stringify(patch.name)} is patched twice`);
    names.add(patch.name);
    return each(patch);
  });
  return { header, patches };
}

/** Wire names of the storage grid dtypes (`g.d`). */
const GRID_DTYPES: Record<string, StorageGrid['dtype']> = { f32: 'float32', u8: 'uint8', u16: 'uint16', qi8: 'qint8', qu8: 'quint8', f16: 'float16', bf16: 'bfloat16' };

/** A float64 from 8 big-endian bytes. */
function float64BE(b: Uint8Array): number {
  return new DataView(b.buffer, b.byteOffset, 8).getFloat64(0, false);
}

/** Format v2's storage grid `g` of a patch (absent: none). */
function readGrid(raw: Record<string, unknown>, where: string): StorageGrid | undefined {
  const g = own(raw, 'g');
  if (g === undefined) return undefined;
  if (!isObject(g)) fail(`${where}: storage grid "g" must be a map, found ${describe(g)}`);
  const d = own(g, 'd');
  const dtype = typeof d === 'string' ? (own(GRID_DTYPES, d) as StorageGrid['dtype'] | undefined) : undefined;
  if (!dtype) fail(`${where}: storage grid dtype "g.d" must be one of ${Object.keys(GRID_DTYPES).join(', ')}, found ${describe(d)}`);
  if (dtype[0] !== 'u' && dtype[0] !== 'q') return { dtype } as StorageGrid;
  // uint8/uint16: a scale and a min (float64); qint8/quint8 (ONNX): a float32 scale and an
  // integer zero point of the dtype's range.
  const scale = float64BE(bin(g, 'sc', `${where} grid`, 8));
  const q = dtype[0] === 'q';
  const lo = dtype === 'qint8' ? -128 : 0;
  const x = q ? own(g, 'zp') : float64BE(bin(g, 'mn', `${where} grid`, 8));
  if (!(scale > 0) || !Number.isFinite(scale) || !(q ? Math.fround(scale) === scale && Number.isInteger(x) && (x as number) >= lo && (x as number) <= lo + 255 : Number.isFinite(x))) {
    fail(`${where}: storage grid "g" needs a finite scale "sc" > 0 and ${q ? `a zero point "zp", an integer in [${lo}, ${lo + 255}], with a float32 scale` : 'a finite min "mn"'}, found ${scale} and ${describe(x)}`);
  }
  return (q ? { dtype, scale, zeroPoint: x } : { dtype, scale, min: x }) as StorageGrid;
}

function readPatch(raw: unknown, index: number, version: number): PatchSource {
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
  const codec = own(raw, 'c') as WireCodec;
  // Codec xr (v3): codec x's masks, their high bytes range-coded (src/core/xr.ts). Codec xs
  // (v4): the same layout over masks of the stored code on the patch's grid (1 or 2 bytes).
  const xs = codec === 'xs' && version > 3;
  const xr = (codec === 'xr' && version > 2) || xs;
  const isXor = xr || (codec === 'x' && version > 1);
  // Codec l (v6): low-bit codes and their scales, for dense patches, and later within v6 for
  // low-rank factors and a composite patch's factors or dense codes.
  const isLow = codec === 'l' && version > 5;
  if (!isXor && !isLow && !VALUE_CODECS.includes(codec as ValueCodec)) fail(`${where}: value codec "c" must be one of ${VALUE_CODECS.join(', ')}${version > 1 ? ', x' : ''}${version > 2 ? ', xr' : ''}${version > 3 ? ', xs' : ''}${version > 5 ? ', l' : ''}, found ${describe(codec)}`);
  // A composite's part in codec l: factors ("lb" an array of widths) or dense codes ("lb" a uint).
  const lowFactors = isLow && (kind === 'r' || (kind === 'c' && Array.isArray(own(raw, 'lb'))));
  if (isLow && kind === 'h') fail(`${where}: codec "l" is not for hashed patches`);
  if (isXor && kind !== 's' && kind !== 'd') fail(`${where}: value codec "${codec}" (exact bits) is for sparse and dense patches only, found kind ${describe(kind)}`);
  let scale: number | undefined;
  if (codec === 'i8') {
    const q = own(raw, 'q');
    if (typeof q !== 'number' || !Number.isFinite(q) || q <= 0 || Math.fround(q) !== q) fail(`${where}: int8 scale "q" must be a positive finite float32, found ${describe(q)}`);
    scale = q;
  }
  // v1 ignores unknown keys, "g" included: only a v2 payload rounds onto a grid.
  const grid = version >= 2 ? readGrid(raw, where) : undefined;
  // Codec xs: masks as wide as the grid's stored values; the low byte of a 2-byte mask raw.
  const xsLow = grid ? gridBytesPerValue(grid) - 1 : 3;
  if (xs && xsLow > 1) fail(`${where}: value codec "xs" (exact stored bits) needs a storage grid "g" of 1 or 2 bytes a value (u8, u16, qi8, qu8, f16, bf16), found ${grid ? `"${grid.dtype}"` : 'none'}`);
  let lowbit: LowBit | undefined;
  let lowbitFactors: LowBitFactors | undefined;
  let lowScales: Float64Array | undefined;
  if (isLow) {
    const ls = bin(raw, 'ls', where);
    if (ls.length & 1) fail(`${where}: "ls" must be float16 scales, found ${ls.length} bytes`);
    const scales = new Uint16Array(ls.length >> 1);
    for (let i = 0; i < scales.length; i++) scales[i] = ls[2 * i] | (ls[2 * i + 1] << 8);
    // As the payload holds them: lowbit.ts refuses what is not an integer in range ("8" and true too).
    const num = (k: string) => own(raw, k) as number;
    if (lowFactors) {
      // A width a direction ("lb" an array, checked with the rest) and a scale a factor vector: no group.
      const lb = own(raw, 'lb');
      if (own(raw, 'lg') !== undefined) fail(`${where}: low-rank factors of codec l take no group "lg"`);
      lowbitFactors = { widths: Array.isArray(lb) ? lb : [], exponent: num('le'), scales };
    } else lowbit = { bits: num('lb'), group: num('lg'), exponent: num('le'), scales };
  }
  const common = {
    name,
    shape,
    baseDigest: bytes8ToHex(bin(raw, 'b', where, 8)),
    targetDigest: bytes8ToHex(bin(raw, 'a', where, 8)),
    codec,
    ...(scale !== undefined ? { scale } : {}),
    ...(lowbit ? { lowbit } : {}),
    ...(lowbitFactors ? { lowbitFactors } : {}),
    ...(grid ? { grid } : {}),
    // Kind n (codec l, later within v6): dense codes of the tensor's new values.
    ...(kind === 'n' ? { replace: true as const } : {}),
  };
  const v = bin(raw, 'v', where);
  const bpv = isXor || isLow ? 0 : bytesPerValue(codec as ValueCodec);
  let total = 0;
  const need = (count: number, what: string): void => {
    total = count;
    if (lowbit) {
      const problem = lowBitProblem(v, count, lowbit, size);
      if (problem) fail(`${where}: ${what} of codec l: ${problem}`);
      lowScales = lowBitScales(lowbit);
    } else if (xr) reader = openXr(v, count, `${where}: ${what}`, xs ? xsLow : 3);
    else if (isXor) {
      const want = xorByteLength(v, count);
      if (want !== v.length) fail(`${where}: ${what} "v" of codec x must be ${count > 0 ? `${(count + 3) >> 2} bytes of lengths and the masks they measure${want >= 0 ? `, ${want} bytes in all` : ''}` : 'empty'}, found ${v.length} bytes`);
    } else if (v.length !== count * bpv) fail(`${where}: ${what} "v" must be ${count} x ${bpv} = ${count * bpv} bytes for codec ${codec}, found ${v.length}`);
  };
  // Exact bits, masks [k, k + m) into `out`, or only checked (null). Pieces are read in order,
  // from the first: `at` is where the next mask starts (codec x); codec xr's reader keeps its own.
  let at = 0;
  let reader: XrReader;
  const masksAt = (k: number, m: number, out: Uint32Array | null): void => {
    if (xr) reader.read(k, m, out);
    else if (out) at = decodeXorMasks(v, k, k ? at : (total + 3) >> 2, out);
  };
  // Values [k, k + m), decoded (into `into` when given; the lengths were checked with `need`);
  // `positions`: a sparse patch's, whose values in codec l take their positions' scales.
  const valuesAt = (k: number, m: number, into?: Float32Array, positions?: Uint32Array): Float32Array => {
    if (isXor) {
      const out = into ?? new Float32Array(m);
      // The masks go into the array's bits; they are bits, not numbers (see PatchCommon.codec).
      masksAt(k, m, new Uint32Array(out.buffer, out.byteOffset, m));
      return out;
    }
    // Codec l: finite by construction (finite scales, small integer codes; see lowbit.ts).
    if (lowbit) return decodeLowBit(v, lowbit, lowScales as Float64Array, k, into ?? new Float32Array(m), positions);
    const out = decodeValues(v.subarray(k * bpv, (k + m) * bpv), codec as ValueCodec, scale, into);
    if (!(out instanceof Float32Array)) {
      const at = k + out.nonFiniteAt;
      throw new NonFiniteValueError(`${where}: value ${at} is NaN or infinite; a valid payload never carries one: rebuild the payload (the model it came from may have diverged)`, { tensor: name, index: at });
    }
    return out;
  };
  // Values [k, k + m) checked on their bytes, not decoded.
  // (Codec x: any bits are a mask, and its lengths were checked with `need`; codec xr: the
  // stream is decoded, not kept, to see that it ends where it must. What a mask makes of a
  // weight is checked when it is applied.)
  const checkValuesAt = (k: number, m: number): void => {
    if (isXor) return masksAt(k, m, null);
    if (lowbit) return;
    const bad = firstNonFinite(v.subarray(k * bpv, (k + m) * bpv), codec as ValueCodec, scale);
    if (bad >= 0) valuesAt(k + bad, 1);
  };
  // Low-rank factors U [rows x rank] then V [rank x cols]: their layout and byte counts checked
  // against the declared shape and rank (nothing allocated), ...
  const checkFactors = (rows: number, cols: number, rank: number): void => {
    if (lowbitFactors) {
      const problem = lowBitFactorProblem(v, rows, cols, rank, lowbitFactors);
      if (problem) fail(`${where}: low-rank factors of codec l: ${problem}`);
    } else need(rows * rank + rank * cols, 'low-rank factors');
  };
  // ... their values checked on their bytes (NaN, infinity; codec l is finite by construction), ...
  const checkFactorValues = (rows: number, cols: number, rank: number): void => {
    if (!lowbitFactors) checkValuesAt(0, rows * rank + rank * cols);
  };
  // ... and decoded, only when the patch is applied (after the applier matched its shape to the
  // model's tensor): 1-bit codes decode to 32 times their bytes.
  const factorsOf = (rows: number, cols: number, rank: number): { u: Float32Array; v: Float32Array } => {
    if (lowbitFactors) return decodeLowBitFactors(v, lowbitFactors, rows, cols);
    const all = valuesAt(0, rows * rank + rank * cols);
    return { u: all.subarray(0, rows * rank), v: all.subarray(rows * rank) };
  };
  const source = (k: TensorPatch['kind'], written: number, pieces: (decode: boolean, count: number) => Generator<PatchChunk>, wire?: PatchSource['wire']): PatchSource => ({
    ...common, kind: k, written, chunks: (count = written) => pieces(true, Math.min(count, written)), check: () => {
      for (const piece of pieces(false, written)) void piece;
    },
    ...(wire ? { wire } : {}),
  });
  // A patch of one piece, made when it is decoded; `verify` checks it without decoding (check()).
  const whole = (kind: TensorPatch['kind'], make: () => TensorPatch, verify: () => void = () => {}) => source(kind, size, function* (decode) {
    if (decode) yield { patch: make(), offset: 0 };
    else verify();
  });

  if (kind === 's') {
    const n = own(raw, 'n');
    const coding = own(raw, 'ic');
    const posBytes = bin(raw, 'i', where);
    if (!isUint(n, size)) fail(`${where}: count "n" must be an integer from 0 to the tensor size ${size}, found ${describe(n)}`);
    // Check the value bytes against the count before allocating positions for it.
    need(n, 'values');
    const len = posBytes.length;
    // The gaps of entries [k, k + m) at byte `at` did not decode to positions within the
    // tensor: decode them one step at a time to say what is wrong.
    const gapFault = (at: number, positions: Uint32Array, prev: number, k: number, m: number): never => {
      at = readVarintsInto(posBytes, at, positions);
      if (at < 0 || (k + m === n && at !== len)) fail(`${where}: position gaps "i" are not ${n} well-formed varints filling ${len} bytes`);
      for (let j = 0; j < m; j++) {
        const pos = prev + 1 + positions[j];
        if (pos >= size) fail(`${where}: position ${pos} (entry ${k + j}) is out of range for shape [${shape.join(', ')}] (${size} values)`);
        prev = pos;
      }
      return fail(`${where}: position gaps "i" did not decode (entries ${k} to ${k + m - 1})`);
    };
    if (coding === 'm') {
      const expected = Math.ceil(size / 8);
      if (len !== expected) fail(`${where}: bitmap "i" must be ${expected} bytes for ${size} values, found ${len}`);
      if (size % 8 !== 0 && posBytes[len - 1] >>> (size % 8) !== 0) fail(`${where}: bitmap marks positions past the tensor's end (${size} values)`);
    } else if (coding === 'g') {
      if (n > len) fail(`${where}: count ${n} needs at least ${n} bytes of gaps, found ${len}`);
    } else {
      fail(`${where}: position coding "ic" must be "g" (gaps) or "m" (bitmap), found ${describe(coding)}`);
    }
    return source('sparse', n, function* (decode, count) {
      // Positions CHUNK_VALUES at a time: from the bitmap's set bits, or the running sum of the gaps.
      const buf = takeScratch();
      try {
        let k = 0;
        let at = 0; // bitmap: the byte being read; gaps: the next varint
        let bits = coding === 'm' && len ? posBytes[0] : 0;
        let prev = -1;
        do {
          const m = Math.min(CHUNK_VALUES, count - k);
          const positions = buf.positions.subarray(0, m);
          if (coding === 'm') {
            for (let j = 0; j < m; j++, k++) {
              while (!bits) {
                if (++at >= len) fail(`${where}: bitmap marks ${k} positions, the count says ${n}`);
                bits = posBytes[at];
              }
              positions[j] = at * 8 + 31 - Math.clz32(bits & -bits);
              bits &= bits - 1;
            }
            if (k === n) {
              for (let b = at + 1; b < len; b++) bits |= posBytes[b];
              if (bits) fail(`${where}: bitmap marks more positions than the count ${n}`);
            }
          } else {
            // Checking needs no positions: the gaps' sum says where the last one is.
            const next = decode ? readGapsInto(posBytes, at, positions, prev, size) : scanGaps(posBytes, at, m, prev, size);
            if (next < 0 || (k + m === n && next !== len)) gapFault(at, positions, prev, k, m);
            at = next;
            if (m) prev = decode ? positions[m - 1] : scannedPosition;
            k += m;
          }
          if (decode) yield { patch: { kind: 'sparse', ...common, positions, positionCoding: coding === 'm' ? 'bitmap' : 'gaps', values: valuesAt(k - m, m, buf.values.subarray(0, m), positions) }, offset: 0 };
          else checkValuesAt(k - m, m);
        } while (k < count);
      } finally {
        releaseScratch(buf);
      }
    }, { coding: coding === 'm' ? 'bitmap' : 'gaps', positions: posBytes, values: v });
  }
  if (kind === 'h') {
    const seed = own(raw, 'h');
    const nb = own(raw, 'nb');
    const signed = own(raw, 'sg');
    if (!isUint(seed, 0xffffffff)) fail(`${where}: hash seed "h" must be a uint32, found ${describe(seed)}`);
    if (!isUint(nb, 0xffffffff) || nb < 1) fail(`${where}: bucket count "nb" must be a positive integer, found ${describe(nb)}`);
    if (typeof signed !== 'boolean') fail(`${where}: sign flag "sg" must be a boolean, found ${describe(signed)}`);
    need(nb, 'bucket values');
    return whole('hash', () => ({ kind: 'hash', ...common, seed, signed, buckets: valuesAt(0, nb) }), () => checkValuesAt(0, nb));
  }
  if (kind === 'd' || (kind === 'n' && isLow)) {
    need(size, 'dense values');
    return source('dense', size, function* (decode, count) {
      if (!decode) return checkValuesAt(0, size);
      // Values CHUNK_VALUES at a time; a piece patches the tensor's values from `offset`.
      const buf = takeScratch();
      try {
        let k = 0;
        do {
          const m = Math.min(CHUNK_VALUES, count - k);
          yield { patch: { kind: 'dense', ...common, values: valuesAt(k, m, buf.values.subarray(0, m)) }, offset: k };
          k += m;
        } while (k < count);
      } finally {
        releaseScratch(buf);
      }
    }, lowbit ? undefined : { values: v });
  }
  if (kind === 'r') {
    const rank = own(raw, 'r');
    const { rows, cols } = matrixDims(shape);
    if (!isUint(rank) || rank < 1 || rank > Math.min(rows, cols)) fail(`${where}: rank "r" must be an integer from 1 to ${Math.min(rows, cols)} for shape [${shape.join(', ')}], found ${describe(rank)}`);
    checkFactors(rows, cols, rank);
    return whole('lowrank', () => ({ kind: 'lowrank', ...common, rank, ...factorsOf(rows, cols, rank) }), () => checkFactorValues(rows, cols, rank));
  }
  if (kind === 'c' && version >= 5) {
    // Composite (v5): the low-rank keys (r, and U then V in v with codec c) and the sparse
    // keys (n, ic, i) with the sparse values in w, coded by wc (and wq for i8).
    // With dense codes in codec l (v6) in place of the factors: no rank.
    const rank = own(raw, 'r');
    const { rows, cols } = matrixDims(shape);
    if (lowbit && rank !== undefined) fail(`${where}: dense codes of codec l take no rank "r"`);
    if (!lowbit && (!isUint(rank) || rank < 1 || rank > Math.min(rows, cols))) fail(`${where}: rank "r" must be an integer from 1 to ${Math.min(rows, cols)} for shape [${shape.join(', ')}], found ${describe(rank)}`);
    if (lowbit) need(size, 'dense codes');
    else checkFactors(rows, cols, rank as number);
    const n = own(raw, 'n');
    if (!isUint(n, size)) fail(`${where}: count "n" must be an integer from 0 to the tensor size ${size}, found ${describe(n)}`);
    const wc = own(raw, 'wc') as ValueCodec;
    if (!VALUE_CODECS.includes(wc)) fail(`${where}: sparse value codec "wc" must be one of ${VALUE_CODECS.join(', ')}, found ${describe(wc)}`);
    let sparseScale: number | undefined;
    if (wc === 'i8') {
      const q = own(raw, 'wq');
      if (typeof q !== 'number' || !Number.isFinite(q) || q <= 0 || Math.fround(q) !== q) fail(`${where}: int8 sparse scale "wq" must be a positive finite float32, found ${describe(q)}`);
      sparseScale = q;
    }
    // The value bytes are checked against the count before positions are allocated for it.
    const w = bin(raw, 'w', where);
    if (w.length !== n * bytesPerValue(wc)) fail(`${where}: sparse values "w" must be ${n} x ${bytesPerValue(wc)} = ${n * bytesPerValue(wc)} bytes for codec ${wc}, found ${w.length}`);
    const coding = own(raw, 'ic');
    const posBytes = bin(raw, 'i', where);
    // Checked here without decoding (positions counted, not kept); decoded when applied.
    readAllPositions(posBytes, coding, n, size, shape, where, false);
    const sparseValues = (): Float32Array => {
      const values = decodeValues(w, wc, sparseScale);
      if (!(values instanceof Float32Array)) throw new NonFiniteValueError(`${where}: sparse value ${values.nonFiniteAt} is NaN or infinite; a valid payload never carries one: rebuild the payload (the model it came from may have diverged)`, { tensor: name, index: values.nonFiniteAt });
      return values;
    };
    return whole('composite', () => ({
      kind: 'composite', ...common, rank: lowbit ? 0 : (rank as number),
      ...(lowbit ? { u: new Float32Array(0), v: new Float32Array(0), dense: valuesAt(0, size) } : factorsOf(rows, cols, rank as number)),
      positions: readAllPositions(posBytes, coding, n, size, shape, where, true) as Uint32Array, values: sparseValues(), positionCoding: coding === 'm' ? 'bitmap' : 'gaps', sparseCodec: wc, ...(sparseScale !== undefined ? { sparseScale } : {}),
    }), () => {
      if (!lowbit) checkFactorValues(rows, cols, rank as number);
      const bad = firstNonFinite(w, wc, sparseScale);
      if (bad >= 0) sparseValues();
    });
  }
  fail(`${where}: patch kind "k" must be "s", "h", "d", "r"${version >= 5 ? ' or "c"' : ''}, found ${describe(kind)}${kind === 'c' ? ` (a composite patch needs format version 5, the header says ${version})` : ''}`);
}

/**
 * All `n` positions of a composite patch's sparse part, decoded and checked at once (the part is
 * applied with its low-rank part, a whole tensor at a time): a bitmap (`ic` = `m`) or varint
 * gaps (`g`), strictly increasing and within the tensor's `size` values.
 */
function readAllPositions(posBytes: Uint8Array, coding: unknown, n: number, size: number, shape: readonly number[], where: string, keep: boolean): Uint32Array | null {
  const len = posBytes.length;
  // Only checked (keep false): nothing the size of n is allocated.
  const positions = keep ? new Uint32Array(n) : null;
  if (coding === 'm') {
    if (len !== Math.ceil(size / 8)) fail(`${where}: bitmap "i" must be ${Math.ceil(size / 8)} bytes for ${size} values, found ${len}`);
    let k = 0;
    for (let at = 0; at < len; at++) {
      for (let bits = posBytes[at]; bits; bits &= bits - 1) {
        const pos = at * 8 + 31 - Math.clz32(bits & -bits);
        if (pos >= size) fail(`${where}: bitmap marks positions past the tensor's end (${size} values)`);
        if (k >= n) fail(`${where}: bitmap marks more positions than the count ${n}`);
        if (positions) positions[k] = pos;
        k++;
      }
    }
    if (k !== n) fail(`${where}: bitmap marks ${k} positions, the count says ${n}`);
  } else if (coding === 'g') {
    if (n > len) fail(`${where}: count ${n} needs at least ${n} bytes of gaps, found ${len}`);
    const end = positions ? readGapsInto(posBytes, 0, positions, -1, size) : scanGaps(posBytes, 0, n, -1, size);
    if (end !== len) fail(`${where}: position gaps "i" are not ${n} well-formed varints filling ${len} bytes, each leading to a position within shape [${shape.join(', ')}] (${size} values)`);
  } else {
    fail(`${where}: position coding "ic" must be "g" (gaps) or "m" (bitmap), found ${describe(coding)}`);
  }
  return positions;
}
