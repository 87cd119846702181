/**
 * The teacher's training stream of graph programs (ONNX, LiteRT, TF.js graph models): wider
 * distillation inputs drawn in beside the update's own (src/train/distill-inputs.ts through
 * src/train/program/train-program.ts), and augmented steps whose inputs the model augments itself
 * (its `x` holds example ids), scored by the teacher on the very rows the student trains on.
 *
 * The four ONNX training cases that only train in this process (no file, folder or child process)
 * are checked once per CI, in the in-place suite; the fresh-clone runs on the other Node
 * releases skip them (test/helpers/benchmarks.ts) and run the TF.js graph model and LiteRT cases,
 * which draw distillation inputs and augment through train() and `ndiff train` from folders in the
 * clone's TMPDIR, and the refusals (test/onnx-train.test.ts trains ONNX programs there too).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { DataError, UsageError } from '../src/core/errors.ts';
import { seededRandom } from '../src/core/random.ts';
import { saveNpy } from '../src/io/npy/files.ts';
import { OnnxWeightStore } from '../src/io/onnx/store.ts';
import { initBackend } from '../src/engine/backend.ts';
import { train, type TrainResult } from '../src/train/front.ts';
import { OnnxProgram } from '../src/engine/onnx/executor.ts';
import { trainOnnxDiff, type OnnxDataset, type TrainOnnxOptions } from '../src/train/onnx/train-onnx.ts';
import { trainProgramDiff } from '../src/train/program/train-program.ts';
import { ProgramTrainingModel } from '../src/engine/program/training-model.ts';
import { augmenter, type Augmentation } from '../src/train/augment.ts';
import { loadDistillFolders, loadFolder } from '../src/train/data-folders.ts';
import { main } from '../cli/ndiff.ts';
import { DT, f32le, graph, model, node, tensor, valueInfoFree } from './helpers/onnx-build.ts';
import { cnn, images, lstm, sequences } from './helpers/onnx-models.ts';
import { mlpTflite } from './helpers/tflite-build.ts';
import { cnnInputs, cnnWeights, layersCnn, retrained, SIDE, writeGraphCnn } from './helpers/graph-model.ts';
import { fileSystemIO } from '../src/io/tfjs/index.ts';
import { onceSkip } from './helpers/benchmarks.ts';

await initBackend('wasm');

/** The ONNX training cases run in this process alone: checked once per CI (see the top comment). */
const inProcess = { skip: onceSkip('the in-process ONNX distillation and augmentation cases are') };

