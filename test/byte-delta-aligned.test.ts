/**
 * The encoders of two strings laid out alike (a GGUF chunk's old and new blocks): the aligned byte
 * delta (equal stretches copied from the same offset, changed stretches inserted, in the modelled
 * coding of §16) and the range-coded XOR of two byte strings. Each decodes through the device's
 * decoders to the target; the XOR coder writes the very bytes codec `xs` does for the XOR as masks
 * of one byte; the aligned delta's instructions are the stretches and nothing else, and where a
 * few bytes of each block change it is no larger than the general encoder's delta.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { applyByteDelta, readByteDeltaHeader } from '../src/core/byte-delta.ts';
import { encodeAlignedByteDelta, encodeByteDelta } from '../src/diff/byte-delta.ts';
import { encodeXorBytes, encodeXrMasks, openXr } from '../src/core/xr.ts';

/** A seeded string of `blocks` blocks of `size` random bytes, and a copy with `changes` bytes of each block changed. */
function blockPair(blocks: number, size: number, changes: number, seed: number): [Uint8Array, Uint8Array] {
  let s = seed >>> 0;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
  const a = Uint8Array.from({ length: blocks * size }, () => next() & 0xff);
  const b = a.slice();
  for (let j = 0; j < blocks; j++) for (let c = 0; c < changes; c++) b[j * size + (next() % size)] ^= 1 + (next() % 255);
  return [a, b];
}

/** The number of maximal stretches of equal and of changed bytes. */
function stretches(a: Uint8Array, b: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (i === 0 || (a[i] === b[i]) !== (a[i - 1] === b[i - 1])) n++;
  return n;
}

test('the aligned byte delta rebuilds the target for any two strings of one length, one instruction a stretch', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 1, maxLength: 600 }), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { maxLength: 80 }), (base, edits) => {
      const target = base.slice();
      for (const [at, x] of edits) target[at % base.length] ^= x;
      const { bytes, stats } = encodeAlignedByteDelta(base, target);
      assert.deepEqual(applyByteDelta(base, bytes, target.length), target);
      const h = readByteDeltaHeader(bytes, target.length);
      assert.equal(h.instructionCount, stretches(base, target));
      assert.equal(stats.insertedBytes, base.reduce((n, v, i) => n + (v === target[i] ? 0 : 1), 0));
    }),
    { numRuns: 200 },
  );
  assert.throws(() => encodeAlignedByteDelta(new Uint8Array(3), new Uint8Array(4)), RangeError);
});

test('where a few bytes of each block change, the aligned delta is no larger than the general encoder\'s', () => {
  for (const [size, changes] of [[144, 1], [34, 4], [64, 8]] as const) {
    const [a, b] = blockPair(400, size, changes, size + changes);
    const aligned = encodeAlignedByteDelta(a, b).bytes;
    const general = encodeByteDelta(a, b).bytes;
    assert.deepEqual(applyByteDelta(a, aligned, b.length), b);
    assert.ok(aligned.length <= general.length, `blocks of ${size} bytes, ${changes} changed: aligned ${aligned.length} bytes, general ${general.length}`);
  }
});

test('the XOR of two byte strings range-coded: codec xs\'s bytes for the XOR as one-byte masks, decoded back', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 2000 }), fc.integer({ min: 0, max: 2 ** 31 }), (base, seed) => {
      let s = seed;
      const target = base.map((v) => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % 4 ? v : v ^ (s >>> 24)));
      const x = Uint32Array.from(base, (v, i) => v ^ target[i]);
      const bytes = encodeXorBytes(base, target);
      assert.deepEqual(bytes, encodeXrMasks(x, 0));
      if (!base.length) return;
      const out = new Uint32Array(base.length);
      openXr(bytes, base.length, 'test', 0).read(0, base.length, out);
      assert.deepEqual(out, x);
    }),
    { numRuns: 200 },
  );
  assert.throws(() => encodeXorBytes(new Uint8Array(2), new Uint8Array(3)), RangeError);
});
