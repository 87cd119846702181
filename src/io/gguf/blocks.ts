/**
 * The ggml block layouts (`ggml-common.h`) and their dequantization to float32, one function per
 * type, named as ggml names the blocks. Each computes what gguf-py's `gguf.quants.dequantize`
 * computes, bit for bit: every operation a float32 operation (rounded with `Math.fround`, no
 * fused multiply-add) in gguf-py's order, so the values (and so the tensor digests of
 * `fingerprint.ts`) are the same in any language that follows these formulas. ggml's own C may
 * contract `d * q - m` into one fused operation on some machines; these are the reference here.
 *
 * Pure code (no node, no tfjs).
 */
import { UsageError } from '../../core/errors.ts';
import { LITTLE_ENDIAN_HOST } from '../../core/endian.ts';
import { QK_K, type GgmlType } from './types.ts';

const f = Math.fround;

let halfTable: Float32Array | undefined;
/** Every float16 bit pattern's float32 value, NaN payloads kept (built once, 256 KiB). */
function halves(): Float32Array {
  if (halfTable) return halfTable;
  const table = new Float32Array(65536);
  const bits = new Uint32Array(table.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) {
      table[h] = mant * 2 ** -24;
      bits[h] = (bits[h] | sign) >>> 0;
    } else if (exp === 31) bits[h] = (sign | 0x7f800000 | (mant << 13)) >>> 0;
    else bits[h] = (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
  }
  return (halfTable = table);
}

/** The float16 at `b[at]`, `b[at + 1]` (little-endian) as float32. */
function half(h: Float32Array, b: Uint8Array, at: number): number {
  return h[b[at] | (b[at + 1] << 8)];
}

/** An int8 from a byte. */
function i8(x: number): number {
  return (x << 24) >> 24;
}

/** A dequantizer: `n` blocks of `b` from byte 0 into `out` from `at`. */
type Dequantize = (b: Uint8Array, n: number, out: Float32Array, at: number) => void;

/** F32: the little-endian float32 values. */
const dequantizeF32: Dequantize = (b, n, out, at) => {
  if (LITTLE_ENDIAN_HOST) {
    new Uint8Array(out.buffer, out.byteOffset + 4 * at, 4 * n).set(b.subarray(0, 4 * n));
    return;
  }
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < n; i++) out[at + i] = dv.getFloat32(4 * i, true);
};

/** F16: IEEE halves, exactly. */
const dequantizeF16: Dequantize = (b, n, out, at) => {
  const h = halves();
  for (let i = 0; i < n; i++) out[at + i] = half(h, b, 2 * i);
};

/** BF16: the high half of a float32. */
const dequantizeBF16: Dequantize = (b, n, out, at) => {
  const bits = new Uint32Array(out.buffer, out.byteOffset + 4 * at, n);
  for (let i = 0; i < n; i++) bits[i] = ((b[2 * i] | (b[2 * i + 1] << 8)) << 16) >>> 0;
};

/** `block_q8_0` {ggml_half d; int8_t qs[32]} (34 bytes): `qs[j] * d`. */
const dequantizeQ8_0: Dequantize = (b, n, out, at) => {
  const h = halves();
  for (let i = 0; i < n; i++) {
    const o = 34 * i;
    const d = half(h, b, o);
    for (let j = 0; j < 32; j++) out[at + 32 * i + j] = f(i8(b[o + 2 + j]) * d);
  }
};

/** `block_q4_0` {ggml_half d; uint8_t qs[16]} (18 bytes): weight j < 16 the low nibble of `qs[j]`, j + 16 its high nibble; `d * (q - 8)`. */
const dequantizeQ4_0: Dequantize = (b, n, out, at) => {
  const h = halves();
  for (let i = 0; i < n; i++) {
    const o = 18 * i;
    const d = half(h, b, o);
    const y = at + 32 * i;
    for (let j = 0; j < 16; j++) {
      out[y + j] = f(d * ((b[o + 2 + j] & 0xf) - 8));
      out[y + j + 16] = f(d * ((b[o + 2 + j] >> 4) - 8));
    }
  }
};

