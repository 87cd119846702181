/**
 * The epoch line of `ndiff train`: "acc" is accuracy on labels. Trained toward a teacher with no
 * labels, the figure is agreement with the teacher (its top class stands in for the labels), and
 * the line says so: a newcomer read `acc 73.7%` of a label-free PyTorch v2 run as accuracy.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEpoch } from '../src/train/front-layers.ts';
import { epochScore, lossText } from '../src/train/front-settings.ts';
import type { EpochReport } from '../src/train/loop.ts';

const report = { epoch: 1, epochs: 10, loss: 0.73, trainAccuracy: 0.737, seconds: 1, samplesPerSecond: 727, status: {} } as unknown as EpochReport;

test('an epoch line says accuracy with labels and agreement with the teacher without them', () => {
  assert.match(describeEpoch(report, true), / acc 73\.7%/);
  const teacherOnly = describeEpoch(report, false);
  assert.match(teacherOnly, /agreement with the teacher 73\.7%/);
  assert.doesNotMatch(teacherOnly, / acc /);
  assert.equal(epochScore(0.5, false), ' agreement with the teacher 50.0%');
  assert.equal(epochScore(Number.NaN, false), '', 'plain values (a mask) have no score');
});

test('a small loss (a KL loss near the teacher) prints its digits, not 0.0000', () => {
  const kl = describeEpoch({ ...report, loss: 0.0000123 } as EpochReport, false);
  assert.match(kl, / loss 1\.23e-5 /);
  assert.doesNotMatch(kl, /0\.0000/);
  assert.equal(lossText(0.73), '0.7300');
  assert.equal(lossText(0.0005), '0.0005');
  assert.equal(lossText(0), '0.0000');
  assert.equal(lossText(Number.NaN), 'NaN');
});
