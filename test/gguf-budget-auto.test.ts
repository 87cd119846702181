/**
 * `ndiff diff --eval TEXT` and `--budget auto --min-agreement A` on two GGUF models, measured
 * through llama.cpp on the stories260K pair (test/vectors/gguf/stories): the search writes the
 * smallest grid budget whose patched model agrees with v2 on at least A of the held-out text's
 * next tokens, the same bytes as that budget alone; a target nothing meets writes the exact
 * payload, said so; a payload no closer to v2 than v1 is refused (exit 10) and nothing written; a
 * target that is no agreement is refused before any work. A release (`release add --method topk
 * --budget auto --eval TEXT`) signs the payload the same search chooses.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MissingDependencyError, UsageError } from '../src/core/errors.ts';
import { diff } from '../src/front/diff.ts';
import { loadLlamaRuntime } from '../src/front/measure/llama-runtime.ts';
import { GGUF_VECTORS } from './helpers/gguf-pairs.ts';
import { runNdiff } from './helpers/ndiff-run.ts';

const llamaSkip = await loadLlamaRuntime().then(() => false as const, (e: unknown) => {
  if (e instanceof MissingDependencyError) return `node-llama-cpp is not installed (set NEURAL_DIFF_LLAMA_DIR or run scripts/install-llama.sh): ${e.message.split('\n')[0]}`;
  throw e;
});

const v1 = join(GGUF_VECTORS, 'stories', 'v1.gguf');
const v2 = join(GGUF_VECTORS, 'stories', 'v2.gguf');
const text = join(GGUF_VECTORS, 'stories', 'held-out.txt');
let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'ndiff-gguf-auto-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const common = ['--base', v1, '--target', v2, '--model-id', 'tiny', '--eval', text];
/** Set by the first test: an agreement between the 20% and the 50% payloads' on this pair. */
let between: number | undefined;
const json = (out: string) => JSON.parse(out) as { bytes: number; method: string; llamaEval?: { positions: number; patched: { agreement: number }; base: { agreement: number }; movesAway: boolean }; budgetSearch?: { chosen: string; fallback: boolean; tried: { budget: string; figure?: number; meets: boolean }[] } };

