/**
 * The independent applier of payload versions 1 to 6, written from docs/FORMAT.md alone (sections
 * 2 to 7): a strict msgpack reader, the decoder, the storage grids and the applier, sharing no
 * code with src/ but the XXH hasher. test/format-vectors.test.ts checks every committed vector
 * with it, and the structural reading (spec-structural.ts) applies a version 7 payload's inner
 * value payload with it, so a device maker can trust that the document alone is enough.
 */
import type { Hasher } from '../../src/core/hasher.ts';
import { hexF32, fromHex, type ModelJson } from '../vectors/payloads/generate.ts';

const utf8 = new TextEncoder();
const le32 = (x: number): Uint8Array => Uint8Array.of(x & 255, (x >>> 8) & 255, (x >>> 16) & 255, x >>> 24);
/** FORMAT.md 2.2: the methods `m` may name. */
export const SPEC_METHODS = ['sparse', 'hash', 'topk', 'drop', 'lowrank', 'full', 'dense', 'lowbit'];
export type Fault = 'format' | 'too-large' | 'version' | 'non-finite' | 'model' | 'base' | 'target' | 'freshness';
export const FAULT_OF: Record<string, Fault> = {
  PayloadFormatError: 'format',
  PayloadTooLargeError: 'too-large',
  UnsupportedVersionError: 'version',
  NonFiniteValueError: 'non-finite',
  ModelMismatchError: 'model',
  BaseMismatchError: 'base',
  TargetMismatchError: 'target',
  FreshnessError: 'freshness',
};
export class SpecError extends Error {
  constructor(readonly fault: Fault, message: string) {
    super(`${fault}: ${message}`);
  }
}
export const bad = (message: string): never => {
  throw new SpecError('format', message);
};

/** A strict msgpack reader: maps become Map<string, unknown>, bin Uint8Array, int64 beyond 2^53 bigint. */
export function readMsgpack(bytes: Uint8Array): unknown {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const text = new TextDecoder('utf-8', { fatal: true });
  let p = 0;
  const need = (n: number) => {
    if (p + n > bytes.length) bad('truncated');
  };
  const uint = (n: number): bigint => {
    need(n);
    let v = 0n;
    for (let i = 0; i < n; i++) v = (v << 8n) | BigInt(bytes[p++]);
    return v;
  };
  const num = (v: bigint): number | bigint => (v >= -(2n ** 53n) && v <= 2n ** 53n ? Number(v) : v);
  const str = (n: number): string => {
    need(n);
    try {
      return text.decode(bytes.subarray(p, (p += n)));
    } catch {
      return bad('invalid UTF-8');
    }
  };
  const bin = (n: number): Uint8Array => {
    need(n);
    return bytes.slice(p, (p += n));
  };
  // Limits: containers nest at most 8 deep and hold at most 2^20 entries.
  let depth = 0;
  const open = (n: number, elementBytes: number) => {
    if (n > 2 ** 20 || elementBytes * n > bytes.length - p || ++depth > 8) bad('container too long or too deep');
  };
  const arr = (n: number): unknown[] => {
    open(n, 1);
    const out = Array.from({ length: n }, () => next());
    depth--;
    return out;
  };
  const map = (n: number): Map<string, unknown> => {
    open(n, 2);
    const m = new Map<string, unknown>();
    for (let i = 0; i < n; i++) {
      const k = next();
      if (typeof k !== 'string') bad('map key is not a string');
      m.set(k as string, next());
    }
    depth--;
    return m;
  };
  const next = (): unknown => {
    need(1);
    const t = bytes[p++];
    if (t <= 0x7f) return t;
    if (t >= 0xe0) return t - 0x100;
    if (t >= 0x80 && t <= 0x8f) return map(t & 0x0f);
    if (t >= 0x90 && t <= 0x9f) return arr(t & 0x0f);
    if (t >= 0xa0 && t <= 0xbf) return str(t & 0x1f);
    switch (t) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return bin(Number(uint(1)));
      case 0xc5: return bin(Number(uint(2)));
      case 0xc6: return bin(Number(uint(4)));
      case 0xca: need(4); p += 4; return dv.getFloat32(p - 4);
      case 0xcb: need(8); p += 8; return dv.getFloat64(p - 8);
      case 0xcc: return Number(uint(1));
      case 0xcd: return Number(uint(2));
      case 0xce: return Number(uint(4));
      case 0xcf: return num(uint(8));
      case 0xd0: return Number(BigInt.asIntN(8, uint(1)));
      case 0xd1: return Number(BigInt.asIntN(16, uint(2)));
      case 0xd2: return Number(BigInt.asIntN(32, uint(4)));
      case 0xd3: return num(BigInt.asIntN(64, uint(8)));
      case 0xd9: return str(Number(uint(1)));
      case 0xda: return str(Number(uint(2)));
      case 0xdb: return str(Number(uint(4)));
      case 0xdc: return arr(Number(uint(2)));
      case 0xdd: return arr(Number(uint(4)));
      case 0xde: return map(Number(uint(2)));
      case 0xdf: return map(Number(uint(4)));
      default: return bad(`msgpack type 0x${t.toString(16)} does not occur in a payload`);
    }
  };
  const doc = next();
  if (p !== bytes.length) bad('bytes after the document');
  return doc;
}

