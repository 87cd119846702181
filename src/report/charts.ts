/**
 * The report's charts, from its summary: per update, each measure against payload bytes (one
 * point per distinct payload, the base and the teacher as lines, the tolerance band below the
 * reference, the y-axis fitted to the learned methods); chain drift per budget; bytes against
 * zstd --patch-from.
 */
import { LEARNED_METHODS, METHOD_COLORS, budgetLabel, methodName, seriesName, shortBytes } from './labels.ts';
import { REPORT_METHODS, type ReportMethod, type ReportRow } from './results.ts';
import type { ChartPoint, ChartSpec, OffAxis, ReferenceLine, Series } from './svg.ts';
import { MEASURE_WORDS, shipped, updatesOf, valueOf, type Measure, type ReportSummary, type UpdateSummary } from './summary.ts';

/** A series: a method and how its payloads were made (trained, toward a teacher, post hoc by ndiff diff). */
interface SeriesKey { method: ReportMethod; teacher: boolean; postHoc: boolean }
/** Whether a row belongs to a series. */
const inSeries = (r: ReportRow, k: SeriesKey) => r.method === k.method && !!r.teacher === k.teacher && !!r.postHoc === k.postHoc;

/** The series present, in report order. */
function seriesKeys(rows: readonly ReportRow[]): SeriesKey[] {
  const keys: SeriesKey[] = [];
  for (const method of REPORT_METHODS) {
    for (const [teacher, postHoc] of [[false, false], [true, false], [true, true], [false, true]]) {
      const k = { method, teacher, postHoc };
      if (rows.some((r) => inSeries(r, k))) keys.push(k);
    }
  }
  return keys;
}

/** Series style of a method (rows trained toward a teacher: dashed, square markers; post-hoc rows: plain, as the post-hoc methods). */
const style = ({ method, teacher, postHoc }: SeriesKey): Pick<Series, 'name' | 'color' | 'dashed' | 'marker' | 'markersOnly'> => ({
  name: seriesName(method, teacher, postHoc),
  color: METHOD_COLORS[method],
  ...(teacher && !postHoc ? { dashed: true, marker: 'square' as const } : {}),
  ...(method === 'full' || method === 'zstd' || method === 'exact' ? { markersOnly: true } : {}),
});

/**
 * One point per distinct payload: rows of a method with the same bytes and the same value (a
 * larger budget that shipped a smaller budget's payload) are drawn once, the point naming every
 * budget it stands for.
 */
export function distinctPoints(rows: readonly ReportRow[], value: (r: ReportRow) => number | null): ChartPoint[] {
  const groups = new Map<string, { x: number; y: number; budgets: string[]; name: string }>();
  for (const r of [...rows].sort((a, b) => a.bytes - b.bytes || (a.budgetPct ?? 1e9) - (b.budgetPct ?? 1e9))) {
    const y = value(r);
    if (y === null || !shipped(r)) continue;
    const key = `${r.bytes}|${y}`;
    const g = groups.get(key);
    if (g) g.budgets.push(budgetLabel(r));
    else groups.set(key, { x: r.bytes, y, budgets: [budgetLabel(r)], name: methodName(r.method, r.teacher, r.postHoc) });
  }
  return [...groups.values()].map((g) => {
    const budgets = g.budgets.filter((b) => b !== '-').join(', ');
    return [g.x, 100 * g.y, `${g.name} ${budgets}${g.budgets.length > 1 ? ' (one payload)' : ''}`.trim(), budgets || undefined];
  });
}

/** A chart of one update and its legend entries. */
export interface UpdateChart {
  measure: Measure;
  spec: ChartSpec;
}

/** Per update, a chart of each measure the rows have (the report's own measure with its tolerance band). */
export function updateCharts(summary: ReportSummary): UpdateChart[] {
  const out: UpdateChart[] = [];
  const all = summary.updates.flatMap((u) => u.rows);
  const measures = (['accuracy', 'agreement', 'closeness'] as const).filter((m) => m === summary.measure || (m !== 'closeness' && all.some((r) => shipped(r) && valueOf(r, m) !== null)));
  for (const u of summary.updates) for (const measure of measures) out.push({ measure, spec: updateChart(u, measure, summary) });
  return out;
}

function updateChart(u: UpdateSummary, measure: Measure, summary: ReportSummary): ChartSpec {
  const teacherRow = u.teacher?.row;
  // The teacher's own row (teacherIs) agrees with it on everything.
  const value = (r: ReportRow) => (r === teacherRow && measure !== 'accuracy' ? 1 : valueOf(r, measure));
  const series: Series[] = seriesKeys(u.rows).map((k) => ({
    ...style(k),
    fit: LEARNED_METHODS.has(k.method) && !k.postHoc,
    points: distinctPoints(u.rows.filter((r) => inSeries(r, k)), value),
  })).filter((s) => s.points.length);
  const lines: ReferenceLine[] = [];
  const base = measure === 'accuracy' ? u.base.accuracy : measure === 'agreement' ? u.base.agreement : u.base.closeness;
  if (base && base[0] === base[1]) lines.push({ y: 100 * base[0], label: 'base (0 bytes)', color: '#555', dashed: true });
  const t = u.teacher;
  const teacherValue = t && !t.row ? (measure === 'accuracy' ? t.accAll : 1) : null;
  if (t && teacherValue !== null) {
    if (t.bytes !== null) series.push({ name: 'the teacher, shipped whole', color: '#000', markersOnly: true, marker: 'square', points: [[t.bytes, 100 * teacherValue, 'the teacher, shipped whole']] });
    else lines.push({ y: 100 * teacherValue, label: 'teacher', color: '#000', fit: true });
  }
  const own = measure === summary.measure && u.reference !== null;
  const ref = u.reference as number;
  const tol = summary.tolerance / 100;
  const title = `Update ${u.update}${u.name ? ` (${u.name})` : ''}: ${measure === 'accuracy' ? 'accuracy' : MEASURE_WORDS[measure].name}`;
  return {
    title,
    xLabel: 'payload bytes (log)',
    yLabel: measure === 'accuracy' ? 'accuracy %' : measure === 'agreement' ? 'agreement with the teacher %' : 'distance to the teacher closed %',
    xLog: true,
    series,
    lines,
    ...(own ? { band: { lo: 100 * (ref - tol), hi: 100 * ref, label: `within ${summary.tolerance} point${summary.tolerance === 1 ? '' : 's'} of ${u.referenceText}` } } : {}),
    xFormat: shortBytes,
    yFormat: (v) => v.toFixed(1),
    yUnit: '%',
    width: 480,
    height: 320,
  };
}

