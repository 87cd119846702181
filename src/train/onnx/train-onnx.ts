/**
 * Train a diff of an ONNX model: the `.onnx` file's patchable weights trained by `trainDiff`
 * (every method, the same tuning, checkpoints and payload builder) through
 * {@link OnnxTrainingModel}, so the payload applies to the file with the existing applier
 * (`applyToOnnxFile`, `ndiff apply --model x.onnx`).
 *
 * Targets: labels (class indices per example; for a one-value output, 0 or 1), and/or a teacher
 * (the new version of the model, same inputs and outputs), through trainDiff's `teacher` option:
 * the teacher is an {@link OnnxTrainingModel} over the same examples, so its outputs are computed
 * as a runtime computes them (stateful models: each sequence from its start, the state carried),
 * and the base learns them (KL of the two class distributions softened by a temperature).
 * Agreement with the teacher is then what validation measures and what the refusal of a worse
 * result judges.
 */
import * as tf from '@tensorflow/tfjs';
import { DataError, UsageError } from '../../core/errors.ts';
import { seededRandom } from '../../core/random.ts';
import { OnnxWeightStore } from '../../io/onnx/store.ts';
import type { InputData, LabelledData } from '../data.ts';
import { permutation } from '../data.ts';
import { trainDiff, type TrainDiffOptions, type TrainDiffResult } from '../train-diff.ts';
import { OnnxProgram, type OnnxProgramOptions } from './executor.ts';
import { OnnxTrainingModel, type OnnxExamples, type OnnxInputValues, type OnnxOutputKind, type OnnxStatePair } from './layers-model.ts';

/** Examples of an ONNX model: one array per model input, and for stateful models each example's sequence. */
export interface OnnxDataset {
  /** Per-example inputs by model input name (examples on the first axis). */
  inputs: Record<string, OnnxInputValues>;
  /** Stateful models: the sequence of each example (a sequence's frames consecutive, in order). */
  sequence?: Int32Array;
  /** Class index per example (optional with a teacher). */
  labels?: Int32Array;
}

/** Options of {@link trainOnnxDiff}: trainDiff's, with ONNX data and the model's reading. */
export interface TrainOnnxOptions extends Omit<TrainDiffOptions, 'base' | 'validation' | 'eval' | 'teacher'> {
  /** Inputs fed the same to every example (Silero's `sr`). */
  shared?: Record<string, OnnxInputValues>;
  /** Validation examples, or the fraction held out of the training data (default 0.1; whole sequences for stateful models). */
  validation?: OnnxDataset | number;
  /** Evaluation examples (reported, never used to choose). */
  eval?: OnnxDataset;
  /** The new version of the model as a `.onnx` file: the base learns its outputs (module doc; trainDiff's `teacher`). */
  teacher?: Uint8Array;
  /** Stateful models: state inputs and the outputs that carry them. */
  state?: readonly OnnxStatePair[];
  /** Frames the gradient flows back through (stateful models; default 1). */
  bpttFrames?: number;
  output?: string;
  outputKind?: OnnxOutputKind;
  /** Options of the base's program (external data, a name for messages). */
  program?: OnnxProgramOptions;
}

/** Closeness to the teacher on a dataset: decisions that agree, and the mean absolute difference of the raw outputs. */
export interface TeacherAgreement {
  examples: number;
  agreement: number;
  meanAbsDiff: number;
}

/** What {@link trainOnnxDiff} returns: trainDiff's result, and what the trainer measured on the evaluation examples. */
export interface TrainOnnxResult extends TrainDiffResult {
  /** Raw model outputs on the eval examples after the update (the weights a device gets), as a runtime computes them. */
  evalOutputs?: Float32Array;
  /** The same before the update (the base). */
  evalOutputsBefore?: Float32Array;
  /** With a teacher: the teacher's raw outputs on the eval examples. */
  teacherEvalOutputs?: Float32Array;
  /** With a teacher and eval data: closeness before and after. */
  teacherEval?: { before: TeacherAgreement; after: TeacherAgreement };
  /** Weights no fed input reaches, or with no finite gradient (not trained). */
  unreachable: string[];
  /** Scalar (rank-0) constants of the graph (not trained). */
  scalars: string[];
}

