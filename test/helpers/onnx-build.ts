/**
 * A tiny protobuf encoder for ONNX models the tests build themselves (field numbers from
 * onnx/onnx.proto). Written apart from the reader in src/io/onnx/proto.ts so the two check each
 * other; small enough to read in one sitting.
 */

/** Protobuf bytes under construction. */
type Bytes = number[];

export function varint(v: number | bigint): Bytes {
  let x = BigInt.asUintN(64, BigInt(v));
  const out: Bytes = [];
  while (x >= 0x80n) {
    out.push(Number(x & 0x7fn) | 0x80);
    x >>= 7n;
  }
  out.push(Number(x));
  return out;
}

const tag = (field: number, wire: number): Bytes => varint((field << 3) | wire);
export const fVarint = (field: number, v: number | bigint): Bytes => [...tag(field, 0), ...varint(v)];
export const fBytes = (field: number, b: ArrayLike<number>): Bytes => [...tag(field, 2), ...varint(b.length), ...Array.from(b)];
export const fString = (field: number, s: string): Bytes => fBytes(field, new TextEncoder().encode(s));
export const fFixed32 = (field: number, x: number): Bytes => [...tag(field, 5), ...f32le([x])];

export function f32le(values: ArrayLike<number>): Bytes {
  const b = new Uint8Array(4 * values.length);
  const dv = new DataView(b.buffer);
  for (let i = 0; i < values.length; i++) dv.setFloat32(4 * i, values[i], true);
  return Array.from(b);
}

export function u16le(values: ArrayLike<number>): Bytes {
  const out: Bytes = [];
  for (let i = 0; i < values.length; i++) out.push(values[i] & 0xff, values[i] >>> 8);
  return out;
}

/** ONNX data types used here. */
export const DT = { FLOAT: 1, UINT8: 2, INT8: 3, INT32: 6, INT64: 7, FLOAT16: 10, DOUBLE: 11, BFLOAT16: 16 } as const;

export interface TensorSpec {
  name?: string;
  dims: number[];
  dataType: number;
  /** raw_data bytes. */
  raw?: ArrayLike<number>;
  /** float_data, packed (default) or one fixed32 field per value. */
  floatData?: number[];
  unpacked?: boolean;
  /** int32_data (packed varints). */
  int32Data?: number[];
  /** int64_data (packed varints). */
  int64Data?: (number | bigint)[];
  /** data_location = EXTERNAL with these entries. */
  external?: Record<string, string>;
}

export function tensor(t: TensorSpec): Bytes {
  const out: Bytes = [];
  if (t.dims.length) out.push(...fBytes(1, t.dims.flatMap((d) => varint(d))));
  out.push(...fVarint(2, t.dataType));
  if (t.floatData) {
    if (t.unpacked) for (const x of t.floatData) out.push(...fFixed32(4, x));
    else out.push(...fBytes(4, f32le(t.floatData)));
  }
  if (t.int32Data) out.push(...fBytes(5, t.int32Data.flatMap((x) => varint(x))));
  if (t.int64Data) out.push(...fBytes(7, t.int64Data.flatMap((x) => varint(x))));
  if (t.name !== undefined) out.push(...fString(8, t.name));
  if (t.raw) out.push(...fBytes(9, t.raw));
  if (t.external) {
    for (const [k, v] of Object.entries(t.external)) out.push(...fBytes(13, [...fString(1, k), ...fString(2, v)]));
    out.push(...fVarint(14, 1));
  }
  return out;
}

export interface AttrSpec {
  name: string;
  /** AttributeType: FLOAT 1, INT 2, STRING 3, TENSOR 4, GRAPH 5, FLOATS 6, INTS 7, TENSORS 9, GRAPHS 10. */
  type: number;
  f?: number;
  i?: number;
  t?: Bytes;
  g?: Bytes;
  floats?: number[];
  ints?: number[];
  s?: string;
  tensors?: Bytes[];
  graphs?: Bytes[];
}

