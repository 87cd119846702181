/**
 * Codec `xr` (format v3): codec `x`'s XOR masks (the new float32 bits XOR the old), their low
 * three bytes raw and their high byte (sign and exponent, the only part of a retrained weight's
 * change that is not noise) through an adaptive binary range coder (LZMA's: 11-bit
 * probabilities, adaptation shift 5, a bit tree of 255 nodes). docs/FORMAT.md §4.2. The same
 * layout carries codec `xs` (format v4, §4.3): masks of a tensor's stored codes (1 or 2 bytes),
 * their low byte raw and their high byte coded.
 *
 * Every applier decodes it (about 0.35 KB of its bundle). Pure arithmetic, no I/O.
 */

import { PayloadFormatError } from './errors.ts';

/** Reads the masks of one patch's `v`, piece by piece, in order. */
export interface XrReader {
  /**
   * Decode masks `from .. from + m - 1` into `out`, or only run the decoder when `out` is null.
   * Pieces come in order; `from` 0 starts over.
   * @throws PayloadFormatError when the last piece finds the stream ending anywhere but where it must.
   */
  read(from: number, m: number, out: Uint32Array | null): void;
}

function fail(message: string): never {
  throw new PayloadFormatError(`${message}; the payload is corrupt or not a neural-diff payload: fetch it again or fall back to the full model`);
}

/**
 * A reader of the `n` masks in a codec-`xr` patch's `v` (`where` names the patch in errors):
 * the low 3 bytes of every mask (3n bytes), then the range-coded high bytes, whose first 4
 * bytes start the code. Bytes read past the end are 0; once the last value is decoded the stream must end exactly (every byte read, code 0).
 * At most 8 steps per value, whatever the bytes: hostile input cannot make it loop, and every
 * read is bounded by the value count.
 */
export function openXr(bytes: Uint8Array, n: number, where: string, low = 3): XrReader {
  // Codec xs (format v4) is the same layout with masks of 1 or 2 bytes: 0 or 1 low byte each.
  const codec = low === 3 ? 'xr' : 'xs';
  const s = low * n;
  if (n ? bytes.length < s + 4 : bytes.length) fail(`${where} "v" of codec ${codec} must be ${n ? `at least ${low} x ${n} + 4` : '0'} bytes, found ${bytes.length}`);
  // The decoder between pieces: the next byte, range and code (unsigned 32-bit), and the
  // 11-bit probabilities of a 0 bit at nodes 1..255 of the tree.
  const p = new Uint16Array(256);
  let byteAt = 0;
  let rangeAt = 0;
  let codeAt = 0;
  return {
    read(from, m, out) {
      if (!from) {
        p.fill(1024);
        byteAt = s + 4;
        rangeAt = 0xffffffff;
        codeAt = ((bytes[s] << 24) | (bytes[s + 1] << 16) | (bytes[s + 2] << 8) | bytes[s + 3]) >>> 0;
      }
      // The decoder's state in locals for the loop (the closure's variables are slower to reach).
      let range = rangeAt;
      let code = codeAt;
      let at = byteAt;
      const end = bytes.length;
      for (let j = 0; j < m; j++) {
        // A bit tree over the high byte, most significant bit first: node t, then 2t + bit.
        let t = 1;
        while (t < 256) {
          const q = p[t];
          const bound = (range >>> 11) * q;
          if (code < bound) {
            range = bound;
            p[t] = q + ((2048 - q) >> 5);
            t += t;
          } else {
            code -= bound;
            range -= bound;
            p[t] = q - (q >> 5);
            t += t + 1;
          }
          if (range < 0x1000000) {
            range *= 256;
            // Past the end the stream reads 0 (the end check below refuses a stream read past it).
            code = ((code << 8) | (at < end ? bytes[at] : 0)) >>> 0;
            at++;
          }
        }
        if (out) {
          const k = low * (from + j);
          t -= 256;
          out[j] = low === 3 ? ((t << 24) | bytes[k] | (bytes[k + 1] << 8) | (bytes[k + 2] << 16)) >>> 0 : low ? (t << 8) | bytes[k] : t;
        }
      }
      rangeAt = range;
      codeAt = code;
      byteAt = at;
      if (m && from + m === n && (at !== bytes.length || code)) fail(`${where} "v": the range-coded stream of codec ${codec} must end with value ${n - 1} at byte ${bytes.length} with code 0, found byte ${at}, code ${code}`);
    },
  };
}

