/**
 * The public-key check of src/apply/ed25519-point.ts (canonical encoding, on the curve, order L)
 * against @noble/ed25519's strict decoding and order checks, on real keys, the eight small-order
 * points, mixed-order points, non-canonical encodings and random bytes; and parsePublicKey, which
 * uses it, refusing each kind with the reason. Its signature verifier (the applier's pure path)
 * against node:crypto and noble's strict mode (`zip215: false`): real signatures, every kind of
 * tampering, and the R values noble's strict mode treats specially (small order, non-canonical).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import * as ed from '@noble/ed25519';
import { publicKeyProblem, verifySignature } from '../src/apply/ed25519-point.ts';
import { hasCanonicalScalar } from '../src/apply/ed25519.ts';
import { sha512 } from '../src/core/sha512.ts';
import { parsePublicKey } from '../src/apply/ed25519.ts';
import { seededRandom } from '../src/core/random.ts';
import { UsageError } from '../src/core/errors.ts';

/** noble's verdict: undefined, or which check failed. */
function nobleProblem(raw: Uint8Array): 'curve' | 'order' | undefined {
  let p: ed.Point;
  try {
    p = ed.Point.fromBytes(raw, false);
  } catch {
    return 'curve';
  }
  return p.isSmallOrder() || !p.isTorsionFree() ? 'order' : undefined;
}
const ours = (raw: Uint8Array): 'curve' | 'order' | undefined => {
  const p = publicKeyProblem(raw);
  return p === undefined ? undefined : /curve/.test(p) ? 'curve' : 'order';
};
const rawKey = () => new Uint8Array(generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' }).subarray(12));
const hex = (s: string) => Uint8Array.from(Buffer.from(s, 'hex'));

// The eight points of small order (their canonical encodings).
const SMALL = [
  '0100000000000000000000000000000000000000000000000000000000000000',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  '0000000000000000000000000000000000000000000000000000000000000080',
  '0000000000000000000000000000000000000000000000000000000000000000',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85',
];

test('real keys pass; the small-order points, a key plus a small-order point, and y >= p fail, as noble decides', () => {
  for (let i = 0; i < 20; i++) {
    const k = rawKey();
    assert.equal(ours(k), undefined);
    assert.equal(nobleProblem(k), undefined);
  }
  for (const s of SMALL) {
    const raw = hex(s);
    assert.equal(ours(raw), nobleProblem(raw), s);
    assert.notEqual(ours(raw), undefined, s);
  }
  // Mixed order: a real key plus a point of order 8.
  const mixed = ed.Point.fromBytes(rawKey(), false).add(ed.Point.fromBytes(hex(SMALL[4]), false)).toBytes();
  assert.equal(ours(mixed), 'order');
  assert.equal(nobleProblem(mixed), 'order');
  // Non-canonical y (y = p + 1: the identity's y plus p), and x = 0 with the sign bit set.
  const nonCanonical = hex('eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f');
  assert.equal(ours(nonCanonical), 'curve');
  assert.equal(nobleProblem(nonCanonical), 'curve');
  assert.equal(ours(hex(SMALL[0].slice(0, 62) + '80')), nobleProblem(hex(SMALL[0].slice(0, 62) + '80')));
});

test('3,000 random 32-byte strings: the same verdict as noble on every one', () => {
  const r = seededRandom(25519);
  const seen = { ok: 0, curve: 0, order: 0 };
  for (let i = 0; i < 3000; i++) {
    const raw = Uint8Array.from({ length: 32 }, () => Math.floor(r() * 256));
    const want = nobleProblem(raw);
    assert.equal(ours(raw), want, Buffer.from(raw).toString('hex'));
    seen[want ?? 'ok']++;
  }
  // Half of all y have a point; almost every point of a random y has a torsion component.
  assert.ok(seen.curve > 1000 && seen.order > 1000, JSON.stringify(seen));
});

test('parsePublicKey says which check a bad key failed', () => {
  assert.throws(() => parsePublicKey(hex('eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f')), (e: Error) => e instanceof UsageError && /not a point on the curve/.test(e.message));
  assert.throws(() => parsePublicKey(hex(SMALL[4])), (e: Error) => e instanceof UsageError && /small or mixed order/.test(e.message));
  assert.equal(parsePublicKey(rawKey()).keyId.length, 16);
});

ed.hashes.sha512 ??= sha512;
const rawOf = (k: KeyObject) => new Uint8Array(k.export({ format: 'der', type: 'spki' }).subarray(12));
/** The pure path's decision: S below L (checked by verifyEd25519 first), then the equation. */
const oursVerifies = (sig: Uint8Array, msg: Uint8Array, key: Uint8Array) => hasCanonicalScalar(sig) && verifySignature(key, sig, msg);
const nobleVerifies = (sig: Uint8Array, msg: Uint8Array, key: Uint8Array) => {
  try {
    return ed.verify(sig, msg, key, { zip215: false });
  } catch {
    return false;
  }
};

test('the pure verifier decides as node:crypto and noble (strict) on 200 real signatures and on every kind of tampering', () => {
  const r = seededRandom(8032);
  let valid = 0;
  let refused = 0;
  for (let i = 0; i < 200; i++) {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const key = rawOf(publicKey);
    const msg = Uint8Array.from({ length: Math.floor(r() * 300) }, () => Math.floor(r() * 256));
    const sig = new Uint8Array(sign(null, msg, privateKey));
    const cases: [string, Uint8Array, Uint8Array][] = [['as signed', sig, msg]];
    const flipped = sig.slice();
    flipped[Math.floor(r() * 64)] ^= 1 << Math.floor(r() * 8);
    cases.push(['a signature bit flipped', flipped, msg]);
    if (msg.length) {
      const m = msg.slice();
      m[Math.floor(r() * m.length)] ^= 1 << Math.floor(r() * 8);
      cases.push(['a message bit flipped', sig, m]);
    }
    cases.push(['another message', sig, Uint8Array.of(...msg, 0)]);
    // S + L: the same point equation, refused as malleable by all three.
    const s = sig.slice(32);
    let carry = 0;
    const L = [0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
    for (let j = 0; j < 32; j++) {
      const v = s[j] + L[j] + carry;
      s[j] = v & 0xff;
      carry = v >> 8;
    }
    cases.push(['S + L', Uint8Array.of(...sig.subarray(0, 32), ...s), msg]);
    for (const [what, sg, m] of cases) {
      const want = verify(null, m, publicKey, sg);
      assert.equal(oursVerifies(sg, m, key), want, `${what} (${i})`);
      assert.equal(nobleVerifies(sg, m, key), want, `${what} (${i}), noble`);
      if (want) valid++;
      else refused++;
    }
  }
  assert.equal(valid, 200);
  assert.ok(refused >= 600, `${refused} refused`);
});

test('R of small order, non-canonical or off the curve, with a random S: refused by the pure verifier as by noble (strict)', () => {
  const { publicKey } = generateKeyPairSync('ed25519');
  const key = rawOf(publicKey);
  const r = seededRandom(7);
  const msg = Uint8Array.of(1, 2, 3);
  const rs = [...SMALL.map(hex), hex('eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f'), hex(SMALL[0].slice(0, 62) + '80'), ...Array.from({ length: 40 }, () => Uint8Array.from({ length: 32 }, () => Math.floor(r() * 256)))];
  for (const R of rs) {
    for (const sBytes of [new Uint8Array(32), Uint8Array.from({ length: 32 }, (_, j) => (j === 31 ? 0 : Math.floor(r() * 256)))]) {
      const sig = Uint8Array.of(...R, ...sBytes);
      assert.equal(oursVerifies(sig, msg, key), nobleVerifies(sig, msg, key), Buffer.from(sig).toString('hex'));
    }
  }
  // R = the identity with S = 0 verifies only under a key of small order (refused when parsed): under a real key it is refused.
  assert.equal(oursVerifies(Uint8Array.of(...hex(SMALL[0]), ...new Uint8Array(32)), msg, key), false);
});

/** A key whose secret scalar we know (from a node:crypto key's seed), to craft signatures the way only its holder can. */
function knownKey(seed: Uint8Array) {
  const { scalar, pointBytes } = ed.utils.getExtendedPublicKey(seed);
  const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]);
  return { a: scalar, raw: pointBytes, privateKey: createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }) };
}
const ORDER = 2n ** 252n + 27742317777372353535851937790883648493n;
const leBytes = (n: bigint) => Uint8Array.from({ length: 32 }, (_, i) => Number((n >> BigInt(8 * i)) & 0xffn));
const leNumber = (b: Uint8Array) => b.reduceRight((acc, v) => (acc << 8n) | BigInt(v), 0n);

