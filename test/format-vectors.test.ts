/**
 * Payload format v1 conformance (docs/FORMAT.md):
 *  - the committed vectors in test/vectors/payloads decode and apply to exactly the expected
 *    targets with both hasher kinds, and invalid ones fail with the expected error class;
 *  - a second, independent applier written from docs/FORMAT.md alone (its own msgpack reader,
 *    codecs, arithmetic and fingerprints; only XXH32/XXH64 are shared) agrees on every vector;
 *  - the generator reproduces the committed bytes; the hex dumps in docs/FORMAT.md are the
 *    vectors' bytes;
 *  - property tests: payload encode/decode, position codings, float16, varints.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import fc from 'fast-check';
import { decodePayload, DIFF_METHODS, type Payload, type PayloadHeader, type TensorPatch } from '../src/core/format.ts';
import { encodePayload, encodePositions, packPayload, type WirePatch } from '../src/core/encode.ts';
import { PayloadFormatError, NeuralDiffError } from '../src/core/errors.ts';
import { fromHalfBits, toHalfBits } from '../src/core/float16.ts';
import { ByteWriter, readVarints, varintSize } from '../src/core/varint.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { getHasher, type Hasher } from '../src/core/hasher.ts';
import { applyPayload } from '../src/apply/apply.ts';
import { generatePayloadVectors, hexF32, storeOf, fromHex, f32Hex, type ModelJson, type InvalidVector } from './vectors/payloads/generate.ts';
import { specModelledDelta } from './helpers/spec-modelled-delta.ts';

const dir = new URL('./vectors/payloads/', import.meta.url);
const read = (name: string): Uint8Array => new Uint8Array(readFileSync(new URL(name, dir)));
const readJson = <T>(name: string): T => JSON.parse(readFileSync(new URL(name, dir), 'utf8')) as T;

interface ValidVector {
  name: string;
  base: string;
  payload: string;
  target: string;
  bytes: number;
  sameAs?: string;
  header?: Record<string, unknown>;
  patches?: Record<string, unknown>[];
}
const index = readJson<{ valid: ValidVector[]; invalid: InvalidVector[] }>('vectors.json');

const pure = await getHasher({ prefer: 'pure' });
const wasm = await getHasher({ prefer: 'wasm' });
const HASHERS: Hasher[] = [pure, wasm];

const utf8 = new TextEncoder();
const le32 = (x: number): Uint8Array => Uint8Array.of(x & 255, (x >>> 8) & 255, (x >>> 16) & 255, x >>> 24);
const bitsOf = (v: Float32Array): string => f32Hex(v);
/** Codec x values are masks: their bytes as they are (read as floats, NaN bits could change). */
const maskHex = (v: Float32Array): string => Array.from(new Uint8Array(v.buffer, v.byteOffset, v.byteLength), (b) => b.toString(16).padStart(2, '0')).join('');

/** A store's values, as hex per tensor, for byte-exact comparisons. */
function valuesHex(store: ReturnType<typeof storeOf>): Record<string, string> {
  return Object.fromEntries(store.list().map((t) => [t.name, bitsOf(store.values(t.name))]));
}
function modelHex(m: ModelJson): Record<string, string> {
  return Object.fromEntries(Object.entries(m.tensors).map(([n, t]) => [n, t.values]));
}

// ---------------------------------------------------------------------------------------------
// An independent applier, written from docs/FORMAT.md only.

type Fault = 'format' | 'too-large' | 'version' | 'non-finite' | 'model' | 'base' | 'target';
const FAULT_OF: Record<string, Fault> = {
  PayloadFormatError: 'format',
  PayloadTooLargeError: 'too-large',
  UnsupportedVersionError: 'version',
  NonFiniteValueError: 'non-finite',
  ModelMismatchError: 'model',
  BaseMismatchError: 'base',
  TargetMismatchError: 'target',
};
class SpecError extends Error {
  constructor(readonly fault: Fault, message: string) {
    super(`${fault}: ${message}`);
  }
}
const bad = (message: string): never => {
  throw new SpecError('format', message);
};

