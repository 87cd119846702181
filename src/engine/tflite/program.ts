/**
 * A LiteRT model (`.tflite`) as a differentiable tfjs program (src/engine/program/): its first
 * subgraph's operators run in file order (the order LiteRT runs them) as tfjs ops, with the
 * weights the `.tflite` store patches (float32, float16, int8 dequantized) as tf.Variables under
 * the store's names and grids, so a diff trained on them applies to the file with the existing
 * applier and keeps float16 and int8 weights on their grids.
 *
 * The operators of common mobile vision models are implemented (the list is
 * {@link TFLITE_TRAINABLE_OPS}: convolutions, depthwise and transposed convolutions, fully
 * connected, pooling, activations, element-wise arithmetic, reshape, concatenation, padding,
 * resizing, mean, softmax, dequantize, and MediaPipe's `Convolution2DTransposeBias`); a model
 * with any other is refused by name before anything runs. Activations must be float32 (a model
 * quantized end to end runs int8 activations: refused). Layout as LiteRT: NHWC, convolution
 * filters OHWI, depthwise filters 1HW(C×M), fully connected weights [out, in].
 *
 * Models declare a batch of 1; the program runs any batch: a RESHAPE to a shape starting with the
 * model's batch of 1 keeps the batch it is given.
 */
import * as tf from '@tensorflow/tfjs';
import { DataError, UnsupportedOperatorError } from '../../core/errors.ts';
import type { StorageGrid } from '../../core/grid.ts';
import { readTfliteGraph, type TfliteGraph, type TfliteGraphOperator } from '../../io/tflite/graph.ts';
import { scanTfliteModel, TFLITE_TYPES } from '../../io/tflite/schema.ts';
import { TFLITE_FRAME, TfliteWeightStore } from '../../io/tflite/store.ts';
import { broadcastOf, DerivedShapeBound } from '../program/shape-bound.ts';
import { uniqueVariableName, type ProgramRecipe, type ProgramTensorInfo, type ProgramVariable, type TrainableProgram } from '../program/program.ts';

type Act = (x: tf.Tensor) => tf.Tensor;

/** A fused activation (schema.fbs `ActivationFunctionType`). */
function activation(code: number, op: TfliteGraphOperator): Act {
  switch (code) {
    case 0: return (x) => x;
    case 1: return (x) => tf.relu(x);
    case 2: return (x) => tf.clipByValue(x, -1, 1);
    case 3: return (x) => tf.relu6(x);
    case 4: return (x) => tf.tanh(x);
    default: throw new UnsupportedOperatorError(`operator ${op.index} (${op.op}) fuses activation ${code}, which the trainer does not implement`, { op: op.op });
  }
}

const padding = (code: number): 'same' | 'valid' => (code === 1 ? 'valid' : 'same');

/** How each operator runs: its inputs (tensors, -1 given as null) to its outputs. */
type Kernel = (x: (tf.Tensor | null)[], op: TfliteGraphOperator, ctx: KernelContext) => tf.Tensor[];

/** What a kernel may ask of the run: constants' values, the batch, and the bound on shapes it derives from them (src/engine/program/shape-bound.ts). */
interface KernelContext {
  consts: (i: number) => number[];
  batch: number;
  /** Check a shape the operator is about to allocate (module doc of shape-bound.ts); returns it. */
  bound: (op: TfliteGraphOperator, shape: readonly number[], inferred?: boolean) => number[];
}

/** An element-wise operator of two inputs: their broadcast shape checked before it is built (a [1, N] and an [N, 1] constant make N²). */
const broadcasting = (f: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor): Kernel => (x, op, ctx) => {
  const [a, b] = x as tf.Tensor[];
  ctx.bound(op, broadcastOf(a.shape, b.shape));
  return [f(a, b)];
};
const binary = (f: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor): Kernel => (x, op, ctx) => [activation(op.options.u8(0), op)(broadcasting(f)(x, op, ctx)[0])];
const unary = (f: Act): Kernel => (x) => [f(x[0] as tf.Tensor)];
const axis = (a: number, rank: number) => (a < 0 ? a + rank : a);

