/**
 * The native backend's element-wise, row and reduction kernels (elementwise.c, issue 63) in place
 * of the wasm kernels of the same name: the exact GELU and its gradient, a LayerNorm's
 * normalisation and its gradient, Softmax over the last axis and its gradient, Sum and Mean over
 * adjacent axes, Transpose of 4-byte elements, the binary ops (Add, Sub, Multiply, RealDiv,
 * Maximum, Minimum, SquaredDifference) with broadcasting, Relu's, Relu6's and ClipByValue's
 * gradients, and the compiled step's fused chains. Each runs on the addon's
 * pool on views of the wasm heap, cut into parts from its shape alone.
 *
 * All but Softmax give the wasm kernel's bits (the same float32 operations in the same order, at
 * any thread count): the wasm kernels' scalar twins (transformer.ts, softmax-grad.ts, sum.ts, transpose.ts,
 * elementwise.ts) are theirs too. Softmax on wasm is XNNPACK's, whose exponential is not ours:
 * {@link softmaxJs} is the native one's scalar twin, bit for bit, and {@link softmaxReference}
 * the float64 reference both are held to.
 *
 * Tensors smaller than {@link nativeElementwiseLimits} stay on the wasm kernel (waking the pool
 * and crossing into the addon cost more than they give there; a kernel measured no faster than
 * wasm's at the sizes that occur has no limit it reaches yet); so do other dtypes and axes.
 */
import * as tf from '@tensorflow/tfjs';
import type { KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs';
import { asWasm, f32, i32, sizeOf, type WasmBackendLike } from '../util.ts';
import { transposeGeometry } from '../transpose.ts';
import { OP, type ElementwiseProgram } from '../elementwise.ts';
import { SOFTMAX_GRAD } from '../softmax-grad.ts';
import { CLIP_GRAD, RELU6_GRAD, RELU_GRAD } from '../activation-grad.ts';
import type { NativeBlasAddon } from './loader.ts';
import { splitSizes } from '../slice.ts';

type KernelArgs = Parameters<KernelFunc>[0];

/**
 * The fewest elements a kernel takes to the addon (below, the wasm kernel runs); benchmarks and
 * tests change them (0: every size). Set from bench/native-elementwise.ts on the transformer's
 * sizes at one thread (docs/benchmarks/training-speed.md), wasm / native: GELU and its gradient
 * 2.2-3.0x, Sum and Mean 1.3-60x, fused chains 1.2-2.0x, LayerNorm 1.2-1.6x and its gradient
 * 1.0-1.4x (from 4,096 values), Transpose 1.1-1.5x (from 16,384; SplitV and Concat too),
 * Softmax 1.1-1.2x on the attention's 131,072 scores and 0.8-1.0x on a quarter of them (from 65,536), Softmax's gradient
 * 1.2-1.9x; the binary ops with broadcasting from 32,768 values (a residual Add 0.9-1.2x, Multiply
 * by a channel or [B, 1, C] vector 1.3-1.9x, RealDiv by the attention's scale 1.4-1.5x; below,
 * 0.7-1.3x); the activation gradients are not measured yet: off (Infinity).
 */
export const nativeElementwiseLimits = {
  gelu: 1024,
  sum: 4096,
  chain: 4096,
  rows: 4096,
  softmax: 65536,
  transpose: 16384,
  binary: 32768,
  activationGrad: Number.POSITIVE_INFINITY,
};

const fround = Math.fround;

/** Round half to even, as the C kernel's __builtin_roundevenf. */
function roundEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

const bits = new Int32Array(1);
const bitsF = new Float32Array(bits.buffer);

/** elementwise.c's exp8 (Cephes' expf) on one value, float32 operation by operation. */
export function expF32(xIn: number): number {
  let x = fround(xIn);
  if (Number.isNaN(x)) return x;
  x = x > 88.3 ? fround(88.3) : x < -87.3 ? fround(-87.3) : x;
  const n = roundEven(fround(x * fround(1.44269504088896341)));
  let r = fround(x - fround(n * fround(0.693359375)));
  r = fround(r - fround(n * fround(-2.1219444e-4)));
  let p = fround(1.98756915e-4);
  for (const c of [1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1]) p = fround(fround(p * r) + fround(c));
  const y = fround(fround(fround(fround(p * r) * r) + r) + 1);
  bits[0] = (n + 127) * (1 << 23);
  return fround(y * bitsF[0]);
}

/**
 * Scalar twin of elementwise.c's softmax, bit for bit: e = exp(x - max) (0 below -87.3), then e
 * divided by the row's sum, added in float64 in eight lanes (i % 8; pairwise; the tail after the
 * last whole eight in order) and rounded once.
 */
export function softmaxJs(x: Float32Array, y: Float32Array, width: number): void {
  const body = width - (width % 8);
  const lanes = new Float64Array(8);
  for (let at = 0; at < x.length; at += width) {
    let m = -Infinity;
    for (let i = at; i < at + width; i++) if (x[i] > m) m = x[i];
    for (let i = at; i < at + width; i++) {
      const d = fround(x[i] - m);
      y[i] = d < -87.3 ? 0 : expF32(d);
    }
    lanes.fill(0);
    for (let i = 0; i < body; i++) lanes[i % 8] += y[at + i];
    let sd = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    for (let i = body; i < width; i++) sd += y[at + i];
    const s = fround(sd);
    for (let i = at; i < at + width; i++) y[i] = fround(y[i] / s);
  }
}

/** Softmax over rows of `width` in float64 (the reference). */
export function softmaxReference(x: ArrayLike<number>, width: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let at = 0; at < x.length; at += width) {
    let m = -Infinity;
    for (let i = at; i < at + width; i++) m = Math.max(m, x[i]);
    let s = 0;
    for (let i = at; i < at + width; i++) s += y[i] = Math.exp(x[i] - m);
    for (let i = at; i < at + width; i++) y[i] /= s;
  }
  return y;
}

