/**
 * Payload test vectors for docs/FORMAT.md: tiny base models, `.ndiff` payloads built with
 * src/diff/build.ts, the exact target models and fingerprints, and invalid payloads with the error
 * an applier must raise. Regenerate (the output is deterministic; the files are committed):
 *
 *   node --import tsx test/vectors/payloads/generate.ts
 *
 * test/format-vectors.test.ts checks that this script reproduces the committed files byte for
 * byte with both hasher kinds, and that the committed vectors apply as described.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildPayload, type PatchSpec, type HeaderOptions } from '../../../src/diff/build.ts';
import { type Payload, type PayloadHeader, type TensorPatch } from '../../../src/core/format.ts';
import { packPayload, wireDocument, wireOf, type WirePatch } from '../../../src/core/encode.ts';
import { fingerprintStore } from '../../../src/core/fingerprint.ts';
import { getHasher, type Hasher } from '../../../src/core/hasher.ts';
import { MemoryWeightStore } from '../../../src/core/weight-store.ts';
import { rng } from '../../helpers/models.ts';
import { encodeXrMasks } from '../../../src/core/xr.ts';
import { lowBitScales, type LowBit, type LowBitFactors } from '../../../src/core/lowbit.ts';
import { generateByteDeltaVectors } from './byte-delta.ts';
import { generateStructuralFilesVectors } from './structural-files.ts';

// ---------------------------------------------------------------------------------------------
// Model JSON: { fingerprint, tensors: { name: { shape, digest, values } } }, values = hex of the
// little-endian float32 bytes (exact, including -0 and the last bit).

export interface ModelJson {
  fingerprint: string;
  tensors: Record<string, { shape: number[]; digest: string; values: string }>;
}

export function hexOf(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}
export function fromHex(h: string): Uint8Array {
  if (h.length % 2 !== 0 || !/^[0-9a-f]*$/.test(h)) throw new RangeError(`bad hex string of length ${h.length}`);
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.slice(2 * i, 2 * i + 2), 16);
  return out;
}
/** float32 values to the hex of their little-endian bytes. */
export function f32Hex(v: Float32Array): string {
  const b = new Uint8Array(v.length * 4);
  const dv = new DataView(b.buffer);
  v.forEach((x, i) => dv.setFloat32(4 * i, x, true));
  return hexOf(b);
}
/** The inverse of {@link f32Hex}. */
export function hexF32(h: string): Float32Array {
  const b = fromHex(h);
  if (b.length % 4 !== 0) throw new RangeError('float32 hex must be a multiple of 8 digits');
  const dv = new DataView(b.buffer);
  return Float32Array.from({ length: b.length / 4 }, (_, i) => dv.getFloat32(4 * i, true));
}

export function modelJson(hasher: Hasher, store: MemoryWeightStore): ModelJson {
  const { fingerprint, digests } = fingerprintStore(hasher, store);
  const tensors: ModelJson['tensors'] = {};
  for (const t of store.list()) tensors[t.name] = { shape: [...t.shape], digest: digests.get(t.name) as string, values: f32Hex(store.values(t.name)) };
  return { fingerprint, tensors };
}

export function storeOf(m: ModelJson): MemoryWeightStore {
  return new MemoryWeightStore(Object.entries(m.tensors).map(([name, t]) => [name, { shape: t.shape, data: hexF32(t.values) }] as [string, { shape: number[]; data: Float32Array }]));
}

// ---------------------------------------------------------------------------------------------
// The cases

/** Tensor name -> shape and values; `null` values mean seeded pseudo-random values. */
type Tensors = [name: string, shape: number[], values?: number[]][];

interface ValidCase {
  name: string;
  description: string;
  tensors: Tensors;
  specs: PatchSpec[];
  header: HeaderOptions;
}

