/**
 * The gradients of Relu, Relu6 and ClipByValue as one wasm kernel each. tfjs builds them from
 * elementwise ops: Relu's from Step, Cast and Multiply; Relu6's from LessEqual, Step, Multiply, Cast
 * and Multiply; ClipByValue's (Keras' ReLU(max_value=6), MobileNetV2's activation) from
 * GreaterEqual, LessEqual, LogicalAnd, ZerosLike and Select: five passes over the tensor and four
 * temporaries where one pass does. The kernels (activation-grad.c, SIMD, on the backend's memory)
 * give the bits of tfjs' formulas, which {@link reluGradJs} and its siblings, their scalar twins,
 * write out.
 *
 * The gradients are registered for every backend (a gradient is global in tfjs) but use the kernels
 * only on `wasm` and `native` for float32 tensors; elsewhere they run tfjs' own formula, op for op.
 */
import * as tf from '@tensorflow/tfjs';
import type { GradConfig, KernelConfig, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';
import { simdKernelSwitch, trainKernels } from './train-kernels-simd.ts';
import { asWasm, f32, offsetOf, sizeOf, WASM } from './util.ts';

/** Our kernels' names (not tfjs kernels: nothing else registers them). */
export const RELU_GRAD = 'NeuralDiffReluGrad';
export const RELU6_GRAD = 'NeuralDiffRelu6Grad';
export const CLIP_GRAD = 'NeuralDiffClipByValueGrad';

/** tfjs' step(x): 1 where x > 0, 0 elsewhere, NaN for NaN. */
function step(x: number, keep: boolean): number {
  return Number.isNaN(x) ? NaN : keep ? 1 : 0;
}

/** Scalar twin of relu_grad: dy * step(x). */
export function reluGradJs(dy: Float32Array, x: Float32Array, dx: Float32Array): void {
  for (let i = 0; i < dx.length; i++) dx[i] = dy[i] * step(x[i], x[i] > 0);
}

/** Scalar twin of relu6_grad: dy * (step(x) * (x <= 6)). */
export function relu6GradJs(dy: Float32Array, x: Float32Array, dx: Float32Array): void {
  for (let i = 0; i < dx.length; i++) dx[i] = dy[i] * step(x[i], x[i] > 0 && x[i] <= 6);
}

/** Scalar twin of clip_grad: dy where lo <= x <= hi, 0 elsewhere. */
export function clipGradJs(dy: Float32Array, x: Float32Array, dx: Float32Array, lo: number, hi: number): void {
  // float32 bounds, as the C kernel compares with them.
  const lo32 = Math.fround(lo);
  const hi32 = Math.fround(hi);
  for (let i = 0; i < dx.length; i++) dx[i] = x[i] >= lo32 && x[i] <= hi32 ? dy[i] : 0;
}

type Which = 'relu' | 'relu6' | 'clip';

function activationGrad(which: Which, args: { inputs: Record<string, TensorInfo | undefined>; backend: unknown; attrs?: NamedAttrMap }): TensorInfo {
  const backend = asWasm(args.backend);
  const { dy, x } = args.inputs;
  if (dy === undefined || x === undefined) throw new Error(`the ${which} gradient kernel needs inputs dy and x`);
  const n = sizeOf(x.shape);
  if (sizeOf(dy.shape) !== n) throw new Error(`the ${which} gradient kernel: dy has shape ${String(dy.shape)}, x ${String(x.shape)}`);
  const lo = Number(args.attrs?.clipValueMin);
  const hi = Number(args.attrs?.clipValueMax);
  const out = backend.makeOutput([...x.shape], 'float32');
  const kernels = simdKernelSwitch.enabled ? trainKernels(backend) : null;
  const [pdy, px, pout] = [offsetOf(backend, dy), offsetOf(backend, x), offsetOf(backend, out)];
  if (kernels !== null) {
    if (which === 'relu') kernels.relu_grad(pdy, px, pout, n);
    else if (which === 'relu6') kernels.relu6_grad(pdy, px, pout, n);
    else kernels.clip_grad(pdy, px, pout, n, lo, hi);
    return out;
  }
  const [dys, xs, dxs] = [f32(backend, dy), f32(backend, x), f32(backend, out)];
  if (which === 'relu') reluGradJs(dys, xs, dxs);
  else if (which === 'relu6') relu6GradJs(dys, xs, dxs);
  else clipGradJs(dys, xs, dxs, lo, hi);
  return out;
}

/** The three wasm kernels. */
export function activationGradKernelConfigs(): KernelConfig[] {
  return ([[RELU_GRAD, 'relu'], [RELU6_GRAD, 'relu6'], [CLIP_GRAD, 'clip']] as const).map(([kernelName, which]) => ({
    kernelName,
    backendName: WASM,
    kernelFunc: (args) => activationGrad(which, args as Parameters<typeof activationGrad>[1]),
  }));
}

/**
 * Whether `kernel` runs here for these tensors: float32 values, on a backend that has it (wasm, and
 * native, which takes a copy of every wasm kernel).
 */
function fused(kernel: string, dy: tf.Tensor, x: tf.Tensor): boolean {
  return simdKernelSwitch.fuseActivationGrads && dy.dtype === 'float32' && x.dtype === 'float32' &&
    tf.getKernel(kernel, tf.getBackend()) !== undefined;
}

/** Relu's gradient: our kernel on wasm, else tfjs' formula. */
export function reluGradConfig(): GradConfig {
  return {
    kernelName: tf.Relu,
    inputsToSave: ['x'],
    gradFunc: (dy, saved) => {
      const [x] = saved;
      const d = dy as tf.Tensor;
      if (fused(RELU_GRAD, d, x)) return { x: () => tf.engine().runKernel(RELU_GRAD, { dy: d, x }) as tf.Tensor };
      return { x: () => tf.mul(d, tf.cast(tf.step(x), 'float32')) };
    },
  };
}

/** Relu6's gradient: our kernel on wasm, else tfjs' formula. */
export function relu6GradConfig(): GradConfig {
  return {
    kernelName: tf.Relu6,
    inputsToSave: ['x'],
    gradFunc: (dy, saved) => {
      const [x] = saved;
      const d = dy as tf.Tensor;
      if (fused(RELU6_GRAD, d, x)) return { x: () => tf.engine().runKernel(RELU6_GRAD, { dy: d, x }) as tf.Tensor };
      return { x: () => tf.mul(d, tf.cast(tf.mul(tf.lessEqual(x, 6), tf.step(x)), 'float32')) };
    },
  };
}

/** ClipByValue's gradient: our kernel on wasm, else tfjs' formula. */
export function clipByValueGradConfig(): GradConfig {
  return {
    kernelName: tf.ClipByValue,
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved;
      const d = dy as tf.Tensor;
      const { clipValueMin, clipValueMax } = attrs as unknown as tf.ClipByValueAttrs;
      if (fused(CLIP_GRAD, d, x)) {
        return { x: () => tf.engine().runKernel(CLIP_GRAD, { dy: d, x }, { clipValueMin, clipValueMax }) as tf.Tensor };
      }
      return {
        x: () => tf.where(tf.logicalAnd(tf.greaterEqual(x, clipValueMin), tf.lessEqual(x, clipValueMax)), d, tf.zerosLike(d)),
      };
    },
  };
}