/** A program's instructions, input kinds and immediates as elementwise.c reads them (kept per program). */
const encoded = new WeakMap<ElementwiseProgram, { code: Int32Array; kinds: Int32Array; immediates: Float32Array }>();

export function encodeProgram(p: ElementwiseProgram) {
  let e = encoded.get(p);
  if (!e) {
    const code = new Int32Array(5 * p.code.length);
    p.code.forEach((ins, k) => code.set([OP[ins.op], ins.dst, ins.a, ins.b ?? ins.a, ins.c ?? ins.a], 5 * k));
    const kinds = Int32Array.from(p.inputs, (k) => (k === 'full' ? 0 : k === 'scalar' ? 1 : 2));
    e = { code, kinds, immediates: Float32Array.from(p.immediates) };
    encoded.set(p, e);
  }
  return e;
}

/**
 * A fused chain's program on the addon (what the compiled step's chains run on native): null when
 * the output is smaller than the limit, for the wasm kernel to run it. Inputs checked by the caller.
 */
export function nativeElementwiseRunner(addon: NativeBlasAddon) {
  return (backendArg: unknown, p: ElementwiseProgram, inputs: TensorInfo[], shape: number[]): TensorInfo | null => {
    const n = sizeOf(shape);
    if (n < Math.max(1, nativeElementwiseLimits.chain)) return null;
    const backend = asWasm(backendArg);
    const { code, kinds, immediates } = encodeProgram(p);
    const out = backend.makeOutput([...shape], 'float32');
    addon.elementwise(code, kinds, inputs.map((t) => f32(backend, t)), immediates, p.registers, f32(backend, out), p.channels);
    return out;
  };
}

const isF32 = (...ts: (TensorInfo | undefined)[]) => ts.every((t) => t !== undefined && t.dtype === 'float32');

function gelu(addon: NativeBlasAddon, fallback: KernelConfig, args: KernelArgs) {
  const x = args.inputs.x as TensorInfo | undefined;
  if (!isF32(x) || sizeOf((x as TensorInfo).shape) < Math.max(1, nativeElementwiseLimits.gelu)) return fallback.kernelFunc(args);
  const b = asWasm(args.backend);
  const y = b.makeOutput([...(x as TensorInfo).shape], 'float32');
  addon.geluForward(f32(b, x as TensorInfo), f32(b, y));
  return y;
}

function geluGrad(addon: NativeBlasAddon, fallback: KernelConfig, args: KernelArgs) {
  const { dy, x } = args.inputs as Record<string, TensorInfo | undefined>;
  if (!isF32(dy, x) || sizeOf((x as TensorInfo).shape) < Math.max(1, nativeElementwiseLimits.gelu) || sizeOf((dy as TensorInfo).shape) !== sizeOf((x as TensorInfo).shape)) return fallback.kernelFunc(args);
  const b = asWasm(args.backend);
  const dx = b.makeOutput([...(x as TensorInfo).shape], 'float32');
  addon.geluGrad(f32(b, dy as TensorInfo), f32(b, x as TensorInfo), f32(b, dx));
  return dx;
}

