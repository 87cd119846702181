import type { Argv } from 'yargs';
import { readFile, writeFile } from 'node:fs/promises';
import { makeDirs } from '../../src/io/durable/durable.ts';
import { join } from 'node:path';
import { UsageError } from '../../src/core/errors.ts';
import { htmlOf, markdownOf, summarize, DEFAULT_TOLERANCE } from '../../src/report/report.ts';
import type { ReportRow } from '../../src/report/results.ts';
import { reportRows } from '../../src/report/rows.ts';
import type { CliIO } from '../common.ts';
import { seeDocs } from '../help.ts';

export interface ReportArgs {
  results: string[];
  out: string;
  title: string;
  tolerance: number;
}

export function reportCommand(y: Argv): Argv<ReportArgs> {
  return y
    .usage(`ndiff report <metrics.json...> [--out DIR] [--tolerance POINTS]

Compare the payloads made for an update (the --metrics-out files of ndiff train and ndiff diff
--eval): writes report.html (charts) and report.md, and recommends the smallest payload within
--tolerance points of the best result, or of the teacher. How to read it:
docs/guides/choosing-a-budget.md.`)
    .positional('results', { type: 'string', array: true, demandOption: true, describe: 'metrics JSON files (--metrics-out) or benchmark results' })
    .option('out', { type: 'string', default: 'report', describe: 'folder for report.html and report.md' })
    .option('title', { type: 'string', default: 'neural-diff comparison', describe: 'heading of both files' })
    .option('tolerance', { type: 'number', default: DEFAULT_TOLERANCE, describe: 'points a payload may lose and still be recommended' })
    .example('$0 report runs/*.json --out report/', 'compare your runs (say sparse and hash at 0.5%, 1% and 5%) and print which to ship')
    .example('$0 report runs/*.json --tolerance 0.5', 'a stricter choice: within half a point of the best')
    .epilogue(seeDocs('report')) as unknown as Argv<ReportArgs>;
}

async function readResultsFile(file: string): Promise<ReportRow[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new UsageError(`no results file at ${file}: write one with \`ndiff train --eval DATA --metrics-out FILE\` or \`ndiff diff --eval INPUTS --metrics-out FILE\` first, or check the path`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${file} is not valid JSON (${(e as Error).message})`);
  }
  return reportRows(data, file);
}

export async function runReport(a: ReportArgs, io: CliIO): Promise<number> {
  if (!(a.tolerance >= 0)) throw new UsageError(`--tolerance expects points >= 0 (1 is one point of accuracy), found ${a.tolerance}`);
  const files = a.results;
  const rows = (await Promise.all(files.map(readResultsFile))).flat();
  const opts = { title: a.title, tolerance: a.tolerance };
  const summary = summarize(rows, opts);
  await makeDirs(a.out);
  const html = join(a.out, 'report.html');
  const md = join(a.out, 'report.md');
  await writeFile(html, htmlOf(summary, opts));
  await writeFile(md, markdownOf(summary, opts));
  const r = summary.recommendation;
  io.result?.({
    html, markdown: md, rows: rows.length, files, measure: summary.measure, tolerance: summary.tolerance, updates: summary.updates.length,
    recommendation: { text: r.text, met: r.met, ...(r.choice ? { choice: { setting: r.choice.label, method: r.choice.method, teacher: r.choice.teacher, budget: r.choice.budget, meanBytes: r.choice.meanBytes, within: r.choice.within, worstGap: r.choice.worstGap } } : {}) },
  });
  io.out(`wrote ${html} and ${md} from ${rows.length} rows of ${files.length} file${files.length === 1 ? '' : 's'}`);
  io.out(r.text);
  return 0;
}
