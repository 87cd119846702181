/**
 * Teacher diffs: learn a diff of the base whose outputs match a model the team already trained
 * (the teacher, v2) on unlabeled inputs, instead of compressing (v2 − v1) after the fact.
 * Distilled deltas (BitDelta, 2024) train the compressed delta the same way: the fine-tuned
 * model's outputs are the target, no labels needed.
 *
 * Every output of the model counts. The loss follows the outputs: for classifier outputs (ending
 * in a softmax, or logits: an ONNX or graph model's class scores, as PyTorch exports them), the divergence KL(teacher_T ‖ model_T) of probabilities softened by a
 * temperature T, times T²; otherwise the mean squared error of the raw outputs. How close a model
 * is to the teacher is measured as top-1 agreement for classifiers (the share of predictions,
 * over every output position, equal to the teacher's) and as the mean absolute output difference
 * otherwise. An output that is not a classifier's (a sigmoid's scores or mask, a regression, a
 * map: LiteRT `LOGISTIC`, ONNX and TF.js `Sigmoid`, a layers model's sigmoid activation) is never
 * read as classes: it trains by the squared error and is chosen by the mean absolute difference,
 * and no top-1 agreement is computed for it (an argmax over a mask's pixels means nothing).
 */
import * as tf from '@tensorflow/tfjs';
import { UsageError } from '../core/errors.ts';
import type { ClosenessMetric } from '../diff/closeness.ts';
import { forwardSwitch, frozenPass, ForwardPlans } from '../engine/compiled/forward.ts';
import { sayOnce } from '../engine/compiled/step.ts';
import type { InputData, LabelledData } from './data.ts';
import { activationsPerExample, maxBatchSize } from './select.ts';

/** The loss that pulls the model's outputs to the teacher's. */
export type TeacherLoss = 'kl' | 'mse';

/** What "closer to the teacher" means when choosing: top-1 agreement, or mean absolute output difference. */
export type TeacherMetric = ClosenessMetric;

/** One model output, as a slice of an example's row of concatenated, flattened outputs. */
export interface OutputSegment {
  /** Offset of this output in the row. */
  offset: number;
  /** Values per example (product of the output's shape without the batch). */
  width: number;
  /** Size of the last axis: the classes of a classifier output. */
  classes: number;
  /** The base's output layer ends in a softmax (it outputs probabilities). */
  probabilities: boolean;
  /** The teacher's output layer ends in a softmax. */
  teacherProbabilities: boolean;
  /** The output is a classifier's: probabilities (softmax) or logits (class scores). */
  classifier: boolean;
  /** The output is plain values, never classes (a sigmoid, a map): compared by closeness only. */
  values: boolean;
}

/** Everything the loss and the measures need about the teacher, with its outputs on one dataset. */
export interface TeacherTarget {
  segments: OutputSegment[];
  /** Values per example (sum of the segments' widths). */
  width: number;
  loss: TeacherLoss;
  temperature: number;
  /** Weight of the teacher term. */
  weight: number;
  /** Weight of the labels' cross-entropy (0 without labels). */
  labelWeight: number;
}

interface OutputLayerInternals {
  getConfig(): { activation?: string; classScores?: boolean; values?: boolean };
}

/**
 * The layers that give `model`'s outputs: its `outputLayers`, or (a Sequential model not built
 * yet lists none) the layer behind each output tensor.
 */
function outputLayersOf(model: tf.LayersModel): OutputLayerInternals[] {
  const listed = (model as unknown as { outputLayers?: OutputLayerInternals[] }).outputLayers;
  if (listed && listed.length) return listed;
  return model.outputs.map((o) => (o as unknown as { sourceLayer: OutputLayerInternals }).sourceLayer);
}

/** Whether each output of `model` is plain values, not classes: a sigmoid's (a mask, independent scores) or a program's map. */
export function outputsArePlainValues(model: tf.LayersModel): boolean[] {
  return outputLayersOf(model).map((l) => {
    const c = l.getConfig();
    return c.values === true || c.activation === 'sigmoid';
  });
}

/** Whether each output of `model` gives class logits (a program model's output read as logits). */
export function outputsAreClassScores(model: tf.LayersModel): boolean[] {
  return outputLayersOf(model).map((l) => l.getConfig().classScores === true);
}

