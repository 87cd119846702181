/**
 * What a report concludes from its rows, before any rendering: the measure payloads are compared
 * by (accuracy; or, for runs with a teacher and no labels, agreement with the teacher or how much
 * of the base's output distance to it they close), each update's base model and reference (the
 * teacher when there is one, else the best result), the per-budget summary across updates, and
 * the one recommendation: the smallest payload within a tolerance of the reference.
 */
import { budgetLabel, methodName, pct, points, settingName, shortBytes } from './labels.ts';
import { REPORT_METHODS, type ReportMethod, type ReportRow } from './results.ts';

/** How payloads are compared. */
export type Measure = 'accuracy' | 'agreement' | 'closeness';

/** Options of a report's conclusions. */
export interface ReportOptions {
  /** Points below the reference a payload may be and still count as good enough (default 1). */
  tolerance?: number;
  /**
   * The method whose row of each update is the teacher that update's teacher rows learned toward
   * (the keyword benchmark: `full`, the update's tuned full fine-tune). Without it, the teacher
   * is what the teacher rows' metrics say of it (its accuracy and size, when measured).
   */
  teacherIs?: ReportMethod;
}

/** The tolerance when none is given: 1 point. */
export const DEFAULT_TOLERANCE = 1;

/**
 * Whether `shortfall` (how far one share is below another, as a fraction; negative when it is
 * above) is within `points` points. Accuracies are counts over a test set, so a difference of
 * exactly 1.00 point can come out as 0.010000000000000009: a hair of slack counts it as within.
 */
export function withinPoints(shortfall: number, points: number): boolean {
  return shortfall <= points / 100 + 1e-9;
}

/** A row's value by `measure` (null: not measured). Closeness: the share of the base's mean output distance to the teacher the update removes. */
export function valueOf(r: Pick<ReportRow, 'accAll' | 'agreement' | 'meanAbsDiff' | 'meanAbsDiffBefore'>, measure: Measure): number | null {
  if (measure === 'accuracy') return typeof r.accAll === 'number' ? r.accAll : null;
  if (measure === 'agreement') return typeof r.agreement === 'number' ? r.agreement : null;
  return typeof r.meanAbsDiff === 'number' && typeof r.meanAbsDiffBefore === 'number' && r.meanAbsDiffBefore > 0 ? 1 - r.meanAbsDiff / r.meanAbsDiffBefore : null;
}

/** How a measure reads in sentences and headers. */
export const MEASURE_WORDS: Record<Measure, { name: string; what: string }> = {
  accuracy: { name: 'accuracy', what: 'accuracy on the evaluation data' },
  agreement: { name: 'agreement', what: 'top-1 agreement with the teacher on the evaluation inputs' },
  closeness: { name: 'distance closed', what: "share of the base's mean output distance to the teacher that the update closes, on the evaluation inputs" },
};

/** The update numbers, in order. */
export function updatesOf(rows: readonly ReportRow[]): number[] {
  return [...new Set(rows.map((r) => r.update))].sort((a, b) => a - b);
}

/** A payload that shipped something (not a refused run, which leaves the device as it was). */
export const shipped = (r: ReportRow): boolean => r.bytes > 0 && r.refused !== true;

/** Rows in report order: method, teacher rows after label rows, budget. */
export function sortRows<T extends ReportRow>(rows: readonly T[]): T[] {
  return [...rows].sort((a, b) => REPORT_METHODS.indexOf(a.method) - REPORT_METHODS.indexOf(b.method) || Number(!!a.teacher) - Number(!!b.teacher) || Number(!!a.postHoc) - Number(!!b.postHoc) || (a.budgetPct ?? 1e9) - (b.budgetPct ?? 1e9) || a.bytes - b.bytes);
}

/** A closed range of values ([lo, hi], equal when every row agrees). */
export type Range = [number, number];
const rangeOf = (xs: (number | null | undefined)[]): Range | null => {
  const v = xs.filter((x): x is number => typeof x === 'number');
  return v.length ? [Math.min(...v), Math.max(...v)] : null;
};

