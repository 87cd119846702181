/**
 * A small protobuf wire-format reader for ONNX model files (onnx/onnx.proto), in plain
 * TypeScript with no node imports, so it runs on a device next to the applier. It does not
 * decode whole messages: it walks the model once and records where every tensor's values lie
 * (byte ranges in the file, or in an external data file), which is all a weight store needs to
 * read them and to patch them in place.
 *
 * What it walks (field numbers of onnx.proto): `ModelProto.graph` (7) and `.functions` (25);
 * `GraphProto.node` (1) and `.initializer` (5); `NodeProto.input` (1), `.output` (2), `.name`
 * (3), `.op_type` (4), `.domain` (7), `.attribute` (5); `AttributeProto.name` (1), `.f` (2), `.i`
 * (3), `.t` (5), `.g` (6), `.floats` (7), `.tensors` (10), `.graphs` (11); `TensorProto.dims` (1), `.data_type` (2),
 * `.float_data` (4), `.int32_data` (5), `.int64_data` (7), `.name` (8), `.raw_data` (9),
 * `.double_data` (10), `.uint64_data` (11), `.external_data` (13), `.data_location` (14);
 * `FunctionProto.name` (1), `.node` (7), `.domain` (10), `.overload` (13). Every other field is
 * skipped after its wire type and length are checked. `training_info` graphs and sparse
 * initializers are not walked (their bytes are part of the model's frame, see onnx.ts).
 *
 * Naming (docs/FORMAT.md, "ONNX models"): an initializer by its name; a `Constant` node's value by
 * the node's first output; a tensor in another node's attribute as `<node>:<attribute>` (and
 * `[i]` for the i-th of a list); inside a subgraph (If/Loop/Scan attributes of type GRAPH or
 * GRAPHS) every name gets the prefix `<node>/<attribute>/` (`<node>/<attribute>[i]/` for
 * GRAPHS), nested as deep as the subgraphs are; inside a model-local function,
 * `<domain>:<function>/`. `<node>` is the node's name, else its first output, else `#<index>`.
 * A name met a second time gets ` #2` (then ` #3`, ...) in file order.
 *
 * Readers: every node input that names a tensor the scan found (an initializer or a `Constant`
 * output of the node's graph or of a graph around it; model-local functions see only their own)
 * is listed on that tensor ({@link OnnxTensorRecord.readers}), so a store can tell an INT8 weight
 * that feeds a `DequantizeLinear` (and with which scale and zero point) from any other.
 */
import { ModelFormatError } from '../../core/errors.ts';
import { decodeUtf8Strict } from '../../core/utf8-decode.ts';
import { uniqueNamer } from '../../core/file-frame.ts';
import { eachVarint, ProtoFields as Fields, ProtoMalformed as Malformed, signed64, WIRE_NAMES } from './wire.ts';

export { signed64 } from './wire.ts';

/** ONNX `TensorProto.DataType` names, by number. */
export const ONNX_DTYPES: readonly string[] = [
  'UNDEFINED', 'FLOAT', 'UINT8', 'INT8', 'UINT16', 'INT16', 'INT32', 'INT64', 'STRING', 'BOOL', 'FLOAT16', 'DOUBLE', 'UINT32', 'UINT64',
  'COMPLEX64', 'COMPLEX128', 'BFLOAT16', 'FLOAT8E4M3FN', 'FLOAT8E4M3FNUZ', 'FLOAT8E5M2', 'FLOAT8E5M2FNUZ', 'UINT4', 'INT4', 'FLOAT4E2M1', 'FLOAT8E8M0', 'UINT2', 'INT2',
];

/** Bytes per element in `raw_data`, for the dtypes read as numbers (others: not read). */
export const RAW_WIDTH: Readonly<Record<number, number>> = { 1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2 };

