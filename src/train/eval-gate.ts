/**
 * The refusal of a teacher diff that takes devices further from the new version than not
 * updating, judged on the evaluation examples (`--eval`) when there are some: they are computed on
 * the weights a device gets, from inputs no choice was made on, so a result that validation
 * favoured but that is less close to the teacher there is not shipped (exit 10). Validation's own
 * refusal (train-diff.ts) still applies first; `--eval` never chooses between results (`auto`
 * asks this of the chosen one only).
 */
import { NoImprovementError } from '../core/errors.ts';
import type { TrainDiffResult } from './options.ts';
import { describeCloseness } from './teacher.ts';
import { agreementDropBeyondNoise, lessCloseThanBase } from './eval-noise.ts';

export { agreementDropBeyondNoise };

/**
 * Throw {@link NoImprovementError} when `result` (a teacher diff measured on evaluation examples)
 * is less close to the teacher on them than the unpatched base, by the measure its outputs are
 * chosen by (top-1 agreement for classifiers, lower by more than two standard errors, or one when
 * the outputs came no closer either; mean absolute output difference otherwise, any increase: it
 * averages every output value); nothing
 * when it is not a teacher diff, has no evaluation examples, or `allowWorse`.
 */
export function refuseWorseOnEval(result: Pick<TrainDiffResult, 'method' | 'teacher'>, allowWorse: boolean | undefined): void {
  const t = result.teacher;
  const e = t?.eval;
  if (!t || !e || allowWorse) return;
  // A classifier: agreement lower beyond two standard errors, or beyond one while its outputs came
  // no closer either (3 of 300 decisions flipped where the outputs moved closer is noise, and
  // validation chose the result); eval-noise.ts, the rule ndiff diff --eval refuses by too.
  const worse = lessCloseThanBase({
    metric: t.metric,
    examples: e.examples,
    base: { agreement: e.agreementBefore, meanAbsDiff: e.meanAbsDiffBefore },
    patched: { agreement: e.agreementAfter, meanAbsDiff: e.meanAbsDiffAfter },
  });
  if (!worse) return;
  const after = describeCloseness({ agreement: e.agreementAfter, meanAbsDiff: e.meanAbsDiffAfter }, t.metric);
  const before = describeCloseness({ agreement: e.agreementBefore, meanAbsDiff: e.meanAbsDiffBefore }, t.metric);
  throw new NoImprovementError(
    `the ${result.method} result is less close to the teacher on the evaluation examples (${e.examples}, the weights a device gets) than the unpatched base: ${after}, the base ${before}; shipping it would take devices further from the new version than not updating. Nothing was written: train on inputs like the evaluation examples (where the model runs), try a larger budget or more epochs, or pass --allow-worse to write it anyway`,
    { method: result.method, metric: t.metric, evalExamples: e.examples },
  );
}
