/**
 * `--method auto` by successive halving (`autoSearch: 'halving'`, the default): every candidate
 * method starts its own training as `--method M` alone runs it; after a first round of
 * {@link halvingFirstRound} epochs each, the worse half (rounded up) is dropped by the validation
 * score auto chooses by (accuracy, agreement with the teacher, or minus the mean |output −
 * teacher|: the best checkpoint of the candidate's own payload so far); the survivors are
 * continued from where they stopped for twice as many epochs, and so on until one remains, which
 * finishes its training. Nothing is restarted, so the winner's run is the one `--method M` alone
 * makes: same seed, same payload bytes.
 *
 * How a run is cut into rounds: it is not. Each candidate's run is planned for its full length
 * (the epochs asked, its learning-rate trials, a sparse mask's temperature annealed over all its
 * soft epochs) and only suspended between two epochs (src/train/loop.ts `trainEpochs`, awaited
 * through `TrainDiffOptions.pause`); the model's weights are saved when it stops and put back when
 * it goes on, everything else (optimizer, mask logits, adapters, schedules, the epoch counter, the
 * batch order's random stream) stays in the suspended run. A candidate stops only once it has a
 * checkpoint of its own payload to be judged by: one still in the full fine-tune it starts from
 * (lowbit and topk-retrain without a teacher) or in a sparse mask's soft phase runs on past the
 * round's epochs until its first checkpoint.
 *
 * Epochs are counted as the runs report them: a learning-rate trial's epoch (on half the data) is
 * one. Cost: the candidates' runs are alive together (round one: all of them), so their training
 * state (optimizer moments, masks, adapters, worker threads) is held at once.
 */
import type * as tf from '@tensorflow/tfjs';
import { BudgetError, NoImprovementError } from '../core/errors.ts';
import { namedVariables, setModelWeights } from '../engine/model-weights.ts';
import type { WeightStore } from '../core/weight-store.ts';
import type { InputData, LabelledData } from './data.ts';
import type { TrainMethod } from './methods.ts';
import type { TrainDiffOptions, TrainDiffResult } from './options.ts';
import { selectTrainable } from './select.ts';
import { trainDiff } from './train-diff.ts';

/** One candidate's figure at the end of a round. */
export interface HalvingFigure {
  method: TrainMethod;
  /** Epochs it has run so far (its learning-rate trials' included). */
  epochs: number;
  /** Its validation score so far (higher is better); absent before its first checkpoint or when refused. */
  score?: number;
  scoreText?: string;
  /** Whether its training had ended by then. */
  finished: boolean;
  /** Why it has no result (below the base on validation, no room in the budget). */
  refused?: string;
  /** Dropped at the end of this round. */
  dropped?: boolean;
}

/** One round of the search: the epochs each candidate was given (cumulative; `null`: to its end) and where each stood. */
export interface HalvingRound {
  round: number;
  epochs: number | null;
  figures: HalvingFigure[];
}

/** A candidate's run as the search holds it. */
export interface HalvingLane {
  method: TrainMethod;
  /** Epochs run so far. */
  epochs: number;
  /** Seconds spent on it so far (its share of the search's time). */
  seconds: number;
  best?: { score: number; scoreText: string; bytes: number };
  result?: TrainDiffResult;
  refused?: Error;
  dropped?: boolean;
}

/** The search's outcome: the lanes (the winner's holds its result) and the rounds. */
export interface HalvingOutcome {
  lanes: HalvingLane[];
  rounds: HalvingRound[];
  /** The last candidate standing that finished with a result (none when every one was refused). */
  winner?: HalvingLane;
}

/** Thrown into a dropped candidate's suspended run to end it (its resources freed on the way out). */
class CandidateDropped extends Error {
  constructor(readonly method: TrainMethod) {
    super(`${method} was dropped by the halving search`);
  }
}

