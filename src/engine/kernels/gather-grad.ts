/**
 * The gradient of a Gather along the first axis (an embedding's lookup, a hashed diff's buckets)
 * as one kernel (issue #63). tfjs sends dy back as Reshape, Reshape, Transpose (the identity
 * permutation for the first axis: still a copy on wasm), UnsortedSegmentSum and Transpose again:
 * two copies of the gradient and five engine calls. `gather_grad` (softmax-gather-grad.c,
 * WebAssembly SIMD on the backend's memory) adds each row of dy into the row its index names in one
 * pass, in float64 and in order as unsorted-segment-sum.ts does, rounded once: the same bits as
 * the chain it replaces. {@link gatherGradJs} is the same in JavaScript (where SIMD cannot run),
 * {@link gatherGradReference} the float64 twin the tests compare both with.
 *
 * The gradient is registered for every backend (a gradient is global in tfjs) and uses the kernel
 * on `wasm` and `native` (which copies wasm's kernels) for a float32 gather along the first axis
 * without batch dimensions; elsewhere it runs tfjs' own gradient.
 */
import * as tf from '@tensorflow/tfjs';
import type { GradConfig, KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs';
import { simdKernelSwitch, trainKernels } from './train-kernels-simd.ts';
import { asWasm, dispose, f32, i32, offsetOf, sizeOf, WASM } from './util.ts';

/** Our kernel's name (not a tfjs kernel: nothing else registers it). */
export const GATHER_GRAD = 'NeuralDiffGatherGrad';

/** Twin of gather_grad: dx[ids[i]] += dy[i] per row of `inner` values, in float64 in order of i; ids outside [0, rows) dropped. */
export function gatherGradJs(dy: Float32Array, ids: Int32Array, dx: Float32Array, inner: number): void {
  const rows = dx.length / inner;
  const acc = new Float64Array(dx.length);
  for (let i = 0; i < ids.length; i++) {
    const s = ids[i];
    if (s < 0 || s >= rows) continue;
    for (let j = 0, from = i * inner, to = s * inner; j < inner; j++) acc[to + j] += dy[from + j];
  }
  dx.set(acc);
}

/** The gradient of gather(x, ids) along the first axis in float64: row r of dx sums the rows of dy whose index is r. */
export function gatherGradReference(dy: ArrayLike<number>, ids: ArrayLike<number>, rows: number, inner: number): Float64Array {
  const dx = new Float64Array(rows * inner);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < ids.length; i++) {
      if (ids[i] !== r) continue;
      for (let j = 0; j < inner; j++) dx[r * inner + j] += dy[i * inner + j];
    }
  }
  return dx;
}

const gatherGradKernel: KernelFunc = ({ inputs, attrs, backend }) => {
  const b = asWasm(backend);
  const { dy, indices } = inputs as Record<string, TensorInfo>;
  const shape = (attrs as unknown as { shape: number[] }).shape;
  if (indices.dtype !== 'int32') throw new Error(`the gather gradient kernel: indices must be int32, got ${indices.dtype}`);
  const n = sizeOf(indices.shape);
  const rows = shape[0];
  const inner = sizeOf(shape.slice(1));
  if (sizeOf(dy.shape) !== n * inner) throw new Error(`the gather gradient kernel: dy has shape [${dy.shape}], expected ${n} rows of ${inner} for indices [${indices.shape}] and x [${shape}]`);
  const dx = b.makeOutput([...shape], 'float32');
  const k = simdKernelSwitch.enabled ? trainKernels(b) : null;
  if (k && rows * inner > 0) {
    // Scratch for the float64 sums: two float32 slots a value.
    const acc = b.makeOutput([2 * rows * inner], 'float32');
    k.gather_grad(offsetOf(b, dy), offsetOf(b, indices), offsetOf(b, acc), offsetOf(b, dx), n, inner, rows);
    dispose(b, acc);
  } else gatherGradJs(f32(b, dy), i32(b, indices), f32(b, dx), Math.max(1, inner));
  return dx;
};

/** The kernel for wasm (the native backend copies wasm's kernels when it registers). */
export function gatherGradKernelConfig(): KernelConfig {
  return { kernelName: GATHER_GRAD, backendName: WASM, kernelFunc: gatherGradKernel };
}

/**
 * Gather's gradient: our kernel where it runs (module doc), else `stock`'s (tfjs' own, taken
 * before this one replaced it).
 */
export function gatherGradConfig(stock: GradConfig): GradConfig {
  return {
    kernelName: tf.GatherV2,
    inputsToSave: ['x', 'indices'],
    gradFunc: (dy, saved, attrs) => {
      const [x, indices] = saved;
      const d = dy as tf.Tensor;
      const { axis, batchDims } = attrs as unknown as tf.GatherV2Attrs;
      const first = tf.util.parseAxisParam(axis, x.shape)[0] === 0 && !batchDims;
      if (simdKernelSwitch.fuseGatherGrad && first && d.dtype === 'float32' && x.dtype === 'float32' && indices.dtype === 'int32' && tf.getKernel(GATHER_GRAD, tf.getBackend()) !== undefined) {
        return { x: () => tf.engine().runKernel(GATHER_GRAD, { dy: d, indices }, { shape: x.shape }) as tf.Tensor, indices: () => indices };
      }
      return stock.gradFunc(dy, saved, attrs);
    },
  };
}
