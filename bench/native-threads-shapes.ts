/**
 * How the native backend's kernels scale with its threads on the keyword model's shapes (batch 64,
 * examples/keyword-spotting/model.ts as tfjs runs it: conv1d as [batch, 1, frames, channels] by a
 * [1, taps, in, out] filter; the dense layers' products and their gradients): every kernel the
 * training step calls into the addon, wall ms per call at 1 thread and at every core, in rounds
 * (1 thread, every core, 1 thread, ...: the pool is restarted between them, outside the timing),
 * medians of the calls; with GFLOP/s at one thread; then the step's short kernels (Adam's step on two
 * layers, the first pool's gradient with Relu's). What a kernel gains from a second thread is the
 * ratio in the last column.
 *
 * `--gap US` waits US microseconds (the JavaScript thread busy, the pool idle) before each call, as a
 * training step's serial work does between its kernels: what a second thread gives when its
 * worker must be ready again after a pause (back to back, the default, it never pauses).
 *
 * `--watch US` adds every core with idle threads that watch for the next call for US microseconds
 * before they sleep (setThreads(n, US); by default they sleep after a few microseconds of
 * spinning), in the same rounds.
 *
 *   node --conditions=neural-diff-source --import tsx bench/native-threads-shapes.ts [--reps N] [--rounds N] [--gap US] [--watch US]
 */
import os from 'node:os';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { nativeAddonStatus, setNativeThreads } from '../src/engine/kernels/native/index.ts';
import { seededRandom } from '../src/train/data.ts';
import { loadNativeAddon } from '../src/engine/kernels/native/loader.ts';

const args = process.argv.slice(2);
const opt = (name: string, fallback: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const reps = Number(opt('--reps', '15'));
const rounds = Number(opt('--rounds', '3'));
const gap = Number(opt('--gap', '0'));
if (!(gap >= 0)) throw new Error(`--gap takes microseconds >= 0, got ${opt('--gap', '0')}`);
/** Keep this thread busy for `us` microseconds (not a sleep: the pool sees what it sees inside a step). */
const busy = (us: number) => {
  const until = performance.now() + us / 1000;
  while (performance.now() < until);
};
const status = nativeAddonStatus();
if (!status.available) throw new Error(`the native addon is not built (${status.reason}): npm run build:native`);
await initBackend('native', { threads: 1 });
const random = seededRandom(5);
const tensor = (shape: number[]) => tf.tensor(Float32Array.from({ length: shape.reduce((a, d) => a * d, 1) }, () => random() * 2 - 1), shape);
const B = 64;

interface Case { label: string; flops: number; run: () => tf.Tensor }
const cases: Case[] = [];
// [name, frames in, channels in, taps, channels out, stride]
const convs: [string, number, number, number, number, number][] = [
  ['conv1', 49, 40, 5, 96, 2],
  ['conv2', 25, 96, 3, 128, 1],
  ['conv3', 12, 128, 3, 160, 1],
  ['conv4', 6, 160, 3, 192, 1],
];
for (const [name, L, CI, KW, CO, s] of convs) {
  const x = tensor([B, 1, L, CI]) as tf.Tensor4D;
  const w = tensor([1, KW, CI, CO]) as tf.Tensor4D;
  const bias = tensor([CO]) as tf.Tensor1D;
  const dy = tensor(tf.conv2d(x, w, [1, s], 'same').shape);
  const flops = 2 * B * (dy.shape[2] as number) * KW * CI * CO;
  cases.push({ label: `${name} forward (bias, relu)`, flops, run: () => tf.fused.conv2d({ x, filter: w, strides: [1, s], pad: 'same', bias, activation: 'relu' }) });
  cases.push({ label: `${name} filter gradient`, flops, run: () => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { strides: [1, s], pad: 'same', dataFormat: 'NHWC', filterShape: w.shape } as never) as tf.Tensor });
  if (name !== 'conv1') cases.push({ label: `${name} input gradient`, flops, run: () => tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: w }, { strides: [1, s], pad: 'same', dataFormat: 'NHWC', inputShape: x.shape } as never) as tf.Tensor });
}
const h = tensor([B, 1152]);
const wh = tensor([1152, 256]);
const dh = tensor([B, 256]);
cases.push({ label: 'hidden dense forward [64,1152]x[1152,256]', flops: 2 * B * 1152 * 256, run: () => tf.matMul(h, wh) });
cases.push({ label: 'hidden dense input gradient', flops: 2 * B * 1152 * 256, run: () => tf.matMul(dh, wh, false, true) });
cases.push({ label: 'hidden dense weight gradient', flops: 2 * B * 1152 * 256, run: () => tf.matMul(h, dh, true, false) });
// The step's short kernels, where a late worker costs most: Adam's step on two layers' weights,
// the first max pool's gradient with Relu's (the addon's own calls, outside tfjs).
const addon = loadNativeAddon();
const adamScalars = Float32Array.of(0.9, 0.1, 0.999, 0.001, 0.1, 0.001, 1e-7, -1e-4);
for (const [name, n] of [['conv2', 3 * 96 * 128], ['hidden', 1152 * 256]] as const) {
  const [w, g, m, v, out] = [0, 1, 2, 3, 4].map(() => Float32Array.from({ length: n }, () => random()));
  cases.push({ label: `Adam's step, ${name} (${n} values)`, flops: 12 * n, run: () => (addon.adamStep(w, g, m, v, out, adamScalars), tf.scalar(0)) });
}
{
  const x = Float32Array.from({ length: B * 25 * 128 }, () => random() * 2 - 1);
  const dy = Float32Array.from({ length: B * 12 * 128 }, () => random());
  const dx = new Float32Array(x.length);
  const g = Int32Array.of(B, 25, 1, 128, 12, 1, 2, 1, 2, 1, 0, 0);
  cases.push({ label: 'pool2 gradient with Relu\'s', flops: 2 * x.length, run: () => (addon.maxPoolGrad(x, dy, dx, g, x), tf.scalar(0)) });
}

