/**
 * Train a diff of a graph program (program.ts: an ONNX model, a TF.js graph model): its
 * patchable weights trained by `trainDiff` (every method, the same tuning, checkpoints and
 * payload builder) through {@link ProgramTrainingModel}, so the payload applies to the model's
 * file with the existing applier. `trainOnnxDiff` (src/train/onnx/) and `trainTfjsGraphDiff`
 * (src/train/tfjs-graph/) are this, with their format's program and weight store.
 *
 * Targets: labels (class indices per example; for a one-value output, 0 or 1), and/or a teacher
 * (the new version of the model, same inputs and outputs), through trainDiff's `teacher` option:
 * the teacher is a {@link ProgramTrainingModel} over the same examples, so its outputs are computed
 * as a runtime computes them (stateful models: each sequence from its start, the state carried),
 * and the base learns them (KL of the two class distributions softened by a temperature, or the
 * squared error of raw outputs). Agreement with the teacher is then what validation measures and
 * what the refusal of a worse result judges.
 *
 * Threads (`threads`, default every core) as for layers models (src/train/parallel/threads.ts): on
 * wasm the batch is split across worker threads, each of which builds the program again from the
 * model file (program/worker-copy.ts) and gets each shard's input rows; a stateful model trains
 * on one thread (its carried states live in this one). On native one JavaScript thread trains
 * and the addon's threads run the kernels.
 *
 * `method: 'auto'` chooses among the candidates (trainAuto: lowbit, sparse, lora, sparse-lora,
 * topk-retrain) on the same examples by validation, as for layers models (successive halving, or
 * every candidate trained with `autoSearch: 'exhaustive'`).
 */
import * as tf from '@tensorflow/tfjs';
import { DataError, UsageError } from '../../core/errors.ts';
import { seededRandom } from '../../core/random.ts';
import type { WeightStore } from '../../core/weight-store.ts';
import type { InputData, LabelledData } from '../data.ts';
import { permutation } from '../data.ts';
import { trainAuto, type AutoCandidate, type AutoResult, type AutoSearch } from '../auto.ts';
import type { TrainMethod } from '../methods.ts';
import { trainDiff, type TrainDiffOptions, type TrainDiffResult } from '../train-diff.ts';
import { checkTrainingRun } from '../tuning.ts';
import { ForwardPlans, forwardSwitch } from '../../engine/compiled/forward.ts';
import { sayOnce } from '../../engine/compiled/step.ts';
import type { TrainableProgram } from '../../engine/program/program.ts';
import { joinDatasets, type ProgramDataset } from '../../engine/program/datasets.ts';
import { ProgramTrainingModel, RAW_OUTPUT_BATCH, type ProgramInputValues, type ProgramOutputKind, type ProgramStatePair } from '../../engine/program/training-model.ts';

export type { ProgramDataset } from '../../engine/program/datasets.ts';

/** Options of {@link trainProgramDiff}: trainDiff's, with the examples of a graph and how its output reads. */
export interface TrainProgramOptions extends Omit<TrainDiffOptions, 'base' | 'validation' | 'eval' | 'teacher' | 'method' | 'distillInputs'> {
  /** A method, or `auto`: the candidate best on validation returned (its `auto` says which and how each did). */
  method: TrainMethod | 'auto';
  /** With `auto`: called with each candidate's outcome (its score, bytes and time, or why it has no result). */
  onCandidate?: (c: AutoCandidate) => void;
  /** With `auto`: how it searches (`halving`, the default, or `exhaustive`; src/train/auto.ts). */
  autoSearch?: AutoSearch;
  /** Inputs fed the same to every example (Silero's `sr`). */
  shared?: Record<string, ProgramInputValues>;
  /** Validation examples, or the fraction held out of the training data (default 0.1; whole sequences for stateful models). */
  validation?: ProgramDataset | number;
  /** Evaluation examples (reported, never used to choose). */
  eval?: ProgramDataset;
  /**
   * Examples replayed from earlier data (`ndiff train --replay`): trained on with the training
   * examples and marked as replayed (`LabelledData.replay`), so the distillation term keeps the
   * base's outputs on them only and the update's own examples learn from their targets alone.
   * Same inputs as the training examples; labels when they have labels; stateful models: their
   * own sequences (the ids need not differ from the training examples').
   */
  replay?: ProgramDataset;
  /**
   * With a teacher: unlabeled examples from where the model runs (any number of sets, each giving
   * the training examples' inputs; labels are ignored), drawn into the training stream beside the
   * update's own at `distillMix` (src/train/distill-inputs.ts), the teacher's outputs their targets.
   * Empty: nothing changes. Refused for stateful models.
   */
  distillInputs?: readonly ProgramDataset[];
  /** Stateful models: state inputs and the outputs that carry them. */
  state?: readonly ProgramStatePair[];
  /** Frames the gradient flows back through (stateful models; default 1). */
  bpttFrames?: number;
  /** The output to train (default: the first that is not a state). */
  output?: string;
  /** How that output reads (default from its width and last operator). */
  outputKind?: ProgramOutputKind;
  /** How to name the teacher option in messages (`--teacher NEW.onnx`). */
  teacherFlag?: string;
}

