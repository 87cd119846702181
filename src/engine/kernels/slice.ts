/**
 * Slice without reading the whole input. tfjs-backend-wasm 4.22's Slice first calls `readSync`
 * on its input, which copies the entire tensor out of the WebAssembly memory, then copies the
 * slice from that copy: each batch `tf.slice` takes of a dataset held as one tensor copied the
 * whole dataset (on the keyword model, 11 MB a batch; 10% of the parent thread's CPU in a
 * two-thread training run, through validation and the teacher's outputs). This kernel copies only
 * the slice's bytes, within the memory: the same elements, so the same values.
 *
 * SplitV too: the stock kernel takes each part with the stock Slice, so it copied its whole input
 * out of the memory once per part (the transformer's split of its attention projections into
 * queries, keys and values, [32, 32, 192] into three: 2-6% of its compiled step on native). Here
 * each part is this Slice.
 */
import * as tf from '@tensorflow/tfjs';
import type { KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs';
import { simdKernelSwitch } from './train-kernels-simd.ts';
import { asWasm, sizeOf, stockKernel, WASM } from './util.ts';
import { ModelFormatError } from '../../core/errors.ts';

/** Bytes an element of these dtypes takes in the wasm backend's memory. */
const BYTES: Partial<Record<string, number>> = { float32: 4, int32: 4, bool: 1 };

const slice: KernelFunc = ({ inputs, attrs, backend }) => {
  const x = inputs.x as TensorInfo;
  const bytes = BYTES[x.dtype];
  // Strings and complex values are not plain bytes in the memory: the stock kernel.
  if (!bytes) return stockKernel('Slice').kernelFunc({ inputs, attrs, backend });
  const b = asWasm(backend);
  const { begin: b0, size: s0 } = (attrs ?? {}) as { begin: number | number[]; size?: number | number[] };
  const [begin, size] = tf.slice_util.parseSliceParams(x as tf.Tensor, b0, s0);
  const out = b.makeOutput(size, x.dtype);
  const count = sizeOf(size);
  if (count === 0) return out;
  // Offsets after the last allocation (makeOutput may grow the memory).
  const heap = b.wasm.HEAPU8;
  const from = b.dataIdMap.get(x.dataId).memoryOffset;
  const to = b.dataIdMap.get(out.dataId).memoryOffset;
  const strides = tf.util.computeStrides(x.shape);
  if (tf.slice_util.isSliceContinous(x.shape, begin, size)) {
    const at = from + tf.slice_util.computeFlatOffset(begin, strides) * bytes;
    heap.copyWithin(to, at, at + count * bytes);
    return out;
  }
  // Runs along the last axis are contiguous on both sides: copy one run per index of the others.
  const rank = size.length;
  const run = size[rank - 1] * bytes;
  const index = new Array<number>(rank - 1).fill(0);
  for (let k = 0, dst = to; k < count / size[rank - 1]; k++, dst += run) {
    let src = begin[rank - 1];
    for (let d = 0; d < rank - 1; d++) src += (begin[d] + index[d]) * strides[d];
    heap.copyWithin(dst, from + src * bytes, from + src * bytes + run);
    for (let d = rank - 2; d >= 0; d--) {
      if (++index[d] < size[d]) break;
      index[d] = 0;
    }
  }
  return out;
};

/** Slice for wasm (module doc). */
export function sliceConfig(): KernelConfig {
  return { kernelName: 'Slice', backendName: WASM, kernelFunc: slice };
}

/**
 * SplitV's axis and part sizes (tfjs' prepareSplitSize, a -1 taking the rest), checked before any
 * part is allocated: prepareSplitSize lets through sizes that add up to the axis but are not sizes
 * ([4, -1] of 3, its -1 inferred as -1; [-2, 5]; [1.5, 1.5]), whose copies read outside x or
 * make parts of shape [2, 1.5, 4]. The attribute's list is left as it was (prepareSplitSize
 * writes the size it infers into the list it is given).
 * @throws ModelFormatError naming the sizes, the axis and its length.
 */
export function splitSizes(shape: readonly number[], numOrSizeSplits: number | number[], axis: number | number[]): { axis: number; sizes: number[] } {
  const a = tf.util.parseAxisParam(axis, [...shape])[0];
  const given = Array.isArray(numOrSizeSplits) ? [...numOrSizeSplits] : numOrSizeSplits;
  const sizes = tf.backend_util.prepareSplitSize({ shape: [...shape] } as tf.Tensor, Array.isArray(given) ? [...given] : given, a);
  if (sizes.every((s) => Number.isInteger(s) && s >= 0) && sizes.reduce((t, s) => t + s, 0) === shape[a]) return { axis: a, sizes };
  throw new ModelFormatError(
    `SplitV: expected split sizes that are whole numbers of at least 0 (one of them -1 for the rest) adding up to ${shape[a]}, the length of axis ${a} of [${shape.join(', ')}]; found ${JSON.stringify(given)} (sizes [${sizes.join(', ')}]): check the model's Split (its split sizes)`,
    { shape: [...shape], axis: a, sizes: given },
  );
}

const splitV: KernelFunc = (args) => {
  const x = args.inputs.x as TensorInfo;
  const { numOrSizeSplits, axis } = args.attrs as unknown as tf.SplitVAttrs;
  const { axis: a, sizes } = splitSizes(x.shape, numOrSizeSplits, axis);
  if (!simdKernelSwitch.splitInMemory) return stockKernel('SplitV').kernelFunc(args);
  const begin = new Array<number>(x.shape.length).fill(0);
  return sizes.map((s) => {
    const size = x.shape.slice();
    size[a] = s;
    const part = slice({ inputs: { x }, attrs: { begin: begin.slice(), size }, backend: args.backend }) as TensorInfo;
    begin[a] += s;
    return part;
  });
};

/** SplitV for wasm: each part through {@link slice} (module doc). */
export function splitVConfig(): KernelConfig {
  return { kernelName: 'SplitV', backendName: WASM, kernelFunc: splitV };
}
