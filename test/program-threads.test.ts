/**
 * Graph programs (ONNX, LiteRT, TF.js graph models) on worker threads on wasm (issue #63): each
 * worker builds the program again from the model file and the shards carry their examples' input
 * rows. Threads 2 uses the pool and says so, reaches the loss of threads 1 within float rounding,
 * gives the same payload bytes twice for a seed; a worker that fails stops the run with a
 * TrainingWorkerError; a stateful sequence model trains on one thread and says why.
 */
import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { TrainingWorkerError, UsageError } from '../src/core/errors.ts';
import { initBackend } from '../src/engine/backend.ts';
import { Identity } from '../src/train/full-params.ts';
import { trainLoop } from '../src/train/loop.ts';
import { namedVariables } from '../src/engine/model-weights.ts';
import { OnnxProgram } from '../src/engine/onnx/executor.ts';
import { trainOnnxDiff } from '../src/train/onnx/train-onnx.ts';
import { sliceShard } from '../src/train/parallel/accumulate.ts';
import { defaultThreads, TrainingPool } from '../src/train/parallel/pool.ts';
import { ProgramTrainingModel } from '../src/engine/program/training-model.ts';
import { trainTfliteDiff } from '../src/train/tflite/train-tflite.ts';
import { trainTfjsGraphDiff } from '../src/train/tfjs-graph/train-graph.ts';
import type { TrainDiffResult } from '../src/train/options.ts';
import { fileSystemIO, openTfjsModelDir, quantizeModelDir } from '../src/io/tfjs/index.ts';
import { attention, lstm, sequences, tokenSequences } from './helpers/onnx-models.ts';
import { mlpTflite } from './helpers/tflite-build.ts';
import { cnnInputs, cnnWeights, CLASSES, SIDE, writeGraphCnn } from './helpers/graph-model.ts';
import { tempDir } from './helpers/dirs.ts';

const POOL_LINE = /^training on 2 threads \(the batch split across worker threads, gradients summed in a fixed order\)$/;

/** A run's progress lines beside its result. */
interface Run {
  result: TrainDiffResult;
  said: string[];
}

/** Epoch losses of two runs agree within float rounding (the shards' sum is another order of the same additions). */
function sameLosses(a: TrainDiffResult, b: TrainDiffResult): void {
  assert.equal(a.epochs.length, b.epochs.length);
  a.epochs.forEach((e, i) => {
    const other = b.epochs[i].loss;
    assert.ok(Math.abs(e.loss - other) <= 1e-5 * Math.max(1, Math.abs(e.loss)), `epoch ${i + 1}: loss ${e.loss} on 1 thread, ${other} on 2`);
  });
}

