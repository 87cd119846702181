/**
 * The native backend's element-wise, row and reduction kernels (src/engine/kernels/native/
 * elementwise.c) beside the wasm kernels they stand in for, on the sizes the small transformer's
 * training step runs (batch 32, 32 tokens, d 64, 4 heads, FFN 128) and smaller ones, in one
 * process on the native backend, called as a compiled step calls them (the kernel function
 * directly, no engine): the wasm kernel (what the native backend ran before: its limits set out
 * of reach), then the addon at 1 thread and at 2, interleaved round by round. Wall microseconds a
 * call, the median of the rounds (each round `calls` calls); ratios wasm / native. Used to set
 * `nativeElementwiseLimits` (below them a kernel stays on wasm).
 *
 *   node --conditions=neural-diff-source --import tsx bench/native-elementwise.ts [--rounds N] [--calls N]
 */
import os from 'node:os';
import * as tf from '@tensorflow/tfjs';
import type { TensorInfo } from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { nativeAddonStatus, nativeElementwiseLimits, setNativeThreads } from '../src/engine/kernels/native/index.ts';
import { elementwiseRunners, runElementwise, type ElementwiseProgram } from '../src/engine/kernels/elementwise.ts';
import { SOFTMAX_GRAD } from '../src/engine/kernels/softmax-grad.ts';
import { randomValues } from '../test/helpers/kernel-tests.ts';

const args = process.argv.slice(2);
const opt = (name: string, fallback: number) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : fallback);
const rounds = opt('--rounds', 7);
const calls = opt('--calls', 40);

const status = nativeAddonStatus();
if (!status.available) throw new Error(`the native addon is not built: ${status.reason}`);
await initBackend('native', { threads: 1 });
const backend = tf.backend();

type Case = { kernel: string; shape: string; run: () => TensorInfo | TensorInfo[] };
const cases: Case[] = [];
const keep: tf.Tensor[] = [];
const tensor = (shape: number[], seed: number, positive = false) => {
  const t = tf.tensor(Float32Array.from(randomValues(shape.reduce((a, d) => a * d, 1), seed), (v) => (positive ? Math.abs(v) / 8 : 3 * v)), shape);
  keep.push(t);
  return t;
};
const kernel = (name: string, inputs: Record<string, tf.Tensor>, attrs: Record<string, unknown> = {}) => {
  const k = tf.getKernel(name, 'native');
  if (!k) throw new Error(`no ${name} kernel on native`);
  return () => k.kernelFunc({ inputs: inputs as never, attrs: attrs as never, backend }) as TensorInfo | TensorInfo[];
};

