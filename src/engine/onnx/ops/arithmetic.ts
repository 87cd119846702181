/** Elementwise math, comparisons and logic, and matrix products (MatMul, Gemm), over tfjs ops. */
import * as tf from '@tensorflow/tfjs';
import { axisOf, broadcastShapes, float, int, need, type OpArgs, type OpTable } from './op.ts';

const unary = (f: (x: tf.Tensor) => tf.Tensor) => (a: OpArgs) => [f(need(a, 0))];
/** An element-wise operator of two inputs, their broadcast shape checked before it is built (a [1, N] and an [N, 1] constant make N²). */
const binary = (f: (x: tf.Tensor, y: tf.Tensor) => tf.Tensor) => (a: OpArgs) => {
  const [x, y] = [need(a, 0), need(a, 1)];
  a.bound(broadcastShapes(x.shape, y.shape));
  return [f(x, y)];
};
/** The inputs of a variadic element-wise operator, their broadcast shape checked. */
const operands = (a: OpArgs) => {
  const xs = a.inputs.filter((x): x is tf.Tensor => !!x);
  a.bound(xs.reduce<number[]>((s, x) => broadcastShapes(s, x.shape), []));
  return xs;
};
const variadic = (f: (x: tf.Tensor, y: tf.Tensor) => tf.Tensor) => (a: OpArgs) => {
  const xs = operands(a);
  return [xs.slice(1).reduce((acc, x) => f(acc, x), xs[0])];
};

/** The shape of numpy's matmul of `x` and `y` (1-D operands promoted, batch dimensions broadcast). */
function matMulShape(x: readonly number[], y: readonly number[]): number[] {
  const xs = x.length === 1 ? [1, x[0]] : x;
  const ys = y.length === 1 ? [y[0], 1] : y;
  return [...broadcastShapes(xs.slice(0, -2), ys.slice(0, -2)), xs[xs.length - 2], ys[ys.length - 1]];
}

/** Integer division truncating toward zero (C semantics, as ONNX defines Div on integers). */
function truncDiv(x: tf.Tensor, y: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.sign(tf.mul(x, y)), tf.floorDiv(tf.abs(x), tf.abs(y))).toInt());
}

function keepDtype(f: (x: tf.Tensor, y: tf.Tensor) => tf.Tensor) {
  return (x: tf.Tensor, y: tf.Tensor) => {
    const out = f(x, y);
    return out.dtype === x.dtype ? out : tf.cast(out, x.dtype);
  };
}

/** ONNX MatMul: numpy matmul (a 1-D operand is promoted, batch dimensions broadcast). */
function matMul(x: tf.Tensor, y: tf.Tensor): tf.Tensor {
  const xa = x.rank === 1 ? x.reshape([1, x.shape[0]]) : x;
  const ya = y.rank === 1 ? y.reshape([y.shape[0], 1]) : y;
  let out: tf.Tensor;
  if (xa.rank === 2 && ya.rank === 2) out = tf.matMul(xa as tf.Tensor2D, ya as tf.Tensor2D);
  else if (ya.rank === 2) {
    // A stack of rows times one matrix (a Linear layer over [batch, tokens, features]): one
    // matrix product over the rows. Broadcasting the matrix to every batch item instead copied
    // it per item (Tile) and summed its gradient back over the copies.
    const k = xa.shape[xa.rank - 1] as number;
    out = tf.matMul(xa.reshape([-1, k]) as tf.Tensor2D, ya as tf.Tensor2D).reshape([...(xa.shape.slice(0, -1) as number[]), ya.shape[1] as number]);
  } else {
    // Broadcast the batch dimensions explicitly: tfjs' batched matMul wants equal ranks.
    const rank = Math.max(xa.rank, ya.rank);
    const lift = (t: tf.Tensor) => (t.rank < rank ? t.reshape([...new Array(rank - t.rank).fill(1), ...t.shape]) : t);
    const xl = lift(xa);
    const yl = lift(ya);
    const batch = xl.shape.slice(0, -2).map((d, i) => Math.max(d, yl.shape[i]));
    const xb = tf.broadcastTo(xl, [...batch, ...xl.shape.slice(-2)]);
    const yb = tf.broadcastTo(yl, [...batch, ...yl.shape.slice(-2)]);
    out = tf.matMul(xb, yb);
  }
  if (x.rank === 1) out = out.squeeze([out.rank - 2]);
  if (y.rank === 1) out = out.squeeze([out.rank - 1]);
  return out;
}

