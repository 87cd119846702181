/**
 * The trainer's ONNX executor (src/engine/onnx): ONNX's own backend tests (libonnx-testdata; skipped
 * with the reason when it is absent and cannot be installed), variables named exactly as the ONNX
 * weight store names the patchable weights, an int8 weight kept on its grid, the refusal of an
 * unimplemented operator before anything runs, and gradients against finite differences on a
 * small CNN + LSTM built here and on PyTorch-converted networks of the test data.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-web';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { OnnxProgram } from '../src/engine/onnx/executor.ts';
import { OnnxWeightStore } from '../src/io/onnx/store.ts';
import { UnsupportedOperatorError } from '../src/core/errors.ts';
import { decodeOnnxTensor } from '../src/engine/onnx/model.ts';
import { tensorOf, tfDtype } from '../src/engine/onnx/ops/op.ts';
import { ensureOnnxTestData, ONNX_TESTDATA, runOnnxConformance } from '../bench/onnx-conformance.ts';
import { DT, f32le, fixture, graph, model, node, tensor, valueInfo } from './helpers/onnx-build.ts';

ort.env.wasm.numThreads = 1;
ort.env.logLevel = 'error';
await initBackend('wasm');

const testData = ensureOnnxTestData(() => {}) ? false : `the ONNX test data (${ONNX_TESTDATA}, Debian libonnx-testdata) is absent and cannot be installed here (needs root and apt-get)`;

/**
 * Node tests the executor runs but does not match, each for a stated reason: ONNX 1.12's data
 * for a cast to BFLOAT16 was made by truncation; the executor rounds to nearest even, as the ONNX
 * specification (and onnxruntime) does.
 */
const KNOWN_MISMATCHES = ['test_cast_FLOAT_to_BFLOAT16', 'test_castlike_FLOAT_to_BFLOAT16', 'test_castlike_FLOAT_to_BFLOAT16_expanded'];

/**
 * Node tests refused at run time with a typed error (an operator variant the executor does not
 * implement): Dropout in training mode with a ratio above 0. Its mask is random and ONNX leaves
 * the generator to each runtime; the data's masks are numpy's legacy Mersenne Twister reseeded
 * with the node's `seed` at every call (uniform draws in C order, kept where >= ratio), which
 * onnxruntime does not reproduce, and which would drop the same units at every training step.
 */
const REFUSED = [
  'test_training_dropout', 'test_training_dropout_default', 'test_training_dropout_default_mask', 'test_training_dropout_mask',
];

test('ONNX backend node tests: every test whose operators are implemented passes at rtol 1e-3, atol 1e-7 (but the listed, explained ones)', { skip: testData }, (t) => {
  const s = runOnnxConformance({ suite: 'node' });
  const failing = s.results.filter((r) => r.status === 'fail');
  const refused = s.results.filter((r) => r.status === 'refused').map((r) => r.test);
  assert.deepEqual(failing.map((r) => r.test), KNOWN_MISMATCHES, failing.map((r) => `${r.test}: ${r.detail}`).join('\n'));
  assert.deepEqual(refused, REFUSED);
  assert.ok(s.total > 900 && s.supported >= 720, `${s.supported} of ${s.total}`);
  assert.equal(s.passing, s.supported - KNOWN_MISMATCHES.length - REFUSED.length);
  t.diagnostic(`node tests: ${s.total} total, ${s.supported} with implemented operators, ${s.passing} passing`);
});

test('ONNX backend PyTorch-converted networks: all pass', { skip: testData }, (t) => {
  const s = runOnnxConformance({ suite: 'pytorch-converted' });
  const bad = s.results.filter((r) => r.status !== 'pass');
  assert.deepEqual(bad.map((r) => `${r.test}: ${r.detail}`), []);
  t.diagnostic(`pytorch-converted: ${s.passing} of ${s.total} passing`);
});

