/**
 * Which TF.js graph models train, decided before training starts: a graph tfjs cannot
 * differentiate is refused with {@link UnsupportedOperatorError} naming the graph node, its
 * operator and, for a gradient, the tfjs kernel. Two checks, in this order:
 *
 * 1. **By operator**, over every node the trained output depends on, before anything runs:
 *    an operator tfjs does not implement; control flow and tensor lists (`If`, `While`,
 *    `Switch`, `Merge`, `Enter`, `Exit`, `NextIteration`, `LoopCond`, `TensorArray*`,
 *    `TensorList*`: tfjs runs loops only asynchronously and records no gradient through them);
 *    operators whose output shape depends on the data (`NonMaxSuppression*`, `Where`,
 *    `ListDiff`) and hash tables (tfjs runs them only with `executeAsync`); random operators
 *    (`RandomUniform`, `RandomStandardNormal`, `RandomUniformInt`, `Multinomial`: what the
 *    trainer evaluated would not be what a device computes).
 * 2. **By a gradient probe** on one example: the graph runs once under a gradient tape of its
 *    own, with every node's output requested so that each tfjs kernel the tape records is
 *    attributed to the node that ran it (tfjs-converter runs a node's kernels together, the
 *    last one giving the node's output). Every kernel on a path from a weight variable to the
 *    output must have a gradient registered in tfjs (`StridedSlice`, `TopK`, `Einsum`,
 *    `CropAndResize` have none; we register one for `GatherNd`, src/engine/kernels/), and that
 *    gradient is run once on the probe's values with the checks tfjs' backpropagation makes (a
 *    float32 gradient of the input's shape for every input a weight reaches), so a gradient that
 *    needs a kernel the backend lacks, or gives an integer input an integer gradient, is refused
 *    too. Kernels off that path (shape arithmetic on int32 constants) need no gradient.
 *
 * Why a probe rather than a list of differentiable operators: the same converter operator runs
 * different tfjs kernels depending on its attributes (a fused convolution with a bias and Relu6
 * is three kernels under a tape), whether a kernel needs a gradient depends on whether a weight
 * reaches it, and whether a gradient runs depends on the backend. The probe checks exactly what
 * training will run. It reads tfjs internals (the engine's tape and the graph executor's node
 * map), as tfjs 4.22 has them.
 */
import * as tf from '@tensorflow/tfjs';
import { UnsupportedOperatorError } from '../../core/errors.ts';
import type { ProgramVariable } from '../program/program.ts';
import { executeBounded } from './shape-guard.ts';

/** A node of tfjs-converter's graph. */
export interface GraphNodeInternals {
  name: string;
  op: string;
  /** The op list the converter found the operator in (`control`, `dynamic`, ...); undefined when tfjs does not know it. */
  category?: string;
  inputs: GraphNodeInternals[];
}

interface GraphInternals {
  nodes: Record<string, GraphNodeInternals>;
}

interface TapeNode {
  kernelName: string;
  inputs: Record<string, tf.Tensor>;
  outputs: tf.Tensor[];
  saved?: tf.Tensor[];
  gradient?: (dys: tf.Tensor[]) => Record<string, () => tf.Tensor>;
}

interface EngineState {
  gradientDepth: number;
  activeTape: TapeNode[] | undefined;
}

/** Random operators: a graph that draws numbers computes something else at every run. */
const RANDOM_OPS = new Set(['RandomUniform', 'RandomStandardNormal', 'RandomUniformInt', 'Multinomial', 'TruncatedNormal']);
/** Nodes that hold values rather than compute them, or compute nothing (a control dependency's NoOp). */
const VALUE_OPS = new Set(['Const', 'Placeholder', 'PlaceholderWithDefault', 'NoOp']);

/** tfjs-converter's graph of a loaded model. */
export function graphOf(model: tf.GraphModel): GraphInternals {
  const graph = (model as unknown as { executor?: { graph?: GraphInternals } }).executor?.graph;
  if (!graph?.nodes) throw new UnsupportedOperatorError('this GraphModel exposes no graph (is it loaded? tested with tfjs 4.22)');
  return graph;
}