/** Chain drift from full fine-tuning over the updates, one chart per budget (rows that carry it). */
export function driftCharts(rows: readonly ReportRow[]): ChartSpec[] {
  const ups = updatesOf(rows);
  const drifting = rows.filter((r) => typeof r.driftFromFull === 'number' && r.method !== 'full' && r.method !== 'zstd' && r.budgetPct !== null);
  if (ups.length < 2) return [];
  const budgets = [...new Set(drifting.map((r) => budgetLabel(r)))].sort((a, b) => parseFloat(a) - parseFloat(b));
  return budgets.map((b) => {
    const at = drifting.filter((r) => budgetLabel(r) === b);
    const series: Series[] = seriesKeys(at).map((k) => ({
      ...style(k),
      fit: LEARNED_METHODS.has(k.method) && !k.postHoc,
      points: at.filter((r) => inSeries(r, k)).sort((x, y) => x.update - y.update).map((r) => [r.update, 100 * (r.driftFromFull as number), `${methodName(k.method, k.teacher, k.postHoc)} ${b}, update ${r.update}`, `u${r.update}`] as ChartPoint),
    }));
    return { title: `Budget ${b} of the model`, xLabel: 'update', yLabel: 'points behind full FT', series, xFormat: (v: number) => String(Math.round(v)), yFormat: (v: number) => v.toFixed(1), width: 480, height: 300 };
  }).filter((c) => c.series.length);
}

/** How many times smaller than zstd --patch-from each sparse and hash budget is, per update (rows with zstd rows). */
export function zstdChart(rows: readonly ReportRow[]): ChartSpec | undefined {
  const series: Series[] = [];
  const ups = updatesOf(rows);
  const zstd = (u: number) => rows.find((r) => r.update === u && r.method === 'zstd');
  for (const method of ['sparse', 'hash'] as const) {
    for (const teacher of [false, true]) {
      const own = rows.filter((r) => r.method === method && !!r.teacher === teacher && shipped(r));
      const budgets = [...new Set(own.map((r) => budgetLabel(r)))].sort((x, y) => parseFloat(x) - parseFloat(y));
      const group: Series[] = [];
      for (const b of budgets) {
        const points = ups.map((u) => {
          const z = zstd(u);
          const r = own.find((x) => x.update === u && budgetLabel(x) === b);
          return z && r ? ([u, z.bytes / r.bytes, `${methodName(method, teacher)} ${b}, update ${u}`] as ChartPoint) : null;
        }).filter((p): p is ChartPoint => !!p);
        if (points.length) group.push({ name: `${methodName(method, teacher)} ${b}`, color: METHOD_COLORS[method], dashed: method === 'hash' || teacher, points });
      }
      // The budgets of one method from dark (smallest) to light, so their lines tell apart.
      group.forEach((x, i) => (x.color = shade(METHOD_COLORS[method], group.length > 1 ? (0.6 * i) / (group.length - 1) : 0)));
      series.push(...group);
    }
  }
  return series.length ? { title: 'How many times smaller than zstd --patch-from', xLabel: 'update', yLabel: 'zstd bytes / payload bytes (log)', yLog: true, series, xFormat: (v) => String(Math.round(v)), yFormat: (v) => `${+v.toPrecision(2)}x`, width: 720, height: 360 } : undefined;
}

/** `color` (#rrggbb) mixed with white by `amount` (0-1). */
function shade(color: string, amount: number): string {
  const c = [1, 3, 5].map((i) => parseInt(color.slice(i, i + 2), 16));
  return `#${c.map((v) => Math.round(v + (255 - v) * amount).toString(16).padStart(2, '0')).join('')}`;
}

/** The caption naming what a chart drew at its edges, by series: `▼ below the axis: top-k of full FT 75.1 (0.5%), 75.1 (1%)`. */
export function offAxisCaption(off: OffAxis[], yFormat: (v: number) => string = (v) => v.toFixed(1), unit = ''): string {
  const parts: string[] = [];
  for (const [side, words] of [['below', '▼ below the axis'], ['above', '▲ above the axis']] as const) {
    const names = [...new Set(off.filter((o) => o.side === side).map((o) => o.name))];
    const items = names.map((name) => `${name} ${off.filter((o) => o.side === side && o.name === name).map((o) => `${yFormat(o.y)}${unit}${o.tag ? ` (${o.tag})` : ''}`).join(', ')}`);
    if (items.length) parts.push(`${words}: ${items.join('; ')}`);
  }
  return parts.join('. ');
}
