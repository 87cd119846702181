/**
 * `ndiff train --budget auto` and `train({ budget: 'auto' })` on a small fine-tune
 * (test/helpers/finetune.ts), one epoch per run: toward a teacher the post-hoc payload comes first
 * (met at a budget: nothing is trained, the bytes `ndiff diff --budget B` writes; short of the
 * target, the training at that budget, the bytes `--budget B` alone trains); with labels the
 * target is accuracy held against a full fine-tune's, the chosen payload the bytes `--budget B`
 * alone trains; a target nothing meets ends in the exact payload, said so; the library and the
 * command write the same bytes; a larger budget reuses the learning rate the first trained one
 * tuned (fewer runs than tuning each), and lowbit's quantizations of the change are made once for
 * every budget (the same bytes); a target the run cannot measure is a usage error.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { main } from '../cli/ndiff.ts';
import type { CliIO } from '../cli/common.ts';
import { diff } from '../src/front/diff.ts';
import { train, type TrainOptions, type TrainProgress } from '../src/train/front.ts';
import { UsageError } from '../src/core/errors.ts';
import { lessCloseThanBase } from '../src/train/eval-noise.ts';
import { saveNpy } from '../src/io/npy/files.ts';
import { clusterData, fineTunePair, FT_INPUTS } from './helpers/finetune.ts';
import { tempDir } from './helpers/dirs.ts';
import { MemoryWeightStore } from '../src/core/weight-store.ts';
import type { LowBitCache } from '../src/lowbit-diff/cache.ts';
import { CountingLowBitCache } from './helpers/counting-cache.ts';

let dir: string;
const at: Record<string, string> = {};
/** One quick, deterministic training: what every run here shares. */
const QUICK = ['--epochs', '1', '--tune', 'off', '--seed', '3', '--threads', '1', '--backend', 'cpu'];
const quick: Partial<TrainOptions> = { epochs: 1, tune: 'off', seed: 3, threads: 1, backend: 'cpu' };

async function ndiff(...argv: string[]): Promise<{ code: number; doc: Record<string, any>; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIO = { out: (l) => out.push(l), err: (l) => err.push(l), progress: (l) => err.push(l) };
  const code = await main([...argv, '--json'], io);
  let doc: Record<string, any> = {};
  try {
    doc = JSON.parse(out.join('\n')) as Record<string, any>;
  } catch {
    // left empty: the assertion on the code says what went wrong
  }
  return { code, doc, err: err.join('\n') };
}

async function folder(name: string, d: { x: Float32Array; y: Int32Array }, labels: boolean): Promise<string> {
  const p = join(dir, name);
  await mkdir(p);
  saveNpy(join(p, 'x.npy'), d.x, [d.y.length, FT_INPUTS]);
  if (labels) saveNpy(join(p, 'y.npy'), d.y, [d.y.length]);
  return p;
}

