/**
 * Training ONNX models (src/train/onnx/train-onnx.ts over src/train/program/): a small CNN and a small
 * stateful LSTM built here, trained with labels and with a teacher (a second version of the same
 * model), the payload applied to the `.onnx` file by the device applier, and onnxruntime-web's
 * outputs on the patched file equal to what the trainer measured (the LSTM frame by frame with its
 * state carried); a weight stored on an int8 grid stays on it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-web';
import { initBackend } from '../src/train/backend.ts';
import { trainOnnxDiff, decisions, type OnnxDataset } from '../src/train/onnx/train-onnx.ts';
import { applyToOnnxFile } from '../src/io/onnx/files.ts';
import { OnnxWeightStore } from '../src/io/onnx/store.ts';
import { DT, f32le, graph, model, node, tensor, valueInfoFree } from './helpers/onnx-build.ts';

ort.env.wasm.numThreads = 1;
ort.env.logLevel = 'error';
await initBackend('wasm');

function seeded(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 31 - 1;
  };
}
const floats = (n: number, rand: () => number, scale = 0.5) => Array.from({ length: n }, () => scale * rand());
const init = (name: string, dims: number[], values: number[]) => tensor({ name, dims, dataType: DT.FLOAT, raw: f32le(values) });

const FC_SCALE = 0.02;

/**
 * Conv 3x3 (4 filters) -> Relu -> GlobalAveragePool -> Flatten -> Gemm with an INT8 weight read
 * through DequantizeLinear (scale 0.02) -> 3 logits. `shift` moves the float weights (a second
 * version of the model) and `fcShift` the int8 steps of the classifier.
 */
function cnn(shift = 0, fcShift = 0): Uint8Array {
  const rand = seeded(7);
  const moved = (xs: number[]) => xs.map((x, i) => x + shift * Math.sin(3 * i + 1));
  const q = Array.from({ length: 12 }, (_, i) => Math.max(-128, Math.min(127, Math.round(40 * Math.sin(5 * i + 2)) + (i % 3 === 0 ? fcShift : -fcShift))));
  return model(graph({
    initializers: [
      init('conv.w', [4, 1, 3, 3], moved(floats(36, rand))), init('conv.b', [4], moved(floats(4, rand, 0.1))),
      tensor({ name: 'fc.q', dims: [3, 4], dataType: DT.INT8, raw: q.map((v) => v & 0xff) }),
      tensor({ name: 'fc.scale', dims: [], dataType: DT.FLOAT, raw: f32le([FC_SCALE]) }),
      tensor({ name: 'fc.zp', dims: [], dataType: DT.INT8, raw: [0] }),
      init('fc.b', [3], moved([0.05, -0.02, 0.01])),
    ],
    nodes: [
      node({ opType: 'Conv', inputs: ['x', 'conv.w', 'conv.b'], outputs: ['c'], attributes: [{ name: 'pads', type: 7, ints: [1, 1, 1, 1] }] }),
      node({ opType: 'Relu', inputs: ['c'], outputs: ['r'] }),
      node({ opType: 'GlobalAveragePool', inputs: ['r'], outputs: ['p'] }),
      node({ opType: 'Flatten', inputs: ['p'], outputs: ['f'] }),
      node({ opType: 'DequantizeLinear', inputs: ['fc.q', 'fc.scale', 'fc.zp'], outputs: ['fc.w'] }),
      node({ opType: 'Gemm', inputs: ['f', 'fc.w', 'fc.b'], outputs: ['logits'], attributes: [{ name: 'transB', type: 2, i: 1 }] }),
    ],
    inputs: [valueInfoFree('x', ['N', 1, 8, 8])],
    outputs: [valueInfoFree('logits', ['N', 3])],
  }));
}

const H = 6;
/**
 * One frame of an LSTM carrying (h, c) from frame to frame, as a streaming model is exported:
 * x [N, 3] -> LSTM step from (h, c) -> hN, cN; the speech-like probability Sigmoid(Gemm(hN)).
 */
