/**
 * The weights of a tf.LayersModel by their manifest names (`originalName`, what model.json
 * calls them), never by the runtime variable `.name`, which tfjs renames (`kernel_1`) when a
 * model is loaded twice in one process.
 */
import * as tf from '@tensorflow/tfjs';
import { MemoryWeightStore } from '../core/weight-store.ts';

export interface NamedVariable {
  /** Manifest name. */
  name: string;
  shape: number[];
  /** The tf.Variable behind the layer weight. */
  variable: tf.Variable;
  trainable: boolean;
}

/** Every weight of the model (trainable first, in model order), by manifest name. */
export function namedVariables(model: tf.LayersModel): NamedVariable[] {
  const out: NamedVariable[] = [];
  for (const [list, trainable] of [[model.trainableWeights, true], [model.nonTrainableWeights, false]] as const) {
    for (const w of list) {
      // LayerVariable keeps its tf.Variable in `val`; read() returns it.
      const variable = (w as unknown as { read(): tf.Variable }).read();
      out.push({ name: w.originalName, shape: [...w.shape] as number[], variable, trainable });
    }
  }
  return out;
}

/** A snapshot of every float32 weight of the model, as a store (copies, not live). */
export function modelToStore(model: tf.LayersModel): MemoryWeightStore {
  return new MemoryWeightStore(
    namedVariables(model)
      .filter((v) => v.variable.dtype === 'float32')
      .map((v) => [v.name, { shape: v.shape, data: Float32Array.from(v.variable.dataSync() as Float32Array) }] as [string, { shape: number[]; data: Float32Array }]),
  );
}

/** Write named values into the model's variables (names not in `values` are left alone). */
export function setModelWeights(model: tf.LayersModel, values: ReadonlyMap<string, Float32Array> | ((name: string) => Float32Array | undefined)): void {
  const get = typeof values === 'function' ? values : (n: string) => values.get(n);
  for (const v of namedVariables(model)) {
    const data = get(v.name);
    if (data) tf.tidy(() => v.variable.assign(tf.tensor(data, v.shape, 'float32')));
  }
}
