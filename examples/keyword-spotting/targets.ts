/**
 * The keyword benchmark's own targets (docs/BENCHMARKS.md, issues #4 and #33), checked on its
 * results. They are this benchmark's claims, not a user's: `ndiff report` never shows them; the
 * benchmark's report (report.ts beside this file) and the seed study (seeds.ts) do.
 *
 * The label-trained chains' targets read the rows without `teacher`; the teacher chains' targets
 * read the rows with it, the teacher of each update being that update's full fine-tune.
 */
import { METHOD_LABELS } from '../../src/report/labels.ts';
import { withinPoints, type TargetCheck } from '../../src/report/report.ts';
import type { ReportMethod, ResultRow } from '../../src/report/results.ts';
import { teacherLabelTargets } from './teacher-labels.ts';

export type { TargetCheck };

const pts = (x: number) => (100 * x).toFixed(2);
const signed = (g: number) => `${g >= 0 ? '+' : ''}${pts(g)}`;

function updates(rows: ResultRow[]): number[] {
  return [...new Set(rows.map((r) => r.update))].sort((a, b) => a - b);
}
function budgets(rows: ResultRow[]): number[] {
  return [...new Set(rows.filter((r) => r.budgetPct !== null).map((r) => r.budgetPct as number))].sort((a, b) => a - b);
}
/** The row of (update, method, budget), of the label-trained chains or (`teacher`) of the teacher chains. */
function find(rows: ResultRow[], update: number, method: ReportMethod, budgetPct: number | null, teacher = false): ResultRow | undefined {
  return rows.find((r) => r.update === update && r.method === method && r.budgetPct === budgetPct && !!r.teacher === teacher);
}

/** The best label-trained sparse accuracy at budgets <= 1% minus full fine-tuning's on `update` (undefined without both). */
export function smallSparseGap(rows: ResultRow[], update: number): number | undefined {
  const full = find(rows, update, 'full', null);
  const small = rows.filter((r) => r.update === update && r.method === 'sparse' && !r.teacher && r.budgetPct !== null && r.budgetPct <= 1);
  return full && small.length ? Math.max(...small.map((r) => r.accAll)) - full.accAll : undefined;
}

/** The benchmark's targets, evaluated on the rows (met null: the rows cannot tell). */
export function checkTargets(all: ResultRow[]): TargetCheck[] {
  return [...labelTargets(all.filter((r) => !r.teacher), all), ...teacherTargets(all)];
}

