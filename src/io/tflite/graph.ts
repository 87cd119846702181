/**
 * The graph of a `.tflite` file's first subgraph (its tensors, inputs, outputs and operators with
 * their options), read with the checked FlatBuffers reader, for the trainer's program
 * (src/engine/tflite/). Not part of the device store: a device patches weights, it never runs the
 * graph here. Builtin operator numbers and option fields as tensorflow/lite/schema/schema.fbs
 * defines them.
 */
import { ModelFormatError } from '../../core/errors.ts';
import { FlatBufferReader, type FbVector } from './flatbuffers.ts';

/** The builtin operators the trainer knows by name (schema.fbs `BuiltinOperator`). */
export const TFLITE_OPS: Readonly<Record<number, string>> = {
  0: 'ADD', 1: 'AVERAGE_POOL_2D', 2: 'CONCATENATION', 3: 'CONV_2D', 4: 'DEPTHWISE_CONV_2D', 5: 'DEPTH_TO_SPACE', 6: 'DEQUANTIZE', 9: 'FULLY_CONNECTED',
  14: 'LOGISTIC', 17: 'MAX_POOL_2D', 18: 'MUL', 19: 'RELU', 21: 'RELU6', 22: 'RESHAPE', 23: 'RESIZE_BILINEAR', 25: 'SOFTMAX', 28: 'TANH', 32: 'CUSTOM',
  34: 'PAD', 39: 'TRANSPOSE', 40: 'MEAN', 41: 'SUB', 42: 'DIV', 43: 'SQUEEZE', 45: 'STRIDED_SLICE', 47: 'EXP', 49: 'SPLIT', 50: 'LOG_SOFTMAX', 53: 'CAST',
  54: 'PRELU', 55: 'MAXIMUM', 57: 'MINIMUM', 65: 'SLICE', 67: 'TRANSPOSE_CONV', 70: 'EXPAND_DIMS', 74: 'SUM', 97: 'RESIZE_NEAREST_NEIGHBOR', 98: 'LEAKY_RELU',
  114: 'QUANTIZE', 117: 'HARD_SWISH', 124: 'DENSIFY', 126: 'BATCH_MATMUL', 150: 'GELU',
};

/** A tensor of the graph. */
export interface TfliteGraphTensor {
  name: string;
  shape: number[];
  type: number;
  buffer: number;
}

/** An operator: its name (`CONV_2D`, or `custom:<code>`), tensor indices (-1: an omitted optional input) and options. */
export interface TfliteGraphOperator {
  index: number;
  op: string;
  inputs: number[];
  outputs: number[];
  /** The builtin options table's fields, read as the operator needs them (see {@link TfliteOptions}). */
  options: TfliteOptions;
  /** A custom operator's options bytes. */
  custom?: Uint8Array;
}

/** Reads fields of an operator's builtin options table (defaults when absent). */
export interface TfliteOptions {
  u8(field: number, dflt?: number): number;
  i32(field: number, dflt?: number): number;
  f32(field: number, dflt?: number): number;
  ints(field: number): number[];
}

/** A graph's first subgraph. */
export interface TfliteGraph {
  tensors: TfliteGraphTensor[];
  inputs: number[];
  outputs: number[];
  operators: TfliteGraphOperator[];
  subgraphs: number;
}

const NO_OPTIONS: TfliteOptions = { u8: (_f, d = 0) => d, i32: (_f, d = 0) => d, f32: (_f, d = 0) => d, ints: () => [] };

/**
 * Read the graph of a `.tflite` file (module doc).
 * @throws ModelFormatError when the bytes are not a well-formed LiteRT model.
 */
export function readTfliteGraph(bytes: Uint8Array, source = 'LiteRT model'): TfliteGraph {
  const fb = new FlatBufferReader(bytes, source);
  const model = fb.root('TFL3');
  const codes: string[] = [];
  const codeVec = fb.fieldVector(model, 1, 4, 'the operator codes');
  for (let i = 0; i < (codeVec?.length ?? 0); i++) {
    const c = fb.tableAt(codeVec as FbVector, i, `operator code ${i}`);
    const custom = fb.fieldString(c, 1, `the custom code of operator code ${i}`);
    const code = Math.max(fb.fieldU8(c, 0, 0), fb.fieldI32(c, 3, 0));
    codes.push(custom ? `custom:${custom}` : TFLITE_OPS[code] ?? `builtin ${code}`);
  }
  const subVec = fb.fieldVector(model, 2, 4, 'the subgraphs');
  if (!subVec?.length) throw new ModelFormatError(`${source} has no subgraph: expected a model with a graph`, { source });
  const sub = fb.tableAt(subVec, 0, 'subgraph 0');
  const tensors: TfliteGraphTensor[] = [];
  const tVec = fb.fieldVector(sub, 0, 4, 'the tensors of subgraph 0');
  for (let k = 0; k < (tVec?.length ?? 0); k++) {
    const t = fb.tableAt(tVec as FbVector, k, `tensor ${k}`);
    tensors.push({ name: fb.fieldString(t, 3, `the name of tensor ${k}`), shape: fb.ints(fb.fieldVector(t, 0, 4, `the shape of tensor ${k}`)), type: fb.fieldU8(t, 1, 0), buffer: fb.fieldU32(t, 2, 0) });
  }
  const check = (list: number[], what: string) => {
    for (const i of list) if (i < -1 || i >= tensors.length) fb.fail(`${what} names tensor ${i}, but subgraph 0 has ${tensors.length}`);
    return list;
  };
  const inputs = check(fb.ints(fb.fieldVector(sub, 1, 4, 'the inputs of subgraph 0')), 'an input');
  const outputs = check(fb.ints(fb.fieldVector(sub, 2, 4, 'the outputs of subgraph 0')), 'an output');
  const operators: TfliteGraphOperator[] = [];
  const oVec = fb.fieldVector(sub, 3, 4, 'the operators of subgraph 0');
  for (let k = 0; k < (oVec?.length ?? 0); k++) {
    const o = fb.tableAt(oVec as FbVector, k, `operator ${k}`);
    const code = fb.fieldU32(o, 0, 0);
    if (code >= codes.length) fb.fail(`operator ${k} names operator code ${code}, but the model has ${codes.length}`);
    const opt = fb.fieldTable(o, 4, `the options of operator ${k}`);
    const options: TfliteOptions = opt < 0 ? NO_OPTIONS : {
      u8: (f, d = 0) => fb.fieldU8(opt, f, d),
      i32: (f, d = 0) => fb.fieldI32(opt, f, d),
      f32: (f, d = 0) => {
        const p = fb.field(opt, f, 4);
        return p < 0 ? d : fb.f32(p);
      },
      ints: (f) => fb.ints(fb.fieldVector(opt, f, 4, `an option of operator ${k}`)),
    };
    const customVec = fb.fieldVector(o, 5, 1, `the custom options of operator ${k}`);
    operators.push({
      index: k, op: codes[code],
      inputs: check(fb.ints(fb.fieldVector(o, 1, 4, `the inputs of operator ${k}`)), `operator ${k}`),
      outputs: check(fb.ints(fb.fieldVector(o, 2, 4, `the outputs of operator ${k}`)), `operator ${k}`),
      options,
      ...(customVec ? { custom: bytes.slice(customVec.at, customVec.at + customVec.length) } : {}),
    });
  }
  return { tensors, inputs, outputs, operators, subgraphs: subVec.length };
}
