/**
 * Compiled training steps (src/engine/compiled/): a step captured once per phase and replayed on
 * the backend's kernels reaches the eager step's losses and payload, for a TF.js layers model and
 * an ONNX program, on the sparse, hash and lowbit methods; what a plan cannot hold (a value read
 * into JavaScript mid-step, a value that changes between steps, a replay that drifts from the
 * eager step) runs eagerly and is reported; the same seed and path give the same payload bytes.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { trainDiff, type TrainDiffResult } from '../src/train/train-diff.ts';
import { modelToStore, setModelWeights } from '../src/engine/model-weights.ts';
import { trainLoop } from '../src/train/loop.ts';
import type { Parameterization } from '../src/method/contract.ts';
import { CompiledSteps, outputDifference, type StepOutputs } from '../src/engine/compiled/step.ts';
import { record } from '../src/engine/compiled/record.ts';
import { OnnxProgram } from '../src/engine/onnx/executor.ts';
import { FusedAdam } from '../src/engine/kernels/adam.ts';
import { FUSED_ELEMENTWISE, planSwitch } from '../src/engine/compiled/fuse.ts';
import type { MemoryWeightStore } from '../src/core/weight-store.ts';
import { trainOnnxDiff } from '../src/train/onnx/train-onnx.ts';
import { attention, cnn, images, tokenSequences } from './helpers/onnx-models.ts';
import { KEYWORD_EXAMPLES, keywordEagerAndCompiled } from './helpers/keyword-steps.ts';
import { join } from 'node:path';
import { mkdir, readFile } from 'node:fs/promises';
import { saveNpy } from '../src/io/npy/files.ts';
import { fileSystemIO } from '../src/io/tfjs/index.ts';
import { main } from '../cli/ndiff.ts';
import { tempDir } from './helpers/dirs.ts';
import { runSteps } from './helpers/compiled-steps.ts';

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
    if (method === 'sparse') assert.ok(saidCompiled.some((m) => /element-wise chains of \d+ kernels fused/.test(m)), `sparse: the mask's element-wise chains are fused (${saidCompiled.filter((m) => m.startsWith('step')).join(' | ')})`);
    if (method === 'sparse') {
      // The hard-mask phase puts the mask's own kernels in the plan too.
      assert.ok(saidCompiled.some((m) => m.startsWith('step: compiled plan')), 'the sparse hard phase is captured whole');
      const again = await run(method, 'compiled', []);
      assert.deepEqual(Buffer.from(again.bytes), Buffer.from(compiled.bytes), 'same seed, compiled path: same payload bytes');
    }
  }
});

test('the keyword-spotting CNN (tensors the engine keeps for the backward pass read as the originals): compiled, the same losses and payload as eager', async () => {
  let s = 11;
  const x = Float32Array.from({ length: KEYWORD_EXAMPLES * 49 * 40 }, () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1);
  const { eager, compiled, said } = await keywordEagerAndCompiled(x);
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

test('an ONNX program that makes its shapes from its activations (Shape, Gather, Unsqueeze, Concat, Reshape): compiled, the same losses and payload as eager', async () => {
  const { data, labels } = tokenSequences(96, 2);
  const said: string[] = [];
  const common = { method: 'full' as const, budgetBytes: 0, epochs: 2, tune: 'off' as const, seed: 4, batchSize: 16, learningRate: 1e-2, validation: 0, allowWorse: true, threads: 1, header: { modelId: 'attention', sequence: 1 } };
  const eager = await trainOnnxDiff(attention(), { ...data, labels }, { ...common, step: 'eager' });
  const compiled = await trainOnnxDiff(attention(), { ...data, labels }, { ...common, step: 'compiled', onProgress: (m) => said.push(m) });
  const steps = said.filter((m) => m.startsWith('step')).join(' | ');
  assert.ok(said.some((m) => /^step: compiled plan \(\d+ kernels.*, \d+ folded, \d+ reshapes read in place/.test(m)), `the step is compiled, its shape arithmetic folded (${steps})`);
  assert.ok(!said.some((m) => m.startsWith('step') && m.includes('eager (')), `no phase fell back (${steps})`);
  assertClose(losses(compiled), losses(eager), 'attention full');
  assert.deepEqual(Buffer.from(compiled.bytes), Buffer.from(eager.bytes));
});

test('the attention program\'s plan: shape arithmetic computed once, reshapes not run, fewer kernels than the eager step, and its replays leave the weights eager steps leave', () => {
  const { data } = tokenSequences(16, 3);
  const target = tf.tidy(() => tf.softmax(tf.tensor2d(Float32Array.from({ length: 48 }, (_, i) => Math.sin(i)), [16, 3])));
  const run = (mode: 'eager' | 'compiled') => {
    const program = new OnnxProgram(attention(), { source: 'attention.onnx' });
    const vars = program.variables.map((v) => v.variable);
    // Plain SGD: the fused Adam's scalars are a Concat of their own.
    const opt = tf.train.sgd(0.1);
    const tokens = tf.tensor2d(data.inputs.tokens.values as Int32Array, [16, 6], 'int32');
    const step = (feeds: Record<string, tf.Tensor>): StepOutputs => {
      const { value, grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(target, Object.values(program.run({ tokens: feeds.tokens }))[0]) as tf.Scalar, vars);
      opt.applyGradients(grads as never);
      return [['loss', value]];
    };
    const said: string[] = [];
    const compiled = new CompiledSteps((m) => said.push(m));
    try {
      const eagerKernels = record(() => tf.tidy(() => step({ tokens })), { tokens }).events.filter((e) => e.kind === 'kernel').length;
      for (let i = 0; i < 8; i++) tf.tidy(() => (mode === 'eager' ? step({ tokens }) : compiled.run('attention', { tokens }, step)).forEach(([, t]) => t.dataSync()));
      const plan = compiled.plans()[0];
      return { said, eagerKernels, names: plan?.kernelNames(), folded: plan?.folded, weights: vars.map((v) => Float32Array.from(v.dataSync())) };
    } finally {
      compiled.dispose();
      tokens.dispose();
      opt.dispose();
      program.dispose();
    }
  };
  const compiled = run('compiled');
  const eager = run('eager');
  assert.ok(compiled.names, `a plan was built (${compiled.said.join(' | ')})`);
  const names = compiled.names as string[];
  const count = (n: string) => names.filter((x) => x === n).length;
  assert.equal(count('GatherV2'), 1, 'only the embedding\'s Gather runs: the Gathers of the shape were folded');
  assert.equal(count('Concat'), 0, `the shapes' Concat was folded (${names.join(' ')})`);
  assert.equal(count('Reshape') + count('Identity'), 0, `reshapes and identities are read in place (${names.join(' ')})`);
  assert.ok((compiled.folded ?? 0) >= 6, `the shape arithmetic of both reshapes folded (${compiled.folded})`);
  assert.ok(names.length < compiled.eagerKernels / 2, `the plan runs ${names.length} kernels, the eager step ${compiled.eagerKernels}`);
  compiled.weights.forEach((w, i) => {
    const worst = w.reduce((m, v, j) => Math.max(m, Math.abs(v - eager.weights[i][j])), 0);
    const scale = eager.weights[i].reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    assert.ok(worst <= 1e-4 * scale, `weight ${i}: after 8 steps the replayed weights differ from the eager ones by ${worst} (scale ${scale})`);
  });
  target.dispose();
});

test('a step may read its constants into JavaScript, never a weight, a feed or a view of either', () => {
  const w = tf.variable(tf.tensor2d([1, 2, 3, 4], [2, 2]), true, 'reads_w');
  const before = tf.tensor1d([2, 2], 'int32');
  const x = tf.tensor2d([1, 0, 0, 1], [2, 2]);
  const readsOf = (read: (w: tf.Tensor, x: tf.Tensor) => number[]) => record(() => tf.tidy(() => {
    const shape = read(w, x);
    return [['y', tf.reshape(tf.matMul(x, w), shape)]] as StepOutputs;
  }), { x }).refusal;
  try {
    assert.equal(readsOf(() => Array.from(tf.add(before, tf.tensor1d([0, 0], 'int32')).dataSync())), undefined, 'a value computed from constants');
    assert.equal(readsOf(() => Array.from(tf.reshape(before, [2]).dataSync())), undefined, 'a reshape of a tensor made before the step');
    assert.match(readsOf((v) => [Math.round(v.dataSync()[0]) + 1, 2]) ?? '', /reads a tensor's values into JavaScript/, 'a weight');
    assert.match(readsOf((v) => [tf.reshape(v, [4]).dataSync()[0] + 1, 2]) ?? '', /reads a tensor's values into JavaScript/, 'a reshape of a weight (the same data on wasm)');
    assert.match(readsOf((_v, f) => [tf.reshape(f, [4]).dataSync()[0] + 1, 2]) ?? '', /reads a tensor's values into JavaScript/, 'a reshape of a feed');
  } finally {
    tf.dispose([w, before, x]);
  }
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
  assert.ok(compiled.lines.some((l) => /^step: compiled plan \(\d+ kernels(, \d+ of them the optimizer's)?(, \d+ folded)?(, \d+ reshapes read in place)?(, \d+ element-wise chains of \d+ kernels fused)?(, \d+ bias adds in their GEMM)?(, \d+ ReLUs in their epilogue)?(, \d+ Relu gradients in a max pool's)?, [\d.]+ MB(, [\d.]+ MB of it one arena)?\)$/.test(l)), compiled.lines.join('\n'));
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

test('element-wise chains fused into one kernel each: fewer kernel calls, and the losses and weights of eager steps bit for bit', () => {
  const d = tinyData();
  // A dense layer with a bias and Relu, a squared error with weight decay, plain SGD: the bias add
  // and Relu, the loss's differences, their gradients and the SGD update are element-wise chains.
  const run = (mode: 'eager' | 'compiled', fuse: boolean) => {
    planSwitch.fuseElementwise = fuse;
    const w = tf.variable(tf.tensor2d(Float32Array.from(d.x.subarray(0, 128), (v) => v / 2), [8, 16]), true, `fuse_w_${mode}_${fuse}`);
    const b = tf.variable(tf.zeros([16]), true, `fuse_b_${mode}_${fuse}`);
    const w2 = tf.variable(tf.tensor2d(Float32Array.from(d.x.subarray(128, 176)), [16, 3]), true, `fuse_w2_${mode}_${fuse}`);
    const x = tf.tensor2d(d.x.subarray(0, 20 * 8), [20, 8]);
    const target = tf.oneHot(tf.tensor1d(d.y.subarray(0, 20), 'int32'), 3).toFloat();
    const opt = tf.train.sgd(0.05);
    const step = (feeds: Record<string, tf.Tensor>): StepOutputs => {
      const { value, grads } = tf.variableGrads(() => {
        const h = tf.relu(tf.add(tf.matMul(feeds.x, w), b));
        const err = tf.mean(tf.squaredDifference(tf.matMul(h, w2), target));
        return tf.add(err, tf.mul(1e-3, tf.sum(tf.square(tf.sub(tf.abs(w), 0.1))))) as tf.Scalar;
      }, [w, b, w2]);
      opt.applyGradients(grads as never);
      return [['loss', value]];
    };
    try {
      return runSteps(mode, 'dense', { x }, step, [w, b, w2]);
    } finally {
      planSwitch.fuseElementwise = true;
      tf.dispose([w, b, w2, x, target]);
      opt.dispose();
    }
  };
  const eager = run('eager', true);
  const fused = run('compiled', true);
  const unfused = run('compiled', false);
  assert.ok(fused.said.some((m) => /^step: compiled plan .*\d+ element-wise chains of \d+ kernels fused/.test(m)), fused.said.join(' | '));
  assert.ok(fused.names.includes(FUSED_ELEMENTWISE), fused.names.join(' '));
  assert.ok(!unfused.names.includes(FUSED_ELEMENTWISE), 'the switch turns fusion off');
  assert.ok(fused.names.length < unfused.names.length, `the fused plan calls ${fused.names.length} kernels a step, the unfused ${unfused.names.length}`);
  // Each op in float32 in the same order: the very bits of the eager step.
  assert.deepEqual(fused.losses, eager.losses);
  assert.deepEqual(unfused.losses, eager.losses);
  fused.weights.forEach((v, i) => {
    assert.ok(v.some((x) => x !== 0), 'the weights are not all zero');
    assert.deepEqual(v, eager.weights[i], `weight ${i} after 8 steps`);
  });
});

test('what the fusion pass leaves alone: a value the step returns ends its chain, a value two kernels read is computed once, a row broadcast is not fused; the outputs keep their bits', () => {
  const x = tf.tensor2d(Float32Array.from(tinyData().x.subarray(0, 160)), [20, 8]);
  const w = tf.tensor1d(Float32Array.from({ length: 8 }, (_, i) => (i - 3.5) / 4));
  const rows = tf.tensor2d(Float32Array.from({ length: 20 }, (_, i) => 1 + i / 10), [20, 1]);
  const step = (feeds: Record<string, tf.Tensor>): StepOutputs => {
    // b: a chain over a channel vector and a scalar, returned by the step (its chain ends there).
    const b = tf.relu(tf.add(tf.mul(feeds.x, w), 1));
    // c: one value per row (not a broadcast the kernel takes), then one kernel alone (nothing to fuse).
    const d = tf.sub(tf.mul(b, rows), 0.5);
    // e is read by two kernels: computed once, an input of the chain that reads it twice.
    const e = tf.relu(tf.sub(feeds.x, 0.25));
    const f = tf.add(tf.mul(e, 2), tf.mul(e, tf.neg(e)));
    return [['b', b], ['d', d], ['f', f]];
  };
  const said: string[] = [];
  const compiled = new CompiledSteps((m) => said.push(m));
  try {
    const eager = tf.tidy(() => step({ x }).map(([, t]) => Float32Array.from(t.dataSync())));
    let names: string[] = [];
    for (let i = 0; i < 5; i++) {
      const got = tf.tidy(() => compiled.run('pass', { x }, step).map(([, t]) => Float32Array.from(t.dataSync())));
      got.forEach((v, j) => assert.deepEqual(v, eager[j], `replay ${i}, output ${j}`));
      names = compiled.plans()[0]?.kernelNames() ?? [];
    }
    assert.deepEqual(names, [FUSED_ELEMENTWISE, 'Multiply', 'Sub', FUSED_ELEMENTWISE, FUSED_ELEMENTWISE], said.join(' | '));
  } finally {
    compiled.dispose();
    tf.dispose([x, w, rows]);
  }
});