/** A tensor name (`node:1`, `^node`) as its node's name. */
export function nodeNameOf(tensorName: string): string {
  return tensorName.replace(/^\^/, '').replace(/:\d+$/, '');
}

/** The nodes `output` depends on (itself included), in no particular order. */
function ancestorsOf(graph: GraphInternals, output: string): GraphNodeInternals[] {
  const start = graph.nodes[nodeNameOf(output)];
  if (!start) return [];
  const seen = new Set<GraphNodeInternals>([start]);
  const stack = [start];
  while (stack.length) {
    for (const i of (stack.pop() as GraphNodeInternals).inputs) {
      if (!seen.has(i)) {
        seen.add(i);
        stack.push(i);
      }
    }
  }
  return [...seen];
}

/** Why an operator cannot train, whatever its place in the graph (check 1 of the module doc); undefined if it may. */
function operatorRefusal(node: GraphNodeInternals): string | undefined {
  if (VALUE_OPS.has(node.op)) return undefined;
  if (node.category === undefined) return 'tfjs does not implement this operator';
  if (node.category === 'control') return 'control flow and tensor lists do not train here: tfjs runs loops and conditionals only asynchronously, and records no gradient through them';
  if (node.category === 'dynamic' || node.category === 'hash_table') return 'its output shape depends on the data, so tfjs runs it only asynchronously (model.executeAsync), outside a gradient';
  if (RANDOM_OPS.has(node.op)) return 'its outputs are random, so what the trainer evaluates would not be what a device computes';
  return undefined;
}

/**
 * Refuse a graph whose `output` tfjs cannot differentiate with respect to `program.variables`
 * on `feeds` (module doc). Call it inside `tf.tidy`.
 * @throws UnsupportedOperatorError naming the node, its operator and (for gradients) the kernel.
 */
export function refuseUndifferentiable(
  program: { model: tf.GraphModel; source: string; variables: readonly ProgramVariable[] },
  feeds: Readonly<Record<string, tf.Tensor>>,
  output: string,
): void {
  const graph = graphOf(program.model);
  const ancestors = ancestorsOf(graph, output);
  const weights = new Set(program.variables.map((v) => v.name));
  const refused = ancestors.map((node) => ({ node, why: operatorRefusal(node) })).filter((r) => r.why !== undefined);
  if (refused.length) {
    const first = refused[0];
    const ops = [...new Set(refused.map((r) => r.node.op))];
    throw new UnsupportedOperatorError(
      `${program.source}: operator ${first.node.op} (node ${JSON.stringify(first.node.name)}) cannot be trained through: ${first.why}` +
        `${refused.length > 1 ? `; ${refused.length} nodes in all (${ops.join(', ')})` : ''}. Nothing ran. Ship this model's updates post hoc (ndiff diff), or train the layers model it was converted from`,
      { op: first.node.op, node: first.node.name, ops, nodes: refused.length, reason: first.why },
    );
  }

  // Check 2: the gradient probe. Every computed node's output is requested, so its tensor marks
  // where the node's kernels end on the tape.
  const computed = ancestors.filter((n) => !VALUE_OPS.has(n.op) && !weights.has(n.name));
  const engine = tf.engine() as unknown as { state: EngineState };
  const state = engine.state;
  const outerTape = state.activeTape;
  state.gradientDepth++;
  state.activeTape = [];
  let tape: TapeNode[] = [];
  let outs: tf.Tensor[];
  try {
    outs = executeAll(program, feeds, [output, ...computed.map((n) => n.name).filter((n) => n !== nodeNameOf(output))]);
  } finally {
    tape = state.activeTape ?? [];
    state.activeTape = outerTape;
    state.gradientDepth--;
  }
  try {
    const y = outs[0];
    const nodeOfTensor = new Map<number, string>();
    nodeOfTensor.set(y.id, nodeNameOf(output));
    computed.filter((n) => n.name !== nodeNameOf(output)).forEach((n, k) => nodeOfTensor.set(outs[k + 1].id, n.name));
    // Kernels belong to the next node whose output appears (a node's kernels run together).
    const owner: (string | undefined)[] = new Array(tape.length);
    let pending: number[] = [];
    tape.forEach((t, k) => {
      pending.push(k);
      const named = t.outputs.map((o) => nodeOfTensor.get(o.id)).find((n) => n !== undefined);
      if (named !== undefined) {
        for (const p of pending) owner[p] = named;
        pending = [];
      }
    });
    const { path, fromX } = onPath(tape, program.variables.map((v) => v.variable), y);
    for (const k of path) {
      const t = tape[k];
      const name = owner[k] ?? nodeNameOf(output);
      const op = graph.nodes[name]?.op ?? '?';
      if (!t.gradient) {
        throw new UnsupportedOperatorError(
          `${program.source}: node ${JSON.stringify(name)} (operator ${op}) runs the tfjs kernel ${t.kernelName}, which has no gradient in tfjs, on the way from the weights to output ${output}. Nothing was trained. Ship this model's updates post hoc (ndiff diff), or re-export it without ${op} between its weights and its outputs`,
          { op, node: name, kernel: t.kernelName, reason: 'no gradient' },
        );
      }
      // What tfjs' backpropagation does with the node, with its checks: a gradient for every
      // input a weight reaches, float32, of the input's shape.
      try {
        tf.tidy(() => {
          const grads = (t.gradient as NonNullable<TapeNode['gradient']>)(t.outputs.map((o) => tf.ones(o.shape, 'float32')));
          for (const [input, x] of Object.entries(t.inputs)) {
            if (!fromX.has(x.id)) continue;
            if (!(input in grads)) throw new Error(`it gives no gradient for its input ${input}`);
            const dx = grads[input]();
            if (dx.dtype !== 'float32') throw new Error(`the gradient of its input ${input} is ${dx.dtype}, tfjs needs float32`);
            if (dx.shape.join(',') !== x.shape.join(',')) throw new Error(`the gradient of its input ${input} is [${dx.shape.join(', ')}], the input [${x.shape.join(', ')}]`);
          }
        });
      } catch (e) {
        throw new UnsupportedOperatorError(
          `${program.source}: the gradient of node ${JSON.stringify(name)} (operator ${op}, tfjs kernel ${t.kernelName}) cannot be computed on the ${tf.getBackend()} backend: ${(e as Error).message}. Nothing was trained. Try --backend cpu, or ship this model's updates post hoc (ndiff diff)`,
          { op, node: name, kernel: t.kernelName, backend: tf.getBackend(), reason: (e as Error).message },
        );
      }
    }
  } finally {
    // The tape kept copies of what each gradient needs; nothing else frees them.
    for (const t of tape) for (const s of t.saved ?? []) s.dispose();
  }
}

