/**
 * Wider distillation inputs and augmented steps in a teacher diff (src/train/distill-inputs.ts,
 * src/train/distill-stream.ts, the loop's `augment`): the mixed stream draws what it says, an
 * empty wider set changes nothing, the same seed gives the same payload, and the teacher scores
 * every augmented batch anew.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { UsageError } from '../src/core/errors.ts';
import { seededRandom } from '../src/core/random.ts';
import { initBackend } from '../src/engine/backend.ts';
import { drawWiderInputs, mixDistillInputs } from '../src/train/distill-inputs.ts';
import { augmentCandidates } from '../src/train/augment-auto.ts';
import { modelToStore, setModelWeights } from '../src/engine/model-weights.ts';
import { trainDiff, type TrainDiffOptions } from '../src/train/train-diff.ts';
import { join } from 'node:path';
import { mkdir, readFile } from 'node:fs/promises';
import { saveNpy } from '../src/io/npy/files.ts';
import { fileSystemIO } from '../src/io/tfjs/index.ts';
import { main } from '../cli/ndiff.ts';
import { tempDir } from './helpers/dirs.ts';

const EXAMPLE = [12, 6];

/** A small classifier of [12, 6] spectrogram-like inputs; `shift` moves the teacher's weights away from the base's. */
function classifier(seed: number, shift = 0): tf.LayersModel {
  const m = tf.sequential({
    layers: [
      tf.layers.flatten({ name: 'flat', inputShape: EXAMPLE }),
      tf.layers.dense({ name: 'hidden', units: 16, activation: 'relu' }),
      tf.layers.dense({ name: 'head', units: 4, activation: 'softmax' }),
    ],
  });
  const r = seededRandom(seed);
  const s = seededRandom(seed + 100);
  m.layers[1].setWeights([tf.tensor2d(Float32Array.from({ length: 72 * 16 }, () => (r() - 0.5) * 0.4 + shift * (s() - 0.5)), [72, 16]), tf.zeros([16])]);
  m.layers[2].setWeights([tf.tensor2d(Float32Array.from({ length: 16 * 4 }, () => (r() - 0.5) + shift * (s() - 0.5)), [16, 4]), tf.zeros([4])]);
  return m;
}

function inputs(n: number, seed: number, centre = 0): tf.Tensor {
  const r = seededRandom(seed);
  return tf.tensor(Float32Array.from({ length: n * 72 }, () => centre + (r() - 0.5) * 2), [n, ...EXAMPLE]);
}

let model: tf.LayersModel;
let teacher: tf.LayersModel;
const baseOf = () => modelToStore(classifier(1));
const options = (extra: Partial<TrainDiffOptions>): TrainDiffOptions => ({ method: 'sparse', budgetBytes: 400, epochs: 2, seed: 5, tune: 'off', validation: 0.2, teacher, allowWorse: true, refuseWorseOnEval: false, batchSize: 16, threads: 1, ...extra });
/** The payload bytes of a teacher diff of a fresh base. */
async function payload(train: tf.Tensor, extra: Partial<TrainDiffOptions>): Promise<Uint8Array> {
  const base = baseOf();
  setModelWeights(model, (n) => base.values(n));
  return (await trainDiff(model, { x: train }, options({ base, ...extra }))).bytes;
}

before(async () => {
  await initBackend('wasm');
  model = classifier(1);
  teacher = classifier(1, 0.6);
});

test('the wider inputs make the asked share of the stream, pooled over the sources, the same for a seed', () => {
  const d = drawWiderInputs(100, [30, 90, 0, 60], 0.5, 3);
  assert.equal(d.count, 100, 'half of the stream: as many as the update\'s own');
  assert.equal(d.picked.reduce((n, p) => n + p.length, 0), 100);
  assert.equal(d.picked[2].length, 0);
  d.picked.forEach((p, s) => {
    assert.equal(new Set(p).size, p.length, 'without replacement');
    assert.ok(p.every((i) => i >= 0 && i < [30, 90, 0, 60][s]));
  });
  // Pooled: each source in proportion to its size (30:90:60 of 180, drawing 100 of them).
  assert.ok(Math.abs(d.picked[1].length - 50) <= 12 && Math.abs(d.picked[0].length - 17) <= 9, d.picked.map((p) => p.length).join(','));
  assert.deepEqual(drawWiderInputs(100, [30, 90, 0, 60], 0.5, 3), d);
  assert.notDeepEqual(drawWiderInputs(100, [30, 90, 0, 60], 0.5, 4).picked, d.picked);
  assert.equal(drawWiderInputs(100, [30, 90], 0.25, 3).count, 33, 'a quarter: 33 beside 100');
  const few = drawWiderInputs(100, [10, 5], 0.5, 3);
  assert.equal(few.count, 15, 'fewer than asked: every one');
  assert.ok(Math.abs(few.share - 15 / 115) < 1e-9);
  assert.equal(drawWiderInputs(100, [], 0.5, 3).count, 0);
  assert.throws(() => drawWiderInputs(100, [10], 1, 3), UsageError);
});

