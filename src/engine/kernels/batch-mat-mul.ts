/**
 * BatchMatMul and _FusedMatMul for wasm without the stock kernel's naive loop.
 *
 * The stock C++ kernel uses XNNPACK only when neither operand is transposed and the batch is 1;
 * anything else falls to a naive triple loop with strided reads. Every backward pass of a dense
 * layer multiplies by a transposed operand (dx = dy·Wᵀ, dW = xᵀ·dy), and attention multiplies
 * batches of small matrices, so training ran on the slow loop. Those products run in
 * batch-mat-mul.c instead: the same loop's bits, in SIMD register tiles, 9-16x faster than that
 * loop on the transformer's shapes. Products too large for it (more than {@link MAX_WORK_IN_WASM}
 * multiply-adds an item) are transposed explicitly (a cheap XNNPACK transpose, O(n²)) and
 * multiplied untransposed by XNNPACK (O(n³)), 10-20x faster than the loop at 512x512, with
 * XNNPACK's bits. Untransposed products of one item keep the stock kernel (XNNPACK).
 */
import * as tf from '@tensorflow/tfjs';
import type { KernelConfig, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';
import { UsageError } from '../../core/errors.ts';
import { simdKernelSwitch, trainKernels } from './train-kernels-simd.ts';
import {
  asWasm,
  offsetOf,
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

/** Below this many multiply-adds per batch item, the per-item XNNPACK path costs more than it saves. */
const MIN_WORK_PER_ITEM = 1 << 15;

/**
 * Up to this many multiply-adds per item, batch-mat-mul.c beats transposes and XNNPACK (which
 * packs its second operand afresh on every call with new values, every training step): 1.2-4.6x
 * on the small transformer's dense gradients (up to 1.3·10^7 an item), 1.3-4x on the keyword
 * model's, 1.2-3.2x on 8 items of 256x256x256; at 512x512x512 and 64x2000x1000 0.73-2.8x over
 * four runs, XNNPACK ahead in some (bench/batch-mat-mul-shapes.ts). Larger products keep XNNPACK.
 */
const MAX_WORK_IN_WASM = 1 << 24;

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
  // The output's items (not the larger operand's: an operand of no items against one of one item makes none).
  return { batchA, batchB, batch: sizeOf(outer), m, k, n, outShape: [...outer, m, n] };
}

/**
 * The products pair batch items one to one, an operand of one item broadcast: each operand's
 * batch is the output's or 1. Batch shapes of equal size that broadcast to a larger one
 * ([2,1] against [1,2]: 4 products) would leave output items unwritten.
 * @throws UsageError for any other pair of batch shapes.
 */
function checkBatches(kernel: string, a: TensorInfo, b: TensorInfo, s: MatMulShapes): void {
  if ((s.batchA === s.batch || s.batchA === 1) && (s.batchB === s.batch || s.batchB === 1)) return;
  throw new UsageError(
    `${kernel}: expected batch dimensions that are equal or one of them 1, found [${a.shape.slice(0, -2)}] and [${b.shape.slice(0, -2)}]: ` +
      'broadcast the operands to one batch shape first (tf.broadcastTo)',
    { aShape: a.shape, bShape: b.shape },
  );
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
  // tfjs' kernels (cpu and wasm alike) index batch items modulo each operand's batch, which is
  // only right when the batches are equal or one is 1; refuse rather than return wrong numbers.
  checkBatches(kernel, a, b, s);
  if (kernel === 'BatchMatMul' && (s.batch > 1 || transposeA || transposeB) && s.m * s.k * s.n <= MAX_WORK_IN_WASM && a.dtype === 'float32' && b.dtype === 'float32') {
    const out = batchMatMulInWasm(backend, a, b, transposeA, transposeB);
    if (out !== null) return out;
  }
  const fixable =
    s.m * s.k * s.n > 0 &&
    a.dtype === 'float32' &&
    b.dtype === 'float32' &&
    // Per-item splitting of a fused op would have to split PReLU weights too; batched fused
    // matmuls do not occur in training dense layers, so they keep the stock path.
    (kernel === 'BatchMatMul' || s.batch === 1) &&
    !(s.batch > 1 && s.m * s.k * s.n < MIN_WORK_PER_ITEM);
  if (
    fixable &&
    kernel === 'BatchMatMul' &&
    s.batch === 1 &&
    !packedBefore(b, transposeB) &&
    swappedIsCheaper(s, transposeA, transposeB)
  ) {
    return { ...multiplySwapped(backend, a, b, s, transposeA, transposeB), shape: s.outShape };
  }
  if (!fixable || (!transposeA && !transposeB && s.batch === 1)) {
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

/**
 * op(A)·op(B) for every batch item in one call of batch-mat-mul.c, with the stock kernel's bits;
 * where SIMD cannot run (or `simdKernelSwitch.enabled` is off), the stock kernel itself (the same
 * bits); null when `simdKernelSwitch.batchMatMulInWasm` is off (the caller then takes the paths
 * from before the kernel). Float32 operands whose batches are equal or 1.
 */
export function batchMatMulInWasm(backend: WasmBackendLike, a: TensorInfo, b: TensorInfo, transposeA: boolean, transposeB: boolean): TensorInfo | null {
  const s = matMulShapes(a, b, transposeA, transposeB);
  checkBatches('BatchMatMul', a, b, s);
  if (!simdKernelSwitch.batchMatMulInWasm) return null;
  const kernels = simdKernelSwitch.enabled ? trainKernels(backend) : null;
  if (kernels === null) {
    // No SIMD here (or the SIMD kernels switched off): the stock kernel, the same bits, slower.
    const r = runStock('BatchMatMul', backend, { a, b }, { transposeA, transposeB });
    return { ...r, shape: s.outShape };
  }
  const out = backend.makeOutput(s.outShape, 'float32');
  // Scratch for the transposed B's copy, or for op(A)ᵀ and Cᵀ (batch-mat-mul.c), freed after the call.
  const pack = transposeB ? backend.makeOutput([Math.max(s.k * s.n, s.k * s.m + s.m * s.n)], 'float32') : null;
  kernels.batch_matmul(
    offsetOf(backend, a), s.batchA === 1 ? 0 : s.m * s.k,
    offsetOf(backend, b), s.batchB === 1 ? 0 : s.k * s.n,
    offsetOf(backend, out), s.batch, s.m, s.n, s.k, transposeA ? 1 : 0, transposeB ? 1 : 0,
    pack === null ? 0 : offsetOf(backend, pack),
  );
  if (pack !== null) dispose(backend, pack);
  return out;
}

/** The stock kernel's block along the shared dimension (kBlockSize in batch_mat_mul_impl.cc). */
export const STOCK_BLOCK = 48;

/**
 * The scalar twin of batch-mat-mul.c, and what both compute: the stock wasm BatchMatMul's order
 * of float32 operations. Each output sums the shared dimension in blocks of {@link STOCK_BLOCK},
 * each block from 0 in order, and adds the block sums in order to 0. `a` holds batchA items of
 * op(A) (m x k, stored k x m when transposeA), `b` batchB items of op(B) (k x n, stored n x k when
 * transposeB); a batch of 1 is broadcast. Writes batch x m x n values to `c`.
 */
export function batchMatMulReference(
  a: Float32Array, b: Float32Array, c: Float32Array,
  batchA: number, batchB: number, m: number, k: number, n: number, transposeA: boolean, transposeB: boolean,
): void {
  const f = Math.fround;
  const batch = Math.max(batchA, batchB);
  for (let t = 0; t < batch; t++) {
    const ao = batchA === 1 ? 0 : t * m * k;
    const bo = batchB === 1 ? 0 : t * k * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let acc = 0;
        for (let p0 = 0; p0 < k; p0 += STOCK_BLOCK) {
          let sum = 0;
          for (let p = p0; p < Math.min(k, p0 + STOCK_BLOCK); p++) {
            sum = f(sum + f(a[ao + (transposeA ? p * m + i : i * k + p)] * b[bo + (transposeB ? j * k + p : p * n + j)]));
          }
          acc = f(acc + sum);
        }
        c[t * m * n + i * n + j] = acc;
      }
    }
  }
}

/**
 * Relative cost of XNNPACK packing its second operand, per element, against one transpose pass
 * (measured in this build: packing a fresh 2000x1000 operand took ~25 ms, transposing it ~4.5 ms).
 */
const PACK_COST = 5;

/** Skip the swapped form unless it saves at least this many element passes (3 extra kernel calls). */
const MIN_SAVING = 1 << 14;

/**
 * XNNPACK packs its second operand on every call with a new tensor, which is every training step
 * since weights change each step, and packing is several times dearer than a transpose. C =
 * op(A)·op(B) can be computed directly (transpose the transposed operands, pack op(B): K·N) or as
 * Cᵀ = op(B)ᵀ·op(A)ᵀ and a transpose of C (pack op(A)ᵀ: K·M, plus M·N). With a small batch M, the
 * second form keeps the big weight matrix out of the packing, e.g. for a dense layer's forward
 * y = x·W and its dx = dy·Wᵀ: about 2.5x and 2x faster at 64x2000x1000.
 */
function swappedIsCheaper(s: MatMulShapes, transposeA: boolean, transposeB: boolean): boolean {
  const direct = (transposeA ? s.m * s.k : 0) + (transposeB ? s.k * s.n : 0) + PACK_COST * s.k * s.n;
  const swapped = (transposeB ? 0 : s.k * s.n) + (transposeA ? 0 : s.m * s.k) + PACK_COST * s.k * s.m + s.m * s.n;
  return swapped + MIN_SAVING < direct;
}

/**
 * Data of `b` operands met before, untransposed. XNNPACK keeps the packed form of the second
 * operand for as long as the tensor lives, so a weight multiplied again (evaluation with fixed
 * weights) is cheapest on the direct path; on first sight we cannot know, and assume a fresh
 * training-step weight. The second use of the same data then packs once and reuses it.
 */
const seenAsB = new WeakSet<object>();

function packedBefore(b: TensorInfo, transposeB: boolean): boolean {
  if (transposeB) return false;
  if (seenAsB.has(b.dataId)) return true;
  seenAsB.add(b.dataId);
  return false;
}

function multiplySwapped(
  backend: WasmBackendLike,
  a: TensorInfo,
  b: TensorInfo,
  s: MatMulShapes,
  transposeA: boolean,
  transposeB: boolean,
): TensorInfo {
  // op(B)ᵀ is b itself when transposeB, and op(A)ᵀ is a itself when transposeA.
  const left = untransposed(backend, b, 1, s.n, s.k, !transposeB);
  const right = untransposed(backend, a, 1, s.k, s.m, !transposeA);
  const cT = runStock('BatchMatMul', backend, { a: left.t, b: right.t }, { transposeA: false, transposeB: false });
  if (left.owned) dispose(backend, left.t);
  if (right.owned) dispose(backend, right.t);
  const c = transpose(backend, view(cT, [1, s.n, s.m]), [0, 2, 1]);
  dispose(backend, cT);
  return c;
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
