/**
 * Calibration for post-hoc diffs of TF.js layers-models: how far a model carrying some deltas is
 * from the target on inputs, as `lowbitDiff`'s `measureModel` takes it. Users who trained v2 in
 * their own pipeline come with v1, v2 and some inputs; the inputs need no labels (`ndiff diff
 * --calibrate INPUTS`).
 *
 * The error is the teacher loss of distillation on the target's outputs (KL divergence for
 * classifier outputs, else the mean squared difference; see teacher.ts), averaged over the
 * inputs: the quantity a distilled diff would lower, so post hoc and distilled diffs are scored
 * alike. The payload written is chosen among candidates by the measure that fits the outputs,
 * as a teacher diff's checkpoints are: top-1 agreement with the target when every output is a
 * classifier's (a divergence of probabilities need not follow the decisions: a candidate can lower
 * it and agree less), the error otherwise; every candidate's agreement is reported.
 */
import * as tf from '@tensorflow/tfjs';
import type { WeightStore } from '../core/weight-store.ts';
import type { BuiltPayload } from '../diff/build.ts';
import { BudgetError } from '../core/errors.ts';
import { sameBytes } from '../io/tfjs/write.ts';
import { seededRandom } from '../core/random.ts';
import { namedVariables, setModelWeights } from '../engine/model-weights.ts';
import { closeness, defaultTeacherLoss, outputLayout, outputRows, type OutputSegment } from './teacher.ts';
import { ForwardPlans, forwardSwitch } from '../engine/compiled/forward.ts';

/** How close a model comes to the target on the calibration inputs. */
export interface CalibrationCloseness {
  /** The error (lower is closer). */
  loss: number;
  /** Top-1 agreement with the target's decisions (NaN when the outputs are not a classifier's). */
  agreement: number;
  meanAbsDiff: number;
}

export interface CalibrationMeasure {
  /** The error of the model with `deltas` added to the base (tensors not in it at the base): lower is closer to the target. */
  measureModel: (deltas: ReadonlyMap<string, Float32Array>) => number;
  /** The error of the model holding `values` (a payload's target values; tensors not in it at the base). */
  measureValues: (values: ReadonlyMap<string, Float32Array>) => number;
  /** The error of the unpatched base, and of the target itself (0 but for float rounding). */
  baseError: number;
  /** Every output is a classifier's: candidates are chosen by top-1 agreement with the target. */
  classifier?: boolean;
  /** How close the model holding `values` comes to the target: the error, top-1 agreement (NaN when the outputs are not a classifier's) and mean absolute output difference. */
  closenessOfValues?: (values: ReadonlyMap<string, Float32Array>) => CalibrationCloseness;
  /** The same for the unpatched base. */
  baseCloseness?: CalibrationCloseness;
  /** How many times the model ran on the inputs (each a forward pass over every example). */
  readonly evaluations: number;
  /** Put the base's weights back into the model. */
  restore(): void;
  /** Free what the measure holds in the backend's memory (its compiled forward passes); it measures no more after. */
  dispose?(): void;
}

/**
 * A {@link CalibrationMeasure} for `model` (built from `base`'s weights) against `target` on the
 * inputs `x` (the first axis is the example). The target runs once; each call runs `model` once,
 * the same passes over the same inputs with other weights: after the first two they replay a
 * compiled forward plan (src/engine/compiled/forward.ts, the eager passes' bits). Throws a
 * UsageError when the two models do not share inputs and outputs. Dispose the measure when done.
 */