/**
 * Train a diff of the ONNX model `bytes` on `train` (module doc). The file is never changed:
 * write `result.bytes` and apply it with `applyToOnnxFile`.
 * @throws as trainDiff; UsageError when neither labels nor a teacher give targets.
 */
export async function trainOnnxDiff(bytes: Uint8Array, train: OnnxDataset, options: TrainOnnxOptions): Promise<TrainOnnxResult> {
  const source = options.program?.source ?? 'model.onnx';
  const sets: { name: string; data: OnnxDataset }[] = [{ name: 'training', data: train }];
  const valGiven = typeof options.validation === 'object' ? options.validation : undefined;
  if (valGiven) sets.push({ name: 'validation', data: valGiven });
  if (options.eval) sets.push({ name: 'evaluation', data: options.eval });
  const { examples, ranges } = joinDatasets(sets, options.shared, !!options.state?.length);
  const modelOptions = { ...(options.state ? { state: options.state } : {}), ...(options.output ? { output: options.output } : {}), ...(options.outputKind ? { outputKind: options.outputKind } : {}), ...(options.bpttFrames ? { bpttFrames: options.bpttFrames } : {}) };
  const model = new OnnxTrainingModel(new OnnxProgram(bytes, { ...options.program, source }), examples, modelOptions);
  const owned: tf.Tensor[] = [];
  let teacher: OnnxTrainingModel | undefined;
  try {
    // Targets: the labels, and/or the teacher (trainDiff's teacher option: its outputs on the same
    // examples, computed as a runtime computes them, are the targets of a KL term).
    let labels: Int32Array | undefined;
    if (sets.some((x) => x.data.labels)) {
      labels = new Int32Array(examples.count);
      for (const s of sets) {
        if (!s.data.labels) throw new UsageError(`the training examples have labels and the ${s.name} examples none: give y.npy for every set, or none with --teacher`);
        const r = ranges.get(s.name) as [number, number];
        if (s.data.labels.length !== r[1]) throw new DataError(`${s.data.labels.length} labels for ${r[1]} ${s.name} examples`);
        labels.set(s.data.labels, r[0]);
      }
    } else if (!options.teacher) {
      throw new UsageError('the examples have no labels and there is no teacher: give y.npy (class per example) or --teacher NEW.onnx');
    }
    if (options.teacher) {
      teacher = new OnnxTrainingModel(new OnnxProgram(options.teacher, { source: 'teacher' }), examples, modelOptions);
      if (teacher.classes !== model.classes || teacher.outputKind !== model.outputKind) {
        throw new UsageError(`the teacher's output ${teacher.output} gives ${teacher.classes} classes (${teacher.outputKind}), the base's ${model.classes} (${model.outputKind}): expected the new version of the same model`);
      }
    }
    const dataOf = (from: number, count: number): InputData => {
      const x = model.ids(from, count);
      owned.push(x);
      return { x, ...(labels ? { y: labels.slice(from, from + count) } : {}) };
    };
    const [t0, tn] = ranges.get('training') as [number, number];
    let trainData = dataOf(t0, tn);
    let validation: InputData | number | undefined = valGiven ? dataOf(...(ranges.get('validation') as [number, number])) : (options.validation as number | undefined);
    if (!valGiven && options.state?.length && ((validation as number | undefined) ?? 0.1) > 0) {
      // Held-out validation for a stateful model: whole sequences, never frames cut out of one.
      const split = holdOutSequences(examples.sequence as Int32Array, t0, tn, (validation as number | undefined) ?? 0.1, options.seed ?? 0);
      const pickIds = (ids: Int32Array): InputData => {
        const x = tf.tensor2d(Float32Array.from(ids), [ids.length, 1]);
        owned.push(x);
        return { x, ...(labels ? { y: Int32Array.from(ids, (i) => (labels as Int32Array)[i]) } : {}) };
      };
      trainData = pickIds(split.rest);
      validation = pickIds(split.part);
      options.onProgress?.(`validation: ${split.sequences} whole sequences (${split.part.length} frames) held out of training (seeded)`);
    }
    const evalRange = ranges.get('evaluation');
    const evalData = evalRange ? dataOf(...evalRange) : undefined;
    const evalOutputsBefore = evalRange ? model.rawOutputs(...evalRange) : undefined;
    if (model.unreachable.length) options.onProgress?.(`${model.unreachable.length} weight tensors are not reached from the fed inputs (an If branch not taken) or have no finite gradient: they stay as they are`);
    if (model.scalars.length) options.onProgress?.(`${model.scalars.length} scalar constants (exponents, epsilons) stay as they are`);
    const base = new OnnxWeightStore(bytes, { source, ...(options.program?.external ? { external: new Map(options.program.external instanceof Map ? options.program.external : Object.entries(options.program.external)) } : {}) });
    const { shared: _s, teacher: _t, state: _st, bpttFrames: _b, output: _o, outputKind: _k, program: _p, validation: _v, eval: _e, ...rest } = options;
    const result = await trainDiff(model.asLayersModel(), trainData, {
      ...rest,
      base,
      ...(teacher ? { teacher: teacher.asLayersModel() } : {}),
      ...(validation !== undefined ? { validation: validation as LabelledData | number } : {}),
      ...(evalData ? { eval: evalData as LabelledData } : {}),
      // The ONNX program lives in this thread's memory (examples, sequence state): a worker thread
      // cannot rebuild it from a topology, so it trains on one thread whatever the thread count.
      threads: 1,
    });
    const evalOutputs = evalRange ? model.rawOutputs(...evalRange) : undefined;
    const teacherEvalOutputs = evalRange && teacher ? teacher.rawOutputs(...evalRange) : undefined;
    return {
      ...result,
      unreachable: model.unreachable,
      scalars: model.scalars,
      ...(evalOutputs ? { evalOutputs, evalOutputsBefore } : {}),
      ...(teacherEvalOutputs && evalOutputs && evalOutputsBefore
        ? { teacherEvalOutputs, teacherEval: { before: compareOutputs(evalOutputsBefore, teacherEvalOutputs, model), after: compareOutputs(evalOutputs, teacherEvalOutputs, model) } }
        : {}),
    };
  } finally {
    for (const t of owned) t.dispose();
    teacher?.dispose();
    model.dispose();
  }
}

