/**
 * The independent decoder's modelled byte-delta codings (docs/FORMAT.md §16, C = 4 and 5), written from
 * the document alone for test/format-vectors.test.ts (which reads the rest of §16 itself): it
 * shares no code with src/core/byte-delta.ts. `bad` raises the test's format fault.
 */

/**
 * FORMAT.md §16's binary range decoder for the modelled coding: `size` probabilities of a 0 (11
 * bits, from 1024), reading `v` from its first byte; it refuses to read past the end.
 */
function specBinaryDecoder(v: Uint8Array, size: number, bad: (message: string) => never) {
  if (v.length < 4) bad('modelled stream shorter than 4 bytes');
  const prob = new Array<number>(size).fill(1024);
  let p = 4;
  let range = 2 ** 32 - 1;
  let code = v[0] * 2 ** 24 + v[1] * 2 ** 16 + v[2] * 2 ** 8 + v[3];
  const decide = (i: number): number => {
    const bound = Math.floor(range / 2048) * prob[i];
    let b: number;
    if (code < bound) {
      range = bound;
      prob[i] += (2048 - prob[i]) >> 5;
      b = 0;
    } else {
      code -= bound;
      range -= bound;
      prob[i] -= prob[i] >> 5;
      b = 1;
    }
    if (range < 2 ** 24) {
      if (p >= v.length) bad('modelled stream read past its end');
      range *= 256;
      code = (code * 256 + v[p++]) % 2 ** 32;
    }
    return b;
  };
  const tree = (base: number, n: number): number => {
    let t = 1;
    for (let j = 0; j < n; j++) t = 2 * t + decide(base + t);
    return t - 2 ** n;
  };
  const number = (m: number): number => {
    const b = 64 + 1056 * m;
    const top = tree(b, 5);
    let x = 1;
    for (let i = top - 1; i >= 0; i--) x = 2 * x + decide(b + 32 + 32 * top + i);
    return x;
  };
  return { tree, number, done: () => p === v.length && code === 0 };
}

/** FORMAT.md §16's modelled codings (C = 4, or 5 with its literal context X): the instructions decoded and checked whole, then decoded again with the literals to build the output. */
export function specModelledDelta(base: Uint8Array, d: Uint8Array, at: number, L: number, N: number, K: number, C: number, bad: (message: string) => never): Uint8Array {
  const varint = (what: string): number => {
    let x = 0;
    for (let j = 0, b = 0x80; b >= 0x80; j++) {
      if (at >= d.length || j === 5) bad(`${what} varint`);
      b = d[at++];
      x += (b & 0x7f) * 2 ** (7 * j);
    }
    return x;
  };
  // The literal context: the byte before's high lc bits, the position's low lp bits.
  let lc = 8;
  let lp = 0;
  if (C === 5) {
    const X = varint('X');
    lc = X % 16;
    lp = Math.floor(X / 16);
    if (lc > 8 || lp > 4 || lc + lp > 10) bad('literal context');
  }
  const S = varint('S');
  if (S > d.length - at) bad('instruction stream past the end');
  if (N > L || N > 64 * S + 64) bad('instruction count');
  const stream = d.subarray(at, at + S);
  const litStream = d.subarray(at + S);
  const run = (out: Uint8Array | null): void => {
    const dec = specBinaryDecoder(stream, 64 + 10 * 1056, bad);
    const lits = out && K ? specBinaryDecoder(litStream, 256 * 2 ** (lc + lp), bad) : null;
    let p = 0;
    let r0 = 0;
    let r1 = 0;
    let s = [0, 0, 0];
    let w = 0;
    let inserted = 0;
    for (let k = 0; k < N; k++) {
      const kind = dec.tree(8 * p, 3);
      p = kind;
      const length = dec.number(kind);
      if (w + length > L) bad('past the declared output');
      if (kind === 0) {
        inserted += length;
        if (inserted > K) bad('literals past the declared count');
        if (out && lits) {
          for (let j = 0; j < length; j++) {
            const before = w + j > 0 ? out[w + j - 1] : 0;
            const context = ((w + j) % 2 ** lp) * 2 ** lc + Math.floor(before / 2 ** (8 - lc));
            out[w + j] = lits.tree(256 * context, 8);
          }
        }
      } else if (kind === 2 || kind === 4 || kind === 6 || kind === 7) {
        if (kind === 2) s = [length + dec.number(9) - 1, s[0], s[1]];
        if (kind === 6) s = [s[1], s[0], s[2]];
        if (kind === 7) s = [s[2], s[0], s[1]];
        if (s[0] < length || w - s[0] < 0) bad('output copy ahead of the output');
        if (out) for (let j = 0; j < length; j++) out[w + j] = out[w - s[0] + j];
      } else {
        if (kind === 1) {
          const z = dec.number(8) - 1;
          r1 = r0;
          r0 += z % 2 === 0 ? z / 2 : -(z + 1) / 2;
        } else if (kind === 5) [r0, r1] = [r1, r0];
        if (w + r0 < 0 || w + r0 + length > base.length) bad('copy outside the base');
        if (out) out.set(base.subarray(w + r0, w + r0 + length), w);
      }
      w += length;
    }
    if (w !== L || inserted !== K) bad('totals');
    if (!dec.done()) bad('instruction stream does not end exactly');
    if (lits && !lits.done()) bad('literal stream does not end exactly');
  };
  run(null);
  if (K ? litStream.length < 4 : litStream.length) bad('literal stream length');
  const out = new Uint8Array(L);
  run(out);
  return out;
}