test('the mixed stream holds the update\'s examples first, then the drawn ones with the teacher\'s classes', () => {
  const own = { x: inputs(20, 1), y: new Int32Array(20).fill(3) };
  const a = inputs(8, 2);
  const b = inputs(30, 3);
  const { data, draw } = mixDistillInputs(own, [{ x: a }, { x: b }], 0.5, 0, (x) => new Int32Array(x.shape[0]).fill(7));
  assert.equal(draw.count, 20);
  assert.equal(data.x.shape[0], 40);
  assert.deepEqual([...data.y.subarray(0, 20)], new Array(20).fill(3));
  assert.deepEqual([...data.y.subarray(20)], new Array(20).fill(7));
  const rows = data.x.arraySync() as number[][][];
  const wanted = [...Array.from(draw.picked[0], (i) => (a.arraySync() as number[][][])[i]), ...Array.from(draw.picked[1], (i) => (b.arraySync() as number[][][])[i])];
  assert.deepEqual(rows.slice(20), wanted);
  assert.deepEqual(rows.slice(0, 20), own.x.arraySync());
  assert.throws(() => mixDistillInputs(own, [{ x: tf.zeros([3, 5]) }], 0.5, 0, (x) => new Int32Array(x.shape[0])), (e: unknown) => e instanceof UsageError && /shape \[5\]/.test(e.message));
  for (const t of [own.x, a, b, data.x]) t.dispose();
});

test('an empty wider set changes nothing: the same payload bytes as without it', async () => {
  const train = inputs(80, 11);
  const without = await payload(train, {});
  assert.deepEqual(await payload(train, { distillInputs: [] }), without);
  const empty = tf.zeros([0, ...EXAMPLE]);
  assert.deepEqual(await payload(train, { distillInputs: [{ x: empty }] }), without);
  assert.deepEqual(await payload(train, { distillInputs: [{ x: inputs(50, 12) }], distillMix: 0 }), without);
  const wider = inputs(60, 13, 1.5);
  const mixed = await payload(train, { distillInputs: [{ x: wider }] });
  assert.notDeepEqual(mixed, without, 'wider inputs change what is learned');
  assert.deepEqual(await payload(train, { distillInputs: [{ x: wider }] }), mixed, 'the same seed, the same payload');
  for (const t of [train, empty, wider]) t.dispose();
});

test('augmented steps: the teacher scores every augmented batch, the same seed gives the same payload', async () => {
  const train = inputs(80, 21);
  const plain = await payload(train, {});
  const calls = { n: 0 };
  const apply = teacher.apply.bind(teacher);
  teacher.apply = ((x: tf.Tensor | tf.Tensor[], kwargs?: object) => {
    calls.n++;
    return apply(x, kwargs);
  }) as typeof teacher.apply;
  // Eager passes: each calls the teacher (a compiled forward pass replays its kernels instead).
  const augmented = await payload(train, { augment: 'gain,time-mask,mixup', step: 'eager' });
  const steps = 2 * Math.ceil(64 / 16);
  assert.ok(calls.n >= steps, `the teacher scored ${calls.n} times in ${steps} steps: its outputs on augmented inputs were cached`);
  teacher.apply = apply as typeof teacher.apply;
  assert.notDeepEqual(augmented, plain);
  assert.deepEqual(await payload(train, { augment: ['gain', 'time-mask', 'mixup'] }), augmented, 'the same seed, the same payload (compiled steps and passes as eager ones)');
  assert.deepEqual(await payload(train, { augment: 'none' }), plain, 'none is no augmentation');
  train.dispose();
});

test('the teacher\'s targets are its outputs on the augmented batch, not on the inputs as given', async () => {
  // A teacher equal to the base: on the very input the model sees, it asks for no change, so
  // every step's loss is about zero (5e-2 measured with targets from the un-mixed inputs).
  // On this thread and on a pool of two (the batch's augmented rows go to the workers).
  const train = inputs(80, 41);
  for (const threads of [1, 2]) {
    const base = baseOf();
    setModelWeights(model, (n) => base.values(n));
    const losses: number[] = [];
    await trainDiff(model, { x: train }, { ...options({ base, augment: 'mixup,noise', teacher: classifier(1), threads }), onBatch: (b) => void losses.push(b.loss) });
    assert.ok(losses.length >= 8);
    assert.ok(Math.max(...losses) < 1e-3, `${threads} thread(s): losses up to ${Math.max(...losses)}: targets from other inputs than the model saw`);
  }
  train.dispose();
});

