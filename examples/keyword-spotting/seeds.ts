/**
 * How far the keyword benchmark's targets move with the training seed alone.
 *
 * The committed run (`results/full.json`, seed offset 0) gives one figure per (update, method,
 * budget); its evaluation sets hold 2,380-5,532 clips, so a single accuracy is known to about
 * ±1.2-1.5 points (95%), wider than the 0.5- and 1-point targets. This script takes that run and
 * reruns of a subset with other seeds (`bench.ts --seed-offset N --out results/seeds/offset-N.json`),
 * and prints, per seed and for the mean over seeds, the targets of `ndiff report` (the same
 * definitions: src/report/report.ts `checkTargets`) on the rows every run has.
 *
 *   node --conditions=neural-diff-source --import tsx examples/keyword-spotting/seeds.ts \
 *     [results/full.json results/seeds/offset-1.json ...] [--out results/seeds/summary.md]
 *
 * Without file arguments it reads results/full.json and every results/seeds/offset-*.json.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { checkTargets } from '../../src/report/report.ts';
import { validateResults, type ResultRow } from '../../src/report/results.ts';

const here = dirname(new URL(import.meta.url).pathname);
const { values: args, positionals } = parseArgs({ options: { out: { type: 'string' } }, allowPositionals: true });

const files = positionals.length
  ? positionals.map((f) => resolve(f))
  : [join(here, 'results', 'full.json'), ...readdirSync(join(here, 'results', 'seeds')).filter((f) => /^offset-\d+\.json$/.test(f)).sort().map((f) => join(here, 'results', 'seeds', f))];
if (files.length < 2) throw new Error(`expected at least two result files (the committed run and a rerun with --seed-offset), found ${files.length}: ${files.join(', ')}`);

const key = (r: ResultRow) => `${r.update}|${r.method}|${r.budgetPct}`;
const runs = files.map((f) => ({ file: f, rows: validateResults(JSON.parse(readFileSync(f, 'utf8')), f) }));
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
lines.push(`| update | ${cols.map((c) => c.replace('|null', '').replace('|', ' ') + (c.endsWith('null') ? '' : '%')).join(' | ')} |`, `|---|${cols.map(() => '---:').join('|')}|`);
for (const u of ups) {
  const cell = (c: string) => shared.map((s) => s.rows.find((r) => `${r.method}|${r.budgetPct}` === c && r.update === u)).map((r) => (r ? pt(r.accAll) : '-')).join(' / ');
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
const text = lines.join('\n') + '\n';
process.stdout.write(text);
if (args.out) writeFileSync(resolve(args.out), text);