export function calibrationMeasure(model: tf.LayersModel, target: tf.LayersModel, base: WeightStore, x: tf.Tensor, batchSize = 256): CalibrationMeasure {
  const layout = outputLayout(model, target);
  const measure = { ...layout, loss: defaultTeacherLoss(layout.segments), temperature: 1 };
  const baseNames = new Set(base.list().map((t) => t.name));
  const targetRows = outputRows(target, x, layout.width, batchSize);
  const forward = forwardSwitch.compiled ? new ForwardPlans('calibration', () => {}) : undefined;
  let evaluations = 0;
  const closenessWith = (values: (name: string) => Float32Array | undefined): CalibrationCloseness => {
    setModelWeights(model, values);
    evaluations++;
    const c = closeness(outputRows(model, x, layout.width, batchSize, forward), targetRows, measure, 'top1');
    return { loss: c.loss, agreement: c.agreement, meanAbsDiff: c.meanAbsDiff };
  };
  const errorWith = (values: (name: string) => Float32Array | undefined): number => closenessWith(values).loss;
  const restore = () => setModelWeights(model, (n) => (baseNames.has(n) ? base.values(n) : undefined));
  let baseCloseness: CalibrationCloseness;
  try {
    baseCloseness = closenessWith((n) => (baseNames.has(n) ? base.values(n) : undefined));
  } catch (e) {
    forward?.dispose();
    throw e;
  }
  const baseError = baseCloseness.loss;
  const withValues = (values: ReadonlyMap<string, Float32Array>) => (n: string) => values.get(n) ?? (baseNames.has(n) ? base.values(n) : undefined);
  return {
    classifier: layout.segments.every((seg) => seg.classifier && seg.classes >= 2),
    closenessOfValues: (values) => closenessWith(withValues(values)),
    baseCloseness,
    measureValues: (values) => errorWith(withValues(values)),
    measureModel: (deltas) => errorWith((n) => {
      if (!baseNames.has(n)) return undefined;
      const w = base.values(n);
      const d = deltas.get(n);
      if (!d) return w;
      const out = new Float32Array(w.length);
      for (let i = 0; i < w.length; i++) out[i] = w[i] + d[i];
      return out;
    }),
    baseError,
    get evaluations() {
      return evaluations;
    },
    restore,
    dispose: () => forward?.dispose(),
  };
}

export interface ImportanceOptions {
  /** Examples used, from the first (default 256): one backward pass each. */
  examples?: number;
  /** Seed of the sampled classes and projections (default 0): the same seed, the same importance. */
  seed?: number;
  /**
   * Added to every weight's importance, as a share of the mean importance (default 0.01, as GPTQ
   * dampens its Hessian): a weight the calibration inputs never exercise still counts a little.
   */
  damping?: number;
  /** Called after each example with (done, total). */
  onProgress?: (done: number, total: number) => void;
}

/**
 * Each weight's importance to `target`'s outputs on the inputs `x`: the diagonal of the Fisher
 * information of its outputs, E[g^2] over the examples, where g is the gradient of
 * - for a classifier output (softmax probabilities or class logits), the log-probability of a class
 *   drawn from the target's own prediction at each position (a sampled Fisher: its mean is the
 *   Hessian of the KL divergence from the target at the target);
 * - for any other output, a random projection of it (v . output, v standard normal: its mean is
 *   the Gauss-Newton matrix of the squared difference).
 *
 * With these weights, sum_k F_k (delta_k - carried_k)^2 is the second-order estimate of how far
 * the model carrying a lossy delta is from the target (the KL divergence, doubled, or the mean
 * squared output difference), which is what `lowbitDiff`'s `importance` minimizes. Per-example
 * gradients: one backward pass per example. A weight the outputs do not depend on (a frozen
 * statistic the gradient does not reach) gets the mean importance of all the others; every
 * other weight a damping of 1% of that mean on top.
 */