/** Whether each output of `model` ends in a softmax. */
export function outputsAreProbabilities(model: tf.LayersModel): boolean[] {
  return outputLayersOf(model).map((l) => l.getConfig().activation === 'softmax');
}

function shapeText(s: (number | null)[]): string {
  return `[${s.map((d) => d ?? '?').join(', ')}]`;
}

/**
 * The outputs' layout, after checking that teacher and base have the same interface: as many
 * inputs and outputs, each of the same shape. A mismatch is a {@link UsageError}: the teacher
 * must be the new version of the same model (its weights may differ, its layers too).
 */
export function outputLayout(base: tf.LayersModel, teacher: tf.LayersModel): { segments: OutputSegment[]; width: number } {
  const what = (m: tf.LayersModel, kind: 'inputs' | 'outputs') => m[kind].map((t) => t.shape.slice(1));
  for (const kind of ['inputs', 'outputs'] as const) {
    const a = what(base, kind);
    const b = what(teacher, kind);
    if (a.length !== b.length) {
      throw new UsageError(`the teacher has ${b.length} ${kind}, the base ${a.length}: expected the same interface (the teacher is the new version of the base model); pass the teacher trained from this base`, { kind });
    }
    a.forEach((s, i) => {
      const t = b[i];
      if (s.length !== t.length || s.some((d, k) => d !== t[k])) {
        throw new UsageError(`the teacher's ${kind.slice(0, -1)} ${i} is ${shapeText(t)} per example, the base's ${shapeText(s)}: expected the same shapes (the teacher is the new version of the base model); pass the teacher trained from this base`, { kind, index: i });
      }
    });
  }
  const probs = outputsAreProbabilities(base);
  const teacherProbs = outputsAreProbabilities(teacher);
  const scores = outputsAreClassScores(base);
  const plain = outputsArePlainValues(base);
  let offset = 0;
  const segments = base.outputs.map((o, i) => {
    const dims = o.shape.slice(1);
    if (dims.some((d) => d === null)) throw new UsageError(`output ${i} of the model has a free dimension ${shapeText(o.shape.slice(1))}: teacher diffs need outputs of a fixed size`);
    const width = (dims as number[]).reduce((a, d) => a * d, 1);
    const seg = { offset, width, classes: (dims[dims.length - 1] as number | undefined) ?? 1, probabilities: probs[i], teacherProbabilities: teacherProbs[i], classifier: (probs[i] || scores[i]) && !plain[i], values: plain[i] };
    offset += width;
    return seg;
  });
  return { segments, width: offset };
}

/**
 * The segments as labels read them: class indices say the outputs are a classifier's, whatever
 * their activation (a layers model ending in a linear layer gives logits), unless the graph says
 * they are plain values (a sigmoid, a map).
 */
export function withLabelledClasses(segments: readonly OutputSegment[], labelled: boolean): OutputSegment[] {
  return segments.map((s) => ({ ...s, classifier: s.classifier || (labelled && !s.values && s.classes >= 2) }));
}

/** What a result is chosen and judged by, from what the outputs are (whatever the loss): agreement when every output is a classifier's, closeness otherwise. */
export function metricFor(segments: readonly OutputSegment[]): TeacherMetric {
  return segments.length > 0 && segments.every((s) => s.classifier && s.classes >= 2) ? 'top1' : 'mae';
}

/** The loss chosen from the model: KL for a model whose every output is a classifier's (softmax or logits), else MSE. */
export function defaultTeacherLoss(segments: readonly OutputSegment[]): TeacherLoss {
  return segments.every((s) => s.classifier && s.classes > 1) ? 'kl' : 'mse';
}

/** One row per example of the outputs given, flattened and concatenated. */
function concatRows(o: tf.Tensor | tf.Tensor[], size: number): tf.Tensor {
  const outs = Array.isArray(o) ? o : [o];
  return tf.concat(outs.map((t) => t.reshape([size, -1])), 1);
}

/**
 * The model's outputs on `x`, one row of concatenated flattened outputs per example. With
 * `forward` (a frozen model's compiled passes, src/engine/compiled/forward.ts), each batch runs as
 * its plan where one verified: the same kernels, the same bits.
 */
