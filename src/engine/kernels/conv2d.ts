/**
 * Convolutions in our WebAssembly SIMD (conv2d.c) for the wasm backend: Conv2D and FusedConv2D
 * (bias, ReLU or ReLU6 after the sum), Conv2DBackpropFilter and Conv2DBackpropInput, channels
 * last, float32. Before them (and with `simdKernelSwitch.convInWasm` off) the forward pass ran on
 * XNNPACK, which packs its filter afresh on every call (the weights change every training step),
 * and the gradients built a column matrix in JavaScript for an XNNPACK product. Here an
 * indirection table of row addresses replaces the column matrix, and the products read the
 * tensors in place.
 *
 * Convolutions of 3 taps along the width at stride 1 (the keyword model's) run as Winograd's F(4, 3)
 * or F(2, 3) instead, forward and both gradients (conv2d-winograd.ts): up to 2x fewer multiply-adds.
 *
 * The kernels cover the convolutions {@link convInWasmCovers} names; the others keep the paths
 * from before. Every output is summed in a fixed order (conv2d.c), so the same inputs give the
 * same bits; the bits differ from XNNPACK's. The scalar twins below compute the same sums in the
 * same order, for the tests.
 */
import * as tf from '@tensorflow/tfjs';
import type { KernelConfig, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';
import { ACTIVATIONS, checkConvOperands, type ConvActivation, type ConvShape } from './conv2d-shape.ts';
import { conv2dFilterGradWinograd, conv2dInputGradWinograd, conv2dWinograd, winogradFits } from './conv2d-winograd.ts';
import { simdKernelSwitch, trainKernels, type TrainKernelExports } from './train-kernels-simd.ts';
import { asWasm, dispose, f32, offsetOf, sizeOf, stockKernel, WASM, type WasmBackendLike } from './util.ts';

export { ACTIVATIONS, type ConvActivation, type ConvShape } from './conv2d-shape.ts';

/** The geometry of tfjs' conv info. */
export function convShapeOf(info: tf.backend_util.Conv2DInfo): ConvShape {
  return {
    batch: info.batchSize,
    inHeight: info.inHeight,
    inWidth: info.inWidth,
    inChannels: info.inChannels,
    outHeight: info.outHeight,
    outWidth: info.outWidth,
    outChannels: info.outChannels,
    filterHeight: info.filterHeight,
    filterWidth: info.filterWidth,
    strideHeight: info.strideHeight,
    strideWidth: info.strideWidth,
    dilationHeight: info.dilationHeight,
    dilationWidth: info.dilationWidth,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
  };
}

/** Which of the three kernels a convolution call is. */
export type ConvKernelKind = 'forward' | 'filter' | 'input';

/** Tunables of the choice (mutable so tests can reach the kernels' narrow-output paths). */
export const convLimits = {
  /**
   * Fewest output columns (the forward pass's and the filter gradient's output channels, the input
   * gradient's input channels) conv2d.c takes: below 8 its products run one column at a time, and
   * MobileNetV2's stem (3 input channels) took its input gradient 18x slower than before
   * (bench/conv-shapes.ts).
   */
  minColumns: 8,
  /**
   * Most entries (4 bytes each) of one indirection table: 16 MB. A larger batch goes through
   * conv2d.c in chunks of items (the same bits).
   */
  indirectionEntries: 1 << 22,
  /**
   * Whether conv2d.c takes input gradients of strided convolutions. It multiplies the taps that
   * fall between strides by zeros (half the work at stride 2 along one axis, three quarters along
   * two), and measured 0.83-0.91x the path before on the keyword model's stride-2 layer
   * (bench/conv-shapes.ts): off, so they keep that path. Tests turn it on to check the kernel.
   */
  stridedInputGradient: false,
};

/**
 * Whether conv2d.c runs this convolution call when `simdKernelSwitch.convInWasm` is on: not empty,
 * at least {@link convLimits}.minColumns output columns, and for an input gradient stride 1 (see
 * {@link convLimits}.stridedInputGradient). Measured as fast as the paths before or faster on
 * every such shape of the keyword model and MobileNetV2 (0.98-7.8x, bench/conv-shapes.ts),
 * pointwise (1x1) convolutions included.
 */
export function convInWasmCovers(s: ConvShape, kind: ConvKernelKind): boolean {
  const positions = s.batch * s.outHeight * s.outWidth;
  if (positions === 0 || s.inChannels === 0 || s.outChannels === 0) return false;
  if (kind === 'input' && (s.strideHeight > 1 || s.strideWidth > 1) && !convLimits.stridedInputGradient) return false;
  return (kind === 'input' ? s.inChannels : s.outChannels) >= convLimits.minColumns;
}

/** The SIMD kernels for a convolution call of this shape, or null when the caller keeps its old path. */
export function convKernels(backend: WasmBackendLike, s: ConvShape, kind: ConvKernelKind, dtypes: readonly string[]): TrainKernelExports | null {
  if (!simdKernelSwitch.convInWasm || !simdKernelSwitch.enabled) return null;
  if (dtypes.some((d) => d !== 'float32') || !convInWasmCovers(s, kind)) return null;
  return trainKernels(backend);
}

/** A zeroed row of `n` floats (at least one), the padding's stand-in. */
function zeros(backend: WasmBackendLike, n: number): TensorInfo {
  const z = backend.makeOutput([Math.max(1, n)], 'float32');
  f32(backend, z).fill(0);
  return z;
}

/**
 * Batch items per call of conv2d.c: as many as keep the indirection table (`perItem` positions by
 * `taps` addresses each) within {@link convLimits}.indirectionEntries, at least one.
 */
function itemsPerChunk(batch: number, perItem: number, taps: number): number {
  return Math.max(1, Math.min(batch, Math.floor(convLimits.indirectionEntries / Math.max(1, perItem * taps))));
}

/**
 * Whether every value of the tensors is finite. Winograd's transforms add and subtract inputs
 * before the products: an infinity becomes NaN (Inf - Inf) where the direct sum keeps it, and
 * reaches outputs that never read it. A call with an infinity or NaN in an operand takes the
 * direct sums, so non-finite values come out where they would without Winograd. One SIMD pass
 * over the operands (conv2d.c's all_finite), a small share of the convolution's own work.
 */
function allFinite(backend: WasmBackendLike, k: TrainKernelExports, ...tensors: TensorInfo[]): boolean {
  return tensors.every((t) => k.all_finite(offsetOf(backend, t), sizeOf(t.shape)) === 1);
}

/**
 * For each chunk of batch items ({@link itemsPerChunk}), in order: the indirection table of x's
 * rows for that chunk's output positions (conv_indirection; padding taps point at a zero row),
 * then `use(b0, n, tableAt, taps)`. The forward pass and the filter gradient read x this way.
 */
function overInputChunks(backend: WasmBackendLike, k: TrainKernelExports, x: TensorInfo, s: ConvShape, use: (b0: number, n: number, tableAt: number, taps: number) => void): void {
  const perItem = s.outHeight * s.outWidth;
  const T = s.filterHeight * s.filterWidth;
  const nb = itemsPerChunk(s.batch, perItem, T);
  const ind = backend.makeOutput([nb * perItem * T], 'int32');
  const zero = zeros(backend, s.inChannels);
  const [xAt, indAt, zeroAt] = [offsetOf(backend, x), offsetOf(backend, ind), offsetOf(backend, zero)];
  for (let b0 = 0; b0 < s.batch; b0 += nb) {
    const n = Math.min(nb, s.batch - b0);
    k.conv_indirection(
      xAt + 4 * b0 * s.inHeight * s.inWidth * s.inChannels, zeroAt, indAt,
      n, s.inHeight, s.inWidth, s.inChannels, s.outHeight, s.outWidth, s.filterHeight, s.filterWidth,
      s.strideHeight, s.strideWidth, s.dilationHeight, s.dilationWidth, s.padTop, s.padLeft,
    );
    use(b0, n, indAt, T);
  }
  dispose(backend, ind);
  dispose(backend, zero);
}

/**
 * y = act(conv(x, w) + bias) into a new [B, OH, OW, CO] tensor; `bias` null for none. Dilations
 * any; the caller checked {@link convKernels}. Batch items in chunks ({@link itemsPerChunk}):
 * every output is one item's own sum, so chunks change no bits.
 */
export function conv2dInWasm(
  backend: WasmBackendLike, k: TrainKernelExports, x: TensorInfo, w: TensorInfo, bias: TensorInfo | null, act: ConvActivation, s: ConvShape,
): TensorInfo {
  if (winogradFits(s, 'forward') && allFinite(backend, k, x, w)) return conv2dWinograd(backend, k, x, w, bias, act, s);
  const perItem = s.outHeight * s.outWidth;
  const out = backend.makeOutput([s.batch, s.outHeight, s.outWidth, s.outChannels], 'float32');
  const [outAt, wAt, biasAt] = [offsetOf(backend, out), offsetOf(backend, w), bias === null ? 0 : offsetOf(backend, bias)];
  overInputChunks(backend, k, x, s, (b0, n, indAt, T) => {
    k.conv_gather_gemm(indAt, n * perItem, T, s.inChannels, wAt, s.outChannels, outAt + 4 * b0 * perItem * s.outChannels, biasAt, ACTIVATIONS[act]);
  });
  return out;
}

/**
 * dw [KH, KW, CI, CO] of x and dy; dilation 1 (tfjs' gradients take no other). Each chunk of
 * batch items continues the sums of the one before, in order: the bits of one pass.
 */
export function conv2dFilterGradInWasm(backend: WasmBackendLike, k: TrainKernelExports, x: TensorInfo, dy: TensorInfo, s: ConvShape): TensorInfo {
  if (winogradFits(s, 'filter') && allFinite(backend, k, x, dy)) return conv2dFilterGradWinograd(backend, k, x, dy, s);
  const perItem = s.outHeight * s.outWidth;
  const dw = backend.makeOutput([s.filterHeight, s.filterWidth, s.inChannels, s.outChannels], 'float32');
  const [dyAt, dwAt] = [offsetOf(backend, dy), offsetOf(backend, dw)];
  overInputChunks(backend, k, x, s, (b0, n, indAt, T) => {
    k.conv_filter_grad(indAt, n * perItem, T, s.inChannels, dyAt + 4 * b0 * perItem * s.outChannels, s.outChannels, dwAt, b0 > 0 ? 1 : 0);
  });
  return dw;
}

/** dx [B, H, W, CI] of dy and the filter; dilation 1. Batch items in chunks, as the forward pass. */
export function conv2dInputGradInWasm(backend: WasmBackendLike, k: TrainKernelExports, dy: TensorInfo, w: TensorInfo, s: ConvShape): TensorInfo {
  if (winogradFits(s, 'input') && allFinite(backend, k, dy, w)) return conv2dInputGradWinograd(backend, k, dy, w, s);
  const perItem = s.inHeight * s.inWidth;
  const T = s.filterHeight * s.filterWidth;
  const nb = itemsPerChunk(s.batch, perItem, T);
  const dx = backend.makeOutput([s.batch, s.inHeight, s.inWidth, s.inChannels], 'float32');
  const ind = backend.makeOutput([nb * perItem * T], 'int32');
  const wt = backend.makeOutput([T * s.outChannels * s.inChannels], 'float32');
  const zero = zeros(backend, s.outChannels);
  const [dyAt, dxAt, indAt, wtAt, zeroAt] = [offsetOf(backend, dy), offsetOf(backend, dx), offsetOf(backend, ind), offsetOf(backend, wt), offsetOf(backend, zero)];
  k.conv_filter_per_tap_transpose(offsetOf(backend, w), wtAt, T, s.inChannels, s.outChannels);
  for (let b0 = 0; b0 < s.batch; b0 += nb) {
    const n = Math.min(nb, s.batch - b0);
    k.conv_indirection_grad(
      dyAt + 4 * b0 * s.outHeight * s.outWidth * s.outChannels, zeroAt, indAt,
      n, s.inHeight, s.inWidth, s.outChannels, s.outHeight, s.outWidth, s.filterHeight, s.filterWidth,
      s.strideHeight, s.strideWidth, s.padTop, s.padLeft,
    );
    k.conv_gather_gemm(indAt, n * perItem, T, s.outChannels, wtAt, s.inChannels, dxAt + 4 * b0 * perItem * s.inChannels, 0, 0);
  }
  dispose(backend, ind);
  dispose(backend, wt);
  dispose(backend, zero);
  return dx;
}

/**
 * FusedConv2D's activation and bias as conv2d.c takes them, or null when it cannot (another
 * activation, PReLU weights, a bias of other than one value per output channel).
 */
export function fusedEpilogue(attrs: NamedAttrMap, bias: TensorInfo | undefined, prelu: TensorInfo | undefined, outChannels: number): { act: ConvActivation } | null {
  const act = (attrs.activation ?? 'linear') as string;
  if (!(act in ACTIVATIONS) || prelu != null) return null;
  if (bias != null && (bias.dtype !== 'float32' || sizeOf(bias.shape) !== outChannels || bias.shape.slice(0, -1).some((d) => d !== 1))) return null;
  return { act: act as ConvActivation };
}

// ---------------------------------------------------------------------------------------------
// Scalar twins: the same sums in the same order as conv2d.c, over plain arrays.

const f = Math.fround;

/** As conv2d.c's activate1 (wasm's f32x4.max / min): NaN stays NaN, -0 becomes 0. */
function activate(v: number, act: ConvActivation): number {
  if (act === 'linear' || Number.isNaN(v)) return v;
  const r = v > 0 ? v : 0;
  return act === 'relu6' && r > 6 ? 6 : r;
}

/** Element index of x(b, ih, iw, 0) read by output position (b, oh, ow) at tap (kh, kw), or -1 in the padding. */
function inputRow(s: ConvShape, b: number, oh: number, ow: number, kh: number, kw: number): number {
  const ih = oh * s.strideHeight + kh * s.dilationHeight - s.padTop;
  const iw = ow * s.strideWidth + kw * s.dilationWidth - s.padLeft;
  if (ih < 0 || ih >= s.inHeight || iw < 0 || iw >= s.inWidth) return -1;
  return ((b * s.inHeight + ih) * s.inWidth + iw) * s.inChannels;
}

/** The twin of the forward kernel: y [B, OH, OW, CO] from x [B, H, W, CI], w [KH, KW, CI, CO]. */
export function conv2dReference(x: Float32Array, w: Float32Array, bias: Float32Array | null, act: ConvActivation, s: ConvShape): Float32Array {
  const { inChannels: C, outChannels: N, filterHeight: KH, filterWidth: KW } = s;
  const y = new Float32Array(s.batch * s.outHeight * s.outWidth * N);
  let p = 0;
  for (let b = 0; b < s.batch; b++) {
    for (let oh = 0; oh < s.outHeight; oh++) {
      for (let ow = 0; ow < s.outWidth; ow++, p++) {
        for (let o = 0; o < N; o++) {
          let sum = 0;
          for (let kh = 0; kh < KH; kh++) {
            for (let kw = 0; kw < KW; kw++) {
              const row = inputRow(s, b, oh, ow, kh, kw);
              const wt = (kh * KW + kw) * C * N + o;
              for (let c = 0; c < C; c++) sum = f(sum + f((row < 0 ? 0 : x[row + c]) * w[wt + c * N]));
            }
          }
          if (bias !== null) sum = f(sum + bias[o]);
          y[p * N + o] = activate(sum, act);
        }
      }
    }
  }
  return y;
}

/** The twin of the filter gradient: dw [KH, KW, CI, CO] from x [B, H, W, CI] and dy [B, OH, OW, CO]. */
export function conv2dFilterGradReference(x: Float32Array, dy: Float32Array, s: ConvShape): Float32Array {
  const { inChannels: C, outChannels: N, filterHeight: KH, filterWidth: KW } = s;
  const dw = new Float32Array(KH * KW * C * N);
  for (let kh = 0; kh < KH; kh++) {
    for (let kw = 0; kw < KW; kw++) {
      const rows: number[] = [];
      for (let b = 0; b < s.batch; b++) for (let oh = 0; oh < s.outHeight; oh++) for (let ow = 0; ow < s.outWidth; ow++) rows.push(inputRow(s, b, oh, ow, kh, kw));
      for (let c = 0; c < C; c++) {
        for (let o = 0; o < N; o++) {
          let sum = 0;
          for (let p = 0; p < rows.length; p++) sum = f(sum + f((rows[p] < 0 ? 0 : x[rows[p] + c]) * dy[p * N + o]));
          dw[((kh * KW + kw) * C + c) * N + o] = sum;
        }
      }
    }
  }
  return dw;
}

/** The twin of the input gradient: dx [B, H, W, CI] from dy [B, OH, OW, CO] and w [KH, KW, CI, CO]. */
export function conv2dInputGradReference(dy: Float32Array, w: Float32Array, s: ConvShape): Float32Array {
  const { inChannels: C, outChannels: N, filterHeight: KH, filterWidth: KW } = s;
  const dx = new Float32Array(s.batch * s.inHeight * s.inWidth * C);
  let q = 0;
  for (let b = 0; b < s.batch; b++) {
    for (let ih = 0; ih < s.inHeight; ih++) {
      for (let iw = 0; iw < s.inWidth; iw++, q++) {
        for (let c = 0; c < C; c++) {
          let sum = 0;
          for (let kh = 0; kh < KH; kh++) {
            const nh = ih + s.padTop - kh;
            const oh = nh / s.strideHeight;
            for (let kw = 0; kw < KW; kw++) {
              const nw = iw + s.padLeft - kw;
              const ow = nw / s.strideWidth;
              const inside = nh >= 0 && nw >= 0 && Number.isInteger(oh) && Number.isInteger(ow) && oh < s.outHeight && ow < s.outWidth;
              const row = inside ? ((b * s.outHeight + oh) * s.outWidth + ow) * N : -1;
              const wt = (kh * KW + kw) * C * N + c * N;
              for (let o = 0; o < N; o++) sum = f(sum + f((row < 0 ? 0 : dy[row + o]) * w[wt + o]));
            }
          }
          dx[q * C + c] = sum;
        }
      }
    }
  }
  return dx;
}

// ---------------------------------------------------------------------------------------------
// Kernel registrations.

type KernelArgs = { inputs: Record<string, TensorInfo | undefined>; backend: unknown; attrs?: NamedAttrMap };

/** tfjs' conv info of a forward convolution's attributes (explicit, 'same' or 'valid' padding, dilations). */
export function forwardInfo(x: { shape: number[] }, filter: { shape: number[] }, attrs: NamedAttrMap): tf.backend_util.Conv2DInfo {
  const a = attrs as unknown as tf.Conv2DAttrs;
  return tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filter.shape as [number, number, number, number],
    a.strides,
    a.dilations ?? 1,
    a.pad,
    a.dimRoundingMode,
    false,
    tf.backend_util.convertConv2DDataFormat(a.dataFormat ?? 'NHWC'),
  );
}

