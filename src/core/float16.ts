/**
 * IEEE 754 binary16 <-> binary32 conversion, round-to-nearest-even, exact in both directions
 * for every half value. Pure code (no Float16Array, which older engines lack).
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Float32 value to the bits of the nearest float16 (ties to even; overflow to +-Infinity). */
export function toHalfBits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // Inf or NaN
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow
  if (e <= 0) {
    if (e < -10) return sign; // underflows to zero
    mant |= 0x800000;
    const shift = 14 - e;
    const half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (rem > mid || (rem === mid && (half & 1)) ? half + 1 : half);
  }
  const half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // carrying into the exponent is correct rounding (up to Infinity)
  return sign | (rem > 0x1000 || (rem === 0x1000 && (half & 1)) ? half + 1 : half);
}

/** Bits of a float16 to its exact float32 value. */
export function fromHalfBits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Largest finite float16. */
export const HALF_MAX = 65504;

/** The bits of `value` as a float16 when it is exactly one (−0 kept), else −1. */
export function exactHalfBits(value: number): number {
  const h = toHalfBits(value);
  f32[0] = fromHalfBits(h);
  const back = u32[0];
  f32[0] = value;
  return back === u32[0] ? h : -1;
}

/** Bits of a bfloat16 (the high half of a float32) to its exact float32 value. */
export function fromBfloat16Bits(h: number): number {
  u32[0] = h << 16;
  return f32[0];
}

/** The bits of `value` as a bfloat16 when it is exactly one (its low 16 float32 bits zero), else −1. */
export function exactBfloat16Bits(value: number): number {
  f32[0] = value;
  const bits = u32[0];
  return bits & 0xffff ? -1 : bits >>> 16;
}
