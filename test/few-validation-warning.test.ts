/**
 * The warning for a small validation set: its figure holds for every kind of score. A selfie
 * mask model is chosen by the mean output difference, where "one example moves the score by
 * 12.5 points" meant nothing: each example is 12.5% of the score.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { warnFewValidation } from '../src/train/data.ts';

test('a small validation set is warned of with each example\'s share of every score, for masks as for classes', () => {
  const said: string[] = [];
  warnFewValidation(8, 64, false, (m) => said.push(m));
  assert.equal(said.length, 1);
  assert.match(said[0], /each example is 12\.5% of every score/);
  assert.match(said[0], /of a mean output difference, that share of it/);
  assert.doesNotMatch(said[0], /moves the score by/);
  assert.match(said[0], /8 of 64 held out now/);
  warnFewValidation(30, 300, false, (m) => said.push(m));
  assert.equal(said.length, 1, '30 examples are enough: no warning');
});