/** float16 bits to float32 by building the float32 bits (normalizing subnormals by shifting). */
export const scratch = new Float32Array(1);
export const scratchBits = new Uint32Array(scratch.buffer);
export function halfToFloatRef(h: number): number {
  const s = h >>> 15;
  const e = (h >>> 10) & 31;
  let m = h & 1023;
  let bits: number;
  if (e === 31) bits = (s << 31) | 0x7f800000 | (m << 13);
  else if (e !== 0) bits = (s << 31) | ((e - 15 + 127) << 23) | (m << 13);
  else if (m === 0) bits = s << 31;
  else {
    let exp = -14;
    while (!(m & 0x400)) {
      m <<= 1;
      exp--;
    }
    bits = (s << 31) | ((exp + 127) << 23) | ((m & 0x3ff) << 13);
  }
  scratchBits[0] = bits >>> 0;
  return scratch[0];
}

export interface SpecPatch { t: string; s: number[]; size: number; k: string; b: string; a: string; vals: Float32Array; positions?: number[]; h?: number; nb?: number; sg?: boolean; r?: number; g?: SpecGrid; xor?: number[]; xs?: boolean; sparse?: number[]; dense?: boolean; set?: boolean }
export type SpecGrid = { d: 'f32' | 'f16' | 'bf16' } | { d: 'u8' | 'u16'; sc: number; mn: number } | { d: 'qi8' | 'qu8'; sc: number; zp: number };

/** Every positive finite half, as float32, ascending (bit patterns 0x0000..0x7bff are monotonic). */
export const HALVES = Float32Array.from({ length: 0x7c00 }, (_, h) => halfToFloatRef(h));

/** FORMAT.md 5.1, written independently: the nearest grid value, ties to even. */
export function specSnap(x: number, g: SpecGrid): number {
  if (g.d === 'f32') return x;
  if (g.d === 'u8' || g.d === 'u16') {
    const v = (x - g.mn) / g.sc;
    let q = Math.floor(v);
    const frac = v - q;
    if (frac > 0.5 || (frac === 0.5 && q % 2 !== 0)) q += 1;
    q = Math.min(Math.max(q, 0), g.d === 'u8' ? 255 : 65535);
    return Math.fround(q * g.sc + g.mn);
  }
  if (g.d === 'qi8' || g.d === 'qu8') {
    // ONNX QuantizeLinear then DequantizeLinear: ties to even on x / scale, then the zero point.
    const v = x / g.sc;
    let k = Math.floor(v);
    const frac = v - k;
    if (frac > 0.5 || (frac === 0.5 && k % 2 !== 0)) k += 1;
    const lo = g.d === 'qi8' ? -128 : 0;
    const q = Math.min(Math.max(k + g.zp, lo), lo + 255);
    return Math.fround((q - g.zp) * g.sc); // q - zp is an integer: +0 when q = zp
  }
  const a = Math.abs(x);
  if (g.d === 'f16') {
    // binary search the ascending halves for the neighbours of |x|; ties to the even pattern
    let lo = 0;
    let hi = HALVES.length - 1;
    if (a >= HALVES[hi]) return Math.sign(x) * HALVES[hi];
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (HALVES[mid] <= a) lo = mid;
      else hi = mid;
    }
    const dl = a - HALVES[lo];
    const dh = HALVES[hi] - a;
    const h = dl < dh || (dl === dh && lo % 2 === 0) ? lo : hi;
    return x < 0 || Object.is(x, -0) ? -HALVES[h] : HALVES[h];
  }
  // bf16: the two float32 values with 16 low zero bits around x; ties to the even one
  scratch[0] = x;
  const down = scratchBits[0] & 0xffff0000;
  const up = (down + 0x10000) >>> 0;
  scratchBits[0] = down >>> 0;
  const vd = scratch[0];
  scratchBits[0] = up;
  const vu = scratch[0];
  const dd = Math.abs(x - vd);
  const du = Math.abs(vu - x);
  let r = dd < du || (dd === du && ((down >>> 16) & 1) === 0) ? vd : vu;
  const MAX = 3.3895313892515355e38; // bfloat16 0x7f7f0000
  if (Math.abs(r) > MAX || !Number.isFinite(r)) r = Math.sign(x) * MAX;
  return r;
}