/** The model devices hold before an update, as the update's rows measured it (a range when chains start from different models). */
export interface BaseModel {
  accuracy: Range | null;
  agreement: Range | null;
  /** Distance to the teacher it closes: none ([0, 0]) when its distance is known. */
  closeness: Range | null;
  /** Its mean absolute output difference from the teacher. */
  meanAbsDiff: Range | null;
}

/** The teacher an update's teacher rows learned toward, as far as the rows know it. */
export interface TeacherRef {
  /** How tables name it. */
  label: string;
  accAll: number | null;
  /** What shipping it whole costs (null: not known). */
  bytes: number | null;
  /** The row that is the teacher (with `teacherIs`), absent when the teacher is known from metrics only. */
  row?: ReportRow;
}

/** One update: its rows, base model, teacher and reference value. */
export interface UpdateSummary {
  update: number;
  name?: string;
  rows: ReportRow[];
  base: BaseModel;
  teacher?: TeacherRef;
  /** The value payloads are held against (null: nothing measured). */
  reference: number | null;
  /** What the reference is, in words. */
  referenceText: string;
  /** Several base values among rows of this update: they started from different models or were measured on different data. */
  baseVaries: boolean;
}

/** One method and budget across the updates. */
export interface BudgetSummary {
  key: string;
  method: ReportMethod | 'teacher';
  teacher: boolean;
  /** Made by `ndiff diff` from the new version's weights, not trained. */
  postHoc: boolean;
  budget: string;
  budgetPct: number | null;
  /** How tables and sentences name it. */
  label: string;
  /** Updates this setting has a compared value on. */
  updates: number;
  meanBytes: number;
  minBytes: number;
  maxBytes: number;
  accuracy: { mean: number; worst: number } | null;
  agreement: { mean: number; worst: number } | null;
  /** By the report's measure: mean and worst value. */
  measured: { mean: number; worst: number } | null;
  /** By the report's measure: how far below the update's reference, at worst (points as a fraction), and on which update. */
  worstGap: number | null;
  worstUpdate: number | null;
  /** Updates on which it is within the tolerance of the reference. */
  within: number;
}

/** The recommendation line and what it rests on. */
export interface Recommendation {
  measure: Measure;
  tolerance: number;
  /** The setting recommended (within tolerance on every update, fewest bytes), or the closest one when none is. */
  choice?: BudgetSummary;
  /** Whether the choice is within tolerance on every update. */
  met: boolean;
  /** The sentence. */
  text: string;
}

/** Everything a report concludes. */
export interface ReportSummary {
  measure: Measure;
  tolerance: number;
  updates: UpdateSummary[];
  budgets: BudgetSummary[];
  recommendation: Recommendation;
  /** Rows that ship a payload but lack the measure (left out of the comparison). */
  notCompared: ReportRow[];
}

/**
 * Which measure compares the payloads: accuracy when every payload has one, else agreement, else
 * distance closed; failing all, the one most rows have. A measure every payload has is passed over
 * when it cannot tell them apart (every payload and the model before the update score the same:
 * a language model whose versions predict one token almost everywhere agree on every position)
 * and a later one every payload has can.
 */
export function chooseMeasure(rows: readonly ReportRow[]): Measure {
  const payloads = rows.filter(shipped);
  const measures: Measure[] = ['accuracy', 'agreement', 'closeness'];
  const counts = measures.map((m) => payloads.filter((r) => valueOf(r, m) !== null).length);
  const everywhere = measures.filter((_, i) => counts[i] === payloads.length && payloads.length > 0);
  const tells = (m: Measure) => {
    const values = payloads.map((r) => valueOf(r, m) as number);
    if (m === 'agreement') values.push(...rows.map((r) => r.agreementBefore).filter((v): v is number => typeof v === 'number'));
    if (m === 'accuracy') values.push(...rows.map((r) => r.accBefore).filter((v): v is number => typeof v === 'number'));
    if (m === 'closeness') values.push(0);
    return Math.max(...values) - Math.min(...values) > 1e-12;
  };
  return everywhere.find(tells) ?? everywhere[0] ?? measures[counts.indexOf(Math.max(...counts))];
}

