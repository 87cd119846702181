/**
 * Training ONNX models (src/train/onnx/train-onnx.ts over src/train/program/): a small CNN and a small
 * stateful LSTM built here, trained with labels and with a teacher (a second version of the same
 * model), the payload applied to the `.onnx` file by the device applier, and onnxruntime-web's
 * outputs on the patched file equal to what the trainer measured (the LSTM frame by frame with its
 * state carried); a weight stored on an int8 grid stays on it.
 */
import { test } from 'node:test';
import { execFileSync } from 'node:child_process';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { initBackend } from '../src/engine/backend.ts';
import { trainOnnxDiff, decisions, type OnnxDataset } from '../src/train/onnx/train-onnx.ts';
import { OnnxWeightStore } from '../src/io/onnx/store.ts';
import { DT, f32le, graph, model, node, tensor, valueInfoFree } from './helpers/onnx-build.ts';
import { FC_SCALE, agreement, cnn, images, lstm, lstmExternalData, ortFrames, ortImages, patched, sequences, worstRelative } from './helpers/onnx-models.ts';
import { applyPayload } from '../src/apply/index.ts';

await initBackend('wasm');

test('a small ONNX CNN trained with labels and with a teacher: the payload patches the .onnx file, onnxruntime-web on it equals the trainer, the int8 weight stays on its grid', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'nd-onnx-train-'));
  try {
    const v1 = cnn();
    const v2 = cnn(0.5, 60);
    const v2File = path.join(dir, 'v2.onnx');
    writeFileSync(v2File, v2);
    const train = images(240, 1);
    const evalSet = images(120, 2);
    // Labels: the new version's decisions (what an update to v2 should reproduce).
    const label = async (d: OnnxDataset) => decisions(await ortImages(v2File, d), { classes: 3, outputKind: 'logits' });
    const labelled = { ...train, labels: await label(train) };
    const evalLabelled = { ...evalSet, labels: await label(evalSet) };
    const common = { budgetBytes: 400, epochs: 4, tune: 'off' as const, seed: 3, batchSize: 32, learningRate: 3e-2, allowWorse: false, header: { modelId: 'cnn', sequence: 1 } };

    const byLabels = await trainOnnxDiff(v1, labelled, { ...common, method: 'sparse', eval: evalLabelled, program: { source: 'cnn.onnx' } });
    const file1 = await patched(dir, 'labels.onnx', v1, byLabels.bytes);
    const ortOut = await ortImages(file1, evalSet);
    const rel = worstRelative(byLabels.evalOutputs as Float32Array, ortOut);
    t.diagnostic(`labels, sparse ${byLabels.bytes.length} B: eval accuracy ${byLabels.accuracyBefore} -> ${byLabels.accuracyAfter}; trainer vs onnxruntime-web on the patched file: ${rel.toExponential(2)}`);
    assert.ok(rel < 1e-4, `trainer and onnxruntime-web differ by ${rel}`);
    assert.ok((byLabels.accuracyAfter as number) > (byLabels.accuracyBefore as number), 'training with labels improves the eval accuracy');
    assert.equal(byLabels.accuracyAfter, agreement(decisions(ortOut, { classes: 3, outputKind: 'logits' }), evalLabelled.labels), 'the trainer\'s accuracy is onnxruntime-web\'s on the patched file');

    const byTeacher = await trainOnnxDiff(v1, train, { ...common, method: 'full', teacher: v2, eval: evalSet, trainable: 'all' });
    const file2 = await patched(dir, 'teacher.onnx', v1, byTeacher.bytes);
    const ortOut2 = await ortImages(file2, evalSet);
    const rel2 = worstRelative(byTeacher.evalOutputs as Float32Array, ortOut2);
    const te = byTeacher.teacherEval as NonNullable<typeof byTeacher.teacherEval>;
    t.diagnostic(`teacher, full: agreement with v2 ${te.before.agreement.toFixed(3)} -> ${te.after.agreement.toFixed(3)}; trainer vs onnxruntime-web ${rel2.toExponential(2)}`);
    assert.ok(rel2 < 1e-4);
    assert.ok(te.after.agreement > te.before.agreement, 'training toward the teacher brings the decisions closer to it');
    // Unlabelled training examples with a teacher, labelled evaluation examples: the teacher gives
    // the targets, the evaluation labels the accuracy before and after (and the teacher's closeness).
    const progress: string[] = [];
    const mixed = await trainOnnxDiff(v1, train, { ...common, method: 'sparse', teacher: v2, eval: evalLabelled, epochs: 2 });
    assert.equal(typeof mixed.accuracyBefore, 'number', 'accuracy before, from the evaluation labels');
    const file4 = await patched(dir, 'mixed.onnx', v1, mixed.bytes);
    assert.equal(mixed.accuracyAfter, agreement(decisions(await ortImages(file4, evalSet), { classes: 3, outputKind: 'logits' }), evalLabelled.labels), 'the accuracy after is onnxruntime-web\'s on the patched file');
    assert.ok(mixed.teacherEval, 'and the closeness to the teacher on the same examples');
    // The CNN outputs logits, as PyTorch exports a classifier: matched as a classifier (KL of
    // softened class probabilities) and chosen by top-1 agreement, not by raw output differences.
    const logitsTeacher = await trainOnnxDiff(v1, train, { ...common, method: 'sparse', teacher: v2, epochs: 1, onProgress: (m: string) => progress.push(m) });
    assert.equal(logitsTeacher.teacher?.loss, 'kl');
    assert.equal(logitsTeacher.teacher?.metric, 'top1');
    assert.ok(progress.some((m) => /read as class logits .*--teacher-loss mse/.test(m)), `the choice is said: ${progress.filter((m) => m.startsWith('teacher:')).join(' | ')}`);
    // topk-retrain with the teacher's weights as the full fine-tune: the mask is the top-k of
    // (v2 - v1) over the patchable weights (the store also lists integer tensors it never patches).
    const v2Store = new OnnxWeightStore(v2);
    const retrained = await trainOnnxDiff(v1, train, { ...common, method: 'topk-retrain', teacher: v2, eval: evalSet, fullWeights: new Map(v2Store.weights().map((w) => [w.name, Float32Array.from(v2Store.values(w.name))])) });
    const file3 = await patched(dir, 'retrained.onnx', v1, retrained.bytes);
    assert.ok(worstRelative(retrained.evalOutputs as Float32Array, await ortImages(file3, evalSet)) < 1e-4);
    assert.ok(retrained.bytes.length <= common.budgetBytes);
    // The int8 classifier weight: patched (full fine-tunes it), every value a whole number of steps within int8.
    const fc = byTeacher.targetValues.get('fc.q') as Float32Array;
    assert.ok(fc, 'the int8 weight is trained');
    const base = new OnnxWeightStore(v1).values('fc.q');
    assert.ok(fc.some((v, i) => v !== base[i]), 'and changed');
    const store = new OnnxWeightStore(new Uint8Array(readFileSync(file2)));
    assert.equal(store.grid('fc.q')?.dtype, 'qint8');
    for (const [i, v] of store.values('fc.q').entries()) {
      const steps = v / FC_SCALE;
      assert.ok(Math.abs(steps - Math.round(steps)) < 1e-4 && steps >= -128.001 && steps <= 127.001, `fc.q[${i}] = ${v} is on the int8 grid`);
      assert.equal(Math.fround(v), Math.fround(fc[i]), 'the file holds what the trainer trained');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a small stateful ONNX LSTM trained over sequences with the state carried: labels and a teacher, onnxruntime-web on the patched file equals the trainer frame for frame', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'nd-onnx-train-'));
  try {
    const v1 = lstm();
    const v2 = lstm(0.5);
    const v2File = path.join(dir, 'v2.onnx');
    writeFileSync(v2File, v2);
    const train = sequences(24, 16, 5);
    const val = sequences(6, 16, 6);
    const evalSet = sequences(8, 16, 7);
    const label = async (d: OnnxDataset) => decisions(await ortFrames(v2File, d), { classes: 2, outputKind: 'probability' });
    const state = [{ input: 'h', output: 'hN' }, { input: 'c', output: 'cN' }];
    const common = { budgetBytes: 700, epochs: 5, tune: 'off' as const, seed: 1, batchSize: 32, learningRate: 1e-2, state, bpttFrames: 3, header: { modelId: 'lstm', sequence: 1 } };

    const byLabels = await trainOnnxDiff(v1, { ...train, labels: await label(train) }, { ...common, method: 'hash', validation: { ...val, labels: await label(val) }, eval: { ...evalSet, labels: await label(evalSet) } });
    const file1 = await patched(dir, 'labels.onnx', v1, byLabels.bytes);
    const ortOut = await ortFrames(file1, evalSet);
    const rel = worstRelative(byLabels.evalOutputs as Float32Array, ortOut);
    t.diagnostic(`labels, hash ${byLabels.bytes.length} B: eval accuracy ${byLabels.accuracyBefore} -> ${byLabels.accuracyAfter}; trainer vs onnxruntime-web frame for frame: ${rel.toExponential(2)}`);
    assert.ok(rel < 1e-4, `trainer and onnxruntime-web differ by ${rel}`);
    assert.ok((byLabels.accuracyAfter as number) > (byLabels.accuracyBefore as number));
    // What the trainer measured before the update is onnxruntime-web on the unpatched file too.
    const v1File = path.join(dir, 'v1.onnx');
    writeFileSync(v1File, v1);
    assert.ok(worstRelative(byLabels.evalOutputsBefore as Float32Array, await ortFrames(v1File, evalSet)) < 1e-4);

    const byTeacher = await trainOnnxDiff(v1, train, { ...common, method: 'sparse', teacher: v2, validation: val, eval: evalSet });
    const file2 = await patched(dir, 'teacher.onnx', v1, byTeacher.bytes);
    const ortOut2 = await ortFrames(file2, evalSet);
    const rel2 = worstRelative(byTeacher.evalOutputs as Float32Array, ortOut2);
    const te = byTeacher.teacherEval as NonNullable<typeof byTeacher.teacherEval>;
    t.diagnostic(`teacher, sparse ${byTeacher.bytes.length} B: agreement with v2 ${te.before.agreement.toFixed(3)} -> ${te.after.agreement.toFixed(3)}, mean |Δp| ${te.before.meanAbsDiff.toFixed(4)} -> ${te.after.meanAbsDiff.toFixed(4)}; trainer vs onnxruntime-web ${rel2.toExponential(2)}`);
    assert.ok(rel2 < 1e-4);
    assert.ok(te.after.agreement > te.before.agreement);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ndiff train --base model.onnx: a stateful model with a teacher from .npy folders, the patched file written; an unimplemented operator refused by name before training', async (t) => {
  const { main } = await import('../cli/ndiff.ts');
  const { saveNpy } = await import('../src/io/npy/files.ts');
  const dir = mkdtempSync(path.join(tmpdir(), 'nd-onnx-train-cli-'));
  const run = async (...argv: string[]) => {
    const lines: string[] = [];
    const code = await main(argv, { out: (l) => lines.push(l), err: (l) => lines.push(l), progress: (l) => lines.push(l) });
    return { code, text: lines.join('\n') };
  };
  try {
    writeFileSync(path.join(dir, 'v1.onnx'), lstm());
    writeFileSync(path.join(dir, 'v2.onnx'), lstm(0.5));
    const folder = (name: string, d: OnnxDataset) => {
      saveNpy(path.join(dir, name, 'x.npy'), d.inputs.x.values as Float32Array, [d.sequence!.length, 3]);
      saveNpy(path.join(dir, name, 'sequence.npy'), d.sequence as Int32Array, [d.sequence!.length]);
    };
    const evalSet = sequences(6, 16, 9);
    folder('train', sequences(20, 16, 5));
    folder('val', sequences(5, 16, 6));
    folder('eval', evalSet);
    const r = await run('train', '--model-id', 'lstm', '--base', path.join(dir, 'v1.onnx'), '--teacher', path.join(dir, 'v2.onnx'), '--state', 'h:hN', '--state', 'c:cN', '--bptt', '2',
      '--train', path.join(dir, 'train'), '--val', path.join(dir, 'val'), '--eval', path.join(dir, 'eval'), '--method', 'sparse', '--budget', '700', '--epochs', '4', '--tune', 'off', '--lr', '0.01',
      '--out', path.join(dir, 'p.ndiff'), '--model-out', path.join(dir, 'v1-patched.onnx'));
    t.diagnostic(r.text.split('\n').filter((l) => /wrote|agreement/.test(l)).join('\n'));
    assert.equal(r.code, 0, r.text);
    const m = /eval agreement with the teacher ([\d.]+)% -> ([\d.]+)%/.exec(r.text);
    assert.ok(m && Number(m[2]) > Number(m[1]), r.text);
    // The patched file, run by onnxruntime-web, agrees with v2 as the CLI said.
    const got = decisions(await ortFrames(path.join(dir, 'v1-patched.onnx'), evalSet), { classes: 2, outputKind: 'probability' });
    const want = decisions(await ortFrames(path.join(dir, 'v2.onnx'), evalSet), { classes: 2, outputKind: 'probability' });
    assert.equal((100 * agreement(got, want)).toFixed(2), (m as RegExpExecArray)[2]);

    // An operator the executor does not implement: refused before anything trains, by name.
    const odd = model(graph({
      nodes: [node({ opType: 'NonMaxSuppression', name: 'nms', inputs: ['x', 'x'], outputs: ['y'] })],
      inputs: [valueInfoFree('x', ['N', 3])],
      outputs: [valueInfoFree('y', ['N', 3])],
    }));
    writeFileSync(path.join(dir, 'odd.onnx'), odd);
    const refused = await run('train', '--model-id', 'odd', '--base', path.join(dir, 'odd.onnx'), '--teacher', path.join(dir, 'odd.onnx'), '--train', path.join(dir, 'train'), '--out', path.join(dir, 'odd.ndiff'));
    assert.notEqual(refused.code, 0);
    assert.match(refused.text, /operator NonMaxSuppression \(node "nms", opset 17\) is not implemented/);
    assert.ok(!existsSync(path.join(dir, 'odd.ndiff')), 'nothing written');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ndiff train with external data: base and teacher read with their external files, the updated model written with its own beside it, never over the base\'s', async (t) => {
  const { main } = await import('../cli/ndiff.ts');
  const { saveNpy } = await import('../src/io/npy/files.ts');
  const dir = mkdtempSync(path.join(tmpdir(), 'nd-onnx-train-ext-'));
  const run = async (...argv: string[]) => {
    const lines: string[] = [];
    const code = await main(argv, { out: (l) => lines.push(l), err: (l) => lines.push(l), progress: (l) => lines.push(l) });
    return { code, text: lines.join('\n') };
  };
  try {
    for (const [name, shift] of [['v1', 0], ['v2', 0.5]] as const) {
      mkdirSync(path.join(dir, name));
      writeFileSync(path.join(dir, name, 'model.onnx'), lstm(shift, 'lstm.weights'));
      writeFileSync(path.join(dir, name, 'lstm.weights'), lstmExternalData(shift));
    }
    const train = sequences(20, 16, 5);
    saveNpy(path.join(dir, 'train', 'x.npy'), train.inputs.x.values as Float32Array, [train.sequence!.length, 3]);
    saveNpy(path.join(dir, 'train', 'sequence.npy'), train.sequence as Int32Array, [train.sequence!.length]);
    const base = path.join(dir, 'v1', 'model.onnx');
    const args = ['train', '--model-id', 'lstm', '--base', base, '--teacher', path.join(dir, 'v2', 'model.onnx'), '--state', 'h:hN', '--state', 'c:cN',
      '--train', path.join(dir, 'train'), '--method', 'sparse', '--budget', '700', '--epochs', '2', '--tune', 'off', '--lr', '0.01', '--allow-worse'];
    const r = await run(...args, '--out', path.join(dir, 'p.ndiff'), '--model-out', path.join(dir, 'out', 'model.onnx'));
    t.diagnostic(r.text.split('\n').filter((l) => /wrote|agreement/.test(l)).join('\n'));
    assert.equal(r.code, 0, r.text);
    // The written model is the base with the payload applied, its external file beside it.
    const payload = new Uint8Array(readFileSync(path.join(dir, 'p.ndiff')));
    const expected = new OnnxWeightStore(readFileSync(base), { external: { 'lstm.weights': readFileSync(path.join(dir, 'v1', 'lstm.weights')) } });
    await applyPayload(expected, payload);
    const written = new OnnxWeightStore(readFileSync(path.join(dir, 'out', 'model.onnx')), { external: { 'lstm.weights': readFileSync(path.join(dir, 'out', 'lstm.weights')) } });
    for (const w of expected.weights()) assert.deepEqual(written.values(w.name), expected.values(w.name), w.name);
    assert.deepEqual(new Uint8Array(readFileSync(path.join(dir, 'v1', 'lstm.weights'))), lstmExternalData(0), 'the base untouched');
    // Beside the base, the new model's lstm.weights would be the base's own: refused before training, nothing written.
    const refused = await run(...args, '--out', path.join(dir, 'q.ndiff'), '--model-out', path.join(dir, 'v1', 'model-v2.onnx'));
    assert.equal(refused.code, 2, refused.text);
    assert.match(refused.text, /external data \(lstm\.weights\) over --base .*'s own.*another folder/);
    assert.ok(!existsSync(path.join(dir, 'q.ndiff')));
    assert.deepEqual(readdirSync(path.join(dir, 'v1')).sort(), ['lstm.weights', 'model.onnx']);
    assert.deepEqual(new Uint8Array(readFileSync(path.join(dir, 'v1', 'lstm.weights'))), lstmExternalData(0), 'the base untouched');

    // Hostile external data for training: a FIFO (a plain read would wait forever for a writer)
    // and a link to /dev/zero (a plain read would grow without end) are refused before a byte is
    // read, as the device's store refuses them.
    for (const [name, make, found] of [
      ['fifo', (f: string) => execFileSync('mkfifo', [f]), /is a FIFO|is a named pipe|expected the external data file .* as a regular file/],
      ['zero', (f: string) => symlinkSync('/dev/zero', f), /symbolic link|regular file/],
    ] as const) {
      const hostile = path.join(dir, name);
      mkdirSync(hostile);
      writeFileSync(path.join(hostile, 'model.onnx'), lstm(0, 'lstm.weights'));
      make(path.join(hostile, 'lstm.weights'));
      const r = await run(...args.map((x) => (x === base ? path.join(hostile, 'model.onnx') : x)), '--out', path.join(dir, `${name}.ndiff`));
      assert.notEqual(r.code, 0, r.text);
      assert.match(r.text, /--base: /);
      assert.match(r.text, found);
      assert.ok(!existsSync(path.join(dir, `${name}.ndiff`)));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--trainable all trains every weight tensor, never the export\'s scalar constants (an exponent, an epsilon, a scale): training one could make Sqrt(var + eps) NaN', async () => {
  // x [n, 4] -> MatMul W [4, 3] -> Pow(., 2) -> Div by a scale: the exponent and the scale are Constant nodes the store can patch.
  const scalar = (name: string, v: number) => node({ opType: 'Constant', outputs: [name], attributes: [{ name: 'value', type: 4, t: tensor({ dims: [], dataType: DT.FLOAT, raw: f32le([v]) }) }] });
  const make = (shift: number) => model(graph({
    initializers: [tensor({ name: 'W', dims: [4, 3], dataType: DT.FLOAT, raw: f32le(Array.from({ length: 12 }, (_, i) => Math.sin(i + shift))) })],
    nodes: [node({ opType: 'MatMul', inputs: ['x', 'W'], outputs: ['h'] }), scalar('two', 2), node({ opType: 'Pow', inputs: ['h', 'two'], outputs: ['p'] }), scalar('scale', 4), node({ opType: 'Div', inputs: ['p', 'scale'], outputs: ['y'] })],
    inputs: [valueInfoFree('x', ['n', 4])],
    outputs: [valueInfoFree('y', ['n', 3])],
  }));
  const n = 64;
  const data: OnnxDataset = { inputs: { x: { values: Float32Array.from({ length: n * 4 }, (_, i) => Math.cos(7 * i)), shape: [4] } } };
  const lines: string[] = [];
  const result = await trainOnnxDiff(make(0), data, { method: 'full', teacher: make(0.3), budgetBytes: 0, epochs: 1, seed: 1, tune: 'off', batchSize: 16, validation: 0, trainable: 'all', onProgress: (l) => lines.push(l) });
  assert.equal(result.trainable.trained.length, 1, `trained: ${result.trainable.trained.join(', ')}`);
  assert.ok(!lines.some((l) => /frozen by the model's config/.test(l)), lines.join('\n'));
});

test('the scalar constants a fused LayerNorm no longer reads are reported as constants, not as weights no input reaches', async () => {
  // x [n, 8] -> LayerNorm as exporters decompose it (ReduceMean, Sub, Pow 2, ReduceMean, Add eps, Sqrt, Div, scale, shift) -> MatMul W [8, 3].
  const scalar = (name: string, v: number) => node({ opType: 'Constant', outputs: [name], attributes: [{ name: 'value', type: 4, t: tensor({ dims: [], dataType: DT.FLOAT, raw: f32le([v]) }) }] });
  const mean = (i: string, o: string) => node({ opType: 'ReduceMean', inputs: [i], outputs: [o], attributes: [{ name: 'axes', type: 7, ints: [-1] }] });
  const make = (shift: number) => model(graph({
    initializers: [
      tensor({ name: 'gamma', dims: [8], dataType: DT.FLOAT, raw: f32le(Array.from({ length: 8 }, (_, i) => 1 + Math.sin(i) / 4)) }),
      tensor({ name: 'beta', dims: [8], dataType: DT.FLOAT, raw: f32le(Array.from({ length: 8 }, (_, i) => Math.cos(i) / 4)) }),
      tensor({ name: 'W', dims: [8, 3], dataType: DT.FLOAT, raw: f32le(Array.from({ length: 24 }, (_, i) => Math.sin(i + shift))) }),
    ],
    nodes: [
      mean('x', 'm'), node({ opType: 'Sub', inputs: ['x', 'm'], outputs: ['dev'] }), scalar('two', 2), node({ opType: 'Pow', inputs: ['dev', 'two'], outputs: ['sq'] }),
      mean('sq', 'var'), scalar('eps', 1e-5), node({ opType: 'Add', inputs: ['var', 'eps'], outputs: ['ve'] }), node({ opType: 'Sqrt', inputs: ['ve'], outputs: ['sd'] }),
      node({ opType: 'Div', inputs: ['dev', 'sd'], outputs: ['n'] }), node({ opType: 'Mul', inputs: ['n', 'gamma'], outputs: ['ng'] }), node({ opType: 'Add', inputs: ['ng', 'beta'], outputs: ['h'] }),
      node({ opType: 'MatMul', inputs: ['h', 'W'], outputs: ['y'] }),
    ],
    inputs: [valueInfoFree('x', ['n', 8])],
    outputs: [valueInfoFree('y', ['n', 3])],
  }));
  const n = 64;
  const data: OnnxDataset = { inputs: { x: { values: Float32Array.from({ length: n * 8 }, (_, i) => Math.cos(7 * i) * 3), shape: [8] } } };
  const lines: string[] = [];
  const result = await trainOnnxDiff(make(0), data, { method: 'full', teacher: make(0.3), budgetBytes: 0, epochs: 1, seed: 1, tune: 'off', batchSize: 16, validation: 0, onProgress: (l) => lines.push(l) });
  assert.ok(!lines.some((l) => /not reached/.test(l)), lines.join('\n'));
  assert.ok(lines.includes('2 scalar constants (exponents, epsilons) stay as they are'), lines.join('\n'));
  assert.deepEqual([...result.trainable.trained].sort(), ['W', 'beta', 'gamma']);
});