/** The implemented operators (module doc). */
const KERNELS: Record<string, Kernel> = {
  DEQUANTIZE: (x) => [tf.cast(x[0] as tf.Tensor, 'float32')],
  CONV_2D: (x, op) => {
    const [input, w, b] = x as tf.Tensor4D[];
    const o = op.options;
    let y: tf.Tensor = tf.conv2d(input, tf.transpose(w, [1, 2, 3, 0]) as tf.Tensor4D, [o.i32(2, 1), o.i32(1, 1)], padding(o.u8(0)), 'NHWC', [o.i32(5, 1), o.i32(4, 1)]);
    if (b) y = tf.add(y, b);
    return [activation(o.u8(3), op)(y)];
  },
  DEPTHWISE_CONV_2D: (x, op) => {
    const [input, w, b] = x as tf.Tensor4D[];
    const o = op.options;
    const c = input.shape[3];
    const [, h, wd, cm] = w.shape;
    let y: tf.Tensor = tf.depthwiseConv2d(input, tf.reshape(w, [h, wd, c, cm / c]) as tf.Tensor4D, [o.i32(2, 1), o.i32(1, 1)], padding(o.u8(0)), 'NHWC', [o.i32(6, 1), o.i32(5, 1)]);
    if (b) y = tf.add(y, b);
    return [activation(o.u8(4), op)(y)];
  },
  FULLY_CONNECTED: (x, op, ctx) => {
    const [input, w, b] = x as tf.Tensor[];
    const [outDim, inDim] = w.shape;
    ctx.bound(op, [input.size / inDim, outDim]);
    const keep = op.options.u8(2) !== 0;
    let y: tf.Tensor = tf.matMul(tf.reshape(input, [-1, inDim]) as tf.Tensor2D, w as tf.Tensor2D, false, true);
    if (b) y = tf.add(y, b);
    if (keep) y = tf.reshape(y, [...input.shape.slice(0, -1), outDim]);
    return [activation(op.options.u8(0), op)(y)];
  },
  MAX_POOL_2D: (x, op) => {
    const o = op.options;
    return [activation(o.u8(5), op)(tf.maxPool(x[0] as tf.Tensor4D, [o.i32(4, 1), o.i32(3, 1)], [o.i32(2, 1), o.i32(1, 1)], padding(o.u8(0))))];
  },
  AVERAGE_POOL_2D: (x, op) => {
    const o = op.options;
    return [activation(o.u8(5), op)(tf.avgPool(x[0] as tf.Tensor4D, [o.i32(4, 1), o.i32(3, 1)], [o.i32(2, 1), o.i32(1, 1)], padding(o.u8(0))))];
  },
  ADD: binary((a, b) => tf.add(a, b)),
  SUB: binary((a, b) => tf.sub(a, b)),
  MUL: binary((a, b) => tf.mul(a, b)),
  DIV: binary((a, b) => tf.div(a, b)),
  MAXIMUM: broadcasting((a, b) => tf.maximum(a, b)),
  MINIMUM: broadcasting((a, b) => tf.minimum(a, b)),
  RELU: unary((t) => tf.relu(t)),
  RELU6: unary((t) => tf.relu6(t)),
  LOGISTIC: unary((t) => tf.sigmoid(t)),
  TANH: unary((t) => tf.tanh(t)),
  EXP: unary((t) => tf.exp(t)),
  HARD_SWISH: unary((t) => tf.mul(t, tf.div(tf.relu6(tf.add(t, 3)), 6))),
  LEAKY_RELU: (x, op) => [tf.leakyRelu(x[0] as tf.Tensor, op.options.f32(0, 0.2))],
  PRELU: broadcasting((t, alpha) => tf.add(tf.relu(t), tf.mul(alpha, tf.neg(tf.relu(tf.neg(t)))))),
  SOFTMAX: (x, op) => {
    const beta = op.options.f32(0, 1);
    return [tf.softmax(beta === 1 ? (x[0] as tf.Tensor) : tf.mul(x[0] as tf.Tensor, beta))];
  },
  RESHAPE: (x, op, ctx) => {
    const input = x[0] as tf.Tensor;
    let shape = op.inputs[1] !== undefined && op.inputs[1] >= 0 ? ctx.consts(op.inputs[1]) : op.options.ints(0);
    // The model's batch of 1 stays the batch being run.
    if (shape.length && shape[0] === 1 && ctx.batch !== 1 && input.shape[0] === ctx.batch) shape = [ctx.batch, ...shape.slice(1)];
    return [tf.reshape(input, ctx.bound(op, shape, true))];
  },
  CONCATENATION: (x, op) => {
    const list = x as tf.Tensor[];
    return [activation(op.options.u8(1), op)(tf.concat(list, axis(op.options.i32(0), list[0].rank)))];
  },
  PAD: (x, op, ctx) => {
    const input = x[0] as tf.Tensor;
    const p = ctx.consts(op.inputs[1]);
    const pairs: [number, number][] = [];
    for (let i = 0; i < p.length; i += 2) pairs.push([p[i], p[i + 1]]);
    ctx.bound(op, input.shape.map((d, i) => d + (pairs[i]?.[0] ?? 0) + (pairs[i]?.[1] ?? 0)));
    return [tf.pad(input, pairs)];
  },
  RESIZE_BILINEAR: (x, op, ctx) => {
    const input = x[0] as tf.Tensor4D;
    const [h, w] = ctx.consts(op.inputs[1]);
    ctx.bound(op, [input.shape[0], h, w, input.shape[3]]);
    return [tf.image.resizeBilinear(input, [h, w], op.options.u8(2) !== 0, op.options.u8(3) !== 0)];
  },
  RESIZE_NEAREST_NEIGHBOR: (x, op, ctx) => {
    const input = x[0] as tf.Tensor4D;
    const [h, w] = ctx.consts(op.inputs[1]);
    ctx.bound(op, [input.shape[0], h, w, input.shape[3]]);
    return [tf.image.resizeNearestNeighbor(input, [h, w], op.options.u8(0) !== 0, op.options.u8(1) !== 0)];
  },
  MEAN: (x, op, ctx) => {
    const input = x[0] as tf.Tensor;
    return [tf.mean(input, ctx.consts(op.inputs[1]).map((a) => axis(a, input.rank)), op.options.u8(0) !== 0)];
  },
  SUM: (x, op, ctx) => {
    const input = x[0] as tf.Tensor;
    return [tf.sum(input, ctx.consts(op.inputs[1]).map((a) => axis(a, input.rank)), op.options.u8(0) !== 0)];
  },
  TRANSPOSE: (x, op, ctx) => [tf.transpose(x[0] as tf.Tensor, ctx.consts(op.inputs[1]))],
  // MediaPipe's transposed convolution with bias; options: TfLiteTransposeConvParams {padding (1 same, 2 valid), stride_w, stride_h}.
  'custom:Convolution2DTransposeBias': (x, op, ctx) => {
    const [input, w, b] = x as tf.Tensor4D[];
    const raw = op.custom ?? new Uint8Array(12);
    const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const pad = raw.length >= 4 ? dv.getInt32(0, true) : 1;
    const [sw, sh] = raw.length >= 12 ? [dv.getInt32(4, true), dv.getInt32(8, true)] : [1, 1];
    const [o, kh, kw] = w.shape;
    const [n, h, wd] = input.shape;
    ctx.bound(op, pad === 2 ? [n, (h - 1) * sh + kh, (wd - 1) * sw + kw, o] : [n, h * sh, wd * sw, o]);
    return [transposeConv(input, w, b, sh, sw, pad === 2 ? 'valid' : 'same')];
  },
  TRANSPOSE_CONV: (x, op, ctx) => {
    // Inputs: output shape, weights (OHWI), input, optional bias.
    const [, w, input, b] = x as tf.Tensor4D[];
    const o = op.options;
    const outShape = ctx.consts(op.inputs[0]);
    ctx.bound(op, [input.shape[0], outShape[1], outShape[2], outShape[3]]);
    const y = tf.conv2dTranspose(input, tf.transpose(w, [1, 2, 0, 3]) as tf.Tensor4D, [input.shape[0], outShape[1], outShape[2], outShape[3]], [o.i32(2, 1), o.i32(1, 1)], padding(o.u8(0)));
    return [activation(o.u8(3), op)(b ? tf.add(y, b) : y)];
  },
};