/** `block_q4_1` {ggml_half d, m; uint8_t qs[16]} (20 bytes): `d * q + m`. */
const dequantizeQ4_1: Dequantize = (b, n, out, at) => {
  const h = halves();
  for (let i = 0; i < n; i++) {
    const o = 20 * i;
    const d = half(h, b, o);
    const m = half(h, b, o + 2);
    const y = at + 32 * i;
    for (let j = 0; j < 16; j++) {
      out[y + j] = f(f(d * (b[o + 4 + j] & 0xf)) + m);
      out[y + j + 16] = f(f(d * (b[o + 4 + j] >> 4)) + m);
    }
  }
};

/** The 32 fifth bits of a Q5 block (`qh`, a little-endian u32), bit j for weight j. */
function fifthBits(b: Uint8Array, o: number): number {
  return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
}

/** `block_q5_0` {ggml_half d; uint8_t qh[4]; uint8_t qs[16]} (22 bytes): `d * (q - 16)`, q a nibble of `qs` and bit j of `qh`. */
const dequantizeQ5_0: Dequantize = (b, n, out, at) => {
  const h = halves();
  for (let i = 0; i < n; i++) {
    const o = 22 * i;
    const d = half(h, b, o);
    const qh = fifthBits(b, o + 2);
    const y = at + 32 * i;
    for (let j = 0; j < 16; j++) {
      out[y + j] = f(d * (((b[o + 6 + j] & 0xf) | (((qh >>> j) & 1) << 4)) - 16));
      out[y + j + 16] = f(d * (((b[o + 6 + j] >> 4) | (((qh >>> (j + 16)) & 1) << 4)) - 16));
    }
  }
};

/** `block_q5_1` {ggml_half d, m; uint8_t qh[4]; uint8_t qs[16]} (24 bytes): `d * q + m`. */
const dequantizeQ5_1: Dequantize = (b, n, out, at) => {
  const h = halves();
  for (let i = 0; i < n; i++) {
    const o = 24 * i;
    const d = half(h, b, o);
    const m = half(h, b, o + 2);
    const qh = fifthBits(b, o + 4);
    const y = at + 32 * i;
    for (let j = 0; j < 16; j++) {
      out[y + j] = f(f(d * ((b[o + 8 + j] & 0xf) | (((qh >>> j) & 1) << 4))) + m);
      out[y + j + 16] = f(f(d * ((b[o + 8 + j] >> 4) | (((qh >>> (j + 16)) & 1) << 4))) + m);
    }
  }
};

/**
 * `block_q2_K` {uint8_t scales[16]; uint8_t qs[64]; ggml_half d, dmin} (84 bytes): 16 groups of
 * 16 weights, group k scaled by `d * (scales[k] & 15)` less `dmin * (scales[k] >> 4)`; weight
 * `128 h + 32 s + l` is bits `2s` of `qs[32 h + l]`.
 */
const dequantizeQ2_K: Dequantize = (b, n, out, at) => {
  const h = halves();
  const dl = new Float64Array(16);
  const ml = new Float64Array(16);
  for (let i = 0; i < n; i++) {
    const o = 84 * i;
    const d = half(h, b, o + 80);
    const dmin = half(h, b, o + 82);
    for (let k = 0; k < 16; k++) {
      dl[k] = f(d * (b[o + k] & 0xf));
      ml[k] = f(dmin * (b[o + k] >> 4));
    }
    const y = at + QK_K * i;
    for (let v = 0; v < QK_K; v++) {
      const q = (b[o + 16 + 32 * (v >> 7) + (v & 31)] >> (2 * ((v >> 5) & 3))) & 3;
      out[y + v] = f(f(dl[v >> 4] * q) - ml[v >> 4]);
    }
  }
};