/** Targets of the label-trained chains (issue #4). `rows` holds no teacher rows; `all` does (for the full rows). */
function labelTargets(rows: ResultRow[], all: ResultRow[]): TargetCheck[] {
  const ups = updates(all);
  const checks: TargetCheck[] = [];
  const full = (u: number) => find(rows, u, 'full', null);
  // 1. sparse at <= 1%: within 1.0 point of full on every update
  if (budgets(rows).some((b) => b <= 1) && ups.every((u) => full(u))) {
    // An update without a sparse row at <= 1% counts as a miss.
    const best = ups.map((u) => smallSparseGap(rows, u) ?? -Infinity);
    const worst = Math.min(...best);
    checks.push({ target: 'sparse diff at <= 1% of the model within 1.0 point of full fine-tuning on every update', met: withinPoints(-worst, 1), detail: `best sparse <= 1% minus full, per update: ${best.map(signed).join(', ')} points (worst ${signed(worst)})` });
  } else checks.push({ target: 'sparse at <= 1% within 1.0 point of full fine-tuning', met: null, detail: 'no sparse rows at <= 1% or no full rows' });
  // 2. at 10%: within 0.5 point after all updates (chain drift)
  const last = ups[ups.length - 1];
  const s10 = find(rows, last, 'sparse', 10);
  checks.push(s10 && typeof s10.driftFromFull === 'number' ? { target: `sparse at 10%: chain drift within 0.5 point of full fine-tuning after update ${last}`, met: withinPoints(s10.driftFromFull, 0.5), detail: `drift ${pts(s10.driftFromFull)} points` } : { target: 'sparse at 10% within 0.5 point after all updates', met: null, detail: 'no sparse row at 10% with a drift for the last update' });
  // 3. more bytes never buy a worse model: sparse accuracy non-decreasing in the budget, every update
  const sparseBudgets = budgets(rows.filter((r) => r.method === 'sparse'));
  if (sparseBudgets.length > 1) {
    const drops: string[] = [];
    const series = (u: number) => sparseBudgets.map((b) => find(rows, u, 'sparse', b)).filter((r): r is ResultRow => !!r);
    for (const u of ups) {
      const s = series(u);
      for (let i = 1; i < s.length; i++) if (s[i].accAll < s[i - 1].accAll) drops.push(`u${u}: ${s[i - 1].budgetPct}% ${pts(s[i - 1].accAll)} > ${s[i].budgetPct}% ${pts(s[i].accAll)}`);
    }
    // When smaller payloads competed, what each budget gave alone (its own result, evaluated too).
    const shipped = rows.filter((r) => r.method === 'sparse' && typeof r.shippedFrom === 'string');
    let alone = '';
    if (shipped.length) {
      let ownDrops = 0;
      const own = (r: ResultRow) => (typeof r.ownAccAll === 'number' ? r.ownAccAll : r.accAll);
      for (const u of ups) {
        const s = series(u);
        for (let i = 1; i < s.length; i++) if (own(s[i]) < own(s[i - 1])) ownDrops++;
      }
      alone = `; a smaller budget's payload shipped in ${shipped.length} of ${rows.filter((r) => r.method === 'sparse').length} sparse rows; each budget's own result alone: ${ownDrops} decrease(s)`;
    }
    checks.push({ target: 'sparse: accuracy non-decreasing in the budget at every update', met: drops.length === 0, detail: (drops.length ? `${drops.length} decrease(s): ${drops.join('; ')}` : `${sparseBudgets.join(', ')}% in order on ${ups.length} update(s)`) + alone });
  } else checks.push({ target: 'sparse: accuracy non-decreasing in the budget', met: null, detail: 'fewer than two sparse budgets' });
  // 4. learned sparse at 1% at least 2 points above the alternatives users pick, same bytes
  for (const alt of ['lora', 'topk-retrain'] as const) {
    const m: number[] = [];
    for (const u of ups) {
      const sp = find(rows, u, 'sparse', 1);
      const a = find(rows, u, alt, 1);
      if (sp && a) m.push(sp.accAll - a.accAll);
    }
    checks.push(m.length
      ? { target: `learned sparse at 1% at least 2 points above ${METHOD_LABELS[alt]} at 1%`, met: Math.min(...m) >= 0.02, detail: `sparse minus ${alt}, per update: ${m.map(signed).join(', ')} points` }
      : { target: `learned sparse at 1% at least 2 points above ${alt} at 1%`, met: null, detail: `no ${alt} rows at 1%` });
  }
  // 5. tuning cost: quick tuning at most 3x a single untuned run
  const costs = rows.map((r) => r.tuningCost).filter((c): c is number => typeof c === 'number');
  if (costs.length) checks.push({ target: 'tuning costs at most 3x a single untuned run', met: Math.max(...costs) <= 3, detail: `examples seen, tuning included, over one run's: ${Math.min(...costs).toFixed(2)}x to ${Math.max(...costs).toFixed(2)}x over ${costs.length} trainings` });
  // 6. learned sparse beats top-k at 0.5-1% by a clear margin
  const margins: number[] = [];
  for (const u of ups) for (const b of budgets(rows).filter((b) => b >= 0.5 && b <= 1)) {
    const s = find(rows, u, 'sparse', b);
    const t = find(rows, u, 'topk', b);
    if (s && t) margins.push(s.accAll - t.accAll);
  }
  checks.push(margins.length ? { target: 'learned sparse beats post-hoc top-k at equal bytes (0.5-1%)', met: Math.min(...margins) > 0.01, detail: `margin ${pts(Math.min(...margins))} to ${pts(Math.max(...margins))} points over ${margins.length} (update, budget) pairs` } : { target: 'sparse beats top-k at 0.5-1%', met: null, detail: 'no pairs' });
  // 7. >= 50x smaller than zstd at no more than 1 point below full
  const ratios: string[] = [];
  let allMet = true;
  for (const u of ups) {
    const z = find(rows, u, 'zstd', null);
    const f = full(u);
    if (!z || !f) { allMet = false; continue; }
    const ok = rows.filter((r) => r.update === u && (r.method === 'sparse' || r.method === 'hash') && !r.refused && r.accAll >= f.accAll - 0.01).sort((a, b) => a.bytes - b.bytes)[0];
    if (!ok) { ratios.push(`u${u}: none within 1 point`); allMet = false; continue; }
    const ratio = z.bytes / ok.bytes;
    if (ratio < 50) allMet = false;
    ratios.push(`u${u}: ${ratio.toFixed(0)}x (${ok.method} ${ok.budgetPct}%)`);
  }
  checks.push({ target: 'payload >= 50x smaller than zstd --patch-from at no more than 1 point below full fine-tuning', met: ratios.length ? allMet : null, detail: ratios.join('; ') || 'no zstd rows' });
  return checks;
}

