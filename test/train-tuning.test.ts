/**
 * Training that tunes itself and never ships a collapsed model (issue #11), on MNIST digits
 * (base 0-6, the update teaches 7-9) and small hand-built models:
 * - a learning rate far too high is caught: the run is recovered at a lower rate or refused,
 *   never a one-class payload;
 * - budgets are monotone by construction (a smaller budget's result competes);
 * - `lora` and `topk-retrain` payloads apply through the device applier to exactly the weights
 *   that were evaluated;
 * - quick tuning costs 2.5 runs' worth of examples at most;
 * - which weights train: the config, `all`, a pattern; BatchNorm statistics never;
 * - batch sizes the wasm backend's 4 GiB cannot hold are refused naming --batch-size.
 *
 * The MNIST part (minutes of training, all of it in this process: no file, folder, TMPDIR or
 * child process) is checked once per CI, in the in-place suite; the fresh-clone runs
 * on the other Node releases skip it (test/helpers/benchmarks.ts), since what a Node release, a
 * checkout's path or TMPDIR can change in training is exercised there by test/train.test.ts,
 * test/train-teacher.test.ts and the other trainer files, and the small cases below still run.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { applyPayload } from '../src/apply/index.ts';
import { NoImprovementError, UsageError } from '../src/core/errors.ts';
import { decodePayload } from '../src/core/format.ts';
import type { MemoryWeightStore } from '../src/core/weight-store.ts';
import { initBackend } from '../src/engine/backend.ts';
import { epochBatches, evaluate, pick } from '../src/train/data.ts';
import { mnistModel, mnistSplits, type MnistSplits } from '../examples/lib/mnist-task.ts';
import { modelToStore, setModelWeights } from '../src/engine/model-weights.ts';
import { chooseBatchSize, selectTrainable, weightRoles } from '../src/train/select.ts';
import { agreementBeyondChance, DISTILL_MIN_KAPPA, significantlyBetter, trainDiff } from '../src/train/train-diff.ts';
import { keepLoss } from '../src/train/loop.ts';
import { seededRandom } from '../src/core/random.ts';
import { onceSkip } from './helpers/benchmarks.ts';

describe('self-tuning training on MNIST digits', { skip: onceSkip('the self-tuning checks on MNIST (in-process training only) are') }, () => {
  let splits: MnistSplits;
  let model: tf.LayersModel;
  let base: MemoryWeightStore;
  let budget: number;
  const reset = () => setModelWeights(model, (n) => base.values(n));

  before(async () => {
    await initBackend('wasm');
    splits = mnistSplits(3000);
    model = mnistModel(1);
    // From a random start the model is right by chance only: distillation turns itself off.
    const lines: string[] = [];
    const fromScratch = await trainDiff(model, splits.baseTrain, { method: 'full', budgetBytes: 0, epochs: 4, seed: 1, tune: 'off', validation: 0, onProgress: (m) => lines.push(m) });
    assert.equal(fromScratch.distill, undefined);
    const kappa = /does not do this task \(Cohen's kappa (-?\d+\.\d+)/.exec(fromScratch.distillOff ?? '');
    assert.ok(kappa && Number(kappa[1]) <= 0.2, fromScratch.distillOff);
    assert.ok(lines.some((l) => /^distillation off: the base model agrees with the labels little better than chance/.test(l)), lines.join('\n'));
    base = modelToStore(model);
    budget = Math.floor(base.list().reduce((n, t) => n + 4 * t.shape.reduce((a, b) => a * b, 1), 0) * 0.01);
  });
  after(() => {
    for (const d of [splits.baseTrain, splits.updateTrain, splits.eval]) d.x.dispose();
  });

  test('a learning rate far too high is recovered at a lower rate or refused, never shipped as one class', async () => {
    for (const method of ['full', 'hash'] as const) {
      reset();
      try {
        const r = await trainDiff(model, splits.updateTrain, { method, budgetBytes: budget, epochs: 3, seed: 2, base, tune: 'off', learningRate: method === 'full' ? 5 : 50, eval: splits.eval });
        const v = r.validation!;
        assert.ok(v.accuracy >= v.baseAccuracy, `${method}: shipped ${v.accuracy} below the base's ${v.baseAccuracy}`);
        // recovered: a run at a lower rate is what shipped
        assert.ok(r.tuning.candidates.some((c) => c.kind === 'recovery'), `${method}: ${JSON.stringify(r.tuning.candidates)}`);
        assert.ok(r.tuning.learningRate < (method === 'full' ? 5 : 50));
        const counts = new Map<number, number>();
        for (const p of r.predictions!) counts.set(p, (counts.get(p) ?? 0) + 1);
        assert.ok(Math.max(...counts.values()) / r.predictions!.length < 0.5, `${method}: predicts one class`);
      } catch (e) {
        assert.ok(e instanceof NoImprovementError, `${method}: ${(e as Error).stack}`);
        assert.match(e.message, /Nothing was written|nothing was written/);
      }
    }
    reset();
  });

  test('quick tuning brackets three rates on half the data and trains the best: at most 2.5 runs of examples', async () => {
    reset();
    const r = await trainDiff(model, splits.updateTrain, { method: 'sparse', budgetBytes: budget, epochs: 3, seed: 4, base });
    reset();
    assert.equal(r.tuning.mode, 'quick');
    assert.deepEqual(r.tuning.candidates.map((c) => c.kind), ['trial', 'trial', 'trial', 'full']);
    // The start and a third of it; then a ninth when the third validated better, else 3x the start.
    const [start, third, next, full] = r.tuning.candidates;
    assert.deepEqual([start.learningRate, third.learningRate], [3e-3, 1e-3]);
    const thirdWon = (third.valAccuracy as number) > (start.valAccuracy as number) || (third.valAccuracy === start.valAccuracy && (third.valLoss as number) < (start.valLoss as number));
    assert.equal(next.learningRate, thirdWon ? 3.33333e-4 : 9e-3);
    // The full run uses the best trial's rate.
    const bestTrial = [start, third, next].reduce((a, b) => ((b.valAccuracy as number) > (a.valAccuracy as number) || (b.valAccuracy === a.valAccuracy && (b.valLoss as number) < (a.valLoss as number)) ? b : a));
    assert.equal(full.learningRate, bestTrial.learningRate);
    // (half of each class, rounded per class: a few examples over 50%)
    assert.ok(r.tuning.cost <= 2.52, `cost ${r.tuning.cost}`);
    const best = Math.max(...r.tuning.candidates.map((c) => c.valAccuracy ?? 0));
    assert.equal(r.validation!.accuracy, best, 'the best checkpoint over every run is the one shipped');
  });

  test('budgets are monotone: with the smaller result competing, the larger never validates lower', async () => {
    reset();
    const opts = { method: 'sparse' as const, epochs: 2, seed: 5, base, tune: 'off' as const };
    const small = await trainDiff(model, splits.updateTrain, { ...opts, budgetBytes: budget });
    reset();
    // A deliberately poor larger-budget run (1 epoch at a tiny rate) still cannot come out worse.
    const large = await trainDiff(model, splits.updateTrain, { ...opts, budgetBytes: 2 * budget, epochs: 1, learningRate: 1e-5, alsoConsider: [small], allowWorse: true });
    reset();
    assert.ok(large.validation!.accuracy >= small.validation!.accuracy, `${large.validation!.accuracy} < ${small.validation!.accuracy}`);
    assert.ok(large.bytes.length <= 2 * budget);
    // Competing needs validation data to judge on: a usage error before any training.
    await assert.rejects(trainDiff(model, splits.updateTrain, { ...opts, budgetBytes: 2 * budget, validation: 0, alsoConsider: [small] }), (e: unknown) => e instanceof UsageError && /judged on validation data/.test(e.message));
    reset();
  });

  test('more bytes must earn their place: a larger payload ships only when right on significantly more validation examples', async (t) => {
    reset();
    const opts = { method: 'sparse' as const, epochs: 2, seed: 7, base, tune: 'off' as const, validation: splits.eval };
    const small = await trainDiff(model, splits.updateTrain, { ...opts, budgetBytes: budget });
    reset();
    const large = await trainDiff(model, splits.updateTrain, { ...opts, budgetBytes: 4 * budget, alsoConsider: [{ ...small, label: 'the small one' }] });
    reset();
    const sel = large.selection!;
    assert.equal(sel.considered.length, 2);
    assert.equal(sel.considered.filter((c) => c.chosen).length, 1);
    assert.equal(sel.considered[1].label, 'the small one');
    // Judge both on the validation data here, as the rule does.
    const correctWith = (values: Map<string, Float32Array>) => {
      setModelWeights(model, (n) => values.get(n) ?? base.values(n));
      const e = evaluate(model, splits.eval, 256);
      reset();
      return Uint8Array.from(e.predictions, (p, i) => (p === splits.eval.y[i] ? 1 : 0));
    };
    const ownValues = sel.own ? sel.own.targetValues : large.targetValues;
    const ownWins = significantlyBetter(correctWith(ownValues), correctWith(small.targetValues));
    t.diagnostic(`small ${small.bytes.length} B validates ${small.validation!.accuracy}; the larger run's own ${(sel.own ?? large).bytes.length} B ${sel.considered[0].valAccuracy}: ${ownWins ? 'own kept' : 'small ships'}`);
    if (ownWins) {
      assert.equal(sel.own, undefined);
      assert.ok(large.bytes.length > small.bytes.length);
    } else {
      assert.deepEqual(large.bytes, small.bytes, 'not significantly better: the smaller payload ships');
      assert.ok(sel.own && sel.own.bytes.length > small.bytes.length, 'and the run\'s own result is kept for the record');
    }
    assert.ok(large.validation!.accuracy >= small.validation!.accuracy);
  });

  test('significantlyBetter: McNemar above one standard error, never for equal outcomes', () => {
    const ones = (n: number, right: number) => Uint8Array.from({ length: n }, (_, i) => (i < right ? 1 : 0));
    assert.equal(significantlyBetter(ones(100, 90), ones(100, 90)), false);
    // 1 example more, nothing else differs: 1 > sqrt(1) fails.
    assert.equal(significantlyBetter(ones(100, 91), ones(100, 90)), false);
    assert.equal(significantlyBetter(ones(100, 92), ones(100, 90)), true);
    // The same two-example lead among many disagreements is noise: 2 of 10 swapped each way plus 2.
    const a = ones(100, 90);
    const b = ones(100, 90);
    for (let i = 0; i < 10; i++) b[i] = 0;
    for (let i = 90; i < 98; i++) b[i] = 1;
    // a is right on 10 that b misses, b on 8 that a misses: 2 > sqrt(18) fails.
    assert.equal(significantlyBetter(a, b), false);
    assert.equal(significantlyBetter(b, a), false);
    assert.throws(() => significantlyBetter(ones(10, 5), ones(11, 5)), /same validation data/);
  });

  test('distillation keeps the base model where it was right: on held-out digits it knew, the update stays closer to it', async () => {
    reset();
    // The base's outputs on the held-out digits 0-6 it classifies right.
    const known = evaluate(model, splits.eval, 256);
    const keep = [...known.predictions.keys()].filter((i) => splits.eval.y[i] < 7 && known.predictions[i] === splits.eval.y[i]);
    const idx = tf.tensor1d(keep, 'int32');
    const xs = tf.gather(splits.eval.x, idx);
    const baseProbs = model.predict(xs) as tf.Tensor;
    /** Mean KL(base || model) over those digits, and the share the model still gets right. */
    const drift = () =>
      tf.tidy(() => {
        const p = model.predict(xs) as tf.Tensor;
        const kl = tf.mean(tf.sum(tf.mul(baseProbs, tf.sub(tf.log(tf.clipByValue(baseProbs, 1e-7, 1)), tf.log(tf.clipByValue(p, 1e-7, 1)))), -1)).dataSync()[0];
        const right = tf.mean(tf.cast(tf.equal(tf.argMax(p, -1), tf.argMax(baseProbs, -1)), 'float32')).dataSync()[0];
        return { kl, right };
      });
    // A full fine-tune at a brisk rate (the method that moves the most), with and without.
    const opts = { method: 'full' as const, budgetBytes: 0, epochs: 3, seed: 6, base, tune: 'off' as const, learningRate: 3e-3 };
    const plain = await trainDiff(model, splits.updateTrain, { ...opts, distill: 0 });
    const without = drift();
    reset();
    const kept = await trainDiff(model, splits.updateTrain, opts);
    const withIt = drift();
    reset();
    idx.dispose();
    xs.dispose();
    baseProbs.dispose();
    assert.equal(plain.distill, undefined); // asked off
    assert.equal(plain.distillOff, 'turned off (distill 0)');
    assert.equal(kept.distillOff, undefined);
    assert.ok(kept.distill!.kappa > 0.8, `the base does the old digits: kappa ${kept.distill!.kappa}`);
    // The default weight is 1; the term counts only training examples the base got right, and
    // the base never predicts a digit it was not trained on (7-9), so those are never kept.
    assert.deepEqual({ weight: kept.distill?.weight, temperature: kept.distill?.temperature }, { weight: 1, temperature: 2 });
    const trainRows = splits.updateTrain.y.length - kept.validation!.examples;
    const oldRows = Math.round(trainRows * 0.7); // digits 0-6 are about 70% of the data
    assert.ok(kept.distill!.examples > 0.8 * oldRows && kept.distill!.examples < trainRows, `${kept.distill!.examples} of ${trainRows} (about ${oldRows} are 0-6)`);
    assert.ok(withIt.kl < 0.8 * without.kl, `KL(base || update) on known digits: ${withIt.kl} with distillation, ${without.kl} without`);
    assert.ok(withIt.right >= without.right, `agreement with the base on known digits: ${withIt.right} with, ${without.right} without`);
    await assert.rejects(trainDiff(model, splits.updateTrain, { ...opts, distill: -1 }), (e: unknown) => e instanceof UsageError && /distill must be a weight >= 0/.test(e.message));
    reset();
  });

  test('with the replayed examples marked, distillation keeps the base only on those; the update\'s own examples learn from their labels', async () => {
    reset();
    // Every other training example marked replayed; validation given, so all of them train.
    const train = { ...splits.updateTrain, replay: Uint8Array.from(splits.updateTrain.y, (_, i) => (i % 2 === 0 ? 1 : 0)) };
    const validation = splits.eval;
    const atBase = evaluate(model, train, 256).predictions;
    let right = 0;
    let rightReplayed = 0;
    atBase.forEach((p, i) => {
      if (p !== train.y[i]) return;
      right++;
      if (train.replay[i]) rightReplayed++;
    });
    const lines: string[] = [];
    const opts = { method: 'sparse' as const, budgetBytes: budget, epochs: 1, seed: 2, base, tune: 'off' as const, validation, allowWorse: true };
    const marked = await trainDiff(model, train, { ...opts, onProgress: (l) => lines.push(l) });
    reset();
    const unmarked = await trainDiff(model, splits.updateTrain, opts);
    reset();
    assert.equal(marked.distill?.examples, rightReplayed, 'kept: the replayed examples the base classifies right');
    assert.equal(unmarked.distill?.examples, right, 'without marks: every example the base classifies right');
    assert.ok(rightReplayed > 0.3 * right && rightReplayed < 0.7 * right, `${rightReplayed} of ${right}`);
    const replayed = train.replay.reduce((a, r) => a + r, 0);
    assert.ok(lines.includes(`distillation: keeping the base model's outputs on the ${rightReplayed} of ${replayed} replayed training examples (of ${train.y.length}) it classifies right (weight 1, temperature 2; Cohen's kappa ${marked.distill!.kappa.toFixed(2)}; --distill 0 turns it off)`), lines.join('\n'));
    // The validation split (and tuning's half) are taken with pick, which keeps each row's mark.
    const half = pick(train, Int32Array.of(0, 1, 2, 3, 5));
    assert.deepEqual([...(half.replay as Uint8Array)], [1, 0, 1, 0, 0]);
    half.x.dispose();
    // Without validation given, 10% of the rows validate: the marks follow the 90% that train
    // (lost, every right example would count: about twice as many).
    const split = await trainDiff(model, train, { ...opts, validation: undefined });
    reset();
    assert.ok(split.distill!.examples <= rightReplayed && split.distill!.examples > 0.8 * rightReplayed, `${split.distill!.examples} kept of ${rightReplayed}`);
    // Marks that do not match the examples are refused.
    await assert.rejects(trainDiff(model, { ...train, replay: train.replay.subarray(1) }, opts), /replay marks for \d+ examples/);
  });

  test('lora and topk-retrain payloads apply through the device applier to exactly the evaluated weights', async () => {
    for (const method of ['lora', 'topk-retrain'] as const) {
      reset();
      const r = await trainDiff(model, splits.updateTrain, { method, budgetBytes: 2 * budget, epochs: 2, seed: 6, base, tune: 'off', eval: splits.eval });
      reset();
      assert.ok(r.bytes.length <= 2 * budget, `${method}: ${r.bytes.length} bytes`);
      const payload = decodePayload(r.bytes);
      assert.equal(payload.header.meta?.method, method);
      assert.ok(payload.patches.every((p) => p.kind === (method === 'lora' ? 'lowrank' : 'sparse')));
      const device = base.clone();
      await applyPayload(device, r.bytes);
      for (const [n, v] of r.targetValues) assert.deepEqual(device.values(n), v, `${method} ${n}`);
      const fresh = mnistModel(9);
      setModelWeights(fresh, (n) => device.values(n));
      const e = evaluate(fresh, splits.eval);
      assert.equal(e.accuracy, r.accuracyAfter);
      assert.deepEqual(e.predictions, r.predictions);
      fresh.dispose();
      assert.ok(r.accuracyAfter! > r.accuracyBefore!, `${method} learns the update: ${r.accuracyBefore} -> ${r.accuracyAfter}`);
    }
    reset();
  });
});

