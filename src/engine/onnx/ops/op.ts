/**
 * What an ONNX operator implementation sees: its node, the opset of the model, its inputs as
 * tfjs tensors, attribute readers, and (for control flow) a way to run a subgraph. Each family
 * of operators (arithmetic.ts, convolution.ts, ...) is a table from op type to a short function
 * over tfjs ops, in the shape of tfjs-converter's executors; ops/index.ts joins the tables.
 *
 * ONNX element types map onto tfjs dtypes: every float type computes in float32, every integer
 * type in int32 (int64 values beyond 32 bits are clamped, which only ever meets "to the end"
 * markers such as Slice's INT64_MAX), BOOL in bool.
 */
import * as tf from '@tensorflow/tfjs';
import { UnsupportedOperatorError } from '../../../core/errors.ts';
import type { OnnxAttribute, OnnxGraph, OnnxNode, OnnxTensor } from '../model.ts';

/** The arguments of an operator implementation. */
export interface OpArgs {
  node: OnnxNode;
  /** The model's opset version for the node's domain. */
  opset: number;
  /** The node's inputs; undefined where an optional input is left out (empty name) or past the end. */
  inputs: (tf.Tensor | undefined)[];
  /** The ONNX data type of input `i` when the executor knows it (a stored tensor or a typed graph input). */
  dataType(i: number): number | undefined;
  /** Run a subgraph with `feeds` for its inputs (the enclosing values stay visible); returns its outputs in order. */
  runGraph(graph: OnnxGraph, feeds: tf.Tensor[]): tf.Tensor[];
  /** True when input `i` is a quantized weight the executor already holds dequantized (see quantization.ts). */
  isDequantizedWeight(i: number): boolean;
  /** A tfjs tensor for a tensor attribute. */
  constant(t: OnnxTensor): tf.Tensor;
  /**
   * Check a shape the node is about to allocate, derived from the model's values (pads, sizes,
   * repeats, a broadcast), against the trainer's bound (src/engine/program/shape-bound.ts; a -1
   * allowed where `inferred`); returns it.
   * @throws ModelFormatError past the bound, before anything is allocated.
   */
  bound(shape: readonly number[], inferred?: boolean): number[];
}

/** An operator: its outputs, in the node's output order (trailing optional outputs may be left out). */
export type OpFn = (a: OpArgs) => (tf.Tensor | undefined)[];

/** A family of operators. */
export type OpTable = Record<string, OpFn>;

/** The typed refusal of a node the executor cannot run as the model asks. */
export function unsupported(a: OpArgs, why: string): UnsupportedOperatorError {
  const { node, opset } = a;
  return new UnsupportedOperatorError(
    `ONNX node ${JSON.stringify(node.key)} (${node.opType}, opset ${opset}): ${why}; the trainer's executor cannot run it, so this model cannot be trained as it is`,
    { op: node.opType, node: node.key, domain: node.domain, opset },
  );
}

function attr(a: OpArgs, name: string): OnnxAttribute | undefined {
  return a.node.attributes.get(name);
}

/** An INT attribute. */
export function int(a: OpArgs, name: string, fallback: number): number {
  return attr(a, name)?.i ?? fallback;
}

/** A FLOAT attribute. */
export function float(a: OpArgs, name: string, fallback: number): number {
  return attr(a, name)?.f ?? fallback;
}

/** A STRING attribute. */
export function str(a: OpArgs, name: string, fallback: string): string {
  return attr(a, name)?.s ?? fallback;
}

/** An INTS attribute (undefined when absent). */
export function ints(a: OpArgs, name: string): number[] | undefined {
  const x = attr(a, name);
  return x ? (x.ints ?? []) : undefined;
}

/** A FLOATS attribute (undefined when absent). */
export function floats(a: OpArgs, name: string): number[] | undefined {
  const x = attr(a, name);
  return x ? (x.floats ?? []) : undefined;
}

/** A STRINGS attribute (undefined when absent). */
export function strings(a: OpArgs, name: string): string[] | undefined {
  const x = attr(a, name);
  return x ? (x.strings ?? []) : undefined;
}

/** Input `i`, which the node must have. */
export function need(a: OpArgs, i: number): tf.Tensor {
  const t = a.inputs[i];
  if (!t) throw unsupported(a, `input ${i} is missing`);
  return t;
}

/** The values of a small integer tensor known when the graph runs (shapes, axes, pads). */
export function values(t: tf.Tensor): number[] {
  return Array.from(t.dataSync() as ArrayLike<number>, Number);
}

/** A negative axis counted from the end. */
export function axisOf(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}

/** Axes of an op that takes them as an attribute before `inputSince` and as input `index` from then. */
export function axesOf(a: OpArgs, inputSince: number, index: number): number[] | undefined {
  if (a.opset >= inputSince) {
    const t = a.inputs[index];
    return t ? values(t) : undefined;
  }
  return ints(a, 'axes');
}

/** The tfjs dtype of an ONNX data type (undefined for types the executor does not compute with). */
export function tfDtype(dataType: number): tf.DataType | undefined {
  if (dataType === 1 || dataType === 10 || dataType === 11 || dataType === 16) return 'float32';
  if (dataType === 9) return 'bool';
  if ((dataType >= 2 && dataType <= 7) || dataType === 12 || dataType === 13) return 'int32';
  if (dataType === 8) return 'string';
  return undefined;
}

/** Largest magnitude kept of an int64 value in int32 (see the module doc). */
export const INT32_MAX = 2147483647;

/** A tensor of values as float32, or int32 clamped into range. */
export function tensorOf(values: ArrayLike<number>, shape: number[], dtype: tf.DataType): tf.Tensor {
  if (dtype === 'int32') return tf.tensor(Int32Array.from(values as ArrayLike<number>, (v) => Math.max(-INT32_MAX - 1, Math.min(INT32_MAX, v))), shape, 'int32');
  if (dtype === 'bool') return tf.tensor(Uint8Array.from(values as ArrayLike<number>, (v) => (v ? 1 : 0)), shape, 'bool');
  return tf.tensor(Float32Array.from(values as ArrayLike<number>), shape, 'float32');
}

/** The numpy broadcast of two shapes. */
export function broadcastShapes(x: readonly number[], y: readonly number[]): number[] {
  const rank = Math.max(x.length, y.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const a = x[x.length - rank + i] ?? 1;
    const b = y[y.length - rank + i] ?? 1;
    out.push(a === 1 ? b : a);
  }
  return out;
}