function makeBase(seed: number, tensors: Tensors): MemoryWeightStore {
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

const f32 = (xs: number[]) => Float32Array.from(xs);
const u32 = (xs: number[]) => Uint32Array.from(xs);

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

const VALID: ValidCase[] = [
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

// ---------------------------------------------------------------------------------------------
// A deliberately non-canonical msgpack writer, for the "alt-encoding" vector: every map a map16,
// every key a str8, strings str16, integers uint64/int64, non-integers float64, binaries bin32,
// arrays array16, keys in reverse order.

export function writeWideMsgpack(value: unknown): Uint8Array {
  const out: number[] = [];
  const be = (v: bigint, bytes: number) => {
    for (let s = BigInt(8 * (bytes - 1)); s >= 0n; s -= 8n) out.push(Number((v >> s) & 0xffn));
  };
  const str = (s: string, key: boolean) => {
    const b = new TextEncoder().encode(s);
    if (key) out.push(0xd9, b.length);
    else {
      out.push(0xda);
      be(BigInt(b.length), 2);
    }
    out.push(...b);
  };
  const write = (v: unknown): void => {
    if (v === null) out.push(0xc0);
    else if (typeof v === 'boolean') out.push(v ? 0xc3 : 0xc2);
    else if (typeof v === 'number') {
      if (Number.isInteger(v) && !Object.is(v, -0)) {
        out.push(v >= 0 ? 0xcf : 0xd3);
        be(BigInt.asUintN(64, BigInt(v)), 8);
      } else {
        out.push(0xcb);
        const b = new Uint8Array(8);
        new DataView(b.buffer).setFloat64(0, v);
        out.push(...b);
      }
    } else if (typeof v === 'string') str(v, false);
    else if (v instanceof Uint8Array) {
      out.push(0xc6);
      be(BigInt(v.length), 4);
      out.push(...v);
    } else if (Array.isArray(v)) {
      out.push(0xdc);
      be(BigInt(v.length), 2);
      v.forEach(write);
    } else if (typeof v === 'object') {
      const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined).reverse();
      out.push(0xde);
      be(BigInt(entries.length), 2);
      for (const [k, x] of entries) {
        str(k, true);
        write(x);
      }
    } else throw new TypeError(`cannot write ${typeof v}`);
  };
  write(value);
  return Uint8Array.from(out);
}

function wiresOf(p: Payload): WirePatch[] {
  return p.patches.map((t: TensorPatch) => wireOf(t));
}

/** Unsigned LEB128 of each value, concatenated (values may exceed what a position allows). */
function varints(values: number[]): Uint8Array {
  const out: number[] = [];
  for (let v of values) {
    while (v >= 0x80) {
      out.push((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    out.push(v);
  }
  return Uint8Array.from(out);
}

// ---------------------------------------------------------------------------------------------
// Output

export interface InvalidVector {
  name: string;
  description: string;
  /** Model to apply to (a model JSON file of this folder). */
  base: string;
  payload: string;
  /** `decode`: decodePayload itself refuses; `apply`: the payload decodes, applying it to `base` is refused. */
  stage: 'decode' | 'apply';
  error: string;
  code: string;
  /** Passed to the decoder, when set. */
  maxPayloadBytes?: number;
}

const ERROR_CODES: Record<string, string> = {
  PayloadFormatError: 'ND_PAYLOAD_FORMAT',
  PayloadTooLargeError: 'ND_PAYLOAD_TOO_LARGE',
  UnsupportedVersionError: 'ND_UNSUPPORTED_VERSION',
  NonFiniteValueError: 'ND_NON_FINITE',
  ModelMismatchError: 'ND_MODEL_MISMATCH',
  BaseMismatchError: 'ND_BASE_MISMATCH',
  TargetMismatchError: 'ND_TARGET_MISMATCH',
};

/** Indented JSON with arrays of numbers or strings kept on one line. */
function formatJson(v: unknown): string {
  return JSON.stringify(v, null, 1).replace(/\[\s+((?:-?[\d.e+-]+|"[^"]*")(?:,\s+(?:-?[\d.e+-]+|"[^"]*"))*)\s+\]/g, (_, items: string) => `[${items.split(/,\s+/).join(', ')}]`) + '\n';
}

function le32(p: number): Uint8Array {
  return new Uint8Array([p & 255, (p >>> 8) & 255, (p >>> 16) & 255, p >>> 24]);
}

/** Describe a built patch for the index: what a decoder must find in it. */
function patchInfo(hasher: Hasher, p: TensorPatch): Record<string, unknown> {
  const info: Record<string, unknown> = { t: p.name, kind: p.kind, shape: p.shape, codec: p.codec };
  if (p.scale !== undefined) info.scale = p.scale;
  if (p.grid) info.grid = p.grid;
  info.baseDigest = p.baseDigest;
  info.targetDigest = p.targetDigest;
  // Codec x: the values are XOR masks, listed as their bits (read as floats, NaN bits could change).
  const masksHex = (v: Float32Array) => hexOf(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  if (p.kind === 'sparse') {
    info.coding = p.positionCoding;
    info.positions = [...p.positions];
    if (p.codec === 'x' || p.codec === 'xr' || p.codec === 'xs') info.masks = masksHex(p.values);
    else info.values = f32Hex(p.values);
  } else if (p.kind === 'hash') {
    info.seed = p.seed;
    info.signed = p.signed;
    info.buckets = f32Hex(p.buckets);
    const size = p.shape.reduce((a, b) => a * b, 1);
    info.firstPositions = {
      columns: ['position', 'hash', 'bucket', 'sign'],
      rows: Array.from({ length: Math.min(8, size) }, (_, i) => {
        const h = hasher.h32(le32(i), p.seed);
        return [i, h, (h >>> 1) % p.buckets.length, p.signed && h & 1 ? -1 : 1];
      }),
    };
  } else if (p.kind === 'lowrank') {
    info.rank = p.rank;
    info.u = f32Hex(p.u);
    info.v = f32Hex(p.v);
  } else if (p.kind === 'composite') {
    info.rank = p.rank;
    info.u = f32Hex(p.u);
    info.v = f32Hex(p.v);
    info.coding = p.positionCoding;
    info.positions = [...p.positions];
    info.sparseCodec = p.sparseCodec;
    if (p.sparseScale !== undefined) info.sparseScale = p.sparseScale;
    info.values = f32Hex(p.values);
  } else if (p.codec === 'x' || p.codec === 'xr' || p.codec === 'xs') info.masks = masksHex(p.values);
  else info.values = f32Hex(p.values);
  if (p.kind === 'composite' && p.dense) {
    delete info.u;
    delete info.v;
    info.rank = 0;
    info.dense = f32Hex(p.dense);
  }
  if ((p.kind === 'lowrank' || p.kind === 'composite') && p.lowbitFactors) info.lowbitFactors = { widths: [...p.lowbitFactors.widths], exponent: p.lowbitFactors.exponent, scales: [...p.lowbitFactors.scales].map((h) => h.toString(16).padStart(4, '0')) };
  if (p.kind === 'dense' && p.replace) info.replace = true;
  if (p.lowbit) info.lowbit = { bits: p.lowbit.bits, group: p.lowbit.group, exponent: p.lowbit.exponent, scales: [...p.lowbit.scales].map((h) => h.toString(16).padStart(4, '0')) };
  return info;
}

/**
 * Every file of the folder (name -> bytes), built from src/diff/build.ts with `hasher`.
 * Deterministic: the same bytes on every run and with either hasher kind.
 */
export function generatePayloadVectors(hasher: Hasher): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  const utf8 = new TextEncoder();
  const json = (name: string, v: unknown) => files.set(name, utf8.encode(formatJson(v)));
  const built = new Map<string, { bytes: Uint8Array; payload: Payload; base: MemoryWeightStore }>();
  const valid: Record<string, unknown>[] = [];

  VALID.forEach((c, index) => {
    const base = makeBase(index + 1, c.tensors);
    const b = buildPayload(hasher, base, c.specs, c.header);
    const target = base.clone();
    for (const [n, v] of b.targetValues) target.values(n).set(v);
    built.set(c.name, { bytes: b.bytes, payload: b.payload, base });
    files.set(`${c.name}.ndiff`, b.bytes);
    json(`${c.name}.base.json`, modelJson(hasher, base));
    json(`${c.name}.target.json`, modelJson(hasher, target));
    const h = b.payload.header;
    valid.push({
      name: c.name,
      description: c.description,
      base: `${c.name}.base.json`,
      payload: `${c.name}.ndiff`,
      target: `${c.name}.target.json`,
      bytes: b.bytes.length,
      header: {
        nd: h.version, m: h.method, id: h.modelId, bf: h.baseFingerprint, tf: h.targetFingerprint, sq: h.sequence, bb: h.budgetBytes, cb: h.createdBy,
        ...(h.createdAt !== undefined ? { ct: h.createdAt } : {}),
        ...(h.expiresAt !== undefined ? { ex: h.expiresAt } : {}),
        ...(h.meta !== undefined ? { x: h.meta } : {}),
      },
      patches: b.payload.patches.map((p) => patchInfo(hasher, p)),
    });
  });

  // The i8 case again, in the widest msgpack encodings, reversed key order and unknown keys.
  {
    const c = built.get('sparse-i8') as { payload: Payload };
    const wires = wiresOf(c.payload).map((w) => ({ ...w, zq: 'ignored: unknown patch key' }));
    const doc = { ...wireDocument(c.payload.header, wires), zz: { future: [1, 2.5, null, true], note: 'unknown keys are ignored' } };
    const bytes = writeWideMsgpack(doc);
    files.set('alt-encoding.ndiff', bytes);
    valid.push({
      name: 'alt-encoding',
      description:
        'The sparse-i8 payload written with the widest msgpack encodings (map16, str8 keys, str16 strings, uint64 integers, float64 scale, bin32, array16), keys in reverse order, and unknown keys "zz" (top level) and "zq" (in the patch). It must decode to the same payload as sparse-i8 and apply to the same target; the reference encoder re-encodes it to exactly sparse-i8.ndiff.',
      base: 'sparse-i8.base.json',
      payload: 'alt-encoding.ndiff',
      target: 'sparse-i8.target.json',
      bytes: bytes.length,
      sameAs: 'sparse-i8',
    });
  }

  // A version 1 document that carries a "g" key: v1 ignores unknown keys, so no rounding happens.
  {
    const c = built.get('sparse-gaps-f32') as { payload: Payload };
    const wires = wiresOf(c.payload).map((w) => ({ ...w, g: { d: 'u8', sc: new Uint8Array(8).fill(0x3f), mn: new Uint8Array(8) } }));
    // wireDocument refuses a grid under a v1 header (the encoder never writes one): add the key after.
    const doc = { ...wireDocument(c.payload.header, []), p: wires };
    const withKey = writeWideMsgpack(doc);
    files.set('v1-grid-ignored.ndiff', withKey);
    valid.push({
      name: 'v1-grid-ignored',
      description:
        'The sparse-gaps-f32 payload (version 1) with a "g" key added to its patch (written with wide msgpack encodings): a version 1 document ignores unknown keys, "g" included, so it decodes to the sparse-gaps-f32 payload and applies to exactly its target, unrounded.',
      base: 'sparse-gaps-f32.base.json',
      payload: 'v1-grid-ignored.ndiff',
      target: 'sparse-gaps-f32.target.json',
      bytes: withKey.length,
      sameAs: 'sparse-gaps-f32',
    });
  }

  // Invalid payloads: one defect each.
  const invalid: InvalidVector[] = [];
  const a = built.get('sparse-gaps-f32') as { bytes: Uint8Array; payload: Payload };
  const bm = built.get('sparse-bitmap-f16') as { bytes: Uint8Array; payload: Payload };
  const i8 = built.get('sparse-i8') as { bytes: Uint8Array; payload: Payload };
  const add = (name: string, description: string, bytes: Uint8Array, error: string, stage: InvalidVector['stage'], base = 'sparse-gaps-f32.base.json', extra: Partial<InvalidVector> = {}) => {
    files.set(`invalid-${name}.ndiff`, bytes);
    invalid.push({ name, description, base, payload: `invalid-${name}.ndiff`, stage, error, code: ERROR_CODES[error], ...extra });
  };
  const aHeader = a.payload.header;
  const aWire = () => wiresOf(a.payload)[0];
  const bmWire = () => wiresOf(bm.payload)[0];
  const i8Wire = () => wiresOf(i8.payload)[0];
  const f32Bytes = (xs: number[]) => new Uint8Array(Float32Array.from(xs).buffer);

  add('truncated', 'sparse-gaps-f32.ndiff without its last 10 bytes: the msgpack document ends early.', a.bytes.slice(0, a.bytes.length - 10), 'PayloadFormatError', 'decode');
  add('trailing-byte', 'sparse-gaps-f32.ndiff followed by one more byte (0xc0): a payload is exactly one msgpack document.', Uint8Array.from([...a.bytes, 0xc0]), 'PayloadFormatError', 'decode');
  add('not-a-map', 'The msgpack array [1, 2] (92 01 02) instead of a map.', Uint8Array.from([0x92, 0x01, 0x02]), 'PayloadFormatError', 'decode');
  add('unsupported-version', 'sparse-gaps-f32 with "nd" = 7 (versions 1 to 6 exist).', packPayload({ ...aHeader, version: 7 }, [aWire()]), 'UnsupportedVersionError', 'decode');
  add('missing-version', 'sparse-gaps-f32 without the "nd" key.', writeWideMsgpack(Object.fromEntries(Object.entries(wireDocument(aHeader, [aWire()])).filter(([k]) => k !== 'nd'))), 'PayloadFormatError', 'decode');
  add('too-large', 'sparse-gaps-f32.ndiff decoded with maxPayloadBytes one less than its length: refused before parsing.', a.bytes.slice(), 'PayloadTooLargeError', 'decode', undefined, { maxPayloadBytes: a.bytes.length - 1 });
  add('gap-out-of-range', 'sparse-gaps-f32 with the gaps 0 0 3 194 55: the last position is 256 in a 256-value tensor.', packPayload(aHeader, [{ ...aWire(), i: varints([0, 0, 3, 194, 55]) }]), 'PayloadFormatError', 'decode');
  add('varint-too-long', 'sparse-gaps-f32 whose first gap is written in 6 bytes (80 80 80 80 80 00): a varint is at most 5 bytes.', packPayload(aHeader, [{ ...aWire(), i: Uint8Array.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x00, 0x03, 0xc2, 0x01, 0x36]) }]), 'PayloadFormatError', 'decode');
  add('varint-over-32-bits', 'sparse-gaps-f32 whose first gap is ff ff ff ff 1f (2^36 - 1): a gap must fit 32 bits.', packPayload(aHeader, [{ ...aWire(), i: Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0x1f, 0x00, 0x03, 0xc2, 0x01, 0x36]) }]), 'PayloadFormatError', 'decode');
  add('gaps-trailing-byte', 'sparse-gaps-f32 with one byte more in "i" than its 5 varints.', packPayload(aHeader, [{ ...aWire(), i: Uint8Array.from([...varints([0, 0, 3, 194, 54]), 0x00]) }]), 'PayloadFormatError', 'decode');
  add('nan-value', 'sparse-gaps-f32 with its third f32 value replaced by a quiet NaN (00 00 c0 7f).', packPayload(aHeader, [{ ...aWire(), v: f32Bytes([0.5, 2 ** -24, NaN, -0.0078125, 3.14159]) }]), 'NonFiniteValueError', 'decode');
  add('f16-infinity', 'sparse-bitmap-f16 with its first value replaced by the half +Infinity (00 7c).', packPayload(bm.payload.header, [{ ...bmWire(), v: Uint8Array.from([0x00, 0x7c, ...bmWire().v.slice(2)]) }]), 'NonFiniteValueError', 'decode', 'sparse-bitmap-f16.base.json');
  add('i8-overflow', 'sparse-i8 with scale q = 3e38: 127 x q overflows float32 to Infinity.', packPayload(i8.payload.header, [{ ...i8Wire(), q: Math.fround(3e38) }]), 'NonFiniteValueError', 'decode', 'sparse-i8.base.json');
  add('i8-scale-not-float32', 'sparse-i8 with scale q = 0.1 written as float64 (not a float32 value).', writeWideMsgpack(wireDocument(i8.payload.header, [{ ...i8Wire(), q: 0.1 }])), 'PayloadFormatError', 'decode', 'sparse-i8.base.json');
  add('i8-scale-zero', 'sparse-i8 with scale q = 0.', packPayload(i8.payload.header, [{ ...i8Wire(), q: 0 }]), 'PayloadFormatError', 'decode', 'sparse-i8.base.json');
  {
    const w = bmWire();
    const i = w.i as Uint8Array;
    add('bitmap-past-end', 'sparse-bitmap-f16 with bit 7 of the last bitmap byte set (position 15 of a 15-value tensor), "n" and the values grown to match.', packPayload(bm.payload.header, [{ ...w, i: Uint8Array.from([i[0], i[1] | 0x80]), n: 8, v: Uint8Array.from([...w.v, 0x00, 0x3c]) }]), 'PayloadFormatError', 'decode', 'sparse-bitmap-f16.base.json');
    add('bitmap-count-mismatch', 'sparse-bitmap-f16 with "n" = 6 (and 6 values) while the bitmap marks 7 positions.', packPayload(bm.payload.header, [{ ...w, n: 6, v: w.v.slice(0, 12) }]), 'PayloadFormatError', 'decode', 'sparse-bitmap-f16.base.json');
    add('bitmap-wrong-length', 'sparse-bitmap-f16 with a 3-byte bitmap for 15 values (ceil(15 / 8) = 2).', packPayload(bm.payload.header, [{ ...w, i: Uint8Array.from([i[0], i[1], 0]) }]), 'PayloadFormatError', 'decode', 'sparse-bitmap-f16.base.json');
  }
  add('values-length', 'sparse-gaps-f32 with 19 value bytes for 5 f32 values.', packPayload(aHeader, [{ ...aWire(), v: aWire().v.slice(0, 19) }]), 'PayloadFormatError', 'decode');
  add('duplicate-tensor', 'sparse-gaps-f32 with its patch listed twice.', packPayload(aHeader, [aWire(), aWire()]), 'PayloadFormatError', 'decode');
  add('unknown-kind', 'sparse-gaps-f32 with patch kind "k" = "x".', packPayload(aHeader, [{ ...aWire(), k: 'x' as 's' }]), 'PayloadFormatError', 'decode');
  add('digest-length', 'sparse-gaps-f32 with a 7-byte base digest "b".', packPayload(aHeader, [{ ...aWire(), b: aWire().b.slice(0, 7) }]), 'PayloadFormatError', 'decode');
  {
    const g8 = built.get('grid-u8-sparse-i8') as { payload: Payload };
    const w = () => wiresOf(g8.payload)[0];
    add('grid-dtype', 'grid-u8-sparse-i8 with grid dtype "g.d" = "u4" (not one of f32, u8, u16, qi8, qu8, f16, bf16).', packPayload(g8.payload.header, [{ ...w(), g: { ...w().g, d: 'u4' } as WirePatch['g'] }]), 'PayloadFormatError', 'decode', 'grid-u8-sparse-i8.base.json');
    add('grid-scale-zero', 'grid-u8-sparse-i8 with grid scale "g.sc" = 0 (8 zero bytes).', packPayload(g8.payload.header, [{ ...w(), g: { ...w().g, sc: new Uint8Array(8) } as WirePatch['g'] }]), 'PayloadFormatError', 'decode', 'grid-u8-sparse-i8.base.json');
    add('grid-missing-min', 'grid-u8-sparse-i8 with no grid min "g.mn".', packPayload(g8.payload.header, [{ ...w(), g: { d: 'u8', sc: w().g?.sc } as WirePatch['g'] }]), 'PayloadFormatError', 'decode', 'grid-u8-sparse-i8.base.json');
    const qi = built.get('grid-qi8-sparse-i8') as { payload: Payload };
    const wq = () => wiresOf(qi.payload)[0];
    const f64 = (x: number) => {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setFloat64(0, x, false);
      return b;
    };
    add('grid-zero-point-range', 'grid-qi8-sparse-i8 with zero point "g.zp" = 128, outside [-128, 127] (an INT8 cannot hold it).', packPayload(qi.payload.header, [{ ...wq(), g: { ...wq().g, zp: 128 } as WirePatch['g'] }]), 'PayloadFormatError', 'decode', 'grid-qi8-sparse-i8.base.json');
    add('grid-zero-point-missing', 'grid-qi8-sparse-i8 with no zero point "g.zp" (a model without one says 0).', packPayload(qi.payload.header, [{ ...wq(), g: { d: 'qi8', sc: wq().g?.sc } as WirePatch['g'] }]), 'PayloadFormatError', 'decode', 'grid-qi8-sparse-i8.base.json');
    add('grid-scale-not-float32', 'grid-qi8-sparse-i8 with grid scale "g.sc" = 0.05 as float64, which is not a float32 value (ONNX scales are float32).', packPayload(qi.payload.header, [{ ...wq(), g: { ...wq().g, sc: f64(0.05) } as WirePatch['g'] }]), 'PayloadFormatError', 'decode', 'grid-qi8-sparse-i8.base.json');
  }
  {
    const sx = built.get('sparse-x') as { payload: Payload };
    const w = () => wiresOf(sx.payload)[0];
    // (the reference encoder refuses to write codec x under "nd" = 1: the wide writer does)
    add('x-in-v1', 'sparse-x with "nd" = 1 (written with wide msgpack encodings): codec x exists from version 2 on, so a version 1 document naming it has an unknown codec.', writeWideMsgpack({ ...wireDocument(sx.payload.header, [w()]), nd: 1 }), 'PayloadFormatError', 'decode', 'sparse-x.base.json');
    add('x-length-mismatch', 'sparse-x with one byte cut from the end of "v": the length fields call for one more byte of masks.', packPayload(sx.payload.header, [{ ...w(), v: w().v.slice(0, -1) }]), 'PayloadFormatError', 'decode', 'sparse-x.base.json');
    add('x-length-past-end', 'sparse-x with a length field set past its 5 values (bits 2-3 of the second length byte).', packPayload(sx.payload.header, [{ ...w(), v: Uint8Array.from([w().v[0], w().v[1] | 0x04, ...w().v.slice(2), 0]) }]), 'PayloadFormatError', 'decode', 'sparse-x.base.json');
    const sr = built.get('sparse-xr') as { payload: Payload };
    const r = () => wiresOf(sr.payload)[0];
    add('xr-in-v2', 'sparse-xr with "nd" = 2 (written with wide msgpack encodings): codec xr exists from version 3 on, so a version 2 document naming it has an unknown codec.', writeWideMsgpack({ ...wireDocument(sr.payload.header, [r()]), nd: 2 }), 'PayloadFormatError', 'decode', 'sparse-xr.base.json');
    add('xr-short', 'sparse-xr with "v" cut to 3 x 5 + 3 bytes: the low bytes and the range coder\'s first 4 bytes need at least 3 x 5 + 4.', packPayload(sr.payload.header, [{ ...r(), v: r().v.slice(0, 18) }]), 'PayloadFormatError', 'decode', 'sparse-xr.base.json');
    add('xr-truncated', 'sparse-xr with the last byte of "v" cut: decoding the last high byte reads past the end.', packPayload(sr.payload.header, [{ ...r(), v: r().v.slice(0, -1) }]), 'PayloadFormatError', 'decode', 'sparse-xr.base.json');
    add('xr-trailing-byte', 'sparse-xr with a byte appended to "v": the stream must end where the last high byte does.', packPayload(sr.payload.header, [{ ...r(), v: Uint8Array.from([...r().v, 0]) }]), 'PayloadFormatError', 'decode', 'sparse-xr.base.json');
    const hs = built.get('grid-f16-sparse-xs') as { payload: Payload };
    const xs = () => wiresOf(hs.payload)[0];
    add('xs-in-v3', 'grid-f16-sparse-xs with "nd" = 3 (written with wide msgpack encodings): codec xs exists from version 4 on, so a version 3 document naming it has an unknown codec.', writeWideMsgpack({ ...wireDocument(hs.payload.header, [xs()]), nd: 3 }), 'PayloadFormatError', 'decode', 'grid-f16-sparse-xs.base.json');
    add('xs-without-grid', 'grid-f16-sparse-xs without its grid "g": codec xs carries stored bits, so it needs a grid of 1 or 2 bytes a value.', packPayload(hs.payload.header, [{ ...xs(), g: undefined }]), 'PayloadFormatError', 'decode', 'grid-f16-sparse-xs.base.json');
    add('xs-f32-grid', 'grid-f16-sparse-xs with grid dtype "f32": a float32 tensor has no narrower stored code (codec xr carries its bits).', packPayload(hs.payload.header, [{ ...xs(), g: { d: 'f32' } as WirePatch['g'] }]), 'PayloadFormatError', 'decode', 'grid-f16-sparse-xs.base.json');
    add('xs-truncated', 'grid-f16-sparse-xs with the last byte of "v" cut: the range-coded high bytes end early.', packPayload(hs.payload.header, [{ ...xs(), v: xs().v.slice(0, -1) }]), 'PayloadFormatError', 'decode', 'grid-f16-sparse-xs.base.json');
    {
      // w[0] = 1 (3c00) with the mask 4000 gives 7c00, the half +Infinity: refused when applied.
      const inf = buildPayload(hasher, (built.get('grid-f16-sparse-xs') as { base: MemoryWeightStore }).base, [{ kind: 'sparse', name: 'h/kernel', positions: u32([0]), values: f32([32768]), codec: 'xs', grid: { dtype: 'float16' } }], { method: 'topk', modelId: 'demo-f16-xs', sequence: 16 });
      const w = wiresOf(inf.payload)[0];
      add('xs-f16-infinity', 'A sparse xs patch of grid-f16-sparse-xs\'s base whose one mask turns w[0] = 1 (3c00) into 7c00, the half +Infinity: the bytes decode (any mask is well formed), and applying it is refused as a non-finite value, the model unchanged.', packPayload(inf.payload.header, [{ ...w, v: encodeXrMasks(Uint32Array.of(0x4000), 1) }]), 'NonFiniteValueError', 'apply', 'grid-f16-sparse-xs.base.json');
    }
    const hx = built.get('hash-signed-f32') as { payload: Payload };
    add('x-on-hash', 'hash-signed-f32 re-labelled as version 2 with codec x: exact bits are for sparse and dense patches only.', packPayload({ ...hx.payload.header, version: 2 }, [{ ...wiresOf(hx.payload)[0], c: 'x' }]), 'PayloadFormatError', 'decode', 'hash-signed-f32.base.json');
  }
  {
    const cg = built.get('composite-f32-f16') as { payload: Payload };
    const w = () => wiresOf(cg.payload)[0];
    // (the reference encoder refuses to write a composite patch under "nd" < 5: the wide writer does)
    add('composite-in-v4', 'composite-f32-f16 with "nd" = 3 (written with wide msgpack encodings): the composite kind "c" exists from version 5 on, so a version 4 document naming it has an unknown kind (and a version 4 applier refuses "nd" = 5 as an unsupported version).', writeWideMsgpack({ ...wireDocument(cg.payload.header, [w()]), nd: 4 }), 'PayloadFormatError', 'decode', 'composite-f32-f16.base.json');
    add('composite-sparse-length', 'composite-f32-f16 with one byte cut from the sparse values "w" (n values of codec wc need n x 2 bytes).', packPayload(cg.payload.header, [{ ...w(), w: (w().w as Uint8Array).slice(0, -1) }]), 'PayloadFormatError', 'decode', 'composite-f32-f16.base.json');
    add('composite-sparse-codec', 'composite-f32-f16 with sparse codec "wc" = "x": exact bits are for sparse and dense patches only; a composite\'s sparse values are f32, f16 or i8.', packPayload(cg.payload.header, [{ ...w(), wc: 'x' as 'f32' }]), 'PayloadFormatError', 'decode', 'composite-f32-f16.base.json');
    add('composite-missing-rank', 'composite-f32-f16 without its rank "r".', packPayload(cg.payload.header, [{ ...w(), r: undefined }]), 'PayloadFormatError', 'decode', 'composite-f32-f16.base.json');
    add('composite-sparse-infinity', 'composite-f32-f16 with its first sparse value replaced by the half +Infinity (00 7c).', packPayload(cg.payload.header, [{ ...w(), w: Uint8Array.from([0x00, 0x7c, ...(w().w as Uint8Array).slice(2)]) }]), 'NonFiniteValueError', 'decode', 'composite-f32-f16.base.json');
  }
  {
    const lb = built.get('lowbit-3bit-columns') as { payload: Payload };
    const w = () => wiresOf(lb.payload)[0];
    const base = 'lowbit-3bit-columns.base.json';
    // (the reference encoder refuses to write codec l under "nd" < 6: the wide writer does)
    add('lowbit-in-v5', 'lowbit-3bit-columns with "nd" = 5 (written with wide msgpack encodings): codec l exists from version 6 on, so a version 5 document naming it has an unknown codec.', writeWideMsgpack({ ...wireDocument(lb.payload.header, [w()]), nd: 5 }), 'PayloadFormatError', 'decode', base);
    add('lowbit-codes-short', 'lowbit-3bit-columns with the last byte of "v" cut: 24 codes of 3 bits need 9 bytes.', packPayload(lb.payload.header, [{ ...w(), v: w().v.slice(0, -1) }]), 'PayloadFormatError', 'decode', base);
    add('lowbit-padding-bits', 'lowbit-1bit-rows with the 16th bit of "v" set: 15 codes of 1 bit leave one bit of padding, which must be 0.', (() => {
      const r = built.get('lowbit-1bit-rows') as { payload: Payload };
      const wr = wiresOf(r.payload)[0];
      return packPayload(r.payload.header, [{ ...wr, v: Uint8Array.from(wr.v, (b, i) => (i === 1 ? b | 0x80 : b)) }]);
    })(), 'PayloadFormatError', 'decode', 'lowbit-1bit-rows.base.json');
    add('lowbit-9-bits', 'lowbit-3bit-columns with "lb" = 9: a code is 1 to 8 bits.', packPayload(lb.payload.header, [{ ...w(), lb: 9 }]), 'PayloadFormatError', 'decode', base);
    add('lowbit-too-many-scales', 'lowbit-3bit-columns with "lg" = 6: 24 values in groups of 6 take at most 4 scales, and "ls" holds 6.', packPayload(lb.payload.header, [{ ...w(), lg: 6 }]), 'PayloadFormatError', 'decode', base);
    add('lowbit-negative-scale', 'lowbit-3bit-columns with its first scale negative (00 bc, the half -1): scales are finite and not negative.', packPayload(lb.payload.header, [{ ...w(), ls: Uint8Array.from([0x00, 0xbc, ...(w().ls as Uint8Array).slice(2)]) }]), 'PayloadFormatError', 'decode', base);
    add('lowbit-infinite-scale', 'lowbit-3bit-columns with its first scale the half +Infinity (00 7c).', packPayload(lb.payload.header, [{ ...w(), ls: Uint8Array.from([0x00, 0x7c, ...(w().ls as Uint8Array).slice(2)]) }]), 'PayloadFormatError', 'decode', base);
    add('lowbit-exponent-range', 'lowbit-3bit-columns with "le" = 33: the scale exponent is -64 to 32.', packPayload(lb.payload.header, [{ ...w(), le: 33 }]), 'PayloadFormatError', 'decode', base);
    add('lowbit-on-hashed', 'lowbit-3bit-columns as a hashed patch of 24 buckets: codec l is for dense, sparse, low-rank and composite patches only.', packPayload(lb.payload.header, [{ ...w(), k: 'h', h: 7, nb: 24, sg: false }]), 'PayloadFormatError', 'decode', base);
  }
  {
    const nv = built.get('lowbit-new-values') as { payload: Payload };
    const w = () => wiresOf(nv.payload)[0];
    const base = 'lowbit-new-values.base.json';
    add('lowbit-new-values-codec', 'lowbit-new-values with codec "f16" and 12 float16 values: kind "n" takes codec l alone, so it is an unknown kind for any other codec.', packPayload(nv.payload.header, [{ ...w(), c: 'f16', v: new Uint8Array(24), lb: undefined, lg: undefined, le: undefined, ls: undefined }]), 'PayloadFormatError', 'decode', base);
    add('lowbit-new-values-codes-short', 'lowbit-new-values with the last byte of "v" cut: 12 codes of 3 bits need 5 bytes.', packPayload(nv.payload.header, [{ ...w(), v: w().v.slice(0, -1) }]), 'PayloadFormatError', 'decode', base);
  }
  {
    const ls = built.get('lowbit-sparse-channels') as { payload: Payload };
    const w = () => wiresOf(ls.payload)[0];
    const base = 'lowbit-sparse-channels.base.json';
    add('lowbit-sparse-too-many-scales', 'lowbit-sparse-channels with "lg" = 6: a [4, 6] tensor in groups of 6 takes at most 4 scales, and "ls" holds 6.', packPayload(ls.payload.header, [{ ...w(), lg: 6 }]), 'PayloadFormatError', 'decode', base);
    add('lowbit-sparse-codes-long', 'lowbit-sparse-channels with a byte added to "v": 5 codes of 4 bits take 3 bytes.', packPayload(ls.payload.header, [{ ...w(), v: Uint8Array.from([...w().v, 0]) }]), 'PayloadFormatError', 'decode', base);
  }
  {
    const lf = built.get('lowbit-factors-mixed') as { payload: Payload };
    const w = () => wiresOf(lf.payload)[0];
    const base = 'lowbit-factors-mixed.base.json';
    add('lowbit-factors-width-count', 'lowbit-factors-mixed with "lb" = [8, 3]: rank 3 takes three widths.', packPayload(lf.payload.header, [{ ...w(), lb: [8, 3] }]), 'PayloadFormatError', 'decode', base);
    add('lowbit-factors-width-zero', 'lowbit-factors-mixed with "lb" = [8, 0, 1]: a direction\'s width is 1 to 8 bits (a direction carried at 0 bits is left out of the rank instead).', packPayload(lf.payload.header, [{ ...w(), lb: [8, 0, 1] }]), 'PayloadFormatError', 'decode', base);
    add('lowbit-factors-width-uint', 'lowbit-factors-mixed with "lb" = 8, a dense patch\'s form: low-rank factors take an array of widths.', packPayload(lf.payload.header, [{ ...w(), lb: 8 }]), 'PayloadFormatError', 'decode', base);
    add('lowbit-factors-group', 'lowbit-factors-mixed with "lg" = 1: factors take a scale a factor vector and no group.', packPayload(lf.payload.header, [{ ...w(), lg: 1 }]), 'PayloadFormatError', 'decode', base);
    add('lowbit-factors-scales-count', 'lowbit-factors-mixed with its last scale cut: rank 3 takes 6 scales.', packPayload(lf.payload.header, [{ ...w(), ls: (w().ls as Uint8Array).slice(0, -2) }]), 'PayloadFormatError', 'decode', base);
    add('lowbit-factors-nan-scale', 'lowbit-factors-mixed with its first scale the half NaN (00 7e).', packPayload(lf.payload.header, [{ ...w(), ls: Uint8Array.from([0x00, 0x7e, ...(w().ls as Uint8Array).slice(2)]) }]), 'PayloadFormatError', 'decode', base);
    add('lowbit-factors-codes-long', 'lowbit-factors-mixed with a byte added to "v": 108 bits of codes take 14 bytes.', packPayload(lf.payload.header, [{ ...w(), v: Uint8Array.from([...w().v, 0]) }]), 'PayloadFormatError', 'decode', base);
    add('lowbit-factors-padding-bits', 'lowbit-factors-mixed with the last bit of "v" set: 108 bits of codes leave 4 bits of padding, which must be 0.', packPayload(lf.payload.header, [{ ...w(), v: Uint8Array.from(w().v, (b, i) => (i === w().v.length - 1 ? b | 0x80 : b)) }]), 'PayloadFormatError', 'decode', base);
  }
  {
    const lo = built.get('lowbit-outliers') as { payload: Payload };
    const w = () => wiresOf(lo.payload)[0];
    const base = 'lowbit-outliers.base.json';
    add('lowbit-outliers-rank', 'lowbit-outliers with a rank "r" = 1: a composite patch of dense codes has no factors and no rank.', packPayload(lo.payload.header, [{ ...w(), r: 1 }]), 'PayloadFormatError', 'decode', base);
    add('lowbit-outliers-codes-short', 'lowbit-outliers with the last byte of "v" cut: 12 codes of 2 bits need 3 bytes.', packPayload(lo.payload.header, [{ ...w(), v: w().v.slice(0, -1) }]), 'PayloadFormatError', 'decode', base);
    add('lowbit-outliers-sparse-codec', 'lowbit-outliers with sparse codec "wc" = "l": the sparse part is f32, f16 or i8.', packPayload(lo.payload.header, [{ ...w(), wc: 'l' as 'f32' }]), 'PayloadFormatError', 'decode', base);
    add('lowbit-outliers-position', 'lowbit-outliers with its positions as gaps 3, 0, 7: the last, position 12, is past the [3, 4] tensor.', packPayload(lo.payload.header, [{ ...w(), ic: 'g', i: Uint8Array.from([3, 0, 7]) }]), 'PayloadFormatError', 'decode', base);
  }
  add('optional-key-nil', 'sparse-gaps-f32 with "ct" present as nil: an optional key is absent or has its type.', writeWideMsgpack({ ...wireDocument(aHeader, [aWire()]), ct: null }), 'PayloadFormatError', 'decode');
  // Apply stage: the payload is well formed; the model decides.
  add('unknown-tensor', 'sparse-gaps-f32 patching tensor "w2", which the model does not have.', packPayload(aHeader, [{ ...aWire(), t: 'w2' }]), 'ModelMismatchError', 'apply');
  add('shape-mismatch', 'sparse-gaps-f32 declaring shape [256] for the [16, 16] tensor "w" (same size, different shape).', packPayload(aHeader, [{ ...aWire(), s: [256] }]), 'ModelMismatchError', 'apply');
  add('fit-before-base', 'Unknown tensor "w2" and a wrong base fingerprint: the fit check runs first.', packPayload({ ...aHeader, baseFingerprint: '0123456789abcdef' }, [{ ...aWire(), t: 'w2' }]), 'ModelMismatchError', 'apply');
  add('base-mismatch', 'sparse-gaps-f32 with a base fingerprint "bf" that is not the model\'s.', packPayload({ ...aHeader, baseFingerprint: '0123456789abcdef' }, [aWire()]), 'BaseMismatchError', 'apply');
  add('base-digest-mismatch', 'sparse-gaps-f32 whose per-tensor base digest "b" is wrong while "bf" is the model\'s: the payload contradicts itself and is refused before any write.', packPayload(aHeader, [{ ...aWire(), b: Uint8Array.from([1, 35, 69, 103, 137, 171, 205, 239]) }]), 'BaseMismatchError', 'apply');
  {
    const w = aWire();
    const v = w.v.slice();
    v[0] ^= 1;
    add('target-digest-mismatch', 'sparse-gaps-f32 with the last bit of its first value flipped: still finite, but the patched tensor does not hash to "a"; the patch is undone.', packPayload(aHeader, [{ ...w, v }]), 'TargetMismatchError', 'apply');
  }
  add('target-fingerprint-mismatch', 'sparse-gaps-f32 with a wrong target fingerprint "tf" (the per-tensor digest "a" is right): undone.', packPayload({ ...aHeader, targetFingerprint: '0123456789abcdef' }, [aWire()]), 'TargetMismatchError', 'apply');

  json('vectors.json', {
    description:
      'Payload format v1 to v6 test vectors (docs/FORMAT.md; v2 adds storage grids, the "grid-*" cases, and codec x; v3 codec xr; v4 codec xs, exact stored bits; v5 the composite patch kind c, the "composite-*" cases; v6 codec l, low-bit codes with scales per group, the "lowbit-*" cases, whose patches list "lowbit": bits, group, exponent and the scales as float16 hex, and on low-rank factors "lowbitFactors": a width a direction, exponent and scales). Models: { fingerprint, tensors: { name: { shape, digest, values } } } with values the hex of the little-endian float32 bytes. Fingerprints and digests are 16 lowercase hex digits of the xxh64 value. For every valid case, applying payload to base gives exactly target (status "applied"), and applying it to target gives "already-applied". Patch "values"/"buckets" are the decoded float32 values (hex, little-endian); codec x, xr and xs patches list "masks" instead, the XOR masks as little-endian uint32 hex (for xs, masks of the stored codes). Invalid cases: "stage" decode means the decoder refuses the bytes alone; apply means it decodes and applying it to base is refused, leaving base unchanged. Regenerate with: node --import tsx test/vectors/payloads/generate.ts',
    valid,
    invalid,
  });
  for (const [name, bytes] of generateByteDeltaVectors()) files.set(name, bytes);
  for (const [name, bytes] of generateStructuralFilesVectors(hasher)) files.set(name, bytes);
  return files;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const hasher = await getHasher();
  const files = generatePayloadVectors(hasher);
  const dir = new URL('./', import.meta.url);
  for (const [name, bytes] of files) writeFileSync(new URL(name, dir), bytes);
  console.log(`wrote ${files.size} files with the ${hasher.kind} hasher`);
}