/** How a tensor's values are encoded. */
export type OnnxEncoding =
  /** `raw_data` (inline or external): little-endian, `RAW_WIDTH[dataType]` bytes each. */
  | 'raw'
  /** `float_data`, or a Constant's `value_float` / `value_floats`: little-endian float32 (fixed32). */
  | 'fixed32'
  /** `double_data`: little-endian float64 (fixed64). */
  | 'fixed64'
  /** `int32_data`, `int64_data`, `uint64_data`: varints. */
  | 'varint';

/** One tensor found in the model, and where its values are. */
export interface OnnxTensorRecord {
  /** Stable name (module doc). */
  name: string;
  /** The `TensorProto.DataType` number (FLOAT = 1 for `value_float(s)`). */
  dataType: number;
  dims: number[];
  /** Product of the dims (1 for a scalar). */
  count: number;
  encoding: OnnxEncoding;
  /**
   * Byte ranges holding the values, in order, flat: `[at0, end0, at1, end1, ...]` (one pair for
   * raw and packed fields, one per element for an unpacked repeated field). In the model file,
   * or in `external` (there offsets may pass 2^32: they are exact below 2^53).
   */
  ranges: number[];
  /**
   * Set on a tensor that another definition of the same name in the same graph hides: nodes
   * read the last initializer (or `Constant` output) of a name, as onnxruntime does, so this
   * one is never read and is kept read-only.
   */
  shadowedBy?: string;
  /** The external data file (`location`, relative to the model's folder), if the values are there. */
  external?: string;
  /** Where the tensor was found (for messages). */
  origin: 'initializer' | 'constant' | 'attribute';
  /** The nodes that take it as an input, by name (module doc); absent when none does. */
  readers?: OnnxReader[];
}

/** A node input that names a tensor of the scan (see {@link OnnxTensorRecord.readers}). */
export interface OnnxReader {
  /** The node: its name, else its first output, else `#<index>`, with the subgraph or function prefix. */
  node: string;
  /** Its op type, as `<domain>:<op type>` when its domain is not the default one (`""` or `ai.onnx`). */
  op: string;
  /** Which input the tensor is (0 = the first). */
  input: number;
  /**
   * Another input of the same node that names this tensor too (the lowest after {@link input}),
   * if any: a node reading one tensor at several inputs is listed once per tensor.
   */
  alsoInput?: number;
  /**
   * The node's first three input names, in order (`""` for an optional input left out): what a
   * `(De)QuantizeLinear` reads. Only three are kept, so a node with millions of inputs costs
   * memory per tensor it names, not per input.
   */
  names: string[];
  /** The tensor each of those three inputs names, where the scan found one (not for a graph input or a node's output). */
  inputs: (OnnxTensorRecord | undefined)[];
  /** The node's INT attributes (`axis`, `block_size`, ...). */
  ints: Record<string, number>;
}

/** The result of {@link scanOnnxModel}. */
export interface OnnxScan {
  tensors: OnnxTensorRecord[];
  /** `location` of every external data file referenced, in first-use order. */
  externalLocations: string[];
}

/** The tensors a graph (or function) defines by name, and the graph around it. */
interface Scope {
  up?: Scope;
  defs: Map<string, OnnxTensorRecord>;
}

/** Nested graphs deeper than this are refused (a hostile file could nest them to overflow the stack). */
export const MAX_GRAPH_DEPTH = 32;

const FIELD = { graph: 7, functions: 25 } as const;
interface RawTensor {
  dims: number[];
  dataType: number;
  name: string;
  raw?: [number, number];
  /** Ranges (flat pairs) of float_data / double_data / int32_data / int64_data / uint64_data occurrences, by field. */
  typed: Map<number, { ranges: number[] }>;
  external: Map<string, string>;
  location: number;
  segment: boolean;
}

