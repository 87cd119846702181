/**
 * Chains of ONNX nodes the executor runs as one fused op (src/engine/kernels/transformer.ts):
 *
 * - a LayerNorm's normalisation as exporters write it below opset 17:
 *   m = ReduceMean(x, axes=[-1]); d = Sub(x, m); p = Pow(d, 2); v = ReduceMean(p, axes=[-1]);
 *   e = Add(v, eps); s = Sqrt(e); n = Div(d, s)  ->  n = layerNormalize(x, eps)
 *   (the scale and shift after it stay the Mul and Add they are);
 * - the exact GELU: q = Div(x, sqrt 2) (or Mul(x, 1/sqrt 2)); r = Erf(q); a = Add(r, 1);
 *   b = Mul(x, a); y = Mul(b, 0.5)  ->  y = gelu(x).
 *
 * A chain is fused only when it is exactly that: each constant a Constant node of the value
 * asked (eps any positive number), the reductions over the last axis keeping it, and every
 * intermediate value read by the chain alone (not by another node, a subgraph or as a graph
 * output). Anything else runs node by node as before.
 */
import type { OnnxGraph, OnnxNode } from './model.ts';

/** A fused chain: run at `at` (its first node), skip `skip`, write `output`. */
export type FusedChain =
  | { kind: 'layer-norm'; at: number; input: string; output: string; epsilon: number; skip: number[] }
  | { kind: 'gelu'; at: number; input: string; output: string; skip: number[] };

/** The fused chains of a graph, by the index of their first node. */
export type FusionPlan = Map<number, FusedChain>;

const plans = new WeakMap<OnnxGraph, FusionPlan>();

/** The graph's fusion plan (computed once per graph). */
export function fusionPlan(g: OnnxGraph, constantValue: (node: OnnxNode) => number | undefined): FusionPlan {
  let plan = plans.get(g);
  if (!plan) plans.set(g, (plan = makePlan(g, constantValue)));
  return plan;
}

