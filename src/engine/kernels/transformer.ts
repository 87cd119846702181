/**
 * Fused kernels for the parts of a transformer ONNX exports as chains of element-wise operators
 * (issue #63): the normalisation of a LayerNorm, y = (x - mean) / sqrt(var + eps) over the last
 * axis (opset < 17 exports it as ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div: seven kernels
 * forward and about twenty backward, each a pass over the activations and an engine call), and
 * the exact GELU, 0.5 x (1 + erf(x / sqrt 2)) (Div, Erf, Add, Mul, Mul). The ONNX executor
 * recognises both chains (src/engine/onnx/fuse.ts) and runs {@link layerNormalize} and
 * {@link gelu}: one kernel forward and one backward each, with tf.customGrad.
 *
 * The kernels work on the wasm heap in place (the wasm and native backends, which share the
 * kernels registered for wasm): WebAssembly SIMD from transformer.c (train-kernels-simd.ts), or
 * the JavaScript loops here where SIMD cannot run (or `simdKernelSwitch.enabled` is off); on
 * another backend the same ops run as tfjs ops (the chain as ONNX wrote it, so the same values
 * within float rounding). Each kernel has a float64 scalar twin ({@link layerNormReference}, ...)
 * the tests compare both with on many shapes.
 */
import * as tf from '@tensorflow/tfjs';
import type { KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs';
import { simdKernelSwitch, trainKernels } from './train-kernels-simd.ts';
import { asWasm, f32, offsetOf, sizeOf, WASM, type WasmBackendLike } from './util.ts';

/** The SIMD kernels on this backend's memory, or null (the JavaScript loops run). */
function simd(b: WasmBackendLike) {
  return simdKernelSwitch.enabled ? trainKernels(b) : null;
}

/**
 * erf(x) in float32 precision without an exponential: a rational function of x^2 over
 * [-4, 4] (erf is 1 to float32 beyond), the coefficients of Eigen's float erf (as TensorFlow's
 * CPU kernels compute it): within 2e-7 of erf everywhere.
 */
export function erf(x: number): number {
  const v = x < -4 ? -4 : x > 4 ? 4 : x;
  const x2 = v * v;
  let p = x2 * -2.72614225801306e-10 + 2.77068142495902e-8;
  p = x2 * p + -2.10102402082508e-6;
  p = x2 * p + -5.69250639462346e-5;
  p = x2 * p + -7.34990630326855e-4;
  p = x2 * p + -2.95459980854025e-3;
  p = x2 * p + -1.60960333262415e-2;
  let q = x2 * -1.45660718464996e-5 + -2.13374055278905e-4;
  q = x2 * q + -1.68282697438203e-3;
  q = x2 * q + -7.37332916720468e-3;
  q = x2 * q + -1.42647390514189e-2;
  return (v * p) / q;
}

const INV_SQRT2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/** n = (x - mean) * rstd per row of `width`; rstd[r] = 1 / sqrt(var + eps) (kept for the gradient). */
export function layerNormInto(x: Float32Array, n: Float32Array, rstd: Float32Array, width: number, eps: number): void {
  const rows = rstd.length;
  for (let r = 0, at = 0; r < rows; r++, at += width) {
    let sum = 0;
    for (let i = 0; i < width; i++) sum += x[at + i];
    const mean = sum / width;
    let sq = 0;
    for (let i = 0; i < width; i++) {
      const d = x[at + i] - mean;
      sq += d * d;
    }
    const s = 1 / Math.sqrt(sq / width + eps);
    rstd[r] = s;
    for (let i = 0; i < width; i++) n[at + i] = (x[at + i] - mean) * s;
  }
}

/** dx = rstd (dy - mean(dy) - n mean(dy n)) per row: the gradient of {@link layerNormInto} from its output. */
export function layerNormGradInto(dy: Float32Array, n: Float32Array, rstd: Float32Array, dx: Float32Array, width: number): void {
  const rows = rstd.length;
  for (let r = 0, at = 0; r < rows; r++, at += width) {
    let a = 0;
    let b = 0;
    for (let i = 0; i < width; i++) {
      a += dy[at + i];
      b += dy[at + i] * n[at + i];
    }
    a /= width;
    b /= width;
    const s = rstd[r];
    for (let i = 0; i < width; i++) dx[at + i] = s * (dy[at + i] - a - n[at + i] * b);
  }
}

/** y = 0.5 x (1 + erf(x / sqrt 2)). */
export function geluInto(x: Float32Array, y: Float32Array): void {
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    y[i] = 0.5 * v * (1 + erf(v * INV_SQRT2));
  }
}

