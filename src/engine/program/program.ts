/**
 * A model graph as a differentiable tfjs program: what {@link ProgramTrainingModel}
 * (training-model.ts) needs of it to present it as the layers model the trainers take. Two kinds
 * implement it: an ONNX graph run by our own executor (`OnnxProgram`, src/engine/onnx/), and a
 * TF.js graph model run by tfjs' own graph executor (`TfjsGraphProgram`, src/engine/tfjs-graph/).
 * Either way the program's weights are tf.Variables named by the model's weight store, so a
 * diff trained on them is a diff of the file the existing applier patches.
 */
import * as tf from '@tensorflow/tfjs';
import type { StorageGrid } from '../../core/grid.ts';
import type { NamedVariable } from '../model-weights.ts';

/** A weight of a program: the weight store's name, the variable, and the grid the store keeps it on. */
export interface ProgramVariable extends NamedVariable {
  /** How the model file stores it (float32, float16, an integer grid). */
  grid: StorageGrid;
}

/** An input or output of a program. */
export interface ProgramTensorInfo {
  name: string;
  /** Declared dimensions: numbers, or a free dimension (`null`, `-1`, or a symbolic name). */
  shape?: readonly (number | string | null)[];
}

/**
 * What a program was built from, as plain data a worker thread receives (structured clone) to
 * build the same program again (src/engine/program/worker-rebuild.ts): the model file's bytes and
 * the options of its front. The weights' values are not part of it: the training pool sends
 * the parent's current values to every worker when a loop begins.
 */
export type ProgramRecipe =
  | { format: 'onnx'; bytes: Uint8Array; source: string; external: Map<string, Uint8Array>; fuse: boolean }
  | { format: 'tflite'; bytes: Uint8Array; source: string }
  /** A TF.js graph model: its artifacts as loaded (model.json's topology and signature, the weight specs and data), and its variables' names and shapes. */
  | { format: 'tfjs-graph'; artifacts: tf.io.ModelArtifacts; source: string; weights: [string, number[]][] };

/** A graph whose outputs tfjs can differentiate with respect to its weights (module doc). */
export interface TrainableProgram {
  /** Name for messages (a path). */
  readonly source: string;
  /** @internal How a worker thread builds this program again (absent: it cannot, and the program trains on one thread). */
  readonly recipe?: ProgramRecipe;
  /** The patchable weights as variables, by the store's names. */
  readonly variables: readonly ProgramVariable[];
  /** The inputs fed at each run. */
  readonly inputs: readonly ProgramTensorInfo[];
  /** The outputs, in the model's order. */
  readonly outputs: readonly ProgramTensorInfo[];
  /**
   * Evaluate the graph on `feeds` (one tensor per input, by name) and return its outputs by
   * name. Differentiable with respect to {@link variables} inside a gradient function.
   */
  run(feeds: Readonly<Record<string, tf.Tensor>>): Record<string, tf.Tensor>;
  /**
   * Whether an input of three axes per example is laid out channels first (`[C, H, W]`, as ONNX
   * models exported from PyTorch take images and spectrograms): augmentations see it channels last.
   */
  readonly channelsFirst?: boolean;
  /** The operator that computes `output`, looking through identities (`Softmax` tells probabilities). */
  outputOp(output: string): string | undefined;
  /**
   * Optional: refuse, before any training, a graph whose `output` tfjs cannot differentiate with
   * respect to the variables on `feeds` (one example), naming the operator and the node.
   */
  checkDifferentiable?(feeds: Readonly<Record<string, tf.Tensor>>, output: string): void;
  /** Free the variables and constants. */
  dispose(): void;
}

/** The store's name as the tfjs variable name when it is free, else with `_1`, `_2`, ... (tfjs needs unique names). */
export function uniqueVariableName(name: string): string {
  const taken = tf.engine().registeredVariables;
  let out = name;
  for (let k = 1; taken[out]; k++) out = `${name}_${k}`;
  return out;
}
