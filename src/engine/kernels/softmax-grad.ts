/**
 * Softmax's gradient as one kernel (issue #63). tfjs computes dx = dy y - sum(dy y) y over the last
 * axis as four kernels (Multiply, Sum, Multiply, Sub), each a pass over the attention's
 * probabilities and an engine call, with two temporaries. `softmax_grad` (softmax-gather-grad.c,
 * WebAssembly SIMD on the backend's memory) does it in one call: the products rounded to float32,
 * summed over the row in order as tfjs' Sum does, then dy y - s y, so it gives tfjs' bits;
 * {@link softmaxGradJs} is the same in JavaScript (where SIMD cannot run) and
 * {@link softmaxGradReference} the float64 twin the tests compare both with.
 *
 * The gradient is registered for every backend (a gradient is global in tfjs) and uses the kernel
 * on `wasm` and `native` (which copies wasm's kernels) for float32 tensors whose softmax ran over
 * the last axis; elsewhere it runs tfjs' own gradient.
 */
import * as tf from '@tensorflow/tfjs';
import type { GradConfig, KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs';
import { simdKernelSwitch, trainKernels } from './train-kernels-simd.ts';
import { asWasm, f32, offsetOf, sizeOf, WASM } from './util.ts';

/** Our kernel's name (not a tfjs kernel: nothing else registers it). */
export const SOFTMAX_GRAD = 'NeuralDiffSoftmaxGrad';

/** Twin of softmax_grad in float32, op for op: dx = dy y - s y per row, s the row's sum of dy y in order. */
export function softmaxGradJs(dy: Float32Array, y: Float32Array, dx: Float32Array, width: number): void {
  for (let at = 0; at < dx.length; at += width) {
    let s = 0;
    for (let i = at; i < at + width; i++) {
      dx[i] = dy[i] * y[i];
      s = Math.fround(s + dx[i]);
    }
    for (let i = at; i < at + width; i++) dx[i] = dx[i] - Math.fround(s * y[i]);
  }
}

/** The gradient of a softmax over rows of `width` from its output, in float64: y_i (dy_i - sum_j dy_j y_j). */
export function softmaxGradReference(dy: ArrayLike<number>, y: ArrayLike<number>, width: number): Float64Array {
  const dx = new Float64Array(dy.length);
  for (let at = 0; at < dy.length; at += width) {
    let s = 0;
    for (let j = at; j < at + width; j++) s += dy[j] * y[j];
    for (let i = at; i < at + width; i++) dx[i] = y[i] * (dy[i] - s);
  }
  return dx;
}

const softmaxGradKernel: KernelFunc = ({ inputs, backend }) => {
  const b = asWasm(backend);
  const { dy, y } = inputs as Record<string, TensorInfo>;
  if (dy.shape.join() !== y.shape.join()) throw new Error(`the softmax gradient kernel: dy has shape [${dy.shape}], y [${y.shape}]; they must be equal`);
  const width = y.shape[y.shape.length - 1] ?? 1;
  const dx = b.makeOutput([...y.shape], 'float32');
  const n = sizeOf(y.shape);
  if (n === 0) return dx;
  const k = simdKernelSwitch.enabled ? trainKernels(b) : null;
  if (k) k.softmax_grad(offsetOf(b, dy), offsetOf(b, y), offsetOf(b, dx), n / width, width);
  else softmaxGradJs(f32(b, dy), f32(b, y), f32(b, dx), width);
  return dx;
};

/** The kernel for wasm (the native backend copies wasm's kernels when it registers). */
export function softmaxGradKernelConfig(): KernelConfig {
  return { kernelName: SOFTMAX_GRAD, backendName: WASM, kernelFunc: softmaxGradKernel };
}

/**
 * Softmax's gradient: our kernel where it runs (module doc), else `stock`'s (tfjs' own, taken
 * before this one replaced it).
 */
export function softmaxGradConfig(stock: GradConfig): GradConfig {
  return {
    kernelName: tf.Softmax,
    outputsToSave: [true],
    gradFunc: (dy, saved, attrs) => {
      const [y] = saved;
      const d = dy as tf.Tensor;
      const dim = (attrs as unknown as tf.SoftmaxAttrs).dim;
      const last = dim === -1 || dim === y.rank - 1;
      if (simdKernelSwitch.fuseSoftmaxGrad && last && d.dtype === 'float32' && y.dtype === 'float32' && tf.getKernel(SOFTMAX_GRAD, tf.getBackend()) !== undefined) {
        return { logits: () => tf.engine().runKernel(SOFTMAX_GRAD, { dy: d, y }) as tf.Tensor };
      }
      return stock.gradFunc(dy, saved, attrs);
    },
  };
}
