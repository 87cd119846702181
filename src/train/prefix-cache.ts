/**
 * Caching what a diff never changes: when the first layers of a model hold no weight the run
 * trains (frozen by the model's config or by `trainable`), their output is the same for an
 * example in every epoch and every run of a training job. It is computed once per example, kept
 * in the backend's memory, and the training steps run the model from that point on.
 *
 * The layers run in inference mode (dropout off, BatchNorm on its moving statistics) and the
 * trainer feeds no augmentation, so a cached activation is exactly what the prefix would compute
 * again. The forward pass from the cut calls each layer as tfjs's own graph executor does
 * (`layer.apply` on concrete tensors, in the model's topological order), so a step computes the
 * same numbers with or without the cache (test/prefix-cache.test.ts holds the payload bytes to
 * that).
 *
 * Only a cut that every path from the input goes through counts: a single tensor, the output of
 * one layer, that the layers after it (and the model's outputs) are the only consumers of. Models
 * with several inputs, layers called more than once (shared layers) or masks are left uncached.
 */
import * as tf from '@tensorflow/tfjs';
import { UsageError } from '../core/errors.ts';
import { formatBytes } from '../diff/budget.ts';
import type { LabelledData } from './data.ts';

/** The parts of tfjs-layers' graph classes the executor here reads. */
interface SymbolicLike {
  readonly id: number;
  readonly shape: (number | null)[];
}
interface NodeLike {
  readonly inputTensors: SymbolicLike[];
  readonly outputTensors: SymbolicLike[];
  readonly inputMasks?: (tf.Tensor | null)[];
}
interface LayerLike {
  readonly name: string;
  readonly inboundNodes: NodeLike[];
  readonly weights: { originalName: string }[];
  readonly supportsMasking?: boolean;
  apply(inputs: tf.Tensor | tf.Tensor[], kwargs?: Record<string, unknown>): tf.Tensor | tf.Tensor[];
  getClassName(): string;
}
interface GraphLike {
  readonly layers: LayerLike[];
  readonly inputs: SymbolicLike[];
  readonly outputs: SymbolicLike[];
  readonly containerNodes?: Set<string>;
}

/** One layer call of the model's graph, in execution order. */
interface Step {
  layer: LayerLike;
  node: NodeLike;
}

/** Where the frozen prefix ends and what it saves. */
export interface PrefixPlan {
  /** The layer whose output is cached. */
  cut: string;
  /** Layers computed once per example (the cut included), and the model's layer count. */
  layers: number;
  of: number;
  /** Shape of the cached activation of one example. */
  exampleShape: number[];
}

/** Why a model's steps run whole (no cut found), for the progress line. */
export interface NoPrefix {
  reason: string;
}

/**
 * The graph that runs the model: a Sequential model runs an inner functional model, which tfjs
 * builds on the Sequential's first call (built here when it has not run yet).
 */
function graphOf(model: tf.LayersModel): GraphLike {
  if (!(model instanceof tf.Sequential)) return model as unknown as GraphLike;
  const seq = model as unknown as { model?: GraphLike; build(): void };
  if (!seq.model) seq.build();
  return seq.model as GraphLike;
}

/** The model's layer calls in topological order (tfjs keeps `layers` sorted so), or why not. */
function stepsOf(graph: GraphLike): Step[] | NoPrefix {
  const steps: Step[] = [];
  if (!Array.isArray(graph.layers) || !Array.isArray(graph.inputs)) return { reason: 'the model is not a graph of layers' };
  for (const layer of graph.layers) {
    // Graph programs (ONNX, LiteRT, TF.js graph models) train through a model of their own kind.
    if (typeof layer.getClassName !== 'function' || !Array.isArray(layer.inboundNodes)) return { reason: 'the model is not a graph of layers' };
    if (layer.getClassName() === 'InputLayer') continue;
    // A layer may have nodes in other graphs (a nested model's own node); keep this graph's.
    const own = layer.inboundNodes.filter((_, i) => graph.containerNodes === undefined || graph.containerNodes.has(`${layer.name}_ib-${i}`));
    if (own.length !== 1) return { reason: `layer ${layer.name} is called ${own.length} times in the model (a shared layer)` };
    steps.push({ layer, node: own[0] });
  }
  return steps;
}

