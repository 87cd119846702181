/**
 * The native backend's kernels: convolution forward (Conv2D, FusedConv2D), its two gradients
 * (Conv2DBackpropInput, Conv2DBackpropFilter) and the matmuls of dense layers and their backward
 * pass (BatchMatMul, _FusedMatMul), each one call into OpenBLAS (loader.ts, blas.c) on views of the
 * backend's wasm heap: the addon reads the inputs where tfjs keeps them and writes the output
 * tensor's bytes directly. Views are taken after the output is allocated, the last allocation of
 * each kernel (an allocation may grow the memory and detach earlier views).
 *
 * What the native code does not cover (another data format or dtype, a fused activation other
 * than linear, relu and relu6, PReLU weights, a bias that is not one value per output channel,
 * operands whose batches neither match nor broadcast from 1) runs the kernel the wasm backend
 * registers, on this backend's own heap.
 */
import * as tf from '@tensorflow/tfjs';
import type { KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs';
import { asWasm, f32, kernelLimits, sizeOf, type WasmBackendLike } from '../util.ts';
import type { NativeBlasAddon } from './loader.ts';
import { ADAM_STEP } from '../adam.ts';
import { checkConvOperands } from '../conv2d-shape.ts';
import { RELU_GRAD } from '../activation-grad.ts';

type KernelArgs = Parameters<KernelFunc>[0];

/** tfjs' fused activation names the native code computes, and their codes in blas.c. */
const ACTIVATIONS: Record<string, 0 | 1 | 2> = { linear: 0, relu: 1, relu6: 2 };

function activationCode(name: unknown): 0 | 1 | 2 | undefined {
  return name === undefined || name === null ? 0 : ACTIVATIONS[String(name)];
}

function channelsLast(dataFormat: unknown): boolean {
  return dataFormat === undefined || dataFormat === 'NHWC' || dataFormat === 'channelsLast';
}

/** The Int32Array geometry blas.c reads (loader.ts GEOMETRY_FIELDS). */
export function convGeometry(info: tf.backend_util.Conv2DInfo): Int32Array {
  return Int32Array.from([
    info.batchSize, info.inHeight, info.inWidth, info.inChannels, info.outHeight, info.outWidth, info.outChannels,
    info.filterHeight, info.filterWidth, info.strideHeight, info.strideWidth, info.dilationHeight, info.dilationWidth,
    info.padInfo.top, info.padInfo.left,
  ]);
}

/** A bias holding one value per output column (the only kind blas.c adds), or no bias. */
function perColumnBias(bias: TensorInfo | undefined, columns: number): boolean {
  return bias === undefined || (bias.dtype === 'float32' && sizeOf(bias.shape) === columns && bias.shape[bias.shape.length - 1] === columns);
}

function conv2dForward(addon: NativeBlasAddon, fallback: KernelConfig, args: KernelArgs, fused: boolean): TensorInfo | TensorInfo[] {
  const backend = asWasm(args.backend);
  const { x, filter, bias, preluActivationWeights } = args.inputs as Record<string, TensorInfo | undefined>;
  const attrs = args.attrs as unknown as tf.FusedConv2DAttrs;
  if (x === undefined || filter === undefined) throw new Error('Conv2D: inputs x and filter are required');
  const act = fused ? activationCode(attrs.activation) : 0;
  const CO = filter.shape[3];
  if (
    !channelsLast(attrs.dataFormat) ||
    x.dtype !== 'float32' ||
    filter.dtype !== 'float32' ||
    act === undefined ||
    preluActivationWeights != null ||
    !perColumnBias(bias ?? undefined, CO)
  ) {
    return fallback.kernelFunc(args);
  }
  checkConvOperands(fused ? 'FusedConv2D' : 'Conv2D', x.shape, filter.shape);
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filter.shape as [number, number, number, number],
    attrs.strides,
    attrs.dilations ?? 1,
    attrs.pad,
    attrs.dimRoundingMode,
  );
  const out = backend.makeOutput([...info.outShape], 'float32');
  const y = f32(backend, out);
  // The bias and activation on each block's rows right after its product (blas.c), still in cache.
  addon.conv2dForward(f32(backend, x), f32(backend, filter), y, convGeometry(info), kernelLimits.columnFloats, fused && bias != null ? f32(backend, bias) : null, act);
  return out;
}

