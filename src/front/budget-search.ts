/**
 * The search of `budget: 'auto'`: the grid's budgets in ascending order, at each the candidates
 * the command can make (post hoc first, then trained where the command trains), each measured on
 * the `eval` inputs; the first that meets the quality target (and is not further from the target
 * than not updating, the rule `--eval` refuses by) is the answer. Budgets at or above the exact
 * payload's size are not tried: the caller then writes the exact payload (or the full model).
 * Shared by `diff()` and `train()`.
 */
import { BudgetError, NoImprovementError } from '../core/errors.ts';
import { formatBytes } from '../diff/budget.ts';
import type { PayloadCloseness } from '../diff/closeness.ts';
import { lessCloseThanBase } from '../train/eval-noise.ts';
import type { Progress } from './progress.ts';
import { figureText, orderedGrid, targetFigure, targetText, type QualityTarget } from './quality-target.ts';

/** One payload made and measured during the search. */
export interface BudgetTry {
  budget: string;
  budgetBytes: number;
  /** `post hoc` (the change carried without training) or `trained`. */
  how: string;
  /** The payload's size (absent when none could be made at this budget). */
  bytes?: number;
  /** The measured figure the target reads (agreement share, mean |output − target|, or accuracy points below the target). */
  figure?: number;
  meets: boolean;
  seconds: number;
  /** Why it does not count, when it is not the figure: no payload fits, or further from the target than not updating. */
  note?: string;
  /** What the candidate reused from an earlier budget (a trained budget: the learning rate tuned at a smaller one). */
  detail?: string;
}

/** What `--json` carries of the search. */
export interface BudgetSearchReport {
  target: QualityTarget & { text: string };
  /** The grid as given, in ascending order of bytes. */
  grid: string[];
  tried: BudgetTry[];
  /** The budget written (`all` for the exact payload), or `full` for a full model's payload. */
  chosen: string;
  /** How the chosen payload was made (`post hoc`, `trained`, `exact`, `full`). */
  chosenHow: string;
  /** True when nothing below the exact payload's (or full model's) size met the target. */
  fallback: boolean;
  /** Grid budgets at or above `ceilingBytes`, not tried. */
  notTried: string[];
  /** The size no grid budget needs to reach: the exact payload's or the full model's. */
  ceilingBytes?: number;
  seconds: number;
}

/** A way to make a payload at a budget: its name, and the maker (which throws BudgetError when nothing fits, NoImprovementError when a training's result is refused). */
export interface BudgetCandidate<T> {
  how: string;
  make: (budget: string) => Promise<{ result: T; bytes: number; closeness: PayloadCloseness; detail?: string }>;
}

/**
 * Try the grid in ascending order; at each budget, each candidate in turn. Returns the first
 * result that meets the target, or none (the caller's fallback), with the search as reported.
 */
export async function searchBudget<T>(o: {
  target: QualityTarget;
  grid: readonly string[];
  modelBytes: number;
  /** Budgets at or above it are not tried (the exact payload's size). */
  ceilingBytes?: number;
  allowWorse: boolean;
  candidates: (budget: string) => BudgetCandidate<T>[];
  progress: Progress;
}): Promise<{ found?: { budget: string; how: string; result: T }; report: Omit<BudgetSearchReport, 'chosen' | 'chosenHow' | 'fallback'> }> {
  const t0 = performance.now();
  const grid = orderedGrid(o.grid, o.modelBytes);
  const tried: BudgetTry[] = [];
  const notTried: string[] = [];
  o.progress(`budget auto: the smallest of ${grid.map((g) => g.budget).join(', ')} whose payload meets ${targetText(o.target)} on the eval inputs`);
  let found: { budget: string; how: string; result: T } | undefined;
  for (const { budget, budgetBytes } of grid) {
    if (o.ceilingBytes !== undefined && budgetBytes >= o.ceilingBytes) {
      notTried.push(budget);
      continue;
    }
    for (const c of o.candidates(budget)) {
      const s0 = performance.now();
      let entry: BudgetTry;
      try {
        const made = await c.make(budget);
        const { figure, meets } = targetFigure(o.target, made.closeness);
        const worse = lessCloseThanBase(made.closeness) && !o.allowWorse;
        entry = { budget, budgetBytes, how: c.how, bytes: made.bytes, figure, meets: meets && !worse, seconds: (performance.now() - s0) / 1000, ...(meets && worse ? { note: 'further from the target than not updating (refused, as --eval refuses it)' } : {}), ...(made.detail ? { detail: made.detail } : {}) };
        if (entry.meets) found = { budget, how: c.how, result: made.result };
      } catch (e) {
        // No payload fits this budget, or a training's result was refused (below the base): not a candidate.
        if (!(e instanceof BudgetError) && !(e instanceof NoImprovementError)) throw e;
        entry = { budget, budgetBytes, how: c.how, meets: false, seconds: (performance.now() - s0) / 1000, note: e instanceof BudgetError ? `no payload fits: ${e.message.split(': ')[0]}` : 'refused: no better than the base (exit 10 alone)' };
      }
      tried.push(entry);
      o.progress(`budget auto: ${budgetTryText(o.target, entry)}`);
      if (found) break;
    }
    if (found) break;
  }
  if (notTried.length) o.progress(`budget auto: ${notTried.join(', ')} not tried: at or above the exact payload's ${formatBytes(o.ceilingBytes as number)}`);
  return { ...(found ? { found } : {}), report: { target: { ...o.target, text: targetText(o.target) }, grid: grid.map((g) => g.budget), tried, notTried, ...(o.ceilingBytes !== undefined ? { ceilingBytes: o.ceilingBytes } : {}), seconds: (performance.now() - t0) / 1000 } };
}

/** One tried budget in words: `2% (1.06 KB) post hoc: 1.02 KB, agreement 98.50%, in 0.41 s: below the target` (a trained one reusing a rate: `5% (2.6 KB) trained (learning rate 0.003 as tuned at 2%): ...`). */
export function budgetTryText(t: QualityTarget, e: BudgetTry): string {
  const what = e.bytes === undefined ? e.note : `${formatBytes(e.bytes)}, ${figureText(t, e.figure as number)}`;
  return `${e.budget} (${formatBytes(e.budgetBytes)}) ${e.how}${e.detail ? ` (${e.detail})` : ''}: ${what}, in ${e.seconds.toFixed(2)} s: ${e.meets ? 'meets the target' : e.bytes === undefined ? 'not a candidate' : e.note ?? 'below the target'}`;
}

/** The line saying what was written: the chosen budget, or the fallback and why. */
export function budgetChoiceText(r: BudgetSearchReport, exactWords = 'the exact payload (--budget all)'): string {
  if (!r.fallback) return `budget auto: ${r.chosen} chosen (${r.chosenHow}), the smallest of ${r.grid.join(', ')} whose payload meets ${r.target.text}`;
  return `budget auto: nothing below ${r.ceilingBytes === undefined ? 'the full size' : `the exact payload's ${formatBytes(r.ceilingBytes)}`} met ${r.target.text}: ${exactWords} written`;
}