function teacherOf(rows: ReportRow[], opts: ReportOptions): TeacherRef | undefined {
  if (!rows.some((r) => r.teacher)) return undefined;
  if (opts.teacherIs) {
    const row = rows.find((r) => r.method === opts.teacherIs && !r.teacher);
    if (row) return { label: `the teacher (${methodName(row.method, false)})`, accAll: row.accAll, bytes: row.bytes, row };
  }
  const first = <K extends keyof ReportRow>(k: K) => rows.map((r) => r[k]).find((v) => typeof v === 'number') as number | undefined;
  return { label: 'the teacher (the new version itself)', accAll: first('teacherAccAll') ?? null, bytes: first('teacherBytes') ?? null };
}

/** A budget setting's identity across updates: the method, how the payload was made (trained, toward a teacher, post hoc) and the budget. */
const keyOf = (r: Pick<ReportRow, 'method' | 'teacher' | 'postHoc'>, budget: string) => `${r.method}|${r.postHoc ? 'post hoc' : r.teacher ? 'teacher' : ''}|${budget}`;

/** Conclude what the rows say: measure, per-update references, per-budget summary, recommendation. */
export function summarize(rows: readonly ReportRow[], opts: ReportOptions = {}): ReportSummary {
  const tolerance = opts.tolerance ?? DEFAULT_TOLERANCE;
  const measure = chooseMeasure(rows);
  const teacherValue = (t: TeacherRef) => (measure === 'accuracy' ? t.accAll : 1);
  const updates: UpdateSummary[] = updatesOf(rows).map((update) => {
    const own = sortRows(rows.filter((r) => r.update === update));
    const teacher = teacherOf(own, opts);
    const values = own.filter(shipped).map((r) => valueOf(r, measure)).filter((v): v is number => v !== null);
    const best = values.length ? Math.max(...values) : null;
    const fromTeacher = teacher ? teacherValue(teacher) : null;
    const accBefore = own.map((r) => r.accBefore);
    const base: BaseModel = { accuracy: rangeOf(accBefore), agreement: rangeOf(own.map((r) => r.agreementBefore)), closeness: own.some((r) => typeof r.meanAbsDiffBefore === 'number') ? [0, 0] : null, meanAbsDiff: rangeOf(own.map((r) => r.meanAbsDiffBefore)) };
    const spread = (r: Range | null) => !!r && r[1] - r[0] > 1e-9;
    const name = own.find((r) => typeof r.name === 'string')?.name as string | undefined;
    return {
      update,
      ...(name ? { name } : {}),
      rows: own,
      base,
      ...(teacher ? { teacher } : {}),
      reference: fromTeacher ?? best,
      referenceText: fromTeacher !== null && teacher
        ? `${teacher.label}, ${measure === 'accuracy' ? pct(fromTeacher) : 'which agrees with itself on 100%'}`
        : best === null ? 'nothing measured' : `the best result, ${pct(best)}${teacher ? ` (the teacher's own ${MEASURE_WORDS[measure].name} is not in these files)` : ''}`,
      baseVaries: spread(base.accuracy) || spread(base.agreement),
    };
  });

  // Each (method, teacher, budget) across updates, and the teacher shipped whole where its size is known.
  type Setting = { method: ReportMethod | 'teacher'; teacher: boolean; postHoc?: boolean; budget: string; budgetPct: number | null; label: string };
  const settings = new Map<string, Setting & { cells: { update: number; bytes: number; acc: number | null; agr: number | null; value: number | null; reference: number | null }[] }>();
  const cell = (key: string, init: () => Setting) => {
    let s = settings.get(key);
    if (!s) settings.set(key, (s = { ...init(), cells: [] }));
    return s;
  };
  for (const u of updates) {
    for (const r of u.rows.filter(shipped)) {
      const budget = budgetLabel(r);
      // The teacher's own row, when it is one (`teacherIs`), agrees with itself.
      const isTeacher = u.teacher?.row === r;
      const label = settingName(r.method, r.teacher, budget, r.postHoc);
      let key = keyOf(r, budget);
      // Two runs of one setting on one update (a rerun, another seed): two settings, each named by
      // its file, never one averaged figure that matches neither row of the table.
      const twice = settings.get(key)?.cells.some((c) => c.update === u.update);
      if (twice) key = `${key}|${r.source ?? u.rows.indexOf(r)}`;
      const s = cell(key, () => ({ method: r.method, teacher: !!r.teacher, postHoc: !!r.postHoc, budget, budgetPct: r.budgetPct, label: twice ? `${label} (${r.source ?? `row ${u.rows.indexOf(r) + 1}`})` : label }));
      const agr = isTeacher ? 1 : typeof r.agreement === 'number' ? r.agreement : null;
      s.cells.push({ update: u.update, bytes: r.bytes, acc: r.accAll, agr, value: isTeacher ? (teacherValue(u.teacher as TeacherRef) ?? valueOf(r, measure)) : valueOf(r, measure), reference: u.reference });
    }
    const t = u.teacher;
    if (t && !t.row && t.bytes !== null) {
      const s = cell('teacher', () => ({ method: 'teacher', teacher: true, budget: '-', budgetPct: null, label: 'the teacher itself, shipped whole' }));
      s.cells.push({ update: u.update, bytes: t.bytes, acc: t.accAll, agr: 1, value: teacherValue(t), reference: u.reference });
    }
  }
  const stat = (xs: (number | null)[]) => {
    const v = xs.filter((x): x is number => x !== null);
    return v.length ? { mean: v.reduce((a, b) => a + b, 0) / v.length, worst: Math.min(...v) } : null;
  };
  const budgets: BudgetSummary[] = [...settings].map(([key, s]) => {
    const compared = s.cells.filter((c) => c.value !== null && c.reference !== null);
    const gaps = compared.map((c) => ({ gap: (c.reference as number) - (c.value as number), update: c.update }));
    const worst = gaps.reduce<{ gap: number; update: number } | null>((w, g) => (!w || g.gap > w.gap ? g : w), null);
    const bytes = s.cells.map((c) => c.bytes);
    return {
      key, method: s.method, teacher: s.teacher, postHoc: !!s.postHoc, budget: s.budget, budgetPct: s.budgetPct, label: s.label,
      updates: compared.length,
      meanBytes: bytes.reduce((a, b) => a + b, 0) / bytes.length, minBytes: Math.min(...bytes), maxBytes: Math.max(...bytes),
      accuracy: stat(s.cells.map((c) => c.acc)), agreement: stat(s.cells.map((c) => c.agr)), measured: stat(s.cells.map((c) => c.value)),
      worstGap: worst?.gap ?? null, worstUpdate: worst?.update ?? null,
      within: gaps.filter((g) => withinPoints(g.gap, tolerance)).length,
    };
  }).sort((a, b) => order(a) - order(b) || Number(a.teacher) - Number(b.teacher) || Number(a.postHoc) - Number(b.postHoc) || (a.budgetPct ?? 1e9) - (b.budgetPct ?? 1e9));

  const notCompared = rows.filter((r) => shipped(r) && valueOf(r, measure) === null);
  return { measure, tolerance, updates, budgets, notCompared, recommendation: recommend(updates, budgets, measure, tolerance, notCompared.length) };
}

const order = (b: Pick<BudgetSummary, 'method'>) => (b.method === 'teacher' ? REPORT_METHODS.length : REPORT_METHODS.indexOf(b.method));

function recommend(updates: UpdateSummary[], budgets: BudgetSummary[], measure: Measure, tolerance: number, notCompared: number): Recommendation {
  const n = updates.filter((u) => u.reference !== null).length;
  const tol = `${tolerance} point${tolerance === 1 ? '' : 's'}`;
  const hasTeacher = updates.some((u) => u.teacher && (measure !== 'accuracy' || u.teacher.accAll !== null));
  const of = hasTeacher ? 'the teacher' : 'the best result';
  const skipped = notCompared ? ` ${notCompared} payload${notCompared === 1 ? '' : 's'} without ${MEASURE_WORDS[measure].name} left out.` : '';
  const settings = budgets.filter((b) => b.method !== 'teacher').length;
  const compared = `Compared: ${MEASURE_WORDS[measure].what}, ${settings} setting${settings === 1 ? '' : 's'} (method and budget)${n > 1 ? `, each update against its own ${hasTeacher ? 'teacher' : 'best'}` : ''}; reference: ${n === 1 ? updates.find((u) => u.reference !== null)?.referenceText : of}; tolerance ${tol} (--tolerance).${skipped}`;
  if (n === 0 || !budgets.some((b) => b.updates > 0 && b.method !== 'teacher')) return { measure, tolerance, met: false, text: `No recommendation: no payload has ${MEASURE_WORDS[measure].what}.` };
  // Payloads only: the teacher shipped whole is the alternative they are weighed against.
  const payloads = budgets.filter((b) => b.method !== 'teacher');
  const whole = budgets.find((b) => b.method === 'teacher');
  const everywhere = payloads.filter((b) => b.updates === n && b.within === n);
  const size = (b: BudgetSummary) => (shortBytes(b.minBytes) === shortBytes(b.maxBytes) ? shortBytes(b.meanBytes) : `${shortBytes(b.minBytes)} to ${shortBytes(b.maxBytes)}, mean ${shortBytes(b.meanBytes)}`);
  const value = (b: BudgetSummary) => (b.measured && n === 1 ? `, ${MEASURE_WORDS[measure].name} ${pct(b.measured.mean)}` : '');
  const gapText = (b: BudgetSummary) => ((b.worstGap ?? 0) > 0 ? `${points(b.worstGap)} points below ${of}${n > 1 ? ` at worst (update ${b.worstUpdate})` : ''}` : `level with or above ${of}${n > 1 ? ' on every update' : ''}`);
  // The model devices hold, when every update measured it within tolerance: the update may not be worth its bytes.
  const baseValue = (u: UpdateSummary) => (measure === 'accuracy' ? u.base.accuracy : measure === 'agreement' ? u.base.agreement : u.base.closeness)?.[0];
  const baseWithin = updates.every((u) => u.reference === null || (typeof baseValue(u) === 'number' && withinPoints(u.reference - (baseValue(u) as number), tolerance)));
  const baseNote = baseWithin ? ` The model devices already hold is within ${tol} of ${of} too: this update may not be worth shipping.` : '';
  if (everywhere.length) {
    const choice = everywhere.reduce((a, b) => (b.meanBytes < a.meanBytes || (b.meanBytes === a.meanBytes && (b.worstGap ?? 0) < (a.worstGap ?? 0)) ? b : a));
    const where = n > 1 ? ` on all ${n} updates` : '';
    return { measure, tolerance, choice, met: true, text: `Recommended: ${choice.label} (${size(choice)}${value(choice)}): the smallest payload within ${tol} of ${of}${where}, ${gapText(choice)}.${baseNote} ${compared}` };
  }
  // Within on the most updates, then the nearest to the reference, then the fewest bytes.
  const choice = payloads.filter((b) => b.updates > 0).sort((a, b) => b.within - a.within || (a.worstGap ?? 0) - (b.worstGap ?? 0) || a.meanBytes - b.meanBytes)[0];
  const none = `No payload is within ${tol} of ${of}${n > 1 ? ' on every update' : ''}`;
  return { measure, tolerance, choice, met: false, text: `${none}. Closest: ${choice.label} (${size(choice)}${value(choice)})${n > 1 ? `, within on ${choice.within} of ${n} updates` : ''}, ${gapText(choice)}: try a larger budget or more training, or ship ${whole ? `the new version whole (${size(whole)})` : 'the whole model'}. ${compared}` };
}

/** A check a caller evaluates on the rows (a benchmark's targets), shown in its report. */
export interface TargetCheck {
  target: string;
  /** null: the rows cannot tell. */
  met: boolean | null;
  detail: string;
}

/** What a rendered report shows: the conclusions' options, a title, and a caller's own checks. */
export interface RenderOptions extends ReportOptions {
  title?: string;
  /** Checks of the caller's own (a benchmark's targets), shown as a table; none on a user's report. */
  targets?: TargetCheck[];
}
