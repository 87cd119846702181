/**
 * Compiled steps on the native backend (src/engine/compiled/epilogue.ts): a bias add after a
 * convolution or a matmul runs in that GEMM's epilogue (FusedConv2D, _FusedMatMul: the same
 * OpenBLAS GEMM, then the bias added to each finished value), and a ReLU after it too (Relu's
 * bits, its gradient reading the GEMM's output), so the plan calls fewer kernels and the step
 * keeps the eager step's bits: losses, weights after several steps, and a trained payload.
 * Skipped, saying why, where the native addon is not built.
 */
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { nativeAddonStatus } from '../src/engine/kernels/native/index.ts';
import { loadNativeAddon } from '../src/engine/kernels/native/loader.ts';
import { type StepOutputs } from '../src/engine/compiled/step.ts';
import { epilogueSwitch } from '../src/engine/compiled/epilogue.ts';
import { KEYWORD_EXAMPLES, keywordEagerAndCompiled } from './helpers/keyword-steps.ts';
import { randomValues } from './helpers/kernel-tests.ts';
import { runSteps } from './helpers/compiled-steps.ts';

const status = nativeAddonStatus();
const skip = status.available ? false : `the native addon is not built (${status.reason})`;

before(async () => {
  if (!skip) await initBackend('native', { threads: 1 });
});

test('bias adds run in the GEMM before them: fewer kernel calls, the eager step\'s losses and weights bit for bit', { skip }, () => {
  const run = (mode: 'eager' | 'compiled', fuse: boolean) => {
    epilogueSwitch.fuseBias = fuse;
    const v = (shape: number[], seed: number, scale = 0.3) => tf.variable(tf.tensor(Float32Array.from(randomValues(shape.reduce((a, d) => a * d, 1), seed), (x) => x * scale), shape), true, `epi_${seed}_${mode}_${fuse}`);
    const [filter, cb, w, b, w3, b3] = [v([3, 3, 2, 8], 1), v([8], 2), v([8 * 8 * 8, 5], 3, 0.05), v([5], 4), v([8, 4], 7), v([4], 8)];
    const x = tf.tensor4d(randomValues(6 * 8 * 8 * 2, 5), [6, 8, 8, 2]);
    const target = tf.tensor2d(randomValues(6 * 5, 6), [6, 5]);
    const opt = tf.train.sgd(0.05);
    const step = (feeds: Record<string, tf.Tensor>): StepOutputs => {
      const { value, grads } = tf.variableGrads(() => {
        const h = tf.relu(tf.add(tf.conv2d(feeds.x as tf.Tensor4D, filter as tf.Tensor4D, 1, 'same'), cb));
        const y = tf.add(tf.matMul(tf.reshape(h, [6, 8 * 8 * 8]), w), b);
        // A matmul over every position, its output read under another shape by the bias add.
        const z = tf.add(tf.reshape(tf.matMul(tf.reshape(h, [6 * 8 * 8, 8]), w3), [6, 8 * 8, 4]), b3);
        return tf.add(tf.mean(tf.squaredDifference(y, target)), tf.mul(0.1, tf.mean(tf.square(z)))) as tf.Scalar;
      }, [filter, cb, w, b, w3, b3]);
      opt.applyGradients(grads as never);
      return [['loss', value]];
    };
    try {
      return runSteps(mode, 'conv', { x }, step, [filter, cb, w, b, w3, b3]);
    } finally {
      epilogueSwitch.fuseBias = true;
      tf.dispose([filter, cb, w, b, w3, b3, x, target]);
      opt.dispose();
    }
  };
  const eager = run('eager', true);
  const fused = run('compiled', true);
  const plain = run('compiled', false);
  epilogueSwitch.fuseRelu = false;
  const biasOnly = (() => {
    try {
      return run('compiled', true);
    } finally {
      epilogueSwitch.fuseRelu = true;
    }
  })();
  assert.ok(fused.said.some((m) => /^step: compiled plan .*, 3 bias adds in their GEMM, 1 ReLUs in their epilogue/.test(m)), fused.said.join(' | '));
  assert.ok(fused.names.includes('FusedConv2D') && fused.names.includes('_FusedMatMul'), fused.names.join(' '));
  assert.ok(!fused.names.includes('Relu') && biasOnly.names.includes('Relu'), 'the convolution\'s ReLU runs in its epilogue, and only with the switch on');
  assert.ok(!plain.names.includes('FusedConv2D'), 'the switch turns the epilogue off');
  assert.equal(biasOnly.names.length, plain.names.length - 3, `the bias-fused plan calls ${biasOnly.names.length} kernels a step, the plain one ${plain.names.length}`);
  assert.equal(fused.names.length, plain.names.length - 4, `the fused plan calls ${fused.names.length} kernels a step, the plain one ${plain.names.length}`);
  assert.deepEqual(fused.losses, eager.losses);
  assert.deepEqual(biasOnly.losses, eager.losses);
  assert.deepEqual(plain.losses, eager.losses);
  fused.weights.forEach((t, i) => {
    assert.ok(t.some((x) => x !== 0), 'the weights are not all zero');
    assert.deepEqual(t, eager.weights[i], `weight ${i} after 8 steps`);
  });
});

