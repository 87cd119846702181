/**
 * The teacher's forward passes compiled (src/engine/compiled/forward.ts): a layers teacher's, an
 * ONNX and a LiteRT program teacher's and a TF.js graph-model teacher's rows come from a replayed
 * plan and equal the eager rows bit for bit; a
 * smaller last batch gets its own plan; what a plan cannot hold runs eagerly and says why; a
 * teacher run gives the same payload bytes with compiled passes as with `step: 'eager'`.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { ForwardPlans } from '../src/engine/compiled/forward.ts';
import { outputRows } from '../src/train/teacher.ts';
import { evaluate, evaluateWith } from '../src/train/data.ts';
import { UsageError } from '../src/core/errors.ts';
import { trainDiff } from '../src/train/train-diff.ts';
import { modelToStore } from '../src/engine/model-weights.ts';
import { OnnxProgram } from '../src/engine/onnx/executor.ts';
import { ProgramTrainingModel } from '../src/engine/program/training-model.ts';
import { trainOnnxDiff } from '../src/train/onnx/train-onnx.ts';
import { GraphModelTeacher } from '../src/train/tfjs-graph/graph-teacher.ts';
import { fileSystemIO } from '../src/io/tfjs/index.ts';
import { cnn, images, lstm, sequences } from './helpers/onnx-models.ts';
import { cnnInputs, cnnWeights, SIDE, writeGraphCnn } from './helpers/graph-model.ts';
import { tempDir } from './helpers/dirs.ts';
import { mlpTflite } from './helpers/tflite-build.ts';
import { TfliteProgram } from '../src/engine/tflite/program.ts';
import { onceSkip } from './helpers/benchmarks.ts';

// Trains in this process only, through the readers and writers other files test on every Node
// release (whose CLI training cases run there too): checked once per CI (test/helpers/benchmarks.ts).
const once = { skip: onceSkip('the in-process compiled teacher passes are') };

before(async () => {
  await initBackend('wasm');
});

/** A small convolutional classifier of 8x8x1 images into 4 classes, seeded (`seed` moves its weights), its layers named alike whatever was built before. */
function layersCnn(seed: number): tf.LayersModel {
  const init = (s: number) => tf.initializers.glorotUniform({ seed: seed * 10 + s });
  const m = tf.sequential();
  m.add(tf.layers.conv2d({ name: 'conv', inputShape: [8, 8, 1], filters: 6, kernelSize: 3, activation: 'relu', kernelInitializer: init(1) }));
  m.add(tf.layers.maxPooling2d({ name: 'pool', poolSize: 2 }));
  m.add(tf.layers.flatten({ name: 'flat' }));
  m.add(tf.layers.dense({ name: 'hidden', units: 16, activation: 'tanh', kernelInitializer: init(2) }));
  m.add(tf.layers.dense({ name: 'out', units: 4, activation: 'softmax', kernelInitializer: init(3) }));
  return m;
}

function imageData(n: number, seed: number): Float32Array {
  let s = seed;
  const r = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
  return Float32Array.from({ length: n * 64 }, () => r() * 2 - 1);
}

function sameBits(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length, `${what}: as many values`);
  assert.deepEqual(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), new Uint8Array(b.buffer, b.byteOffset, b.byteLength), `${what}: the same bits`);
}

