/**
 * The quality target of `budget: 'auto'` (`--budget auto`): what a payload must keep on the
 * `eval` inputs, and the grid of budgets searched for the smallest that keeps it. One of
 * `minAgreement` (top-1 agreement with the target version), `maxMeanAbsDiff` (mean |output −
 * target| for value outputs) or `maxAccuracyDrop` (accuracy within N points of the target's own,
 * on labelled inputs). Shared by `diff()` and `train()`; pure, no tfjs.
 */
import { UsageError } from '../core/errors.ts';
import { parseBudget } from '../diff/budget.ts';
import type { PayloadCloseness } from '../diff/closeness.ts';

/** The default of `keyframeBelow` in `release.add`: the least top-1 agreement with the version a lossy chain may drift to. */
export const DEFAULT_KEYFRAME_BELOW = 0.98;

/** The budgets `budget: 'auto'` tries, ascending, unless `budgetGrid` says otherwise: shares of the full model's size as stored. */
export const DEFAULT_BUDGET_GRID: readonly string[] = ['0.5%', '1%', '2%', '5%', '10%', '20%'];

/** The options that state a quality target, as `diff()` and `train()` take them. */
export interface QualityTargetOptions {
  /** With `budget: 'auto'`: the smallest share of `eval` inputs on which base + payload predicts what the target predicts (top-1), in (0, 1]. */
  minAgreement?: number;
  /** With `budget: 'auto'`: the largest mean |output − target| over the `eval` inputs' outputs (value outputs). */
  maxMeanAbsDiff?: number;
  /** With `budget: 'auto'`: the most accuracy points (0-100) base + payload may fall below the target's own accuracy on labelled `eval` inputs. */
  maxAccuracyDrop?: number;
  /** With `budget: 'auto'`: the budgets tried, ascending (default `0.5%, 1%, 2%, 5%, 10%, 20%` of the model as stored); an array or a comma-separated list (`1%,2%,40KB`). */
  budgetGrid?: string | readonly (string | number)[];
}

/** Which target, and its value. */
export interface QualityTarget {
  option: 'minAgreement' | 'maxMeanAbsDiff' | 'maxAccuracyDrop';
  value: number;
}

const FLAGS: Record<QualityTarget['option'], string> = {
  minAgreement: 'minAgreement (--min-agreement)',
  maxMeanAbsDiff: 'maxMeanAbsDiff (--max-mean-abs-diff)',
  maxAccuracyDrop: 'maxAccuracyDrop (--max-accuracy-drop)',
};

/** True for `budget: 'auto'`. */
export const isAutoBudget = (budget: string | number | undefined): boolean => typeof budget === 'string' && budget.trim().toLowerCase() === 'auto';

/**
 * The target and grid of `budget: 'auto'`, checked (undefined for any other budget, where none of
 * the target options may be given). Throws a UsageError for a missing or second target, a value
 * out of range, a grid entry that is not a budget, or no `eval` inputs to measure on.
 */
export function qualityTargetOf(o: QualityTargetOptions & { budget?: string | number; eval?: string }): { target: QualityTarget; grid: string[] } | undefined {
  const given = (Object.keys(FLAGS) as QualityTarget['option'][]).filter((k) => o[k] !== undefined);
  if (!isAutoBudget(o.budget)) {
    const extra = [...given.map((k) => FLAGS[k]), ...(o.budgetGrid !== undefined ? ['budgetGrid (--budget-grid)'] : [])];
    if (extra.length) throw new UsageError(`${extra.join(', ')} ${extra.length === 1 ? 'is' : 'are'} for budget auto (--budget auto), which searches for the smallest budget meeting a quality target; this run's budget is ${JSON.stringify(String(o.budget))}: add --budget auto, or leave ${extra.length === 1 ? 'it' : 'them'} out`);
    return undefined;
  }
  if (given.length === 0) throw new UsageError('budget auto (--budget auto) searches for the smallest budget whose payload meets a quality target on the eval (--eval) inputs, and none was given: add one of minAgreement (--min-agreement 0.99), maxMeanAbsDiff (--max-mean-abs-diff X) or maxAccuracyDrop (--max-accuracy-drop N)');
  if (given.length > 1) throw new UsageError(`budget auto (--budget auto) takes exactly one quality target; found ${given.map((k) => FLAGS[k]).join(' and ')}: keep one`);
  const option = given[0];
  const value = o[option] as number;
  const ok = typeof value === 'number' && Number.isFinite(value) && (option === 'minAgreement' ? value > 0 && value <= 1 : option === 'maxAccuracyDrop' ? value >= 0 && value <= 100 : value >= 0);
  if (!ok) throw new UsageError(`${FLAGS[option]} must be ${option === 'minAgreement' ? 'a share in (0, 1], e.g. 0.99' : option === 'maxAccuracyDrop' ? 'accuracy points in [0, 100], e.g. 1' : 'a mean absolute difference of 0 or more, e.g. 0.01'}; found ${JSON.stringify(value)}`);
  if (!o.eval) throw new UsageError(`budget auto (--budget auto) measures each payload on inputs against its ${FLAGS[option].split(' ')[0]} target: add eval (--eval DATA), inputs from where the model runs${option === 'maxAccuracyDrop' ? ' with their labels (y.npy beside x.npy)' : ''}`);
  return { target: { option, value }, grid: budgetGridOf(o.budgetGrid) };
}

