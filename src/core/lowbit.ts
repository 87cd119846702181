/**
 * Codec `l` (format v6): every value of a patch in `bits` bits (1 to 8), with a scale per group
 * of values: per output channel of a weight, per row, or one for the tensor (docs/FORMAT.md §4.4).
 * A sparse patch's values are grouped by their positions, so its scales name the same channels.
 *
 * Value k decodes to `code(k) * scale[floor(k / group) mod count]`:
 * - `code(k)` is the k-th `bits`-bit field of the code bytes, least significant bit first; with 1
 *   bit a code of 0 means -1 and 1 means +1 (the sign of the delta, as BitDelta carries it), with 2
 *   to 8 bits the field is a two's-complement integer (-2^(bits-1) to 2^(bits-1) - 1);
 * - each scale is a float16 (never negative, never infinite or NaN) times 2^exponent, the
 *   exponent an integer from -64 to 32 that the patch carries once.
 *
 * A float16 has an 11-bit significand and a code at most 8 bits: the product, times a power of
 * two in that range, is exact in float32. Every runtime decodes the same bits with no rounding
 * step to agree on, WebAssembly or not.
 *
 * This module is the device side (pure, no encoder): src/lowbit-diff/encoder.ts chooses bits
 * and scales.
 */
import { fromHalfBits } from './float16.ts';

/** The layout of a codec-`l` value block. */
export interface LowBit {
  /** Bits a code: 1 to 8. */
  bits: number;
  /** Consecutive values that share a scale before the next scale is taken. */
  group: number;
  /** The float16 bits of each scale; values cycle through them (see the module's doc). */
  scales: Uint16Array;
  /** The power of two every scale is multiplied by: -64 to 32. */
  exponent: number;
}

/** The smallest and largest scale exponent a patch may carry. */
export const LOWBIT_EXPONENT_RANGE: readonly [number, number] = [-64, 32];

/** Bytes of codes `count` values take at `bits` bits. */
export function lowBitBytes(count: number, bits: number): number {
  return Math.ceil((count * bits) / 8);
}

/** The exact value of each scale. */
export function lowBitScales(lb: LowBit): Float64Array {
  return Float64Array.from(lb.scales, (h) => fromHalfBits(h) * 2 ** lb.exponent);
}

/**
 * Whether `bits` is a code width FORMAT.md §4.4 allows: an integer from 1 to 8, and a number
 * (msgpack's uint): not the string "8" nor `true`, which JavaScript's comparisons would let by.
 */
export function isLowBitWidth(bits: unknown): bits is number {
  return Number.isInteger(bits) && (bits as number) >= 1 && (bits as number) <= 8;
}

/**
 * What is wrong with a value block of `count` values (the code bytes and the layout), or null:
 * a bit width, group, exponent or scale count out of range, a scale that is negative, infinite
 * or NaN, code bytes of another length, or bits set past the last code. `size`: the tensor's
 * values, which bound the scale count (a sparse patch's `count` values sit at positions below it).
 */
export function lowBitProblem(codes: Uint8Array, count: number, lb: LowBit, size = count): string | null {
  const { bits, group, scales, exponent } = lb;
  if (!isLowBitWidth(bits)) return bad('lb', 'an integer from 1 to 8', shown(bits));
  if (!(Number.isInteger(group) && group >= 1)) return bad('lg', 'a positive integer', shown(group));
  return codesProblem(codes, count * bits, exponent, scales, 1, Math.max(1, Math.ceil(size / group)));
}

const bad = (key: string, want: string, found: unknown) => `"${key}" must be ${want}, found ${found}`;
/** A field as the payload holds it: a number as such, "8" quoted, true as true. */
const shown = (x: unknown): string => (typeof x === 'number' ? String(x) : (JSON.stringify(x) ?? String(x)));

/** The checks dense codes and factors share: the exponent, `least` to `most` scales, and `bits` bits of codes. */
function codesProblem(codes: Uint8Array, bits: number, exponent: number, scales: Uint16Array, least: number, most: number): string | null {
  if (!(Number.isInteger(exponent) && exponent >= -64 && exponent <= 32)) return bad('le', 'an integer from -64 to 32', shown(exponent));
  if (!(scales.length >= least && scales.length <= most)) return bad('ls', `${least < most ? `${least} to ` : ''}${most} float16 scales`, scales.length);
  for (const h of scales) if (h > 0x7bff) return bad('ls', 'finite and not negative', fromHalfBits(h));
  const want = Math.ceil(bits / 8);
  const used = bits % 8;
  if (codes.length !== want || (used && codes[want - 1] >> used)) return bad('v', `${want} bytes with no bits set past the last code`, `${codes.length} bytes`);
  return null;
}

