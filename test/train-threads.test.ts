/**
 * Data-parallel training (src/train/parallel/): threads 1 is the loop as it was (the payload's
 * bytes equal those main made before threads existed), 2 threads reach the same accuracy and are
 * deterministic for a seed, each thread compiles its shard's step (one plan per shard shape) and
 * keeps the eager pool's bytes, and a worker that fails stops the run with a typed error, not a hang.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs';
import { TrainingWorkerError, UsageError } from '../src/core/errors.ts';
import { initBackend } from '../src/engine/backend.ts';
import { Identity } from '../src/train/full-params.ts';
import { trainLoop } from '../src/train/loop.ts';
import { modelToStore, namedVariables } from '../src/engine/model-weights.ts';
import { shardSizes, TrainingPool } from '../src/train/parallel/pool.ts';
import { poolPathMessages } from '../src/train/parallel/shard-plans.ts';
import { CompiledSteps, type StepMode } from '../src/engine/compiled/step.ts';
import { shardGradients } from '../src/train/parallel/shard-step.ts';
import { seeded } from './helpers/graph-model.ts';
import { trainDiff, type TrainDiffResult } from '../src/train/train-diff.ts';
import { mnistModel, mnistSplits, type MnistSplits } from '../examples/lib/mnist-task.ts';

/**
 * SHA-256 of the payload below on one thread. Main made b24a2208... at 0ec65bf and 790938d, before
 * threads existed (the same call without `threads`), and kept it until the dense layers' gradient
 * products (dx = dy·Wᵀ, dW = xᵀ·dy) moved from transposes and XNNPACK to batch-mat-mul.c, which
 * sums in the stock tfjs kernel's order instead of XNNPACK's: other last bits in every gradient,
 * the same for the same seed. Threads 1 must keep making exactly these bytes.
 */
const MAIN_PAYLOAD_SHA256 = '1f55a2db3dac4d629ae46c0081b7f42571f8a1e0280b6ab90b700878a2a137eb';

/**
 * SHA-256 of the same payload on 2 threads. The pool made 4a18bab1... at 308897b, when every pooled
 * step ran eagerly, until the same change of the gradient products; the compiled shard steps run
 * the same kernels in the same order, so the bytes stay.
 */
