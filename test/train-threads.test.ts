/**
 * Data-parallel training (src/train/parallel/): threads 1 is the loop as it was (the payload's
 * bytes equal those main made before threads existed), 2 threads reach the same accuracy and are
 * deterministic for a seed, and a worker that fails stops the run with a typed error, not a hang.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs';
import { TrainingWorkerError, UsageError } from '../src/core/errors.ts';
import { initBackend } from '../src/train/backend.ts';
import { Identity } from '../src/train/full-params.ts';
import { trainLoop } from '../src/train/loop.ts';
import { modelToStore, namedVariables } from '../src/train/model-weights.ts';
import { shardSizes, TrainingPool } from '../src/train/parallel/pool.ts';
import { shardGradients } from '../src/train/parallel/shard-step.ts';
import { seeded } from './helpers/graph-model.ts';
import { trainDiff, type TrainDiffResult } from '../src/train/train-diff.ts';
import { mnistModel, mnistSplits, type MnistSplits } from '../examples/lib/mnist-task.ts';

/**
 * SHA-256 of the payload below as main made it at 0ec65bf and 790938d, before threads existed (the same call
 * without `threads`). Threads 1 must keep making exactly these bytes.
 */
const MAIN_PAYLOAD_SHA256 = 'b24a22085350f6ed58487303d15961edd674dba8afadd1dc469fc14ee400b9ca';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('training on several threads', () => {
  let splits: MnistSplits;
  const run = async (threads: number): Promise<TrainDiffResult> => {
    const model = mnistModel(1);
    const base = modelToStore(model);
    return trainDiff(model, splits.updateTrain, { method: 'sparse', budgetBytes: 4000, epochs: 2, seed: 3, eval: splits.eval, base, tune: 'off', threads });
  };
  let one: TrainDiffResult;
  let two: TrainDiffResult;

  before(async () => {
    await initBackend('wasm');
    splits = mnistSplits(1500);
    one = await run(1);
    two = await run(2);
  });
  after(() => {
    for (const d of [splits.baseTrain, splits.updateTrain, splits.eval]) d.x.dispose();
  });

  test('threads 1 makes the bytes main made before threads existed', () => {
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

  test('an invalid thread count is a usage error', async () => {
    await assert.rejects(run(0), UsageError);
    await assert.rejects(run(1.5), UsageError);
  });

  for (const how of ['throw', 'exit'] as const) {
    test(`a worker that fails (${how}) mid-run stops it with TrainingWorkerError`, async () => {
      const model = mnistModel(2);
      const vars = namedVariables(model).filter((v) => v.trainable);
      const param = new Identity(vars.map((v) => v.name), new Map(vars.map((v) => [v.name, v.variable.name])));
      const pool = await TrainingPool.start(model, { threads: 2, backend: tf.getBackend(), failAtStep: { worker: 0, step: 2, how } });
      const opt = tf.train.adam(1e-3);
      let batches = 0;
      try {
        assert.throws(
          () => trainLoop(model, splits.updateTrain, param, { epochs: 1, batchSize: 32, seed: 1, fromLogits: true, optimizerFor: () => opt, pool, onBatch: () => batches++ }),
          (e: unknown) => e instanceof TrainingWorkerError && e.code === 'ND_TRAINING_WORKER' && /worker 1/.test(e.message),
        );
        assert.equal(batches, 1, 'the first step ran, the second failed');
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

  test('shards are as even as possible, larger first, and cover the batch', () => {
    assert.deepEqual(shardSizes(5, 2), [3, 2]);
    assert.deepEqual(shardSizes(1, 3), [1, 0, 0]);
    assert.deepEqual(shardSizes(64, 4), [16, 16, 16, 16]);
  });
});
