/**
 * The learning-rate search of a training run (`TrainDiffOptions.tune`): `quick` tries three rates
 * on half the data, the start, a third of it, then a ninth if the third won or three times the
 * start if not, and trains the best on all of it; `thorough` trains five rates on all of it; `off`
 * trains one. A search whose every run diverged or collapsed is retried below the lowest rate.
 */
import { NoImprovementError, UsageError } from '../core/errors.ts';
import { pick, stratifiedSplit, type LabelledData } from './data.ts';
import { better, type Checkpoint } from './checkpoint.ts';
import type { TuneMode, TuningCandidate } from './options.ts';

/** One run at a learning rate on some data: its best checkpoint, or none (diverged before any). */
export type RunAt = (lr: number, data: LabelledData, kind: TuningCandidate['kind']) => Promise<Checkpoint | undefined>;

/** What a search needs besides the run itself. */
export interface SearchContext {
  mode: TuneMode;
  /** What is tuned, for messages (`sparse`, `full`, ...). */
  what: string;
  /** The rate to start from. */
  lr0: number;
  trainData: LabelledData;
  seed: number;
  /** Every run so far (this search appends through `run`); the search reads its own. */
  candidates: readonly TuningCandidate[];
  /** Datasets the search made (disposed by the caller). */
  owned: LabelledData[];
  progress: (m: string) => void;
}

/**
 * Refuse a learning rate that cannot train: 0 learns nothing, a negative rate climbs the loss,
 * NaN or Infinity ruins the weights. Every trainer calls it first, before reading a model or data
 * (`undefined`: the method's default).
 * @throws UsageError naming `learningRate`.
 */
export function checkLearningRate(lr: number | undefined): void {
  if (lr === undefined || (typeof lr === 'number' && lr > 0 && Number.isFinite(lr))) return;
  throw new UsageError(`learningRate must be a number above 0, e.g. 1e-3, found ${typeof lr === 'number' ? lr : JSON.stringify(lr)}: pass one, or leave it out for the method's default`);
}

/**
 * The checks every trainer runs first, before reading a model or data: the learning rate
 * ({@link checkLearningRate}) and the epochs, a whole number of at least 1 (0, a fraction or NaN
 * trained one epoch, part of one or none, and a run of none still returned a payload).
 * @throws UsageError naming `learningRate` or `epochs`.
 */
export function checkTrainingRun(o: { learningRate?: number; epochs: number }): void {
  checkLearningRate(o.learningRate);
  if (typeof o.epochs === 'number' && Number.isInteger(o.epochs) && o.epochs >= 1) return;
  throw new UsageError(`epochs must be a whole number of at least 1 (passes over the training data), found ${typeof o.epochs === 'number' ? o.epochs : JSON.stringify(o.epochs) ?? 'nothing'}: pass one, e.g. 10`);
}

/**
 * Tune the learning rate (see the module doc); the best checkpoint over every run. The rate is
 * checked before any run (a bad one throws here, not in the promise).
 */
export function searchLearningRate(run: RunAt, c: SearchContext): Promise<Checkpoint> {
  checkLearningRate(c.lr0);
  return search(run, c);
}

async function search(run: RunAt, c: SearchContext): Promise<Checkpoint> {
  const { lr0, trainData, candidates } = c;
  const firstCandidate = candidates.length;
  let best: Checkpoint | undefined;
  const offer = (k: Checkpoint | undefined) => {
    if (k && better(k, best)) best = k;
  };
  const ok = (k: Checkpoint | undefined) => k !== undefined && !k.collapsed;
  if (c.mode === 'off') {
    offer(await run(lr0, trainData, 'full'));
  } else if (c.mode === 'quick') {
    // Three rates on half the training data (seeded, stratified), then the best on all of
    // it: 1.5 runs of trials plus one. The rates bracket: the start and a third of it, then
    // a third lower again if the lower one won, else three times the start, so a best rate
    // below (or above) the start is found without a fourth trial.
    const { part } = stratifiedSplit(trainData.y, 0.5, c.seed ^ 0x7e57);
    const half = pick(trainData, part);
    c.owned.push(half);
    const trials: { lr: number; k: Checkpoint | undefined }[] = [];
    const trial = async (lr: number): Promise<void> => {
      const k = await run(lr, half, 'trial');
      trials.push({ lr, k });
      offer(k);
    };
    await trial(tidy(lr0));
    await trial(tidy(lr0 / 3));
    const [start, third] = trials;
    // Lower when the third won, or when the start diverged or collapsed.
    const lower = !ok(start.k) || (ok(third.k) && better(third.k as Checkpoint, start.k));
    await trial(tidy(lower ? lr0 / 9 : lr0 * 3));
    const winner = trials.filter((t) => ok(t.k)).sort((a, b) => (better(a.k as Checkpoint, b.k) ? -1 : 1))[0];
    if (winner) offer(await run(winner.lr, trainData, 'full'));
  } else {
    for (const lr of [lr0 * 10, lr0 * 3, lr0, lr0 / 3, lr0 / 10].map(tidy)) offer(await run(lr, trainData, 'full'));
  }
  // Recovery: every run diverged or collapsed; go below the lowest rate tried, 3x and then
  // 30x lower, until one does not.
  const lowest = Math.min(...candidates.slice(firstCandidate).map((k) => k.learningRate), lr0);
  for (let f = 3, tries = 0; !ok(best) && tries < 2; f *= 10, tries++) {
    const lr = tidy(lowest / f);
    c.progress(`no run gave a usable model (diverged or predicting one class): retrying at learning rate ${lr.toExponential(1)}`);
    offer(await run(lr, trainData, 'recovery'));
  }
  if (!best) {
    throw new NoImprovementError(
      `every ${c.what} run diverged (its loss became NaN or exploded) at learning rates ${candidates.map((k) => k.learningRate.toExponential(1)).join(', ')}: nothing was written; check the data (labels in range? inputs scaled as the model expects?) or pass a lower --lr`,
      { candidates },
    );
  }
  return best;
}

/** A learning rate without float noise (9e-3, not 0.009000000000000001). */
export function tidy(lr: number): number {
  return Number(lr.toPrecision(6));
}
