/**
 * The patch kernels and their undo log: undo restores every tensor bit for bit (signed zeros,
 * NaN payloads, subnormals, deltas that dwarf the weight), the undo log of a hashed or dense
 * patch is a small exception list, never a copy of the tensor, and the fast hashed kernels
 * (WebAssembly and pure JS) are bit-identical to the reference definition in bucket.ts
 * (positionHash, bucketOf, sign), and the fast float16 decoder equals the reference conversion.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { applyTensorPatch, undoTensorPatch, useHashKernel } from '../src/core/patch-math.ts';
import { bucketOf, positionHash } from '../src/core/bucket.ts';
import type { DensePatch, HashPatch, LowRankPatch, SparsePatch, TensorPatch } from '../src/core/format.ts';
import { rng } from './helpers/models.ts';
import { decodeValues } from '../src/core/values.ts';
import { fromHalfBits } from '../src/core/float16.ts';

const common = { baseDigest: '0000000000000000', targetDigest: '0000000000000000', codec: 'f32' as const };
const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

/** Float32 bit patterns that stress rounding: zeros of both signs, NaNs, subnormals, huge values. */
const f32Bits = fc.oneof(
  fc.integer({ min: 0, max: 0xffffffff }),
  fc.constantFrom(0, 0x80000000, 0x7fc00000, 0x7fc00001, 0xffc12345, 1, 0x80000001, 0x00800000, 0x3f800000, 0x7f7fffff),
);
const weights = fc.array(f32Bits, { minLength: 1, maxLength: 300 }).map((b) => new Float32Array(new Uint32Array(b).buffer));
const finite = fc.float({ noNaN: true, noDefaultInfinity: true });

function patchesFor(w: Float32Array, seed: number, deltas: number[]): TensorPatch[] {
  const n = w.length;
  const buckets = Float32Array.from(deltas.length ? deltas : [0]);
  const hash: HashPatch = { ...common, kind: 'hash', name: 't', shape: [n], seed, signed: seed % 2 === 0, buckets };
  const dense: DensePatch = { ...common, kind: 'dense', name: 't', shape: [n], values: Float32Array.from({ length: n }, (_, i) => buckets[i % buckets.length]) };
  const positions = Uint32Array.from({ length: n }, (_, i) => i).filter((i) => i % 3 !== 1);
  const sparse: SparsePatch = { ...common, kind: 'sparse', name: 't', shape: [n], positions, values: Float32Array.from(positions, (_, k) => buckets[k % buckets.length]), positionCoding: 'gaps' };
  const lowrank: LowRankPatch = { ...common, kind: 'lowrank', name: 't', shape: [n], rank: 1, u: Float32Array.from({ length: n }, (_, i) => buckets[i % buckets.length]), v: Float32Array.from([1]) } as LowRankPatch;
  return [hash, dense, sparse, lowrank];
}

test('undo restores every tensor bit for bit, whatever the weights and deltas', () => {
  fc.assert(
    fc.property(weights, fc.integer({ min: 0, max: 0xffffffff }), fc.array(finite, { minLength: 1, maxLength: 40 }), (w, seed, deltas) => {
      for (const patch of patchesFor(w, seed, deltas)) {
        const before = bits(w);
        const work = w.slice();
        const undo = applyTensorPatch(work, patch, true);
        assert.ok(undo);
        undoTensorPatch(work, undo);
        assert.deepEqual(bits(work), before, `${patch.kind} undo`);
      }
    }),
    { numRuns: 300 },
  );
});

test('undo restores every tensor bit for bit with the pure-JS hashed kernel too (no WebAssembly)', () => {
  const was = useHashKernel('js');
  try {
    fc.assert(
      fc.property(weights, fc.integer({ min: 0, max: 0xffffffff }), fc.array(finite, { minLength: 1, maxLength: 40 }), (w, seed, deltas) => {
        const patch = patchesFor(w, seed, deltas)[0];
        const work = w.slice();
        const undo = applyTensorPatch(work, patch, true);
        assert.ok(undo);
        undoTensorPatch(work, undo);
        assert.deepEqual(bits(work), bits(w), 'hash undo');
      }),
      { numRuns: 200 },
    );
  } finally {
    useHashKernel(was);
  }
});