function transposeConv(input: tf.Tensor4D, w: tf.Tensor4D, b: tf.Tensor | null | undefined, sh: number, sw: number, pad: 'same' | 'valid'): tf.Tensor {
  const [o, kh, kw] = w.shape;
  const [n, h, wd] = input.shape;
  const outH = pad === 'same' ? h * sh : (h - 1) * sh + kh;
  const outW = pad === 'same' ? wd * sw : (wd - 1) * sw + kw;
  const y = tf.conv2dTranspose(input, tf.transpose(w, [1, 2, 0, 3]) as tf.Tensor4D, [n, outH, outW, o], [sh, sw], pad);
  return b ? tf.add(y, b) : y;
}

/** The operators {@link TfliteProgram} implements, sorted. */
export const TFLITE_TRAINABLE_OPS: readonly string[] = Object.keys(KERNELS).sort();

/** Options of {@link TfliteProgram}. */
export interface TfliteProgramOptions {
  /** Name for messages (a path). */
  source?: string;
  /** Which of the store's weights are trainable variables (default: all of them). */
  trainable?: (name: string) => boolean;
}

/** A `.tflite` model as a {@link TrainableProgram} (module doc). */
export class TfliteProgram implements TrainableProgram {
  readonly source: string;
  readonly variables: ProgramVariable[] = [];
  readonly inputs: ProgramTensorInfo[];
  readonly outputs: ProgramTensorInfo[];
  readonly graph: TfliteGraph;
  /** @internal The bytes this program was built from (a training worker builds it again). */
  readonly recipe: ProgramRecipe;
  /** The tensor each graph tensor index holds before the run (weights as variables, other constants), by index. */
  private readonly stored = new Map<number, tf.Tensor>();
  /** Constant tensors' values as numbers (shapes, axes, paddings), by index. */
  private readonly constValues = new Map<number, number[]>();

