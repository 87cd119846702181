/**
 * How far the keyword benchmark's targets move with the training seed alone.
 *
 * The committed run (`results/full.json`, seed offset 0) gives one figure per (update, method,
 * budget); its evaluation sets hold 2,380-5,532 clips, so a single accuracy is known to about
 * ±1.2-1.5 points (95%), wider than the 0.5- and 1-point targets. This script takes that run and
 * reruns of a subset with other seeds (`bench.ts --seed-offset N --out results/seeds/offset-N.json`),
 * and prints, per seed and for the mean over seeds, the benchmark's targets (the same
 * definitions as its report: targets.ts `checkTargets`) on the rows every run has. It then gives how
 * precisely the runs pin the figures the targets compare (mean ± standard error per update), and
 * how often two seeds of the same chain agree within 1 point on every update: the resolution a
 * single run has, against which one run's "within 1 point" can be read.
 *
 *   node --conditions=neural-diff-source --import tsx examples/keyword-spotting/seeds.ts \
 *     [results/full.json results/seeds/offset-1.json ...] [--out results/seeds/summary.md]
 *
 * Without file arguments it reads results/full.json and every results/seeds/offset-*.json.
 */
import { fileURLToPath } from 'node:url';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { withinPoints } from '../../src/report/report.ts';
import { checkTargets, smallSparseGap } from './targets.ts';
import { validateResults, type ResultRow } from '../../src/report/results.ts';

const here = dirname(fileURLToPath(import.meta.url));
const { values: args, positionals } = parseArgs({ options: { out: { type: 'string' } }, allowPositionals: true });

const files = positionals.length
  ? positionals.map((f) => resolve(f))
  : [join(here, 'results', 'full.json'), ...readdirSync(join(here, 'results', 'seeds')).filter((f) => /^offset-\d+\.json$/.test(f)).sort().map((f) => join(here, 'results', 'seeds', f))];
if (files.length < 2) throw new Error(`expected at least two result files (the committed run and a rerun with --seed-offset), found ${files.length}: ${files.join(', ')}`);

const key = (r: ResultRow) => `${r.update}|${r.method}|${r.budgetPct}`;
// The label-trained chains (teacher chains, issue #33, are compared in the report, not across seeds here).
const runs = files.map((f) => ({ file: f, rows: validateResults(JSON.parse(readFileSync(f, 'utf8')), f).filter((r) => !r.teacher) }));
// The rows every run has (a rerun may cover a subset of the methods and budgets).
const common = new Set(runs[0].rows.map(key));
for (const run of runs.slice(1)) {
  const has = new Set(run.rows.map(key));
  for (const k of [...common]) if (!has.has(k)) common.delete(k);
}
if (![...common].some((k) => k.includes('|full|'))) throw new Error('the runs share no full fine-tuning rows: every run must include the full chain');
const shared = runs.map((run) => ({ ...run, rows: run.rows.filter((r) => common.has(key(r))) }));

/** Rows whose accuracies are the mean over the runs; drift recomputed from the means. */
function meanRows(): ResultRow[] {
  const out = shared[0].rows.map((r) => {
    const same = shared.map((s) => s.rows.find((x) => key(x) === key(r)) as ResultRow);
    const mean = (f: (x: ResultRow) => number | null | undefined) => {
      const v = same.map(f).filter((x): x is number => typeof x === 'number');
      return v.length === same.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
    };
    // Which payload a budget shipped differs run to run: the mean row is of what shipped.
    const { shippedFrom: _from, ownAccAll: _own, ownBytes: _ownBytes, ...rest } = r;
    return { ...rest, accAll: mean((x) => x.accAll) as number, accOld: mean((x) => x.accOld), accNew: mean((x) => x.accNew), bytes: Math.round(mean((x) => x.bytes) as number) };
  });
  for (const r of out) {
    const full = out.find((x) => x.update === r.update && x.method === 'full');
    r.driftFromFull = r.method === 'full' || !full ? null : full.accAll - r.accAll;
  }
  return out;
}

const pt = (x: number) => (100 * x).toFixed(1);
const lines: string[] = [];
const budgets = [...new Set(shared[0].rows.filter((r) => r.method !== 'full' && r.method !== 'zstd').map((r) => `${r.method} ${r.budgetPct}%`))];
lines.push(`# Keyword benchmark targets across seeds`, '', `${shared.length} runs: ${shared.map((s) => s.file.replace(`${here}/`, '')).join(', ')}; ${common.size} rows each (full, ${budgets.join(', ')}${[...common].some((k) => k.includes('|zstd|')) ? ', zstd' : ''}).`, '');
lines.push('## Accuracy (all classes so far), per run', '');
const ups = [...new Set(shared[0].rows.map((r) => r.update))].sort((a, b) => a - b);
// zstd rows carry the full chain's accuracy (the same model, shipped as a byte diff): not a column.
const cols = [...new Set(shared[0].rows.filter((r) => r.method !== 'zstd').map((r) => `${r.method}|${r.budgetPct}`))];
/** A column's heading: `full`, `sparse 1%`. */
const colName = (c: string) => c.replace('|null', '').replace('|', ' ') + (c.endsWith('null') ? '' : '%');
lines.push(`| update | ${cols.map(colName).join(' | ')} |`, `|---|${cols.map(() => '---:').join('|')}|`);
/** The accuracy of column `c` (`method|budget`) on update `u` in `rows`. */
const acc = (rows: ResultRow[], u: number, c: string) => rows.find((r) => r.update === u && `${r.method}|${r.budgetPct}` === c)?.accAll;
for (const u of ups) {
  const cell = (c: string) => shared.map((s) => acc(s.rows, u, c)).map((a) => (a === undefined ? '-' : pt(a))).join(' / ');
  lines.push(`| ${u} | ${cols.map(cell).join(' | ')} |`);
}

