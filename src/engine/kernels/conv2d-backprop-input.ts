/**
 * Conv2DBackpropInput for wasm. The stock kernel is a plain C++ loop nest (no XNNPACK, no SIMD
 * blocking); this one uses XNNPACK:
 *
 * - stride 1: dx is the forward convolution of dy with the filter flipped in both spatial axes and
 *   its in/out channels swapped, padded by (K - 1 - pad) on each side;
 * - other strides: dcols = dy · Wᵀ (an untransposed XNNPACK matmul, [P, CO]·[CO, KH·KW·CI]) then a
 *   col2im scatter-add in JS, the exact adjoint of the im2col used by the filter gradient.
 *
 * Where conv2d.c covers the convolution (conv2d.ts: convKernels), it runs there instead, any stride.
 */
import * as tf from '@tensorflow/tfjs';
import type { KernelConfig, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';
import { geometryOf } from './conv2d-backprop-filter.ts';
import { conv2dInputGradInWasm, convKernels, convShapeOf } from './conv2d.ts';
import { checkConvOperands } from './conv2d-shape.ts';
import { col2imAdd, type ConvGeometry } from './im2col.ts';
import {
  assertChannelsLast,
  asWasm,
  chunkSize,
  dispose,
  f32,
  f32Index,
  heapF32,
  runStock,
  sliceCopy,
  transpose,
  view,
  WASM,
  type WasmBackendLike,
} from './util.ts';

/** dx by a forward XNNPACK convolution of dy; only valid for stride 1 and pads <= K - 1. */
function viaFlippedConv(backend: WasmBackendLike, dy: TensorInfo, filter: TensorInfo, info: tf.backend_util.Conv2DInfo): TensorInfo {
  const { filterHeight: KH, filterWidth: KW, inChannels: CI, outChannels: CO } = info;
  const flipped = backend.makeOutput([KH, KW, CO, CI], 'float32');
  const w = f32(backend, filter);
  const f = f32(backend, flipped);
  for (let kh = 0; kh < KH; kh++) {
    for (let kw = 0; kw < KW; kw++) {
      const srcAt = ((KH - 1 - kh) * KW + (KW - 1 - kw)) * CI * CO;
      const dstAt = (kh * KW + kw) * CO * CI;
      for (let ci = 0; ci < CI; ci++) {
        for (let co = 0; co < CO; co++) f[dstAt + co * CI + ci] = w[srcAt + ci * CO + co];
      }
    }
  }
  const p = info.padInfo;
  const pad = [
    [0, 0],
    [KH - 1 - p.top, KH - 1 - p.bottom],
    [KW - 1 - p.left, KW - 1 - p.right],
    [0, 0],
  ];
  const dx = runStock('Conv2D', backend, { x: dy, filter: flipped }, {
    strides: [1, 1],
    pad,
    dilations: [1, 1],
    dataFormat: 'NHWC',
  } as unknown as NamedAttrMap);
  dispose(backend, flipped);
  return dx;
}

/** dx by matmul + col2im; any stride and padding. */
function viaCol2im(backend: WasmBackendLike, dy: TensorInfo, filter: TensorInfo, info: tf.backend_util.Conv2DInfo): TensorInfo {
  const g: ConvGeometry = geometryOf(info);
  const { batchSize: B, outChannels: CO, outHeight: OH, outWidth: OW } = info;
  const K = g.filterHeight * g.filterWidth * g.inChannels;
  const rowsPerItem = OH * OW;
  const wT = transpose(backend, view(filter, [K, CO]), [1, 0]);
  const dx = backend.makeOutput([...info.inShape], 'float32');
  f32(backend, dx).fill(0);
  const bc = chunkSize(B, rowsPerItem * K);
  for (let b0 = 0; b0 < B; b0 += bc) {
    const nb = Math.min(bc, B - b0);
    const P = nb * rowsPerItem;
    const dyChunk = nb === B ? view(dy, [P, CO]) : sliceCopy(backend, dy, b0 * rowsPerItem * CO, [P, CO]);
    const dcols = runStock('BatchMatMul', backend, { a: view(dyChunk, [1, P, CO]), b: view(wT, [1, CO, K]) }, {
      transposeA: false,
      transposeB: false,
    });
    col2imAdd(heapF32(backend), f32Index(backend, dcols), f32Index(backend, dx), g, b0, nb);
    dispose(backend, dcols);
    if (dyChunk.dataId !== dy.dataId) dispose(backend, dyChunk);
  }
  dispose(backend, wT);
  return dx;
}

function conv2DBackpropInput(args: { inputs: Record<string, TensorInfo | undefined>; backend: unknown; attrs?: NamedAttrMap }): TensorInfo {
  const backend = asWasm(args.backend);
  const { dy, filter } = args.inputs;
  if (dy === undefined || filter === undefined) throw new Error('Conv2DBackpropInput: inputs dy and filter are required');
  const attrs = (args.attrs ?? {}) as unknown as tf.Conv2DBackpropInputAttrs;
  assertChannelsLast(attrs.dataFormat, 'Conv2DBackpropInput');
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
  const k = convKernels(backend, convShapeOf(info), 'input', [dy.dtype, filter.dtype]);
  if (k !== null) return conv2dInputGradInWasm(backend, k, dy, filter, convShapeOf(info));
  const p = info.padInfo;
  const flippedConvFits =
    info.strideHeight === 1 &&
    info.strideWidth === 1 &&
    Math.max(p.top, p.bottom) <= info.filterHeight - 1 &&
    Math.max(p.left, p.right) <= info.filterWidth - 1;
  return flippedConvFits ? viaFlippedConv(backend, dy, filter, info) : viaCol2im(backend, dy, filter, info);
}

/** Conv2DBackpropInput for wasm (replaces the stock loop nest). */
export function conv2DBackpropInputConfig(): KernelConfig {
  return {
    kernelName: 'Conv2DBackpropInput',
    backendName: WASM,
    kernelFunc: (args) => conv2DBackpropInput(args as Parameters<typeof conv2DBackpropInput>[0]),
  };
}
