/** Activations (Relu, Sigmoid, Softmax, Clip, Gelu, ...), over tfjs ops. */
import * as tf from '@tensorflow/tfjs';
import { INT32_MAX, axisOf, broadcastShapes, float, int, need, str, type OpArgs, type OpTable } from './op.ts';

const unary = (f: (x: tf.Tensor, a: OpArgs) => tf.Tensor) => (a: OpArgs) => [f(need(a, 0), a)];

function softplus(x: tf.Tensor): tf.Tensor {
  return tf.softplus(x);
}

/**
 * Softmax and LogSoftmax: along `axis` (default -1) from opset 13; before it, the input is seen
 * as 2-D, [prod(dims before axis), prod(dims from axis)] (default axis 1).
 */
function softmaxLike(f: (x: tf.Tensor) => tf.Tensor) {
  return (a: OpArgs) => {
    const x = need(a, 0);
    if (a.opset >= 13) {
      const axis = axisOf(int(a, 'axis', -1), x.rank);
      if (axis === x.rank - 1) return [f(x)];
      const perm = x.shape.map((_, i) => i);
      perm[axis] = x.rank - 1;
      perm[x.rank - 1] = axis;
      return [tf.transpose(f(tf.transpose(x, perm)), perm)];
    }
    const axis = axisOf(int(a, 'axis', 1), x.rank);
    const rows = x.shape.slice(0, axis).reduce((p, d) => p * d, 1);
    return [f(x.reshape([rows, x.size / Math.max(rows, 1)])).reshape(x.shape)];
  };
}

function clip(a: OpArgs): tf.Tensor[] {
  const x = need(a, 0);
  let lo: number;
  let hi: number;
  if (a.opset < 11) {
    lo = float(a, 'min', -3.4028234663852886e38);
    hi = float(a, 'max', 3.4028234663852886e38);
  } else {
    lo = a.inputs[1] ? Number(a.inputs[1].dataSync()[0]) : -Infinity;
    hi = a.inputs[2] ? Number(a.inputs[2].dataSync()[0]) : Infinity;
  }
  // tf.clipByValue wants finite bounds in the tensor's range, lo <= hi; ONNX gives max when min > max.
  const top = x.dtype === 'int32' ? INT32_MAX : 3.4028234663852886e38;
  const bottom = x.dtype === 'int32' ? -INT32_MAX - 1 : -top;
  if (lo > hi) return [tf.fill(x.shape, hi, x.dtype)];
  if (x.dtype === 'int32') {
    // tfjs clips in float32: integers compare exactly with minimum/maximum.
    let y = x;
    if (lo > bottom) y = tf.maximum(y, tf.scalar(lo, 'int32'));
    if (hi < top) y = tf.minimum(y, tf.scalar(hi, 'int32'));
    return [y];
  }
  return [tf.clipByValue(x, Math.max(lo, bottom), Math.min(hi, top))];
}

function gelu(x: tf.Tensor, a: OpArgs): tf.Tensor {
  if (str(a, 'approximate', 'none') === 'tanh') {
    const inner = tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.pow(x, 3))));
    return tf.mul(tf.mul(0.5, x), tf.add(1, tf.tanh(inner)));
  }
  return tf.mul(tf.mul(0.5, x), tf.add(1, tf.erf(tf.div(x, Math.SQRT2))));
}

/** Activation operators. */
export const activation: OpTable = {
  Relu: unary((x) => tf.relu(x)),
  LeakyRelu: unary((x, a) => tf.leakyRelu(x, float(a, 'alpha', 0.01))),
  Sigmoid: unary((x) => tf.sigmoid(x)),
  Tanh: unary((x) => tf.tanh(x)),
  Softmax: softmaxLike((x) => tf.softmax(x)),
  LogSoftmax: softmaxLike((x) => tf.logSoftmax(x)),
  Hardmax: softmaxLike((x) => tf.oneHot(tf.argMax(x, -1), x.shape[x.rank - 1]).toFloat()),
  Elu: unary((x, a) => {
    const alpha = float(a, 'alpha', 1);
    return tf.where(tf.greater(x, 0), x, tf.mul(alpha, tf.sub(tf.exp(x), 1)));
  }),
  Selu: unary((x, a) => {
    const alpha = float(a, 'alpha', 1.67326319217681884765625);
    const gamma = float(a, 'gamma', 1.05070102214813232421875);
    return tf.mul(gamma, tf.where(tf.greater(x, 0), x, tf.mul(alpha, tf.sub(tf.exp(x), 1))));
  }),
  Celu: unary((x, a) => {
    const alpha = float(a, 'alpha', 1);
    return tf.add(tf.relu(x), tf.minimum(0, tf.mul(alpha, tf.sub(tf.exp(tf.div(x, alpha)), 1))));
  }),
  Softplus: unary(softplus),
  Softsign: unary((x) => tf.div(x, tf.add(1, tf.abs(x)))),
  Mish: unary((x) => tf.mul(x, tf.tanh(softplus(x)))),
  HardSigmoid: unary((x, a) => tf.clipByValue(tf.add(tf.mul(float(a, 'alpha', 0.2), x), float(a, 'beta', 0.5)), 0, 1)),
  HardSwish: unary((x) => tf.mul(x, tf.clipByValue(tf.add(tf.div(x, 6), 0.5), 0, 1))),
  ThresholdedRelu: unary((x, a) => tf.where(tf.greater(x, float(a, 'alpha', 1)), x, tf.zerosLike(x))),
  Shrink: unary((x, a) => {
    const lambd = float(a, 'lambd', 0.5);
    const bias = float(a, 'bias', 0);
    return tf.where(tf.less(x, -lambd), tf.add(x, bias), tf.where(tf.greater(x, lambd), tf.sub(x, bias), tf.zerosLike(x)));
  }),
  PRelu: (a) => {
    const x = need(a, 0);
    let slope = need(a, 1);
    // Before opset 7 a vector slope is per channel (axis 1), not numpy-broadcast.
    if (a.opset < 7 && slope.rank === 1 && x.rank > 2 && slope.size === x.shape[1]) slope = slope.reshape([slope.size, ...new Array(x.rank - 2).fill(1)]);
    return [tf.where(tf.less(x, 0), tf.mul(x, slope), tf.broadcastTo(x, broadcastShapes(x.shape, slope.shape)))];
  },
  Gelu: unary(gelu),
  Clip: clip,
};
