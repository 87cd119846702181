/**
 * The device's msgpack reader: one pass over hostile bytes that checks the structure as it
 * builds the values, so nothing is allocated that the input does not pay for.
 *
 * - every declared length (string, binary, array, map) must fit in the bytes that remain, checked
 *   before anything is allocated: 5 bytes cannot declare an array of 30M elements (a general
 *   decoder such as msgpackr allocates `new Array(declaredLength)` first: 240 MB);
 * - containers nest at most `maxDepth` deep (the recursion is bounded by it, never a stack
 *   overflow);
 * - the document holds at most `maxValues` values in all, counted when a map or an array declares
 *   its entries, before any is read: its JS values cost tens of MB at most (1 MB of empty maps
 *   would otherwise become 64 MB of objects);
 * - map keys are strings or numbers, extension types and the reserved byte 0xc1 are refused, and
 *   the document must end exactly at the end of the input;
 * - maps become plain objects (a `__proto__` key is an own property, never the prototype), arrays
 *   arrays, binaries views into the input (no copy), strings strict UTF-8, integers numbers (a
 *   64-bit integer beyond 2^53 loses precision and fails the format's range checks, which stop at
 *   2^53 − 1).
 *
 * The build side encodes with msgpackr (encode.ts); this reader keeps msgpackr's decoder, five
 * times its size and without limits, out of the device bundle. Pure (no node, no tfjs).
 */
import { decodeUtf8StrictPure } from './utf8-decode.ts';

export interface MsgpackLimits {
  /** Deepest nesting of maps and arrays (the top-level map is depth 1). */
  maxDepth: number;
  /** Most values in the whole document (every key, value and element counts). */
  maxValues: number;
}

/**
 * Limits for payload documents: v1 nests 4 deep (document, patch list, patch, shape) and holds
 * about 30 values per patched tensor, so 262,144 values allow ~8,000 patched tensors.
 */
export const PAYLOAD_MSGPACK_LIMITS: MsgpackLimits = { maxDepth: 8, maxValues: 1 << 18 };

/**
 * Strict UTF-8 of a msgpack string; a leading byte-order mark is part of it. Payload strings are
 * names and ids, short enough that TextDecoder would not pay for the code it takes here.
 */
const utf8 = (view: Uint8Array): string => decodeUtf8StrictPure(view, true);

/**
 * Decode the one document `bytes` hold. Throws RangeError saying what is wrong and at which byte when
 * the bytes are not exactly one well-formed document within `limits`, and TypeError for a
 * string that is not UTF-8.
 */
export function readMsgpack(bytes: Uint8Array, limits: MsgpackLimits = PAYLOAD_MSGPACK_LIMITS): unknown {
  const end = bytes.length;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let p = 0;
  // Values declared so far: the document itself, then each container's entries as it opens.
  let values = 1;
  let start = 0;
  const bad = (message: string): never => {
    throw new RangeError(message);
  };
  /** Step over `n` bytes of the value at `start`, returning where they begin. */
  const take = (n: number): number => {
    if (n > end - p) bad(`the value at byte ${start} declares ${n} bytes but only ${end - p} remain`);
    p += n;
    return p - n;
  };
  /** A big-endian unsigned integer of `n` bytes. */
  const be = (n: number): number => {
    let v = 0;
    for (let i = take(n); i < p; i++) v = v * 256 + bytes[i];
    return v;
  };
  /** The value at `p`, `depth` containers deep; a key when `key`. */
  const next = (depth: number, key?: boolean): unknown => {
    start = p;
    if (p >= end) bad(`the document ends at byte ${end} inside ${depth} unfinished map(s)/array(s)`);
    const t = bytes[p++];
    let n = -1;
    let isMap = false;
    if (t <= 0x7f) return t;
    if (t >= 0xe0) return t - 0x100;
    if (t <= 0x8f) {
      n = t & 0x0f;
      isMap = true;
    } else if (t <= 0x9f) n = t & 0x0f;
    else if (t <= 0xbf) return utf8(bytes.subarray(take(t & 0x1f), p));
    else {
      switch (t) {
        case 0xc0: return null;
        case 0xc2: return false;
        case 0xc3: return true;
        case 0xc4: case 0xc5: case 0xc6:
          if (key) bad(`the map key at byte ${start} is binary; keys must be strings or numbers`);
          n = be(t === 0xc4 ? 1 : t === 0xc5 ? 2 : 4);
          return bytes.subarray(take(n), p);
        case 0xca: return dv.getFloat32(take(4));
        case 0xcb: return dv.getFloat64(take(8));
        case 0xcc: return be(1);
        case 0xcd: return be(2);
        case 0xce: return be(4);
        case 0xcf: return be(8);
        case 0xd0: return dv.getInt8(take(1));
        case 0xd1: return dv.getInt16(take(2));
        case 0xd2: return dv.getInt32(take(4));
        case 0xd3: return dv.getInt32(take(8)) * 4294967296 + dv.getUint32(p - 4);
        case 0xd9: case 0xda: case 0xdb:
          n = be(t === 0xd9 ? 1 : t === 0xda ? 2 : 4);
          return utf8(bytes.subarray(take(n), p));
        case 0xdc: case 0xdd: case 0xde: case 0xdf:
          n = be(t === 0xdc || t === 0xde ? 2 : 4);
          isMap = t >= 0xde;
          break;
        case 0xc1:
          bad(`byte ${start} is 0xc1, which msgpack reserves and never uses`);
        default: // 0xc7-0xc9 ext 8/16/32, 0xd4-0xd8 fixext
          bad(`byte ${start} starts a msgpack extension type (0x${t.toString(16)}), which payloads never contain`);
      }
    }
    // A map or an array of n entries.
    const kind = isMap ? 'map' : 'array';
    if (key) bad(`the map key at byte ${start} is a${isMap ? '' : 'n'} ${kind}; keys must be strings or numbers`);
    const children = isMap ? 2 * n : n;
    if ((values += children) > limits.maxValues) bad(`the document holds more than ${limits.maxValues} values (at byte ${start}); a payload holds about 30 per patched tensor`);
    // Every element takes at least one byte: a count beyond the remaining bytes is a lie.
    if (children > end - p) bad(`the ${kind} at byte ${start} declares ${n} entries but only ${end - p} bytes remain`);
    if (depth >= limits.maxDepth) bad(`maps/arrays nest deeper than ${limits.maxDepth} levels at byte ${start}`);
    depth++;
    if (!isMap) {
      const out = new Array<unknown>(n);
      for (let i = 0; i < n; i++) out[i] = next(depth);
      return out;
    }
    const out: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) {
      const name = String(next(depth, true));
      // An own property even for "__proto__" (an assignment would set the prototype).
      Object.defineProperty(out, name, { value: next(depth), enumerable: true, writable: true, configurable: true });
    }
    return out;
  };
  const doc = next(0);
  if (p !== end) bad(`${end - p} byte(s) follow the end of the document at byte ${p}`);
  return doc;
}

/**
 * Null when `bytes` hold exactly one well-formed msgpack document within `limits` (strict UTF-8
 * included), else the sentence saying what is wrong and where.
 */
export function msgpackStructureProblem(bytes: Uint8Array, limits: MsgpackLimits = PAYLOAD_MSGPACK_LIMITS): string | null {
  try {
    readMsgpack(bytes, limits);
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}
