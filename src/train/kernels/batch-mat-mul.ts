/**
 * BatchMatMul and _FusedMatMul for wasm that always reach XNNPACK's fully-connected path.
 *
 * The stock C++ kernel uses XNNPACK only when neither operand is transposed and the batch is 1;
 * anything else falls to a naive triple loop with strided reads. Every backward pass of a dense
 * layer multiplies by a transposed operand (dx = dy·Wᵀ, dW = xᵀ·dy), so training ran on the slow
 * loop. Transposing the operand explicitly (a cheap XNNPACK transpose, O(n²)) and then multiplying
 * untransposed (O(n³)) is 10-20x faster at 512x512.
 */
import * as tf from '@tensorflow/tfjs';
import type { KernelConfig, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';
import {
  asWasm,
  dispose,
  f32Index,
  heapF32,
  runStock,
  sizeOf,
  sliceCopy,
  stockKernel,
  transpose,
  view,
  WASM,
  type WasmBackendLike,
} from './util.ts';

/** Below this many multiply-adds per batch item, the per-item fast path costs more than it saves. */
const MIN_WORK_PER_ITEM = 1 << 15;

interface MatMulShapes {
  batchA: number;
  batchB: number;
  batch: number;
  m: number;
  k: number;
  n: number;
  outShape: number[];
}

function matMulShapes(a: TensorInfo, b: TensorInfo, transposeA: boolean, transposeB: boolean): MatMulShapes {
  const ra = a.shape.length;
  const rb = b.shape.length;
  const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
  const k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
  const kB = transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
  const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
  if (k !== kB) {
    throw new Error(
      `matMul: inner dimensions ${k} and ${kB} of shapes [${a.shape}] and [${b.shape}] ` +
        `(transposeA=${transposeA}, transposeB=${transposeB}) differ`,
    );
  }
  const outer = tf.backend_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const batchA = sizeOf(a.shape.slice(0, -2));
  const batchB = sizeOf(b.shape.slice(0, -2));
  return { batchA, batchB, batch: Math.max(batchA, batchB), m, k, n, outShape: [...outer, m, n] };
}

/** `x` as a rank-3 untransposed operand [batch, rows, cols]; a new tensor when a transpose was needed. */
function untransposed(
  backend: WasmBackendLike,
  x: TensorInfo,
  batch: number,
  rows: number,
  cols: number,
  isTransposed: boolean,
): { t: TensorInfo; owned: boolean } {
  if (!isTransposed) return { t: view(x, [batch, rows, cols]), owned: false };
  return { t: transpose(backend, view(x, [batch, cols, rows]), [0, 2, 1]), owned: true };
}

/**
 * Multiply untransposed rank-3 operands, one XNNPACK call per batch item when there is more than
 * one (XNNPACK's path in the stock kernel takes batch 1 only). `extra` carries the fused inputs.
 */
function multiplyBatched(
  backend: WasmBackendLike,
  kernel: 'BatchMatMul' | '_FusedMatMul',
  a3: TensorInfo,
  b3: TensorInfo,
  s: MatMulShapes,
  extraInputs: Record<string, TensorInfo>,
  attrs: NamedAttrMap,
): TensorInfo {
  const plainAttrs = { ...attrs, transposeA: false, transposeB: false };
  if (s.batch === 1) {
    return runStock(kernel, backend, { a: a3, b: b3, ...extraInputs }, plainAttrs);
  }
  const out = backend.makeOutput([s.batch, s.m, s.n], 'float32');
  const oSize = s.m * s.n;
  for (let i = 0; i < s.batch; i++) {
    const aItem = s.batchA === 1 ? a3 : sliceCopy(backend, a3, i * s.m * s.k, [1, s.m, s.k]);
    const bItem = s.batchB === 1 ? b3 : sliceCopy(backend, b3, i * s.k * s.n, [1, s.k, s.n]);
    const r = runStock(kernel, backend, { a: aItem, b: bItem, ...extraInputs }, plainAttrs);
    const heap = heapF32(backend);
    const from = f32Index(backend, r);
    heap.copyWithin(f32Index(backend, out) + i * oSize, from, from + oSize);
    dispose(backend, r);
    if (aItem !== a3) dispose(backend, aItem);
    if (bItem !== b3) dispose(backend, bItem);
  }
  return out;
}

function fastMatMul(
  kernel: 'BatchMatMul' | '_FusedMatMul',
  args: { inputs: Record<string, TensorInfo | undefined>; backend: unknown; attrs?: NamedAttrMap },
): TensorInfo {
  const backend = asWasm(args.backend);
  const attrs = args.attrs ?? {};
  const { a, b, ...rest } = args.inputs;
  if (a === undefined || b === undefined) throw new Error(`${kernel}: inputs a and b are required`);
  const transposeA = attrs.transposeA === true;
  const transposeB = attrs.transposeB === true;
  const extra: Record<string, TensorInfo> = {};
  for (const [name, t] of Object.entries(rest)) if (t != null) extra[name] = t;
  const s = matMulShapes(a, b, transposeA, transposeB);
  const slowIsFine = s.batch > 1 && s.m * s.k * s.n < MIN_WORK_PER_ITEM;
  if ((!transposeA && !transposeB && s.batch === 1) || slowIsFine || a.dtype !== 'float32' || b.dtype !== 'float32') {
    const r = runStock(kernel, backend, { a, b, ...extra }, attrs);
    return { ...r, shape: s.outShape };
  }
  const A = untransposed(backend, a, s.batchA, s.m, s.k, transposeA);
  const B = untransposed(backend, b, s.batchB, s.k, s.n, transposeB);
  const out = multiplyBatched(backend, kernel, A.t, B.t, s, extra, attrs);
  if (A.owned) dispose(backend, A.t);
  if (B.owned) dispose(backend, B.t);
  return { ...out, shape: s.outShape };
}

/** BatchMatMul for wasm: explicit transposes, then XNNPACK per batch item. */
export function batchMatMulConfig(): KernelConfig {
  const stock = stockKernel('BatchMatMul');
  return {
    kernelName: 'BatchMatMul',
    backendName: WASM,
    setupFunc: stock.setupFunc,
    kernelFunc: (args) => fastMatMul('BatchMatMul', args as Parameters<typeof fastMatMul>[1]),
  };
}

/** _FusedMatMul for wasm: same fix; bias, activation and PReLU weights pass through. */
export function fusedMatMulConfig(): KernelConfig {
  const stock = stockKernel('_FusedMatMul');
  return {
    kernelName: '_FusedMatMul',
    backendName: WASM,
    setupFunc: stock.setupFunc,
    kernelFunc: (args) => fastMatMul('_FusedMatMul', args as Parameters<typeof fastMatMul>[1]),
  };
}
