/**
 * The valid cases of the payload vectors (generate.ts builds each one into a base model, a
 * payload and the target model): what each pins, in its description.
 */
import type { HeaderOptions, PatchSpec } from '../../../src/diff/build.ts';
import { lowBitScales, type LowBit, type LowBitFactors } from '../../../src/core/lowbit.ts';
import { MemoryWeightStore } from '../../../src/core/weight-store.ts';
import { rng } from '../../helpers/models.ts';

/** Tensor name -> shape and values; `null` values mean seeded pseudo-random values. */
type Tensors = [name: string, shape: number[], values?: number[]][];

export interface ValidCase {
  name: string;
  description: string;
  tensors: Tensors;
  specs: PatchSpec[];
  header: HeaderOptions;
}

export function makeBase(seed: number, tensors: Tensors): MemoryWeightStore {
  const r = rng(seed);
  return new MemoryWeightStore(
    tensors.map(([name, shape, values]) => {
      const n = shape.reduce((a, b) => a * b, 1);
      const data = Float32Array.from({ length: n }, () => (r() - 0.5) * 0.2);
      if (values) data.set(values);
      return [name, { shape, data }] as [string, { shape: number[]; data: Float32Array }];
    }),
  );
}

export const f32 = (xs: number[]) => Float32Array.from(xs);
export const u32 = (xs: number[]) => Uint32Array.from(xs);

/**
 * A dense codec-l spec (format v6) from its codes: `scales` are float16 bits, each value
 * `code x half(scales[floor(k / group) mod count]) x 2^exponent` (a 1-bit code c is 2c - 1).
 */
function lowbitSpec(name: string, bits: number, group: number, scales: number[], exponent: number, codes: number[]): PatchSpec {
  const lowbit = { bits, group, exponent, scales: Uint16Array.from(scales) };
  const s = lowBitScales(lowbit);
  const values = Float32Array.from(codes, (c, k) => (bits === 1 ? 2 * c - 1 : c) * s[Math.floor(k / group) % s.length] + 0);
  return { kind: 'dense', name, values, codec: 'l', lowbit };
}

/**
 * A sparse codec-l spec (later within v6) from its codes: value k at `positions[k]` is
 * `code x half(scales[floor(positions[k] / group) mod count]) x 2^exponent`.
 */
function lowbitSparseSpec(name: string, bits: number, group: number, scales: number[], exponent: number, positions: number[], codes: number[]): PatchSpec {
  const lowbit = { bits, group, exponent, scales: Uint16Array.from(scales) };
  const s = lowBitScales(lowbit);
  const values = Float32Array.from(codes, (c, k) => (bits === 1 ? 2 * c - 1 : c) * s[Math.floor(positions[k] / group) % s.length] + 0);
  return { kind: 'sparse', name, positions: Uint32Array.from(positions), values, codec: 'l', lowbit };
}

/**
 * Low-rank factors in codec l (v6) from their codes: direction k's codes of U's column
 * (`codes[k][0]`, rows values) and V's row (`codes[k][1]`, cols values) at `widths[k]` bits, U's
 * scale `scales[2k]` and V's `scales[2k + 1]` (float16 bits) times 2^exponent.
 */
function lowbitFactors(rows: number, cols: number, widths: number[], scales: number[], exponent: number, codes: [number[], number[]][]): { rank: number; u: Float32Array; v: Float32Array; codec: 'l'; lowbitFactors: LowBitFactors } {
  const r = widths.length;
  const lowbitFactors = { widths, scales: Uint16Array.from(scales), exponent };
  const s = lowBitScales({ bits: 1, group: 1, scales: lowbitFactors.scales, exponent });
  const value = (c: number, k: number, which: number) => (widths[k] === 1 ? 2 * c - 1 : c) * s[2 * k + which] + 0;
  const u = new Float32Array(rows * r);
  const v = new Float32Array(r * cols);
  codes.forEach(([cu, cv], k) => {
    cu.forEach((c, i) => (u[i * r + k] = value(c, k, 0)));
    cv.forEach((c, j) => (v[k * cols + j] = value(c, k, 1)));
  });
  return { rank: r, u, v, codec: 'l', lowbitFactors };
}

/** 1 + 2^-23: the float32 just above 1 (odd last mantissa bit). */
const ONE_PLUS_ULP = 1 + 2 ** -23;
/** A TF.js-style uint8 quantization (float64 scale and min, as model.json gives them). */
const U8_SCALE = 0.003921568859368563;
const U8_MIN = -0.5;
/** ONNX int8 linear quantization of the qi8 vector: a float32 scale and a zero point. */
const QI8_SCALE = Math.fround(0.05);
const QI8_ZP = -3;
/** The quint8 vector: scale 2^-6 and an odd zero point, so ties to even are on x / scale, not on q. */
const QU8_SCALE = 2 ** -6;
const QU8_ZP = 3;

