/**
 * `train()` in `neural-diff/train` is what `ndiff train` does: for each kind of base (a TF.js
 * layers-model folder, a TF.js graph-model folder, an .onnx file, a .tflite file, and a teacher
 * of another structure), the call with the command's arguments as options gives exactly the
 * payload bytes the command writes, and the fields its `--json` prints. Models given as bytes
 * train as their files do. Options the base cannot take, bad data and budgets are typed errors, nothing written.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { BudgetError, DataError, ModelFormatError, UsageError } from '../src/core/errors.ts';
import { seededRandom } from '../src/core/random.ts';
import { readMsgpack } from '../src/core/msgpack-read.ts';
import { saveNpy } from '../src/io/npy/files.ts';
import { fileSystemIO } from '../src/io/tfjs/index.ts';
import { initBackend } from '../src/engine/backend.ts';
import { train, type TrainOptions, type TrainProgress } from '../src/train/front.ts';
import { main } from '../cli/ndiff.ts';
import { cnnInputs, cnnWeights, retrained, SIDE, writeGraphCnn } from './helpers/graph-model.ts';
import { cnn, images } from './helpers/onnx-models.ts';
import { mlpTflite } from './helpers/tflite-build.ts';
import { onceSkip } from './helpers/benchmarks.ts';

// Trains in this process only, through the readers and writers other files test on every Node
// release (whose CLI training cases run there too): checked once per CI (test/helpers/benchmarks.ts).
const once = { skip: onceSkip('the in-process train() cases beside ndiff train are') };

const root = mkdtempSync(path.join(tmpdir(), 'nd-train-front-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

/** A document without what differs between two runs of one training (times, speeds) or names where the command wrote. */
const TIMES = new Set(['trainSeconds', 'seconds', 'samplesPerSecond', 'out']);
const timing = (doc: unknown): unknown =>
  Array.isArray(doc) ? doc.map(timing) : doc && typeof doc === 'object' ? Object.fromEntries(Object.entries(doc).filter(([k]) => !TIMES.has(k)).map(([k, v]) => [k, timing(v)])) : doc;

/**
 * `ndiff train ARGV --out FILE --json`, then `train(options)`: the same payload bytes and the same
 * `--json` fields (the training time aside); the progress reached `onProgress` as events.
 */
async function sameAsCommand(name: string, argv: string[], options: TrainOptions): Promise<{ bytes: Uint8Array; events: TrainProgress[]; warnings: string[] }> {
  const out = path.join(root, `${name}.ndiff`);
  const stdout: string[] = [];
  const err: string[] = [];
  const code = await main(['train', ...argv, '--backend', 'cpu', '--threads', '1', '--out', out, '--json'], { out: (l) => stdout.push(l), err: (l) => err.push(l), progress: (l) => err.push(l) });
  assert.equal(code, 0, err.join('\n'));
  const doc = JSON.parse(stdout.join('\n')) as Record<string, unknown>;
  const written = new Uint8Array(readFileSync(out));
  const events: TrainProgress[] = [];
  const res = await train({ ...options, backend: 'cpu', threads: 1, onProgress: (e) => events.push(e) });
  assert.ok(Buffer.from(res.payload).equals(written), `${name}: train() gave ${res.payload.length} bytes, ndiff train wrote ${written.length} bytes that differ`);
  // The warnings are part of the --json document too.
  const { payload: _p, lines, ...fields } = res;
  const { warnings } = res;
  // As --json prints them (typed arrays as plain arrays, undefined fields left out).
  const printed = JSON.parse(JSON.stringify(fields, (_k, v: unknown) => (ArrayBuffer.isView(v) && !(v instanceof DataView) ? Array.from(v as unknown as ArrayLike<number>) : v))) as Record<string, unknown>;
  assert.deepEqual(timing(printed), timing(doc), `${name}: the --json fields`);
  assert.equal(res.bytes, written.length);
  assert.ok(Array.isArray(warnings));
  assert.match(lines[0], new RegExp(`^payload: ${written.length} bytes`), lines.join('\n'));
  assert.ok(events.some((e) => e.kind === 'epoch'), `${name}: no epoch event`);
  assert.ok(events.some((e) => e.kind === 'message' && /^backend /.test(e.text)), `${name}: no backend line`);
  // Each warning came as it was given, and again in the result.
  assert.deepEqual(events.filter((e) => e.kind === 'warning').map((e) => e.text), warnings);
  return { bytes: written, events, warnings };
}

/** A TF.js model folder's files as a build server holds them in memory: model.json, then its shards (given last first: train() takes them in the manifest's order). */
function folderFiles(dir: string): { path: string; bytes: Uint8Array }[] {
  const json = new Uint8Array(readFileSync(path.join(dir, 'model.json')));
  const shards = (JSON.parse(new TextDecoder().decode(json)) as { weightsManifest: { paths: string[] }[] }).weightsManifest.flatMap((g) => g.paths);
  return [{ path: 'model.json', bytes: json }, ...shards.reverse().map((p) => ({ path: p, bytes: new Uint8Array(readFileSync(path.join(dir, p))) }))];
}

