/**
 * The `native` training backend: tfjs-backend-wasm (its own module instance and heap, every kernel
 * the `wasm` backend registers, our fixes included) with convolutions and matmuls computed by the
 * system's OpenBLAS through an N-API addon working on the heap in place (kernels.ts, blas.c), and
 * its element-wise, row and reduction kernels in C (elementwise.ts, elementwise.c, broadcast.c).
 * Optional: built by `npm run build:native`; see docs/guides/training-speed.md.
 *
 * Threads: the addon's own pool runs each GEMM, convolution, bias epilogue and element-wise
 * kernel on {@link setNativeThreads} threads, cut into blocks from the shapes alone, so the bits do not
 * depend on the thread count; OpenBLAS stays on one thread. Training on `native` runs on one
 * JavaScript thread (no worker pool) for most models: the kernels, most of a step, use every
 * thread asked for, without the worker pool's per-step copies between threads.
 */
import os from 'node:os';
import * as tf from '@tensorflow/tfjs';
import type { KernelConfig } from '@tensorflow/tfjs';
import { UsageError } from '../../../core/errors.ts';
import { WASM } from '../util.ts';
import { nativeKernelConfigs } from './kernels.ts';
import { nativeElementwiseConfigs, nativeElementwiseRunner } from './elementwise.ts';
import { elementwiseRunners } from '../elementwise.ts';
import { loadNativeAddon, openBlasCoreChoice } from './loader.ts';

export { nativeAddonStatus, openBlasCoreChoice, openBlasCoreFor, NATIVE_HOW_TO } from './loader.ts';
export { NATIVE_KERNELS } from './kernels.ts';
export { NATIVE_ELEMENTWISE_KERNELS, nativeElementwiseLimits } from './elementwise.ts';

/** The native backend's name in the tfjs registry (and in `ndiff train --backend`). */
export const NATIVE = 'native';

/**
 * Register the `native` backend once (throws the addon's {@link MissingDependencyError} when it is
 * not built). Call after the wasm kernel fixes are registered: the backend takes a copy of every
 * kernel registered for `wasm` at that moment, then puts the native kernels (kernels.ts, elementwise.ts)
 * in place of those of the same name (NATIVE_KERNELS).
 *
 * @param makeBackend creates the backend instance (a BackendWasm over its own wasm module).
 */
export function registerNativeBackend(makeBackend: () => Promise<tf.KernelBackend>): void {
  const addon = loadNativeAddon();
  if (tf.findBackendFactory(NATIVE) != null) return;
  tf.registerBackend(NATIVE, makeBackend, -1);
  const wasmConfigs = new Map<string, KernelConfig>(tf.getKernelsForBackend(WASM).map((k) => [k.kernelName, k]));
  const native = [...nativeKernelConfigs(addon, NATIVE, wasmConfigs), ...nativeElementwiseConfigs(addon, NATIVE, wasmConfigs)];
  elementwiseRunners.set(NATIVE, nativeElementwiseRunner(addon));
  const replaced = new Set(native.map((k) => k.kernelName));
  for (const k of wasmConfigs.values()) if (!replaced.has(k.kernelName)) tf.registerKernel({ ...k, backendName: NATIVE });
  for (const k of native) tf.registerKernel(k);
}

/** The cores this machine offers: OpenBLAS's thread count unless told otherwise. */
function cores(): number {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

/** The most threads the addon's pool takes (blas.c's MAX_THREADS). */
export const MAX_NATIVE_THREADS = 256;

/**
 * The native kernels' thread count (the addon's pool; OpenBLAS on one thread), default every core
 * up to {@link MAX_NATIVE_THREADS} (a machine may offer more).
 */
export function setNativeThreads(threads: number = Math.min(cores(), MAX_NATIVE_THREADS)): number {
  if (!Number.isInteger(threads) || threads < 1) throw new UsageError(`threads must be a positive integer, got ${threads}`, { threads });
  if (threads > MAX_NATIVE_THREADS) throw new UsageError(`the native backend's kernels take at most ${MAX_NATIVE_THREADS} threads, got ${threads}: ask for ${MAX_NATIVE_THREADS} or fewer`, { threads, most: MAX_NATIVE_THREADS });
  loadNativeAddon().setThreads(threads);
  return threads;
}

/** OpenBLAS's build and the core it chose; `threads`, the native kernels' (this thread's pool); `blasThreads`, OpenBLAS's own. */
export function nativeBlasInfo(): { config: string; corename: string; threads: number; blasThreads: number } {
  const { config, corename, threads, poolThreads } = loadNativeAddon().info();
  return { config, corename, threads: poolThreads, blasThreads: threads };
}

/** What `ndiff train` says of the native backend: OpenBLAS's kernels, how they were chosen, the kernels' threads. */
export function describeNativeBlas(): string {
  const { corename, threads } = nativeBlasInfo();
  return `OpenBLAS ${corename} kernels (${openBlasCoreChoice() ?? 'chosen by OpenBLAS'}), ${threads} thread(s)`;
}

/** The layer classes whose training runs on the wasm side of the native backend, not on OpenBLAS. */
const OUTSIDE_BLAS = new Set(['DepthwiseConv2D', 'SeparableConv2D', 'BatchNormalization']);

/**
 * Whether the native backend should use several cores through the worker pool (the native kernels
 * on one thread in each worker) rather than one JavaScript thread with the native kernels on every
 * core: when the model has depthwise convolutions or batch norms (MobileNet-style blocks), whose
 * gradients run on the one thread, not in the addon, and are most of a step. Measured on a 2-core
 * machine (docs/guides/training-speed.md) when the kernels' threads were OpenBLAS's: MobileNetV2
 * trained 1.8x faster in the pool, the keyword model (plain convolutions and dense layers) 1.26x
 * faster on one JavaScript thread. Decided by the model's structure alone.
 */
export function nativePrefersWorkerPool(model: { layers: ReadonlyArray<{ getClassName(): string; layers?: unknown }> }): boolean {
  return model.layers.some((l) => OUTSIDE_BLAS.has(l.getClassName()) || (Array.isArray(l.layers) && nativePrefersWorkerPool(l as { layers: ReadonlyArray<{ getClassName(): string }> })));
}
