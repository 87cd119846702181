/**
 * Loader of the trainer's SIMD kernels (depthwise.c, activation-grad.c, batch-norm-grad.c, max-pool-grad.c, sum.c, adam.c, transformer.c,
 * softmax-gather-grad.c, elementwise.c, transpose.c, batch-mat-mul.c, conv2d.c; built into train-kernels-wasm.ts by scripts/build-train-kernels.ts). The module imports the tfjs wasm
 * backend's own `WebAssembly.Memory` (the emscripten module's `asm.memory`), so its functions take
 * the byte offsets of tensors the backend allocated and work on them in place: no copies in or out,
 * and scratch space comes from the backend (`makeOutput`). One instance per backend memory (each
 * worker thread has its own backend, hence its own).
 *
 * Nothing here holds a view of the heap: the kernels get offsets, so a memory that grows between
 * two calls needs no care.
 */
import { fromHex } from '../../core/hex.ts';
import { TRAIN_KERNELS_WASM } from './train-kernels-wasm.ts';
import type { WasmBackendLike } from './util.ts';

/** The functions the module exports (pointers are byte offsets in the backend's memory). */
export interface TrainKernelExports {
  depthwise_filter_grad(
    x: number, dy: number, acc: number, dw: number,
    B: number, H: number, W: number, C: number, OH: number, OW: number, KH: number, KW: number,
    sh: number, sw: number, pt: number, pl: number, M: number,
  ): void;
  depthwise_input_grad(
    dy: number, w: number, dx: number,
    B: number, H: number, W: number, C: number, OH: number, OW: number, KH: number, KW: number,
    sh: number, sw: number, pt: number, pl: number, M: number,
  ): void;
  relu_grad(dy: number, x: number, dx: number, n: number): void;
  relu6_grad(dy: number, x: number, dx: number, n: number): void;
  clip_grad(dy: number, x: number, dx: number, n: number, lo: number, hi: number): void;
  bn_input_grad(dy: number, r: number, scale: number, dx: number, P: number, C: number): void;
  bn_scale_grad(dy: number, x: number, mean: number, r: number, out: number, P: number, C: number): void;
  channel_sum(dy: number, out: number, P: number, C: number): void;
  max_pool_grad(
    x: number, dy: number, dx: number,
    B: number, H: number, W: number, C: number, OH: number, OW: number, KH: number, KW: number,
    sh: number, sw: number, pt: number, pl: number,
  ): void;
  adam_step(
    x: number, g: number, m: number, v: number, xo: number, mo: number, vo: number, n: number,
    b1: number, nb1: number, b2: number, nb2: number, c1: number, c2: number, eps: number, nlr: number,
  ): void;
  gelu(x: number, y: number, n: number): void;
  gelu_grad(dy: number, x: number, dx: number, n: number): void;
  layer_norm(x: number, out: number, rstd: number, rows: number, width: number, eps: number): void;
  layer_norm_grad(dy: number, n: number, rstd: number, dx: number, rows: number, width: number): void;
  softmax_grad(dy: number, y: number, dx: number, rows: number, width: number): void;
  /** `acc`: scratch for rows x inner float64 values. */
  gather_grad(dy: number, ids: number, acc: number, dx: number, n: number, inner: number, rows: number): void;
  /** A fused element-wise program (elementwise.ts): instructions, operand table, output size, block length. */
  elementwise(prog: number, count: number, table: number, n: number, block: number): void;
  /** `geo`: rank, sizes and input strides per output axis, then room for rank - 2 ints. */
  transpose32(x: number, out: number, geo: number, count: number): void;
  /**
   * Batched products with the stock BatchMatMul's bits (batch-mat-mul.c). Strides and sizes in
   * elements, pointers in bytes; `pack`: scratch for max(k·n, k·m + m·n) floats when `transB`
   * (else unused).
   */
  batch_matmul(a: number, aStride: number, b: number, bStride: number, c: number, batch: number, m: number, n: number, k: number, transA: number, transB: number, pack: number): void;
  /** Convolutions (conv2d.c, conv2d.ts): `ind` an indirection table of P·T row addresses, `zero` a row of zeros. */
  conv_indirection(
    x: number, zero: number, ind: number, B: number, H: number, W: number, C: number, OH: number, OW: number,
    KH: number, KW: number, sh: number, sw: number, dh: number, dw: number, pt: number, pl: number,
  ): void;
  conv_indirection_grad(
    dy: number, zero: number, ind: number, B: number, H: number, W: number, CO: number, OH: number, OW: number,
    KH: number, KW: number, sh: number, sw: number, pt: number, pl: number,
  ): void;
  conv_gather_gemm(ind: number, P: number, T: number, C: number, w: number, N: number, out: number, bias: number, act: number): void;
  conv_filter_per_tap_transpose(w: number, wt: number, T: number, C: number, N: number): void;
  conv_filter_grad(ind: number, P: number, T: number, C: number, dy: number, N: number, dw: number, accumulate: number): void;
  /** Winograd's F(2, 3) along the width (conv2d.c): input, filter and output transforms. */
  winograd_input(x: number, U: number, rows: number, W: number, C: number, OW: number, pl: number): void;
  winograd_filter(g: number, G: number, C: number, N: number, flip: number): void;
  winograd_output(M: number, y: number, bias: number, act: number, rows: number, OW: number, N: number): void;
  winograd_dy(dy: number, V: number, rows: number, OW: number, N: number): void;
  winograd_filter_grad(Wt: number, dw: number, n: number): void;
  /** Winograd's F(4, 3): the same transforms for tiles of 4 outputs (6 products). */
  winograd4_input(x: number, U: number, rows: number, W: number, C: number, OW: number, pl: number): void;
  winograd4_filter(g: number, G: number, C: number, N: number, flip: number): void;
  winograd4_output(M: number, y: number, bias: number, act: number, rows: number, OW: number, N: number): void;
  winograd4_dy(dy: number, V: number, rows: number, OW: number, N: number): void;
  winograd4_filter_grad(Wt: number, dw: number, n: number): void;
  /** 1 when all n floats at p are finite, else 0 (conv2d.c). */
  all_finite(p: number, n: number): number;
}