function readTensor(f: Fields): RawTensor {
  const t: RawTensor = { dims: [], dataType: 0, name: '', typed: new Map(), external: new Map(), location: 0, segment: false };
  while (f.next()) {
    switch (f.field) {
      case 1:
        if (f.wire === 0) t.dims.push(signed64(f.lo, f.hi));
        else {
          f.need(2, 'dims');
          eachVarint(f.b, f.start, f.stop, (lo, hi) => t.dims.push(signed64(lo, hi)));
        }
        break;
      case 2:
        f.need(0, 'data_type');
        t.dataType = f.value;
        break;
      case 3:
        t.segment = true;
        break;
      case 8:
        t.name = f.string();
        break;
      case 9:
        f.need(2, 'raw_data');
        t.raw = [f.start, f.stop];
        break;
      case 4: case 5: case 7: case 10: case 11: {
        const fixed = f.field === 4 ? 5 : f.field === 10 ? 1 : 0;
        if (f.wire !== 2 && f.wire !== fixed) f.need(fixed, `repeated field ${f.field}`);
        let e = t.typed.get(f.field);
        if (!e) t.typed.set(f.field, (e = { ranges: [] }));
        e.ranges.push(f.start, f.stop);
        break;
      }
      case 13: {
        const kv = f.sub('external_data');
        let key = '';
        let value = '';
        while (kv.next()) {
          if (kv.field === 1) key = kv.string();
          else if (kv.field === 2) value = kv.string();
        }
        t.external.set(key, value);
        break;
      }
      case 14:
        f.need(0, 'data_location');
        t.location = f.value;
        break;
    }
  }
  return t;
}

/** A shape for messages: `[2, 3]`; past 16 dimensions, the first eight and how many more (a hostile file may hold millions). */
export function shapeText(dims: readonly number[]): string {
  return dims.length <= 16 ? `[${dims.join(', ')}]` : `[${dims.slice(0, 8).join(', ')}, … ${dims.length - 8} more dimensions]`;
}


/** Where a varint field starts: fix the range of an unpacked varint (the reader stored [tagEnd?]). */
function varintStarts(b: Uint8Array, start: number, stop: number): number {
  let n = 0;
  for (let p = start; p < stop; p++) if (b[p] < 0x80) n++;
  if (stop > start && b[stop - 1] >= 0x80) throw new Malformed(`packed varints at byte ${start} end inside a varint`);
  return n;
}

/** Element count of a varint field's ranges (each range a packed run or one varint). */
function countVarints(b: Uint8Array, ranges: readonly number[]): number {
  let n = 0;
  for (let i = 0; i < ranges.length; i += 2) n += varintStarts(b, ranges[i], ranges[i + 1]);
  return n;
}

/** Bytes `raw_data` must hold for `count` elements of `dataType`, or undefined when not checked. */
function rawBytes(dataType: number, count: number): number | undefined {
  const w = RAW_WIDTH[dataType];
  if (w !== undefined) return w * count;
  if (dataType >= 17 && dataType <= 20) return count;
  if (dataType === 24) return count;
  if (dataType === 21 || dataType === 22 || dataType === 23) return Math.ceil(count / 2);
  if (dataType === 25 || dataType === 26) return Math.ceil(count / 4);
  if (dataType === 14) return 8 * count;
  if (dataType === 15) return 16 * count;
  return undefined;
}

/** The typed field that holds a dtype's values when raw_data is absent. */
function typedField(dataType: number): number | undefined {
  if (dataType === 1 || dataType === 14) return 4;
  if (dataType === 11 || dataType === 15) return 10;
  if (dataType === 7) return 7;
  if (dataType === 12 || dataType === 13) return 11;
  if (dataType === 8) return 6;
  if (dataType >= 2 && dataType <= 26) return 5;
  return undefined;
}

/** Largest element count accepted for one tensor (positions are 32-bit in payloads). */
const MAX_ELEMENTS = 2 ** 32 - 1;