export function outputRows(model: tf.LayersModel, x: tf.Tensor, width: number, batchSize: number, forward?: ForwardPlans): Float32Array {
  const n = x.shape[0];
  const rows = new Float32Array(n * width);
  for (let start = 0; start < n; start += batchSize) {
    const end = Math.min(n, start + batchSize);
    const size = end - start;
    const row = tf.tidy(() => frozenPass(forward, model, tf.slice(x, [start], [size]), (part) => model.apply(part, { training: false }) as tf.Tensor | tf.Tensor[], (o) => concatRows(o, size), 'rows'));
    rows.set(row.dataSync() as Float32Array, start * width);
    row.dispose();
  }
  return rows;
}

/** Log-probabilities of a [rows, classes] tensor of probabilities (floored) or logits. */
function logProbs(t: tf.Tensor, probabilities: boolean): tf.Tensor {
  return probabilities ? tf.log(tf.clipByValue(t, 1e-7, 1)) : tf.logSoftmax(t);
}

/**
 * The teacher term of a batch: `outs` the model's outputs (as `model.apply` gives them), `rows`
 * the teacher's rows for the batch ([batch, width]). Summed over outputs, each averaged over its
 * examples (and positions), times the term's weight.
 */
export function teacherTerm(outs: tf.Tensor[], rows: tf.Tensor2D, t: TeacherTarget): tf.Scalar {
  const size = rows.shape[0];
  const T = t.temperature;
  const terms = t.segments.map((s, i) => {
    const o = outs[i].reshape([size, s.width]);
    const r = tf.slice(rows, [0, s.offset], [size, s.width]);
    if (t.loss === 'mse') return tf.mean(tf.squaredDifference(o, r));
    const logp = logProbs(o.reshape([-1, s.classes]), s.probabilities);
    const logq = tf.logSoftmax(tf.div(logp, T));
    const target = tf.softmax(tf.div(logProbs(r.reshape([-1, s.classes]), s.teacherProbabilities), T));
    const kl = tf.sum(tf.mul(target, tf.sub(tf.log(tf.clipByValue(target, 1e-12, 1)), logq)), -1);
    return tf.mul(tf.mean(kl), T * T);
  });
  return tf.mul(tf.addN(terms), t.weight) as tf.Scalar;
}

/** How close a model's outputs are to the teacher's on a dataset. */
export interface Closeness {
  /** Share of top-1 predictions equal to the teacher's, over every classifier output position (NaN when no output is a classifier's with two classes or more). */
  agreement: number;
  /** Mean absolute difference of the raw outputs. */
  meanAbsDiff: number;
  /** The teacher term's value (without its weight), averaged over examples. */
  loss: number;
  /** Per example: its share of agreeing predictions (metric `top1`) or minus its mean absolute difference (`mae`): higher is closer. */
  perExample: Float32Array;
  /** Predicted class of the first output's first position, per example (for the one-class check and label accuracy). */
  predictions: Int32Array;
  /** Share of the examples whose first prediction is the most common one. */
  topClassShare: number;
}

function argmax(a: Float32Array, from: number, n: number): number {
  let top = 0;
  for (let c = 1; c < n; c++) if (a[from + c] > a[from + top]) top = c;
  return top;
}

/** Log-probabilities of one row segment (probabilities floored like the loss, or logits). */
function logRow(a: Float32Array, from: number, n: number, probabilities: boolean, T: number): Float64Array {
  const out = new Float64Array(n);
  let max = -Infinity;
  for (let c = 0; c < n; c++) {
    out[c] = (probabilities ? Math.log(Math.min(1, Math.max(1e-7, a[from + c]))) : a[from + c]) / T;
    max = Math.max(max, out[c]);
  }
  let sum = 0;
  for (let c = 0; c < n; c++) sum += Math.exp(out[c] - max);
  const lse = max + Math.log(sum);
  for (let c = 0; c < n; c++) out[c] -= lse;
  return out;
}

