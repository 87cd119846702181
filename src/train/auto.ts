/**
 * `ndiff train --method auto`: choose the candidate method that carries the update best on
 * validation and ship its payload. Which method carries an update best depends on the update (a
 * few large changes: a sparse mask; a fine-tune that moved every weight a little: low-bit deltas;
 * a change of low rank: LoRA), so the validation set decides, as it decides learning rates and
 * checkpoints.
 *
 * Two searches (`autoSearch`):
 * - `halving` (default): successive halving (src/train/auto-halving.ts): every candidate starts,
 *   the worse half is dropped after each round, the survivors go on from where they stopped; the
 *   last one finishes, and its run is the one `--method M` alone makes (same payload bytes).
 * - `exhaustive`: every candidate trained to its end (each tuned as `tune` says), the best on
 *   validation shipped; the methods that start from a full fine-tune (lowbit, topk-retrain) share
 *   one when there is no teacher. What halving is checked against.
 *
 * The winner is chosen on the same validation split every candidate chose its checkpoints on, so
 * its validation figure is slightly optimistic; `eval` data measures it apart.
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
import { halvingSearch, scoreOf, type HalvingLane, type HalvingRound } from './auto-halving.ts';

export type { HalvingFigure, HalvingRound } from './auto-halving.ts';

/** How `auto` searches: successive halving on validation (default), or every candidate trained to its end. */
export type AutoSearch = 'halving' | 'exhaustive';
/** The searches `autoSearch` takes. */
export const AUTO_SEARCHES: readonly AutoSearch[] = ['halving', 'exhaustive'];

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
  /** Epochs it ran (halving; its learning-rate trials' included). */
  epochs?: number;
  /** Halving: the round after which it was dropped (its score then is its best so far, not a finished run's). */
  droppedAfterRound?: number;
}

export interface AutoResult extends TrainDiffResult {
  auto: {
    chosen: TrainMethod;
    candidates: AutoCandidate[];
    search: AutoSearch;
    /** Halving: each round's epochs and every candidate's figure at its end. */
    rounds?: HalvingRound[];
    /**
     * Halving: what the exhaustive search would have taken, estimated: each candidate that ended
     * (finished or refused) its own seconds; each dropped one as long as the winner took, or what
     * it had already spent when that is more (the candidates' full runs cost about the same: one
     * tuned training each).
     */
    exhaustiveSecondsEstimate?: number;
  };
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
  options: Omit<TrainDiffOptions, 'method'> & { candidates?: readonly TrainMethod[]; autoSearch?: AutoSearch },
  onCandidate?: (c: AutoCandidate) => void,
): Promise<AutoResult> {
  checkTrainingRun(options);
  if (options.validation === 0) throw new UsageError('--method auto chooses on validation: give a validation split (--val-fraction above 0, or --val DATA)');
  const { candidates = AUTO_CANDIDATES, autoSearch = 'halving', ...rest } = options;
  if (!AUTO_SEARCHES.includes(autoSearch)) throw new UsageError(`autoSearch (--auto-search) must be ${AUTO_SEARCHES.join(' or ')}, found ${JSON.stringify(autoSearch)}`);
  if (candidates.includes('full')) throw new UsageError('--method auto compares diffs within the budget; full fine-tuning has no budget: leave it out of the candidates');
  const base = rest.base ?? modelToStore(model);
  if (autoSearch === 'halving') return trainHalving(model, data, candidates, { ...rest, base }, onCandidate);
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
  return { ...best.res, trainSeconds, auto: { chosen: best.method, candidates: outcomes, search: 'exhaustive' } };
}

/**
 * `autoSearch: 'halving'` (src/train/auto-halving.ts). When the last candidate standing is refused
 * at its end (below the base on validation), the dropped ones are trained from their start, best
 * score first, until one has a result (the exhaustive search would have shipped one of them).
 */
async function trainHalving(
  model: tf.LayersModel,
  data: LabelledData | InputData,
  candidates: readonly TrainMethod[],
  options: Omit<TrainDiffOptions, 'method'> & { base: NonNullable<TrainDiffOptions['base']> },
  onCandidate?: (c: AutoCandidate) => void,
): Promise<AutoResult> {
  const search = await halvingSearch(model, data, candidates, options);
  const outcomeOf = (l: HalvingLane): AutoCandidate => {
    const dropped = l.dropped ? search.rounds.filter((r) => r.figures.some((f) => f.method === l.method && f.dropped)).pop()?.round : undefined;
    const figure = l.result ? scoreOf(l.result) : l.best ? { score: l.best.score, text: l.best.scoreText } : undefined;
    return {
      method: l.method, seconds: l.seconds, epochs: l.epochs,
      ...(l.refused ? { refused: l.refused.message } : figure ? { score: figure.score, scoreText: figure.text, bytes: l.result ? l.result.bytes.length : l.best?.bytes } : {}),
      ...(dropped !== undefined ? { droppedAfterRound: dropped } : {}),
    };
  };
  const outcomes = search.lanes.map(outcomeOf);
  let winner: { method: TrainMethod; res: TrainDiffResult; seconds: number; epochs: number } | undefined = search.winner?.result ? { method: search.winner.method, res: search.winner.result, seconds: search.winner.seconds, epochs: search.winner.epochs } : undefined;
  const baseNames = new Set(options.base.list().map((t) => t.name));
  // The last one standing refused: the dropped ones from their start, best score first.
  let firstRefusal: unknown = search.lanes.find((l) => l.refused)?.refused;
  const fallbacks = search.lanes.filter((l) => l.dropped && !l.refused).sort((a, b) => (b.best?.score ?? -Infinity) - (a.best?.score ?? -Infinity));
  for (const l of winner ? [] : fallbacks) {
    setModelWeights(model, (n) => (baseNames.has(n) ? options.base.values(n) : undefined));
    const t0 = performance.now();
    let epochs = 0;
    try {
      const res = await trainDiff(model, data, { ...options, method: l.method, refuseWorseOnEval: false, onEpoch: (r) => { epochs++; options.onEpoch?.(r); } });
      winner = { method: l.method, res, seconds: (performance.now() - t0) / 1000, epochs };
    } catch (e) {
      if (!(e instanceof NoImprovementError || e instanceof BudgetError)) throw e;
      firstRefusal ??= e;
    }
    const o = outcomes[search.lanes.indexOf(l)];
    o.seconds += (performance.now() - t0) / 1000;
    if (winner) {
      const { score, text } = scoreOf(winner.res);
      Object.assign(o, { score, scoreText: text, bytes: winner.res.bytes.length, epochs: (o.epochs ?? 0) + epochs });
      break;
    }
  }
  for (const o of outcomes) onCandidate?.(o);
  if (!winner) throw firstRefusal;
  const chosen = winner;
  if (options.refuseWorseOnEval !== false) refuseWorseOnEval(chosen.res, options.allowWorse);
  setModelWeights(model, (n) => chosen.res.targetValues.get(n) ?? (baseNames.has(n) ? options.base.values(n) : undefined));
  const trainSeconds = outcomes.reduce((t, c) => t + c.seconds, 0);
  const exhaustiveSecondsEstimate = search.lanes.reduce((t, l) => t + (l.result || l.refused ? l.seconds : Math.max(l.seconds, chosen.seconds)), 0);
  return { ...chosen.res, trainSeconds, auto: { chosen: chosen.method, candidates: outcomes, search: 'halving', rounds: search.rounds, exhaustiveSecondsEstimate } };
}