export function outputImportance(target: tf.LayersModel, x: tf.Tensor, options: ImportanceOptions = {}): Map<string, Float32Array> {
  const n = Math.min(options.examples ?? 256, x.shape[0]);
  const random = seededRandom(options.seed ?? 0);
  const { segments } = outputLayout(target, target);
  const vars = namedVariables(target).filter((v) => v.variable.dtype === 'float32');
  const sums = new Map(vars.map((v) => [v.variable.name, new Float64Array(v.variable.size)]));
  const normal = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  const draw = (p: Float32Array | Int32Array | Uint8Array, from: number, classes: number): number => {
    let u = random();
    for (let c = 0; c < classes - 1; c++) if ((u -= p[from + c]) < 0) return c;
    return classes - 1;
  };
  for (let i = 0; i < n; i++) {
    const xi = tf.slice(x, [i], [1]);
    // What is drawn for this example: a class per classifier position, a normal vector otherwise.
    const outs = (() => {
      const o = target.apply(xi, { training: false }) as tf.Tensor | tf.Tensor[];
      return Array.isArray(o) ? o : [o];
    })();
    const picks = outs.map((o, j) => {
      const seg = segments[j] as OutputSegment;
      // Read outside tf.tidy: handed an array back, tidy walks every element of it looking for tensors.
      const shown = seg.classifier && seg.classes > 1 && !seg.probabilities ? tf.softmax(o) : o;
      const values = shown.dataSync() as Float32Array;
      if (shown !== o) shown.dispose();
      if (seg.classifier && seg.classes > 1) {
        const mask = new Float32Array(values.length);
        for (let at = 0; at < values.length; at += seg.classes) mask[at + draw(values, at, seg.classes)] = 1;
        return mask;
      }
      return Float32Array.from(values, () => normal());
    });
    outs.forEach((o) => o.dispose());
    const { value, grads } = tf.variableGrads(() => tf.tidy(() => {
      const o = target.apply(xi, { training: false }) as tf.Tensor | tf.Tensor[];
      const list = Array.isArray(o) ? o : [o];
      const terms = list.map((t, j) => {
        const seg = segments[j] as OutputSegment;
        const pick = tf.tensor(picks[j], t.shape);
        const scored = seg.classifier && seg.classes > 1 ? (seg.probabilities ? tf.log(tf.clipByValue(t, 1e-7, 1)) : tf.logSoftmax(t)) : t;
        return tf.sum(tf.mul(scored, pick));
      });
      return tf.addN(terms) as tf.Scalar;
    }), vars.map((v) => v.variable));
    for (const [name, g] of Object.entries(grads)) {
      const sum = sums.get(name);
      const gv = g.dataSync() as Float32Array;
      if (sum) for (let k = 0; k < gv.length; k++) sum[k] += gv[k] * gv[k];
      g.dispose();
    }
    value.dispose();
    xi.dispose();
    options.onProgress?.(i + 1, n);
  }
  // Weights no gradient reached (all zero) take the mean of the others.
  let total = 0;
  let count = 0;
  for (const sum of sums.values()) {
    let t = 0;
    for (const v of sum) t += v;
    if (t > 0) (total += t), (count += sum.length);
  }
  const mean = count ? total / count / n : 1;
  const damp = (options.damping ?? 0.01) * mean;
  const out = new Map<string, Float32Array>();
  for (const v of vars) {
    const sum = sums.get(v.variable.name) as Float64Array;
    const reached = sum.some((s) => s > 0);
    out.set(v.name, reached ? Float32Array.from(sum, (s) => s / n + damp) : new Float32Array(sum.length).fill(mean));
  }
  return out;
}

/** A payload to choose from: how it was made, and the build (run only when measured). */
export interface CalibrationCandidate<R extends BuiltPayload> {
  /** How the report names it ("lowbit, relative, low-rank"). */
  name: string;
  build: () => R;
}

/** One candidate's measurement on the calibration inputs. */
export interface CandidateScore {
  name: string;
  bytes: number;
  /** The teacher loss of base + payload against the target on the inputs (lower is closer). */
  loss: number;
  /** Top-1 agreement of base + payload with the target on the inputs, when the outputs are a classifier's. */
  agreement?: number;
  /** The same payload as an earlier candidate (not measured again). */
  sameAs?: string;
}

/**
 * Build every candidate and keep the one whose payload takes the model closest to the target on
 * the calibration inputs, measured on the weights the device will hold (the payload's target
 * values): by top-1 agreement when the measure says the outputs are a classifier's (the lower
 * error breaking a tie), else by the least {@link CalibrationMeasure} error; the first wins a
 * tie, so the order is the preference. Returns the chosen result and every candidate's score. A
 * candidate whose budget cannot be met (BudgetError) is left out and reported with an infinite
 * loss; if every one is, the first's error is thrown.
 */
