/** The report as Markdown: recommendation, how to read it, a caller's targets, the per-budget summary and every update's table. */
import { howToRead } from './guide.ts';
import type { ReportRow } from './results.ts';
import { summarize, type RenderOptions, type ReportSummary } from './summary.ts';
import { budgetTable, chainTable, CHAIN_NOTE, updateTable, type Table } from './tables.ts';

const cell = (s: string) => s.replace(/\|/g, '\\|');

function table(t: Table): string[] {
  return [`| ${t.head.map(cell).join(' | ')} |`, `|${t.head.map(() => '---').join('|')}|`, ...t.rows.map((r) => `| ${r.cells.map(cell).join(' | ')} |`)];
}

/** The Markdown report of `rows` (see {@link summarize} for what it concludes). */
export function renderMarkdown(rows: readonly ReportRow[], opts: RenderOptions = {}): string {
  return markdownOf(summarize(rows, opts), opts);
}

/** The Markdown report of a summary already made. */
export function markdownOf(s: ReportSummary, opts: RenderOptions = {}): string {
  const out: string[] = [`# ${opts.title ?? 'neural-diff comparison'}`, '', `**${s.recommendation.text}**`, '', ...howToRead(s).map((l) => `- ${l}`)];
  const varies = s.updates.filter((u) => u.baseVaries).map((u) => u.update);
  if (varies.length) out.push(`- The base differs between rows of update${varies.length > 1 ? 's' : ''} ${varies.join(', ')}: they started from different models (each chain's own device) or were measured on different data.`);
  if (s.notCompared.length) out.push(`- ${s.notCompared.length} payload(s) lack ${s.measure} and are left out of the comparison: ${s.notCompared.map((r) => `${r.method} ${r.budget ?? r.budgetPct ?? ''} (update ${r.update})`).join(', ')}.`);
  if (opts.targets?.length) {
    out.push('', '## Targets', '', '| target | met | measured |', '|---|---|---|');
    for (const c of opts.targets) out.push(`| ${cell(c.target)} | ${c.met === null ? 'n/a' : c.met ? 'yes' : '**no**'} | ${cell(c.detail)} |`);
  }
  if (s.updates.length > 1) out.push('', `## Each budget across the ${s.updates.length} updates`, '', ...table(budgetTable(s)));
  const chains = chainTable(s.updates.flatMap((u) => u.rows));
  if (chains) out.push('', '## Chains: agreement and newly wrong after 1..N updates', '', CHAIN_NOTE, '', ...table(chains));
  for (const u of s.updates) {
    out.push('', `## Update ${u.update}${u.name ? `: ${u.name}` : ''}`, '', `Reference: ${u.referenceText}.`, '', ...table(updateTable(u, s)));
  }
  return out.join('\n') + '\n';
}
