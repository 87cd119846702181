/** How a report names and colours its rows: methods, teacher rows, budgets, figures. */
import type { ReportMethod, ReportRow } from './results.ts';

/** One colour per method; a teacher row keeps its method's colour (dashed line, square marker). */
export const METHOD_COLORS: Record<ReportMethod, string> = {
  sparse: '#1f77b4',
  hash: '#ff7f0e',
  lora: '#e377c2',
  'sparse-lora': '#bcbd22',
  'topk-retrain': '#17becf',
  lowbit: '#aa3377',
  auto: '#000000',
  topk: '#2ca02c',
  drop: '#9467bd',
  lowrank: '#8c564b',
  full: '#d62728',
  exact: '#393b79',
  zstd: '#7f7f7f',
  ongrid: '#e6550d',
};

/** What each method is, for legends. */
export const METHOD_LABELS: Record<ReportMethod, string> = {
  sparse: 'sparse (learned)',
  hash: 'hash (learned)',
  lora: 'LoRA (low-rank adapters)',
  'sparse-lora': 'sparse + LoRA (composite)',
  'topk-retrain': 'top-k mask, retrained (LT-SFT)',
  lowbit: 'low-bit delta (1-8 bits a value)',
  auto: 'auto (the best candidate on validation)',
  topk: 'top-k of full FT',
  drop: 'drop & rescale of full FT',
  lowrank: 'low-rank of full FT',
  full: 'full fine-tuning',
  exact: 'exact diff (every change)',
  zstd: 'zstd --patch-from',
  ongrid: 'GGUF blocks on the grid (each block old or new)',
};

/** Methods that learn the diff (or train the whole model): the charts' y-axis is fitted to them. */
export const LEARNED_METHODS: ReadonlySet<ReportMethod> = new Set(['sparse', 'hash', 'lora', 'sparse-lora', 'topk-retrain', 'lowbit', 'auto', 'full', 'exact', 'zstd']);

/**
 * A row's method as tables name it: `sparse`, `sparse (teacher)` for a row trained toward a
 * teacher, `lowbit (post hoc)` for a payload `ndiff diff` made from the new version's weights.
 */
export function methodName(method: ReportMethod, teacher: boolean | undefined, postHoc?: boolean): string {
  return postHoc ? `${method} (post hoc)` : teacher ? `${method} (teacher)` : method;
}

/** A series' name in a legend. */
export function seriesName(method: ReportMethod, teacher: boolean | undefined, postHoc?: boolean): string {
  const name = method === 'topk' ? 'top-k' : method;
  return postHoc ? `${name} (post hoc)` : teacher ? `${name} (teacher)` : METHOD_LABELS[method];
}

/** The budget as it was asked for (`1%`, `40KB`), or `-` for rows without one (full, zstd). */
export function budgetLabel(r: Pick<ReportRow, 'budget' | 'budgetPct'>): string {
  if (typeof r.budget === 'string' && r.budget) return r.budget;
  return r.budgetPct === null ? '-' : `${r.budgetPct}%`;
}

/** A row's method and budget in a sentence: `sparse at 1%`, `full fine-tuning`. */
export function settingName(method: ReportMethod, teacher: boolean | undefined, budget: string, postHoc?: boolean): string {
  return budget === '-' ? (teacher || postHoc ? methodName(method, teacher, postHoc) : METHOD_LABELS[method]) : `${methodName(method, teacher, postHoc)} at ${budget}`;
}

/** 0.8735 -> `87.35%`; `-` when not measured. */
export const pct = (x: number | null | undefined): string => (typeof x === 'number' ? `${(100 * x).toFixed(2)}%` : '-');
/** A difference of two shares in points, signed: `+0.50`, `-1.62`. */
export const signedPoints = (x: number | null | undefined): string => (typeof x === 'number' ? `${x >= 0 ? '+' : '-'}${Math.abs(100 * x).toFixed(2)}` : '-');
/** A share in points, unsigned: `1.57`. */
export const points = (x: number | null | undefined): string => (typeof x === 'number' ? (100 * x).toFixed(2) : '-');

/** Human bytes: 950 B, 12 KB, 3.4 MB. */
export function shortBytes(v: number): string {
  if (v < 1000) return `${Math.round(v)} B`;
  if (v < 1e6) return `${+(v / 1e3).toPrecision(3)} KB`;
  return `${+(v / 1e6).toPrecision(3)} MB`;
}