const POOL_PAYLOAD_SHA256 = '8a97575072e6e264315eae5d8d609fd21fdf4386b61ef19a477397f37b8c769e';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('training on several threads', () => {
  let splits: MnistSplits;
  const said = new Map<TrainDiffResult, string[]>();
  const run = async (threads: number, step?: StepMode): Promise<TrainDiffResult> => {
    const model = mnistModel(1);
    const base = modelToStore(model);
    const progress: string[] = [];
    const r = await trainDiff(model, splits.updateTrain, { method: 'sparse', budgetBytes: 4000, epochs: 2, seed: 3, eval: splits.eval, base, tune: 'off', threads, ...(step ? { step } : {}), onProgress: (m) => progress.push(m) });
    said.set(r, progress);
    return r;
  };
  let one: TrainDiffResult;
  let two: TrainDiffResult;
  let twoEager: TrainDiffResult;

  before(async () => {
    await initBackend('wasm');
    splits = mnistSplits(1500);
    one = await run(1);
    two = await run(2);
    twoEager = await run(2, 'eager');
  });
  after(() => {
    for (const d of [splits.baseTrain, splits.updateTrain, splits.eval]) d.x.dispose();
  });

  test('threads 1 makes the pinned bytes', () => {
    assert.equal(sha256(one.bytes), MAIN_PAYLOAD_SHA256);
  });

  test('2 threads reach the accuracy of 1 within noise, and the same bytes twice', async () => {
    const a1 = one.accuracyAfter as number;
    const a2 = two.accuracyAfter as number;
    assert.ok(a1 > 0.5 && a2 > 0.5, `both learn the new digits (${a1}, ${a2})`);
    // 450 eval examples: one standard error of an accuracy near 0.7 is about 2 points.
    assert.ok(Math.abs(a1 - a2) <= 0.05, `1 thread ${a1}, 2 threads ${a2}`);
    const again = await run(2);
    assert.equal(sha256(again.bytes), sha256(two.bytes));
  });

  test('2 threads compile each thread\'s shard step and make the eager pool\'s bytes', () => {
    const compiled = (said.get(two) as string[]).filter((m) => m.startsWith('step: '));
    assert.ok(compiled.some((m) => /^step: compiled plan in each of 2 threads \(\d+ kernels.*MB(, [\d.]+ MB of it one arena)?\)$/.test(m)), compiled.join('\n'));
    assert.ok(!compiled.some((m) => m.startsWith('step: eager')), compiled.join('\n'));
    const eager = (said.get(twoEager) as string[]).filter((m) => m.startsWith('step: '));
    assert.deepEqual(eager, ['step: eager (as asked)']);
    assert.equal(sha256(twoEager.bytes), POOL_PAYLOAD_SHA256);
    assert.equal(sha256(two.bytes), POOL_PAYLOAD_SHA256);
  });

  test('an invalid thread count is a usage error', async () => {
    await assert.rejects(run(0), UsageError);
    await assert.rejects(run(1.5), UsageError);
  });

  // Step 2 fails while the shard steps are recorded; step 5 after two steps replayed their plans.
  for (const [how, at] of [['throw', 2], ['exit', 2], ['throw', 5], ['exit', 5]] as const) {
    test(`a worker that fails (${how}) at step ${at} stops the run with TrainingWorkerError`, async () => {
      const model = mnistModel(2);
      const vars = namedVariables(model).filter((v) => v.trainable);
      const param = new Identity(vars.map((v) => v.name), new Map(vars.map((v) => [v.name, v.variable.name])));
      const pool = await TrainingPool.start(model, { threads: 2, backend: tf.getBackend(), failAtStep: { worker: 0, step: at, how } });
      const opt = tf.train.adam(1e-3);
      let batches = 0;
      try {
        assert.throws(
          () => trainLoop(model, splits.updateTrain, param, { epochs: 1, batchSize: 32, seed: 1, fromLogits: true, optimizerFor: () => opt, pool, onBatch: () => batches++ }),
          (e: unknown) => e instanceof TrainingWorkerError && e.code === 'ND_TRAINING_WORKER' && /worker 1/.test(e.message),
        );
        assert.equal(batches, at - 1, `the first ${at - 1} steps ran, the next failed`);
        if (at === 5) assert.ok((pool.stepCounts()[0]?.replayed ?? 0) >= 1, 'the parent replayed its plan before the fault');
        assert.throws(() => pool.step({ x: new Float32Array(196), xShape: [1, 196], y: new Int32Array(1) }), UsageError, 'the failed pool is disposed');
      } finally {
        pool.dispose();
        opt.dispose();
      }
    });
  }

  test('every step the workers compute at that step\'s weights: 2 threads give the batch gradient 1 thread gives', async () => {
    // A convolution and a dense layer: the backend packs their weights per tensor (XNNPACK), so a
    // worker whose variables were rewritten in place would keep computing at the first step's.
    const model = tf.sequential({ layers: [
      tf.layers.conv2d({ inputShape: [8, 8, 1], filters: 4, kernelSize: 3, activation: 'relu' }),
      tf.layers.flatten(),
      tf.layers.dense({ units: 3 }),
    ] });
    const vars = namedVariables(model).filter((v) => v.trainable);
    const pool = await TrainingPool.start(model, { threads: 2, backend: tf.getBackend() });
    try {
      pool.begin(vars.map((v) => ({ name: v.name, variable: v.variable })), { fromLogits: true });
      const r = seeded(4);
      for (let step = 1; step <= 3; step++) {
        for (const v of vars) v.variable.assign(tf.tensor(Float32Array.from({ length: v.variable.size }, () => r() - 0.5), v.shape));
        const batch = { x: Float32Array.from({ length: 16 * 64 }, () => r()), xShape: [16, 8, 8, 1], y: Int32Array.from({ length: 16 }, (_, i) => i % 3) };
        const one = shardGradients(model, vars.map((v) => v.variable), { ...batch, x: batch.x.slice(), y: batch.y.slice() }, { fromLogits: true }, 1);
        const two = pool.step(batch);
        one.grads.forEach((g, j) => {
          let top = 0;
          for (const x of g) top = Math.max(top, Math.abs(x));
          for (let i = 0; i < g.length; i++) assert.ok(Math.abs(two.grads[j][i] - g[i]) <= 1e-5 * (1 + top), `step ${step}, ${vars[j].name}[${i}]: ${two.grads[j][i]} on 2 threads, ${g[i]} on 1`);
        });
      }
    } finally {
      pool.dispose();
      model.dispose();
    }
  });

  test('each shard shape gets its own plan (a smaller last batch, a smaller last chunk), replayed at each step\'s weights', async () => {
    const model = tf.sequential({ layers: [
      tf.layers.conv2d({ inputShape: [8, 8, 1], filters: 4, kernelSize: 3, activation: 'relu' }),
      tf.layers.flatten(),
      tf.layers.dense({ units: 3 }),
    ] });
    const vars = namedVariables(model).filter((v) => v.trainable);
    // Shards of at most 6 examples at once: a batch of 16 is two shards of 8, each 6 + 2.
    const pool = await TrainingPool.start(model, { threads: 2, backend: tf.getBackend(), maxChunk: 6 });
    const said: string[] = [];
    try {
      pool.begin(vars.map((v) => ({ name: v.name, variable: v.variable })), { fromLogits: true }, 'compiled', (m) => said.push(m));
      const r = seeded(5);
      const plans = () => pool.stepCounts().map((c) => c?.plans);
      // Batches of 16, of 24 (chunks 6 + 6: no new shape), then of 10 (shards of 5: a third shape).
      for (const [size, steps, expected] of [[16, 4, 2], [24, 3, 2], [10, 4, 3]] as const) {
        for (let step = 1; step <= steps; step++) {
          for (const v of vars) v.variable.assign(tf.tensor(Float32Array.from({ length: v.variable.size }, () => r() - 0.5), v.shape));
          const batch = { x: Float32Array.from({ length: size * 64 }, () => r()), xShape: [size, 8, 8, 1], y: Int32Array.from({ length: size }, (_, i) => i % 3) };
          const one = shardGradients(model, vars.map((v) => v.variable), { ...batch, x: batch.x.slice(), y: batch.y.slice() }, { fromLogits: true }, 1);
          const two = pool.step(batch);
          one.grads.forEach((g, j) => {
            let top = 0;
            for (const x of g) top = Math.max(top, Math.abs(x));
            for (let i = 0; i < g.length; i++) assert.ok(Math.abs(two.grads[j][i] - g[i]) <= 1e-5 * (1 + top), `batch ${size}, step ${step}, ${vars[j].name}[${i}]: ${two.grads[j][i]} on 2 threads, ${g[i]} on 1`);
          });
        }
        assert.deepEqual(plans(), [expected, expected], `after the batches of ${size}`);
      }
      const counts = pool.stepCounts();
      assert.ok(counts.every((c) => (c?.replayed ?? 0) > 0), JSON.stringify(counts));
      const compiled = said.filter((m) => m.startsWith('step: compiled plan in each of 2 threads ('));
      assert.equal(compiled.length, said.length, said.join('\n'));
      assert.ok(compiled.length >= 2, `the shapes' plans are said (${said.join(' | ')})`);
    } finally {
      pool.dispose();
      model.dispose();
    }
  });

  test('a thread\'s compiled shard step gives the eager step\'s gradient at every step, the keep term included', () => {
    const model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [12], units: 8, activation: 'relu' }), tf.layers.dense({ units: 4 })] });
    const variables = namedVariables(model).filter((v) => v.trainable).map((v) => v.variable);
    const said: string[] = [];
    const compiled = new CompiledSteps((m) => said.push(m));
    const r = seeded(6);
    try {
      for (const spec of [{ fromLogits: true }, { fromLogits: true, keep: { weight: 0.5, temperature: 2 } }]) {
        for (let step = 1; step <= 6; step++) {
          for (const v of variables) v.assign(tf.tensor(Float32Array.from({ length: v.size }, () => r() - 0.5), v.shape));
          const size = 10;
          const logits = Float32Array.from({ length: size * 4 }, () => r() * 4 - 2);
          const shard = {
            x: Float32Array.from({ length: size * 12 }, () => r()), xShape: [size, 12], y: Int32Array.from({ length: size }, () => Math.floor(r() * 4)),
            keepRows: { outputs: tf.tidy(() => tf.logSoftmax(tf.tensor2d(logits, [size, 4])).dataSync() as Float32Array), right: Uint8Array.from({ length: size }, () => (r() < 0.6 ? 1 : 0)) },
          };
          const eager = shardGradients(model, variables, shard, spec, 0.4);
          const replayed = shardGradients(model, variables, shard, spec, 0.4, compiled);
          assert.equal(replayed.loss, eager.loss, `step ${step}: loss`);
          assert.equal(replayed.hits, eager.hits);
          replayed.grads.forEach((g, j) => assert.deepEqual(g, eager.grads[j], `step ${step}, gradient ${j}`));
        }
      }
      assert.equal(compiled.plans().length, 2, said.join('\n'));
      assert.ok(compiled.replayed >= 6 && said.every((m) => m.startsWith('shard: compiled plan')), said.join('\n'));
    } finally {
      compiled.dispose();
      model.dispose();
    }
  });

  test('the pool says each path once for the threads that took it, a worker\'s reason to stay eager included', () => {
    const plan = { compiled: true, detail: '45 kernels, 0.1 MB' };
    const why = { compiled: false, detail: 'kernel RandomUniform draws random values' };
    const report = (...paths: { compiled: boolean; detail: string }[]) => ({ paths, plans: 0, replayed: 0, eager: 0 });
    assert.deepEqual(poolPathMessages([report(plan), report(plan)]), ['step: compiled plan in each of 2 threads (45 kernels, 0.1 MB)']);
    assert.deepEqual(poolPathMessages([report(plan), report(why), report(plan)]), [
      'step: compiled plan in threads 1, 3 of 3 (45 kernels, 0.1 MB)',
      'step: eager in thread 2 of 3 (kernel RandomUniform draws random values)',
    ]);
    assert.deepEqual(poolPathMessages([report(plan), report(plan), undefined]), ['step: compiled plan in threads 1, 2 of 3 (45 kernels, 0.1 MB)']);
    assert.deepEqual(poolPathMessages([report(), report()]), []);
  });

  test('shards are as even as possible, larger first, and cover the batch', () => {
    assert.deepEqual(shardSizes(5, 2), [3, 2]);
    assert.deepEqual(shardSizes(1, 3), [1, 0, 0]);
    assert.deepEqual(shardSizes(64, 4), [16, 16, 16, 16]);
  });
});
