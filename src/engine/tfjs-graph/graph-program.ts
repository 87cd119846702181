/**
 * A TF.js graph model (`tf.GraphModel`: tensorflowjs_converter output, `"format": "graph-model"`,
 * what most published TF.js models are) as a differentiable program (src/engine/program/): tfjs'
 * own graph executor runs it, with the float weights of its weight map replaced by tf.Variables,
 * so a gradient of `model.execute` reaches them. The variables carry the folder's weight store
 * names (the manifest names, what the weight map is keyed by) and its grids (uint8/uint16 with
 * scale and min, float16), so a diff trained on them applies to the folder with the existing
 * applier and keeps quantized weights on their grids, as for layers models. Non-float tensors
 * (int32 shapes and axes, bool) stay constants: they are the graph's frame (`tfjs:frame`).
 *
 * Graph models whose inputs declare a batch of exactly 1 (MoveNet: `[1, 192, 192, 3]`) are run
 * one example at a time and their outputs stacked, since the graph's own shapes assume one.
 *
 * Before training, {@link TfjsGraphProgram.checkDifferentiable} refuses a graph tfjs cannot
 * differentiate, naming the operator and the node (gradient-probe.ts).
 */
import * as tf from '@tensorflow/tfjs';
import { DataError, ModelMismatchError, UsageError } from '../../core/errors.ts';
import type { StorageGrid } from '../../core/grid.ts';
import { isPatchable, type WeightStore } from '../../core/weight-store.ts';
import { uniqueVariableName, type ProgramRecipe, type ProgramTensorInfo, type ProgramVariable, type TrainableProgram } from '../program/program.ts';
import { registerGradientFixes } from '../kernels/gradients.ts';
import { graphOf, nodeNameOf, refuseUndifferentiable } from './gradient-probe.ts';
import { executeBounded } from './shape-guard.ts';

/** Options of {@link TfjsGraphProgram}. */
export interface TfjsGraphProgramOptions {
  /** Name for messages (a path). */
  source?: string;
  /** Which of the store's weights are trainable variables (default: all of them). */
  trainable?: (name: string) => boolean;
}

/** An input of a graph model: its name, declared shape and element type. */
export interface TfjsGraphInput extends ProgramTensorInfo {
  /** `float32`, `int32`, ... as the graph declares it (undefined when it does not). */
  dtype?: string;
}

interface ExecutorInternals {
  weightMap: Record<string, tf.Tensor[]>;
}

/** The graph executor of a loaded GraphModel (its weight map is where the weights live). */
function executorOf(model: tf.GraphModel, source: string): ExecutorInternals {
  const ex = (model as unknown as { executor?: ExecutorInternals }).executor;
  if (!ex || typeof ex.weightMap !== 'object') {
    throw new UsageError(`${source}: this GraphModel has no weight map (is it loaded? call tf.loadGraphModel first); tested with tfjs 4.22`);
  }
  return ex;
}

/**
 * A loaded `tf.GraphModel` as a {@link TrainableProgram} (module doc). Making it replaces the
 * model's float weights by variables holding the store's values; {@link dispose} puts plain
 * tensors of the variables' values back, so the model stays usable and holds what was trained
 * last (after `trainTfjsGraphDiff`: exactly base + payload).
 */
export class TfjsGraphProgram implements TrainableProgram {
  readonly model: tf.GraphModel;
  readonly source: string;
  readonly variables: ProgramVariable[] = [];
  readonly inputs: TfjsGraphInput[];
  readonly outputs: ProgramTensorInfo[];
  /** Inputs declared with a batch of exactly 1: the graph runs one example at a time. */
  readonly oneExampleAtATime: boolean;
  private disposed = false;

  /**
   * @param model a loaded graph model (`tf.loadGraphModel(fileSystemIO(dir))`).
   * @param store the weight store of the same folder (`openTfjsModelDir(dir)`): the names, values
   *   and grids payloads are built against.
   * @throws ModelMismatchError when the model's float weights are not the store's (names, shapes).
   */
  constructor(model: tf.GraphModel, store: WeightStore, options: TfjsGraphProgramOptions = {}) {
    this.model = model;
    this.source = options.source ?? 'graph model';
    // Gradients tfjs lacks (GatherNd) or gets wrong (SquaredDifference under broadcasting).
    registerGradientFixes();
    const ex = executorOf(model, this.source);
    const map = { ...ex.weightMap };
    const floats = Object.keys(map).filter((n) => map[n].length === 1 && map[n][0].dtype === 'float32');
    const patchable = store.list().filter(isPatchable);
    const known = new Set(patchable.map((t) => t.name));
    const missing = patchable.filter((t) => !map[t.name]).map((t) => t.name);
    const extra = floats.filter((n) => !known.has(n));
    const reshaped = patchable.filter((t) => map[t.name] && map[t.name][0].shape.join('x') !== t.shape.join('x')).map((t) => t.name);
    if (missing.length || extra.length || reshaped.length) {
      const list = (names: string[]) => names.slice(0, 3).map((n) => JSON.stringify(n)).join(', ') + (names.length > 3 ? ` and ${names.length - 3} more` : '');
      throw new ModelMismatchError(
        `${this.source}: the graph model does not hold the weights of the folder it was given (${[missing.length ? `missing ${list(missing)}` : '', extra.length ? `not in the folder: ${list(extra)}` : '', reshaped.length ? `another shape: ${list(reshaped)}` : ''].filter(Boolean).join('; ')}): load the model from the same folder as the store`,
        { missing, extra, reshaped },
      );
    }
    const trainable = options.trainable ?? (() => true);
    const old: tf.Tensor[] = [];
    try {
      for (const t of patchable) {
        const init = tf.tensor(store.values(t.name), t.shape as number[], 'float32');
        const variable = tf.variable(init, trainable(t.name), uniqueVariableName(t.name));
        init.dispose(); // the variable keeps the data
        this.variables.push({ name: t.name, shape: t.shape.slice(), variable, trainable: trainable(t.name), grid: (store.grid?.(t.name) ?? { dtype: 'float32' }) as StorageGrid });
        old.push(...map[t.name]);
        map[t.name] = [variable];
      }
    } catch (e) {
      for (const v of this.variables) v.variable.dispose();
      throw e;
    }
    ex.weightMap = map; // the setter also updates the ids the executor must never dispose
    for (const t of old) t.dispose();
    this.inputs = model.inputs.map((i) => ({ name: i.name, ...(i.shape ? { shape: i.shape } : {}), ...(i.dtype ? { dtype: i.dtype } : {}) }));
    this.outputs = model.outputs.map((o) => ({ name: o.name, ...(o.shape ? { shape: o.shape } : {}) }));
    this.oneExampleAtATime = this.inputs.some((i) => i.shape?.[0] === 1);
  }