/** Epochs every candidate gets in the first round: half the epochs asked (at least 1), doubling each round. */
export function halvingFirstRound(epochs: number): number {
  return Math.max(1, Math.ceil(epochs / 2));
}

/** How many of `n` candidates go on to the next round: the better half, rounded down (at least one). */
export function halvingKeeps(n: number): number {
  return Math.max(1, Math.floor(n / 2));
}

/** Internal state of a lane besides what is reported. */
interface Running extends HalvingLane {
  target: number;
  run?: Promise<void>;
  snapshot?: Map<string, Float32Array>;
  /** Resolved when the run stops (suspended or ended). */
  stopped?: () => void;
  resume?: () => void;
  drop?: (e: Error) => void;
  /** An error other than a refusal ended the run (thrown by the search). */
  failed?: boolean;
}

/**
 * Run the search over `methods` with `options` (each candidate's options as `trainDiff` takes
 * them, `refuseWorseOnEval` off), the model holding the base (`base`). Refusals are recorded on
 * their lane; any other error ends every run and is thrown. The model ends holding the winner's
 * weights, or the base when there is none.
 */
export async function halvingSearch(
  model: tf.LayersModel,
  data: LabelledData | InputData,
  methods: readonly TrainMethod[],
  options: Omit<TrainDiffOptions, 'method'> & { base: WeightStore },
  onRound?: (r: HalvingRound) => void,
): Promise<HalvingOutcome> {
  const base = options.base;
  const baseNames = new Set(base.list().map((t) => t.name));
  const restoreBase = () => setModelWeights(model, (n) => (baseNames.has(n) ? base.values(n) : undefined));
  const snapshot = () => new Map(namedVariables(model).map((v) => [v.name, Float32Array.from(v.variable.dataSync() as Float32Array)]));
  // The weights to train are flagged once for the whole search: each run flags them again and puts
  // the flags back as it found them, which, interleaved, must not be their state before the search.
  const selection = selectTrainable(model, options.trainable ?? 'config');
  const lanes: Running[] = methods.map((method) => ({ method, epochs: 0, seconds: 0, target: 0 }));
  const isSuspended = (l: Running) => l.run !== undefined && !l.result && !l.refused && !l.dropped && !l.failed;

  /** Run `lane` until it has `target` epochs and a checkpoint (then suspended), or to its end. */
  const advance = async (lane: Running, target: number): Promise<void> => {
    lane.target = target;
    if (lane.result || lane.refused) return;
    const t0 = performance.now();
    await new Promise<void>((stopped) => {
      lane.stopped = stopped;
      if (lane.run) {
        setModelWeights(model, lane.snapshot as Map<string, Float32Array>);
        (lane.resume as () => void)();
        return;
      }
      restoreBase();
      const pause = async (at: { best?: HalvingLane['best'] }): Promise<void> => {
        lane.epochs++;
        if (at.best) lane.best = at.best;
        if (lane.epochs < lane.target || !at.best) return;
        await new Promise<void>((resume, drop) => {
          lane.resume = resume;
          lane.drop = drop;
          (lane.stopped as () => void)();
        });
      };
      lane.run = trainDiff(model, data, { ...options, method: lane.method, refuseWorseOnEval: false, pause }).then(
        (res) => {
          lane.result = res;
        },
        (e: unknown) => {
          if (e instanceof CandidateDropped) lane.dropped = true;
          else if (e instanceof NoImprovementError || e instanceof BudgetError) lane.refused = e;
          else {
            lane.failed = true;
            throw e;
          }
        },
      ).finally(() => (lane.stopped as () => void)());
      // An error other than a refusal settles the run rejected: awaited (and thrown) below.
      lane.run.catch(() => {});
    });
    lane.seconds += (performance.now() - t0) / 1000;
    if (isSuspended(lane)) lane.snapshot = snapshot();
    else await lane.run; // ended: rethrows an error that is no refusal
  };
  /** End a suspended run (its resources freed as it unwinds). */
  const drop = async (lane: Running): Promise<void> => {
    lane.dropped = true;
    lane.snapshot = undefined;
    if (!lane.drop || lane.result || lane.refused) return;
    lane.drop(new CandidateDropped(lane.method));
    await lane.run?.catch(() => {});
  };

  const rounds: HalvingRound[] = [];
  try {
    let alive: Running[] = [...lanes];
    for (let round = 1, epochs = halvingFirstRound(options.epochs); alive.length; round++, epochs *= 2) {
      const last = alive.length === 1;
      for (const lane of alive) await advance(lane, last ? Infinity : epochs);
      const standing = alive.filter((l) => !l.refused);
      // Ranked by score (a finished run by its result's), ties to the earlier candidate.
      const ranked = [...standing].sort((a, b) => scoreOfLane(b) - scoreOfLane(a) || bytesOfLane(a) - bytesOfLane(b) || lanes.indexOf(a) - lanes.indexOf(b));
      const kept = last ? ranked : ranked.slice(0, halvingKeeps(ranked.length));
      const leaving = ranked.filter((l) => !kept.includes(l));
      const r: HalvingRound = {
        round, epochs: last ? null : epochs,
        figures: alive.map((l) => ({
          method: l.method, epochs: l.epochs, ...(l.result ? { score: scoreOf(l.result).score, scoreText: scoreOf(l.result).text } : l.best ? { score: l.best.score, scoreText: l.best.scoreText } : {}), finished: l.result !== undefined || l.refused !== undefined,
          ...(l.refused ? { refused: l.refused.message } : {}), ...(leaving.includes(l) ? { dropped: true } : {}),
        })),
      };
      rounds.push(r);
      onRound?.(r);
      for (const l of leaving) await drop(l);
      if (last) break;
      alive = lanes.filter((l) => kept.includes(l));
    }
  } finally {
    // An error ended the search: the runs still suspended are ended too.
    for (const l of lanes) if (isSuspended(l)) await drop(l);
    selection.restore();
  }
  const winner = lanes.find((l) => l.result && !l.dropped);
  if (winner) setModelWeights(model, (n) => (winner.result as TrainDiffResult).targetValues.get(n) ?? (baseNames.has(n) ? base.values(n) : undefined));
  else restoreBase();
  return { lanes: lanes.map(({ method, epochs, seconds, best, result, refused, dropped }) => ({ method, epochs, seconds, ...(best ? { best } : {}), ...(result ? { result } : {}), ...(refused ? { refused } : {}), ...(dropped ? { dropped } : {}) })), rounds, ...(winner ? { winner } : {}) };
}

/**
 * The validation score auto chooses by, higher is better: agreement with the teacher or minus
 * its mean absolute output difference, else accuracy; with how it reads.
 */
export function scoreOf(res: TrainDiffResult): { score: number; text: string } {
  const t = res.teacher?.validation;
  if (res.teacher && t) {
    return res.teacher.metric === 'top1'
      ? { score: t.agreement, text: `agreement with the teacher ${(100 * t.agreement).toFixed(2)}%` }
      : { score: -t.meanAbsDiff, text: `mean |output − teacher| ${t.meanAbsDiff.toPrecision(4)}` };
  }
  const acc = res.validation?.accuracy ?? NaN;
  return { score: acc, text: `accuracy ${(100 * acc).toFixed(2)}%` };
}

/** A lane's score for ranking: its result's when it finished, else its best checkpoint's (none: lowest). */
function scoreOfLane(l: HalvingLane): number {
  const s = l.result ? scoreOf(l.result).score : l.best?.score;
  return s === undefined || Number.isNaN(s) ? -Infinity : s;
}

/** A lane's payload bytes (a tie in score goes to the smaller). */
function bytesOfLane(l: HalvingLane): number {
  return l.result ? l.result.bytes.length : (l.best?.bytes ?? Infinity);
}