function conv2dBackpropFilter(addon: NativeBlasAddon, fallback: KernelConfig, args: KernelArgs): TensorInfo | TensorInfo[] {
  const backend = asWasm(args.backend);
  const { x, dy } = args.inputs as Record<string, TensorInfo | undefined>;
  const attrs = args.attrs as unknown as tf.Conv2DBackpropFilterAttrs;
  if (x === undefined || dy === undefined) throw new Error('Conv2DBackpropFilter: inputs x and dy are required');
  if (!channelsLast(attrs.dataFormat) || x.dtype !== 'float32' || dy.dtype !== 'float32') return fallback.kernelFunc(args);
  checkConvOperands('Conv2DBackpropFilter', x.shape, attrs.filterShape);
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    attrs.filterShape,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
  );
  checkConvOperands('Conv2DBackpropFilter', x.shape, attrs.filterShape, { shape: dy.shape, expected: info.outShape });
  const out = backend.makeOutput([...attrs.filterShape], 'float32');
  addon.conv2dBackpropFilter(f32(backend, x), f32(backend, dy), f32(backend, out), convGeometry(info), kernelLimits.columnFloats);
  return out;
}

function conv2dBackpropInput(addon: NativeBlasAddon, fallback: KernelConfig, args: KernelArgs): TensorInfo | TensorInfo[] {
  const backend = asWasm(args.backend);
  const { dy, filter } = args.inputs as Record<string, TensorInfo | undefined>;
  const attrs = args.attrs as unknown as tf.Conv2DBackpropInputAttrs;
  if (dy === undefined || filter === undefined) throw new Error('Conv2DBackpropInput: inputs dy and filter are required');
  if (!channelsLast(attrs.dataFormat) || dy.dtype !== 'float32' || filter.dtype !== 'float32') return fallback.kernelFunc(args);
  checkConvOperands('Conv2DBackpropInput', attrs.inputShape, filter.shape);
  const info = tf.backend_util.computeConv2DInfo(
    attrs.inputShape,
    filter.shape as [number, number, number, number],
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
  );
  checkConvOperands('Conv2DBackpropInput', attrs.inputShape, filter.shape, { shape: dy.shape, expected: info.outShape });
  const out = backend.makeOutput([...info.inShape], 'float32');
  addon.conv2dBackpropInput(f32(backend, dy), f32(backend, filter), f32(backend, out), convGeometry(info), kernelLimits.columnFloats);
  return out;
}

function matMul(addon: NativeBlasAddon, fallback: KernelConfig, args: KernelArgs, fused: boolean): TensorInfo | TensorInfo[] {
  const backend: WasmBackendLike = asWasm(args.backend);
  const { a, b, bias, preluActivationWeights } = args.inputs as Record<string, TensorInfo | undefined>;
  const attrs = args.attrs as unknown as tf.BatchMatMulAttrs & { activation?: string };
  if (a === undefined || b === undefined) throw new Error('BatchMatMul: inputs a and b are required');
  const transposeA = attrs.transposeA === true;
  const transposeB = attrs.transposeB === true;
  const ra = a.shape.length;
  const rb = b.shape.length;
  const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
  const k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
  const kB = transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
  const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
  const batchA = sizeOf(a.shape.slice(0, -2));
  const batchB = sizeOf(b.shape.slice(0, -2));
  const act = fused ? activationCode(attrs.activation) : 0;
  if (
    ra < 2 ||
    rb < 2 ||
    k !== kB ||
    a.dtype !== 'float32' ||
    b.dtype !== 'float32' ||
    (batchA !== batchB && batchA !== 1 && batchB !== 1) ||
    act === undefined ||
    preluActivationWeights != null ||
    !perColumnBias(bias ?? undefined, n)
  ) {
    return fallback.kernelFunc(args); // which reports a shape mismatch in its own words
  }
  const outer = tf.backend_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const batch = Math.max(batchA, batchB);
  const out = backend.makeOutput([...outer, m, n], 'float32');
  const c = f32(backend, out);
  // The bias and activation on each block of the product as it is finished (one pass after, for a batch).
  const epilogue = fused && (bias != null || act !== 0);
  addon.sgemmBatched(transposeA, transposeB, batch, m, n, k, f32(backend, a), batchA === 1 ? 0 : m * k, f32(backend, b), batchB === 1 ? 0 : k * n, c, epilogue && bias != null ? f32(backend, bias) : null, epilogue ? act : 0);
  return out;
}