/** The class each raw output row decides (a one-value output: p >= 0.5, or logit >= 0). */
export function decisions(raw: Float32Array, model: Pick<OnnxTrainingModel, 'classes' | 'outputKind'>): Int32Array {
  if (model.outputKind === 'probability' || model.outputKind === 'logit') {
    const cut = model.outputKind === 'probability' ? 0.5 : 0;
    return Int32Array.from(raw, (v) => (v >= cut ? 1 : 0));
  }
  const c = model.classes;
  const out = new Int32Array(raw.length / c);
  for (let i = 0; i < out.length; i++) {
    let top = 0;
    for (let k = 1; k < c; k++) if (raw[i * c + k] > raw[i * c + top]) top = k;
    out[i] = top;
  }
  return out;
}

/** Agreement of decisions and mean absolute difference of raw outputs between two models' rows. */
export function compareOutputs(got: Float32Array, reference: Float32Array, model: Pick<OnnxTrainingModel, 'classes' | 'outputKind'>): TeacherAgreement {
  const a = decisions(got, model);
  const b = decisions(reference, model);
  let agree = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) agree++;
  let mad = 0;
  for (let i = 0; i < got.length; i++) mad += Math.abs(got[i] - reference[i]);
  return { examples: a.length, agreement: agree / Math.max(1, a.length), meanAbsDiff: mad / Math.max(1, got.length) };
}

