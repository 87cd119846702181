/**
 * The gradient of FusedBatchNorm without Tile. tfjs' own gradient broadcasts 1/sqrt(variance + ε)
 * to the whole input with a Tile before multiplying it into dy: a copy the size of every batch-norm
 * input, once per layer and step. In a MobileNetV2 training step at batch 4 on wasm the Tiles took
 * about a quarter of the kernel time (bench/profile-train-step.ts), more than any convolution.
 * Multiplying with broadcasting gives each element the very same product (a tiled copy of a
 * value is that value), so the gradients are bit for bit those of the stock gradient, only
 * without the copy.
 *
 * y = (x − mean) · r · scale + offset with r = 1/sqrt(variance + ε), per channel (the last axis, or
 * elementwise when the statistics have the input's rank):
 *   dy/dx = dy · r · scale;  dy/dscale = Σ dy · (x − mean) · r;  dy/doffset = Σ dy;
 *   dy/dmean = Σ −r · dy · scale;  dy/dvariance = Σ −½ r³ · (x − mean) · dy · scale,
 * the sums over every axis the statistics were broadcast along. A gradient, not a kernel: it is
 * registered for every backend (the values are unchanged on all of them).
 *
 * On the wasm and native backends, with statistics per channel of the last axis, dx and dscale are
 * one pass each (batch-norm-grad.c, SIMD on the backend's memory; {@link bnInputGradJs} and
 * {@link bnScaleGradJs} are the JavaScript twins) where tfjs runs two or three elementwise kernels,
 * a transpose of the whole tensor and a sum: the same bits. doffset, a Sum over every axis but the
 * last, is one pass through the trainer's Sum kernel (sum.ts).
 */
