/**
 * `ndiff report`: the size/accuracy comparison a user picks a budget from. From the result rows
 * it renders a Markdown summary (tables + how the targets fared) and a self-contained HTML page
 * with SVG charts: accuracy vs payload bytes per update, chain drift over the updates, and bytes
 * saved against a generic byte diff (zstd --patch-from).
 */
import { lineChart, shortBytes, type Series } from './svg.ts';
import { REPORT_METHODS, type ReportMethod, type ResultRow } from './results.ts';

export const METHOD_COLORS: Record<ReportMethod, string> = {
  sparse: '#1f77b4',
  hash: '#ff7f0e',
  lora: '#e377c2',
  'sparse-lora': '#bcbd22',
  'topk-retrain': '#17becf',
  topk: '#2ca02c',
  drop: '#9467bd',
  lowrank: '#8c564b',
  full: '#d62728',
  zstd: '#7f7f7f',
};

export const METHOD_LABELS: Record<ReportMethod, string> = {
  sparse: 'sparse (learned)',
  hash: 'hash (learned)',
  lora: 'LoRA (low-rank adapters)',
  'sparse-lora': 'sparse + LoRA (composite)',
  'topk-retrain': 'top-k mask, retrained (LT-SFT)',
  topk: 'top-k of full FT',
  drop: 'drop & rescale of full FT',
  lowrank: 'low-rank of full FT',
  full: 'full fine-tuning',
  zstd: 'zstd --patch-from',
};

const pct = (x: number | null | undefined) => (typeof x === 'number' ? `${(100 * x).toFixed(2)}%` : '-');
const pts = (x: number | null | undefined) => (typeof x === 'number' ? `${(100 * x).toFixed(2)}` : '-');
const secs = (x: number | null | undefined) => (typeof x === 'number' ? x.toFixed(1) : '-');
/**
 * A row's method, marked when the trainer refused to ship (the device kept its model), or when a
 * smaller budget's payload of the same update won the selection (with what the budget alone gave).
 */
const methodCell = (r: ResultRow) =>
  r.refused
    ? `${r.method} (refused: nothing shipped)`
    : typeof r.shippedFrom === 'string'
      ? `${r.method} (ships ${r.shippedFrom}'s payload${typeof r.ownAccAll === 'number' ? `; its own ${typeof r.ownBytes === 'number' ? `${r.ownBytes} B ` : ''}gave ${pct(r.ownAccAll)}` : ''})`
      : r.method;

function updates(rows: ResultRow[]): number[] {
  return [...new Set(rows.map((r) => r.update))].sort((a, b) => a - b);
}
function budgets(rows: ResultRow[]): number[] {
  return [...new Set(rows.filter((r) => r.budgetPct !== null).map((r) => r.budgetPct as number))].sort((a, b) => a - b);
}
function find(rows: ResultRow[], update: number, method: ReportMethod, budgetPct: number | null): ResultRow | undefined {
  return rows.find((r) => r.update === update && r.method === method && r.budgetPct === budgetPct);
}

/**
 * Whether `shortfall` (how far one accuracy is below another, as a fraction; negative when it is
 * above) is within `points` points. Accuracies are counts over a test set, so a difference of
 * exactly 1.00 point can come out as 0.010000000000000009: a hair of slack counts it as within.
 */
export function withinPoints(shortfall: number, points: number): boolean {
  return shortfall <= points / 100 + 1e-9;
}

/** The best sparse accuracy at budgets <= 1% minus full fine-tuning's on `update` (undefined without both). */
export function smallSparseGap(rows: ResultRow[], update: number): number | undefined {
  const full = find(rows, update, 'full', null);
  const small = rows.filter((r) => r.update === update && r.method === 'sparse' && r.budgetPct !== null && r.budgetPct <= 1);
  return full && small.length ? Math.max(...small.map((r) => r.accAll)) - full.accAll : undefined;
}

export interface TargetCheck {
  target: string;
  met: boolean | null;
  detail: string;
}