/** The emscripten module's exports, where tfjs-backend-wasm 4.22 keeps its memory. */
interface EmscriptenAsm {
  asm?: { memory?: unknown };
}

let compiled: WebAssembly.Module | null | undefined;
/** Why the module could not be compiled here (no WebAssembly SIMD), once it was tried. */
let compileError: string | null = null;
const instances = new WeakMap<WebAssembly.Memory, TrainKernelExports>();

/** The backend's memory, or null if this tfjs-backend-wasm does not expose it where 4.22 does. */
export function backendMemory(backend: WasmBackendLike): WebAssembly.Memory | null {
  const memory = (backend.wasm as unknown as EmscriptenAsm).asm?.memory;
  return memory instanceof WebAssembly.Memory && memory.buffer === backend.wasm.HEAPU8.buffer ? memory : null;
}

/**
 * The kernels instantiated on `backend`'s memory, or null when they cannot run here (a runtime
 * without WebAssembly SIMD, or a backend whose memory is not reachable); callers then run the
 * JavaScript twins, which give the same bits.
 */
export function trainKernels(backend: WasmBackendLike): TrainKernelExports | null {
  const memory = backendMemory(backend);
  if (memory === null) return null;
  const known = instances.get(memory);
  if (known !== undefined) return known;
  if (compiled === undefined) {
    try {
      compiled = new WebAssembly.Module(fromHex(TRAIN_KERNELS_WASM));
    } catch (e) {
      compiled = null;
      compileError = e instanceof Error ? e.message : String(e);
    }
  }
  if (compiled === null) return null;
  const instance = new WebAssembly.Instance(compiled, { env: { memory } });
  const kernels = instance.exports as unknown as TrainKernelExports;
  instances.set(memory, kernels);
  return kernels;
}

/** Why {@link trainKernels} returns null on this runtime, if it does (for diagnostics and tests). */
export function trainKernelsUnavailable(backend: WasmBackendLike): string | null {
  if (backendMemory(backend) === null) return 'the wasm backend does not expose its WebAssembly.Memory (asm.memory)';
  if (trainKernels(backend) === null) return `the SIMD module does not compile here: ${compileError ?? 'unknown error'}`;
  return null;
}

/**
 * Tests and benchmarks switch these: `enabled` false runs the JavaScript twins instead of the SIMD
 * kernels (same bits); `fuseActivationGrads` false gives Relu, Relu6 and ClipByValue tfjs' own
 * gradients back (activation-grad.ts), as before the kernels existed; `fuseBatchNormGrads` false
 * gives the batch norm's dx, dscale and doffset as tfjs ops (batch-norm-grad.ts); `fuseSums` false
 * gives Sum over the leading axes back to the stock kernel (sum.ts); `fuseAdam` false gives the
 * trainer tfjs' own Adam (adam.ts); `fuseSoftmaxGrad` and `fuseGatherGrad` false give Softmax and
 * Gather tfjs' own gradients back (softmax-grad.ts, gather-grad.ts); `transposeInWasm` false
 * copies transposes in JavaScript (transpose.ts); `gatherRows` false gives GatherV2 back to the
 * stock kernel (gather.ts), `splitInMemory` false SplitV (slice.ts); `batchMatMulInWasm` false runs
 * batched and transposed products as before batch-mat-mul.c: small batch items on the stock
 * BatchMatMul (the same bits), the rest through transposes and XNNPACK (other bits;
 * batch-mat-mul.ts); with `enabled` false they run on the stock BatchMatMul (the same bits); `convInWasm` false (or
 * `enabled` false) gives Conv2D and FusedConv2D back to XNNPACK and the convolutions' gradients to
 * the column matrix and XNNPACK products (conv2d.ts; other bits).
 */
export const simdKernelSwitch = { enabled: true, fuseActivationGrads: true, fuseBatchNormGrads: true, fuseSums: true, fuseAdam: true, fuseSoftmaxGrad: true, fuseGatherGrad: true, transposeInWasm: true, gatherRows: true, splitInMemory: true, batchMatMulInWasm: true, convInWasm: true };
