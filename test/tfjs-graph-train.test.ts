/**
 * Training TF.js graph models (src/train/tfjs-graph/): a graph-model folder written here as the
 * converter writes one (test/helpers/graph-model.ts: a CNN as a GraphDef in JSON, uint8- or
 * float16-quantized), trained toward a teacher (its v2, as a graph model or as a layers model)
 * with no labels; the payload applied to the folder by the device applier, and tfjs' outputs on
 * the patched folder equal to what the trainer evaluated; the quantized weights still on their
 * grids. Graphs tfjs cannot differentiate are refused before training, naming the operator and
 * the node; a teacher with another interface is a usage error; a graph model teaches a layers base.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { UnsupportedOperatorError, UsageError } from '../src/core/errors.ts';
import { storedModelBytes } from '../src/diff/build.ts';
import { applyToModelDir } from '../src/io/tfjs/folder-update.ts';
import { fileSystemIO, openTfjsModelDir, quantizeModelDir } from '../src/io/tfjs/index.ts';
import { saveNpy } from '../src/io/npy/files.ts';
import { initBackend } from '../src/engine/backend.ts';
import { trainDiff } from '../src/train/train-diff.ts';
import { GraphModelTeacher } from '../src/train/tfjs-graph/graph-teacher.ts';
import { TfjsGraphProgram } from '../src/engine/tfjs-graph/graph-program.ts';
import { registerGradientFixes } from '../src/engine/kernels/gradients.ts';
import { trainTfjsGraphDiff } from '../src/train/tfjs-graph/train-graph.ts';
import type { ProgramDataset } from '../src/train/program/train-program.ts';
import { CLASSES, SIDE, cnnInputs, cnnWeights, layersCnn, retrained, seeded, writeGraphCnn, type ExtraOp } from './helpers/graph-model.ts';
import { onceSkip } from './helpers/benchmarks.ts';

// Trains in this process only, through the readers and writers other files test on every Node
// release (whose CLI training cases run there too): checked once per CI (test/helpers/benchmarks.ts).
const once = { skip: onceSkip('the in-process graph-model training cases are') };

await initBackend('wasm');

const root = mkdtempSync(path.join(tmpdir(), 'nd-graph-train-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const v1 = cnnWeights(11);
const v2 = retrained(v1, 12);
const TRAIN = 320;
const EVAL = 96;
const trainX = cnnInputs(TRAIN, 1);
const evalX = cnnInputs(EVAL, 2);
const dataset = (x: Float32Array): ProgramDataset => ({ inputs: { x: { values: x, shape: [SIDE, SIDE, 1] } } });

let folders = 0;
/** A graph-model folder of `w` (float32, or quantized as the converter does). */
async function graphFolder(w: typeof v1, options: { quantize?: 'uint8' | 'float16'; extra?: ExtraOp; inputSide?: number; classes?: number; batchOfOne?: boolean } = {}): Promise<string> {
  const dir = path.join(root, `g${folders++}`);
  await writeGraphCnn(dir, w, options);
  if (!options.quantize) return dir;
  const q = `${dir}-${options.quantize}`;
  await quantizeModelDir(dir, q, options.quantize);
  return q;
}

/** Largest |a − b| over the largest |b| (tiny magnitudes count as 1e-3). */
function relativeGap(a: Float32Array, b: Float32Array): number {
  let gap = 0;
  let top = 1e-3;
  for (let i = 0; i < a.length; i++) {
    gap = Math.max(gap, Math.abs(a[i] - b[i]));
    top = Math.max(top, Math.abs(b[i]));
  }
  return gap / top;
}

async function outputsOf(dir: string, x: Float32Array): Promise<Float32Array> {
  const m = await tf.loadGraphModel(fileSystemIO(dir));
  const out = tf.tidy(() => (m.execute(tf.tensor(x, [x.length / (SIDE * SIDE), SIDE, SIDE, 1])) as tf.Tensor).dataSync() as Float32Array);
  m.dispose();
  return Float32Array.from(out);
}