describe('which weights train, and how many examples fit a step', () => {
  /** conv + batchnorm + dense, the conv layer frozen in the config. */
  function frozenModel(): tf.LayersModel {
    const m = tf.sequential({
      layers: [
        tf.layers.conv2d({ name: 'conv', inputShape: [8, 8, 1], filters: 4, kernelSize: 3, trainable: false }),
        tf.layers.batchNormalization({ name: 'bn' }),
        tf.layers.flatten({ name: 'flat' }),
        tf.layers.dense({ name: 'out', units: 3, activation: 'softmax' }),
      ],
    });
    return m;
  }

  test('config, all and a pattern choose the weights; statistics never; flags come back afterwards', () => {
    const m = frozenModel();
    const roles = Object.fromEntries(weightRoles(m).map((r) => [r.name, r.role]));
    assert.deepEqual(roles, {
      'conv/kernel': 'frozen', 'conv/bias': 'frozen',
      'bn/gamma': 'trainable', 'bn/beta': 'trainable', 'bn/moving_mean': 'statistic', 'bn/moving_variance': 'statistic',
      'out/kernel': 'trainable', 'out/bias': 'trainable',
    });
    const before = m.trainableWeights.map((w) => w.originalName);
    const config = selectTrainable(m, 'config');
    assert.deepEqual(config.chosen, ['bn/gamma', 'bn/beta', 'out/kernel', 'out/bias']);
    assert.deepEqual(config.frozenByConfig, ['conv/kernel', 'conv/bias']);
    const all = selectTrainable(m, 'all');
    assert.deepEqual(m.trainableWeights.map((w) => w.originalName).sort(), ['bn/beta', 'bn/gamma', 'conv/bias', 'conv/kernel', 'out/bias', 'out/kernel']);
    all.restore();
    assert.deepEqual(m.trainableWeights.map((w) => w.originalName), before);
    const pattern = selectTrainable(m, /^conv\//);
    assert.deepEqual(m.trainableWeights.map((w) => w.originalName).sort(), ['conv/bias', 'conv/kernel']);
    pattern.restore();
    assert.deepEqual(m.trainableWeights.map((w) => w.originalName), before);
    assert.throws(() => selectTrainable(m, /nothing/), (e: unknown) => e instanceof UsageError && /matches none/.test(e.message));
    m.dispose();
  });

  test('a trained diff never patches BatchNorm statistics; --trainable all reaches frozen layers', async () => {
    await initBackend('wasm');
    const m = frozenModel();
    const x = tf.randomNormal([60, 8, 8, 1], 0, 1, 'float32', 1);
    const y = Int32Array.from({ length: 60 }, (_, i) => i % 3);
    const base = modelToStore(m);
    for (const trainable of ['config', 'all'] as const) {
      setModelWeights(m, (n) => base.values(n));
      const r = await trainDiff(m, { x, y }, { method: 'full', budgetBytes: 0, epochs: 2, seed: 1, base, tune: 'off', trainable, validation: 0 });
      const patched = r.payload.patches.map((p) => p.name);
      assert.ok(!patched.some((n) => /moving_/.test(n)), `${trainable}: ${patched}`);
      assert.equal(patched.includes('conv/kernel'), trainable === 'all', `${trainable}: ${patched}`);
      assert.ok(patched.includes('out/kernel'));
    }
    x.dispose();
    m.dispose();
  });

  test('a batch the wasm backend cannot hold is refused naming --batch-size; the default fits', () => {
    const big = tf.sequential({ layers: [tf.layers.conv2d({ inputShape: [1024, 1024, 3], filters: 32, kernelSize: 3, padding: 'same' }), tf.layers.globalAveragePooling2d({}), tf.layers.dense({ units: 2 })] });
    const fits = chooseBatchSize(big, 'wasm', 0, undefined, 1000);
    assert.ok(fits >= 1 && fits < 32, `default ${fits}`);
    assert.throws(() => chooseBatchSize(big, 'wasm', 0, 64, 1000), (e: unknown) => e instanceof UsageError && /--batch-size 64 needs about .* GiB .* use --batch-size \d+ or less/.test(e.message));
    assert.equal(chooseBatchSize(big, 'cpu', 0, 64, 1000), 64, 'the cpu backend has the machine\'s memory');
    big.dispose();
  });
});

describe('the distillation term and its gate', () => {
  before(async () => {
    await initBackend('wasm');
  });

  test('the term is 0 at the base for confident models, softmax or logits, with many classes', () => {
    for (const classes of [10, 1000]) tf.tidy(() => {
      // One confident example: the top class far above the rest (probabilities below the 1e-7 floor).
      const logits = new Float32Array(classes).fill(-8);
      logits[3] = 20;
      const t = tf.tensor2d(logits, [1, classes]);
      const idx = Int32Array.of(0);
      const right = Uint8Array.of(1);
      for (const fromLogits of [true, false]) {
        const out = fromLogits ? t : tf.softmax(t);
        const teacherOut = (fromLogits ? tf.logSoftmax(t) : tf.softmax(t)).dataSync() as Float32Array;
        const teacher = { outputs: Float32Array.from(teacherOut), right, weight: 1, temperature: 2 };
        const atBase = keepLoss(out, idx, teacher, fromLogits).dataSync()[0];
        // (float rounding over 1,000 classes leaves ~1e-4; the floored logit teacher gave 4.6)
        assert.ok(Math.abs(atBase) < 1e-3, `${classes} classes, ${fromLogits ? 'logits' : 'softmax'}: ${atBase} at the base`);
        // ... and positive once the model moves away from the base.
        const moved = fromLogits ? tf.add(t, tf.oneHot(tf.tensor1d([5], 'int32'), classes).mul(30)) : tf.softmax(tf.add(t, tf.oneHot(tf.tensor1d([5], 'int32'), classes).mul(30)));
        assert.ok(keepLoss(moved, idx, teacher, fromLogits).dataSync()[0] > 0.1);
        // An example the base got wrong is not kept.
        assert.equal(keepLoss(moved, idx, { ...teacher, right: Uint8Array.of(0) }, fromLogits).dataSync()[0], 0);
      }
    });
  });

  test("the gate measures agreement beyond chance: two classes, unbalanced labels and new classes", () => {
    const labels = (...counts: number[]) => Int32Array.from(counts.flatMap((n, c) => Array(n).fill(c)));
    // Two balanced classes, 85% right: clearly doing the task (accuracy against the majority's
    // share could never pass 2 x 50%).
    const two = labels(100, 100);
    const twoPred = Int32Array.from(two, (y, i) => (i % 20 < 3 ? 1 - y : y));
    assert.ok(agreementBeyondChance(two, twoPred).kappa >= 0.6);
    // 90% of one class, always predicted: right 90% of the time, no information (only the
    // answered class counts, and one class always answered is chance by definition).
    const skewed = labels(180, 20);
    assert.equal(agreementBeyondChance(skewed, new Int32Array(200)).kappa, 0);
    // A new class the base never answers (half the data) is left out: the old ones decide.
    const update = labels(50, 50, 50, 150);
    const updatePred = Int32Array.from(update, (y, i) => (y === 3 ? i % 3 : y));
    const withNew = agreementBeyondChance(update, updatePred);
    assert.equal(withNew.examples, 150);
    assert.equal(withNew.kappa, 1);
    // Predictions unrelated to the labels: about 0, with few classes or with many classes and
    // about two examples each (choosing the classes by where the model is right would keep the
    // few it hit by luck and score those high).
    for (const classes of [5, 1000]) {
      for (let seed = 1; seed <= 20; seed += 2) {
        const k = agreementBeyondChance(seededLabels(2000, classes, seed), seededLabels(2000, classes, seed + 1)).kappa;
        assert.ok(Math.abs(k) < 0.05, `${classes} classes, seed ${seed}: kappa ${k}`);
      }
    }
    // 1,000 classes of two examples, right on two of them by luck, every class answered somewhere:
    // chance. (Counting only the classes it got right would give 0.33 on four examples.)
    const many = Int32Array.from({ length: 2000 }, (_, i) => i >> 1);
    const lucky = Int32Array.from(many, (y, i) => (i === 0 || i === 2 ? y : (y + 7) % 1000));
    const luck = agreementBeyondChance(many, lucky);
    assert.equal(luck.examples, 2000);
    assert.ok(Math.abs(luck.kappa) < 0.01, `kappa ${luck.kappa}`);
    assert.deepEqual(agreementBeyondChance(new Int32Array(0), new Int32Array(0)), { kappa: 0, examples: 0 });
    assert.ok(DISTILL_MIN_KAPPA > 0.05 && DISTILL_MIN_KAPPA < 0.6);
  });
});

test('each batch says which rows it holds, so the teacher lines up: every row once per epoch, inputs and labels those rows', async () => {
  await initBackend('wasm');
  const n = 103;
  // Row i's input is [i, -i]: any mix-up between a batch and its row indices shows.
  const x = tf.tensor2d(Float32Array.from({ length: 2 * n }, (_, k) => (k % 2 ? -1 : 1) * Math.floor(k / 2)), [n, 2]);
  const y = Int32Array.from({ length: n }, (_, i) => (i * 7) % 5);
  const seen = new Uint8Array(n);
  for (const b of epochBatches({ x, y }, 16, seededRandom(3))) {
    const rows = b.x.arraySync() as number[][];
    assert.equal(rows.length, b.idx.length);
    assert.equal(b.size, b.idx.length);
    assert.deepEqual(rows.map((r) => r[0]), [...b.idx]);
    assert.deepEqual([...b.y.dataSync()], [...b.idx].map((i) => y[i]));
    for (const i of b.idx) seen[i]++;
    b.x.dispose();
    b.y.dispose();
  }
  assert.ok(seen.every((c) => c === 1));
  x.dispose();
});

function seededLabels(n: number, classes: number, seed: number): Int32Array {
  const random = seededRandom(seed);
  return Int32Array.from({ length: n }, () => Math.floor(random() * classes));
}
