/**
 * Strict UTF-8 decoding for runtimes without TextDecoder (Hermes has it only since React Native
 * 0.85). Apart from utf8.ts so the device applier, which only encodes, does not carry it.
 */

/**
 * The string `bytes` encode, refusing anything that is not UTF-8 (a TypeError, as
 * `new TextDecoder('utf-8', { fatal: true })`; a leading byte-order mark is dropped, as there).
 */
export function decodeUtf8Strict(bytes: Uint8Array): string {
  if (typeof TextDecoder === 'function') {
    const s: unknown = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    if (typeof s === 'string') return s; // some Hermes builds return a non-string object
  }
  return decodeUtf8StrictPure(bytes);
}

/**
 * {@link decodeUtf8Strict} without TextDecoder (the WHATWG rules: no overlongs, surrogates or
 * values above U+10FFFF). With `keepBom`, a leading byte-order mark is part of the string.
 */
export function decodeUtf8StrictPure(bytes: Uint8Array, keepBom = false): string {
  const bad = (at: number): never => {
    throw new TypeError(`the bytes are not UTF-8 (at byte ${at})`);
  };
  let i = !keepBom && bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
  let out = '';
  const units: number[] = [];
  while (i < bytes.length) {
    const b = bytes[i];
    let c: number;
    let n: number;
    let min: number;
    if (b < 0x80) [c, n, min] = [b, 0, 0];
    else if (b >= 0xc2 && b < 0xe0) [c, n, min] = [b & 0x1f, 1, 0x80];
    else if (b >= 0xe0 && b < 0xf0) [c, n, min] = [b & 0x0f, 2, 0x800];
    else if (b >= 0xf0 && b < 0xf5) [c, n, min] = [b & 0x07, 3, 0x10000];
    else return bad(i);
    if (n && i + n >= bytes.length) return bad(i);
    for (let k = 1; k <= n; k++) {
      const x = bytes[i + k];
      if ((x & 0xc0) !== 0x80) return bad(i + k);
      c = (c << 6) | (x & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c < 0xe000)) return bad(i);
    if (c < 0x10000) units.push(c);
    else units.push(0xd800 + ((c - 0x10000) >> 10), 0xdc00 + ((c - 0x10000) & 0x3ff));
    if (units.length >= 4096) out += String.fromCharCode(...units.splice(0));
    i += n + 1;
  }
  return out + String.fromCharCode(...units);
}
