import type { Argv } from 'yargs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UsageError } from '../../src/core/errors.ts';
import { renderHtml, renderMarkdown, checkTargets } from '../../src/report/report.ts';
import { validateResults } from '../../src/report/results.ts';
import type { CliIO } from '../common.ts';

export interface ReportArgs {
  results: string;
  out: string;
  title: string;
}

export function reportCommand(y: Argv): Argv<ReportArgs> {
  return y
    .positional('results', { type: 'string', demandOption: true, describe: 'results JSON (an array of rows: update, method, budgetPct, bytes, accAll, accOld, accNew, driftFromFull, trainSeconds)' })
    .option('out', { type: 'string', default: 'report', describe: 'folder for report.html and report.md' })
    .option('title', { type: 'string', default: 'neural-diff comparison' })
    .example('$0 report examples/keyword-spotting/results/full.json --out report/', 'write report/report.html (charts) and report/report.md') as unknown as Argv<ReportArgs>;
}

export async function runReport(a: ReportArgs, io: CliIO): Promise<number> {
  let text: string;
  try {
    text = await readFile(a.results, 'utf8');
  } catch {
    throw new UsageError(`no results file at ${a.results}: run the benchmark first (npm run bench:kws) or pass its JSON`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${a.results} is not valid JSON (${(e as Error).message})`);
  }
  const rows = validateResults(data, a.results);
  await mkdir(a.out, { recursive: true });
  await writeFile(join(a.out, 'report.html'), renderHtml(rows, a.title));
  await writeFile(join(a.out, 'report.md'), renderMarkdown(rows, a.title));
  io.out(`wrote ${join(a.out, 'report.html')} and ${join(a.out, 'report.md')} from ${rows.length} rows`);
  for (const c of checkTargets(rows)) io.out(`  ${c.met === null ? 'n/a' : c.met ? 'met ' : 'MISS'}  ${c.target}: ${c.detail}`);
  return 0;
}
