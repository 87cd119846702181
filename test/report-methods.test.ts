/**
 * `ndiff report` keeps apart what was made differently: a lowbit payload trained toward the
 * teacher (`ndiff train --method lowbit --teacher`) and a post-hoc lowbit payload of the same
 * target (`ndiff diff --method lowbit --eval`) are two settings, never one averaged verdict; the
 * recommendation is the smallest payload within the tolerance; and `--method auto` counts the time
 * of every candidate it trained, not only the chosen one's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderMarkdown, summarize } from '../src/report/report.ts';
import { reportRows } from '../src/report/rows.ts';

const MODEL = 190_248;
const V2 = 190_300;

/** What `ndiff train --base v1.onnx --teacher v2.onnx --eval ... --metrics-out` writes (the fields the report reads). */
function trained(o: { method: string; budget: string; bytes: number; agreement: number; seconds?: number; auto?: unknown }) {
  return {
    kind: 'ndiff-train-metrics', format: 'onnx', method: o.method, modelId: 'cnn', sequence: 1, budgetBytes: Math.floor((MODEL * Number(o.budget.replace('%', ''))) / 100), budgetRequested: o.budget,
    bytes: o.bytes, modelBytes: MODEL, teacherModelBytes: V2, accuracyBefore: null, accuracyAfter: null, teacher: { loss: 'kl', metric: 'top1', temperature: 1, weight: 1, labels: false },
    teacherEval: { before: { examples: 2000, agreement: 0.9083, meanAbsDiff: 0.2 }, after: { examples: 2000, agreement: o.agreement, meanAbsDiff: 0.01 } }, trainSeconds: o.seconds ?? 60,
    ...(o.auto ? { auto: o.auto } : {}),
  };
}

/** What `ndiff diff --base v1.onnx --target v2.onnx --eval ... --metrics-out` writes. */
function postHoc(o: { method: string; budget: string; bytes: number; agreement: number }) {
  return {
    kind: 'ndiff-diff-metrics', method: o.method, modelId: 'cnn', sequence: 1, target: 'v2.onnx', budgetRequested: o.budget, bytes: o.bytes, modelBytes: MODEL, targetModelBytes: V2,
    budgetBytes: Math.floor((MODEL * Number(o.budget.replace('%', ''))) / 100),
    eval: { examples: 2000, metric: 'top1', base: { agreement: 0.9083, meanAbsDiff: 0.2 }, patched: { agreement: o.agreement, meanAbsDiff: 0.02 }, movesAway: false },
    accuracyBefore: null, accuracyAfter: null, trainSeconds: 2,
  };
}

const rowsOf = (docs: unknown[]) => docs.flatMap((d, i) => reportRows(d, `runs/${i}.json`));

test('a trained and a post-hoc lowbit payload at one budget stay two settings, and the verdict follows the table', () => {
  const rows = rowsOf([trained({ method: 'lowbit', budget: '1%', bytes: 1894, agreement: 0.9958 }), postHoc({ method: 'lowbit', budget: '1%', bytes: 1901, agreement: 0.9992 })]);
  const s = summarize(rows);
  assert.equal(s.measure, 'agreement');
  // Two settings, each measured on the one update: neither averaged into the other.
  assert.deepEqual(s.budgets.filter((b) => b.method !== 'teacher').map((b) => [b.label, b.updates, b.within, b.agreement?.mean]), [['lowbit (teacher) at 1%', 1, 1, 0.9958], ['lowbit (post hoc) at 1%', 1, 1, 0.9992]]);
  // Both are ticked in the table, so the verdict cannot say none is within the tolerance.
  assert.equal(s.recommendation.met, true);
  assert.match(s.recommendation.text, /^Recommended: lowbit \(teacher\) at 1% \(1\.89 KB, agreement 99\.58%\): the smallest payload within 1 point of the teacher, 0\.42 points below the teacher\./);
  const md = renderMarkdown(rows);
  assert.match(md, /\| lowbit \(teacher\) \| 1% \| 1,894 \| -0\.42 ✓ \| 99\.58% \|/);
  assert.match(md, /\| lowbit \(post hoc\) \| 1% \| 1,901 \| -0\.08 ✓ \| 99\.92% \|/);
});

test('with every run: the smallest payload within the tolerance, trained lowbit 1% over sparse 5%', () => {
  const rows = rowsOf([
    trained({ method: 'lowbit', budget: '1%', bytes: 1894, agreement: 0.9975 }),
    trained({ method: 'sparse', budget: '1%', bytes: 1890, agreement: 0.962 }),
    trained({ method: 'sparse', budget: '5%', bytes: 8115, agreement: 0.9983 }),
    postHoc({ method: 'lowbit', budget: '1%', bytes: 1901, agreement: 0.93 }),
    postHoc({ method: 'topk', budget: '5%', bytes: 9500, agreement: 0.95 }),
  ]);
  const s = summarize(rows);
  assert.equal(s.recommendation.choice?.label, 'lowbit (teacher) at 1%');
  assert.match(s.recommendation.text, /^Recommended: lowbit \(teacher\) at 1% \(1\.89 KB, agreement 99\.75%\): the smallest payload within 1 point of the teacher, 0\.25 points below the teacher\./);
  // The post-hoc lowbit row, 7 points below the teacher, keeps its own line and does not pull the trained one down.
  assert.match(renderMarkdown(rows), /\| lowbit \(post hoc\) \| 1% \| 1,901 \| -7\.00 \| 93\.00% \|/);
});

test('two runs of the same setting on one update are two rows of the summary, each with its file', () => {
  // Say a rerun with another seed: nothing in the files tells them apart but their names.
  const rows = rowsOf([trained({ method: 'lowbit', budget: '1%', bytes: 1894, agreement: 0.9958 }), trained({ method: 'lowbit', budget: '1%', bytes: 1899, agreement: 0.95 })]);
  const s = summarize(rows);
  const settings = s.budgets.filter((b) => b.method !== 'teacher');
  assert.equal(settings.length, 2);
  assert.ok(settings.every((b) => b.updates === 1));
  assert.match(s.recommendation.text, /^Recommended: lowbit \(teacher\) at 1% \(1\.89 KB, agreement 99\.58%\)/);
  assert.ok(settings.some((b) => b.label === 'lowbit (teacher) at 1% (runs/1.json)'));
});

test('auto reports the time of every candidate it trained', () => {
  const auto = {
    chosen: 'lowbit',
    candidates: [
      { method: 'lowbit', bytes: 1894, score: 0.996, seconds: 151 },
      { method: 'sparse', bytes: 1890, score: 0.97, seconds: 180.5 },
      { method: 'lora', bytes: 1880, score: 0.95, seconds: 120 },
      { method: 'sparse-lora', bytes: 1893, score: 0.96, seconds: 98.5 },
      { method: 'topk-retrain', seconds: 85, refused: 'below the base' },
    ],
  };
  // A file written before auto counted them all: trainSeconds is the chosen candidate's.
  const [row] = rowsOf([trained({ method: 'lowbit', budget: '1%', bytes: 1894, agreement: 0.9958, seconds: 151, auto })]);
  assert.equal(row.trainSeconds, 635);
  assert.equal(row.auto, 'lowbit');
  assert.match(renderMarkdown([row]), /\| lowbit \(teacher; auto's choice of 5\) \| 1% \| 1,894 \|.*\| 635\.0 \|/);
});