export function chooseOnCalibration<R extends BuiltPayload>(candidates: readonly CalibrationCandidate<R>[], measure: CalibrationMeasure, onScore?: (score: CandidateScore) => void): { chosen: R; name: string; scores: CandidateScore[] } {
  const scores: CandidateScore[] = [];
  let best: { result: R; name: string; loss: number; agreement: number } | undefined;
  let firstError: unknown;
  const byAgreement = measure.classifier === true && measure.closenessOfValues !== undefined;
  const seen: { bytes: Uint8Array; name: string; loss: number; agreement: number }[] = [];
  for (const c of candidates) {
    let result: R;
    try {
      result = c.build();
    } catch (e) {
      if (!(e instanceof BudgetError)) throw e;
      firstError ??= e;
      const score = { name: c.name, bytes: 0, loss: Infinity };
      scores.push(score);
      onScore?.(score);
      continue;
    }
    const twin = seen.find((s) => sameBytes(s.bytes, result.bytes));
    const measured = twin ?? (measure.closenessOfValues ? measure.closenessOfValues(result.targetValues) : { loss: measure.measureValues(result.targetValues), agreement: NaN });
    const { loss, agreement } = measured;
    if (!twin) seen.push({ bytes: result.bytes, name: c.name, loss, agreement });
    const score: CandidateScore = { name: c.name, bytes: result.bytes.length, loss, ...(Number.isNaN(agreement) ? {} : { agreement }), ...(twin ? { sameAs: twin.name } : {}) };
    scores.push(score);
    onScore?.(score);
    const closer = !best || (byAgreement ? agreement > best.agreement || (agreement === best.agreement && loss < best.loss) : loss < best.loss);
    if (closer) best = { result, name: c.name, loss, agreement };
  }
  measure.restore();
  if (!best) throw firstError;
  return { chosen: best.result, name: best.name, scores };
}

/** Options of {@link inputMoments}. */
export interface InputMomentsOptions {
  /** Inputs used at most (the first ones; default 256). */
  examples?: number;
  /** Input vectors (a convolution's patches) a layer's moment is estimated on at most, spread evenly (default 65,536). */
  maxSamples?: number;
  /** Inputs run through the model at once (default 16): the activations of every measured layer are held for a batch. */
  batchSize?: number;
}

/** A convolution's geometry along one spatial axis, as TF computes it. */
function axisGeometry(size: number, kernel: number, stride: number, dilation: number, padding: string): { out: number; before: number } {
  const span = (kernel - 1) * dilation + 1;
  if (padding === 'valid') return { out: Math.max(0, Math.ceil((size - span + 1) / stride)), before: 0 };
  if (padding === 'causal') return { out: Math.ceil(size / stride), before: span - 1 };
  const out = Math.ceil(size / stride);
  return { out, before: Math.floor(Math.max((out - 1) * stride + span - size, 0) / 2) };
}

const pair = (v: unknown, n: number): number[] => (Array.isArray(v) ? (v.length === n ? v : Array(n).fill(v[0])) : Array(n).fill(v ?? 1)) as number[];

/**
 * The second moment of each dense and convolution layer's inputs on `x`, run through `model` (the
 * target, whose layers' inputs the carried change acts on): H = X'X / N over the input vectors X
 * of the layer (an example's features for a dense layer, every patch its kernel sees for a
 * convolution, in the kernel's row order: taps, then input channels), keyed by the layer's kernel
 * weight name. lowbit's `inputs` rounds those kernels' changes against them
 * (src/lowbit-diff/gptq.ts). Layers of other kinds (depthwise, recurrent, ...) and channels-first
 * convolutions are left out.
 */
