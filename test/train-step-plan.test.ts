/**
 * Compiled training steps (src/train/compiled/): a step captured once per phase and replayed on
 * the backend's kernels reaches the eager step's losses and payload, for a TF.js layers model and
 * an ONNX program, on the sparse, hash and lowbit methods; what a plan cannot hold (a value read
 * into JavaScript mid-step, a value that changes between steps, a replay that drifts from the
 * eager step) runs eagerly and is reported; the same seed and path give the same payload bytes.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/train/backend.ts';
import { trainDiff, type TrainDiffResult } from '../src/train/train-diff.ts';
import { modelToStore, setModelWeights } from '../src/train/model-weights.ts';
import { trainLoop } from '../src/train/loop.ts';
import type { Parameterization } from '../src/method/contract.ts';
import { outputDifference } from '../src/train/compiled/step.ts';
import { FusedAdam } from '../src/train/kernels/adam.ts';
import type { MemoryWeightStore } from '../src/core/weight-store.ts';
import { trainOnnxDiff } from '../src/train/onnx/train-onnx.ts';
import { cnn, images } from './helpers/onnx-models.ts';
import { keywordModel } from '../examples/keyword-spotting/model.ts';
import { join } from 'node:path';
import { mkdir, readFile } from 'node:fs/promises';
import { saveNpy } from '../src/io/npy/files.ts';
import { fileSystemIO } from '../src/io/tfjs/index.ts';
import { main } from '../cli/ndiff.ts';
import { tempDir } from './helpers/dirs.ts';

before(async () => {
  await initBackend('wasm');
});

/** A two-layer classifier of 8 features into 3 classes, seeded. */
function tinyModel(): tf.LayersModel {
  const m = tf.sequential();
  m.add(tf.layers.dense({ inputShape: [8], units: 16, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }));
  m.add(tf.layers.dense({ units: 3, kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }));
  return m;
}

/** 200 examples whose class is a thresholded linear function of the features. */
function tinyData(): { x: Float32Array; y: Int32Array; n: number } {
  let s = 7;
  const r = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const n = 200;
  const x = new Float32Array(n * 8);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let a = 0;
    for (let j = 0; j < 8; j++) a += (x[i * 8 + j] = r() * 2 - 1) * ((j % 3) - 1);
    y[i] = a > 0.3 ? 2 : a < -0.3 ? 0 : 1;
  }
  return { x, y, n };
}

function losses(r: TrainDiffResult): number[] {
  return r.epochs.map((e) => e.loss);
}

function assertClose(a: number[], b: number[], what: string): void {
  assert.equal(a.length, b.length, `${what}: as many epochs`);
  a.forEach((v, i) => assert.ok(Math.abs(v - b[i]) <= 1e-4 * Math.max(1, Math.abs(b[i])), `${what}: epoch ${i + 1} loss ${v} (compiled) vs ${b[i]} (eager)`));
}

