/**
 * `ndiff train --teacher` with a teacher of another structure (a tensor and a node added): the
 * trainer learns the kept weights' diff on the file a structural payload rebuilds first, the new
 * tensor comes whole from the teacher, and the payload (format v7) rebuilds on a device to the
 * model the trainer measured, which agrees with the teacher more than the base does; for ONNX
 * and LiteRT files and TF.js layers-model folders.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { rebuildModelBytes } from '../src/apply/rebuild.ts';
import { decodePayload } from '../src/core/format.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { getHasher } from '../src/core/hasher.ts';
import { readMsgpack } from '../src/core/msgpack-read.ts';
import { saveNpy } from '../src/io/npy/files.ts';
import { OnnxWeightStore } from '../src/io/onnx/store.ts';
import { TfliteWeightStore } from '../src/io/tflite/store.ts';
import { seededRandom } from '../src/core/random.ts';
import * as tf from '@tensorflow/tfjs';
import { cp } from 'node:fs/promises';
import { applyPayload } from '../src/apply/index.ts';
import { structuralIntermediateFiles } from '../src/diff/structural.ts';
import { fileSystemIO, openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { TfjsFilesStore } from '../src/io/tfjs/files-store.ts';
import { readTfjsModelFiles, TFJS_REBUILD } from '../src/io/tfjs/folder-rebuild.ts';
import { initBackend } from '../src/engine/backend.ts';
import { mlpTflite } from './helpers/tflite-build.ts';
import { CLASSES, cnnInputs, cnnWeights, retrained, writeGraphCnn } from './helpers/graph-model.ts';
import { cnn, images } from './helpers/onnx-models.ts';
import { onceSkip } from './helpers/benchmarks.ts';

// Trains in this process only, through the readers and writers other files test on every Node
// release (whose CLI training cases run there too): checked once per CI (test/helpers/benchmarks.ts).
const once = { skip: onceSkip('the in-process structural training cases are') };

const ONNX = { kind: 'onnx' as const, open: (b: Uint8Array) => new OnnxWeightStore(b) };

test('a teacher with a tensor and a node added: a structural payload whose learned part trains the kept weights only, rebuilt by a device to --model-out', { ...once, timeout: 600_000 }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'nd-train-structural-'));
  try {
    const v1 = cnn();
    const v2 = cnn(0.5, 60, 0, [1.5, 0.5, 1]);
    writeFileSync(path.join(dir, 'v1.onnx'), v1);
    writeFileSync(path.join(dir, 'v2.onnx'), v2);
    for (const [name, seed, n] of [['train', 1, 160], ['eval', 2, 80]] as const) {
      mkdirSync(path.join(dir, name));
      const d = images(n, seed);
      saveNpy(path.join(dir, name, 'x.npy'), d.inputs.x.values, [n, 1, 8, 8]);
    }
    const out: string[] = [];
    const err: string[] = [];
    const { main } = await import('../cli/ndiff.ts');
    const [payloadFile, modelOut, metricsOut] = ['p.ndiff', 'v2-out.onnx', 'metrics.json'].map((f) => path.join(dir, f));
    const code = await main(['train', '--base', path.join(dir, 'v1.onnx'), '--teacher', path.join(dir, 'v2.onnx'), '--train', path.join(dir, 'train'), '--eval', path.join(dir, 'eval'),
      '--method', 'sparse', '--budget', '400', '--epochs', '3', '--tune', 'off', '--seed', '3', '--model-id', 'cnn', '--out', payloadFile, '--model-out', modelOut, '--metrics-out', metricsOut],
    { out: (l) => out.push(l), err: (l) => err.push(l), progress: (l) => err.push(l) });
    assert.equal(code, 0, err.join('\n'));
    const text = out.join('\n');
    assert.match(text, /the teacher's structure differs from the base's .*a structural payload \(format v7\)/);
    assert.match(text, /tensors added: head\.s;/);
    const payload = new Uint8Array(readFileSync(payloadFile));
    const doc = readMsgpack(payload) as Record<string, unknown>;
    assert.equal(doc.nd, 7);
    // The learned part patches kept weights only: head.s is the teacher's, whole.
    const inner = decodePayload(doc.pv as Uint8Array);
    assert.ok(inner.patches.length > 0);
    assert.ok(inner.patches.every((p) => p.name !== 'head.s'), inner.patches.map((p) => p.name).join(', '));
    // A device rebuilds v1 into --model-out's bytes exactly.
    const res = await rebuildModelBytes(v1.slice(), payload, ONNX);
    assert.equal(res.status, 'applied');
    assert.ok(Buffer.from(res.bytes).equals(readFileSync(modelOut)), 'the device ends at --model-out');
    const hasher = await getHasher();
    const reached = new OnnxWeightStore(res.bytes);
    assert.equal(fingerprintStore(hasher, reached).fingerprint, res.header.targetFingerprint);
    assert.deepEqual([...reached.values('head.s')], [1.5, 0.5, 1], 'the new tensor came whole from the teacher');
    const metrics = JSON.parse(readFileSync(metricsOut, 'utf8'));
    assert.equal(metrics.bytes, payload.length);
    assert.deepEqual(metrics.structural.added, ['head.s']);
    assert.equal(metrics.structural.graphChanged, true);
    const te = metrics.teacherEval;
    t.diagnostic(`${payload.length} bytes (rebuild ${metrics.structural.rebuildBytes}, learned ${metrics.structural.valueBytes}); agreement with the teacher ${te.before.agreement} -> ${te.after.agreement}, mean abs diff ${te.before.meanAbsDiff.toFixed(4)} -> ${te.after.meanAbsDiff.toFixed(4)}`);
    assert.ok(te.after.agreement >= te.before.agreement, `agreement with the teacher ${te.before.agreement} -> ${te.after.agreement}`);
    assert.ok(te.after.meanAbsDiff < te.before.meanAbsDiff, `mean |output - teacher| ${te.before.meanAbsDiff} -> ${te.after.meanAbsDiff}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});


test('LiteRT: a teacher with a layer added ships as a structural payload; the kept weights learn, the new layer comes whole', { ...once, timeout: 600_000 }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'nd-train-structural-tflite-'));
  try {
    const v1 = mlpTflite(0, false);
    const v2 = mlpTflite(0.6, true);
    writeFileSync(path.join(dir, 'v1.tflite'), v1);
    writeFileSync(path.join(dir, 'v2.tflite'), v2);
    const r = seededRandom(5);
    for (const [name, n] of [['train', 160], ['eval', 60]] as const) {
      mkdirSync(path.join(dir, name));
      saveNpy(path.join(dir, name, 'x.npy'), Float32Array.from({ length: n * 8 }, () => r() * 2 - 1), [n, 8]);
    }
    const out: string[] = [];
    const err: string[] = [];
    const { main } = await import('../cli/ndiff.ts');
    const [payloadFile, modelOut, metricsOut] = ['p.ndiff', 'v2-out.tflite', 'metrics.json'].map((f) => path.join(dir, f));
    const code = await main(['train', '--base', path.join(dir, 'v1.tflite'), '--teacher', path.join(dir, 'v2.tflite'), '--train', path.join(dir, 'train'), '--eval', path.join(dir, 'eval'),
      '--method', 'sparse', '--budget', '200', '--epochs', '3', '--tune', 'off', '--seed', '3', '--model-id', 'mlp', '--out', payloadFile, '--model-out', modelOut, '--metrics-out', metricsOut],
    { out: (l) => out.push(l), err: (l) => err.push(l), progress: (l) => err.push(l) });
    assert.equal(code, 0, err.join('\n'));
    assert.match(out.join('\n'), /tensors added: head\/kernel;/);
    const payload = new Uint8Array(readFileSync(payloadFile));
    const res = await rebuildModelBytes(v1.slice(), payload, { kind: 'tflite', open: (b: Uint8Array) => new TfliteWeightStore(b) });
    assert.ok(Buffer.from(res.bytes).equals(readFileSync(modelOut)), 'the device ends at --model-out');
    const inner = decodePayload((readMsgpack(payload) as Record<string, unknown>).pv as Uint8Array);
    assert.ok(inner.patches.length > 0 && inner.patches.every((p) => p.name.startsWith('dense/')), inner.patches.map((p) => p.name).join(', '));
    const metrics = JSON.parse(readFileSync(metricsOut, 'utf8'));
    assert.deepEqual(metrics.structural.added, ['head/kernel']);
    const te = metrics.teacherEval;
    t.diagnostic(`${payload.length} bytes (rebuild ${metrics.structural.rebuildBytes}, learned ${metrics.structural.valueBytes}); agreement with the teacher ${te.before.agreement} -> ${te.after.agreement}, mean abs diff ${te.before.meanAbsDiff.toFixed(4)} -> ${te.after.meanAbsDiff.toFixed(4)}`);
    assert.ok(te.after.meanAbsDiff < te.before.meanAbsDiff, `mean |output - teacher| ${te.before.meanAbsDiff} -> ${te.after.meanAbsDiff}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * TF.js layers models: x [8] -> Dense d1 (16, relu) -> [Dense extra (16, relu): the teacher only]
 * -> Dense out (3, softmax). The teacher's d1 and out moved (a retrain), and its added layer starts
 * near the identity, so the base's weights in the teacher's topology are a fair start to learn from.
 */
