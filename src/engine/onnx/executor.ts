/**
 * An ONNX graph as a differentiable tfjs program: one dispatch loop over the graph's nodes in
 * file order (ONNX requires a topological order), each node evaluated by its operator's function
 * (ops/). The weights the ONNX weight store can patch (FLOAT, FLOAT16, BFLOAT16 initializers and
 * `Constant` values, in subgraphs too, and int8/uint8 weights of `DequantizeLinear` nodes) are
 * tf.Variables, listed by the store's name for them, so a diff trained on them applies to the
 * `.onnx` file with the existing applier; every other tensor is a constant. Operators are checked
 * when the program is made: one the executor does not implement is refused before anything runs.
 */
import * as tf from '@tensorflow/tfjs';
import { DataError, NeuralDiffError, UnsupportedOperatorError } from '../../core/errors.ts';
import { OnnxWeightStore, scanOnnxModel } from '../../io/onnx/store.ts';
import type { StorageGrid } from '../../core/grid.ts';
import type { NamedVariable } from '../model-weights.ts';
import { uniqueVariableName, type ProgramRecipe, type TrainableProgram } from '../program/program.ts';
import { DerivedShapeBound } from '../program/shape-bound.ts';
import { decodeOnnxModel, type ExternalFiles, type OnnxGraph, type OnnxModel, type OnnxNode, type OnnxTensor, type OnnxValueInfo } from './model.ts';
import { gelu, layerNormalize } from '../kernels/transformer.ts';
import { fusionPlan } from './fuse.ts';
import { OPERATORS } from './ops/index.ts';
import { tensorOf, tfDtype, type OpArgs } from './ops/op.ts';

/** Options of {@link OnnxProgram}. */
export interface OnnxProgramOptions {
  /** The bytes of the model's external data files, by `location`. */
  external?: ExternalFiles | Readonly<Record<string, Uint8Array>>;
  /** Name for error messages (a path). */
  source?: string;
  /** Which of the store's weights are trainable variables (default: all of them). */
  trainable?: (name: string) => boolean;
  /**
   * Run the chains fuse.ts recognises (a LayerNorm's decomposed normalisation, the exact GELU) as
   * one fused op each (default true); false runs every node as it is written (for comparisons).
   */
  fuse?: boolean;
}

/** A weight of an {@link OnnxProgram}: the store's name, the variable, and the grid the store keeps it on. */
export interface OnnxVariable extends NamedVariable {
  /** How the `.onnx` file stores it (float32, float16, bfloat16, or an int8/uint8 grid). */
  grid: StorageGrid;
}

/** A node the executor cannot run, as {@link unsupportedNodes} lists it. */
export interface UnsupportedNode {
  op: string;
  domain: string;
  node: string;
  opset: number;
}

/** Every node of the model (subgraphs included) whose operator the executor does not implement. */
export function unsupportedNodes(model: OnnxModel): UnsupportedNode[] {
  const out: UnsupportedNode[] = [];
  const walk = (g: OnnxGraph) => {
    for (const n of g.nodes) {
      const known = n.domain === '' && (n.opType === 'Constant' || Object.hasOwn(OPERATORS, n.opType));
      if (!known) out.push({ op: n.opType, domain: n.domain, node: g.prefix + n.key, opset: model.opsets.get(n.domain) ?? 0 });
      for (const a of n.attributes.values()) {
        if (a.g) walk(a.g);
        a.graphs?.forEach(walk);
      }
    }
  };
  walk(model.graph);
  return out;
}

/** The operators the executor implements (default domain), sorted. */
export function supportedOperators(): string[] {
  return ['Constant', ...Object.keys(OPERATORS)].sort();
}

/** Values visible while a graph runs: its own, then those of the graphs around it. */
class Scope {
  private readonly values = new Map<string, tf.Tensor>();
  constructor(private readonly up?: Scope) {}
  get(name: string): tf.Tensor | undefined {
    return this.values.get(name) ?? this.up?.get(name);
  }
  set(name: string, t: tf.Tensor): void {
    this.values.set(name, t);
  }
}

/**
 * An ONNX model as a tfjs program (module doc). Run it with {@link run} inside `tf.tidy` or a
 * gradient function (`tf.variableGrads`); its weights are {@link variables}; {@link dispose}
 * frees them.
 */
