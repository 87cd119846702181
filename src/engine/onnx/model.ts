/**
 * The ONNX graph as the executor needs it: every node with its attributes decoded, the graph's
 * inputs and outputs, its initializers and the default-domain opset, subgraphs (`If`, `Loop`,
 * `Scan` bodies) decoded the same way. Plain TypeScript over the protobuf wire format
 * (field numbers of onnx/onnx.proto), no tfjs.
 *
 * The protobuf is read through the weight store's cursor (src/io/onnx/wire.ts), with the same
 * checks of every tag, wire type and length. The weight store (src/io/onnx/proto.ts) finds the
 * same tensors by a separate walk and names them; a decoded tensor here carries where its values start in the file ({@link OnnxTensor.at}),
 * which is how the executor finds the store's name for it (the same bytes, whatever the naming).
 */
import { ModelFormatError } from '../../core/errors.ts';
import { fromHalfBits } from '../../core/float16.ts';
import { ProtoFields as Reader, ProtoMalformed as Malformed } from '../../io/onnx/wire.ts';

/** Element types of ONNX tensors, by `TensorProto.DataType` number, that the executor computes with. */
export type OnnxElement = 'float32' | 'int32' | 'bool' | 'string';

/** A tensor decoded from the file: its values as numbers (int64 rounded past 2^53). */
export interface OnnxTensor {
  name: string;
  dataType: number;
  dims: number[];
  /** Values as float64 numbers (or strings for STRING tensors). */
  values: Float64Array | string[];
  /**
   * Where the values start (`<external location>@<byte>`, `@<byte>` in the model file), the
   * key to the weight store's record of the same tensor; undefined for an empty tensor.
   */
  at?: string;
}

/** A decoded attribute (only the fields that are set). */
export interface OnnxAttribute {
  name: string;
  type: number;
  f?: number;
  i?: number;
  s?: string;
  t?: OnnxTensor;
  g?: OnnxGraph;
  floats?: number[];
  ints?: number[];
  strings?: string[];
  tensors?: OnnxTensor[];
  graphs?: OnnxGraph[];
  /** Set inside a function body: the attribute refers to the caller's attribute of this name. */
  refAttrName?: string;
}

/** One node of a graph. */
export interface OnnxNode {
  /** The node's name, else its first output, else `#<index>` (as the store names nodes). */
  key: string;
  opType: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  attributes: Map<string, OnnxAttribute>;
}

/** A graph input or output: its name, element type and shape (a dim is a number, a symbol or -1). */
export interface OnnxValueInfo {
  name: string;
  dataType: number;
  shape?: (number | string)[];
}

/** A graph (the main one or a subgraph). */
export interface OnnxGraph {
  /** The store's name prefix of the tensors defined in this graph (`''` at the top). */
  prefix: string;
  nodes: OnnxNode[];
  initializers: OnnxTensor[];
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
}

/** A decoded model. */
export interface OnnxModel {
  graph: OnnxGraph;
  /** Opset version by domain (`''` for the default domain). */
  opsets: Map<string, number>;
  irVersion: number;
}

const bf = new Float32Array(1);
const bfBits = new Uint32Array(bf.buffer);

/** Decode raw little-endian bytes of `dataType` into numbers. */
function decodeRaw(b: Uint8Array, dataType: number, count: number): Float64Array {
  const out = new Float64Array(count);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 0; i < count; i++) {
    switch (dataType) {
      case 1: out[i] = dv.getFloat32(4 * i, true); break;
      case 2: out[i] = dv.getUint8(i); break;
      case 3: out[i] = dv.getInt8(i); break;
      case 4: out[i] = dv.getUint16(2 * i, true); break;
      case 5: out[i] = dv.getInt16(2 * i, true); break;
      case 6: out[i] = dv.getInt32(4 * i, true); break;
      case 7: out[i] = Number(dv.getBigInt64(8 * i, true)); break;
      case 9: out[i] = dv.getUint8(i) ? 1 : 0; break;
      case 10: out[i] = fromHalfBits(dv.getUint16(2 * i, true)); break;
      case 11: out[i] = dv.getFloat64(8 * i, true); break;
      case 12: out[i] = dv.getUint32(4 * i, true); break;
      case 13: out[i] = Number(dv.getBigUint64(8 * i, true)); break;
      case 16: bfBits[0] = dv.getUint16(2 * i, true) << 16; out[i] = bf[0]; break;
      default: throw new Malformed(`tensors of data type ${dataType} are not read`);
    }
  }
  return out;
}