/** Closeness to the teacher on a dataset: decisions that agree, and the mean absolute difference of the raw outputs. */
export interface TeacherAgreement {
  examples: number;
  agreement: number;
  meanAbsDiff: number;
}

/** What {@link trainProgramDiff} returns: trainDiff's result, and what the trainer measured on the evaluation examples. */
export interface TrainProgramResult extends TrainDiffResult {
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
  /** With `method: 'auto'`: the method chosen and every candidate's outcome. */
  auto?: AutoResult['auto'];
}

/**
 * Train a diff of `program` on `train` (module doc); payloads are built against `store`, the
 * model file's weight store (its names, grids and frame are the program's). `teacher`, when
 * given, is the new version of the model as a program with the same inputs and outputs. Both
 * programs are disposed when this returns or throws. The file is never changed: write
 * `result.bytes` and apply it with the format's applier.
 * @throws as trainDiff; UsageError when neither labels nor a teacher give targets, or when the
 *   teacher's inputs or outputs are not the base's.
 */
export async function trainProgramDiff(program: TrainableProgram, store: WeightStore, train: ProgramDataset, options: TrainProgramOptions & { teacher?: TrainableProgram }): Promise<TrainProgramResult> {
  let model: ProgramTrainingModel | undefined;
  let teacher: ProgramTrainingModel | undefined;
  let evalForward: ForwardPlans | undefined;
  const owned: tf.Tensor[] = [];
  try {
    checkTrainingRun(options);
    if (options.teacher) checkTeacherInterface(program, options.teacher);
    if (!program.variables.some((v) => v.trainable)) {
      throw new UsageError(`${program.source} has no weight the trainer can change (${program.variables.length} variable(s), none trainable): expected float32, float16 or quantized weights a payload patches; ship this model's update as a full download`, { variables: program.variables.length });
    }
    const sets: { name: string; data: ProgramDataset }[] = [{ name: 'training', data: train }];
    // Replayed examples right after the training examples: the two are one range of ids.
    if (options.replay) sets.push({ name: 'replayed', data: options.replay });
    const valGiven = typeof options.validation === 'object' ? options.validation : undefined;
    if (valGiven) sets.push({ name: 'validation', data: valGiven });
    if (options.eval) sets.push({ name: 'evaluation', data: options.eval });
    const wider = options.distillInputs ?? [];
    if (wider.length && options.state?.length) {
      throw new UsageError(`wider distillation inputs are drawn one example at a time, and ${program.source} carries state from frame to frame (${options.state.map((s) => s.input).join(', ')}): a frame drawn out of its sequence has no state to start from; put the wider sequences in the training data instead (the teacher gives their targets), or leave the distillation inputs out`, { states: options.state.length });
    }
    // Their labels are not targets (the teacher's outputs are): the inputs alone join the id space, after the rest.
    wider.forEach((d, i) => sets.push({ name: `distillation inputs ${i + 1}`, data: { inputs: d.inputs } }));
    const { examples, ranges } = joinDatasets(sets, options.shared, !!options.state?.length);
    const modelOptions = { ...(options.state ? { state: options.state } : {}), ...(options.output ? { output: options.output } : {}), ...(options.outputKind ? { outputKind: options.outputKind } : {}), ...(options.bpttFrames ? { bpttFrames: options.bpttFrames } : {}) };
    const teacherFlag = options.teacherFlag ?? 'a teacher model';
    // Targets: the labels, and/or the teacher (trainDiff's teacher option: its outputs on the same
    // examples, computed as a runtime computes them, are the targets of a KL or MSE term).
    // Each set is labelled or not on its own (trainDiff takes them so): the evaluation examples'
    // labels give accuracy before and after even when a teacher gives the training targets, and
    // a teacher scores unlabelled validation examples. Training and replayed examples are one
    // range of targets, so they are labelled together or not at all.
    let labels: Int32Array | undefined;
    const labelled = new Set<string>();
    const trainLabelled = !!train.labels;
    if (options.replay && !!options.replay.labels !== trainLabelled) {
      throw new UsageError(`the training examples have ${trainLabelled ? 'labels' : 'no labels'} and the replayed examples ${trainLabelled ? 'none' : 'have labels'}: expected both labelled (y.npy in each folder) or neither (the targets then come from ${teacherFlag})`);
    }
    if (sets.some((x) => x.data.labels)) {
      labels = new Int32Array(examples.count);
      for (const s of sets) {
        if (!s.data.labels) continue;
        const r = ranges.get(s.name) as [number, number];
        if (s.data.labels.length !== r[1]) throw new DataError(`${s.data.labels.length} labels for ${r[1]} ${s.name} examples`);
        labels.set(s.data.labels, r[0]);
        labelled.add(s.name);
      }
    }
    if (!trainLabelled && !options.teacher) {
      throw new UsageError(`the training examples have no labels and there is no teacher: give y.npy (class per example) beside the training inputs, or ${teacherFlag}`);
    }
    const base = new ProgramTrainingModel(program, examples, modelOptions);
    model = base;
    if (base.outputKind === 'values' && labels) {
      throw new UsageError(`${program.source}: output ${base.output} gives plain values (${base.rawWidth} per example, ending in a Sigmoid or a map), not classes, so labels as class indices (y.npy) cannot be its targets: train toward ${teacherFlag} without y.npy, or pass --output-kind if the output is a classifier's`, { output: base.output });
    }
    if (options.teacher) {
      teacher = new ProgramTrainingModel(options.teacher, examples, { ...modelOptions, output: teacherOutputFor(program, options.teacher, base.output), frozen: true });
      if (teacher.rawWidth !== base.rawWidth || teacher.classes !== base.classes || teacher.outputKind !== base.outputKind) {
        throw new UsageError(`the teacher's output ${teacher.output} gives ${teacher.rawWidth} value(s) per example read as ${teacher.classes} classes (${teacher.outputKind}), the base's ${base.output} ${base.rawWidth} read as ${base.classes} (${base.outputKind}): expected the new version of the same model (same inputs and outputs); pass the teacher trained from this base, or --output-kind to read both alike`, { teacherWidth: teacher.rawWidth, baseWidth: base.rawWidth });
      }
    }
    const dataOf = (set: string, from: number, count: number): InputData => {
      const x = base.ids(from, count);
      owned.push(x);
      return { x, ...(labels && labelled.has(set) ? { y: labels.slice(from, from + count) } : {}) };
    };
    const [t0, own] = ranges.get('training') as [number, number];
    const replayed = ranges.get('replayed')?.[1] ?? 0;
    const tn = own + replayed;
    /** 1 for a replayed example (ids from t0 + own on), by id. */
    const replayMarks = (ids: ArrayLike<number>): { replay?: Uint8Array } => (replayed ? { replay: Uint8Array.from(ids, (i) => (i >= t0 + own ? 1 : 0)) } : {});
    let trainData: InputData = { ...dataOf('training', t0, tn), ...replayMarks(Array.from({ length: tn }, (_, i) => t0 + i)) };
    let validation: InputData | number | undefined = valGiven ? dataOf('validation', ...(ranges.get('validation') as [number, number])) : (options.validation as number | undefined);
    if (!valGiven && options.state?.length && ((validation as number | undefined) ?? 0.1) > 0) {
      // Held-out validation for a stateful model: whole sequences, never frames cut out of one.
      const split = holdOutSequences(examples.sequence as Int32Array, t0, tn, (validation as number | undefined) ?? 0.1, options.seed ?? 0);
      const pickIds = (ids: Int32Array): InputData => {
        const x = tf.tensor2d(Float32Array.from(ids), [ids.length, 1]);
        owned.push(x);
        return { x, ...(labels && trainLabelled ? { y: Int32Array.from(ids, (i) => (labels as Int32Array)[i]) } : {}) };
      };
      trainData = { ...pickIds(split.rest), ...replayMarks(split.rest) };
      validation = pickIds(split.part);
      options.onProgress?.(`validation: ${split.sequences} whole sequences (${split.part.length} frames) held out of training (seeded)`);
    }
    const evalRange = ranges.get('evaluation');
    const evalData = evalRange ? dataOf('evaluation', ...evalRange) : undefined;
    // The base's outputs on them before and after training: the same passes twice, through a
    // compiled forward plan from the second full batch on where there are two or more.
    if (evalRange && evalRange[1] >= 2 * RAW_OUTPUT_BATCH && options.step !== 'eager' && forwardSwitch.compiled) evalForward = new ForwardPlans('evaluation', sayOnce(options.onProgress ?? (() => {})));
    const evalOutputsBefore = evalRange ? base.rawOutputs(...evalRange, evalForward) : undefined;
    if (base.unreachable.length) {
      const named = base.unreachable.slice(0, 4).join(', ') + (base.unreachable.length > 4 ? ` and ${base.unreachable.length - 4} more` : '');
      options.onProgress?.(`${base.unreachable.length} weight tensors are not reached from the fed inputs (an If branch not taken) or have no finite gradient: they stay as they are (${named})`);
    }
    if (base.scalars.length) options.onProgress?.(`${base.scalars.length} scalar constants (exponents, epsilons) stay as they are`);
    const { shared: _s, teacher: _t, state: _st, bpttFrames: _b, output: _o, outputKind: _k, teacherFlag: _f, validation: _v, eval: _e, replay: _r, distillInputs: _d, method, onCandidate, autoSearch, ...rest } = options;
    const distillInputs = wider.map((_, i) => dataOf(`distillation inputs ${i + 1}`, ...(ranges.get(`distillation inputs ${i + 1}`) as [number, number])));
    const trainOptions = {
      ...rest,
      base: store,
      ...(distillInputs.length ? { distillInputs } : {}),
      ...(teacher ? { teacher: teacher.asLayersModel() } : {}),
      ...(validation !== undefined ? { validation: validation as LabelledData | number } : {}),
      ...(evalData ? { eval: evalData as LabelledData } : {}),
    };
    const result: TrainDiffResult & { auto?: AutoResult['auto'] } = method === 'auto' ? await trainAuto(base.asLayersModel(), trainData, { ...trainOptions, ...(autoSearch ? { autoSearch } : {}) }, onCandidate) : await trainDiff(base.asLayersModel(), trainData, { ...trainOptions, method });
    const evalOutputs = evalRange ? base.rawOutputs(...evalRange, evalForward) : undefined;
    const teacherEvalOutputs = evalRange && teacher ? teacher.rawOutputs(...evalRange) : undefined;
    return {
      ...result,
      unreachable: base.unreachable,
      scalars: base.scalars,
      ...(evalOutputs ? { evalOutputs, evalOutputsBefore } : {}),
      ...(teacherEvalOutputs && evalOutputs && evalOutputsBefore
        ? { teacherEvalOutputs, teacherEval: { before: compareOutputs(evalOutputsBefore, teacherEvalOutputs, base), after: compareOutputs(evalOutputs, teacherEvalOutputs, base) } }
        : {}),
    };
  } finally {
    evalForward?.dispose();
    for (const t of owned) t.dispose();
    // The training models own their programs; a program whose model was never made is freed here.
    if (teacher) teacher.dispose();
    else options.teacher?.dispose();
    if (model) model.dispose();
    else program.dispose();
  }
}