/** Check that an external `location` stays inside the model's folder. */
function checkLocation(loc: string, name: string): void {
  if (loc === '' || loc.startsWith('/') || loc.startsWith('\\') || /^[A-Za-z]:/.test(loc) || loc.split(/[\\/]/).some((s) => s === '..') || loc.includes('\0')) {
    throw new Malformed(`tensor ${JSON.stringify(name)} keeps its data in external file ${JSON.stringify(loc)}: expected a path relative to the model's folder, without ".."`);
  }
}

function toRecord(t: RawTensor, b: Uint8Array, name: string, origin: OnnxTensorRecord['origin'], externalSizes: ((loc: string) => number | undefined) | undefined): OnnxTensorRecord {
  const where = `tensor ${JSON.stringify(name)}`;
  const dtype = ONNX_DTYPES[t.dataType] ?? `data type ${t.dataType}`;
  if (t.dataType === 0 || t.dataType >= ONNX_DTYPES.length) throw new Malformed(`${where} has data type ${t.dataType}, which ONNX does not define`);
  if (t.segment) throw new Malformed(`${where} is a segment of a larger tensor (TensorProto.segment), which this reader does not support: save the model without segments`);
  let count = 1;
  for (const d of t.dims) {
    if (!(d >= 0)) throw new Malformed(`${where} has a negative dimension (${d}) in ${shapeText(t.dims)}`);
    count *= d;
  }
  if (count > MAX_ELEMENTS) throw new Malformed(`${where} has shape ${shapeText(t.dims)}: ${count} elements, more than ${MAX_ELEMENTS}`);
  const rec = (encoding: OnnxEncoding, ranges: number[], external?: string): OnnxTensorRecord =>
    ({ name, dataType: t.dataType, dims: t.dims, count, encoding, ranges, origin, ...(external !== undefined ? { external } : {}) });
  if (t.location === 1) {
    if (t.raw || t.typed.size) throw new Malformed(`${where} is marked external but also holds data in the file`);
    const loc = t.external.get('location');
    if (loc === undefined) throw new Malformed(`${where} is marked external but has no "location"`);
    checkLocation(loc, name);
    const num = (key: string): number | undefined => {
      const s = t.external.get(key);
      if (s === undefined) return undefined;
      if (!/^\d{1,15}$/.test(s)) throw new Malformed(`${where}: external "${key}" should be a byte count, found ${JSON.stringify(s)}`);
      return Number(s);
    };
    const offset = num('offset') ?? 0;
    const need = rawBytes(t.dataType, count);
    const length = num('length') ?? need;
    const size = externalSizes?.(loc);
    if (size === undefined) throw new Malformed(`${where} keeps its data in external file ${JSON.stringify(loc)}, which was not provided`);
    if (length === undefined) {
      if (offset > size) throw new Malformed(`${where}: external offset ${offset} is past the end of ${JSON.stringify(loc)} (${size} bytes)`);
      return rec('raw', [offset, size], loc);
    }
    if (need !== undefined && length !== need) throw new Malformed(`${where}: a ${dtype} tensor of shape ${shapeText(t.dims)} needs ${need} bytes, its external "length" says ${length}`);
    if (offset + length > size) throw new Malformed(`${where}: external bytes ${offset}..${offset + length} lie past the end of ${JSON.stringify(loc)} (${size} bytes)`);
    return rec('raw', [offset, offset + length], loc);
  }
  if (t.location !== 0) throw new Malformed(`${where} has data_location ${t.location}; ONNX defines 0 (in the file) and 1 (external)`);
  if (t.raw) {
    if (t.typed.size) throw new Malformed(`${where} holds both raw_data and a typed data field`);
    const need = rawBytes(t.dataType, count);
    const have = t.raw[1] - t.raw[0];
    if (need !== undefined && have !== need) throw new Malformed(`${where}: a ${dtype} tensor of shape ${shapeText(t.dims)} needs ${need} bytes of raw_data, found ${have}`);
    return rec('raw', [t.raw[0], t.raw[1]]);
  }
  const field = typedField(t.dataType);
  for (const k of t.typed.keys()) if (k !== field) throw new Malformed(`${where}: a ${dtype} tensor holds field ${k}, expected its values in field ${field ?? '(none)'}`);
  const e = field === undefined ? undefined : t.typed.get(field);
  if (!e) {
    if (count === 0 || t.dataType === 8) return rec('raw', []);
    throw new Malformed(`${where} of shape ${shapeText(t.dims)} holds no data`);
  }
  if (field === 6) return rec('raw', []); // strings: not read
  const encoding: OnnxEncoding = field === 4 ? 'fixed32' : field === 10 ? 'fixed64' : 'varint';
  const perValue = t.dataType === 14 || t.dataType === 15 ? 2 : 1; // complex: two floats per element
  let have: number;
  const ranges = e.ranges;
  if (encoding === 'varint') {
    have = countVarints(b, ranges);
  } else {
    const w = encoding === 'fixed32' ? 4 : 8;
    have = 0;
    let kept = 0;
    for (let i = 0; i < ranges.length; i += 2) {
      const [s, x] = [ranges[i], ranges[i + 1]];
      if ((x - s) % w) throw new Malformed(`${where}: packed field ${field} holds ${x - s} bytes, not a multiple of ${w}`);
      have += (x - s) / w;
      if (x > s) (ranges[kept++] = s), (ranges[kept++] = x); // empty packed fields dropped, in place
    }
    ranges.length = kept;
  }
  if (have !== count * perValue) {
    throw new Malformed(`${where}: shape ${shapeText(t.dims)} needs ${count * perValue} values, field ${field} holds ${have}`);
  }
  return rec(encoding, ranges);
}