/** Targets of the teacher chains (issue #33): rows with `teacher`, each update's teacher its full fine-tune. */
function teacherTargets(all: ResultRow[]): TargetCheck[] {
  const teacherRows = all.filter((r) => r.teacher);
  if (!teacherRows.length) return [];
  const ups = updates(all);
  const checks: TargetCheck[] = [];
  // 1. teacher sparse at 1%: >= 95% agreement and within 1 point of the teacher's accuracy, every update
  const per = ups.map((u) => ({ u, s: find(all, u, 'sparse', 1, true), f: find(all, u, 'full', null) }));
  if (per.every((p) => p.s && p.f && typeof p.s.agreement === 'number')) {
    const agree = per.map((p) => p.s!.agreement as number);
    const gaps = per.map((p) => p.s!.accAll - p.f!.accAll);
    checks.push({ target: 'teacher sparse at 1%: agrees with the teacher on >= 95% of held-out predictions on every update', met: Math.min(...agree) >= 0.95, detail: `agreement per update: ${agree.map((a) => `${pts(a)}%`).join(', ')}` });
    checks.push({ target: "teacher sparse at 1%: within 1 point of the teacher's accuracy on every update", met: gaps.every((g) => withinPoints(-g, 1)), detail: `minus the teacher (full fine-tuning), per update: ${gaps.map(signed).join(', ')} points` });
  } else checks.push({ target: 'teacher sparse at 1%: >= 95% agreement and within 1 point of the teacher on every update', met: null, detail: 'no teacher sparse row at 1% with its agreement on every update, or no full rows' });
  // 2. after the last update, within 1 point of the full chain
  const last = ups[ups.length - 1];
  const s1 = find(all, last, 'sparse', 1, true);
  checks.push(s1 && typeof s1.driftFromFull === 'number' ? { target: `teacher sparse at 1%: within 1 point of the full chain after update ${last}`, met: withinPoints(s1.driftFromFull, 1), detail: `drift ${pts(s1.driftFromFull)} points` } : { target: 'teacher sparse at 1% within 1 point of the full chain after all updates', met: null, detail: 'no teacher sparse row at 1% with a drift for the last update' });
  // 3. teacher diffs >= 15 points of agreement above post-hoc top-k of the same teacher, same bytes, at 1% and 5%
  const margins: string[] = [];
  let min = Infinity;
  for (const b of [1, 5]) for (const m of ['sparse', 'hash', 'topk-retrain'] as const) {
    const per: number[] = [];
    for (const u of ups) {
      const d = find(all, u, m, b, true);
      const t = find(all, u, 'topk', b, true);
      if (d && t && typeof d.agreement === 'number' && typeof t.agreement === 'number') per.push(d.agreement - t.agreement);
    }
    if (!per.length) continue;
    min = Math.min(min, ...per);
    margins.push(`${m} ${b}%: ${per.map(signed).join(', ')}`);
  }
  checks.push(margins.length
    ? { target: 'teacher diffs at least 15 points of agreement above post-hoc top-k of the same teacher at equal bytes (1% and 5%)', met: min >= 0.15, detail: `teacher diff minus top-k of the teacher, per update: ${margins.join('; ')} points` }
    : { target: 'teacher diffs 15 points of agreement above post-hoc top-k of the teacher at 1% and 5%', met: null, detail: 'no teacher rows of both kinds with agreement at 1% or 5%' });
  return [...checks, ...lowbitTargets(all, ups), ...teacherLabelTargets(all)];
}

