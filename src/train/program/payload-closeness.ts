/**
 * How close a payload takes a graph program (an ONNX model, a TF.js graph model) to the target
 * version on data: both run through {@link ProgramTrainingModel}, the adapter the program trainer
 * measures with, and compared by {@link payloadCloseness}, the measure of TF.js layers models: the
 * outputs of base + payload (applied by the device applier) against the target's, beside the
 * unpatched base's, and whether the payload takes the model further from the target than not
 * updating. `onnxPayloadCloseness` (src/train/onnx/) is this for `.onnx` files.
 *
 * Stateful sequence models (`state`) run as a streaming runtime runs them: each sequence from its
 * first frame with the state carried, so a VAD is measured frame by frame as a device runs it.
 */
import type { WeightStore } from '../../core/weight-store.ts';
import { UsageError } from '../../core/errors.ts';
import { payloadCloseness, type PayloadCloseness } from '../target-closeness.ts';
import { calibrationMeasure, type CalibrationMeasure } from '../calibrate.ts';
import { joinDatasets, type ProgramDataset } from '../../engine/program/datasets.ts';
import type { TrainableProgram } from '../../engine/program/program.ts';
import { ProgramTrainingModel, type ProgramInputValues, type ProgramOutputKind, type ProgramStatePair } from '../../engine/program/training-model.ts';

/** Options of {@link programPayloadCloseness}: how the programs read their inputs and outputs. */
export interface ProgramClosenessOptions {
  /** Inputs fed the same to every example (Silero's `sr`). */
  shared?: Record<string, ProgramInputValues>;
  /** Stateful models: state inputs and the outputs that carry them to the next frame. */
  state?: readonly ProgramStatePair[];
  /** The output compared (default: the first that is not a state). */
  output?: string;
  /** How that output reads (default as {@link ProgramTrainingModel}: one value is a probability). */
  outputKind?: ProgramOutputKind;
  /** Examples run at once (default 256). */
  batchSize?: number;
}

/** The target's compared output reads like the base's (width, classes, kind); else a UsageError. */
function checkSameOutput(model: ProgramTrainingModel, targetModel: ProgramTrainingModel): void {
  if (targetModel.rawWidth !== model.rawWidth || targetModel.classes !== model.classes || targetModel.outputKind !== model.outputKind) {
    throw new UsageError(`the target's output ${targetModel.output} gives ${targetModel.rawWidth} value(s) per example read as ${targetModel.classes} classes (${targetModel.outputKind}), the base's ${model.output} ${model.rawWidth} read as ${model.classes} (${model.outputKind}): expected the new version of the same model`);
  }
}

/** What {@link programPayloadCloseness} measured, with the output it compared and how that output reads. */
export interface ProgramPayloadCloseness extends PayloadCloseness {
  /** The graph output compared. */
  output: string;
  /** How it reads: `probability` (one value, decided at 0.5), `logit` (decided at 0), `probabilities` or `logits` (top-1). */
  outputKind: ProgramOutputKind;
}

/**
 * Measure `payload` (made for `store`, the weight store of `program`'s file) against `target`
 * on `data` (module doc). Labels in `data` add the accuracy of the base, of base + payload and of
 * the target. Classifier outputs are compared by top-1 agreement (a one-value probability by its
 * decision at 0.5) and mean absolute output difference, as {@link payloadCloseness} does for
 * TF.js layers models. Both programs are disposed when this returns or throws.
 * @throws UsageError when the target reads another output width or kind than the base;
 *   DataError when the data do not fit the programs; the applier's typed error when the payload
 *   does not apply to `store`.
 */
