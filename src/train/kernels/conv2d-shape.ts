/**
 * A convolution's geometry and the epilogue activations, as the WebAssembly convolutions
 * (conv2d.ts, conv2d-winograd.ts and conv2d.c) and their scalar twins take them.
 */

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
