import type { Argv } from 'yargs';
import { readFile, writeFile } from 'node:fs/promises';
import { makeDirs } from '../../src/io/durable/durable.ts';
import { join } from 'node:path';
import { UsageError } from '../../src/core/errors.ts';
import { htmlOf, markdownOf, summarize, DEFAULT_TOLERANCE } from '../../src/report/report.ts';
import type { ReportRow } from '../../src/report/results.ts';
import { reportRows } from '../../src/report/rows.ts';
import type { CliIO } from '../common.ts';

export interface ReportArgs {
  results: string[];
  out: string;
  title: string;
  tolerance: number;
}

export function reportCommand(y: Argv): Argv<ReportArgs> {
  return y
    .usage(`ndiff report <metrics.json...> [--out DIR] [--tolerance POINTS]

Compare the payloads you made for an update and choose a budget. Give it the metrics files of
your runs (\`ndiff train ... --eval DATA --metrics-out m.json\`, \`ndiff diff ... --eval INPUTS
--metrics-out m.json\`), one per method and budget; it writes report.html (charts) and report.md,
and prints one recommendation: the smallest payload within --tolerance points of the best result,
or of the teacher when the runs were trained toward one (ndiff train --teacher).

What it compares: accuracy on your --eval data when every run had labels (y.npy); otherwise, for
runs with a teacher and unlabeled --eval inputs, top-1 agreement with the teacher (the share of
inputs on which the payload predicts what the new version predicts), or for outputs without
classes the share of the base's mean output distance to the teacher the payload closes.
Each run also measured the model devices hold before the update: the report's base row (zero
bytes). Runs of several updates (--sequence 1, 2, ...) get a per-budget summary across updates,
and the recommendation is then the setting within tolerance on every update.

Reading the report (the band, the base line, points marked at the edge) and choosing the
tolerance: docs/guides/choosing-a-budget.md.`)
    .positional('results', { type: 'string', array: true, demandOption: true, describe: 'JSON files: metrics of `ndiff train --metrics-out` and `ndiff diff --eval ... --metrics-out` (one per run), or benchmark results (an array of rows: update, method, budgetPct, bytes, accAll or agreement, and optionally teacher, accBefore, accOld, accNew, driftFromFull, trainSeconds)' })
    .option('out', { type: 'string', default: 'report', describe: 'folder for report.html and report.md (created if missing)' })
    .option('title', { type: 'string', default: 'neural-diff comparison', describe: 'heading of both files (say, the model and the update)' })
    .option('tolerance', { type: 'number', default: DEFAULT_TOLERANCE, describe: 'points (of accuracy, or of agreement with the teacher) a payload may lose against the best result, or the teacher, and still be recommended: the smallest payload within it is the one to ship' })
    .example('$0 report runs/*.json --out report/', 'compare your runs (say sparse and hash at 0.5%, 1% and 5%) and print which to ship')
    .example('$0 report runs/*.json --tolerance 0.5', 'a stricter choice: within half a point of the best')
    .example('$0 report v1-v2-teacher-*.json v1-v2-topk-*.json', 'teacher diffs (ndiff train --teacher v2) beside post-hoc diffs of v2 (ndiff diff --target v2 --eval), compared by agreement with v2 when the inputs had no labels') as unknown as Argv<ReportArgs>;
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
