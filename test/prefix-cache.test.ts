/**
 * Caching a frozen prefix's activations (src/train/prefix-cache.ts): where the cut falls, that the
 * model run from the cut gives what the whole model gives, and that a training run with the cache
 * makes the same payload bytes as one without it, on one thread and on two.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { UsageError } from '../src/core/errors.ts';
import { initBackend } from '../src/engine/backend.ts';
import { modelToStore } from '../src/engine/model-weights.ts';
import { FrozenPrefixCache, forwardFromCut, planFrozenPrefix } from '../src/train/prefix-cache.ts';
import { trainDiff, type TrainDiffResult } from '../src/train/train-diff.ts';
import { mnistModel, mnistSplits, type MnistSplits } from '../examples/lib/mnist-task.ts';

/** conv → conv → [residual block: conv + add] → pool → dense, functional. */
function residualModel(): tf.LayersModel {
  const init = (seed: number) => tf.initializers.glorotUniform({ seed });
  const input = tf.input({ shape: [12, 12, 3] });
  const c1 = tf.layers.conv2d({ name: 'c1', filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(1) }).apply(input) as tf.SymbolicTensor;
  const c2 = tf.layers.conv2d({ name: 'c2', filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(2) }).apply(c1) as tf.SymbolicTensor;
  const c3 = tf.layers.conv2d({ name: 'c3', filters: 4, kernelSize: 3, padding: 'same', kernelInitializer: init(3) }).apply(c2) as tf.SymbolicTensor;
  const sum = tf.layers.add({ name: 'sum' }).apply([c2, c3]) as tf.SymbolicTensor;
  const pool = tf.layers.globalAveragePooling2d({ name: 'pool' }).apply(sum) as tf.SymbolicTensor;
  const out = tf.layers.dense({ name: 'out', units: 5, kernelInitializer: init(4) }).apply(pool) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: out });
}

const names = (model: tf.LayersModel, layers: string[]) => new Set(model.layers.filter((l) => layers.includes(l.name)).flatMap((l) => l.weights.map((w) => w.originalName)));