const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const cores = os.availableParallelism();
const watch = args.includes('--watch') ? Number(opt('--watch', '0')) : undefined;
if (watch !== undefined && !(Number.isInteger(watch) && watch >= 0)) throw new Error(`--watch takes whole microseconds >= 0, got ${opt('--watch', '')}`);
const ways = [`1`, `${cores}`, ...(watch !== undefined ? [`${cores}:${watch}`] : [])];
const walls = new Map<string, number[]>();
for (let r = 0; r < rounds; r++) {
  for (const threads of ways) {
    setNativeThreads(parseInt(threads, 10));
    addon.setThreads(parseInt(threads, 10), Number(threads.split(':')[1] ?? 0));
    for (const c of cases) {
      for (let i = 0; i < reps + 2; i++) {
        if (gap > 0) busy(gap);
        const t0 = performance.now();
        const out = c.run();
        const t1 = performance.now();
        out.dispose();
        if (i >= 2) {
          const key = `${c.label}|${threads}`;
          walls.set(key, [...(walls.get(key) ?? []), t1 - t0]);
        }
      }
    }
  }
}
console.log(`native kernels on the keyword model's shapes (batch ${B}), wall ms per call, median of ${reps * rounds}${gap > 0 ? `, each after ${gap} us of other work` : ', back to back'}; load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
console.log(`| kernel | 1 thread ms | GFLOP/s | ${cores} threads ms | ${cores}/1 |${watch !== undefined ? ` ${cores} threads watching ${watch} us ms | that /1 |` : ''}`);
console.log(`|---|---:|---:|---:|---:|${watch !== undefined ? '---:|---:|' : ''}`);
const totals = ways.map(() => 0);
for (const c of cases) {
  const m = ways.map((w) => median(walls.get(`${c.label}|${w}`) ?? []));
  m.forEach((v, i) => (totals[i] += v));
  console.log(`| ${c.label} | ${m[0].toFixed(3)} | ${(c.flops / m[0] / 1e6).toFixed(0)} | ${m.slice(1).map((v) => `${v.toFixed(3)} | ${(m[0] / v).toFixed(2)}x`).join(' | ')} |`);
}
console.log(`| all of them | ${totals[0].toFixed(3)} | | ${totals.slice(1).map((v) => `${v.toFixed(3)} | ${(totals[0] / v).toFixed(2)}x`).join(' | ')} |`);