test('signatures crafted by the key holder with a small-order part in R: the pure verifier decides as node:crypto (cofactorless), both ways', () => {
  const r = seededRandom(25519);
  let accepted = 0;
  let refused = 0;
  for (let i = 0; i < 6; i++) {
    const seed = Uint8Array.from({ length: 32 }, () => Math.floor(r() * 256));
    const { a, raw, privateKey } = knownKey(seed);
    const publicKey = createPublicKey(privateKey);
    const msg = Uint8Array.from({ length: 1 + i * 7 }, () => Math.floor(r() * 256));
    const nonce = (leNumber(Uint8Array.from({ length: 32 }, () => Math.floor(r() * 256))) % (ORDER - 1n)) + 1n;
    for (const torsion of ['', ...SMALL.slice(1)]) {
      // R = [r]B + T; k = SHA-512(R || A || M); S = r + k a: valid under a cofactored check for every T,
      // under the cofactorless one (OpenSSL's, WebCrypto's) only for T = the identity.
      let R = ed.Point.BASE.multiply(nonce);
      if (torsion) R = R.add(ed.Point.fromBytes(hex(torsion)));
      const Rb = R.toBytes();
      const k = leNumber(sha512(Uint8Array.of(...Rb, ...raw, ...msg))) % ORDER;
      const sig = Uint8Array.of(...Rb, ...leBytes((nonce + k * a) % ORDER));
      const want = verify(null, msg, publicKey, sig);
      assert.equal(oursVerifies(sig, msg, raw), want, `key ${i}, T ${torsion || 'identity'}`);
      if (want) accepted++;
      else refused++;
      // R = T alone, S = k a: the holder's signature with a nonce of small order.
      if (torsion) {
        const k2 = leNumber(sha512(Uint8Array.of(...hex(torsion), ...raw, ...msg))) % ORDER;
        const sig2 = Uint8Array.of(...hex(torsion), ...leBytes((k2 * a) % ORDER));
        assert.equal(oursVerifies(sig2, msg, raw), verify(null, msg, publicKey, sig2), `key ${i}, R = T ${torsion}`);
      }
    }
  }
  assert.equal(accepted, 6, 'the untampered signatures verify');
  assert.equal(refused, 6 * (SMALL.length - 1), 'every R with a small-order part is refused, as OpenSSL refuses it');
});

