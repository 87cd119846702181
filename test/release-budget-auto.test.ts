/**
 * `ndiff release add --method topk --budget auto --min-agreement A --eval INPUTS` (and
 * `release.add` with `budget: 'auto'`): each payload of the new version is the smallest budget of
 * the grid whose devices agree with the version on at least A of the inputs, measured as the
 * keyframe rule measures (the same target is its threshold); when none does, the exact payload.
 * The answer is known beforehand: each grid budget's payload is measured on its own first
 * (`ndiff diff --budget B --eval`), and the target put between two of them.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { main } from '../cli/ndiff.ts';
import type { CliIO } from '../cli/common.ts';
import { seededRandom } from '../src/core/random.ts';
import { release } from '../src/front/release.ts';
import { readRecord } from '../src/release/record.ts';
import { fileSystemIO } from '../src/io/tfjs/index.ts';
import { saveNpy } from '../src/io/npy/files.ts';
import { initBackend } from '../src/engine/backend.ts';
import { tempDir } from './helpers/dirs.ts';

const work = await tempDir('nd-release-auto-');
after(() => rm(work, { recursive: true, force: true }));

async function ndiff(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIO = { out: (l) => out.push(l), err: (l) => err.push(l), progress: (l) => err.push(l) };
  const code = await main(argv, io);
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** Two versions of a small classifier (16 inputs, 4 classes) whose every weight moved, and 400 inputs. */
async function classifierPair(dir: string): Promise<{ v1: string; v2: string; inputs: string }> {
  await initBackend('wasm');
  const model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [16], units: 48, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }) }), tf.layers.dense({ units: 4, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 4 }) })] });
  const r = seededRandom(9);
  const v1 = join(dir, 'v1');
  await model.save(fileSystemIO(v1));
  model.setWeights(model.getWeights().map((w) => tf.tidy(() => w.add(tf.tensor(Float32Array.from({ length: w.size }, () => (r() - 0.5) * 0.3 * (r() < 0.15 ? 4 : 1)), w.shape)))));
  const v2 = join(dir, 'v2');
  await model.save(fileSystemIO(v2));
  model.dispose();
  const inputs = join(dir, 'inputs');
  saveNpy(join(inputs, 'x.npy'), Float32Array.from({ length: 400 * 16 }, () => r() * 2 - 1), [400, 16]);
  return { v1, v2, inputs };
}

const { v1, v2, inputs } = await classifierPair(join(work, 'clf'));
const keyDir = join(work, 'keys');
assert.equal((await ndiff('keygen', '--out', join(keyDir, 'k'))).code, 0);
const key = join(keyDir, 'k.private.pem');
const GRID = ['5%', '10%', '20%', '40%'];

/** A release folder holding v1 (exact, nothing to measure). */
async function withFirstVersion(site: string): Promise<string> {
  const dir = join(work, site);
  const r = await ndiff('release', 'add', '--release', dir, '--model', v1, '--model-id', 'clf', '--key', key);
  assert.equal(r.code, 0, r.err);
  return dir;
}

/** Each grid budget's agreement with v2 on the inputs, measured by `ndiff diff --eval` alone. */
async function agreements(): Promise<number[]> {
  const out: number[] = [];
  for (const b of GRID) {
    const r = await ndiff('diff', '--base', v1, '--target', v2, '--method', 'topk', '--budget', b, '--eval', inputs, '--model-id', 'clf', '--out', join(work, `d-${b}.ndiff`), '--json');
    assert.equal(r.code, 0, r.err);
    out.push((JSON.parse(r.out) as { eval: { patched: { agreement: number } } }).eval.patched.agreement);
  }
  return out;
}

