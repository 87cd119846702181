/**
 * The invalid payloads of the vectors: one defect each, made from the valid payloads generate.ts
 * built, with the error an applier must raise and whether the decoder alone refuses the bytes
 * (stage "decode") or applying them to the base does (stage "apply").
 */
import { buildPayload } from '../../../src/diff/build.ts';
import type { Payload, TensorPatch } from '../../../src/core/format.ts';
import { packPayload, wireDocument, wireOf, type WirePatch } from '../../../src/core/encode.ts';
import type { Hasher } from '../../../src/core/hasher.ts';
import type { MemoryWeightStore } from '../../../src/core/weight-store.ts';
import { encodeXrMasks } from '../../../src/core/xr.ts';
import { f32, u32 } from './valid-cases.ts';
import { writeWideMsgpack } from './wide-msgpack.ts';

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

/** A valid case as generate.ts built it. */
export interface BuiltCase {
  bytes: Uint8Array;
  payload: Payload;
  base: MemoryWeightStore;
}

export function wiresOf(p: Payload): WirePatch[] {
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

/** Every invalid payload (file name -> bytes) and its entry in vectors.json, in order. */
export function invalidPayloads(hasher: Hasher, built: Map<string, BuiltCase>): { files: Map<string, Uint8Array>; invalid: InvalidVector[] } {
  const files = new Map<string, Uint8Array>();
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

  return { files, invalid };
}
