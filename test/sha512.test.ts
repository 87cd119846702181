/**
 * The device's SHA-512 (src/core/sha512.ts, used by the pure Ed25519 path and for key ids)
 * against node:crypto: every length across the first block boundaries (the padding's edge cases
 * are lengths 111, 112, 127 and 128 mod 128), random content, the FIPS 180-4 examples, and
 * megabytes at once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { sha512 } from '../src/core/sha512.ts';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const ref = (b: Uint8Array) => createHash('sha512').update(b).digest('hex');

test('SHA-512: the FIPS 180-4 examples', () => {
  assert.equal(hex(sha512(new Uint8Array(0))), 'cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e');
  assert.equal(hex(sha512(new TextEncoder().encode('abc'))), 'ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f');
  const two = new TextEncoder().encode('abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu');
  assert.equal(hex(sha512(two)), '8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909');
});

test('SHA-512 equals node:crypto on every length from 0 to 600 and on random content', () => {
  for (let n = 0; n <= 600; n++) {
    const m = randomBytes(n);
    assert.equal(hex(sha512(m)), ref(m), `length ${n}`);
  }
  // A view into a larger buffer, at an odd offset: only the view is hashed.
  const big = randomBytes(1000);
  const view = new Uint8Array(big.buffer, big.byteOffset + 3, 500);
  assert.equal(hex(sha512(view)), ref(view));
});

test('SHA-512 equals node:crypto on 5 MB, and on bytes that exercise every carry (all 0xff)', () => {
  const m = randomBytes(5 << 20);
  assert.equal(hex(sha512(m)), ref(m));
  const ones = new Uint8Array(100_003).fill(0xff);
  assert.equal(hex(sha512(ones)), ref(ones));
});
