/**
 * A convolution's geometry and the epilogue activations, as the WebAssembly convolutions
 * (conv2d.ts, conv2d-winograd.ts and conv2d.c) and their scalar twins take them, and the check
 * of a call's operands before any kernel reads them.
 */
import { UsageError } from '../../core/errors.ts';

/** One convolution's geometry (channels last): what the kernels and the twins take. */
export interface ConvShape {
  batch: number;
  inHeight: number;
  inWidth: number;
  inChannels: number;
  outHeight: number;
  outWidth: number;
  outChannels: number;
  filterHeight: number;
  filterWidth: number;
  strideHeight: number;
  strideWidth: number;
  dilationHeight: number;
  dilationWidth: number;
  padTop: number;
  padLeft: number;
}

/** The epilogue activations conv2d.c runs (its ACT_ numbers). */
export const ACTIVATIONS = { linear: 0, relu: 1, relu6: 2 } as const;
export type ConvActivation = keyof typeof ACTIVATIONS;

const dims = (shape: readonly number[]) => `[${shape.join(', ')}]`;
const WHAT_TO_DO = 'pass operands whose shapes make one convolution (tf.conv2d and its gradients check them; a direct runKernel call does not)';

/**
 * Throws a UsageError unless `x` and `filter` (channels last) make one convolution: both 4-D, the
 * filter's input channels x's channels; and, when given, `dy` is `dyExpected` (the convolution's
 * output shape). The kernels read each operand as these shapes say, on the WebAssembly heap: an
 * operand smaller than that would be read past its end, into other tensors' bytes.
 */
export function checkConvOperands(kernel: string, x: readonly number[], filter: readonly number[], dy?: { shape: readonly number[]; expected: readonly number[] }): void {
  const fail = (what: string) => {
    throw new UsageError(`${kernel}: ${what}: ${WHAT_TO_DO}`, { kernel, x: [...x], filter: [...filter], ...(dy ? { dy: [...dy.shape] } : {}) });
  };
  if (x.length !== 4) fail(`x is ${dims(x)}, where a 4-D [batch, height, width, channels] tensor was expected`);
  if (filter.length !== 4) fail(`the filter is ${dims(filter)}, where a 4-D [height, width, in channels, out channels] filter was expected`);
  if (filter[2] !== x[3]) fail(`the filter ${dims(filter)} takes ${filter[2]} input channels, x ${dims(x)} has ${x[3]}`);
  if (dy && (dy.shape.length !== dy.expected.length || dy.shape.some((d, i) => d !== dy.expected[i]))) {
    fail(`dy is ${dims(dy.shape)}, where the convolution of x ${dims(x)} by a ${dims(filter)} filter gives ${dims(dy.expected)}`);
  }
}
