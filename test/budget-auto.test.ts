/**
 * `ndiff diff --budget auto` and `diff({ budget: 'auto' })`: the smallest budget of the grid whose
 * payload meets the quality target on `--eval`. On a small fine-tune (test/helpers/finetune.ts)
 * every grid budget is first measured alone (`--budget B`); the target is then set to a figure
 * only the k-th budget reaches, so the answer is known: the search must stop there, and write the
 * bytes `--budget B` alone writes. Also: a target nothing below the exact payload meets ends in
 * the exact payload, said so; the value-output (`--max-mean-abs-diff`) and label
 * (`--max-accuracy-drop`) targets; the library and the command agree byte for byte; bad
 * combinations are typed usage errors.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir, rm, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { main } from '../cli/ndiff.ts';
import type { CliIO } from '../cli/common.ts';
import { diff, type DiffOptions, type EvalCloseness } from '../src/front/diff.ts';
import { UsageError } from '../src/core/errors.ts';
import { DEFAULT_BUDGET_GRID } from '../src/front/quality-target.ts';
import { lessCloseThanBase } from '../src/train/eval-noise.ts';
import { saveNpy } from '../src/io/npy/files.ts';
import { clusterData, fineTunePair, FT_INPUTS } from './helpers/finetune.ts';
import { tempDir } from './helpers/dirs.ts';

let dir: string;
const at: Record<string, string> = {};

/** `ndiff ARGS --json` in this process: the exit code, the JSON document, stdout lines and stderr. */
async function ndiff(...argv: string[]): Promise<{ code: number; doc: Record<string, any>; out: string[]; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIO = { out: (l) => out.push(l), err: (l) => err.push(l), progress: (l) => err.push(l), result: (d) => out.push(JSON.stringify(d)) };
  const code = await main([...argv], io);
  let doc: Record<string, any> = {};
  try {
    doc = JSON.parse(out.find((l) => l.startsWith('{')) ?? '{}') as Record<string, any>;
  } catch {
    // left empty: the assertion on the code says what went wrong
  }
  return { code, doc, out, err: err.join('\n') };
}