test('non-canonical encodings of R in a signature the key holder made: refused, as node:crypto refuses them', () => {
  const seed = Uint8Array.from({ length: 32 }, (_, i) => i + 1);
  const { a, raw, privateKey } = knownKey(seed);
  const publicKey = createPublicKey(privateKey);
  const msg = Uint8Array.of(7, 7, 7);
  const P = 2n ** 255n - 19n;
  let tried = 0;
  // y in [p, p + 18] encodes y - p, which for y - p in {0, 1} is a point (of small order); x = 0 with the sign bit likewise.
  const encodings = [...Array.from({ length: 19 }, (_, d) => leBytes(P + BigInt(d))), Uint8Array.of(1, ...new Uint8Array(30), 0x80), hex(SMALL[0].slice(0, 62) + '80')];
  for (const Rb of encodings) {
    const k = leNumber(sha512(Uint8Array.of(...Rb, ...raw, ...msg))) % ORDER;
    const sig = Uint8Array.of(...Rb, ...leBytes((k * a) % ORDER));
    assert.equal(verify(null, msg, publicKey, sig), false, 'node:crypto refuses it');
    assert.equal(oursVerifies(sig, msg, raw), false, Buffer.from(Rb).toString('hex'));
    tried++;
  }
  assert.equal(tried, 21);
});

test('verifySignature alone refuses what its callers also check: S at or above L, a key of small order, wrong lengths', () => {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const key = rawOf(publicKey);
  const msg = Uint8Array.of(9);
  const sig = new Uint8Array(sign(null, msg, privateKey));
  assert.equal(verifySignature(key, sig, msg), true);
  const high = sig.slice();
  high[63] |= 0x40; // S + 2^254: the same equation mod L, not the same bytes
  assert.equal(verifySignature(key, high, msg), false);
  // The identity as the key: R = [s]B, S = s would satisfy the equation for every message.
  const s = 12345n;
  const forged = Uint8Array.of(...ed.Point.BASE.multiply(s).toBytes(), ...leBytes(s));
  assert.equal(verifySignature(hex(SMALL[0]), forged, msg), false);
  assert.equal(verifySignature(key.subarray(0, 31), sig, msg), false);
  assert.equal(verifySignature(key, sig.subarray(0, 63), msg), false);
});