/** A baseline measured beside a lowbit teacher row (bench.ts anchorsOf). */
interface Anchor {
  bytes: number;
  agreement: number;
}

/**
 * Targets of issue #46 on the lowbit and auto teacher chains, checked only where such rows exist:
 * at 5% >= 98% agreement and within 0.5 point of the teacher's accuracy, at 1% >= 95% agreement,
 * on every update; and lowbit at or above the Delta-CoMe and BitDelta baselines measured beside
 * each of its rows at the same bytes.
 */
function lowbitTargets(all: ResultRow[], ups: number[]): TargetCheck[] {
  const checks: TargetCheck[] = [];
  for (const m of ['lowbit', 'auto'] as const) {
    if (!all.some((r) => r.teacher && r.method === m)) continue;
    for (const [b, least, within] of [[5, 0.98, 0.5], [1, 0.95, null]] as const) {
      const per = ups.map((u) => ({ r: find(all, u, m, b, true), f: find(all, u, 'full', null) }));
      const label = `teacher ${m} at ${b}%: agrees with the teacher on >= ${pts(least)}% of held-out predictions${within === null ? '' : ` and within ${within} point of its accuracy`} on every update`;
      if (!per.every((p) => p.r && p.f && typeof p.r.agreement === 'number')) {
        checks.push({ target: label, met: null, detail: `no teacher ${m} row at ${b}% with its agreement on every update, or no full rows` });
        continue;
      }
      const agree = per.map((p) => p.r!.agreement as number);
      const gaps = per.map((p) => p.r!.accAll - p.f!.accAll);
      const chose = m === 'auto' ? ` (chose ${per.map((p) => p.r!.chosen ?? 'nothing').join(', ')})` : '';
      checks.push({
        target: label,
        met: Math.min(...agree) >= least && (within === null || gaps.every((g) => withinPoints(-g, within))),
        detail: `agreement per update: ${agree.map((a) => `${pts(a)}%`).join(', ')}${within === null ? '' : `; minus the teacher: ${gaps.map(signed).join(', ')} points`}${chose}`,
      });
    }
  }
  const anchored = all.filter((r) => r.teacher && r.method === 'lowbit' && r.anchors && !r.refused);
  if (anchored.length) {
    const come: string[] = [];
    const bit: string[] = [];
    let met = true;
    for (const r of anchored) {
      const a = r.anchors as Record<'deltaCome' | 'bitDelta' | 'lowbitAtBitDelta', Anchor>;
      met &&= (r.agreement as number) >= a.deltaCome.agreement && a.lowbitAtBitDelta.agreement >= a.bitDelta.agreement;
      come.push(`u${r.update} ${r.budgetPct}%: ${pts(r.agreement as number)} vs ${pts(a.deltaCome.agreement)}`);
      if (r.budgetPct === anchored[0].budgetPct) bit.push(`u${r.update}: ${pts(a.lowbitAtBitDelta.agreement)} vs ${pts(a.bitDelta.agreement)} at ${a.bitDelta.bytes} B`);
    }
    checks.push({ target: 'teacher lowbit at or above Delta-CoMe at the same bytes, and post-hoc lowbit at or above BitDelta at its bytes, on every update and budget (agreement)', met, detail: `lowbit vs Delta-CoMe: ${come.join(', ')}; post-hoc lowbit vs BitDelta: ${bit.join(', ')}` });
  }
  return checks;
}
