/**
 * A compiled training step whose replay fails (src/engine/compiled/capture.ts, plan.ts): before any
 * kernel wrote a variable in place, the step runs eagerly instead and training goes on exactly as
 * eager training; after the fused Adam had updated some variables' moments in place, running the
 * step again would count its gradient twice in them, so the caller gets a typed error saying so,
 * with the weights as they were before the step.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { CompiledSteps, type StepOutputs } from '../src/engine/compiled/step.ts';
import type { StepPlan } from '../src/engine/compiled/plan.ts';
import { ADAM_STEP, FusedAdam } from '../src/engine/kernels/adam.ts';
import { TrainingStepError } from '../src/core/errors.ts';

before(async () => {
  await initBackend('wasm');
});

/** Two dense layers trained by the fused Adam: three variables, three Adam kernels a step. */
function adamStep(tag: string) {
  const x = tf.tensor2d(Float32Array.from({ length: 16 * 6 }, (_, i) => Math.sin(i * 0.9)), [16, 6]);
  const target = tf.tensor2d(Float32Array.from({ length: 16 * 2 }, (_, i) => Math.cos(i * 0.4)), [16, 2]);
  const w = tf.variable(tf.tensor2d(Float32Array.from({ length: 6 * 8 }, (_, i) => Math.cos(i * 0.3) / 3), [6, 8]), true, `fail_w_${tag}`);
  const b = tf.variable(tf.zeros([8]), true, `fail_b_${tag}`);
  const w2 = tf.variable(tf.tensor2d(Float32Array.from({ length: 8 * 2 }, (_, i) => Math.sin(i * 1.1) / 2), [8, 2]), true, `fail_w2_${tag}`);
  const opt = new FusedAdam(0.05);
  const step = (feeds: Record<string, tf.Tensor>): StepOutputs => {
    const { value, grads } = tf.variableGrads(() => tf.mean(tf.squaredDifference(tf.matMul(tf.relu(tf.add(tf.matMul(feeds.x, w), b)), w2), target)) as tf.Scalar, [w, b, w2]);
    opt.applyGradients(grads as never);
    tf.dispose(Object.values(grads));
    return [['loss', value]];
  };
  const weights = () => [w, b, w2].map((v) => Float32Array.from(v.dataSync()));
  const dispose = () => {
    tf.dispose([x, target, w, b, w2]);
    opt.dispose();
  };
  return { x, step, weights, dispose };
}

/** Make kernel `which` (an index among the plan's kernels named `name`) throw on its next call only. */
function failOnce(plan: StepPlan, name: string, which: number): void {
  const kernels = (plan as unknown as { kernels: { name: string; kernelFunc: (a: unknown) => unknown }[] }).kernels.filter((k) => k.name === name);
  assert.ok(kernels.length > which, `the plan runs ${kernels.length} ${name} kernels`);
  const k = kernels[which];
  const real = k.kernelFunc;
  k.kernelFunc = () => {
    k.kernelFunc = real;
    throw new Error('the backend could not allocate the output');
  };
}

/** Two recorded steps, one checked replay, one replay (the plan is ready), the reference stepping eagerly beside them. */
function stepsUntilReady(compiled: CompiledSteps, failing: ReturnType<typeof adamStep>, reference: ReturnType<typeof adamStep>): void {
  for (let i = 0; i < 4; i++) {
    tf.tidy(() => compiled.run('k', { x: failing.x }, failing.step));
    tf.tidy(() => reference.step({ x: reference.x }));
  }
}

test('a replay that fails after the fused Adam wrote some moments in place: a typed error, the weights of before the step, never a silent second update', () => {
  const reference = adamStep('ref');
  const failing = adamStep('fail');
  const said: string[] = [];
  const compiled = new CompiledSteps((m) => said.push(m));
  try {
    stepsUntilReady(compiled, failing, reference);
    assert.ok(said.some((m) => /^step: compiled plan \(\d+ kernels, 3 of them the optimizer's/.test(m)), said.join(' | '));
    failOnce(compiled.plans()[0], ADAM_STEP, 1);
    const before = failing.weights();
    assert.throws(
      () => tf.tidy(() => compiled.run('k', { x: failing.x }, failing.step)),
      (e: unknown) => e instanceof TrainingStepError && e.code === 'ND_TRAINING_STEP' && /after the optimizer had updated the moments of 1 variable in place \(fail_w_fail\)/.test(e.message) && /the backend could not allocate the output/.test(e.message) && /--step eager/.test(e.message),
    );
    failing.weights().forEach((v, i) => assert.deepEqual(v, before[i], `weight ${i} as before the failed step`));
    assert.deepEqual(compiled.plans(), [], 'the plan is dropped');
  } finally {
    compiled.dispose();
    reference.dispose();
    failing.dispose();
  }
});

test('a replay that fails before any kernel wrote in place: the step runs eagerly instead, said once, and training goes on as eager training', () => {
  const reference = adamStep('ref2');
  const failing = adamStep('fail2');
  const said: string[] = [];
  const compiled = new CompiledSteps((m) => said.push(m));
  try {
    stepsUntilReady(compiled, failing, reference);
    failOnce(compiled.plans()[0], ADAM_STEP, 0);
    for (let i = 0; i < 3; i++) {
      tf.tidy(() => compiled.run('k', { x: failing.x }, failing.step));
      tf.tidy(() => reference.step({ x: reference.x }));
    }
    assert.ok(said.some((m) => /^step: eager \(the replay failed: the backend could not allocate the output\)$/.test(m)), said.join(' | '));
    const want = reference.weights();
    failing.weights().forEach((v, i) => v.forEach((x, j) => assert.ok(Math.abs(x - want[i][j]) <= 1e-5 * Math.max(1, Math.abs(want[i][j])), `weight ${i}[${j}]: ${x}, eager training ${want[i][j]}`)));
  } finally {
    compiled.dispose();
    reference.dispose();
    failing.dispose();
  }
});
