/**
 * Max pooling and its gradient on the native backend: the addon's kernels (maxpool.c, on its
 * threads) against the wasm backend's (XNNPACK's MaxPool; max-pool-grad.c, WebAssembly SIMD, one
 * thread), alternated call by
 * call in one process on the same operands, and the addon's kernel with Relu's gradient in its
 * pass (what compiled steps run) against the wasm MaxPoolGrad followed by the wasm Relu gradient.
 * Shapes: the keyword model's two pools at batch 64 and a 3x3 stride-2 pool over 56x56x64 images
 * (batch 8). CPU ms per call (process.cpuUsage, every thread of the process) and wall ms, medians
 * of the repetitions, at 1 and at every core.
 *
 *   node --conditions=neural-diff-source --import tsx bench/pool-grad.ts [--reps N]
 */
import os from 'node:os';
import * as tf from '@tensorflow/tfjs';
import type { KernelBackend, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { nativeAddonStatus, setNativeThreads } from '../src/engine/kernels/native/index.ts';
import { MAX_POOL_RELU_GRAD } from '../src/engine/kernels/native/kernels.ts';
import { RELU_GRAD } from '../src/engine/kernels/activation-grad.ts';
import { seededRandom } from '../src/train/data.ts';

const args = process.argv.slice(2);
const reps = Number(args.includes('--reps') ? args[args.indexOf('--reps') + 1] : '41');
const status = nativeAddonStatus();
if (!status.available) throw new Error(`the native addon is not built (${status.reason}): npm run build:native`);
await initBackend('native', { threads: 1 });
const backend = tf.engine().backend as KernelBackend;
const random = seededRandom(3);
const tensor = (shape: number[]) => tf.tensor(Float32Array.from({ length: shape.reduce((a, d) => a * d, 1) }, () => random() * 2 - 1), shape);

type Run = (inputs: Record<string, TensorInfo>, attrs: NamedAttrMap) => TensorInfo;
const kernel = (name: string, backendName: string): Run => {
  const k = tf.getKernel(name, backendName);
  if (!k) throw new Error(`no ${name} kernel on ${backendName}`);
  return (inputs, attrs) => k.kernelFunc({ inputs, attrs, backend }) as TensorInfo;
};
const wasmPool = kernel('MaxPoolGrad', 'wasm');
const wasmRelu = kernel(RELU_GRAD, 'wasm');
const nativePool = kernel('MaxPoolGrad', 'native');
const nativeFused = kernel(MAX_POOL_RELU_GRAD, 'native');
const wasmForward = kernel('MaxPool', 'wasm');
const nativeForward = kernel('MaxPool', 'native');

const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
/** CPU and wall ms of each way, alternated call by call. */
function time(ways: (() => TensorInfo[])[]): { cpu: number; wall: number }[] {
  const cpu: number[][] = ways.map(() => []);
  const wall: number[][] = ways.map(() => []);
  for (let r = 0; r < reps + 3; r++) {
    ways.forEach((way, i) => {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      const outs = way();
      const t1 = performance.now();
      const c = process.cpuUsage(c0);
      for (const o of outs) backend.disposeData(o.dataId);
      if (r >= 3) {
        cpu[i].push((c.user + c.system) / 1000);
        wall[i].push(t1 - t0);
      }
    });
  }
  return ways.map((_, i) => ({ cpu: median(cpu[i]), wall: median(wall[i]) }));
}

const shapes: [string, number[], [number, number], [number, number], 'same' | 'valid'][] = [
  ['keyword pool2 [64,25,1,128] 2x1', [64, 25, 1, 128], [2, 1], [2, 1], 'valid'],
  ['keyword pool3 [64,12,1,160] 2x1', [64, 12, 1, 160], [2, 1], [2, 1], 'valid'],
  ['[8,56,56,64] 3x3 stride 2 same', [8, 56, 56, 64], [3, 3], [2, 2], 'same'],
];
console.log(`max pooling's gradient, native addon against wasm; median of ${reps} calls each, alternated; load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
console.log('| shape | threads | wasm MaxPool CPU ms (wall) | native | wasm/native CPU, wall | wasm MaxPoolGrad | native | wasm/native | wasm MaxPoolGrad + Relu gradient | native fused | wasm/native |');
console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const threads of [1, os.availableParallelism()]) {
  setNativeThreads(threads);
  for (const [label, shape, k, s, pad] of shapes) {
    const x = tensor(shape);
    const y = tf.maxPool(x as tf.Tensor4D, k, s, pad);
    const dy = tensor(y.shape);
    const rx = tensor(shape);
    const attrs = { filterSize: k, strides: s, pad } as unknown as NamedAttrMap;
    const pool = { dy, input: x, output: y } as unknown as Record<string, TensorInfo>;
    const [wf, nfw, w, n, wr, nf] = time([
      () => [wasmForward({ x } as unknown as Record<string, TensorInfo>, attrs)],
      () => [nativeForward({ x } as unknown as Record<string, TensorInfo>, attrs)],
      () => [wasmPool(pool, attrs)],
      () => [nativePool(pool, attrs)],
      () => {
        const g = wasmPool(pool, attrs);
        const out = wasmRelu({ dy: g, x: rx } as unknown as Record<string, TensorInfo>, {});
        return [g, out];
      },
      () => [nativeFused({ ...pool, x: rx } as unknown as Record<string, TensorInfo>, attrs)],
    ]);
    const f = (t: { cpu: number; wall: number }) => `${t.cpu.toFixed(3)} (${t.wall.toFixed(3)})`;
    console.log(`| ${label} | ${threads} | ${f(wf)} | ${f(nfw)} | ${(wf.cpu / nfw.cpu).toFixed(2)}x, ${(wf.wall / nfw.wall).toFixed(2)}x | ${f(w)} | ${f(n)} | ${(w.cpu / n.cpu).toFixed(2)}x, ${(w.wall / n.wall).toFixed(2)}x | ${f(wr)} | ${f(nf)} | ${(wr.cpu / nf.cpu).toFixed(2)}x, ${(wr.wall / nf.wall).toFixed(2)}x |`);
    tf.dispose([x, y, dy, rx]);
  }
}
