/**
 * Augmentation of a stateful model's whole sequences (src/engine/program/training-model.ts
 * `augmentBatch`, src/train/augment.ts `waveAugmenter`): a sequence is augmented once as one
 * waveform and trained as a copy of its frames; the teacher scores that copy run from its start
 * with the state carried (never its cached rows of the clean sequence), anew when the copy is
 * redrawn; the same seed gives the same payload; what does not fit a sequence is refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { DataError, UsageError } from '../src/core/errors.ts';
import { seededRandom } from '../src/core/random.ts';
import { augmentCandidates } from '../src/train/augment-auto.ts';
import { waveAugmenter, type Augmentation } from '../src/train/augment.ts';
import { initBackend } from '../src/engine/backend.ts';
import { OnnxProgram } from '../src/engine/onnx/executor.ts';
import { trainOnnxDiff, type TrainOnnxOptions } from '../src/train/onnx/train-onnx.ts';
import { ProgramTrainingModel, type ProgramExamples } from '../src/engine/program/training-model.ts';
import { checkAugmentedIds } from '../src/engine/program/example-ids.ts';
import { lstm, sequences } from './helpers/onnx-models.ts';

await initBackend('wasm');

const state = [{ input: 'h', output: 'hN' }, { input: 'c', output: 'cN' }];
const FRAMES = 8;

/** Sum of |a − b| over frames [from, to). */
const gap = (a: Float32Array, b: Float32Array, from: number, to: number) => {
  let s = 0;
  for (let i = from; i < to; i++) s += Math.abs(a[i] - b[i]);
  return s;
};

test('a stateful model\'s batch: each sequence it touches augmented whole, the teacher\'s rows computed on the augmented sequence from its start, anew when it is redrawn', () => {
  const data = sequences(4, FRAMES, 1);
  const n = 4 * FRAMES;
  const examples: ProgramExamples = { count: n, inputs: { x: { values: Float32Array.from(data.inputs.x.values as Float32Array), shape: [3] } }, sequence: data.sequence as Int32Array };
  const student = new ProgramTrainingModel(new OnnxProgram(lstm(), { source: 'lstm.onnx' }), examples, { state });
  const teacher = new ProgramTrainingModel(new OnnxProgram(lstm(0.5), { source: 'teacher.onnx' }), examples, { state, frozen: true });
  try {
    assert.deepEqual(student.augmentedInput(), { name: 'x', shape: [3], transposed: false, sequences: true });
    const clean = teacher.rawOutputs(0, n);
    const transform = waveAugmenter(['gain', 'noise', 'speed']) as Augmentation;
    // Frames of sequences 1, 0, 1 and 3.
    const ids = tf.tensor2d([9, 3, 10, 27], [4, 1]);
    const stream = seededRandom(1);
    const x = student.augmentBatch(ids, transform, stream);
    assert.deepEqual(Array.from(x.dataSync()), [n + 9, n + 3, n + 10, n + 27], 'the copies\' ids');
    const values = examples.inputs.x.values as Float32Array;
    assert.deepEqual(values.subarray(0, 3 * n), data.inputs.x.values, 'the examples themselves unchanged');
    const rows = teacher.rawOutputs(n, n);
    for (const s of [0, 1, 3]) {
      assert.ok(gap(values.subarray(3 * n), values, 3 * s * FRAMES, 3 * (s + 1) * FRAMES) > 0, `sequence ${s}'s copy is augmented`);
      assert.ok(gap(rows, clean, s * FRAMES, (s + 1) * FRAMES) > 1e-3, `the teacher's rows of sequence ${s} are its clean rows: not scored on the augmented sequence`);
    }
    assert.deepEqual(rows.subarray(2 * FRAMES, 3 * FRAMES), clean.subarray(2 * FRAMES, 3 * FRAMES), 'sequence 2 was not in the batch: not drawn');
    // What a runtime computes on the augmented audio: the copies as sequences of their own, each from a zero state.
    const alone = new ProgramTrainingModel(new OnnxProgram(lstm(0.5), { source: 'teacher.onnx' }), { count: n, inputs: { x: { values: values.slice(3 * n), shape: [3] } }, sequence: data.sequence as Int32Array }, { state, frozen: true });
    try {
      const expected = alone.rawOutputs(0, n);
      for (let i = 0; i < n; i++) assert.ok(Math.abs(rows[i] - expected[i]) < 1e-6, `frame ${i}: ${rows[i]} against ${expected[i]} run alone`);
    } finally {
      alone.dispose();
    }
    // One draw per sequence per epoch: drawn anew once as many rows as the drawn sequences hold
    // have passed (4 + 1 + 32 rows against 32 frames here), and by another training loop's stream.
    const revisions = () => Array.from({ length: 4 }, (_, s) => (examples.revision as Uint32Array)[n + s * FRAMES]);
    const all = student.ids(0, n);
    tf.dispose(student.augmentBatch(tf.tensor2d([9], [1, 1]), transform, stream));
    assert.deepEqual(revisions(), [1, 1, 0, 1], 'sequence 1 drawn once this epoch');
    assert.deepEqual(teacher.rawOutputs(n, n).subarray(FRAMES, 2 * FRAMES), rows.subarray(FRAMES, 2 * FRAMES));
    tf.dispose(student.augmentBatch(all, transform, stream));
    assert.deepEqual(revisions(), [1, 1, 1, 1], 'only sequence 2 drawn: the others were this epoch');
    tf.dispose(student.augmentBatch(all, transform, stream));
    assert.deepEqual(revisions(), [2, 2, 2, 2], 'an epoch later, every sequence drawn anew');
    const redrawn = teacher.rawOutputs(n, n);
    for (const s of [0, 1, 3]) assert.ok(gap(redrawn, rows, s * FRAMES, (s + 1) * FRAMES) > 1e-3, `sequence ${s} redrawn kept its earlier rows`);
    tf.dispose(student.augmentBatch(tf.tensor2d([3], [1, 1]), transform, seededRandom(9)));
    assert.deepEqual(revisions(), [3, 2, 2, 2], 'another loop\'s stream draws its own copies');
    tf.dispose([ids, x, all]);
  } finally {
    student.dispose();
    teacher.dispose();
  }
});