test('a layers teacher: rows from the compiled forward plan equal the eager rows bit for bit; a smaller last batch gets its own plan', once, () => {
  const model = layersCnn(1);
  // 140 examples in batches of 32: four full batches and one of 12.
  const x = tf.tensor4d(imageData(140, 3), [140, 8, 8, 1]);
  const eager = outputRows(model, x, 4, 32);
  const said: string[] = [];
  const forward = new ForwardPlans('teacher', (m) => said.push(m));
  const first = outputRows(model, x, 4, 32, forward);
  sameBits(first, eager, 'first pass over the data');
  // Full batches: two recorded, the plan checked on the second, the last two replayed.
  assert.equal(forward.replayed, 2, 'the third and fourth full batches replayed the plan');
  assert.equal(forward.plans().length, 1, 'one plan so far: the batch of 12 was seen once');
  assert.ok(said.length === 1 && /^teacher: compiled forward plan \(\d+ kernels/.test(said[0]), said.join(' | '));
  const second = outputRows(model, x, 4, 32, forward);
  sameBits(second, eager, 'second pass over the data');
  assert.equal(forward.plans().length, 2, 'the batch of 12 has its own plan');
  assert.equal(forward.replayed, 6, 'every full batch of the second pass replayed');
  const third = outputRows(model, x, 4, 32, forward);
  sameBits(third, eager, 'third pass');
  assert.equal(forward.replayed, 11, 'the batch of 12 replays its own plan too');
  assert.equal(said.length, 1, 'the path is said once');
  forward.dispose();
  x.dispose();
  model.dispose();
});

test('an ONNX program teacher: rows from the compiled forward plan equal the eager rows bit for bit', once, () => {
  const data = images(100, 5);
  const program = new OnnxProgram(cnn(0.5, 60), { source: 'teacher.onnx' });
  const teacher = new ProgramTrainingModel(program, { count: 100, inputs: data.inputs }, { frozen: true });
  const ids = teacher.ids(0, 100);
  const width = teacher.classes;
  const eager = outputRows(teacher.asLayersModel(), ids, width, 16);
  const said: string[] = [];
  const forward = new ForwardPlans('teacher', (m) => said.push(m));
  for (let pass = 0; pass < 2; pass++) sameBits(outputRows(teacher.asLayersModel(), ids, width, 16, forward), eager, `pass ${pass + 1}`);
  // 6 batches of 16 and one of 4, twice: the 16s replay from the third on, the 4 from the third pass.
  assert.equal(forward.replayed, 4 + 6);
  assert.equal(forward.plans().length, 2);
  assert.ok(said.length === 1 && /^teacher: compiled forward plan \(\d+ kernels/.test(said[0]), said.join(' | '));
  forward.dispose();
  ids.dispose();
  teacher.dispose();
});

test('a LiteRT program teacher: rows from the compiled forward plan equal the eager rows bit for bit', once, () => {
  const n = 70;
  const values = Float32Array.from({ length: n * 8 }, (_, i) => Math.sin(i * 0.37));
  const teacher = new ProgramTrainingModel(new TfliteProgram(mlpTflite(0.5, true), { source: 'v2.tflite' }), { count: n, inputs: { x: { values, shape: [8] } } }, { frozen: true });
  const ids = teacher.ids(0, n);
  const eager = outputRows(teacher.asLayersModel(), ids, teacher.classes, 16);
  const said: string[] = [];
  const forward = new ForwardPlans('teacher', (m) => said.push(m));
  sameBits(outputRows(teacher.asLayersModel(), ids, teacher.classes, 16, forward), eager, 'LiteRT teacher rows');
  assert.equal(forward.replayed, 2, 'batches 3-4 of 16 replayed');
  assert.ok(said.length === 1 && /^teacher: compiled forward plan \(\d+ kernels/.test(said[0]), said.join(' | '));
  forward.dispose();
  ids.dispose();
  teacher.dispose();
});

test('a TF.js graph-model teacher (a layers base\'s): rows from the compiled forward plan equal the eager rows bit for bit', once, async () => {
  const dir = await tempDir('nd-forward-graph-');
  await writeGraphCnn(dir, cnnWeights(3));
  const teacher = new GraphModelTeacher(await tf.loadGraphModel(fileSystemIO(dir)), [SIDE, SIDE, 1], 'v2');
  const x = tf.tensor4d(cnnInputs(80, 4), [80, SIDE, SIDE, 1]);
  const width = teacher.outputs[0].shape[1] as number;
  const eager = outputRows(teacher.asLayersModel(), x, width, 16);
  const said: string[] = [];
  const forward = new ForwardPlans('teacher', (m) => said.push(m));
  sameBits(outputRows(teacher.asLayersModel(), x, width, 16, forward), eager, 'graph teacher rows');
  assert.equal(forward.replayed, 3, 'batches 3-5 of 16 replayed');
  assert.ok(said.length === 1 && /^teacher: compiled forward plan \(\d+ kernels/.test(said[0]), said.join(' | '));
  forward.dispose();
  x.dispose();
  teacher.dispose();
});

test('a pass the plan refuses (a value read into JavaScript mid-pass) runs eagerly and says why once; a stateful program says why it stays eager', once, () => {
  const said: string[] = [];
  const forward = new ForwardPlans('teacher', (m) => said.push(m));
  const w = tf.tensor1d([1, 2, 3, 4]);
  const pass = (f: Record<string, tf.Tensor>) => {
    const y = tf.mul(f.x, w);
    const top = (y.max().dataSync() as Float32Array)[0];
    return tf.div(y, top);
  };
  for (let i = 0; i < 4; i++) {
    const got = tf.tidy(() => {
      const x = tf.tensor2d(Float32Array.from({ length: 8 }, (_, j) => j + i + 1), [2, 4]);
      return forward.run({ x }, pass).dataSync() as Float32Array;
    });
    const want = tf.tidy(() => pass({ x: tf.tensor2d(Float32Array.from({ length: 8 }, (_, j) => j + i + 1), [2, 4]) }).dataSync() as Float32Array);
    sameBits(got, want, `pass ${i + 1}`);
  }
  assert.equal(forward.replayed, 0);
  assert.deepEqual(said, ['teacher: eager forward passes (the step reads a tensor\'s values into JavaScript (dataSync) after kernel Max)']);
  w.dispose();

  const stateful = new ProgramTrainingModel(new OnnxProgram(lstm(), { source: 'lstm.onnx' }), { count: 24, ...sequences(3, 8, 1) }, { frozen: true, output: 'p', state: [{ input: 'h', output: 'hN' }, { input: 'c', output: 'cN' }] });
  const heard: string[] = [];
  const plans = new ForwardPlans('teacher', (m) => heard.push(m));
  const ids = stateful.ids(0, 24);
  sameBits(outputRows(stateful.asLayersModel(), ids, stateful.classes, 8, plans), outputRows(stateful.asLayersModel(), ids, stateful.classes, 8), 'stateful rows');
  assert.deepEqual(heard, ['teacher: eager forward passes (lstm.onnx carries state from frame to frame: each sequence runs from its start)']);
  ids.dispose();
  stateful.dispose();
});

/**
 * Train twice, every pass eager and then compiled: the compiled run says its `what` passes ran as a
 * compiled forward plan, the eager run does not, and both give the same payload bytes.
 */
async function assertBothPaths(run: (step: 'eager' | 'compiled') => Promise<{ bytes: Uint8Array; said: string[] }>, what: string): Promise<{ bytes: Uint8Array; said: string[] }> {
  const eager = await run('eager');
  const compiled = await run('compiled');
  assert.ok(!eager.said.some((m) => m.startsWith(`${what}: compiled forward plan`)), 'eager steps: eager forward passes');
  assert.ok(compiled.said.some((m) => new RegExp(`^${what}: compiled forward plan \\(\\d+ kernels`).test(m)), compiled.said.filter((m) => m.startsWith(what)).join(' | '));
  assert.deepEqual(compiled.bytes, eager.bytes, 'the same payload bytes');
  return compiled;
}

test('a layers teacher run: the same payload bytes with compiled forward passes as with every pass eager; the path is said', once, async () => {
  const x = tf.tensor4d(imageData(160, 9), [160, 8, 8, 1]);
  // Fresh models each run (their layers named, so the payload names the same tensors).
  const run = async (step: 'eager' | 'compiled') => {
    const said: string[] = [];
    const [model, teacher] = [layersCnn(1), layersCnn(2)];
    const r = await trainDiff(model, { x }, { base: modelToStore(model), method: 'sparse', budgetBytes: 200, epochs: 2, batchSize: 16, tune: 'off', seed: 3, teacher, validation: 0.2, allowWorse: true, augment: ['noise'], step, onProgress: (m) => void said.push(m), header: { modelId: 'cnn', sequence: 1 } });
    model.dispose();
    teacher.dispose();
    return { bytes: r.bytes, said };
  };
  await assertBothPaths(run, 'teacher');
  x.dispose();
});

test('an ONNX teacher run: the same payload bytes with compiled forward passes as with every pass eager; the path is said', once, async () => {
  const own = images(96, 4);
  const run = async (step: 'eager' | 'compiled') => {
    const said: string[] = [];
    const r = await trainOnnxDiff(cnn(), own, { method: 'sparse', budgetBytes: 300, epochs: 2, tune: 'off', seed: 4, batchSize: 16, learningRate: 3e-2, validation: 0.25, teacher: cnn(0.5, 60), augment: ['noise'], allowWorse: true, refuseWorseOnEval: false, step, onProgress: (m) => void said.push(m), header: { modelId: 'cnn', sequence: 1 }, program: { source: 'cnn.onnx' } });
    return { bytes: r.bytes, said };
  };
  await assertBothPaths(run, 'teacher');
});

test('a labelled run\'s validation passes: compiled, the same payload bytes as with every pass eager', once, async () => {
  const x = tf.tensor4d(imageData(200, 11), [200, 8, 8, 1]);
  // Labels from a fixed model, so there is something to learn.
  const y = tf.tidy(() => Int32Array.from(tf.argMax(layersCnn(7).predict(x) as tf.Tensor, -1).dataSync()));
  const run = async (step: 'eager' | 'compiled') => {
    const said: string[] = [];
    const model = layersCnn(1);
    const r = await trainDiff(model, { x, y }, { base: modelToStore(model), method: 'sparse', budgetBytes: 200, epochs: 4, batchSize: 16, tune: 'off', seed: 3, validation: 0.25, allowWorse: true, step, onProgress: (m) => void said.push(m), header: { modelId: 'cnn', sequence: 1 } });
    model.dispose();
    return { bytes: r.bytes, said };
  };
  const compiled = await assertBothPaths(run, 'validation');
  assert.ok(!compiled.said.some((m) => m.startsWith('validation: eager')), compiled.said.filter((m) => m.startsWith('validation')).join(' | '));
  x.dispose();
});

test('one set of plans serving different passes over inputs of one shape: each pass replays its own plan (validation\'s accuracy, a closeness\'s rows)', once, () => {
  // Two outputs: evaluate reads the first, outputRows concatenates both, so the passes differ
  // even where their inputs have the same shape.
  const input = tf.input({ shape: [6] });
  const hidden = tf.layers.dense({ units: 8, activation: 'tanh', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }).apply(input) as tf.SymbolicTensor;
  const first = tf.layers.dense({ units: 3, kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }).apply(hidden) as tf.SymbolicTensor;
  const second = tf.layers.dense({ units: 2, kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }) }).apply(hidden) as tf.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: [first, second] });
  let s = 5;
  const x = tf.tensor2d(Float32Array.from({ length: 64 * 6 }, () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1), [64, 6]);
  const data = { x, y: new Int32Array(64).map((_, i) => i % 3) };
  const forward = new ForwardPlans('validation', () => {});
  try {
    const eagerEval = evaluate(model, data, 16, true);
    const eagerRows = outputRows(model, x, 5, 16);
    // Four batches of 16: evaluate's pass gets a plan, then outputRows' passes come with the same shapes.
    for (let round = 0; round < 2; round++) {
      const e = evaluateWith(forward, model, data, 16, true);
      assert.deepEqual(e.predictions, eagerEval.predictions, `evaluate, round ${round}`);
      assert.equal(e.loss, eagerEval.loss, `evaluate's loss, round ${round}`);
      sameBits(outputRows(model, x, 5, 16, forward), eagerRows, `outputRows, round ${round}`);
    }
    assert.ok(forward.replayed > 0, 'some passes replayed a plan');
  } finally {
    forward.dispose();
    x.dispose();
    model.dispose();
  }
});