export class OnnxProgram implements TrainableProgram {
  /** The decoded model. */
  readonly model: OnnxModel;
  /** The patchable weights as variables, by the ONNX weight store's names, in file order. */
  readonly variables: OnnxVariable[] = [];
  /** The graph's inputs that are fed (those that are not initializers). */
  readonly inputs: OnnxValueInfo[];
  /** The graph's outputs. */
  readonly outputs: OnnxValueInfo[];
  readonly source: string;
  /** @internal The bytes and options this program was built from (a training worker builds it again). */
  readonly recipe: ProgramRecipe;
  /** ONNX's convention (PyTorch's export): images and spectrograms as `[C, H, W]` per example. */
  readonly channelsFirst = true;
  /** A tensor of the file by its decoded record (constants and variables, made once). */
  private readonly stored = new Map<OnnxTensor, tf.Tensor>();
  /** ONNX data types of named stored values and graph inputs (for operators that need them). */
  private readonly dataTypes = new Map<string, number>();
  /** Variables holding int8/uint8 weights dequantized (their DequantizeLinear passes them through). */
  private readonly dequantized = new Set<tf.Tensor>();
  private readonly persistent = new Set<tf.Tensor>();
  /** The bound on shapes derived from the model's values, for the run under way (set by {@link run}). */
  private shapeBound?: DerivedShapeBound;
  /** Whether chains fuse.ts recognises run fused ({@link OnnxProgramOptions.fuse}). */
  private readonly fuse: boolean;

  /**
   * @param bytes the `.onnx` file (read, never changed).
   * @throws UnsupportedOperatorError when a node's operator is not implemented (naming it, the
   *   node and the opset); ModelFormatError when the bytes are not a well-formed ONNX model.
   */
  constructor(bytes: Uint8Array, options: OnnxProgramOptions = {}) {
    this.source = options.source ?? 'ONNX model';
    this.fuse = options.fuse ?? true;
    const ext = options.external;
    const external: Map<string, Uint8Array> = new Map(ext instanceof Map ? ext : Object.entries((ext ?? {}) as Record<string, Uint8Array>));
    this.model = decodeOnnxModel(bytes, { external, source: this.source });
    this.recipe = { format: 'onnx', bytes, source: this.source, external, fuse: this.fuse };
    const missing = unsupportedNodes(this.model);
    if (missing.length) {
      const ops = [...new Set(missing.map((m) => (m.domain ? `${m.domain}:${m.op}` : m.op)))];
      const first = missing[0];
      throw new UnsupportedOperatorError(
        `${this.source}: operator ${first.domain ? `${first.domain}:` : ''}${first.op} (node ${JSON.stringify(first.node)}, opset ${first.opset}) is not implemented by the trainer's ONNX executor` +
          `${missing.length > 1 ? `; ${missing.length} nodes in all use unimplemented operators (${ops.join(', ')})` : ''}. Nothing ran. ` +
          `Implemented: ${supportedOperators().join(', ')}. Re-export the model with implemented operators, or ship its updates post hoc (ndiff diff)`,
        { op: first.op, node: first.node, domain: first.domain, opset: first.opset, ops, nodes: missing.length },
      );
    }
    const fed = new Set(this.model.graph.initializers.map((t) => t.name));
    this.inputs = this.model.graph.inputs.filter((i) => !fed.has(i.name));
    this.outputs = this.model.graph.outputs;
    for (const i of this.model.graph.inputs) this.dataTypes.set(i.name, i.dataType);

    // The store's patchable weights, found by where their values start in the file.
    const store = new OnnxWeightStore(bytes, { external, source: this.source });
    const patchable = new Set(store.weights().map((w) => w.name));
    const byPlace = new Map<string, string>();
    for (const rec of scanOnnxModel(bytes, { externalSize: (loc) => external.get(loc)?.length }).tensors) {
      if (patchable.has(rec.name) && rec.ranges.length) byPlace.set(`${rec.external ?? ''}@${rec.ranges[0]}`, rec.name);
    }
    const trainable = options.trainable ?? (() => true);
    const make = (t: OnnxTensor): tf.Tensor => {
      const name = t.at === undefined ? undefined : byPlace.get(t.at);
      let out: tf.Tensor;
      if (name !== undefined) {
        const grid = store.grid(name) as StorageGrid;
        const values = Float32Array.from(store.values(name));
        const variable = tf.variable(tf.tensor(values, t.dims, 'float32'), trainable(name), uniqueVariableName(name));
        this.variables.push({ name, shape: t.dims.slice(), variable, trainable: trainable(name), grid });
        if (grid.dtype === 'qint8' || grid.dtype === 'quint8') this.dequantized.add(variable);
        out = variable;
      } else {
        const dtype = tfDtype(t.dataType);
        if (!dtype || dtype === 'string') out = tf.tensor(t.values as string[], t.dims, 'string');
        else out = tensorOf(t.values as Float64Array, t.dims, dtype);
      }
      this.persistent.add(out);
      return out;
    };
    const walk = (g: OnnxGraph) => {
      for (const t of g.initializers) {
        this.stored.set(t, make(t));
        this.dataTypes.set(t.name, t.dataType);
      }
      for (const n of g.nodes) {
        if (n.opType === 'Constant') {
          const t = constantTensor(n);
          if (t) {
            this.stored.set(t, make(t));
            this.dataTypes.set(n.outputs[0], t.dataType);
          }
        }
        for (const a of n.attributes.values()) {
          if (a.g) walk(a.g);
          a.graphs?.forEach(walk);
        }
      }
    };
    walk(this.model.graph);
  }