export function attribute(a: AttrSpec): Bytes {
  const out: Bytes = [...fString(1, a.name)];
  if (a.f !== undefined) out.push(...fFixed32(2, a.f));
  if (a.i !== undefined) out.push(...fVarint(3, a.i));
  if (a.t) out.push(...fBytes(5, a.t));
  if (a.g) out.push(...fBytes(6, a.g));
  if (a.s !== undefined) out.push(...fString(4, a.s));
  if (a.floats) out.push(...fBytes(7, f32le(a.floats)));
  if (a.ints) out.push(...fBytes(8, a.ints.flatMap((x) => varint(x))));
  for (const t of a.tensors ?? []) out.push(...fBytes(10, t));
  for (const g of a.graphs ?? []) out.push(...fBytes(11, g));
  out.push(...fVarint(20, a.type));
  return out;
}

export interface NodeSpec {
  opType: string;
  inputs?: string[];
  outputs: string[];
  name?: string;
  domain?: string;
  attributes?: AttrSpec[];
}

export function node(n: NodeSpec): Bytes {
  const out: Bytes = [];
  for (const i of n.inputs ?? []) out.push(...fString(1, i));
  for (const o of n.outputs) out.push(...fString(2, o));
  if (n.name) out.push(...fString(3, n.name));
  out.push(...fString(4, n.opType));
  for (const a of n.attributes ?? []) out.push(...fBytes(5, attribute(a)));
  if (n.domain !== undefined) out.push(...fString(7, n.domain));
  return out;
}

/** A ValueInfoProto for a float32 (or `elemType`) tensor of fixed shape. */
export function valueInfo(name: string, dims: number[], elemType: number = DT.FLOAT): Bytes {
  const shape = dims.flatMap((d) => fBytes(1, fVarint(1, d)));
  const tensorType = [...fVarint(1, elemType), ...fBytes(2, shape)];
  return [...fString(1, name), ...fBytes(2, fBytes(1, tensorType))];
}

export interface GraphSpec {
  name?: string;
  nodes?: Bytes[];
  initializers?: Bytes[];
  inputs?: Bytes[];
  outputs?: Bytes[];
}

export function graph(g: GraphSpec): Bytes {
  const out: Bytes = [];
  for (const n of g.nodes ?? []) out.push(...fBytes(1, n));
  out.push(...fString(2, g.name ?? 'g'));
  for (const t of g.initializers ?? []) out.push(...fBytes(5, t));
  for (const i of g.inputs ?? []) out.push(...fBytes(11, i));
  for (const o of g.outputs ?? []) out.push(...fBytes(12, o));
  return out;
}

/** A ModelProto: ir_version 8 (9 from opset 19), opset 17 (or `opset`) of the default domain, the graph, and functions. */
export function model(g: Bytes, options: { functions?: Bytes[]; producer?: string; opset?: number } = {}): Uint8Array {
  const opset = options.opset ?? 17;
  const out: Bytes = [...fVarint(1, opset >= 19 ? 9 : 8), ...fString(2, options.producer ?? 'neural-diff tests'), ...fBytes(7, g), ...fBytes(8, [...fString(1, ''), ...fVarint(2, opset)])];
  for (const f of options.functions ?? []) out.push(...fBytes(25, f));
  return Uint8Array.from(out);
}

/** A FunctionProto. */
export function func(name: string, domain: string, nodes: Bytes[]): Bytes {
  return [...fString(1, name), ...fString(4, 'x'), ...fString(5, 'y'), ...nodes.flatMap((n) => fBytes(7, n)), ...fString(10, domain)];
}

/** The float16 bits of a few values that float16 holds exactly. */
export function halfBits(values: number[]): number[] {
  return values.map((v) => {
    const f = new Float32Array([v]);
    const x = new Uint32Array(f.buffer)[0];
    const sign = (x >>> 16) & 0x8000;
    const exp = ((x >>> 23) & 0xff) - 112;
    if (v === 0) return sign;
    if (exp <= 0 || exp >= 31 || x & 0x1fff) throw new Error(`${v} is not a normal float16 value`);
    return sign | (exp << 10) | ((x >>> 13) & 0x3ff);
  });
}