export const VALID: ValidCase[] = [
  {
    name: 'sparse-gaps-f32',
    description:
      'Sparse patch, varint-gap positions (6 bytes < a 32-byte bitmap), f32 values. Pins float32 rounding of the sum: w[1] = 1 plus 2^-24 is a tie and stays 1 (ties to even); w[5] = 1 + 2^-23 plus 2^-24 rounds up to 1 + 2^-22. Tensor "b" is not patched but is part of both fingerprints.',
    tensors: [
      ['w', [16, 16], Array.from({ length: 6 }, (_, i) => (i === 1 ? 1 : i === 5 ? ONE_PLUS_ULP : 0.25 * i))],
      ['b', [16]],
    ],
    specs: [{ kind: 'sparse', name: 'w', positions: u32([0, 1, 5, 200, 255]), values: f32([0.5, 2 ** -24, 2 ** -24, -0.0078125, 3.14159]), codec: 'f32' }],
    header: { method: 'sparse', modelId: 'demo', sequence: 1, budgetBytes: 4096 },
  },
  {
    name: 'sparse-bitmap-f16',
    description:
      'Sparse patch on a 15-value tensor, bitmap positions (2 bytes < 7 bytes of gaps; bit 7 of the last byte would be position 15, past the end, and is 0), f16 values including a subnormal half (1e-7 -> 2 x 2^-24) and values that float16 rounds (0.1, -0.333, 1000.1).',
    tensors: [['conv/kernel', [3, 5]]],
    specs: [{ kind: 'sparse', name: 'conv/kernel', positions: u32([1, 2, 4, 7, 8, 9, 14]), values: f32([0.1, -0.333, 1e-7, 0.5, -2.75, 1000.1, 6e-5]), codec: 'f16' }],
    header: { method: 'topk', modelId: 'demo', sequence: 2 },
  },
  {
    name: 'sparse-i8',
    description:
      'Sparse patch with i8 values: scale q = fround(0.02 / 127) (a float32), int8 values 127, -87, 32, -127, 1; each value is fround(int8 x q), which is not the exact product (e.g. 127 x q needs 31 significant bits).',
    tensors: [['dense/kernel', [8, 12]]],
    specs: [{ kind: 'sparse', name: 'dense/kernel', positions: u32([3, 17, 18, 40, 90]), values: f32([0.02, -0.0137, 0.005, -0.02, 1e-4]), codec: 'i8' }],
    header: { method: 'sparse', modelId: 'demo', sequence: 3 },
  },
  {
    name: 'hash-signed-f32',
    description:
      'Hashed patch, signed: 42 positions share 5 f32 bucket values; seed = tensorSeed("dense/kernel", 42) = 643605883 (see docs/FORMAT-hashing.md). Every weight changes by +-bucket[(h >>> 1) % 5], the sign from bit 0 of h = xxh32(u32le(position), seed).',
    tensors: [['dense/kernel', [6, 7]]],
    specs: [{ kind: 'hash', name: 'dense/kernel', seed: 643605883, signed: true, buckets: f32([0.01, -0.02, 0.03, -0.04, 0.05]), codec: 'f32' }],
    header: { method: 'hash', modelId: 'demo', sequence: 4 },
  },
  {
    name: 'hash-unsigned-f16',
    description: 'Hashed patch, unsigned (every sign +1), seed 0xdeadbeef, 3 f16 bucket values for a 10-value tensor.',
    tensors: [['out/bias', [10]]],
    specs: [{ kind: 'hash', name: 'out/bias', seed: 0xdeadbeef, signed: false, buckets: f32([0.125, -0.5, 0.0999]), codec: 'f16' }],
    header: { method: 'hash', modelId: 'demo', sequence: 5 },
  },
  {
    name: 'dense-f32',
    description:
      'Dense patch: one f32 value per weight, row-major. Pins signed zeros: w[0] = -0 plus +0 is +0 (a different bit pattern, so a different digest), w[1] = -0 plus -0 stays -0.',
    tensors: [['out/kernel', [2, 3], [-0, -0, 1.5]]],
    specs: [{ kind: 'dense', name: 'out/kernel', values: f32([0, -0, -0.25, 1e-3, -1e-3, 7]), codec: 'f32' }],
    header: { method: 'dense', modelId: 'demo', sequence: 6 },
  },
  {
    name: 'lowrank-f32',
    description:
      'Low-rank patch of rank 3 on a [3, 4] tensor: U is [3 x 3], V is [3 x 4], "v" holds U then V, row-major. Pins the summation order: entry (0, 0) adds the products 1, 2^-24, 2^-24 left to right from acc = +0 and gets 1 (right to left would give 1 + 2^-23); entry (1, 1) adds -1 and fround((1 + 2^-23) x (1 + 2^-22)) = 1 + 3 x 2^-23 and gets 3 x 2^-23, which lands unchanged on w[1, 1] = 0 (a fused multiply-add would keep the product exact and give 3 x 2^-23 + 2^-45); row 2 of U is zero, so acc = +0 and w[2, 0] = -0 becomes +0.',
    tensors: [['dense/kernel', [3, 4], [0.5, 0.25, -0.125, 0.0625, 0.01, 0, 0.02, -0.03, -0, 0.04, -0.05, 0.06]]],
    specs: [
      {
        kind: 'lowrank',
        name: 'dense/kernel',
        rank: 3,
        // U [3 x 3]
        u: f32([1, 2 ** -12, 2 ** -12, 1, 1 + 2 ** -23, 0, 0, 0, 0]),
        // V [3 x 4]
        v: f32([1, -1, 0.5, -0.25, 2 ** -12, 1 + 2 ** -22, 0.125, 0.75, 2 ** -12, 0.5, -0.375, 2]),
        codec: 'f32',
      },
    ],
    header: { method: 'lowrank', modelId: 'demo', sequence: 7 },
  },
  {
    name: 'multi-tensor',
    description:
      'Four patches (sparse, dense, hashed) on a model of five tensors with non-ASCII names, plus the optional header keys ct, ex and x. "layer/\u{ff5a}" (U+FF5A, UTF-8 ef bd 9a) sorts before "layer/\u{1f642}" (U+1F642, UTF-8 f0 9f 99 82) in UTF-8 byte order, which the model fingerprint uses; the reference encoder orders "p" by UTF-16 code units, where the emoji (d83d de42) comes first. Includes a scalar (shape []) dense i8 patch and an unpatched tensor.',
    tensors: [
      ['unpatched/\u03b2', [3]],
      ['temperature', [], [1]],
      ['layer/\u{1f642}', [2, 2]],
      ['layer/\u{ff5a}', [4]],
      ['h\u00e9llo/\u91cd\u307f', [3, 4]],
    ],
    specs: [
      { kind: 'sparse', name: 'layer/\u{ff5a}', positions: u32([0, 3]), values: f32([0.75, -0.125]), codec: 'f32' },
      { kind: 'dense', name: 'layer/\u{1f642}', values: f32([0.5, -0.5, 0.25, 1e-4]), codec: 'f16' },
      { kind: 'hash', name: 'h\u00e9llo/\u91cd\u307f', seed: 686459235, signed: true, buckets: f32([0.03, -0.01]), codec: 'i8' },
      { kind: 'dense', name: 'temperature', values: f32([-0.3]), codec: 'i8' },
    ],
    header: { method: 'full', modelId: 'kws-\u00e9', sequence: 42, createdAt: '2025-01-02T03:04:05Z', expiresAt: 4102444800, meta: { steps: 300, loss: '0.125', delta: -5 } },
  },
  {
    name: 'sparse-x',
    description:
      'Format v2, codec x (exact bits): a sparse patch whose values are the XOR of the new and the old float32 bits, each stored in 1 to 4 bytes (least significant first) after 2-bit length fields (value k in bits 2(k mod 4) of byte floor(k / 4), a field L meaning L + 1 bytes). It reaches targets no float32 addition can: w[0] = 1 becomes 1e-10 (1 + d rounds to 0 or 2^-24 steps away for every d); w[1] = +0 becomes -0 (mask 0x80000000, 4 bytes); w[2] = 0.5 becomes 0.5000000596 (one bit, 1 byte); w[7] = 3 becomes -3 (the sign, 4 bytes); w[9] = 2^-149 (the smallest subnormal) becomes 2^-126 (the smallest normal).',
    tensors: [['w', [2, 5], [1, 0, 0.5, 0.25, 0.125, 1, 2, 3, 4, 2 ** -149]]],
    specs: [{ kind: 'sparse', name: 'w', positions: u32([0, 1, 2, 7, 9]), values: f32([1e-10, -0, Math.fround(0.5 + 2 ** -24), -3, 2 ** -126]), codec: 'x' }],
    header: { method: 'topk', modelId: 'demo-x', sequence: 12, meta: { method: 'exact' } },
  },
  {
    name: 'dense-x',
    description:
      'Format v2, codec x on a dense patch: one XOR mask per weight, in order; an unchanged weight costs one zero byte. The target differs from the base in 3 of 6 weights.',
    tensors: [['d', [6], [0.1, -0.2, 0.3, -0.4, 0.5, -0.6]]],
    specs: [{ kind: 'dense', name: 'd', values: f32([0.1, -0.25, 0.3, 100, 0.5, -0.6000001]), codec: 'x' }],
    header: { method: 'topk', modelId: 'demo-x', sequence: 13, meta: { method: 'exact' } },
  },
  {
    name: 'sparse-xr',
    description:
      'Format v3, codec xr (range-coded exact bits): the masks of sparse-x, laid out as the low 3 bytes of each mask (least significant first), then the high bytes (sign and 7 exponent bits) through the adaptive binary range coder of FORMAT.md 4.2. Same base, same target as sparse-x.',
    tensors: [['w', [2, 5], [1, 0, 0.5, 0.25, 0.125, 1, 2, 3, 4, 2 ** -149]]],
    specs: [{ kind: 'sparse', name: 'w', positions: u32([0, 1, 2, 7, 9]), values: f32([1e-10, -0, Math.fround(0.5 + 2 ** -24), -3, 2 ** -126]), codec: 'xr' }],
    header: { method: 'topk', modelId: 'demo-x', sequence: 14, meta: { method: 'exact' } },
  },
  {
    name: 'dense-xr',
    description:
      'Format v3, codec xr on a dense patch of 40 weights, 13 of them changed (sign flips, exponent changes and mantissa-only changes): enough high bytes for the coder to adapt.',
    tensors: [['d', [5, 8], Array.from({ length: 40 }, (_, i) => Math.fround(Math.sin(i + 1) * 2 ** ((i % 7) - 3)))]],
    specs: [{ kind: 'dense', name: 'd', values: f32(Array.from({ length: 40 }, (_, i) => { const w = Math.fround(Math.sin(i + 1) * 2 ** ((i % 7) - 3)); return i % 3 ? w : i % 2 ? -w : w * 1.0001 + 2 ** -20; })), codec: 'xr' }],
    header: { method: 'topk', modelId: 'demo-x', sequence: 15, meta: { method: 'exact' } },
  },
  {
    name: 'grid-u8-sparse-i8',
    description:
      'Format v2: a sparse i8 patch of a tensor stored as uint8 (TF.js quantization, scale 0.003921568859368563 and min -0.5, both float64 in "g"). The base values are fround(q x scale + min) for q = 0..31, as TF.js dequantizes. The i8 scale is the grid step fround(scale), so the values are whole steps: position 0 (q = 0) +3 steps, position 5 (q = 5) -2, position 9 (q = 9) +1, and position 31 (q = 31) -40, which clamps to q = 0. Every written value is rounded onto the grid: q = round((w + d - min) / scale) in float64, ties to even, clamped to [0, 255], then fround(q x scale + min).',
    tensors: [['q/kernel', [4, 8], Array.from({ length: 32 }, (_, q) => Math.fround(q * U8_SCALE + U8_MIN))]],
    specs: [{ kind: 'sparse', name: 'q/kernel', positions: u32([0, 5, 9, 31]), values: f32([3 * U8_SCALE, -2 * U8_SCALE, 1 * U8_SCALE, -40 * U8_SCALE]), codec: 'i8', grid: { dtype: 'uint8', scale: U8_SCALE, min: U8_MIN } }],
    header: { method: 'sparse', modelId: 'demo-u8', sequence: 8 },
  },
  {
    name: 'grid-u16-dense-f32',
    description:
      'Format v2: a dense f32 patch of a tensor stored as uint16 (scale 2^-10, min -2). Pins ties to even and clamping: w[0] (q = 4) + half a step lands exactly between q = 4 and 5 and rounds to 4; w[1] (q = 5) + half a step rounds to 6; w[2] (q = 65534) + 5 steps clamps to 65535; w[3] (q = 1) - 3 steps clamps to 0; w[4] (q = 100) + 0.3 step rounds back to 100; w[5] (q = 100) + 0.7 step rounds to 101.',
    tensors: [['q16/bias', [6], [4, 5, 65534, 1, 100, 100].map((q) => Math.fround(q * 2 ** -10 - 2))]],
    specs: [{ kind: 'dense', name: 'q16/bias', values: f32([0.5, 0.5, 5, -3, 0.3, 0.7].map((k) => k * 2 ** -10)), codec: 'f32', grid: { dtype: 'uint16', scale: 2 ** -10, min: -2 } }],
    header: { method: 'dense', modelId: 'demo-u16', sequence: 9 },
  },
  {
    name: 'grid-f16-sparse-f32',
    description:
      'Format v2: a sparse f32 patch of a tensor stored as float16. w[0] = 1 plus 2^-11 is a tie between the halves 1 and 1 + 2^-10 and stays 1 (ties to even); w[1] = 1 + 2^-10 plus 2^-11 rounds up to 1 + 2^-9; w[2] = 65504 plus 100 saturates at 65504 (the largest half; never Infinity); w[3] = 0 plus 1e-7 becomes the subnormal half 2 x 2^-24; w[4] = -2 plus 0.1 becomes -1.900390625.',
    tensors: [['h/kernel', [5], [1, 1 + 2 ** -10, 65504, 0, -2]]],
    specs: [{ kind: 'sparse', name: 'h/kernel', positions: u32([0, 1, 2, 3, 4]), values: f32([2 ** -11, 2 ** -11, 100, 1e-7, 0.1]), codec: 'f32', grid: { dtype: 'float16' } }],
    header: { method: 'sparse', modelId: 'demo-f16', sequence: 10 },
  },
  {
    name: 'grid-qi8-sparse-i8',
    description:
      'Format v2: a sparse i8 patch of a tensor stored as ONNX INT8 with linear quantization (the input of a DequantizeLinear with scale 0.05000000074505806 = fround(0.05) and zero point -3; "g" holds the scale as float64 and the zero point as an integer). The base values are fround((q - zp) x scale) for q = -128, -100, -3, 0, 5, 100, 120, 127, as onnxruntime dequantizes. The i8 scale is the grid scale, so the values are whole steps: position 0 (q = -128) -5 steps clamps to -128; position 1 (q = -100) +7 gives -93; position 2 (q = -3, the value +0) -10 gives -13; position 6 (q = 120) +20 clamps to 127. Every written value is rounded onto the grid: q = round(x / scale) in float64, ties to even, plus the zero point, clamped to [-128, 127], then fround((q - zp) x scale).',
    tensors: [['dq/weight', [2, 4], [-128, -100, -3, 0, 5, 100, 120, 127].map((q) => Math.fround((q - QI8_ZP) * QI8_SCALE))]],
    specs: [{ kind: 'sparse', name: 'dq/weight', positions: u32([0, 1, 2, 6]), values: f32([-5 * QI8_SCALE, 7 * QI8_SCALE, -10 * QI8_SCALE, 20 * QI8_SCALE]), codec: 'i8', grid: { dtype: 'qint8', scale: QI8_SCALE, zeroPoint: QI8_ZP } }],
    header: { method: 'sparse', modelId: 'demo-qi8', sequence: 14 },
  },
  {
    name: 'grid-qu8-dense-f32',
    description:
      'Format v2: a dense f32 patch of a tensor stored as ONNX UINT8 (scale 2^-6, zero point 3). Pins the rounding: the tie is decided on x / scale, before the zero point is added. w[0] (q = 7, x / scale = 4) + half a step: 4.5 rounds to 4, q stays 7 (rounding q + 0.5 = 7.5 would give 8); w[1] (q = 8) + half a step: 5.5 rounds to 6, q = 9; w[2] (q = 254) + 3 steps clamps to 255; w[3] (q = 1) - 3 steps clamps to 0, the value -3 x scale; w[4] (q = 3, the value +0) - 0.3 step rounds back to q = 3 and the value stays +0 (not -0); w[5] (q = 100) + 0.7 step gives 101.',
    tensors: [['dq/bias', [6], [7, 8, 254, 1, 3, 100].map((q) => Math.fround((q - QU8_ZP) * QU8_SCALE))]],
    specs: [{ kind: 'dense', name: 'dq/bias', values: f32([0.5, 0.5, 3, -3, -0.3, 0.7].map((k) => k * QU8_SCALE)), codec: 'f32', grid: { dtype: 'quint8', scale: QU8_SCALE, zeroPoint: QU8_ZP } }],
    header: { method: 'dense', modelId: 'demo-qu8', sequence: 15 },
  },
  {
    name: 'grid-bf16-hash-f32',
    description:
      'Format v2: a signed hashed patch (seed 7, 3 buckets) of a tensor stored as bfloat16: every weight gets its bucket value added in float32, then is rounded to the nearest bfloat16 (8 significant bits, ties to even).',
    tensors: [['b/kernel', [3, 4], [0.5, -0.25, 1, 2, 0.125, -1, 3, -0.5, 0.75, 1.5, -2, 0.0625]]],
    specs: [{ kind: 'hash', name: 'b/kernel', seed: 7, signed: true, buckets: f32([0.01, -0.003, 0.2]), codec: 'f32', grid: { dtype: 'bfloat16' } }],
    header: { method: 'hash', modelId: 'demo-bf16', sequence: 11 },
  },
  {
    name: 'grid-f16-sparse-xs',
    description:
      'Format v4, codec xs (exact stored bits) on a sparse patch of a tensor stored as float16: each mask is the XOR of the new and the old half bits (2 bytes), laid out as the low byte of every mask, then the high bytes through the range coder of codec xr. w[0] 1 (3c00) becomes 1 + 2^-10 (3c01, the low bit); w[1] -2 (c000) becomes 2 (4000, the sign); w[2] 0.5 (3800) becomes 65504 (7bff, the largest half); w[3] the subnormal 2^-24 (0001) becomes -0 (8000); w[5] +0 (0000) becomes -0.0999755859375 (ae66); w[7] 3.140625 (4248) becomes 3.142578125 (4249).',
    tensors: [['h/kernel', [8], [1, -2, 0.5, 2 ** -24, 7, 0, 1.5, 3.140625]]],
    specs: [{ kind: 'sparse', name: 'h/kernel', positions: u32([0, 1, 2, 3, 5, 7]), values: f32([1 + 2 ** -10, 2, 65504, -0, -0.0999755859375, 3.142578125]), codec: 'xs', grid: { dtype: 'float16' } }],
    header: { method: 'topk', modelId: 'demo-f16-xs', sequence: 16, meta: { method: 'exact' } },
  },
  {
    name: 'grid-bf16-dense-xs',
    description:
      'Format v4, codec xs on a dense patch of a tensor stored as bfloat16 (the high 16 bits of a float32): 2-byte masks of the bfloat16 bits; unchanged weights have the mask 0. w[0] 1 (3f80) becomes 1.0078125 (3f81); w[2] -0.5 (bf00) becomes 0.5 (3f00); w[4] 2^-126 (0080) becomes 1.5 x 2^127 (7f40): the mask 7fc0 crosses the whole exponent range.',
    tensors: [['b/bias', [6], [1, 2, -0.5, 0.25, 2 ** -126, -3]]],
    specs: [{ kind: 'dense', name: 'b/bias', values: f32([1.0078125, 2, 0.5, 0.25, 1.5 * 2 ** 127, -3]), codec: 'xs', grid: { dtype: 'bfloat16' } }],
    header: { method: 'topk', modelId: 'demo-bf16-xs', sequence: 17, meta: { method: 'exact' } },
  },
  {
    name: 'grid-u8-dense-xs',
    description:
      'Format v4, codec xs on a dense patch of a tensor stored as uint8 (TF.js quantization, the scale and min of grid-u8-sparse-i8): 1-byte masks, the XOR of the new and old levels q, every byte range-coded (no raw bytes). q goes 0 -> 255, 5 -> 4, 9 -> 9 (mask 0), 31 -> 32, 200 -> 0, 128 -> 127.',
    tensors: [['q/kernel', [6], [0, 5, 9, 31, 200, 128].map((q) => Math.fround(q * U8_SCALE + U8_MIN))]],
    specs: [{ kind: 'dense', name: 'q/kernel', values: f32([255, 4, 9, 32, 0, 127].map((q) => Math.fround(q * U8_SCALE + U8_MIN))), codec: 'xs', grid: { dtype: 'uint8', scale: U8_SCALE, min: U8_MIN } }],
    header: { method: 'topk', modelId: 'demo-u8-xs', sequence: 18, meta: { method: 'exact' } },
  },
  {
    name: 'grid-qi8-sparse-xs',
    description:
      'Format v4, codec xs on a sparse patch of an ONNX INT8 weight (the grid of grid-qi8-sparse-i8: scale fround(0.05), zero point -3): the stored code is the int8 as a byte, two\'s complement, so q = -128 (80) -> 127 (7f) is the mask ff; q = -3 (fd, the value +0) -> 0 (00) is fd; q = 5 (05) -> -5 (fb) is fe.',
    tensors: [['dq/weight', [2, 4], [-128, -100, -3, 0, 5, 100, 120, 127].map((q) => Math.fround((q - QI8_ZP) * QI8_SCALE))]],
    specs: [{ kind: 'sparse', name: 'dq/weight', positions: u32([0, 2, 4]), values: f32([127, 0, -5].map((q) => Math.fround((q - QI8_ZP) * QI8_SCALE))), codec: 'xs', grid: { dtype: 'qint8', scale: QI8_SCALE, zeroPoint: QI8_ZP } }],
    header: { method: 'topk', modelId: 'demo-qi8-xs', sequence: 19, meta: { method: 'exact' } },
  },
  {
    name: 'composite-f32-f16',
    description:
      'Version 5 composite patch on a [4, 6] tensor: rank 2 factors (codec f32, U then V in "v") and 2 sparse values (codec f16 in "w", positions 0 and 23 as varint gaps 0 and 22: 2 bytes, where the bitmap would take 3). Pins the order of the one write: at position 0 the low-rank delta is 2^-24 and the sparse value 2^-24; acc = fround(2^-24 + 2^-24) = 2^-23, and w = fround(1 + 2^-23) = 1 + 2^-23 (adding the parts one after the other, 1 + 2^-24 rounds to 1 twice, and the weight stays 1). Position 23 has a low-rank delta of +0 (-1 x 1 + 2 x 0.5): its sparse value lands alone. Row 1 of U is zero: those weights get +0 (a -0 weight would become +0).',
    tensors: [['dense/kernel', [4, 6], [1, 0.5, -0.25, 0.125, 0.0625, 0.03125, 0.1, 0.2, 0.3, -0.4, -0.5, 0.6, -0, 0, 0.7, 0.8, -0.9, 1.5, 2, -2, 0.01, -0.01, 0.02, 0.25]]],
    specs: [
      {
        kind: 'composite',
        name: 'dense/kernel',
        rank: 2,
        // U [4 x 2]: row 1 zero
        u: f32([2 ** -12, 0, 0, 0, 0.5, 0.25, -1, 2]),
        // V [2 x 6]
        v: f32([2 ** -12, 0.5, -0.5, 0.25, 0.125, 1, 0.25, -0.25, 0.5, 1, -1, 0.5]),
        positions: u32([0, 23]),
        values: f32([2 ** -24, 0.5]),
        codec: 'f32',
        sparseCodec: 'f16',
      },
    ],
    header: { method: 'lowrank', modelId: 'demo', sequence: 3, meta: { method: 'sparse-lora' } },
  },
  {
    name: 'composite-bitmap-i8',
    description:
      'Version 5 composite patch of rank 1 on a [3, 5] tensor with factors in f16 and 8 sparse values in i8 (scale "wq"), positions in a bitmap (8 of 15 positions: the bitmap is smaller than the gaps), on a float16 storage grid ("g"): the sum of the low-rank and the sparse delta is added to the weight, then rounded onto the grid.',
    tensors: [['conv/kernel', [3, 5], [0.1, -0.2, 0.3, -0.4, 0.5, 0.0999755859375, 1, -1, 2, -2, 0.001, 0.002, 0.003, 0.004, 0.005]]],
    specs: [
      {
        kind: 'composite',
        name: 'conv/kernel',
        rank: 1,
        u: f32([0.5, -0.25, 0.125]),
        v: f32([0.01, -0.02, 0.03, -0.04, 0.05]),
        positions: u32([0, 1, 3, 5, 6, 9, 12, 14]),
        values: f32([0.02, -0.01, 0.005, 0.03, -0.03, 0.0125, -0.02, 0.001]),
        codec: 'f16',
        sparseCodec: 'i8',
        grid: { dtype: 'float16' },
      },
    ],
    header: { method: 'lowrank', modelId: 'demo', sequence: 4 },
  },
  {
    name: 'lowbit-3bit-columns',
    description:
      'Format v6, codec l on a dense patch of a [4, 6] tensor: 3-bit two\'s-complement codes (-4..3), 24 x 3 = 72 bits in 9 bytes, least significant bit first; a scale per column (output channel of a TF.js kernel: "lg" = 1, 6 scales, value k takes scale k mod 6), each a half times 2^"le" = 2^-10. Codes row by row: 3 -4 0 1 -1 2 / 0 0 0 0 0 0 / -4 3 2 -2 1 -1 / 1 1 1 1 1 1. Column 5 has scale 0: its values are +0 whatever the code.',
    tensors: [['dense/kernel', [4, 6], [0.5, -0.25, 0.125, 1, -1, 2, 0, -0, 0.1, 0.2, 0.3, 0.4, 1.5, -1.5, 0.75, -0.75, 0.001, -0.001, 3, 2, 1, 0, -1, -2]]],
    specs: [lowbitSpec('dense/kernel', 3, 1, [0x3c00, 0x4000, 0x3800, 0x4200, 0x3555, 0x0000], -10, [3, -4, 0, 1, -1, 2, 0, 0, 0, 0, 0, 0, -4, 3, 2, -2, 1, -1, 1, 1, 1, 1, 1, 1])],
    header: { method: 'lowbit', modelId: 'demo-lowbit', sequence: 20 },
  },
  {
    name: 'lowbit-sparse-channels',
    description:
      'Format v6 (later within it), codec l on a sparse patch of a [4, 6] tensor: 5 positions (1 4 7 13 22, as a bitmap: 3 bytes, fewer than their gaps), 4-bit codes 7 -8 -1 3 5 (20 bits in 3 bytes, the last 4 bits 0), and a scale per column ("lg" = 1, 6 scales: a value takes the scale of its position, floor(position / lg) mod 6, not of its index), times 2^-6. Six scales for five values: a sparse patch may carry up to ceil(size / lg) scales, here 24.',
    tensors: [['dense/kernel', [4, 6], [0.5, -0.25, 0.125, 1, -1, 2, 0, -0, 0.1, 0.2, 0.3, 0.4, 1.5, -1.5, 0.75, -0.75, 0.001, -0.001, 3, 2, 1, 0, -1, -2]]],
    specs: [lowbitSparseSpec('dense/kernel', 4, 1, [0x3c00, 0x4000, 0x3800, 0x4200, 0x3555, 0x0000], -6, [1, 4, 7, 13, 22], [7, -8, -1, 3, 5])],
    header: { method: 'topk', modelId: 'demo-lowbit', sequence: 25 },
  },
  {
    name: 'lowbit-new-values',
    description:
      'Format v6 (later within it), kind "n": a [3, 4] tensor\'s new values (not a delta) as codec l codes, 3 bits with a scale per row ("lg" = 4, 3 scales) times 2^-2: each weight becomes +0 + code x scale, whatever it held. Codes row by row: 3 -4 0 1 / 2 2 -1 -2 / 0 0 0 0 (row 3: every weight +0).',
    tensors: [['conv/kernel', [3, 4], [0.7, -0.3, 5, 1e-3, -2.5, 0.25, 0.125, 9, -0, 1, -1, 3e-8]]],
    specs: [{ ...lowbitSpec('conv/kernel', 3, 4, [0x3c00, 0x3800, 0x4000], -2, [3, -4, 0, 1, 2, 2, -1, -2, 0, 0, 0, 0]), replace: true } as PatchSpec],
    header: { method: 'lowbit', modelId: 'demo-lowbit', sequence: 26 },
  },
  {
    name: 'lowbit-1bit-rows',
    description:
      'Format v6, codec l, 1 bit a value (the sign of the delta: code 0 is -1, 1 is +1, as BitDelta carries it) on a [3, 5] tensor with a scale per row ("lg" = 5, 3 scales) and "le" = -7, on a float16 storage grid ("g"): each weight gets +/- its row\'s scale, then is rounded onto the grid. 15 bits in 2 bytes; the 16th bit is 0.',
    tensors: [['conv/kernel', [3, 5], [0.1, -0.2, 0.3, -0.4, 0.5, 0.0999755859375, 1, -1, 2, -2, 0.001, 0.002, 0.003, 0.004, 0.005]]],
    specs: [{ ...lowbitSpec('conv/kernel', 1, 5, [0x3c00, 0x3e00, 0x2e66], -7, [1, 0, 1, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 0]), grid: { dtype: 'float16' } }],
    header: { method: 'lowbit', modelId: 'demo-lowbit', sequence: 21 },
  },
  {
    name: 'lowbit-factors-mixed',
    description:
      'Format v6, codec l on low-rank factors (mixed precision by singular direction) of a [4, 5] tensor, rank 3: "lb" = [8, 3, 1], a width a direction; "ls" = 6 halves, U\'s column scale then V\'s row scale of each direction (1, 0.5 / 2, 0.25 / 0.75, 0), "le" = -8. "v" holds direction 0\'s 4 + 5 codes of 8 bits, then direction 1\'s of 3 bits, then direction 2\'s of 1 bit: 9 x (8 + 3 + 1) = 108 bits in 14 bytes, the last 4 bits 0. Codes: U col 0: 100 -128 0 127, V row 0: 1 -1 50 -50 3; U col 1: 3 -4 1 0, V row 1: -1 2 -3 0 1; U col 2 (1 bit, c -> 2c - 1): 1 0 1 1, V row 2: 0 1 0 1 1 with scale 0, so direction 2 adds +0 or -0 products. The factors are then applied as any low-rank patch\'s (k ascending, each product rounded).',
    tensors: [['dense/kernel', [4, 5], [0.5, -0.25, 0.125, 1, -1, 2, 0, -0, 0.1, 0.2, 0.3, 0.4, 1.5, -1.5, 0.75, -0.75, 0.001, -0.001, 3, 2]]],
    specs: [{ kind: 'lowrank', name: 'dense/kernel', ...lowbitFactors(4, 5, [8, 3, 1], [0x3c00, 0x3800, 0x4000, 0x3400, 0x3a00, 0x0000], -8, [[[100, -128, 0, 127], [1, -1, 50, -50, 3]], [[3, -4, 1, 0], [-1, 2, -3, 0, 1]], [[1, 0, 1, 1], [0, 1, 0, 1, 1]]]) }],
    header: { method: 'lowbit', modelId: 'demo-lowbit', sequence: 22 },
  },
  {
    name: 'lowbit-factors-composite',
    description:
      'Format v6, a composite patch (v5) whose factors are in codec l: a [3, 4] tensor, rank 2, "lb" = [5, 2], scales 0.5 and 1 (direction 0), 0.25 and 0.125 (direction 1), "le" = -6; (3 + 4) x 5 + (3 + 4) x 2 = 49 bits of codes in 7 bytes, the last 7 bits 0; the sparse part as any composite\'s: positions 0, 5 and 11 (gaps), f16 values 0.5, -0.25, 1, each joining the accumulator before the weight is written.',
    tensors: [['conv/bias', [3, 4], [1, 2, 3, 4, -1, -2, -3, -4, 0.5, 0.25, 0.125, 0]]],
    specs: [{ kind: 'composite', name: 'conv/bias', ...lowbitFactors(3, 4, [5, 2], [0x3800, 0x3c00, 0x3400, 0x3000], -6, [[[15, -16, 7], [1, 0, -1, 9]], [[1, -2, 0], [-1, 1, 1, -2]]]), positions: u32([0, 5, 11]), values: f32([0.5, -0.25, 1]), sparseCodec: 'f16' }],
    header: { method: 'lowbit', modelId: 'demo-lowbit', sequence: 23 },
  },
  {
    name: 'lowbit-outliers',
    description:
      'Format v6, a composite patch (v5) whose part beside the sparse one is dense codes in codec l instead of factors ("lb" a uint, "lg", "le", "ls" as a dense patch\'s; no "r"): a [3, 4] tensor, 2-bit codes with a scale per row ("lg" = 4: 0.5, 1, 0.25) times 2^-4; 12 x 2 = 24 bits in 3 bytes. Codes row by row: 1 -1 0 -2 / 0 0 1 1 / -2 1 0 -1. The largest changes ride in the sparse part at float16: positions 3, 4 and 9 (a bitmap, 2 bytes), values 3, -40 and 0.0625, each added to the code\'s value (position 3: -2 x 0.5 x 2^-4 + 3; position 4: 0 x 2^-4 - 40) before the one write.',
    tensors: [['conv/kernel', [3, 4], [1, 2, 3, 4, 50, 0.5, -0.5, 0, 0.25, 0.125, -1, -2]]],
    specs: [{ kind: 'composite', name: 'conv/kernel', ...(({ values, lowbit }) => ({ dense: values, lowbit }))(lowbitSpec('conv/kernel', 2, 4, [0x3800, 0x3c00, 0x3400], -4, [1, -1, 0, -2, 0, 0, 1, 1, -2, 1, 0, -1]) as { values: Float32Array; lowbit: LowBit }), positions: u32([3, 4, 9]), values: f32([3, -40, 0.0625]), codec: 'l', sparseCodec: 'f16' }],
    header: { method: 'lowbit', modelId: 'demo-lowbit', sequence: 24 },
  },
];