/** A free dimension of a declared shape: unknown, -1, or a symbolic name. */
function isFree(d: number | string | null | undefined): boolean {
  return typeof d !== 'number' || d < 0;
}

/** A declared shape for messages. */
function shapeText(shape: readonly (number | string | null)[] | undefined): string {
  return shape ? `[${shape.map((d) => (isFree(d) ? '?' : d)).join(', ')}]` : 'of unknown shape';
}

/**
 * Refuse a teacher whose interface is not the base's: as many inputs, with the base's names
 * (a layers model's inputs are named after the base's, by position) and the same declared
 * per-example dimensions where both declare them, and as many outputs. Widths are compared
 * once the outputs are computed (the programs' adapters).
 * @throws UsageError naming what differs.
 */
export function checkTeacherInterface(base: TrainableProgram, teacher: TrainableProgram): void {
  const fix = 'expected the same interface (the teacher is the new version of the base model): pass the teacher trained from this base';
  if (teacher.inputs.length !== base.inputs.length) {
    throw new UsageError(`the teacher (${teacher.source}) has ${teacher.inputs.length} input(s) (${teacher.inputs.map((i) => i.name).join(', ')}), the base ${base.inputs.length} (${base.inputs.map((i) => i.name).join(', ')}): ${fix}`, { kind: 'inputs' });
  }
  for (const b of base.inputs) {
    const t = teacher.inputs.find((i) => i.name === b.name);
    if (!t) throw new UsageError(`the teacher (${teacher.source}) has no input ${JSON.stringify(b.name)}; its inputs are ${teacher.inputs.map((i) => i.name).join(', ')}: ${fix}`, { kind: 'inputs', input: b.name });
    const bs = b.shape;
    const ts = t.shape;
    if (!bs || !ts) continue;
    const differs = bs.length !== ts.length || bs.some((d, k) => k > 0 && !isFree(d) && !isFree(ts[k]) && d !== ts[k]);
    if (differs) throw new UsageError(`the teacher's input ${b.name} is ${shapeText(ts)}, the base's ${shapeText(bs)}: ${fix}`, { kind: 'inputs', input: b.name });
  }
  if (teacher.outputs.length !== base.outputs.length) {
    throw new UsageError(`the teacher (${teacher.source}) has ${teacher.outputs.length} output(s) (${teacher.outputs.map((o) => o.name).join(', ')}), the base ${base.outputs.length} (${base.outputs.map((o) => o.name).join(', ')}): ${fix}`, { kind: 'outputs' });
  }
}

