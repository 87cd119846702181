/**
 * MaxPoolGrad for wasm. The stock kernel walks every input position over every window that could
 * contain it (the formulation of tfjs' WebGL shader); here each output window finds its maximum
 * once and sends dy there, a single pass that is several times faster and was a quarter of a
 * keyword-spotting CNN's training step. Ties go to the first maximum in row-major window order and
 * padding never wins, exactly as in tfjs' cpu kernel. The pass runs in WebAssembly SIMD
 * (max-pool-grad.c, four channels a vector); {@link maxPoolGradJs} is its JavaScript twin, which
 * gives the same bits and runs where the SIMD module cannot.
 */
import * as tf from '@tensorflow/tfjs';
import type { KernelConfig, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';
import { simdKernelSwitch, trainKernels } from './train-kernels-simd.ts';
import { asWasm, f32, offsetOf, WASM } from './util.ts';

/** A max pool's geometry (NHWC), as tfjs' computePool2DInfo gives it. */
export interface PoolGeometry {
  B: number; H: number; W: number; C: number; OH: number; OW: number;
  KH: number; KW: number; sh: number; sw: number; pt: number; pl: number;
}

/** Scalar twin of max_pool_grad: out = the gradient of a max pool from its input xs and dys. */
export function maxPoolGradJs(xs: Float32Array, dys: Float32Array, out: Float32Array, g: PoolGeometry): void {
  const { B, H, W, C, OH, OW, KH, KW, sh, sw, pt, pl } = g;
  out.fill(0);
  const best = new Float32Array(C);
  const at = new Int32Array(C);
  let dyAt = 0;
  for (let b = 0; b < B; b++) {
    const xBatch = b * H * W * C;
    for (let oh = 0; oh < OH; oh++) {
      const ih0 = oh * sh - pt;
      const ihLo = Math.max(0, ih0);
      const ihHi = Math.min(H, ih0 + KH);
      for (let ow = 0; ow < OW; ow++, dyAt += C) {
        const iw0 = ow * sw - pl;
        const iwLo = Math.max(0, iw0);
        const iwHi = Math.min(W, iw0 + KW);
        best.fill(-Infinity);
        at.fill(-1);
        for (let ih = ihLo; ih < ihHi; ih++) {
          for (let iw = iwLo; iw < iwHi; iw++) {
            const base = xBatch + (ih * W + iw) * C;
            for (let c = 0; c < C; c++) {
              const v = xs[base + c];
              if (v > best[c]) {
                best[c] = v;
                at[c] = base + c;
              }
            }
          }
        }
        for (let c = 0; c < C; c++) if (at[c] >= 0) out[at[c]] += dys[dyAt + c];
      }
    }
  }
}

function maxPoolGrad(args: { inputs: Record<string, TensorInfo | undefined>; backend: unknown; attrs?: NamedAttrMap }): TensorInfo {
  const backend = asWasm(args.backend);
  const { dy, input } = args.inputs;
  if (dy === undefined || input === undefined) throw new Error('MaxPoolGrad: inputs dy and input are required');
  const attrs = (args.attrs ?? {}) as unknown as tf.MaxPoolGradAttrs;
  const info = tf.backend_util.computePool2DInfo(
    input.shape as [number, number, number, number],
    attrs.filterSize,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
  );
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = info;
  const { filterHeight: KH, filterWidth: KW, strideHeight: sh, strideWidth: sw } = info;
  const g: PoolGeometry = { B, H, W, C, OH, OW, KH, KW, sh, sw, pt: info.padInfo.top, pl: info.padInfo.left };
  const dx = backend.makeOutput([...input.shape], 'float32');
  const kernels = simdKernelSwitch.enabled ? trainKernels(backend) : null;
  if (kernels !== null) {
    kernels.max_pool_grad(offsetOf(backend, input), offsetOf(backend, dy), offsetOf(backend, dx), B, H, W, C, OH, OW, KH, KW, sh, sw, g.pt, g.pl);
  } else {
    maxPoolGradJs(f32(backend, input), f32(backend, dy), f32(backend, dx), g);
  }
  return dx;
}

/** MaxPoolGrad for wasm: one argmax pass per window, scatter of dy to the winners. */
export function maxPoolGradConfig(): KernelConfig {
  return {
    kernelName: 'MaxPoolGrad',
    backendName: WASM,
    kernelFunc: (args) => maxPoolGrad(args as Parameters<typeof maxPoolGrad>[0]),
  };
}