test('budget auto: the smallest grid budget meeting the agreement, byte for byte that budget alone; nothing meets: the exact payload, said so', { skip: llamaSkip }, async () => {
  // The figures of each budget alone, measured as --eval measures them (in process: one runtime).
  const alone = async (budget: string) => {
    const r = await diff({ base: v1, target: v2, modelId: 'tiny', eval: text, budget, allowWorse: true, metricsOut: join(dir, `metrics-${budget}.json`) });
    assert.ok(!r.structural);
    const e = r.llamaEval;
    assert.ok(e, 'eval measured the payload');
    return { figure: e.patched.agreement, base: e.base.agreement, bytes: Buffer.from(r.payload) };
  };
  const [small, large] = [await alone('20%'), await alone('50%')];
  assert.ok(large.figure > small.figure, `50% (${large.figure}) agrees with v2 more often than 20% (${small.figure}) on this pair`);

  // Their metrics files make report rows (ndiff report), compared by agreement with v2 as measured.
  const rep = await runNdiff('report', join(dir, 'metrics-20%.json'), join(dir, 'metrics-50%.json'), '--out', join(dir, 'report'), '--tolerance', '0.5', '--json');
  assert.equal(rep.code, 0, rep.err);
  const report = JSON.parse(rep.out) as { rows: number; recommendation: { choice?: { method: string; budget: string | null; meanBytes: number } } };
  assert.equal(report.rows, 2);
  assert.deepEqual([report.recommendation.choice?.method, report.recommendation.choice?.budget, report.recommendation.choice?.meanBytes], ['ongrid', '50%', large.bytes.length], 'the 50% payload: 20% is more than half a point behind');
  const md = readFileSync(join(dir, 'report', 'report.md'), 'utf8');
  for (const x of [small, large]) assert.ok(md.includes((100 * x.figure).toFixed(2)), `report.md shows ${(100 * x.figure).toFixed(2)}% agreement`);
  assert.ok(md.includes((100 * small.base).toFixed(2)), 'and the unpatched base\'s');
  between = (small.figure + large.figure) / 2;

  const out = join(dir, 'auto.ndiff');
  const r = await runNdiff('diff', ...common, '--budget', 'auto', '--min-agreement', String(between), '--budget-grid', '20%,50%', '--out', out, '--json');
  assert.equal(r.code, 0, r.err);
  const doc = json(r.out);
  assert.equal(doc.budgetSearch!.chosen, '50%');
  assert.equal(doc.budgetSearch!.fallback, false);
  assert.deepEqual(doc.budgetSearch!.tried.map((t) => [t.budget, t.meets]), [['20%', false], ['50%', true]]);
  assert.equal(doc.budgetSearch!.tried[0].figure, small.figure, 'the search measures as --eval does');
  assert.ok(readFileSync(out).equals(large.bytes), 'the payload 50% alone writes');
  assert.match(r.err, /budget auto: 50% chosen \(on grid\), the smallest of 20%, 50%/);

  // A target no grid budget meets: the exact payload (every changed block), measured and said so.
  const progress: string[] = [];
  const none = await diff({ base: v1, target: v2, modelId: 'tiny', eval: text, budget: 'auto', minAgreement: 1, budgetGrid: '20%', onProgress: (l) => progress.push(l) });
  assert.ok(!none.structural);
  assert.equal(none.method, 'exact');
  assert.equal(none.budgetSearch!.fallback, true);
  assert.equal(none.llamaEval!.patched.agreement, 1, 'the exact payload reaches v2: it agrees everywhere');
  assert.ok(progress.some((l) => /nothing below the exact payload's [\d.]+ KB met .*: the exact payload \(--budget all\) written/.test(l)), progress.join('\n'));
  const exact = await diff({ base: v1, target: v2, modelId: 'tiny', budget: 'all' });
  assert.ok(Buffer.from(none.payload).equals(Buffer.from(exact.payload)), 'the exact payload --budget all writes');
});

test('a release sizes its on-grid payloads the same way: release add --method topk --budget auto --eval TEXT signs the payload ndiff diff --budget auto chooses', { skip: llamaSkip }, async () => {
  assert.ok(between !== undefined, 'the first test found the two budgets\' agreements');
  const site = join(dir, 'site');
  assert.equal((await runNdiff('keygen', '--out', join(dir, 'release'))).code, 0);
  const key = join(dir, 'release.private.pem');
  let r = await runNdiff('release', 'add', '--release', site, '--model', v1, '--model-id', 'tiny', '--key', key);
  assert.equal(r.code, 0, r.err);
  r = await runNdiff('release', 'add', '--release', site, '--model', v2, '--method', 'topk', '--budget', 'auto', '--min-agreement', String(between), '--budget-grid', '20%,50%', '--eval', text, '--key', key);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /v2-from-v1: through llama\.cpp on \d+ positions .*version 1 \+ payload agrees with the target on/);
  const manifest = (JSON.parse(readFileSync(join(site, 'manifest.json'), 'utf8')) as { signed: { payloads: { file: string; method: string; exact: boolean }[] } }).signed;
  assert.equal(manifest.payloads.length, 1);
  assert.deepEqual([manifest.payloads[0].method, manifest.payloads[0].exact], ['ongrid', false]);
  const { parseEnvelope } = await import('../src/apply/envelope.ts');
  const shipped = Buffer.from(parseEnvelope(readFileSync(join(site, manifest.payloads[0].file))).payload);
  const chosen = await diff({ base: v1, target: v2, modelId: 'tiny', sequence: 2, budget: '50%' });
  assert.ok(!chosen.structural);
  assert.ok(shipped.equals(Buffer.from(chosen.payload)), 'the 50% on-grid payload, byte for byte (20% measured below the target)');
});

test('--eval: a payload no closer to v2 than v1 is refused, exit 10, nothing written; allowWorse writes it', { skip: llamaSkip }, async () => {
  // On this pair (v2 is v1 with seeded noise on every matrix) 1% of the file carries 5% of the
  // change, and the model it makes is further from v2 than v1 (docs/guides/llm.md's table).
  const out = join(dir, 'one.ndiff');
  const r = await runNdiff('diff', ...common, '--budget', '1%', '--out', out);
  assert.equal(r.code, 10, r.err);
  assert.match(r.err, /no closer to .*v2\.gguf than .*v1\.gguf itself \(through llama\.cpp: agreement/);
  assert.match(r.err, /Nothing was written/);
  assert.equal(existsSync(out), false);
  const w = await diff({ base: v1, target: v2, modelId: 'tiny', eval: text, budget: '1%', out, allowWorse: true });
  assert.ok(!w.structural);
  assert.equal(w.llamaEval!.movesAway, true);
  assert.ok(existsSync(out));
});

test('budget auto on GGUF takes an agreement target only: the others are refused before any model is read', async () => {
  await assert.rejects(diff({ base: v1, target: v2, modelId: 'tiny', eval: text, budget: 'auto', maxMeanAbsDiff: 0.1 }), (e: unknown) => e instanceof UsageError && /does not measure a language model.*minAgreement \(--min-agreement 0\.98\)/.test((e as Error).message));
  await assert.rejects(diff({ base: v1, target: v2, modelId: 'tiny', budget: 'auto', minAgreement: 0.9 }), (e: unknown) => e instanceof UsageError && /add eval \(--eval DATA\)/.test((e as Error).message));
});