/**
 * Adam's step (adam.ts) on the addon's threads: adam.c's float32 operations in its order, so the
 * bits are wasm's. Inputs other than float32 of x's size go to the wasm kernel, which says why.
 */
function adamStep(addon: NativeBlasAddon, fallback: KernelConfig, args: KernelArgs): TensorInfo | TensorInfo[] {
  const backend = asWasm(args.backend);
  const { x, g, m, v, s } = args.inputs as Record<string, TensorInfo | undefined>;
  if (!x || !g || !m || !v || !s) return fallback.kernelFunc(args);
  const n = sizeOf(x.shape);
  if (x.dtype !== 'float32' || s.dtype !== 'float32' || sizeOf(s.shape) !== 8 || [g, m, v].some((t) => t.dtype !== 'float32' || sizeOf(t.shape) !== n)) return fallback.kernelFunc(args);
  const out = backend.makeOutput([...x.shape], 'float32');
  addon.adamStep(f32(backend, x), f32(backend, g), f32(backend, m), f32(backend, v), f32(backend, out), f32(backend, s));
  return out;
}

/**
 * Our kernel (no tfjs op runs it): a max pool's gradient and then Relu's gradient of the value the
 * pool read, in one pass (inputs dy, input, output as MaxPoolGrad's, and x as Relu's gradient's):
 * compiled steps fuse the two when nothing else reads the pool's gradient (epilogue.ts).
 */
export const MAX_POOL_RELU_GRAD = 'NeuralDiffMaxPoolReluGrad';

/** The Int32Array geometry maxpool.c reads: B, H, W, C, OH, OW, KH, KW, strides, padding top and left. */
function poolGeometry(input: TensorInfo, attrs: tf.MaxPoolGradAttrs): Int32Array {
  const info = tf.backend_util.computePool2DInfo(input.shape as [number, number, number, number], attrs.filterSize, attrs.strides, 1, attrs.pad, attrs.dimRoundingMode);
  return Int32Array.from([
    info.batchSize, info.inHeight, info.inWidth, info.inChannels, info.outHeight, info.outWidth,
    info.filterHeight, info.filterWidth, info.strideHeight, info.strideWidth, info.padInfo.top, info.padInfo.left,
  ]);
}

/**
 * MaxPoolGrad on the addon's threads (maxpool.c: max-pool-grad.ts's rule, its bits), and with
 * `reluX` Relu's gradient after it in the same pass, for windows that do not overlap (the keyword
 * model's). Overlapping windows, and what is not float32 NHWC of matching sizes, go to the wasm
 * kernels (MaxPoolGrad, then Relu's gradient), which say what is wrong.
 */
function maxPoolGrad(addon: NativeBlasAddon, fallback: KernelConfig, reluGrad: KernelConfig | undefined, args: KernelArgs, relu: boolean): TensorInfo | TensorInfo[] {
  const backend = asWasm(args.backend);
  const { dy, input, x } = args.inputs as Record<string, TensorInfo | undefined>;
  if (dy === undefined || input === undefined || (relu && x === undefined)) throw new Error(`${relu ? MAX_POOL_RELU_GRAD : 'MaxPoolGrad'}: inputs dy, input${relu ? ' and x' : ''} are required`);
  const attrs = args.attrs as unknown as tf.MaxPoolGradAttrs;
  const n = sizeOf(input.shape);
  const geometry = input.shape.length === 4 ? poolGeometry(input, attrs) : undefined;
  // Overlapping windows (a stride under the window) stay on wasm's SIMD kernel: maxpool.c took
  // about 2x its time on a 3x3 stride-2 pool (bench/pool-grad.ts), and 0.8-0.9x on the keyword pools.
  const overlapping = geometry !== undefined && (geometry[8] < geometry[6] || geometry[9] < geometry[7]);
  if (geometry === undefined || overlapping || (!relu && !nativePoolSwitch.addon) || dy.shape.length !== 4 || input.dtype !== 'float32' || dy.dtype !== 'float32' || (relu && (x?.dtype !== 'float32' || sizeOf(x.shape) !== n))) {
    if (!relu) return fallback.kernelFunc(args);
    if (reluGrad === undefined) throw new Error(`${MAX_POOL_RELU_GRAD}: the backend has no Relu gradient kernel to fall back to`);
    const pooled = fallback.kernelFunc({ ...args, inputs: { dy, input, output: (args.inputs as Record<string, TensorInfo>).output } }) as TensorInfo;
    try {
      return reluGrad.kernelFunc({ inputs: { dy: pooled, x } as never, attrs: {}, backend: args.backend });
    } finally {
      backend.disposeData(pooled.dataId);
    }
  }
  if (sizeOf(dy.shape) !== geometry[0] * geometry[4] * geometry[5] * geometry[3]) return fallback.kernelFunc(args);
  const out = backend.makeOutput([...input.shape], 'float32');
  addon.maxPoolGrad(f32(backend, input), f32(backend, dy), f32(backend, out), geometry, relu && x !== undefined ? f32(backend, x) : null);
  return out;
}