/** Compare model rows with the teacher's rows (same layout), example by example. */
export function closeness(model: Float32Array, teacher: Float32Array, t: Pick<TeacherTarget, 'segments' | 'width' | 'loss' | 'temperature'>, metric: TeacherMetric): Closeness {
  const n = model.length / t.width;
  const perExample = new Float32Array(n);
  const predictions = new Int32Array(n);
  let agreeSum = 0;
  let positionsSum = 0;
  let absSum = 0;
  let lossSum = 0;
  const T = t.temperature;
  for (let i = 0; i < n; i++) {
    const row = i * t.width;
    let agree = 0;
    let positions = 0;
    let abs = 0;
    for (let k = 0; k < t.width; k++) abs += Math.abs(model[row + k] - teacher[row + k]);
    for (const s of t.segments) {
      const at = row + s.offset;
      let sq = 0;
      for (let k = 0; k < s.width; k++) sq += (model[at + k] - teacher[at + k]) ** 2;
      if (t.loss === 'mse') lossSum += sq / s.width;
      if (s.classes < 2 || !s.classifier) continue;
      const perPos = s.width / s.classes;
      let kl = 0;
      for (let p = 0; p < perPos; p++) {
        const from = at + p * s.classes;
        const a = argmax(model, from, s.classes);
        if (s === t.segments[0] && p === 0) predictions[i] = a;
        if (a === argmax(teacher, from, s.classes)) agree++;
        positions++;
        if (t.loss === 'kl') {
          const lq = logRow(model, from, s.classes, s.probabilities, T);
          const lp = logRow(teacher, from, s.classes, s.teacherProbabilities, T);
          for (let c = 0; c < s.classes; c++) kl += Math.exp(lp[c]) * (lp[c] - lq[c]);
        }
      }
      if (t.loss === 'kl') lossSum += (T * T * kl) / perPos;
    }
    agreeSum += agree;
    positionsSum += positions;
    absSum += abs;
    perExample[i] = metric === 'top1' ? (positions ? agree / positions : 0) : -abs / t.width;
  }
  const counts = new Map<number, number>();
  for (const p of predictions) counts.set(p, (counts.get(p) ?? 0) + 1);
  return {
    agreement: positionsSum ? agreeSum / positionsSum : NaN,
    meanAbsDiff: absSum / Math.max(1, n * t.width),
    loss: lossSum / Math.max(1, n),
    perExample,
    predictions,
    topClassShare: Math.max(0, ...counts.values()) / Math.max(1, n),
  };
}

/** The score a checkpoint is chosen by (higher is closer): agreement, or minus the mean absolute difference. */
export function closenessScore(c: Closeness, metric: TeacherMetric): number {
  return metric === 'top1' ? c.agreement : -c.meanAbsDiff;
}

/** How a closeness reads in progress lines and errors. */
export function describeCloseness(c: Pick<Closeness, 'agreement' | 'meanAbsDiff'>, metric: TeacherMetric): string {
  return metric === 'top1'
    ? `agreement with the teacher ${(100 * c.agreement).toFixed(2)}% (mean |Δ output| ${c.meanAbsDiff.toPrecision(3)})`
    : `mean |output − teacher| ${c.meanAbsDiff.toPrecision(4)}${Number.isNaN(c.agreement) ? '' : ` (top-1 agreement ${(100 * c.agreement).toFixed(2)}%)`}`;
}

/** A teacher model ready to train toward: its outputs' layout and loss, and its outputs per inputs tensor. */
export interface PreparedTeacher {
  model: tf.LayersModel;
  target: TeacherTarget;
  metric: TeacherMetric;
  rows: Map<tf.Tensor, Float32Array>;
  /** The teacher's compiled forward passes (absent when steps run eagerly, as asked). */
  forward?: ForwardPlans;
}

