/**
 * A payload written although it measured worse than not updating (`--allow-worse`, or the
 * library's `allowWorse`) says so where the result is printed: on validation below the base's
 * accuracy, or further from the teacher than the base, the line names both figures and what it
 * means for devices. A payload level with or above the base gets no such line.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { worseThanBaseWarning } from '../src/train/front-settings.ts';

test('a payload below the base on validation accuracy is called worse than not updating, with both figures', () => {
  const line = worseThanBaseWarning({ validation: { baseAccuracy: 0.6819, accuracy: 0.679 } });
  assert.ok(line);
  assert.match(line, /^this payload is worse than not updating on validation/, 'the command line puts `warning: ` before it');
  assert.match(line, /68\.19%/);
  assert.match(line, /67\.90%/);
  assert.match(line, /worse than not updating/);
  assert.match(line, /--allow-worse/);
});

test('further from the teacher than the base: by top-1 agreement, or by mean difference where there is no agreement', () => {
  const byAgreement = worseThanBaseWarning({ teacher: { validation: { baseAgreement: 0.9, agreement: 0.85, baseMeanAbsDiff: 0.2, meanAbsDiff: 0.1 } } });
  assert.match(byAgreement ?? '', /85\.00% where the unpatched base has 90\.00%/);
  const byDifference = worseThanBaseWarning({ teacher: { validation: { baseAgreement: NaN, agreement: NaN, baseMeanAbsDiff: 0.1, meanAbsDiff: 0.2 } } });
  assert.match(byDifference ?? '', /0\.200 where the unpatched base has 0\.100/);
});

test('level with the base or better: no warning', () => {
  assert.equal(worseThanBaseWarning({ validation: { baseAccuracy: 0.75, accuracy: 0.75 } }), undefined);
  assert.equal(worseThanBaseWarning({ validation: { baseAccuracy: 0.75, accuracy: 1 } }), undefined);
  assert.equal(worseThanBaseWarning({ teacher: { validation: { baseAgreement: 0.9, agreement: 0.95, baseMeanAbsDiff: 0.2, meanAbsDiff: 0.1 } } }), undefined);
  assert.equal(worseThanBaseWarning({}), undefined);
});
