/**
 * The report as one self-contained HTML page (inline CSS and SVG, no scripts): recommendation,
 * how to read it, a caller's targets, the per-budget summary, charts per update, chain drift,
 * bytes against zstd, and every update's table. Laid out for a laptop and a phone alike.
 */
import { driftCharts, offAxisCaption, updateCharts, zstdChart } from './charts.ts';
import { howToRead } from './guide.ts';
import type { ReportRow } from './results.ts';
import { summarize, type RenderOptions, type ReportSummary } from './summary.ts';
import { chart, legendHtml, type ChartSpec } from './svg.ts';
import { budgetTable, chainTable, CHAIN_NOTE, updateTable, type Table } from './tables.ts';

const CSS = `*{box-sizing:border-box}body{font:15px/1.5 system-ui,sans-serif;margin:20px auto;max-width:1240px;color:#222;padding:0 14px}
h1{font-size:22px;margin:0 0 12px}h2{font-size:18px;margin-top:30px}h3{font-size:15px;margin:18px 0 4px}p.ref{margin:2px 0 6px;color:#444}
.recommendation{border-left:5px solid #2a7;background:#eef8f2;padding:10px 14px;margin:12px 0;font-size:16px}.recommendation.none{border-color:#c80;background:#fdf6e8}
.guide{color:#333;padding-left:20px}.guide li{margin:3px 0}
.table-wrap{overflow-x:auto;-webkit-overflow-scrolling:touch;margin:6px 0 10px}
table{border-collapse:collapse;font-size:14px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;white-space:nowrap}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}tr.base td{background:#f4f4f4;font-style:italic}tr.teacher td{background:#f3f0fa}tr.within td{background:#eaf6ee}tr.refused td{color:#777}#targets td{white-space:normal;text-align:left}#targets td:first-child{min-width:10em}#targets td.detail{min-width:12em}
.no{color:#b00;font-weight:600}.yes{color:#070}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,520px),1fr));gap:16px}
figure{margin:0;border:1px solid #ddd;background:#fff;padding:6px}figcaption{font-size:13px;color:#444;margin-top:4px}
svg.chart{display:block;width:100%;height:auto}svg .title{font-weight:600;font-size:15px}svg .plot{fill:#fafafa;stroke:#bbb}svg .grid{stroke:#e4e4e4}
svg .band{fill:#2a7;fill-opacity:.13}svg .tick{font-size:13px;fill:#444}svg .axis{font-size:13px;fill:#222}svg .reference-label{font-size:12px}
ul.legend{list-style:none;margin:4px 0 0;padding:0;display:flex;flex-wrap:wrap;gap:2px 14px;font-size:13px}ul.legend li{display:flex;align-items:center;gap:4px}
@media (max-width:600px){body{font-size:14px;padding:0 8px}h1{font-size:19px}.recommendation{font-size:15px}table{font-size:12.5px}td,th{padding:2px 5px}td:first-child,th:first-child{white-space:normal;min-width:8em}}`;

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function table(t: Table, id?: string): string {
  const head = `<tr>${t.head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>`;
  const rows = t.rows.map((r) => `<tr class="${r.kind}${r.within ? ' within' : ''}">${r.cells.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`).join('\n');
  return `<div class="table-wrap"><table${id ? ` id="${id}"` : ''}>${head}\n${rows}</table></div>`;
}

function figure(spec: ChartSpec, measure?: string): string {
  const { svg, offAxis } = chart(spec);
  const caption = offAxisCaption(offAxis, spec.yFormat, spec.yUnit);
  return `<figure${measure ? ` data-measure="${measure}"` : ''}>${svg}${legendHtml(spec.series, (spec.lines ?? []).filter((l) => !offAxis.some((o) => o.name === l.label && o.x === undefined)))}${caption ? `<figcaption>${esc(caption)}</figcaption>` : ''}</figure>`;
}

/** The HTML report of `rows` (see {@link summarize} for what it concludes). */
export function renderHtml(rows: readonly ReportRow[], opts: RenderOptions = {}): string {
  return htmlOf(summarize(rows, opts), opts);
}

/** The HTML report of a summary already made. */
export function htmlOf(s: ReportSummary, opts: RenderOptions = {}): string {
  const title = opts.title ?? 'neural-diff comparison';
  const body: string[] = [`<h1>${esc(title)}</h1>`];
  body.push(`<p class="recommendation${s.recommendation.met ? '' : ' none'}" id="recommendation">${esc(s.recommendation.text)}</p>`);
  const notes = howToRead(s);
  const varies = s.updates.filter((u) => u.baseVaries).map((u) => u.update);
  if (varies.length) notes.push(`The base differs between rows of update${varies.length > 1 ? 's' : ''} ${varies.join(', ')}: they started from different models (each chain's own device) or were measured on different data.`);
  if (s.notCompared.length) notes.push(`${s.notCompared.length} payload(s) lack ${s.measure} and are left out of the comparison.`);
  body.push(`<details open><summary>How to read this report</summary><ul class="guide">${notes.map((n) => `<li>${esc(n)}</li>`).join('')}</ul></details>`);
  if (opts.targets?.length) {
    body.push('<h2>Targets</h2><div class="table-wrap"><table id="targets"><tr><th>target</th><th>met</th><th>measured</th></tr>');
    for (const c of opts.targets) body.push(`<tr><td>${esc(c.target)}</td><td class="${c.met ? 'yes' : 'no'}">${c.met === null ? 'n/a' : c.met ? 'yes' : 'no'}</td><td class="detail">${esc(c.detail)}</td></tr>`);
    body.push('</table></div>');
  }
  if (s.updates.length > 1) body.push(`<h2>Each budget across the ${s.updates.length} updates</h2>`, table(budgetTable(s), 'budgets'));

  // Each update's charts side by side (accuracy, then agreement with the teacher).
  const charts = updateCharts(s);
  const words = { accuracy: 'accuracy', agreement: 'agreement with the teacher', closeness: 'distance to the teacher closed' };
  const heading = [...new Set(charts.map((c) => words[c.measure]))].join(' and ');
  body.push(`<h2>Payload bytes against ${heading}</h2><div class="charts" id="vs-bytes">`, ...charts.map((c) => figure(c.spec, c.measure)), '</div>');
  const rows = s.updates.flatMap((u) => u.rows);
  const drift = driftCharts(rows);
  if (drift.length) body.push('<h2>Chain drift from full fine-tuning over successive updates</h2><div class="charts" id="drift">', ...drift.map((c) => figure(c)), '</div>');
  const z = zstdChart(rows);
  if (z) body.push('<h2>Bytes saved vs zstd --patch-from of the fully fine-tuned weights</h2><div class="charts" id="vs-zstd">', figure(z), '</div>');

  const chains = chainTable(rows);
  if (chains) body.push('<h2>Chains: agreement and newly wrong after 1..N updates</h2>', `<p class="ref">${esc(CHAIN_NOTE)}</p>`, table(chains, 'chains'));

  body.push('<h2>All results</h2>');
  for (const u of s.updates) body.push(`<h3>Update ${u.update}${u.name ? `: ${esc(u.name)}` : ''}</h3><p class="ref">Reference: ${esc(u.referenceText)}.</p>`, table(updateTable(u, s)));
  return `<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>${esc(title)}</title><style>${CSS}</style></head><body>\n${body.join('\n')}\n</body></html>\n`;
}
