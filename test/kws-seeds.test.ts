/**
 * examples/keyword-spotting/seeds.ts: the benchmark's targets per run and on the mean over runs,
 * on result files written here (so the means and verdicts are known in advance).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ResultRow } from '../src/report/results.ts';
import { tempDir } from './helpers/dirs.ts';

const root = join(import.meta.dirname, '..');
const script = join(root, 'examples/keyword-spotting/seeds.ts');

/** Rows of one run: full, sparse 1% and 10% on two updates, plus a method only this run has. */
function run(full: [number, number], s1: [number, number], s10: [number, number], extra = false): ResultRow[] {
  const rows: ResultRow[] = [];
  for (const u of [1, 2]) {
    const f = full[u - 1];
    rows.push({ update: u, method: 'full', budgetPct: null, bytes: 1000, accAll: f, driftFromFull: 0 });
    rows.push({ update: u, method: 'sparse', budgetPct: 1, bytes: 10, accAll: s1[u - 1], driftFromFull: f - s1[u - 1] });
    rows.push({ update: u, method: 'sparse', budgetPct: 10, bytes: 100, accAll: s10[u - 1], driftFromFull: f - s10[u - 1] });
    if (extra) rows.push({ update: u, method: 'hash', budgetPct: 1, bytes: 10, accAll: 0.5, driftFromFull: f - 0.5 });
  }
  return rows;
}

test('seeds.ts: targets per run and on the mean of the runs, over the rows every run has', async () => {
  const dir = await tempDir('ndiff-seeds-');
  const a = join(dir, 'a.json');
  const b = join(dir, 'b.json');
  const out = join(dir, 'summary.md');
  // Run a: sparse 1% 2 points below full on update 2; run b: 1 point above. Mean: within 1 point.
  // Sparse 10% drift after update 2: 1.0 (a) and -0.2 (b), mean 0.4 (within 0.5).
  await writeFile(a, JSON.stringify(run([0.8, 0.8], [0.81, 0.78], [0.8, 0.79], true)));
  await writeFile(b, JSON.stringify(run([0.8, 0.8], [0.8, 0.81], [0.79, 0.802])));
  const r = spawnSync(process.execPath, ['--conditions=neural-diff-source', '--import', 'tsx', script, a, b, '--out', out], { encoding: 'utf8', cwd: root });
  assert.equal(r.status, 0, r.stderr);
  const text = await readFile(out, 'utf8');
  assert.equal(text, r.stdout, 'the summary file is what was printed');
  assert.match(text, /2 runs: .*a\.json, .*b\.json; 6 rows each \(full, sparse 1%, sparse 10%\)/, 'the hash rows of run a are left out');
  assert.match(text, /\| 1 \| 80\.0 \/ 80\.0 \| 81\.0 \/ 80\.0 \| 80\.0 \/ 79\.0 \|/);
  const line = (target: RegExp) => text.split('\n').find((l) => target.test(l)) as string;
  const within = line(/sparse diff at <= 1% of the model within 1\.0 point/).split('|').map((c) => c.trim());
  assert.match(within[2], /^no: .*\+1\.00, -2\.00 points/, 'run a');
  assert.match(within[3], /^yes: .*\+0\.00, \+1\.00 points/, 'run b');
  assert.match(within[4], /^yes: .*\+0\.50, -0\.50 points/, 'the mean');
  const drift = line(/chain drift within 0\.5 point/).split('|').map((c) => c.trim());
  assert.deepEqual([drift[2], drift[3], drift[4]].map((c) => c.split(':')[0]), ['no', 'yes', 'yes']);
  assert.match(drift[4], /drift 0\.40 points/);
  // The spread: update 2's gaps are -2 and +1 (mean -0.5, SD 2.12, SE 1.5); full does not move;
  // the drift after update 1 is 0 and 1 point.
  assert.match(text, /\| 1 \| 80\.00 ± 0\.00 \(0\.00\) \| \+0\.50 ± 0\.50 \(\+0\.00 to \+1\.00\) \| \+0\.50 ± 0\.50 \(\+0\.00 to \+1\.00\) \|/);
  assert.match(text, /\| 2 \| 80\.00 ± 0\.00 \(0\.00\) \| -0\.50 ± 1\.50 \(-2\.00 to \+1\.00\) \| \+0\.40 ± 0\.60 \(-0\.20 to \+1\.00\) \|/);
  // Each chain against its other seed: full agrees exactly; sparse 1% differs by 3 points on update 2.
  assert.match(text, /\| full \| 1 of 1 \| 0\.00 \|/);
  assert.match(text, /\| sparse 1% \| 0 of 1 \| 3\.00 \|/);
  assert.match(text, /\| sparse 10% \| 0 of 1 \| 1\.20 \|/);
});

