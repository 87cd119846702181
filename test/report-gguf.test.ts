/**
 * `ndiff report` on the metrics of GGUF payloads (`ndiff diff --eval TEXT --metrics-out` on two
 * .gguf models): their distance to the target is the mean KL(target || model) llama.cpp measured,
 * shown under its own name; and when greedy agreement cannot tell the payloads apart (every one and
 * the base agree with the target on every position, as the versions of a barely trained model do),
 * they are compared by the share of the base's KL each closes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderMarkdown, summarize } from '../src/report/report.ts';
import { reportRows } from '../src/report/rows.ts';

const MODEL = 3_314_688;

/** A metrics file as `ndiff diff --budget B --eval TEXT --metrics-out` writes it for two .gguf models. */
function ggufMetrics(budget: string, bytes: number, patched: { agreement: number; meanKl: number }, base = { agreement: 1, meanKl: 0.4761 }) {
  return {
    kind: 'ndiff-diff-metrics', method: 'ongrid', modelId: 'pairs', sequence: 1, target: 'v2-q4_k_m.gguf', budgetRequested: budget,
    bytes, modelBytes: MODEL, targetModelBytes: MODEL, budgetBytes: Math.floor((MODEL * Number(budget.replace('%', ''))) / 100),
    baseFingerprint: 'a', targetFingerprint: 'b', formatVersion: 8, accuracyBefore: null, accuracyAfter: null, trainSeconds: 3,
    eval: { kind: 'gguf-llama', eval: 'held-out.txt', positions: 4096, base: { ...base, perplexity: 1316.9 }, patched: { ...patched, perplexity: 1100 }, targetPerplexity: 1097.1, movesAway: false, runtime: { package: 'node-llama-cpp', version: '3.21.1' } },
  };
}

const rowsOf = (docs: unknown[]) => docs.flatMap((d, i) => reportRows(d, `metrics-${i}.json`));

test('agreement alike everywhere: the payloads are compared by the share of the base\'s KL they close, the column named as KL', () => {
  const rows = rowsOf([ggufMetrics('10%', 323_865, { agreement: 1, meanKl: 0.0576 }), ggufMetrics('25%', 806_470, { agreement: 1, meanKl: 0.0186 })]);
  assert.ok(rows.every((r) => r.distance === 'kl' && r.meanAbsDiffBefore === 0.4761));
  const s = summarize(rows, { tolerance: 5 });
  assert.equal(s.measure, 'closeness');
  // Against the target itself (all of the distance closed): 10% closes 87.9% of the KL, 25% 96.1%.
  assert.match(s.recommendation.text, /^Recommended: ongrid \(post hoc\) at 25% \(806 KB, distance closed 96\.09%\): the smallest payload within 5 points/);
  assert.match(summarize(rows, { tolerance: 13 }).recommendation.text, /^Recommended: ongrid \(post hoc\) at 10% \(324 KB, distance closed 87\.90%\)/);
  const md = renderMarkdown(rows);
  assert.match(md, /\| mean KL to target \|/);
  assert.ok(!md.includes('mean abs. Δ from teacher'));
  assert.match(md, /0\.0576/);
});

test('agreement that tells the payloads apart still decides; the KL is shown beside it', () => {
  const base = { agreement: 0.4495, meanKl: 0.5957 };
  const rows = rowsOf([ggufMetrics('5%', 26_253, { agreement: 0.4971, meanKl: 0.2891 }, base), ggufMetrics('10%', 52_826, { agreement: 0.4914, meanKl: 0.2489 }, base)]);
  const s = summarize(rows, { tolerance: 60 });
  assert.equal(s.measure, 'agreement');
  assert.match(s.recommendation.text, /^Recommended: ongrid \(post hoc\) at 5% \(26\.3 KB, agreement 49\.71%\)/);
  assert.match(renderMarkdown(rows), /\| mean KL to target \|/);
});
