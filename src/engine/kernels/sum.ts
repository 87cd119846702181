/**
 * Sum over every axis but the last, for wasm, in one pass. tfjs-backend-wasm 4.22 sums only over
 * innermost axes, so it first transposes the whole input to put the reduced axes last: a copy of
 * every gradient a bias gets (a dense layer's over the batch, a convolution's over the batch and
 * positions) in each training step. channel_sum (sum.c) adds each channel's values in
 * the same order the transposed sum does, so the result has the stock kernel's bits; other
 * reductions, dtypes and empty tensors keep the stock kernel.
 */
import * as tf from '@tensorflow/tfjs';
import type { KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs';
import { simdKernelSwitch, trainKernels } from './train-kernels-simd.ts';
import { asWasm, f32, offsetOf, sizeOf, stockKernel, WASM } from './util.ts';

/** Scalar twin of channel_sum: out[c] = Σ_p x[p,c], added in float32 in order of p. */
export function channelSumJs(dy: Float32Array, out: Float32Array): void {
  const C = out.length;
  out.fill(0);
  for (let i = 0; i < dy.length; i++) out[i % C] = Math.fround(out[i % C] + dy[i]);
}

const sum: KernelFunc = ({ inputs, attrs, backend }) => {
  const x = inputs.x as TensorInfo;
  const { axis, keepDims } = (attrs ?? {}) as unknown as { axis: number | number[]; keepDims: boolean };
  const rank = x.shape.length;
  const axes = tf.util.parseAxisParam(axis, x.shape).sort((a, b) => a - b);
  const leading = rank >= 2 && axes.length === rank - 1 && axes.every((a, i) => a === i);
  if (!simdKernelSwitch.fuseSums || !leading || x.dtype !== 'float32' || sizeOf(x.shape) === 0) {
    return stockKernel('Sum').kernelFunc({ inputs, attrs, backend });
  }
  const b = asWasm(backend);
  const C = x.shape[rank - 1];
  const out = b.makeOutput(keepDims ? [...x.shape.slice(0, -1).map(() => 1), C] : [C], 'float32');
  const kernels = simdKernelSwitch.enabled ? trainKernels(b) : null;
  if (kernels !== null) kernels.channel_sum(offsetOf(b, x), offsetOf(b, out), sizeOf(x.shape) / C, C);
  else channelSumJs(f32(b, x), f32(b, out));
  return out;
};

/**
 * Sum for wasm: over the leading axes in one pass, otherwise the stock kernel, whose setup (binding
 * the backend module's sum function) it keeps.
 */
export function sumConfig(): KernelConfig {
  return { kernelName: 'Sum', backendName: WASM, kernelFunc: sum, setupFunc: stockKernel('Sum').setupFunc };
}
