/**
 * The keyword benchmark's report: `ndiff report`'s Markdown and HTML of its results, with the
 * benchmark's own targets (targets.ts) and the teacher chains held against their teacher, each
 * update's full fine-tune.
 *
 *   npm run report:kws                      results/full.json -> results/report.md and report.html
 *   node --conditions=neural-diff-source --import tsx examples/keyword-spotting/report.ts \
 *     [--results FILE] [--out DIR] [--tolerance POINTS]
 */
import { fileURLToPath } from 'node:url';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { htmlOf, markdownOf, summarize, type RenderOptions } from '../../src/report/report.ts';
import { validateResults } from '../../src/report/results.ts';
import { checkTargets } from './targets.ts';
import { teacherLabelsMarkdown } from './teacher-labels.ts';

const here = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({ options: { results: { type: 'string' }, out: { type: 'string' }, tolerance: { type: 'string', default: '1' } } });
const file = resolve(args.results ?? join(here, 'results', 'full.json'));
const out = resolve(args.out ?? dirname(file));
const tolerance = Number(args.tolerance);
if (!(tolerance >= 0)) throw new Error(`--tolerance expects points >= 0, found ${JSON.stringify(args.tolerance)}`);

const rows = validateResults(JSON.parse(readFileSync(file, 'utf8')), file);
const n = new Set(rows.map((r) => r.update)).size;
const opts: RenderOptions = { title: `Keyword spotting: ${n} successive update${n === 1 ? '' : 's'}`, tolerance, teacherIs: 'full', targets: checkTargets(rows) };
const summary = summarize(rows, opts);
mkdirSync(out, { recursive: true });
// The teacher chains read against the labels (teacher-labels.ts) close the Markdown report.
const labels = teacherLabelsMarkdown(rows);
writeFileSync(join(out, 'report.md'), markdownOf(summary, opts) + (labels ? `\n${labels}` : ''));
writeFileSync(join(out, 'report.html'), htmlOf(summary, opts));
console.log(`wrote ${join(out, 'report.md')} and report.html from ${rows.length} rows`);
console.log(summary.recommendation.text);
for (const c of opts.targets ?? []) console.log(`  ${c.met === null ? 'n/a ' : c.met ? 'met ' : 'MISS'}  ${c.target}: ${c.detail}`);