import * as tf from '@tensorflow/tfjs';
import type { GradConfig, KernelConfig, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';
import { simdKernelSwitch, trainKernels } from './train-kernels-simd.ts';
import { asWasm, f32, offsetOf, sizeOf, WASM } from './util.ts';

/** Our kernels' names (not tfjs kernels: nothing else registers them). */
export const BN_INPUT_GRAD = 'NeuralDiffBatchNormInputGrad';
export const BN_SCALE_GRAD = 'NeuralDiffBatchNormScaleGrad';

/** Scalar twin of bn_input_grad: dx = (dy · r) · scale, per channel of the last axis. */
export function bnInputGradJs(dy: Float32Array, r: Float32Array, scale: Float32Array, dx: Float32Array): void {
  const C = r.length;
  for (let i = 0; i < dx.length; i++) dx[i] = Math.fround(Math.fround(dy[i] * r[i % C]) * scale[i % C]);
}

/** Scalar twin of bn_scale_grad: out[c] = Σ_p dy · ((x − mean) · r), added in float32 in order of p. */
export function bnScaleGradJs(dy: Float32Array, x: Float32Array, mean: Float32Array, r: Float32Array, out: Float32Array): void {
  const C = out.length;
  out.fill(0);
  for (let i = 0; i < dy.length; i++) {
    const c = i % C;
    out[c] = Math.fround(out[c] + Math.fround(dy[i] * Math.fround(Math.fround(x[i] - mean[c]) * r[c])));
  }
}

type Which = 'input' | 'scale';

function batchNormGradKernel(which: Which, args: { inputs: Record<string, TensorInfo | undefined>; backend: unknown }): TensorInfo {
  const backend = asWasm(args.backend);
  const { dy, x, mean, r, scale } = args.inputs;
  if (dy === undefined || r === undefined) throw new Error(`the batch-norm ${which} gradient kernel needs dy and r`);
  const C = r.shape[0] ?? 0;
  const n = sizeOf(dy.shape);
  if (r.shape.length !== 1 || dy.shape[dy.shape.length - 1] !== C) throw new Error(`the batch-norm ${which} gradient kernel: dy has shape ${String(dy.shape)}, r ${String(r.shape)}`);
  const P = C === 0 ? 0 : n / C;
  const out = backend.makeOutput(which === 'input' ? [...dy.shape] : [C], 'float32');
  const kernels = simdKernelSwitch.enabled ? trainKernels(backend) : null;
  const at = (t: TensorInfo | undefined) => {
    if (t === undefined) throw new Error(`the batch-norm ${which} gradient kernel is missing an input`);
    return t;
  };
  if (kernels !== null) {
    if (which === 'input') kernels.bn_input_grad(offsetOf(backend, dy), offsetOf(backend, r), offsetOf(backend, at(scale)), offsetOf(backend, out), P, C);
    else kernels.bn_scale_grad(offsetOf(backend, dy), offsetOf(backend, at(x)), offsetOf(backend, at(mean)), offsetOf(backend, r), offsetOf(backend, out), P, C);
    return out;
  }
  if (which === 'input') bnInputGradJs(f32(backend, dy), f32(backend, r), f32(backend, at(scale)), f32(backend, out));
  else bnScaleGradJs(f32(backend, dy), f32(backend, at(x)), f32(backend, at(mean)), f32(backend, r), f32(backend, out));
  return out;
}

/** The two wasm kernels (the native backend takes copies of every wasm kernel). */
export function batchNormGradKernelConfigs(): KernelConfig[] {
  return ([[BN_INPUT_GRAD, 'input'], [BN_SCALE_GRAD, 'scale']] as const).map(([kernelName, which]) => ({
    kernelName,
    backendName: WASM,
    kernelFunc: (args) => batchNormGradKernel(which, args as Parameters<typeof batchNormGradKernel>[1]),
  }));
}

/**
 * Whether the kernels run for this batch norm: float32, statistics and scale per channel of the
 * last axis, on a backend that has them. (A batch norm without scale never gets here: tfjs 4.22
 * fails to save its missing scale for the backward pass.)
 */
function fusedHere(dy: tf.Tensor, x: tf.Tensor, mean: tf.Tensor, variance: tf.Tensor, scale: tf.Tensor | undefined): scale is tf.Tensor {
  const C = x.shape[x.rank - 1];
  const perChannel = (t: tf.Tensor) => t.rank === 1 && t.shape[0] === C && t.dtype === 'float32';
  return simdKernelSwitch.fuseBatchNormGrads && scale !== undefined && [mean, variance, scale].every(perChannel) &&
    dy.dtype === 'float32' && x.dtype === 'float32' && tf.getKernel(BN_INPUT_GRAD, tf.getBackend()) !== undefined;
}

function batchNormGrad(dy: tf.Tensor, saved: tf.Tensor[], attrs: NamedAttrMap): Record<string, () => tf.Tensor> {
  const { varianceEpsilon } = attrs as unknown as { varianceEpsilon: number };
  const [x, mean, variance, scale] = saved;
  const scaleValue = scale ?? tf.scalar(1);
  const axes = tf.backend_util.getReductionAxes(mean.shape, x.shape);
  const reduce = (t: tf.Tensor) => (mean.rank === 1 ? tf.sum(t, axes) : t);
  const r = tf.rsqrt(tf.add(variance, tf.scalar(varianceEpsilon)));
  const xMinusMean = () => tf.sub(x, mean);
  const dyTimesScale = () => tf.mul(dy, scaleValue);
  const grads: Record<string, () => tf.Tensor> = {
    // Same operation order as the stock gradient, (dy · r) · scale, so the same rounding.
    x: () => tf.reshape(tf.mul(tf.mul(dy, r), scaleValue), x.shape),
    mean: () => tf.reshape(reduce(tf.mul(tf.mul(r, tf.scalar(-1)), dyTimesScale())), mean.shape),
    variance: () => {
      const minusHalfRCube = tf.mul(tf.mul(tf.mul(r, r), r), tf.scalar(-0.5));
      return tf.reshape(reduce(tf.mul(tf.mul(minusHalfRCube, xMinusMean()), dyTimesScale())), mean.shape);
    },
    scale: () => tf.reshape(reduce(tf.mul(dy, tf.mul(xMinusMean(), r))), mean.shape),
    offset: () => tf.reshape(reduce(dy), mean.shape),
  };
  if (fusedHere(dy, x, mean, variance, scale)) {
    // One pass each; doffset is the Sum above (one pass too, sum.ts), and mean's and variance's
    // (moving statistics, rarely trained) stay as above.
    const run = (kernel: string, inputs: tf.NamedTensorMap) => tf.engine().runKernel(kernel, inputs) as tf.Tensor;
    grads.x = () => run(BN_INPUT_GRAD, { dy, r, scale });
    grads.scale = () => run(BN_SCALE_GRAD, { dy, x, mean, r });
  }
  return grads;
}

/** The FusedBatchNorm gradient above (replaces tfjs' own, for every backend). */
export function batchNormGradConfig(): GradConfig {
  return {
    kernelName: 'FusedBatchNorm',
    inputsToSave: ['x', 'mean', 'variance', 'scale'],
    gradFunc: (dy, saved, attrs) => batchNormGrad(dy as tf.Tensor, saved, attrs),
  };
}
