/**
 * A training step as a plan of kernel calls (src/engine/compiled/): built from two recordings of
 * the same step (record.ts) and replayed by calling each kernel's function on the backend directly
 * (`tf.getKernel(name, backend).kernelFunc`), without the engine's tape, scopes or per-op
 * bookkeeping.
 *
 * Every value a kernel reads is a slot: a feed of the step (the batch, the teacher's rows), a
 * variable (read at its value of the moment), a tensor made before the step that never changes
 * (the base weights, a mask), a constant (made inside the step from JavaScript values, or
 * computed only from constants: folded once at capture) or an earlier kernel's output. Outputs
 * are released right after their last reader; kernels whose outputs nobody reads are not run,
 * nor those whose output is their input under another shape (Reshape, Identity, a Cast to the
 * same type): their readers read the input under the shape they were given.
 *
 * Two recordings are needed because one cannot tell a constant from a value the step computes in
 * JavaScript anew each time: the plan is built only when both ran the same kernels on the same
 * slots with the same attributes and the same uploaded values; anything else is refused with the
 * first difference.
 */
import * as tf from '@tensorflow/tfjs';
import type { KernelBackend, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';
import { ADAM_STEP } from '../kernels/adam.ts';
import { TrainingStepError } from '../../core/errors.ts';
import { trainKernelsUnavailable } from '../kernels/train-kernels-simd.ts';
import type { WasmBackendLike } from '../kernels/util.ts';
import { infoOf, type RecordedKernel, type Recording } from './record.ts';
import { outKey, type PlannedKernel, type Slot } from './planned.ts';
import { epilogueSwitch, fuseBiasAdds, fuseMaxPoolReluGrads, fuseReluActivations } from './epilogue.ts';
import { MAX_POOL_RELU_GRAD } from '../kernels/native/kernels.ts';
import { fuseElementwise, planSwitch } from './fuse.ts';
import { arenaSwitch, planArena, ReplayArena, wasmBackendOf, type ArenaSlot, type Lifetime } from './arena.ts';

export type { PlannedKernel, Slot } from './planned.ts';

/** What a captured step returns: named tensors (the loss, the gradients...). */
export type StepOutputs = [string, tf.Tensor][];

/** Kernels that write some of their inputs in place (by input name). */
const IN_PLACE: Record<string, readonly string[]> = { [ADAM_STEP]: ['m', 'v'] };

/**
 * Kernels whose output holds their input's values, only under another shape (Reshape), as is
 * (Identity) or converted to the type they already have (Cast to the same dtype): a plan runs none
 * of them; their readers read the input under the shape they were given.
 */
const SAME_VALUES = new Set(['Reshape', 'Identity', 'Cast']);

/**
 * Where replays' time goes (opt-in: {@link StepPlan.replay} takes one, or {@link replayProfiler}
 * hands one to every replay of the compiled steps): per kernel name, calls and wall ms of its
 * kernel function (its output's allocation included); the release of intermediates after their
 * last reader; the step's outputs and assignments; and each replay's whole wall and CPU ms, so
 * the JavaScript around the kernels is the rest.
 */
export interface ReplayProfile {
  replays: number;
  wallMs: number;
  cpuMs: number;
  /** Calls and ms per kernel name. */
  kernels: Map<string, { calls: number; ms: number }>;
  /** Releasing intermediates after their last reader. */
  freeMs: number;
  /** Wrapping the outputs as tensors and assigning the variables. */
  finishMs: number;
  /** Kernel calls, all names together. */
  calls: number;
}

/** An empty {@link ReplayProfile}. */
export function replayProfile(): ReplayProfile {
  return { replays: 0, wallMs: 0, cpuMs: 0, kernels: new Map(), freeMs: 0, finishMs: 0, calls: 0 };
}

/** Set `into` and every replay of the compiled steps adds its time there (benchmarks); null (default) times nothing. */
export const replayProfiler: { into: ReplayProfile | null } = { into: null };

/** Marks an intermediate a replay has released (no later kernel reads it). */
const RELEASED: TensorInfo = Object.freeze({ dataId: Object.freeze({}), shape: [], dtype: 'float32' }) as TensorInfo;

/** Thrown while building a plan: why this step cannot be replayed. */
export class PlanRefused extends Error {}


/** Structural description of a slot (to compare two recordings). */
function describe(s: Slot, exts: tf.Tensor[]): string {
  switch (s.k) {
    case 'feed': return `feed ${s.role}`;
    case 'var': return `variable ${s.v.name}`;
    case 'ext': {
      let i = exts.indexOf(s.t);
      if (i < 0) i = exts.push(s.t) - 1;
      return `tensor #${i}`;
    }
    case 'const': return `upload #${s.i}`;
    case 'out': return `kernel ${s.kernel}:${s.index}`;
  }
}

function shapeText(t: { shape: number[]; dtype: string }): string {
  return `[${t.shape.join(', ')}] ${t.dtype}`;
}

function attrsText(attrs: NamedAttrMap): string {
  return JSON.stringify(attrs, (_k, v) => (ArrayBuffer.isView(v) ? Array.from(v as unknown as ArrayLike<number>) : v));
}

/** A recording turned into slots; throws PlanRefused for what no plan can hold. */
export interface Resolved {
  kernels: { rec: RecordedKernel; inputs: (Slot | null)[] }[];
  uploads: { values: Float32Array | Int32Array | Uint8Array; shape: number[]; dtype: string }[];
  assigns: { v: tf.Variable; slot: Slot }[];
  outputs: [string, Slot][];
}

/** A recording in slots, taken while its tensors are alive. @throws PlanRefused */
export function resolve(rec: Recording<StepOutputs>, feeds: Record<string, tf.Tensor>): Resolved {
  if (rec.refusal) throw new PlanRefused(rec.refusal);
  const byData = new Map<object, Slot>();
  const feedOf = new Map<object, string>();
  for (const [role, t] of Object.entries(feeds)) feedOf.set(t.dataId, role);
  const out: Resolved = { kernels: [], uploads: [], assigns: [], outputs: [] };
  /** The slot of `t`, whose data was `id` when it was read (a variable may be assigned later in the step). */
  const slotOf = (t: tf.Tensor, reader: string, id: object = t.dataId): Slot => {
    const s = byData.get(id);
    if (s) return s;
    const role = feedOf.get(id);
    if (role !== undefined) return { k: 'feed', role };
    if (t instanceof tf.Variable) return { k: 'var', v: t };
    if (!rec.made.has(id)) return { k: 'ext', t };
    throw new PlanRefused(`${reader} reads a ${shapeText(t)} tensor made outside the engine's kernels`);
  };
  for (const e of rec.events) {
    if (e.kind === 'upload') {
      byData.set(e.tensor.dataId, { k: 'const', i: out.uploads.length });
      out.uploads.push({ values: e.values, shape: e.tensor.shape, dtype: e.tensor.dtype });
    } else if (e.kind === 'alias') {
      byData.set(e.to.dataId, slotOf(e.from, 'a tensor kept for the backward pass', e.fromId));
    } else if (e.kind === 'assign') {
      out.assigns.push({ v: e.variable, slot: slotOf(e.value, `the assignment of ${e.variable.name}`) });
    } else {
      const inputs = e.inputs.map((t, j) => (t ? slotOf(t, `kernel ${e.name}`, e.inputIds[j] ?? t.dataId) : null));
      const index = out.kernels.length;
      out.kernels.push({ rec: e, inputs });
      e.outputs.forEach((t, i) => byData.set(t.dataId, { k: 'out', kernel: index, index: i }));
    }
  }
  for (const [name, t] of rec.result) out.outputs.push([name, slotOf(t, `the step's output ${name}`)]);
  return out;
}

/** Why two recordings of the step differ (undefined: they ran the same plan). */
function difference(a: Resolved, b: Resolved): string | undefined {
  const ea: tf.Tensor[] = [];
  const eb: tf.Tensor[] = [];
  if (a.kernels.length !== b.kernels.length) return `the step ran ${a.kernels.length} kernels, then ${b.kernels.length}`;
  for (let i = 0; i < a.kernels.length; i++) {
    const [ka, kb] = [a.kernels[i], b.kernels[i]];
    if (ka.rec.name !== kb.rec.name) return `kernel ${i} was ${ka.rec.name}, then ${kb.rec.name}`;
    const ia = ka.inputs.map((s) => (s ? describe(s, ea) : '-')).join(', ');
    const ib = kb.inputs.map((s) => (s ? describe(s, eb) : '-')).join(', ');
    if (ia !== ib) return `kernel ${i} (${ka.rec.name}) read ${ia}, then ${ib}`;
    const sa = ka.rec.inputs.map((t) => (t ? shapeText(t) : '-')).join(', ');
    const sb = kb.rec.inputs.map((t) => (t ? shapeText(t) : '-')).join(', ');
    if (sa !== sb) return `kernel ${i} (${ka.rec.name}) read shapes ${sa}, then ${sb}`;
    if (attrsText(ka.rec.attrs) !== attrsText(kb.rec.attrs)) return `kernel ${i} (${ka.rec.name}) changes its attributes between steps (${attrsText(ka.rec.attrs).slice(0, 120)})`;
  }
  if (ea.some((t, i) => t !== eb[i])) return 'a tensor made before the step is a new one at each step (not a feed)';
  if (a.uploads.length !== b.uploads.length) return `the step made ${a.uploads.length} tensors from JavaScript values, then ${b.uploads.length}`;
  for (let i = 0; i < a.uploads.length; i++) {
    const [ua, ub] = [a.uploads[i], b.uploads[i]];
    if (shapeText(ua) !== shapeText(ub) || ua.values.length !== ub.values.length || ua.values.some((v, j) => !Object.is(v, ub.values[j]))) {
      const reader = b.kernels.find((k) => k.inputs.some((s) => s?.k === 'const' && s.i === i));
      return `a ${shapeText(ub)} value made in JavaScript changes between steps${reader ? ` (read by ${reader.rec.name})` : ''}`;
    }
  }
  const oa = a.outputs.map(([n, s]) => `${n}=${describe(s, ea)}`).join(', ');
  const ob = b.outputs.map(([n, s]) => `${n}=${describe(s, eb)}`).join(', ');
  if (oa !== ob) return `the step's outputs were ${oa}, then ${ob}`;
  const va = a.assigns.map((x) => `${x.v.name}=${describe(x.slot, ea)}`).join(', ');
  const vb = b.assigns.map((x) => `${x.v.name}=${describe(x.slot, eb)}`).join(', ');
  if (va !== vb) return `the step assigned ${va}, then ${vb}`;
  return undefined;
}

function bytesOf(t: { shape: number[]; dtype: string }): number {
  return t.shape.reduce((a, d) => a * d, 1) * (t.dtype === 'float32' || t.dtype === 'int32' ? 4 : 1);
}

/** A captured training step, replayable while its variables and constants live. */
export class StepPlan {
  private readonly kernels: PlannedKernel[] = [];
  private readonly consts: TensorInfo[] = [];
  private outputs: [string, Slot][];
  private assigns: { v: tf.Variable; slot: Slot }[];
  /** Tensors and variables made before the step that the plan reads (a disposed one makes it stale). */
  private readonly exts: tf.Tensor[] = [];
  private readonly feedShapes = new Map<string, string>();
  /** Kernels the plan runs (after folding and dropping the unread). */
  readonly kernelCount: number;
  /** Kernels computed once at capture (their inputs are constants). */
  readonly folded: number;
  /** Kernels not run because their output is their input under another shape ({@link SAME_VALUES}). */
  readonly viewed: number;
  /** Element-wise chains run as one kernel each (fuse.ts), and the kernels they replaced. */
  readonly fusedChains: number = 0;
  readonly fusedKernels: number = 0;
  /** Bias adds run in the epilogue of the convolution or matmul before them (epilogue.ts). */
  readonly fusedBiases: number = 0;
  /** ReLUs computed in the epilogue of the GEMM before them (epilogue.ts). */
  readonly fusedRelus: number = 0;
  /** Relu gradients computed in the max pool gradient's pass before them (epilogue.ts). */
  readonly fusedPoolGrads: number = 0;
  /** Of {@link kernelCount}, the optimizer's update kernels (the fused Adam's, one per variable). */
  readonly optimizerKernels: number;
  /**
   * The bytes a replay's intermediates take, plus the constants: the arena's size when the plan
   * has one (arena.ts), else the most bytes of intermediate values alive at once.
   */
  readonly bytes: number;
  /** The most bytes of intermediate values alive at once during a replay (what the arena cannot go below). */
  readonly peakBytes: number;
  /** The intermediates laid out in one block allocated once (null: arenaSwitch off, or not a wasm-memory backend). */
  private readonly arena: ReplayArena | null = null;
  private disposed = false;

  private constructor(private readonly backend: KernelBackend, r: Resolved, feeds: Record<string, tf.Tensor>) {
    const backendName = tf.getBackend();
    for (const [role, t] of Object.entries(feeds)) this.feedShapes.set(role, shapeText(t));
    // Constants: the uploads, then whatever only constants and unchanging tensors compute.
    const foldedKernels = new Set<number>();
    r.kernels.forEach((k, i) => {
      if (k.rec.constant) foldedKernels.add(i);
    });
    // Which kernels are needed: backward from the outputs and the assignments.
    const needed = new Set<number>();
    const needSlot = (s: Slot | null, stack: number[]) => {
      if (s?.k === 'out' && !needed.has(s.kernel)) {
        needed.add(s.kernel);
        stack.push(s.kernel);
      }
    };
    const stack: number[] = [];
    for (const [, s] of r.outputs) needSlot(s, stack);
    for (const a of r.assigns) needSlot(a.slot, stack);
    while (stack.length) for (const s of r.kernels[stack.pop() as number].inputs) needSlot(s, stack);
    // Reshapes, identities and casts to the same type: their readers read the input instead.
    const pinned = new Set<number>();
    for (const [, s] of r.outputs) if (s.k === 'out') pinned.add(s.kernel);
    for (const a of r.assigns) if (a.slot.k === 'out') pinned.add(a.slot.kernel);
    const writtenInPlace = new Set<tf.Variable>();
    for (const k of r.kernels) {
      const written = IN_PLACE[k.rec.name];
      if (written && k.rec.keys) k.rec.keys.forEach((key, j) => { const s = k.inputs[j]; if (written.includes(key) && s?.k === 'var') writtenInPlace.add(s.v); });
    }
    const viewOf = new Map<number, Slot>();
    r.kernels.forEach((k, i) => {
      if (!needed.has(i) || foldedKernels.has(i) || pinned.has(i) || !SAME_VALUES.has(k.rec.name)) return;
      const [x, y] = [k.rec.inputs[0], k.rec.outputs[0]];
      const src = k.inputs[0];
      if (k.inputs.length !== 1 || k.rec.outputs.length !== 1 || !src || !x || x.dtype !== y.dtype || x.dtype === 'string' || x.size !== y.size) return;
      const from = src.k === 'out' ? (viewOf.get(src.kernel) ?? src) : src;
      if (from.k === 'var' && writtenInPlace.has(from.v)) return;
      viewOf.set(i, from);
    });
    const seen = (s: Slot): Slot => (s.k === 'out' ? (viewOf.get(s.kernel) ?? s) : s);
    // Every kernel the plan calls is registered (checked before any constant is written).
    r.kernels.forEach((k, i) => {
      if (needed.has(i) && !foldedKernels.has(i) && !viewOf.has(i) && !tf.getKernel(k.rec.name, backendName)) throw new PlanRefused(`kernel ${k.rec.name} is not registered for the ${backendName} backend`);
    });
    // Materialize the constants a needed, unfolded kernel (or an output) reads.
    const constIndex = new Map<string, number>();
    const materialize = (s: Slot): Slot => {
      if (s.k === 'const') {
        const key = `u${s.i}`;
        if (!constIndex.has(key)) {
          const u = r.uploads[s.i];
          constIndex.set(key, this.consts.push(this.write(u.values, u.shape, u.dtype)) - 1);
        }
        return { k: 'const', i: constIndex.get(key) as number };
      }
      if (s.k === 'out' && foldedKernels.has(s.kernel)) {
        const key = `${s.kernel}:${s.index}`;
        if (!constIndex.has(key)) {
          const rec = r.kernels[s.kernel].rec;
          const t = rec.outputs[s.index];
          constIndex.set(key, this.consts.push(this.write((rec.constant as Float32Array[])[s.index], t.shape, t.dtype)) - 1);
        }
        return { k: 'const', i: constIndex.get(key) as number };
      }
      if (s.k === 'ext' && !this.exts.includes(s.t)) this.exts.push(s.t);
      if (s.k === 'var' && !this.exts.includes(s.v)) this.exts.push(s.v);
      return s;
    };
    // Renumber the kernels that run; out slots point at their new index.
    const newIndex = new Map<number, number>();
    r.kernels.forEach((k, i) => {
      if (!needed.has(i) || foldedKernels.has(i) || viewOf.has(i)) return;
      const kernel = tf.getKernel(k.rec.name, backendName) as NonNullable<ReturnType<typeof tf.getKernel>>;
      const inputs = k.inputs.map((given) => {
        if (given === null) return null;
        const s = seen(given);
        return s.k === 'out' && !foldedKernels.has(s.kernel) ? { k: 'out' as const, kernel: newIndex.get(s.kernel) as number, index: s.index } : materialize(s);
      });
      newIndex.set(i, this.kernels.length);
      const shapeOf = (s: Slot): number[] => {
        switch (s.k) {
          case 'feed': return feeds[s.role].shape;
          case 'var': return s.v.shape;
          case 'ext': return s.t.shape;
          case 'const': return this.consts[s.i].shape;
          case 'out': return r.kernels[this.kernels[s.kernel].source].rec.outputs[s.index].shape;
        }
      };
      const views = inputs.map((s, j) => {
        const recorded = k.rec.inputs[j]?.shape;
        return s && recorded && shapeOf(s).join() !== recorded.join() ? recorded.slice() : null;
      });
      this.kernels.push({ name: k.rec.name, source: i, keys: k.rec.keys, inputs, attrs: k.rec.attrs, outputs: k.rec.outputs.length, kernelFunc: kernel.kernelFunc as PlannedKernel['kernelFunc'], release: [], views });
    });
    const remap = (s: Slot): Slot => (s.k === 'out' && !foldedKernels.has(s.kernel) ? { k: 'out', kernel: newIndex.get(s.kernel) as number, index: s.index } : materialize(s));
    this.outputs = r.outputs.map(([n, s]) => [n, remap(s)]);
    this.assigns = r.assigns.map((a) => ({ v: a.v, slot: remap(a.slot) }));
    // Passes over the kernels that run: each gives the new list and every kept kernel's new index.
    /** The out slots the step returns or assigns (never released). */
    const keptOut = (): Set<string> => {
      const kept = new Set<string>();
      for (const [, s] of this.outputs) if (s.k === 'out') kept.add(outKey(s.kernel, s.index));
      for (const a of this.assigns) if (a.slot.k === 'out') kept.add(outKey(a.slot.kernel, a.slot.index));
      return kept;
    };
    const apply = (result: { kernels: PlannedKernel[]; index: Map<number, number> }) => {
      this.kernels.splice(0, this.kernels.length, ...result.kernels);
      const renumber = (s: Slot): Slot => (s.k === 'out' ? { k: 'out', kernel: result.index.get(s.kernel) as number, index: s.index } : s);
      this.outputs = this.outputs.map(([n, s]) => [n, renumber(s)]);
      this.assigns = this.assigns.map((a) => ({ v: a.v, slot: renumber(a.slot) }));
    };
    const inPlace = (list: PlannedKernel[]) => (i: number) => IN_PLACE[list[i].name] !== undefined;
    // Bias adds into the convolution or matmul before them (native; on wasm, the convolutions in our SIMD: epilogue.ts).
    if (epilogueSwitch.fuseBias && (backendName === 'native' || backendName === 'wasm')) {
      const planned = this.kernels.slice();
      const simd = backendName === 'wasm' && trainKernelsUnavailable(backend as unknown as WasmBackendLike) === null;
      const e = fuseBiasAdds(planned, (i) => r.kernels[planned[i].source].rec, keptOut(), inPlace(planned), (name) => tf.getKernel(name, backendName)?.kernelFunc as PlannedKernel['kernelFunc'] | undefined, backendName, simd);
      if (e.fused > 0) {
        apply(e);
        this.fusedBiases = e.fused;
      }
    }
    // ReLUs into those fused GEMMs' epilogues (native: blas.c computes Relu's bits there).
    if (epilogueSwitch.fuseRelu && backendName === 'native') {
      const planned = this.kernels.slice();
      const e = fuseReluActivations(planned, (i) => r.kernels[planned[i].source].rec, keptOut());
      if (e.fused > 0) {
        apply(e);
        this.fusedRelus = e.fused;
      }
    }
    // Relu's gradient in the pass of the max pool's gradient before it (native: maxpool.c).
    if (epilogueSwitch.fusePoolGrad && backendName === 'native') {
      const planned = this.kernels.slice();
      const e = fuseMaxPoolReluGrads(planned, (i) => r.kernels[planned[i].source].rec, keptOut(), inPlace(planned), tf.getKernel(MAX_POOL_RELU_GRAD, backendName)?.kernelFunc as PlannedKernel['kernelFunc'] | undefined);
      if (e.fused > 0) {
        apply(e);
        this.fusedPoolGrads = e.fused;
      }
    }
    // Element-wise chains as one kernel each (on the backends whose memory our kernels run on).
    if (planSwitch.fuseElementwise && (backend as unknown as { wasm?: { HEAPU8?: unknown } }).wasm?.HEAPU8 instanceof Uint8Array) {
      const planned = this.kernels.slice();
      const f = fuseElementwise(planned, (i) => r.kernels[planned[i].source].rec, keptOut(), inPlace(planned), backend, backendName);
      if (f.chains > 0) {
        apply(f);
        this.fusedChains = f.chains;
        this.fusedKernels = f.replaced;
      }
    }
    // Last readers: an output nobody reads is released right after its kernel; the step's outputs never.
    const kept = keptOut();
    const last = new Map<string, number>();
    this.kernels.forEach((k, i) => {
      for (let j = 0; j < k.outputs; j++) last.set(`${i}:${j}`, i);
      for (const s of k.inputs) if (s?.k === 'out') last.set(`${s.kernel}:${s.index}`, i);
    });
    for (const [key, i] of last) if (!kept.has(key)) this.kernels[i].release.push(key.split(':').map(Number) as [number, number]);
    // Peak bytes alive during a replay (recorded shapes) of the outputs `counted` says.
    const outBytes = (i: number, j: number) => bytesOf(r.kernels[this.kernels[i].source].rec.outputs[j]);
    const peakOf = (counted: (i: number, j: number) => boolean) => {
      let live = 0;
      let most = 0;
      this.kernels.forEach((k, i) => {
        for (let j = 0; j < k.outputs; j++) if (counted(i, j)) live += outBytes(i, j);
        most = Math.max(most, live);
        for (const [a, b] of k.release) if (counted(a, b)) live -= outBytes(a, b);
      });
      return most;
    };
    const peak = peakOf(() => true);
    const constBytes = this.consts.reduce((a, c) => a + bytesOf(c), 0);
    this.peakBytes = peak;
    // The intermediates' offsets in one arena: from the writer to the last reader of each (arena.ts).
    const wasm = wasmBackendOf(backend);
    if (arenaSwitch.planMemory && wasm) {
      const lastReader = new Map<string, number>();
      this.kernels.forEach((k, i) => { for (const [a, b] of k.release) lastReader.set(outKey(a, b), i); });
      // A kernel that gave its input back as its output when recorded (an Identity the step returns,
      // an ExpandDims) shares that input's data: neither lives in the arena.
      const shared = new Set<number>();
      this.kernels.forEach((k, i) => {
        const rec = r.kernels[k.source].rec;
        if (!SAME_VALUES.has(k.name) && !rec.outputs.some((o) => rec.inputIds.includes(o.dataId))) return;
        shared.add(i);
        for (const s of k.inputs) if (s?.k === 'out') shared.add(s.kernel);
      });
      const items: Lifetime[] = [];
      const slots: ArenaSlot[] = [];
      this.kernels.forEach((k, i) => {
        // A kernel whose outputs leave the step keeps normal allocations for all of them.
        if (shared.has(i)) return;
        for (let j = 0; j < k.outputs; j++) if (kept.has(outKey(i, j))) return;
        for (let j = 0; j < k.outputs; j++) {
          const t = r.kernels[k.source].rec.outputs[j];
          const last = lastReader.get(outKey(i, j));
          if (last === undefined || !t || (t.dtype !== 'float32' && t.dtype !== 'int32' && t.dtype !== 'bool')) continue;
          items.push({ bytes: bytesOf(t), first: i, last });
          slots.push({ kernel: i, index: j, shape: t.shape.slice(), dtype: t.dtype, offset: 0 });
        }
      });
      const layout = planArena(items);
      slots.forEach((s, n) => (s.offset = layout.offsets[n]));
      if (slots.length) this.arena = new ReplayArena(wasm, slots, layout.bytes);
    }
    // With an arena: the arena, what lives outside it (the step's outputs, values shared with them) and the constants.
    const inArena = new Set((this.arena?.slots ?? []).map((s) => outKey(s.kernel, s.index)));
    this.bytes = (this.arena ? this.arena.bytes + peakOf((i, j) => !inArena.has(outKey(i, j))) : peak) + constBytes;
    this.kernelCount = this.kernels.length;
    this.folded = [...foldedKernels].filter((i) => needed.has(i)).length;
    this.viewed = viewOf.size;
    this.optimizerKernels = this.kernels.filter((k) => k.name === ADAM_STEP).length;
  }

  /** What progress says of the plan's memory: its bytes, in one arena or not, and what did not go as planned (said once). */
  memoryDetail(): string {
    const mb = (b: number) => `${(b / 1048576).toFixed(1)} MB`;
    if (!this.arena) return mb(this.bytes);
    const misses = this.arena.misses.length ? `; not as planned: ${this.arena.misses.join('; ')}` : '';
    return `${mb(this.bytes)}, ${mb(this.arena.bytes)} of it one arena${misses}`;
  }

  /** Arena values a replay had to move to their own allocation, since the plan was built (0: every output stayed where planned). */
  get arenaMoves(): number {
    return this.arena?.moved ?? 0;
  }

  /** Notes of what did not go as planned in the arena (outputs allocated outside it, values moved out). */
  get arenaMisses(): readonly string[] {
    return this.arena?.misses ?? [];
  }

  /** The kernels a replay calls, by name, in order (to count them). */
  kernelNames(): string[] {
    return this.kernels.map((k) => k.name);
  }

  /**
   * The variables a replay changes: those it assigns and those a kernel writes in place (the
   * fused Adam's moments): the state to save and restore around a replay that is being checked.
   */
  variables(): tf.Variable[] {
    const out = new Set<tf.Variable>();
    for (const k of this.kernels) {
      const written = IN_PLACE[k.name];
      if (written && k.keys) k.keys.forEach((key, j) => { const s = k.inputs[j]; if (written.includes(key) && s?.k === 'var') out.add(s.v); });
    }
    for (const a of this.assigns) out.add(a.v);
    return [...out];
  }

  /**
   * What a replay that failed at kernel `at` throws: `err` as it is when no kernel before it wrote
   * a variable in place (nothing of the step is left: the caller may run it eagerly instead), else
   * a {@link TrainingStepError} naming the variables whose state took the step already. An
   * in-place kernel writes only after its checks and its output's allocation (adam.ts), so the
   * failing kernel itself wrote nothing.
   */
  private failure(err: unknown, at: number): unknown {
    const written: string[] = [];
    for (let i = 0; i < at; i++) {
      const k = this.kernels[i];
      const inPlace = IN_PLACE[k.name];
      if (!inPlace || !k.keys) continue;
      const x = k.keys.indexOf('x');
      const s = x >= 0 ? k.inputs[x] : null;
      written.push(s?.k === 'var' ? s.v.name : `kernel ${i}'s`);
    }
    if (written.length === 0) return err;
    const why = err instanceof Error ? err.message : String(err);
    const n = written.length;
    return new TrainingStepError(
      `the compiled training step failed at kernel ${this.kernels[at].name} (${why}) after the optimizer had updated the moments of ${n} variable${n === 1 ? '' : 's'} in place (${written.join(', ')}); the weights are as before this step, but running it again would count its gradient twice in those moments: train again from the weights you hold (or your last checkpoint), or with eager steps (step: 'eager', --step eager)`,
      { kernel: this.kernels[at].name, variables: written, cause: why },
    );
  }

  private write(values: Float32Array | Int32Array | Uint8Array, shape: number[], dtype: string): TensorInfo {
    const copy = dtype === 'int32' ? Int32Array.from(values) : dtype === 'bool' ? Uint8Array.from(values) : Float32Array.from(values);
    const dataId = this.backend.write(copy, shape, dtype as TensorInfo['dtype']);
    return { dataId, shape: shape.slice(), dtype: dtype as TensorInfo['dtype'] };
  }

  /**
   * The plan of a step recorded twice: the first recording resolved, the second with its `feeds`
   * (its tensors still alive).
   * @throws PlanRefused with the reason the step cannot be replayed.
   */
  static build(a: Resolved, second: Recording<StepOutputs>, feedsSecond: Record<string, tf.Tensor>): StepPlan {
    const b = resolve(second, feedsSecond);
    const why = difference(a, b);
    if (why) throw new PlanRefused(why);
    return new StepPlan(tf.engine().backend, b, feedsSecond);
  }

  /** Why this plan cannot run now (a tensor it reads was disposed, a feed changed shape), or undefined. */
  stale(feeds: Record<string, tf.Tensor>): string | undefined {
    if (this.disposed) return 'the plan was disposed';
    for (const t of this.exts) if (t.isDisposed) return `a ${shapeText(t)} ${t instanceof tf.Variable ? `variable (${t.name})` : 'tensor'} the step reads was replaced`;
    if (Object.keys(feeds).length !== this.feedShapes.size) return 'the step has other feeds';
    for (const [role, t] of Object.entries(feeds)) if (this.feedShapes.get(role) !== shapeText(t)) return `feed ${role} is ${shapeText(t)}, the plan's ${this.feedShapes.get(role)}`;
    return undefined;
  }

  /**
   * One step: every kernel called on the backend directly; the variables the step assigns take
   * their new values; the outputs come back as tensors (in the caller's tf.tidy scope).
   */
  replay(feeds: Record<string, tf.Tensor>, profile: ReplayProfile | null = null): StepOutputs {
    const backend = this.backend;
    // Timers only when profiling: without a profile a replay reads no clock.
    const c0 = profile && typeof process !== 'undefined' ? process.cpuUsage() : null;
    const t0 = profile ? performance.now() : 0;
    const entries = profile ? this.kernels.map((k) => {
      let e = profile.kernels.get(k.name);
      if (!e) profile.kernels.set(k.name, (e = { calls: 0, ms: 0 }));
      return e;
    }) : null;
    const outs: (TensorInfo[] | undefined)[] = new Array(this.kernels.length);
    const read = (s: Slot): TensorInfo => {
      switch (s.k) {
        case 'feed': return infoOf(feeds[s.role]);
        case 'var': return infoOf(s.v);
        case 'ext': return infoOf(s.t);
        case 'const': return this.consts[s.i];
        case 'out': return (outs[s.kernel] as TensorInfo[])[s.index];
      }
    };
    // The intermediates go to their planned offsets (unless this plan's replay is already lending its arena).
    const arena = this.arena?.begin() ? this.arena : null;
    // The kernel running (a failure names the in-place writes done before it).
    let at = 0;
    try {
      const kernels = this.kernels;
      for (let i = 0; i < kernels.length; i++) {
        at = i;
        const k = kernels[i];
        const { keys, views } = k;
        const given = k.inputs;
        // The inputs as the kernel takes them: a list, or by name.
        const list: (TensorInfo | null)[] | null = keys === null ? new Array(given.length) : null;
        const named: Record<string, TensorInfo | null> | null = keys === null ? null : {};
        for (let j = 0; j < given.length; j++) {
          const slot = given[j];
          let info: TensorInfo | null = null;
          if (slot) {
            info = read(slot);
            const view = views[j];
            if (view) info = { dataId: info.dataId, shape: view, dtype: info.dtype };
          }
          if (list) list[j] = info;
          else (named as Record<string, TensorInfo | null>)[(keys as string[])[j]] = info;
        }
        const s = entries ? performance.now() : 0;
        arena?.expect(i);
        const out = k.kernelFunc({ inputs: list ?? named, attrs: k.attrs, backend });
        outs[i] = Array.isArray(out) ? out : [out];
        arena?.settle(i, k.name, outs[i] as TensorInfo[]);
        const f = entries ? performance.now() : 0;
        const release = k.release;
        for (let r = 0; r < release.length; r++) {
          const held = outs[release[r][0]] as TensorInfo[];
          backend.disposeData(held[release[r][1]].dataId);
          held[release[r][1]] = RELEASED;
        }
        if (entries && profile) {
          entries[i].ms += f - s;
          entries[i].calls++;
          profile.freeMs += performance.now() - f;
        }
      }
    } catch (e) {
      // Release what this replay made, then let the caller fall back.
      outs.forEach((list) => list?.forEach((info) => { if (info !== RELEASED) backend.disposeData(info.dataId); }));
      // A failing kernel's output lent a planned range and never returned: let go, not moved out.
      arena?.abort();
      throw this.failure(e, at);
    } finally {
      arena?.end();
    }
    const engine = tf.engine();
    const wrapped = new Map<object, tf.Tensor>();
    const tensorOf = (s: Slot): tf.Tensor => {
      if (s.k === 'out') {
        const info = (outs[s.kernel] as TensorInfo[])[s.index];
        let t = wrapped.get(info.dataId);
        if (!t) wrapped.set(info.dataId, (t = engine.makeTensorFromTensorInfo(info, backend)));
        return t;
      }
      const info = read(s);
      // A constant or an input given back as is: a new tensor holding its own reference.
      backend.incRef(info.dataId);
      return engine.makeTensorFromTensorInfo(info, backend);
    };
    const f0 = profile ? performance.now() : 0;
    for (const a of this.assigns) a.v.assign(tensorOf(a.slot));
    const result: StepOutputs = this.outputs.map(([n, s]) => [n, tensorOf(s)]);
    if (profile) {
      const end = performance.now();
      profile.finishMs += end - f0;
      profile.wallMs += end - t0;
      if (c0) {
        const c = process.cpuUsage(c0);
        profile.cpuMs += (c.user + c.system) / 1000;
      }
      profile.replays++;
      profile.calls += this.kernels.length;
    }
    return result;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const c of this.consts) this.backend.disposeData(c.dataId);
    this.arena?.dispose();
  }
}
