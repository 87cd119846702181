/**
 * Storage grids: how a device stores a tensor when it is not float32 (TF.js uint8/uint16
 * quantization with a scale and a min, ONNX int8/uint8 linear quantization with a scale and a
 * zero point, float16, bfloat16). A patch that names the grid of its
 * tensor (format v2, key `g`; docs/FORMAT.md §5.1) has every value it writes rounded onto that
 * grid, so the patched tensor can be stored in its own dtype again, bit-exact on every device,
 * and the model keeps its size. Pure arithmetic, no I/O.
 */
import { fromHalfBits, HALF_MAX, toHalfBits } from './float16.ts';

/** A tensor stored as float32: no rounding (what stores report for plain float32 tensors). */
export interface Float32Grid {
  dtype: 'float32';
}
/** TF.js affine quantization: value = fround(q × scale + min), q an integer in [0, 255] or [0, 65535]. */
export interface AffineGrid {
  dtype: 'uint8' | 'uint16';
  /** float64 scale (> 0), exactly as the model file gives it. */
  scale: number;
  /** float64 offset, exactly as the model file gives it. */
  min: number;
}
/**
 * ONNX linear quantization per tensor (the input of a `DequantizeLinear` with a scalar scale):
 * value = fround((q − zeroPoint) × scale), q an integer in [−128, 127] (`qint8`, INT8) or
 * [0, 255] (`quint8`, UINT8), as onnxruntime dequantizes in float32.
 */
export interface LinearQuantGrid {
  dtype: 'qint8' | 'quint8';
  /** The float32 scale (finite, > 0), as the model's FLOAT scale tensor holds it. */
  scale: number;
  /** The zero point, an integer of the grid's range (0 when the model has none). */
  zeroPoint: number;
}
/** IEEE binary16 or bfloat16 storage. */
export interface HalfGrid {
  dtype: 'float16' | 'bfloat16';
}
export type StorageGrid = Float32Grid | AffineGrid | LinearQuantGrid | HalfGrid;
/** The grids whose values are integers times a scale. */
export type IntegerGrid = AffineGrid | LinearQuantGrid;

/** Is the grid one of integers times a scale (uint8/uint16, qint8/quint8)? */
export function isIntegerGrid(grid: StorageGrid): grid is IntegerGrid {
  return grid.dtype[0] === 'u' || grid.dtype[0] === 'q';
}

/** Bytes one value takes in storage. */
export function gridBytesPerValue(grid: StorageGrid | undefined): number {
  const d = grid?.dtype ?? 'float32';
  return d === 'float32' ? 4 : d === 'uint8' || d[0] === 'q' ? 1 : 2;
}

/**
 * A grid for messages: `uint8 (scale 0.0039, min -0.5)`, `qint8 (scale 0.02, zero point 3)`.
 * Numbers print as the shortest string that reads back as the same float64, so two grids print
 * alike exactly when they round alike (a min of −0 prints as 0, and rounds as +0 does).
 */
export function describeGrid(grid: StorageGrid | undefined): string {
  const g = (grid ?? { dtype: 'float32' }) as { dtype: string; scale?: number; min?: number; zeroPoint?: number };
  return g.scale === undefined ? g.dtype : `${g.dtype} (scale ${g.scale}, ${g.min === undefined ? `zero point ${g.zeroPoint}` : `min ${g.min}`})`;
}