  /**
   * @param bytes the `.tflite` file (read, never changed).
   * @throws UnsupportedOperatorError naming the first operator not implemented (and every one
   *   in the model), or a non-float activation; ModelFormatError for a malformed file.
   */
  constructor(bytes: Uint8Array, options: TfliteProgramOptions = {}) {
    this.source = options.source ?? 'LiteRT model';
    this.graph = readTfliteGraph(bytes, this.source);
    this.recipe = { format: 'tflite', bytes, source: this.source };
    const g = this.graph;
    const missing = g.operators.filter((o) => !KERNELS[o.op]);
    if (missing.length) {
      const ops = [...new Set(missing.map((m) => m.op))];
      throw new UnsupportedOperatorError(
        `${this.source}: operator ${missing[0].op} (operator ${missing[0].index}, producing ${JSON.stringify(g.tensors[missing[0].outputs[0]]?.name ?? '')}) is not implemented by the trainer's LiteRT executor` +
          `${missing.length > 1 ? `; ${missing.length} operators in all are not (${ops.join(', ')})` : ''}. Nothing ran. Implemented: ${TFLITE_TRAINABLE_OPS.join(', ')}. Ship this model's updates post hoc (ndiff diff)`,
        { op: missing[0].op, ops, operators: missing.length },
      );
    }
    if (g.subgraphs > 1) throw new UnsupportedOperatorError(`${this.source} has ${g.subgraphs} subgraphs (control flow or signatures): the trainer runs models of one subgraph. Ship its updates post hoc (ndiff diff)`, { subgraphs: g.subgraphs });
    const store = new TfliteWeightStore(bytes, { source: this.source });
    // The store's tensors by their index in subgraph 0 (the scan names them as the store does).
    const listed = new Set(store.list().map((e) => e.name));
    const listedByOrder = new Map<number, string>();
    for (const rec of scanTfliteModel(bytes, { source: this.source, reserved: [TFLITE_FRAME] }).tensors) {
      if (rec.subgraph === 0 && listed.has(rec.name)) listedByOrder.set(rec.index, rec.name);
    }
    const trainable = options.trainable ?? (() => true);
    const patchable = new Set(store.weights().map((w) => w.name));
    for (const [i, name] of listedByOrder) {
      const t = g.tensors[i];
      const shape = t.shape;
      if (patchable.has(name)) {
        const init = tf.tensor(store.values(name), shape, 'float32');
        const variable = tf.variable(init, trainable(name), uniqueVariableName(name));
        init.dispose();
        this.variables.push({ name, shape: shape.slice(), variable, trainable: trainable(name), grid: (store.grid(name) ?? { dtype: 'float32' }) as StorageGrid });
        this.stored.set(i, variable);
      } else {
        const values = Array.from(store.read(name));
        this.constValues.set(i, values);
        const isInt = TFLITE_TYPES[t.type].includes('INT') || t.type === 6;
        this.stored.set(i, tf.tensor(values, shape, isInt ? 'int32' : 'float32'));
      }
    }
    // Activations must be float32 (constants aside).
    for (const o of g.operators) {
      for (const j of o.outputs) {
        const t = g.tensors[j];
        if (t && t.type !== 0 && !(o.op === 'DEQUANTIZE')) {
          throw new UnsupportedOperatorError(`${this.source}: operator ${o.index} (${o.op}) produces ${JSON.stringify(t.name)} as ${TFLITE_TYPES[t.type]}: the trainer runs float32 activations (a model quantized end to end is not trained here). Ship its updates post hoc (ndiff diff)`, { op: o.op });
        }
      }
    }
    const info = (i: number): ProgramTensorInfo => ({ name: g.tensors[i].name, shape: g.tensors[i].shape });
    this.inputs = g.inputs.map(info);
    this.outputs = g.outputs.map(info);
  }

