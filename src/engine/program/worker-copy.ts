/**
 * A graph program's training model as a training worker thread receives it
 * (src/train/parallel/): what built the program (its recipe: the model file's bytes and the
 * front's options), the first example's rows (the worker's copy probes the graph on it as the
 * parent's did: the output's width, which weights a gradient reaches), the inputs fed the same to
 * every example, how the output reads, and which weights the parent trains. The worker holds no
 * other example: each pooled step's shard carries the rows of every input of its examples
 * ({@link inputRowsOf}), so rows the parent writes during training (augmented batches) reach
 * the workers too, and integer inputs (token ids) cross as integers.
 *
 * A stateful sequence model is not packaged: its training frames start from the state each
 * sequence carried when it last ran in full, which the parent keeps and refreshes as the weights
 * move, so it trains on one thread.
 */
import { TrainingWorkerError } from '../../core/errors.ts';
import type { OutputKind as ProgramOutputKind } from './output-kind.ts';
import { gatherRows, type ProgramExamples, type ProgramInputValues } from './example-ids.ts';
import type { ProgramRecipe, TrainableProgram } from './program.ts';

/** A program's training model for a worker thread (module doc); plain data. */
export interface ProgramPackage {
  kind: 'program';
  recipe: ProgramRecipe;
  /** One example (the parent's first) and the inputs fed to every example. */
  examples: ProgramExamples;
  /** The output trained, and how it reads (as the parent resolved them). */
  output: string;
  outputKind: ProgramOutputKind;
  /** The weights the parent trains (its flags when the pool started), by the store's names. */
  trainable: string[];
}

/** What {@link programPackage} reads of a training model. */
export interface PackagedModel {
  readonly program: TrainableProgram;
  readonly examples: ProgramExamples;
  readonly output: string;
  readonly outputKind: ProgramOutputKind;
  readonly trainableWeights: readonly { originalName: string }[];
}

/**
 * The package a worker builds `model` again from (module doc).
 * @param stateInputs the inputs that carry state from frame to frame (none for a stateless graph).
 * @throws TrainingWorkerError when a worker cannot build it: the model carries state across
 *   frames, or its program has no recipe.
 */
export function programPackage(model: PackagedModel, stateInputs: readonly string[]): ProgramPackage {
  const { program, examples } = model;
  if (stateInputs.length) {
    throw new TrainingWorkerError(`${program.source} carries state from frame to frame (${stateInputs.join(', ')}): each training frame starts from the state its sequence carried, kept in this thread and refreshed as the weights change`, { states: [...stateInputs] });
  }
  const recipe = program.recipe;
  if (!recipe) throw new TrainingWorkerError(`${program.source}: a worker thread cannot build this program again (it was not made from a model file's bytes or artifacts the trainer kept)`, {});
  return {
    kind: 'program',
    recipe,
    examples: { count: 1, inputs: inputRowsOf(examples, [0]), ...(examples.shared ? { shared: examples.shared } : {}) },
    output: model.output,
    outputKind: model.outputKind,
    trainable: model.trainableWeights.map((w) => w.originalName),
  };
}

/**
 * The rows of every per-example input for the examples `ids` names (example ids as the trainers'
 * `x` holds them, float32), in that order, each input in its own element type.
 * @throws TrainingWorkerError for an id that names no example.
 */
export function inputRowsOf(examples: ProgramExamples, ids: ArrayLike<number>): Record<string, ProgramInputValues> {
  const rounded = Int32Array.from(ids, (id) => Math.round(id));
  const out: Record<string, ProgramInputValues> = {};
  for (const [name, v] of Object.entries(examples.inputs)) {
    const held = v.values.length / Math.max(1, v.shape.reduce((a, d) => a * d, 1));
    const bad = rounded.findIndex((id) => !(id >= 0 && id < held));
    if (bad >= 0) throw new TrainingWorkerError(`a training batch names example ${ids[bad]}, and input ${name} holds ${held} examples`, { input: name, id: ids[bad] });
    out[name] = { values: gatherRows(v, rounded), shape: v.shape.slice() };
  }
  return out;
}
