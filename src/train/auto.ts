/**
 * `ndiff train --method auto`: train every candidate method at the budget and ship the one best
 * on validation. Which method carries an update best depends on the update (a few large changes:
 * a sparse mask; a fine-tune that moved every weight a little: low-bit deltas; a change of low
 * rank: LoRA), so the validation set decides, as it decides learning rates and checkpoints.
 *
 * Cost: one training per candidate (each tuned as `tune` says); the methods that start from a full
 * fine-tune (lowbit, topk-retrain) share one when there is no teacher. The winner is chosen on the
 * same validation split every candidate chose its checkpoints on, so its validation figure is
 * slightly optimistic; `eval` data measures it apart.
 */
import type * as tf from '@tensorflow/tfjs';
import { NoImprovementError, BudgetError, UsageError } from '../core/errors.ts';
import { refuseWorseOnEval } from './eval-gate.ts';
import type { InputData, LabelledData } from './data.ts';
import type { TrainMethod } from './methods.ts';
import { modelToStore, setModelWeights } from '../engine/model-weights.ts';
import type { TrainDiffOptions, TrainDiffResult } from './options.ts';
import { trainDiff } from './train-diff.ts';
import { checkTrainingRun } from './tuning.ts';

/** The methods `auto` tries, in order of preference on a tie (then the fewest bytes). */
export const AUTO_CANDIDATES: readonly TrainMethod[] = ['lowbit', 'sparse', 'lora', 'sparse-lora', 'topk-retrain'];

/** One candidate's outcome. */
export interface AutoCandidate {
  method: TrainMethod;
  /** Payload bytes (absent when refused). */
  bytes?: number;
  /** Validation score, higher is better: accuracy, agreement with the teacher, or minus its mean absolute output difference. */
  score?: number;
  /** How the score reads ("agreement with the teacher 96.12%"). */
  scoreText?: string;
  seconds: number;
  /** Why the candidate has no result (below the base on validation, no room in the budget). */
  refused?: string;
}

export interface AutoResult extends TrainDiffResult {
  auto: { chosen: TrainMethod; candidates: AutoCandidate[] };
}

function scoreOf(res: TrainDiffResult): { score: number; text: string } {
  const t = res.teacher?.validation;
  if (res.teacher && t) {
    return res.teacher.metric === 'top1'
      ? { score: t.agreement, text: `agreement with the teacher ${(100 * t.agreement).toFixed(2)}%` }
      : { score: -t.meanAbsDiff, text: `mean |output − teacher| ${t.meanAbsDiff.toPrecision(4)}` };
  }
  const acc = res.validation?.accuracy ?? NaN;
  return { score: acc, text: `accuracy ${(100 * acc).toFixed(2)}%` };
}

/**
 * Train each of `candidates` (default {@link AUTO_CANDIDATES}) with `options` and return the
 * result best on validation, with every candidate's score, bytes and time (its `trainSeconds` is their sum: the run's). The model ends holding
 * the chosen result's weights. Needs a validation set (`options.validation` not 0). A candidate
 * refused (below the base on validation, or a budget it cannot use) is reported and skipped; if
 * every one is refused, the first refusal is thrown.
 */
export async function trainAuto(
  model: tf.LayersModel,
  data: LabelledData | InputData,
  options: Omit<TrainDiffOptions, 'method'> & { candidates?: readonly TrainMethod[] },
  onCandidate?: (c: AutoCandidate) => void,
): Promise<AutoResult> {
  checkTrainingRun(options);
  if (options.validation === 0) throw new UsageError('--method auto chooses on validation: give a validation split (--val-fraction above 0, or --val DATA)');
  const { candidates = AUTO_CANDIDATES, ...rest } = options;
  if (candidates.includes('full')) throw new UsageError('--method auto compares diffs within the budget; full fine-tuning has no budget: leave it out of the candidates');
  const base = rest.base ?? modelToStore(model);
  const baseNames = new Set(base.list().map((t) => t.name));
  const restore = () => setModelWeights(model, (n) => (baseNames.has(n) ? base.values(n) : undefined));
  const outcomes: AutoCandidate[] = [];
  let best: { res: TrainDiffResult; score: number; method: TrainMethod } | undefined;
  let firstRefusal: unknown;
  let fullWeights = rest.fullWeights;
  for (const method of candidates) {
    restore();
    const t0 = performance.now();
    try {
      const res = await trainDiff(model, data, { ...rest, base, method, refuseWorseOnEval: false, ...(fullWeights ? { fullWeights } : {}) });
      // Without a teacher, lowbit and topk-retrain start from the same full fine-tune: train it once.
      if (!rest.teacher && res.fullWeights) fullWeights ??= res.fullWeights;
      const { score, text } = scoreOf(res);
      const outcome: AutoCandidate = { method, bytes: res.bytes.length, score, scoreText: text, seconds: (performance.now() - t0) / 1000 };
      outcomes.push(outcome);
      onCandidate?.(outcome);
      if (!best || score > best.score || (score === best.score && res.bytes.length < best.res.bytes.length)) best = { res, score, method };
    } catch (e) {
      if (!(e instanceof NoImprovementError || e instanceof BudgetError)) throw e;
      firstRefusal ??= e;
      const outcome: AutoCandidate = { method, seconds: (performance.now() - t0) / 1000, refused: (e as Error).message };
      outcomes.push(outcome);
      onCandidate?.(outcome);
    }
  }
  if (!best) throw firstRefusal;
  if (rest.refuseWorseOnEval !== false) refuseWorseOnEval(best.res, rest.allowWorse);
  setModelWeights(model, (n) => best.res.targetValues.get(n) ?? (baseNames.has(n) ? base.values(n) : undefined));
  // The run's time is every candidate's, refused ones included: what choosing by validation cost.
  const trainSeconds = outcomes.reduce((t, c) => t + c.seconds, 0);
  return { ...best.res, trainSeconds, auto: { chosen: best.method, candidates: outcomes } };
}