/** For comparisons: false sends MaxPool and MaxPoolGrad to wasm's kernels (bench/profile-plan.ts --compare activation). */
export const nativePoolSwitch = { addon: true };

/**
 * MaxPool on the addon's threads for windows that do not overlap (maxpool.c: each window's first
 * maximum from -Infinity, the value whose position the gradient picks; a NaN never wins, where
 * XNNPACK's kernel may give NaN). The rest goes to wasm's kernel.
 */
function maxPool(addon: NativeBlasAddon, fallback: KernelConfig, args: KernelArgs): TensorInfo | TensorInfo[] {
  const backend = asWasm(args.backend);
  const { x } = args.inputs as Record<string, TensorInfo | undefined>;
  if (x === undefined) throw new Error('MaxPool: input x is required');
  if (!nativePoolSwitch.addon || x.shape.length !== 4 || x.dtype !== 'float32') return fallback.kernelFunc(args);
  const attrs = args.attrs as unknown as tf.MaxPoolAttrs;
  const info = tf.backend_util.computePool2DInfo(x.shape as [number, number, number, number], attrs.filterSize, attrs.strides, 1, attrs.pad, attrs.dimRoundingMode);
  if (info.strideHeight < info.filterHeight || info.strideWidth < info.filterWidth) return fallback.kernelFunc(args);
  const out = backend.makeOutput([...info.outShape], 'float32');
  addon.maxPool(f32(backend, x), f32(backend, out), poolGeometry(x, attrs as unknown as tf.MaxPoolGradAttrs));
  return out;
}

/** Names of the kernels the native backend computes in its addon (the rest are wasm's). */
export const NATIVE_KERNELS = ['Conv2D', 'FusedConv2D', 'Conv2DBackpropFilter', 'Conv2DBackpropInput', 'BatchMatMul', '_FusedMatMul', ADAM_STEP, 'MaxPool', 'MaxPoolGrad', MAX_POOL_RELU_GRAD] as const;

/**
 * The native kernel configs for `backendName`, each falling back to `wasmConfigs`' kernel of the
 * same name (and keeping its setupFunc, which binds the wasm module's functions the fallback
 * calls when the backend is activated).
 */
export function nativeKernelConfigs(addon: NativeBlasAddon, backendName: string, wasmConfigs: ReadonlyMap<string, KernelConfig>): KernelConfig[] {
  const make = (kernelName: (typeof NATIVE_KERNELS)[number], run: (fallback: KernelConfig, args: KernelArgs) => TensorInfo | TensorInfo[], fallbackName: string = kernelName): KernelConfig => {
    const fallback = wasmConfigs.get(fallbackName);
    if (fallback === undefined) throw new Error(`the wasm backend registers no ${kernelName} kernel to fall back to`);
    return { ...fallback, kernelName, backendName, kernelFunc: (args: KernelArgs) => run(fallback, args) };
  };
  return [
    make('Conv2D', (f, args) => conv2dForward(addon, f, args, false)),
    make('FusedConv2D', (f, args) => conv2dForward(addon, f, args, true)),
    make('Conv2DBackpropFilter', (f, args) => conv2dBackpropFilter(addon, f, args)),
    make('Conv2DBackpropInput', (f, args) => conv2dBackpropInput(addon, f, args)),
    make('BatchMatMul', (f, args) => matMul(addon, f, args, false)),
    make('_FusedMatMul', (f, args) => matMul(addon, f, args, true)),
    make(ADAM_STEP, (f, args) => adamStep(addon, f, args)),
    make('MaxPool', (f, args) => maxPool(addon, f, args)),
    make('MaxPoolGrad', (f, args) => maxPoolGrad(addon, f, undefined, args, false)),
    make(MAX_POOL_RELU_GRAD, (f, args) => maxPoolGrad(addon, f, wasmConfigs.get(RELU_GRAD), args, true), 'MaxPoolGrad'),
  ];
}
