/**
 * The keyword benchmark's teacher chains read against the labels (issue #81, item 2): each
 * teacher-chain row's held-out accuracy beside its teacher's (the update's full fine-tune, on the
 * same held-out voices), with its agreement with the teacher beside, and, for each method, the
 * smallest budget at which each update reaches its teacher's accuracy within 1 point. Agreement
 * counts the inputs both get wrong differently as disagreements; the labels say whether a device
 * is as accurate as the version it should have become.
 */
import { METHOD_LABELS } from '../../src/report/labels.ts';
import { withinPoints, type TargetCheck } from '../../src/report/report.ts';
import type { ReportMethod, ResultRow } from '../../src/report/results.ts';

const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
const signed = (g: number) => `${g >= 0 ? '+' : ''}${(100 * g).toFixed(2)}`;

/** One teacher-chain row beside its teacher. */
export interface TeacherLabelRow {
  update: number;
  method: ReportMethod;
  budgetPct: number;
  bytes: number;
  /** Held-out accuracy of base + payload, and of the teacher (the update's full fine-tune). */
  accuracy: number;
  teacherAccuracy: number;
  /** accuracy - teacherAccuracy. */
  gap: number;
  agreement: number | null;
}

/**
 * The teacher-chain rows beside their teacher's accuracy: the row's own `teacherAccAll` (the
 * benchmark writes it), else the update's full fine-tune row (results written before it did);
 * rows with neither, and refused rows, are left out.
 */
export function teacherLabelRows(rows: readonly ResultRow[]): TeacherLabelRow[] {
  const out: TeacherLabelRow[] = [];
  for (const r of rows) {
    if (!r.teacher || r.refused || r.budgetPct === null) continue;
    const teacherAccuracy = typeof r.teacherAccAll === 'number' ? r.teacherAccAll : rows.find((x) => x.update === r.update && x.method === 'full' && !x.teacher)?.accAll;
    if (teacherAccuracy === undefined) continue;
    out.push({ update: r.update, method: r.method, budgetPct: r.budgetPct, bytes: r.bytes, accuracy: r.accAll, teacherAccuracy, gap: r.accAll - teacherAccuracy, agreement: typeof r.agreement === 'number' ? r.agreement : null });
  }
  return out.sort((a, b) => a.method.localeCompare(b.method) || a.update - b.update || a.budgetPct - b.budgetPct);
}

/**
 * For each teacher method and update, the smallest budget whose held-out accuracy is within
 * `points` of the teacher's (null: none of its budgets is).
 */
export function budgetsReachingTeacher(rows: readonly TeacherLabelRow[], points = 1): Map<ReportMethod, Map<number, number | null>> {
  const out = new Map<ReportMethod, Map<number, number | null>>();
  for (const r of rows) {
    const per = out.get(r.method) ?? new Map<number, number | null>();
    out.set(r.method, per);
    const within = r.gap >= -points / 100 - 1e-12;
    const had = per.get(r.update);
    if (!per.has(r.update)) per.set(r.update, within ? r.budgetPct : null);
    else if (within && (had === null || (had as number) > r.budgetPct)) per.set(r.update, r.budgetPct);
  }
  return out;
}

/** The section of the benchmark's report.md: the summary line per method, then every row. */
export function teacherLabelsMarkdown(all: readonly ResultRow[]): string {
  const rows = teacherLabelRows(all);
  if (!rows.length) return '';
  const reach = budgetsReachingTeacher(rows);
  const lines = [
    '## Teacher chains against the labels',
    '',
    "Each teacher-chain payload's held-out accuracy beside its teacher's (the update's full fine-tune, on the same held-out voices), with its agreement with the teacher beside: agreement counts inputs both get wrong, differently, as disagreements.",
    '',
    '**Where each update reaches its teacher\'s accuracy within 1 point** (the smallest budget of the chain):',
    '',
  ];
  for (const [method, per] of reach) {
    const text = [...per].sort((a, b) => a[0] - b[0]).map(([u, b]) => `u${u} ${b === null ? 'none of its budgets' : `${b}%`}`).join(', ');
    lines.push(`- ${METHOD_LABELS[method]} (teacher): ${text}`);
  }
  lines.push('', '| method | update | budget | bytes | accuracy | teacher\'s accuracy | vs teacher (pts) | agreement |', '|---|---|---|---|---|---|---|---|');
  for (const r of rows) lines.push(`| ${r.method} (teacher) | ${r.update} | ${r.budgetPct}% | ${r.bytes.toLocaleString('en')} | ${pct(r.accuracy)} | ${pct(r.teacherAccuracy)} | ${signed(r.gap)} | ${r.agreement === null ? '-' : pct(r.agreement)} |`);
  return lines.join('\n') + '\n';
}

/**
 * Issue #81's targets on the teacher chains, for each learned teacher method with rows at the
 * budget: held-out accuracy within 0.5 point of the teacher's at 5% and within 1.0 point at 1%,
 * on every update (met null: no such rows on every update).
 */
export function teacherLabelTargets(all: readonly ResultRow[]): TargetCheck[] {
  const rows = teacherLabelRows(all).filter((r) => r.method !== 'topk');
  const ups = [...new Set(all.map((r) => r.update))].sort((a, b) => a - b);
  const checks: TargetCheck[] = [];
  for (const method of [...new Set(rows.map((r) => r.method))]) {
    for (const [budget, points] of [[5, 0.5], [1, 1]] as const) {
      const per = ups.map((u) => rows.find((r) => r.method === method && r.update === u && r.budgetPct === budget));
      if (per.every((r) => r === undefined)) continue;
      const target = `teacher ${method} at ${budget}%: held-out accuracy within ${points} point of the teacher's on every update`;
      if (per.some((r) => r === undefined)) {
        checks.push({ target, met: null, detail: `no row at ${budget}% for update(s) ${ups.filter((_, i) => !per[i]).join(', ')}` });
        continue;
      }
      const gaps = per.map((r) => (r as TeacherLabelRow).gap);
      checks.push({ target, met: gaps.every((g) => withinPoints(-g, points)), detail: `minus the teacher, per update: ${gaps.map(signed).join(', ')} points (worst ${signed(Math.min(...gaps))})` });
    }
  }
  return checks;
}
