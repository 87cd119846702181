/**
 * Train a diff of a TF.js graph model (a `tf.GraphModel` folder, `"format": "graph-model"`): its
 * float weights trained as variables through tfjs' graph executor (graph-program.ts) by the
 * graph-program trainer (src/train/program/train-program.ts: every method, tuning, checkpoints,
 * the refusal of a worse result, the payload builder), so the payload applies to the folder with
 * the existing TF.js folder applier (`applyToModelDir`, `ndiff apply --model dir`), quantized and
 * float16 weights kept on their grids. A graph tfjs cannot differentiate is refused before
 * training starts, naming the operator and the node (gradient-probe.ts).
 *
 * Targets: labels and/or a teacher, the new version of the model as a graph model or as a layers
 * model with the same inputs and outputs (the layers model's inputs and outputs are matched to
 * the graph's by position).
 */
import * as tf from '@tensorflow/tfjs';
import type { WeightStore } from '../../core/weight-store.ts';
import { tfModelStore } from '../../io/tfjs/live-model-store.ts';
import type { TrainableProgram } from '../../engine/program/program.ts';
import { trainProgramDiff, type ProgramDataset, type TrainProgramOptions, type TrainProgramResult } from '../program/train-program.ts';
import { TfjsGraphProgram } from '../../engine/tfjs-graph/graph-program.ts';
import { LayersModelProgram } from '../../engine/tfjs-graph/layers-program.ts';
import { checkTrainingRun } from '../tuning.ts';

/** Options of {@link trainTfjsGraphDiff}: the graph-program trainer's, with the teacher as a loaded model. */
export interface TrainTfjsGraphOptions extends Omit<TrainProgramOptions, 'teacherFlag'> {
  /** The new version of the model: a graph model, or a layers model, with the base's inputs and outputs. */
  teacher?: tf.GraphModel | tf.LayersModel;
  /** A name for the base in messages (its path). */
  source?: string;
  /** A name for the teacher in messages (its path). */
  teacherSource?: string;
}

function isLayersModel(m: tf.GraphModel | tf.LayersModel): m is tf.LayersModel {
  return Array.isArray((m as tf.LayersModel).layers);
}

/**
 * Train a diff of the graph model `model`, loaded from the folder whose weight store is `store`
 * (`tf.loadGraphModel(fileSystemIO(dir))` and `openTfjsModelDir(dir)`), on `train`: one array
 * per model input, by the input's name (`model.inputs`). The folder is never changed: write
 * `result.bytes` and apply it with `applyToModelDir`. While training, the model's float weights
 * are variables; afterwards it holds plain tensors again, with the weights a device gets by
 * applying the payload (a graph-model teacher gets its own weights back).
 * @throws as trainDiff; UnsupportedOperatorError for a graph tfjs cannot differentiate (before
 *   training); ModelMismatchError when `model` is not the folder of `store`; UsageError when the
 *   teacher's inputs or outputs are not the base's.
 */
export async function trainTfjsGraphDiff(model: tf.GraphModel, store: WeightStore, train: ProgramDataset, options: TrainTfjsGraphOptions): Promise<TrainProgramResult> {
  checkTrainingRun(options);
  const program = new TfjsGraphProgram(model, store, { source: options.source ?? 'graph model' });
  let teacher: TrainableProgram | undefined;
  try {
    const t = options.teacher;
    if (t) {
      const source = options.teacherSource ?? 'teacher';
      teacher = isLayersModel(t) ? new LayersModelProgram(t, program, source) : new TfjsGraphProgram(t, tfModelStore(t), { source, trainable: () => false });
    }
  } catch (e) {
    program.dispose();
    throw e;
  }
  const { teacher: _t, source: _s, teacherSource: _ts, ...rest } = options;
  return trainProgramDiff(program, store, train, { ...rest, ...(teacher ? { teacher } : {}), teacherFlag: '--teacher NEW (a graph-model or layers-model folder)' });
}
