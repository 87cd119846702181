import type { Argv } from 'yargs';
import { readFile, writeFile } from 'node:fs/promises';
import { makeDirs } from '../../src/io/durable/durable.ts';
import { join } from 'node:path';
import { UsageError } from '../../src/core/errors.ts';
import { renderHtml, renderMarkdown, checkTargets } from '../../src/report/report.ts';
import { validateResults, type ResultRow } from '../../src/report/results.ts';
import type { CliIO } from '../common.ts';

export interface ReportArgs {
  results: string[];
  out: string;
  title: string;
}

export function reportCommand(y: Argv): Argv<ReportArgs> {
  return y
    .positional('results', { type: 'string', array: true, demandOption: true, describe: 'one or more JSON files: benchmark results (an array of rows: update, method, budgetPct, bytes, accAll, and optionally accOld, accNew, driftFromFull, trainSeconds) or `ndiff train --metrics-out` documents' })
    .option('out', { type: 'string', default: 'report', describe: 'folder for report.html and report.md (created if missing)' })
    .option('title', { type: 'string', default: 'neural-diff comparison' })
    .example('$0 report examples/keyword-spotting/results/full.json --out report/', 'write report/report.html (charts) and report/report.md')
    .example('$0 report runs/*.json --out report/', 'compare several `ndiff train --metrics-out` runs (sparse vs hash vs full at a few budgets)') as unknown as Argv<ReportArgs>;
}

async function readResultsFile(file: string): Promise<ResultRow[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new UsageError(`no results file at ${file}: run the benchmark (npm run bench:kws) or \`ndiff train --eval DATA --metrics-out FILE\` first, or check the path`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${file} is not valid JSON (${(e as Error).message})`);
  }
  return validateResults(data, file);
}

export async function runReport(a: ReportArgs, io: CliIO): Promise<number> {
  const files = a.results;
  const rows = (await Promise.all(files.map(readResultsFile))).flat();
  await makeDirs(a.out);
  const html = join(a.out, 'report.html');
  const md = join(a.out, 'report.md');
  await writeFile(html, renderHtml(rows, a.title));
  await writeFile(md, renderMarkdown(rows, a.title));
  const targets = checkTargets(rows);
  io.result?.({ html, markdown: md, rows: rows.length, files, targets });
  io.out(`wrote ${html} and ${md} from ${rows.length} rows of ${files.length} file${files.length === 1 ? '' : 's'}`);
  for (const c of targets.filter((t) => t.met !== null)) io.out(`  ${c.met ? 'met ' : 'MISS'}  ${c.target}: ${c.detail}`);
  const na = targets.filter((t) => t.met === null).length;
  if (na) io.out(`  (${na} of the ${targets.length} benchmark targets need rows these results do not have: see ${md})`);
  return 0;
}
