/**
 * A TF.js graph model as the teacher of a layers-model base (trainDiff's `teacher` option): the
 * new version a team converted to a graph model (from a SavedModel), the base the layers model
 * devices hold. The teacher is read, never trained: it is run through tfjs' graph executor on
 * the trainer's inputs, and presented with the parts of a `tf.LayersModel` the teacher code uses
 * (inputs and outputs with their shapes, whether each output ends in a softmax, `apply`, and its
 * weights by manifest name for the methods that use teacher − base).
 */
import * as tf from '@tensorflow/tfjs';
import { UsageError } from '../../core/errors.ts';
import { tfModelStore } from '../../io/tfjs/live-model-store.ts';
import { TfjsGraphProgram } from '../../engine/tfjs-graph/graph-program.ts';

/** A weight of a {@link GraphModelTeacher}, read like a layers model's weight (never trained). */
export class GraphTeacherWeight {
  readonly trainable = false;
  constructor(readonly originalName: string, readonly shape: number[], private readonly value: tf.Variable) {}
  /** The variable holding the weight (the graph's weight map entry while the teacher is open). */
  read(): tf.Variable {
    return this.value;
  }
}

/** A graph model as a frozen `tf.LayersModel` for trainDiff's teacher (module doc). */
export class GraphModelTeacher {
  readonly program: TfjsGraphProgram;
  readonly inputs: { shape: (number | null)[] }[];
  readonly outputs: { shape: (number | null)[] }[];
  readonly outputLayers: { getConfig(): { activation: string } }[];
  readonly trainableWeights: GraphTeacherWeight[] = [];
  readonly nonTrainableWeights: GraphTeacherWeight[];

  /**
   * @param model the loaded graph model (its weights become variables until {@link dispose}).
   * @param exampleShape the shape of one example of the base's input (without the batch), used to
   *   find the outputs' shapes when the graph does not declare them.
   * @throws UsageError when the graph has more than one input (a layers base feeds one).
   */
  constructor(model: tf.GraphModel, exampleShape: readonly number[], source = 'teacher') {
    if (model.inputs.length !== 1) {
      throw new UsageError(`the teacher ${source} takes ${model.inputs.length} inputs (${model.inputs.map((i) => i.name).join(', ')}); the base, a layers model, takes one: expected the new version of the base model`, { kind: 'inputs' });
    }
    this.program = new TfjsGraphProgram(model, tfModelStore(model), { source, trainable: () => false });
    const input = this.program.inputs[0];
    const declared = input.shape?.slice(1).map((d) => (typeof d === 'number' && d >= 0 ? d : null));
    this.inputs = [{ shape: [null, ...(declared && declared.every((d) => d !== null) ? declared : exampleShape)] }];
    // The outputs' shapes from one example of zeros (graphs seldom declare them).
    const probe = tf.tidy(() => {
      const outs = this.program.run({ [input.name]: tf.zeros([1, ...exampleShape]) });
      return this.program.outputs.map((o) => outs[o.name].shape.slice(1));
    });
    this.outputs = probe.map((s) => ({ shape: [null, ...s] }));
    this.outputLayers = this.program.outputs.map((o) => {
      const activation = this.program.outputOp(o.name) === 'Softmax' ? 'softmax' : 'linear';
      return { getConfig: () => ({ activation }) };
    });
    this.nonTrainableWeights = this.program.variables.map((v) => new GraphTeacherWeight(v.name, v.shape, v.variable));
  }

  /** This adapter where trainDiff takes a `tf.LayersModel`. */
  asLayersModel(): tf.LayersModel {
    return this as unknown as tf.LayersModel;
  }

  /** The teacher's outputs on `x` (one tensor, or one per output). */
  apply(x: tf.Tensor | tf.Tensor[], _kwargs?: unknown): tf.Tensor | tf.Tensor[] {
    const input = Array.isArray(x) ? x[0] : x;
    const outs = this.program.run({ [this.program.inputs[0].name]: input });
    const list = this.program.outputs.map((o) => outs[o.name]);
    return list.length === 1 ? list[0] : list;
  }

  /** The same as {@link apply}. */
  predict(x: tf.Tensor): tf.Tensor | tf.Tensor[] {
    return tf.tidy(() => this.apply(x));
  }

  /** Give the graph model its weights back as plain tensors. */
  dispose(): void {
    this.program.dispose();
  }
}
