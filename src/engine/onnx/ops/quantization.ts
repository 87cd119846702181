/**
 * Linear quantization. A weight the store keeps on an int8/uint8 grid (input 0 of
 * `DequantizeLinear` nodes with one scale and zero point) is a trainable variable holding its
 * dequantized values already, so its `DequantizeLinear` passes it through; every other
 * `DequantizeLinear` and `QuantizeLinear` computes as ONNX defines it.
 */
import * as tf from '@tensorflow/tfjs';
import { axisOf, int, need, unsupported, type OpArgs, type OpTable } from './op.ts';

/** A scale or zero point shaped to broadcast along `axis` of `x` (per-tensor ones as they are). */
function alongAxis(v: tf.Tensor, x: tf.Tensor, a: OpArgs): tf.Tensor {
  if (v.size === 1) return v.reshape([]);
  if (v.rank !== 1) throw unsupported(a, 'blocked quantization (a scale that is not a scalar or a vector)');
  const axis = axisOf(int(a, 'axis', 1), x.rank);
  return v.reshape(x.shape.map((d, i) => (i === axis ? d : 1)));
}

function dequantize(a: OpArgs): tf.Tensor[] {
  const x = need(a, 0);
  if (a.isDequantizedWeight(0)) return [x];
  const scale = alongAxis(need(a, 1), x, a);
  const zp = a.inputs[2] ? alongAxis(a.inputs[2], x, a) : undefined;
  return [tf.mul(zp ? tf.sub(x.toFloat(), zp.toFloat()) : x.toFloat(), scale)];
}

function quantize(a: OpArgs): tf.Tensor[] {
  const x = need(a, 0);
  const scale = alongAxis(need(a, 1), x, a);
  const zpType = a.inputs[2] ? a.dataType(2) : 2;
  if (zpType !== 2 && zpType !== 3) throw unsupported(a, `quantization to data type ${zpType ?? 'unknown'} (implemented: UINT8, INT8)`);
  const [lo, hi] = zpType === 3 ? [-128, 127] : [0, 255];
  const zp = a.inputs[2] ? alongAxis(a.inputs[2], x, a).toFloat() : tf.scalar(0);
  return [tf.clipByValue(tf.add(tf.round(tf.div(x, scale)), zp), lo, hi).toInt()];
}

/** Quantization operators. */
export const quantization: OpTable = {
  DequantizeLinear: dequantize,
  QuantizeLinear: quantize,
};