describe('graph programs on worker threads (wasm)', () => {
  before(async () => {
    await initBackend('wasm');
  });

  describe('an ONNX attention model over int32 token ids', () => {
    const { data, labels } = tokenSequences(96, 2);
    const run = async (threads: number): Promise<Run> => {
      const said: string[] = [];
      const result = await trainOnnxDiff(attention(), { ...data, labels }, {
        method: 'full', budgetBytes: 0, epochs: 2, tune: 'off', seed: 4, batchSize: 16, learningRate: 1e-2, validation: 0, allowWorse: true, threads,
        header: { modelId: 'attention', sequence: 1 }, onProgress: (m) => said.push(m),
      });
      return { result, said };
    };
    let one: Run;
    let two: Run;
    before(async () => {
      one = await run(1);
      two = await run(2);
    });

    test('threads 2 trains on the pool, each thread on a compiled shard step, and says so', () => {
      assert.ok(two.said.some((m) => POOL_LINE.test(m)), two.said.join('\n'));
      assert.ok(two.said.some((m) => /^step: compiled plan in each of 2 threads \(/.test(m)), two.said.join('\n'));
      assert.ok(!one.said.some((m) => /worker threads/.test(m)), one.said.join('\n'));
    });

    test('threads 2 reaches the loss of threads 1 within float rounding, and the same bytes twice', async () => {
      sameLosses(one.result, two.result);
      assert.ok(two.result.epochs[1].loss < two.result.epochs[0].loss, 'it learns');
      const again = await run(2);
      assert.deepEqual(Buffer.from(again.result.bytes), Buffer.from(two.result.bytes));
    });
  });

  test('a shard of a program\'s batch carries each input\'s rows in their own type, cut with the examples', () => {
    const tokens = Int32Array.from({ length: 5 * 3 }, (_, i) => 1000 + i);
    const scale = Float32Array.from({ length: 5 }, (_, i) => i / 2);
    const batch = { x: Float32Array.of(4, 0, 3, 1, 2), xShape: [5, 1], y: Int32Array.of(0, 1, 0, 1, 0), inputs: { tokens: { values: tokens, shape: [3] }, scale: { values: scale, shape: [1] } } };
    for (const copy of [false, true]) {
      const s = sliceShard(batch, 1, 4, copy);
      const got = s.inputs as NonNullable<typeof s.inputs>;
      assert.ok(got.tokens.values instanceof Int32Array, 'token ids stay int32');
      assert.deepEqual(Array.from(got.tokens.values), [1003, 1004, 1005, 1006, 1007, 1008, 1009, 1010, 1011]);
      assert.deepEqual(got.tokens.shape, [3]);
      assert.ok(got.scale.values instanceof Float32Array);
      assert.deepEqual(Array.from(got.scale.values), [0.5, 1, 1.5]);
      assert.equal(got.tokens.values.buffer === tokens.buffer, !copy, copy ? 'a copy to transfer' : 'a view');
    }
  });

  // Step 2 fails while the shard steps are recorded; step 4 after a replay.
  for (const [how, at] of [['throw', 2], ['exit', 4]] as const) {
    test(`a worker holding an ONNX program that fails (${how}) at step ${at} stops the run with TrainingWorkerError`, async () => {
      const { data, labels } = tokenSequences(64, 3);
      const model = new ProgramTrainingModel(new OnnxProgram(attention(), { source: 'attention.onnx' }), { count: 64, inputs: data.inputs });
      const layers = model.asLayersModel();
      const vars = namedVariables(layers).filter((v) => v.trainable);
      const param = new Identity(vars.map((v) => v.name), new Map(vars.map((v) => [v.name, v.variable.name])));
      const pool = await TrainingPool.start(layers, { threads: 2, backend: tf.getBackend(), failAtStep: { worker: 0, step: at, how } });
      const opt = tf.train.adam(1e-3);
      const x = model.ids(0, 64);
      let batches = 0;
      try {
        assert.throws(
          () => trainLoop(layers, { x, y: labels }, param, { epochs: 1, batchSize: 16, seed: 1, fromLogits: true, optimizerFor: () => opt, pool, onBatch: () => batches++ }),
          (e: unknown) => e instanceof TrainingWorkerError && e.code === 'ND_TRAINING_WORKER' && /worker 1/.test(e.message),
        );
        assert.equal(batches, at - 1, `the first ${at - 1} steps ran, the next failed`);
        assert.throws(() => pool.step({ x: Float32Array.of(0), xShape: [1, 1], y: new Int32Array(1) }), UsageError, 'the failed pool is disposed');
      } finally {
        pool.dispose();
        opt.dispose();
        x.dispose();
        model.dispose();
      }
    });
  }

  describe('a stateful sequence model (an LSTM carrying h and c)', () => {
    const seq = sequences(8, 6, 1);
    const labels = Int32Array.from({ length: 48 }, (_, i) => ((seq.inputs.x.values[i * 3] as number) > 0 ? 1 : 0));
    const options = (threads?: number, said: string[] = []) => ({
      method: 'full' as const, budgetBytes: 0, epochs: 1, tune: 'off' as const, seed: 1, batchSize: 8, validation: 0, allowWorse: true, output: 'p',
      state: [{ input: 'h', output: 'hN' }, { input: 'c', output: 'cN' }], header: { modelId: 'lstm', sequence: 1 }, onProgress: (m: string) => said.push(m), ...(threads ? { threads } : {}),
    });

    test('by default trains on one thread and says why once', { skip: defaultThreads() < 2 && 'one core: no thread to choose' }, async () => {
      const said: string[] = [];
      const r = await trainOnnxDiff(lstm(), { ...seq, labels }, options(undefined, said));
      assert.ok(r.bytes.length > 0);
      const why = said.filter((m) => m.startsWith('training on one thread'));
      assert.equal(why.length, 1, said.join('\n'));
      assert.match(why[0], /carries state from frame to frame \(h, c\)/);
      assert.ok(!said.some((m) => POOL_LINE.test(m)));
    });

    test('asked for 2 threads, refuses with TrainingWorkerError saying why and what to do', async () => {
      await assert.rejects(trainOnnxDiff(lstm(), { ...seq, labels }, options(2)), (e: unknown) => e instanceof TrainingWorkerError && /carries state from frame to frame/.test(e.message) && /--threads 1/.test(e.message));
    });
  });

  test('a LiteRT model: threads 2 on the pool, the loss of threads 1, the same bytes twice', async () => {
    const r = (() => {
      let s = 7;
      return () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
    })();
    const values = Float32Array.from({ length: 64 * 8 }, () => r());
    const labels = Int32Array.from({ length: 64 }, (_, i) => (values[i * 8] > 0.3 ? 2 : values[i * 8 + 1] > 0 ? 1 : 0));
    const run = async (threads: number): Promise<Run> => {
      const said: string[] = [];
      const result = await trainTfliteDiff(mlpTflite(0, false), { inputs: { x: { values, shape: [8] } }, labels }, {
        method: 'full', budgetBytes: 0, epochs: 2, tune: 'off', seed: 2, batchSize: 16, learningRate: 2e-2, validation: 0, allowWorse: true, threads,
        header: { modelId: 'mlp', sequence: 1 }, source: 'mlp.tflite', onProgress: (m) => said.push(m),
      });
      return { result, said };
    };
    const one = await run(1);
    const two = await run(2);
    assert.ok(two.said.some((m) => POOL_LINE.test(m)), two.said.join('\n'));
    sameLosses(one.result, two.result);
    assert.deepEqual(Buffer.from((await run(2)).result.bytes), Buffer.from(two.result.bytes));
  });

  test('a uint8-quantized TF.js graph model: threads 2 on the pool (the workers load its artifacts), the loss of threads 1', async () => {
    const dir = await tempDir('ndiff-program-threads-');
    const plain = path.join(dir, 'plain');
    const quantized = path.join(dir, 'uint8');
    await writeGraphCnn(plain, cnnWeights(1));
    await quantizeModelDir(plain, quantized, 'uint8');
    const n = 48;
    const x = cnnInputs(n, 3);
    const labels = Int32Array.from({ length: n }, (_, i) => i % CLASSES);
    const run = async (threads: number): Promise<Run> => {
      const said: string[] = [];
      const store = await openTfjsModelDir(quantized);
      const model = await tf.loadGraphModel(fileSystemIO(quantized));
      try {
        const result = await trainTfjsGraphDiff(model, store, { inputs: { [model.inputs[0].name]: { values: x, shape: [SIDE, SIDE, 1] } }, labels }, {
          method: 'full', budgetBytes: 0, epochs: 2, tune: 'off', seed: 5, batchSize: 16, learningRate: 1e-2, validation: 0, allowWorse: true, threads,
          header: { modelId: 'cnn', sequence: 1 }, onProgress: (m) => said.push(m),
        });
        return { result, said };
      } finally {
        model.dispose();
      }
    };
    const one = await run(1);
    const two = await run(2);
    assert.ok(two.said.some((m) => POOL_LINE.test(m)), two.said.join('\n'));
    sameLosses(one.result, two.result);
  });
});