/** FORMAT.md 4.3, written independently: the code a grid stores for snap(x). */
export function specCode(x: number, g: SpecGrid): number {
  const y = specSnap(x, g);
  if (g.d === 'f16') {
    // The halves' bit patterns 0..0x7bff ascend with their values: find |y| among them.
    let h = 0;
    while (HALVES[h] !== Math.abs(y)) if (++h === HALVES.length) throw new Error(`${y} is not a half`);
    return (y < 0 || Object.is(y, -0) ? 0x8000 : 0) | h;
  }
  if (g.d === 'bf16') {
    scratch[0] = y;
    return scratchBits[0] >>> 16;
  }
  if (g.d === 'u8' || g.d === 'u16') {
    for (let q = 0; q <= 65535; q++) if (Math.fround(q * g.sc + g.mn) === y) return q;
  }
  if (g.d === 'qi8' || g.d === 'qu8') {
    const lo = g.d === 'qi8' ? -128 : 0;
    for (let q = lo; q <= lo + 255; q++) if (Math.fround((q - g.zp) * g.sc) === y) return q & 0xff;
  }
  throw new Error('no code for a float32 grid');
}

/** FORMAT.md 4.3: the value of a stored code (NaN or infinite for a half or bfloat16 code of exponent all ones). */
export function specFromCode(code: number, g: SpecGrid): number {
  if (g.d === 'f16') return halfToFloatRef(code);
  if (g.d === 'bf16') {
    scratchBits[0] = code * 65536;
    return scratch[0];
  }
  if (g.d === 'u8' || g.d === 'u16') return Math.fround(code * g.sc + g.mn);
  if (g.d === 'qi8') return Math.fround(((code >= 128 ? code - 256 : code) - g.zp) * g.sc);
  if (g.d === 'qu8') return Math.fround((code - g.zp) * g.sc);
  throw new Error('no code for a float32 grid');
}

