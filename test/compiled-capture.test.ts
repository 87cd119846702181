/**
 * The capture machine shared by compiled training steps and compiled forward passes
 * (src/engine/compiled/capture.ts), on the path no training test reaches on purpose: a plan that
 * goes stale (a tensor it reads is replaced) is dropped and captured again, the runs stay equal to
 * eager runs, and after MAX_RECAPTURES the key is refused with the reason said once; both users
 * count their runs the same way.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { CompiledSteps, type StepOutputs } from '../src/engine/compiled/step.ts';
import { ForwardPlans } from '../src/engine/compiled/forward.ts';
import { MAX_RECAPTURES, outputDifference } from '../src/engine/compiled/capture.ts';

before(async () => {
  await initBackend('wasm');
});

const X = [0.5, -1, 2, 0.25];
/** The values of the tensor replaced at the `n`th replacement. */
const offsets = (n: number) => [0.1 * n, -0.2, 0.3, 0.05 * n];

/**
 * `runs` runs of `run(c)` where `c`, a tensor made outside the runs (so a plan reads it as it is,
 * not as a constant), is replaced by another every `every` runs; the values each run gave.
 */
function withReplacements(runs: number, every: number, run: (c: tf.Tensor) => Float32Array): Float32Array[] {
  let c = tf.tensor1d(offsets(0));
  const out: Float32Array[] = [];
  for (let i = 0; i < runs; i++) {
    if (i > 0 && i % every === 0) {
      c.dispose();
      c = tf.tensor1d(offsets(i / every));
    }
    out.push(run(c));
  }
  c.dispose();
  return out;
}

test('a step whose plan goes stale is captured again, its losses and weights the eager steps\'; past MAX_RECAPTURES its phase is eager, said once', () => {
  // Each capture takes four steps (the stale one eager, two recorded, the check); every fifth replaces the tensor.
  const every = 5;
  const runs = every * (MAX_RECAPTURES + 3);
  const steps = (mode: 'eager' | 'compiled') => {
    const w = tf.variable(tf.tensor1d([1, 2, -1, 0.5]));
    const x = tf.tensor1d(X);
    const said: string[] = [];
    const compiled = new CompiledSteps((m) => said.push(m));
    const step = (c: tf.Tensor) => (f: Record<string, tf.Tensor>): StepOutputs => {
      const y = tf.add(tf.mul(f.x, w), c);
      w.assign(tf.sub(w, tf.mul(y, 0.01)));
      return [['loss', tf.sum(tf.square(y))]];
    };
    const losses = withReplacements(runs, every, (c) => tf.tidy(() => {
      const out = mode === 'eager' ? step(c)({ x }) : compiled.run('phase', { x }, step(c));
      return Float32Array.from(out[0][1].dataSync());
    }));
    const result = { losses, weights: Float32Array.from(w.dataSync()), said, replayed: compiled.replayed, eager: compiled.eager, refused: compiled.refused('phase') };
    compiled.dispose();
    tf.dispose([w, x]);
    return result;
  };
  const eager = steps('eager');
  const compiled = steps('compiled');
  compiled.losses.forEach((l, i) => assert.ok(outputDifference(tf.tensor1d(eager.losses[i]), tf.tensor1d(l)) <= 1e-4, `step ${i}: ${l} against ${eager.losses[i]}`));
  assert.ok(outputDifference(tf.tensor1d(eager.weights), tf.tensor1d(compiled.weights)) <= 1e-4, 'the weights after the last step');
  const ready = compiled.said.filter((m) => /^step: compiled plan \(\d+ kernels/.test(m));
  assert.equal(ready.length, MAX_RECAPTURES + 1, `a plan for the phase and for each recapture: ${compiled.said.join(' | ')}`);
  assert.deepEqual(compiled.said.filter((m) => m.startsWith('step: eager')), [`step: eager (a [4] float32 tensor the step reads was replaced, ${MAX_RECAPTURES + 1} times in this phase)`]);
  assert.ok(compiled.refused);
  // Replayed: the check's replay and the ones after it until the tensor is replaced (three in the
  // first capture; in each recapture, whose first step is the stale one run eagerly, two).
  assert.equal(compiled.replayed, 3 + 2 * MAX_RECAPTURES);
  assert.equal(compiled.replayed + compiled.eager, runs);
});

test('a forward pass whose plan goes stale is captured again, bit for bit the eager pass; past MAX_RECAPTURES its key is eager, the plan said once', () => {
  const every = 4;
  const runs = every * (MAX_RECAPTURES + 3);
  const w = tf.tensor1d([1, 2, -1, 0.5]);
  const pass = (c: tf.Tensor) => (f: Record<string, tf.Tensor>) => tf.tanh(tf.add(tf.mul(f.x, w), c));
  const eager = withReplacements(runs, every, (c) => tf.tidy(() => Float32Array.from(pass(c)({ x: tf.tensor1d(X) }).dataSync())));
  const said: string[] = [];
  const plans = new ForwardPlans('teacher', (m) => said.push(m));
  const compiled = withReplacements(runs, every, (c) => tf.tidy(() => Float32Array.from(plans.run({ x: tf.tensor1d(X) }, pass(c)).dataSync())));
  compiled.forEach((v, i) => assert.deepEqual(v, eager[i], `pass ${i}`));
  assert.deepEqual(said.map((m) => m.replace(/\(\d+ kernels.*\)$/, '(...)')), [
    'teacher: compiled forward plan (...)',
    `teacher: eager forward passes (a [4] float32 tensor the step reads was replaced, ${MAX_RECAPTURES + 1} times)`,
  ]);
  // Replayed: the passes after the check until the tensor is replaced (two in the first capture;
  // in each recapture, whose first pass is the stale one run eagerly, one).
  assert.equal(plans.replayed, 2 + MAX_RECAPTURES);
  assert.equal(plans.replayed + plans.eager, runs);
  assert.equal(plans.plans().length, 0, 'no plan kept for a refused key');
  plans.dispose();
  w.dispose();
});