function gemm(a: OpArgs): tf.Tensor[] {
  const alpha = float(a, 'alpha', 1);
  const beta = float(a, 'beta', 1);
  const [p, q] = [need(a, 0), need(a, 1)];
  const [transA, transB] = [int(a, 'transA', 0) === 1, int(a, 'transB', 0) === 1];
  a.bound([p.shape[transA ? 1 : 0] as number, q.shape[transB ? 0 : 1] as number]);
  let y = tf.matMul(p as tf.Tensor2D, q as tf.Tensor2D, transA, transB);
  if (alpha !== 1) y = tf.mul(y, alpha);
  const c = a.inputs[2];
  if (c) y = tf.add(y, beta === 1 ? c : tf.mul(c, beta));
  return [y];
}

function mod(a: OpArgs): tf.Tensor[] {
  const x = need(a, 0);
  const y = need(a, 1);
  a.bound(broadcastShapes(x.shape, y.shape));
  if (int(a, 'fmod', 0) === 1) {
    // C fmod: the sign of the dividend.
    if (x.dtype === 'int32') return [tf.sub(x, tf.mul(y, truncDiv(x, y)))];
    return [tf.sub(x, tf.mul(y, tf.tidy(() => { const q = tf.div(x, y); return tf.mul(tf.sign(q), tf.floor(tf.abs(q))); })))];
  }
  return [tf.mod(x, y)];
}

function isInf(a: OpArgs): tf.Tensor[] {
  const x = need(a, 0);
  const pos = int(a, 'detect_positive', 1) === 1;
  const neg = int(a, 'detect_negative', 1) === 1;
  return [tf.logicalOr(pos ? tf.equal(x, Infinity) : tf.zerosLike(x).cast('bool'), neg ? tf.equal(x, -Infinity) : tf.zerosLike(x).cast('bool'))];
}

/** Elementwise and matrix operators. */
export const arithmetic: OpTable = {
  Add: binary(tf.add),
  Sub: binary(tf.sub),
  Mul: binary(tf.mul),
  Div: binary((x, y) => (x.dtype === 'int32' && y.dtype === 'int32' ? truncDiv(x, y) : tf.div(x, y))),
  Pow: binary(keepDtype(tf.pow)),
  Mod: mod,
  Neg: unary(tf.neg),
  Abs: unary(tf.abs),
  Sqrt: unary(tf.sqrt),
  Exp: unary(tf.exp),
  Log: unary(tf.log),
  Reciprocal: unary(tf.reciprocal),
  Floor: unary(tf.floor),
  Ceil: unary(tf.ceil),
  Round: unary(tf.round),
  Sign: unary(tf.sign),
  Erf: unary(tf.erf),
  Sin: unary(tf.sin),
  Cos: unary(tf.cos),
  Tan: unary(tf.tan),
  Asin: unary(tf.asin),
  Acos: unary(tf.acos),
  Atan: unary(tf.atan),
  Sinh: unary(tf.sinh),
  Cosh: unary(tf.cosh),
  Asinh: unary(tf.asinh),
  Acosh: unary(tf.acosh),
  Atanh: unary(tf.atanh),
  Min: variadic(tf.minimum),
  Max: variadic(tf.maximum),
  Sum: variadic(tf.add),
  Mean: (a) => {
    const xs = operands(a);
    return [tf.div(xs.slice(1).reduce((acc, x) => tf.add(acc, x), xs[0]), xs.length)];
  },
  MatMul: (a) => {
    const [x, y] = [need(a, 0), need(a, 1)];
    a.bound(matMulShape(x.shape, y.shape));
    return [matMul(x, y)];
  },
  Gemm: gemm,
  Equal: binary(tf.equal),
  Less: binary(tf.less),
  Greater: binary(tf.greater),
  LessOrEqual: binary(tf.lessEqual),
  GreaterOrEqual: binary(tf.greaterEqual),
  And: binary(tf.logicalAnd),
  Or: binary(tf.logicalOr),
  Xor: binary(tf.logicalXor),
  Not: unary(tf.logicalNot),
  Where: (a) => {
    const [c, x, y] = [need(a, 0), need(a, 1), need(a, 2)];
    const shape = a.bound(broadcastShapes(broadcastShapes(c.shape, x.shape), y.shape));
    return [tf.where(tf.broadcastTo(c, shape) as tf.Tensor, tf.broadcastTo(x, shape), tf.broadcastTo(y, shape))];
  },
  IsNaN: unary(tf.isNaN),
  IsInf: isInf,
  CumSum: (a) => {
    const x = need(a, 0);
    const axis = axisOf(Number(need(a, 1).dataSync()[0]), x.rank);
    return [tf.cumsum(x, axis, int(a, 'exclusive', 0) === 1, int(a, 'reverse', 0) === 1)];
  },
};