/** x.npy (and y.npy) of `n` examples of `width` values, the class the sign of two sums. */
function tabular(dir: string, n: number, width: number, seed: number, labels: boolean): void {
  const r = seededRandom(seed);
  const x = Float32Array.from({ length: n * width }, () => r() * 2 - 1);
  mkdirSync(dir, { recursive: true });
  saveNpy(path.join(dir, 'x.npy'), x, [n, width]);
  if (labels) {
    const y = Int32Array.from({ length: n }, (_, i) => (x[i * width] + x[i * width + 1] > 0 ? 1 : 0) + (x[i * width + 2] > 0.5 ? 1 : 0));
    saveNpy(path.join(dir, 'y.npy'), y, [n]);
  }
}

test('TF.js layers model, trained on labels: train() writes the bytes ndiff train writes, from the folder or its files in memory', { ...once, timeout: 600_000 }, async () => {
  await initBackend('cpu');
  const m = tf.sequential();
  m.add(tf.layers.dense({ inputShape: [8], units: 12, activation: 'relu', name: 'd1', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }));
  m.add(tf.layers.dense({ units: 3, activation: 'softmax', name: 'out', kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }));
  await m.save(fileSystemIO(path.join(root, 'layers-v1')));
  m.dispose();
  tabular(path.join(root, 'layers-train'), 96, 8, 3, true);
  const base = path.join(root, 'layers-v1');
  const data = path.join(root, 'layers-train');
  const options: TrainOptions = { base, train: data, modelId: 'tiny', method: 'sparse', budget: '30%', epochs: 2, tune: 'off', seed: 4, backend: 'cpu', threads: 1 };
  const { bytes } = await sameAsCommand('layers', ['--base', base, '--train', data, '--model-id', 'tiny', '--method', 'sparse', '--budget', '30%', '--epochs', '2', '--tune', 'off', '--seed', '4'], options);
  // The folder's files in memory train as the folder does.
  const inMemory = await train({ ...options, base: folderFiles(base) });
  assert.ok(Buffer.from(inMemory.payload).equals(bytes), 'the base as its files');
});

test('TF.js graph model toward a graph-model teacher, no labels: train() writes the bytes ndiff train writes, from the folders or their files', { ...once, timeout: 600_000 }, async () => {
  const v1 = cnnWeights(11);
  const [base, teacher, data] = ['graph-v1', 'graph-v2', 'graph-train'].map((d) => path.join(root, d));
  await writeGraphCnn(base, v1);
  await writeGraphCnn(teacher, retrained(v1, 12));
  mkdirSync(data);
  saveNpy(path.join(data, 'x.npy'), cnnInputs(48, 1), [48, SIDE, SIDE, 1]);
  const options: TrainOptions = { base, teacher, train: data, modelId: 'cnn', method: 'sparse', budget: '20%', epochs: 1, tune: 'off', backend: 'cpu', threads: 1 };
  const { bytes } = await sameAsCommand('graph', ['--base', base, '--teacher', teacher, '--train', data, '--model-id', 'cnn', '--method', 'sparse', '--budget', '20%', '--epochs', '1', '--tune', 'off'], options);
  const inMemory = await train({ ...options, base: folderFiles(base), teacher: folderFiles(teacher) });
  assert.ok(Buffer.from(inMemory.payload).equals(bytes), 'base and teacher as their files');
});