export async function programPayloadCloseness(program: TrainableProgram, target: TrainableProgram, store: WeightStore, payload: Uint8Array, data: ProgramDataset, options: ProgramClosenessOptions = {}): Promise<ProgramPayloadCloseness> {
  let model: ProgramTrainingModel | undefined;
  let targetModel: ProgramTrainingModel | undefined;
  try {
    const { examples } = joinDatasets([{ name: 'evaluation', data }], options.shared, !!options.state?.length);
    if (data.labels && data.labels.length !== examples.count) throw new UsageError(`${data.labels.length} labels for ${examples.count} examples: give one label per example (y.npy)`);
    // Read, never trained: no gradient probe (frozen), every weight still listed to be set.
    const modelOptions = { ...(options.state ? { state: options.state } : {}), ...(options.output ? { output: options.output } : {}), ...(options.outputKind ? { outputKind: options.outputKind } : {}), frozen: true };
    model = new ProgramTrainingModel(program, examples, modelOptions);
    targetModel = new ProgramTrainingModel(target, examples, { ...modelOptions, output: model.output });
    checkSameOutput(model, targetModel);
    const x = model.ids(0, examples.count);
    try {
      const measured = await payloadCloseness(model.asLayersModel(), targetModel.asLayersModel(), store, payload, { x, ...(data.labels ? { y: data.labels } : {}) }, options.batchSize);
      return { ...measured, output: model.output, outputKind: model.outputKind };
    } finally {
      x.dispose();
    }
  } finally {
    // The models own their programs; a program whose model was never made is freed here.
    if (targetModel) targetModel.dispose();
    else target.dispose();
    if (model) model.dispose();
    else program.dispose();
  }
}

/**
 * A {@link CalibrationMeasure} for a graph program (ONNX, TF.js graph models) against `target` on
 * `data`: what `ndiff diff --calibrate` measures candidates with, and the weights the inputs reach
 * (`reached`; absent when the graph cannot be differentiated). `store` is the weight store of
 * `program`'s file (the one the diffs are made for). Dispose it when done: it owns both programs
 * (also when this throws).
 */
export function programCalibration(program: TrainableProgram, target: TrainableProgram, store: WeightStore, data: ProgramDataset, options: ProgramClosenessOptions = {}): { measure: CalibrationMeasure; examples: number; reached?: ReadonlySet<string>; dispose(): void } {
  let model: ProgramTrainingModel | undefined;
  let targetModel: ProgramTrainingModel | undefined;
  let x: ReturnType<ProgramTrainingModel['ids']> | undefined;
  let measure: CalibrationMeasure | undefined;
  const dispose = () => {
    measure?.dispose?.();
    x?.dispose();
    if (targetModel) targetModel.dispose();
    else target.dispose();
    if (model) model.dispose();
    else program.dispose();
  };
  try {
    const { examples } = joinDatasets([{ name: 'calibration', data }], options.shared, !!options.state?.length);
    const modelOptions = { ...(options.state ? { state: options.state } : {}), ...(options.output ? { output: options.output } : {}), ...(options.outputKind ? { outputKind: options.outputKind } : {}), frozen: true };
    // The gradient probe says which weights the inputs reach (not an If branch they never take,
    // nor a weight whose gradient is not finite, as an STFT basis under a magnitude): a graph tfjs
    // cannot differentiate is still measured, without that.
    let reached: Set<string> | undefined;
    try {
      model = new ProgramTrainingModel(program, examples, { ...modelOptions, frozen: false });
      const out = new Set([...model.unreachable, ...model.scalars]);
      reached = new Set(program.variables.map((v) => v.name).filter((n) => !out.has(n)));
    } catch {
      model = new ProgramTrainingModel(program, examples, modelOptions);
    }
    targetModel = new ProgramTrainingModel(target, examples, { ...modelOptions, output: model.output });
    checkSameOutput(model, targetModel);
    x = model.ids(0, examples.count);
    measure = calibrationMeasure(model.asLayersModel(), targetModel.asLayersModel(), store, x, options.batchSize);
    return { measure, examples: examples.count, ...(reached ? { reached } : {}), dispose };
  } catch (e) {
    dispose();
    throw e;
  }
}
