/**
 * The public-key check of src/apply/ed25519-point.ts (canonical encoding, on the curve, order L)
 * against @noble/ed25519's strict decoding and order checks, on real keys, the eight small-order
 * points, mixed-order points, non-canonical encodings and random bytes; and parsePublicKey, which
 * uses it, refusing each kind with the reason.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import * as ed from '@noble/ed25519';
import { publicKeyProblem } from '../src/apply/ed25519-point.ts';
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