function makePlan(g: OnnxGraph, constantValue: (node: OnnxNode) => number | undefined): FusionPlan {
  const producer = new Map<string, number>();
  const uses = new Map<string, number>();
  const use = (name: string, k = 1) => name && uses.set(name, (uses.get(name) ?? 0) + k);
  g.nodes.forEach((n, i) => {
    n.outputs.forEach((o) => o && producer.set(o, i));
    n.inputs.forEach((x) => use(x));
    // A name a subgraph reads counts as a use no chain can account for.
    for (const a of n.attributes.values()) for (const sub of [a.g, ...(a.graphs ?? [])]) if (sub) namesReadIn(sub).forEach((x) => use(x, 1e9));
  });
  g.outputs.forEach((o) => use(o.name, 1e9));
  const node = (name: string) => {
    const i = producer.get(name);
    return i === undefined ? undefined : { i, n: g.nodes[i] };
  };
  /** The single node reading `name`, when it is read exactly `times` times in all. */
  const readers = new Map<string, number[]>();
  g.nodes.forEach((n, i) => n.inputs.forEach((x) => x && readers.set(x, [...(readers.get(x) ?? []), i])));
  const onlyReader = (name: string, times = 1): { i: number; n: OnnxNode } | undefined => {
    const r = readers.get(name) ?? [];
    if (uses.get(name) !== times || new Set(r).size !== 1) return undefined;
    return { i: r[0], n: g.nodes[r[0]] };
  };
  const constant = (name: string): number | undefined => {
    const p = node(name);
    return p && p.n.opType === 'Constant' ? constantValue(p.n) : undefined;
  };
  const lastAxisKeep = (n: OnnxNode) => {
    const axes = n.attributes.get('axes')?.ints;
    const keep = n.attributes.get('keepdims')?.i ?? 1;
    return n.inputs.length === 1 && axes?.length === 1 && axes[0] === -1 && keep === 1;
  };
  const plan: FusionPlan = new Map();
  const taken = new Set<number>();
  g.nodes.forEach((first, at) => {
    if (taken.has(at)) return;
    if (first.opType === 'ReduceMean' && lastAxisKeep(first)) {
      const x = first.inputs[0];
      const m = first.outputs[0];
      const sub = onlyReader(m);
      if (!sub || sub.n.opType !== 'Sub' || sub.n.inputs[0] !== x || sub.n.inputs[1] !== m) return;
      const d = sub.n.outputs[0];
      const rd = readers.get(d) ?? [];
      if (uses.get(d) !== 2 || rd.length !== 2) return;
      const [pow, div] = rd.map((i) => ({ i, n: g.nodes[i] })).sort((a, b) => (a.n.opType === 'Pow' ? -1 : b.n.opType === 'Pow' ? 1 : 0));
      if (pow.n.opType !== 'Pow' || pow.n.inputs[0] !== d || constant(pow.n.inputs[1]) !== 2) return;
      const mean2 = onlyReader(pow.n.outputs[0]);
      if (!mean2 || mean2.n.opType !== 'ReduceMean' || !lastAxisKeep(mean2.n)) return;
      const add = onlyReader(mean2.n.outputs[0]);
      if (!add || add.n.opType !== 'Add' || add.n.inputs[0] !== mean2.n.outputs[0]) return;
      const epsilon = constant(add.n.inputs[1]);
      if (epsilon === undefined || !(epsilon > 0)) return;
      const sqrt = onlyReader(add.n.outputs[0]);
      if (!sqrt || sqrt.n.opType !== 'Sqrt') return;
      if (div.n.opType !== 'Div' || div.n.inputs[0] !== d || div.n.inputs[1] !== sqrt.n.outputs[0] || onlyReader(sqrt.n.outputs[0])?.i !== div.i) return;
      const skip = [sub.i, pow.i, mean2.i, add.i, sqrt.i, div.i];
      // Every node of the chain after its first, in order, and none taken by another chain.
      if (skip.some((i) => i <= at || taken.has(i))) return;
      skip.forEach((i) => taken.add(i));
      plan.set(at, { kind: 'layer-norm', at, input: x, output: div.n.outputs[0], epsilon, skip });
      return;
    }
    if ((first.opType === 'Div' && near(constant(first.inputs[1]), Math.SQRT2)) || (first.opType === 'Mul' && near(constant(first.inputs[1]), Math.SQRT1_2))) {
      const x = first.inputs[0];
      const erf = onlyReader(first.outputs[0]);
      if (!erf || erf.n.opType !== 'Erf') return;
      const add = onlyReader(erf.n.outputs[0]);
      if (!add || add.n.opType !== 'Add' || constant(add.n.inputs[1]) !== 1) return;
      const mul = onlyReader(add.n.outputs[0]);
      if (!mul || mul.n.opType !== 'Mul' || mul.n.inputs[0] !== x || mul.n.inputs[1] !== add.n.outputs[0]) return;
      const half = onlyReader(mul.n.outputs[0]);
      if (!half || half.n.opType !== 'Mul' || half.n.inputs[0] !== mul.n.outputs[0] || constant(half.n.inputs[1]) !== 0.5) return;
      const skip = [erf.i, add.i, mul.i, half.i];
      if (skip.some((i) => i <= at || taken.has(i))) return;
      skip.forEach((i) => taken.add(i));
      plan.set(at, { kind: 'gelu', at, input: x, output: half.n.outputs[0], skip });
    }
  });
  return plan;
}

/** Equal to float32 precision (an exporter writes sqrt 2 as a float32 constant). */
function near(v: number | undefined, target: number): boolean {
  return v !== undefined && Math.abs(v - target) <= 1e-6 * target;
}

/** Every name a graph's nodes read, its subgraphs' included. */
function namesReadIn(g: OnnxGraph): string[] {
  const out: string[] = [];
  for (const n of g.nodes) {
    out.push(...n.inputs.filter(Boolean));
    for (const a of n.attributes.values()) for (const sub of [a.g, ...(a.graphs ?? [])]) if (sub) out.push(...namesReadIn(sub));
  }
  return out;
}
