/**
 * The byte delta (src/core/byte-delta.ts, its encoder src/diff/byte-delta.ts, FORMAT.md §16):
 * round trips of arbitrary and of edited pairs, the matcher's copies of moved regions,
 * determinism, and hostile deltas (every strict prefix, random corruption) refused with a typed
 * error and never an output past the cap. The committed vectors are checked in
 * format-vectors.test.ts.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { applyByteDelta, readByteDeltaHeader } from '../src/core/byte-delta.ts';
import { byteDeltaCandidates, encodeByteDelta } from '../src/diff/byte-delta.ts';
import { PayloadFormatError } from '../src/core/errors.ts';

const bytesArb = (max: number) => fc.uint8Array({ maxLength: max });

/** A target made from pieces of the base (moved, repeated) and new bytes, as a model edit makes. */
const editedPairArb = fc
  .tuple(
    fc.uint8Array({ minLength: 1, maxLength: 3000 }),
    fc.array(fc.oneof(fc.tuple(fc.constant('copy' as const), fc.nat(), fc.integer({ min: 1, max: 400 })), fc.tuple(fc.constant('new' as const), fc.uint8Array({ minLength: 1, maxLength: 60 }), fc.constant(0))), { maxLength: 12 }),
  )
  .map(([base, pieces]) => {
    const parts: Uint8Array[] = [];
    for (const [kind, a, n] of pieces) {
      if (kind === 'new') parts.push(a as Uint8Array);
      else {
        const from = (a as number) % base.length;
        parts.push(base.subarray(from, Math.min(base.length, from + n)));
      }
    }
    const target = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
    let at = 0;
    for (const p of parts) {
      target.set(p, at);
      at += p.length;
    }
    return { base, target };
  });

function roundTrip(base: Uint8Array, target: Uint8Array, modelled?: boolean): Uint8Array {
  const { bytes } = encodeByteDelta(base, target, { modelled });
  if (modelled !== undefined) assert.equal(readByteDeltaHeader(bytes, target.length).modelled, modelled);
  const out = applyByteDelta(base, bytes, target.length);
  assert.deepEqual(out, target);
  return bytes;
}

describe('byte delta: properties', () => {
  test('arbitrary pairs round trip, and the encoding is the same on a second run', () => {
    fc.assert(
      fc.property(bytesArb(600), bytesArb(600), (base, target) => {
        const bytes = roundTrip(base, target);
        assert.deepEqual(encodeByteDelta(base, target).bytes, bytes);
      }),
      { numRuns: 300 },
    );
  });
  test('edited pairs (moved and repeated pieces of the base, new bytes) round trip', () => {
    fc.assert(fc.property(editedPairArb, ({ base, target }) => void roundTrip(base, target)), { numRuns: 300 });
  });
  test('random bytes in place of a delta are refused with PayloadFormatError or give at most the capped output', () => {
    fc.assert(
      fc.property(bytesArb(64), bytesArb(64), fc.integer({ min: 0, max: 256 }), (base, delta, cap) => {
        try {
          const out = applyByteDelta(base, delta, cap);
          assert.ok(out.length <= cap);
        } catch (e) {
          assert.ok(e instanceof PayloadFormatError, String(e));
        }
      }),
      { numRuns: 2000 },
    );
  });
  test('every strict prefix of a valid delta is refused, and a flipped byte never escapes as another error', () => {
    fc.assert(
      fc.property(editedPairArb, fc.nat(), fc.integer({ min: 1, max: 255 }), ({ base, target }, at, x) => {
        const { bytes } = encodeByteDelta(base, target);
        for (let n = 0; n < bytes.length; n++) assert.throws(() => applyByteDelta(base, bytes.subarray(0, n), target.length), PayloadFormatError);
        const bad = bytes.slice();
        bad[at % bad.length] ^= x;
        try {
          assert.ok(applyByteDelta(base, bad, target.length).length <= target.length);
        } catch (e) {
          assert.ok(e instanceof PayloadFormatError, String(e));
        }
      }),
      { numRuns: 150 },
    );
  });
});