/** Options of {@link scanOnnxModel}. */
export interface ScanOptions {
  /** Size in bytes of an external data file, or undefined when it is not available. */
  externalSize?: (location: string) => number | undefined;
  /** Name for error messages. */
  source?: string;
  /** Names the model's tensors must not take (a tensor so named becomes `<name> #2`). */
  reserved?: readonly string[];
}

/**
 * Walk an ONNX model (the bytes of a `.onnx` file) and record every tensor it holds: graph
 * initializers, `Constant` values and other tensor attributes, in subgraphs and model-local
 * functions too, with their stable names (module doc).
 *
 * @throws ModelFormatError when the bytes are not a well-formed ONNX model: a truncated message,
 *   an unknown wire type, a length past the end, a tensor whose data disagrees with its dims,
 *   an external file that is missing, too short or outside the model's folder.
 */
export function scanOnnxModel(bytes: Uint8Array, options: ScanOptions = {}): OnnxScan {
  const source = options.source ?? 'ONNX model';
  const tensors: OnnxTensorRecord[] = [];
  // Naming stays linear in the number of tensors (see uniqueNamer).
  const unique = uniqueNamer(options.reserved);
  const locations: string[] = [];
  const locationSet = new Set<string>();
  const add = (t: RawTensor, name: string, origin: OnnxTensorRecord['origin']): OnnxTensorRecord => {
    const r = toRecord(t, bytes, unique(name), origin, options.externalSize);
    if (r.external !== undefined && !locationSet.has(r.external)) {
      locationSet.add(r.external);
      locations.push(r.external);
    }
    tensors.push(r);
    return r;
  };
  // The tensors a graph defines by name, and the node inputs to resolve once every graph is
  // read (a node may name an initializer that comes after it). The last definition of a name
  // wins, as in onnxruntime (its graph keeps the last initializer of a name); an earlier one
  // is marked shadowed, so a store keeps it read-only.
  const define = (scope: Scope, name: string | undefined, r: OnnxTensorRecord) => {
    if (!name) return;
    const before = scope.defs.get(name);
    if (before) before.shadowedBy = r.name;
    scope.defs.set(name, r);
  };
  // Input names are kept as byte ranges of the file (two numbers per input), decoded when resolved.
  const pending: { scope: Scope; node: string; op: string; inputs: number[]; ints: Record<string, number> }[] = [];

  const walkNodes = (f: Fields, prefix: string, depth: number, nodeField: number, initializerField: number, scope: Scope) => {
    if (depth > MAX_GRAPH_DEPTH) throw new Malformed(`subgraphs are nested more than ${MAX_GRAPH_DEPTH} deep`);
    let index = 0;
    while (f.next()) {
      if (f.field === initializerField) {
        const t = readTensor(f.sub('initializer'));
        define(scope, t.name, add(t, prefix + t.name, 'initializer'));
      } else if (f.field === nodeField) {
        walkNode(f.sub('node'), prefix, depth, index++, scope);
      }
    }
  };

  const walkNode = (f: Fields, prefix: string, depth: number, index: number, scope: Scope) => {
    let name = '';
    let opType = '';
    let domain = '';
    const inputs: number[] = [];
    const outputs: string[] = [];
    const attributes: Fields[] = [];
    const ints: Record<string, number> = {};
    while (f.next()) {
      if (f.field === 1) {
        f.string(); // checked as UTF-8 now; decoded again when resolved
        inputs.push(f.start, f.stop);
      } else if (f.field === 2) outputs.push(f.string());
      else if (f.field === 3) name = f.string();
      else if (f.field === 4) opType = f.string();
      else if (f.field === 7) domain = f.string();
      else if (f.field === 5) attributes.push(f.sub('attribute'));
    }
    const key = name || outputs[0] || `#${index}`;
    const standard = domain === '' || domain === 'ai.onnx';
    const isConstant = opType === 'Constant' && standard;
    if (inputs.length) pending.push({ scope, node: prefix + key, op: standard ? opType : `${domain}:${opType}`, inputs, ints });
    for (const a of attributes) {
      let attr = '';
      let int: number | undefined;
      // (field, start, stop, wire) of each value field, flat: an unpacked list costs four numbers per value.
      const found: number[] = [];
      while (a.next()) {
        if (a.field === 1) attr = a.string();
        else if (a.field === 3 && a.wire === 0) int = signed64(a.lo, a.hi);
        else if (a.field === 2 || a.field === 5 || a.field === 6 || a.field === 7 || a.field === 10 || a.field === 11) {
          found.push(a.field, a.start, a.stop, a.wire);
        }
      }
      const sub = (x: { start: number; stop: number }) => new Fields(bytes, x.start, x.stop);
      if (isConstant && (attr === 'value_float' || attr === 'value_floats')) {
        const ranges: number[] = [];
        let count = 0;
        for (let j = 0; j < found.length; j += 4) {
          const x = { field: found[j], start: found[j + 1], stop: found[j + 2], wire: found[j + 3] };
          if (x.field !== (attr === 'value_float' ? 2 : 7)) continue;
          if (x.wire !== 2 && x.wire !== 5) throw new Malformed(`attribute ${attr} of node ${JSON.stringify(key)} has ${WIRE_NAMES[x.wire]}, expected fixed32 floats`);
          if ((x.stop - x.start) % 4) throw new Malformed(`attribute ${attr} of node ${JSON.stringify(key)} holds ${x.stop - x.start} bytes of floats, not a multiple of 4`);
          if (x.stop > x.start) ranges.push(x.start, x.stop);
          count += (x.stop - x.start) / 4;
        }
        if (attr === 'value_float' && count !== 1) continue; // no value: not a weight
        const r: OnnxTensorRecord = { name: unique(prefix + (outputs[0] ?? key)), dataType: 1, dims: attr === 'value_float' ? [] : [count], count, encoding: 'fixed32', ranges, origin: 'constant' };
        tensors.push(r);
        define(scope, outputs[0], r);
        continue;
      }
      if (int !== undefined) ints[attr] = int;
      let listed = 0;
      let graphList = 0;
      for (let j = 0; j < found.length; j += 4) {
        const x = { field: found[j], start: found[j + 1], stop: found[j + 2], wire: found[j + 3] };
        if (x.field === 5 || x.field === 10) {
          if (x.wire !== 2) throw new Malformed(`attribute ${JSON.stringify(attr)} of node ${JSON.stringify(key)} holds a tensor with ${WIRE_NAMES[x.wire]}`);
          const t = readTensor(sub(x));
          if (isConstant && attr === 'value' && x.field === 5) define(scope, outputs[0], add(t, prefix + (outputs[0] ?? key), 'constant'));
          else add(t, `${prefix}${key}:${attr}${x.field === 10 ? `[${listed++}]` : ''}`, 'attribute');
        } else if (x.field === 6 || x.field === 11) {
          if (x.wire !== 2) throw new Malformed(`attribute ${JSON.stringify(attr)} of node ${JSON.stringify(key)} holds a graph with ${WIRE_NAMES[x.wire]}`);
          walkNodes(sub(x), `${prefix}${key}/${attr}${x.field === 11 ? `[${graphList++}]` : ''}/`, depth + 1, 1, 5, { up: scope, defs: new Map() });
        }
      }
    }
  };

  try {
    const top = new Fields(bytes, 0, bytes.length);
    let graphs = 0;
    let irVersion = false;
    while (top.next()) {
      if (top.field === 1 && top.wire === 0) irVersion = true;
      else if (top.field === FIELD.graph) {
        graphs++;
        walkNodes(top.sub('graph'), '', 0, 1, 5, { defs: new Map() });
      } else if (top.field === FIELD.functions) {
        const fn = top.sub('function');
        let fname = '';
        let fdomain = '';
        let overload = '';
        while (fn.next()) {
          if (fn.field === 1) fname = fn.string();
          else if (fn.field === 10) fdomain = fn.string();
          else if (fn.field === 13) overload = fn.string();
        }
        walkNodes(top.sub('function'), `${fdomain}:${fname}${overload ? `:${overload}` : ''}/`, 1, 7, -1, { defs: new Map() });
      }
    }
    if (!irVersion || graphs !== 1) {
      throw new Malformed(`expected a ModelProto with an ir_version and one graph, found ${irVersion ? '' : 'no ir_version and '}${graphs} graph(s)`);
    }
  } catch (e) {
    if (!(e instanceof Malformed)) throw e;
    throw new ModelFormatError(`${source}: ${e.message}; the file is truncated, corrupt or not an ONNX model: copy it again from its source`, { source });
  }
  const text = (at: number, stop: number) => decodeUtf8Strict(bytes.subarray(at, stop));
  for (const { scope, node, op, inputs: at, ints } of pending) {
    // A name means the innermost graph's tensor of that name (a subgraph sees the graphs around it).
    const resolve = (n: string): OnnxTensorRecord | undefined => {
      for (let s: Scope | undefined = scope; n && s; s = s.up) {
        const r = s.defs.get(n);
        if (r) return r;
      }
      return undefined;
    };
    const names: string[] = [];
    const inputs: (OnnxTensorRecord | undefined)[] = [];
    for (let i = 0; i < Math.min(3, at.length / 2); i++) {
      names.push(text(at[2 * i], at[2 * i + 1]));
      inputs.push(resolve(names[i]));
    }
    // One reader per (node, tensor), however many inputs of the node name it.
    const seen = new Map<OnnxTensorRecord, OnnxReader>();
    for (let i = 0; i < at.length / 2; i++) {
      const r = i < 3 ? inputs[i] : resolve(text(at[2 * i], at[2 * i + 1]));
      if (!r) continue;
      const known = seen.get(r);
      if (known) {
        known.alsoInput ??= i;
        continue;
      }
      const reader: OnnxReader = { node, op, input: i, names, inputs, ints };
      seen.set(r, reader);
      (r.readers ??= []).push(reader);
    }
  }
  return { tensors, externalLocations: locations };
}