test('the epilogue\'s relu gives the Relu kernel\'s bits: -0, NaNs of either sign, infinities, subnormals', { skip }, () => {
  const addon = loadNativeAddon();
  const bits = new Uint32Array([0x80000000, 0x00000000, 0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7f800000, 0xff800000, 0x00000001, 0x80000001, 0x3f800000, 0xbf800000]);
  // Rows of the special values, each row shifted so every value meets a bias of 0 and of -1.5.
  const rows = 4;
  const cols = bits.length;
  const y = new Float32Array(rows * cols);
  const yBits = new Uint32Array(y.buffer);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) yBits[r * cols + c] = bits[(r + c) % cols];
  const bias = Float32Array.from({ length: cols }, (_, c) => (c % 2 ? -1.5 : 0));
  const expected = tf.tidy(() => tf.relu(tf.add(tf.tensor2d(y, [rows, cols]), tf.tensor1d(bias))).dataSync() as Float32Array);
  // The bias add as tfjs' Add runs it (float32 +0 on -0 gives +0): compare with a linear epilogue first.
  const linear = y.slice();
  addon.biasActivation(linear, bias, 0);
  const added = tf.tidy(() => tf.add(tf.tensor2d(y, [rows, cols]), tf.tensor1d(bias)).dataSync() as Float32Array);
  assert.deepEqual([...new Uint32Array(linear.buffer)], [...new Uint32Array(added.buffer)]);
  const out = y.slice();
  addon.biasActivation(out, bias, 1);
  assert.deepEqual([...new Uint32Array(out.buffer)].map((b) => b.toString(16)), [...new Uint32Array(expected.buffer)].map((b) => b.toString(16)));
  // Without a bias: -0 itself must come out +0, as Relu gives it.
  const alone = new Float32Array(new Uint32Array([0x80000000, 0xffc00000, 0x7fc00000, 0x3f800000]).buffer);
  const expectedAlone = tf.tidy(() => tf.relu(tf.tensor1d(alone)).dataSync() as Float32Array);
  const got = alone.slice();
  addon.biasActivation(got, null, 1);
  assert.deepEqual([...new Uint32Array(got.buffer)], [...new Uint32Array(expectedAlone.buffer)]);
});

test('the keyword-spotting CNN on native: its biases and its five ReLUs (four convolutions, the hidden dense layer) in the epilogues, two ReLU gradients in the max pools\' gradients, the eager payload\'s bytes', { skip }, async () => {
  const { eager, compiled, said } = await keywordEagerAndCompiled(Float32Array.from(randomValues(KEYWORD_EXAMPLES * 49 * 40, 11)));
  assert.ok(said.some((m) => /^step: compiled plan .*, [1-9]\d* bias adds in their GEMM, 5 ReLUs in their epilogue, 2 Relu gradients in a max pool's/.test(m)), said.filter((m) => m.startsWith('step')).join(' | '));
  assert.deepEqual(compiled.epochs.map((e) => e.loss), eager.epochs.map((e) => e.loss));
  assert.deepEqual(Buffer.from(compiled.bytes), Buffer.from(eager.bytes));
});

test('a ReLU stays a kernel where something else reads the value before it, its gradient still in the pool gradient\'s pass (reading that value): the eager step\'s bits', { skip }, () => {
  const run = (mode: 'eager' | 'compiled') => {
    const v = (shape: number[], seed: number, scale = 0.3) => tf.variable(tf.tensor(Float32Array.from(randomValues(shape.reduce((a, d) => a * d, 1), seed), (x) => x * scale), shape), true, `keep_${seed}_${mode}`);
    const [filter, cb, w] = [v([1, 3, 4, 6], 21), v([6], 22), v([6 * 6, 3], 23, 0.1)];
    const x = tf.tensor4d(randomValues(5 * 1 * 12 * 4, 24), [5, 1, 12, 4]);
    const opt = tf.train.sgd(0.05);
    const step = (feeds: Record<string, tf.Tensor>): StepOutputs => {
      const { value, grads } = tf.variableGrads(() => {
        const z = tf.add(tf.conv2d(feeds.x as tf.Tensor4D, filter as tf.Tensor4D, 1, 'same'), cb);
        const h = tf.relu(z);
        const p = tf.maxPool(tf.reshape(h, [5, 12, 1, 6]) as tf.Tensor4D, [2, 1], [2, 1], 'valid');
        const y = tf.matMul(tf.reshape(p, [5, 36]), w);
        // z read beside the ReLU (a penalty on the pre-activations): the ReLU cannot move into the epilogue.
        return tf.add(tf.mean(tf.square(y)), tf.mul(0.01, tf.mean(tf.square(z)))) as tf.Scalar;
      }, [filter, cb, w]);
      opt.applyGradients(grads as never);
      return [['loss', value]];
    };
    try {
      return runSteps(mode, 'keep', { x }, step, [filter, cb, w]);
    } finally {
      tf.dispose([filter, cb, w, x]);
      opt.dispose();
    }
  };
  const eager = run('eager');
  const compiled = run('compiled');
  assert.ok(compiled.said.some((m) => /^step: compiled plan .*1 bias adds in their GEMM/.test(m)), compiled.said.join(' | '));
  assert.ok(!compiled.said.some((m) => /ReLUs in their epilogue/.test(m)), compiled.said.join(' | '));
  assert.ok(compiled.said.some((m) => /, 1 Relu gradients in a max pool's/.test(m)), compiled.said.join(' | '));
  assert.ok(compiled.names.includes('Relu'), compiled.names.join(' '));
  assert.deepEqual(compiled.losses, eager.losses);
  compiled.weights.forEach((t, i) => assert.deepEqual(t, eager.weights[i], `weight ${i} after 8 steps`));
});
