/**
 * GatherV2 for wasm (and native, which takes wasm's kernels) as row copies within the memory.
 *
 * tfjs-backend-wasm 4.22's GatherV2 checks every index in JavaScript (a closure per index), then
 * computes every element's position through strides in C++: a transformer's token embedding
 * ([64, 64] gathered by [32, 32] ids, 65,536 values) took 2-3 ms of a 28-34 ms compiled step on
 * native (bench/profile-plan.ts), 9% of it. Here, without batch dimensions, each index selects a
 * run of `slice` contiguous values (the axes after the gathered one) per index of the axes before
 * it, copied whole (element by element when short): a copy of 4-byte elements, the stock kernel's
 * bits. An index outside the axis is refused as the stock kernel refuses it. Other dtypes and
 * batch dimensions keep the stock kernel.
 *
 * {@link gatherReference} is the scalar twin: one index computation per element.
 */
import * as tf from '@tensorflow/tfjs';
import type { KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs';
import { simdKernelSwitch } from './train-kernels-simd.ts';
import { asWasm, sizeOf, stockKernel, WASM } from './util.ts';

/** out[o, i, s] = x[o, ids[i], s], element by element (the twin the tests compare with). */
export function gatherReference(x: ArrayLike<number>, shape: readonly number[], ids: ArrayLike<number>, axis: number): number[] {
  const outer = sizeOf(shape.slice(0, axis));
  const dim = shape[axis];
  const slice = sizeOf(shape.slice(axis + 1));
  const out: number[] = [];
  for (let o = 0; o < outer; o++) for (let i = 0; i < ids.length; i++) for (let s = 0; s < slice; s++) out.push(x[(o * dim + ids[i]) * slice + s]);
  return out;
}

/** Below this many values a run is copied element by element (copyWithin's call costs more). */
const SHORT_RUN = 16;

const gatherV2: KernelFunc = (args) => {
  const b = asWasm(args.backend);
  const { x, indices } = args.inputs as Record<string, TensorInfo>;
  const { axis, batchDims } = args.attrs as unknown as tf.GatherV2Attrs;
  const a = tf.util.parseAxisParam(axis, x.shape)[0];
  if (!simdKernelSwitch.gatherRows || (batchDims ?? 0) !== 0 || (x.dtype !== 'float32' && x.dtype !== 'int32') || indices.dtype !== 'int32') {
    return stockKernel('GatherV2').kernelFunc(args);
  }
  const dim = x.shape[a];
  const n = sizeOf(indices.shape);
  const ids = new Int32Array(b.wasm.HEAPU8.buffer, b.dataIdMap.get(indices.dataId).memoryOffset, n);
  for (let i = 0; i < n; i++) {
    if (!(ids[i] >= 0 && ids[i] <= dim - 1)) throw new Error(`GatherV2: the index value ${ids[i]} is not in [0, ${dim - 1}]`);
  }
  const outer = sizeOf(x.shape.slice(0, a));
  const slice = sizeOf(x.shape.slice(a + 1));
  const out = b.makeOutput([...x.shape.slice(0, a), ...indices.shape, ...x.shape.slice(a + 1)], x.dtype);
  if (sizeOf(out.shape) === 0) return out;
  // Views after the last allocation.
  const heap = new Int32Array(b.wasm.HEAPU8.buffer);
  // Unsigned: past 2 GiB of wasm memory a signed shift would index from the heap's end.
  const from = b.dataIdMap.get(x.dataId).memoryOffset >>> 2;
  let to = b.dataIdMap.get(out.dataId).memoryOffset >>> 2;
  const idx = new Int32Array(b.wasm.HEAPU8.buffer, b.dataIdMap.get(indices.dataId).memoryOffset, n);
  for (let o = 0; o < outer; o++) {
    const base = from + o * dim * slice;
    for (let i = 0; i < n; i++, to += slice) {
      const src = base + idx[i] * slice;
      if (slice >= SHORT_RUN) heap.copyWithin(to, src, src + slice);
      else for (let s = 0; s < slice; s++) heap[to + s] = heap[src + s];
    }
  }
  return out;
};

/** GatherV2 for wasm (module doc). */
export function gatherV2Config(): KernelConfig {
  // The stock kernel's setup (binding its C++ function), for the calls it still takes.
  return { kernelName: 'GatherV2', backendName: WASM, kernelFunc: gatherV2, setupFunc: stockKernel('GatherV2').setupFunc };
}
