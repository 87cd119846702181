/**
 * A `tf.LayersModel` as a {@link TrainableProgram}, so a layers model can be the teacher of a
 * graph-program base (a team that keeps its Keras model and ships the converted graph): its
 * inputs and outputs take the base program's names by position, so the teacher is fed the
 * base's examples and compared output for output. Its weights are listed under their manifest
 * names (`originalName`); they are never trained.
 */
import * as tf from '@tensorflow/tfjs';
import { namedVariables } from '../model-weights.ts';
import type { ProgramTensorInfo, ProgramVariable, TrainableProgram } from '../program/program.ts';

/** A layers model read as a program with the base's input and output names (module doc). */
export class LayersModelProgram implements TrainableProgram {
  readonly source: string;
  readonly variables: ProgramVariable[];
  readonly inputs: ProgramTensorInfo[];
  readonly outputs: ProgramTensorInfo[];
  private readonly model: tf.LayersModel;

  /**
   * @param model the layers model (not changed, not disposed).
   * @param like the base program whose input and output names this one takes, by position.
   */
  constructor(model: tf.LayersModel, like: Pick<TrainableProgram, 'inputs' | 'outputs'>, source = 'teacher') {
    this.model = model;
    this.source = source;
    this.variables = namedVariables(model).map((v) => ({ ...v, trainable: false, grid: { dtype: 'float32' } }));
    this.inputs = model.inputs.map((t, k) => ({ name: like.inputs[k]?.name ?? `input_${k}`, shape: t.shape }));
    this.outputs = model.outputs.map((t, k) => ({ name: like.outputs[k]?.name ?? `output_${k}`, shape: t.shape }));
  }

  /** The model's outputs on `feeds` (by the base's input names), by the base's output names. */
  run(feeds: Readonly<Record<string, tf.Tensor>>): Record<string, tf.Tensor> {
    const xs = this.inputs.map((i) => {
      const t = feeds[i.name];
      return t.dtype === 'float32' ? t : tf.cast(t, 'float32');
    });
    const out = this.model.apply(xs.length === 1 ? xs[0] : xs, { training: false }) as tf.Tensor | tf.Tensor[];
    const list = Array.isArray(out) ? out : [out];
    const result: Record<string, tf.Tensor> = {};
    this.outputs.forEach((o, k) => (result[o.name] = list[k]));
    return result;
  }

  /** `Softmax` for an output layer whose activation is a softmax, else the layer's class name. */
  outputOp(output: string): string | undefined {
    const k = this.outputs.findIndex((o) => o.name === output);
    const layer = (this.model as unknown as { outputLayers: { getConfig(): { activation?: string }; getClassName(): string }[] }).outputLayers[k];
    if (!layer) return undefined;
    return layer.getConfig().activation === 'softmax' ? 'Softmax' : layer.getClassName();
  }

  /** Nothing to free: the model is the caller's. */
  dispose(): void {}
}