const stepsByModel = new WeakMap<tf.LayersModel, { graph: GraphLike; steps: Step[] | NoPrefix }>();

/** The model's graph and layer calls, worked out once per model. */
function graphSteps(model: tf.LayersModel): { graph: GraphLike; steps: Step[] | NoPrefix } {
  let g = stepsByModel.get(model);
  if (!g) {
    const graph = graphOf(model);
    g = { graph, steps: stepsOf(graph) };
    stepsByModel.set(model, g);
  }
  return g;
}

/**
 * The deepest cut before the first layer that holds a trained weight, or why there is none.
 * `trained` holds manifest names.
 */
export function planFrozenPrefix(model: tf.LayersModel, trained: ReadonlySet<string>): PrefixPlan | NoPrefix {
  const { graph, steps } = graphSteps(model);
  if (graph.inputs.length !== 1) return { reason: `the model has ${graph.inputs.length} inputs` };
  if (!Array.isArray(steps)) return steps;
  const firstTrained = steps.findIndex((s) => s.layer.weights.some((w) => trained.has(w.originalName)));
  const frozen = firstTrained < 0 ? steps.length : firstTrained;
  // A tensor produced at step i is live after step k when a later step or the model's output reads it.
  const lastUse = new Map<number, number>();
  steps.forEach((s, i) => s.node.inputTensors.forEach((t) => lastUse.set(t.id, i)));
  for (const t of graph.outputs) lastUse.set(t.id, steps.length);
  for (let k = Math.min(frozen, steps.length - 1) - 1; k >= 0; k--) {
    const out = steps[k].node.outputTensors;
    if (out.length !== 1) continue;
    // Every tensor made by steps 0..k (and the input) must be dead after k, but for the cut itself.
    let single = true;
    const made = [graph.inputs[0], ...steps.slice(0, k + 1).flatMap((s) => s.node.outputTensors)];
    for (const t of made) if (t.id !== out[0].id && (lastUse.get(t.id) ?? -1) > k) single = false;
    if (!single) continue;
    if (steps.slice(0, k + 1).some((s) => s.node.inputMasks?.some((m) => m) || s.layer.getClassName() === 'Masking')) return { reason: 'the frozen layers compute masks' };
    const shape = out[0].shape.slice(1);
    if (shape.some((d) => d === null)) continue;
    return { cut: steps[k].layer.name, layers: k + 1, of: steps.length, exampleShape: shape as number[] };
  }
  return { reason: frozen === 0 ? 'the first layer trains' : 'no single tensor joins the frozen layers to the rest' };
}

/** Run the graph's steps `from..to` (indices) on `feeds` (symbolic id → value); returns the values of `fetch`. */
function run(steps: Step[], from: number, to: number, feeds: Map<number, tf.Tensor>, fetch: SymbolicLike[]): tf.Tensor[] {
  const values = new Map(feeds);
  for (let i = from; i < to; i++) {
    const { layer, node } = steps[i];
    const inputs = node.inputTensors.map((t) => {
      const v = values.get(t.id);
      if (!v) throw new Error(`the training graph reached layer ${layer.name} before its input ${t.id}`);
      return v;
    });
    const out = layer.apply(inputs.length === 1 ? inputs[0] : inputs, { training: false });
    const outs = Array.isArray(out) ? out : [out];
    node.outputTensors.forEach((t, j) => values.set(t.id, outs[j]));
  }
  return fetch.map((t) => values.get(t.id) as tf.Tensor);
}

/**
 * The cached activations of a frozen prefix, per data set, and the forward pass from the cut.
 * Owned by one training job; {@link dispose} frees the cached tensors.
 */
export class FrozenPrefixCache {
  private readonly steps: Step[];
  private readonly cutIndex: number;
  private readonly graph: GraphLike;
  private readonly cached = new Map<LabelledData, tf.Tensor>();
  private bytesHeld = 0;