function channelsLast(attrs: NamedAttrMap): boolean {
  const f = attrs.dataFormat;
  return f === undefined || f === 'NHWC' || f === 'channelsLast';
}

/** Conv2D (fused: FusedConv2D) in conv2d.c where it covers the call, else the stock XNNPACK kernel. */
export function conv2dConfig(fused: boolean): KernelConfig {
  const name = fused ? 'FusedConv2D' : 'Conv2D';
  const stock = stockKernel(name);
  return {
    kernelName: name,
    backendName: WASM,
    setupFunc: stock.setupFunc,
    kernelFunc: (args) => {
      const { inputs, attrs = {} } = args as KernelArgs;
      const backend = asWasm(args.backend);
      const { x, filter } = inputs;
      if (x !== undefined && filter !== undefined && x.shape.length === 4 && channelsLast(attrs)) {
        checkConvOperands(name, x.shape, filter.shape);
        const s = convShapeOf(forwardInfo(x, filter, attrs));
        const epilogue = fused ? fusedEpilogue(attrs, inputs.bias, inputs.preluActivationWeights, s.outChannels) : { act: 'linear' as const };
        const k = epilogue === null ? null : convKernels(backend, s, 'forward', [x.dtype, filter.dtype]);
        if (k !== null && epilogue !== null) return conv2dInWasm(backend, k, x, filter, fused ? (inputs.bias ?? null) : null, epilogue.act, s);
      }
      return stock.kernelFunc(args);
    },
  };
}
