/**
 * Encoding payload format v1 (the build-server side; see format.ts for the types and decoding,
 * and docs/FORMAT.md). Kept apart from decoding so the device bundle carries no msgpack encoder.
 * Deterministic: the same payload gives the same bytes.
 */
import { Packr, FLOAT32_OPTIONS } from 'msgpackr/pack';
import { toHalfBits } from './float16.ts';
import { matrixDims, shapeSize, type Payload, type PayloadHeader, type TensorPatch } from './format.ts';
import { gridBytesPerValue, type StorageGrid } from './grid.ts';
import { bytesPerValue, encodeXorMasks, type ValueCodec, type WireCodec } from './values.ts';
import { lowBitBytes, lowBitFactorBytes, lowBitScales, type LowBit, type LowBitFactors } from './lowbit.ts';
import { encodeXrMasks } from './xr.ts';
import { isUint } from './format-fields.ts';
import { UsageError } from './errors.ts';
import { ByteWriter, varintSize } from './varint.ts';

/** Wire patch, before msgpack (also used by the encoder to size payloads exactly). */
export interface WirePatch {
  t: string;
  s: number[];
  k: 's' | 'h' | 'd' | 'r' | 'c' | 'n';
  r?: number;
  b: Uint8Array;
  a: Uint8Array;
  c: WireCodec;
  q?: number;
  n?: number;
  ic?: 'g' | 'm';
  i?: Uint8Array;
  h?: number;
  nb?: number;
  sg?: boolean;
  v: Uint8Array;
  /** Composite (format v5): the sparse values, their codec, and its i8 scale. */
  w?: Uint8Array;
  wc?: ValueCodec;
  wq?: number;
  /** Codec l (format v6): bits a code (low-rank factors: a width a direction), values a scale is taken for, the scales' exponent, the float16 scales. */
  lb?: number | number[];
  lg?: number;
  le?: number;
  ls?: Uint8Array;
  /**
   * Format v2: the storage grid (`d` dtype; `sc`, `mn` float64 big-endian for uint8/uint16;
   * `sc` float64 big-endian and `zp` an integer for qint8/quint8).
   */
  g?: { d: string; sc?: Uint8Array; mn?: Uint8Array; zp?: number };
}

const GRID_WIRE: Record<StorageGrid['dtype'], string> = { float32: 'f32', uint8: 'u8', uint16: 'u16', qint8: 'qi8', quint8: 'qu8', float16: 'f16', bfloat16: 'bf16' };

/** 8 big-endian bytes of a float64. */
function float64Bytes(x: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setFloat64(0, x, false);
  return b;
}

