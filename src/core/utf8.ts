/**
 * UTF-8 encoding for runtimes without TextEncoder: Hermes (React Native) has it only since
 * React Native 0.74 (decoding, which it has only since 0.85, is in utf8-decode.ts). The built-in
 * is used where it exists; the pure version gives the same bytes (tests compare them).
 */

const encoder = typeof TextEncoder === 'function' ? new TextEncoder() : null;

/** UTF-8 bytes of `s`, lone surrogates as U+FFFD (as TextEncoder). */
export function encodeUtf8(s: string): Uint8Array {
  return encoder ? encoder.encode(s) : encodeUtf8Pure(s);
}

/** {@link encodeUtf8} without TextEncoder. */
export function encodeUtf8Pure(s: string): Uint8Array {
  const out: number[] = [];
  for (const ch of s) {
    // Code points; a lone surrogate comes alone and becomes U+FFFD.
    let c = ch.codePointAt(0) as number;
    if (c >> 11 === 0x1b) c = 0xfffd;
    if (c < 0x80) {
      out.push(c);
      continue;
    }
    const n = c < 0x800 ? 1 : c < 0x10000 ? 2 : 3;
    out.push(((0xff00 >> (n + 1)) & 0xff) | (c >> (6 * n)));
    for (let k = n; k--; ) out.push(0x80 | ((c >> (6 * k)) & 63));
  }
  return Uint8Array.from(out);
}