before(async () => {
  dir = await tempDir('ndiff-budget-auto-train-');
  const pair = await fineTunePair();
  at.v1 = join(dir, 'v1');
  at.v2 = join(dir, 'v2');
  await pair.save(at.v1, pair.v1);
  await pair.save(at.v2, pair.v2);
  // v1 with its first hidden layer's units renumbered (unit i is v1's unit i + 1): the same
  // function as v1, other weights. A post-hoc payload carries part of the renumbering and breaks
  // the function; a training toward it from v1, which already agrees with it, keeps agreeing.
  const names = pair.v1.list().map((t) => t.name);
  const hidden = (n: string) => n.startsWith('h1') ? n.endsWith('bias') ? 'bias' : 'columns' : n.startsWith('h2') && n.endsWith('kernel') ? 'rows' : 'same';
  const units = 96;
  at.renumbered = join(dir, 'renumbered');
  await pair.save(at.renumbered, new MemoryWeightStore(names.map((n) => {
    const v = pair.v1.values(n);
    const shape = pair.v1.list().find((t) => t.name === n)!.shape;
    const out = new Float32Array(v.length);
    const from = (u: number) => (u + 1) % units;
    if (hidden(n) === 'bias') for (let u = 0; u < units; u++) out[u] = v[from(u)];
    else if (hidden(n) === 'columns') for (let r = 0; r < shape[0]; r++) for (let u = 0; u < units; u++) out[r * units + u] = v[r * units + from(u)];
    else if (hidden(n) === 'rows') for (let u = 0; u < units; u++) out.set(v.subarray(from(u) * shape[1], (from(u) + 1) * shape[1]), u * shape[1]);
    else out.set(v);
    return [n, { shape, data: out }];
  })));
  at.eval = await folder('eval', clusterData(300, 21), true);
  at.unlabeled = await folder('unlabeled', clusterData(256, 22), false);
  at.labelled = await folder('labelled', clusterData(256, 23), true);
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('toward a teacher: a post-hoc payload that meets the target at the first budget is written, nothing trained; the command and the library write its bytes, ndiff diff --budget 0.5%\'s', async () => {
  const posthoc = await diff({ base: at.v1, target: at.v2, budget: '0.5%', modelId: 'mlp', eval: at.eval, allowWorse: true });
  assert.ok(!posthoc.structural && posthoc.eval && !lessCloseThanBase(posthoc.eval));
  const target = posthoc.eval.patched.agreement;
  const cli = await ndiff('train', '--base', at.v1, '--teacher', at.v2, '--train', at.unlabeled, '--eval', at.eval, '--model-id', 'mlp', '--budget', 'auto', '--min-agreement', String(target), ...QUICK, '--out', join(dir, 'cli.ndiff'));
  assert.equal(cli.code, 0, cli.err);
  assert.equal(cli.doc.budgetSearch.chosen, '0.5%');
  assert.equal(cli.doc.budgetSearch.chosenHow, 'post hoc');
  assert.deepEqual(cli.doc.budgetSearch.tried.map((t: any) => `${t.budget} ${t.how}`), ['0.5% post hoc']);
  assert.equal(cli.doc.postHoc, true);
  const events: TrainProgress[] = [];
  const lib = await train({ base: at.v1, teacher: at.v2, train: at.unlabeled, eval: at.eval, modelId: 'mlp', budget: 'auto', minAgreement: target, ...quick, out: join(dir, 'lib.ndiff'), onProgress: (e) => events.push(e) });
  assert.equal(events.filter((e) => e.kind === 'epoch').length, 0, 'nothing trained');
  const bytes = new Uint8Array(await readFile(join(dir, 'cli.ndiff')));
  assert.deepEqual(new Uint8Array(await readFile(join(dir, 'lib.ndiff'))), bytes);
  assert.deepEqual(lib.payload, bytes);
  assert.deepEqual(bytes, posthoc.payload, 'the payload ndiff diff --budget 0.5% makes');
  assert.ok(lib.lines.some((l) => l.startsWith('budget auto: 0.5% chosen (post hoc)')), lib.lines.join('\n'));
});

test('with labels: accuracy held against a full fine-tune\'s; the chosen budget\'s payload is the one --budget B alone trains', async () => {
  const cli = await ndiff('train', '--base', at.v1, '--train', at.labelled, '--eval', at.eval, '--model-id', 'mlp', '--method', 'sparse', '--budget', 'auto', '--max-accuracy-drop', '100', '--budget-grid', '1%,2%', ...QUICK, '--allow-worse', '--out', join(dir, 'labels.ndiff'));
  assert.equal(cli.code, 0, cli.err);
  const search = cli.doc.budgetSearch;
  assert.equal(search.chosen, '1%', 'every result is within 100 points: the smallest budget');
  assert.equal(search.chosenHow, 'trained');
  assert.deepEqual(search.tried.map((t: any) => `${t.budget} ${t.how}`), ['1% trained'], 'no post-hoc candidate without a teacher');
  assert.match(cli.err, /budget auto: a full fine-tune first/);
  const alone = await train({ base: at.v1, train: at.labelled, eval: at.eval, modelId: 'mlp', method: 'sparse', budget: '1%', ...quick, allowWorse: true });
  assert.deepEqual(new Uint8Array(await readFile(join(dir, 'labels.ndiff'))), alone.payload, 'the bytes --budget 1% alone trains');
  assert.ok(search.tried[0].figure <= 100 && search.tried[0].meets);
});

test('toward a teacher, a target nothing below the exact payload meets: the exact payload written, said so', async () => {
  const cli = await ndiff('train', '--base', at.v1, '--teacher', at.v2, '--train', at.unlabeled, '--eval', at.eval, '--model-id', 'mlp', '--method', 'sparse', '--budget', 'auto', '--max-mean-abs-diff', '0', '--budget-grid', '0.5%', ...QUICK, '--allow-worse', '--out', join(dir, 'exact.ndiff'));
  assert.equal(cli.code, 0, cli.err);
  const search = cli.doc.budgetSearch;
  assert.deepEqual(search.tried.map((t: any) => `${t.budget} ${t.how} ${t.meets}`), ['0.5% post hoc false', '0.5% trained false'], 'post hoc first, then trained');
  assert.equal(search.fallback, true);
  assert.equal(search.chosen, 'all');
  assert.match(cli.err, /budget auto: nothing below the exact payload's .* met mean \|output − target\| ≤ 0\.00: the exact payload \(ndiff diff --budget all\) written/);
  const all = await diff({ base: at.v1, target: at.v2, budget: 'all', modelId: 'mlp' });
  assert.deepEqual(new Uint8Array(await readFile(join(dir, 'exact.ndiff'))), all.payload);
});

test('toward a teacher: where the post-hoc payload falls short, the training at that budget is tried, and written as --budget B alone writes it', async () => {
  const flags = ['--base', at.v1, '--teacher', at.renumbered, '--train', at.unlabeled, '--eval', at.eval, '--model-id', 'mlp', '--method', 'sparse', ...QUICK, '--allow-worse'];
  const cli = await ndiff('train', ...flags, '--budget', 'auto', '--min-agreement', '0.99', '--budget-grid', '0.5%,1%', '--out', join(dir, 'trained.ndiff'));
  assert.equal(cli.code, 0, cli.err);
  const [posthoc, trained] = cli.doc.budgetSearch.tried;
  assert.equal(posthoc.how, 'post hoc');
  assert.equal(posthoc.meets, false, 'part of the renumbering breaks the function');
  assert.equal(trained.how, 'trained');
  assert.equal(trained.meets, true);
  assert.equal(cli.doc.budgetSearch.chosen, '0.5%');
  assert.equal(cli.doc.budgetSearch.chosenHow, 'trained');
  assert.ok(cli.doc.tuning !== undefined && cli.doc.postHoc === undefined, 'a training\'s document');
  const alone = await ndiff('train', ...flags, '--budget', '0.5%', '--out', join(dir, 'trained-alone.ndiff'));
  assert.equal(alone.code, 0, alone.err);
  assert.deepEqual(await readFile(join(dir, 'trained.ndiff')), await readFile(join(dir, 'trained-alone.ndiff')));
});

test('toward a teacher, budgetTune once (the default): the larger budgets train once at the rate the first trained budget tuned, fewer runs than each, lowbit\'s quantizations made once for the whole search; the payload written is the one --budget B --lr RATE --tune off trains', async (t) => {
  // Tuned (tune quick, the default), not QUICK's tune off: the rate is what a larger budget reuses.
  const o: TrainOptions = { base: at.v1, teacher: at.v2, train: at.unlabeled, eval: at.eval, modelId: 'mlp', method: 'lowbit', budget: 'auto', maxMeanAbsDiff: 0.03, budgetGrid: '0.5%,1%', epochs: 1, seed: 3, threads: 1, backend: 'cpu' };
  const search = async (budgetTune: 'once' | 'each', lowbitCache?: LowBitCache) => {
    let epochs = 0;
    const r = await train({ ...o, budgetTune, ...(lowbitCache ? { lowbitCache } : {}), onProgress: (e) => { if (e.kind === 'epoch') epochs++; } });
    return { r, epochs, tried: (r as any).budgetSearch.tried as any[] };
  };
  const cache = new CountingLowBitCache();
  const once = await search('once', cache);
  // The post-hoc payloads and the trained runs' post-hoc starts quantize the one change of the
  // teacher: each tensor once for the whole search (the runs at 0.5% and 1% find them made).
  assert.ok(cache.made.size > 0, 'the search quantized the change');
  for (const [name, n] of cache.made) assert.equal(n, 1, `${name} quantized ${n} times`);
  const postHoc = new CountingLowBitCache();
  for (const budget of ['0.5%', '1%']) await diff({ base: at.v1, target: at.v2, budget, method: 'lowbit', modelId: 'mlp', lowbitCache: postHoc });
  assert.ok(cache.asked > postHoc.asked, `the trained runs looked their quantizations up in the search's cache too: ${cache.asked} lookups, ${postHoc.asked} by the post-hoc payloads`);
  assert.deepEqual(once.tried.map((t) => `${t.budget} ${t.how} ${t.meets}`), ['0.5% post hoc false', '0.5% trained false', '1% post hoc false', '1% trained true']);
  assert.equal(once.tried[1].detail, undefined, 'the first trained budget tunes');
  const rate = /^learning rate ([\d.e+-]+) as tuned at 0\.5%$/.exec(once.tried[3].detail ?? '')?.[1];
  assert.ok(rate !== undefined, `the 1% run says whose rate it reused: ${once.tried[3].detail}`);
  assert.ok(once.r.lines.some((l) => l.includes(`1% (`) && l.includes(`trained (learning rate ${rate} as tuned at 0.5%)`)), once.r.lines.join('\n'));
  const each = await search('each');
  assert.deepEqual(each.tried.map((t) => `${t.budget} ${t.how} ${t.detail ?? 'tuned'}`), ['0.5% post hoc tuned', '0.5% trained tuned', '1% post hoc tuned', '1% trained tuned']);
  assert.ok(once.epochs < each.epochs, `once trains fewer epochs than each: ${once.epochs} against ${each.epochs}`);
  t.diagnostic(`epochs trained by the search: once ${once.epochs}, each ${each.epochs}; figures at 1%: once ${once.tried[3].figure}, each ${each.tried[3].figure}`);
  const alone = await ndiff('train', '--base', at.v1, '--teacher', at.v2, '--train', at.unlabeled, '--eval', at.eval, '--model-id', 'mlp', '--method', 'lowbit', '--budget', '1%', '--lr', rate as string, '--tune', 'off', '--epochs', '1', '--seed', '3', '--threads', '1', '--backend', 'cpu', '--out', join(dir, 'reused-alone.ndiff'));
  assert.equal(alone.code, 0, alone.err);
  assert.deepEqual(once.r.payload, new Uint8Array(await readFile(join(dir, 'reused-alone.ndiff'))), 'the bytes --budget 1% --lr RATE --tune off trains');
});

test('train budget auto: a target the run cannot measure, or a target without auto, is a usage error before training', async () => {
  const o: TrainOptions = { base: at.v1, train: at.labelled, eval: at.eval, modelId: 'mlp', ...quick };
  await assert.rejects(train({ ...o, budget: 'auto', minAgreement: 0.9 }), (e: unknown) => e instanceof UsageError && /this training has no teacher/.test(e.message));
  await assert.rejects(train({ ...o, maxAccuracyDrop: 1 }), (e: unknown) => e instanceof UsageError && /is for budget auto .*budget is "1%"/.test(e.message));
  await assert.rejects(train({ ...o, budget: 'auto', maxAccuracyDrop: 1, eval: undefined }), (e: unknown) => e instanceof UsageError && /add eval \(--eval DATA\)/.test(e.message));
  const cli = await ndiff('train', '--base', at.v1, '--train', at.labelled, '--model-id', 'mlp', '--min-agreement', '0.9', '--out', join(dir, 'x.ndiff'));
  assert.equal(cli.code, 2);
  assert.match(cli.err, /--min-agreement is for --budget auto.*budget is "1%"/);
  const tune = await ndiff('train', '--base', at.v1, '--train', at.labelled, '--model-id', 'mlp', '--budget-tune', 'each', '--out', join(dir, 'x.ndiff'));
  assert.equal(tune.code, 2);
  assert.match(tune.err, /--budget-tune says how --budget auto tunes the budgets it trains; this run's budget is "1%": add --budget auto/);
  await assert.rejects(train({ ...o, budget: 'auto', maxAccuracyDrop: 1, budgetTune: 'twice' as 'once' }), (e: unknown) => e instanceof UsageError && /budgetTune \(--budget-tune\) takes once or each, found "twice"/.test(e.message));
});
