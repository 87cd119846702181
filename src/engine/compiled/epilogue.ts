/**
 * Bias adds moved into the GEMM before them (issue 63: "GEMM with the bias ... fused in its
 * epilogue"): a plan pass that finds a Conv2D or BatchMatMul whose output only an Add of one value
 * per output channel reads (a layer's bias), and runs FusedConv2D or _FusedMatMul with that bias
 * instead: one kernel call and one output where there were two, the bias added while the GEMM's
 * output is still in cache.
 *
 * On the native backend, whose fused kernels (src/engine/kernels/native/kernels.ts) run the same
 * GEMM as the plain ones and then add the bias to each finished value (blocks.c's epilogue, on
 * each block of the product as its thread finishes it): y + b in float32 as tfjs' Add computes it,
 * so the step keeps its bits. On wasm only the
 * convolutions conv2d.c runs (src/engine/kernels/conv2d.ts), which add the bias the same way;
 * XNNPACK's fused kernels start their sums from the bias, which rounds otherwise: matmuls and the
 * other convolutions are not fused there. The pass leaves the activation alone: training reads
 * the value before it (the activation's gradient takes it).
 */
import type { NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';
import { convInWasmCovers, convShapeOf, forwardInfo } from '../kernels/conv2d.ts';
import { simdKernelSwitch } from '../kernels/train-kernels-simd.ts';
import { RELU_GRAD } from '../kernels/activation-grad.ts';
import { MAX_POOL_RELU_GRAD } from '../kernels/native/kernels.ts';
import { outKey, readersOf, renumberOutSlots, sizeOf, withoutLeadingOnes, type KernelShapes, type PlannedKernel, type Slot } from './planned.ts';

/**
 * Kill switches for benchmarks and tests: `fuseBias` false builds plans without bias epilogues,
 * `fuseRelu` false without ReLUs in them ({@link fuseReluActivations}), `fusePoolGrad` false
 * without Relu's gradient in a max pool's ({@link fuseMaxPoolReluGrads}).
 */
export const epilogueSwitch = { fuseBias: true, fuseRelu: true, fusePoolGrad: true };

const GEMMS: Record<string, { fused: string; keys: string[] }> = {
  Conv2D: { fused: 'FusedConv2D', keys: ['x', 'filter'] },
  BatchMatMul: { fused: '_FusedMatMul', keys: ['a', 'b'] },
};

/**
 * Whether the backend's fused kernel runs this GEMM itself and adds the bias to each finished sum.
 * Native: channels-last convolutions, matmuls whose batches match or broadcast from 1 (else it
 * hands them to the wasm kernel, which adds the bias otherwise). Wasm (`simd`: our SIMD kernels
 * run there): the float32 convolutions conv2d.c covers with `simdKernelSwitch.convInWasm` on.
 */
function fusedRuns(gemm: PlannedKernel, shapes: KernelShapes, backend: 'native' | 'wasm', simd: boolean): boolean {
  if (gemm.name === 'Conv2D') {
    const f = gemm.attrs.dataFormat;
    if (!(f === undefined || f === 'NHWC' || f === 'channelsLast')) return false;
    if (backend === 'native') return true;
    const [x, filter] = shapes.inputs;
    if (!simd || !simdKernelSwitch.enabled || !simdKernelSwitch.convInWasm || !x || !filter || x.shape.length !== 4 || filter.shape.length !== 4) return false;
    return convInWasmCovers(convShapeOf(forwardInfo(x, filter, gemm.attrs)), 'forward');
  }
  if (backend === 'wasm') return false;
  const [a, b] = shapes.inputs;
  if (!a || !b || a.shape.length < 2 || b.shape.length < 2) return false;
  const batchA = sizeOf(a.shape.slice(0, -2));
  const batchB = sizeOf(b.shape.slice(0, -2));
  return batchA === batchB || batchA === 1 || batchB === 1;
}

/** The result of {@link fuseBiasAdds}: the kernels, and each old kernel's new index. */
export interface EpilogueResult {
  kernels: PlannedKernel[];
  index: Map<number, number>;
  fused: number;
}

/**
 * Fuse bias adds into their GEMMs (`kernels` in order; `shapes` recorded per kernel; `kept`: out
 * slots the step returns or assigns; `inPlace`: kernels writing an input in place, which the
 * GEMM's reads may not move past; `fusedKernel(name)`: the backend's kernel function, or
 * undefined where it has none; `backend`: which, and `simd`: whether our SIMD kernels run on it).
 */
export function fuseBiasAdds(kernels: PlannedKernel[], shapes: (i: number) => KernelShapes, kept: ReadonlySet<string>, inPlace: (i: number) => boolean, fusedKernel: (name: string) => PlannedKernel['kernelFunc'] | undefined, backend: 'native' | 'wasm' = 'native', simd = false): EpilogueResult {
  const readers = readersOf(kernels);
  const writes = kernels.map((_, i) => i).filter(inPlace);
  /** Add index -> its GEMM's index. */
  const into = new Map<number, { gemm: number; bias: number }>();
  kernels.forEach((k, i) => {
    if (k.name !== 'Add' || k.keys?.join() !== 'a,b' || k.inputs.length !== 2 || k.outputs !== 1) return;
    const out = shapes(i).outputs[0];
    if (out.dtype !== 'float32') return;
    for (const [g, b] of [[0, 1], [1, 0]]) {
      const s = k.inputs[g];
      const bias = shapes(i).inputs[b];
      if (s?.k !== 'out' || !bias || !k.inputs[b] || bias.dtype !== 'float32') continue;
      const gemm = kernels[s.kernel];
      const kind = GEMMS[gemm.name];
      if (!kind || gemm.outputs !== 1 || gemm.keys?.join() !== kind.keys.join() || !fusedKernel(kind.fused)) continue;
      const r = readers.get(outKey(s.kernel, 0)) ?? [];
      if (kept.has(outKey(s.kernel, 0)) || r.length !== 1 || r[0] !== i) continue;
      const gOut = shapes(s.kernel).outputs[0];
      // The Add may read the GEMM's output under another shape of the same rows (a matmul's
      // [batch * tokens, n] read as [batch, tokens, n]).
      const C = out.shape[out.shape.length - 1];
      if (gOut.dtype !== 'float32' || gOut.shape[gOut.shape.length - 1] !== C || sizeOf(gOut.shape) !== sizeOf(out.shape)) continue;
      if (out.shape.length === 0 || withoutLeadingOnes(bias.shape) !== String(C)) continue;
      if (gemm.inputs.some((x, j) => !x || shapes(s.kernel).inputs[j]?.dtype !== 'float32')) continue;
      if (!fusedRuns(gemm, shapes(s.kernel), backend, simd)) continue;
      if (writes.some((w) => w > s.kernel && w < i)) continue;
      into.set(i, { gemm: s.kernel, bias: b });
      break;
    }
  });
  const dropped = new Set([...into.values()].map((x) => x.gemm));
  const out: PlannedKernel[] = [];
  const index = new Map<number, number>();
  kernels.forEach((k, i) => {
    if (dropped.has(i)) return;
    index.set(i, out.length);
    const f = into.get(i);
    if (!f) {
      out.push(k);
      return;
    }
    const gemm = kernels[f.gemm];
    const kind = GEMMS[gemm.name];
    const shape = shapes(i).outputs[0].shape.slice();
    const C = shape[shape.length - 1];
    const run = fusedKernel(kind.fused) as PlannedKernel['kernelFunc'];
    out.push({
      name: kind.fused,
      source: k.source,
      keys: [...kind.keys, 'bias'],
      inputs: [...gemm.inputs, k.inputs[f.bias] as Slot],
      attrs: { ...gemm.attrs, activation: 'linear' } as NamedAttrMap,
      outputs: 1,
      // The output under the Add's shape (the same values in the same order), as its readers read it.
      kernelFunc: (args) => {
        const y = run(args) as TensorInfo;
        y.shape = shape;
        return y;
      },
      release: [],
      views: [...gemm.views, [C]],
    });
  });
  renumberOutSlots(out, index);
  return { kernels: out, index, fused: into.size };
}

/**
 * ReLUs moved into the epilogue of the fused GEMM before them (native): a FusedConv2D or
 * _FusedMatMul with a linear activation whose output only one Relu and Relu's gradients read
 * computes relu(sum + bias) itself (blocks.c's epilogue, the same bits as the Relu kernel:
 * zero wherever the sign bit is set), the Relu's kernel call and its output go, and its readers
 * read the GEMM's output. Relu's gradient then reads relu(z) where it read z: z > 0 exactly where
 * relu(z) > 0, so the gradient keeps its bits (a NaN with its sign bit set, which Relu zeroes,
 * excepted: its gradient becomes 0 where it was NaN; such a step has a NaN loss anyway). tfjs
 * does the same for its own fused kernels (their gradient reads the output). Run after
 * {@link fuseBiasAdds}, on native only (wasm's fused kernels are left as they are).
 */
export function fuseReluActivations(kernels: PlannedKernel[], shapes: (i: number) => KernelShapes, kept: ReadonlySet<string>): EpilogueResult {
  const readers = readersOf(kernels);
  /** Relu index -> its GEMM's index. */
  const into = new Map<number, number>();
  kernels.forEach((k, g) => {
    if ((k.name !== 'FusedConv2D' && k.name !== '_FusedMatMul') || k.outputs !== 1) return;
    const prelu = k.keys?.indexOf('preluActivationWeights') ?? -1;
    if ((k.attrs.activation ?? 'linear') !== 'linear' || (prelu >= 0 && k.inputs[prelu] !== null)) return;
    const key = outKey(g, 0);
    if (kept.has(key) || shapes(g).outputs[0]?.dtype !== 'float32') return;
    const r = readers.get(key) ?? [];
    const relus = r.filter((i) => kernels[i].name === 'Relu');
    if (relus.length !== 1) return;
    const relu = kernels[relus[0]];
    if (relu.outputs !== 1 || relu.inputs.length !== 1 || relu.views[0] !== null) return;
    const rs = shapes(relus[0]);
    if (rs.outputs[0]?.dtype !== 'float32' || rs.inputs[0]?.shape.join() !== rs.outputs[0].shape.join()) return;
    // Every other reader is Relu's gradient reading it as the value Relu read (never as dy).
    const others = r.filter((i) => i !== relus[0]);
    const gradOnly = others.every((i) => {
      const rg = kernels[i];
      const x = rg.inputs[1];
      const dy = rg.inputs[0];
      return rg.name === RELU_GRAD && rg.keys?.join() === 'dy,x' && x?.k === 'out' && x.kernel === g && x.index === 0 && !(dy?.k === 'out' && dy.kernel === g);
    });
    if (!gradOnly) return;
    into.set(relus[0], g);
  });
  const gemms = new Set(into.values());
  const out: PlannedKernel[] = [];
  const index = new Map<number, number>();
  kernels.forEach((k, i) => {
    const g = into.get(i);
    if (g !== undefined) {
      index.set(i, index.get(g) as number);
      return;
    }
    index.set(i, out.length);
    out.push(gemms.has(i) ? { ...k, attrs: { ...k.attrs, activation: 'relu' } as NamedAttrMap } : k);
  });
  renumberOutSlots(out, index);
  return { kernels: out, index, fused: into.size };
}

/**
 * Relu's gradient in the pass of the max pool's gradient before it (native): a MaxPoolGrad whose
 * output only one Relu gradient reads, as its dy, becomes one NeuralDiffMaxPoolReluGrad call at
 * the Relu gradient's place (maxpool.c: each item's dx scattered, then times step(x) while it is
 * in cache, the two kernels' bits). `inPlace`: kernels writing an input in place, which the
 * pool gradient's reads may not move past; `fusedKernel`: the backend's kernel, or undefined.
 */
export function fuseMaxPoolReluGrads(kernels: PlannedKernel[], shapes: (i: number) => KernelShapes, kept: ReadonlySet<string>, inPlace: (i: number) => boolean, fusedKernel: PlannedKernel['kernelFunc'] | undefined): EpilogueResult {
  if (fusedKernel === undefined) return { kernels, index: new Map(kernels.map((_, i) => [i, i])), fused: 0 };
  const readers = readersOf(kernels);
  const writes = kernels.map((_, i) => i).filter(inPlace);
  /** Relu gradient index -> its MaxPoolGrad's index. */
  const into = new Map<number, number>();
  kernels.forEach((k, m) => {
    if (k.name !== 'MaxPoolGrad' || k.outputs !== 1 || k.keys?.join() !== 'dy,input,output' || kept.has(outKey(m, 0))) return;
    const r = readers.get(outKey(m, 0)) ?? [];
    if (r.length !== 1) return;
    const rg = kernels[r[0]];
    const dy = rg.inputs[0];
    const x = rg.inputs[1];
    if (rg.name !== RELU_GRAD || rg.keys?.join() !== 'dy,x' || rg.outputs !== 1 || dy?.k !== 'out' || dy.kernel !== m || !x || (x.k === 'out' && x.kernel === m)) return;
    const ms = shapes(m);
    const rs = shapes(r[0]);
    if ([...ms.inputs, ...rs.inputs, ...ms.outputs, ...rs.outputs].some((t) => t?.dtype !== 'float32')) return;
    if (ms.inputs.some((t) => t?.shape.length !== 4) || sizeOf(rs.inputs[1]?.shape ?? []) !== sizeOf(ms.outputs[0].shape)) return;
    if (writes.some((w) => w > m && w < r[0])) return;
    into.set(r[0], m);
  });
  const pools = new Set(into.values());
  const out: PlannedKernel[] = [];
  const index = new Map<number, number>();
  kernels.forEach((k, i) => {
    if (pools.has(i)) return;
    index.set(i, out.length);
    const m = into.get(i);
    if (m === undefined) {
      out.push(k);
      return;
    }
    index.set(m, out.length);
    const pool = kernels[m];
    const shape = shapes(i).outputs[0].shape.slice();
    out.push({
      name: MAX_POOL_RELU_GRAD,
      source: k.source,
      keys: ['dy', 'input', 'output', 'x'],
      inputs: [...pool.inputs, k.inputs[1]],
      attrs: pool.attrs,
      outputs: 1,
      // The output under the Relu gradient's shape (the same values in the same order), as its readers read it.
      kernelFunc: (args) => {
        const y = fusedKernel(args) as TensorInfo;
        y.shape = shape;
        return y;
      },
      release: [],
      views: [...pool.views, k.views[1]],
    });
  });
  renumberOutSlots(out, index);
  return { kernels: out, index, fused: into.size };
}
