/**
 * The shapes a compiled step's plan is made of (plan.ts builds them; the passes in fuse.ts and
 * epilogue.ts rewrite lists of them).
 */
import type * as tf from '@tensorflow/tfjs';
import type { KernelBackend, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';

/** Where a value a kernel reads comes from. */
export type Slot =
  | { k: 'feed'; role: string }
  | { k: 'var'; v: tf.Variable }
  | { k: 'ext'; t: tf.Tensor }
  | { k: 'const'; i: number }
  | { k: 'out'; kernel: number; index: number };

/** One kernel call of a plan. */
export interface PlannedKernel {
  name: string;
  /** Its index in the recording. */
  source: number;
  keys: string[] | null;
  inputs: (Slot | null)[];
  attrs: NamedAttrMap;
  outputs: number;
  kernelFunc: (args: { inputs: unknown; attrs: NamedAttrMap; backend: KernelBackend }) => TensorInfo | TensorInfo[];
  /** Out slots (kernel, index) released after this kernel ran. */
  release: [number, number][];
  /**
   * Per input, the shape the kernel read it under where its slot holds the same data under
   * another (a reshape on wasm shares its input's data: a variable read after it is that slot).
   */
  views: (number[] | null)[];
}

/** Recorded shapes of one planned kernel's inputs and outputs. */
export interface KernelShapes {
  inputs: ({ shape: number[]; dtype: string } | null)[];
  outputs: { shape: number[]; dtype: string }[];
}

/** Values in a tensor of `shape`. */
export const sizeOf = (shape: readonly number[]): number => shape.reduce((a, d) => a * d, 1);

/** `shape` without its leading 1s (a bias [1, 1, C] and [C] line up alike), joined. */
export function withoutLeadingOnes(shape: readonly number[]): string {
  let i = 0;
  while (i < shape.length - 1 && shape[i] === 1) i++;
  return shape.slice(i).join();
}

/** The key of out slot `index` of kernel `kernel`. */
export const outKey = (kernel: number, index: number): string => `${kernel}:${index}`;

/** For each out slot some kernel reads, the kernels that read it (in order; a kernel once per input that reads it). */
export function readersOf(kernels: readonly PlannedKernel[]): Map<string, number[]> {
  const readers = new Map<string, number[]>();
  kernels.forEach((k, i) => {
    for (const s of k.inputs) if (s?.k === 'out') {
      const key = outKey(s.kernel, s.index);
      const list = readers.get(key);
      if (list) list.push(i);
      else readers.set(key, [i]);
    }
  });
  return readers;
}

/** Point the out slots `kernels` read at their kernels' new indices (a pass that dropped or merged kernels). */
export function renumberOutSlots(kernels: PlannedKernel[], index: ReadonlyMap<number, number>): void {
  for (const k of kernels) {
    k.inputs = k.inputs.map((s) => (s?.k === 'out' ? { k: 'out', kernel: index.get(s.kernel) as number, index: s.index } : s));
  }
}
