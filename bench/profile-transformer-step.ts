/**
 * Where the small transformer's distillation step goes, kernel by kernel: tf.profile over a few
 * steps of v1 distilled toward v2 through the ONNX program (bench/torch-transformer.py makes both;
 * bench/train-vs-torch.ts --models transformer runs it first): the student's forward pass, the KL
 * of the class probabilities against the teacher's outputs, the backward pass and Adam over every
 * weight, as trainOnnxDiff's step runs them. Summed by tfjs kernel name, with each kernel's calls
 * per step; then the wall time of a plain step (no profiler) for reference.
 *
 *   node --conditions=neural-diff-source --import tsx bench/profile-transformer-step.ts [DIR] [wasm|native] [BATCH] [STEPS] [--no-fuse] [--compiled]
 *
 * --no-fuse runs every ONNX node as written (no fused LayerNorm or GELU), for comparison.
 * --compiled also captures the same step as a compiled plan (src/engine/compiled/), as training
 * does, twice: with tfjs' own gradients of Softmax and Gather and with ours (one kernel each); it
 * prints each plan's kernels by name (calls per replay, how many were folded at capture), then the
 * CPU time a step of the four (eager or compiled, tfjs' gradients or ours), alternated in rounds
 * in this process.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { adam } from '../src/engine/kernels/adam.ts';
import { simdKernelSwitch } from '../src/engine/kernels/train-kernels-simd.ts';
import { OnnxProgram } from '../src/engine/onnx/executor.ts';
import { CompiledSteps, type StepOutputs } from '../src/engine/compiled/step.ts';

const [dir = '.cache/transformer', backendArg = 'wasm', batchArg = '32', stepsArg = '5'] = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const batch = Number(batchArg);
const steps = Number(stepsArg);
await initBackend(backendArg === 'native' ? 'native' : 'wasm', backendArg === 'native' ? { threads: 1 } : {});
const fuse = !process.argv.includes('--no-fuse');
const student = new OnnxProgram(new Uint8Array(readFileSync(path.join(dir, 'v1.onnx'))), { source: 'v1.onnx', fuse });
const teacher = new OnnxProgram(new Uint8Array(readFileSync(path.join(dir, 'v2.onnx'))), { source: 'v2.onnx' });
const all = new Int32Array(readFileSync(path.join(dir, 'distill-tokens.bin')).buffer.slice(0));
const tokens = tf.tensor2d(all.slice(0, batch * 32), [batch, 32], 'int32');
const target = tf.tidy(() => tf.softmax(Object.values(teacher.run({ tokens }))[0] as tf.Tensor2D));
const vars = student.variables.filter((v) => v.shape.length > 0).map((v) => v.variable);
const opt = adam(1e-3);
const step = () => tf.tidy(() => {
  const { grads } = tf.variableGrads(() => {
    const logp = tf.logSoftmax(Object.values(student.run({ tokens }))[0] as tf.Tensor2D);
    return tf.mean(tf.sum(tf.mul(target, tf.sub(tf.log(tf.add(target, 1e-12)), logp)), 1)) as tf.Scalar;
  }, vars);
  opt.applyGradients(grads as never);
});
step();
const info = await tf.profile(() => {
  for (let i = 0; i < steps; i++) step();
});
const t0 = performance.now();
const c0 = process.cpuUsage();
for (let i = 0; i < steps; i++) step();
const wall = (performance.now() - t0) / steps;
const c = process.cpuUsage(c0);
const cpu = (c.user + c.system) / 1000 / steps;
const byKernel = new Map<string, { ms: number; calls: number }>();
for (const k of info.kernels) {
  const e = byKernel.get(k.name) ?? { ms: 0, calls: 0 };
  e.ms += typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
  e.calls++;
  byKernel.set(k.name, e);
}
const total = [...byKernel.values()].reduce((a, e) => a + e.ms, 0);
const calls = [...byKernel.values()].reduce((a, e) => a + e.calls, 0);
console.log(`transformer (${backendArg}${fuse ? '' : ', unfused'}), batch ${batch}: ${wall.toFixed(1)} ms per step unprofiled (CPU ${cpu.toFixed(1)} ms); kernels ${(total / steps).toFixed(1)} ms per step in ${(calls / steps).toFixed(0)} kernel calls`);
console.log('| kernel | share | ms per step | calls per step |');
console.log('|---|---:|---:|---:|');
for (const [k, e] of [...byKernel].sort((a, b) => b[1].ms - a[1].ms).slice(0, 25)) {
  console.log(`| ${k} | ${((100 * e.ms) / total).toFixed(1)}% | ${(e.ms / steps).toFixed(2)} | ${(e.calls / steps).toFixed(0)} |`);
}

if (process.argv.includes('--compiled')) {
  // Softmax's and the embedding's gradients as tfjs computes them (off) or as our kernels (on).
  const ours = (on: boolean) => Object.assign(simdKernelSwitch, { fuseSoftmaxGrad: on, fuseGatherGrad: on });
  const outputs = (feeds: Record<string, tf.Tensor>): StepOutputs => {
    const { value, grads } = tf.variableGrads(() => {
      const logp = tf.logSoftmax(Object.values(student.run({ tokens: feeds.tokens }))[0] as tf.Tensor2D);
      return tf.mean(tf.sum(tf.mul(target, tf.sub(tf.log(tf.add(target, 1e-12)), logp)), 1)) as tf.Scalar;
    }, vars);
    opt.applyGradients(grads as never);
    return [['loss', value]];
  };
  const variants = [false, true].map((on) => {
    const said: string[] = [];
    const compiled = new CompiledSteps((m) => said.push(m));
    const replay = () => tf.tidy(() => {
      for (const [, t] of compiled.run('transformer', { tokens }, outputs)) t.dataSync();
    });
    const eager = () => tf.tidy(() => {
      for (const [, t] of outputs({ tokens })) t.dataSync();
    });
    ours(on);
    // Two recorded steps, the checked replay, then replays.
    for (let i = 0; i < 4; i++) replay();
    const plan = compiled.plans()[0];
    if (!plan) throw new Error(`the step was not compiled: ${said.join(' | ')}`);
    return { on, said, plan, compiled, replay, eager };
  });
  for (const v of variants) {
    const names = new Map<string, number>();
    for (const n of v.plan.kernelNames()) names.set(n, (names.get(n) ?? 0) + 1);
    console.log(`\n${v.on ? 'our' : 'tfjs\''} Softmax and Gather gradients: ${v.said.join('; ')}`);
    console.log(`compiled plan: ${v.plan.kernelCount} kernel calls per replay (${v.plan.folded} folded at capture, ${v.plan.viewed} reshapes read in place)`);
    console.log(`| kernel | calls per replay |\n|---|---:|\n${[...names].sort((a, b) => b[1] - a[1]).map(([n, c]) => `| ${n} | ${c} |`).join('\n')}`);
  }
  const rounds = 5;
  const runs = variants.flatMap((v) => [
    { name: `eager, ${v.on ? 'ours' : 'tfjs\''}`, on: v.on, run: v.eager, ms: [] as number[] },
    { name: `compiled, ${v.on ? 'ours' : 'tfjs\''}`, on: v.on, run: v.replay, ms: [] as number[] },
  ]);
  for (let r = 0; r < rounds; r++) {
    for (const x of runs) {
      ours(x.on);
      const c0 = process.cpuUsage();
      for (let i = 0; i < steps; i++) x.run();
      const c = process.cpuUsage(c0);
      x.ms.push((c.user + c.system) / 1000 / steps);
    }
  }
  ours(true);
  const median = (v: number[]) => v.slice().sort((a, b) => a - b)[v.length >> 1];
  console.log(`\nCPU ms per step (Softmax and Gather gradients tfjs' or ours), ${rounds} rounds of ${steps} steps, the four alternated:`);
  for (const x of runs) console.log(`- ${x.name}: ${median(x.ms).toFixed(1)} (${x.ms.map((v) => v.toFixed(1)).join(', ')})`);
  const m = runs.map((x) => median(x.ms));
  console.log(`eager tfjs' / eager ours ${(m[0] / m[2]).toFixed(2)}x; compiled tfjs' / compiled ours ${(m[1] / m[3]).toFixed(2)}x; eager tfjs' / compiled ours ${(m[0] / m[3]).toFixed(2)}x`);
  for (const v of variants) v.compiled.dispose();
}
