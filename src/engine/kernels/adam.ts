/**
 * Adam as one kernel per variable (adam.c, SIMD, on the wasm backend's memory): tfjs'
 * AdamOptimizer runs fourteen elementwise kernels per variable and step, each a pass over the
 * variable with a temporary; on the keyword model that was a tenth of a training step
 * (DESIGN.md). {@link FusedAdam} is tfjs' optimizer with its step replaced by that one pass. It
 * gives tfjs' bits: the kernel and its JavaScript twin {@link adamStepJs} repeat tfjs' float32
 * operations in their order, each rounded on its own, and the bias corrections are float32
 * scalars updated as tfjs updates them. On the wasm and native backends it runs the kernel; on
 * others (cpu, tensorflow) it is tfjs' Adam.
 *
 * The step's scalars reach the kernel as a float32 input tensor, not as attributes: beta1^t and
 * beta2^t live in a variable the step multiplies by the betas (tfjs' own float32 operations), so
 * a step recorded once (src/engine/compiled/) holds constant attributes and replays the optimizer
 * inside its plan: the kernel writes the moments in place, the plan assigns the new weights and
 * the powers of the betas.
 */
import * as tf from '@tensorflow/tfjs';
import type { KernelConfig, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';
import { simdKernelSwitch, trainKernels } from './train-kernels-simd.ts';
import { asWasm, f32, offsetOf, sizeOf, WASM } from './util.ts';

/** The kernel's name (ours: nothing else registers it). */
export const ADAM_STEP = 'NeuralDiffAdamStep';

/**
 * The float32 scalars of one step, as tfjs makes them; the kernel's input `s` holds them in this
 * order: b1, nb1, b2, nb2, c1, c2, eps, nlr.
 */
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

/** The scalars as the kernel's input `s` holds them. */
export function scalarsOf(values: ArrayLike<number>): AdamScalars {
  const [b1, nb1, b2, nb2, c1, c2, eps, nlr] = Array.from(values);
  return { b1, nb1, b2, nb2, c1, c2, eps, nlr };
}

/**
 * The kernel: the variable's new values as its output; the moments `m` and `v` updated in place
 * (they belong to the optimizer alone: no other tensor shares their data); the step's scalars
 * read from the input `s` (float32, 8 values: {@link AdamScalars} in order).
 */
function adamStep(args: { inputs: Record<string, TensorInfo | undefined>; backend: unknown; attrs?: NamedAttrMap }): TensorInfo {
  const backend = asWasm(args.backend);
  const { x, g, m, v, s: scalars } = args.inputs;
  if (!x || !g || !m || !v || !scalars) throw new Error('the Adam kernel needs inputs x, g, m, v and s');
  const n = sizeOf(x.shape);
  for (const t of [g, m, v]) if (sizeOf(t.shape) !== n || t.dtype !== 'float32') throw new Error(`the Adam kernel: a ${t.dtype} input of shape ${String(t.shape)} beside x of shape ${String(x.shape)}`);
  if (sizeOf(scalars.shape) !== 8 || scalars.dtype !== 'float32') throw new Error(`the Adam kernel: its scalars s are a ${scalars.dtype} tensor of shape ${String(scalars.shape)}, where 8 float32 values (b1, 1 - b1, b2, 1 - b2, 1 - b1^t, 1 - b2^t, epsilon, -learning rate) were expected`);
  const s = scalarsOf(f32(backend, scalars));
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
 * by variable name (tfjs keeps them by position in the gradient map: the same wherever the map
 * lists the same variables in the same order, as the trainer's maps do); getWeights/setWeights
 * are tfjs' and see none of this optimizer's moments (the trainer never saves an optimizer's
 * state).
 */
export class FusedAdam extends tf.AdamOptimizer {
  /** The moments, by variable name. */
  private moments = new Map<string, { m: tf.Variable; v: tf.Variable }>();
  /** beta1^t and beta2^t (tfjs' accBeta1/2), multiplied by {@link betas} each step. */
  private readonly powers: tf.Variable;
  private readonly betas: tf.Tensor1D;
  private readonly ones: tf.Tensor1D;
  /** b1, 1 - b1, b2, 1 - b2 and epsilon, -learning rate: the scalars around the bias corrections. */
  private readonly head: tf.Tensor1D;
  private readonly tail: tf.Tensor1D;

  constructor(learningRate: number, beta1 = 0.9, beta2 = 0.999, epsilon?: number) {
    super(learningRate, beta1, beta2, epsilon ?? null as unknown as number);
    this.betas = tf.tensor1d([beta1, beta2], 'float32');
    this.powers = tf.variable(this.betas, false);
    this.ones = tf.tensor1d([1, 1], 'float32');
    this.head = tf.tensor1d([beta1, 1 - beta1, beta2, 1 - beta2], 'float32');
    this.tail = tf.tensor1d([this.epsilon, -learningRate], 'float32');
  }

  /** A zero moment made without a kernel or an upload, so a step recorded while it is made records the same kernels as the next. */
  private static zeros(like: tf.Tensor): tf.Variable {
    const engine = tf.engine();
    const backend = engine.backend;
    const shape = like.shape.slice();
    const dataId = backend.write(new Float32Array(like.size), shape, 'float32');
    const t = (engine as unknown as { makeTensorFromTensorInfo: (info: TensorInfo, backend: unknown) => tf.Tensor }).makeTensorFromTensorInfo({ dataId, shape, dtype: 'float32' }, backend);
    const out = tf.variable(t, false);
    t.dispose();
    return out;
  }

  override applyGradients(variableGradients: Parameters<tf.AdamOptimizer['applyGradients']>[0]): void {
    // wasm, and the native backend (wasm's kernels with OpenBLAS under): the kernel is registered there.
    if (!this.fused()) {
      super.applyGradients(variableGradients);
      return;
    }
    const list = Array.isArray(variableGradients) ? variableGradients.map((v) => [v.name, v.tensor] as const) : Object.entries(variableGradients);
    tf.tidy(() => {
      // The bias corrections 1 - beta^t as tfjs computes them (float32 subtraction), between the constant scalars.
      const s = tf.concat([this.head, tf.sub(this.ones, this.powers), this.tail]);
      for (const [name, g] of list) {
        const value = tf.engine().registeredVariables[name];
        let moments = this.moments.get(name);
        if (!moments) this.moments.set(name, (moments = { m: FusedAdam.zeros(value), v: FusedAdam.zeros(value) }));
        if (g == null) continue;
        const { m, v } = moments;
        value.assign(tf.engine().runKernel(ADAM_STEP, { x: value, g, m, v, s }) as tf.Tensor);
      }
      this.powers.assign(tf.mul(this.powers, this.betas));
    });
    this.incrementIterations();
  }

  /** Does this optimizer run the kernel on the current backend (else it is tfjs' Adam)? */
  fused(): boolean {
    return tf.getKernel(ADAM_STEP, tf.getBackend()) != null;
  }

  override dispose(): void {
    super.dispose();
    for (const { m, v } of this.moments.values()) {
      m.dispose();
      v.dispose();
    }
    this.moments.clear();
    tf.dispose([this.powers, this.betas, this.ones, this.head, this.tail]);
  }
}

/**
 * `opt` as a {@link FusedAdam} running its kernel on the current backend, else null. (Not
 * `instanceof`: tfjs' Optimizer answers it for any optimizer.)
 */
export function fusedAdam(opt: tf.Optimizer): FusedAdam | null {
  return Object.getPrototypeOf(opt) === FusedAdam.prototype && (opt as FusedAdam).fused() ? (opt as FusedAdam) : null;
}

/** The trainer's Adam: {@link FusedAdam}, or tfjs' own with `simdKernelSwitch.fuseAdam` off. */
export function adam(learningRate: number): tf.Optimizer {
  return simdKernelSwitch.fuseAdam ? new FusedAdam(learningRate) : tf.train.adam(learningRate);
}