test('applying with and without the undo log writes the same bits', () => {
  fc.assert(
    fc.property(weights, fc.integer({ min: 0, max: 0xffffffff }), fc.array(finite, { minLength: 1, maxLength: 40 }), (w, seed, deltas) => {
      for (const patch of patchesFor(w, seed, deltas)) {
        const a = w.slice();
        const b = w.slice();
        applyTensorPatch(a, patch, true);
        applyTensorPatch(b, patch, false);
        assert.deepEqual(bits(a), bits(b), patch.kind);
      }
    }),
    { numRuns: 200 },
  );
});

test('the hashed kernel equals the reference definition (positionHash, bucketOf, sign), for small and huge bucket counts', () => {
  const r = rng(17);
  for (const nb of [1, 2, 3, 1000, 4096, 65521, 1 << 20]) {
    for (const [signed, kernel] of [[true, 'wasm'], [false, 'wasm'], [true, 'js'], [false, 'js']] as const) {
      const n = 5000;
      const seed = Math.floor(r() * 2 ** 32);
      const w = Float32Array.from({ length: n }, () => (r() - 0.5) * 0.2);
      const buckets = Float32Array.from({ length: Math.min(nb, 1 << 16) }, () => (r() - 0.5) * 0.01);
      // A bucket count above the array length is impossible in a payload; for the huge count
      // test the index arithmetic through a view of a longer array.
      const b = nb <= buckets.length ? buckets : Float32Array.from({ length: nb }, (_, i) => buckets[i % buckets.length]);
      const expected = w.slice();
      for (let i = 0; i < n; i++) {
        const h = positionHash(i, seed);
        const v = b[bucketOf(h, nb)];
        expected[i] += signed && h & 1 ? -v : v;
      }
      const got = w.slice();
      const was = useHashKernel(kernel);
      try {
        applyTensorPatch(got, { ...common, kind: 'hash', name: 't', shape: [n], seed, signed, buckets: b }, true);
      } finally {
        useHashKernel(was);
      }
      assert.deepEqual(bits(got), bits(expected), `nb ${nb} signed ${signed} ${kernel} kernel`);
    }
  }
});

test('the undo log of a hashed patch on a realistic tensor is a few percent of a copy', () => {
  const r = rng(3);
  const n = 1 << 18;
  const w = Float32Array.from({ length: n }, () => (r() - 0.5) * 0.2);
  const buckets = Float32Array.from({ length: 4096 }, () => (r() - 0.5) * 0.002);
  const undo = applyTensorPatch(w, { ...common, kind: 'hash', name: 't', shape: [n], seed: 5, signed: true, buckets }, true);
  assert.ok(undo && undo.kind === 'inverse');
  const logged = undo.exceptions.reduce((n, b) => n + b.positions.buffer.byteLength + b.bits.buffer.byteLength, 0);
  assert.ok(logged < 0.1 * w.byteLength, `undo log ${logged} bytes for a ${w.byteLength}-byte tensor`);
  assert.ok(undo.exceptions.length > 1, 'some additions round, over more than one block (the log is exercised)');
});

test('f16 values decode exactly like fromHalfBits for all 65536 halves (non-finite ones refused)', () => {
  for (let h = 0; h < 65536; h++) {
    const got = decodeValues(new Uint8Array([h & 0xff, h >> 8]), 'f16', undefined);
    const expected = Math.fround(fromHalfBits(h));
    if (Number.isFinite(expected)) {
      assert.ok(got instanceof Float32Array && Object.is(got[0], expected), `half 0x${h.toString(16)}: ${got instanceof Float32Array ? got[0] : 'refused'} vs ${expected}`);
    } else {
      assert.deepEqual(got, { nonFiniteAt: 0 }, `half 0x${h.toString(16)} is not finite`);
    }
  }
});