test('sequence ids of any sign: the copies\' ids clash with none of the examples\'', () => {
  const data = sequences(4, FRAMES, 2);
  const n = 4 * FRAMES;
  // Ids -1, 0, 1, 2: a copy numbered from the largest id plus one would give sequence -1's copy the id 2.
  const sequence = Int32Array.from(data.sequence as Int32Array, (s) => s - 1);
  const examples: ProgramExamples = { count: n, inputs: { x: { values: Float32Array.from(data.inputs.x.values as Float32Array), shape: [3] } }, sequence };
  const student = new ProgramTrainingModel(new OnnxProgram(lstm(), { source: 'lstm.onnx' }), examples, { state });
  try {
    const ids = student.ids(0, n);
    tf.dispose([student.augmentBatch(ids, waveAugmenter(['gain']) as Augmentation, seededRandom(1)), ids]);
    const copies = new Set((examples.sequence as Int32Array).subarray(n));
    assert.equal(copies.size, 4);
    for (const s of sequence) assert.ok(!copies.has(s), `copy id ${s} is an example's`);
  } finally {
    student.dispose();
  }
});

const common: TrainOnnxOptions = { method: 'sparse', budgetBytes: 700, epochs: 3, tune: 'off', seed: 4, batchSize: 16, learningRate: 1e-2, validation: 0.2, teacher: lstm(0.5), state, bpttFrames: 2, allowWorse: true, refuseWorseOnEval: false, header: { modelId: 'lstm', sequence: 1 }, program: { source: 'lstm.onnx' } };

test('a stateful ONNX model trains with --augment gain,noise,speed: the teacher runs the augmented sequences, the same seed gives the same bytes', async () => {
  const train = sequences(10, FRAMES, 3);
  const plain = (await trainOnnxDiff(lstm(), train, common)).bytes;
  const augmented = (await trainOnnxDiff(lstm(), train, { ...common, augment: 'gain,noise,speed' })).bytes;
  assert.notDeepEqual(augmented, plain);
  assert.deepEqual((await trainOnnxDiff(lstm(), train, { ...common, augment: ['gain', 'noise', 'speed'] })).bytes, augmented, 'the same seed, the same bytes');
  assert.notDeepEqual((await trainOnnxDiff(lstm(), train, { ...common, augment: 'gain,noise,speed', seed: 5 })).bytes, augmented, 'another seed, other draws');
  assert.deepEqual((await trainOnnxDiff(lstm(), train, { ...common, augment: 'none' })).bytes, plain);
  assert.deepEqual(augmentCandidates([3], false, true), ['gain', 'noise', 'speed', 'pitch'], 'auto tries what fits a sequence');
  assert.deepEqual(augmentCandidates([3], true, true), ['gain', 'noise', 'pitch'], 'with frame labels, no speed');
  const auto = await trainOnnxDiff(lstm(), train, { ...common, augment: 'auto' });
  const tried = (auto.augmentation as NonNullable<typeof auto.augmentation>).tried.map((x) => x.augment);
  assert.deepEqual(tried.slice(0, 5), ['none', 'gain', 'noise', 'speed', 'pitch'], 'auto tries each whole-sequence augmentation against none');
  const best = (auto.augmentation as NonNullable<typeof auto.augmentation>).tried.reduce((x, y) => (y.score > x.score ? y : x));
  assert.equal((auto.augmentation as NonNullable<typeof auto.augmentation>).kept.join(',') || 'none', best.augment, 'the closest on validation is kept');
});

