/**
 * The small transformer's matrix products on wasm (bench/profile-plan.ts lists them: its replayed
 * training step calls BatchMatMul 39 times), the keyword model's dense gradients and a few larger
 * products (where XNNPACK takes over: MAX_WORK_IN_WASM in batch-mat-mul.ts), each computed three ways in one process, alternated
 * call by call on fresh operands (training multiplies new values every step, so XNNPACK cannot
 * reuse an operand it packed before):
 *
 * - `ours`: batch-mat-mul.c, the stock kernel's bits in WebAssembly SIMD (batchMatMulInWasm);
 * - `path`: what the registered BatchMatMul runs with that kernel switched off
 *   (simdKernelSwitch.batchMatMulInWasm false): XNNPACK after explicit transposes for batch 1 and
 *   for items of at least 2^15 multiply-adds, the stock kernel below that;
 * - `stock`: tfjs-backend-wasm's own BatchMatMul.
 *
 * CPU ms per call (process.cpuUsage), the median of the repetitions; ratios are path / ours and
 * stock / ours (above 1: ours is faster).
 *
 *   node --conditions=neural-diff-source --import tsx bench/batch-mat-mul-shapes.ts [--reps N]
 */
import * as tf from '@tensorflow/tfjs';
import type { TensorInfo } from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { batchMatMulInWasm } from '../src/engine/kernels/batch-mat-mul.ts';
import { simdKernelSwitch } from '../src/engine/kernels/train-kernels-simd.ts';
import { asWasm, runStock, type WasmBackendLike } from '../src/engine/kernels/util.ts';
import { seededRandom } from '../src/train/data.ts';

const args = process.argv.slice(2);
const reps = Number(args.includes('--reps') ? args[args.indexOf('--reps') + 1] : '9');

/** [what, a's shape, b's shape, transposeA, transposeB]: the transformer's (batch 32, 4 heads, 32 tokens, width 64) first. */
const SHAPES: [string, number[], number[], boolean, boolean][] = [
  ['attention scores', [128, 32, 16], [128, 32, 16], false, true],
  ['attention output', [128, 32, 32], [128, 32, 16], false, false],
  ['scores gradient', [128, 32, 16], [128, 32, 16], false, true],
  ['value gradient', [128, 32, 32], [128, 32, 16], true, false],
  ['query gradient', [128, 32, 32], [128, 32, 16], false, false],
  ['key gradient', [128, 32, 32], [128, 32, 16], true, false],
  ['dense forward 64->192', [1024, 64], [64, 192], false, false],
  ['dense forward 64->128', [1024, 64], [64, 128], false, false],
  ['dense forward 128->64', [1024, 128], [128, 64], false, false],
  ['dense forward 64->64', [1024, 64], [64, 64], false, false],
  ['dense input gradient 192->64', [1024, 192], [64, 192], false, true],
  ['dense input gradient 128->64', [1024, 128], [64, 128], false, true],
  ['dense input gradient 64->128', [1024, 64], [128, 64], false, true],
  ['dense input gradient 64->64', [1024, 64], [64, 64], false, true],
  ['dense weight gradient 64x192', [1024, 64], [1024, 192], true, false],
  ['dense weight gradient 64x128', [1024, 64], [1024, 128], true, false],
  ['dense weight gradient 128x64', [1024, 128], [1024, 64], true, false],
  ['dense weight gradient 64x64', [1024, 64], [1024, 64], true, false],
  ['keyword dense input gradient', [32, 256], [1152, 256], false, true],
  ['keyword dense weight gradient', [32, 1152], [32, 256], true, false],
  ['keyword classifier input gradient', [32, 12], [256, 12], false, true],
  ['keyword classifier weight gradient', [32, 256], [32, 12], true, false],
  ['8 items of 256x256x256', [8, 256, 256], [8, 256, 256], false, false],
  ['512x512x512, B transposed', [512, 512], [512, 512], false, true],
  ['512x512x512, A transposed', [512, 512], [512, 512], true, false],
  ['64x2000x1000, B transposed', [64, 1000], [2000, 1000], false, true],
];

type Way = 'ours' | 'path' | 'stock';
const WAYS: Way[] = ['ours', 'path', 'stock'];

function run(way: Way, backend: WasmBackendLike, a: TensorInfo, b: TensorInfo, transposeA: boolean, transposeB: boolean): TensorInfo {
  if (way === 'stock') return runStock('BatchMatMul', backend, { a, b }, { transposeA, transposeB });
  if (way === 'ours') {
    const out = batchMatMulInWasm(backend, a, b, transposeA, transposeB);
    if (out === null) throw new Error('the SIMD kernels do not run here');
    return out;
  }
  simdKernelSwitch.batchMatMulInWasm = false;
  try {
    const out = tf.getKernel('BatchMatMul', 'wasm')!.kernelFunc({ inputs: { a, b }, backend: backend as never, attrs: { transposeA, transposeB } });
    return out as TensorInfo;
  } finally {
    simdKernelSwitch.batchMatMulInWasm = true;
  }
}

const median = (xs: number[]) => xs.slice().sort((x, y) => x - y)[xs.length >> 1];

await initBackend('wasm');
const backend = asWasm(tf.backend());
const random = seededRandom(3);
console.log(`| product | a | b | multiply-adds per item | CPU ms: ours | path | stock | path/ours | stock/ours |`);
console.log('|---|---|---|---:|---:|---:|---:|---:|---:|');
for (const [what, aShape, bShape, transposeA, transposeB] of SHAPES) {
  const values = (shape: number[]) => Float32Array.from({ length: shape.reduce((x, y) => x * y, 1) }, () => random() * 2 - 1);
  const [av, bv] = [values(aShape), values(bShape)];
  const ms: Record<Way, number[]> = { ours: [], path: [], stock: [] };
  for (let r = 0; r < reps + 1; r++) {
    for (const way of r % 2 ? WAYS.slice().reverse() : WAYS) {
      const a = tf.tensor(av, aShape);
      const b = tf.tensor(bv, bShape);
      const start = process.cpuUsage();
      const out = run(way, backend, a, b, transposeA, transposeB);
      const used = process.cpuUsage(start);
      backend.disposeData(out.dataId);
      tf.dispose([a, b]);
      if (r > 0) ms[way].push((used.user + used.system) / 1000); // the first round warms up
    }
  }
  const [m, k] = transposeA ? [aShape.at(-1)!, aShape.at(-2)!] : [aShape.at(-2)!, aShape.at(-1)!];
  const n = transposeB ? bShape.at(-2)! : bShape.at(-1)!;
  const [o, p, s] = WAYS.map((w) => median(ms[w]));
  console.log(`| ${what} | [${aShape}]${transposeA ? 'ᵀ' : ''} | [${bShape}]${transposeB ? 'ᵀ' : ''} | ${m * k * n} | ${o.toFixed(3)} | ${p.toFixed(3)} | ${s.toFixed(3)} | ${(p / o).toFixed(2)}x | ${(s / o).toFixed(2)}x |`);
}