/** A strict msgpack reader: maps become Map<string, unknown>, bin Uint8Array, int64 beyond 2^53 bigint. */
function readMsgpack(bytes: Uint8Array): unknown {
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
const scratch = new Float32Array(1);
const scratchBits = new Uint32Array(scratch.buffer);
function halfToFloatRef(h: number): number {
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

interface SpecPatch { t: string; s: number[]; size: number; k: string; b: string; a: string; vals: Float32Array; positions?: number[]; h?: number; nb?: number; sg?: boolean; r?: number; g?: SpecGrid; xor?: number[]; xs?: boolean; sparse?: number[] }
type SpecGrid = { d: 'f32' | 'f16' | 'bf16' } | { d: 'u8' | 'u16'; sc: number; mn: number } | { d: 'qi8' | 'qu8'; sc: number; zp: number };

/** Every positive finite half, as float32, ascending (bit patterns 0x0000..0x7bff are monotonic). */
const HALVES = Float32Array.from({ length: 0x7c00 }, (_, h) => halfToFloatRef(h));

/** FORMAT.md 5.1, written independently: the nearest grid value, ties to even. */
function specSnap(x: number, g: SpecGrid): number {
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
function specCode(x: number, g: SpecGrid): number {
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
function specFromCode(code: number, g: SpecGrid): number {
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

const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
const isInt = (v: unknown, max: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;

function specDecode(bytes: Uint8Array, maxBytes = 256 * 1024 * 1024): { bf: string; tf: string; patches: SpecPatch[] } {
  if (bytes.length > maxBytes) throw new SpecError('too-large', `${bytes.length} > ${maxBytes}`);
  const doc = readMsgpack(bytes);
  if (!(doc instanceof Map)) return bad('not a map');
  if (!doc.has('nd')) bad('no "nd"');
  const nd = doc.get('nd');
  if (nd !== 1 && nd !== 2 && nd !== 3 && nd !== 4 && nd !== 5 && nd !== 6) throw new SpecError('version', String(nd));
  const strOf = (m: Map<string, unknown>, k: string, max: number): string => {
    const v = m.get(k);
    if (typeof v !== 'string' || v.length > max) bad(`"${k}" must be a string of at most ${max} UTF-16 code units`);
    return v as string;
  };
  const binOf = (m: Map<string, unknown>, k: string, len?: number): Uint8Array => {
    const v = m.get(k);
    if (!(v instanceof Uint8Array) || (len !== undefined && v.length !== len)) bad(`"${k}" must be binary${len ? ` of ${len} bytes` : ''}`);
    return v as Uint8Array;
  };
  if (!DIFF_METHODS.includes(strOf(doc, 'm', 32) as never)) bad('unknown method');
  strOf(doc, 'id', 256);
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
    if (isL && k0 !== 'd') bad('codec l on a patch that is not dense');
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
    // time; value k = code x half(ls[floor(k / lg) mod #ls]) x 2^le, a 1-bit code c meaning 2c - 1.
    const decodeLow = (count: number): Float32Array => {
      const lb = raw.get('lb');
      const lg = raw.get('lg');
      const le = raw.get('le');
      const ls = binOf(raw, 'ls');
      if (!(typeof lb === 'number' && Number.isInteger(lb) && lb >= 1 && lb <= 8)) bad('"lb"');
      if (!isInt(lg, 2 ** 32 - 1) || lg < 1) bad('"lg"');
      if (!(typeof le === 'number' && Number.isInteger(le) && le >= -64 && le <= 32)) bad('"le"');
      const nScales = ls.length / 2;
      if (!Number.isInteger(nScales) || nScales < 1 || nScales > Math.max(1, Math.ceil(count / (lg as number)))) bad('"ls" count');
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
        return signed * scales[Math.floor(k / (lg as number)) % nScales];
      });
    };
    const decodeValues = (count: number): Float32Array => {
      if (isX) return new Float32Array(count);
      if (isL) return decodeLow(count);
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
      return { ...common, positions, vals: decodeValues(n as number), ...(isX ? { xor: decodeXor(n as number) } : {}) };
    }
    if (k === 'h') {
      const h = raw.get('h');
      const nb = raw.get('nb');
      const sg = raw.get('sg');
      if (!isInt(h, 2 ** 32 - 1) || !isInt(nb, 2 ** 32 - 1) || nb < 1 || typeof sg !== 'boolean') bad('hash fields');
      return { ...common, h: h as number, nb: nb as number, sg: sg as boolean, vals: decodeValues(nb as number) };
    }
    if (k === 'd') return { ...common, vals: decodeValues(size), ...(isX ? { xor: decodeXor(size) } : {}) };
    if (k === 'r') {
      const cols = s.length ? (s[s.length - 1] as number) : 1;
      const rows = cols ? size / cols : 0;
      const r = raw.get('r');
      if (!isInt(r, Math.min(rows, cols)) || r < 1) bad('"r"');
      return { ...common, r: r as number, vals: decodeValues((rows + cols) * (r as number)) };
    }
    if (k === 'c' && nd >= 5) {
      // FORMAT.md 5.2: the low-rank keys, the sparse keys, and the sparse values in "w" coded by "wc" ("wq").
      const cols = s.length ? (s[s.length - 1] as number) : 1;
      const rows = cols ? size / cols : 0;
      const r = raw.get('r');
      if (!isInt(r, Math.min(rows, cols)) || r < 1) bad('"r"');
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
      return { ...common, r: r as number, vals: decodeValues((rows + cols) * (r as number)), positions, sparse };
    }
    return bad('"k"');
  });
  return { bf, tf, patches };
}

function specDigest(hasher: Hasher, name: string, shape: readonly number[], values: Float32Array): string {
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
function specFingerprint(hasher: Hasher, digests: Map<string, string>): string {
  const cmp = (x: Uint8Array, y: Uint8Array) => {
    for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
    return x.length - y.length;
  };
  const names = [...digests.keys()].sort((x, y) => cmp(utf8.encode(x), utf8.encode(y)));
  return hasher.h64(fromHex(names.map((n) => digests.get(n)).join('')), 0n).toString(16).padStart(16, '0');
}

type SpecModel = Map<string, { shape: number[]; data: Float32Array }>;
function specModel(m: ModelJson): SpecModel {
  return new Map(Object.entries(m.tensors).map(([n, t]) => [n, { shape: t.shape, data: hexF32(t.values) }]));
}

/** Applies per docs/FORMAT.md "The applier"; returns the new model (the input is not modified). */
function specApply(hasher: Hasher, model: SpecModel, bytes: Uint8Array, maxBytes?: number): { status: 'applied' | 'already-applied'; model: SpecModel } {
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
          let acc = 0;
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

// ---------------------------------------------------------------------------------------------
// The committed vectors

describe('payload vectors: valid', () => {
  test('the index lists the required cases', () => {
    const names = index.valid.map((v) => v.name);
    for (const n of ['sparse-gaps-f32', 'sparse-bitmap-f16', 'sparse-i8', 'hash-signed-f32', 'hash-unsigned-f16', 'dense-f32', 'lowrank-f32', 'multi-tensor', 'alt-encoding']) assert.ok(names.includes(n), n);
    assert.ok(HASHERS[1].kind === 'wasm' && HASHERS[0].kind === 'pure', 'both hasher kinds are available');
  });

  for (const v of index.valid) {
    for (const hasher of HASHERS) {
      test(`${v.name} applies to exactly the target (${hasher.kind} hasher)`, async () => {
        const bytes = read(v.payload);
        assert.equal(bytes.length, v.bytes);
        const baseJson = readJson<ModelJson>(v.base);
        const targetJson = readJson<ModelJson>(v.target);
        const decoded = decodePayload(bytes);
        // the model files' fingerprints and digests are what this hasher computes
        for (const m of [baseJson, targetJson]) {
          const fp = fingerprintStore(hasher, storeOf(m));
          assert.equal(fp.fingerprint, m.fingerprint);
          for (const [n, t] of Object.entries(m.tensors)) assert.equal(fp.digests.get(n), t.digest, n);
        }
        assert.equal(decoded.header.baseFingerprint, baseJson.fingerprint);
        assert.equal(decoded.header.targetFingerprint, targetJson.fingerprint);
        for (const p of decoded.patches) {
          assert.equal(p.baseDigest, baseJson.tensors[p.name].digest);
          assert.equal(p.targetDigest, targetJson.tensors[p.name].digest);
        }
        const store = storeOf(baseJson);
        const res = await applyPayload(store, bytes, { hasher });
        assert.equal(res.status, 'applied');
        assert.deepEqual(valuesHex(store), modelHex(targetJson));
        assert.deepEqual(res.changedTensors, decoded.patches.map((p) => p.name));
        // applying again finds the model at the target and writes nothing
        const again = await applyPayload(store, bytes, { hasher });
        assert.equal(again.status, 'already-applied');
        assert.deepEqual(valuesHex(store), modelHex(targetJson));
      });
    }

    test(`${v.name}: the independent applier written from docs/FORMAT.md agrees`, () => {
      for (const hasher of HASHERS) {
        const targetJson = readJson<ModelJson>(v.target);
        const out = specApply(hasher, specModel(readJson<ModelJson>(v.base)), read(v.payload));
        assert.equal(out.status, 'applied');
        assert.deepEqual(Object.fromEntries([...out.model].map(([n, t]) => [n, bitsOf(t.data)])), modelHex(targetJson));
        assert.equal(specApply(hasher, specModel(targetJson), read(v.payload)).status, 'already-applied');
      }
    });

    if (v.sameAs) {
      const same = v.sameAs;
      test(`${v.name} decodes to the same payload as ${same} and re-encodes to its bytes`, () => {
        const original = read(`${same}.ndiff`);
        const alt = read(v.payload);
        assert.notDeepEqual(alt, original);
        assert.deepEqual(decodePayload(alt), decodePayload(original));
        assert.deepEqual(encodePayload(decodePayload(alt)), original);
      });
    } else {
      test(`${v.name}: decoded fields match the index, and re-encoding gives the same bytes`, () => {
        const bytes = read(v.payload);
        const d = decodePayload(bytes);
        const h = v.header as Record<string, unknown>;
        assert.deepEqual(
          { nd: d.header.version, m: d.header.method, id: d.header.modelId, bf: d.header.baseFingerprint, tf: d.header.targetFingerprint, sq: d.header.sequence, bb: d.header.budgetBytes, cb: d.header.createdBy, ct: d.header.createdAt, ex: d.header.expiresAt, x: d.header.meta },
          { ct: undefined, ex: undefined, x: undefined, ...h },
        );
        assert.equal(d.patches.length, (v.patches as unknown[]).length);
        d.patches.forEach((p, i) => {
          const e = (v.patches as Record<string, unknown>[])[i];
          assert.equal(p.name, e.t);
          assert.equal(p.kind, e.kind);
          assert.deepEqual(p.shape, e.shape);
          assert.equal(p.codec, e.codec);
          assert.equal(p.scale, e.scale);
          if (p.kind === 'sparse') {
            assert.equal(p.positionCoding, e.coding);
            assert.deepEqual([...p.positions], e.positions);
            if (p.codec === 'x' || p.codec === 'xr' || p.codec === 'xs') assert.equal(maskHex(p.values), e.masks);
            else assert.equal(bitsOf(p.values), e.values);
          } else if (p.kind === 'hash') {
            assert.equal(p.seed, e.seed);
            assert.equal(p.signed, e.signed);
            assert.equal(bitsOf(p.buckets), e.buckets);
            for (const [pos, hash, bucket, sign] of (e.firstPositions as { rows: number[][] }).rows) {
              const hh = wasm.h32(le32(pos), p.seed);
              assert.deepEqual([hh, (hh >>> 1) % p.buckets.length, p.signed && hh & 1 ? -1 : 1], [hash, bucket, sign]);
            }
          } else if (p.kind === 'lowrank') {
            assert.equal(p.rank, e.rank);
            assert.equal(bitsOf(p.u), e.u);
            assert.equal(bitsOf(p.v), e.v);
          } else if (p.kind === 'composite') {
            assert.equal(p.rank, e.rank);
            assert.equal(bitsOf(p.u), e.u);
            assert.equal(bitsOf(p.v), e.v);
            assert.equal(p.positionCoding, e.coding);
            assert.deepEqual([...p.positions], e.positions);
            assert.equal(p.sparseCodec, e.sparseCodec);
            assert.equal(p.sparseScale, e.sparseScale);
            assert.equal(bitsOf(p.values), e.values);
          } else if (p.codec === 'x' || p.codec === 'xr' || p.codec === 'xs') assert.equal(maskHex(p.values), e.masks);
          else assert.equal(bitsOf(p.values), e.values);
        });
        assert.deepEqual(encodePayload(d), bytes);
      });
    }
  }

  test('multi-tensor: "p" is in UTF-16 order, the fingerprint in UTF-8 byte order, and they differ', () => {
    const d = decodePayload(read('multi-tensor.ndiff'));
    const names = d.patches.map((p) => p.name);
    assert.deepEqual(names, [...names].sort());
    const byUtf8 = [...names].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    assert.notDeepEqual(byUtf8, names);
    // recomputing the fingerprint in UTF-16 order would give another value
    const model = readJson<ModelJson>('multi-tensor.base.json');
    const utf16 = Object.keys(model.tensors).sort();
    const wrong = wasm.h64(fromHex(utf16.map((n) => model.tensors[n].digest).join('')), 0n).toString(16).padStart(16, '0');
    assert.notEqual(wrong, model.fingerprint);
    assert.equal(specFingerprint(wasm, new Map(Object.entries(model.tensors).map(([n, t]) => [n, t.digest]))), model.fingerprint);
  });

  test('i8 values are fround(int8 x scale), not the exact product', () => {
    const p = decodePayload(read('sparse-i8.ndiff')).patches[0];
    assert.equal(p.codec, 'i8');
    const q = p.scale as number;
    const wire = ((readMsgpack(read('sparse-i8.ndiff')) as Map<string, unknown>).get('p') as Map<string, unknown>[])[0];
    const ints = [...(wire.get('v') as Uint8Array)].map((b) => (b << 24) >> 24);
    assert.deepEqual(ints, [127, -87, 32, -127, 1]);
    if (p.kind !== 'sparse') assert.fail('sparse expected');
    assert.deepEqual([...p.values], ints.map((k) => Math.fround(k * q)));
    assert.notEqual(p.values[0], 127 * q);
  });
});

describe('payload vectors: invalid', () => {
  test('the index lists the required cases', () => {
    const names = index.invalid.map((v) => v.name);
    for (const n of ['truncated', 'gap-out-of-range', 'nan-value', 'bitmap-past-end', 'unsupported-version']) assert.ok(names.includes(n), n);
  });

  for (const v of index.invalid) {
    test(`${v.name}: ${v.error} at the ${v.stage} stage`, async () => {
      const bytes = read(v.payload);
      const opts = v.maxPayloadBytes !== undefined ? { maxPayloadBytes: v.maxPayloadBytes } : {};
      const isExpected = (e: unknown) => {
        assert.ok(e instanceof NeuralDiffError, `untyped error ${(e as Error)?.message}`);
        assert.equal(e.constructor.name, v.error, e.message);
        assert.equal(e.code, v.code);
        return true;
      };
      if (v.stage === 'decode') assert.throws(() => decodePayload(bytes, opts), isExpected);
      else decodePayload(bytes, opts);
      for (const hasher of HASHERS) {
        const base = readJson<ModelJson>(v.base);
        const store = storeOf(base);
        await assert.rejects(applyPayload(store, bytes, { ...opts, hasher }), isExpected);
        assert.deepEqual(valuesHex(store), modelHex(base), 'the model is unchanged');
        // the independent applier raises the same class of error
        assert.throws(() => specApply(hasher, specModel(base), bytes, v.maxPayloadBytes), (e: unknown) => e instanceof SpecError && e.fault === FAULT_OF[v.error]);
      }
    });
  }
});

describe('payload vectors: generator', () => {
  for (const hasher of HASHERS) {
    test(`generate.ts reproduces the committed files byte for byte (${hasher.kind} hasher)`, () => {
      const files = generatePayloadVectors(hasher);
      const committed = readdirSync(dir).filter((f) => f !== 'generate.ts' && f !== 'byte-delta.ts' && f !== 'structural-files.ts').sort();
      assert.deepEqual([...files.keys()].sort(), committed, 'no missing or stale files');
      for (const [name, bytes] of files) assert.ok(Buffer.from(bytes).equals(Buffer.from(read(name))), `${name} differs: run node --import tsx test/vectors/payloads/generate.ts`);
      // and a second run in the same process gives the same bytes
      const again = generatePayloadVectors(hasher);
      for (const [name, bytes] of files) assert.deepEqual(again.get(name), bytes, name);
    });
  }
});

describe('docs/FORMAT.md', () => {
  const doc = readFileSync(new URL('../docs/FORMAT.md', import.meta.url), 'utf8');
  test('every hex dump line is the bytes of its vector at that offset', () => {
    const blocks = [...doc.matchAll(/```hexdump ([\w.-]+)\n([\s\S]*?)```/g)];
    assert.ok(blocks.length >= 4, `found ${blocks.length} hexdump blocks`);
    let lines = 0;
    for (const [, file, body] of blocks) {
      const bytes = read(file);
      let covered = 0;
      for (const line of body.split('\n')) {
        const m = /^([0-9a-f]{4})  ((?:[0-9a-f]{2} )*[0-9a-f]{2})(?:\s|$)/.exec(line);
        if (!m) {
          assert.ok(line.trim() === '' || line.startsWith('…'), `unparsed line in ${file}: ${line}`);
          continue;
        }
        const at = parseInt(m[1], 16);
        const want = fromHex(m[2].replace(/ /g, ''));
        assert.deepEqual(bytes.subarray(at, at + want.length), want, `${file} at 0x${m[1]}`);
        covered += want.length;
        lines++;
      }
      assert.ok(covered > 0);
    }
    assert.ok(lines > 40, `only ${lines} dump lines`);
  });
  test('the worked fingerprint example (section 6) is what the hashers compute', () => {
    const base = readJson<ModelJson>('sparse-gaps-f32.base.json');
    const record = Uint8Array.from([...fromHex('01000000' + '62' + '01000000' + '10000000'), ...fromHex(base.tensors.b.values)]);
    for (const hasher of HASHERS) {
      assert.equal(hasher.h64(record, 0n).toString(16).padStart(16, '0'), 'd70bd9e4637cbbe3');
      assert.equal(hasher.h64(fromHex('d70bd9e4637cbbe3' + 'e5ee1ffa850d4491'), 0n).toString(16).padStart(16, '0'), '634653eb32e3cd42');
    }
    assert.equal(base.tensors.b.digest, 'd70bd9e4637cbbe3');
    assert.equal(base.tensors.w.digest, 'e5ee1ffa850d4491');
    assert.equal(base.fingerprint, '634653eb32e3cd42');
    for (const h of ['d70bd9e4637cbbe3', 'e5ee1ffa850d4491', '634653eb32e3cd42', 'd7 0b d9 e4 63 7c bb e3 e5 ee 1f fa 85 0d 44 91']) assert.ok(doc.includes(h), h);
  });
});

// ---------------------------------------------------------------------------------------------
// Properties

const HEADER: PayloadHeader = { version: 1, method: 'sparse', modelId: 'm', baseFingerprint: '0011223344556677', targetFingerprint: '8899aabbccddeeff', sequence: 1, budgetBytes: 0, createdBy: 'test' };

/** Unsigned LEB128, written independently of varint.ts. */
function leb128(values: number[]): number[] {
  const out: number[] = [];
  for (let v of values) {
    do {
      const byte = v % 128;
      v = Math.floor(v / 128);
      out.push(v ? byte | 0x80 : byte);
    } while (v);
  }
  return out;
}
function gapsOf(positions: number[]): number[] {
  return positions.map((p, k) => (k === 0 ? p : p - positions[k - 1] - 1));
}
function bitmapOf(positions: number[], size: number): number[] {
  const out = new Array<number>(Math.ceil(size / 8)).fill(0);
  for (const p of positions) out[Math.floor(p / 8)] |= 2 ** (p % 8);
  return out;
}

const f32Arb = fc.float({ noNaN: true, noDefaultInfinity: true });
const halfArb = fc.integer({ min: 0, max: 0xffff }).filter((h) => ((h >>> 10) & 31) !== 31).map(halfToFloatRef);
const hex16Arb = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((b) => b.toString(16).padStart(16, '0'));
const shapeArb = fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 3 });

/** Values that a codec carries exactly (with the i8 scale when codec is i8). */
function valuesArb(codec: 'f32' | 'f16' | 'i8', n: number, scale: number): fc.Arbitrary<Float32Array> {
  const one = codec === 'f32' ? f32Arb : codec === 'f16' ? halfArb : fc.integer({ min: -128, max: 127 }).map((k) => Math.fround(k * scale));
  return fc.array(one, { minLength: n, maxLength: n }).map((xs) => Float32Array.from(xs));
}

const patchArb: fc.Arbitrary<TensorPatch> = fc
  .record({
    name: fc.string({ unit: 'binary', maxLength: 12 }),
    shape: shapeArb,
    codec: fc.constantFrom('f32' as const, 'f16' as const, 'i8' as const),
    scale: fc.float({ min: Math.fround(2 ** -149), max: Math.fround(3.4e38 / 128), noNaN: true }),
    baseDigest: hex16Arb,
    targetDigest: hex16Arb,
    kind: fc.constantFrom('sparse' as const, 'hash' as const, 'dense' as const, 'lowrank' as const),
  })
  .chain(({ kind, scale, ...c }) => {
    const size = c.shape.reduce((a, b) => a * b, 1);
    const common = { ...c, ...(c.codec === 'i8' ? { scale } : {}) };
    const cols = c.shape.length ? c.shape[c.shape.length - 1] : 1;
    const rows = cols ? size / cols : 0;
    if (kind === 'lowrank' && Math.min(rows, cols) >= 1) {
      return fc.integer({ min: 1, max: Math.min(rows, cols) }).chain((rank) =>
        fc.tuple(valuesArb(c.codec, rows * rank, scale), valuesArb(c.codec, rank * cols, scale)).map(([u, v]): TensorPatch => ({ ...common, kind: 'lowrank', rank, u, v })),
      );
    }
    if (kind === 'hash') {
      return fc.tuple(fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.boolean(), fc.integer({ min: 1, max: 6 })).chain(([seed, signed, nb]) =>
        valuesArb(c.codec, nb, scale).map((buckets): TensorPatch => ({ ...common, kind: 'hash', seed, signed, buckets })),
      );
    }
    if (kind === 'dense' || size === 0) return valuesArb(c.codec, size, scale).map((values): TensorPatch => ({ ...common, kind: 'dense', values }));
    return fc.uniqueArray(fc.integer({ min: 0, max: size - 1 }), { maxLength: size }).chain((ps) => {
      const positions = Uint32Array.from(ps.sort((a, b) => a - b));
      const gapBytes = leb128(gapsOf([...positions])).length;
      const positionCoding = Math.ceil(size / 8) <= gapBytes ? ('bitmap' as const) : ('gaps' as const);
      return valuesArb(c.codec, positions.length, scale).map((values): TensorPatch => ({ ...common, kind: 'sparse', positions, values, positionCoding }));
    });
  });

const metaValueArb = fc.oneof(fc.string({ maxLength: 8 }), fc.integer(), fc.maxSafeInteger(), f32Arb.map((x) => (x === 0 ? 0 : x)));
const headerArb: fc.Arbitrary<PayloadHeader> = fc
  .record(
    {
      version: fc.constant(1),
      method: fc.constantFrom(...DIFF_METHODS),
      modelId: fc.string({ unit: 'binary', maxLength: 100 }),
      baseFingerprint: hex16Arb,
      targetFingerprint: hex16Arb,
      sequence: fc.maxSafeNat(),
      budgetBytes: fc.maxSafeNat(),
      createdBy: fc.string({ unit: 'binary', maxLength: 100 }),
      createdAt: fc.string({ maxLength: 64 }),
      expiresAt: fc.maxSafeNat(),
      meta: fc.dictionary(fc.string({ maxLength: 6 }).filter((k) => k !== '__proto__'), metaValueArb, { maxKeys: 4 }).map((d) => ({ ...d })),
    },
    { requiredKeys: ['version', 'method', 'modelId', 'baseFingerprint', 'targetFingerprint', 'sequence', 'budgetBytes', 'createdBy'] },
  )
  .map((h) => ({ ...h }));

describe('properties', () => {
  test('decodePayload(encodePayload(x)) is x for random valid payloads, and re-encoding is stable', () => {
    fc.assert(
      fc.property(headerArb, fc.uniqueArray(patchArb, { maxLength: 4, selector: (p) => p.name }), (header, patches) => {
        const payload: Payload = { header, patches };
        const bytes = encodePayload(payload);
        const back = decodePayload(bytes);
        assert.deepStrictEqual(back, payload);
        assert.deepEqual(encodePayload(back), bytes);
      }),
      { numRuns: 300 },
    );
  });

  test('position codings: the encoder picks the smaller (bitmap on ties), and both codings decode', () => {
    const sizeAndPositions = fc.integer({ min: 0, max: 3000 }).chain((size) =>
      fc.tuple(fc.constant(size), size === 0 ? fc.constant([] as number[]) : fc.uniqueArray(fc.integer({ min: 0, max: size - 1 }), { maxLength: Math.min(size, 500) })),
    );
    fc.assert(
      fc.property(sizeAndPositions, ([size, ps]) => {
        const sorted = ps.sort((a, b) => a - b);
        const positions = Uint32Array.from(sorted);
        const gaps = leb128(gapsOf(sorted));
        const bitmap = bitmapOf(sorted, size);
        const enc = encodePositions(positions, size);
        assert.equal(enc.coding, bitmap.length <= gaps.length ? 'm' : 'g');
        assert.deepEqual([...enc.bytes], enc.coding === 'm' ? bitmap : gaps);
        for (const [ic, i] of [['g', gaps], ['m', bitmap]] as const) {
          const wire: WirePatch = { t: 'x', s: [size], k: 's', b: new Uint8Array(8), a: new Uint8Array(8), c: 'f32', v: new Uint8Array(4 * sorted.length), n: sorted.length, ic, i: Uint8Array.from(i) };
          const p = decodePayload(packPayload(HEADER, [wire])).patches[0];
          assert.ok(p.kind === 'sparse');
          assert.deepEqual([...p.positions], sorted);
          assert.equal(p.positionCoding, ic === 'm' ? 'bitmap' : 'gaps');
        }
      }),
      { numRuns: 300 },
    );
  });

  test('every non-NaN float16 bit pattern converts to float32 exactly and back', () => {
    let finite = 0;
    for (let h = 0; h < 0x10000; h++) {
      const x = fromHalfBits(h);
      const ref = halfToFloatRef(h);
      if (((h >>> 10) & 31) === 31 && h & 0x3ff) {
        assert.ok(Number.isNaN(x) && Number.isNaN(ref), `0x${h.toString(16)} is NaN`);
        continue;
      }
      assert.ok(Object.is(x, ref), `0x${h.toString(16)}: ${x} vs ${ref}`);
      assert.equal(toHalfBits(x), h, `0x${h.toString(16)} round trip`);
      if (Number.isFinite(x)) finite++;
    }
    assert.equal(finite, 63488);
  });

  test('float32 to float16 rounds to nearest, ties to even, at every midpoint', () => {
    const bits = new Uint32Array(1);
    const asF = new Float32Array(bits.buffer);
    const step = (x: number, d: 1 | -1): number => {
      asF[0] = x;
      bits[0] += d;
      return asF[0];
    };
    // consecutive non-negative halves a < b; their midpoint needs 12 significant bits, so it is a float32
    for (let h = 0; h < 0x7c00; h++) {
      const a = halfToFloatRef(h);
      const b = h === 0x7bff ? 65536 : halfToFloatRef(h + 1); // 65536: where the next half would be
      const m = (a + b) / 2;
      assert.equal(Math.fround(m), m);
      const even = h & 1 ? h + 1 : h;
      assert.equal(toHalfBits(m), even, `midpoint of 0x${h.toString(16)}`);
      assert.equal(toHalfBits(-m), even | 0x8000);
      assert.equal(toHalfBits(step(m, -1)), h, `below the midpoint of 0x${h.toString(16)}`);
      assert.equal(toHalfBits(step(m, 1)), h + 1, `above the midpoint of 0x${h.toString(16)}`);
    }
    assert.equal(toHalfBits(65520), 0x7c00); // the midpoint above 65504 rounds to even: Infinity
    assert.equal(toHalfBits(2 ** -25), 0); // half the smallest subnormal: to even, zero
    assert.equal(toHalfBits(-(2 ** -26)), 0x8000);
    assert.equal(toHalfBits(1e10), 0x7c00);
  });

  test('float32 to float16 picks the nearest half (random float32 values)', () => {
    fc.assert(
      fc.property(fc.float({ min: -65519, max: 65519, noNaN: true }), (x) => {
        const h = toHalfBits(x);
        const y = halfToFloatRef(h);
        const mag = h & 0x7fff;
        for (const n of [mag - 1, mag + 1]) {
          if (n < 0 || n > 0x7bff) continue;
          const other = halfToFloatRef(n | (h & 0x8000));
          assert.ok(Math.abs(y - x) <= Math.abs(other - x), `${x}: ${y} is farther than ${other}`);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('varints', () => {
  test('edge values encode to the expected bytes and decode back', () => {
    const cases: [number, number[]][] = [
      [0, [0x00]],
      [1, [0x01]],
      [127, [0x7f]],
      [128, [0x80, 0x01]],
      [16383, [0xff, 0x7f]],
      [16384, [0x80, 0x80, 0x01]],
      [2 ** 28 - 1, [0xff, 0xff, 0xff, 0x7f]],
      [2 ** 28, [0x80, 0x80, 0x80, 0x80, 0x01]],
      [2 ** 32 - 1, [0xff, 0xff, 0xff, 0xff, 0x0f]],
    ];
    for (const [value, bytes] of cases) {
      const w = new ByteWriter(1);
      w.varint(value);
      assert.deepEqual([...w.bytes()], bytes, String(value));
      assert.equal(varintSize(value), bytes.length);
      assert.deepEqual(readVarints(Uint8Array.from(bytes), 1), Uint32Array.of(value));
    }
  });

  test('malformed varints are refused', () => {
    const refused: [string, number[], number][] = [
      ['truncated', [0x80], 1],
      ['empty', [], 1],
      ['2^32 (over 32 bits)', [0x80, 0x80, 0x80, 0x80, 0x10], 1],
      ['2^35 - 1 (over 32 bits)', [0xff, 0xff, 0xff, 0xff, 0x7f], 1],
      ['6 bytes (longer than 5)', [0x80, 0x80, 0x80, 0x80, 0x80, 0x00], 1],
      ['6 bytes of 0xff', [0xff, 0xff, 0xff, 0xff, 0xff, 0x01], 1],
      ['a trailing byte', [0x05, 0x00], 1],
      ['one varint short', [0x05], 2],
    ];
    for (const [what, bytes, count] of refused) assert.equal(readVarints(Uint8Array.from(bytes), count), null, what);
  });

  test('non-minimal varints of at most 5 bytes are accepted (encoders never write them)', () => {
    assert.deepEqual(readVarints(Uint8Array.from([0x80, 0x00]), 1), Uint32Array.of(0));
    assert.deepEqual(readVarints(Uint8Array.from([0xff, 0x80, 0x80, 0x80, 0x00]), 1), Uint32Array.of(127));
  });

  test('random uint32 sequences round trip', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 2 ** 32 - 1 }), { maxLength: 50 }), (values) => {
        const w = new ByteWriter(1);
        values.forEach((v) => w.varint(v));
        const bytes = w.bytes();
        assert.deepEqual([...bytes], leb128(values));
        assert.equal(bytes.length, values.reduce((s, v) => s + varintSize(v), 0));
        assert.deepEqual(readVarints(bytes, values.length), Uint32Array.from(values));
      }),
    );
  });
});

// ---------------------------------------------------------------------------------------------
// msgpack encodings (the decoder accepts any valid encoding of the same values)

/** msgpack document with every integer written as uint64 (0xcf), as a u64-minded encoder would. */
function uint64Doc(sq: number): Uint8Array {
  const out: number[] = [];
  const u64 = (v: bigint) => {
    out.push(0xcf);
    for (let s = 56n; s >= 0n; s -= 8n) out.push(Number((v >> s) & 0xffn));
  };
  const str = (s: string) => out.push(0xa0 | s.length, ...utf8.encode(s));
  const bin = (b: number[]) => out.push(0xc4, b.length, ...b);
  out.push(0x89);
  str('nd'); u64(1n);
  str('m'); str('dense');
  str('id'); str('m');
  str('bf'); bin([1, 2, 3, 4, 5, 6, 7, 8]);
  str('tf'); bin([8, 7, 6, 5, 4, 3, 2, 1]);
  str('sq'); u64(BigInt(sq));
  str('bb'); u64(0n);
  str('cb'); str('x');
  str('p'); out.push(0x90);
  return Uint8Array.from(out);
}

describe('msgpack integer encodings', () => {
  test('integers written as uint64 decode like their shortest encoding', () => {
    const p = decodePayload(uint64Doc(5));
    assert.equal(p.header.version, 1);
    assert.equal(p.header.sequence, 5);
    assert.equal(decodePayload(uint64Doc(2 ** 53 - 1)).header.sequence, 2 ** 53 - 1);
  });
  test('a uint64 beyond 2^53 - 1 is refused as a format error', () => {
    assert.throws(() => decodePayload(uint64Doc(2 ** 53)), PayloadFormatError);
  });
  test('the reference encoder writes integers above 2^32 - 1 as float64, and they decode', () => {
    const bytes = encodePayload({ header: { ...HEADER, sequence: 2 ** 40 }, patches: [] });
    const at = Buffer.from(bytes).indexOf(Buffer.from([0xa2, 0x73, 0x71]));
    assert.deepEqual([...bytes.subarray(at + 3, at + 12)], [0xcb, 0x42, 0x70, 0, 0, 0, 0, 0, 0]);
    assert.equal(decodePayload(bytes).header.sequence, 2 ** 40);
  });
});

// ---------------------------------------------------------------------------------------------
// Byte deltas (FORMAT.md §16), decoded by a second decoder written from the document alone.

interface ByteDeltaIndex {
  valid: { name: string; base: string; delta: string; target: string; outputLength: number; coding: number; literalCoding: number; copies: number; inserts: number }[];
  invalid: { name: string; base: string; delta: string; maxOutputBytes: number; error: string; code: string }[];
}

/**
 * FORMAT.md 4.2's range decoder: `count` symbols of 8 bits (a mask's high byte for codec xr, a
 * byte of a range-coded byte-delta section) from `v`, which must end exactly; `endError` says so.
 */
function specRangeBytes(v: Uint8Array, count: number, endError = 'range-coded section does not end at its end with code 0'): Uint8Array {
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

/** FORMAT.md §16, step by step: header, every instruction checked, then the output built. */
function specByteDelta(base: Uint8Array, d: Uint8Array, maxOutput: number): Uint8Array {
  let src = d;
  let pos = 0;
  const varint = (): number => {
    let v = 0;
    for (let j = 0; j < 5; j++) {
      if (pos >= src.length) bad('varint runs past the end');
      const b = src[pos++];
      if (j === 4 && b > 0x0f) bad('varint over 32 bits or longer than 5 bytes');
      v += (b & 0x7f) * 2 ** (7 * j);
      if (b < 0x80) return v;
    }
    return v;
  };
  const L = varint();
  const baseLength = varint();
  const N = varint();
  const coding = varint();
  const lit = varint();
  if (L > maxOutput) bad('output over the cap');
  if (baseLength !== base.length) bad('base length');
  if (coding > 5) bad('coding');
  if (lit > L) bad('literal count');
  if (coding >= 4) return specModelledDelta(base, d, pos, L, N, lit, coding, bad);
  let literalsAt: number;
  if (coding & 2) {
    const R = varint();
    const S = varint();
    if (S > d.length - pos) bad('coded instructions past the end');
    if (R > 64 * S + 64) bad('more instruction bytes than a range-coded stream gives');
    if (N > L || N > R) bad('instruction count');
    src = specRangeBytes(d.subarray(pos, pos + S), R);
    literalsAt = pos + S;
    pos = 0;
  } else {
    if (N > L || N > d.length - pos) bad('instruction count');
    literalsAt = -1;
  }
  const ops: { kind: number; offset: number; length: number }[] = [];
  let total = 0;
  let inserted = 0;
  let cursor = 0;
  for (let k = 0; k < N; k++) {
    const op = varint();
    const kind = op % 4;
    const length = Math.floor(op / 4);
    if (kind === 3) bad('unknown instruction kind');
    if (length === 0) bad('zero-length instruction');
    if (total + length > L) bad('past the declared output');
    if (kind === 1) {
      const z = varint();
      const offset = cursor + (z % 2 === 0 ? z / 2 : -(z + 1) / 2);
      if (offset < 0 || offset + length > base.length) bad('copy outside the base');
      cursor = offset + length;
      ops.push({ kind, offset, length });
    } else if (kind === 2) {
      // distance back from the bytes it writes: reads only output already written
      const from = total - length - varint();
      if (from < 0) bad('copy of output not yet written');
      ops.push({ kind, offset: from, length });
    } else {
      inserted += length;
      if (inserted > lit) bad('literals past the declared count');
      ops.push({ kind, offset: 0, length });
    }
    total += length;
  }
  if (total !== L || inserted !== lit) bad('totals');
  if (coding & 2 && pos !== src.length) bad('decoded instruction bytes left over');
  const section = d.subarray(literalsAt < 0 ? pos : literalsAt);
  let literals: Uint8Array;
  if ((coding & 1) === 0) {
    if (section.length !== lit) bad('raw literal section length');
    literals = section;
  } else {
    literals = specRangeBytes(section, lit);
  }
  const out = new Uint8Array(L);
  let at = 0;
  let l = 0;
  for (const op of ops) {
    if (op.kind === 2) for (let j = 0; j < op.length; j++) out[at + j] = out[op.offset + j];
    else out.set(op.kind === 1 ? base.subarray(op.offset, op.offset + op.length) : literals.subarray(l, (l += op.length)), at);
    at += op.length;
  }
  return out;
}

describe('byte delta vectors (FORMAT.md §16)', async () => {
  const { applyByteDelta } = await import('../src/core/byte-delta.ts');
  const bd = readJson<ByteDeltaIndex>('byte-delta.json');
  test('the index lists valid and hostile cases', () => {
    assert.ok(bd.valid.length >= 4);
    for (const n of ['copy-out-of-range', 'past-declared-output', 'over-cap', 'truncated-varint', 'count-bomb']) assert.ok(bd.invalid.some((v) => v.name === `invalid-delta-${n}`), n);
    assert.ok(bd.valid.some((v) => v.literalCoding === 1) && bd.valid.some((v) => v.literalCoding === 0 && v.copies > 0));
    assert.ok(bd.valid.some((v) => v.coding === 4 && v.copies > 0 && v.inserts > 0), 'a modelled delta');
    assert.ok(bd.valid.some((v) => v.coding === 5 && v.inserts > 0), 'a modelled delta with its literal context');
    for (const n of ['repeat-ahead', 'self-ahead', 'copy-out-of-range', 'overrun', 'trailing', 'count-bomb', 'literals-short', 'context', 'context-bits']) assert.ok(bd.invalid.some((v) => v.name === `invalid-delta-modelled-${n}`), n);
    for (const n of ['self-copy-ahead', 'unknown-kind', 'zero-length']) assert.ok(bd.invalid.some((v) => v.name === `invalid-delta-${n}`), n);
  });
  for (const v of bd.valid) {
    test(`${v.name}: both decoders rebuild the target`, () => {
      const base = read(v.base);
      const delta = read(v.delta);
      const target = read(v.target);
      assert.equal(target.length, v.outputLength);
      assert.deepEqual(specByteDelta(base, delta, target.length), target);
      assert.deepEqual(applyByteDelta(base, delta, target.length), target);
      // a cap one byte short of the output refuses it
      if (target.length) assert.throws(() => applyByteDelta(base, delta, target.length - 1), PayloadFormatError);
    });
  }
  for (const v of bd.invalid) {
    test(`${v.name}: refused by both decoders`, () => {
      const base = read(v.base);
      const before = base.slice();
      const delta = read(v.delta);
      assert.throws(() => specByteDelta(base, delta, v.maxOutputBytes), /./);
      assert.throws(
        () => applyByteDelta(base, delta, v.maxOutputBytes),
        (e: unknown) => e instanceof PayloadFormatError && e.code === v.code && e.constructor.name === v.error,
      );
      assert.deepEqual(base, before, 'the base is only read');
    });
  }
});