test('.onnx toward a teacher, the models given as bytes: the bytes ndiff train writes from the files', { ...once, timeout: 600_000 }, async () => {
  const [v1, v2] = [cnn(), cnn(0.5, 60)];
  const [base, teacher, data] = ['v1.onnx', 'v2.onnx', 'onnx-train'].map((d) => path.join(root, d));
  writeFileSync(base, v1);
  writeFileSync(teacher, v2);
  mkdirSync(data);
  saveNpy(path.join(data, 'x.npy'), images(64, 1).inputs.x.values, [64, 1, 8, 8]);
  // No method: the default toward a teacher that holds the base's weights (lowbit), as the command takes it.
  const { events } = await sameAsCommand('onnx', ['--base', base, '--teacher', teacher, '--train', data, '--model-id', 'cnn', '--budget', '160', '--epochs', '1', '--tune', 'off', '--seed', '2'],
    { base: v1, teacher: v2, train: data, modelId: 'cnn', budget: 160, epochs: 1, tune: 'off', seed: 2 });
  assert.ok(events.some((e) => e.kind === 'message' && /^method lowbit \(the default/.test(e.text)));
});

test('.tflite toward a teacher (a file and bytes): the bytes ndiff train writes', { ...once, timeout: 600_000 }, async () => {
  const [base, teacher, data] = ['v1.tflite', 'v2.tflite', 'tflite-train'].map((d) => path.join(root, d));
  writeFileSync(base, mlpTflite(0, false));
  writeFileSync(teacher, mlpTflite(0.6, false));
  tabular(data, 80, 8, 5, false);
  const { warnings } = await sameAsCommand('tflite', ['--base', base, '--teacher', teacher, '--train', data, '--model-id', 'mlp', '--method', 'sparse', '--budget', '250', '--epochs', '2', '--tune', 'off', '--lr', '0.02'],
    { base, teacher: new Uint8Array(readFileSync(teacher)), train: data, modelId: 'mlp', method: 'sparse', budget: '250', epochs: 2, tune: 'off', lr: 0.02 });
  assert.ok(warnings.some((w) => /^only 8 validation example\(s\)/.test(w)), warnings.join('\n'));
});

test('a teacher of another structure (a layer added, LiteRT): train() gives the structural payload ndiff train writes', { ...once, timeout: 600_000 }, async () => {
  const [base, teacher, data] = ['s1.tflite', 's2.tflite', 'structural-train'].map((d) => path.join(root, d));
  writeFileSync(base, mlpTflite(0, false));
  writeFileSync(teacher, mlpTflite(0.6, true));
  tabular(data, 80, 8, 6, false);
  const { bytes } = await sameAsCommand('structural', ['--base', base, '--teacher', teacher, '--train', data, '--model-id', 'mlp', '--method', 'sparse', '--budget', '200', '--epochs', '2', '--tune', 'off', '--seed', '3'],
    { base, teacher, train: data, modelId: 'mlp', method: 'sparse', budget: 200, epochs: 2, tune: 'off', seed: 3 });
  assert.equal((readMsgpack(bytes) as Record<string, unknown>).nd, 7, 'a structural payload (format v7)');
});

test('options a base cannot take, data of another shape and a budget below the header are the typed errors the command maps to exit codes; nothing is written', once, async () => {
  const v1 = cnn();
  const out = path.join(root, 'never.ndiff');
  // Bytes record no model id.
  await assert.rejects(train({ base: v1, train: path.join(root, 'onnx-train'), out }), (e: unknown) => e instanceof UsageError && /pass modelId/.test(e.message));
  // The updated model is written beside the base's files: bytes have none.
  await assert.rejects(train({ base: v1, train: path.join(root, 'onnx-train'), modelId: 'cnn', modelOut: path.join(root, 'never.onnx') }), (e: unknown) => e instanceof UsageError && /modelOut/.test(e.message));
  // A TF.js base's teacher comes as a folder, not bytes.
  await assert.rejects(train({ base: path.join(root, 'layers-v1'), teacher: v1, train: path.join(root, 'layers-train'), modelId: 'tiny' }), (e: unknown) => e instanceof UsageError && /teacher was given as bytes/.test(e.message));
  await assert.rejects(train({ base: v1, teacher: folderFiles(path.join(root, 'layers-v1')), train: path.join(root, 'onnx-train'), modelId: 'cnn' }), (e: unknown) => e instanceof UsageError && /teacher was given as a TF\.js model's files/.test(e.message));
  // A shard missing from the files: the model is refused by name before training.
  await assert.rejects(train({ base: folderFiles(path.join(root, 'layers-v1')).slice(0, 1), train: path.join(root, 'layers-train'), modelId: 'tiny' }), (e: unknown) => e instanceof ModelFormatError && /names the shards/.test(e.message));
  await assert.rejects(train({ base: v1, train: path.join(root, 'onnx-train'), modelId: 'cnn', epochs: 0 }), (e: unknown) => e instanceof UsageError && /epochs \(--epochs\) must be at least 1/.test(e.message));
  // A fraction of an epoch was floored to whole ones without a word: 2.5 trained 2.
  await assert.rejects(train({ base: v1, train: path.join(root, 'onnx-train'), modelId: 'cnn', epochs: 2.5 }), (e: unknown) => e instanceof UsageError && /epochs \(--epochs\) must be at least 1, a whole number of passes over the training data, found 2\.5/.test(e.message));
  await assert.rejects(train({ base: 42 as unknown as string, train: 'x' }), (e: unknown) => e instanceof UsageError && /found number/.test(e.message));
  // The errors the command maps to its exit codes: data of another shape (8), a budget below the header (6).
  tabular(path.join(root, 'narrow'), 20, 7, 9, true);
  await assert.rejects(train({ base: path.join(root, 'layers-v1'), train: path.join(root, 'narrow'), modelId: 'tiny', tune: 'off', backend: 'cpu', threads: 1, out }), (e: unknown) => e instanceof DataError && /inputs are \[7\] per example but the model takes \[8\]/.test(e.message));
  await assert.rejects(train({ base: v1, teacher: cnn(0.5, 60), train: path.join(root, 'onnx-train'), modelId: 'cnn', budget: 13, tune: 'off', backend: 'cpu', threads: 1, out }), (e: unknown) => e instanceof BudgetError && /a budget of 13 bytes leaves no room/.test(e.message));
  assert.ok(!existsSync(out) && !existsSync(path.join(root, 'never.onnx')));
});