/** The last axis's length, or 0 when a row kernel cannot take `t` (not float32, rank 0, empty, small). */
function rowWidth(t: TensorInfo | undefined, limit = nativeElementwiseLimits.rows): number {
  if (!isF32(t) || (t as TensorInfo).shape.length === 0) return 0;
  const shape = (t as TensorInfo).shape;
  const n = sizeOf(shape);
  return n === 0 || n < limit ? 0 : shape[shape.length - 1];
}

function layerNorm(addon: NativeBlasAddon, fallback: KernelConfig, args: KernelArgs) {
  const x = args.inputs.x as TensorInfo | undefined;
  const width = rowWidth(x);
  if (width === 0) return fallback.kernelFunc(args);
  const b = asWasm(args.backend);
  const xs = (x as TensorInfo).shape;
  const n = b.makeOutput([...xs], 'float32');
  const rstd = b.makeOutput([sizeOf(xs) / width], 'float32');
  addon.layerNorm(f32(b, x as TensorInfo), f32(b, n), f32(b, rstd), width, Number((args.attrs as { epsilon: number }).epsilon));
  return [n, rstd];
}

function layerNormGrad(addon: NativeBlasAddon, fallback: KernelConfig, args: KernelArgs) {
  const { dy, n, rstd } = args.inputs as Record<string, TensorInfo | undefined>;
  const width = rowWidth(dy);
  if (width === 0 || !isF32(n, rstd)) return fallback.kernelFunc(args);
  const b = asWasm(args.backend);
  const dx = b.makeOutput([...(dy as TensorInfo).shape], 'float32');
  addon.layerNormGrad(f32(b, dy as TensorInfo), f32(b, n as TensorInfo), f32(b, rstd as TensorInfo), f32(b, dx), width);
  return dx;
}

function softmax(addon: NativeBlasAddon, fallback: KernelConfig, args: KernelArgs) {
  const logits = args.inputs.logits as TensorInfo | undefined;
  const width = logits && sizeOf(logits.shape) >= nativeElementwiseLimits.softmax ? rowWidth(logits, 0) : 0;
  const dim = (args.attrs as unknown as tf.SoftmaxAttrs).dim;
  if (width === 0 || !(dim === -1 || dim === (logits as TensorInfo).shape.length - 1)) return fallback.kernelFunc(args);
  const b = asWasm(args.backend);
  const y = b.makeOutput([...(logits as TensorInfo).shape], 'float32');
  addon.softmax(f32(b, logits as TensorInfo), f32(b, y), width);
  return y;
}

function softmaxGrad(addon: NativeBlasAddon, fallback: KernelConfig, args: KernelArgs) {
  const { dy, y } = args.inputs as Record<string, TensorInfo | undefined>;
  const width = rowWidth(y);
  if (width === 0 || !isF32(dy) || (dy as TensorInfo).shape.join() !== (y as TensorInfo).shape.join()) return fallback.kernelFunc(args);
  const b = asWasm(args.backend);
  const dx = b.makeOutput([...(y as TensorInfo).shape], 'float32');
  addon.softmaxGrad(f32(b, dy as TensorInfo), f32(b, y as TensorInfo), f32(b, dx), width);
  return dx;
}

/**
 * Sum or Mean of a tensor with no values: 0 and NaN in each output value, as tfjs' cpu kernels and
 * TensorFlow give (wasm's kernels return their output's memory as it was: whatever lay there).
 */
function emptyReduce(b: WasmBackendLike, shape: number[], axis: number | number[] | null, keepDims: boolean, mean: boolean): TensorInfo {
  const axes = new Set(tf.util.parseAxisParam(axis ?? shape.map((_, i) => i), shape));
  const out = b.makeOutput(keepDims ? shape.map((d, i) => (axes.has(i) ? 1 : d)) : shape.filter((_, i) => !axes.has(i)), 'float32');
  if (sizeOf(out.shape) > 0) f32(b, out).fill(mean ? Number.NaN : 0);
  return out;
}