function lstm(shift = 0): Uint8Array {
  const rand = seeded(11);
  const moved = (xs: number[]) => xs.map((x, i) => x + shift * Math.cos(7 * i + 3));
  return model(graph({
    initializers: [
      init('lstm.W', [1, 4 * H, 3], moved(floats(4 * H * 3, rand, 0.8))), init('lstm.R', [1, 4 * H, H], moved(floats(4 * H * H, rand, 0.5))), init('lstm.B', [1, 8 * H], moved(floats(8 * H, rand, 0.1))),
      init('out.w', [1, H], moved(floats(H, rand, 1.5))), init('out.b', [1], moved([0.1])),
      tensor({ name: 'axis0', dims: [1], dataType: DT.INT64, int64Data: [0] }),
    ],
    nodes: [
      node({ opType: 'Unsqueeze', inputs: ['x', 'axis0'], outputs: ['seq'] }),
      node({ opType: 'LSTM', inputs: ['seq', 'lstm.W', 'lstm.R', 'lstm.B', '', 'h', 'c'], outputs: ['', 'hN', 'cN'], attributes: [{ name: 'hidden_size', type: 2, i: H }] }),
      node({ opType: 'Squeeze', inputs: ['hN', 'axis0'], outputs: ['hs'] }),
      node({ opType: 'Gemm', inputs: ['hs', 'out.w', 'out.b'], outputs: ['z'], attributes: [{ name: 'transB', type: 2, i: 1 }] }),
      node({ opType: 'Sigmoid', inputs: ['z'], outputs: ['p'] }),
    ],
    inputs: [valueInfoFree('x', ['N', 3]), valueInfoFree('h', [1, 'N', H]), valueInfoFree('c', [1, 'N', H])],
    outputs: [valueInfoFree('p', ['N', 1]), valueInfoFree('hN', [1, 'N', H]), valueInfoFree('cN', [1, 'N', H])],
  }));
}

function images(n: number, seed: number): OnnxDataset {
  const rand = seeded(seed);
  const values = new Float32Array(n * 64);
  for (let i = 0; i < n; i++) {
    // A blob somewhere on a noisy background.
    const cx = 1 + Math.floor(((rand() + 1) / 2) * 6);
    const cy = 1 + Math.floor(((rand() + 1) / 2) * 6);
    const amplitude = 2 * rand();
    const offset = rand();
    for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++) values[i * 64 + y * 8 + x] = offset + 0.3 * rand() + Math.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 2) * amplitude;
  }
  return { inputs: { x: { values, shape: [1, 8, 8] } } };
}

function sequences(count: number, frames: number, seed: number): OnnxDataset {
  const rand = seeded(seed);
  const values = new Float32Array(count * frames * 3);
  const sequence = new Int32Array(count * frames);
  for (let s = 0; s < count; s++) {
    const phase = 3 * rand();
    for (let t = 0; t < frames; t++) {
      const i = s * frames + t;
      sequence[i] = s;
      for (let k = 0; k < 3; k++) values[i * 3 + k] = Math.sin(0.6 * t + phase + k) + 0.3 * rand();
    }
  }
  return { inputs: { x: { values, shape: [3] } }, sequence };
}

/** onnxruntime-web on a file: the CNN's logits for every image. */
async function ortImages(file: string, data: OnnxDataset): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(readFileSync(file));
  const n = data.inputs.x.values.length / 64;
  const r = await s.run({ x: new ort.Tensor('float32', data.inputs.x.values as Float32Array, [n, 1, 8, 8]) });
  await s.release();
  return r.logits.data as Float32Array;
}

/** onnxruntime-web on a file: the LSTM's probability for every frame, each sequence from a zero state with (h, c) carried. */
async function ortFrames(file: string, data: OnnxDataset): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(readFileSync(file));
  const seq = data.sequence as Int32Array;
  const x = data.inputs.x.values as Float32Array;
  const out = new Float32Array(seq.length);
  let h = new ort.Tensor('float32', new Float32Array(H), [1, 1, H]);
  let c = new ort.Tensor('float32', new Float32Array(H), [1, 1, H]);
  for (let i = 0; i < seq.length; i++) {
    if (i === 0 || seq[i] !== seq[i - 1]) {
      h = new ort.Tensor('float32', new Float32Array(H), [1, 1, H]);
      c = new ort.Tensor('float32', new Float32Array(H), [1, 1, H]);
    }
    const r = await s.run({ x: new ort.Tensor('float32', x.slice(i * 3, i * 3 + 3), [1, 3]), h, c });
    out[i] = (r.p.data as Float32Array)[0];
    h = r.hN as ort.TypedTensor<'float32'>;
    c = r.cN as ort.TypedTensor<'float32'>;
  }
  await s.release();
  return out;
}

function worstRelative(a: Float32Array, b: Float32Array): number {
  let scale = 0;
  for (const v of b) scale = Math.max(scale, Math.abs(v));
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst / Math.max(scale, 1e-6);
}

function agreement(a: Int32Array, b: Int32Array): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) n++;
  return n / a.length;
}

/** Apply `payload` to a copy of `bytes` with the device applier; the patched file's path. */
async function patched(dir: string, name: string, bytes: Uint8Array, payload: Uint8Array): Promise<string> {
  const file = path.join(dir, name);
  writeFileSync(file, bytes);
  await applyToOnnxFile(file, payload, { state: null });
  return file;
}

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
