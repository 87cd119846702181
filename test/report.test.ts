/**
 * `ndiff report` on a user's metrics files (what `ndiff train --metrics-out` and `ndiff diff
 * --eval ... --metrics-out` write): the recommendation line and what it compared, the base row,
 * budgets labelled as asked, one point per distinct payload, the y-axis fitted to the learned
 * methods, runs with a teacher and no labels, several updates, and the page at a phone's width.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { main } from '../cli/ndiff.ts';
import { renderHtml, renderMarkdown, summarize } from '../src/report/report.ts';
import { askedBudget } from '../src/report/metrics.ts';
import { reportRows } from '../src/report/rows.ts';
import { UsageError } from '../src/core/errors.ts';
import { tempDir } from './helpers/dirs.ts';
import { CHROMIUM_ARGS, findChromium } from './helpers/chromium.ts';

const MODEL = 136_488;

/** A metrics file as `ndiff train --metrics-out` writes it (the fields the report reads, and some it does not). */
function trainMetrics(o: { method: string; budget: string | null; bytes: number; acc: number | null; before?: number | null; sequence?: number; teacher?: Record<string, unknown>; selection?: unknown[] }) {
  const pct = o.budget ? Number(o.budget.replace('%', '')) : 0;
  return {
    kind: 'ndiff-train-metrics', method: o.method, modelId: 'digits', sequence: o.sequence ?? 1,
    // What parseBudget makes of the percentage: whole bytes, so 1% is 0.9994% of this model.
    budgetBytes: o.budget ? Math.floor((MODEL * pct) / 100) : 0, budgetRequested: o.budget,
    bytes: o.bytes, modelBytes: MODEL, accuracyBefore: o.before === undefined ? 0.6 : o.before, accuracyAfter: o.acc,
    validation: null, tuning: { mode: 'off', learningRate: 0.003 }, trainSeconds: 5.5, batchSize: 32, backend: 'wasm', seed: 0,
    ...(o.teacher ? { teacher: { path: 'v2/', modelBytes: MODEL, loss: 'kl', metric: 'top1', temperature: 2, weight: 1, labels: false, ...o.teacher } } : {}),
    ...(o.selection ? { selection: o.selection } : {}),
  };
}

/** A metrics file as `ndiff diff --eval INPUTS --metrics-out` writes it. */
function diffMetrics(o: { budget: string; bytes: number; agreement: number; acc?: number }) {
  return {
    kind: 'ndiff-diff-metrics', method: 'topk', modelId: 'digits', sequence: 1, target: 'v2/', budgetRequested: o.budget, bytes: o.bytes, modelBytes: MODEL, targetModelBytes: MODEL,
    eval: { examples: 1800, metric: 'top1', base: { agreement: 0.7128, meanAbsDiff: 0.0543 }, patched: { agreement: o.agreement, meanAbsDiff: 0.05 }, movesAway: o.agreement < 0.7128, ...(o.acc !== undefined ? { accuracyBefore: 0.6, accuracyAfter: o.acc, accuracyTarget: 0.905 } : {}) },
    accuracyBefore: o.acc !== undefined ? 0.6 : null, accuracyAfter: o.acc ?? null, trainSeconds: 0.3,
  };
}

/** Runs with labelled evaluation data: learned diffs at four budgets (10% shipped 5%'s payload), hash, full, and a post-hoc top-k far below. */
const labelled = [
  trainMetrics({ method: 'sparse', budget: '0.5%', bytes: 665, acc: 0.85 }),
  trainMetrics({ method: 'sparse', budget: '1%', bytes: 1364, acc: 0.893 }),
  trainMetrics({ method: 'sparse', budget: '5%', bytes: 6307, acc: 0.9 }),
  trainMetrics({ method: 'sparse', budget: '10%', bytes: 6307, acc: 0.9, selection: [{ label: 'sparse lr 3.0e-3 epoch 3', bytes: 13648, valAccuracy: 0.9, chosen: false }, { label: '--also-consider runs/sparse-5%.ndiff', bytes: 6307, valAccuracy: 0.9, chosen: true }] }),
  trainMetrics({ method: 'hash', budget: '1%', bytes: 1364, acc: 0.87 }),
  trainMetrics({ method: 'full', budget: null, bytes: 137_020, acc: 0.905 }),
  trainMetrics({ method: 'topk', budget: '1%', bytes: 1363, acc: 0.55 }),
];
const rowsOf = (docs: unknown[]) => docs.flatMap((d, i) => reportRows(d, `run-${i}.json`));