describe('byte delta: the modelled coding (4)', () => {
  test('arbitrary and edited pairs round trip in the modelled coding, the same bytes on a second run', () => {
    fc.assert(
      fc.property(bytesArb(600), bytesArb(600), (base, target) => {
        const bytes = roundTrip(base, target, true);
        assert.deepEqual(encodeByteDelta(base, target, { modelled: true }).bytes, bytes);
      }),
      { numRuns: 200 },
    );
    fc.assert(fc.property(editedPairArb, ({ base, target }) => void roundTrip(base, target, true)), { numRuns: 200 });
  });
  test('targets that repeat themselves (output copies at repeat distances) round trip', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 40 }), fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 60 }), (piece, picks) => {
        const words = [piece, piece.slice().reverse(), Uint8Array.from(piece, (b) => b ^ 1), Uint8Array.of(7)];
        const target = Uint8Array.from(picks.flatMap((k) => [...words[k]]));
        roundTrip(piece, target, true);
      }),
      { numRuns: 200 },
    );
  });
  test('every candidate the encoder weighs round trips (the greedy instructions in the modelled coding too: their repeat displacements and distances), and it keeps the smallest', () => {
    const check = (base: Uint8Array, target: Uint8Array) => {
      const all = byteDeltaCandidates(base, target);
      assert.deepEqual(all.map((c) => c.name), ['greedy', 'optimal', 'greedy-modelled']);
      for (const c of all) assert.deepEqual(applyByteDelta(base, c.bytes, target.length), target, c.name);
      assert.equal(encodeByteDelta(base, target).bytes.length, Math.min(...all.map((c) => c.bytes.length)));
    };
    fc.assert(fc.property(editedPairArb, ({ base, target }) => check(base, target)), { numRuns: 200 });
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ minLength: 6, maxLength: 16 }), { minLength: 3, maxLength: 6 }), fc.array(fc.nat(), { minLength: 10, maxLength: 60 }), (words, picks) => {
        check(words[0], Uint8Array.from(picks.flatMap((k) => [...words[k % words.length]])));
      }),
      { numRuns: 200 },
    );
  });
  test('a new float32 tensor: the greedy instructions in the modelled coding, its literals by position, are smaller than the greedy delta', () => {
    let seed = 7;
    const floats = Float32Array.from({ length: 8192 }, () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32 - 0.5) * 0.1);
    const frame = new TextEncoder().encode('model frame: conv.w [64, 128] float32; ');
    const target = new Uint8Array(frame.length + floats.byteLength);
    target.set(frame);
    target.set(new Uint8Array(floats.buffer), frame.length);
    const [greedy, , fromGreedy] = byteDeltaCandidates(frame, target);
    assert.ok(fromGreedy.bytes.length < 0.95 * greedy.bytes.length, `${fromGreedy.bytes.length} vs ${greedy.bytes.length}`);
    assert.equal(readByteDeltaHeader(fromGreedy.bytes, target.length).lp, 2);
  });
  test('a few words repeated in any order (copies at the last, second- and third-last distance) round trip', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ minLength: 6, maxLength: 16 }), { minLength: 3, maxLength: 6 }), fc.array(fc.nat(), { minLength: 10, maxLength: 60 }), (words, picks) => {
        const target = Uint8Array.from(picks.flatMap((k) => [...words[k % words.length]]));
        roundTrip(words[0], target, true);
      }),
      { numRuns: 200 },
    );
  });
  test('random modelled streams are refused with PayloadFormatError or give at most the capped output, and stop soon', () => {
    const leb = (v: number): number[] => (v < 0x80 ? [v] : [(v & 0x7f) | 0x80, ...leb(v >>> 7)]);
    fc.assert(
      fc.property(bytesArb(64), fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 300 }), bytesArb(40), bytesArb(40), (base, L, N, K, stream, literals) => {
        const delta = Uint8Array.from([...leb(L), ...leb(base.length), ...leb(N), 4, ...leb(K), ...leb(stream.length), ...stream, ...literals]);
        try {
          assert.ok(applyByteDelta(base, delta, 256).length <= 256);
        } catch (e) {
          assert.ok(e instanceof PayloadFormatError, String(e));
        }
      }),
      { numRuns: 3000 },
    );
  });
  test('every strict prefix of a modelled delta is refused, and a flipped byte never escapes as another error', () => {
    fc.assert(
      fc.property(editedPairArb, fc.nat(), fc.integer({ min: 1, max: 255 }), ({ base, target }, at, x) => {
        const { bytes } = encodeByteDelta(base, target, { modelled: true });
        for (let n = 0; n < bytes.length; n++) assert.throws(() => applyByteDelta(base, bytes.subarray(0, n), target.length), PayloadFormatError);
        const bad = bytes.slice();
        bad[at % bad.length] ^= x;
        try {
          assert.ok(applyByteDelta(base, bad, target.length).length <= target.length);
        } catch (e) {
          assert.ok(e instanceof PayloadFormatError, String(e));
        }
      }),
      { numRuns: 150 },
    );
  });
  test('the encoder keeps the smaller coding: renamed names in a text frame are smaller modelled', () => {
    const enc = new TextEncoder();
    const base = enc.encode(Array.from({ length: 200 }, (_, i) => `graph/node_${i}/Constant_${i + 3}_output_0;`).join(''));
    const target = enc.encode(Array.from({ length: 200 }, (_, i) => `graph/node_${i}/Constant_${i + 4}_output_0;`).join(''));
    const chosen = encodeByteDelta(base, target);
    const greedy = encodeByteDelta(base, target, { modelled: false });
    assert.equal(chosen.stats.instructionCoding, 'modelled');
    assert.ok(chosen.bytes.length < greedy.bytes.length, `${chosen.bytes.length} vs ${greedy.bytes.length}`);
    assert.deepEqual(applyByteDelta(base, chosen.bytes, target.length), target);
  });
});

