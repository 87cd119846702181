/**
 * DepthwiseConv2dNativeBackpropInput for wasm (not registered in the stock package): the adjoint
 * of the depthwise conv, accumulated in float64. It runs as WebAssembly SIMD (depthwise.c: a
 * gather per input pixel, adding the same terms in the same order, on the backend's memory); the
 * JavaScript scatter loop below is its scalar twin, run where the SIMD module cannot, and gives the
 * same bits.
 */
import * as tf from '@tensorflow/tfjs';
import type { KernelConfig, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';
import { depthwiseGeometry } from './depthwise-conv2d-geometry.ts';
import { simdKernelSwitch, trainKernels } from './train-kernels-simd.ts';
import { asWasm, f32, offsetOf, WASM } from './util.ts';

function depthwiseBackpropInput(args: { inputs: Record<string, TensorInfo | undefined>; backend: unknown; attrs?: NamedAttrMap }): TensorInfo {
  const backend = asWasm(args.backend);
  const { dy, filter } = args.inputs;
  if (dy === undefined || filter === undefined) throw new Error('DepthwiseConv2dNativeBackpropInput: inputs dy and filter are required');
  const attrs = (args.attrs ?? {}) as unknown as tf.DepthwiseConv2dNativeBackpropInputAttrs;
  const { info, multiplier: M } = depthwiseGeometry(
    'DepthwiseConv2dNativeBackpropInput',
    attrs.inputShape,
    filter.shape as [number, number, number, number],
    attrs,
  );
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = info;
  const { filterHeight: KH, filterWidth: KW, strideHeight: sh, strideWidth: sw } = info;
  const pt = info.padInfo.top;
  const pl = info.padInfo.left;
  const CM = C * M;
  const out = backend.makeOutput([...attrs.inputShape], 'float32');
  const kernels = simdKernelSwitch.enabled ? trainKernels(backend) : null;
  if (kernels !== null) {
    kernels.depthwise_input_grad(
      offsetOf(backend, dy), offsetOf(backend, filter), offsetOf(backend, out),
      B, H, W, C, OH, OW, KH, KW, sh, sw, pt, pl, M,
    );
    return out;
  }
  const acc = new Float64Array(B * H * W * C);
  const dys = f32(backend, dy);
  const ws = f32(backend, filter);
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
            const dxAt = ((b * H + ih) * W + iw) * C;
            const wAt = (kh * KW + kw) * CM;
            if (M === 1) {
              for (let c = 0; c < C; c++) acc[dxAt + c] += dys[dyAt + c] * ws[wAt + c];
            } else {
              for (let c = 0; c < C; c++) {
                let s = 0;
                for (let m = 0; m < M; m++) s += dys[dyAt + c * M + m] * ws[wAt + c * M + m];
                acc[dxAt + c] += s;
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

/** DepthwiseConv2dNativeBackpropInput for wasm: SIMD gather or JavaScript scatter, accumulated in float64. */
export function depthwiseConv2dNativeBackpropInputConfig(): KernelConfig {
  return {
    kernelName: 'DepthwiseConv2dNativeBackpropInput',
    backendName: WASM,
    kernelFunc: (args) => depthwiseBackpropInput(args as Parameters<typeof depthwiseBackpropInput>[0]),
  };
}