/** The datasets as one id space (training first), sequence ids renumbered so no two sets share one. */
function joinDatasets(sets: { name: string; data: OnnxDataset }[], shared: Record<string, OnnxInputValues> | undefined, stateful: boolean): { examples: OnnxExamples; ranges: Map<string, [number, number]> } {
  const ranges = new Map<string, [number, number]>();
  const first = sets[0].data;
  const names = Object.keys(first.inputs);
  let count = 0;
  for (const s of sets) {
    const keys = Object.keys(s.data.inputs);
    if (keys.length !== names.length || keys.some((k) => !names.includes(k))) throw new DataError(`the ${s.name} examples give inputs ${keys.join(', ')}, the training examples ${names.join(', ')}: give the same inputs`);
    const n = countOf(s.data, s.name);
    if (stateful && !s.data.sequence) throw new DataError(`the ${s.name} examples have no sequence ids: a stateful model trains and is evaluated on sequences (sequence.npy, one id per frame)`);
    ranges.set(s.name, [count, n]);
    count += n;
  }
  const inputs: Record<string, OnnxInputValues> = {};
  for (const name of names) {
    const shape = first.inputs[name].shape;
    const isInt = first.inputs[name].values instanceof Int32Array;
    const values = isInt ? new Int32Array(count * shape.reduce((a, d) => a * d, 1)) : new Float32Array(count * shape.reduce((a, d) => a * d, 1));
    let at = 0;
    for (const s of sets) {
      const v = s.data.inputs[name];
      if (v.shape.join('x') !== shape.join('x')) throw new DataError(`input ${name}: the ${s.name} examples are [${v.shape.join(', ')}] each, the training examples [${shape.join(', ')}]`);
      values.set(v.values as never, at);
      at += v.values.length;
    }
    inputs[name] = { values, shape };
  }
  let sequence: Int32Array | undefined;
  if (stateful) {
    sequence = new Int32Array(count);
    let next = 0;
    for (const s of sets) {
      const [from, n] = ranges.get(s.name) as [number, number];
      const ids = s.data.sequence as Int32Array;
      for (let i = 0; i < n; i++) {
        if (i > 0 && ids[i] !== ids[i - 1]) next++;
        sequence[from + i] = next;
      }
      next++;
    }
  }
  return { examples: { count, inputs, ...(shared ? { shared } : {}), ...(sequence ? { sequence } : {}) }, ranges };
}

function countOf(d: OnnxDataset, what: string): number {
  const counts = Object.entries(d.inputs).map(([name, v]) => ({ name, n: v.values.length / Math.max(1, v.shape.reduce((a, x) => a * x, 1)) }));
  if (!counts.length) throw new DataError(`the ${what} examples give no inputs`);
  const n = counts[0].n;
  const odd = counts.find((c) => c.n !== n || !Number.isInteger(c.n));
  if (odd) throw new DataError(`the ${what} examples: input ${counts[0].name} holds ${n} examples, ${odd.name} ${odd.n}: every input needs one value per example`);
  return n;
}

/** A seeded share of the sequences in ids [from, from + n), whole, as validation. */
function holdOutSequences(sequence: Int32Array, from: number, n: number, fraction: number, seed: number): { rest: Int32Array; part: Int32Array; sequences: number } {
  const ids = [...new Set(sequence.subarray(from, from + n))];
  const order = permutation(ids.length, seededRandom(seed ^ 0x5eed));
  const take = ids.length < 2 ? 0 : Math.min(ids.length - 1, Math.max(1, Math.round(fraction * ids.length)));
  const held = new Set(Array.from(order.subarray(0, take), (k) => ids[k]));
  const rest: number[] = [];
  const part: number[] = [];
  for (let i = from; i < from + n; i++) (held.has(sequence[i]) ? part : rest).push(i);
  return { rest: Int32Array.from(rest), part: Int32Array.from(part), sequences: take };
}
