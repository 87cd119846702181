import type { Argv } from 'yargs';
import { REPORT_DEFAULTS } from '../../src/front/report.ts';
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
    .option('out', { type: 'string', default: REPORT_DEFAULTS.out, describe: 'folder for report.html and report.md' })
    .option('title', { type: 'string', default: REPORT_DEFAULTS.title, describe: 'heading of both files' })
    .option('tolerance', { type: 'number', default: REPORT_DEFAULTS.tolerance, describe: 'points a payload may lose and still be recommended' })
    .example('$0 report runs/*.json --out report/', 'compare your runs (say sparse and hash at 0.5%, 1% and 5%) and print which to ship')
    .example('$0 report runs/*.json --tolerance 0.5', 'a stricter choice: within half a point of the best')
    .epilogue(seeDocs('report')) as unknown as Argv<ReportArgs>;
}

/** `ndiff report`: one call of the library's {@link report}, its result printed. */
export async function runReport(a: ReportArgs, io: CliIO): Promise<number> {
  const { report } = await import('../../src/front/report.ts');
  const r = await report({ results: a.results, out: a.out, title: a.title, tolerance: a.tolerance });
  io.result?.(r);
  io.out(`wrote ${r.html} and ${r.markdown} from ${r.rows} rows of ${r.files.length} file${r.files.length === 1 ? '' : 's'}`);
  io.out(r.recommendation.text);
  return 0;
}