/**
 * Sum and Mean over a block of adjacent axes (a bias's gradient: every axis but the last; a mean
 * pool: the middle one), in float32 in tfjs' order; other axes, dtypes and sizes go to the wasm kernel.
 */
function reduce(addon: NativeBlasAddon, fallback: KernelConfig, args: KernelArgs, mean: boolean) {
  const x = args.inputs.x as TensorInfo | undefined;
  const { axis, keepDims } = (args.attrs ?? {}) as unknown as { axis: number | number[] | null; keepDims: boolean };
  if (isF32(x) && sizeOf((x as TensorInfo).shape) === 0) return emptyReduce(asWasm(args.backend), (x as TensorInfo).shape, axis, keepDims, mean);
  if (!isF32(x) || sizeOf((x as TensorInfo).shape) < Math.max(1, nativeElementwiseLimits.sum)) return fallback.kernelFunc(args);
  const shape = (x as TensorInfo).shape;
  const axes = tf.util.parseAxisParam(axis ?? shape.map((_, i) => i), shape).sort((a, c) => a - c);
  const k = axes[0];
  const m = axes[axes.length - 1] + 1;
  if (axes.length === 0 || axes.length === shape.length || axes.some((a, i) => a !== k + i)) return fallback.kernelFunc(args);
  const b = asWasm(args.backend);
  const out = b.makeOutput(keepDims ? shape.map((d, i) => (i >= k && i < m ? 1 : d)) : shape.filter((_, i) => i < k || i >= m), 'float32');
  addon.reduceSum(f32(b, x as TensorInfo), f32(b, out), sizeOf(shape.slice(0, k)), mean);
  return out;
}

/** Transpose of 4-byte elements (transpose.ts's copy, output rows split); other dtypes and plain copies go to the wasm kernel. */
function transpose(addon: NativeBlasAddon, fallback: KernelConfig, args: KernelArgs) {
  const x = args.inputs.x as TensorInfo | undefined;
  const perm = (args.attrs as { perm: number[] }).perm;
  if (!x || !(x.dtype === 'float32' || x.dtype === 'int32') || sizeOf(x.shape) < Math.max(1, nativeElementwiseLimits.transpose)) return fallback.kernelFunc(args);
  const geo = transposeGeometry(x.shape, perm);
  if (geo === null || geo.dims.length > 16) return fallback.kernelFunc(args);
  const b = asWasm(args.backend);
  const out = b.makeOutput(perm.map((a) => x.shape[a]), x.dtype);
  addon.transpose32(i32(b, x), i32(b, out), Int32Array.from([geo.dims.length, ...geo.dims, ...geo.strides]));
  return out;
}

/**
 * SplitV of 4-byte elements: each part a strided copy on the addon (transpose32 over [outer, part]
 * with x's row stride), one call a part where wasm's Slice copies row by row from JavaScript (the
 * attention's [32, 32, 192] split into queries, keys and values: 3,072 runs of 64 values). Under
 * the Transpose limit, and other dtypes, the wasm kernel.
 */
function splitV(addon: NativeBlasAddon, fallback: KernelConfig, args: KernelArgs) {
  const x = args.inputs.x as TensorInfo | undefined;
  if (!x || !(x.dtype === 'float32' || x.dtype === 'int32') || sizeOf(x.shape) < Math.max(1, nativeElementwiseLimits.transpose)) return fallback.kernelFunc(args);
  const { numOrSizeSplits, axis } = args.attrs as unknown as tf.SplitVAttrs;
  const { axis: a, sizes } = splitSizes(x.shape, numOrSizeSplits, axis);
  const outer = sizeOf(x.shape.slice(0, a));
  const inner = sizeOf(x.shape.slice(a + 1));
  const row = x.shape[a] * inner;
  const b = asWasm(args.backend);
  // Every output first: an allocation may grow the memory and detach views taken before it.
  const outs = sizes.map((s) => b.makeOutput(x.shape.map((d, i) => (i === a ? s : d)), x.dtype));
  const from = i32(b, x);
  let begin = 0;
  sizes.forEach((s, p) => {
    if (s > 0 && outer > 0 && inner > 0) addon.transpose32(from.subarray(begin * inner), i32(b, outs[p]), Int32Array.from([2, outer, s * inner, row, 1]));
    begin += s;
  });
  return outs;
}