test('a uint8 graph model trained toward its v2 (a graph model) without labels: the patched folder computes what the trainer evaluated, on the same grids', once, async (t) => {
  const baseDir = await graphFolder(v1, { quantize: 'uint8' });
  const teacherDir = await graphFolder(v2);
  const store = await openTfjsModelDir(baseDir);
  const model = await tf.loadGraphModel(fileSystemIO(baseDir));
  const teacher = await tf.loadGraphModel(fileSystemIO(teacherDir));
  const budgetBytes = Math.round(0.2 * storedModelBytes(store));
  const res = await trainTfjsGraphDiff(model, store, dataset(trainX), {
    method: 'sparse', budgetBytes, epochs: 4, tune: 'off', seed: 1, teacher, eval: dataset(evalX), header: { modelId: 'cnn', sequence: 1 },
  });
  assert.ok(res.bytes.length <= budgetBytes, `${res.bytes.length} bytes within ${budgetBytes}`);
  const { before, after } = res.teacherEval as NonNullable<typeof res.teacherEval>;
  assert.ok(after.meanAbsDiff < 0.8 * before.meanAbsDiff, `closer to the teacher: mean |Δ| ${before.meanAbsDiff} -> ${after.meanAbsDiff}`);
  assert.ok(after.agreement > before.agreement, `agreement ${before.agreement} -> ${after.agreement}`);
  assert.deepEqual(res.unreachable, []);

  // The device applier patches a copy of the folder; tfjs on it computes what the trainer evaluated.
  const patched = path.join(root, 'patched-uint8');
  cpSync(baseDir, patched, { recursive: true });
  await applyToModelDir(patched, res.bytes);
  const got = await outputsOf(patched, evalX);
  const gap = relativeGap(got, res.evalOutputs as Float32Array);
  assert.ok(gap <= 1e-5, `patched folder vs trainer: ${gap}`);
  t.diagnostic(`${res.bytes.length} of ${budgetBytes} bytes; eval agreement with the teacher ${before.agreement} -> ${after.agreement}, mean |Δ| ${before.meanAbsDiff.toPrecision(3)} -> ${after.meanAbsDiff.toPrecision(3)}; patched folder vs trainer ${gap}`);
  // The trained model object holds the same weights (plain tensors again).
  const live = tf.tidy(() => (model.execute(tf.tensor(evalX, [EVAL, SIDE, SIDE, 1])) as tf.Tensor).dataSync() as Float32Array);
  assert.ok(relativeGap(live, got) <= 1e-5);

  // Quantized weights stayed on their grids: same grids, same bytes as stored.
  const after2 = await openTfjsModelDir(patched);
  for (const t of store.list().filter((e) => e.patchable !== false)) assert.deepEqual(after2.grid(t.name), store.grid(t.name), t.name);
  assert.equal(storedModelBytes(after2), storedModelBytes(store));
  assert.ok(res.trainable.trained.includes('dense/kernel') && res.trainable.trained.includes('conv/kernel'));
  model.dispose();
  teacher.dispose();
});