  constructor(model: tf.LayersModel, readonly plan: PrefixPlan, readonly maxBytes: number) {
    const { graph, steps } = graphSteps(model);
    this.graph = graph;
    this.steps = steps as Step[];
    this.cutIndex = this.steps.findIndex((s) => s.layer.name === plan.cut);
  }

  /** Bytes one data set's activations take. */
  bytesFor(examples: number): number {
    return examples * this.plan.exampleShape.reduce((a, b) => a * b, 1) * 4;
  }

  /** Bytes held by the cached activations now. */
  get bytes(): number {
    return this.bytesHeld;
  }

  /**
   * `data` with the cut's activations as inputs (computed on first use, in batches of
   * `batchSize`), or undefined when they would take the cache past its memory bound.
   */
  inputsFor(data: LabelledData, batchSize: number): LabelledData | undefined {
    let x = this.cached.get(data);
    if (!x) {
      const n = data.x.shape[0];
      if (this.bytesHeld + this.bytesFor(n) > this.maxBytes) return undefined;
      const cut = this.steps[this.cutIndex].node.outputTensors[0];
      const parts: tf.Tensor[] = [];
      for (let start = 0; start < n; start += batchSize) {
        parts.push(tf.tidy(() => {
          const xb = tf.slice(data.x, start, Math.min(batchSize, n - start));
          return run(this.steps, 0, this.cutIndex + 1, new Map([[this.graph.inputs[0].id, xb]]), [cut])[0];
        }));
      }
      x = parts.length === 1 ? parts[0] : tf.concat(parts, 0);
      if (parts.length > 1) tf.dispose(parts);
      this.cached.set(data, x);
      this.bytesHeld += this.bytesFor(n);
    }
    return { ...data, x };
  }

  /** The model's outputs from the cut's activations (inside a tidy / gradient scope). */
  forward(activations: tf.Tensor): tf.Tensor[] {
    const cut = this.steps[this.cutIndex].node.outputTensors[0];
    return run(this.steps, this.cutIndex + 1, this.steps.length, new Map([[cut.id, activations]]), this.graph.outputs);
  }

  dispose(): void {
    for (const x of this.cached.values()) x.dispose();
    this.cached.clear();
    this.bytesHeld = 0;
  }
}

/** The model's outputs from a named cut layer's activations, for a worker's own copy of the model. */
export function forwardFromCut(model: tf.LayersModel, cut: string, activations: tf.Tensor): tf.Tensor[] {
  const { graph, steps } = graphSteps(model);
  if (!Array.isArray(steps)) throw new Error(`cannot run the model from layer ${cut}: ${steps.reason}`);
  const at = steps.findIndex((s) => s.layer.name === cut);
  if (at < 0) throw new Error(`the model has no layer ${cut} to run from`);
  return run(steps, at + 1, steps.length, new Map([[steps[at].node.outputTensors[0].id, activations]]), graph.outputs);
}

/**
 * The cache for a training job on `model` whose trained tensors are `trained` (manifest names), or
 * undefined when its first layer trains, no cut joins the frozen layers to the rest, the bound is
 * 0, or the training examples' activations would not fit `bound` bytes (said in the progress).
 */
export function frozenPrefixCache(model: tf.LayersModel, trained: readonly string[], bound: number, examples: number, progress: (m: string) => void): FrozenPrefixCache | undefined {
  if (!(bound >= 0)) throw new UsageError(`prefixCacheBytes must be a number of bytes >= 0 (0 turns the cache off), found ${bound}`);
  const plan = bound > 0 && trained.length > 0 ? planFrozenPrefix(model, new Set(trained)) : undefined;
  if (!plan || !('cut' in plan)) return undefined;
  const cache = new FrozenPrefixCache(model, plan, bound);
  const need = cache.bytesFor(examples);
  const what = `the first ${plan.layers} of the model's ${plan.of} layers train nothing`;
  if (need > bound) {
    progress(`${what}, but their outputs for the training examples would take ${formatBytes(need)}, over the cache's ${formatBytes(bound)} (prefixCacheBytes): computed at every step`);
    return undefined;
  }
  progress(`${what}: their outputs (after layer ${plan.cut}, ${formatBytes(need)} for the training examples) are computed once per example and reused by every step`);
  return cache;
}