/**
 * Decode values `from .. from + out.length - 1` of a value block checked by {@link lowBitProblem}
 * into `out`, with the scales from {@link lowBitScales}. A sparse patch's values take the scale
 * of their position (`positions[j]` for `out[j]`), a dense patch's of their index.
 */
export function decodeLowBit(codes: Uint8Array, lb: LowBit, scales: Float64Array, from: number, out: Float32Array, positions?: Uint32Array): Float32Array {
  const { bits, group } = lb;
  for (let j = 0, k = from, bit = k * bits; j < out.length; j++, k++, bit += bits) out[j] = codeAt(codes, bit, bits) * scales[Math.floor((positions ? positions[j] : k) / group) % scales.length];
  return out;
}

/** The code of `bits` bits at bit `bit` of the codes: -1 or +1 with 1 bit, else two's complement. */
function codeAt(codes: Uint8Array, bit: number, bits: number): number {
  const at = Math.floor(bit / 8);
  const c = ((codes[at] | (codes[at + 1] << 8)) >>> (bit - at * 8)) & ((1 << bits) - 1);
  return bits > 1 ? (c << (32 - bits)) >> (32 - bits) : 2 * c - 1;
}

/**
 * Codec `l` on low-rank factors (FORMAT.md §4.4, later within version 6): the factors U [rows x r]
 * and V [r x cols] of a low-rank or composite patch at mixed precision, each singular direction k
 * at its own width `widths[k]` with one scale for U's column k (`scales[2k]`) and one for V's row
 * k (`scales[2k + 1]`). The codes are direction-major: direction k's `rows` codes of U's column
 * then its `cols` codes of V's row, one bit string for all, as dense codes are.
 */
export interface LowBitFactors {
  /** Bits a code of each direction, 1 to 8 (as many as the rank). */
  widths: readonly number[];
  /** The float16 bits of U's column k's scale at 2k and of V's row k's at 2k + 1. */
  scales: Uint16Array;
  /** The power of two every scale is multiplied by: -64 to 32. */
  exponent: number;
}

/** Bytes of codes the factors of `rows` x `cols` at these widths take. */
export function lowBitFactorBytes(rows: number, cols: number, widths: readonly number[]): number {
  let bits = 0;
  for (const b of widths) bits += b * (rows + cols);
  return Math.ceil(bits / 8);
}

/** What is wrong with the factors' codes and layout for rank `rank`, or null (as {@link lowBitProblem}). */
export function lowBitFactorProblem(codes: Uint8Array, rows: number, cols: number, rank: number, f: LowBitFactors): string | null {
  const { widths } = f;
  if (widths.length !== rank || !widths.every(isLowBitWidth)) return bad('lb', `${rank} widths from 1 to 8 (one a direction)`, `[${widths.map(shown).join(', ')}]`);
  return codesProblem(codes, widths.reduce((s, b) => s + b * (rows + cols), 0), f.exponent, f.scales, 2 * rank, 2 * rank);
}

/** U and V of factors checked by {@link lowBitFactorProblem}, decoded. */
export function decodeLowBitFactors(codes: Uint8Array, f: LowBitFactors, rows: number, cols: number): { u: Float32Array; v: Float32Array } {
  const r = f.widths.length;
  const u = new Float32Array(rows * r);
  const v = new Float32Array(r * cols);
  const scales = lowBitScales({ bits: 1, group: 1, scales: f.scales, exponent: f.exponent });
  for (let k = 0, bit = 0; k < r; k++) {
    const bits = f.widths[k];
    for (let i = 0; i < rows; i++, bit += bits) u[i * r + k] = codeAt(codes, bit, bits) * scales[2 * k];
    for (let j = 0; j < cols; j++, bit += bits) v[k * cols + j] = codeAt(codes, bit, bits) * scales[2 * k + 1];
  }
  return { u, v };
}
