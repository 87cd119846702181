/**
 * The UTF-8 fallbacks for runtimes without TextEncoder / TextDecoder (Hermes before React Native
 * 0.74 / 0.85) give exactly what the built-ins give, on random strings (lone surrogates included)
 * and on random bytes (valid or not).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encodeUtf8Pure } from '../src/core/utf8.ts';
import { decodeUtf8StrictPure } from '../src/core/utf8-decode.ts';

const builtinDecode = (b: Uint8Array): string | 'refused' => {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(b);
  } catch {
    return 'refused';
  }
};
const pureDecode = (b: Uint8Array): string | 'refused' => {
  try {
    return decodeUtf8StrictPure(b);
  } catch (e) {
    assert.ok(e instanceof TypeError);
    return 'refused';
  }
};

test('encodeUtf8Pure equals TextEncoder on random strings, lone surrogates included', () => {
  const units = fc.oneof(fc.integer({ min: 0, max: 0x7f }), fc.integer({ min: 0x80, max: 0xffff }), fc.integer({ min: 0xd800, max: 0xdfff }));
  fc.assert(fc.property(fc.array(units, { maxLength: 40 }), (codes) => {
    const s = String.fromCharCode(...codes);
    assert.deepEqual(encodeUtf8Pure(s), new TextEncoder().encode(s));
  }), { numRuns: 5000, seed: 1 });
  for (const s of ['', 'dense/kernel', 'é', '€', '𝄞', '\ud800', 'a\udc00b', '\ud83d\ude00\ud83d']) assert.deepEqual(encodeUtf8Pure(s), new TextEncoder().encode(s), JSON.stringify(s));
});

test('decodeUtf8StrictPure accepts and refuses exactly what TextDecoder (fatal) does', () => {
  // Bytes built from likely-interesting values: ASCII, continuation bytes, every lead byte.
  const byte = fc.oneof(fc.integer({ min: 0, max: 0x7f }), fc.integer({ min: 0x80, max: 0xbf }), fc.integer({ min: 0xc0, max: 0xff }));
  fc.assert(fc.property(fc.array(byte, { maxLength: 24 }), (xs) => {
    const b = Uint8Array.from(xs);
    assert.equal(pureDecode(b), builtinDecode(b));
  }), { numRuns: 20000, seed: 2 });
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 30 }), (s) => {
    const b = new TextEncoder().encode(s);
    assert.equal(pureDecode(b), s.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd'));
  }), { numRuns: 5000, seed: 3 });
  const cases = [[0xef, 0xbb, 0xbf, 0x41], [0xc0, 0x80], [0xe0, 0x9f, 0xbf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xf0, 0x9f, 0x98], [0xf0, 0x9f, 0x98, 0x80], [0xe2, 0x82, 0xac]];
  for (const c of cases) assert.equal(pureDecode(Uint8Array.from(c)), builtinDecode(Uint8Array.from(c)), c.map((x) => x.toString(16)).join(' '));
});