test('a budget is labelled as it was asked: 1%, not the 0.9994% its bytes make', () => {
  assert.deepEqual(askedBudget('1%', 1364, MODEL), { budget: '1%', budgetPct: 1 });
  // A file that did not record what was asked: the share rounded when it is within 0.2% of it.
  assert.deepEqual(askedBudget(undefined, 1364, MODEL), { budget: '1%', budgetPct: 1 });
  assert.deepEqual(askedBudget(undefined, 1500, MODEL), { budget: '1.1%', budgetPct: 1.1 });
  assert.deepEqual(askedBudget('40KB', 40_000, MODEL), { budget: '40KB', budgetPct: 29.3 });
  const md = renderMarkdown(rowsOf(labelled));
  assert.match(md, /\| sparse \| 1% \| 1,364 \| 89\.30% \|/);
  assert.doesNotMatch(md, /0\.999/);
});

test('the recommendation is the smallest payload within the tolerance of the best, and says what it compared', () => {
  const rows = rowsOf(labelled);
  const text = summarize(rows).recommendation.text;
  assert.match(text, /^Recommended: sparse at 5% \(6\.31 KB, accuracy 90\.00%\): the smallest payload within 1 point of the best result, 0\.50 points below the best result\./);
  assert.match(text, /Compared: accuracy on the evaluation data, 7 settings \(method and budget\); reference: the best result, 90\.50%; tolerance 1 point/);
  assert.match(summarize(rows, { tolerance: 2 }).recommendation.text, /^Recommended: sparse at 1% \(1\.36 KB, accuracy 89\.30%\): the smallest payload within 2 points/);
  assert.match(summarize(rows, { tolerance: 0 }).recommendation.text, /^Recommended: full fine-tuning \(137 KB/);
});

test('the base row: the model devices hold before the update, zero bytes, its gap to the reference', () => {
  const md = renderMarkdown(rowsOf(labelled));
  assert.match(md, /\| base \(before the update\) \| - \| 0 \| 60\.00% \| -30\.50 \|/);
  // Rows measured from different bases (or on different data) say so.
  const mixed = rowsOf([...labelled.slice(0, 2), trainMetrics({ method: 'hash', budget: '1%', bytes: 1364, acc: 0.87, before: 0.58 })]);
  assert.match(renderMarkdown(mixed), /\| base \(each chain before the update\) \| - \| 0 \| 58\.00%-60\.00% \|/);
  assert.match(renderMarkdown(mixed), /The base differs between rows of update 1/);
});

test('identical payloads are drawn once; the y-axis fits the learned methods and marks what falls below', () => {
  const html = renderHtml(rowsOf(labelled));
  const chart = /<figure data-measure="accuracy">([\s\S]*?)<\/figure>/.exec(html)?.[1] ?? '';
  const sparseLine = /<polyline class="series" data-name="sparse \(learned\)"[^>]*points="([^"]+)"/.exec(chart)?.[1] ?? '';
  assert.equal(sparseLine.split(' ').length, 3, `four sparse rows, three distinct payloads: ${sparseLine}`);
  assert.match(chart, /<title>sparse 5%, 10% \(one payload\): 6\.31 KB, 90\.0%<\/title>/);
  // The post-hoc top-k (55%) and the base (60%) are below an axis fitted to 85-90.5%.
  assert.match(chart, /class="point off-axis"[^>]*fill="#2ca02c"><title>topk 1%: 1\.36 KB, 55\.0% \(below the axis\)/);
  assert.match(chart, /<figcaption>▼ below the axis: base \(0 bytes\) 60\.0%; top-k of full FT 55\.0% \(1%\)<\/figcaption>/);
  const ticks = [...chart.matchAll(/text-anchor="end">([\d.]+)<\/text>/g)].map((m) => Number(m[1]));
  assert.ok(Math.min(...ticks) >= 84 && Math.max(...ticks) <= 91, `y ticks ${ticks}`);
  // The tolerance band below the best.
  assert.match(chart, /<rect class="band"[^>]*><title>within 1 point of the best result, 90\.50%<\/title>/);
  // The row that shipped another file's payload says so.
  assert.match(renderMarkdown(rowsOf(labelled)), /\| sparse \(ships runs\/sparse-5%\.ndiff's payload\) \| 10% \| 6,307 \|/);
  // A user's report shows no benchmark targets.
  assert.doesNotMatch(html, /Targets/);
});

test('runs trained toward a teacher without labels are compared by agreement with it', () => {
  const teacher = (budget: string, bytes: number, agreementAfter: number) => trainMetrics({ method: 'sparse', budget, bytes, acc: null, before: null, teacher: { eval: { examples: 1800, agreementBefore: 0.7128, agreementAfter, meanAbsDiffBefore: 0.0543, meanAbsDiffAfter: 0.01 } } });
  const rows = rowsOf([teacher('0.5%', 665, 0.897), teacher('1%', 1364, 0.992), teacher('5%', 6307, 0.995), diffMetrics({ budget: '1%', bytes: 1363, agreement: 0.7122 }), diffMetrics({ budget: '25%', bytes: 34_122, agreement: 1 })]);
  assert.ok(rows.every((r) => r.teacher && r.accAll === null));
  const s = summarize(rows);
  assert.equal(s.measure, 'agreement');
  assert.match(s.recommendation.text, /^Recommended: sparse \(teacher\) at 1% \(1\.36 KB, agreement 99\.20%\): the smallest payload within 1 point of the teacher, 0\.80 points below the teacher\./);
  assert.match(s.recommendation.text, /Compared: top-1 agreement with the teacher on the evaluation inputs, 5 settings \(method and budget\); reference: the teacher \(the new version itself\), which agrees with itself on 100%/);
  const md = renderMarkdown(rows);
  assert.match(md, /\| base \(before the update\) \| - \| 0 \| -28\.72 \| 71\.28% \|/);
  assert.match(md, /\| sparse \(teacher\) \| 1% \| 1,364 \| -0\.80 ✓ \| 99\.20% \|/);
  assert.match(md, /\| topk \(post hoc\) \| 1% \| 1,363 \| -28\.78 \| 71\.22% \|/);
  assert.match(md, /\| the teacher, shipped whole \| - \| 136,488 \| \+0\.00 ✓ \| 100% \|/);
  // Stricter than any payload: the closest, and shipping the teacher whole named with its size.
  const strict = summarize(rows.filter((r) => r.method === 'sparse'), { tolerance: 0.2 }).recommendation;
  assert.equal(strict.met, false);
  assert.match(strict.text, /^No payload is within 0\.2 points of the teacher\. Closest: sparse \(teacher\) at 5% .*or ship the new version whole \(136 KB\)\./);
});

test('ONNX runs (closeness as onnxruntime measured it) and outputs without classes (the distance to the teacher closed)', () => {
  // ndiff train --base model.onnx --teacher v6.onnx: teacherEval, the teacher's file size.
  const onnx = (budget: string, bytes: number, after: number) => ({
    kind: 'ndiff-train-metrics', format: 'onnx', method: 'sparse', modelId: 'vad', sequence: 1, budgetBytes: bytes, budgetRequested: budget, bytes, modelBytes: 50_000, teacherModelBytes: 52_000,
    accuracyBefore: null, accuracyAfter: null, teacher: { loss: 'kl', metric: 'top1', temperature: 2, weight: 1, labels: false },
    teacherEval: { before: { examples: 900, agreement: 0.7, meanAbsDiff: 0.2 }, after: { examples: 900, agreement: after, meanAbsDiff: 0.05 } }, trainSeconds: 30,
  });
  const rows = rowsOf([onnx('1%', 500, 0.95), onnx('5%', 2500, 0.995)]);
  assert.deepEqual(rows.map((r) => [r.budget, r.agreement, r.agreementBefore, r.teacherBytes]), [['1%', 0.95, 0.7, 52_000], ['5%', 0.995, 0.7, 52_000]]);
  assert.match(summarize(rows).recommendation.text, /^Recommended: sparse \(teacher\) at 5% \(2\.5 KB, agreement 99\.50%\)/);
  // A regressor: no classes, so no agreement (NaN, written as null); closeness is the share of the base's distance closed.
  const regressor = (budget: string, bytes: number, mad: number) => trainMetrics({ method: 'hash', budget, bytes, acc: null, before: null, teacher: { loss: 'mse', metric: 'mae', eval: { examples: 400, agreementBefore: null, agreementAfter: null, meanAbsDiffBefore: 0.4, meanAbsDiffAfter: mad } } });
  const reg = rowsOf([regressor('1%', 1364, 0.1), regressor('5%', 6824, 0.012), regressor('10%', 13_648, 0.01)]);
  const s = summarize(reg);
  assert.equal(s.measure, 'closeness');
  // 1 - 0.012/0.4 = 97.0% of the distance closed, 3 points short of the teacher; 10% closes 97.5%.
  assert.match(s.recommendation.text, /^No payload is within 1 point of the teacher\. Closest: hash \(teacher\) at 10% \(13\.6 KB, distance closed 97\.50%\), 2\.50 points below the teacher/);
  assert.match(summarize(reg, { tolerance: 3 }).recommendation.text, /^Recommended: hash \(teacher\) at 5% .*Compared: share of the base's mean output distance to the teacher that the update closes/);
  assert.match(renderMarkdown(reg), /\| base \(before the update\) \| - \| 0 \| -100\.00 \| 0\.400 \|/);
});

test('several updates: a per-budget summary, and the setting within tolerance on every update', () => {
  const docs = [1, 2].flatMap((sequence) => [
    trainMetrics({ method: 'sparse', budget: '1%', bytes: 1364, acc: sequence === 1 ? 0.9 : 0.85, sequence }),
    trainMetrics({ method: 'sparse', budget: '5%', bytes: 6300 + sequence, acc: sequence === 1 ? 0.905 : 0.9, sequence }),
    trainMetrics({ method: 'full', budget: null, bytes: 137_020, acc: sequence === 1 ? 0.91 : 0.902, sequence }),
  ]);
  const rows = rowsOf(docs);
  const s = summarize(rows);
  assert.match(s.recommendation.text, /^Recommended: sparse at 5% \(6\.3 KB\): /);
  assert.match(s.recommendation.text, /within 1 point of the best result on all 2 updates, 0\.50 points below the best result at worst \(update 1\)/);
  const md = renderMarkdown(rows);
  assert.match(md, /## Each budget across the 2 updates/);
  assert.match(md, /\| sparse at 1% \| 2 \| 1\.36 KB \| 87\.50% \| 85\.00% \| -5\.20 \(u2\) \| 1 of 2 \|/);
  assert.match(md, /\| sparse at 5% \| 2 \| 6\.3 KB \| 90\.25% \| 90\.00% \| -0\.50 \(u1\) \| 2 of 2 \|/);
});

test('a run that measured nothing on evaluation data is refused with what to do', () => {
  assert.throws(() => reportRows(trainMetrics({ method: 'sparse', budget: '1%', bytes: 1364, acc: null }), 'm.json'), (e: unknown) => e instanceof UsageError && /m\.json: nothing measured on evaluation data.*--eval DATA/.test(e.message));
  assert.throws(() => reportRows({ kind: 'ndiff-train-metrics', method: 'magic', bytes: 1, modelBytes: 2, accuracyAfter: 0.5 }, 'm.json'), /"method" must be one of/);
});

test('ndiff report on metrics files: the recommendation printed, --tolerance, --json; benchmark rows get no targets', async (t) => {
  const dir = await tempDir('ndiff-report-');
  const files: string[] = [];
  for (const [i, doc] of labelled.entries()) {
    files.push(join(dir, `run-${i}.json`));
    await writeFile(files[i], JSON.stringify(doc));
  }
  const lines: string[] = [];
  const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l), progress: () => {} };
  assert.equal(await main(['report', ...files, '--out', join(dir, 'r'), '--tolerance', '2'], io), 0, lines.join('\n'));
  assert.ok(lines.some((l) => /^Recommended: sparse at 1% /.test(l)), lines.join('\n'));
  const md = await readFile(join(dir, 'r', 'report.md'), 'utf8');
  assert.match(md, /^# neural-diff comparison\n\n\*\*Recommended: sparse at 1%/);
  lines.length = 0;
  assert.equal(await main(['report', ...files, '--out', join(dir, 'r'), '--tolerance', '-1'], io), 2);
  assert.ok(lines.some((l) => /--tolerance expects points >= 0/.test(l)), lines.join('\n'));
  // Benchmark rows (the keyword benchmark's format): compared, without the benchmark's targets.
  const bench = join(dir, 'bench.json');
  await writeFile(bench, JSON.stringify([{ update: 1, method: 'full', budgetPct: null, bytes: 1000, accAll: 0.8 }, { update: 1, method: 'sparse', budgetPct: 1, bytes: 10, accAll: 0.795 }]));
  lines.length = 0;
  assert.equal(await main(['report', bench, '--out', join(dir, 'b')], io), 0, lines.join('\n'));
  assert.doesNotMatch(await readFile(join(dir, 'b', 'report.md'), 'utf8'), /Targets|zstd --patch-from at no more/);
  assert.ok(lines.some((l) => /^Recommended: sparse at 1% \(10 B/.test(l)), lines.join('\n'));

  // The page at a phone's width: nothing wider than the screen but the tables, which scroll in their own box.
  const chrome = findChromium();
  if ('skip' in chrome) {
    t.diagnostic(chrome.skip);
    return;
  }
  const browser = await chromium.launch({ executablePath: chrome.path, headless: true, args: CHROMIUM_ARGS });
  try {
    for (const width of [390, 1366]) {
      const page = await browser.newPage({ viewport: { width, height: 800 } });
      await page.goto('file://' + join(dir, 'r', 'report.html'));
      const m = await page.evaluate(() => ({
        overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
        charts: Array.from(document.querySelectorAll('svg.chart')).map((e) => e.getBoundingClientRect().width),
        recommendation: (document.querySelector('#recommendation') as HTMLElement).getBoundingClientRect().top,
      }));
      assert.equal(m.overflow, 0, `${width}px: the page does not scroll sideways`);
      assert.ok(m.charts.length === 1 && m.charts.every((w) => w > 300 && w <= width), `${width}px: charts ${m.charts}`);
      assert.ok(m.recommendation < 200, `${width}px: the recommendation is at the top (${m.recommendation}px)`);
      await page.close();
    }
  } finally {
    await browser.close();
  }
});