/** Bytes per element of raw data, for the dtypes the executor reads. */
const WIDTH: Record<number, number> = { 1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2 };

/** The external data files' bytes by location, for tensors stored outside the model. */
export type ExternalFiles = ReadonlyMap<string, Uint8Array>;

function readTensor(r: Reader, external: ExternalFiles | undefined): OnnxTensor {
  const dims: number[] = [];
  let dataType = 0;
  let name = '';
  let raw: [number, number] | undefined;
  let firstTyped: number | undefined;
  const typed: number[] = [];
  const strings: string[] = [];
  const ext = new Map<string, string>();
  let location = 0;
  while (r.next()) {
    switch (r.field) {
      case 1: r.varints('dims', dims); break;
      case 2: dataType = r.int('data_type'); break;
      case 8: name = r.string(); break;
      case 9: r.need(2, 'raw_data'); raw = [r.start, r.stop]; break;
      case 4: firstTyped ??= r.start; r.fixedFloats('float_data', 4, typed); break;
      case 10: firstTyped ??= r.start; r.fixedFloats('double_data', 8, typed); break;
      case 5: case 7: firstTyped ??= r.start; r.varints(r.field === 5 ? 'int32_data' : 'int64_data', typed); break;
      case 11: {
        // uint64_data: unsigned varints.
        firstTyped ??= r.start;
        const s = r.wire === 0 ? null : r.sub('uint64_data');
        if (!s) typed.push(r.hi * 4294967296 + r.lo);
        else while (s.p < s.end) { s.varint(); typed.push(s.hi * 4294967296 + s.lo); }
        break;
      }
      case 6: strings.push(r.string()); break;
      case 13: {
        const kv = r.sub('external_data');
        let k = '';
        let v = '';
        while (kv.next()) {
          if (kv.field === 1) k = kv.string();
          else if (kv.field === 2) v = kv.string();
        }
        ext.set(k, v);
        break;
      }
      case 14: location = r.int('data_location'); break;
    }
  }
  const count = dims.reduce((a, d) => a * d, 1);
  const where = `tensor ${JSON.stringify(name)}`;
  if (dataType === 8) return { name, dataType, dims, values: strings };
  if (location === 1) {
    const loc = ext.get('location') ?? '';
    const file = external?.get(loc);
    if (!file) throw new Malformed(`${where} keeps its data in external file ${JSON.stringify(loc)}, which was not provided`);
    const offset = Number(ext.get('offset') ?? 0);
    const width = WIDTH[dataType];
    if (width === undefined) throw new Malformed(`${where} has data type ${dataType}, which the executor does not read`);
    const bytes = file.subarray(offset, offset + width * count);
    if (bytes.length !== width * count) throw new Malformed(`${where}: its external data in ${JSON.stringify(loc)} is too short`);
    return { name, dataType, dims, values: decodeRaw(bytes, dataType, count), at: `${loc}@${offset}` };
  }
  if (raw) {
    const width = WIDTH[dataType];
    if (width === undefined) throw new Malformed(`${where} has data type ${dataType}, which the executor does not read`);
    if (raw[1] - raw[0] !== width * count) throw new Malformed(`${where}: raw_data holds ${raw[1] - raw[0]} bytes, its shape needs ${width * count}`);
    return { name, dataType, dims, values: decodeRaw(r.b.subarray(raw[0], raw[1]), dataType, count), at: count ? `@${raw[0]}` : undefined };
  }
  if (typed.length !== count) throw new Malformed(`${where}: shape [${dims.join(', ')}] needs ${count} values, the file holds ${typed.length}`);
  const values = Float64Array.from(typed);
  // Typed fields hold float16/bfloat16 as their bit patterns in int32_data.
  if (dataType === 10) for (let i = 0; i < count; i++) values[i] = fromHalfBits(values[i] & 0xffff);
  if (dataType === 16) for (let i = 0; i < count; i++) { bfBits[0] = (values[i] & 0xffff) << 16; values[i] = bf[0]; }
  if (dataType === 9) for (let i = 0; i < count; i++) values[i] = values[i] ? 1 : 0;
  if (dataType === 1 || dataType === 11) for (let i = 0; i < count; i++) values[i] = dataType === 1 ? Math.fround(values[i]) : values[i];
  return { name, dataType, dims, values, at: count && firstTyped !== undefined ? `@${firstTyped}` : undefined };
}