test('release add --budget auto ships the smallest grid budget whose devices keep the agreement, and the library call the same payload', { timeout: 300_000 }, async (t) => {
  const measured = await agreements();
  t.diagnostic(`agreement with v2 at ${GRID.join(', ')}: ${measured.map((a) => a.toFixed(4)).join(', ')}`);
  // The target between the first budget and the first one clearly above it: that budget is the answer.
  const k = measured.findIndex((a) => a > measured[0] + 0.01);
  assert.ok(k > 0, `a grid budget that agrees more than ${GRID[0]}'s: ${measured.join(', ')}`);
  const target = (Math.max(...measured.slice(0, k)) + measured[k]) / 2;
  const site = await withFirstVersion('auto');
  const r = await ndiff('release', 'add', '--release', site, '--model', v2, '--key', key, '--method', 'topk', '--budget', 'auto', '--min-agreement', String(target), '--budget-grid', GRID.join(','), '--eval', inputs, '--json');
  assert.equal(r.code, 0, r.err);
  const doc = JSON.parse(r.out) as { budgetAuto: { target: { option: string; value: number }; grid: string[] }; drift: { job: string; budget: string; agreement: number; keyframe: boolean; larger?: { budget: string; agreement: number } }[]; keyframeBelow: number };
  assert.deepEqual(doc.budgetAuto, { target: { option: 'minAgreement', value: target }, grid: GRID });
  assert.equal(doc.keyframeBelow, target, 'the target is the keyframe threshold');
  const d = doc.drift.find((x) => x.job === 'v2-from-v1');
  assert.ok(d, JSON.stringify(doc.drift));
  assert.equal(d.budget, GRID[0], 'the smallest budget measured first');
  assert.ok(d.agreement < target);
  assert.equal(d.larger?.budget, GRID[k], `the smallest budget at or above ${target}: ${JSON.stringify(d)}`);
  assert.ok((d.larger?.agreement ?? 0) >= target);
  assert.equal(d.keyframe, false);
  const record = (await readRecord(site))!;
  const shipped = record.payloads.find((p) => p.fromVersion === 1 && p.toVersion === 2);
  assert.ok(shipped && !shipped.exact, 'a lossy payload shipped');

  // The printed words, without --json.
  const words = await ndiff('release', 'add', '--release', await withFirstVersion('auto-words'), '--model', v2, '--key', key, '--method', 'topk', '--budget', 'auto', '--min-agreement', String(target), '--budget-grid', GRID.join(','), '--eval', inputs);
  assert.equal(words.code, 0, words.err);
  assert.match(words.out, new RegExp(`budget auto: each payload the smallest of ${GRID.join(', ')} whose devices agree with the new version on at least ${(100 * target).toFixed(2)}% of the --eval inputs`));
  assert.match(words.out, new RegExp(`v2-from-v1: devices agree with version 2 on [\\d.]+% of the --eval inputs after one lossy payload, below ${(100 * target).toFixed(2)}%: a larger payload is shipped \\(budget ${GRID[k].replace('%', '%')}`));

  // The library call: the same payload bytes.
  const lib = join(work, 'auto-lib');
  await release.add({ release: lib, model: v1, modelId: 'clf', key });
  const res = await release.add({ release: lib, model: v2, key, method: 'topk', budget: 'auto', minAgreement: target, budgetGrid: GRID, eval: inputs });
  assert.equal(res.drift?.[0].larger?.budget, GRID[k]);
  const libShipped = (await readRecord(lib))!.payloads.find((p) => p.fromVersion === 1 && p.toVersion === 2);
  assert.equal(libShipped?.sha256, shipped.sha256, 'library and command ship the same bytes');
});

test('release add --budget auto with a target no grid budget meets ships the exact payload, said so', { timeout: 300_000 }, async () => {
  const site = await withFirstVersion('auto-none');
  const r = await ndiff('release', 'add', '--release', site, '--model', v2, '--key', key, '--method', 'topk', '--budget', 'auto', '--min-agreement', '1', '--budget-grid', '5%,10%', '--eval', inputs);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /v2-from-v1: devices agree with version 2 on [\d.]+% of the --eval inputs after one lossy payload, below 100\.00%: keyframe, the exact payload is shipped/);
  const record = (await readRecord(site))!;
  const shipped = record.payloads.find((p) => p.fromVersion === 1 && p.toVersion === 2);
  assert.ok(shipped?.exact && shipped.target === record.versions[1].fingerprint, 'devices end at version 2 exactly');
});

test('release add --budget auto: what it does not take is refused before the folder is touched', async () => {
  const none = join(work, 'refused');
  const base = ['release', 'add', '--release', none, '--model', v1, '--model-id', 'clf', '--key', key];
  const cases: [string[], RegExp][] = [
    [['--method', 'topk', '--budget', 'auto', '--min-agreement', '0.9'], /budget auto .* add --eval/],
    [['--method', 'topk', '--budget', 'auto', '--eval', inputs], /none was given: add one of --min-agreement/],
    [['--method', 'exact', '--budget', 'auto', '--min-agreement', '0.9', '--eval', inputs], /sizes top-k payloads \(--method topk\)/],
    [['--method', 'topk', '--budget', 'auto', '--min-agreement', '0.9', '--eval', inputs, '--plan'], /with --plan add makes none/],
    [['--method', 'topk', '--budget', 'auto', '--min-agreement', '0.9', '--eval', inputs, '--keyframe-below', '0.8'], /--min-agreement is the keyframe threshold too/],
    [['--method', 'topk', '--budget', '5%', '--min-agreement', '0.9', '--eval', inputs], /--min-agreement is for --budget auto/],
    [['--method', 'topk', '--budget', 'auto', '--min-agreement', '0.9', '--budget-grid', '5%,all', '--eval', inputs], /--budget-grid entry "all" is not a byte budget/],
  ];
  for (const [extra, message] of cases) {
    const r = await ndiff(...base, ...extra);
    assert.equal(r.code, 2, `${extra.join(' ')}: ${r.err}`);
    assert.match(r.err, message, extra.join(' '));
    await assert.rejects(stat(none), /ENOENT/, `${extra.join(' ')}: the folder is not made`);
  }
  // A value-output target, through the library (JavaScript callers are not held by the types).
  const valueTarget = { release: none, model: v1, modelId: 'clf', key, method: 'topk', budget: 'auto', maxMeanAbsDiff: 0.1, eval: inputs } as Parameters<typeof release.add>[0];
  await assert.rejects(release.add(valueTarget), /give minAgreement \(--min-agreement 0\.99\); maxMeanAbsDiff \(--max-mean-abs-diff\) is taken by ndiff diff and ndiff train/);
  await assert.rejects(stat(none), /ENOENT/);
});