/** The graph's tensors `names` (the first the output to train) on `feeds`, as the program runs it. */
function executeAll(program: { model: tf.GraphModel; source: string }, feeds: Readonly<Record<string, tf.Tensor>>, names: string[]): tf.Tensor[] {
  // Inputs cast to their declared types, as the program feeds them.
  const cast: Record<string, tf.Tensor> = {};
  for (const i of program.model.inputs) {
    const t = feeds[i.name];
    if (t) cast[i.name] = i.dtype && i.dtype !== t.dtype ? tf.cast(t, i.dtype) : t;
  }
  // The shapes its constants ask for bounded, as the program runs it.
  return executeBounded(program.model, cast, names, program.source);
}

/**
 * The tape nodes on a path from `xs` to `y` (tfjs' own filter before backpropagation): some
 * input reached from a variable, some output leading to `y`. In tape order, with the ids of
 * every tensor a variable reaches.
 */
function onPath(tape: TapeNode[], xs: readonly tf.Tensor[], y: tf.Tensor): { path: number[]; fromX: Set<number> } {
  const fromX = new Set(xs.map((x) => x.id));
  const reached = tape.map((t) => {
    const hit = Object.values(t.inputs).some((i) => fromX.has(i.id));
    if (hit) for (const o of t.outputs) fromX.add(o.id);
    return hit;
  });
  const toY = new Set([y.id]);
  const out: number[] = [];
  for (let k = tape.length - 1; k >= 0; k--) {
    const t = tape[k];
    if (!reached[k] || !t.outputs.some((o) => toY.has(o.id))) continue;
    out.push(k);
    for (const i of Object.values(t.inputs)) toY.add(i.id);
  }
  return { path: out.reverse(), fromX };
}