export const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
export const isInt = (v: unknown, max: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;

/** A string of at most `max` UTF-16 code units (FORMAT.md 2.1), else a format error. */
export function strOf(m: Map<string, unknown>, k: string, max: number): string {
  const v = m.get(k);
  if (typeof v !== 'string' || v.length > max) bad(`"${k}" must be a string of at most ${max} UTF-16 code units`);
  return v as string;
}
/** A binary, of exactly `len` bytes when given, else a format error. */
export function binOf(m: Map<string, unknown>, k: string, len?: number): Uint8Array {
  const v = m.get(k);
  if (!(v instanceof Uint8Array) || (len !== undefined && v.length !== len)) bad(`"${k}" must be binary${len ? ` of ${len} bytes` : ''}`);
  return v as Uint8Array;
}

/** The header keys of FORMAT.md 2.2 (all but `p`), read and checked: a payload's and a structural payload's alike. */
export interface SpecHeader { m: string; id: string; bf: string; tf: string; sq: number; ex?: number }
export function specHeader(doc: Map<string, unknown>): SpecHeader {
  const m = strOf(doc, 'm', 32);
  if (!SPEC_METHODS.includes(m)) bad('unknown method');
  const id = strOf(doc, 'id', 256);
  strOf(doc, 'cb', 256);
  const bf = hex(binOf(doc, 'bf', 8));
  const tf = hex(binOf(doc, 'tf', 8));
  for (const k of ['sq', 'bb']) if (!isInt(doc.get(k), Number.MAX_SAFE_INTEGER)) bad(`"${k}"`);
  if (doc.has('ct')) strOf(doc, 'ct', 64);
  if (doc.has('ex') && !isInt(doc.get('ex'), Number.MAX_SAFE_INTEGER)) bad('"ex"');
  if (doc.has('x')) {
    const x = doc.get('x');
    if (!(x instanceof Map) || [...x.values()].some((v) => typeof v !== 'string' && typeof v !== 'number')) bad('"x"');
  }
  return { m, id, bf, tf, sq: doc.get('sq') as number, ...(doc.has('ex') ? { ex: doc.get('ex') as number } : {}) };
}

export function specDecode(bytes: Uint8Array, maxBytes = 256 * 1024 * 1024): { bf: string; tf: string; patches: SpecPatch[]; header: SpecHeader } {
  if (bytes.length > maxBytes) throw new SpecError('too-large', `${bytes.length} > ${maxBytes}`);
  const doc = readMsgpack(bytes);
  if (!(doc instanceof Map)) return bad('not a map');
  if (!doc.has('nd')) bad('no "nd"');
  const nd = doc.get('nd');
  if (nd !== 1 && nd !== 2 && nd !== 3 && nd !== 4 && nd !== 5 && nd !== 6) throw new SpecError('version', String(nd));
  const header = specHeader(doc);
  const { bf, tf } = header;
  const list = doc.get('p');
  if (!Array.isArray(list)) return bad('"p" must be an array');
  const names = new Set<string>();
  const patches = list.map((raw): SpecPatch => {
    if (!(raw instanceof Map)) return bad('patch is not a map');
    const t = strOf(raw, 't', 1024);
    if (names.has(t)) bad('tensor patched twice');
    names.add(t);
    const s = raw.get('s');
    if (!Array.isArray(s) || s.length > 16 || !s.every((d) => isInt(d, 2 ** 32 - 1))) return bad('"s"');
    const size = (s as number[]).reduce((x, y) => x * y, 1);
    if (size > 2 ** 32 - 1) bad('tensor too large');
    const c = raw.get('c');
    const k0 = raw.get('k');
    const isXr = c === 'xr' && nd >= 3;
    const isXs = c === 'xs' && nd >= 4;
    const isX = (c === 'x' && nd >= 2) || isXr || isXs;
    if (isX && k0 !== 's' && k0 !== 'd') bad('codec x on a patch that is not sparse or dense');
    const isL = c === 'l' && nd >= 6;
    if (isL && k0 === 'h') bad('codec l on a hashed patch');
    const bpv = isX || isL ? 0 : c === 'f32' ? 4 : c === 'f16' ? 2 : c === 'i8' ? 1 : bad('"c"');
    const q = raw.get('q');
    if (c === 'i8' && !(typeof q === 'number' && Number.isFinite(q) && q > 0 && Math.fround(q) === q)) bad('"q"');
    const b = hex(binOf(raw, 'b', 8));
    const a = hex(binOf(raw, 'a', 8));
    const v = binOf(raw, 'v');
    const k = raw.get('k');
    // FORMAT.md codec x: 2-bit lengths (L + 1 bytes) first, then the masks, least significant byte first.
    // FORMAT.md codec xr: 3 low bytes per mask, then the range-coded high bytes; codec xs (4.3):
    // the same with masks as wide as the grid's stored values, W - 1 low bytes each.
    const decodeXr = (count: number): number[] => {
      let low = 3;
      if (isXs) {
        if (!g || g.d === 'f32') return bad('codec xs needs a grid of 1 or 2 bytes a value');
        low = g.d === 'u8' || g.d === 'qi8' || g.d === 'qu8' ? 0 : 1;
      }
      if (count === 0) {
        if (v.length !== 0) bad('"v" of an empty xr block');
        return [];
      }
      if (v.length < low * count + 4) bad('"v" too short for codec xr');
      const high = specRangeBytes(v.subarray(low * count), count, 'codec xr stream does not end at the end of "v" with code 0');
      const masks: number[] = [];
      for (let k = 0; k < count; k++) {
        let m = high[k] * 2 ** (8 * low);
        for (let j = 0; j < low; j++) m += v[low * k + j] * 2 ** (8 * j);
        masks.push(m);
      }
      return masks;
    };
    const decodeXor = (count: number): number[] => {
      if (isXr || isXs) return decodeXr(count);
      const head = Math.ceil(count / 4);
      if (v.length < head) bad('"v" shorter than its lengths');
      const lens = Array.from({ length: count }, (_, i) => ((v[Math.floor(i / 4)] >> (2 * (i % 4))) & 3) + 1);
      for (let i = count; i < 4 * head; i++) if ((v[Math.floor(i / 4)] >> (2 * (i % 4))) & 3) bad('length field past the last value');
      let at = head;
      const masks = lens.map((len) => {
        let m = 0;
        for (let j = 0; j < len; j++) m += v[at + j] * 2 ** (8 * j);
        at += len;
        return m;
      });
      if (at !== v.length) bad('"v" length (codec x)');
      return masks;
    };
    // FORMAT.md 4.4, codec l: codes of lb bits, least significant bit first, read one bit at a
    // time; value k = code x half(ls[floor(k / lg) mod #ls]) x 2^le, a 1-bit code c meaning 2c - 1;
    // in a sparse patch floor(position_k / lg) instead, and at most ceil(size / lg) scales.
    const decodeLow = (count: number, positions?: number[]): Float32Array => {
      const lb = raw.get('lb');
      const lg = raw.get('lg');
      const le = raw.get('le');
      const ls = binOf(raw, 'ls');
      if (!(typeof lb === 'number' && Number.isInteger(lb) && lb >= 1 && lb <= 8)) bad('"lb"');
      if (!isInt(lg, 2 ** 32 - 1) || lg < 1) bad('"lg"');
      if (!(typeof le === 'number' && Number.isInteger(le) && le >= -64 && le <= 32)) bad('"le"');
      const nScales = ls.length / 2;
      if (!Number.isInteger(nScales) || nScales < 1 || nScales > Math.max(1, Math.ceil((positions ? size : count) / (lg as number)))) bad('"ls" count');
      const scales = Array.from({ length: nScales }, (_, i) => {
        const h = ls[2 * i] + 256 * ls[2 * i + 1];
        if (h >= 0x8000 || (h & 0x7c00) === 0x7c00) bad('scale negative, infinite or NaN');
        return halfToFloatRef(h) * 2 ** (le as number);
      });
      const bits = lb as number;
      if (v.length !== Math.ceil((count * bits) / 8)) bad('"v" length (codec l)');
      const bit = (i: number) => (v[Math.floor(i / 8)] >> (i % 8)) & 1;
      for (let i = count * bits; i < 8 * v.length; i++) if (bit(i)) bad('padding bit set');
      return Float32Array.from({ length: count }, (_, k) => {
        let code = 0;
        for (let j = 0; j < bits; j++) code += bit(k * bits + j) * 2 ** j;
        const signed = bits === 1 ? 2 * code - 1 : code >= 2 ** (bits - 1) ? code - 2 ** bits : code;
        return signed * scales[Math.floor((positions ? positions[k] : k) / (lg as number)) % nScales];
      });
    };
    // FORMAT.md 4.4, codec l on low-rank factors: "lb" a width a direction, "ls" U's then V's
    // scale of each direction, no "lg"; direction by direction, U's column then V's row, one bit
    // string. Returned as the other codecs give factors: U [rows x r] then V [r x cols].
    const decodeLowFactors = (rows: number, cols: number, r: number): Float32Array => {
      const lb = raw.get('lb');
      const le = raw.get('le');
      const ls = binOf(raw, 'ls');
      if (!Array.isArray(lb) || lb.length !== r || !lb.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 1 && x <= 8)) bad('"lb" widths');
      if (raw.has('lg')) bad('"lg" on factors');
      if (!(typeof le === 'number' && Number.isInteger(le) && le >= -64 && le <= 32)) bad('"le"');
      if (ls.length !== 4 * r) bad('"ls" count (factors)');
      const scales = Array.from({ length: 2 * r }, (_, i) => {
        const h = ls[2 * i] + 256 * ls[2 * i + 1];
        if (h >= 0x8000 || (h & 0x7c00) === 0x7c00) bad('scale negative, infinite or NaN');
        return halfToFloatRef(h) * 2 ** (le as number);
      });
      const widths = lb as number[];
      const total = widths.reduce((x, w) => x + w * (rows + cols), 0);
      if (v.length !== Math.ceil(total / 8)) bad('"v" length (codec l factors)');
      const bit = (i: number) => (v[Math.floor(i / 8)] >> (i % 8)) & 1;
      for (let i = total; i < 8 * v.length; i++) if (bit(i)) bad('padding bit set');
      const out = new Float32Array(rows * r + r * cols);
      let at = 0;
      const next = (w: number) => {
        let code = 0;
        for (let j = 0; j < w; j++) code += bit(at++) * 2 ** j;
        return w === 1 ? 2 * code - 1 : code >= 2 ** (w - 1) ? code - 2 ** w : code;
      };
      for (let d = 0; d < r; d++) {
        for (let i = 0; i < rows; i++) out[i * r + d] = next(widths[d]) * scales[2 * d];
        for (let j = 0; j < cols; j++) out[rows * r + d * cols + j] = next(widths[d]) * scales[2 * d + 1];
      }
      return out;
    };
    const decodeValues = (count: number, positions?: number[]): Float32Array => {
      if (isX) return new Float32Array(count);
      if (isL) return decodeLow(count, positions);
      if (v.length !== count * bpv) bad('"v" length');
      const dv = new DataView(v.buffer, v.byteOffset, v.byteLength);
      const out = Float32Array.from({ length: count }, (_, i) =>
        c === 'f32' ? dv.getFloat32(4 * i, true) : c === 'f16' ? halfToFloatRef(dv.getUint16(2 * i, true)) : Math.fround(dv.getInt8(i) * (q as number)),
      );
      if (!out.every(Number.isFinite)) throw new SpecError('non-finite', `${t}: value not finite`);
      return out;
    };
    let g: SpecGrid | undefined;
    if (nd >= 2 && raw.has('g')) {
      const gm = raw.get('g');
      if (!(gm instanceof Map)) return bad('"g" is not a map');
      const d = gm.get('d');
      if (d === 'u8' || d === 'u16') {
        const f64 = (key: string): number => {
          const bb = binOf(gm, key, 8);
          return new DataView(bb.buffer, bb.byteOffset, 8).getFloat64(0, false);
        };
        const sc = f64('sc');
        const mn = f64('mn');
        if (!(sc > 0 && Number.isFinite(sc) && Number.isFinite(mn))) bad('grid scale or min');
        g = { d, sc, mn };
      } else if (d === 'qi8' || d === 'qu8') {
        const bb = binOf(gm, 'sc', 8);
        const sc = new DataView(bb.buffer, bb.byteOffset, 8).getFloat64(0, false);
        const zp = gm.get('zp');
        const lo = d === 'qi8' ? -128 : 0;
        if (!(sc > 0 && Number.isFinite(sc) && Math.fround(sc) === sc)) bad('grid scale (a positive float32)');
        if (!(typeof zp === 'number' && Number.isInteger(zp) && zp >= lo && zp <= lo + 255)) bad('grid zero point');
        g = { d, sc, zp: zp as number };
      } else if (d === 'f32' || d === 'f16' || d === 'bf16') g = { d };
      else bad('"g.d"');
    }
    if (isXs && (!g || g.d === 'f32')) bad('codec xs without a grid of 1 or 2 bytes a value');
    const common = { t, s: s as number[], size, k: k as string, b, a, ...(g ? { g } : {}), ...(isXs ? { xs: true } : {}) };
    // FORMAT.md 3: n positions from "i", a bitmap (ic = m) or varint gaps (ic = g).
    const positionsOf = (n: number): number[] => {
      const i = binOf(raw, 'i');
      const positions: number[] = [];
      if (raw.get('ic') === 'm') {
        if (i.length !== Math.ceil(size / 8)) bad('bitmap length');
        for (let pos = 0; pos < 8 * i.length; pos++) {
          if (!(i[pos >> 3] & (1 << (pos & 7)))) continue;
          if (pos >= size) bad('bitmap bit past the end');
          positions.push(pos);
        }
        if (positions.length !== n) bad('popcount != n');
      } else if (raw.get('ic') === 'g') {
        let at = 0;
        let prev = -1;
        for (let e = 0; e < n; e++) {
          let gap = 0;
          for (let j = 0; ; j++) {
            if (j === 5 || at >= i.length) bad('varint truncated or longer than 5 bytes');
            const byte = i[at++];
            gap += (byte & 0x7f) * 2 ** (7 * j);
            if (byte < 0x80) break;
          }
          if (gap > 2 ** 32 - 1) bad('gap over 32 bits');
          prev = prev + 1 + gap;
          if (prev >= size) bad('position out of range');
          positions.push(prev);
        }
        if (at !== i.length) bad('bytes after the last varint');
      } else bad('"ic"');
      return positions;
    };
    if (k === 's') {
      const n = raw.get('n');
      if (!isInt(n, size)) bad('"n"');
      const positions = positionsOf(n as number);
      return { ...common, positions, vals: decodeValues(n as number, positions), ...(isX ? { xor: decodeXor(n as number) } : {}) };
    }
    if (k === 'h') {
      const h = raw.get('h');
      const nb = raw.get('nb');
      const sg = raw.get('sg');
      if (!isInt(h, 2 ** 32 - 1) || !isInt(nb, 2 ** 32 - 1) || nb < 1 || typeof sg !== 'boolean') bad('hash fields');
      return { ...common, h: h as number, nb: nb as number, sg: sg as boolean, vals: decodeValues(nb as number) };
    }
    if (k === 'd') return { ...common, vals: decodeValues(size), ...(isX ? { xor: decodeXor(size) } : {}) };
    // FORMAT.md 4.4, kind n: dense codes of codec l that are the tensor's new values.
    if (k === 'n' && isL) return { ...common, vals: decodeValues(size), set: true };
    if (k === 'r') {
      const cols = s.length ? (s[s.length - 1] as number) : 1;
      const rows = cols ? size / cols : 0;
      const r = raw.get('r');
      if (!isInt(r, Math.min(rows, cols)) || r < 1) bad('"r"');
      return { ...common, r: r as number, vals: isL ? decodeLowFactors(rows, cols, r as number) : decodeValues((rows + cols) * (r as number)) };
    }
    if (k === 'c' && nd >= 5) {
      // FORMAT.md 5.2: the low-rank keys, the sparse keys, and the sparse values in "w" coded by "wc" ("wq").
      const cols = s.length ? (s[s.length - 1] as number) : 1;
      const rows = cols ? size / cols : 0;
      // FORMAT.md 5.2 in codec l: "lb" an array, factors; "lb" a uint, dense codes and no "r".
      const denseCodes = isL && !Array.isArray(raw.get('lb'));
      const r = raw.get('r');
      if (denseCodes ? raw.has('r') : !isInt(r, Math.min(rows, cols)) || (r as number) < 1) bad('"r"');
      const factors = denseCodes ? decodeLow(size) : isL ? decodeLowFactors(rows, cols, r as number) : decodeValues((rows + cols) * (r as number));
      const n = raw.get('n');
      if (!isInt(n, size)) bad('"n"');
      const wc = raw.get('wc');
      const wq = raw.get('wq');
      const wbpv = wc === 'f32' ? 4 : wc === 'f16' ? 2 : wc === 'i8' ? 1 : bad('"wc"');
      if (wc === 'i8' && !(typeof wq === 'number' && Number.isFinite(wq) && wq > 0 && Math.fround(wq) === wq)) bad('"wq"');
      const w = binOf(raw, 'w');
      if (w.length !== (n as number) * wbpv) bad('"w" length');
      const positions = positionsOf(n as number);
      const dw = new DataView(w.buffer, w.byteOffset, w.byteLength);
      const sparse = Array.from({ length: n as number }, (_, i) =>
        wc === 'f32' ? dw.getFloat32(4 * i, true) : wc === 'f16' ? halfToFloatRef(dw.getUint16(2 * i, true)) : Math.fround(dw.getInt8(i) * (wq as number)),
      );
      if (!sparse.every(Number.isFinite)) throw new SpecError('non-finite', `${t}: sparse value not finite`);
      return { ...common, r: denseCodes ? 0 : (r as number), vals: factors, positions, sparse, ...(denseCodes ? { dense: true } : {}) };
    }
    return bad('"k"');
  });
  return { bf, tf, patches, header };
}