/**
 * Encode XOR masks as codec `xr` (build side): the low 3 bytes of each, then the high bytes
 * through the range coder (the first output byte, always 0, is not written). Empty for no masks.
 * With `lowBytes` 1 or 0, masks of 2 or 1 bytes (codec `xs`, format v4): the low byte (if any) raw,
 * the high byte coded.
 */
export function encodeXrMasks(masks: Uint32Array, lowBytes = 3): Uint8Array {
  const n = masks.length;
  if (!n) return new Uint8Array(0);
  const shift = 8 * lowBytes;
  const high = new Uint8Array(n);
  const raw = new Uint8Array(lowBytes * n);
  for (let k = 0, at = 0; k < n; k++) {
    const m = masks[k];
    const h = m >>> shift;
    if (h > 0xff) throw new RangeError(`codec xs: mask ${m} is wider than ${lowBytes + 1} byte(s)`);
    high[k] = h;
    for (let b = 0; b < lowBytes; b++) raw[at++] = (m >>> (8 * b)) & 0xff;
  }
  return rangeCodeBytes(high, raw);
}

/**
 * The range-coded XOR of two byte strings of one length (build side): the same bytes as
 * `encodeXrMasks` of their XOR as masks of one byte (`lowBytes` 0), without the masks array.
 */
export function encodeXorBytes(base: Uint8Array, target: Uint8Array): Uint8Array {
  if (base.length !== target.length) throw new RangeError(`codec xs: the two byte strings are ${base.length} and ${target.length} bytes, expected one length`);
  if (!base.length) return new Uint8Array(0);
  const x = new Uint8Array(base.length);
  for (let k = 0; k < x.length; k++) x[k] = base[k] ^ target[k];
  return rangeCodeBytes(x, new Uint8Array(0));
}

/**
 * `prefix` then `high` through the adaptive binary range coder (LZMA's: a bit tree of 255
 * 11-bit probabilities, adaptation shift 5), the always-0 first byte of the code not written.
 * One pass with every state in locals and the output in one growing buffer: the coder is the
 * build side's hot loop on large models (a GGUF model's changed blocks go through it byte by
 * byte).
 */
function rangeCodeBytes(high: Uint8Array, prefix: Uint8Array): Uint8Array {
  const n = high.length;
  let out = new Uint8Array(prefix.length + n + (n >>> 3) + 64);
  out.set(prefix);
  let w = prefix.length;
  const p = new Uint16Array(256).fill(1024);
  // low: up to 33 bits (a carry), kept as a float64 integer; cache + pending 0xff bytes as in LZMA.
  let low = 0;
  let range = 0xffffffff;
  let cache = 0;
  let pending = 1;
  let first = true;
  for (let k = 0; k <= n; k++) {
    const h = k < n ? high[k] : 0;
    let t = 1;
    for (let b = 7; b >= 0; b--) {
      let shifts = 0;
      if (k < n) {
        const bit = (h >>> b) & 1;
        const q = p[t];
        const bound = (range >>> 11) * q;
        if (bit) {
          low += bound;
          range -= bound;
          p[t] = q - (q >> 5);
        } else {
          range = bound;
          p[t] = q + ((2048 - q) >> 5);
        }
        t = 2 * t + bit;
        for (; range < 0x1000000; shifts++) range = (range * 256) >>> 0;
      } else {
        // After the last byte: the flush, five shifts of `low`.
        shifts = 5;
        b = 0;
      }
      // Shift the top byte of `low` out (LZMA's ShiftLow): held back while it may still take a carry.
      for (; shifts > 0; shifts--) {
        if (low < 0xff000000 || low >= 0x100000000) {
          const carry = low >= 0x100000000 ? 1 : 0;
          if (w + pending + 1 > out.length) out = grow(out, w + pending + 1);
          if (!first) out[w++] = (cache + carry) & 0xff;
          else if ((cache + carry) & 0xff) throw new RangeError(`codec xr: the range coder's first byte is ${(cache + carry) & 0xff}, expected 0`);
          first = false;
          for (; pending > 1; pending--) out[w++] = (0xff + carry) & 0xff;
          pending = 0;
          cache = (low / 0x1000000) & 0xff;
        }
        pending++;
        // low < 2^33: its low 24 bits survive ToInt32.
        low = (low & 0xffffff) * 256;
      }
    }
  }
  return out.subarray(0, w).slice();
}

/** `buf` copied into a buffer of at least `need` bytes (doubling). */
function grow(buf: Uint8Array, need: number): Uint8Array<ArrayBuffer> {
  const next = new Uint8Array(Math.max(need, 2 * buf.length));
  next.set(buf);
  return next;
}