describe('byte delta: the matcher', () => {
  // 64 KiB of noise in four 16 KiB blocks; the target swaps blocks 0 and 2, drops block 3 and
  // inserts 1 KiB of new noise: the delta is the new bytes plus a few instructions.
  let seed = 7;
  const noise = (n: number): Uint8Array => Uint8Array.from({ length: n }, () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 24));
  const base = noise(65536);
  const block = (k: number): Uint8Array => base.subarray(16384 * k, 16384 * (k + 1));
  const fresh = noise(1024);
  const target = Uint8Array.from([...block(2), ...block(1), ...fresh, ...block(0)]);
  test('moved blocks become copies; the delta is the new bytes and a few instructions', () => {
    const { bytes, stats } = encodeByteDelta(base, target);
    assert.deepEqual(applyByteDelta(base, bytes, target.length), target);
    assert.equal(stats.insertedBytes, 1024);
    assert.equal(stats.copiedBytes, 3 * 16384);
    assert.ok(stats.copies <= 3, `${stats.copies} copies`);
    assert.ok(bytes.length < 1024 + 32, `${bytes.length} bytes`);
  });
  test('a block the target holds twice and the base not at all is inserted once, then copied from the output', () => {
    const t = Uint8Array.from([...fresh, ...block(1).subarray(0, 100), ...fresh]);
    const { bytes, stats } = encodeByteDelta(base, t);
    assert.deepEqual(applyByteDelta(base, bytes, t.length), t);
    assert.equal(stats.insertedBytes, 1024);
    assert.ok(bytes.length < 1024 + 24, `${bytes.length} bytes`);
  });
  test('a copy extends backward over bytes it would otherwise insert', () => {
    // the target starts with 40 bytes of the base that the index (16-byte windows) must reach
    // from later positions: one copy, no insert
    const t = base.subarray(1000, 1040);
    const { stats } = encodeByteDelta(base, t);
    assert.deepEqual({ copies: stats.copies, inserts: stats.inserts }, { copies: 1, inserts: 0 });
  });
  test('literals are range-coded only where that is smaller', () => {
    const text = new TextEncoder().encode('a'.repeat(500));
    const coded = encodeByteDelta(new Uint8Array(0), text, { modelled: false });
    assert.equal(coded.stats.literalCoding, 'range-coded');
    assert.ok(coded.bytes.length < 100, `${coded.bytes.length}`);
    const raw = encodeByteDelta(new Uint8Array(0), noise(500), { modelled: false });
    assert.equal(raw.stats.literalCoding, 'raw');
    assert.equal(readByteDeltaHeader(raw.bytes, 500).literalCoding, 0);
  });
  test('a base over 2 MiB is indexed with a stride and still finds its moved regions', () => {
    const big = noise(3 << 20);
    const t = Uint8Array.from([...big.subarray(2 << 20, (2 << 20) + 100000), ...big.subarray(0, 100000)]);
    const { bytes, stats } = encodeByteDelta(big, t);
    assert.deepEqual(applyByteDelta(big, bytes, t.length), t);
    assert.equal(stats.insertedBytes, 0);
    assert.ok(bytes.length < 64, `${bytes.length} bytes`);
  });
});
