/**
 * The report's tables as cells, for the Markdown and HTML renderers alike: each update's rows
 * (the base model first, then every payload, the teacher), and the per-budget summary across
 * updates. Columns a report has no figures for are left out.
 */
import { budgetLabel, methodName, pct, shortBytes, signedPoints } from './labels.ts';
import { REPORT_METHODS as REPORT_ORDER, type ReportRow } from './results.ts';
import { shipped, valueOf, withinPoints, type Range, type ReportSummary, type UpdateSummary } from './summary.ts';

/** One table row: its cells, what it is, and whether it is within tolerance of the reference. */
export interface TableRow {
  cells: string[];
  kind: 'base' | 'teacher' | 'payload' | 'refused';
  within?: boolean;
}

/** A table: headers and rows. */
export interface Table {
  head: string[];
  rows: TableRow[];
}

const has = (rows: readonly ReportRow[], f: (r: ReportRow) => unknown) => rows.some((r) => typeof f(r) === 'number');
const range = (r: Range | null) => (!r ? '-' : r[0] === r[1] ? pct(r[0]) : `${pct(r[0])}-${pct(r[1])}`);
const bytesText = (n: number) => n.toLocaleString('en-US');

/**
 * A row's method, marked when the trainer refused to ship (the device kept its model), or when a
 * smaller budget's payload of the same update won the selection (with what the budget alone gave).
 */
export function methodCell(r: ReportRow): string {
  const made = methodName(r.method, r.teacher, r.postHoc);
  // auto's choice: `lowbit (teacher; auto's choice of 5)`, its time that of every candidate.
  const name = typeof r.auto === 'string' ? `${made.replace(/\)$/, '')}${made.endsWith(')') ? '; ' : ' ('}auto's choice${r.autoCandidates ? ` of ${r.autoCandidates}` : ''})` : made;
  if (r.refused) return `${name} (refused: nothing shipped)`;
  if (typeof r.shippedFrom !== 'string') return name;
  const own = typeof r.ownAccAll === 'number' ? `; its own ${typeof r.ownBytes === 'number' ? `${r.ownBytes} B ` : ''}gave ${pct(r.ownAccAll)}` : '';
  return `${name} (ships ${r.shippedFrom}'s payload${own})`;
}

/** The distance column's name: a mean absolute difference, or for language models the mean KL to the target. */
function distanceHead(all: readonly ReportRow[]): string {
  const measured = all.filter((r) => typeof r.meanAbsDiff === 'number');
  const kl = measured.filter((r) => r.distance === 'kl').length;
  return kl === 0 ? 'mean abs. Δ from teacher' : kl === measured.length ? 'mean KL to target' : 'mean abs. Δ or KL (language models) to target';
}

/** The columns a report shows, from what its rows carry. */
function columns(all: readonly ReportRow[]) {
  return {
    accuracy: has(all, (r) => r.accAll) || has(all, (r) => r.accBefore),
    agreement: has(all, (r) => r.agreement) || has(all, (r) => r.agreementBefore),
    closeness: has(all, (r) => r.meanAbsDiff),
    accOld: has(all, (r) => r.accOld),
    accNew: has(all, (r) => r.accNew),
    drift: has(all, (r) => r.driftFromFull),
    seconds: has(all, (r) => r.trainSeconds),
    lr: has(all, (r) => r.learningRate),
    tuning: has(all, (r) => r.tuningCost),
  };
}