test('wider inputs and augmentation need a teacher; mixup refuses labels; a misfit augmentation is refused', async () => {
  const train = inputs(40, 31);
  const labelled = { x: train, y: new Int32Array(40).map((_, i) => i % 4) };
  const wider = inputs(10, 32);
  const base = baseOf();
  const noTeacher = { ...options({ base }), teacher: undefined };
  await assert.rejects(trainDiff(model, labelled, { ...noTeacher, distillInputs: [{ x: wider }] }), (e: unknown) => e instanceof UsageError && /--distill-inputs.*pass --teacher/.test(e.message));
  await assert.rejects(trainDiff(model, labelled, { ...noTeacher, augment: 'gain' }), (e: unknown) => e instanceof UsageError && /pass --teacher/.test(e.message));
  await assert.rejects(trainDiff(model, labelled, options({ base, augment: 'mixup' })), (e: unknown) => e instanceof UsageError && /mixup mixes inputs/.test(e.message));
  await assert.rejects(trainDiff(model, labelled, options({ base, augment: 'flip' })), (e: unknown) => e instanceof UsageError && /flip needs an image/.test(e.message));
  train.dispose();
  wider.dispose();
});

test('ndiff train --teacher --distill-inputs DIR --augment LIST; refused without a teacher', async () => {
  const dir = await tempDir();
  const base = baseOf();
  setModelWeights(model, (n) => base.values(n));
  await model.save(fileSystemIO(join(dir, 'v1')));
  await teacher.save(fileSystemIO(join(dir, 'v2')));
  for (const [name, n, seed] of [['train', 60, 51], ['field', 40, 52], ['captures', 30, 53]] as const) {
    await mkdir(join(dir, name));
    const x = inputs(n, seed);
    saveNpy(join(dir, name, 'x.npy'), x.dataSync() as Float32Array, x.shape);
    x.dispose();
  }
  const lines: string[] = [];
  const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l), progress: (l: string) => lines.push(l) };
  const args = ['train', '--model-id', 'kws', '--base', join(dir, 'v1'), '--train', join(dir, 'train'), '--budget', '400', '--epochs', '1', '--tune', 'off', '--threads', '1', '--allow-worse', '--out', join(dir, 'p.ndiff')];
  assert.equal(await main([...args, '--teacher', join(dir, 'v2'), '--distill-inputs', join(dir, 'field'), '--distill-inputs', join(dir, 'captures'), '--augment', 'gain,freq-mask', '--metrics-out', join(dir, 'm.json')], io), 0, lines.join('\n'));
  const m = JSON.parse(await readFile(join(dir, 'm.json'), 'utf8'));
  assert.deepEqual(m.distillStream, { distillInputs: [join(dir, 'field'), join(dir, 'captures')], distillMix: 0.5, augment: 'gain,freq-mask' });
  assert.ok(lines.some((l) => /^distillation inputs: 60 of 70 drawn \(\d+ \+ \d+ by source\) beside 60 of the update's, 50\.0% of the stream/.test(l)), lines.join('\n'));
  lines.length = 0;
  assert.notEqual(await main([...args, '--distill-inputs', join(dir, 'field')], io), 0);
  assert.ok(lines.some((l) => /--distill-inputs needs --teacher/.test(l)), lines.join('\n'));
});

test('augment auto: the candidates of the input\'s kind, each kept only where it validates closer to the teacher', async () => {
  assert.deepEqual(augmentCandidates([32, 32, 3], false), ['crop', 'flip', 'colour', 'noise', 'mixup']);
  assert.deepEqual(augmentCandidates([98, 40, 1], false), ['time-shift', 'gain', 'time-mask', 'freq-mask', 'freq-warp', 'time-stretch', 'noise', 'mixup']);
  assert.deepEqual(augmentCandidates([196], true), ['noise'], 'labels: no mixup');
  const train = inputs(80, 61);
  const base = baseOf();
  setModelWeights(model, (n) => base.values(n));
  const lines: string[] = [];
  const r = await trainDiff(model, { x: train }, { ...options({ base, augment: 'auto' }), onProgress: (l) => void lines.push(l) });
  const a = r.augmentation;
  assert.ok(a, lines.join('\n'));
  const candidates = augmentCandidates(EXAMPLE, false);
  assert.deepEqual(a.tried.slice(0, 1 + candidates.length).map((t) => t.augment), ['none', ...candidates]);
  const none = a.tried[0].score;
  const helped = candidates.filter((_, i) => a.tried[1 + i].score > none);
  assert.equal(a.tried.length, 1 + candidates.length + (helped.length > 1 ? 1 : 0));
  if (helped.length > 1) assert.equal(a.tried[a.tried.length - 1].augment, helped.join(','));
  const kept = a.tried.find((t) => t.augment === (a.kept.join(',') || 'none'));
  assert.ok(kept && a.tried.every((t) => t.score <= kept.score), 'the closest on validation is kept');
  assert.ok(a.kept.every((k) => (helped as string[]).includes(k)), 'only what helped');
  const held = modelToStore(model);
  // The payload written is the chosen run's, and the model holds it.
  const again = await payload(train, { augment: a.kept.length ? a.kept : 'none' });
  assert.deepEqual(r.bytes, again);
  for (const t of modelToStore(model).list()) assert.deepEqual(held.values(t.name), modelToStore(model).values(t.name));
  train.dispose();
});
