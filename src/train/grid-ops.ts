/**
 * Storage grids inside training (quantization-aware training on the grid the device stores):
 * the layers compute with weights rounded onto each tensor's grid, as the device will hold them
 * after a format v2 patch (src/core/grid.ts), and gradients pass straight through the rounding.
 * In float32 tensor ops, so a tie may round differently from the device's float64 definition by
 * one step; what is evaluated and shipped is always the exact device result (buildPayload).
 */
import * as tf from '@tensorflow/tfjs';
import type { StorageGrid } from '../core/grid.ts';

/** `w` rounded onto `grid` (tf ops; see the module doc). */
export function snapTensor(w: tf.Tensor, grid: StorageGrid): tf.Tensor {
  return tf.tidy(() => {
    switch (grid.dtype) {
      case 'uint8':
      case 'uint16': {
        const top = grid.dtype === 'uint8' ? 255 : 65535;
        const q = tf.clipByValue(tf.round(tf.div(tf.sub(w, grid.min), grid.scale)), 0, top);
        return tf.add(tf.mul(q, grid.scale), grid.min);
      }
      case 'qint8':
      case 'quint8': {
        // ONNX linear quantization: (clamp(round(w / scale) + zp) - zp) * scale.
        const lo = (grid.dtype === 'qint8' ? -128 : 0) - grid.zeroPoint;
        const q = tf.clipByValue(tf.round(tf.div(w, grid.scale)), lo, lo + 255);
        return tf.mul(q, grid.scale);
      }
      case 'float16':
      case 'bfloat16': {
        // Round to the format's significant bits: the step at |w| is 2^(floor(log2|w|) - bits),
        // no smaller than the smallest subnormal step.
        const bits = grid.dtype === 'float16' ? 10 : 7;
        const minExp = grid.dtype === 'float16' ? -14 : -126;
        const max = grid.dtype === 'float16' ? 65504 : 3.3895313892515355e38;
        const c = tf.clipByValue(w, -max, max);
        const e = tf.maximum(tf.floor(tf.div(tf.log(tf.maximum(tf.abs(c), 1e-38)), Math.LN2)), minExp);
        const step = tf.pow(2, tf.sub(e, bits));
        return tf.mul(tf.round(tf.div(c, step)), step);
      }
      default:
        return w.clone();
    }
  });
}