export function inputMoments(model: tf.LayersModel, x: tf.Tensor, options: InputMomentsOptions = {}): Map<string, { rows: number; hessian: Float64Array; samples: number }> {
  const out = new Map<string, { rows: number; hessian: Float64Array; samples: number }>();
  const maxSamples = options.maxSamples ?? 65_536;
  const layers = model.layers.filter((l) => {
    const kind = l.getClassName();
    const kernel = (l as unknown as { kernel?: { originalName: string } }).kernel;
    const config = l.getConfig() as { dataFormat?: string };
    return kernel && (kind === 'Dense' || kind === 'Conv1D' || kind === 'Conv2D') && (config.dataFormat ?? 'channelsLast') === 'channelsLast' && !Array.isArray(l.input);
  });
  if (!layers.length) return out;
  const n = Math.min(options.examples ?? 256, x.shape[0]);
  const batch = Math.max(1, options.batchSize ?? 16);
  const probe = tf.model({ inputs: model.inputs, outputs: layers.map((l) => l.input as tf.SymbolicTensor) });
  /** Per layer: its geometry (convolutions), the running sum of x x' and how many vectors it holds. */
  const state = layers.map((layer) => {
    const kernel = (layer as unknown as { kernel: { originalName: string; shape: number[] } }).kernel;
    const rows = kernel.shape.slice(0, -1).reduce((p, q) => p * q, 1);
    return { layer, kind: layer.getClassName(), name: kernel.originalName, rows, sum: new Float64Array(rows * rows), samples: 0, every: 1, seen: 0 };
  });
  for (let from = 0; from < n; from += batch) {
    const size = Math.min(batch, n - from);
    const acts = tf.tidy(() => {
      const got = probe.predict(tf.slice(x, [from], [size])) as tf.Tensor | tf.Tensor[];
      return Array.isArray(got) ? got : [got];
    });
    try {
      state.forEach((st, li) => {
        const a = acts[li];
        const { rows } = st;
        let patches: tf.Tensor2D;
        if (st.kind === 'Dense') {
          patches = tf.reshape(a, [-1, rows]) as tf.Tensor2D;
        } else {
          const c = st.layer.getConfig() as { kernelSize: number | number[]; strides?: number | number[]; dilationRate?: number | number[]; padding?: string };
          const dims = st.kind === 'Conv1D' ? 1 : 2;
          const k = pair(c.kernelSize, dims);
          const stride = pair(c.strides, dims);
          const dl = pair(c.dilationRate, dims);
          const padding = c.padding ?? 'valid';
          // [N, H, W, C] (a 1-D convolution as height 1).
          const [N, H, W, C] = dims === 1 ? [a.shape[0], 1, a.shape[1] as number, a.shape[2] as number] : (a.shape as number[]);
          const gh = dims === 1 ? { out: 1, before: 0 } : axisGeometry(H, k[0], stride[0], dl[0], padding);
          const gw = axisGeometry(W, k[dims - 1], stride[dims - 1], dl[dims - 1], padding);
          const [kh, kw] = dims === 1 ? [1, k[0]] : [k[0], k[1]];
          const [sh, sw] = dims === 1 ? [1, stride[0]] : stride;
          const [dh, dw] = dims === 1 ? [1, dl[0]] : dl;
          const per = gh.out * gw.out;
          // Every `every`-th patch of all n examples' (counted across batches), about maxSamples in all.
          if (from === 0) st.every = Math.max(1, Math.ceil((n * per) / maxSamples));
          const total = N * per;
          const first = (st.every - (st.seen % st.every)) % st.every;
          const count = first < total ? Math.ceil((total - first) / st.every) : 0;
          const v = a.dataSync() as Float32Array;
          const p = new Float32Array(count * rows);
          let m = 0;
          for (let at = first; at < total; at += st.every, m++) {
            const e = Math.floor(at / per);
            const oy = Math.floor(at / gw.out) % gh.out;
            const ox = at % gw.out;
            let r = m * rows;
            for (let ty = 0; ty < kh; ty++) {
              const y = oy * sh + ty * dh - gh.before;
              for (let tx = 0; tx < kw; tx++) {
                const xx = ox * sw + tx * dw - gw.before;
                if (y >= 0 && y < H && xx >= 0 && xx < W) p.set(v.subarray(((e * H + y) * W + xx) * C, ((e * H + y) * W + xx + 1) * C), r);
                r += C;
              }
            }
          }
          st.seen += total;
          patches = tf.tensor2d(p, [count, rows]);
        }
        if (patches.shape[0] > 0) {
          const gram = tf.matMul(patches, patches, true, false);
          const h = gram.dataSync() as Float32Array;
          gram.dispose();
          for (let i = 0; i < h.length; i++) st.sum[i] += h[i];
          st.samples += patches.shape[0];
        }
        patches.dispose();
      });
    } finally {
      for (const t of acts) t.dispose();
    }
  }
  for (const st of state) {
    const hessian = Float64Array.from(st.sum, (v) => v / Math.max(1, st.samples));
    out.set(st.name, { rows: st.rows, hessian, samples: st.samples });
  }
  return out;
}