const mean = meanRows();
lines.push('', '## Targets, per run and on the mean over the runs', '', '| target | ' + shared.map((_, i) => `run ${i + 1}`).join(' | ') + ' | mean of the runs |', `|---|${shared.map(() => '---').join('|')}|---|`);
const perRun = shared.map((s) => checkTargets(s.rows));
const onMean = checkTargets(mean);
for (let t = 0; t < onMean.length; t++) {
  if (onMean[t].met === null && perRun.every((c) => c[t].met === null)) continue;
  const verdict = (c: { met: boolean | null; detail: string }) => `${c.met === null ? 'n/a' : c.met ? 'yes' : 'no'}: ${c.detail}`;
  lines.push(`| ${onMean[t].target} | ${perRun.map((c) => verdict(c[t])).join(' | ')} | ${verdict(onMean[t])} |`);
}

/** Mean, standard error (SD / sqrt(n)), SD across the runs and range of `v` (fractions), in points. */
function spread(v: number[]): { mean: number; se: number; sd: number; min: number; max: number } {
  const m = v.reduce((x, y) => x + y, 0) / v.length;
  const sd = Math.sqrt(v.reduce((x, y) => x + (y - m) ** 2, 0) / (v.length - 1));
  return { mean: 100 * m, se: (100 * sd) / Math.sqrt(v.length), sd: 100 * sd, min: 100 * Math.min(...v), max: 100 * Math.max(...v) };
}
/** Student's t at 97.5% for 1-10 degrees of freedom; beyond, 10's value (a little wider than the truth, never narrower). */
const T975 = [12.71, 4.3, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23];
const t975 = T975[Math.min(shared.length - 2, T975.length - 1)];
const signed = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(2)}`;
/** The values of `f` over the runs, or undefined when a run lacks one. */
const overRuns = (f: (rows: ResultRow[]) => number | undefined): number[] | undefined => {
  const v = shared.map((s) => f(s.rows));
  return v.every((x): x is number => x !== undefined) ? v : undefined;
};
const hasSmall = shared[0].rows.some((r) => r.method === 'sparse' && r.budgetPct !== null && r.budgetPct <= 1);
const has10 = cols.includes('sparse|10');
lines.push('', '## How far the seed alone moves the figures', '');
lines.push(
  `Mean over the runs ± its standard error (the SD across the runs over the square root of their number), in points. ` +
    `With ${shared.length} runs, a mean more than ${t975} standard errors from a value differs from it beyond the seed at 95% ` +
    `(Student's t, ${shared.length - 1} degrees of freedom). The gap column takes each run's best budget at <= 1%, ` +
    `so it can differ from the targets' "mean of the runs", which takes the best of the budgets' means.`,
  '',
);
const head = ['update', 'full: mean ± SE (SD across runs)'];
if (hasSmall) head.push("each run's best sparse <= 1% minus full: mean ± SE (range)");
if (has10) head.push('full minus sparse 10% (drift): mean ± SE (range)');
lines.push(`| ${head.join(' | ')} |`, `|---|${head.slice(1).map(() => '---:').join('|')}|`);
const withRange = (v: number[] | undefined) => {
  if (!v) return '-';
  const g = spread(v);
  return `${signed(g.mean)} ± ${g.se.toFixed(2)} (${signed(g.min)} to ${signed(g.max)})`;
};
for (const u of ups) {
  const fv = overRuns((rows) => acc(rows, u, 'full|null'));
  const f = fv && spread(fv);
  const cells = [`${u}`, f ? `${f.mean.toFixed(2)} ± ${f.se.toFixed(2)} (${f.sd.toFixed(2)})` : '-'];
  if (hasSmall) cells.push(withRange(overRuns((rows) => smallSparseGap(rows, u))));
  if (has10) {
    cells.push(withRange(overRuns((rows) => {
      const full = acc(rows, u, 'full|null');
      const s10 = acc(rows, u, 'sparse|10');
      return full === undefined || s10 === undefined ? undefined : full - s10;
    })));
  }
  lines.push(`| ${cells.join(' | ')} |`);
}
// Each chain against a rerun of itself: how often two seeds of one method agree within 1 point on
// every update (the tolerance the sparse diff is held to against full, from withinPoints).
const pairs: [number, number][] = [];
for (let i = 0; i < shared.length; i++) for (let j = i + 1; j < shared.length; j++) pairs.push([i, j]);
lines.push('', `Each chain against another seed of itself, over the ${pairs.length} pairs of runs: the largest difference over the updates both runs have, and in how many pairs it is within 1.0 point on every update.`, '');
lines.push('| chain | pairs within 1.0 point on every update | largest difference per pair (points) |', '|---|---:|---|');
for (const c of cols) {
  const worst = pairs
    .map(([i, j]) => Math.max(...ups.map((u) => {
      const a = acc(shared[i].rows, u, c);
      const b = acc(shared[j].rows, u, c);
      return a === undefined || b === undefined ? 0 : Math.abs(a - b);
    })))
    .sort((a, b) => a - b);
  lines.push(`| ${colName(c)} | ${worst.filter((w) => withinPoints(w, 1)).length} of ${pairs.length} | ${worst.map((w) => (100 * w).toFixed(2)).join(', ')} |`);
}

const text = lines.join('\n') + '\n';
process.stdout.write(text);
if (args.out) writeFileSync(resolve(args.out), text);
