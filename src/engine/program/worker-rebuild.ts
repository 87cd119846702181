/**
 * A training worker thread's copy of a graph program's training model (src/train/parallel/
 * worker.ts), built from the package the parent sent (worker-copy.ts): the program made again
 * from its recipe as its front made it, wrapped as the parent wraps it (ProgramTrainingModel),
 * with the parent's trainable weights, so the pool finds the same weights under the same names.
 * The weights' values come from the parent when each training loop begins.
 */
import * as tf from '@tensorflow/tfjs';
import { MemoryWeightStore } from '../../core/weight-store.ts';
import type { ProgramRecipe, TrainableProgram } from './program.ts';
import { ProgramTrainingModel } from './training-model.ts';
import type { ProgramPackage } from './worker-copy.ts';

/** The program of `recipe`, made as its front made it. */
async function programFrom(recipe: ProgramRecipe): Promise<TrainableProgram> {
  if (recipe.format === 'onnx') {
    const { OnnxProgram } = await import('../onnx/executor.ts');
    return new OnnxProgram(recipe.bytes, { source: recipe.source, external: recipe.external, fuse: recipe.fuse });
  }
  if (recipe.format === 'tflite') {
    const { TfliteProgram } = await import('../tflite/program.ts');
    return new TfliteProgram(recipe.bytes, { source: recipe.source });
  }
  const { TfjsGraphProgram } = await import('../tfjs-graph/graph-program.ts');
  const model = await tf.loadGraphModel(tf.io.fromMemory(recipe.artifacts));
  // The store the parent's program was made from lists these weights; their values as the model holds them.
  const decoded = tf.io.decodeWeights(recipe.artifacts.weightData as tf.io.WeightData, recipe.artifacts.weightSpecs ?? []);
  try {
    const store = new MemoryWeightStore(recipe.weights.map(([name, shape]) => [name, { shape, data: Float32Array.from(decoded[name].dataSync() as Float32Array) }]));
    return new TfjsGraphProgram(model, store, { source: recipe.source });
  } finally {
    tf.dispose(decoded);
  }
}

/**
 * The parent's training model built again in this thread (module doc), as the `tf.LayersModel`
 * the shard steps take.
 */
export async function programModelFrom(pkg: ProgramPackage): Promise<tf.LayersModel> {
  const program = await programFrom(pkg.recipe);
  let model: ProgramTrainingModel;
  try {
    model = new ProgramTrainingModel(program, pkg.examples, { output: pkg.output, outputKind: pkg.outputKind });
  } catch (e) {
    program.dispose();
    throw e;
  }
  const trainable = new Set(pkg.trainable);
  for (const w of [...model.trainableWeights, ...model.nonTrainableWeights]) w.trainable = trainable.has(w.originalName);
  return model.asLayersModel();
}