test('an operator the executor does not implement is refused when the program is made, naming the op, the node and the opset', () => {
  const g = graph({
    nodes: [node({ opType: 'Relu', inputs: ['x'], outputs: ['h'] }), node({ opType: 'NonMaxSuppression', name: 'nms', inputs: ['h', 'h'], outputs: ['y'] })],
    inputs: [valueInfo('x', [1, 4])],
    outputs: [valueInfo('y', [1])],
  });
  assert.throws(() => new OnnxProgram(model(g), { source: 'nms.onnx' }), (e: unknown) => {
    assert.ok(e instanceof UnsupportedOperatorError);
    assert.equal(e.code, 'ND_UNSUPPORTED_OPERATOR');
    assert.deepEqual([e.details.op, e.details.node, e.details.opset], ['NonMaxSuppression', 'nms', 17]);
    assert.match(e.message, /nms\.onnx: operator NonMaxSuppression \(node "nms", opset 17\) is not implemented/);
    return true;
  });
  // A custom domain's operator is refused the same way, named with its domain.
  const custom = graph({ nodes: [node({ opType: 'FusedConv', domain: 'com.microsoft', inputs: ['x'], outputs: ['y'] })], inputs: [valueInfo('x', [1])], outputs: [valueInfo('y', [1])] });
  assert.throws(() => new OnnxProgram(model(custom)), /operator com\.microsoft:FusedConv \(node "y"/);
});

test('variables are the ONNX store\'s patchable weights, by its names, with its values (initializers, Constants, If branches, float16, external data)', () => {
  const f = fixture();
  const external = { 'weights.bin': f.external };
  const store = new OnnxWeightStore(f.model.slice(), { external: { 'weights.bin': f.external.slice() } });
  const program = new OnnxProgram(f.model, { external });
  const names = program.variables.map((v) => v.name).sort();
  assert.deepEqual(names, store.weights().map((w) => w.name).sort());
  assert.ok(names.includes('branch/then_branch/k') && names.includes('branch/else_branch/k') && names.includes('c_floats') && names.includes('far'), names.join(', '));
  for (const v of program.variables) {
    assert.deepEqual(Array.from(v.variable.dataSync()), Array.from(store.values(v.name)), v.name);
    assert.deepEqual(v.grid, store.grid(v.name));
  }
  assert.equal(program.variables.find((v) => v.name === 'half')?.grid.dtype, 'float16');
  program.dispose();
});

/** A seeded generator of values in [-1, 1). */
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

/** A test input (TensorProto bytes) as a tensor. */
function decodeInput(bytes: Uint8Array): tf.Tensor {
  const t = decodeOnnxTensor(bytes);
  return tensorOf(t.values as Float64Array, t.dims, tfDtype(t.dataType) ?? 'float32');
}

/** A small CNN + LSTM (smooth, so finite differences never straddle a kink): Conv1D -> Tanh -> LSTM over the 16 steps -> Gemm -> Sigmoid. */
function convLstm(): Uint8Array {
  const rand = seeded(5);
  const H = 5;
  const g = graph({
    initializers: [
      init('conv.w', [4, 2, 3], floats(24, rand)), init('conv.b', [4], floats(4, rand)),
      init('lstm.W', [1, 4 * H, 4], floats(4 * H * 4, rand)), init('lstm.R', [1, 4 * H, H], floats(4 * H * H, rand)), init('lstm.B', [1, 8 * H], floats(8 * H, rand, 0.1)),
      init('fc.w', [3, H], floats(3 * H, rand)), init('fc.b', [3], floats(3, rand)),
      tensor({ name: 'flat', dims: [2], dataType: DT.INT64, int64Data: [1, H] }),
    ],
    nodes: [
      node({ opType: 'Conv', inputs: ['x', 'conv.w', 'conv.b'], outputs: ['c'], attributes: [{ name: 'pads', type: 7, ints: [1, 1] }] }),
      node({ opType: 'Tanh', inputs: ['c'], outputs: ['r'] }),
      node({ opType: 'Transpose', inputs: ['r'], outputs: ['seq'], attributes: [{ name: 'perm', type: 7, ints: [2, 0, 1] }] }),
      node({ opType: 'LSTM', inputs: ['seq', 'lstm.W', 'lstm.R', 'lstm.B'], outputs: ['', 'h'], attributes: [{ name: 'hidden_size', type: 2, i: H }] }),
      node({ opType: 'Reshape', inputs: ['h', 'flat'], outputs: ['hf'] }),
      node({ opType: 'Gemm', inputs: ['hf', 'fc.w', 'fc.b'], outputs: ['logits'], attributes: [{ name: 'transB', type: 2, i: 1 }] }),
      node({ opType: 'Sigmoid', inputs: ['logits'], outputs: ['y'] }),
    ],
    inputs: [valueInfo('x', [1, 2, 16])],
    outputs: [valueInfo('y', [1, 3])],
  });
  return model(g);
}

/**
 * The gradient of sum(outputs × fixed random weights) with respect to every variable, checked
 * against central differences at `probes` positions of each.
 */
function checkGradients(program: OnnxProgram, feeds: () => Record<string, tf.Tensor>, probes: number, label: string): number {
  const rand = seeded(17);
  const weights = new Map<string, tf.Tensor>();
  const loss = () => {
    const out = program.run(feeds());
    let total: tf.Tensor = tf.scalar(0);
    for (const [name, t] of Object.entries(out)) {
      if (t.dtype !== 'float32') continue;
      let w = weights.get(name);
      if (!w) weights.set(name, (w = tf.keep(tf.tensor(floats(t.size, rand, 1), t.shape))));
      total = tf.add(total, tf.sum(tf.mul(t, w)));
    }
    return total as tf.Scalar;
  };
  // The same loss summed in float64 for the finite differences, whose float32 rounding of a sum
  // over hundreds of outputs would otherwise be what they measure on small gradients.
  const lossInFloat64 = () => tf.tidy(() => {
    let total = 0;
    for (const [name, t] of Object.entries(program.run(feeds()))) {
      const w = weights.get(name);
      if (!w) continue;
      const [tv, wv] = [t.dataSync(), w.dataSync()];
      for (let k = 0; k < tv.length; k++) total += tv[k] * wv[k];
    }
    return total;
  });
  const vars = program.variables.filter((v) => v.trainable);
  const { grads } = tf.variableGrads(loss, vars.map((v) => v.variable));
  let worst = 0;
  let checked = 0;
  for (const v of vars) {
    const g = grads[v.variable.name].dataSync();
    const base = Float32Array.from(v.variable.dataSync());
    for (let k = 0; k < Math.min(probes, base.length); k++) {
      const i = Math.floor(((k + 0.5) / Math.min(probes, base.length)) * base.length);
      const eps = 1e-2 * Math.max(1, Math.abs(base[i]));
      const at = (delta: number) => {
        const moved = base.slice();
        moved[i] += delta;
        v.variable.assign(tf.tensor(moved, v.variable.shape));
        return lossInFloat64();
      };
      const fd = (at(eps) - at(-eps)) / (2 * eps);
      v.variable.assign(tf.tensor(base, v.variable.shape));
      const err = Math.abs(fd - g[i]) / Math.max(1e-2, Math.abs(fd), Math.abs(g[i]));
      assert.ok(err < 2e-2, `${label} ${v.name}[${i}]: gradient ${g[i]}, finite difference ${fd}`);
      worst = Math.max(worst, err);
      checked++;
    }
  }
  assert.ok(checked >= vars.length, `${checked} checks`);
  for (const t of Object.values(grads)) t.dispose();
  for (const w of weights.values()) w.dispose();
  return worst;
}

test('a small Conv1D + LSTM network: outputs equal onnxruntime-web, gradients equal finite differences', async (t) => {
  const bytes = convLstm();
  const x = Float32Array.from(floats(32, seeded(9), 1));
  const session = await ort.InferenceSession.create(bytes);
  const ref = (await session.run({ x: new ort.Tensor('float32', x, [1, 2, 16]) })).y.data as Float32Array;
  await session.release();
  const program = new OnnxProgram(bytes);
  assert.deepEqual(program.variables.map((v) => v.name), ['conv.w', 'conv.b', 'lstm.W', 'lstm.R', 'lstm.B', 'fc.w', 'fc.b']);
  const ours = tf.tidy(() => program.run({ x: tf.tensor(x, [1, 2, 16]) }).y.dataSync());
  for (let i = 0; i < 3; i++) assert.ok(Math.abs(ours[i] - ref[i]) <= 1e-5, `${ours[i]} vs ${ref[i]}`);
  const worst = checkGradients(program, () => ({ x: tf.tensor(x, [1, 2, 16]) }), 6, 'conv-lstm');
  t.diagnostic(`conv1d+lstm: worst relative gradient error ${worst.toExponential(2)}`);
  program.dispose();
});

/**
 * A decoder-like network over the operators added for CNNs and small transformers: Conv -> Tanh
 * -> Resize (linear, by sizes) -> Einsum with a weight (channel mixing) -> ScatterND writing a
 * weight over one channel's plane -> Sigmoid; and a second over 3-D ones: ConvTranspose 3-D
 * (strided, dilated, grouped) -> BatchNormalization in training mode -> Resize (cubic, antialiased
 * when shrinking) -> Tanh. Every operation smooth, so finite differences never straddle a kink.
 */
function decoderNetworks(): Uint8Array[] {
  const rand = seeded(23);
  const i64 = (name: string, dims: number[], v: number[]) => tensor({ name, dims, dataType: DT.INT64, int64Data: v });
  const a = graph({
    initializers: [
      init('conv.w', [3, 2, 3, 3], floats(54, rand)), init('conv.b', [3], floats(3, rand)),
      init('mix', [2, 3], floats(6, rand, 1)), init('patch', [1, 6, 8], floats(48, rand)),
      i64('sizes', [4], [1, 3, 6, 8]), i64('where', [1, 2], [0, 1]),
    ],
    nodes: [
      node({ opType: 'Conv', inputs: ['x', 'conv.w', 'conv.b'], outputs: ['c'], attributes: [{ name: 'pads', type: 7, ints: [1, 1, 1, 1] }] }),
      node({ opType: 'Tanh', inputs: ['c'], outputs: ['t'] }),
      node({ opType: 'Resize', inputs: ['t', '', '', 'sizes'], outputs: ['r'], attributes: [{ name: 'mode', type: 3, s: 'linear' }] }),
      node({ opType: 'Einsum', inputs: ['r', 'mix'], outputs: ['e'], attributes: [{ name: 'equation', type: 3, s: 'nchw,kc->nkhw' }] }),
      node({ opType: 'ScatterND', inputs: ['e', 'where', 'patch'], outputs: ['s'] }),
      node({ opType: 'Sigmoid', inputs: ['s'], outputs: ['y'] }),
    ],
    inputs: [valueInfo('x', [1, 2, 4, 5])],
    outputs: [valueInfo('y', [1, 2, 6, 8])],
  });
  const b = graph({
    initializers: [
      init('up.w', [4, 1, 2, 2, 2], floats(32, rand)), init('up.b', [2], floats(2, rand)),
      init('bn.scale', [2], [1.2, 0.8]), init('bn.bias', [2], [0.1, -0.2]), init('bn.mean', [2], [0, 0.5]), init('bn.var', [2], [1, 2]),
      i64('sizes', [5], [1, 2, 4, 5, 3]),
    ],
    nodes: [
      node({ opType: 'ConvTranspose', inputs: ['x', 'up.w', 'up.b'], outputs: ['u'], attributes: [{ name: 'strides', type: 7, ints: [2, 1, 2] }, { name: 'dilations', type: 7, ints: [1, 2, 1] }, { name: 'group', type: 2, i: 2 }, { name: 'pads', type: 7, ints: [0, 1, 0, 1, 0, 0] }] }),
      node({ opType: 'BatchNormalization', inputs: ['u', 'bn.scale', 'bn.bias', 'bn.mean', 'bn.var'], outputs: ['n', 'running_mean', 'running_var'], attributes: [{ name: 'training_mode', type: 2, i: 1 }] }),
      node({ opType: 'Resize', inputs: ['n', '', '', 'sizes'], outputs: ['r'], attributes: [{ name: 'mode', type: 3, s: 'cubic' }, { name: 'antialias', type: 2, i: 1 }] }),
      node({ opType: 'Tanh', inputs: ['r'], outputs: ['y'] }),
    ],
    inputs: [valueInfo('x', [2, 4, 2, 3, 2])],
    outputs: [valueInfo('y', [2, 2, 4, 5, 3]), valueInfo('running_mean', [2]), valueInfo('running_var', [2])],
  });
  return [model(a), model(b, { opset: 18 })];
}

test('gradients through Resize, Einsum, ScatterND, 3-D ConvTranspose and BatchNormalization in training mode equal finite differences', (t) => {
  const [planar, volumetric] = decoderNetworks();
  const lines: string[] = [];
  for (const [label, bytes, dims] of [['conv-resize-einsum-scatternd', planar, [1, 2, 4, 5]], ['convtranspose3d-batchnorm-resize', volumetric, [2, 4, 2, 3, 2]]] as const) {
    const program = new OnnxProgram(bytes, { source: label });
    const x = Float32Array.from(floats(dims.reduce((p: number, d: number) => p * d, 1), seeded(29), 1));
    const worst = checkGradients(program, () => ({ x: tf.tensor(x, [...dims]) }), 6, label);
    lines.push(`${label} ${worst.toExponential(2)} (${program.variables.length} weights)`);
    program.dispose();
  }
  t.diagnostic(`worst relative gradient error: ${lines.join(', ')}`);
});

test('gradients of PyTorch-converted networks from ONNX\'s test data equal finite differences', { skip: testData }, (t) => {
  const lines: string[] = [];
  for (const name of ['test_Conv2d', 'test_Conv1d_dilated', 'test_Conv2d_depthwise_strided', 'test_Linear', 'test_BatchNorm2d_eval', 'test_Embedding', 'test_PReLU_2d_multiparam', 'test_GLU']) {
    const dir = path.join(ONNX_TESTDATA, 'pytorch-converted', name);
    const program = new OnnxProgram(new Uint8Array(readFileSync(path.join(dir, 'model.onnx'))), { source: name });
    assert.ok(program.variables.length > 0 || name === 'test_GLU', `${name} has no weights`);
    const input = new Uint8Array(readFileSync(path.join(dir, 'test_data_set_0', 'input_0.pb')));
    const feeds = () => tf.tidy(() => {
      // The test's own input, decoded as the conformance runner decodes it.
      const t0 = decodeInput(input);
      return { [program.inputs[0].name]: t0 };
    });
    if (program.variables.length) lines.push(`${name} ${checkGradients(program, feeds, 4, name).toExponential(1)}`);
    program.dispose();
  }
  t.diagnostic(`worst relative gradient error: ${lines.join(', ')}`);
});

test('an int8 weight read through DequantizeLinear is a variable on its grid: dequantized values in, the same outputs as onnxruntime-web', async () => {
  const q = [12, -7, 100, -128, 3, 0, 55, -1];
  const g = graph({
    initializers: [
      tensor({ name: 'w.q', dims: [2, 4], dataType: DT.INT8, raw: q.map((v) => v & 0xff) }),
      init('w.scale', [], [0.05]),
      tensor({ name: 'w.zp', dims: [], dataType: DT.INT8, raw: [2] }),
    ],
    nodes: [
      node({ opType: 'DequantizeLinear', inputs: ['w.q', 'w.scale', 'w.zp'], outputs: ['w'] }),
      node({ opType: 'MatMul', inputs: ['x', 'w'], outputs: ['y'] }),
    ],
    inputs: [valueInfo('x', [1, 2])],
    outputs: [valueInfo('y', [1, 4])],
  });
  const bytes = model(g);
  const program = new OnnxProgram(bytes);
  assert.deepEqual(program.variables.map((v) => [v.name, v.grid.dtype]), [['w.q', 'qint8']]);
  const wq = program.variables[0];
  assert.deepEqual(Array.from(wq.variable.dataSync()), q.map((v) => Math.fround((v - 2) * Math.fround(0.05))));
  const session = await ort.InferenceSession.create(bytes);
  const x = Float32Array.of(0.5, -2);
  const ref = (await session.run({ x: new ort.Tensor('float32', x, [1, 2]) })).y.data as Float32Array;
  await session.release();
  const ours = tf.tidy(() => program.run({ x: tf.tensor(x, [1, 2]) }).y.dataSync());
  for (let i = 0; i < 4; i++) assert.ok(Math.abs(ours[i] - ref[i]) <= 1e-6 * Math.max(1, Math.abs(ref[i])), `${ours[i]} vs ${ref[i]}`);
  // The gradient reaches the int8 weight (the trainer keeps its updates on the grid, as for tfjs grids).
  const { grads } = tf.variableGrads(() => tf.sum(program.run({ x: tf.tensor(x, [1, 2]) }).y) as tf.Scalar, [wq.variable]);
  assert.deepEqual(Array.from(grads[wq.variable.name].dataSync()), [0.5, 0.5, 0.5, 0.5, -2, -2, -2, -2]);
  program.dispose();
});

test('MatMul of [batch, tokens, features] by a weight matrix (a Linear layer) is one matrix product: no Tile of the weight, values and weight gradient of float64', () => {
  const [b, n, k, m] = [3, 5, 4, 6];
  const wv = Array.from({ length: k * m }, (_, i) => Math.sin(i + 1) / 2);
  const xv = Float32Array.from({ length: b * n * k }, (_, i) => Math.cos(3 * i + 1));
  const g = graph({ initializers: [init('w', [k, m], wv)], nodes: [node({ opType: 'MatMul', inputs: ['x', 'w'], outputs: ['y'] })], inputs: [valueInfo('x', [b, n, k])], outputs: [valueInfo('y', [b, n, m])] });
  const program = new OnnxProgram(model(g));
  const w32 = Float32Array.from(wv);
  const w = program.variables[0].variable;
  const kernels: string[] = [];
  const { value, grads } = tf.variableGrads(() => {
    const y = program.run({ x: tf.tensor(xv, [b, n, k]) }).y;
    assert.deepEqual(y.shape, [b, n, m]);
    // sum(y * probe): dW = sum over rows of x^T probe.
    return tf.sum(tf.mul(y, tf.range(0, b * n * m).reshape([b, n, m]).div(b * n * m))) as tf.Scalar;
  }, [w]);
  const dw = grads[w.name].dataSync();
  let loss = 0;
  const ref = new Float64Array(k * m);
  for (let r = 0; r < b * n; r++) {
    for (let j = 0; j < m; j++) {
      let y = 0;
      for (let i = 0; i < k; i++) y += xv[r * k + i] * w32[i * m + j];
      const probe = Math.fround((r * m + j) / (b * n * m));
      loss += y * probe;
      for (let i = 0; i < k; i++) ref[i * m + j] += xv[r * k + i] * probe;
    }
  }
  assert.ok(Math.abs(value.dataSync()[0] - loss) < 1e-5 * Math.max(1, Math.abs(loss)), `${value.dataSync()[0]} vs ${loss}`);
  for (let i = 0; i < k * m; i++) assert.ok(Math.abs(dw[i] - ref[i]) < 1e-5, `dW[${i}] ${dw[i]} vs ${ref[i]}`);
  tf.dispose([value, ...Object.values(grads)]);
  // The kernels of a forward and backward pass: the weight is never tiled over the batch.
  const profiled = tf.profile(() => {
    const { value: v, grads: gs } = tf.variableGrads(() => tf.sum(program.run({ x: tf.tensor(xv, [b, n, k]) }).y) as tf.Scalar, [w]);
    tf.dispose([v, ...Object.values(gs)]);
  });
  return profiled.then((info) => {
    kernels.push(...info.kernels.map((x) => x.name));
    assert.ok(!kernels.includes('Tile'), `kernels run: ${kernels.join(', ')}`);
    program.dispose();
  });
});
