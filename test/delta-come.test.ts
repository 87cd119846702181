/**
 * The Delta-CoMe baseline (src/diff/delta-come.ts): SVD of each matrix's delta, the paper's triple
 * precision by singular value (2 directions at 8 bits, 32 at 3, the rest at 2), within a byte
 * budget; and on a fine-tune, beside lowbit at the same bytes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deltaCome, quantizeMinMax } from '../src/diff/delta-come.ts';
import { seededRandom } from '../src/core/random.ts';

const r = seededRandom(4);
/** A 40x24 delta of rank 6 (singular values 8, 4, 2, 1, 0.5, 0.25) plus a bias change. */
function lowRankDelta(): { deltas: Map<string, Float32Array>; shapes: Map<string, number[]> } {
  const d = new Float32Array(40 * 24);
  [8, 4, 2, 1, 0.5, 0.25].forEach((s) => {
    const u = Array.from({ length: 40 }, () => r() - 0.5);
    const v = Array.from({ length: 24 }, () => r() - 0.5);
    for (let i = 0; i < 40; i++) for (let j = 0; j < 24; j++) d[i * 24 + j] += s * u[i] * v[j];
  });
  return { deltas: new Map([['w', d], ['b', Float32Array.from({ length: 24 }, () => 0.01 * (r() - 0.5))]]), shapes: new Map([['w', [40, 24]], ['b', [24]]]) };
}
const relError = (a: Float32Array, b: Float32Array) => Math.sqrt(a.reduce((s, x, i) => s + (x - b[i]) ** 2, 0) / b.reduce((s, x) => s + x * x, 0));

test('min-max quantization: 2^bits levels between the vector\'s extremes, exact at the ends', () => {
  const x = Float32Array.from([-1, -0.2, 0.1, 0.5, 1]);
  const q2 = quantizeMinMax(x, 2);
  assert.equal(new Set(q2).size <= 4, true);
  assert.ok(Math.abs(q2[0] + 1) < 1e-3 && Math.abs(q2[4] - 1) < 1e-3, [...q2].join(', '));
  assert.ok(relError(quantizeMinMax(x, 8), x) < relError(q2, x));
});

test('the bytes stay within the budget, more budget buys a closer delta, the tiers follow the singular values', () => {
  const { deltas, shapes } = lowRankDelta();
  let last = Infinity;
  for (const budget of [120, 200, 260]) {
    const res = deltaCome(deltas, shapes, { budgetBytes: budget });
    assert.ok(res.bytes <= budget, `${res.bytes} > ${budget}`);
    const err = relError(res.deltas.get('w') ?? new Float32Array(960), deltas.get('w') as Float32Array);
    assert.ok(err < last, `budget ${budget}: error ${err} after ${last}`);
    last = err;
  }
  // With room for every direction: the first two at 8 bits, the rest at 3; the bias at f16.
  const all = deltaCome(deltas, shapes, { budgetBytes: 100_000 });
  assert.match(all.allocation.join(' '), /^w 8x2\+3x\d+$/);
  assert.ok(all.deltas.has('b'));
  assert.ok(relError(all.deltas.get('w') as Float32Array, deltas.get('w') as Float32Array) < 0.05);
  // At 2 bits for everything the same directions cost less and err more.
  const twoBit = deltaCome(deltas, shapes, { budgetBytes: 100_000, tiers: [{ bits: 2, count: Infinity }] });
  assert.ok(twoBit.bytes < all.bytes);
  assert.ok(relError(twoBit.deltas.get('w') as Float32Array, deltas.get('w') as Float32Array) > relError(all.deltas.get('w') as Float32Array, deltas.get('w') as Float32Array));
});