export function specDigest(hasher: Hasher, name: string, shape: readonly number[], values: Float32Array): string {
  const n = utf8.encode(name);
  const rec = new Uint8Array(8 + n.length + 4 * shape.length + 4 * values.length);
  const dv = new DataView(rec.buffer);
  dv.setUint32(0, n.length, true);
  rec.set(n, 4);
  dv.setUint32(4 + n.length, shape.length, true);
  shape.forEach((d, i) => dv.setUint32(8 + n.length + 4 * i, d, true));
  values.forEach((x, i) => dv.setFloat32(8 + n.length + 4 * shape.length + 4 * i, x, true));
  return hasher.h64(rec, 0n).toString(16).padStart(16, '0');
}
export function specFingerprint(hasher: Hasher, digests: Map<string, string>): string {
  const cmp = (x: Uint8Array, y: Uint8Array) => {
    for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
    return x.length - y.length;
  };
  const names = [...digests.keys()].sort((x, y) => cmp(utf8.encode(x), utf8.encode(y)));
  return hasher.h64(fromHex(names.map((n) => digests.get(n)).join('')), 0n).toString(16).padStart(16, '0');
}

export type SpecModel = Map<string, { shape: number[]; data: Float32Array }>;
export function specModel(m: ModelJson): SpecModel {
  return new Map(Object.entries(m.tensors).map(([n, t]) => [n, { shape: t.shape, data: hexF32(t.values) }]));
}

