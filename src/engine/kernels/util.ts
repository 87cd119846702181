/**
 * Shared plumbing for the wasm kernel fixes: a typed view of the parts of the wasm backend the
 * kernels use, the stock kernels captured before we override any of them, and heap helpers.
 *
 * The wasm backend keeps every tensor in one WebAssembly memory. Any allocation (makeOutput, or a
 * stock kernel we call) may grow that memory, which detaches every typed-array view taken before.
 * So every kernel here takes its views with {@link f32} / {@link heapF32} only after its last
 * allocation, and takes them again after calling another kernel.
 */
import * as tf from '@tensorflow/tfjs';
import type { DataType, KernelConfig, NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs';

/** The wasm backend's name in the tfjs registry. */
export const WASM = 'wasm';

/** The subset of the emscripten module the kernels touch. */
export interface WasmModuleLike {
  HEAPU8: Uint8Array;
}

/** Per-tensor record kept by the wasm backend. */
export interface WasmTensorData {
  id: number;
  memoryOffset: number;
  shape: number[];
  dtype: DataType;
  refCount: number;
}

/** The subset of `BackendWasm` (tfjs-backend-wasm 4.22) the kernels use. */
export interface WasmBackendLike {
  wasm: WasmModuleLike;
  dataIdMap: { get(dataId: object): WasmTensorData };
  makeOutput(shape: number[], dtype: DataType): TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
}

/** Narrow the `backend` handed to a kernel function. */
export function asWasm(backend: unknown): WasmBackendLike {
  return backend as WasmBackendLike;
}

/** Stock wasm kernels our kernels delegate to. */
export type StockKernelName = 'Transpose' | 'BatchMatMul' | '_FusedMatMul' | 'Conv2D';

let stockSnapshot: KernelConfig[] | null = null;

/**
 * Every kernel registered for `wasm` as shipped, captured once before the first override. Both the
 * fixes (which delegate to stock kernels) and the side-by-side `wasm-stock` backend use it.
 */
export function stockWasmKernels(): KernelConfig[] {
  if (stockSnapshot === null) {
    stockSnapshot = tf.getKernelsForBackend(WASM).map((k) => ({ ...k }));
    if (stockSnapshot.length === 0) {
      throw new Error('the wasm kernels are not registered yet: import @tensorflow/tfjs-backend-wasm first');
    }
  }
  return stockSnapshot;
}

/** The stock wasm config of one kernel (throws if the installed package lacks it). */
export function stockKernel(name: string): KernelConfig {
  const k = stockWasmKernels().find((c) => c.kernelName === name);
  if (k === undefined) throw new Error(`stock wasm kernel ${name} is not registered`);
  return k;
}

/** Run a stock wasm kernel directly (no tape, no engine bookkeeping). */
export function runStock(
  name: StockKernelName,
  backend: WasmBackendLike,
  inputs: NamedTensorInfoMap,
  attrs: NamedAttrMap = {},
): TensorInfo {
  const out = stockKernel(name).kernelFunc({ inputs, backend, attrs });
  if (Array.isArray(out)) throw new Error(`stock kernel ${name} returned several outputs`);
  return out;
}

/** Free an intermediate tensor made inside a kernel. */
export function dispose(backend: WasmBackendLike, t: TensorInfo): void {
  backend.disposeData(t.dataId);
}

/** A Float32Array over the tensor's bytes in the wasm heap. Take it after the last allocation. */
export function f32(backend: WasmBackendLike, t: TensorInfo): Float32Array {
  const { memoryOffset } = backend.dataIdMap.get(t.dataId);
  return new Float32Array(backend.wasm.HEAPU8.buffer, memoryOffset, sizeOf(t.shape));
}

/** An Int32Array over the tensor's bytes in the wasm heap. Take it after the last allocation. */
export function i32(backend: WasmBackendLike, t: TensorInfo): Int32Array {
  const { memoryOffset } = backend.dataIdMap.get(t.dataId);
  return new Int32Array(backend.wasm.HEAPU8.buffer, memoryOffset, sizeOf(t.shape));
}

/** The whole heap as float32, for copies between tensors with `copyWithin`. */
export function heapF32(backend: WasmBackendLike): Float32Array {
  return new Float32Array(backend.wasm.HEAPU8.buffer);
}

/** Index of a float32 tensor's first element in {@link heapF32}. */
export function f32Index(backend: WasmBackendLike, t: TensorInfo): number {
  return backend.dataIdMap.get(t.dataId).memoryOffset >>> 2;
}

/** A TensorInfo sharing `t`'s data under another shape. Never dispose it: it owns no reference. */
export function view(t: TensorInfo, shape: number[]): TensorInfo {
  return { dataId: t.dataId, shape, dtype: t.dtype };
}

/** Number of elements of a shape. */
export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Transpose with the stock (XNNPACK) kernel. */
export function transpose(backend: WasmBackendLike, x: TensorInfo, perm: number[]): TensorInfo {
  return runStock('Transpose', backend, { x }, { perm });
}

/**
 * Copy `rows` consecutive elements starting at element `start` of `src` into a new tensor of the
 * given shape (a contiguous slice, e.g. a batch chunk).
 */
export function sliceCopy(backend: WasmBackendLike, src: TensorInfo, start: number, shape: number[]): TensorInfo {
  const out = backend.makeOutput(shape, src.dtype);
  const heap = heapF32(backend);
  const from = f32Index(backend, src) + start;
  heap.copyWithin(f32Index(backend, out), from, from + sizeOf(shape));
  return out;
}

/** Throw unless the conv is channels-last (the only layout the wasm backend supports). */
export function assertChannelsLast(dataFormat: unknown, kernel: string): void {
  if (dataFormat !== undefined && dataFormat !== 'NHWC' && dataFormat !== 'channelsLast') {
    throw new Error(`${kernel} on wasm supports only NHWC data, got ${String(dataFormat)}`);
  }
}

/** Tunables of the kernels (mutable so tests can lower them to reach the chunked paths). */
export const kernelLimits = {
  /** Most floats a conv gradient's column matrix may hold at once (64 MB); larger batches go in chunks. */
  columnFloats: 1 << 24,
};

/** Largest number of batch items whose rows (each `perItem` floats) fit in `budget` floats. */
export function chunkSize(batch: number, perItem: number, budget = kernelLimits.columnFloats): number {
  return Math.max(1, Math.min(batch, Math.floor(budget / Math.max(1, perItem))));
}

/** Byte offset of a tensor's data in the wasm heap (what the SIMD kernels take as a pointer). */
export function offsetOf(backend: WasmBackendLike, t: TensorInfo): number {
  return backend.dataIdMap.get(t.dataId).memoryOffset;
}
