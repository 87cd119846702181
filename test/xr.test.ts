/**
 * Codec xr (format v3): exact bits with the masks' high bytes range-coded. Round trips on
 * masks shaped like real updates and on random ones, decoded whole and in pieces; every cut and
 * every extension of a stream refused; hostile bytes end (a bounded number of steps) with a
 * refusal or with masks the target digest then catches, the model untouched; and a tensor larger
 * than one decoding piece applies bit for bit through the device applier.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { applyPayload } from '../src/apply/apply.ts';
import { NeuralDiffError, PayloadFormatError } from '../src/core/errors.ts';
import { CHUNK_VALUES, decodePayload } from '../src/core/format.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { getHasher } from '../src/core/hasher.ts';
import { MemoryWeightStore } from '../src/core/weight-store.ts';
import { encodeXrMasks, openXr } from '../src/core/xr.ts';
import { encodeXorMasks } from '../src/core/values.ts';
import { exactDiff } from '../src/diff/exact.ts';

const hasher = await getHasher();

/** Decode `n` masks in pieces of the given sizes (cycled), in order. */
function decodeInPieces(bytes: Uint8Array, n: number, sizes: number[]): Uint32Array {
  const out = new Uint32Array(n);
  const r = openXr(bytes, n, 'test');
  for (let at = 0, i = 0; at < n; i++) {
    const m = Math.min(sizes[i % sizes.length], n - at);
    r.read(at, m, out.subarray(at, at + m));
    at += m;
  }
  return out;
}

/** Masks like a retrained weight's: random low 23 bits, a high byte that is mostly 0. */
function retrainedMasks(n: number, seed: number): Uint32Array {
  let s = seed >>> 0;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
  return Uint32Array.from({ length: n }, () => {
    const low = next() & 0x7fffff;
    const r = next() % 100;
    const high = r < 80 ? 0 : r < 95 ? 0x80 : next() & 0xff; // same binade; sign flip; anything
    return ((high << 24) | (r < 50 ? low : low | 0x800000)) >>> 0;
  });
}

test('round trips: masks like a retrained tensor, random masks, zeros, one value; whole and in pieces', () => {
  const cases: [string, Uint32Array][] = [
    ['retrained, 50,000', retrainedMasks(50_000, 1)],
    ['retrained, 7', retrainedMasks(7, 2)],
    ['uniform random, 20,000', Uint32Array.from({ length: 20_000 }, (_, i) => Math.imul(i + 1, 2654435761) >>> 0)],
    ['all zero, 1,000', new Uint32Array(1000)],
    ['all ones, 300', new Uint32Array(300).fill(0xffffffff)],
    ['one value', Uint32Array.of(0x80000000)],
  ];
  for (const [what, masks] of cases) {
    const bytes = encodeXrMasks(masks);
    assert.ok(bytes.length >= 3 * masks.length + 4, what);
    assert.deepEqual(decodeInPieces(bytes, masks.length, [masks.length]), masks, `${what}: whole`);
    assert.deepEqual(decodeInPieces(bytes, masks.length, [1, 7, 4096, 13]), masks, `${what}: in pieces`);
    // Checking only (null output) runs the same decoder and the same end check.
    const r = openXr(bytes, masks.length, what);
    r.read(0, masks.length, null);
  }
  // Retrained-like masks (the high byte mostly 0, sometimes a sign flip) take fewer bytes than
  // in codec x's layout (its 2-bit lengths and a 4-byte mask for every sign flip).
  const m = retrainedMasks(50_000, 3);
  assert.ok(encodeXrMasks(m).length < 0.95 * encodeXorMasks(m).length, `xr ${encodeXrMasks(m).length} vs x ${encodeXorMasks(m).length}`);
  assert.equal(encodeXrMasks(new Uint32Array(0)).length, 0);
});

test('property: any masks round-trip in any piece sizes', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 0xffffffff }), { minLength: 1, maxLength: 400 }), fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 5 }), (list, sizes) => {
      const masks = Uint32Array.from(list);
      assert.deepEqual(decodeInPieces(encodeXrMasks(masks), masks.length, sizes), masks);
    }),
    { numRuns: 300 },
  );
});