/** dx = dy (0.5 (1 + erf(x / sqrt 2)) + x exp(-x^2 / 2) / sqrt(2 pi)). */
export function geluGradInto(dy: Float32Array, x: Float32Array, dx: Float32Array): void {
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    dx[i] = dy[i] * (0.5 * (1 + erf(v * INV_SQRT2)) + v * Math.exp(-0.5 * v * v) * INV_SQRT_2PI);
  }
}

/** Scalar twin of {@link layerNormInto} in float64, two passes as the definition reads: [n, rstd]. */
export function layerNormReference(x: ArrayLike<number>, width: number, eps: number): [Float64Array, Float64Array] {
  const rows = x.length / width;
  const n = new Float64Array(x.length);
  const rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const row = Array.from({ length: width }, (_, i) => x[r * width + i]);
    const mean = row.reduce((a, v) => a + v, 0) / width;
    const variance = row.reduce((a, v) => a + (v - mean) ** 2, 0) / width;
    rstd[r] = 1 / Math.sqrt(variance + eps);
    row.forEach((v, i) => (n[r * width + i] = (v - mean) * rstd[r]));
  }
  return [n, rstd];
}

/** Scalar twin of {@link layerNormGradInto}: dx as the chain rule through mean and variance gives it, in float64. */
export function layerNormGradReference(x: ArrayLike<number>, dy: ArrayLike<number>, width: number, eps: number): Float64Array {
  const rows = x.length / width;
  const dx = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    const xs = Array.from({ length: width }, (_, i) => x[r * width + i]);
    const g = Array.from({ length: width }, (_, i) => dy[r * width + i]);
    const mean = xs.reduce((a, v) => a + v, 0) / width;
    const variance = xs.reduce((a, v) => a + (v - mean) ** 2, 0) / width;
    const s = 1 / Math.sqrt(variance + eps);
    // d n_i / d x_j = s (delta_ij - 1/W) - s^3 (x_i - mean)(x_j - mean) / W
    for (let j = 0; j < width; j++) {
      let acc = 0;
      for (let i = 0; i < width; i++) acc += g[i] * (s * ((i === j ? 1 : 0) - 1 / width) - (s ** 3 * (xs[i] - mean) * (xs[j] - mean)) / width);
      dx[r * width + j] = acc;
    }
  }
  return dx;
}

/** Scalar twins of the GELU kernels, in float64 with erf by its Maclaurin / continued-fraction series. */
export function geluReference(x: number): number {
  return 0.5 * x * (1 + erfSeries(x / Math.SQRT2));
}

