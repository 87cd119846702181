/**
 * When a result measured on evaluation inputs counts as further from the target than the
 * unpatched base: the one rule `ndiff train --teacher` (eval-gate.ts) and `ndiff diff --eval`
 * refuse by (exit 10). Pure: no tfjs, so the diff command loads it without the trainer's peers.
 */

/**
 * Whether top-1 agreement fell from `before` to `after` on `n` examples by more than one standard
 * error of the difference of two shares (the one-standard-error rule `--also-consider` uses too):
 * a decision or two flipping among hundreds, while validation chose the result and its outputs
 * came closer, is sampling noise, not a model further from the teacher.
 */
export function agreementDropBeyondNoise(before: number, after: number, n: number, standardErrors = 1): boolean {
  if (!(after < before)) return false;
  const se = Math.sqrt((before * (1 - before) + after * (1 - after)) / Math.max(1, n));
  return before - after > standardErrors * se;
}

/** The closeness of the base and of the result to the target on `examples` inputs. */
export interface MeasuredCloseness {
  metric: 'top1' | 'mae';
  examples: number;
  base: { agreement: number; meanAbsDiff: number };
  patched: { agreement: number; meanAbsDiff: number };
}

/**
 * Less close to the target than the unpatched base, by the measure its outputs are judged by:
 * top-1 agreement (classifiers) lower by more than two standard errors, or one when the outputs
 * came no closer either; mean absolute output difference otherwise, any increase (it averages
 * every output value).
 */
export function lessCloseThanBase(m: MeasuredCloseness): boolean {
  const outputsNoCloser = !(m.patched.meanAbsDiff < m.base.meanAbsDiff);
  return m.metric === 'top1'
    ? agreementDropBeyondNoise(m.base.agreement, m.patched.agreement, m.examples, outputsNoCloser ? 1 : 2)
    : m.patched.meanAbsDiff > m.base.meanAbsDiff;
}
