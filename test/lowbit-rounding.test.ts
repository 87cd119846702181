/**
 * lowbit's quantizer rounds each code as `floor(2y) - floor(y)` of `y = value / scale` clamped
 * within the codes' bounds, where it used `Math.round` (issue 78, item 4: Math.round cost three
 * times the rest of a pass). The codes must be the very ones `lowBitCode` (Math.round, ties
 * going up) gives: on values that fall exactly halfway between two codes, on the codes' bounds and
 * beyond them, on tiny values either side of zero, and on random values; and the ranking top-k
 * sorts by must be the comparison sort's order.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lowBitCode, quantizeLowBit, wireScale } from '../src/diff/lowbit-quantize.ts';
import { lowBitScales } from '../src/core/lowbit.ts';
import { largestFirst } from '../src/topk-diff/encoder.ts';
import { seededRandom } from '../src/core/random.ts';

test('quantizeLowBit decodes to lowBitCode(value, scale) x scale: halfway values, the bounds, beyond them, tiny and random values', () => {
  const r = seededRandom(78);
  for (const bits of [2, 3, 4, 5, 6, 7, 8]) {
    const qmax = 2 ** (bits - 1) - 1;
    // The largest |value| is qmax: each clipping f's scale is then f rounded to float16 (exponent
    // 0), and the values halfway between two codes at every one of those scales are exact.
    const values: number[] = [qmax];
    for (const f of [1, 0.92, 0.84, 0.76, 0.68, 0.6, 0.52, 0.44]) {
      const s = wireScale(f, 0).s;
      for (let k = -qmax - 3; k <= qmax + 2; k++) for (const v of [(k + 0.5) * s, k * s, (k + 0.25) * s]) if (Math.abs(v) <= qmax) values.push(v);
    }
    values.push(1e-30, -1e-30, -qmax);
    for (let i = 0; i < 2000; i++) values.push((r() - 0.5) * 2 * qmax);
    const delta = Float32Array.from(values);
    const q = quantizeLowBit(delta, bits, delta.length, 1, undefined, 0);
    const s = lowBitScales(q.lowbit)[0];
    let halfway = 0;
    for (let i = 0; i < delta.length; i++) {
      const want = Math.fround(lowBitCode(delta[i], s, bits) * s);
      assert.ok(Object.is(q.decoded[i], want), `bits ${bits}, value ${delta[i]}: decoded ${q.decoded[i]}, lowBitCode gives ${want} (scale ${s})`);
      const y = delta[i] / s;
      if (y - Math.floor(y) === 0.5 && Math.abs(y) < qmax + 1) halfway++;
    }
    assert.ok(halfway >= 2 * qmax, `bits ${bits}: ${halfway} values halfway between two codes at the chosen scale`);
  }
});

test('largestFirst is the order of sorting by magnitude, largest first, ties by index', () => {
  const r = seededRandom(5);
  for (let t = 0; t < 50; t++) {
    const n = 1 + Math.floor(r() * 3000);
    const mag = Float32Array.from({ length: n }, () => (r() < 0.3 ? Math.round(r() * 8) / 8 || 0.125 : r() < 0.01 ? Infinity : r() * 10 ** (r() * 20 - 10)));
    const want = Uint32Array.from({ length: n }, (_, i) => i).sort((a, b) => mag[b] - mag[a] || a - b);
    assert.deepEqual(largestFirst(mag), want);
  }
});