  /**
   * Evaluate the graph on `feeds` (one float32 tensor per input, by name; any batch) and return
   * every output by name. Differentiable with respect to {@link variables}.
   * @throws DataError when an input is missing.
   */
  run(feeds: Readonly<Record<string, tf.Tensor>>): Record<string, tf.Tensor> {
    const g = this.graph;
    const values = new Map<number, tf.Tensor>(this.stored);
    let batch = 1;
    for (const i of g.inputs) {
      const t = feeds[g.tensors[i].name];
      if (!t) throw new DataError(`${this.source}: no value for input ${JSON.stringify(g.tensors[i].name)}; the model's inputs are ${this.inputs.map((x) => `${x.name} [${(x.shape ?? []).join(', ')}]`).join(', ')}`, { input: g.tensors[i].name });
      values.set(i, t.dtype === 'float32' ? t : tf.cast(t, 'float32'));
      batch = t.shape[0] ?? 1;
    }
    const ctx: KernelContext = {
      batch,
      bound: this.bounder(g.inputs.map((i) => values.get(i)?.shape ?? [])),
      consts: (i: number) => {
        const v = this.constValues.get(i);
        if (!v) throw new UnsupportedOperatorError(`${this.source}: tensor ${JSON.stringify(g.tensors[i]?.name)} is computed, where the trainer needs a constant (a shape, axes or paddings)`, { tensor: g.tensors[i]?.name });
        return v;
      },
    };
    for (const op of g.operators) {
      const args = op.inputs.map((i) => (i < 0 ? null : (values.get(i) ?? null)));
      const outs = KERNELS[op.op](args, op, ctx);
      op.outputs.forEach((j, k) => values.set(j, outs[k]));
    }
    const result: Record<string, tf.Tensor> = {};
    for (const i of g.outputs) {
      const t = values.get(i) as tf.Tensor;
      result[g.tensors[i].name] = this.stored.get(i) === t ? t.clone() : t;
    }
    return result;
  }

  /**
   * Run operator `index` alone on `inputs` (one per operator input; null for an omitted one; a
   * missing one is taken from the model's weights and constants, a DEQUANTIZE output from the
   * weight it dequantizes): for checking each operator against another runtime on that runtime's
   * own inputs (bench/tflite-ops.ts). Differentiable like {@link run}.
   */
  runOperator(index: number, inputs: readonly (tf.Tensor | null | undefined)[], batch = 1): tf.Tensor[] {
    const g = this.graph;
    const op = g.operators[index];
    const args = op.inputs.map((i, k) => {
      if (i < 0) return null;
      if (inputs[k]) return inputs[k] as tf.Tensor;
      const dq = g.operators.find((q) => q.op === 'DEQUANTIZE' && q.outputs[0] === i);
      const t = this.stored.get(dq ? dq.inputs[0] : i);
      if (!t) throw new DataError(`${this.source}: operator ${index} (${op.op}) input ${k} (${JSON.stringify(g.tensors[i].name)}) is computed: give its value`, { operator: index, input: k });
      return t;
    });
    return KERNELS[op.op](args, op, { batch, bound: this.bounder(args.map((t) => t?.shape ?? [])), consts: (i) => this.constValues.get(i) ?? [] });
  }

  /** The bound on shapes the operators derive from the model's constants, for a run on inputs of `shapes`. */
  private bounder(shapes: readonly (readonly number[])[]): KernelContext['bound'] {
    const bound = DerivedShapeBound.of(this.source, shapes);
    return (op, shape, inferred) => bound.check(shape, `operator ${op.index} (${op.op})`, inferred);
  }

  /** The operator that computes `output` (`SOFTMAX` tells probabilities). */
  outputOp(output: string): string | undefined {
    const g = this.graph;
    const idx = g.tensors.findIndex((t) => t.name === output);
    const op = g.operators.find((o) => o.outputs.includes(idx));
    if (!op) return undefined;
    return op.op === 'SOFTMAX' ? 'Softmax' : op.op === 'LOGISTIC' ? 'Sigmoid' : op.op;
  }

  /** Free the variables and constants. */
  dispose(): void {
    for (const t of this.stored.values()) t.dispose();
    this.stored.clear();
  }
}
