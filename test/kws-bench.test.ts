/**
 * The keyword-spotting benchmark in quick mode (a few words, one update, budgets 0.5% and 1%),
 * end to end: data generation (espeak-ng & co. installed with apt-get if missing), base model,
 * every method's chain, zstd --patch-from, then `ndiff report` and the benchmark's own report,
 * rendered in headless Chromium with its charts checked.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { main } from '../cli/ndiff.ts';
import { nativeAddonStatus } from '../src/engine/kernels/native/index.ts';
import { validateResults, type ResultRow } from '../src/report/results.ts';
import { tempDir } from './helpers/dirs.ts';
import { findChromium, CHROMIUM_ARGS } from './helpers/chromium.ts';
import { benchmarkSkip } from './helpers/benchmarks.ts';

const root = join(import.meta.dirname, '..');

test('quick keyword-spotting benchmark, then the report renders with its charts', { skip: benchmarkSkip, timeout: 960_000 }, async (t) => {
  const dir = await tempDir('ndiff-kws-');
  const out = join(dir, 'quick.json');
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'examples/keyword-spotting/bench.ts'), '--quick', '--data', join(dir, 'data'), '--work', join(dir, 'work'), '--out', out], { encoding: 'utf8', cwd: root, timeout: 900_000 });
  if (r.status !== 0 && /could not install|ToolsUnavailable|apt-get/.test(r.stderr + r.stdout) && process.getuid?.() !== 0) {
    t.skip(`speech tools unavailable and not root: ${r.stderr.slice(-300)}`);
    return;
  }
  assert.equal(r.status, 0, `bench failed:\n${r.stdout.slice(-2000)}\n${r.stderr.slice(-2000)}`);
  const rows: ResultRow[] = validateResults(JSON.parse(await readFile(out, 'utf8')), out);
  const full = rows.find((x) => x.method === 'full' && x.update === 1) as ResultRow;
  assert.ok(full, 'full fine-tuning row');
  // --backend auto (the default), as ndiff train: native when its addon loads, and each row says which ran.
  assert.equal(full.backend, nativeAddonStatus().available ? 'native' : 'wasm');
  assert.ok(rows.every((x) => x.backend === full.backend), 'every row trained on the one backend');
  const modelBytes = full.bytes;
  for (const [method, budgets] of [['sparse', [0.5, 1]], ['hash', [0.5, 1]], ['lora', [1]], ['sparse-lora', [1]], ['topk-retrain', [1]], ['topk', [0.5, 1]], ['drop', [0.5, 1]], ['lowrank', [0.5, 1]]] as const) {
    for (const b of budgets) {
      const row = rows.find((x) => x.method === method && x.budgetPct === b && x.update === 1 && !x.teacher);
      assert.ok(row, `${method} ${b}%`);
      assert.ok(row.bytes <= Math.floor((modelBytes * b) / 100), `${method} ${b}%: ${row.bytes} bytes over budget`);
      assert.ok(Math.abs((row.driftFromFull as number) - (full.accAll - row.accAll)) < 1e-6);
      for (const k of ['accAll', 'accOld', 'accNew'] as const) assert.ok(typeof row[k] === 'number' && (row[k] as number) >= 0 && (row[k] as number) <= 1, `${method} ${b}% ${k}`);
    }
  }
  // Budgets compete (--compete on, the default): a budget that ships a smaller budget's payload
  // ships exactly its bytes, and says what its own result gave.
  for (const row of rows.filter((x) => typeof x.shippedFrom === 'string')) {
    // The label is the chain's: `sparse 0.5%`, or `sparse (teacher) 0.5%`.
    const parts = (row.shippedFrom as string).split(' ');
    const [m, b] = [parts[0], parts[parts.length - 1]];
    const from = rows.find((x) => x.method === m && `${x.budgetPct}%` === b && x.update === row.update && !!x.teacher === !!row.teacher);
    assert.ok(from && from.bytes === row.bytes && from.accAll === row.accAll, `${row.method} ${row.budgetPct}% ships ${row.shippedFrom}'s payload`);
    assert.ok(typeof row.ownAccAll === 'number' && typeof row.ownBytes === 'number', 'its own result is measured too');
  }
  // Every chain of an update validates on the same rows, and the larger budget never lower.
  for (const m of ['sparse', 'hash'] as const) {
    const [a, b] = [0.5, 1].map((p) => rows.find((x) => x.method === m && x.budgetPct === p && x.update === 1 && !x.teacher) as ResultRow);
    assert.ok((b.valAccuracy as number) >= (a.valAccuracy as number), `${m}: 1% validates ${b.valAccuracy}, 0.5% ${a.valAccuracy}`);
  }
  // Teacher chains (quick: sparse, lowbit and post-hoc top-k of the teacher at 1%): trained toward the
  // full chain's model without labels, measured by agreement with it.
  for (const method of ['sparse', 'topk', 'lowbit'] as const) {
    const row = rows.find((x) => x.method === method && x.budgetPct === 1 && x.update === 1 && x.teacher === true);
    assert.ok(row, `${method} (teacher) 1%`);
    assert.ok(typeof row.agreement === 'number' && row.agreement >= 0 && row.agreement <= 1, `${method} (teacher) 1%: agreement ${row.agreement}`);
    assert.ok(row.bytes <= Math.floor(modelBytes / 100), `${method} (teacher) 1%: ${row.bytes} bytes over budget`);
    if (row.refused) assert.equal(row.bytes, 0, 'a refused teacher diff ships nothing');
    assert.ok(typeof row.teacherAccAll === 'number' && row.teacherAccAll >= 0 && row.teacherAccAll <= 1, `${method} (teacher) 1%: its teacher's held-out accuracy beside its own (${row.teacherAccAll})`);
  }
  // The lowbit teacher chain (quick: 1%), with its baselines measured post hoc from the same
  // weights: Delta-CoMe at the bytes it shipped, BitDelta's code and post-hoc lowbit at BitDelta's bytes.
  const low = rows.find((x) => x.method === 'lowbit' && x.budgetPct === 1 && x.update === 1 && x.teacher === true);
  assert.ok(low, 'lowbit (teacher) 1%');
  assert.ok(low.bytes <= Math.floor(modelBytes / 100), `lowbit (teacher) 1%: ${low.bytes} bytes over budget`);
  if (!low.refused) {
    const a = low.anchors as Record<'deltaCome' | 'bitDelta' | 'lowbitAtBitDelta' | 'lowbitPostHoc', { bytes: number; agreement: number; accAll: number }>;
    assert.ok(a.deltaCome.bytes <= low.bytes, `Delta-CoMe ${a.deltaCome.bytes} bytes within lowbit's ${low.bytes}`);
    assert.ok(a.lowbitAtBitDelta.bytes <= a.bitDelta.bytes && a.lowbitPostHoc.bytes <= Math.floor(modelBytes / 100));
    for (const x of Object.values(a)) assert.ok(x.agreement >= 0 && x.agreement <= 1 && x.accAll >= 0 && x.accAll <= 1);
  }
  const z = rows.find((x) => x.method === 'zstd');
  assert.ok(z && z.bytes > 0 && z.bytes < modelBytes, 'zstd --patch-from row');

  const lines: string[] = [];
  const code = await main(['report', out, '--out', join(dir, 'report')], { out: (l) => lines.push(l), err: (l) => lines.push(l), progress: () => {} });
  assert.equal(code, 0, lines.join('\n'));
  const md = await readFile(join(dir, 'report', 'report.md'), 'utf8');
  assert.match(md, /\| sparse \| 0\.5% \|/);
  assert.match(md, /^\*\*(Recommended|No payload is within)/m, 'the recommendation line');
  assert.doesNotMatch(md, /## Targets/, "ndiff report leaves the benchmark's targets to the benchmark's own report");
  // The benchmark's own report: the same, with its targets checked.
  const own = spawnSync(process.execPath, ['--conditions=neural-diff-source', '--import', 'tsx', join(root, 'examples/keyword-spotting/report.ts'), '--results', out, '--out', join(dir, 'kws-report')], { encoding: 'utf8', cwd: root });
  assert.equal(own.status, 0, own.stderr);
  assert.match(await readFile(join(dir, 'kws-report', 'report.md'), 'utf8'), /## Targets\n\n\| target \| met \| measured \|\n\|---\|---\|---\|\n\| sparse diff at <= 1% of the model within 1\.0 point of full fine-tuning/);
  // Issue #46's targets are checked where lowbit teacher rows exist (quick: at 1% only, so 5% cannot tell).
  const ownMd = await readFile(join(dir, 'kws-report', 'report.md'), 'utf8');
  assert.match(ownMd, /\| teacher lowbit at 1%: agrees with the teacher on >= 95\.00% of held-out predictions on every update \| (yes|\*\*no\*\*) \|/);
  assert.match(ownMd, /\| teacher lowbit at 5%: [^|]+ \| n\/a \| no teacher lowbit row at 5%/);

  const chrome = findChromium();
  if ('skip' in chrome) {
    t.diagnostic(chrome.skip);
    return;
  }
  const browser = await chromium.launch({ executablePath: chrome.path, headless: true, args: CHROMIUM_ARGS });
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 1600 } });
    await page.goto('file://' + join(dir, 'report', 'report.html'));
    const charts = await page.$$eval('svg.chart', (els) => els.map((e) => ({ measure: e.closest('figure')?.getAttribute('data-measure') ?? null, points: e.querySelectorAll('.point').length, box: (e as SVGSVGElement).getBoundingClientRect().width })));
    // accuracy vs bytes (1 update; and agreement when teacher rows carry it) + vs zstd (1); no drift over a single update
    const agreement = rows.some((x) => typeof x.agreement === 'number');
    assert.equal(charts.length, 2 + (agreement ? 1 : 0), JSON.stringify(charts));
    for (const c of charts) {
      assert.ok(c.points > 0, 'every chart has data points');
      assert.ok(c.box > 300, 'charts are laid out at a readable size');
    }
    // One point per distinct payload: a budget that shipped a smaller budget's payload is drawn once.
    const shipped = rows.filter((x) => x.update === 1 && x.bytes > 0 && !x.refused);
    const distinct = new Set(shipped.map((x) => `${x.method}|${!!x.teacher}|${x.bytes}|${x.accAll}`)).size;
    assert.equal(charts.find((c) => c.measure === 'accuracy')?.points, distinct, 'one point per distinct payload in the accuracy chart');
    const png = await page.screenshot({ fullPage: true });
    assert.ok(png.length > 20_000, 'the page renders');
  } finally {
    await browser.close();
  }
});