test('a run refused after the teacher scored its data frees the teacher\'s forward plans', once, async () => {
  // A rescaling layer first: its scale is a constant the plan holds in the backend's memory.
  const scaled = (seed: number) => {
    const m = tf.sequential();
    m.add(tf.layers.rescaling({ inputShape: [8, 8, 1], scale: 0.5, offset: 0.25 }));
    for (const layer of layersCnn(seed).layers) m.add(layer);
    return m;
  };
  const x = tf.tensor4d(imageData(600, 13), [600, 8, 8, 1]);
  const [model, teacher] = [scaled(1), scaled(2)];
  const backend = tf.engine().backend;
  const attempt = () => trainDiff(model, { x }, { base: modelToStore(model), method: 'sparse', budgetBytes: 200, epochs: 1, tune: 'off', seed: 3, teacher, sparseShare: 2, header: { modelId: 'cnn', sequence: 1 } });
  try {
    // Once before counting: what a first run makes and keeps (kernels' own buffers) is not a leak.
    await assert.rejects(attempt(), (e: unknown) => e instanceof UsageError && /sparseShare/.test(e.message));
    const held = backend.numDataIds();
    await assert.rejects(attempt(), (e: unknown) => e instanceof UsageError && /sparseShare/.test(e.message));
    assert.equal(backend.numDataIds(), held, 'nothing left in the backend\'s memory by the refused run');
  } finally {
    model.dispose();
    teacher.dispose();
    x.dispose();
  }
});
