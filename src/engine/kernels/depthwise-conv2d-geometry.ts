/** Shared set-up of the two depthwise-conv gradient kernels. */
import * as tf from '@tensorflow/tfjs';

/** Depthwise conv geometry (tfjs' conv info) and its channel multiplier. */
export interface DepthwiseGeometry {
  info: tf.backend_util.Conv2DInfo;
  multiplier: number;
}

/**
 * Resolve padding and sizes like tfjs does. Dilation must be 1: tfjs' depthwise gradient asserts
 * the same, so no other value reaches these kernels through tf.grad.
 */
export function depthwiseGeometry(
  kernel: string,
  inShape: [number, number, number, number],
  filterShape: [number, number, number, number],
  attrs: Pick<tf.DepthwiseConv2dNativeBackpropFilterAttrs, 'strides' | 'dilations' | 'pad' | 'dimRoundingMode'>,
): DepthwiseGeometry {
  const d = attrs.dilations;
  if (!(d === undefined || d === 1 || (Array.isArray(d) && d[0] === 1 && d[1] === 1))) {
    throw new Error(`${kernel} on wasm supports dilation 1 only, got ${String(d)}`);
  }
  const info = tf.backend_util.computeConv2DInfo(
    inShape,
    filterShape,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    true,
  );
  return { info, multiplier: info.outChannels / info.inChannels };
}
