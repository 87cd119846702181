/**
 * Conv2DBackpropFilter for wasm, which the stock package does not register at all (so no
 * convolution could be trained on wasm).
 *
 * dW[K, CO] = colsᵀ · dy with cols = im2col(x) [P, K], P = batch·OH·OW, K = KH·KW·CI. We build
 * colsᵀ directly (in JS, into the wasm heap, from a channel-major copy of x so rows fill from
 * contiguous runs) and multiply untransposed, so XNNPACK's fast path runs. Orientation matters:
 * XNNPACK packs its second operand on every call, and packing dy (P·CO) is several times cheaper
 * than packing the column matrix (P·K), which cost as much as the multiply itself. The column
 * matrix is built in batch chunks to bound its memory.
 *
 * Where conv2d.c covers the convolution (conv2d.ts: convKernels), it runs there instead: no column
 * matrix, no packing.
 */
import * as tf from '@tensorflow/tfjs';
import type { KernelConfig, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';
import { conv2dFilterGradInWasm, convKernels, convShapeOf } from './conv2d.ts';
import { checkConvOperands } from './conv2d-shape.ts';
import { im2colT, type ConvGeometry } from './im2col.ts';
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
} from './util.ts';

/** Geometry of a conv from tfjs' conv info (which resolves 'same'/'valid'/explicit padding). */
export function geometryOf(info: tf.backend_util.Conv2DInfo): ConvGeometry {
  return {
    inHeight: info.inHeight,
    inWidth: info.inWidth,
    inChannels: info.inChannels,
    outHeight: info.outHeight,
    outWidth: info.outWidth,
    filterHeight: info.filterHeight,
    filterWidth: info.filterWidth,
    strideHeight: info.strideHeight,
    strideWidth: info.strideWidth,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
  };
}

function conv2DBackpropFilter(args: { inputs: Record<string, TensorInfo | undefined>; backend: unknown; attrs?: NamedAttrMap }): TensorInfo {
  const backend = asWasm(args.backend);
  const { x, dy } = args.inputs;
  if (x === undefined || dy === undefined) throw new Error('Conv2DBackpropFilter: inputs x and dy are required');
  const attrs = (args.attrs ?? {}) as unknown as tf.Conv2DBackpropFilterAttrs;
  assertChannelsLast(attrs.dataFormat, 'Conv2DBackpropFilter');
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
  const k = convKernels(backend, convShapeOf(info), 'filter', [x.dtype, dy.dtype]);
  if (k !== null) return conv2dFilterGradInWasm(backend, k, x, dy, convShapeOf(info));
  const g = geometryOf(info);
  const { batchSize: B, outChannels: CO, outHeight: OH, outWidth: OW } = info;
  const K = g.filterHeight * g.filterWidth * g.inChannels;
  const rowsPerItem = OH * OW;
  const bc = chunkSize(B, rowsPerItem * K);

  const xT = transpose(backend, x, [3, 0, 1, 2]);
  let acc: TensorInfo | null = null;
  for (let b0 = 0; b0 < B; b0 += bc) {
    const nb = Math.min(bc, B - b0);
    const P = nb * rowsPerItem;
    const dyChunk = nb === B ? view(dy, [1, P, CO]) : sliceCopy(backend, dy, b0 * rowsPerItem * CO, [1, P, CO]);
    const colsT = backend.makeOutput([1, K, P], 'float32');
    im2colT(heapF32(backend), f32Index(backend, xT), B, f32Index(backend, colsT), g, b0, nb);
    const part = runStock('BatchMatMul', backend, { a: colsT, b: dyChunk }, { transposeA: false, transposeB: false });
    if (dyChunk.dataId !== dy.dataId) dispose(backend, dyChunk);
    dispose(backend, colsT);
    if (acc === null) {
      acc = part;
    } else {
      const into = f32(backend, acc);
      const add = f32(backend, part);
      for (let i = 0; i < into.length; i++) into[i] += add[i];
      dispose(backend, part);
    }
  }
  dispose(backend, xT);
  if (acc === null) {
    const zeros = backend.makeOutput([...attrs.filterShape], 'float32');
    f32(backend, zeros).fill(0);
    return zeros;
  }
  return { ...acc, shape: [...attrs.filterShape] };
}

/** Conv2DBackpropFilter for wasm: transposed im2col in JS, then one XNNPACK matmul per batch chunk. */
export function conv2DBackpropFilterConfig(): KernelConfig {
  return {
    kernelName: 'Conv2DBackpropFilter',
    backendName: WASM,
    kernelFunc: (args) => conv2DBackpropFilter(args as Parameters<typeof conv2DBackpropFilter>[0]),
  };
}