/** The teacher's output that matches the base's `output`: the same name, or the same position. */
function teacherOutputFor(base: TrainableProgram, teacher: TrainableProgram, output: string): string {
  if (teacher.outputs.some((o) => o.name === output)) return output;
  const k = base.outputs.findIndex((o) => o.name === output);
  return (teacher.outputs[k] ?? teacher.outputs[0]).name;
}

/** The class each raw output row decides (a one-value output: p >= 0.5, or logit >= 0); plain values decide nothing (empty). */
export function decisions(raw: Float32Array, model: Pick<ProgramTrainingModel, 'classes' | 'outputKind'>): Int32Array {
  if (model.outputKind === 'values') return new Int32Array(0);
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

/** Agreement of decisions (NaN for plain values, which decide nothing) and mean absolute difference of raw outputs between two models' rows. */
export function compareOutputs(got: Float32Array, reference: Float32Array, model: Pick<ProgramTrainingModel, 'classes' | 'outputKind'>): TeacherAgreement {
  const a = decisions(got, model);
  const b = decisions(reference, model);
  let agree = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) agree++;
  let mad = 0;
  for (let i = 0; i < got.length; i++) mad += Math.abs(got[i] - reference[i]);
  const examples = model.outputKind === 'values' ? got.length / model.classes : a.length;
  return { examples, agreement: model.outputKind === 'values' ? NaN : agree / Math.max(1, a.length), meanAbsDiff: mad / Math.max(1, got.length) };
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