/**
 * `block_q3_K` {uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; ggml_half d} (110 bytes):
 * 16 groups of 16 weights, 6-bit signed scales (low nibbles in bytes 0-7, two high bits each in
 * bytes 8-11); weight `v` is 2 bits of `qs` (as in Q2_K) less 4 unless bit `v >> 5` of
 * `hmask[v & 31]` is set.
 */
const dequantizeQ3_K: Dequantize = (b, n, out, at) => {
  const h = halves();
  const dl = new Float64Array(16);
  for (let i = 0; i < n; i++) {
    const o = 110 * i;
    const d = half(h, b, o + 108);
    for (let k = 0; k < 16; k++) {
      const low = (b[o + 96 + (k & 7)] >> (4 * (k >> 3))) & 0xf;
      const high = (b[o + 104 + (k & 3)] >> (2 * (k >> 2))) & 3;
      dl[k] = f(d * (i8(low | (high << 4)) - 32));
    }
    const y = at + QK_K * i;
    for (let v = 0; v < QK_K; v++) {
      const low = (b[o + 32 + 32 * (v >> 7) + (v & 31)] >> (2 * ((v >> 5) & 3))) & 3;
      const set = (b[o + (v & 31)] >> (v >> 5)) & 1;
      out[y + v] = f(dl[v >> 4] * (low - (set ? 0 : 4)));
    }
  }
};

/**
 * The eight 6-bit scales and mins of a Q4_K or Q5_K block (`get_scale_min_k4`): scales j < 4 in
 * the low 6 bits of bytes j, mins in bytes 4 + j; j >= 4 a nibble of byte 8 + j - 4 and the two
 * top bits of bytes j - 4 (scales) and j (mins).
 */
function scaleMinK4(b: Uint8Array, o: number, sc: Float64Array, mn: Float64Array, d: number, dmin: number): void {
  for (let j = 0; j < 8; j++) {
    const s = j < 4 ? b[o + j] & 63 : (b[o + 4 + j] & 0xf) | ((b[o + j - 4] >> 2) & 0x30);
    const m = j < 4 ? b[o + 4 + j] & 63 : (b[o + 4 + j] >> 4) | ((b[o + j] >> 2) & 0x30);
    sc[j] = f(d * s);
    mn[j] = f(dmin * m);
  }
}

/**
 * `block_q4_K` {ggml_half d, dmin; uint8_t scales[12]; uint8_t qs[128]} (144 bytes): 8 groups of
 * 32 weights; weight `64 c + 32 s + l` is nibble `s` of `qs[32 c + l]`; `(d * sc) * q - dmin * m`.
 */
const dequantizeQ4_K: Dequantize = (b, n, out, at) => {
  const h = halves();
  const sc = new Float64Array(8);
  const mn = new Float64Array(8);
  for (let i = 0; i < n; i++) {
    const o = 144 * i;
    scaleMinK4(b, o + 4, sc, mn, half(h, b, o), half(h, b, o + 2));
    const y = at + QK_K * i;
    for (let v = 0; v < QK_K; v++) {
      const q = (b[o + 16 + 32 * (v >> 6) + (v & 31)] >> (4 * ((v >> 5) & 1))) & 0xf;
      out[y + v] = f(f(sc[v >> 5] * q) - mn[v >> 5]);
    }
  }
};

/**
 * `block_q5_K` {ggml_half d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]}
 * (176 bytes): Q4_K's nibbles with a fifth bit, bit `v >> 5` of `qh[v & 31]`.
 */
const dequantizeQ5_K: Dequantize = (b, n, out, at) => {
  const h = halves();
  const sc = new Float64Array(8);
  const mn = new Float64Array(8);
  for (let i = 0; i < n; i++) {
    const o = 176 * i;
    scaleMinK4(b, o + 4, sc, mn, half(h, b, o), half(h, b, o + 2));
    const y = at + QK_K * i;
    for (let v = 0; v < QK_K; v++) {
      const low = (b[o + 48 + 32 * (v >> 6) + (v & 31)] >> (4 * ((v >> 5) & 1))) & 0xf;
      const high = (b[o + 16 + (v & 31)] >> (v >> 5)) & 1;
      out[y + v] = f(f(sc[v >> 5] * (low | (high << 4))) - mn[v >> 5]);
    }
  }
};