/** The product's targets, evaluated on the rows (null: the rows cannot tell). */
export function checkTargets(rows: ResultRow[]): TargetCheck[] {
  const ups = updates(rows);
  const checks: TargetCheck[] = [];
  const full = (u: number) => find(rows, u, 'full', null);
  // 1. sparse at <= 1%: within 1.0 point of full on every update
  if (budgets(rows).some((b) => b <= 1) && ups.every((u) => full(u))) {
    // An update without a sparse row at <= 1% counts as a miss.
    const best = ups.map((u) => smallSparseGap(rows, u) ?? -Infinity);
    const worst = Math.min(...best);
    const signed = (g: number) => `${g >= 0 ? '+' : ''}${pts(g)}`;
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
    for (const u of ups) {
      const series = sparseBudgets.map((b) => find(rows, u, 'sparse', b)).filter((r): r is ResultRow => !!r);
      for (let i = 1; i < series.length; i++) {
        if (series[i].accAll < series[i - 1].accAll) drops.push(`u${u}: ${series[i - 1].budgetPct}% ${pts(series[i - 1].accAll)} > ${series[i].budgetPct}% ${pts(series[i].accAll)}`);
      }
    }
    // When smaller payloads competed, what each budget gave alone (its own result, evaluated too).
    const shipped = rows.filter((r) => r.method === 'sparse' && typeof r.shippedFrom === 'string');
    let alone = '';
    if (shipped.length) {
      let ownDrops = 0;
      const own = (r: ResultRow) => (typeof r.ownAccAll === 'number' ? r.ownAccAll : r.accAll);
      for (const u of ups) {
        const series = sparseBudgets.map((b) => find(rows, u, 'sparse', b)).filter((r): r is ResultRow => !!r);
        for (let i = 1; i < series.length; i++) if (own(series[i]) < own(series[i - 1])) ownDrops++;
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
    const signed = (g: number) => `${g >= 0 ? '+' : ''}${pts(g)}`;
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

/** The Markdown summary: targets, then one table per update. */
export function renderMarkdown(rows: ResultRow[], title = 'neural-diff comparison'): string {
  const out: string[] = [`# ${title}`, ''];
  out.push('Accuracy is on held-out data (all words so far / words known before the update / the update\'s new data). Drift: full fine-tuning chain minus this chain, in points (positive: behind).', '');
  out.push('## Targets', '', '| target | met | measured |', '|---|---|---|');
  for (const c of checkTargets(rows)) out.push(`| ${c.target} | ${c.met === null ? 'n/a' : c.met ? 'yes' : '**no**'} | ${c.detail} |`);
  for (const u of updates(rows)) {
    const name = rows.find((r) => r.update === u && typeof r.name === 'string')?.name;
    out.push('', `## Update ${u}${name ? `: ${name}` : ''}`, '', '| method | budget | bytes | acc all | acc old | acc new | drift (pts) | train s | lr | tuning cost |', '|---|---|---|---|---|---|---|---|---|---|');
    const sorted = rows.filter((r) => r.update === u).sort((a, b) => REPORT_METHODS.indexOf(a.method) - REPORT_METHODS.indexOf(b.method) || (a.budgetPct ?? 1e9) - (b.budgetPct ?? 1e9));
    for (const r of sorted) out.push(`| ${methodCell(r)} | ${r.budgetPct === null ? '-' : `${r.budgetPct}%`} | ${r.bytes} | ${pct(r.accAll)} | ${pct(r.accOld)} | ${pct(r.accNew)} | ${pts(r.driftFromFull)} | ${secs(r.trainSeconds)} | ${typeof r.learningRate === 'number' ? r.learningRate : '-'} | ${typeof r.tuningCost === 'number' ? `${r.tuningCost.toFixed(2)}x` : '-'} |`);
  }
  return out.join('\n') + '\n';
}

const CSS = `body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px}table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}.no{color:#b00;font-weight:600}.yes{color:#070}.charts{display:flex;flex-wrap:wrap;gap:12px}
svg.chart{background:#fff;border:1px solid #ddd}svg .title{font-weight:600;font-size:13px}svg .plot{fill:#fafafa;stroke:#bbb}svg .grid{stroke:#e4e4e4}
svg .tick,svg .legend{font-size:11px;fill:#444}svg .axis{font-size:12px;fill:#222}`;

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** The self-contained HTML report. */
export function renderHtml(rows: ResultRow[], title = 'neural-diff comparison'): string {
  const ups = updates(rows);
  const bs = budgets(rows);
  const body: string[] = [`<h1>${esc(title)}</h1>`];
  body.push('<h2>Targets</h2><table><tr><th>target</th><th>met</th><th>measured</th></tr>');
  for (const c of checkTargets(rows)) body.push(`<tr><td>${esc(c.target)}</td><td class="${c.met ? 'yes' : 'no'}">${c.met === null ? 'n/a' : c.met ? 'yes' : 'no'}</td><td>${esc(c.detail)}</td></tr>`);
  body.push('</table>');

  body.push('<h2>Accuracy vs payload bytes</h2><div class="charts" id="acc-vs-bytes">');
  for (const u of ups) {
    const series: Series[] = REPORT_METHODS.map((m) => ({
      name: METHOD_LABELS[m],
      color: METHOD_COLORS[m],
      markersOnly: m === 'full' || m === 'zstd',
      points: rows.filter((r) => r.update === u && r.method === m).sort((a, b) => a.bytes - b.bytes).map((r) => [r.bytes, 100 * r.accAll] as [number, number]),
    })).filter((s) => s.points.length);
    const name = rows.find((r) => r.update === u && typeof r.name === 'string')?.name;
    body.push(lineChart({ title: `Update ${u}${name ? ` (${name})` : ''}: accuracy on all words`, xLabel: 'payload bytes (log)', yLabel: 'accuracy %', xLog: true, series, xFormat: shortBytes, yFormat: (v) => v.toFixed(1), width: 540, height: 320 }));
  }
  body.push('</div>');

  const drifting = REPORT_METHODS.filter((m) => m !== 'full' && m !== 'zstd');
  const driftCharts = bs.map((b) => {
    const series: Series[] = drifting.map((m) => ({
      name: METHOD_LABELS[m],
      color: METHOD_COLORS[m],
      points: ups.map((u) => find(rows, u, m, b)).filter((r): r is ResultRow & { driftFromFull: number } => typeof r?.driftFromFull === 'number').map((r) => [r.update, 100 * r.driftFromFull] as [number, number]),
    })).filter((s) => s.points.length);
    return series.length ? lineChart({ title: `Budget ${b}% of the model`, xLabel: 'update', yLabel: 'points behind full FT', series, xFormat: (v) => String(Math.round(v)), yFormat: (v) => v.toFixed(1), width: 540, height: 300 }) : '';
  }).filter(Boolean);
  if (driftCharts.length) body.push('<h2>Chain drift from full fine-tuning over successive updates</h2><div class="charts" id="drift">', ...driftCharts, '</div>');

  // Only where there are zstd rows to compare with.
  const zSeries: Series[] = [];
  for (const m of ['sparse', 'hash'] as const) {
    for (const b of bs) {
      const points = ups.map((u) => {
        const z = find(rows, u, 'zstd', null);
        const r = find(rows, u, m, b);
        return z && r ? ([u, z.bytes / r.bytes] as [number, number]) : null;
      }).filter((p): p is [number, number] => !!p);
      if (points.length) zSeries.push({ name: `${m} ${b}%`, color: METHOD_COLORS[m], dashed: m === 'hash', points });
    }
  }
  if (zSeries.length) {
    body.push('<h2>Bytes saved vs zstd --patch-from of the fully fine-tuned weights</h2><div class="charts" id="vs-zstd">');
    body.push(lineChart({ title: 'How many times smaller than zstd --patch-from', xLabel: 'update', yLabel: 'zstd bytes / payload bytes (log)', yLog: true, series: zSeries, xFormat: (v) => String(Math.round(v)), yFormat: (v) => `${+v.toPrecision(2)}x`, width: 720, height: 360 }));
    body.push('</div>');
  }

  body.push('<h2>All results</h2>');
  for (const u of ups) {
    body.push(`<h3>Update ${u}</h3><table><tr><th>method</th><th>budget</th><th>bytes</th><th>acc all</th><th>acc old</th><th>acc new</th><th>drift (pts)</th><th>train s</th></tr>`);
    const sorted = rows.filter((r) => r.update === u).sort((a, b) => REPORT_METHODS.indexOf(a.method) - REPORT_METHODS.indexOf(b.method) || (a.budgetPct ?? 1e9) - (b.budgetPct ?? 1e9));
    for (const r of sorted) body.push(`<tr><td>${esc(methodCell(r))}</td><td>${r.budgetPct === null ? '-' : `${r.budgetPct}%`}</td><td>${r.bytes}</td><td>${pct(r.accAll)}</td><td>${pct(r.accOld)}</td><td>${pct(r.accNew)}</td><td>${pts(r.driftFromFull)}</td><td>${secs(r.trainSeconds)}</td></tr>`);
    body.push('</table>');
  }
  return `<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title><style>${CSS}</style></head><body>\n${body.join('\n')}\n</body></html>\n`;
}
