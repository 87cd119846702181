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