let packr: Packr | null = null;
/** 16 hex chars to 8 bytes, big-endian (so the hex reads the same as the bytes). */
export function hexToBytes8(hex: string): Uint8Array {
  if (!/^[0-9a-f]{16}$/.test(hex)) throw new RangeError(`expected 16 lowercase hex chars, got ${JSON.stringify(hex)}`);
  const out = new Uint8Array(8);
  for (let i = 0; i < 8; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}


/** Encode sorted positions both ways and keep the smaller (bitmap wins ties: it is faster to read). */
export function encodePositions(positions: Uint32Array, size: number): { coding: 'g' | 'm'; bytes: Uint8Array } {
  const bitmapBytes = Math.ceil(size / 8);
  let gapBytes = 0;
  let prev = -1;
  for (let k = 0; k < positions.length; k++) {
    gapBytes += varintSize(positions[k] - prev - 1);
    prev = positions[k];
    if (gapBytes > bitmapBytes) break;
  }
  if (bitmapBytes <= gapBytes) {
    const bytes = new Uint8Array(bitmapBytes);
    for (let k = 0; k < positions.length; k++) bytes[positions[k] >>> 3] |= 1 << (positions[k] & 7);
    return { coding: 'm', bytes };
  }
  const w = new ByteWriter(gapBytes);
  prev = -1;
  for (let k = 0; k < positions.length; k++) {
    w.varint(positions[k] - prev - 1);
    prev = positions[k];
  }
  return { coding: 'g', bytes: w.bytes() };
}

/** The wire form of one patch, given its already-encoded value bytes. */
export function wirePatch(p: TensorPatch, factorOrValueBytes: Uint8Array): WirePatch {
  const w: WirePatch = { t: p.name, s: [...p.shape], k: p.kind === 'sparse' ? 's' : p.kind === 'hash' ? 'h' : p.kind === 'lowrank' ? 'r' : p.kind === 'composite' ? 'c' : p.replace ? 'n' : 'd', b: hexToBytes8(p.baseDigest), a: hexToBytes8(p.targetDigest), c: p.codec, v: factorOrValueBytes };
  if (p.codec === 'i8') w.q = Math.fround(p.scale as number);
  if (p.codec === 'l') {
    const f = p.kind === 'lowrank' || p.kind === 'composite' ? (p.lowbitFactors as LowBitFactors) : undefined;
    const lb = f ?? (p.lowbit as LowBit);
    if (f) w.lb = [...f.widths];
    else {
      w.lb = (lb as LowBit).bits;
      w.lg = (lb as LowBit).group;
    }
    w.le = lb.exponent;
    w.ls = new Uint8Array(lb.scales.length * 2);
    for (let i = 0; i < lb.scales.length; i++) {
      w.ls[2 * i] = lb.scales[i] & 0xff;
      w.ls[2 * i + 1] = lb.scales[i] >>> 8;
    }
  }
  if (p.kind === 'sparse') {
    const enc = encodePositions(p.positions, shapeSize(p.shape));
    w.n = p.positions.length;
    w.ic = enc.coding;
    w.i = enc.bytes;
  } else if (p.kind === 'hash') {
    w.h = p.seed >>> 0;
    w.nb = p.buckets.length;
    w.sg = p.signed;
  } else if (p.kind === 'lowrank') {
    w.r = p.rank;
  } else if (p.kind === 'composite') {
    // The factors are in v (U then V, codec c), or a dense part's codes (codec l, no rank); the
    // sparse part's values are re-encoded from their decoded form, exact for every additive codec.
    if (!p.dense) w.r = p.rank;
    const enc = encodePositions(p.positions, shapeSize(p.shape));
    w.n = p.positions.length;
    w.ic = enc.coding;
    w.i = enc.bytes;
    w.wc = p.sparseCodec;
    if (p.sparseCodec === 'i8') w.wq = Math.fround(p.sparseScale as number);
    w.w = valueBytes(p.values, p.sparseCodec, p.sparseScale);
  }
  if (p.grid) {
    const g = p.grid;
    w.g =
      g.dtype === 'uint8' || g.dtype === 'uint16' ? { d: GRID_WIRE[g.dtype], sc: float64Bytes(g.scale), mn: float64Bytes(g.min) }
      : g.dtype === 'qint8' || g.dtype === 'quint8' ? { d: GRID_WIRE[g.dtype], sc: float64Bytes(g.scale), zp: g.zeroPoint }
      : { d: GRID_WIRE[g.dtype] };
  }
  return w;
}

/** The msgpack document of a payload (header keys, then "p"): what {@link packPayload} packs. */
export function wireDocument(h: PayloadHeader, patches: WirePatch[]): Record<string, unknown> {
  // Only v2 appliers round onto storage grids: a grid in a v1 document would be ignored.
  if (h.version < 2 && patches.some((p) => p.g !== undefined || p.c === 'x')) throw new RangeError(`a payload with storage grids or codec x is format version 2, the header says ${h.version}`);
  // Only v3 appliers decode codec xr, only v4 ones codec xs; older ones refuse the version instead of misreading it.
  if (h.version < 3 && patches.some((p) => p.c === 'xr')) throw new RangeError(`a payload with codec xr is format version 3, the header says ${h.version}`);
  if (h.version < 4 && patches.some((p) => p.c === 'xs')) throw new RangeError(`a payload with codec xs is format version 4, the header says ${h.version}`);
  // Only v5 appliers know composite patches.
  if (h.version < 5 && patches.some((p) => p.k === 'c')) throw new RangeError(`a payload with a composite patch is format version 5, the header says ${h.version}`);
  // Only v6 appliers decode codec l.
  if (h.version < 6 && patches.some((p) => p.c === 'l')) throw new RangeError(`a payload with codec l is format version 6, the header says ${h.version}`);
  const o = wireHeader(h);
  o.p = patches;
  return o;
}

/**
 * The header's fields as the top level of a payload document, in the order every payload writes
 * them; a structural payload's intermediate fingerprint (`if`, FORMAT.md §17) goes after `bf`.
 */
export function wireHeader(h: PayloadHeader, intermediateFingerprint?: string): Record<string, unknown> {
  // What every decoder refuses as a corrupt payload is refused here as the caller's mistake, before
  // anything is written: a payload with a sequence of 1.5 or -1 reached every device as "corrupt".
  if (!isUint(h.sequence)) throw new UsageError(`sequence (--sequence) must be a whole number >= 0 (the update's number in its chain, 1 for the first), found ${h.sequence}`, { sequence: h.sequence });
  if (h.expiresAt !== undefined && !isUint(h.expiresAt)) throw new UsageError(`expiresAt must be whole seconds since 1970, found ${h.expiresAt}`, { expiresAt: h.expiresAt });
  const o: Record<string, unknown> = { nd: h.version, m: h.method, id: h.modelId, bf: hexToBytes8(h.baseFingerprint) };
  if (intermediateFingerprint !== undefined) o.if = hexToBytes8(intermediateFingerprint);
  o.tf = hexToBytes8(h.targetFingerprint);
  o.sq = h.sequence;
  o.bb = h.budgetBytes;
  o.cb = h.createdBy;
  if (h.createdAt !== undefined) o.ct = h.createdAt;
  if (h.expiresAt !== undefined) o.ex = h.expiresAt;
  if (h.meta !== undefined) o.x = checkedMeta(h.meta);
  return o;
}

/**
 * The metadata `x` as the format defines it (docs/format/document.md §2.2): string or integer
 * values. A fraction is refused rather than written, because the reference encoder writes any
 * non-integer number in [-2^31, 2^32) as float32 (`useFloat32: ALWAYS`, which the i8 scales
 * need): a loss of 0.1 would reach every device as 0.10000000149011612.
 */
function checkedMeta(meta: Record<string, string | number>): Record<string, string | number> {
  for (const [key, value] of Object.entries(meta)) {
    if (typeof value === 'string' || Number.isSafeInteger(value)) continue;
    const found = typeof value === 'number' ? `the number ${value}` : `a value of type ${value === null ? 'null' : typeof value}`;
    throw new UsageError(
      `metadata value "${key}" must be a string or a whole number within ±(2^53 - 1), found ${found}: the payload stores other numbers as float32, which changes them; write a fraction as a string (e.g. "${typeof value === 'number' && Number.isFinite(value) ? String(value) : '0.125'}")`,
      { key, value: typeof value === 'number' ? value : String(value) },
    );
  }
  return meta;
}

/** Encode a header and already-wired patches. Deterministic: same input, same bytes. */
export function packPayload(header: PayloadHeader, patches: WirePatch[]): Uint8Array {
  return packDocument(wireDocument(header, patches));
}

/** A payload document's msgpack bytes, owned by the caller. */
export function packDocument(doc: Record<string, unknown>): Uint8Array {
  packr ??= new Packr({ useRecords: false, variableMapSize: true, useFloat32: FLOAT32_OPTIONS.ALWAYS });
  const out = packr.pack(doc);
  // msgpackr may hand back a view on a shared buffer; copy so the caller owns the bytes.
  return new Uint8Array(out.buffer.slice(out.byteOffset, out.byteOffset + out.byteLength));
}

/** Re-encode a value array with its codec into wire bytes (exact for already-decoded values). */
export function valueBytes(values: Float32Array, codec: WireCodec, scale?: number, grid?: StorageGrid, lowbit?: LowBit): Uint8Array {
  const n = values.length;
  if (codec === 'l') return lowBitCodes(values, lowbit as LowBit);
  // Codec x: the values' bits are XOR masks (never read them as numbers: NaN bits may change).
  if (codec === 'x') return encodeXorMasks(new Uint32Array(values.buffer, values.byteOffset, n));
  if (codec === 'xr') return encodeXrMasks(new Uint32Array(values.buffer, values.byteOffset, n));
  // Codec xs: masks of the stored codes, as wide as the grid's values (1 or 2 bytes).
  if (codec === 'xs') return encodeXrMasks(new Uint32Array(values.buffer, values.byteOffset, n), gridBytesPerValue(grid) - 1);
  if (codec === 'f32') {
    const b = new Uint8Array(n * 4);
    const dv = new DataView(b.buffer);
    for (let i = 0; i < n; i++) dv.setFloat32(i * 4, values[i], true);
    return b;
  }
  if (codec === 'f16') {
    const b = new Uint8Array(n * 2);
    for (let i = 0; i < n; i++) {
      const h = halfOf(values[i]);
      b[2 * i] = h & 0xff;
      b[2 * i + 1] = h >>> 8;
    }
    return b;
  }
  const s = Math.fround(scale as number);
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = Math.round(values[i] / s) & 0xff;
  return b;
}
const halfOf = toHalfBits;

/** The values a patch carries in `v`, in wire order (low-rank and composite: U then V). */
export function patchValues(p: TensorPatch): Float32Array {
  if (p.kind === 'hash') return p.buckets;
  if (p.kind === 'lowrank' || p.kind === 'composite') {
    const all = new Float32Array(p.u.length + p.v.length);
    all.set(p.u);
    all.set(p.v, p.u.length);
    return all;
  }
  return p.values;
}

/** Encode a decoded payload (e.g. one returned by {@link decodePayload}) back to bytes. */
export function encodePayload(payload: Payload): Uint8Array {
  return packPayload(payload.header, payload.patches.map(wireOf));
}

/** The wire form of a decoded patch, its values coded again (exact for decoded values). */
export function wireOf(p: TensorPatch): WirePatch {
  if ((p.kind === 'lowrank' || p.kind === 'composite') && p.lowbitFactors) return wirePatch(p, lowBitFactorCodes(p.u, p.v, p.shape, p.lowbitFactors));
  if (p.kind === 'composite' && p.dense) return wirePatch(p, lowBitCodes(p.dense, p.lowbit as LowBit));
  if (p.kind === 'sparse' && p.codec === 'l') return wirePatch(p, lowBitCodes(p.values, p.lowbit as LowBit, p.positions));
  return wirePatch(p, valueBytes(patchValues(p), p.codec, p.scale, p.grid, p.lowbit));
}


/**
 * The code bytes of values decoded from codec l (each `code * scale` exactly: see lowbit.ts).
 * A value whose scale is 0 gets code 0 with 2 bits or more; with 1 bit, the sign of the zero.
 */
export function lowBitCodes(values: Float32Array, lb: LowBit, positions?: Uint32Array): Uint8Array {
  const out = new Uint8Array(lowBitBytes(values.length, lb.bits));
  const scales = lowBitScales(lb);
  // A sparse patch's value k takes the scale of its position (FORMAT.md §4.4).
  for (let k = 0, bit = 0; k < values.length; k++, bit += lb.bits) putCode(out, bit, values[k], scales[Math.floor((positions ? positions[k] : k) / lb.group) % scales.length], lb.bits);
  return out;
}

/** Write the `bits`-bit code of `x`, a value `code * s` exactly, at bit `bit` of `out` (1 bit: the sign of x, +0 as +1). */
function putCode(out: Uint8Array, bit: number, x: number, s: number, bits: number): void {
  const c = bits === 1 ? (x > 0 || Object.is(x, 0) ? 1 : 0) : s > 0 ? Math.round(x / s) & ((1 << bits) - 1) : 0;
  const at = Math.floor(bit / 8);
  const word = c << (bit - at * 8);
  out[at] |= word & 0xff;
  if (word > 0xff) out[at + 1] |= word >>> 8;
}

/**
 * The code bytes of low-rank factors decoded from codec l (each value `code * scale` of its
 * factor vector exactly; see lowbit.ts): direction by direction, U's column then V's row.
 */
export function lowBitFactorCodes(u: Float32Array, v: Float32Array, shape: readonly number[], f: LowBitFactors): Uint8Array {
  const { rows, cols } = matrixDims(shape);
  const r = f.widths.length;
  const out = new Uint8Array(lowBitFactorBytes(rows, cols, f.widths));
  const scales = lowBitScales({ bits: 1, group: 1, scales: f.scales, exponent: f.exponent });
  for (let k = 0, bit = 0; k < r; k++) {
    const b = f.widths[k];
    for (let i = 0; i < rows; i++, bit += b) putCode(out, bit, u[i * r + k], scales[2 * k], b);
    for (let j = 0; j < cols; j++, bit += b) putCode(out, bit, v[k * cols + j], scales[2 * k + 1], b);
  }
  return out;
}
