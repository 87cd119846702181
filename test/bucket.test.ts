import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import xxhash from 'xxhash-wasm';
import { tensorSeed, positionHash, bucketOf, signOf, fillBuckets } from '../src/core/bucket.ts';
import { xxh32 } from '../src/core/xxhash-pure.ts';

interface BucketVectors {
  tensorSeeds: { name: string; globalSeed: number; seed: number }[];
  positions: { seed: number; buckets: number; signed: boolean; columns: string[]; rows: [number, number, number, number][] }[];
}
const vectors = JSON.parse(readFileSync(new URL('./vectors/bucket.json', import.meta.url), 'utf8')) as BucketVectors;
const wasm = await xxhash();

const le32 = (p: number): Uint8Array => new Uint8Array([p & 255, (p >>> 8) & 255, (p >>> 16) & 255, p >>> 24]);
const u32 = fc.integer({ min: 0, max: 2 ** 32 - 1 });

test('tensorSeed matches the vectors (ASCII, empty and non-ASCII names)', () => {
  assert.ok(vectors.tensorSeeds.some((t) => /[^\x00-\x7f]/.test(t.name)));
  for (const t of vectors.tensorSeeds) assert.equal(tensorSeed(t.name, t.globalSeed), t.seed, `${t.name} @ ${t.globalSeed}`);
  // the global seed is used modulo 2^32
  assert.equal(tensorSeed('dense/kernel', 42 + 2 ** 32), tensorSeed('dense/kernel', 42));
  assert.equal(tensorSeed('dense/kernel', -1), tensorSeed('dense/kernel', 2 ** 32 - 1));
});

test('positionHash, bucketOf, signOf and fillBuckets match the vectors', () => {
  assert.deepEqual(vectors.positions[0].columns, ['position', 'hash', 'bucket', 'sign']);
  for (const { seed, buckets, signed, rows } of vectors.positions) {
    const filled = fillBuckets(32, seed, buckets, signed);
    assert.equal(filled.sign === null, !signed);
    for (const [position, hash, bucket, sign] of rows) {
      const h = positionHash(position, seed);
      assert.equal(h, hash, `hash of ${position} seed ${seed}`);
      assert.equal(bucketOf(h, buckets), bucket);
      assert.equal(signed ? signOf(h) : 1, sign);
      if (position < 32) {
        assert.equal(filled.bucket[position], bucket);
        if (filled.sign) assert.equal(filled.sign[position], sign);
      }
    }
  }
});

test('positionHash equals xxh32 of the 4-byte little-endian position (pure and wasm)', () => {
  const edges = [0, 1, 2, 255, 256, 2 ** 16, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 2, 2 ** 32 - 1];
  for (const p of edges) {
    for (const s of edges) {
      const want = wasm.h32Raw(le32(p), s);
      assert.equal(positionHash(p, s), want, `position ${p} seed ${s}`);
      assert.equal(xxh32(le32(p), s), want);
    }
  }
  fc.assert(
    fc.property(u32, u32, (p, s) => {
      const h = positionHash(p, s);
      assert.equal(h, xxh32(le32(p), s));
      assert.equal(h, wasm.h32Raw(le32(p), s));
      assert.ok(Number.isInteger(h) && h >= 0 && h < 2 ** 32);
    }),
    { numRuns: 2000 },
  );
});

test('bucketOf and signOf use bit 0 for the sign and the other 31 bits for the bucket', () => {
  assert.equal(bucketOf(0xffffffff, 2 ** 31), 2 ** 31 - 1);
  assert.equal(bucketOf(0xffffffff, 10), (2 ** 31 - 1) % 10);
  assert.equal(bucketOf(1, 7), 0);
  assert.equal(bucketOf(2, 7), 1);
  assert.equal(signOf(0), 1);
  assert.equal(signOf(1), -1);
  assert.equal(signOf(0xffffffff), -1);
  fc.assert(
    fc.property(u32, fc.integer({ min: 1, max: 2 ** 31 }), (h, nb) => {
      const b = bucketOf(h, nb);
      assert.ok(Number.isInteger(b) && b >= 0 && b < nb);
      assert.equal(b, Math.floor(h / 2) % nb);
    }),
  );
});

test('fillBuckets: same as positionHash per position, reuses output arrays, validates', () => {
  const seed = tensorSeed('conv/kernel', 5);
  const { bucket, sign } = fillBuckets(1000, seed, 37, true);
  assert.equal(bucket.length, 1000);
  assert.ok(sign && sign.length === 1000);
  for (let i = 0; i < 1000; i++) {
    const h = positionHash(i, seed);
    assert.equal(bucket[i], bucketOf(h, 37));
    assert.equal(sign[i], signOf(h));
  }
  const ob = new Int32Array(1000);
  const os = new Float32Array(1000);
  const again = fillBuckets(1000, seed, 37, true, ob, os);
  assert.equal(again.bucket, ob);
  assert.equal(again.sign, os);
  assert.deepEqual(ob, bucket);
  const longer = fillBuckets(10, seed, 37, false, new Int32Array(20));
  assert.equal(longer.bucket.length, 10);
  assert.equal(longer.sign, null);
  assert.deepEqual(longer.bucket, bucket.subarray(0, 10));
  assert.deepEqual(fillBuckets(0, seed, 3, true).bucket, new Int32Array(0));
  assert.throws(() => fillBuckets(10, seed, 0, false), RangeError);
  assert.throws(() => fillBuckets(10, seed, 1.5, false), RangeError);
  assert.throws(() => fillBuckets(-1, seed, 4, false), RangeError);
  assert.throws(() => fillBuckets(10, seed, 4, false, new Int32Array(9)), RangeError);
  assert.throws(() => fillBuckets(10, seed, 4, true, undefined, new Float32Array(9)), RangeError);
});

test('distribution: 100k positions into 64 buckets within 20% of the mean, signs balanced', () => {
  for (const name of ['dense/kernel', 'conv2d_1/bias', 'héllo/重み']) {
    const seed = tensorSeed(name, 1234);
    const n = 100_000;
    const { bucket, sign } = fillBuckets(n, seed, 64, true);
    const counts = new Array<number>(64).fill(0);
    for (const b of bucket) counts[b]++;
    const mean = n / 64;
    for (const c of counts) assert.ok(Math.abs(c - mean) <= 0.2 * mean, `${name}: bucket count ${c}, mean ${mean}`);
    let sum = 0;
    for (const s of sign!) sum += s;
    // a fair coin gives |sum| ~ sqrt(n) = 316; allow 5 sigma
    assert.ok(Math.abs(sum) < 5 * Math.sqrt(n), `${name}: sign sum ${sum}`);
    // sign and bucket are not tied together: each bucket sees both signs
    const neg = new Array<number>(64).fill(0);
    for (let i = 0; i < n; i++) if (sign![i] < 0) neg[bucket[i]]++;
    for (let b = 0; b < 64; b++) assert.ok(neg[b] > 0.3 * counts[b] && neg[b] < 0.7 * counts[b], `${name}: bucket ${b}`);
  }
});

test('different tensor seeds give different bucket layouts', () => {
  const a = fillBuckets(4096, tensorSeed('layer1/kernel', 0), 256, false).bucket;
  const b = fillBuckets(4096, tensorSeed('layer2/kernel', 0), 256, false).bucket;
  let same = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) same++;
  // independent layouts agree on about 1/256 of the positions
  assert.ok(same < 4096 / 256 * 4, `${same} positions share a bucket`);
});