/**
 * Concat of equal parts of 4-byte elements (the backward pass of the attention's split: the
 * queries', keys' and values' gradients back into [32, 32, 192]): each part copied whole into a
 * [parts, outer, part] block (one copy within the memory each), then one transpose32 to
 * [outer, parts, part]; along the first axis the copies alone. wasm's kernel copied row by row
 * from JavaScript. Parts of different sizes, other dtypes and small outputs: the wasm kernel.
 */
function concat(addon: NativeBlasAddon, fallback: KernelConfig, args: KernelArgs) {
  const xs = (Array.isArray(args.inputs) ? args.inputs : Object.values(args.inputs)) as TensorInfo[];
  const first = xs[0];
  if (!first || xs.length < 2 || !(first.dtype === 'float32' || first.dtype === 'int32')) return fallback.kernelFunc(args);
  const shape = first.shape;
  if (shape.length === 0 || xs.some((x) => x.dtype !== first.dtype || x.shape.length !== shape.length || x.shape.some((d, i) => d !== shape[i]))) return fallback.kernelFunc(args);
  const count = sizeOf(shape);
  if (count === 0 || count * xs.length < Math.max(1, nativeElementwiseLimits.transpose)) return fallback.kernelFunc(args);
  const a = tf.util.parseAxisParam((args.attrs as { axis: number }).axis, shape)[0];
  const outer = sizeOf(shape.slice(0, a));
  const part = count / outer;
  const b = asWasm(args.backend);
  const out = b.makeOutput(shape.map((d, i) => (i === a ? d * xs.length : d)), first.dtype);
  const block = outer === 1 ? out : b.makeOutput([xs.length, outer, part], first.dtype);
  // Offsets after the last allocation (an allocation may grow the memory).
  const heap = b.wasm.HEAPU8;
  const to = b.dataIdMap.get(block.dataId).memoryOffset;
  xs.forEach((x, p) => {
    const from = b.dataIdMap.get(x.dataId).memoryOffset;
    heap.copyWithin(to + p * count * 4, from, from + count * 4);
  });
  if (block !== out) {
    try {
      addon.transpose32(i32(b, block), i32(b, out), Int32Array.from([3, outer, xs.length, part, part, outer * part, 1]));
    } finally {
      b.disposeData(block.dataId);
    }
  }
  return out;
}

/** Relu's, Relu6's and ClipByValue's gradients (activation-grad.c's operations: its bits). */
function activationGrad(addon: NativeBlasAddon, fallback: KernelConfig, args: KernelArgs, which: 0 | 1 | 2) {
  const { dy, x } = args.inputs as Record<string, TensorInfo | undefined>;
  if (!isF32(dy, x) || sizeOf((x as TensorInfo).shape) < Math.max(1, nativeElementwiseLimits.activationGrad) || sizeOf((dy as TensorInfo).shape) !== sizeOf((x as TensorInfo).shape)) return fallback.kernelFunc(args);
  const b = asWasm(args.backend);
  const dx = b.makeOutput([...(x as TensorInfo).shape], 'float32');
  const attrs = (args.attrs ?? {}) as { clipValueMin?: number; clipValueMax?: number };
  addon.activationGrad(which, f32(b, dy as TensorInfo), f32(b, x as TensorInfo), f32(b, dx), Number(attrs.clipValueMin ?? 0), Number(attrs.clipValueMax ?? 0));
  return dx;
}

/** The binary kernels and their op codes (elementwise.ts's OP). */
const BINARY = { Add: OP.add, Sub: OP.sub, Multiply: OP.mul, RealDiv: OP.div, Maximum: OP.max, Minimum: OP.min, SquaredDifference: OP.sqdiff } as const;

/**
 * broadcast.c's geometry for out = a op b: per output axis its size and each operand's stride (0
 * where broadcast), axes of size 1 dropped and neighbours both operands walk contiguously merged;
 * null beyond rank 8.
 */
