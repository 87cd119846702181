/**
 * Our side of the small transformer row of bench/train-vs-torch.ts, in its own process: v1.onnx
 * distilled toward v2.onnx (made by bench/torch-transformer.py) through the ONNX program, as
 * `ndiff train --teacher v2.onnx --method full` trains it (trainOnnxDiff: KL of the class
 * probabilities, Adam, every weight tensor).
 *
 *   node --conditions=neural-diff-source --import tsx bench/train-transformer-child.ts DIR THREADS BATCH STEPS BACKEND
 *
 * The trainer computes the teacher's outputs once per dataset, before the first step, where
 * PyTorch's step runs the teacher on each batch: so the teacher's forward pass over the same
 * examples is timed here on its own (batches of BATCH, the same program) and added to the
 * steps' time, and the rate is the examples of the timed steps over both. One warm-up step, then
 * STEPS steps (the time between step ends, wall and process CPU). The rates are those of the steps
 * after the plan's check (replays), with the teacher's pass at its rate per example, as
 * bench/train-step-child.ts times the steps after the capture and PyTorch's rows the steps after
 * its first: the capture (a recorded step and the checked one, each an eager step) is a cost each
 * phase pays once, which a training run of hundreds of steps amortizes. The figures with the
 * capture inside the window are `withCapture`. Prints one JSON line
 * as bench/train-step-child.ts does, with the teacher's share of the wall time and of the CPU time
 * and its CPU ms per sample.
 *
 * The teacher's passes run as the trainer runs them: a compiled forward plan
 * (src/engine/compiled/forward.ts: two passes recorded, the plan checked on the second, replayed
 * from then on; the two warm-up passes hold the capture) unless `NDIFF_BENCH_FORWARD=eager`,
 * which runs them through tfjs' engine as before (and the trainer's teacher rows too).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { ForwardPlans, forwardSwitch } from '../src/engine/compiled/forward.ts';
import { OnnxProgram } from '../src/engine/onnx/executor.ts';
import { trainOnnxDiff } from '../src/train/onnx/train-onnx.ts';

const [dir, threadsArg, batchArg, stepsArg, backendArg = 'wasm'] = process.argv.slice(2);
if (backendArg !== 'wasm' && backendArg !== 'native') throw new Error(`backend must be wasm or native, got ${backendArg}`);
const threads = Number(threadsArg);
const batch = Number(batchArg);
const steps = Number(stepsArg);
await initBackend(backendArg, backendArg === 'native' ? { threads } : {});
const v1 = new Uint8Array(readFileSync(path.join(dir, 'v1.onnx')));
const v2 = new Uint8Array(readFileSync(path.join(dir, 'v2.onnx')));
const all = new Int32Array(readFileSync(path.join(dir, 'distill-tokens.bin')).buffer.slice(0));
const length = 32;
const count = batch * (steps + 1);
if (all.length < count * length) throw new Error(`${dir}/distill-tokens.bin holds ${all.length / length} sequences, ${count} needed`);
const tokens = all.slice(0, count * length);

// The teacher's forward pass over the timed steps' examples, batch by batch.
const forwardMode = process.env.NDIFF_BENCH_FORWARD === 'eager' ? 'eager' : 'compiled';
forwardSwitch.compiled = forwardMode === 'compiled';
const teacher = new OnnxProgram(v2, { source: 'v2.onnx' });
let forwardPath = 'eager (as asked)';
const plans = forwardMode === 'compiled' ? new ForwardPlans('teacher', (m) => (forwardPath = m)) : undefined;
const pass = (f: Record<string, tf.Tensor>) => Object.values(teacher.run(f))[0];
const forward = (from: number) => tf.tidy(() => {
  const feeds = { tokens: tf.tensor2d(tokens.subarray(from * length, (from + batch) * length), [batch, length], 'int32') };
  return (plans ? plans.run(feeds, pass) : pass(feeds)).dataSync();
});
// Warm-up: two passes (a compiled plan's capture and its check).
forward(0);
forward(0);
const cpuTeacher0 = process.cpuUsage();
const teacher0 = performance.now();
for (let s = 1; s <= steps; s++) forward(s * batch);
const teacherMs = performance.now() - teacher0;
const teacherCpu = process.cpuUsage(cpuTeacher0);
// Weights as PyTorch counts its parameters (the export's scalar constants, exponents and epsilons, left out).
const weights = [...teacher.weightValues().values()].reduce((n, v) => n + (v.length > 1 ? v.length : 0), 0);
plans?.dispose();
teacher.dispose();

// Each step's end: wall and process CPU ms; the step whose end is the first after the plan was said ready.
const stamps: number[] = [];
const cpuStamps: number[] = [];
let readyAt: number | undefined;
await trainOnnxDiff(v1, { inputs: { tokens: { values: tokens, shape: [length] } } }, {
  teacher: v2,
  method: 'full',
  // Every weight tensor trains (73,348 weights, PyTorch's parameters); the export's scalar
  // constants (exponents, epsilons, the attention's scale) stay as they are, as the program keeps them.
  budgetBytes: 0,
  epochs: 1,
  batchSize: batch,
  threads,
  validation: 0,
  tune: 'off',
  seed: 1,
  learningRate: 1e-3,
  onProgress: (m) => {
    if (m.startsWith('step: compiled plan')) readyAt ??= stamps.length;
    if (process.env.NDIFF_BENCH_VERBOSE) console.error(m);
  },
  onBatch: () => {
    stamps.push(performance.now());
    const c = process.cpuUsage();
    cpuStamps.push((c.user + c.system) / 1000);
  },
});
const last = stamps.length - 1;
const examples = batch * last;
const stepMs = stamps[last] - stamps[0];
const teacherCpuMs = (teacherCpu.user + teacherCpu.system) / 1000;
// CPU time between the first and the last step's end, as the wall time (not the run's end: the
// payload's encoding and the final measures are not steps).
const cpuMs = cpuStamps[last] - cpuStamps[0] + teacherCpuMs;
// The steps after the plan's check (replays only), the teacher's pass at its rate per example.
const steady = readyAt !== undefined && readyAt < last ? { examples: batch * (last - readyAt), ms: stamps[last] - stamps[readyAt], cpuMs: cpuStamps[last] - cpuStamps[readyAt] } : undefined;
if (process.env.NDIFF_BENCH_VERBOSE) console.error(`CPU ms per step: ${cpuStamps.slice(1).map((t, i) => (t - cpuStamps[i]).toFixed(1)).join(' ')}`);
const withCapture = { samplesPerSecond: examples / ((stepMs + teacherMs) / 1000), cpuMsPerSample: cpuMs / examples, steps: last };
console.log(JSON.stringify({
  // Without a plan (eager, or a fallback) every step is alike: the whole window.
  ...(steady ? {
    samplesPerSecond: steady.examples / ((steady.ms + (teacherMs * steady.examples) / examples) / 1000),
    cpuMsPerSample: (steady.cpuMs + (teacherCpuMs * steady.examples) / examples) / steady.examples,
    steps: last - (readyAt ?? 0),
  } : withCapture),
  withCapture,
  peakRssBytes: process.resourceUsage().maxRSS * 1024,
  weights,
  teacherShare: teacherMs / (stepMs + teacherMs),
  teacherCpuShare: teacherCpuMs / cpuMs,
  teacherCpuMsPerSample: teacherCpuMs / examples,
  forward: forwardPath,
}));