test('a layers model: compiled and eager steps reach the same losses and payload on sparse, hash and lowbit; the path is reported; same seed and path, same bytes', async () => {
  const model = tinyModel();
  const base = modelToStore(model) as MemoryWeightStore;
  const d = tinyData();
  const run = async (method: 'sparse' | 'hash' | 'lowbit', step: 'eager' | 'compiled', said: string[]) => {
    setModelWeights(model, (n) => base.values(n));
    const x = tf.tensor2d(d.x, [d.n, 8]);
    try {
      return await trainDiff(model, { x, y: d.y }, { method, budgetBytes: 700, epochs: 3, seed: 1, tune: 'off', batchSize: 16, step, base, distill: 0, threads: 1, onProgress: (m) => said.push(m) });
    } finally {
      x.dispose();
    }
  };
  for (const method of ['sparse', 'hash', 'lowbit'] as const) {
    const saidEager: string[] = [];
    const saidCompiled: string[] = [];
    const eager = await run(method, 'eager', saidEager);
    const compiled = await run(method, 'compiled', saidCompiled);
    assertClose(losses(compiled), losses(eager), method);
    assert.ok(saidEager.includes('step: eager (as asked)'), `${method}: the eager path is reported`);
    const plan = saidCompiled.find((m) => /compiled plan \(\d+ kernels/.test(m));
    assert.ok(plan, `${method}: a compiled plan is reported (${saidCompiled.filter((m) => m.startsWith('step')).join(' | ')})`);
    assert.ok(!saidCompiled.some((m) => m.startsWith('step') && m.includes('eager (')), `${method}: no phase fell back (${saidCompiled.filter((m) => m.startsWith('step')).join(' | ')})`);
    if (method === 'sparse') {
      // The hard-mask phase puts the mask's own kernels in the plan too.
      assert.ok(saidCompiled.some((m) => m.startsWith('step: compiled plan')), 'the sparse hard phase is captured whole');
      const again = await run(method, 'compiled', []);
      assert.deepEqual(Buffer.from(again.bytes), Buffer.from(compiled.bytes), 'same seed, compiled path: same payload bytes');
    }
  }
});

test('the keyword-spotting CNN (tensors the engine keeps for the backward pass read as the originals): compiled, the same losses and payload as eager', async () => {
  const model = keywordModel(4);
  const base = modelToStore(model) as MemoryWeightStore;
  let s = 11;
  const n = 24;
  const x = Float32Array.from({ length: n * 49 * 40 }, () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1);
  const y = Int32Array.from({ length: n }, (_, i) => i % 4);
  const run = async (step: 'eager' | 'compiled', said: string[]) => {
    setModelWeights(model, (name) => base.values(name));
    const xs = tf.tensor4d(x, [n, 49, 40, 1]);
    try {
      return await trainDiff(model, { x: xs, y }, { method: 'full', budgetBytes: 0, epochs: 1, seed: 1, tune: 'off', validation: 0, batchSize: 6, step, base, distill: 0, threads: 1, onProgress: (m) => said.push(m) });
    } finally {
      xs.dispose();
    }
  };
  const said: string[] = [];
  const eager = await run('eager', []);
  const compiled = await run('compiled', said);
  assertClose(losses(compiled), losses(eager), 'keyword full');
  assert.ok(said.some((m) => /^step: compiled plan \(\d+ kernels/.test(m)), said.filter((m) => m.startsWith('step')).join(' | '));
  assert.deepEqual(Buffer.from(compiled.bytes), Buffer.from(eager.bytes));
});

test('an ONNX program: compiled and eager steps reach the same losses and the same payload (sparse)', async () => {
  const v1 = cnn();
  const train = images(96, 1);
  const labels = Int32Array.from({ length: 96 }, (_, i) => i % 3);
  const said: string[] = [];
  const common = { method: 'sparse' as const, budgetBytes: 400, epochs: 2, tune: 'off' as const, seed: 3, batchSize: 16, learningRate: 3e-2, allowWorse: true, threads: 1, header: { modelId: 'cnn', sequence: 1 } };
  const eager = await trainOnnxDiff(v1, { ...train, labels }, { ...common, step: 'eager' });
  const compiled = await trainOnnxDiff(v1, { ...train, labels }, { ...common, step: 'compiled', onProgress: (m) => said.push(m) });
  assertClose(losses(compiled), losses(eager), 'onnx sparse');
  assert.ok(said.some((m) => /compiled plan \(\d+ kernels/.test(m)), `the ONNX program's step is compiled (${said.filter((m) => m.startsWith('step')).join(' | ')})`);
  assert.deepEqual(Buffer.from(compiled.bytes), Buffer.from(eager.bytes), 'the replayed kernels compute what the eager ones do');
});

/** A parameterization of the tiny model's first kernel: W = W0 + D, with a hook in the effective weights. */
class Probe implements Parameterization {
  readonly names: string[];
  readonly d: tf.Variable;
  steps = 0;
  constructor(private readonly w0: tf.Tensor, name: string, private readonly extra: (p: Probe) => tf.Tensor | number, private readonly key: string) {
    this.names = [name];
    this.d = tf.variable(tf.zerosLike(w0), true, `probe_d_${key}`);
  }
  effective(): tf.Tensor {
    return tf.add(this.w0, tf.mul(this.d, this.extra(this)));
  }
  gradients(_name: string, dW: tf.Tensor): tf.NamedTensorMap {
    return { [this.d.name]: dW };
  }
  afterStep(): void {
    this.steps++;
  }
  planKey(): string {
    return this.key;
  }
}

test('what a plan cannot hold runs eagerly and says why, and training goes on as eager training does', () => {
  const d = tinyData();
  const run = (extra: (p: Probe) => tf.Tensor | number, key: string, step: 'eager' | 'compiled') => {
    const model = tinyModel();
    const kernel = model.layers[0].getWeights()[0];
    const name = model.layers[0].weights[0].originalName ?? model.layers[0].weights[0].name;
    const p = new Probe(kernel.clone(), name, extra, key);
    const said: string[] = [];
    const opt = tf.train.sgd(0.1);
    const x = tf.tensor2d(d.x, [d.n, 8]);
    try {
      const reports = trainLoop(model, { x, y: d.y }, p, { epochs: 1, batchSize: 20, seed: 2, fromLogits: true, optimizerFor: () => opt, step, onStepPath: (m) => said.push(m) });
      return { loss: reports[0].loss, said, d: Array.from(p.d.dataSync()) };
    } finally {
      x.dispose();
      p.d.dispose();
      opt.dispose();
    }
  };
  // A value read into JavaScript inside the step: the method's part runs eagerly, the model's is still compiled.
  const reads = (p: Probe) => (p.d.dataSync()[0] === 12345 ? 2 : 1);
  const a = run(reads, 'reads', 'compiled');
  assert.ok(a.said.some((m) => m.startsWith('step: eager (the step reads a tensor\'s values into JavaScript (dataSync)')), a.said.join(' | '));
  assert.ok(a.said.some((m) => m.startsWith('step (the method\'s part eager): compiled plan')), a.said.join(' | '));
  const ae = run(reads, 'reads', 'eager');
  assert.ok(Math.abs(a.loss - ae.loss) <= 1e-5 * Math.abs(ae.loss), `${a.loss} vs ${ae.loss}`);
  // A value the step makes in JavaScript anew at every step (a step-dependent scale).
  const b = run((p) => 1 + 0.01 * p.steps, 'changes', 'compiled');
  assert.ok(b.said.some((m) => /step: eager \(a \[\] float32 value made in JavaScript changes between steps/.test(m)), b.said.join(' | '));
  const be = run((p) => 1 + 0.01 * p.steps, 'changes', 'eager');
  assert.deepEqual(b.d, be.d, 'the fallback trains exactly as the eager path');
  // A value that is the same in the two recorded steps and changes after: the first replay is
  // checked against an eager step and the plan is dropped.
  const c = run((p) => (p.steps < 2 ? 1 : 3), 'late', 'compiled');
  assert.ok(c.said.some((m) => /step: eager \(the replayed step differs from the eager step in /.test(m)), c.said.join(' | '));
  const ce = run((p) => (p.steps < 2 ? 1 : 3), 'late', 'eager');
  assert.deepEqual(c.d, ce.d, 'a plan found wrong leaves the eager step\'s results');
});

test('the fused Adam runs inside the plan (the step message counts its kernels), and replayed steps leave the weights of eager steps', () => {
  const d = tinyData();
  const run = (step: 'eager' | 'compiled') => {
    const model = tinyModel();
    const kernel = model.layers[0].getWeights()[0];
    const name = model.layers[0].weights[0].originalName ?? model.layers[0].weights[0].name;
    const p = new Probe(kernel.clone(), name, () => 1, `adam-${step}`);
    const said: string[] = [];
    const opt = new FusedAdam(0.01);
    const x = tf.tensor2d(d.x, [d.n, 8]);
    try {
      // 10 steps an epoch: two recorded, one checked, the rest replayed.
      const reports = trainLoop(model, { x, y: d.y }, p, { epochs: 3, batchSize: 20, seed: 2, fromLogits: true, optimizerFor: () => opt, step, onStepPath: (m) => said.push(m) });
      return { losses: reports.map((r) => r.loss), said, d: Float32Array.from(p.d.dataSync()) };
    } finally {
      x.dispose();
      p.d.dispose();
      opt.dispose();
      model.dispose();
    }
  };
  const compiled = run('compiled');
  const eager = run('eager');
  assert.ok(compiled.said.some((m) => /^step: compiled plan \(\d+ kernels, 1 of them the optimizer's/.test(m)), compiled.said.join(' | '));
  assert.ok(!compiled.said.some((m) => m.includes('eager')), compiled.said.join(' | '));
  assertClose(compiled.losses, eager.losses, 'fused Adam in the plan');
  let scale = 0;
  let worst = 0;
  eager.d.forEach((v, i) => {
    scale = Math.max(scale, Math.abs(v));
    worst = Math.max(worst, Math.abs(v - compiled.d[i]));
  });
  assert.ok(scale > 0, 'the weights moved');
  assert.ok(worst <= 1e-4 * scale, `after 30 steps the replayed weights differ from the eager ones by ${worst} (scale ${scale})`);
});

test('ndiff train says which path the steps took, and --step eager and compiled write the same payload here', async () => {
  const dir = await tempDir();
  const model = tinyModel();
  await model.save(fileSystemIO(join(dir, 'v1')));
  const d = tinyData();
  await mkdir(join(dir, 'train'));
  saveNpy(join(dir, 'train', 'x.npy'), d.x, [d.n, 8]);
  saveNpy(join(dir, 'train', 'y.npy'), d.y, [d.n]);
  const run = async (step: string) => {
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l), progress: (l: string) => lines.push(l) };
    const code = await main(['train', '--model-id', 'tiny', '--method', 'sparse', '--base', join(dir, 'v1'), '--train', join(dir, 'train'), '--budget', '700', '--epochs', '2', '--tune', 'off', '--threads', '1', '--batch-size', '16', '--distill', '0', '--allow-worse', '--step', step, '--out', join(dir, `${step}.ndiff`)], io);
    assert.equal(code, 0, lines.join('\n'));
    return { lines, bytes: await readFile(join(dir, `${step}.ndiff`)) };
  };
  const compiled = await run('compiled');
  assert.ok(compiled.lines.some((l) => /^step: compiled plan \(\d+ kernels(, \d+ of them the optimizer's)?(, \d+ folded)?, [\d.]+ MB\)$/.test(l)), compiled.lines.join('\n'));
  const eager = await run('eager');
  assert.ok(eager.lines.includes('step: eager (as asked)'), eager.lines.join('\n'));
  assert.deepEqual(compiled.bytes, eager.bytes);
  const bad: string[] = [];
  const code = await main(['train', '--model-id', 'tiny', '--base', join(dir, 'v1'), '--train', join(dir, 'train'), '--step', 'fast', '--out', join(dir, 'x.ndiff')], { out: (l: string) => bad.push(l), err: (l: string) => bad.push(l), progress: () => {} });
  assert.notEqual(code, 0);
  assert.ok(bad.some((l) => /step/.test(l) && /compiled/.test(l)), bad.join('\n'));
});

test('the check of a first replay: differences relative to the eager output\'s scale; a NaN on one side only or another shape never passes', () => {
  const t = (v: number[], shape = [v.length]) => tf.tensor(v, shape);
  assert.equal(outputDifference(t([1, -2, 4]), t([1, -2, 4])), 0);
  assert.ok(Math.abs(outputDifference(t([1, -2, 4]), t([1, -2, 4.004])) - 1e-3) < 1e-6);
  assert.equal(outputDifference(t([1, NaN]), t([1, NaN])), 0, 'NaN on both sides agrees');
  assert.equal(outputDifference(t([1, 2]), t([1, NaN])), Infinity);
  assert.equal(outputDifference(t([1, 2]), t([1, 2], [2, 1])), Infinity);
  assert.equal(outputDifference(t([0, 0]), t([0, 0])), 0);
  assert.ok(outputDifference(t([0, 0]), t([0, 1e-3])) > 1e-4, 'an all-zero gradient against a non-zero one fails the check');
});
