/**
 * Transpose for wasm (and native, which takes wasm's kernels) as strided copies within the memory.
 *
 * tfjs-backend-wasm 4.22's Transpose computes every element's index through its generic N-d path
 * beyond rank 2: about 1 us an element on this machine, so a transformer's attention permutes
 * ([batch, tokens, 3, heads, 16] to [3, batch, heads, tokens, 16] and back, forward and backward)
 * took two thirds of its training step. Here the axes are simplified first (size-1 axes dropped,
 * input axes that stay neighbours in the output merged: that permute becomes [32, 32, 3, 4, 16]
 * with perm [2, 0, 3, 1, 4], unchanged, but [b, h, t, d] to [b, t, h, d] is [b][h][t][d] -> a 3-D
 * permute of runs of d), then the output is written in order: runs of the innermost axis copied
 * whole when that axis is the input's innermost too (element by element when short), else read
 * with the input's stride. A copy
 * of 4-byte or 1-byte elements, so the same bits as the stock kernel; other dtypes (strings,
 * complex) keep it.
 *
 * 4-byte elements go through transpose.c (the same copy in WebAssembly, runs copied four elements
 * at a time; bench/profile-plan.ts showed Transpose at 18% of the transformer's compiled step on
 * native) where the SIMD module runs; {@link transposeInto} is its JavaScript twin.
 *
 * {@link transposeReference} is the scalar twin: one index computation per element, what the
 * tests compare with on many shapes and permutations.
 */