/**
 * `block_q6_K` {uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; ggml_half d} (210 bytes):
 * 16 groups of 16 weights scaled by `d * scales[k]`; weight `128 h + 32 s + l` has low nibble
 * `s >> 1` of `ql[64 h + 32 (s & 1) + l]` and two high bits `2s` of `qh[32 h + l]`, less 32.
 */
const dequantizeQ6_K: Dequantize = (b, n, out, at) => {
  const h = halves();
  const dl = new Float64Array(16);
  for (let i = 0; i < n; i++) {
    const o = 210 * i;
    const d = half(h, b, o + 208);
    for (let k = 0; k < 16; k++) dl[k] = f(d * i8(b[o + 192 + k]));
    const y = at + QK_K * i;
    for (let v = 0; v < QK_K; v++) {
      const hh = v >> 7;
      const s = (v >> 5) & 3;
      const l = v & 31;
      const low = (b[o + 64 * hh + 32 * (s & 1) + l] >> (4 * (s >> 1))) & 0xf;
      const high = (b[o + 128 + 32 * hh + l] >> (2 * s)) & 3;
      out[y + v] = f(dl[v >> 4] * (i8(low | (high << 4)) - 32));
    }
  }
};

/** `block_q8_K` {float d; int8_t qs[256]; int16_t bsums[16]} (292 bytes): `d * qs[j]` (bsums are sums for dot products). */
const dequantizeQ8_K: Dequantize = (b, n, out, at) => {
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < n; i++) {
    const o = 292 * i;
    const d = dv.getFloat32(o, true);
    for (let j = 0; j < QK_K; j++) out[at + QK_K * i + j] = f(d * i8(b[o + 4 + j]));
  }
};

const DEQUANTIZERS: Readonly<Record<string, Dequantize>> = {
  F32: dequantizeF32, F16: dequantizeF16, BF16: dequantizeBF16,
  Q8_0: dequantizeQ8_0, Q4_0: dequantizeQ4_0, Q4_1: dequantizeQ4_1, Q5_0: dequantizeQ5_0, Q5_1: dequantizeQ5_1,
  Q2_K: dequantizeQ2_K, Q3_K: dequantizeQ3_K, Q4_K: dequantizeQ4_K, Q5_K: dequantizeQ5_K, Q6_K: dequantizeQ6_K, Q8_K: dequantizeQ8_K,
};

/**
 * Dequantize whole blocks of `type` from `bytes` into `out` from index `at` (`out` must hold
 * them). Returns the number of values written.
 * @throws UsageError a type without a dequantizer (carried as opaque blocks), or bytes that are not whole blocks
 */
export function dequantizeInto(type: GgmlType, bytes: Uint8Array, out: Float32Array, at = 0): number {
  const run = DEQUANTIZERS[type.name];
  if (!run) throw new UsageError(`${type.name} blocks are carried as they are: this reader has no dequantizer for them (the types it dequantizes: ${Object.keys(DEQUANTIZERS).join(', ')})`, { type: type.name });
  if (bytes.length % type.typeSize !== 0) throw new UsageError(`${bytes.length} bytes are not whole ${type.name} blocks of ${type.typeSize} bytes`, { type: type.name });
  const blocks = bytes.length / type.typeSize;
  const values = blocks * type.blockSize;
  if (at + values > out.length) throw new UsageError(`${values} ${type.name} values do not fit ${out.length - at} places left in the output`, { type: type.name });
  run(bytes, blocks, out, at);
  return values;
}

/** The float32 values of whole blocks of `type` (see {@link dequantizeInto}). */
export function dequantize(type: GgmlType, bytes: Uint8Array): Float32Array {
  const out = new Float32Array((bytes.length / type.typeSize) * type.blockSize);
  dequantizeInto(type, bytes, out);
  return out;
}
