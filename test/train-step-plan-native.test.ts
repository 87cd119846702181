/**
 * Compiled steps on the native backend (src/train/compiled/epilogue.ts): a bias add after a
 * convolution or a matmul runs in that GEMM's epilogue (FusedConv2D, _FusedMatMul: the same
 * OpenBLAS GEMM, then the bias added to each finished value), so the plan calls fewer kernels and
 * the step keeps the eager step's bits: losses, weights after several steps, and a trained
 * payload. Skipped, saying why, where the native addon is not built.
 */
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/train/backend.ts';
import { nativeAddonStatus } from '../src/train/kernels/native/index.ts';
import { type StepOutputs } from '../src/train/compiled/step.ts';
import { epilogueSwitch } from '../src/train/compiled/epilogue.ts';
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
  assert.ok(fused.said.some((m) => /^step: compiled plan .*, 3 bias adds in their GEMM/.test(m)), fused.said.join(' | '));
  assert.ok(fused.names.includes('FusedConv2D') && fused.names.includes('_FusedMatMul'), fused.names.join(' '));
  assert.ok(!plain.names.includes('FusedConv2D'), 'the switch turns the epilogue off');
  assert.equal(fused.names.length, plain.names.length - 3, `the fused plan calls ${fused.names.length} kernels a step, the plain one ${plain.names.length}`);
  assert.deepEqual(fused.losses, eager.losses);
  assert.deepEqual(plain.losses, eager.losses);
  fused.weights.forEach((t, i) => {
    assert.ok(t.some((x) => x !== 0), 'the weights are not all zero');
    assert.deepEqual(t, eager.weights[i], `weight ${i} after 8 steps`);
  });
});

test('the keyword-spotting CNN on native: its biases in the convolutions\' and dense layers\' epilogues, the eager payload\'s bytes', { skip }, async () => {
  const { eager, compiled, said } = await keywordEagerAndCompiled(Float32Array.from(randomValues(KEYWORD_EXAMPLES * 49 * 40, 11)));
  assert.ok(said.some((m) => /^step: compiled plan .*, [1-9]\d* bias adds in their GEMM/.test(m)), said.filter((m) => m.startsWith('step')).join(' | '));
  assert.deepEqual(compiled.epochs.map((e) => e.loss), eager.epochs.map((e) => e.loss));
  assert.deepEqual(Buffer.from(compiled.bytes), Buffer.from(eager.bytes));
});
