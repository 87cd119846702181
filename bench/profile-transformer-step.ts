/**
 * Where the small transformer's distillation step goes, kernel by kernel: tf.profile over a few
 * steps of v1 distilled toward v2 through the ONNX program (bench/torch-transformer.py makes both;
 * bench/train-vs-torch.ts --models transformer runs it first): the student's forward pass, the KL
 * of the class probabilities against the teacher's outputs, the backward pass and Adam over every
 * weight, as trainOnnxDiff's step runs them. Summed by tfjs kernel name, with each kernel's calls
 * per step; then the wall time of a plain step (no profiler) for reference.
 *
 *   node --conditions=neural-diff-source --import tsx bench/profile-transformer-step.ts [DIR] [wasm|native] [BATCH] [STEPS] [--no-fuse]
 *
 * --no-fuse runs every ONNX node as written (no fused LayerNorm or GELU), for comparison.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/train/backend.ts';
import { adam } from '../src/train/kernels/adam.ts';
import { OnnxProgram } from '../src/train/onnx/executor.ts';

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