/** Do two grids round the same way? (dtype, and scale, min and zero point as numbers; see {@link describeGrid}.) */
export function sameGrid(a: StorageGrid | undefined, b: StorageGrid | undefined): boolean {
  return describeGrid(a) === describeGrid(b);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Round to the nearest integer, ties to even (Math.round rounds ties up). */
function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * The grid step of `x` on an integer grid, clamped to the grid's range: for uint8/uint16 the
 * integer q the value is stored as; for qint8/quint8 q − zeroPoint (add the zero point for the
 * stored integer: {@link gridLevel}). Both grids are one arithmetic: a value is
 * fround(k × scale + min) for an integer k in [lo, hi], with min = 0, lo = −128 − zeroPoint or
 * −zeroPoint, hi = 127 − zeroPoint or 255 − zeroPoint for the ONNX ones.
 */
export function affineStep(x: number, grid: IntegerGrid): number {
  const d = grid.dtype;
  const zp = d[0] === 'q' ? (grid as LinearQuantGrid).zeroPoint : 0;
  const lo = (d === 'qint8' ? -128 : 0) - zp;
  const hi = (d === 'uint16' ? 65535 : d === 'qint8' ? 127 : 255) - zp;
  const q = roundHalfEven((x - ((grid as AffineGrid).min ?? 0)) / grid.scale);
  return q > lo ? (q < hi ? q : hi) : lo;
}

/** The smallest and largest grid step ({@link affineStep}) of an integer grid: [0, 255] for uint8, [−128 − zeroPoint, 127 − zeroPoint] for qint8. */
export function stepRange(grid: IntegerGrid): [number, number] {
  const d = grid.dtype;
  const zp = d[0] === 'q' ? (grid as LinearQuantGrid).zeroPoint : 0;
  return [(d === 'qint8' ? -128 : 0) - zp, (d === 'uint16' ? 65535 : d === 'qint8' ? 127 : 255) - zp];
}

/** The integer `x` is stored as on an integer grid (clamped): q for uint8/uint16, the int8/uint8 of qint8/quint8. */
export function gridLevel(x: number, grid: IntegerGrid): number {
  return affineStep(x, grid) + (grid.dtype[0] === 'q' ? (grid as LinearQuantGrid).zeroPoint : 0);
}

/** Largest finite bfloat16, (2 − 2^−7) × 2^127, as float32 bits. */
const BF16_MAX_BITS = 0x7f7f0000;

/**
 * `x` rounded onto the grid (docs/FORMAT.md §5.1), as a float32 value:
 * - uint8/uint16: q = the nearest integer to (x − min) / scale in float64, ties to even, clamped
 *   to [0, 255] or [0, 65535]; the value is fround(q × scale + min) in float64, as TF.js
 *   dequantizes;
 * - qint8/quint8: q = the nearest integer to x / scale in float64, ties to even, plus the zero
 *   point, clamped to [−128, 127] or [0, 255]; the value is fround((q − zeroPoint) × scale)
 *   (the product is exact in float64, so this is onnxruntime's float32 multiply), +0 at q =
 *   zeroPoint;
 * - float16: the nearest half (ties to even), saturating at ±65504;
 * - bfloat16: the nearest bfloat16 (ties to even), saturating at ±(2 − 2^−7) × 2^127;
 * - float32: x.
 * NaN stays NaN (the applier never writes one: patch values and base weights are finite).
 */
export function snapValue(x: number, grid: StorageGrid): number {
  switch (grid.dtype) {
    case 'uint8':
    case 'uint16':
    case 'qint8':
    case 'quint8':
      // k × scale + 0 turns a −0 step into +0, as (q − zeroPoint) × scale does in float32.
      return Math.fround(affineStep(x, grid) * grid.scale + ((grid as AffineGrid).min ?? 0));
    case 'float16':
      return fromHalfBits(toHalfBits(x > HALF_MAX ? HALF_MAX : x < -HALF_MAX ? -HALF_MAX : x));
    case 'bfloat16': {
      f32[0] = x;
      const bits = u32[0];
      if ((bits & 0x7f800000) === 0x7f800000 && bits & 0x7fffff) return x; // NaN
      let r = (bits + 0x7fff + ((bits >>> 16) & 1)) & 0xffff0000;
      if ((r & 0x7fffffff) > BF16_MAX_BITS) r = (bits & 0x80000000) | BF16_MAX_BITS;
      u32[0] = r >>> 0;
      return f32[0];
    }
    default:
      return x;
  }
}

/** Round `w[i]` onto the grid for every i (or for the given positions). */
export function snapInPlace(w: Float32Array, grid: StorageGrid, positions?: Uint32Array): void {
  if (grid.dtype === 'float32') return;
  if (positions) for (let k = 0; k < positions.length; k++) w[positions[k]] = snapValue(w[positions[k]], grid);
  else for (let i = 0; i < w.length; i++) w[i] = snapValue(w[i], grid);
}

/** Are all values on the grid already (bit for bit: snapping changes none)? */
export function onGrid(w: Float32Array, grid: StorageGrid): boolean {
  if (grid.dtype === 'float32') return true;
  const bits = new Uint32Array(w.buffer, w.byteOffset, w.length);
  for (let i = 0; i < w.length; i++) {
    f32[0] = snapValue(w[i], grid);
    if (u32[0] !== bits[i]) return false;
  }
  return true;
}

/**
 * The stored code of `x` on a grid that is not float32 (codec `xs`, docs/FORMAT.md §4.3): the
 * bits the device stores for `snapValue(x, grid)`. float16: the half's 16 bits; bfloat16: the
 * high 16 bits of the float32; uint8/uint16: the level q; qint8: the int8 as a byte (two's
 * complement); quint8: the uint8. {@link fromGridCode} turns a code back into the value.
 */
export function gridCode(x: number, grid: StorageGrid): number {
  const y = snapValue(x, grid);
  switch (grid.dtype) {
    case 'float16':
      return toHalfBits(y);
    case 'bfloat16':
      f32[0] = y;
      return u32[0] >>> 16;
    case 'float32':
      throw new RangeError('a float32 tensor has no stored code narrower than its float32 bits');
    default:
      return gridLevel(y, grid) & (grid.dtype === 'uint16' ? 0xffff : 0xff);
  }
}

/** The float32 value of the stored code `code` on `grid` (see {@link gridCode}): what the device's runtime reads. */
export function fromGridCode(code: number, grid: StorageGrid): number {
  switch (grid.dtype) {
    case 'float16':
      return fromHalfBits(code);
    case 'bfloat16':
      u32[0] = code << 16;
      return f32[0];
    case 'uint8':
    case 'uint16':
      return Math.fround(code * grid.scale + grid.min);
    case 'qint8':
      return Math.fround((((code << 24) >> 24) - grid.zeroPoint) * grid.scale);
    case 'quint8':
      return Math.fround((code - grid.zeroPoint) * grid.scale);
    default:
      return code;
  }
}