function layersPair(outputs = 3): { base: tf.LayersModel; teacher: tf.LayersModel } {
  const r = seededRandom(11);
  const draw = (shape: number[], scale: number) => tf.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => (r() - 0.5) * scale), shape);
  const build = (extra: boolean, classes: number) => {
    const m = tf.sequential();
    m.add(tf.layers.dense({ inputShape: [8], units: 16, activation: 'relu', name: 'd1' }));
    if (extra) m.add(tf.layers.dense({ units: 16, activation: 'relu', name: 'extra' }));
    m.add(tf.layers.dense({ units: classes, activation: 'softmax', name: 'out' }));
    return m;
  };
  const [k1, b1, k2, b2] = [draw([8, 16], 1), draw([16], 0.2), draw([16, 3], 1), draw([3], 0.2)];
  const base = build(false, 3);
  base.setWeights([k1, b1, k2, b2]);
  const teacher = build(true, outputs);
  const k2t = outputs === 3 ? k2.add(draw([16, 3], 0.8)) : draw([16, outputs], 1);
  teacher.setWeights([k1.add(draw([8, 16], 0.8)), b1, tf.eye(16).add(draw([16, 16], 0.3)), tf.fill([16], 0.05), k2t, outputs === 3 ? b2 : draw([outputs], 0.2)]);
  return { base, teacher };
}