export function geluGradReference(x: number): number {
  return 0.5 * (1 + erfSeries(x / Math.SQRT2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);
}

/** erf in float64: its Maclaurin series below |x| = 2, 1 - erfc by the continued fraction above. */
export function erfSeries(x: number): number {
  const z = Math.abs(x);
  if (z >= 2) {
    // erfc(z) = exp(-z^2) / sqrt(pi) / (z + (1/2) / (z + 1 / (z + (3/2) / (z + ...)))), evaluated from its tail.
    let f = z;
    for (let k = 120; k >= 1; k--) f = z + k / 2 / f;
    return Math.sign(x) * (1 - Math.exp(-z * z) / Math.sqrt(Math.PI) / f);
  }
  // erf(z) = 2/sqrt(pi) * sum_n (-1)^n z^(2n+1) / (n! (2n+1)), summed until the terms vanish.
  let term = z;
  let sum = z;
  for (let n = 1; n < 200; n++) {
    term *= (-z * z) / n;
    const add = term / (2 * n + 1);
    sum += add;
    if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
  }
  return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
}

const LN = 'NeuralDiffLayerNorm';
const LN_GRAD = 'NeuralDiffLayerNormGrad';
const GELU = 'NeuralDiffGelu';
const GELU_GRAD = 'NeuralDiffGeluGrad';

const layerNormKernel: KernelFunc = ({ inputs, attrs, backend }) => {
  const b = asWasm(backend);
  const x = inputs.x as TensorInfo;
  const width = x.shape[x.shape.length - 1];
  const n = b.makeOutput([...x.shape], 'float32');
  const rows = sizeOf(x.shape) / width;
  const rstd = b.makeOutput([rows], 'float32');
  const eps = (attrs as { epsilon: number }).epsilon;
  const k = simd(b);
  if (k) k.layer_norm(offsetOf(b, x), offsetOf(b, n), offsetOf(b, rstd), rows, width, eps);
  else layerNormInto(f32(b, x), f32(b, n), f32(b, rstd), width, eps);
  return [n, rstd];
};

const layerNormGradKernel: KernelFunc = ({ inputs, backend }) => {
  const b = asWasm(backend);
  const { dy, n, rstd } = inputs as Record<string, TensorInfo>;
  const dx = b.makeOutput([...dy.shape], 'float32');
  const width = dy.shape[dy.shape.length - 1];
  const k = simd(b);
  if (k) k.layer_norm_grad(offsetOf(b, dy), offsetOf(b, n), offsetOf(b, rstd), offsetOf(b, dx), sizeOf(dy.shape) / width, width);
  else layerNormGradInto(f32(b, dy), f32(b, n), f32(b, rstd), f32(b, dx), width);
  return dx;
};

const geluKernel: KernelFunc = ({ inputs, backend }) => {
  const b = asWasm(backend);
  const x = inputs.x as TensorInfo;
  const y = b.makeOutput([...x.shape], 'float32');
  const k = simd(b);
  if (k) k.gelu(offsetOf(b, x), offsetOf(b, y), sizeOf(x.shape));
  else geluInto(f32(b, x), f32(b, y));
  return y;
};

const geluGradKernel: KernelFunc = ({ inputs, backend }) => {
  const b = asWasm(backend);
  const { dy, x } = inputs as Record<string, TensorInfo>;
  const dx = b.makeOutput([...x.shape], 'float32');
  const k = simd(b);
  if (k) k.gelu_grad(offsetOf(b, dy), offsetOf(b, x), offsetOf(b, dx), sizeOf(x.shape));
  else geluGradInto(f32(b, dy), f32(b, x), f32(b, dx));
  return dx;
};

/** The four kernels for wasm (the native backend copies wasm's kernels when it registers). */
export function transformerKernelConfigs(): KernelConfig[] {
  return [
    { kernelName: LN, backendName: WASM, kernelFunc: layerNormKernel },
    { kernelName: LN_GRAD, backendName: WASM, kernelFunc: layerNormGradKernel },
    { kernelName: GELU, backendName: WASM, kernelFunc: geluKernel },
    { kernelName: GELU_GRAD, backendName: WASM, kernelFunc: geluGradKernel },
  ];
}

/** Whether the active backend runs these kernels (wasm, or native through wasm's). */
function fused(): boolean {
  const name = tf.getBackend();
  return tf.getKernel(LN, name) !== undefined;
}

/** (x - mean) / sqrt(var + eps) over the last axis; differentiable. */
export function layerNormalize(x: tf.Tensor, eps: number): tf.Tensor {
  if (x.dtype !== 'float32' || !fused()) {
    return tf.tidy(() => {
      const d = tf.sub(x, tf.mean(x, -1, true));
      return tf.div(d, tf.sqrt(tf.add(tf.mean(tf.square(d), -1, true), eps)));
    });
  }
  const f = tf.customGrad(((input: tf.Tensor, save: tf.GradSaveFunc) => {
    const [n, rstd] = tf.engine().runKernel(LN, { x: input }, { epsilon: eps }) as tf.Tensor[];
    save([n, rstd]);
    return { value: n, gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [tf.engine().runKernel(LN_GRAD, { dy, n: saved[0], rstd: saved[1] }) as tf.Tensor] };
  }) as never);
  return f(x) as tf.Tensor;
}

/** 0.5 x (1 + erf(x / sqrt 2)); differentiable. */
export function gelu(x: tf.Tensor): tf.Tensor {
  if (x.dtype !== 'float32' || !fused()) return tf.tidy(() => tf.mul(tf.mul(x, tf.add(tf.erf(tf.mul(x, INV_SQRT2)), 1)), 0.5));
  const f = tf.customGrad(((input: tf.Tensor, save: tf.GradSaveFunc) => {
    save([input]);
    return { value: tf.engine().runKernel(GELU, { x: input }) as tf.Tensor, gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [tf.engine().runKernel(GELU_GRAD, { dy, x: saved[0] }) as tf.Tensor] };
  }) as never);
  return f(x) as tf.Tensor;
}