import type { KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs';
import { simdKernelSwitch, trainKernels } from './train-kernels-simd.ts';
import { asWasm, sizeOf, stockKernel, WASM } from './util.ts';
import { ModelFormatError } from '../../core/errors.ts';

/** Elements as the kernel copies them: 4-byte dtypes as Int32 (bits kept, NaN payloads too), bool as bytes. */
type Elements = Int32Array | Uint8Array;

/**
 * The permutation with size-1 axes dropped and input axes that stay adjacent and in order in the
 * output merged into one: the same copy, over fewer and longer axes.
 */
export function simplifyPermutation(shape: readonly number[], perm: readonly number[]): { shape: number[]; perm: number[] } {
  const kept = shape.map((d, i) => (d !== 1 ? i : -1)).filter((i) => i >= 0);
  const rankOf = new Map(kept.map((a, i) => [a, i]));
  const p = perm.filter((a) => shape[a] !== 1).map((a) => rankOf.get(a) as number);
  const s = kept.map((a) => shape[a]);
  // Groups of input axes, in output order, that are consecutive in the input.
  const groups: number[][] = [];
  for (const a of p) {
    const last = groups[groups.length - 1];
    if (last && last[last.length - 1] + 1 === a) last.push(a);
    else groups.push([a]);
  }
  // Each group becomes one input axis; number them in input order.
  const order = groups.map((g, i) => [g[0], i]).sort((x, y) => x[0] - y[0]);
  const newIndex = new Array<number>(groups.length);
  order.forEach(([, g], i) => (newIndex[g] = i));
  const newShape = new Array<number>(groups.length);
  groups.forEach((g, i) => (newShape[newIndex[i]] = g.reduce((n, a) => n * s[a], 1)));
  return { shape: newShape, perm: groups.map((_, i) => newIndex[i]) };
}

/**
 * Refuse a `perm` that is not a permutation of the axes of `shape` (each of 0 to rank - 1 once):
 * tf.transpose lets a repeated axis through, and a model's graph may hold any list, where the
 * copy would read past the input or write a tensor of the wrong shape.
 * @throws ModelFormatError saying what was expected and found.
 */
export function checkPermutation(shape: readonly number[], perm: readonly number[]): void {
  const rank = shape.length;
  if (Array.isArray(perm) && perm.length === rank) {
    // Plain comparisons, no allocation up to rank 32: this runs on every Transpose call.
    let seen = 0;
    const set = rank > 32 ? new Set<number>() : undefined;
    let ok = true;
    for (let i = 0; i < rank && ok; i++) {
      const a = perm[i];
      ok = typeof a === 'number' && Number.isInteger(a) && a >= 0 && a < rank;
      if (!ok) break;
      if (set) {
        ok = !set.has(a);
        set.add(a);
      } else {
        ok = (seen & (1 << a)) === 0;
        seen |= 1 << a;
      }
    }
    if (ok) return;
  }
  throw new ModelFormatError(
    `Transpose: expected a permutation of the ${rank} axes of [${shape.join(', ')}] (each of 0 to ${rank - 1} once), found perm ${JSON.stringify(perm)}: check the model's Transpose (its perm attribute)`,
    { shape: [...shape], perm },
  );
}

/**
 * The copy a transpose is, simplified: per output axis its size and its stride in the input
 * (elements); null when it is a plain copy (rank 1 or less once simplified).
 * @throws ModelFormatError when `perm` is not a permutation of the axes ({@link checkPermutation}).
 */
export function transposeGeometry(shape: readonly number[], perm: readonly number[]): Readonly<{ dims: readonly number[]; strides: readonly number[] }> | null {
  // Checked on every call, before the key: ['0', '2', '1'] or [0, '1,2'] spell the key of another perm.
  checkPermutation(shape, perm);
  // A training step transposes the same few shapes every step: each geometry is worked out once.
  const key = `${shape.join(',')}|${perm.join(',')}`;
  const known = geometries.get(key);
  if (known !== undefined) return known;
  const { shape: s, perm: p } = simplifyPermutation(shape, perm);
  const rank = s.length;
  let geo: { dims: number[]; strides: number[] } | null = null;
  if (rank > 1) {
    const inStrides = new Array<number>(rank);
    inStrides[rank - 1] = 1;
    for (let a = rank - 2; a >= 0; a--) inStrides[a] = inStrides[a + 1] * s[a + 1];
    // Output axis j walks the input with stride inStrides[p[j]].
    geo = { dims: p.map((a) => s[a]), strides: p.map((a) => inStrides[a]) };
    Object.freeze(geo.dims);
    Object.freeze(geo.strides);
    Object.freeze(geo);
  }
  if (geometries.size >= 1024) geometries.clear();
  geometries.set(key, geo);
  return geo;
}

/** Geometries by shape and permutation (at most 1,024 kept). */
const geometries = new Map<string, Readonly<{ dims: readonly number[]; strides: readonly number[] }> | null>();

/**
 * out = transpose(x, perm), x of `shape` row-major, out row-major in the permuted shape. `x` and
 * `out` must not overlap.
 */
export function transposeInto(x: Elements, out: Elements, shape: readonly number[], perm: readonly number[]): void {
  const count = out.length;
  if (count === 0) return;
  const geo = transposeGeometry(shape, perm);
  if (geo === null) {
    out.set(x.subarray(0, count));
    return;
  }
  const { dims, strides } = geo;
  const rank = dims.length;
  const inner = dims[rank - 1];
  const innerStride = strides[rank - 1];
  const mid = dims[rank - 2];
  const midStride = strides[rank - 2];
  const index = new Array<number>(Math.max(0, rank - 2)).fill(0);
  let base = 0;
  let o = 0;
  while (o < count) {
    // The two innermost output axes from `base`.
    if (innerStride === 1 && inner >= 128) {
      for (let m = 0, at = base; m < mid; m++, at += midStride, o += inner) out.set(x.subarray(at, at + inner), o);
    } else if (innerStride === 1) {
      // Short runs (a head's 16 features): a loop costs less than a subarray object per run.
      for (let m = 0, row = base; m < mid; m++, row += midStride) {
        for (let i = 0; i < inner; i++) out[o++] = x[row + i];
      }
    } else {
      for (let m = 0, row = base; m < mid; m++, row += midStride) {
        for (let i = 0, at = row; i < inner; i++, at += innerStride) out[o++] = x[at];
      }
    }
    // Next index of the outer axes (an odometer), moving `base` by their strides.
    for (let d = rank - 3; d >= 0; d--) {
      base += strides[d];
      if (++index[d] < dims[d]) break;
      base -= strides[d] * dims[d];
      index[d] = 0;
    }
  }
}

/** The scalar twin of {@link transposeInto}: each output element's input index computed on its own. */
export function transposeReference(x: Elements, out: Elements, shape: readonly number[], perm: readonly number[]): void {
  const rank = shape.length;
  const outShape = perm.map((a) => shape[a]);
  const inStrides = new Array<number>(rank).fill(1);
  for (let a = rank - 2; a >= 0; a--) inStrides[a] = inStrides[a + 1] * shape[a + 1];
  for (let o = 0; o < out.length; o++) {
    let rest = o;
    let at = 0;
    for (let j = rank - 1; j >= 0; j--) {
      at += (rest % outShape[j]) * inStrides[perm[j]];
      rest = Math.floor(rest / outShape[j]);
    }
    out[o] = x[at];
  }
}

const transpose: KernelFunc = ({ inputs, attrs, backend }) => {
  const x = inputs.x as TensorInfo;
  const perm = (attrs as { perm: number[] }).perm;
  const width = x.dtype === 'float32' || x.dtype === 'int32' ? 4 : x.dtype === 'bool' ? 1 : 0;
  if (width === 0) return stockKernel('Transpose').kernelFunc({ inputs, attrs, backend });
  // The permutation checked before anything is allocated.
  const geometry = transposeGeometry(x.shape, perm);
  const b = asWasm(backend);
  const out = b.makeOutput(perm.map((a) => x.shape[a]), x.dtype);
  const count = sizeOf(x.shape);
  if (count === 0) return out;
  // Views after the output's allocation (it may grow the memory).
  const buffer = b.wasm.HEAPU8.buffer;
  const from = b.dataIdMap.get(x.dataId).memoryOffset;
  const to = b.dataIdMap.get(out.dataId).memoryOffset;
  const geo = width === 4 ? geometry : null;
  const kernels = geo && simdKernelSwitch.enabled && simdKernelSwitch.transposeInWasm ? trainKernels(b) : null;
  if (geo && kernels) {
    // The geometry in the memory (the module has no stack): rank, sizes, strides, the odometer's room.
    const rank = geo.dims.length;
    const table = b.makeOutput([1 + 3 * rank], 'int32');
    try {
      const at = b.dataIdMap.get(table.dataId).memoryOffset;
      new Int32Array(b.wasm.HEAPU8.buffer, at, 1 + 3 * rank).set([rank, ...geo.dims, ...geo.strides]);
      kernels.transpose32(b.dataIdMap.get(x.dataId).memoryOffset, b.dataIdMap.get(out.dataId).memoryOffset, at, count);
    } finally {
      b.disposeData(table.dataId);
    }
  } else if (width === 4) transposeInto(new Int32Array(buffer, from, count), new Int32Array(buffer, to, count), x.shape, perm);
  else transposeInto(new Uint8Array(buffer, from, count), new Uint8Array(buffer, to, count), x.shape, perm);
  return out;
};

/**
 * Transpose for wasm (module doc). It keeps the stock kernel's setup, which binds the wasm function
 * the stock kernels that transpose inside (Mean, Sum over leading axes...) and the fallback call.
 */
export function transposeConfig(): KernelConfig {
  return { ...stockKernel('Transpose'), backendName: WASM, kernelFunc: transpose };
}