test('every cut and every extension of a stream is refused; hostile bytes end in a bounded number of steps', () => {
  const masks = retrainedMasks(200, 4);
  const bytes = encodeXrMasks(masks);
  for (let len = 0; len < bytes.length; len++) {
    assert.throws(() => decodeInPieces(bytes.subarray(0, len), masks.length, [64]), PayloadFormatError, `cut to ${len}`);
  }
  for (const extra of [[0], [1], [0, 0, 0, 0], [0xff]]) {
    assert.throws(() => decodeInPieces(Uint8Array.from([...bytes, ...extra]), masks.length, [64]), PayloadFormatError, `+${extra.length}`);
  }
  assert.throws(() => openXr(new Uint8Array(1), 0, 'empty block with a byte'), PayloadFormatError);
  // Random bytes of a plausible length: decoding ends (at most 8 steps per value) with a
  // refusal or with some masks; it never loops or reads out of bounds.
  let refused = 0;
  for (let t = 0; t < 500; t++) {
    const n = 1 + (t % 37);
    const junk = Uint8Array.from({ length: 3 * n + 4 + (t % 11) }, (_, i) => (Math.imul(t * 131 + i, 2654435761) >>> 24) & 0xff);
    try {
      decodeInPieces(junk, n, [5]);
    } catch (e) {
      assert.ok(e instanceof PayloadFormatError, String(e));
      refused++;
    }
  }
  assert.ok(refused > 400, `${refused} of 500 random streams refused`);
});

test('a tensor larger than a decoding piece applies bit for bit through the device applier; a flipped stream byte leaves the model untouched', async () => {
  const n = 2 * CHUNK_VALUES + 1234;
  const a = Float32Array.from({ length: n }, (_, i) => Math.fround(Math.sin(i) * 0.1));
  // A retrained tensor: every weight moves a little, some change sign or binade.
  const b = Float32Array.from(a, (x, i) => Math.fround(i % 97 === 0 ? -x * 3 : x * (1 + Math.cos(i) * 0.01)));
  const base = new MemoryWeightStore({ w: { shape: [n], data: a.slice() }, keep: { shape: [3], data: Float32Array.of(1, 2, 3) } });
  const target = new MemoryWeightStore({ w: { shape: [n], data: b }, keep: { shape: [3], data: Float32Array.of(1, 2, 3) } });
  const diff = exactDiff(hasher, base, target, { modelId: 'xr', sequence: 1, codecs: ['xr'] });
  assert.equal(diff.codec, 'xr');
  const payload = decodePayload(diff.bytes);
  assert.equal(payload.header.version, 3);
  assert.deepEqual(payload.patches.map((p) => [p.name, p.kind, p.codec]), [['w', 'dense', 'xr']]);
  const device = base.clone();
  const res = await applyPayload(device, diff.bytes, { hasher });
  assert.equal(res.targetFingerprint, fingerprintStore(hasher, target).fingerprint);
  assert.deepEqual(new Uint32Array(device.values('w').buffer), new Uint32Array(b.buffer));

  // Flip a byte of the range-coded part (found by searching for its bytes in the payload).
  const x = exactDiff(hasher, base, target, { modelId: 'xr', sequence: 1, codecs: ['x'] });
  assert.ok(diff.bytes.length < x.bytes.length, `xr ${diff.bytes.length} < x ${x.bytes.length}`);
  const before = fingerprintStore(hasher, base).fingerprint;
  for (const at of [diff.bytes.length - 2, diff.bytes.length - 200, Math.floor(diff.bytes.length / 2)]) {
    const bad = diff.bytes.slice();
    bad[at] ^= 0x10;
    const d = base.clone();
    await assert.rejects(applyPayload(d, bad, { hasher }), NeuralDiffError, `byte ${at}`);
    assert.equal(fingerprintStore(hasher, d).fingerprint, before, `byte ${at}: untouched`);
  }
});