function readValueInfo(r: Reader): OnnxValueInfo {
  let name = '';
  let dataType = 0;
  let shape: (number | string)[] | undefined;
  while (r.next()) {
    if (r.field === 1) name = r.string();
    else if (r.field === 2) {
      const type = r.sub('type');
      while (type.next()) {
        if (type.field !== 1) continue;
        const tt = type.sub('tensor_type');
        while (tt.next()) {
          if (tt.field === 1) dataType = tt.int('elem_type');
          else if (tt.field === 2) {
            shape = [];
            const s = tt.sub('shape');
            while (s.next()) {
              if (s.field !== 1) continue;
              const d = s.sub('dim');
              let dim: number | string = -1;
              while (d.next()) {
                if (d.field === 1) dim = d.int('dim_value');
                else if (d.field === 2) dim = d.string();
              }
              shape.push(dim);
            }
          }
        }
      }
    }
  }
  return { name, dataType, ...(shape ? { shape } : {}) };
}

function readAttribute(r: Reader, prefix: string, nodeKey: string, external: ExternalFiles | undefined): OnnxAttribute {
  const a: OnnxAttribute = { name: '', type: 0 };
  const pending: { field: number; reader: Reader }[] = [];
  while (r.next()) {
    switch (r.field) {
      case 1: a.name = r.string(); break;
      case 2: a.f = r.float('f'); break;
      case 3: a.i = r.int('i'); break;
      case 4: a.s = r.string(); break;
      case 7: r.fixedFloats('floats', 4, (a.floats ??= [])); break;
      case 8: r.varints('ints', (a.ints ??= [])); break;
      case 9: (a.strings ??= []).push(r.string()); break;
      case 20: a.type = r.int('type'); break;
      case 21: a.refAttrName = r.string(); break;
      case 5: case 6: case 10: case 11: pending.push({ field: r.field, reader: r.sub(r.field === 5 || r.field === 10 ? 'a tensor' : 'a graph') }); break;
    }
  }
  let graphIndex = 0;
  for (const { field, reader } of pending) {
    if (field === 5) a.t = readTensor(reader, external);
    else if (field === 10) (a.tensors ??= []).push(readTensor(reader, external));
    else if (field === 6) a.g = readGraph(reader, `${prefix}${nodeKey}/${a.name}/`, external);
    else (a.graphs ??= []).push(readGraph(reader, `${prefix}${nodeKey}/${a.name}[${graphIndex++}]/`, external));
  }
  return a;
}

