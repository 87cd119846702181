/**
 * The bytes of post-hoc payloads, pinned: each method and option `ndiff diff` and the comparison
 * report's baselines take, on a small generated model (a float fine-tune: every weight moved a
 * little, a few a lot; one tensor with a per-value importance), must give the sha256 recorded
 * when the encoders were made faster (issue 78, item 4). A change of an encoder's arithmetic,
 * order of sums or search that moves a payload by one byte fails here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { getHasher } from '../src/core/hasher.ts';
import { MemoryWeightStore } from '../src/core/weight-store.ts';
import { seededRandom } from '../src/core/random.ts';
import { lowbitDiff } from '../src/lowbit-diff/encoder.ts';
import { topkDiff } from '../src/topk-diff/encoder.ts';
import { dropDiff } from '../src/diff/baselines.ts';
import { lowRankDiff } from '../src/lowrank-diff/encoder.ts';
import { modelDelta } from '../src/diff/delta.ts';

const SHAPES: [string, number[]][] = [['conv/kernel', [3, 3, 8, 16]], ['conv/bias', [16]], ['dense/kernel', [96, 64]], ['dense/bias', [64]], ['out/kernel', [64, 10]], ['norm/gamma', [64]]];

function models(): { base: MemoryWeightStore; target: MemoryWeightStore } {
  const r = seededRandom(78);
  const base = new MemoryWeightStore(SHAPES.map(([n, s]) => [n, { shape: s, data: Float32Array.from({ length: s.reduce((a, b) => a * b, 1) }, () => (r() - 0.5) * 0.2) }]));
  const target = new MemoryWeightStore(SHAPES.map(([n, s]) => [n, { shape: s, data: Float32Array.from(base.values(n), (w, i) => (n === 'norm/gamma' && i % 5 ? w : w + (r() - 0.5) * 0.004 * (r() < 0.02 ? 30 : 1))) }]));
  return { base, target };
}

const header = { modelId: 'pinned', sequence: 1, createdAt: '2026-01-01T00:00:00Z' };
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex').slice(0, 16);

// Recorded with the encoders as they were before issue 78's speed work (commit 0c13510).
const PINNED: Record<string, string> = {
  'lowbit 1500': '0f04f1431606e241',
  'lowbit squared 1500': '8d8c948bcba18264',
  'lowbit codes only 1500': '1af16e5935c72e25',
  'lowbit importance 1500': '8d8c948bcba18264',
  'topk auto 1500': 'ef3931f2be6c180d',
  'topk f32 1500': 'dcd6bda8b638b6bf',
  'topk f16 1500': '20a149c18655931f',
  'topk i8 1500': 'ef3931f2be6c180d',
  'topk l8 1500': 'de419a29c8265adc',
  'topk l4 1500': '6a789705d50b8c79',
  'drop 1500': '5f7d4f560440ec45',
  'lowrank 1500': 'fdb59e42611e60c1',
  'lowbit 4000': '43c4225486997d18',
  'lowbit squared 4000': 'e46cfc20ee10f21e',
  'lowbit codes only 4000': '9e76100b5969199d',
  'lowbit importance 4000': '0878acb41b3bcaf6',
  'topk auto 4000': '6f3820174560a29d',
  'topk f32 4000': 'db08ab14b8c30d54',
  'topk f16 4000': 'bd79ed8c85b3b3ec',
  'topk i8 4000': '6f3820174560a29d',
  'topk l8 4000': '106edb0683f8002c',
  'topk l4 4000': '80d520302cd6d04a',
  'drop 4000': '4fd77118629662cc',
  'lowrank 4000': '2c2149bb8a07035f',
};

test('post-hoc payloads of every method are the pinned bytes', async () => {
  const hasher = await getHasher();
  const { base, target } = models();
  const deltas = modelDelta(base, target);
  const r = seededRandom(3);
  const importance = new Map([['dense/kernel', Float32Array.from({ length: 96 * 64 }, () => (r() < 0.1 ? 0 : r() * 2))]]);
  const got: Record<string, string> = {};
  for (const budget of [1500, 4000]) {
    const o = { ...header, budgetBytes: budget };
    got[`lowbit ${budget}`] = sha(lowbitDiff(hasher, base, target, o).bytes);
    got[`lowbit squared ${budget}`] = sha(lowbitDiff(hasher, base, target, { ...o, proxy: 'squared' }).bytes);
    got[`lowbit codes only ${budget}`] = sha(lowbitDiff(hasher, base, target, { ...o, lowRank: false, outliers: false, newValues: false }).bytes);
    got[`lowbit importance ${budget}`] = sha(lowbitDiff(hasher, base, target, { ...o, importance }).bytes);
    for (const codec of ['auto', 'f32', 'f16', 'i8', 'l8', 'l4'] as const) got[`topk ${codec} ${budget}`] = sha(topkDiff(hasher, base, target, { ...o, codec }).bytes);
    got[`drop ${budget}`] = sha(dropDiff(hasher, base, deltas, { ...o, seed: 5 }).bytes);
    got[`lowrank ${budget}`] = sha(lowRankDiff(hasher, base, deltas, o).bytes);
  }
  if (process.env.PRINT_PINNED) console.log(JSON.stringify(got, null, 2));
  assert.deepEqual(got, PINNED);
});