test('seeds.ts: the best of the budgets at <= 1% per run, and a difference of exactly 1 point counts as within', async () => {
  const dir = await tempDir('ndiff-seeds-');
  const files = [0, 1, 2].map((i) => join(dir, `r${i}.json`));
  // 0.8551851851851852 - 0.8651851851851852 is 0.010000000000000009 in floating point: one point.
  const rows = (full: number, s05: number, s1: number): ResultRow[] => [
    { update: 1, method: 'full', budgetPct: null, bytes: 1000, accAll: full, driftFromFull: 0 },
    { update: 1, method: 'sparse', budgetPct: 0.5, bytes: 5, accAll: s05, driftFromFull: full - s05 },
    { update: 1, method: 'sparse', budgetPct: 1, bytes: 10, accAll: s1, driftFromFull: full - s1 },
  ];
  await writeFile(files[0], JSON.stringify(rows(0.8651851851851852, 0.86, 0.8551851851851852)));
  await writeFile(files[1], JSON.stringify(rows(0.8551851851851852, 0.84, 0.8651851851851852)));
  await writeFile(files[2], JSON.stringify(rows(0.86, 0.87, 0.82)));
  const r = spawnSync(process.execPath, ['--conditions=neural-diff-source', '--import', 'tsx', script, ...files], { encoding: 'utf8', cwd: root });
  assert.equal(r.status, 0, r.stderr);
  // Each run's best of 0.5% and 1%: -0.52, +1.00, +1.00 points: mean +0.49, SD 0.88, SE 0.51.
  assert.match(r.stdout, /\| 1 \| 86\.01 ± 0\.29 \(0\.50\) \| \+0\.49 ± 0\.51 \(-0\.52 to \+1\.00\) \|/);
  assert.match(r.stdout, /With 3 runs, a mean more than 4\.3 standard errors/);
  // Runs 1 and 2 of full and of sparse 1% differ by exactly one point: within (without the slack
  // of withinPoints full would be 2 of 3 and sparse 1% 0 of 3).
  assert.match(r.stdout, /\| full \| 3 of 3 \| 0\.48, 0\.52, 1\.00 \|/);
  assert.match(r.stdout, /\| sparse 1% \| 1 of 3 \| 1\.00, 3\.52, 4\.52 \|/);
  assert.match(r.stdout, /\| sparse 0\.5% \| 1 of 3 \| 1\.00, 2\.00, 3\.00 \|/);
});

test('seeds.ts refuses a single run, and runs without a full chain in common', async () => {
  const dir = await tempDir('ndiff-seeds-');
  const a = join(dir, 'a.json');
  const b = join(dir, 'b.json');
  await writeFile(a, JSON.stringify(run([0.8, 0.8], [0.8, 0.8], [0.8, 0.8])));
  await writeFile(b, JSON.stringify(run([0.8, 0.8], [0.8, 0.8], [0.8, 0.8]).filter((x) => x.method !== 'full')));
  const one = spawnSync(process.execPath, ['--conditions=neural-diff-source', '--import', 'tsx', script, a], { encoding: 'utf8', cwd: root });
  assert.notEqual(one.status, 0);
  assert.match(one.stderr, /expected at least two result files/);
  const noFull = spawnSync(process.execPath, ['--conditions=neural-diff-source', '--import', 'tsx', script, a, b], { encoding: 'utf8', cwd: root });
  assert.notEqual(noFull.status, 0);
  assert.match(noFull.stderr, /share no full fine-tuning rows/);
});
