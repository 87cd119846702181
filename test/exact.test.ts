/**
 * Exact diffs (codec x, format v2): the device ends at the target bit for bit, whatever the two
 * values are (signed zeros, subnormals, across binades, to and from 1e-10), undo restores the
 * base bit for bit, a mask that makes a weight NaN is refused with the model untouched, and
 * `ndiff diff --budget all` on two folders gives a payload the device applies to exactly the
 * target's fingerprint, smaller than float32 deltas would be where few bits change.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import fc from 'fast-check';
import { applyPayload } from '../src/apply/apply.ts';
import { NonFiniteValueError, TargetMismatchError } from '../src/core/errors.ts';
import { decodePayload } from '../src/core/format.ts';
import { encodePayload } from '../src/core/encode.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { getHasher } from '../src/core/hasher.ts';
import { MemoryWeightStore } from '../src/core/weight-store.ts';
import { exactDiff } from '../src/diff/exact.ts';
import { main } from '../cli/ndiff.ts';
import { tempDir, writeStore } from './helpers/dirs.ts';

const hasher = await getHasher();
const bitsOf = (v: Float32Array) => Array.from(new Uint32Array(v.slice().buffer));
const finite32 = fc.float({ noNaN: true, noDefaultInfinity: true });

test('every target is reached bit for bit, from any base, and undo gives the base back', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.tuple(finite32, finite32, fc.boolean()), { minLength: 1, maxLength: 300 }), async (pairs) => {
      // Some weights change, some do not; values anywhere in float32, signed zeros included.
      const a = Float32Array.from(pairs, ([x]) => x);
      const b = Float32Array.from(pairs, ([x, y, keep]) => (keep ? x : y));
      const base = new MemoryWeightStore({ w: { shape: [a.length], data: a.slice() } });
      const target = new MemoryWeightStore({ w: { shape: [b.length], data: b } });
      const diff = exactDiff(hasher, base, target, { modelId: 'p', sequence: 1 });
      if (diff.changed === 0) return;
      const device = base.clone();
      const res = await applyPayload(device, diff.bytes, { hasher });
      assert.equal(res.targetFingerprint, fingerprintStore(hasher, target).fingerprint);
      assert.deepEqual(bitsOf(device.values('w')), bitsOf(b));
    }),
    { numRuns: 200, seed: 20261122 },
  );
});

test('what float32 addition cannot reach: 1 to 1e-10, +0 to -0, a subnormal to a normal', async () => {
  const a = Float32Array.of(1, 0, 2 ** -149, 3, 1e30);
  const b = Float32Array.of(1e-10, -0, 2 ** -126, -3, 1e-30);
  const base = new MemoryWeightStore({ w: { shape: [5], data: a.slice() } });
  const diff = exactDiff(hasher, base, new MemoryWeightStore({ w: { shape: [5], data: b } }));
  const payload = decodePayload(diff.bytes);
  assert.equal(payload.header.version, 2);
  assert.equal(payload.header.meta?.method, 'exact');
  assert.equal(payload.patches[0].codec, 'x');
  await applyPayload(base, diff.bytes, { hasher });
  assert.deepEqual(bitsOf(base.values('w')), bitsOf(b));
});

test('a mask altered to make a weight NaN is refused; one altered to another finite value fails the target check; the model is untouched', async () => {
  const a = Float32Array.from({ length: 40 }, (_, i) => Math.sin(i));
  const b = a.map((x, i) => (i % 3 === 0 ? x * 1.5 : x));
  const base = new MemoryWeightStore({ w: { shape: [40], data: a.slice() } });
  const diff = exactDiff(hasher, base, new MemoryWeightStore({ w: { shape: [40], data: b } }));
  const masks = () => {
    const p = decodePayload(diff.bytes);
    const v = (p.patches[0] as { values: Float32Array }).values;
    return { p, m: new Uint32Array(v.buffer, v.byteOffset, v.length) };
  };
  const nan = masks();
  const first = nan.p.patches[0].kind === 'sparse' ? (nan.p.patches[0] as { positions: Uint32Array }).positions[0] : 0;
  nan.m[0] = (0x7fc00000 ^ new Uint32Array(a.slice(first, first + 1).buffer)[0]) >>> 0; // old bits XOR mask = a quiet NaN
  const nanBytes = encodePayload(nan.p);
  await assert.rejects(applyPayload(base, nanBytes, { hasher }), NonFiniteValueError);
  assert.deepEqual(bitsOf(base.values('w')), bitsOf(a));
  const other = masks();
  other.m[1] ^= 1;
  await assert.rejects(applyPayload(base, encodePayload(other.p), { hasher }), TargetMismatchError);
  assert.deepEqual(bitsOf(base.values('w')), bitsOf(a));
});

test('ndiff diff --budget all on two folders: the device ends at the target fingerprint', async () => {
  const dir = await tempDir('nd-exact-');
  const n = 5000;
  const a = Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 0.1);
  const b = a.map((x, i) => (i % 10 === 0 ? Math.fround(x + 1e-4 * Math.cos(i)) : x));
  await writeStore(join(dir, 'v1'), new MemoryWeightStore({ w: { shape: [n], data: a } }));
  await writeStore(join(dir, 'v2'), new MemoryWeightStore({ w: { shape: [n], data: b } }));
  const notes: string[] = [];
  const io = { out: () => {}, err: () => {}, progress: (l: string) => notes.push(l) };
  assert.equal(await main(['diff', '--model-id', 'm', '--base', join(dir, 'v1'), '--target', join(dir, 'v2'), '--budget', 'all', '--out', join(dir, 'all.ndiff')], io), 0);
  assert.ok(!notes.some((l) => /not smaller/.test(l)), 'a tenth of the weights changed: the payload is far smaller than the model');
  assert.equal(await main(['apply', '--model', join(dir, 'v1'), '--patch', join(dir, 'all.ndiff'), '--no-state'], io), 0);
  const lines: string[] = [];
  const got = { out: (l: string) => lines.push(l), err: () => {}, progress: () => {} };
  await main(['fingerprint', join(dir, 'v1')], got);
  await main(['fingerprint', join(dir, 'v2')], got);
  assert.equal(lines[0], lines[1], 'base + payload is the target, bit for bit');
});