  /**
   * Evaluate the graph on `feeds` (one tensor per {@link inputs} entry, by name; integer inputs as
   * int32) and return its outputs by name. Differentiable with respect to {@link variables};
   * call it inside `tf.tidy` or a gradient function, which free the intermediate tensors.
   * @throws DataError when an input is missing.
   */
  run(feeds: Readonly<Record<string, tf.Tensor>>): Record<string, tf.Tensor> {
    for (const i of this.inputs) {
      if (!feeds[i.name]) {
        throw new DataError(`${this.source}: no value for input ${JSON.stringify(i.name)}; the model's inputs are ${this.inputs.map((x) => `${x.name} [${(x.shape ?? []).join(', ')}]`).join(', ')}`, { input: i.name });
      }
    }
    const top = this.model.graph;
    this.shapeBound = DerivedShapeBound.of(this.source, top.inputs.map((i) => feeds[i.name]?.shape ?? []));
    const outs = this.runGraph(top, top.inputs.map((i) => feeds[i.name]), undefined);
    const result: Record<string, tf.Tensor> = {};
    top.outputs.forEach((o, k) => (result[o.name] = this.persistent.has(outs[k]) ? outs[k].clone() : outs[k]));
    return result;
  }

  /** The operator that computes `output` (through Identity nodes, and an If's then-branch). */
  outputOp(output: string): string | undefined {
    let g = this.model.graph;
    let name = output;
    for (let hops = 0; hops < 16; hops++) {
      const n = g.nodes.find((x) => x.outputs.includes(name));
      if (!n) return undefined;
      if (n.opType === 'Identity') name = n.inputs[0];
      else if (n.opType === 'If') {
        const branch = n.attributes.get('then_branch')?.g;
        if (!branch) return 'If';
        name = branch.outputs[n.outputs.indexOf(name)]?.name ?? '';
        g = branch;
      } else return n.opType;
    }
    return undefined;
  }

  /** The trainable variables' current values, by the store's names. */
  weightValues(): Map<string, Float32Array> {
    return new Map(this.variables.map((v) => [v.name, v.variable.dataSync() as Float32Array]));
  }

  /** Free the variables and constants. */
  dispose(): void {
    for (const t of this.persistent) t.dispose();
    this.persistent.clear();
  }