/** Mean |a − b| and top-1 agreement of two models' outputs on `x`. */
function closenessOf(a: tf.LayersModel, b: tf.LayersModel, x: tf.Tensor): { meanAbsDiff: number; agreement: number } {
  return tf.tidy(() => {
    const [ya, yb] = [a.predict(x) as tf.Tensor, b.predict(x) as tf.Tensor];
    return { meanAbsDiff: ya.sub(yb).abs().mean().dataSync()[0], agreement: ya.argMax(-1).equal(yb.argMax(-1)).mean().dataSync()[0] };
  });
}

test('TF.js layers model: a teacher with a layer added ships as a structural payload; ndiff apply rebuilds the model the trainer evaluated, closer to the teacher than the base', { ...once, timeout: 600_000 }, async (t) => {
  await initBackend('cpu');
  const dir = mkdtempSync(path.join(tmpdir(), 'nd-train-structural-tfjs-'));
  const { base, teacher } = layersPair();
  try {
    await base.save(fileSystemIO(path.join(dir, 'v1')));
    await teacher.save(fileSystemIO(path.join(dir, 'v2')));
    const r = seededRandom(5);
    const evalX = Float32Array.from({ length: 100 * 8 }, () => r() * 2 - 1);
    mkdirSync(path.join(dir, 'train'));
    mkdirSync(path.join(dir, 'eval'));
    saveNpy(path.join(dir, 'train', 'x.npy'), Float32Array.from({ length: 200 * 8 }, () => r() * 2 - 1), [200, 8]);
    saveNpy(path.join(dir, 'eval', 'x.npy'), evalX, [100, 8]);
    const out: string[] = [];
    const err: string[] = [];
    const io = { out: (l: string) => out.push(l), err: (l: string) => err.push(l), progress: (l: string) => err.push(l) };
    const { main } = await import('../cli/ndiff.ts');
    const [payloadFile, modelOut, metricsOut] = ['p.ndiff', 'v2-out', 'metrics.json'].map((f) => path.join(dir, f));
    const args = ['train', '--base', path.join(dir, 'v1'), '--teacher', path.join(dir, 'v2'), '--train', path.join(dir, 'train'), '--eval', path.join(dir, 'eval'),
      '--method', 'sparse', '--budget', '25%', '--epochs', '5', '--tune', 'off', '--seed', '3', '--model-id', 'tiny'];
    const code = await main([...args, '--out', payloadFile, '--model-out', modelOut, '--metrics-out', metricsOut], io);
    assert.equal(code, 0, err.join('\n'));
    const text = out.join('\n');
    assert.match(text, /the teacher's structure differs from the base's .*a structural payload \(format v7\), .* to rebuild the model's 2 files/);
    assert.match(text, /tensors added: extra\/bias, extra\/kernel; removed: none;/);
    const payload = new Uint8Array(readFileSync(payloadFile));
    const doc = readMsgpack(payload) as Record<string, unknown>;
    assert.equal(doc.nd, 7);
    assert.equal(doc.fk, 'tfjs');
    // The learned part patches the kept weights only: the added layer is the teacher's, whole.
    const inner = decodePayload(doc.pv as Uint8Array);
    assert.ok(inner.patches.length > 0 && inner.patches.every((p) => /^(d1|out)\//.test(p.name)), inner.patches.map((p) => p.name).join(', '));
    const metrics = JSON.parse(readFileSync(metricsOut, 'utf8'));
    assert.equal(metrics.bytes, payload.length);
    assert.deepEqual(metrics.structural.added, ['extra/bias', 'extra/kernel']);
    assert.equal(metrics.structural.kept, 4);
    assert.equal(metrics.structural.graphChanged, true);
    assert.ok(metrics.structural.valueBytes <= metrics.budgetBytes, `learned part ${metrics.structural.valueBytes} bytes, budget ${metrics.budgetBytes}`);

    // The weights the trainer evaluated: the learned payload applied to the model the structural
    // payload rebuilds first (made here from the two folders, as a device's rebuild makes it).
    const teacherFiles = await readTfjsModelFiles(path.join(dir, 'v2'), 'model.json');
    const intermediate = structuralIntermediateFiles(TFJS_REBUILD, await readTfjsModelFiles(path.join(dir, 'v1'), 'model.json'), teacherFiles);
    const evaluated = new TfjsFilesStore(intermediate.files);
    const hasher = await getHasher();
    await applyPayload(evaluated, doc.pv as Uint8Array, { hasher });
    // ndiff apply on a copy of the base folder (rebuildModelDir) reaches exactly those weights.
    const device = path.join(dir, 'device');
    await cp(path.join(dir, 'v1'), device, { recursive: true });
    const applied = await main(['apply', '--model', device, '--patch', payloadFile, '--no-state'], io);
    assert.equal(applied, 0, err.join('\n'));
    const onDevice = await openTfjsModelDir(device);
    assert.deepEqual(onDevice.list().map((e) => e.name).sort(), evaluated.list().map((e) => e.name).sort());
    for (const e of evaluated.list()) {
      if (e.patchable === false) continue;
      const [got, want] = [onDevice.values(e.name), evaluated.values(e.name)];
      assert.ok(Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(Buffer.from(want.buffer, want.byteOffset, want.byteLength)), `${e.name}: the device holds the weights the trainer evaluated`);
    }
    assert.equal(fingerprintStore(hasher, onDevice).fingerprint, metrics.targetFingerprint);
    assert.equal(fingerprintStore(hasher, await openTfjsModelDir(modelOut)).fingerprint, metrics.targetFingerprint, '--model-out is the device\'s model');

    // The applied model runs, and its outputs moved toward the teacher's from the base's.
    const x = tf.tensor(evalX, [100, 8]);
    const updated = await tf.loadLayersModel(fileSystemIO(device));
    const before = closenessOf(base, teacher, x);
    const after = closenessOf(updated, teacher, x);
    t.diagnostic(`${payload.length} bytes (rebuild ${metrics.structural.rebuildBytes}, learned ${metrics.structural.valueBytes}); the trainer: mean |output - teacher| ${metrics.teacher.eval.meanAbsDiffBefore.toFixed(4)} (the base's weights in the teacher's topology) -> ${metrics.teacher.eval.meanAbsDiffAfter.toFixed(4)}; against the teacher on 100 inputs: agreement ${before.agreement.toFixed(2)} -> ${after.agreement.toFixed(2)}, mean |output - teacher| ${before.meanAbsDiff.toFixed(4)} -> ${after.meanAbsDiff.toFixed(4)}`);
    assert.ok(Math.abs(after.meanAbsDiff - metrics.teacher.eval.meanAbsDiffAfter) < 1e-5, `the trainer measured ${metrics.teacher.eval.meanAbsDiffAfter}, the applied model gives ${after.meanAbsDiff}`);
    assert.ok(after.meanAbsDiff < 0.8 * before.meanAbsDiff, `mean |output - teacher| ${before.meanAbsDiff} -> ${after.meanAbsDiff}`);
    // ... and the learned part did that: the base's weights in the teacher's topology alone are further.
    const te = metrics.teacher.eval;
    assert.ok(te.meanAbsDiffAfter < 0.8 * te.meanAbsDiffBefore, `before training, in the teacher's topology ${te.meanAbsDiffBefore}; after ${te.meanAbsDiffAfter}`);
    assert.ok(after.agreement > before.agreement, `agreement with the teacher ${before.agreement} -> ${after.agreement}`);
    x.dispose();
    updated.dispose();

    // What stays refused, before any training: a teacher whose outputs differ (the app reads them),
    // and --also-consider (its payloads are on the base's structure).
    const other = layersPair(4);
    await other.teacher.save(fileSystemIO(path.join(dir, 'v2-four')));
    err.length = 0;
    assert.equal(await main(['train', '--base', path.join(dir, 'v1'), '--teacher', path.join(dir, 'v2-four'), '--train', path.join(dir, 'train'), '--tune', 'off', '--model-id', 'tiny', '--out', path.join(dir, 'four.ndiff')], io), 2);
    assert.match(err.join('\n'), /the teacher's output 0 is \[4\] per example, the base's \[3\]/);
    other.base.dispose();
    other.teacher.dispose();
    err.length = 0;
    assert.equal(await main([...args, '--out', path.join(dir, 'q.ndiff'), '--also-consider', payloadFile], io), 2);
    assert.match(err.join('\n'), /--also-consider compares payloads on the base's structure/);
  } finally {
    base.dispose();
    teacher.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});

/** The test CNN's graph (helpers/graph-model.ts) with its logits scaled by a new tensor `head/scale` before the softmax, as an edited v2 would be converted. */
function addScale(dir: string, scale: Float32Array): void {
  const json = JSON.parse(readFileSync(path.join(dir, 'model.json'), 'utf8'));
  const nodes = json.modelTopology.node as { name: string; op: string; input?: string[]; attr?: unknown }[];
  nodes.push({ name: 'head/scale', op: 'Const', attr: { value: { tensor: { dtype: 'DT_FLOAT', tensorShape: { dim: [{ size: String(CLASSES) }] } } }, dtype: { type: 'DT_FLOAT' } } });
  nodes.push({ name: 'head/Mul', op: 'Mul', input: ['dense/BiasAdd', 'head/scale'], attr: { T: { type: 'DT_FLOAT' } } });
  (nodes.find((n) => n.name === 'probs/Softmax') as { input: string[] }).input = ['head/Mul'];
  const group = json.weightsManifest[0];
  group.weights.push({ name: 'head/scale', shape: [CLASSES], dtype: 'float32' });
  const shard = path.join(dir, group.paths[group.paths.length - 1]);
  writeFileSync(shard, Buffer.concat([readFileSync(shard), Buffer.from(scale.buffer, scale.byteOffset, scale.byteLength)]));
  writeFileSync(path.join(dir, 'model.json'), JSON.stringify(json));
}

test('TF.js graph model: a teacher whose graph gained a node and a tensor ships as a structural payload; the applied folder computes what the trainer evaluated, closer to the teacher', { ...once, timeout: 600_000 }, async (t) => {
  await initBackend('cpu');
  const dir = mkdtempSync(path.join(tmpdir(), 'nd-train-structural-graph-'));
  try {
    const w = cnnWeights(1);
    await writeGraphCnn(path.join(dir, 'v1'), w);
    await writeGraphCnn(path.join(dir, 'v2'), retrained(w, 2));
    const scale = Float32Array.from({ length: CLASSES }, (_, i) => 1 + 0.5 * Math.sin(i));
    addScale(path.join(dir, 'v2'), scale);
    const evalX = cnnInputs(60, 2);
    mkdirSync(path.join(dir, 'train'));
    mkdirSync(path.join(dir, 'eval'));
    saveNpy(path.join(dir, 'train', 'x.npy'), cnnInputs(120, 1), [120, 12, 12, 1]);
    saveNpy(path.join(dir, 'eval', 'x.npy'), evalX, [60, 12, 12, 1]);
    const out: string[] = [];
    const err: string[] = [];
    const { main } = await import('../cli/ndiff.ts');
    const [payloadFile, metricsOut] = ['p.ndiff', 'metrics.json'].map((f) => path.join(dir, f));
    const code = await main(['train', '--backend', 'cpu', '--base', path.join(dir, 'v1'), '--teacher', path.join(dir, 'v2'), '--train', path.join(dir, 'train'), '--eval', path.join(dir, 'eval'),
      '--method', 'sparse', '--budget', '5%', '--epochs', '2', '--tune', 'off', '--seed', '3', '--model-id', 'cnn', '--out', payloadFile, '--metrics-out', metricsOut],
    { out: (l) => out.push(l), err: (l) => err.push(l), progress: (l) => err.push(l) });
    assert.equal(code, 0, err.join('\n'));
    assert.match(out.join('\n'), /tensors added: head\/scale; removed: none;.* graph changed/);
    const payload = new Uint8Array(readFileSync(payloadFile));
    const doc = readMsgpack(payload) as Record<string, unknown>;
    assert.equal(doc.fk, 'tfjs');
    const inner = decodePayload(doc.pv as Uint8Array);
    assert.ok(inner.patches.length > 0 && inner.patches.every((p) => /^(conv|dense)\//.test(p.name)), inner.patches.map((p) => p.name).join(', '));
    const metrics = JSON.parse(readFileSync(metricsOut, 'utf8'));
    assert.deepEqual(metrics.structural.added, ['head/scale']);

    const device = path.join(dir, 'device');
    await cp(path.join(dir, 'v1'), device, { recursive: true });
    assert.equal(await main(['apply', '--model', device, '--patch', payloadFile, '--no-state'], { out: () => {}, err: (l) => err.push(l), progress: () => {} }), 0, err.join('\n'));
    const onDevice = await openTfjsModelDir(device);
    const hasher = await getHasher();
    assert.equal(fingerprintStore(hasher, onDevice).fingerprint, metrics.targetFingerprint, 'the device holds the model the trainer evaluated');
    assert.deepEqual([...onDevice.values('head/scale')], [...scale], 'the new tensor came whole from the teacher');

    const x = tf.tensor(evalX, [60, 12, 12, 1]);
    const [base, teacher, updated] = await Promise.all(['v1', 'v2', 'device'].map((m) => tf.loadGraphModel(fileSystemIO(path.join(dir, m)))));
    const meanAbs = (a: tf.GraphModel) => tf.tidy(() => (a.predict(x) as tf.Tensor).sub(teacher.predict(x) as tf.Tensor).abs().mean().dataSync()[0]);
    const [before, after] = [meanAbs(base), meanAbs(updated)];
    const te = metrics.teacherEval;
    t.diagnostic(`${payload.length} bytes (rebuild ${metrics.structural.rebuildBytes}, learned ${metrics.structural.valueBytes}); the trainer: mean |output - teacher| ${te.before.meanAbsDiff.toFixed(4)} -> ${te.after.meanAbsDiff.toFixed(4)}; the base ${before.toFixed(4)}, the applied folder ${after.toFixed(4)}`);
    assert.ok(Math.abs(after - te.after.meanAbsDiff) < 1e-5, `the trainer measured ${te.after.meanAbsDiff}, the applied folder gives ${after}`);
    assert.ok(after < 0.9 * before, `mean |output - teacher| ${before} (base) -> ${after}`);
    for (const m of [base, teacher, updated]) m.dispose();
    x.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('TF.js: a teacher whose model.json differs from the base\'s only in who wrote it (converter, Keras version) is not another structure; one with a layer added is', once, async () => {
  await initBackend('cpu');
  const { structuralFolderTeacher } = await import('../src/train/structural-teacher.ts');
  const dir = mkdtempSync(path.join(tmpdir(), 'nd-train-structural-provenance-'));
  try {
    const { base, teacher } = layersPair();
    await base.save(fileSystemIO(path.join(dir, 'v1')));
    await teacher.save(fileSystemIO(path.join(dir, 'v2')));
    // The base's model saved again with new weights, by "another converter".
    base.setWeights(base.getWeights().map((w) => w.add(0.01)));
    await base.save(fileSystemIO(path.join(dir, 'v1b')));
    const json = JSON.parse(readFileSync(path.join(dir, 'v1b', 'model.json'), 'utf8'));
    json.generatedBy = 'keras v3.9';
    json.convertedBy = 'TensorFlow.js Converter v4.22.0';
    json.modelTopology.keras_version = '3.9.0';
    writeFileSync(path.join(dir, 'v1b', 'model.json'), JSON.stringify(json, null, 2));
    const baseFiles = await readTfjsModelFiles(path.join(dir, 'v1'), 'model.json');
    assert.equal(structuralFolderTeacher(baseFiles, await readTfjsModelFiles(path.join(dir, 'v1b'), 'model.json')), undefined);
    // The same teacher with its topology's layer renamed is another structure.
    json.modelTopology.config.layers[0].config.name = 'dense_in';
    writeFileSync(path.join(dir, 'v1b', 'model.json'), JSON.stringify(json));
    assert.ok(structuralFolderTeacher(baseFiles, await readTfjsModelFiles(path.join(dir, 'v1b'), 'model.json')));
    const plan = structuralFolderTeacher(baseFiles, await readTfjsModelFiles(path.join(dir, 'v2'), 'model.json'));
    assert.ok(plan);
    assert.deepEqual(plan.change.added.sort(), ['extra/bias', 'extra/kernel']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
