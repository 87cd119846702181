/**
 * DepthwiseConv2dNativeBackpropFilter for wasm (not registered in the stock package): a direct
 * loop over the wasm heap, accumulated in float64. It runs as WebAssembly SIMD (depthwise.c, on the
 * backend's memory, scratch from makeOutput); the JavaScript loop below is its scalar twin, run
 * where the SIMD module cannot, and gives the same bits.
 */
import * as tf from '@tensorflow/tfjs';
import type { KernelConfig, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';
import { depthwiseGeometry } from './depthwise-conv2d-geometry.ts';
import { simdKernelSwitch, trainKernels } from './train-kernels-simd.ts';
import { asWasm, dispose, f32, offsetOf, WASM } from './util.ts';

function depthwiseBackpropFilter(args: { inputs: Record<string, TensorInfo | undefined>; backend: unknown; attrs?: NamedAttrMap }): TensorInfo {
  const backend = asWasm(args.backend);
  const { x, dy } = args.inputs;
  if (x === undefined || dy === undefined) throw new Error('DepthwiseConv2dNativeBackpropFilter: inputs x and dy are required');
  const attrs = (args.attrs ?? {}) as unknown as tf.DepthwiseConv2dNativeBackpropFilterAttrs;
  const { info, multiplier: M } = depthwiseGeometry(
    'DepthwiseConv2dNativeBackpropFilter',
    x.shape as [number, number, number, number],
    attrs.filterShape,
    attrs,
  );
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = info;
  const { filterHeight: KH, filterWidth: KW, strideHeight: sh, strideWidth: sw } = info;
  const pt = info.padInfo.top;
  const pl = info.padInfo.left;
  const CM = C * M;
  const out = backend.makeOutput([...attrs.filterShape], 'float32');
  const kernels = simdKernelSwitch.enabled ? trainKernels(backend) : null;
  if (kernels !== null) {
    const acc = backend.makeOutput([2 * KH * KW * CM], 'float32'); // KH·KW·CM float64
    kernels.depthwise_filter_grad(
      offsetOf(backend, x), offsetOf(backend, dy), offsetOf(backend, acc), offsetOf(backend, out),
      B, H, W, C, OH, OW, KH, KW, sh, sw, pt, pl, M,
    );
    dispose(backend, acc);
    return out;
  }
  const acc = new Float64Array(KH * KW * CM);
  const xs = f32(backend, x);
  const dys = f32(backend, dy);
  for (let b = 0; b < B; b++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        const dyAt = ((b * OH + oh) * OW + ow) * CM;
        for (let kh = 0; kh < KH; kh++) {
          const ih = oh * sh + kh - pt;
          if (ih < 0 || ih >= H) continue;
          for (let kw = 0; kw < KW; kw++) {
            const iw = ow * sw + kw - pl;
            if (iw < 0 || iw >= W) continue;
            const xAt = ((b * H + ih) * W + iw) * C;
            const wAt = (kh * KW + kw) * CM;
            if (M === 1) {
              for (let c = 0; c < C; c++) acc[wAt + c] += xs[xAt + c] * dys[dyAt + c];
            } else {
              for (let c = 0; c < C; c++) {
                const xv = xs[xAt + c];
                for (let m = 0; m < M; m++) acc[wAt + c * M + m] += xv * dys[dyAt + c * M + m];
              }
            }
          }
        }
      }
    }
  }
  f32(backend, out).set(acc);
  return out;
}

/** DepthwiseConv2dNativeBackpropFilter for wasm: a direct loop (SIMD, or its JavaScript twin), accumulated in float64. */
export function depthwiseConv2dNativeBackpropFilterConfig(): KernelConfig {
  return {
    kernelName: 'DepthwiseConv2dNativeBackpropFilter',
    backendName: WASM,
    kernelFunc: (args) => depthwiseBackpropFilter(args as Parameters<typeof depthwiseBackpropFilter>[0]),
  };
}
