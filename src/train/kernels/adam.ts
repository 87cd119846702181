/**
 * Adam as one kernel per variable (adam.c, SIMD, on the wasm backend's memory): tfjs'
 * AdamOptimizer runs fourteen elementwise kernels per variable and step, each a pass over the
 * variable with a temporary; on the keyword model that was a tenth of a training step
 * (DESIGN.md). {@link FusedAdam} is tfjs' optimizer with its step replaced by that one pass. It
 * gives tfjs' bits: the kernel and its JavaScript twin {@link adamStepJs} repeat tfjs' float32
 * operations in their order, each rounded on its own, and the bias corrections are float32
 * scalars updated as tfjs updates them. On the wasm and native backends it runs the kernel; on
 * others (cpu, tensorflow) it is tfjs' Adam.
 */
import * as tf from '@tensorflow/tfjs';
import type { KernelConfig, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';
import { simdKernelSwitch, trainKernels } from './train-kernels-simd.ts';
import { asWasm, f32, offsetOf, sizeOf, WASM } from './util.ts';

/** The kernel's name (ours: nothing else registers it). */
export const ADAM_STEP = 'NeuralDiffAdamStep';

/** The float32 scalars of one step, as tfjs makes them. */
export interface AdamScalars {
  b1: number;
  /** 1 - beta1, rounded to float32 after the subtraction (tfjs: mul(gradient, 1 - beta1)). */
  nb1: number;
  b2: number;
  nb2: number;
  /** 1 - beta1^t and 1 - beta2^t (the bias corrections). */
  c1: number;
  c2: number;
  eps: number;
  /** -learningRate. */
  nlr: number;
}

const f = Math.fround;

/** Scalar twin of adam_step (adam.c): the same float32 operations in the same order. */
export function adamStepJs(x: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, xo: Float32Array, mo: Float32Array, vo: Float32Array, s: AdamScalars): void {
  for (let i = 0; i < x.length; i++) {
    const gi = g[i];
    const mn = f(f(m[i] * s.b1) + f(gi * s.nb1));
    const vn = f(f(v[i] * s.b2) + f(f(gi * gi) * s.nb2));
    const den = f(f(Math.sqrt(f(vn / s.c2))) + s.eps);
    mo[i] = mn;
    vo[i] = vn;
    xo[i] = f(f(f(f(mn / s.c1) / den) * s.nlr) + x[i]);
  }
}

/**
 * The kernel: the variable's new values as its output; the moments `m` and `v` updated in place
 * (they belong to the optimizer alone: no other tensor shares their data).
 */
function adamStep(args: { inputs: Record<string, TensorInfo | undefined>; backend: unknown; attrs?: NamedAttrMap }): TensorInfo {
  const backend = asWasm(args.backend);
  const { x, g, m, v } = args.inputs;
  if (!x || !g || !m || !v) throw new Error('the Adam kernel needs inputs x, g, m and v');
  const n = sizeOf(x.shape);
  for (const t of [g, m, v]) if (sizeOf(t.shape) !== n || t.dtype !== 'float32') throw new Error(`the Adam kernel: a ${t.dtype} input of shape ${String(t.shape)} beside x of shape ${String(x.shape)}`);
  const s = args.attrs as unknown as AdamScalars;
  const out = backend.makeOutput([...x.shape], 'float32');
  const kernels = simdKernelSwitch.enabled ? trainKernels(backend) : null;
  if (kernels !== null) {
    const [px, pg, pm, pv, pxo] = [x, g, m, v, out].map((t) => offsetOf(backend, t));
    kernels.adam_step(px, pg, pm, pv, pxo, pm, pv, n, s.b1, s.nb1, s.b2, s.nb2, s.c1, s.c2, s.eps, s.nlr);
  } else {
    const [xs, gs, ms, vs, xo] = [x, g, m, v, out].map((t) => f32(backend, t));
    adamStepJs(xs, gs, ms, vs, xo, ms, vs, s);
  }
  return out;
}

/** The wasm kernel (registered by registerWasmKernelFixes). */
export function adamStepKernelConfig(): KernelConfig {
  return { kernelName: ADAM_STEP, backendName: WASM, kernelFunc: (args) => adamStep(args as Parameters<typeof adamStep>[0]) };
}

/**
 * tfjs' Adam with one kernel per variable on the wasm backend (module doc). The moments are kept
 * per position in the gradient map, as tfjs keeps them; getWeights/setWeights are tfjs' and see
 * none of this optimizer's moments (the trainer never saves an optimizer's state).
 */
export class FusedAdam extends tf.AdamOptimizer {
  private moments: { m: tf.Variable; v: tf.Variable }[] = [];
  /** beta1^t and beta2^t as float32 (tfjs' accBeta1/2). */
  private acc1: number;
  private acc2: number;

  constructor(learningRate: number, beta1 = 0.9, beta2 = 0.999, epsilon?: number) {
    super(learningRate, beta1, beta2, epsilon ?? null as unknown as number);
    this.acc1 = f(beta1);
    this.acc2 = f(beta2);
  }

  override applyGradients(variableGradients: Parameters<tf.AdamOptimizer['applyGradients']>[0]): void {
    // wasm, and the native backend (wasm's kernels with OpenBLAS under): the kernel is registered there.
    if (!tf.getKernel(ADAM_STEP, tf.getBackend())) {
      super.applyGradients(variableGradients);
      return;
    }
    const list = Array.isArray(variableGradients) ? variableGradients.map((v) => [v.name, v.tensor] as const) : Object.entries(variableGradients);
    const s: AdamScalars = {
      b1: f(this.beta1), nb1: f(1 - this.beta1), b2: f(this.beta2), nb2: f(1 - this.beta2),
      c1: f(1 - this.acc1), c2: f(1 - this.acc2), eps: f(this.epsilon), nlr: f(-this.learningRate),
    };
    tf.tidy(() => {
      list.forEach(([name, g], i) => {
        const value = tf.engine().registeredVariables[name];
        this.moments[i] ??= { m: tf.tidy(() => tf.zerosLike(value).variable(false)), v: tf.tidy(() => tf.zerosLike(value).variable(false)) };
        if (g == null) return;
        const { m, v } = this.moments[i];
        value.assign(tf.engine().runKernel(ADAM_STEP, { x: value, g, m, v }, s as unknown as NamedAttrMap) as tf.Tensor);
      });
    });
    this.acc1 = f(this.acc1 * f(this.beta1));
    this.acc2 = f(this.acc2 * f(this.beta2));
    this.incrementIterations();
  }

  override dispose(): void {
    super.dispose();
    for (const { m, v } of this.moments) {
      m.dispose();
      v.dispose();
    }
    this.moments = [];
  }
}

/** The trainer's Adam: {@link FusedAdam}, or tfjs' own with `simdKernelSwitch.fuseAdam` off. */
export function adam(learningRate: number): tf.Optimizer {
  return simdKernelSwitch.fuseAdam ? new FusedAdam(learningRate) : tf.train.adam(learningRate);
}