const root = mkdtempSync(path.join(tmpdir(), 'nd-program-distill-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

const v1 = cnn();
const v2 = cnn(0.5, 60);
/** Images of another region than the update's own: brighter, higher contrast (where a device also runs the model). */
function wider(n: number, seed: number): OnnxDataset {
  const d = images(n, seed);
  return { inputs: { x: { values: (d.inputs.x.values as Float32Array).map((v) => 2.5 * v + 1.5), shape: [1, 8, 8] } } };
}
const common: TrainOnnxOptions = { method: 'sparse', budgetBytes: 300, epochs: 3, tune: 'off', seed: 4, batchSize: 16, learningRate: 3e-2, validation: 0.1, teacher: v2, allowWorse: true, refuseWorseOnEval: false, header: { modelId: 'cnn', sequence: 1 }, program: { source: 'cnn.onnx' } };

/**
 * x [N, 8] -> Gemm -> Relu -> Gemm -> 4 logits; `shift` moves only the first layer's weights of
 * features 4-7 (v2 changed where the update's own inputs, features 0-3, never reach).
 */
function mlp(shift: number): Uint8Array {
  const r = seededRandom(3);
  const s = seededRandom(8);
  const draw = (n: number, scale: number, moved: (i: number) => boolean) => Array.from({ length: n }, (_, i) => (r() - 0.5) * scale + (moved(i) ? shift * (s() - 0.5) : 0));
  const init = (name: string, dims: number[], values: number[]) => tensor({ name, dims, dataType: DT.FLOAT, raw: f32le(values) });
  return model(graph({
    initializers: [init('w1', [8, 16], draw(128, 1, (i) => i >= 64)), init('b1', [16], draw(16, 0.2, () => false)), init('w2', [16, 4], draw(64, 1, () => false)), init('b2', [4], draw(4, 0.2, () => false))],
    nodes: [
      node({ opType: 'Gemm', inputs: ['x', 'w1', 'b1'], outputs: ['h'] }),
      node({ opType: 'Relu', inputs: ['h'], outputs: ['a'] }),
      node({ opType: 'Gemm', inputs: ['a', 'w2', 'b2'], outputs: ['logits'] }),
    ],
    inputs: [valueInfoFree('x', ['N', 8])],
    outputs: [valueInfoFree('logits', ['N', 4])],
  }));
}

/** `n` inputs of the MLP with features 0-3 (`half` 0: the update's region) or 4-7 (1: where the device also runs it) drawn, the rest 0. */
function region(n: number, seed: number, half: 0 | 1): OnnxDataset {
  const r = seededRandom(seed);
  const values = new Float32Array(n * 8);
  for (let i = 0; i < n; i++) for (let k = 0; k < 4; k++) values[i * 8 + half * 4 + k] = 2 * r() - 1;
  return { inputs: { x: { values, shape: [8] } } };
}

test('ONNX: wider distillation inputs bring the student closer to the teacher on their region than the update\'s inputs alone', inProcess, async (t) => {
  const own = region(96, 1, 0);
  const evalWide = region(200, 9, 1);
  // A sparse diff from zero: what it learns comes from the stream alone (not from teacher − base).
  const options: TrainOnnxOptions = { ...common, teacher: mlp(1.5), budgetBytes: 600, sparseStart: 'zero', eval: evalWide, header: { modelId: 'mlp', sequence: 1 }, program: { source: 'mlp.onnx' } };
  const without = await trainOnnxDiff(mlp(0), own, options);
  const progress: string[] = [];
  const withWide = await trainOnnxDiff(mlp(0), own, { ...options, distillInputs: [region(60, 5, 1), region(40, 6, 1)], onProgress: (m) => void progress.push(m) });
  const [a, b] = [without.teacherEval, withWide.teacherEval].map((e) => e as NonNullable<typeof e>);
  t.diagnostic(`agreement with the teacher on the wider region: base ${a.before.agreement.toFixed(3)}, the update's inputs alone ${a.after.agreement.toFixed(3)}, with the wider inputs ${b.after.agreement.toFixed(3)}; mean |Δ| ${a.after.meanAbsDiff.toFixed(4)} -> ${b.after.meanAbsDiff.toFixed(4)}`);
  assert.ok(progress.some((l) => /^distillation inputs: 96 of 100 drawn \(\d+ \+ \d+ by source\) beside 96 of the update's, 50\.0% of the stream/.test(l)), progress.join('\n'));
  assert.ok(b.after.agreement > a.after.agreement + 0.2, `agreement on the wider region ${b.after.agreement} with them, ${a.after.agreement} without`);
  assert.ok(b.after.meanAbsDiff < a.after.meanAbsDiff);
});

test('ONNX: empty distillation inputs change nothing (the same bytes); the same seed gives the same bytes', inProcess, async () => {
  const own = images(64, 2);
  const plain = (await trainOnnxDiff(v1, own, common)).bytes;
  assert.deepEqual((await trainOnnxDiff(v1, own, { ...common, distillInputs: [] })).bytes, plain);
  const none = { inputs: { x: { values: new Float32Array(0), shape: [1, 8, 8] } } };
  assert.deepEqual((await trainOnnxDiff(v1, own, { ...common, distillInputs: [none] })).bytes, plain, 'a set of no examples');
  assert.deepEqual((await trainOnnxDiff(v1, own, { ...common, distillInputs: [wider(30, 3)], distillMix: 0 })).bytes, plain, 'a share of 0');
  const mixed = (await trainOnnxDiff(v1, own, { ...common, distillInputs: [wider(30, 3)] })).bytes;
  assert.notDeepEqual(mixed, plain);
  assert.deepEqual((await trainOnnxDiff(v1, own, { ...common, distillInputs: [wider(30, 3)] })).bytes, mixed, 'the same seed, the same bytes');
});

/** Rows of `[n, 64]` values as keys, to tell which inputs a program was run on. */
const rowKeys = (values: Float32Array) => Array.from({ length: values.length / 64 }, (_, i) => Array.from(values.subarray(i * 64, i * 64 + 64), (v) => v.toFixed(5)).join(','));

test('ONNX: augment noise: the teacher scores the augmented batch the student trains on, every step, and the same seed gives the same bytes', inProcess, async () => {
  const own = images(64, 4);
  const given = new Set(rowKeys(own.inputs.x.values as Float32Array));
  const student = new OnnxProgram(v1, { source: 'cnn.onnx' });
  const teacher = new OnnxProgram(v2, { source: 'teacher.onnx' });
  const scored: string[][] = [];
  const trained = new Set<string>();
  let training = false;
  const spy = (p: OnnxProgram, on: (rows: string[]) => void) => {
    const run = p.run.bind(p);
    p.run = (feeds: Record<string, tf.Tensor>) => {
      if (training && feeds.x.shape[0] > 1) on(rowKeys(feeds.x.dataSync() as Float32Array));
      return run(feeds);
    };
  };
  spy(teacher, (rows) => scored.push(rows));
  spy(student, (rows) => trained.add(rows.join(';')));
  const { teacher: _t, program: _p, ...rest } = common;
  // Eager steps: each runs the student's program (a compiled step replays its kernels instead), on
  // this thread alone (on worker threads the spied program would see the first shard of each batch).
  await trainProgramDiff(student, new OnnxWeightStore(v1), own, { ...rest, teacher, augment: ['noise'], step: 'eager', validation: 0, epochs: 2, threads: 1, onBatch: () => void (training = true) });
  training = false;
  // The first step ran before the spies listened: 7 of its 8 steps are seen.
  const augmented = scored.filter((rows) => rows.every((r) => !given.has(r)));
  assert.ok(augmented.length >= 7, `the teacher scored ${augmented.length} batches of inputs not in the data in 7 steps: its outputs were not made anew on each augmented batch`);
  assert.ok(augmented.every((rows) => trained.has(rows.join(';'))), 'each augmented batch the teacher scored is a batch the student trained on, row for row');
  const plain = (await trainOnnxDiff(v1, own, common)).bytes;
  const noisy = (await trainOnnxDiff(v1, own, { ...common, augment: ['noise'] })).bytes;
  assert.notDeepEqual(noisy, plain);
  assert.deepEqual((await trainOnnxDiff(v1, own, { ...common, augment: 'noise' })).bytes, noisy, 'the same seed, the same bytes');
  assert.deepEqual((await trainOnnxDiff(v1, own, { ...common, augment: 'none' })).bytes, plain);
});

test('ONNX: augment auto tries what fits the input ([1, 8, 8] seen as [8, 8, 1]: a spectrogram\'s and any input\'s) against none, and writes the kept run\'s bytes', inProcess, async () => {
  const own = images(64, 6);
  const r = await trainOnnxDiff(v1, own, { ...common, augment: 'auto', validation: 0.2 });
  const a = r.augmentation as NonNullable<typeof r.augmentation>;
  assert.deepEqual(a.tried.slice(0, 9).map((x) => x.augment), ['none', 'time-shift', 'gain', 'time-mask', 'freq-mask', 'freq-warp', 'time-stretch', 'noise', 'mixup']);
  const again = await trainOnnxDiff(v1, own, { ...common, augment: a.kept.length ? a.kept : 'none', validation: 0.2 });
  assert.deepEqual(again.bytes, r.bytes, 'the kept run, written');
});

test('TF.js graph model toward a layers-model teacher through train(): --distill-inputs and image augmentations (crop, flip) of its [12, 12, 1] input', { timeout: 600_000 }, async () => {
  const w = cnnWeights(21);
  const [base, teacher, data, field] = ['g-v1', 'g-v2', 'g-train', 'g-field'].map((d) => path.join(root, d));
  await writeGraphCnn(base, w);
  const t2 = layersCnn(retrained(w, 22));
  await t2.save(fileSystemIO(teacher));
  t2.dispose();
  for (const [dir, n, seed] of [[data, 40, 1], [field, 30, 2]] as const) {
    mkdirSync(dir);
    saveNpy(path.join(dir, 'x.npy'), cnnInputs(n, seed), [n, SIDE, SIDE, 1]);
  }
  const options = { base, teacher, train: data, modelId: 'cnn', method: 'sparse' as const, budget: '20%', epochs: 1, tune: 'off' as const, backend: 'cpu' as const, threads: 1 };
  const messages: string[] = [];
  const res = await train({ ...options, distillInputs: [field], augment: 'crop,flip', onProgress: (e) => e.kind === 'message' && messages.push(e.text) });
  assert.deepEqual(res.distillStream, { distillInputs: [field], distillMix: 0.5, augment: 'crop,flip' });
  assert.ok(messages.some((l) => /^distillation inputs: 30 of 30 drawn/.test(l)), messages.join('\n'));
  const again = await train({ ...options, distillInputs: [field], augment: 'crop,flip' });
  assert.ok(Buffer.from(again.payload).equals(Buffer.from(res.payload)), 'the same seed, the same bytes');
  const plain = await train(options);
  assert.ok(!Buffer.from(plain.payload).equals(Buffer.from(res.payload)));
});

test('ONNX: what cannot be augmented or drawn is refused, saying what to do', async () => {
  const own = images(32, 5);
  await assert.rejects(trainOnnxDiff(mlp(0), region(32, 1, 0), { ...common, teacher: mlp(1), budgetBytes: 600, program: { source: 'mlp.onnx' }, augment: 'crop' }), (e: unknown) => e instanceof UsageError && /crop needs an image, \[height, width, channels\]; this model's input is \[8\]/.test(e.message));
  const state = [{ input: 'h', output: 'hN' }, { input: 'c', output: 'cN' }];
  const seq = sequences(6, 8, 1);
  const lstmOptions: TrainOnnxOptions = { ...common, teacher: lstm(0.5), state, budgetBytes: 700, program: { source: 'lstm.onnx' }, header: { modelId: 'lstm', sequence: 1 } };
  await assert.rejects(trainOnnxDiff(lstm(), seq, { ...lstmOptions, distillInputs: [sequences(3, 8, 2)] }), (e: unknown) => e instanceof UsageError && /carries state from frame to frame \(h, c\).*put the wider sequences in the training data/.test(e.message));
  await assert.rejects(trainOnnxDiff(lstm(), seq, { ...lstmOptions, augment: 'mixup' }), (e: unknown) => e instanceof UsageError && /lstm.onnx carries state from frame to frame, so its sequences are augmented whole, as waveforms: gain, noise, speed, pitch fit/.test(e.message));
});

test('LiteRT through train() and ndiff train: --distill-inputs DIR --augment noise, the same bytes from both, the stream in the metrics', { timeout: 600_000 }, async () => {
  const [base, teacher] = ['v1.tflite', 'v2.tflite'].map((f) => path.join(root, f));
  writeFileSync(base, mlpTflite(0, false));
  writeFileSync(teacher, mlpTflite(0.6, false));
  const folder = (name: string, n: number, seed: number, centre: number) => {
    const r = seededRandom(seed);
    mkdirSync(path.join(root, name));
    saveNpy(path.join(root, name, 'x.npy'), Float32Array.from({ length: n * 8 }, () => centre + r() * 2 - 1), [n, 8]);
    return path.join(root, name);
  };
  const data = folder('train', 80, 1, 0);
  const field = folder('field', 50, 2, 2);
  const options = { base, teacher, train: data, modelId: 'mlp', method: 'sparse' as const, budget: 250, epochs: 2, tune: 'off' as const, lr: 0.02, backend: 'cpu' as const, threads: 1 };
  const messages: string[] = [];
  const res: TrainResult = await train({ ...options, distillInputs: [field], augment: 'noise', onProgress: (e) => e.kind === 'message' && messages.push(e.text) });
  assert.deepEqual(res.distillStream, { distillInputs: [field], distillMix: 0.5, augment: 'noise' });
  assert.ok(messages.some((l) => /^distillation inputs: 50 of 50 drawn \(50 by source\) beside 80 of the update's, 38\.5% of the stream \(50% asked: every one is in\)/.test(l)), messages.join('\n'));
  const out = path.join(root, 'p.ndiff');
  const lines: string[] = [];
  const code = await main(['train', '--base', base, '--teacher', teacher, '--train', data, '--model-id', 'mlp', '--method', 'sparse', '--budget', '250', '--epochs', '2', '--tune', 'off', '--lr', '0.02', '--backend', 'cpu', '--threads', '1', '--distill-inputs', field, '--augment', 'noise', '--out', out], { out: (l) => lines.push(l), err: (l) => lines.push(l), progress: (l) => lines.push(l) });
  assert.equal(code, 0, lines.join('\n'));
  assert.ok(Buffer.from(res.payload).equals(readFileSync(out)), 'ndiff train wrote the bytes train() gave');
  const plain = await train(options);
  assert.ok(!Buffer.from(plain.payload).equals(Buffer.from(res.payload)), 'the wider inputs and the augmentation change what is learned');
  assert.equal(plain.distillStream, undefined);
  assert.ok(Buffer.from((await train({ ...options, distillInputs: [] })).payload).equals(Buffer.from(plain.payload)), 'no distillation inputs: the same bytes');
  await assert.rejects(train({ ...options, teacher: undefined, train: data, distillInputs: [field] }), (e: unknown) => e instanceof UsageError && /distillInputs \(--distill-inputs\) needs teacher \(--teacher\)/.test(e.message));
});

test('distillation folders are laid out as --train is; an input fed the same to every example may be left out, and where given must hold the training value', async () => {
  const dir = (name: string, files: Record<string, [Float32Array | Int32Array, number[]]>) => {
    mkdirSync(path.join(root, name));
    for (const [f, [v, shape]] of Object.entries(files)) saveNpy(path.join(root, name, f), v, shape);
    return path.join(root, name);
  };
  const x = (n: number) => [new Float32Array(n * 4).fill(0.5), [n, 4]] as [Float32Array, number[]];
  const sr = (v: number) => [Int32Array.of(v), []] as [Int32Array, number[]];
  const inputs = ['input', 'sr'];
  const t = loadFolder(dir('s-train', { 'input.npy': x(6), 'sr.npy': sr(16000), 'y.npy': [Int32Array.of(0, 1, 0, 1, 0, 1), [6]] }), inputs, '--train', false);
  const [a, b] = loadDistillFolders([dir('s-a', { 'input.npy': x(3) }), dir('s-b', { 'input.npy': x(2), 'sr.npy': sr(16000), 'y.npy': [Int32Array.of(1, 1), [2]] })], inputs, t.shared);
  assert.deepEqual(Object.keys(a.inputs), ['input']);
  assert.equal(a.inputs.input.values.length, 12);
  assert.equal(b.labels, undefined, 'labels are not read: the teacher gives the targets');
  assert.throws(() => loadDistillFolders([dir('s-c', { 'input.npy': x(2), 'sr.npy': sr(8000) })], inputs, t.shared), (e: unknown) => e instanceof DataError && /as 16000 in --train, here as 8000/.test(e.message));
  assert.throws(() => loadDistillFolders([dir('s-d', { 'sr.npy': sr(16000) })], inputs, t.shared), (e: unknown) => e instanceof DataError && /has no input\.npy for input "input"/.test(e.message));
});

test('augmentation changes a model\'s one float input per example: a model fed two is refused, saying so', async () => {
  const init = (name: string, dims: number[], values: number[]) => tensor({ name, dims, dataType: DT.FLOAT, raw: f32le(values) });
  const two = (shift: number) => model(graph({
    initializers: [init('w', [4, 3], Array.from({ length: 12 }, (_, i) => Math.sin(i) + shift)), init('b', [3], [0, 0.1, -0.1])],
    nodes: [node({ opType: 'Add', inputs: ['p', 'q'], outputs: ['s'] }), node({ opType: 'Gemm', inputs: ['s', 'w', 'b'], outputs: ['logits'] })],
    inputs: [valueInfoFree('p', ['N', 4]), valueInfoFree('q', ['N', 4])],
    outputs: [valueInfoFree('logits', ['N', 3])],
  }));
  const r = seededRandom(2);
  const data = { inputs: { p: { values: Float32Array.from({ length: 80 }, () => r()), shape: [4] }, q: { values: Float32Array.from({ length: 80 }, () => r()), shape: [4] } } };
  const options: TrainOnnxOptions = { ...common, teacher: two(0.3), budgetBytes: 200, header: { modelId: 'two', sequence: 1 }, program: { source: 'two.onnx' } };
  await assert.rejects(trainOnnxDiff(two(0), data, { ...options, augment: 'noise' }), (e: unknown) => e instanceof UsageError && /give 2 \(p, q\): expected exactly one.*use --augment none/.test(e.message));
  // Wider inputs need no such choice: each set gives every input.
  const wide = { inputs: { p: { values: Float32Array.from({ length: 40 }, () => 2 + r()), shape: [4] }, q: { values: Float32Array.from({ length: 40 }, () => r()), shape: [4] } } };
  const res = await trainOnnxDiff(two(0), data, { ...options, distillInputs: [wide] });
  assert.ok(res.bytes.length > 0);
});

test('an ONNX image input, [C, H, W] per example, is augmented channels last: a flip mirrors each channel\'s rows, the channels stay apart', async () => {
  const init = (name: string, dims: number[], values: number[]) => tensor({ name, dims, dataType: DT.FLOAT, raw: f32le(values) });
  const bytes = model(graph({
    initializers: [init('w', [48, 2], Array.from({ length: 96 }, (_, i) => Math.cos(i))), init('b', [2], [0, 0])],
    nodes: [node({ opType: 'Flatten', inputs: ['x'], outputs: ['f'] }), node({ opType: 'Gemm', inputs: ['f', 'w', 'b'], outputs: ['logits'] })],
    inputs: [valueInfoFree('x', ['N', 3, 4, 4])],
    outputs: [valueInfoFree('logits', ['N', 2])],
  }));
  const values = Float32Array.from({ length: 2 * 48 }, (_, i) => i);
  const m = new ProgramTrainingModel(new OnnxProgram(bytes, { source: 'rgb.onnx' }), { count: 2, inputs: { x: { values, shape: [3, 4, 4] } } });
  try {
    assert.deepEqual(m.augmentedInput(), { name: 'x', shape: [4, 4, 3], transposed: true, sequences: false });
    const ids = tf.tensor2d([1, 0], [2, 1]);
    const x = m.augmentBatch(ids, augmenter(['flip']) as Augmentation, () => 0);
    assert.deepEqual(Array.from(x.dataSync()), [2, 3], 'the augmented rows follow the examples');
    const rows = m.examples.inputs.x.values.subarray(2 * 48, 4 * 48);
    // Example 1 then example 0, each channel's 4 x 4 image mirrored left to right.
    const mirrored = (e: number) => Array.from({ length: 48 }, (_, i) => {
      const [k, r, q] = [Math.floor(i / 16), Math.floor((i % 16) / 4), i % 4];
      return e * 48 + k * 16 + r * 4 + (3 - q);
    });
    assert.deepEqual(Array.from(rows), [...mirrored(1), ...mirrored(0)]);
    assert.deepEqual(Array.from(m.examples.inputs.x.values.subarray(0, 96)), Array.from(values), 'the examples themselves unchanged');
    ids.dispose();
    x.dispose();
  } finally {
    m.dispose();
  }
});
