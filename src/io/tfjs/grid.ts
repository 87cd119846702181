/**
 * Storage grids of quantized TF.js manifest entries (uint8/uint16 affine, float16).
 */
import type { TfjsWeightEntry } from './manifest.ts';
import { affineStep, snapValue, type StorageGrid } from '../../core/grid.ts';
import { toHalfBits } from '../../core/float16.ts';

/** The storage grid of a float manifest entry (its quantization, or float32). */
export function gridOfEntry(entry: TfjsWeightEntry): StorageGrid {
  const q = entry.quantization;
  if (!q) return { dtype: 'float32' };
  if (q.dtype === 'float16') return { dtype: 'float16' };
  return { dtype: q.dtype, scale: q.scale as number, min: q.min as number };
}

/**
 * The stored bytes of `values` in the entry's quantized dtype, if every value is exactly on the
 * entry's grid (decoding the bytes gives the same float32 bits back); else null.
 */
export function quantizeOnGrid(entry: TfjsWeightEntry, values: Float32Array): Uint8Array | null {
  const grid = gridOfEntry(entry);
  if (grid.dtype === 'float32') return null;
  const n = values.length;
  const bits = new Uint32Array(values.buffer, values.byteOffset, n);
  const check = new Float32Array(1);
  const checkBits = new Uint32Array(check.buffer);
  const onGridAt = (i: number): boolean => {
    check[0] = snapValue(values[i], grid);
    return checkBits[0] === bits[i];
  };
  if (grid.dtype === 'float16') {
    const out = new Uint8Array(2 * n);
    for (let i = 0; i < n; i++) {
      if (!onGridAt(i)) return null;
      const h = toHalfBits(values[i]);
      out[2 * i] = h & 0xff;
      out[2 * i + 1] = h >>> 8;
    }
    return out;
  }
  const out = new Uint8Array(grid.dtype === 'uint8' ? n : 2 * n);
  for (let i = 0; i < n; i++) {
    if (!onGridAt(i)) return null;
    const q = affineStep(values[i], grid as Extract<StorageGrid, { scale: number }>);
    if (grid.dtype === 'uint8') out[i] = q;
    else {
      out[2 * i] = q & 0xff;
      out[2 * i + 1] = q >>> 8;
    }
  }
  return out;
}