/** Each update's table: the base model, every row, and the teacher when it is known apart from the rows. */
export function updateTable(u: UpdateSummary, s: ReportSummary): Table {
  const all = s.updates.flatMap((x) => x.rows);
  const c = columns(all);
  const fromTeacher = !!u.teacher && (s.measure !== 'accuracy' || u.teacher.accAll !== null);
  const head = ['method', 'budget', 'bytes'];
  if (c.accuracy) head.push('accuracy');
  head.push(`vs ${fromTeacher ? 'teacher' : 'best'} (pts)`);
  if (c.agreement) head.push('agreement');
  if (c.closeness) head.push(distanceHead(all));
  if (c.accOld) head.push('acc old');
  if (c.accNew) head.push('acc new');
  if (c.drift) head.push('drift (pts)');
  if (c.seconds) head.push('train s');
  if (c.lr) head.push('lr');
  if (c.tuning) head.push('tuning cost');
  const gap = (v: number | null | undefined) => (typeof v === 'number' && u.reference !== null ? v - u.reference : null);
  const gapCell = (g: number | null) => (g === null ? '-' : `${signedPoints(g)}${withinPoints(-g, s.tolerance) ? ' ✓' : ''}`);
  const rest = (r: Partial<ReportRow>) => {
    const cells: string[] = [];
    if (c.accOld) cells.push(pct(r.accOld));
    if (c.accNew) cells.push(pct(r.accNew));
    if (c.drift) cells.push(typeof r.driftFromFull === 'number' ? (100 * r.driftFromFull).toFixed(2) : '-');
    if (c.seconds) cells.push(typeof r.trainSeconds === 'number' ? r.trainSeconds.toFixed(1) : '-');
    if (c.lr) cells.push(typeof r.learningRate === 'number' ? String(r.learningRate) : '-');
    if (c.tuning) cells.push(typeof r.tuningCost === 'number' ? `${r.tuningCost.toFixed(2)}x` : '-');
    return cells;
  };
  const rows: TableRow[] = [];
  // The model devices hold before the update: zero bytes.
  const baseValue = s.measure === 'accuracy' ? u.base.accuracy : s.measure === 'agreement' ? u.base.agreement : u.base.closeness;
  if (u.base.accuracy || u.base.agreement || u.base.closeness) {
    const cells = [u.baseVaries ? 'base (each chain before the update)' : 'base (before the update)', '-', '0'];
    if (c.accuracy) cells.push(range(u.base.accuracy));
    const g = baseValue ? gap(baseValue[0]) : null;
    cells.push(gapCell(g));
    if (c.agreement) cells.push(range(u.base.agreement));
    if (c.closeness) cells.push(u.base.meanAbsDiff ? u.base.meanAbsDiff.map((v) => v.toPrecision(3)).filter((v, i, a) => a.indexOf(v) === i).join('-') : '-');
    rows.push({ cells: [...cells, ...rest({})], kind: 'base', within: g !== null && withinPoints(-g, s.tolerance) });
  }
  for (const r of u.rows) {
    const isTeacher = u.teacher?.row === r;
    const v = isTeacher && s.measure !== 'accuracy' ? 1 : valueOf(r, s.measure);
    const g = shipped(r) || isTeacher ? gap(v) : null;
    const cells = [isTeacher ? `${methodCell(r)}: the teacher` : methodCell(r), budgetLabel(r), bytesText(r.bytes)];
    if (c.accuracy) cells.push(pct(r.accAll));
    cells.push(gapCell(g));
    if (c.agreement) cells.push(isTeacher ? '100%' : pct(r.agreement));
    if (c.closeness) cells.push(typeof r.meanAbsDiff === 'number' ? r.meanAbsDiff.toPrecision(3) : '-');
    rows.push({ cells: [...cells, ...rest(r)], kind: r.refused || !shipped(r) ? 'refused' : 'payload', within: g !== null && withinPoints(-g, s.tolerance) });
  }
  const t = u.teacher;
  if (t && !t.row) {
    const v = s.measure === 'accuracy' ? t.accAll : 1;
    const g = gap(v);
    const cells = ['the teacher, shipped whole', '-', t.bytes === null ? '-' : bytesText(t.bytes)];
    if (c.accuracy) cells.push(pct(t.accAll));
    cells.push(gapCell(g));
    if (c.agreement) cells.push('100%');
    if (c.closeness) cells.push('0');
    rows.push({ cells: [...cells, ...rest({})], kind: 'teacher', within: g !== null && withinPoints(-g, s.tolerance) });
  }
  return { head, rows };
}

