/**
 * The ggml tensor types a GGUF file may name, in one table: the type id stored in a tensor info,
 * ggml's name for it, how many weights a block holds and how many bytes a block takes
 * (`ggml.c`'s `type_traits`, `ggml-common.h`'s `block_*` structs, gguf-py's `GGML_QUANT_SIZES`).
 * A type with a dequantizer here (`blocks.ts`) is read as float32; the others with a known block
 * size (the IQ*, TQ*, MXFP4 families) are carried as opaque blocks; an id not in the table is
 * refused.
 *
 * Pure code (no node, no tfjs).
 */

/** One ggml tensor type. */
export interface GgmlType {
  /** The id stored in a tensor info (`enum ggml_type`). */
  readonly id: number;
  /** ggml's name (`Q4_K`, `F16`, ...). */
  readonly name: string;
  /** Weights per block (1 for the plain types). */
  readonly blockSize: number;
  /** Bytes per block (`sizeof(block_q4_K)` = 144). */
  readonly typeSize: number;
  /** True when `blocks.ts` turns its blocks into float32 values (the others are carried as opaque bytes). */
  readonly dequantizable: boolean;
}

/** Weights per super-block of the K-quants (`QK_K`). */
export const QK_K = 256;

const t = (id: number, name: string, blockSize: number, typeSize: number, dequantizable: boolean): GgmlType => ({ id, name, blockSize, typeSize, dequantizable });

/**
 * Every type this reader knows, by id. Sizes of the quantized blocks, from `ggml-common.h`:
 * `block_q4_0` {d: f16, qs[16]} 18 bytes for 32 weights; `block_q4_1` {d, m: f16, qs[16]} 20;
 * `block_q5_0` {d, qh[4], qs[16]} 22; `block_q5_1` {d, m, qh[4], qs[16]} 24; `block_q8_0`
 * {d, qs[32] int8} 34; the K-quants for 256 weights: `block_q2_K` {scales[16], qs[64], d, dmin}
 * 84; `block_q3_K` {hmask[32], qs[64], scales[12], d} 110; `block_q4_K` {d, dmin, scales[12],
 * qs[128]} 144; `block_q5_K` {d, dmin, scales[12], qh[32], qs[128]} 176; `block_q6_K` {ql[128],
 * qh[64], scales[16] int8, d} 210; `block_q8_K` {d: f32, qs[256] int8, bsums[16] int16} 292.
 */
export const GGML_TYPES: readonly GgmlType[] = [
  t(0, 'F32', 1, 4, true),
  t(1, 'F16', 1, 2, true),
  t(2, 'Q4_0', 32, 18, true),
  t(3, 'Q4_1', 32, 20, true),
  t(6, 'Q5_0', 32, 22, true),
  t(7, 'Q5_1', 32, 24, true),
  t(8, 'Q8_0', 32, 34, true),
  t(10, 'Q2_K', QK_K, 84, true),
  t(11, 'Q3_K', QK_K, 110, true),
  t(12, 'Q4_K', QK_K, 144, true),
  t(13, 'Q5_K', QK_K, 176, true),
  t(14, 'Q6_K', QK_K, 210, true),
  t(15, 'Q8_K', QK_K, 292, true),
  t(16, 'IQ2_XXS', QK_K, 66, false),
  t(17, 'IQ2_XS', QK_K, 74, false),
  t(18, 'IQ3_XXS', QK_K, 98, false),
  t(19, 'IQ1_S', QK_K, 50, false),
  t(20, 'IQ4_NL', 32, 18, false),
  t(21, 'IQ3_S', QK_K, 110, false),
  t(22, 'IQ2_S', QK_K, 82, false),
  t(23, 'IQ4_XS', QK_K, 136, false),
  t(24, 'I8', 1, 1, false),
  t(25, 'I16', 1, 2, false),
  t(26, 'I32', 1, 4, false),
  t(27, 'I64', 1, 8, false),
  t(28, 'F64', 1, 8, false),
  t(29, 'IQ1_M', QK_K, 56, false),
  t(30, 'BF16', 1, 2, true),
  t(34, 'TQ1_0', QK_K, 54, false),
  t(35, 'TQ2_0', QK_K, 66, false),
  t(39, 'MXFP4', 32, 17, false),
  t(40, 'NVFP4', 64, 36, false),
  t(41, 'Q1_0', 128, 18, false),
];

/**
 * Ids that name no storable type, with why: refused with that reason. Q8_1 is ggml's
 * intermediate for dot products, never written by llama.cpp, and ggml (36 bytes) and gguf-py
 * (40) disagree on its block; the others were removed from ggml (their files need an old
 * llama.cpp to be converted).
 */
export const GGML_REFUSED_TYPES: ReadonlyMap<number, string> = new Map([
  [4, 'Q4_2, removed from ggml in 2023'],
  [5, 'Q4_3, removed from ggml in 2023'],
  [9, 'Q8_1, ggml\'s intermediate type for dot products, which llama.cpp never stores'],
  [31, 'Q4_0_4_4, removed from ggml (repacked at load time now)'],
  [32, 'Q4_0_4_8, removed from ggml (repacked at load time now)'],
  [33, 'Q4_0_8_8, removed from ggml (repacked at load time now)'],
  [36, 'IQ4_NL_4_4, removed from ggml (repacked at load time now)'],
  [37, 'IQ4_NL_4_8, removed from ggml (repacked at load time now)'],
  [38, 'IQ4_NL_8_8, removed from ggml (repacked at load time now)'],
]);

const BY_ID = new Map(GGML_TYPES.map((x) => [x.id, x]));
const BY_NAME = new Map(GGML_TYPES.map((x) => [x.name, x]));

/** The type of id `id`, or undefined (unknown or refused: see {@link GGML_REFUSED_TYPES}). */
export function ggmlTypeById(id: number): GgmlType | undefined {
  return BY_ID.get(id);
}

/** The type named `name` (`Q4_K`), or undefined. */
export function ggmlTypeByName(name: string): GgmlType | undefined {
  return BY_NAME.get(name);
}

/**
 * Bytes of a tensor of `elements` weights whose innermost dimension is `ne0`, or a reason it has
 * none: the innermost dimension must be a whole number of blocks (ggml stores rows of blocks).
 */
export function ggmlTensorBytes(type: GgmlType, ne0: number, elements: number): number | string {
  if (ne0 % type.blockSize !== 0) return `its innermost dimension ${ne0} is not a multiple of ${type.name}'s block of ${type.blockSize} weights`;
  return (elements / type.blockSize) * type.typeSize;
}