describe('the frozen prefix', () => {
  before(async () => {
    await initBackend('wasm');
  });

  test('the cut is the last frozen layer that every path goes through', () => {
    const model = residualModel();
    // Only the dense layer trains: everything up to the pooling is frozen, and the pooling's output joins it.
    assert.deepEqual(planFrozenPrefix(model, names(model, ['out'])), { cut: 'pool', layers: 5, of: 6, exampleShape: [4] });
    // c3 trains: c2's output feeds both c3 and the add, so the cut is c2.
    assert.deepEqual(planFrozenPrefix(model, names(model, ['c3', 'out'])), { cut: 'c2', layers: 2, of: 6, exampleShape: [12, 12, 4] });
    const first = planFrozenPrefix(model, names(model, ['c1', 'out']));
    assert.ok('reason' in first && /first layer trains/.test(first.reason), JSON.stringify(first));
    const seq = mnistModel(1);
    assert.deepEqual(planFrozenPrefix(seq, names(seq, ['digits'])), { cut: 'hidden2', layers: 2, of: 3, exampleShape: [64] });
    // Nothing trains after the last layer: the last layer's output is the model's, so the cut stops before it.
    assert.deepEqual(planFrozenPrefix(seq, new Set()), { cut: 'hidden2', layers: 2, of: 3, exampleShape: [64] });
  });

  test('several inputs and shared layers are left uncached, saying why', () => {
    const a = tf.input({ shape: [3] });
    const b = tf.input({ shape: [3] });
    const shared = tf.layers.dense({ units: 3 });
    const two = tf.model({ inputs: [a, b], outputs: tf.layers.add().apply([shared.apply(a), shared.apply(b)] as tf.SymbolicTensor[]) as tf.SymbolicTensor });
    const p = planFrozenPrefix(two, new Set());
    assert.ok('reason' in p && /2 inputs/.test(p.reason), JSON.stringify(p));
    const x = tf.input({ shape: [3] });
    const d = tf.layers.dense({ units: 3, name: 'twice' });
    const once = tf.model({ inputs: x, outputs: tf.layers.dense({ units: 2, name: 'head' }).apply(d.apply(d.apply(x))) as tf.SymbolicTensor });
    const q = planFrozenPrefix(once, names(once, ['head']));
    assert.ok('reason' in q && /twice is called 2 times/.test(q.reason), JSON.stringify(q));
  });

  test('the model run from the cut gives exactly what the whole model gives', () => {
    const model = residualModel();
    for (const trained of [['out'], ['c3', 'out']]) {
      const plan = planFrozenPrefix(model, names(model, trained));
      assert.ok('cut' in plan);
      const cache = new FrozenPrefixCache(model, plan, 1 << 30);
      const x = tf.randomNormal([7, 12, 12, 3], 0, 1, 'float32', 5);
      const data = { x, y: new Int32Array(7) };
      const cut = cache.inputsFor(data, 3);
      assert.ok(cut, 'the activations fit');
      assert.equal(cache.bytes, cache.bytesFor(7));
      const whole = (model.predict(x) as tf.Tensor).dataSync();
      assert.deepEqual(cache.forward(cut.x)[0].dataSync(), whole);
      assert.deepEqual(forwardFromCut(model, plan.cut, cut.x)[0].dataSync(), whole);
      // Asked again for the same data, the cache gives the same tensor (computed once).
      assert.equal(cache.inputsFor(data, 3)?.x, cut.x);
      cache.dispose();
      x.dispose();
    }
  });

  test('over its memory bound the cache computes nothing', () => {
    const model = residualModel();
    const plan = planFrozenPrefix(model, names(model, ['c3', 'out']));
    assert.ok('cut' in plan);
    const cache = new FrozenPrefixCache(model, plan, 7 * 12 * 12 * 4 * 4 - 1);
    const x = tf.zeros([7, 12, 12, 3]);
    assert.equal(cache.inputsFor({ x, y: new Int32Array(7) }, 4), undefined);
    assert.equal(cache.bytes, 0);
    x.dispose();
  });
});

describe('training with a frozen prefix cached', () => {
  let splits: MnistSplits;
  const run = (threads: number, prefixCacheBytes?: number): Promise<TrainDiffResult> => {
    const model = mnistModel(1);
    const base = modelToStore(model);
    return trainDiff(model, splits.updateTrain, {
      method: 'sparse', budgetBytes: 3000, epochs: 2, seed: 3, eval: splits.eval, base, tune: 'off', threads,
      trainable: /hidden2|digits/, ...(prefixCacheBytes !== undefined ? { prefixCacheBytes } : {}),
    });
  };

  before(async () => {
    await initBackend('wasm');
    splits = mnistSplits(800);
  });
  after(() => {
    for (const d of [splits.baseTrain, splits.updateTrain, splits.eval]) d.x.dispose();
  });

  test('the same payload bytes as computing the prefix at every step, on one thread and on two', async () => {
    for (const threads of [1, 2]) {
      const cached = await run(threads);
      const uncached = await run(threads, 0);
      assert.deepEqual(cached.prefixCache && { cut: cached.prefixCache.cut, layers: cached.prefixCache.layers, of: cached.prefixCache.of }, { cut: 'hidden1', layers: 1, of: 3 });
      assert.ok((cached.prefixCache?.bytes ?? 0) >= splits.updateTrain.y.length * 0.8 * 128 * 4, `the training examples' activations were cached (${cached.prefixCache?.bytes} bytes)`);
      assert.equal(uncached.prefixCache, undefined);
      assert.ok(Buffer.from(cached.bytes).equals(Buffer.from(uncached.bytes)), `threads ${threads}: cached and uncached runs made the same payload`);
      assert.ok((cached.accuracyAfter as number) > (cached.accuracyBefore as number), 'the diff learned something');
    }
  });

  test('a bound below the activations trains without the cache; a negative bound is a usage error', async () => {
    const small = await run(1, 1024);
    assert.equal(small.prefixCache, undefined);
    await assert.rejects(run(1, -1), UsageError);
  });
});