/** Each method and budget across the updates (shown when there are several). */
export function budgetTable(s: ReportSummary): Table {
  const all = s.updates.flatMap((x) => x.rows);
  const c = columns(all);
  const n = s.updates.filter((u) => u.reference !== null).length;
  const teacherRef = s.updates.some((u) => u.teacher && (s.measure !== 'accuracy' || u.teacher.accAll !== null));
  const head = ['method and budget', 'updates', 'mean bytes'];
  if (c.accuracy) head.push('mean acc.', 'worst acc.');
  if (c.agreement) head.push('mean agr.', 'worst agr.');
  if (s.measure === 'closeness') head.push('mean distance closed', 'worst distance closed');
  head.push(`worst vs ${teacherRef ? 'teacher' : 'best'} (pts)`, `within ${s.tolerance} pt`);
  const rows: TableRow[] = s.budgets.map((b) => {
    const cells = [b.label, String(b.updates), shortBytes(b.meanBytes)];
    if (c.accuracy) cells.push(pct(b.accuracy?.mean), pct(b.accuracy?.worst));
    if (c.agreement) cells.push(pct(b.agreement?.mean), pct(b.agreement?.worst));
    if (s.measure === 'closeness') cells.push(pct(b.measured?.mean), pct(b.measured?.worst));
    cells.push(b.worstGap === null ? '-' : `${signedPoints(-b.worstGap)}${b.worstUpdate !== null && n > 1 ? ` (u${b.worstUpdate})` : ''}`, `${b.within} of ${n}`);
    return { cells, kind: b.method === 'teacher' ? 'teacher' : 'payload', within: b.within === n && b.updates === n };
  });
  return { head, rows };
}

/** What the chains table shows, in a sentence above it. */
export const CHAIN_NOTE = 'Each row follows the devices that held one version ("from version") and took every update since: each cell is the agreement with the version they were meant to reach, then the share of evaluation examples the model at the start got right and the model now gets wrong.';

/**
 * Chains, where the rows carry them (a `start` or a `newlyWrong`): per method, budget and
 * starting version, the agreement with the teacher and the share of newly wrong examples after
 * 1..N updates (`agreement / newly wrong` in each cell; several rows of one cell are averaged).
 * Undefined when no row carries a chain's figures.
 */
export function chainTable(rows: readonly ReportRow[]): Table | undefined {
  if (!rows.some((r) => typeof r.newlyWrong === 'number' || r.start !== undefined)) return undefined;
  const groups = new Map<string, { label: string; start: number; method: number; cells: Map<number, ReportRow[]> }>();
  for (const r of rows) {
    if (typeof r.agreement !== 'number' && typeof r.newlyWrong !== 'number') continue;
    const start = r.start ?? 0;
    const label = `${methodName(r.method, r.teacher, r.postHoc)} ${budgetLabel(r)}`.replace(/ -$/, '');
    const key = `${label}\u0000${start}`;
    const g = groups.get(key) ?? { label, start, method: REPORT_ORDER.indexOf(r.method), cells: new Map<number, ReportRow[]>() };
    groups.set(key, g);
    const after = r.update - start;
    g.cells.set(after, [...(g.cells.get(after) ?? []), r]);
  }
  if (!groups.size) return undefined;
  const n = Math.max(...[...groups.values()].flatMap((g) => [...g.cells.keys()]));
  const mean = (rs: ReportRow[], f: (r: ReportRow) => unknown) => {
    const v = rs.map(f).filter((x): x is number => typeof x === 'number');
    return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
  };
  const head = ['method and budget', 'from version', ...Array.from({ length: n }, (_, i) => `after ${i + 1} (agr. / newly wrong)`)];
  const ordered = [...groups.values()].sort((a, b) => a.method - b.method || a.label.localeCompare(b.label, 'en', { numeric: true }) || a.start - b.start);
  return {
    head,
    rows: ordered.map((g) => ({
      kind: 'payload' as const,
      cells: [g.label, String(g.start), ...Array.from({ length: n }, (_, i) => {
        const rs = g.cells.get(i + 1);
        return rs ? `${pct(mean(rs, (r) => r.agreement))} / ${pct(mean(rs, (r) => r.newlyWrong))}` : '';
      })],
    })),
  };
}