  /**
   * Evaluate the graph on `feeds` (one tensor per input, by name; cast to the input's declared
   * type) and return every output by name. Differentiable with respect to {@link variables}.
   * @throws DataError when an input is missing.
   */
  run(feeds: Readonly<Record<string, tf.Tensor>>): Record<string, tf.Tensor> {
    const named: Record<string, tf.Tensor> = {};
    for (const i of this.inputs) {
      const t = feeds[i.name];
      if (!t) throw new DataError(`${this.source}: no value for input ${JSON.stringify(i.name)}; the model's inputs are ${this.inputs.map((x) => `${x.name} [${(x.shape ?? []).join(', ')}]`).join(', ')}`, { input: i.name });
      named[i.name] = i.dtype && i.dtype !== t.dtype && i.dtype !== 'string' ? tf.cast(t, i.dtype as tf.DataType) : t;
    }
    const names = this.outputs.map((o) => o.name);
    const batch = this.inputs.length ? (named[this.inputs[0].name].shape[0] ?? 1) : 1;
    let outs: tf.Tensor[];
    if (this.oneExampleAtATime && batch > 1) {
      // The graph's shapes assume one example: run each and stack the outputs.
      const rows: tf.Tensor[][] = [];
      for (let r = 0; r < batch; r++) {
        const one: Record<string, tf.Tensor> = {};
        for (const i of this.inputs) {
          const t = named[i.name];
          one[i.name] = i.shape?.[0] === 1 && t.shape[0] === batch ? tf.slice(t, r, 1) : t;
        }
        rows.push(this.execute(one, names));
      }
      outs = names.map((_, k) => tf.concat(rows.map((row) => row[k]), 0));
    } else outs = this.execute(named, names);
    const result: Record<string, tf.Tensor> = {};
    names.forEach((n, k) => (result[n] = outs[k]));
    return result;
  }

  /**
   * @internal The artifacts the model was loaded from and the variables' names and shapes (a training
   * worker loads the model again from them); absent when tfjs kept no artifacts.
   */
  get recipe(): ProgramRecipe | undefined {
    const loaded = (this.model as unknown as { artifacts?: tf.io.ModelArtifacts }).artifacts;
    if (!loaded?.modelTopology || !loaded.weightSpecs) return undefined;
    // Plain data only (a streamed load's weight reader is a function, and its weights are not kept).
    const { getWeightStream: _g, ...artifacts } = loaded;
    if (artifacts.weightData === undefined) return undefined;
    return { format: 'tfjs-graph', artifacts, source: this.source, weights: this.variables.map((v) => [v.name, v.shape.slice()]) };
  }

  /** The operator that computes `output`, looking through Identity nodes. */
  outputOp(output: string): string | undefined {
    const nodes = graphOf(this.model).nodes;
    let node = nodes[nodeNameOf(output)];
    for (let hops = 0; node && hops < 16; hops++) {
      if (node.op !== 'Identity') return node.op;
      node = node.inputs[0];
    }
    return undefined;
  }

  /**
   * Refuse the graph when tfjs cannot differentiate `output` with respect to the variables on
   * `feeds` (one example): see gradient-probe.ts.
   * @throws UnsupportedOperatorError naming the operator, the node and the tfjs kernel.
   */
  checkDifferentiable(feeds: Readonly<Record<string, tf.Tensor>>, output: string): void {
    refuseUndifferentiable(this, feeds, output);
  }

  /** Give the model plain tensors of the variables' current values again, and free the variables. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const ex = (this.model as unknown as { executor?: ExecutorInternals }).executor;
    if (ex?.weightMap) {
      const map = { ...ex.weightMap };
      for (const v of this.variables) if (map[v.name]?.[0] === v.variable) map[v.name] = [tf.clone(v.variable)];
      ex.weightMap = map;
    }
    for (const v of this.variables) v.variable.dispose();
  }

  /** The graph on `feeds`, the shapes its constants ask for bounded (shape-guard.ts). */
  private execute(feeds: Record<string, tf.Tensor>, names: string[]): tf.Tensor[] {
    return executeBounded(this.model, feeds, names, this.source);
  }
}
