/**
 * The keyword model's convolutions (examples/keyword-spotting/model.ts: four temporal convolutions,
 * as tfjs runs a conv1d: [batch, 1, frames, channels] by a [1, taps, in, out] filter) and a few of
 * MobileNetV2's (224x224, chunks of 8: its stem, pointwise expansions and projections), on wasm,
 * batch 32 for the keyword model. Each kernel (Conv2D, Conv2DBackpropFilter, Conv2DBackpropInput)
 * runs two ways alternated call by call on fresh operands in one process:
 *
 * - `ours`: conv2d.c (simdKernelSwitch.convInWasm on);
 * - `direct`: conv2d.c's direct sums where `ours` runs Winograd's F(2, 3) (3 taps along the width,
 *   stride 1: conv2d-winograd.ts; winogradSwitch off), else the same as `ours`;
 * - `before`: the path with it off: XNNPACK for the forward pass (which packs the filter on every
 *   call with new weights), the column matrix and XNNPACK products for the gradients;
 *
 * and beside them `gemm`: batch-mat-mul.c on the equivalent plain product (positions x taps·in x
 * out, untransposed), a ceiling for what a product of that size reaches in our SIMD here.
 * CPU ms per call (process.cpuUsage), the median of the repetitions, and GFLOP/s (2 flops per
 * multiply-add of the direct sum, padding taps included: Winograd's count as the work it saves). V8 first runs WebAssembly from a quick baseline compile
 * and optimizes a function only once it has run a while (ours and XNNPACK alike: the first ten
 * calls of a kernel ran up to 4x slower): every kernel is called 12 times each way on the first
 * shape before anything is timed.
 *
 *   node --conditions=neural-diff-source --import tsx bench/conv-shapes.ts [--reps N] [--only keyword|mobilenet]
 */
