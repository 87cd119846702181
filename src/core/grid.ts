/**
 * Storage grids: how a device stores a tensor when it is not float32 (TF.js uint8/uint16
 * quantization with a scale and a min, float16, bfloat16). A patch that names the grid of its
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
/** IEEE binary16 or bfloat16 storage. */
export interface HalfGrid {
  dtype: 'float16' | 'bfloat16';
}
export type StorageGrid = Float32Grid | AffineGrid | HalfGrid;

/** Bytes one value takes in storage. */
export function gridBytesPerValue(grid: StorageGrid | undefined): number {
  return !grid || grid.dtype === 'float32' ? 4 : grid.dtype === 'uint8' ? 1 : 2;
}

/** Do two grids round the same way? (scale and min compared as float64 values.) */
export function sameGrid(a: StorageGrid | undefined, b: StorageGrid | undefined): boolean {
  const da = a?.dtype ?? 'float32';
  const db = b?.dtype ?? 'float32';
  if (da !== db) return false;
  if (da === 'uint8' || da === 'uint16') return (a as AffineGrid).scale === (b as AffineGrid).scale && (a as AffineGrid).min === (b as AffineGrid).min;
  return true;
}

/** A grid for messages: `uint8 (scale 0.0039, min -0.5)`. */
export function describeGrid(grid: StorageGrid | undefined): string {
  if (!grid) return 'float32';
  if (grid.dtype === 'uint8' || grid.dtype === 'uint16') return `${grid.dtype} (scale ${grid.scale}, min ${grid.min})`;
  return grid.dtype;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Round to the nearest integer, ties to even (Math.round rounds ties up). */
function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The grid step of `x` for an affine grid: the integer the value is stored as (clamped). */
export function affineStep(x: number, grid: AffineGrid): number {
  const top = grid.dtype === 'uint8' ? 255 : 65535;
  const q = roundHalfEven((x - grid.min) / grid.scale);
  return q > 0 ? (q < top ? q : top) : 0;
}

/** Largest finite bfloat16, (2 − 2^−7) × 2^127, as float32 bits. */
const BF16_MAX_BITS = 0x7f7f0000;

/**
 * `x` rounded onto the grid (docs/FORMAT.md §5.1), as a float32 value:
 * - uint8/uint16: q = the nearest integer to (x − min) / scale in float64, ties to even, clamped
 *   to [0, 255] or [0, 65535]; the value is fround(q × scale + min) in float64, as TF.js
 *   dequantizes;
 * - float16: the nearest half (ties to even), saturating at ±65504;
 * - bfloat16: the nearest bfloat16 (ties to even), saturating at ±(2 − 2^−7) × 2^127;
 * - float32: x.
 * NaN stays NaN (the applier never writes one: patch values and base weights are finite).
 */
export function snapValue(x: number, grid: StorageGrid): number {
  switch (grid.dtype) {
    case 'uint8':
    case 'uint16':
      return Math.fround(affineStep(x, grid) * grid.scale + grid.min);
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