test('a stateful model refuses what does not fit a whole sequence, and speed with frame labels', async () => {
  const train = sequences(6, FRAMES, 1);
  await assert.rejects(trainOnnxDiff(lstm(), train, { ...common, augment: 'gain,time-mask' }), (e: unknown) => e instanceof UsageError && /^lstm.onnx carries state from frame to frame, so its sequences are augmented whole, as waveforms: gain, noise, speed, pitch fit \(one draw per sequence\); found "time-mask": leave it out of --augment$/.test(e.message));
  const labels = Int32Array.from({ length: 6 * FRAMES }, (_, i) => i % 2);
  await assert.rejects(trainOnnxDiff(lstm(), { ...train, labels }, { ...common, augment: 'speed' }), (e: unknown) => e instanceof UsageError && /speed moves a sequence's audio in time, so the labels of its frames \(y.npy\) no longer fall on the frames/.test(e.message));
});

test('ndiff train --state h:hN --state c:cN --augment gain,speed: the same bytes twice, the augmentation in the metrics; --augment flip refused, saying what fits', async (t) => {
  const { mkdtempSync, readFileSync, rmSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const path = await import('node:path');
  const { main } = await import('../cli/ndiff.ts');
  const { saveNpy } = await import('../src/io/npy/files.ts');
  const dir = mkdtempSync(path.join(tmpdir(), 'nd-sequence-augment-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'v1.onnx'), lstm());
  writeFileSync(path.join(dir, 'v2.onnx'), lstm(0.5));
  const d = sequences(10, FRAMES, 5);
  saveNpy(path.join(dir, 'train', 'x.npy'), d.inputs.x.values as Float32Array, [10 * FRAMES, 3]);
  saveNpy(path.join(dir, 'train', 'sequence.npy'), d.sequence as Int32Array, [10 * FRAMES]);
  const run = async (augment: string, out: string) => {
    const lines: string[] = [];
    const code = await main(['train', '--model-id', 'lstm', '--base', path.join(dir, 'v1.onnx'), '--teacher', path.join(dir, 'v2.onnx'), '--state', 'h:hN', '--state', 'c:cN', '--bptt', '2',
      '--train', path.join(dir, 'train'), '--method', 'hash', '--budget', '700', '--epochs', '2', '--tune', 'off', '--lr', '0.01', '--augment', augment,
      '--out', path.join(dir, out), '--metrics-out', path.join(dir, `${out}.json`)], { out: (l) => lines.push(l), err: (l) => lines.push(l), progress: (l) => lines.push(l) });
    return { code, text: lines.join('\n') };
  };
  const a = await run('gain,speed', 'a.ndiff');
  assert.equal(a.code, 0, a.text);
  const b = await run('gain,speed', 'b.ndiff');
  assert.equal(b.code, 0, b.text);
  assert.deepEqual(readFileSync(path.join(dir, 'b.ndiff')), readFileSync(path.join(dir, 'a.ndiff')), 'the same seed, the same bytes');
  assert.equal(JSON.parse(readFileSync(path.join(dir, 'a.ndiff.json'), 'utf8')).distillStream.augment, 'gain,speed');
  const refused = await run('flip', 'c.ndiff');
  assert.notEqual(refused.code, 0);
  assert.match(refused.text, /carries state from frame to frame, so its sequences are augmented whole, as waveforms: gain, noise, speed, pitch fit \(one draw per sequence\); found "flip"/);
});

test('whole-sequence augmentation of more examples than float32 ids can number refuses, saying so, before growing anything', () => {
  // The trainers' `x` holds example ids as float32, exact up to 2^24; the augmented copies are
  // numbered after the examples, so 2^23 + 8 frames put the last copy at 2^24 + 15, which float32
  // rounds to 2^24 + 16: another frame's row.
  const count = 2 ** 23 + FRAMES;
  const examples: ProgramExamples = { count, inputs: { x: { values: new Float32Array(count * 3), shape: [3] } }, sequence: Int32Array.from({ length: count }, (_, i) => Math.floor(i / FRAMES)) };
  const student = new ProgramTrainingModel(new OnnxProgram(lstm(), { source: 'lstm.onnx' }), examples, { state });
  const ids = tf.tensor2d([count - 1], [1, 1]);
  try {
    let x: tf.Tensor | undefined;
    assert.throws(() => {
      x = student.augmentBatch(ids, waveAugmenter(['gain']) as Augmentation, seededRandom(1));
      const got = Math.round(x.dataSync()[0]);
      assert.equal(got, 2 * count - 1, 'the last copy\'s id as the trainers read it');
    }, (e: unknown) => e instanceof DataError && /^lstm\.onnx: augmentation numbers a copy of each of the 8388616 examples after them, up to id 16777231, and float32 ids are exact up to 16777216: expected at most 8388608 examples; split the training data/.test(e.message));
    assert.equal(examples.inputs.x.values.length, count * 3, 'the examples not grown');
    tf.dispose(x);
  } finally {
    ids.dispose();
    student.dispose();
  }
});

test('a batch of augmented rows numbered past 2^24 is refused too, saying how many examples fit', () => {
  // The per-row path numbers a batch of n augmented rows count .. count + n - 1.
  assert.doesNotThrow(() => checkAugmentedIds('cnn.onnx', 2 ** 24 - 3, 2 ** 24, 'rows'));
  assert.throws(() => checkAugmentedIds('cnn.onnx', 2 ** 24 - 2, 2 ** 24 + 1, 'rows'), (e: unknown) => e instanceof DataError && /^cnn\.onnx: augmentation numbers the augmented rows of the 16777214 examples after them, up to id 16777217, .*expected at most 16777213 examples/.test(e.message));
});