import * as tf from '@tensorflow/tfjs';
import type { NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { batchMatMulInWasm } from '../src/engine/kernels/batch-mat-mul.ts';
import { convShapeOf } from '../src/engine/kernels/conv2d.ts';
import { winogradFits, winogradSwitch } from '../src/engine/kernels/conv2d-winograd.ts';
import { simdKernelSwitch } from '../src/engine/kernels/train-kernels-simd.ts';
import { asWasm } from '../src/engine/kernels/util.ts';
import { seededRandom } from '../src/train/data.ts';

const args = process.argv.slice(2);
const opt = (name: string, fallback: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const reps = Number(opt('--reps', '7'));
const only = opt('--only', 'all');

/** [what, x's shape, filter's shape, strides, padding]. */
type Shape = [string, [number, number, number, number], [number, number, number, number], [number, number], 'same' | 'valid'];
const KEYWORD: Shape[] = [
  ['keyword conv1', [32, 1, 49, 40], [1, 5, 40, 96], [1, 2], 'same'],
  ['keyword conv2', [32, 1, 25, 96], [1, 3, 96, 128], [1, 1], 'same'],
  ['keyword conv3', [32, 1, 12, 128], [1, 3, 128, 160], [1, 1], 'same'],
  ['keyword conv4', [32, 1, 6, 160], [1, 3, 160, 192], [1, 1], 'same'],
];
const MOBILENET: Shape[] = [
  ['MobileNetV2 stem 3x3/2', [8, 224, 224, 3], [3, 3, 3, 32], [2, 2], 'same'],
  ['MobileNetV2 expand 16->96 at 112', [8, 112, 112, 16], [1, 1, 16, 96], [1, 1], 'valid'],
  ['MobileNetV2 project 144->24 at 56', [8, 56, 56, 144], [1, 1, 144, 24], [1, 1], 'valid'],
  ['MobileNetV2 expand 32->192 at 28', [8, 28, 28, 32], [1, 1, 32, 192], [1, 1], 'valid'],
  ['MobileNetV2 expand 64->384 at 14', [8, 14, 14, 64], [1, 1, 64, 384], [1, 1], 'valid'],
  ['MobileNetV2 project 960->160 at 7', [8, 7, 7, 960], [1, 1, 960, 160], [1, 1], 'valid'],
  ['MobileNetV2 head 320->1280 at 7', [8, 7, 7, 320], [1, 1, 320, 1280], [1, 1], 'valid'],
];
const SHAPES = only === 'keyword' ? KEYWORD : only === 'mobilenet' ? MOBILENET : [...KEYWORD, ...MOBILENET];

type Kernel = 'Conv2D' | 'Conv2DBackpropFilter' | 'Conv2DBackpropInput' | 'gemm';
const median = (xs: number[]) => xs.slice().sort((x, y) => x - y)[xs.length >> 1];

await initBackend('wasm');
const backend = asWasm(tf.backend());
const random = seededRandom(5);
const values = (shape: number[]) => Float32Array.from({ length: shape.reduce((x, y) => x * y, 1) }, () => random() * 2 - 1);

let warm = false;
console.log('| convolution | kernel | multiply-adds | CPU ms: ours | direct | before | direct/ours | before/ours | GFLOP/s: ours | before | plain product in batch-mat-mul.c |');
console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const [what, xShape, fShape, strides, pad] of SHAPES) {
  const info = tf.backend_util.computeConv2DInfo(xShape, fShape, strides, 1, pad);
  const P = info.batchSize * info.outHeight * info.outWidth;
  const K = fShape[0] * fShape[1] * fShape[2];
  const N = fShape[3];
  const dyShape = [info.batchSize, info.outHeight, info.outWidth, N];
  const [xv, fv, dyv] = [values(xShape), values(fShape), values(dyShape)];
  const gv = [values([P, K]), values([K, N])];
  const call = (kernel: Kernel): TensorInfo => {
    if (kernel === 'gemm') {
      const [a, b] = [tf.tensor(gv[0], [P, K]), tf.tensor(gv[1], [K, N])];
      const start = process.cpuUsage();
      const out = batchMatMulInWasm(backend, a as unknown as TensorInfo, b as unknown as TensorInfo, false, false);
      const used = process.cpuUsage(start);
      tf.dispose([a, b]);
      if (out === null) throw new Error('the SIMD kernels do not run here');
      times.at(-1)!.push((used.user + used.system) / 1000);
      return out;
    }
    const inputs: Record<string, tf.Tensor> =
      kernel === 'Conv2D' ? { x: tf.tensor(xv, xShape), filter: tf.tensor(fv, fShape) }
        : kernel === 'Conv2DBackpropFilter' ? { x: tf.tensor(xv, xShape), dy: tf.tensor(dyv, dyShape) }
          : { dy: tf.tensor(dyv, dyShape), filter: tf.tensor(fv, fShape) };
    const attrs = { strides, pad, dataFormat: 'NHWC', dilations: [1, 1], filterShape: fShape, inputShape: xShape } as unknown as NamedAttrMap;
    const start = process.cpuUsage();
    const out = tf.getKernel(kernel, 'wasm')!.kernelFunc({ inputs: inputs as never, backend: backend as never, attrs }) as TensorInfo;
    const used = process.cpuUsage(start);
    tf.dispose(Object.values(inputs));
    times.at(-1)!.push((used.user + used.system) / 1000);
    return out;
  };
  let times: number[][] = [];
  if (!warm) {
    for (const kernel of ['gemm', 'Conv2D', 'Conv2DBackpropFilter', 'Conv2DBackpropInput'] as const) {
      for (let r = 0; r < 24; r++) {
        simdKernelSwitch.convInWasm = r % 2 === 0;
        times = [[]];
        backend.disposeData(call(kernel).dataId);
      }
    }
    simdKernelSwitch.convInWasm = true;
    warm = true;
  }
  const gflops = (ms: number) => (2 * P * K * N) / ms / 1e6;
  const gemmMs: number[] = [];
  times = [gemmMs];
  for (let r = 0; r < reps + 1; r++) backend.disposeData(call('gemm').dataId);
  gemmMs.shift();
  for (const kernel of ['Conv2D', 'Conv2DBackpropFilter', 'Conv2DBackpropInput'] as const) {
    const ms = { ours: [] as number[], direct: [] as number[], before: [] as number[] };
    const winograd = winogradFits(convShapeOf(info), kernel === 'Conv2D' ? 'forward' : kernel === 'Conv2DBackpropFilter' ? 'filter' : 'input');
    const ways = (winograd ? ['ours', 'direct', 'before'] : ['ours', 'before']) as (keyof typeof ms)[];
    for (let r = 0; r < reps + 1; r++) {
      for (const way of r % 2 ? ways.slice().reverse() : ways) {
        simdKernelSwitch.convInWasm = way !== 'before';
        winogradSwitch.enabled = way !== 'direct';
        times = [ms[way]];
        backend.disposeData(call(kernel).dataId);
      }
    }
    simdKernelSwitch.convInWasm = true;
    winogradSwitch.enabled = true;
    for (const way of ways) ms[way].shift();
    const [o, b] = [median(ms.ours), median(ms.before)];
    const d = winograd ? median(ms.direct) : o;
    console.log(`| ${what} | ${kernel} | ${P * K * N} | ${o.toFixed(3)} | ${winograd ? d.toFixed(3) : '(same)'} | ${b.toFixed(3)} | ${(d / o).toFixed(2)}x | ${(b / o).toFixed(2)}x | ${gflops(o).toFixed(1)} | ${gflops(b).toFixed(1)} | ${gflops(median(gemmMs)).toFixed(1)} |`);
  }
}