function readNode(r: Reader, prefix: string, index: number, external: ExternalFiles | undefined): OnnxNode {
  const inputs: string[] = [];
  const outputs: string[] = [];
  let name = '';
  let opType = '';
  let domain = '';
  const attrReaders: Reader[] = [];
  while (r.next()) {
    if (r.field === 1) inputs.push(r.string());
    else if (r.field === 2) outputs.push(r.string());
    else if (r.field === 3) name = r.string();
    else if (r.field === 4) opType = r.string();
    else if (r.field === 7) domain = r.string();
    else if (r.field === 5) attrReaders.push(r.sub('attribute'));
  }
  const key = name || outputs[0] || `#${index}`;
  const attributes = new Map<string, OnnxAttribute>();
  for (const ar of attrReaders) {
    // Find where value_float(s) data starts (for a Constant's store record) before decoding.
    const scan = new Reader(ar.b, ar.p, ar.end);
    let floatsStart: number | undefined;
    while (scan.next()) if ((scan.field === 2 || scan.field === 7) && floatsStart === undefined && scan.stop > scan.start) floatsStart = scan.start;
    const a = readAttribute(ar, prefix, key, external);
    if (opType === 'Constant' && (a.name === 'value_float' || a.name === 'value_floats') && floatsStart !== undefined) {
      const values = Float64Array.from(a.name === 'value_float' ? [a.f as number] : (a.floats as number[]));
      a.t = { name: outputs[0] ?? key, dataType: 1, dims: a.name === 'value_float' ? [] : [values.length], values, at: `@${floatsStart}` };
    }
    attributes.set(a.name, a);
  }
  return { key, opType, domain: domain === 'ai.onnx' ? '' : domain, inputs, outputs, attributes };
}

function readGraph(r: Reader, prefix: string, external: ExternalFiles | undefined): OnnxGraph {
  const g: OnnxGraph = { prefix, nodes: [], initializers: [], inputs: [], outputs: [] };
  while (r.next()) {
    if (r.field === 1) g.nodes.push(readNode(r.sub('node'), prefix, g.nodes.length, external));
    else if (r.field === 5) g.initializers.push(readTensor(r.sub('initializer'), external));
    else if (r.field === 11) g.inputs.push(readValueInfo(r.sub('input')));
    else if (r.field === 12) g.outputs.push(readValueInfo(r.sub('output')));
    else if (r.field === 15) throw new Malformed('the graph holds sparse initializers, which the executor does not read');
  }
  return g;
}

/**
 * Decode an ONNX model for execution.
 * @throws ModelFormatError when the bytes are not a well-formed ONNX model, or a tensor the
 *   graph needs cannot be read.
 */
export function decodeOnnxModel(bytes: Uint8Array, options: { external?: ExternalFiles; source?: string } = {}): OnnxModel {
  const source = options.source ?? 'ONNX model';
  try {
    const r = new Reader(bytes, 0, bytes.length);
    let graph: OnnxGraph | undefined;
    let irVersion = 0;
    const opsets = new Map<string, number>();
    while (r.next()) {
      if (r.field === 1 && r.wire === 0) irVersion = r.int('ir_version');
      else if (r.field === 7) graph = readGraph(r.sub('graph'), '', options.external);
      else if (r.field === 8) {
        const o = r.sub('opset_import');
        let domain = '';
        let version = 0;
        while (o.next()) {
          if (o.field === 1) domain = o.string();
          else if (o.field === 2) version = o.int('version');
        }
        opsets.set(domain === 'ai.onnx' ? '' : domain, version);
      }
    }
    if (!graph) throw new Malformed('no graph');
    return { graph, opsets, irVersion };
  } catch (e) {
    if (!(e instanceof Malformed)) throw e;
    throw new ModelFormatError(`${source}: ${e.message}; the file is truncated, corrupt or not an ONNX model`, { source });
  }
}

/** Decode one serialized `TensorProto` (the `.pb` files of ONNX's test data). */
export function decodeOnnxTensor(bytes: Uint8Array): OnnxTensor {
  try {
    return readTensor(new Reader(bytes, 0, bytes.length), undefined);
  } catch (e) {
    if (!(e instanceof Malformed)) throw e;
    throw new ModelFormatError(`TensorProto: ${e.message}`);
  }
}
