/**
 * The pretrained example over several seeds (examples/pretrained/seeds.ts): every method runs
 * once per seed, full and topk-retrain of one seed in one job with full first, and the summary
 * gives each seed's accuracy with the mean and the spread, the base once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dealRuns, parseSeeds, renderSeedSummary, summarizeSeeds } from '../examples/pretrained/seeds.ts';
import { UsageError } from '../src/core/errors.ts';

test('--seeds takes distinct whole numbers and refuses anything else', () => {
  assert.deepEqual(parseSeeds('1,2,3'), [1, 2, 3]);
  assert.deepEqual(parseSeeds(' 7 '), [7]);
  for (const bad of ['', '1,1', '1.5', 'a', '-1']) assert.throws(() => parseSeeds(bad), UsageError, bad);
});

test('every method runs once per seed; full precedes topk-retrain of its seed in the same job', () => {
  const methods = ['full', 'topk-retrain', 'sparse', 'hash'];
  const seeds = [1, 2, 3];
  for (const jobs of [1, 2, 3]) {
    const dealt = dealRuns(methods, seeds, jobs);
    assert.equal(dealt.length, jobs);
    const all = dealt.flat().map((r) => `${r.method}@${r.seed}`).sort();
    assert.deepEqual(all, methods.flatMap((m) => seeds.map((s) => `${m}@${s}`)).sort(), `jobs ${jobs}`);
    for (const job of dealt) {
      for (const [i, r] of job.entries()) {
        if (r.method !== 'topk-retrain') continue;
        assert.equal(job[i - 1]?.method, 'full', `jobs ${jobs}: topk-retrain seed ${r.seed} right after its full`);
        assert.equal(job[i - 1]?.seed, r.seed);
      }
      // Seeds come in order within a job, so one seed's teacher is never replaced by the next's early.
      assert.deepEqual(job.map((r) => r.seed), [...job.map((r) => r.seed)].sort((a, b) => a - b));
    }
  }
  // With more jobs than one seed's runs, the seeds spread over them.
  assert.ok(dealRuns(['sparse', 'full'], [1, 2], 2).every((job) => job.length === 2));
});

test('the seed summary: each seed\'s accuracy, mean and spread; the base once', () => {
  const rows = [
    { method: 'base', seed: 1, folderAccuracy: 0.1 },
    { method: 'full', seed: 1, folderAccuracy: 0.4 },
    { method: 'full', seed: 2, folderAccuracy: 0.5 },
    { method: 'sparse', seed: 2, folderAccuracy: 0.3 },
    { method: 'sparse', seed: 1, folderAccuracy: 0.6 },
  ];
  const summary = summarizeSeeds(rows, [1, 2]);
  assert.deepEqual(summary.map((s) => s.method), ['base', 'full', 'sparse']);
  const sparse = summary[2];
  assert.deepEqual(sparse.seeds, [{ seed: 1, accuracy: 0.6 }, { seed: 2, accuracy: 0.3 }]);
  assert.ok(Math.abs(sparse.mean - 0.45) < 1e-12);
  assert.equal(sparse.min, 0.3);
  assert.equal(sparse.max, 0.6);
  assert.deepEqual(summary[0].seeds, [{ seed: 1, accuracy: 0.1 }]);
  const table = renderSeedSummary(summary, [1, 2]);
  assert.match(table, /\| sparse \| 60\.0% \| 30\.0% \| 45\.0% \| 30\.0%-60\.0% \(30\.0 points\) \|/);
  assert.match(table, /\| base \| 10\.0% \| 10\.0% \| 10\.0% \|/);
});