test('topk-retrain from a graph-model teacher takes its mask from (teacher − base) under the folder\'s names', once, async () => {
  const baseDir = await graphFolder(v1, { quantize: 'uint8' });
  const store = await openTfjsModelDir(baseDir);
  const model = await tf.loadGraphModel(fileSystemIO(baseDir));
  const teacher = await tf.loadGraphModel(fileSystemIO(await graphFolder(v2)));
  const lines: string[] = [];
  const res = await trainTfjsGraphDiff(model, store, dataset(trainX), {
    method: 'topk-retrain', budgetBytes: Math.round(0.2 * storedModelBytes(store)), epochs: 2, tune: 'off', seed: 1, teacher, eval: dataset(evalX), onProgress: (l) => lines.push(l),
  });
  assert.ok(lines.some((l) => /the teacher's weights are the full fine-tune/.test(l)), lines.join('\n'));
  const { before, after } = res.teacherEval as NonNullable<typeof res.teacherEval>;
  assert.ok(after.meanAbsDiff < before.meanAbsDiff, `${before.meanAbsDiff} -> ${after.meanAbsDiff}`);
  model.dispose();
  teacher.dispose();
});

test('ndiff train --base <float16 graph-model folder> --teacher <layers-model folder>, no labels: the updated folder keeps float16 and equals the trainer; interface mismatches are usage errors', once, async (t) => {
  const { main } = await import('../cli/ndiff.ts');
  const run = async (...argv: string[]) => {
    const lines: string[] = [];
    const code = await main(argv, { out: (l) => lines.push(l), err: (l) => lines.push(l), progress: (l) => lines.push(l) });
    return { code, text: lines.join('\n') };
  };
  const baseDir = await graphFolder(v1, { quantize: 'float16' });
  const layersTeacher = path.join(root, 'layers-v2');
  const keras = layersCnn(v2);
  await keras.save(fileSystemIO(layersTeacher));
  saveNpy(path.join(root, 'train', 'x.npy'), trainX, [TRAIN, SIDE, SIDE, 1]);
  saveNpy(path.join(root, 'eval', 'x.npy'), evalX, [EVAL, SIDE, SIDE, 1]);
  const out = path.join(root, 'f16.ndiff');
  const modelOut = path.join(root, 'f16-patched');
  const metricsOut = path.join(root, 'f16.json');
  const r = await run('train', '--base', baseDir, '--teacher', layersTeacher, '--train', path.join(root, 'train'), '--eval', path.join(root, 'eval'),
    '--model-id', 'cnn', '--budget', '20%', '--epochs', '3', '--tune', 'off', '--out', out, '--model-out', modelOut, '--metrics-out', metricsOut);
  assert.equal(r.code, 0, r.text);
  const metrics = JSON.parse(readFileSync(metricsOut, 'utf8'));
  assert.equal(metrics.format, 'tfjs-graph');
  // No --method: lowbit, the default toward a teacher (a layers-model teacher names its weights as the graph does), said in the metrics.
  assert.equal(metrics.method, 'lowbit');
  assert.equal(metrics.methodDefault?.method, 'lowbit');
  assert.ok(metrics.teacherEval.after.meanAbsDiff < metrics.teacherEval.before.meanAbsDiff, r.text);
  // The folder --model-out wrote (the base patched by the applier) is what the trainer measured.
  const got = await outputsOf(modelOut, evalX);
  const want = tf.tidy(() => (keras.predict(tf.tensor(evalX, [EVAL, SIDE, SIDE, 1])) as tf.Tensor).dataSync() as Float32Array);
  let mad = 0;
  for (let i = 0; i < got.length; i++) mad += Math.abs(got[i] - want[i]);
  assert.ok(Math.abs(mad / got.length - metrics.teacherEval.after.meanAbsDiff) <= 1e-6, `${mad / got.length} vs ${metrics.teacherEval.after.meanAbsDiff}`);
  t.diagnostic(`${metrics.bytes} bytes; eval agreement ${metrics.teacherEval.before.agreement} -> ${metrics.teacherEval.after.agreement}, mean |Δ| ${metrics.teacherEval.before.meanAbsDiff.toPrecision(3)} -> ${metrics.teacherEval.after.meanAbsDiff.toPrecision(3)} (patched folder: ${(mad / got.length).toPrecision(6)})`);
  const manifest = JSON.parse(readFileSync(path.join(modelOut, 'model.json'), 'utf8')).weightsManifest.flatMap((g: { weights: unknown[] }) => g.weights) as { name: string; dtype: string; quantization?: { dtype: string } }[];
  for (const e of manifest.filter((w) => w.dtype === 'float32')) assert.equal(e.quantization?.dtype, 'float16', e.name);

  // A teacher whose input or output differs from the base's is a usage error, before training.
  const narrow = await graphFolder(v2, { inputSide: 10 });
  const fewer = await graphFolder(v2, { classes: 7 });
  for (const [teacher, what] of [[narrow, /input x is \[\?, 10, 10, 1\], the base's \[\?, 12, 12, 1\]/], [fewer, /7 value\(s\) per example.*10/]] as const) {
    const bad = await run('train', '--base', baseDir, '--teacher', teacher, '--train', path.join(root, 'train'), '--model-id', 'cnn', '--budget', '20%', '--epochs', '1', '--tune', 'off', '--out', path.join(root, 'bad.ndiff'));
    assert.equal(bad.code, 2, bad.text);
    assert.match(bad.text, what);
  }
  keras.dispose();
});

test('a graph tfjs cannot differentiate is refused before training, naming the operator and the node', once, async () => {
  const labels = Int32Array.from({ length: TRAIN }, (_, i) => i % CLASSES);
  const cases: [ExtraOp, RegExp, Record<string, unknown>][] = [
    ['topk', /node "top\/TopKV2" \(operator TopKV2\) runs the tfjs kernel TopK, which has no gradient/, { op: 'TopKV2', node: 'top/TopKV2', kernel: 'TopK' }],
    ['where', /operator Where \(node "mask\/Where"\).*output shape depends on the data/, { op: 'Where', node: 'mask/Where' }],
    ['unknown', /operator MySpecialOp \(node "special\/Op"\).*tfjs does not implement/, { op: 'MySpecialOp', node: 'special/Op' }],
  ];
  for (const [extra, message, details] of cases) {
    const dir = await graphFolder(v1, { extra });
    const model = await tf.loadGraphModel(fileSystemIO(dir));
    let epochs = 0;
    await assert.rejects(
      trainTfjsGraphDiff(model, await openTfjsModelDir(dir), { ...dataset(trainX), labels }, { method: 'sparse', budgetBytes: 4000, epochs: 1, tune: 'off', onEpoch: () => epochs++ }),
      (e: unknown) => {
        assert.ok(e instanceof UnsupportedOperatorError, String(e));
        assert.equal(e.code, 'ND_UNSUPPORTED_OPERATOR');
        assert.match(e.message, message);
        for (const [k, v] of Object.entries(details)) assert.equal(e.details[k], v, k);
        return true;
      },
    );
    assert.equal(epochs, 0);
    // The model is left usable, with its own weights (plain tensors again).
    assert.equal(Object.values(model.weights).flat().filter((t) => t instanceof tf.Variable).length, 0);
    model.dispose();
  }
});

test('a graph exported for one example at a time (input [1, ...], as MoveNet) runs a batch example by example, with gradients, and trains', once, async () => {
  const dir = await graphFolder(v1, { batchOfOne: true });
  const free = await tf.loadGraphModel(fileSystemIO(await graphFolder(v1)));
  const one = await tf.loadGraphModel(fileSystemIO(dir));
  const store = await openTfjsModelDir(dir);
  const program = new TfjsGraphProgram(one, store, { source: 'one' });
  try {
    assert.equal(program.oneExampleAtATime, true);
    const x = tf.tensor(evalX.subarray(0, 5 * SIDE * SIDE), [5, SIDE, SIDE, 1]);
    const got = tf.tidy(() => program.run({ x }).Identity.dataSync() as Float32Array);
    const want = tf.tidy(() => (free.execute(x) as tf.Tensor).dataSync() as Float32Array);
    assert.equal(got.length, 5 * CLASSES);
    assert.ok(relativeGap(got, want) <= 1e-6, `${relativeGap(got, want)}`);
    const { grads } = tf.variableGrads(() => tf.sum(tf.mul(program.run({ x }).Identity, tf.range(0, CLASSES))) as tf.Scalar, program.variables.map((v) => v.variable));
    assert.equal(Object.keys(grads).length, 4);
    for (const g of Object.values(grads)) g.dispose();
    x.dispose();
  } finally {
    program.dispose();
  }
  const teacher = await tf.loadGraphModel(fileSystemIO(await graphFolder(v2)));
  const res = await trainTfjsGraphDiff(one, store, dataset(trainX.subarray(0, 64 * SIDE * SIDE)), { method: 'sparse', sparseStart: 'zero', budgetBytes: 6000, epochs: 1, tune: 'off', teacher, allowWorse: true, batchSize: 16 });
  assert.ok(res.bytes.length > 0 && res.epochs.length === 1, 'one run of one epoch (a zero start: sparseStart auto would train two)');
  for (const m of [free, one, teacher]) m.dispose();
});

test('a graph model (v2 converted from a SavedModel) teaches a layers-model base', once, async (t) => {
  const teacherDir = await graphFolder(v2, { quantize: 'uint8' });
  const graph = await tf.loadGraphModel(fileSystemIO(teacherDir));
  const teacher = new GraphModelTeacher(graph, [SIDE, SIDE, 1], 'v2');
  const base = layersCnn(v1);
  const x = tf.tensor(trainX, [TRAIN, SIDE, SIDE, 1]);
  try {
    const res = await trainDiff(base, { x }, { method: 'sparse', budgetBytes: 6000, epochs: 3, tune: 'off', seed: 2, teacher: teacher.asLayersModel(), threads: 1 });
    const v = res.teacher?.validation as NonNullable<NonNullable<typeof res.teacher>['validation']>;
    assert.ok(v.meanAbsDiff < v.baseMeanAbsDiff, `validation mean |Δ| ${v.baseMeanAbsDiff} -> ${v.meanAbsDiff}`);
    assert.equal(res.teacher?.metric, 'top1');
    t.diagnostic(`validation agreement ${v.baseAgreement} -> ${v.agreement}, mean |Δ| ${v.baseMeanAbsDiff.toPrecision(3)} -> ${v.meanAbsDiff.toPrecision(3)}`);
    // A graph teacher with another input is refused as trainDiff refuses any teacher of another interface.
    const narrow = await tf.loadGraphModel(fileSystemIO(await graphFolder(v2, { inputSide: 10 })));
    const wrong = new GraphModelTeacher(narrow, [10, 10, 1], 'narrow');
    await assert.rejects(trainDiff(base, { x }, { method: 'sparse', budgetBytes: 6000, epochs: 1, tune: 'off', teacher: wrong.asLayersModel(), threads: 1 }), (e: unknown) => e instanceof UsageError && /input 0 is \[10, 10, 1\] per example, the base's \[12, 12, 1\]/.test(e.message));
    wrong.dispose();
    narrow.dispose();
  } finally {
    x.dispose();
    teacher.dispose();
    graph.dispose();
    base.dispose();
  }
});

test('GatherNd, which tfjs has no gradient for (MoveNet reads its keypoints with it), gets one: dy summed back where it was gathered, duplicates included, equal to central differences', once, () => {
  registerGradientFixes();
  const r = seeded(9);
  const params = tf.tensor(Float32Array.from({ length: 24 }, () => r()), [4, 3, 2]);
  const indices = tf.tensor2d([[1, 2], [1, 2], [3, 0], [0, 1]], [4, 2], 'int32');
  const w = tf.tensor(Float32Array.from({ length: 8 }, () => r()), [4, 2]);
  const f = (p: tf.Tensor) => tf.sum(tf.mul(tf.gatherND(p, indices), w)) as tf.Scalar;
  const grad = tf.tidy(() => tf.grad(f)(params).dataSync() as Float32Array);
  const base = params.dataSync() as Float32Array;
  const eps = 1e-2;
  for (let i = 0; i < base.length; i++) {
    const at = (d: number) => tf.tidy(() => f(tf.tensor(Float32Array.from(base, (v, k) => (k === i ? v + d : v)), [4, 3, 2])).dataSync()[0]);
    const numeric = (at(eps) - at(-eps)) / (2 * eps);
    assert.ok(Math.abs(numeric - grad[i]) <= 1e-4, `params[${i}]: ${grad[i]} vs ${numeric}`);
  }
  // Position [1, 2] was gathered twice: its gradient is the sum of both rows of w.
  const wv = w.dataSync();
  assert.ok(Math.abs(grad[(1 * 3 + 2) * 2] - (wv[0] + wv[2])) <= 1e-6);
  for (const t of [params, indices, w]) t.dispose();
});

test('SquaredDifference under broadcasting (MoveNet measures keypoints against a grid so) gets a gradient of each input\'s own shape, equal to central differences; tfjs\' own fails there', once, () => {
  const r = seeded(10);
  const a = tf.tensor(Float32Array.from({ length: 6 }, () => r()), [2, 3, 1]);
  const b = tf.tensor(Float32Array.from({ length: 12 }, () => r()), [2, 3, 2]);
  const w = tf.tensor(Float32Array.from({ length: 12 }, () => r()), [2, 3, 2]);
  const f = (x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.squaredDifference(x, y), w)) as tf.Scalar;
  registerGradientFixes();
  const [ga, gb] = tf.grads(f)([a, b]);
  assert.deepEqual(ga.shape, [2, 3, 1]);
  assert.deepEqual(gb.shape, [2, 3, 2]);
  const eps = 1e-2;
  for (const [which, t, g] of [[0, a, ga], [1, b, gb]] as const) {
    const base = t.dataSync() as Float32Array;
    const grad = g.dataSync() as Float32Array;
    for (let i = 0; i < base.length; i++) {
      const at = (d: number) => tf.tidy(() => {
        const moved = tf.tensor(Float32Array.from(base, (v, k) => (k === i ? v + d : v)), t.shape);
        return f(which === 0 ? moved : a, which === 1 ? moved : b).dataSync()[0];
      });
      const numeric = (at(eps) - at(-eps)) / (2 * eps);
      assert.ok(Math.abs(numeric - grad[i]) <= 2e-3, `input ${which}[${i}]: ${grad[i]} vs ${numeric}`);
    }
  }
  for (const t of [a, b, w, ga, gb]) t.dispose();
});

