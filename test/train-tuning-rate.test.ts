/**
 * The learning-rate search refuses a rate that cannot train before any run: 0 learns nothing and a
 * negative rate climbs the loss (trainDiff with learningRate -1e-3 trained uphill and, with
 * allowWorse, wrote the result).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UsageError } from '../src/core/errors.ts';
import { searchLearningRate } from '../src/train/tuning.ts';
import type { LabelledData } from '../src/train/data.ts';

test('a learning rate of 0, below 0 or not finite is a UsageError naming it, and no run starts', () => {
  for (const lr0 of [0, -1e-3, Number.NaN, Number.POSITIVE_INFINITY]) {
    for (const mode of ['off', 'quick', 'thorough'] as const) {
      let runs = 0;
      assert.throws(
        () => searchLearningRate(async () => { runs++; return undefined; }, { mode, what: 'sparse', lr0, trainData: { y: new Int32Array(4) } as unknown as LabelledData, seed: 0, candidates: [], owned: [], progress: () => {} }),
        (e: unknown) => e instanceof UsageError && e.message.startsWith(`learningRate must be a number above 0, e.g. 1e-3, found ${lr0}:`),
      );
      assert.equal(runs, 0, `${mode}: no run at ${lr0}`);
    }
  }
});