for (const shape of [[1, 16, 64], [4, 32, 32], [8, 32, 64], [32, 32, 64], [32, 32, 128]]) {
  const x = tensor(shape, 1);
  const dy = tensor(shape, 2);
  const s = shape.join('x');
  cases.push({ kernel: 'GELU', shape: s, run: kernel('NeuralDiffGelu', { x }) });
  cases.push({ kernel: 'GELU gradient', shape: s, run: kernel('NeuralDiffGeluGrad', { dy, x }) });
  cases.push({ kernel: 'LayerNorm', shape: s, run: kernel('NeuralDiffLayerNorm', { x }, { epsilon: 1e-5 }) });
  const rstd = tensor([shape[0] * shape[1]], 3, true);
  cases.push({ kernel: 'LayerNorm gradient', shape: s, run: kernel('NeuralDiffLayerNormGrad', { dy, n: x, rstd }) });
  cases.push({ kernel: 'Sum over rows (bias gradient)', shape: s, run: kernel('Sum', { x }, { axis: [0, 1], keepDims: false }) });
  cases.push({ kernel: 'Sum over the first axis', shape: s, run: kernel('Sum', { x }, { axis: [0], keepDims: false }) });
  cases.push({ kernel: 'Add (a residual)', shape: s, run: kernel('Add', { a: x, b: dy }) });
  cases.push({ kernel: 'Multiply by a channel vector', shape: s, run: kernel('Multiply', { a: x, b: tensor([shape[2]], 11) }) });
  cases.push({ kernel: 'Multiply by a [B, 1, C] tensor', shape: s, run: kernel('Multiply', { a: tensor([shape[0], 1, shape[2]], 12), b: x }) });
  cases.push({ kernel: 'Mean over the middle axis (mean pool)', shape: s, run: kernel('Mean', { x }, { axis: [1], keepDims: false }) });
  // A residual add and a scale: two inputs of the output's size, a per-channel bias, a scalar.
  const p: ElementwiseProgram = {
    inputs: ['full', 'channel', 'full', 'scalar'], immediates: [], registers: 2, channels: shape[2],
    code: [{ op: 'add', dst: 5, a: 1, b: 2 }, { op: 'mul', dst: 6, a: 5, b: 4 }, { op: 'add', dst: 0, a: 6, b: 3 }],
  };
  const bias = tensor([shape[2]], 4);
  const scale = tensor([], 5);
  const infos = [x, bias, dy, scale].map((t) => ({ dataId: t.dataId, shape: t.shape, dtype: t.dtype }) as TensorInfo);
  cases.push({ kernel: 'fused chain (add, mul, add)', shape: s, run: () => elementwiseRunners.get('native')?.(backend, p, infos, shape) ?? runElementwise(backend, p, infos, shape) });
}
for (const shape of [[8, 4, 32, 32], [32, 4, 32, 32]]) {
  const logits = tensor(shape, 6);
  const y = tensor(shape, 7, true);
  const dy = tensor(shape, 8);
  const s = shape.join('x');
  cases.push({ kernel: 'Softmax', shape: s, run: kernel('Softmax', { logits }, { dim: 3 }) });
  cases.push({ kernel: 'Softmax gradient', shape: s, run: kernel(SOFTMAX_GRAD, { dy, y }) });
  cases.push({ kernel: 'RealDiv by a scalar (attention scale)', shape: s, run: kernel('RealDiv', { a: logits, b: tensor([], 13, true) }) });
}
for (const [shape, perm] of [[[8, 32, 3, 4, 16], [2, 0, 3, 1, 4]], [[32, 32, 3, 4, 16], [2, 0, 3, 1, 4]], [[32, 4, 32, 16], [0, 2, 1, 3]]] as [number[], number[]][]) {
  const x = tensor(shape, 9);
  cases.push({ kernel: `Transpose [${perm}]`, shape: shape.join('x'), run: kernel('Transpose', { x }, { perm }) });
}

const saved = { ...nativeElementwiseLimits };
const off = Object.fromEntries(Object.keys(saved).map((k) => [k, Number.MAX_SAFE_INTEGER]));
const on = Object.fromEntries(Object.keys(saved).map((k) => [k, 0]));
const ways = [
  { name: 'wasm', limits: off, threads: 1 },
  { name: 'native 1T', limits: on, threads: 1 },
  { name: 'native 2T', limits: on, threads: 2 },
];

/** Wall microseconds a call over `calls` calls. */
function time(c: Case): number {
  const t0 = performance.now();
  for (let i = 0; i < calls; i++) {
    const out = c.run();
    for (const t of Array.isArray(out) ? out : [out]) backend.disposeData(t.dataId);
  }
  return ((performance.now() - t0) * 1000) / calls;
}

const samples = new Map<string, number[]>();
const cpu0 = process.cpuUsage();
for (let r = 0; r < rounds; r++) {
  for (const c of cases) {
    for (const w of ways) {
      Object.assign(nativeElementwiseLimits, w.limits);
      setNativeThreads(w.threads);
      if (r === 0) time(c); // warm: the pool started, the heap grown
      const key = `${c.kernel}|${c.shape}|${w.name}`;
      samples.set(key, [...(samples.get(key) ?? []), time(c)]);
    }
  }
}
Object.assign(nativeElementwiseLimits, saved);
const median = (v: number[]) => [...v].sort((a, b) => a - b)[v.length >> 1];
console.log(`${rounds} rounds of ${calls} calls; load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} at the end; CPU ${(((process.cpuUsage(cpu0).user + process.cpuUsage(cpu0).system) / 1e6)).toFixed(1)} s`);
console.log('| kernel | shape | wasm (us) | native 1 thread (us) | native 2 threads (us) | wasm / native 1T | wasm / native 2T |');
console.log('|---|---|---:|---:|---:|---:|---:|');
for (const c of cases) {
  const [w, n1, n2] = ways.map((way) => median(samples.get(`${c.kernel}|${c.shape}|${way.name}`) as number[]));
  console.log(`| ${c.kernel} | ${c.shape} | ${w.toFixed(1)} | ${n1.toFixed(1)} | ${n2.toFixed(1)} | ${(w / n1).toFixed(2)}x | ${(w / n2).toFixed(2)}x |`);
}
tf.dispose(keep);
setNativeThreads();
