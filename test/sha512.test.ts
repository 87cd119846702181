/**
 * The device's SHA-512 (src/core/sha512.ts, used by the pure Ed25519 path and for key ids)
 * against node:crypto: every length across the first block boundaries (the padding's edge cases
 * are lengths 111, 112, 127 and 128 mod 128), random content, the FIPS 180-4 examples, and
 * megabytes at once; over parts (the hash of R || A || M taken in three pieces) as over their
 * concatenation, and the pure Ed25519 verifier hashing a payload without allocating a copy of it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { sha512 } from '../src/core/sha512.ts';
import { verifySignature } from '../src/apply/ed25519-point.ts';
import { seededRandom } from '../src/core/random.ts';

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

test('SHA-512 over parts equals SHA-512 of their concatenation: every split of lengths around the block boundaries, empty parts, views at odd offsets', () => {
  const r = seededRandom(512);
  const whole = randomBytes(700);
  for (let n = 0; n <= 700; n += n < 300 ? 1 : 37) {
    const m = whole.subarray(0, n);
    const want = ref(m);
    for (const cut of [0, 1, Math.floor(n / 2), n]) assert.equal(hex(sha512(m.subarray(0, cut), m.subarray(cut))), want, `length ${n}, cut ${cut}`);
    // Random cuts into up to six parts, some empty: R || A || M is three, a block may span them all.
    const cuts = Array.from({ length: 5 }, () => Math.floor(r() * (n + 1))).sort((a, b) => a - b);
    const parts = [0, ...cuts].map((from, i) => m.subarray(from, [...cuts, n][i]));
    assert.equal(hex(sha512(...parts)), want, `length ${n}, cuts ${cuts}`);
  }
  assert.equal(hex(sha512()), ref(new Uint8Array(0)));
  assert.equal(hex(sha512(new Uint8Array(0), new Uint8Array(0))), ref(new Uint8Array(0)));
  // 32 + 32 + a megabyte, as the verifier hashes R, A and a payload.
  const [R, A, M] = [randomBytes(32), randomBytes(32), randomBytes((1 << 20) + 5)];
  assert.equal(hex(sha512(R, A, M)), createHash('sha512').update(R).update(A).update(M).digest('hex'));
});

test('the pure Ed25519 verifier hashes R || A || M in place: verifying a 2 MB payload allocates no byte array of even a tenth of its size', (t) => {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const key = new Uint8Array(publicKey.export({ format: 'der', type: 'spki' }).subarray(12));
  const message = new Uint8Array(randomBytes(2 << 20));
  const signature = new Uint8Array(sign(null, message, privateKey));
  // Every `new Uint8Array(...)` (and Uint8Array.from/of) made while verifying, by the bytes it
  // allocated (a view on an existing buffer allocates none).
  const Real = globalThis.Uint8Array;
  const lengths: number[] = [];
  const spy: Uint8ArrayConstructor = new Proxy(Real, {
    construct(target, args: unknown[], newTarget): object {
      const a = args[0];
      lengths.push(typeof a === 'number' ? a : a instanceof ArrayBuffer ? 0 : ((a as ArrayLike<number> | undefined)?.length ?? 0));
      return Reflect.construct(target, args, newTarget === spy ? target : newTarget);
    },
  });
  globalThis.Uint8Array = spy;
  let verdict: boolean;
  try {
    verdict = verifySignature(key, signature, message);
  } finally {
    globalThis.Uint8Array = Real;
  }
  assert.equal(verdict, true);
  assert.ok(lengths.length > 0, 'the spy saw the verifier\'s own arrays (the hash block and digest)');
  const largest = Math.max(...lengths);
  t.diagnostic(`largest byte array allocated while verifying ${message.length} bytes: ${largest} bytes (${lengths.length} arrays)`);
  assert.ok(largest < message.length / 10, `an array of ${largest} bytes was allocated to verify ${message.length}: the payload was copied`);
});
