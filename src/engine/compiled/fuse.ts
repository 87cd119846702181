/**
 * Element-wise chains of a compiled step fused into one kernel (issue 63: "chains of element-wise
 * ops fused into one kernel"): a pass over a plan's kernels (plan.ts) that finds trees of
 * element-wise kernels over one output shape, each intermediate value read by one kernel of the
 * tree only and neither a step output nor an assignment, and replaces each tree by one kernel
 * running a small program (src/engine/kernels/elementwise.ts, .c): the intermediates never become
 * tensors, the output is written once, and a replay calls one kernel where it called several.
 *
 * Inputs of the chain are of the output's size, one value, or one value per channel of the
 * output's last axis (a bias); anything else (a row broadcast, another dtype) ends the chain.
 * Every op is computed in float32 as tfjs' wasm kernel computes it, in the same order: a fused
 * chain gives the bits of the kernels it replaces. Transcendental ops (Exp, Log, Sigmoid, Tanh,
 * Erf) are not fused: tfjs computes them with its own libm, whose bits a kernel of ours would not
 * give.
 */
import type { KernelBackend, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';
import { checkElementwiseInputs, elementwiseRunners, runElementwise, type ElementwiseProgram, type InputKind, type OpName } from '../kernels/elementwise.ts';
import { outKey, readersOf, renumberOutSlots, sizeOf, withoutLeadingOnes, type KernelShapes, type PlannedKernel, type Slot } from './planned.ts';

export type { KernelShapes } from './planned.ts';

/** The kernel a fused chain runs. */
export const FUSED_ELEMENTWISE = 'NeuralDiffElementwise';

/** tfjs kernels the pass fuses, and the op each is. */
const OPS: Record<string, OpName> = {
  Add: 'add', Sub: 'sub', Multiply: 'mul', RealDiv: 'div', Maximum: 'max', Minimum: 'min', SquaredDifference: 'sqdiff',
  Neg: 'neg', Abs: 'abs', Square: 'square', Sqrt: 'sqrt', Rsqrt: 'rsqrt', Reciprocal: 'recip', Relu: 'relu', Relu6: 'relu6',
  Step: 'step', ClipByValue: 'clip',
};

/** tfjs kernels computed value by value (what the profile sums as element-wise work, fusable or not). */
export const ELEMENTWISE_KERNELS: ReadonlySet<string> = new Set([
  ...Object.keys(OPS), 'Exp', 'Log', 'Sigmoid', 'Tanh', 'Erf', 'Pow', 'Cast', 'Round', 'Select', 'Greater', 'GreaterEqual',
  'Less', 'LessEqual', 'Equal', 'LogicalAnd', 'ZerosLike', 'OnesLike', 'Fill',
]);

/** Benchmarks and tests switch this: `fuseElementwise` false builds plans without fusion. */
export const planSwitch = { fuseElementwise: true };

/** How an input of `shape` lines up with an output of `out`, or null when the kernel cannot read it so. */
function kindOf(shape: number[], out: number[]): InputKind | null {
  const n = sizeOf(out);
  if (sizeOf(shape) === n && withoutLeadingOnes(shape) === withoutLeadingOnes(out)) return 'full';
  if (sizeOf(shape) === 1) return 'scalar';
  const C = out[out.length - 1];
  if (out.length > 0 && withoutLeadingOnes(shape) === String(C)) return 'channel';
  return null;
}

/** The inputs of kernel `k` in op order (a, b), by their names where the kernel takes named inputs. */
function operandOrder(k: PlannedKernel): number[] {
  if (k.keys === null) return k.inputs.map((_, j) => j);
  const name = k.keys.includes('a') ? ['a', 'b'] : ['x'];
  const order = name.map((key) => k.keys?.indexOf(key) ?? -1);
  return order.every((j) => j >= 0) ? order : [];
}

/** The op of kernel `k` if the pass can fuse it here (float32 in and out, inputs it can line up), else null. */
function opOf(k: PlannedKernel, shapes: KernelShapes): OpName | null {
  const op = OPS[k.name];
  if (!op || k.outputs !== 1 || shapes.outputs[0].dtype !== 'float32') return null;
  const order = operandOrder(k);
  const arity = op === 'step' || op === 'clip' || !(['add', 'sub', 'mul', 'div', 'max', 'min', 'sqdiff'] as string[]).includes(op) ? 1 : 2;
  if (order.length !== arity || k.inputs.length !== arity) return null;
  if (op === 'step' && !Number.isFinite(Number(k.attrs.alpha ?? 0))) return null;
  if (op === 'clip' && !(Number.isFinite(Number(k.attrs.clipValueMin)) && Number.isFinite(Number(k.attrs.clipValueMax)))) return null;
  for (const j of order) {
    const t = shapes.inputs[j];
    if (!t || !k.inputs[j] || t.dtype !== 'float32' || kindOf(t.shape, shapes.outputs[0].shape) === null) return null;
  }
  return op;
}

/** A key of the value a slot holds (the same variable read twice is one input). */
function slotKey(s: Slot): unknown {
  switch (s.k) {
    case 'out': return `o${s.kernel}:${s.index}`;
    case 'feed': return `f${s.role}`;
    case 'const': return `c${s.i}`;
    case 'var': return s.v;
    case 'ext': return s.t;
  }
}

/** What the pass did to a plan. */
export interface FusionResult {
  kernels: PlannedKernel[];
  /** New index of each kernel that still runs (a fused chain's index is its last kernel's). */
  index: Map<number, number>;
  /** Chains fused, and the kernels they replaced. */
  chains: number;
  replaced: number;
}

/**
 * Fuse the element-wise chains of `kernels` (a plan in order; `shapes` recorded per kernel;
 * `kept`: the out slots the step returns or assigns, `kernel:index`; `inPlace`: kernels that write
 * an input in place, which a chain's reads may not move past).
 */
export function fuseElementwise(kernels: PlannedKernel[], shapes: (i: number) => KernelShapes, kept: ReadonlySet<string>, inPlace: (i: number) => boolean, backend: KernelBackend, backendName: string): FusionResult {
  const ops = kernels.map((k, i) => opOf(k, shapes(i)));
  const readers = readersOf(kernels);
  const writes: number[] = [];
  kernels.forEach((_, i) => { if (inPlace(i)) writes.push(i); });
  // parent[p] = the kernel whose chain p joins.
  const parent = new Map<number, number>();
  kernels.forEach((k, i) => {
    if (!ops[i]) return;
    const outShape = shapes(i).outputs[0].shape.join();
    for (const s of k.inputs) {
      if (s?.k !== 'out' || parent.has(s.kernel)) continue;
      const p = s.kernel;
      const r = readers.get(outKey(p, 0));
      if (!ops[p] || kept.has(outKey(p, 0)) || !r || r.some((reader) => reader !== i)) continue;
      if (shapes(p).outputs[0].shape.join() !== outShape) continue;
      if (writes.some((w) => w > p && w < i)) continue;
      parent.set(p, i);
    }
  });
  const rootOf = (i: number): number => {
    let r = i;
    while (parent.has(r)) r = parent.get(r) as number;
    return r;
  };
  const members = new Map<number, number[]>();
  for (const p of parent.keys()) {
    const r = rootOf(p);
    if (!members.has(r)) members.set(r, [r]);
    members.get(r)?.push(p);
  }
  const out: PlannedKernel[] = [];
  const index = new Map<number, number>();
  const absorbed = new Set(parent.keys());
  let chains = 0;
  kernels.forEach((k, i) => {
    if (absorbed.has(i)) return;
    const group = members.get(i);
    index.set(i, out.length);
    if (!group) {
      out.push(k);
      return;
    }
    group.sort((a, b) => a - b);
    const fused = chainKernel(kernels, group, ops, shapes, backend, backendName);
    out.push(fused);
    chains++;
  });
  // Out slots renumbered (no kept kernel reads an absorbed one: its only reader is in its chain).
  renumberOutSlots(out, index);
  return { kernels: out, index, chains, replaced: absorbed.size + chains };
}

/** One kernel for the chain `group` (kernel indices in order; the last is the chain's output). */
function chainKernel(kernels: PlannedKernel[], group: number[], ops: (OpName | null)[], shapes: (i: number) => KernelShapes, backend: KernelBackend, backendName: string): PlannedKernel {
  const root = group[group.length - 1];
  const outShape = shapes(root).outputs[0].shape;
  const inGroup = new Set(group);
  const inputs: Slot[] = [];
  const kinds: InputKind[] = [];
  const inputAt = new Map<unknown, Map<InputKind, number>>();
  const immediates: number[] = [];
  // Operands: inputs and immediates first (numbered after the pass), registers after.
  type Ref = { input: number } | { imm: number } | { member: number };
  const code: { op: OpName; dst: number; refs: Ref[] }[] = [];
  for (const i of group) {
    const k = kernels[i];
    const op = ops[i] as OpName;
    const refs: Ref[] = operandOrder(k).map((j) => {
      const s = k.inputs[j] as Slot;
      if (s.k === 'out' && inGroup.has(s.kernel)) return { member: s.kernel };
      const kind = kindOf((shapes(i).inputs[j] as { shape: number[] }).shape, outShape) as InputKind;
      let byKind = inputAt.get(slotKey(s));
      if (!byKind) inputAt.set(slotKey(s), (byKind = new Map()));
      let at = byKind.get(kind);
      if (at === undefined) {
        at = inputs.push(s) - 1;
        kinds.push(kind);
        byKind.set(kind, at);
      }
      return { input: at };
    });
    if (op === 'step') refs.push({ imm: immediates.push(Math.fround(Number(k.attrs.alpha ?? 0))) - 1 });
    if (op === 'clip') refs.push({ imm: immediates.push(Math.fround(Number(k.attrs.clipValueMin))) - 1 }, { imm: immediates.push(Math.fround(Number(k.attrs.clipValueMax))) - 1 });
    code.push({ op, dst: i, refs });
  }
  const firstImm = 1 + inputs.length;
  const firstReg = firstImm + immediates.length;
  const register = new Map(group.slice(0, -1).map((m, r) => [m, firstReg + r]));
  const operand = (r: Ref) => ('input' in r ? 1 + r.input : 'imm' in r ? firstImm + r.imm : (register.get(r.member) as number));
  const program: ElementwiseProgram = {
    inputs: kinds,
    immediates,
    registers: group.length - 1,
    channels: outShape.length ? outShape[outShape.length - 1] : 1,
    code: code.map((c) => {
      const [a, b, cc] = c.refs.map(operand);
      return { op: c.op, dst: c.dst === root ? 0 : (register.get(c.dst) as number), a, ...(b !== undefined ? { b } : {}), ...(cc !== undefined ? { c: cc } : {}) };
    }),
  };
  const shape = outShape.slice();
  const last = kernels[root];
  return {
    name: FUSED_ELEMENTWISE,
    source: last.source,
    keys: null,
    inputs,
    attrs: { chain: group.map((i) => kernels[i].name).join(' ') } as NamedAttrMap,
    outputs: 1,
    kernelFunc: ({ inputs: given }) => {
      const runner = elementwiseRunners.get(backendName);
      if (runner) checkElementwiseInputs(program, given as TensorInfo[], sizeOf(shape));
      return runner?.(backend, program, given as TensorInfo[], shape) ?? runElementwise(backend, program, given as TensorInfo[], shape);
    },
    release: [],
    views: inputs.map(() => null),
  };
}
