/**
 * The device's msgpack reader: turns one document that {@link msgpackStructureProblem} has
 * already accepted (well-formed, every length within the input, no extension types, bounded
 * nesting and value count, map keys scalars) into JS values. Because the structure is known to be
 * sound it checks nothing again, and it allocates only what the document holds: maps become
 * plain objects (a `__proto__` key is an own property, never the prototype), arrays arrays, binaries
 * views into the input (no copy), strings strict UTF-8, integers numbers (a 64-bit integer beyond
 * 2^53 loses precision and fails the format's range checks, which stop at 2^53 − 1).
 *
 * The build side encodes with msgpackr (encode.ts); this reader keeps msgpackr's decoder, five
 * times its size, out of the device bundle.
 */
import { decodeUtf8StrictPure } from './utf8-decode.ts';

let textDecoder: { decode(b: Uint8Array): unknown } | null | undefined;

/** Strict UTF-8 of a msgpack string: ASCII directly, else TextDecoder (fatal, BOM kept) or the pure decoder. */
function utf8(bytes: Uint8Array, from: number, to: number): string {
  let ascii = '';
  let i = from;
  for (; i < to && bytes[i] < 0x80; i++) ascii += String.fromCharCode(bytes[i]);
  if (i === to) return ascii;
  const view = bytes.subarray(from, to);
  if (textDecoder === undefined) textDecoder = typeof TextDecoder === 'function' ? new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }) : null;
  const s = textDecoder?.decode(view);
  if (typeof s === 'string') return s;
  // The pure decoder drops a leading byte-order mark, as TextDecoder does by default: put it back.
  const hasBom = view.length >= 3 && view[0] === 0xef && view[1] === 0xbb && view[2] === 0xbf;
  return (hasBom ? '\ufeff' : '') + decodeUtf8StrictPure(view);
}

/**
 * Decode the document `bytes` hold. Call only after `msgpackStructureProblem(bytes)` returned
 * null. Throws TypeError for a string that is not UTF-8.
 */
export function readMsgpack(bytes: Uint8Array): unknown {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let p = 0;
  const be = (n: number): number => {
    let v = 0;
    for (let i = 0; i < n; i++) v = v * 256 + bytes[p++];
    return v;
  };
  const next = (): unknown => {
    const t = bytes[p++];
    let n: number;
    if (t <= 0x7f) return t;
    if (t >= 0xe0) return t - 0x100;
    if (t <= 0x8f) return map(t & 0x0f);
    if (t <= 0x9f) return array(t & 0x0f);
    if (t <= 0xbf) return str(t & 0x1f);
    switch (t) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: case 0xc5: case 0xc6:
        n = be(t === 0xc4 ? 1 : t === 0xc5 ? 2 : 4);
        p += n;
        return bytes.subarray(p - n, p);
      case 0xca: p += 4; return dv.getFloat32(p - 4);
      case 0xcb: p += 8; return dv.getFloat64(p - 8);
      case 0xcc: return be(1);
      case 0xcd: return be(2);
      case 0xce: return be(4);
      case 0xcf: return be(8);
      case 0xd0: p += 1; return dv.getInt8(p - 1);
      case 0xd1: p += 2; return dv.getInt16(p - 2);
      case 0xd2: p += 4; return dv.getInt32(p - 4);
      case 0xd3: p += 8; return dv.getInt32(p - 8) * 4294967296 + dv.getUint32(p - 4);
      case 0xd9: return str(be(1));
      case 0xda: return str(be(2));
      case 0xdb: return str(be(4));
      case 0xdc: return array(be(2));
      case 0xdd: return array(be(4));
      case 0xde: return map(be(2));
      default: return map(be(4)); // 0xdf: the guard admits nothing else here
    }
  };
  const str = (n: number): string => {
    p += n;
    return utf8(bytes, p - n, p);
  };
  const array = (n: number): unknown[] => {
    const out = new Array<unknown>(n);
    for (let i = 0; i < n; i++) out[i] = next();
    return out;
  };
  const map = (n: number): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) {
      const key = String(next());
      // An own property even for "__proto__" (an assignment would set the prototype).
      if (key === '__proto__') Object.defineProperty(out, key, { value: next(), enumerable: true, writable: true, configurable: true });
      else out[key] = next();
    }
    return out;
  };
  return next();
}
