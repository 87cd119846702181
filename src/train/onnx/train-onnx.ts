/**
 * Train a diff of an ONNX model: the `.onnx` file's patchable weights trained by `trainDiff`
 * through the graph-program trainer (src/train/program/train-program.ts) over an
 * {@link OnnxProgram}, so the payload applies to the file with the existing applier
 * (`applyToOnnxFile`, `ndiff apply --model x.onnx`). Targets: labels and/or a teacher (the new
 * version of the model as a `.onnx` file, same inputs and outputs; see train-program.ts).
 */
import { OnnxWeightStore } from '../../io/onnx/store.ts';
import { trainProgramDiff, type ProgramDataset, type TrainProgramOptions, type TrainProgramResult } from '../program/train-program.ts';
import { checkTrainingRun } from '../tuning.ts';
import { OnnxProgram, type OnnxProgramOptions } from '../../engine/onnx/executor.ts';

export { decisions, compareOutputs, type TeacherAgreement } from '../program/train-program.ts';

/** Examples of an ONNX model ({@link ProgramDataset}). */
export type OnnxDataset = ProgramDataset;

/** What {@link trainOnnxDiff} returns ({@link TrainProgramResult}). */
export type TrainOnnxResult = TrainProgramResult;

/** Options of {@link trainOnnxDiff}: the graph-program trainer's, with the teacher as a file and the program's options. */
export interface TrainOnnxOptions extends Omit<TrainProgramOptions, 'teacherFlag'> {
  /** The new version of the model as a `.onnx` file: the base learns its outputs (trainDiff's `teacher`). */
  teacher?: Uint8Array;
  /** Options of the base's program (external data, a name for messages). */
  program?: OnnxProgramOptions;
  /** Options of the teacher's program (its external data files, a name for messages). */
  teacherProgram?: OnnxProgramOptions;
}

/**
 * Train a diff of the ONNX model `bytes` on `train` (module doc). The file is never changed:
 * write `result.bytes` and apply it with `applyToOnnxFile`.
 * @throws as trainDiff; UnsupportedOperatorError for an operator the executor does not implement;
 *   UsageError when neither labels nor a teacher give targets, or the teacher's interface differs.
 */
export async function trainOnnxDiff(bytes: Uint8Array, train: OnnxDataset, options: TrainOnnxOptions): Promise<TrainOnnxResult> {
  checkTrainingRun(options);
  const source = options.program?.source ?? 'model.onnx';
  const external = options.program?.external;
  const store = new OnnxWeightStore(bytes, { source, ...(external ? { external: new Map(external instanceof Map ? external : Object.entries(external)) } : {}) });
  const program = new OnnxProgram(bytes, { ...options.program, source });
  let teacher: OnnxProgram | undefined;
  try {
    teacher = options.teacher ? new OnnxProgram(options.teacher, { source: 'teacher', ...options.teacherProgram }) : undefined;
  } catch (e) {
    program.dispose();
    throw e;
  }
  const { teacher: _t, program: _p, teacherProgram: _tp, ...rest } = options;
  return trainProgramDiff(program, store, train, { ...rest, ...(teacher ? { teacher } : {}), teacherFlag: '--teacher NEW.onnx' });
}