/** Applies per docs/FORMAT.md "The applier"; returns the new model (the input is not modified). */
export function specApply(hasher: Hasher, model: SpecModel, bytes: Uint8Array, maxBytes?: number): { status: 'applied' | 'already-applied'; model: SpecModel } {
  const { bf, tf, patches } = specDecode(bytes, maxBytes);
  for (const p of patches) {
    const t = model.get(p.t);
    if (!t || t.shape.length !== p.s.length || t.shape.some((d, i) => d !== p.s[i])) throw new SpecError('model', p.t);
  }
  const digests = new Map([...model].map(([n, t]) => [n, specDigest(hasher, n, t.shape, t.data)]));
  const fp = specFingerprint(hasher, digests);
  if (fp === tf) return { status: 'already-applied', model };
  if (fp !== bf) throw new SpecError('base', `${fp} != ${bf}`);
  for (const p of patches) if (digests.get(p.t) !== p.b) throw new SpecError('base', `${p.t}: ${digests.get(p.t)} != ${p.b}`);
  const out: SpecModel = new Map([...model].map(([n, t]) => [n, { shape: t.shape, data: t.data.slice() }]));
  let grid: SpecGrid | undefined;
  const add = (w: Float32Array, i: number, v: number) => {
    const sum = Math.fround(w[i] + v);
    w[i] = grid ? specSnap(sum, grid) : sum;
  };
  for (const p of patches) {
    grid = p.g;
    if (p.xor) {
      // Codec x: the new bits are the old bits XOR the mask (then the grid, if any).
      const w = (out.get(p.t) as { data: Float32Array }).data;
      const wb = new Uint32Array(w.buffer, w.byteOffset, w.length);
      p.xor.forEach((m, k) => {
        const i = p.k === 's' ? (p.positions as number[])[k] : k;
        if (p.xs) w[i] = specFromCode(specCode(w[i], grid as SpecGrid) ^ m, grid as SpecGrid);
        else {
          wb[i] = (wb[i] ^ m) >>> 0;
          if (grid) w[i] = specSnap(w[i], grid);
        }
      });
      if (!w.every(Number.isFinite)) throw new SpecError('non-finite', p.t);
      continue;
    }
    const w = (out.get(p.t) as { data: Float32Array }).data;
    if (p.k === 's') (p.positions as number[]).forEach((pos, k) => add(w, pos, p.vals[k]));
    else if (p.k === 'd') p.vals.forEach((v, i) => add(w, i, v));
    // Kind n: each weight becomes +0 + its value (rounded onto the grid as a sum is).
    else if (p.k === 'n') p.vals.forEach((v, i) => add(w.fill(0, i, i + 1), i, v));
    else if (p.k === 'h') {
      for (let i = 0; i < p.size; i++) {
        const h = hasher.h32(le32(i), p.h as number);
        const v = p.vals[(h >>> 1) % (p.nb as number)];
        add(w, i, p.sg && h & 1 ? -v : v);
      }
    } else {
      const r = p.r as number;
      const cols = p.s.length ? p.s[p.s.length - 1] : 1;
      const rows = cols ? p.size / cols : 0;
      const u = p.vals.subarray(0, rows * r);
      const vv = p.vals.subarray(rows * r);
      // Composite (k = c): the sparse value joins the accumulator before the one write.
      const sparseAt = new Map((p.positions ?? []).map((pos, k) => [pos, (p.sparse as number[])[k]]));
      for (let i = 0; i < rows; i++) {
        for (let j = 0; j < cols; j++) {
          // Dense codes in place of the factors: the code's value starts the accumulator.
          let acc = p.dense ? p.vals[i * cols + j] : 0;
          for (let k = 0; k < r; k++) acc = Math.fround(acc + Math.fround(u[i * r + k] * vv[k * cols + j]));
          if (p.k === 'c' && sparseAt.has(i * cols + j)) acc = Math.fround(acc + (sparseAt.get(i * cols + j) as number));
          add(w, i * cols + j, acc);
        }
      }
    }
  }
  for (const p of patches) {
    const d = specDigest(hasher, p.t, p.s, (out.get(p.t) as { data: Float32Array }).data);
    if (d !== p.a) throw new SpecError('target', p.t);
    digests.set(p.t, d);
  }
  if (specFingerprint(hasher, digests) !== tf) throw new SpecError('target', 'fingerprint');
  return { status: 'applied', model: out };
}