  private runGraph(g: OnnxGraph, feeds: (tf.Tensor | undefined)[], up: Scope | undefined): tf.Tensor[] {
    const scope = new Scope(up);
    g.inputs.forEach((i, k) => feeds[k] && scope.set(i.name, feeds[k] as tf.Tensor));
    // An initializer named like a graph input is that input's default (older IR versions).
    const fed = new Set(g.inputs.filter((_, k) => feeds[k]).map((i) => i.name));
    for (const t of g.initializers) if (!fed.has(t.name)) scope.set(t.name, this.stored.get(t) as tf.Tensor);
    const opset = this.model.opsets.get('') ?? 1;
    const plan = this.fuse ? fusionPlan(g, constantNumber) : undefined;
    const skipped = new Set<number>();
    for (let at = 0; at < g.nodes.length; at++) {
      const node = g.nodes[at];
      if (skipped.has(at)) continue;
      const chain = plan?.get(at);
      if (chain) {
        const x = scope.get(chain.input);
        if (!x) throw new NeuralDiffError('ND_ONNX_EXECUTION', `${this.source}: node ${JSON.stringify(g.prefix + node.key)} (${node.opType}) reads ${JSON.stringify(chain.input)}, which no earlier node, input or initializer defines`, { node: g.prefix + node.key });
        scope.set(chain.output, chain.kind === 'layer-norm' ? layerNormalize(x, chain.epsilon) : gelu(x));
        chain.skip.forEach((i) => skipped.add(i));
        continue;
      }
      if (node.opType === 'Constant') {
        const t = constantTensor(node);
        if (!t) throw new UnsupportedOperatorError(`${this.source}: Constant node ${JSON.stringify(g.prefix + node.key)} holds a sparse or empty value, which the executor does not read`, { op: 'Constant', node: g.prefix + node.key, opset });
        scope.set(node.outputs[0], this.stored.get(t) as tf.Tensor);
        continue;
      }
      const inputs = node.inputs.map((name) => {
        if (!name) return undefined;
        const t = scope.get(name);
        if (!t) throw new NeuralDiffError('ND_ONNX_EXECUTION', `${this.source}: node ${JSON.stringify(g.prefix + node.key)} (${node.opType}) reads ${JSON.stringify(name)}, which no earlier node, input or initializer defines`, { node: g.prefix + node.key });
        return t;
      });
      const args: OpArgs = {
        node: { ...node, key: g.prefix + node.key } as OnnxNode,
        opset,
        inputs,
        dataType: (i) => this.dataTypes.get(node.inputs[i] ?? ''),
        runGraph: (sub, subFeeds) => this.runGraph(sub, subFeeds, scope),
        isDequantizedWeight: (i) => !!inputs[i] && this.dequantized.has(inputs[i] as tf.Tensor),
        constant: (t) => this.stored.get(t) ?? tensorOf(t.values as Float64Array, t.dims, tfDtype(t.dataType) ?? 'float32'),
        bound: (shape, inferred) => (this.shapeBound ??= DerivedShapeBound.of(this.source, [])).check(shape, `node ${JSON.stringify(g.prefix + node.key)} (${node.opType})`, inferred),
      };
      let outs: (tf.Tensor | undefined)[];
      try {
        outs = OPERATORS[node.opType](args);
      } catch (e) {
        if (e instanceof NeuralDiffError) throw e;
        throw new NeuralDiffError('ND_ONNX_EXECUTION', `${this.source}: node ${JSON.stringify(g.prefix + node.key)} (${node.opType}, opset ${opset}) failed: ${(e as Error).message}`, { node: g.prefix + node.key, op: node.opType });
      }
      node.outputs.forEach((name, k) => {
        const t = outs[k];
        if (name && t) scope.set(name, t);
      });
      // Element types a later node may need beyond the tfjs dtype (a zero point's UINT8 or INT8).
      const type = node.opType === 'Cast' ? node.attributes.get('to')?.i : node.opType === 'CastLike' ? args.dataType(1) : node.opType === 'QuantizeLinear' ? (args.dataType(2) ?? 2) : undefined;
      if (type !== undefined && node.outputs[0]) this.dataTypes.set(node.outputs[0], type);
    }
    return g.outputs.map((o) => {
      const t = scope.get(o.name);
      if (!t) throw new NeuralDiffError('ND_ONNX_EXECUTION', `${this.source}: graph output ${JSON.stringify(o.name)} is never computed`, { output: o.name });
      return t;
    });
  }
}

/** The value of a one-element numeric `Constant` node (what fuse.ts compares with), else undefined. */
function constantNumber(n: OnnxNode): number | undefined {
  const t = constantTensor(n);
  return t && t.values.length === 1 && typeof t.values[0] === 'number' ? t.values[0] : undefined;
}

/** The value of a `Constant` node as a decoded tensor (value, value_float(s), value_int(s), value_string(s)). */
function constantTensor(n: OnnxNode): OnnxTensor | undefined {
  const cached = constantCache.get(n);
  if (cached !== undefined) return cached ?? undefined;
  let t: OnnxTensor | undefined;
  for (const a of n.attributes.values()) {
    if (a.t) t = a.t;
    else if (a.name === 'value_int') t = { name: n.outputs[0], dataType: 7, dims: [], values: Float64Array.of(a.i ?? 0) };
    else if (a.name === 'value_ints') t = { name: n.outputs[0], dataType: 7, dims: [a.ints?.length ?? 0], values: Float64Array.from(a.ints ?? []) };
    else if (a.name === 'value_string') t = { name: n.outputs[0], dataType: 8, dims: [], values: [a.s ?? ''] };
    else if (a.name === 'value_strings') t = { name: n.outputs[0], dataType: 8, dims: [a.strings?.length ?? 0], values: a.strings ?? [] };
  }
  constantCache.set(n, t ?? null);
  return t;
}

const constantCache = new WeakMap<OnnxNode, OnnxTensor | null>();