/** The grid's entries, checked as budgets and put in ascending order of bytes (duplicates dropped). */
function budgetGridOf(g: QualityTargetOptions['budgetGrid']): string[] {
  if (g === undefined) return [...DEFAULT_BUDGET_GRID];
  const entries = (typeof g === 'string' ? g.split(',') : Array.isArray(g) ? g : [g]).map((e) => String(e).trim()).filter((e) => e !== '');
  if (entries.length === 0) throw new UsageError(`budgetGrid (--budget-grid) is empty: give budgets separated by commas, e.g. 1%,2%,5%`);
  // Percentages against a nominal size order them among byte counts only approximately: sorted
  // again against the model's own size by orderedGrid once it is known.
  for (const e of entries) {
    if (/^(all|auto)$/i.test(e)) throw new UsageError(`budgetGrid (--budget-grid) entry ${JSON.stringify(e)} is not a byte budget: give sizes such as 1%, 40KB or 40000 (the exact payload is the search's own last resort)`);
    try {
      parseBudget(e, 1e9);
    } catch (err) {
      throw new UsageError(`budgetGrid (--budget-grid) entry ${JSON.stringify(e)}: ${(err as Error).message}`);
    }
  }
  return entries;
}

/** The grid in ascending order of bytes for a model of `modelBytes`, each budget once (the first spelling kept). */
export function orderedGrid(grid: readonly string[], modelBytes: number): { budget: string; budgetBytes: number }[] {
  const seen = new Set<number>();
  return grid
    .map((budget, i) => ({ budget, budgetBytes: parseBudget(budget, modelBytes), i }))
    .sort((a, b) => a.budgetBytes - b.budgetBytes || a.i - b.i)
    .filter((e) => (seen.has(e.budgetBytes) ? false : (seen.add(e.budgetBytes), true)))
    .map(({ budget, budgetBytes }) => ({ budget, budgetBytes }));
}

/** The target in words: `top-1 agreement ≥ 99.00%`. */
export function targetText(t: QualityTarget): string {
  if (t.option === 'minAgreement') return `top-1 agreement with the target ≥ ${(100 * t.value).toFixed(2)}%`;
  if (t.option === 'maxMeanAbsDiff') return `mean |output − target| ≤ ${t.value.toPrecision(3)}`;
  return `accuracy within ${t.value} point${t.value === 1 ? '' : 's'} of the target's`;
}

/** A measured figure in the target's words: `99.20%`, `0.00412`, `0.50 points below`. */
export function figureText(t: QualityTarget, figure: number): string {
  if (t.option === 'minAgreement') return `agreement ${(100 * figure).toFixed(2)}%`;
  if (t.option === 'maxMeanAbsDiff') return `mean |output − target| ${figure.toPrecision(3)}`;
  return `${figure.toFixed(2)} accuracy points below the target`;
}

/**
 * The figure the target reads from a measurement, and whether it meets the target. Throws a
 * UsageError when the measurement cannot say (agreement on value outputs, accuracy without labels).
 */
export function targetFigure(t: QualityTarget, m: PayloadCloseness): { figure: number; meets: boolean } {
  // Shares are counts over the examples: a tolerance far below one example's worth keeps 0.99 of 200 at 0.99.
  const eps = 1e-9;
  if (t.option === 'minAgreement') {
    if (m.metric !== 'top1' || Number.isNaN(m.patched.agreement)) throw new UsageError('minAgreement (--min-agreement) counts the inputs on which base + payload predicts the class the target predicts, and these outputs are values, not classes: state the target as maxMeanAbsDiff (--max-mean-abs-diff X), or with labels maxAccuracyDrop (--max-accuracy-drop N)');
    return { figure: m.patched.agreement, meets: m.patched.agreement >= t.value - eps };
  }
  if (t.option === 'maxMeanAbsDiff') return { figure: m.patched.meanAbsDiff, meets: m.patched.meanAbsDiff <= t.value + eps };
  if (m.accuracyAfter === undefined || m.accuracyTarget === undefined) throw new UsageError('maxAccuracyDrop (--max-accuracy-drop) compares accuracy with the target\'s own on labelled inputs, and these eval (--eval) inputs have no labels (or this kind of model reports none): add y.npy beside x.npy, or state the target as minAgreement (--min-agreement) or maxMeanAbsDiff (--max-mean-abs-diff)');
  const drop = 100 * (m.accuracyTarget - m.accuracyAfter);
  return { figure: drop, meets: drop <= t.value + eps };
}