export interface Fixture {
  /** The .onnx bytes. */
  model: Uint8Array;
  /** External data file `weights.bin`. */
  external: Uint8Array;
}

/**
 * A small model touching every storage the reader knows: a raw_data initializer, packed and
 * unpacked float_data, a FLOAT16 raw_data and a FLOAT16 int32_data initializer, an INT8 and an
 * INT64 initializer, a Constant `value` and `value_floats`, an `If` whose branches hold a
 * Constant each, and an external-data initializer. `scale` multiplies the float values but
 * those of the int32_data half (a second version of the same model: scale 2 is exact in float32
 * and float16).
 */
export function fixture(scale = 1): Fixture {
  const s = (xs: number[]) => xs.map((x) => Math.fround(x * scale));
  const ext = new Uint8Array(8 + 4 * 6);
  ext.set(f32le(s([0.5, -0.25, 1.5, 2, -3, 0.125])), 8);
  const g = graph({
    name: 'main',
    initializers: [
      tensor({ name: 'dense/kernel', dims: [2, 3], dataType: DT.FLOAT, raw: f32le(s([0.1, 0.2, 0.3, -0.4, -0.5, 0.6])) }),
      tensor({ name: 'dense/bias', dims: [3], dataType: DT.FLOAT, floatData: s([0.01, 0.02, 0.03]) }),
      tensor({ name: 'unpacked', dims: [2], dataType: DT.FLOAT, floatData: s([1.25, -1.75]), unpacked: true }),
      tensor({ name: 'half', dims: [4], dataType: DT.FLOAT16, raw: u16le(halfBits(s([0.5, -1, 2, 0.25]))) }),
      tensor({ name: 'half_int32', dims: [2], dataType: DT.FLOAT16, int32Data: halfBits([1.5, -0.5]) }),
      tensor({ name: 'quantized', dims: [4], dataType: DT.INT8, raw: [1, 255, 3, 128] }),
      tensor({ name: 'shape', dims: [2], dataType: DT.INT64, int64Data: [-1, 3] }),
      tensor({ name: 'far', dims: [6], dataType: DT.FLOAT, external: { location: 'weights.bin', offset: '8', length: '24' } }),
    ],
    nodes: [
      node({ opType: 'Constant', outputs: ['c_value'], attributes: [{ name: 'value', type: 4, t: tensor({ dims: [2], dataType: DT.FLOAT, raw: f32le(s([7, 8])) }) }] }),
      node({ opType: 'Constant', outputs: ['c_floats'], attributes: [{ name: 'value_floats', type: 6, floats: s([4, 5, 6]) }] }),
      node({
        opType: 'If', name: 'branch', inputs: ['cond'], outputs: ['y'],
        attributes: [
          { name: 'then_branch', type: 5, g: graph({ nodes: [node({ opType: 'Constant', outputs: ['k'], attributes: [{ name: 'value', type: 4, t: tensor({ dims: [1], dataType: DT.FLOAT, raw: f32le(s([9])) }) }] })] }) },
          { name: 'else_branch', type: 5, g: graph({ nodes: [node({ opType: 'Constant', outputs: ['k'], attributes: [{ name: 'value', type: 4, t: tensor({ dims: [1], dataType: DT.FLOAT, raw: f32le(s([-9])) }) }] })] }) },
        ],
      }),
    ],
  });
  return { model: model(g), external: ext };
}

/** A ValueInfoProto whose dims may be free: a number is a fixed size, a string a named (batch) dimension. */
export function valueInfoFree(name: string, dims: (number | string)[], elemType: number = DT.FLOAT): Bytes {
  const shape = dims.flatMap((d) => fBytes(1, typeof d === 'number' ? fVarint(1, d) : fString(2, d)));
  const tensorType = [...fVarint(1, elemType), ...fBytes(2, shape)];
  return [...fString(1, name), ...fBytes(2, fBytes(1, tensorType))];
}
