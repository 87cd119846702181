/**
 * Train a diff of a LiteRT model: the `.tflite` file's weights (float32, float16 and int8, on
 * their grids) trained by the graph-program trainer (src/train/program/train-program.ts: every
 * method, tuning, checkpoints, the refusal of a worse result, the payload builder) over a
 * {@link TfliteProgram}, so the payload applies to the file with the existing applier
 * (`applyToTfliteFile`, `ndiff apply --model x.tflite`). Targets: labels and/or a teacher (the new
 * version of the model as a `.tflite` file with the same inputs and outputs).
 */
import { TfliteWeightStore } from '../../io/tflite/store.ts';
import { trainProgramDiff, type ProgramDataset, type TrainProgramOptions, type TrainProgramResult } from '../program/train-program.ts';
import { TfliteProgram, type TfliteProgramOptions } from '../../engine/tflite/program.ts';
import { checkTrainingRun } from '../tuning.ts';

/** Options of {@link trainTfliteDiff}: the graph-program trainer's, with the teacher as a file. */
export interface TrainTfliteOptions extends Omit<TrainProgramOptions, 'teacherFlag'> {
  /** The new version of the model as a `.tflite` file: the base learns its outputs. */
  teacher?: Uint8Array;
  /** A name for the base in messages (its path). */
  source?: string;
  /** A name for the teacher in messages (its path). */
  teacherSource?: string;
}

/**
 * Train a diff of the `.tflite` model `bytes` on `train` (module doc): one array per model input,
 * by the input tensor's name. The file is never changed: write `result.bytes` and apply it.
 * @throws as trainDiff; UnsupportedOperatorError for an operator the executor does not implement
 *   (before anything runs); UsageError when neither labels nor a teacher give targets, or the
 *   teacher's interface differs.
 */
export async function trainTfliteDiff(bytes: Uint8Array, train: ProgramDataset, options: TrainTfliteOptions): Promise<TrainProgramResult> {
  checkTrainingRun(options);
  const source = options.source ?? 'model.tflite';
  const store = new TfliteWeightStore(bytes, { source });
  const programOptions: TfliteProgramOptions = { source };
  const program = new TfliteProgram(bytes, programOptions);
  let teacher: TfliteProgram | undefined;
  try {
    teacher = options.teacher ? new TfliteProgram(options.teacher, { source: options.teacherSource ?? 'teacher', trainable: () => false }) : undefined;
  } catch (e) {
    program.dispose();
    throw e;
  }
  const { teacher: _t, source: _s, teacherSource: _ts, ...rest } = options;
  // The trainer frees both programs when it is done.
  return trainProgramDiff(program, store, train, { ...rest, ...(teacher ? { teacher } : {}), teacherFlag: '--teacher NEW.tflite' });
}