/** Check the teacher against the base and settle the loss, its weights and the measure of closeness. */
export function prepareTeacher(model: tf.LayersModel, teacher: tf.LayersModel, options: { teacherLoss?: TeacherLoss | 'auto'; teacherWeight?: number; temperature?: number; step?: 'compiled' | 'eager' }, labelled: boolean, progress: (m: string) => void): PreparedTeacher {
  const measured = outputLayout(model, teacher);
  const layout = { ...measured, segments: withLabelledClasses(measured.segments, labelled) };
  const asked = options.teacherLoss ?? 'auto';
  if (!['auto', 'kl', 'mse'].includes(asked)) throw new UsageError(`teacher loss must be auto, kl or mse, found ${JSON.stringify(asked)}`);
  const loss: TeacherLoss = asked === 'auto' ? defaultTeacherLoss(measured.segments) : asked;
  if (loss === 'kl' && layout.segments.some((s) => s.values)) {
    throw new UsageError('the kl teacher loss compares class probabilities, but an output of this model is plain values (it ends in a sigmoid, or is a map), not classes: use --teacher-loss mse (or auto)');
  }
  if (loss === 'kl' && layout.segments.some((s) => s.classes < 2)) {
    throw new UsageError(`the kl teacher loss compares class probabilities, but an output of this model has a last axis of ${Math.min(...layout.segments.map((s) => s.classes))}: use --teacher-loss mse`);
  }
  const weight = options.teacherWeight ?? 1;
  if (!(weight > 0 && Number.isFinite(weight))) throw new UsageError(`teacher weight must be > 0, found ${weight}`);
  const temperature = options.temperature ?? 1;
  if (!(temperature > 0 && Number.isFinite(temperature))) throw new UsageError(`temperature must be > 0, found ${temperature}`);
  const metric = metricFor(layout.segments);
  const logits = layout.segments.some((s) => s.classifier && !s.probabilities);
  const read = layout.segments.every((s) => s.classifier) ? (logits ? ' read as class logits (a classifier without its softmax; --teacher-loss mse to match raw values instead)' : ' read as class probabilities') : layout.segments.some((s) => s.values) ? ' read as plain values (a sigmoid or a map: no classes)' : '';
  progress(`teacher: ${layout.segments.length} output(s)${read}, ${loss === 'kl' ? `KL of ${logits ? 'softened class probabilities' : 'probabilities'} at temperature ${temperature}` : 'mean squared error of the raw outputs'}${labelled ? `, plus the labels' cross-entropy` : ', no labels'}; choosing by ${metric === 'top1' ? 'top-1 agreement with the teacher' : 'mean absolute output difference from the teacher'}`);
  return {
    model: teacher,
    target: { ...layout, loss, temperature, weight, labelWeight: labelled ? 1 : 0 },
    metric,
    rows: new Map(),
    ...(options.step === 'eager' || !forwardSwitch.compiled ? {} : { forward: new ForwardPlans('teacher', sayOnce(progress)) }),
  };
}

/** Examples a teacher that lists no layers labels at once (see {@link withLabels}). */
const STAND_IN_BATCH = 32;

/**
 * Data as the loop takes it: labelled data as given; without labels (teacher diffs only), the
 * teacher's top-1 class of its first output stands in as `y` (for stratified splits and the
 * training accuracy shown, which is then agreement with the teacher; the loss ignores it), or 0
 * for every example when that output is plain values (a random split, no accuracy shown).
 */
export function withLabels(data: LabelledData | InputData, what: string, teach: PreparedTeacher | undefined): LabelledData {
  if (data.y) return data as LabelledData;
  if (!teach) throw new UsageError(`${what} has no labels: label it (y), or pass a teacher model whose outputs are the targets (--teacher)`);
  // In batches the backend's memory holds (a 256x256 segmentation model's 96 frames at once broke
  // the wasm backend's memory), as evaluation batches are sized.
  // A stand-in (a graph or program teacher seen as a layers model) lists no layers to size by:
  // batches of 32, which any model this runs holds.
  const layered = Array.isArray((teach.model as { layers?: unknown }).layers) && typeof teach.model.countParams === 'function';
  const batch = layered ? Math.max(1, Math.min(256, maxBatchSize(teach.model, tf.getBackend(), data.x.size * 4, 6 * activationsPerExample(teach.model)))) : STAND_IN_BATCH;
  const rows = outputRows(teach.model, data.x, teach.target.width, batch, teach.forward);
  teach.rows.set(data.x, rows);
  const n = data.x.shape[0];
  const s = teach.target.segments[0];
  const y = new Int32Array(n);
  // Plain values (a sigmoid, a map) have no classes: their argmax is a pixel, and stratifying on it
  // held out nothing (every example its own stratum) or far more than asked; one stratum instead.
  if (s.classes >= 2 && !s.values) {
    for (let i = 0; i < n; i++) {
      const from = i * teach.target.width + s.offset;
      let top = 0;
      for (let c = 1; c < s.classes; c++) if (rows[from + c] > rows[from + top]) top = c;
      y[i] = top;
    }
  }
  return { ...data, y };
}
