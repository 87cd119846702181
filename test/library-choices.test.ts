/**
 * The library refuses a word outside an option's choices as `ndiff` refuses the flag: `diff()`
 * with `method: 'low-bit'`, `store: 'f32'` or `exactCodec: 'y'` made a top-k (or exact) payload
 * and resolved without a word, and `train()` did the same with `store`, `step` and `sparseStart`;
 * a misspelt codec was refused only after the models were read, as an internal patch error. Now
 * each is a UsageError naming the option, its flag and its choices, before any file is read or
 * written (release.add() likewise for outputKind). The command's choices are the library's tables
 * (one list for both).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { UsageError } from '../src/core/errors.ts';
import { writeSafetensorsFile } from '../src/io/safetensors/files.ts';
import { diff } from '../src/front/diff.ts';
import { DIFF_CHOICES } from '../src/front/diff-options.ts';
import { TRAIN_CHOICES } from '../src/train/front-settings.ts';
import { train } from '../src/train/front.ts';
import { release } from '../src/front/release.ts';
import { main } from '../cli/ndiff.ts';

const root = mkdtempSync(path.join(tmpdir(), 'nd-choices-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

const refusal = (name: string, flag: string, choices: readonly string[], found: string) => (e: unknown) =>
  e instanceof UsageError && e.message === `${name} (${flag}) must be one of ${choices.join(', ')}, found "${found}": pick one of them, or leave ${name} out for its default`;

/** `ndiff ARGV`: its exit code and what it wrote on stderr. */
async function ndiff(argv: string[]): Promise<{ code: number; err: string }> {
  const err: string[] = [];
  const code = await main(argv, { out: () => {}, err: (l) => err.push(l), progress: (l) => err.push(l) });
  return { code, err: err.join('\n') };
}

test('diff() refuses a word outside each option\'s choices before reading the models, as ndiff diff refuses the flag', async () => {
  const base = path.join(root, 'v1.safetensors');
  const target = path.join(root, 'v2.safetensors');
  const w = new Float32Array(64).map((_, i) => Math.sin(i));
  await writeSafetensorsFile(base, { w: { shape: [64], data: w } });
  await writeSafetensorsFile(target, { w: { shape: [64], data: w.map((v, i) => v + (i % 5 === 0 ? 0.5 : 0)) } });
  // The same pair with a word of every choice is a payload (the misspelt words below are what fails).
  const ok = await diff({ base, target, budget: '50%', modelId: 'm', method: 'lowbit', store: 'float32' });
  assert.ok(ok.bytes > 0);
  const flagged = new Map<string, string>([['method', 'low-bit'], ['codec', 'i4'], ['exactCodec', 'y'], ['store', 'f32'], ['outputKind', 'logit-ish']]);
  assert.deepEqual(DIFF_CHOICES.map(([name]) => name).sort(), [...flagged.keys()].sort());
  for (const [name, flag, choices] of DIFF_CHOICES) {
    const found = flagged.get(name) as string;
    const out = path.join(root, `diff-${name}.ndiff`);
    const said: string[] = [];
    await assert.rejects(diff({ base, target, budget: '50%', modelId: 'm', out, [name]: found, onProgress: (m: string) => said.push(m) }), refusal(name, flag, choices, found), name);
    assert.deepEqual(said, [], `${name}: refused before reading the models`);
    assert.equal(existsSync(out), false);
    // The command lists the same choices for its flag, and refuses the same word.
    const cli = await ndiff(['diff', '--base', base, '--target', target, '--budget', '50%', '--model-id', 'm', '--out', out, flag, found]);
    assert.equal(cli.code, 2, cli.err);
    assert.ok(cli.err.includes(`${flag} "${found}" is not one of its choices: ${choices.join(', ')}`), cli.err);
  }
});

test('train() refuses a word outside each option\'s choices before loading anything, as ndiff train refuses the flag', async () => {
  const data = path.join(root, 'no-data');
  mkdirSync(data, { recursive: true });
  const flagged = new Map<string, string>([['method', 'sparse-mask'], ['tune', 'fast'], ['store', 'f32'], ['backend', 'gpu'], ['step', 'fast'], ['codec', 'i4'], ['teacherLoss', 'l1'], ['sparseStart', 'one'], ['outputKind', 'logit-ish'], ['autoSearch', 'greedy']]);
  assert.deepEqual(TRAIN_CHOICES.map(([name]) => name).sort(), [...flagged.keys()].sort());
  for (const [name, flag, choices] of TRAIN_CHOICES) {
    const found = flagged.get(name) as string;
    const out = path.join(root, `train-${name}.ndiff`);
    const said: unknown[] = [];
    // The base path holds no model: the choice is refused before the base is looked at.
    await assert.rejects(train({ base: path.join(root, 'no-model'), train: data, modelId: 'm', out, [name]: found, onProgress: (e) => said.push(e) }), refusal(name, flag, choices, found), name);
    assert.deepEqual(said, [], `${name}: refused before any work`);
    assert.equal(existsSync(out), false);
    const cli = await ndiff(['train', '--base', path.join(root, 'no-model'), '--train', data, '--model-id', 'm', '--out', out, flag, found]);
    assert.equal(cli.code, 2, cli.err);
    assert.ok(cli.err.includes(`${flag} "${found}" is not one of its choices: ${choices.join(', ')}`), cli.err);
  }
});

test('release.add() refuses an outputKind outside its choices, as ndiff release add refuses --output-kind', async () => {
  const site = path.join(root, 'site');
  const choices = ['probability', 'logit', 'probabilities', 'logits', 'values'];
  await assert.rejects(release.add({ release: site, model: path.join(root, 'no-model'), modelId: 'm', key: 'unused.pem', method: 'topk', budget: '1%', eval: path.join(root, 'no-data'), outputKind: 'logit-ish' as never }), refusal('outputKind', '--output-kind', choices, 'logit-ish'));
  assert.equal(existsSync(site), false, 'no release folder made');
  const cli = await ndiff(['release', 'add', '--release', site, '--model', path.join(root, 'no-model'), '--model-id', 'm', '--key', 'unused.pem', '--method', 'topk', '--budget', '1%', '--eval', path.join(root, 'no-data'), '--output-kind', 'logit-ish']);
  assert.equal(cli.code, 2, cli.err);
  assert.ok(cli.err.includes(`--output-kind "logit-ish" is not one of its choices: ${choices.join(', ')}`), cli.err);
});

test('an option given as null counts as not given (options built from JSON carry null), a wrong word is still refused', async () => {
  const { checkChoices } = await import('../src/core/choices.ts');
  const table = [['method', '--method', ['topk', 'lowbit']]] as const;
  assert.doesNotThrow(() => checkChoices({ method: null }, table));
  assert.doesNotThrow(() => checkChoices({}, table));
  assert.throws(() => checkChoices({ method: 'low-bit' }, table), UsageError);
  assert.throws(() => checkChoices({ method: 3 }, table), UsageError);
});