before(async () => {
  dir = await tempDir('ndiff-budget-auto-');
  const pair = await fineTunePair();
  at.v1 = join(dir, 'v1');
  at.v2 = join(dir, 'v2');
  await pair.save(at.v1, pair.v1);
  await pair.save(at.v2, pair.v2);
  // Held-out examples of all 8 classes, with labels.
  at.eval = join(dir, 'eval');
  await mkdir(at.eval);
  const d = clusterData(400, 21);
  saveNpy(join(at.eval, 'x.npy'), d.x, [d.y.length, FT_INPUTS]);
  saveNpy(join(at.eval, 'y.npy'), d.y, [d.y.length]);
  // The same models with value outputs (the last layer linear), and inputs without labels.
  for (const v of ['v1', 'v2']) {
    at[`${v}-values`] = join(dir, `${v}-values`);
    await mkdir(at[`${v}-values`]);
    for (const f of await readdir(at[v])) {
      const bytes = await readFile(join(at[v], f));
      await writeFile(join(at[`${v}-values`], f), f === 'model.json' ? bytes.toString('utf8').replace('"activation":"softmax"', '"activation":"linear"') : bytes);
    }
  }
  at.inputs = join(dir, 'inputs');
  await mkdir(at.inputs);
  saveNpy(join(at.inputs, 'x.npy'), d.x, [d.y.length, FT_INPUTS]);
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Each default grid budget measured alone (`budget: B`, nothing written): its payload and closeness. */
async function sweep(base: string, target: string, evalDir: string): Promise<{ budget: string; payload: Uint8Array; eval: EvalCloseness }[]> {
  const rows = [];
  for (const budget of DEFAULT_BUDGET_GRID) {
    const r = await diff({ base, target, budget, modelId: 'mlp', method: 'lowbit', eval: evalDir, allowWorse: true });
    assert.ok(!r.structural && r.eval);
    rows.push({ budget, payload: r.payload, eval: r.eval });
  }
  return rows;
}

/** The first k ≥ 1 whose figure is strictly better than every smaller budget's (so a target at it is met first at k). */
function firstStrictImprovement(figures: number[], better: (a: number, b: number) => boolean): number {
  for (let k = 1; k < figures.length; k++) if (figures.slice(0, k).every((f) => better(figures[k], f))) return k;
  return -1;
}

/** Run the command and the library with the same options: the same payload bytes and JSON document (seconds aside). */
async function autoBothWays(o: Omit<DiffOptions, 'out'>, flags: string[], name: string) {
  const cliOut = join(dir, `${name}-cli.ndiff`);
  const libOut = join(dir, `${name}-lib.ndiff`);
  const cli = await ndiff('diff', '--base', o.base, '--target', o.target, '--model-id', 'mlp', '--method', 'lowbit', '--eval', o.eval as string, '--budget', 'auto', ...flags, '--out', cliOut, '--json');
  assert.equal(cli.code, 0, cli.err);
  const lib = await diff({ ...o, out: libOut });
  assert.deepEqual(new Uint8Array(await readFile(libOut)), new Uint8Array(await readFile(cliOut)), 'the library writes the bytes ndiff writes');
  const timeless = (d: Record<string, any>) => JSON.parse(JSON.stringify(d, (k, v) => (k === 'seconds' || k === 'out' ? undefined : v)));
  const { payload: _p, ...doc } = lib;
  assert.deepEqual(timeless(doc), timeless(cli.doc));
  return { cli, lib, bytes: new Uint8Array(await readFile(cliOut)) };
}

test('--min-agreement and --max-accuracy-drop: the smallest grid budget that meets the target, its bytes those of --budget B alone; the library the same bytes', async () => {
  const rows = await sweep(at.v1, at.v2, at.eval);
  // Agreement: the first budget strictly above every smaller one's; a target at its figure is met there first.
  const agreements = rows.map((r) => r.eval.patched.agreement);
  const k = firstStrictImprovement(agreements, (a, b) => a > b);
  assert.ok(k >= 1, `a budget above 0.5% agrees more than every smaller one: ${agreements.join(', ')}`);
  assert.ok(!lessCloseThanBase(rows[k].eval), 'the answer is no further from v2 than not updating');
  const { cli, lib, bytes } = await autoBothWays({ base: at.v1, target: at.v2, budget: 'auto', modelId: 'mlp', method: 'lowbit', eval: at.eval, minAgreement: agreements[k] }, ['--min-agreement', String(agreements[k])], 'agree');
  assert.equal(lib.structural, undefined);
  const search = cli.doc.budgetSearch;
  assert.equal(search.chosen, DEFAULT_BUDGET_GRID[k]);
  assert.equal(search.fallback, false);
  assert.deepEqual(search.grid, [...DEFAULT_BUDGET_GRID], 'the default grid');
  assert.deepEqual(search.tried.map((t: any) => t.budget), DEFAULT_BUDGET_GRID.slice(0, k + 1), 'ascending, stopping at the first that meets it');
  assert.deepEqual(search.tried.map((t: any) => t.figure), agreements.slice(0, k + 1), 'each tried budget measured as --budget B measures it');
  assert.deepEqual(bytes, rows[k].payload, 'the payload --budget B alone makes');
  // The command says every budget tried, with its figure and time, and the one chosen (on stderr as it goes).
  const said = cli.err.split('\n');
  assert.equal(said.filter((l) => /^budget auto: [\d.]+% \(.*\) post hoc: .*agreement [\d.]+%, in [\d.]+ s: /.test(l)).length, k + 1, cli.err);
  assert.ok(said.some((l) => l.startsWith(`budget auto: ${DEFAULT_BUDGET_GRID[k]} chosen (post hoc)`)), cli.err);
  // And --budget B itself, by the command: the same bytes.
  const alone = await ndiff('diff', '--base', at.v1, '--target', at.v2, '--model-id', 'mlp', '--method', 'lowbit', '--eval', at.eval, '--budget', DEFAULT_BUDGET_GRID[k], '--allow-worse', '--out', join(dir, 'alone.ndiff'));
  assert.equal(alone.code, 0, alone.err);
  assert.deepEqual(new Uint8Array(await readFile(join(dir, 'alone.ndiff'))), bytes);

  // Labels: accuracy points below v2's own; the first budget strictly closer than every smaller one's.
  const drops = rows.map((r) => 100 * ((r.eval.accuracyTarget as number) - (r.eval.accuracyAfter as number)));
  const j = firstStrictImprovement(drops, (a, b) => a < b);
  assert.ok(j >= 1, `a budget above 0.5% falls less below v2's accuracy: ${drops.join(', ')}`);
  assert.ok(!lessCloseThanBase(rows[j].eval));
  const byLabels = await autoBothWays({ base: at.v1, target: at.v2, budget: 'auto', modelId: 'mlp', method: 'lowbit', eval: at.eval, maxAccuracyDrop: drops[j] }, ['--max-accuracy-drop', String(drops[j])], 'labels');
  assert.equal(byLabels.cli.doc.budgetSearch.chosen, DEFAULT_BUDGET_GRID[j]);
  assert.deepEqual(byLabels.bytes, rows[j].payload);
});

test('--max-mean-abs-diff on value outputs: the smallest grid budget within the bound; a bound nothing meets ends in the exact payload, said so', async () => {
  const rows = await sweep(at['v1-values'], at['v2-values'], at.inputs);
  assert.equal(rows[0].eval.metric, 'mae', 'the outputs are values');
  const mads = rows.map((r) => r.eval.patched.meanAbsDiff);
  const k = firstStrictImprovement(mads, (a, b) => a < b);
  assert.ok(k >= 1, `a budget above 0.5% comes closer than every smaller one: ${mads.join(', ')}`);
  const o = { base: at['v1-values'], target: at['v2-values'], budget: 'auto', modelId: 'mlp', method: 'lowbit' as const, eval: at.inputs };
  const { cli, bytes } = await autoBothWays({ ...o, maxMeanAbsDiff: mads[k] }, ['--max-mean-abs-diff', String(mads[k])], 'values');
  assert.equal(cli.doc.budgetSearch.chosen, DEFAULT_BUDGET_GRID[k]);
  assert.deepEqual(bytes, rows[k].payload);
  // Agreement is no target for value outputs: refused, nothing written.
  await assert.rejects(diff({ ...o, minAgreement: 0.9, out: join(dir, 'never.ndiff') }), (e: unknown) => e instanceof UsageError && /outputs are values, not classes/.test(e.message));
  await assert.rejects(readFile(join(dir, 'never.ndiff')), { code: 'ENOENT' });

  // A bound below every lossy payload's (half the best one's): the exact payload, as --budget all writes it.
  const bound = Math.min(...mads) / 2;
  const none = await autoBothWays({ ...o, maxMeanAbsDiff: bound }, ['--max-mean-abs-diff', String(bound)], 'none');
  const search = none.cli.doc.budgetSearch;
  assert.equal(search.fallback, true);
  assert.equal(search.chosen, 'all');
  assert.equal(none.cli.doc.method, 'exact');
  assert.ok(search.tried.every((t: any) => !t.meets));
  assert.ok(none.cli.err.split('\n').some((l) => /^budget auto: nothing below the exact payload's .* met mean \|output − target\| ≤ .*: the exact payload \(--budget all\) written$/.test(l)), none.cli.err);
  const all = await ndiff('diff', '--base', o.base, '--target', o.target, '--model-id', 'mlp', '--budget', 'all', '--out', join(dir, 'all.ndiff'));
  assert.equal(all.code, 0, all.err);
  assert.deepEqual(none.bytes, new Uint8Array(await readFile(join(dir, 'all.ndiff'))));
});

test('budget auto: a missing, second or stray target, no --eval, a bad grid or value are typed usage errors, before any file is read', async () => {
  const o = { base: join(dir, 'absent-v1'), target: join(dir, 'absent-v2'), modelId: 'mlp', eval: at.eval };
  const refused = async (extra: Partial<DiffOptions>, words: RegExp) => {
    await assert.rejects(diff({ ...o, budget: 'auto', ...extra } as DiffOptions), (e: unknown) => e instanceof UsageError && words.test(e.message), JSON.stringify(extra));
  };
  await refused({}, /none was given: add one of minAgreement \(--min-agreement 0\.99\)/);
  await refused({ minAgreement: 0.99, maxMeanAbsDiff: 0.1 }, /exactly one quality target; found minAgreement \(--min-agreement\) and maxMeanAbsDiff/);
  await refused({ minAgreement: 1.5 }, /must be a share in \(0, 1\]/);
  await refused({ maxAccuracyDrop: -1 }, /accuracy points in \[0, 100\]/);
  await refused({ minAgreement: 0.99, eval: undefined }, /add eval \(--eval DATA\)/);
  await refused({ minAgreement: 0.99, budgetGrid: '1%,all' }, /entry "all" is not a byte budget/);
  await refused({ minAgreement: 0.99, budgetGrid: '1%,lots' }, /entry "lots"/);
  await assert.rejects(diff({ ...o, budget: '5%', minAgreement: 0.99 }), (e: unknown) => e instanceof UsageError && /is for budget auto \(--budget auto\).*budget is "5%"/.test(e.message));
  // The command: exit 2 (usage), the same words.
  const cli = await ndiff('diff', '--base', o.base, '--target', o.target, '--model-id', 'mlp', '--budget', 'auto', '--eval', at.eval, '--out', join(dir, 'x.ndiff'));
  assert.equal(cli.code, 2);
  assert.match(cli.err, /none was given: add one of --min-agreement 0\.99, --max-mean-abs-diff X or --max-accuracy-drop N/);
});

test('--budget-grid: the budgets given, tried in ascending order of bytes', async () => {
  const r = await ndiff('diff', '--base', at.v1, '--target', at.v2, '--model-id', 'mlp', '--method', 'lowbit', '--eval', at.eval, '--budget', 'auto', '--budget-grid', '4000,1%,2000', '--min-agreement', '1', '--out', join(dir, 'grid.ndiff'), '--json');
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(r.doc.budgetSearch.grid, ['1%', '2000', '4000'], '1% of 53 KB is 528 bytes: first');
});