/**
 * FORMAT.md 4.2's range decoder: `count` symbols of 8 bits (a mask's high byte for codec xr, a
 * byte of a range-coded byte-delta section) from `v`, which must end exactly; `endError` says so.
 */
export function specRangeBytes(v: Uint8Array, count: number, endError = 'range-coded section does not end at its end with code 0'): Uint8Array {
  if (count === 0 ? v.length !== 0 : v.length < 4) bad('range-coded section length');
  const out = new Uint8Array(count);
  let p = 0;
  const next = (): number => (p < v.length ? v[p++] : (p++, 0));
  let range = 0xffffffff;
  let code = 0;
  if (count) for (let j = 0; j < 4; j++) code = code * 256 + next();
  const prob = new Array<number>(256).fill(1024);
  for (let k = 0; k < count; k++) {
    let node = 1;
    for (let b = 0; b < 8; b++) {
      const bound = Math.floor(range / 2048) * prob[node];
      if (code < bound) {
        range = bound;
        prob[node] += (2048 - prob[node]) >> 5;
        node = 2 * node;
      } else {
        code -= bound;
        range -= bound;
        prob[node] -= prob[node] >> 5;
        node = 2 * node + 1;
      }
      if (range < 2 ** 24) {
        range *= 256;
        code = (code * 256 + next()) % 2 ** 32;
      }
    }
    out[k] = node - 256;
  }
  if (p !== v.length || code !== 0) bad(endError);
  return out;
}