export function binaryGeometry(aShape: readonly number[], bShape: readonly number[], outShape: readonly number[]): Int32Array | null {
  const R = outShape.length;
  const strides = (shape: readonly number[]) => {
    const pad = [...new Array<number>(R - shape.length).fill(1), ...shape];
    const s = new Array<number>(R);
    let step = 1;
    for (let j = R - 1; j >= 0; j--) {
      s[j] = pad[j] === 1 ? 0 : step;
      step *= pad[j];
    }
    return s;
  };
  const [sa, sb] = [strides(aShape), strides(bShape)];
  const axes: [number, number, number][] = [];
  for (let j = 0; j < R; j++) {
    if (outShape[j] === 1) continue;
    const prev = axes[axes.length - 1];
    // Merge into the previous axis when both operands step across the two as across one.
    if (prev && prev[1] === sa[j] * outShape[j] && prev[2] === sb[j] * outShape[j]) {
      axes[axes.length - 1] = [prev[0] * outShape[j], sa[j], sb[j]];
    } else axes.push([outShape[j], sa[j], sb[j]]);
  }
  if (axes.length === 0) axes.push([1, 0, 0]);
  return axes.length > 8 ? null : Int32Array.from([axes.length, ...axes.flat()]);
}

function binary(addon: NativeBlasAddon, fallback: KernelConfig, args: KernelArgs, op: number) {
  const { a, b } = args.inputs as Record<string, TensorInfo | undefined>;
  if (!isF32(a, b)) return fallback.kernelFunc(args);
  const [as, bs] = [(a as TensorInfo).shape, (b as TensorInfo).shape];
  let outShape: number[];
  try {
    outShape = tf.backend_util.assertAndGetBroadcastShape(as, bs);
  } catch {
    return fallback.kernelFunc(args); // which reports the mismatch in its own words
  }
  const geo = sizeOf(outShape) < Math.max(1, nativeElementwiseLimits.binary) ? null : binaryGeometry(as, bs, outShape);
  if (geo === null) return fallback.kernelFunc(args);
  const bk = asWasm(args.backend);
  const out = bk.makeOutput(outShape, 'float32');
  addon.binary(op, f32(bk, a as TensorInfo), f32(bk, b as TensorInfo), f32(bk, out), geo);
  return out;
}

/** Names of the kernels this file puts on the native backend (beside kernels.ts's). */
export const NATIVE_ELEMENTWISE_KERNELS = ['NeuralDiffGelu', 'NeuralDiffGeluGrad', 'NeuralDiffLayerNorm', 'NeuralDiffLayerNormGrad', 'Softmax', SOFTMAX_GRAD, 'Sum', 'Mean', 'Transpose', 'SplitV', 'Concat', RELU_GRAD, RELU6_GRAD, CLIP_GRAD, ...(Object.keys(BINARY) as (keyof typeof BINARY)[])] as const;

type Run = (addon: NativeBlasAddon, fallback: KernelConfig, args: KernelArgs) => TensorInfo | TensorInfo[];
const RUNS: Record<(typeof NATIVE_ELEMENTWISE_KERNELS)[number], Run> = {
  NeuralDiffGelu: gelu,
  NeuralDiffGeluGrad: geluGrad,
  NeuralDiffLayerNorm: layerNorm,
  NeuralDiffLayerNormGrad: layerNormGrad,
  Softmax: softmax,
  [SOFTMAX_GRAD]: softmaxGrad,
  Sum: (addon, fallback, args) => reduce(addon, fallback, args, false),
  Mean: (addon, fallback, args) => reduce(addon, fallback, args, true),
  Transpose: transpose,
  SplitV: splitV,
  Concat: concat,
  [RELU_GRAD]: (addon, fallback, args) => activationGrad(addon, fallback, args, 0),
  [RELU6_GRAD]: (addon, fallback, args) => activationGrad(addon, fallback, args, 1),
  [CLIP_GRAD]: (addon, fallback, args) => activationGrad(addon, fallback, args, 2),
  ...(Object.fromEntries(Object.entries(BINARY).map(([name, op]) => [name, (addon: NativeBlasAddon, fallback: KernelConfig, args: KernelArgs) => binary(addon, fallback, args, op)])) as Record<keyof typeof BINARY, Run>),
};

/** The kernel configs for `backendName`, each falling back to (and keeping the setup of) wasm's kernel of the same name. */
export function nativeElementwiseConfigs(addon: NativeBlasAddon, backendName: string, wasmConfigs: ReadonlyMap<string, KernelConfig>): KernelConfig[] {
  return NATIVE_ELEMENTWISE_KERNELS.map((name) => {
    const fallback = wasmConfigs.get(name);
    if (fallback === undefined) throw new Error(`the wasm backend registers no ${name} kernel to fall back to`);
    return { ...fallback, backendName, kernelFunc: (args: KernelArgs) => RUNS[name](addon, fallback, args) };
  });
}
