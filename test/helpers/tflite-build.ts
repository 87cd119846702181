/**
 * Builds small LiteRT (`.tflite`) files for tests: a FlatBuffers writer that lays a table's
 * children after it (offsets point forward), with the alignments LiteRT's verifier expects
 * (8-byte scalars on 8, buffer data on 16), and a model builder over the parts of
 * tensorflow/lite/schema/schema.fbs the tests need. A test can also ask for hostile layouts
 * (see {@link TfliteSpec.rawBuffers}).
 */
import { seededRandom } from '../../src/core/random.ts';

/** A FlatBuffers value to write. */
export type Fb =
  | { u8: number }
  | { i32: number }
  | { u32: number }
  | { f32: number }
  | { u64: number }
  | { i64: number }
  | { str: string }
  | { table: (Fb | undefined)[] }
  | { vec: 'u8' | 'i32' | 'f32' | 'i64'; items: ArrayLike<number>; align?: number }
  | { tables: (Fb & { table: unknown })[] }
  | { strs: string[] };

function inlineSize(v: Fb): number {
  if ('u8' in v) return 1;
  if ('u64' in v || 'i64' in v) return 8;
  return 4;
}

/** Serialize a root table (with file identifier) into bytes. */
export function writeFlatBuffer(root: Fb & { table: unknown }, identifier = 'TFL3'): Uint8Array {
  let buf = new Uint8Array(1 << 16);
  let len = 0;
  const grow = (n: number) => {
    while (len + n > buf.length) {
      const b = new Uint8Array(buf.length * 2);
      b.set(buf);
      buf = b;
    }
  };
  const dv = () => new DataView(buf.buffer);
  const pad = (align: number, phase = 0) => {
    while ((len - phase) % align !== 0) {
      grow(1);
      buf[len++] = 0;
    }
  };
  const alloc = (n: number) => {
    grow(n);
    const at = len;
    len += n;
    return at;
  };
  // References to patch once their targets are written: [field position, value].
  const queue: [number, Fb][] = [];
  const writeScalar = (at: number, v: Fb) => {
    const d = dv();
    if ('u8' in v) d.setUint8(at, v.u8);
    else if ('i32' in v) d.setInt32(at, v.i32, true);
    else if ('u32' in v) d.setUint32(at, v.u32, true);
    else if ('f32' in v) d.setFloat32(at, v.f32, true);
    else if ('u64' in v) d.setBigUint64(at, BigInt(v.u64), true);
    else if ('i64' in v) d.setBigInt64(at, BigInt(v.i64), true);
  };
  const isRef = (v: Fb) => 'str' in v || 'table' in v || 'vec' in v || 'tables' in v || 'strs' in v;
  const writeTable = (fields: (Fb | undefined)[]): number => {
    // Inline layout: soffset, then 8-byte, 4-byte, 1-byte fields.
    const present = fields.map((f, i) => ({ f, i })).filter((x) => x.f !== undefined) as { f: Fb; i: number }[];
    present.sort((a, b) => inlineSize(b.f) - inlineSize(a.f));
    const offs = new Array<number>(fields.length).fill(0);
    let size = 4;
    for (const { f, i } of present) {
      const s = inlineSize(f);
      size = Math.ceil(size / s) * s;
      offs[i] = size;
      size += s;
    }
    size = Math.ceil(size / 4) * 4;
    const vtSize = 4 + 2 * fields.length;
    // The vtable, then the table on 8 bytes (its 8-byte fields at multiples of 8 inside it).
    pad(2);
    const vt = alloc(vtSize);
    pad(8);
    const t = alloc(size);
    const d = dv();
    d.setUint16(vt, vtSize, true);
    d.setUint16(vt + 2, size, true);
    fields.forEach((_, i) => d.setUint16(vt + 4 + 2 * i, offs[i], true));
    d.setInt32(t, t - vt, true);
    for (const { f, i } of present) {
      if (isRef(f)) queue.push([t + offs[i], f]);
      else writeScalar(t + offs[i], f);
    }
    return t;
  };
  const writeRef = (v: Fb): number => {
    if ('table' in v) return writeTable(v.table);
    if ('str' in v || ('vec' in v && v.vec === 'u8')) {
      const bytes = 'str' in v ? new TextEncoder().encode(v.str) : Uint8Array.from((v as { items: ArrayLike<number> }).items);
      const align = 'vec' in v ? (v.align ?? 4) : 4;
      pad(align, 4);
      const at = alloc(4 + bytes.length + 1);
      dv().setUint32(at, bytes.length, true);
      buf.set(bytes, at + 4);
      return at;
    }
    if ('vec' in v) {
      const w = v.vec === 'i64' ? 8 : 4;
      pad(w, 4);
      const at = alloc(4 + w * v.items.length);
      const d = dv();
      d.setUint32(at, v.items.length, true);
      for (let i = 0; i < v.items.length; i++) {
        const x = v.items[i];
        if (v.vec === 'i32') d.setInt32(at + 4 + 4 * i, x, true);
        else if (v.vec === 'f32') d.setFloat32(at + 4 + 4 * i, x, true);
        else d.setBigInt64(at + 4 + 8 * i, BigInt(x), true);
      }
      return at;
    }
    const items: Fb[] = 'tables' in v ? v.tables : (v as { strs: string[] }).strs.map((s) => ({ str: s }));
    pad(4);
    const at = alloc(4 + 4 * items.length);
    dv().setUint32(at, items.length, true);
    items.forEach((it, i) => queue.push([at + 4 + 4 * i, it]));
    return at;
  };
  alloc(8);
  dv().setUint32(0, 0, true);
  for (let i = 0; i < 4; i++) buf[4 + i] = identifier.charCodeAt(i);
  queue.push([0, root]);
  while (queue.length) {
    const [p, v] = queue.shift() as [number, Fb];
    const at = writeRef(v);
    dv().setUint32(p, at - p, true);
  }
  pad(16);
  return buf.slice(0, len);
}

/** LiteRT tensor types used by the tests. */
export const T = { FLOAT32: 0, FLOAT16: 1, INT32: 2, UINT8: 3, INT64: 4, INT8: 9 } as const;

export interface TensorSpec {
  name: string;
  shape: number[];
  type: number;
  /** Buffer index (0: none). */
  buffer?: number;
  quant?: { scale: number[]; zeroPoint?: number[]; dimension?: number };
  sparse?: boolean;
}

export interface OperatorSpec {
  /** Builtin operator code (schema's BuiltinOperator: FULLY_CONNECTED 9, ADD 0, RELU 19, ...). */
  op: number;
  inputs: number[];
  outputs: number[];
  /** builtin_options_type and its table's fields, if any. */
  options?: { type: number; fields: (Fb | undefined)[] };
  /** builtin_options_2_type and its table's fields (the StableHLO operators' options), if any. */
  options2?: { type: number; fields: (Fb | undefined)[] };
}

export interface TfliteSpec {
  tensors: TensorSpec[];
  /** Buffer contents (index 0 is always the empty buffer, added here). */
  buffers: Uint8Array[];
  operators?: OperatorSpec[];
  inputs?: number[];
  outputs?: number[];
  /** Write these buffers as `offset`/`size` past the FlatBuffer instead of inline (indices into `buffers`, 1-based as in the model). */
  offsetBuffers?: number[];
  /** Replace buffer tables verbatim (index → fields), for hostile layouts. */
  rawBuffers?: Record<number, (Fb | undefined)[]>;
  description?: string;
}

/** Bytes of a float32 array (little-endian). */
export function f32Bytes(values: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(4 * values.length);
  const d = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) d.setFloat32(4 * i, values[i], true);
  return out;
}

/** Build a `.tflite` file from a spec (one subgraph). */
export function buildTflite(spec: TfliteSpec): Uint8Array {
  const ops = spec.operators ?? [];
  const codes = [...new Set(ops.map((o) => o.op))];
  const offsetSet = new Set(spec.offsetBuffers ?? []);
  const allBuffers = [new Uint8Array(0), ...spec.buffers];
  const bufferTable = (b: Uint8Array, i: number): Fb & { table: unknown } => {
    if (spec.rawBuffers?.[i]) return { table: spec.rawBuffers[i] };
    if (offsetSet.has(i)) return { table: [undefined, { u64: 0 }, { u64: b.length }] }; // offset patched below
    return { table: b.length ? [{ vec: 'u8', items: b, align: 16 }] : [] };
  };
  const model: Fb & { table: unknown } = {
    table: [
      { u32: 3 },
      { tables: codes.map((c) => ({ table: [{ u8: Math.min(c, 127) }, undefined, { i32: 1 }, { i32: c }] })) },
      {
        tables: [{
          table: [
            {
              tables: spec.tensors.map((t) => ({
                table: [
                  { vec: 'i32', items: t.shape },
                  { u8: t.type },
                  { u32: t.buffer ?? 0 },
                  { str: t.name },
                  t.quant ? { table: [undefined, undefined, { vec: 'f32', items: t.quant.scale }, { vec: 'i64', items: t.quant.zeroPoint ?? t.quant.scale.map(() => 0) }, undefined, undefined, { i32: t.quant.dimension ?? 0 }] } : undefined,
                  undefined,
                  t.sparse ? { table: [{ vec: 'i32', items: [0, 1] }] } : undefined,
                ],
              })),
            },
            { vec: 'i32', items: spec.inputs ?? [] },
            { vec: 'i32', items: spec.outputs ?? [] },
            {
              tables: ops.map((o) => ({
                table: [
                  { u32: codes.indexOf(o.op) },
                  { vec: 'i32', items: o.inputs },
                  { vec: 'i32', items: o.outputs },
                  o.options ? { u8: o.options.type } : undefined,
                  o.options ? { table: o.options.fields } : undefined,
                  // custom_options .. large_custom_options_size (5-10), then builtin_options_2_type (11) and builtin_options_2 (12).
                  ...(o.options2 ? [undefined, undefined, undefined, undefined, undefined, undefined, { u8: o.options2.type }, { table: o.options2.fields }] : []),
                ],
              })),
            },
            { str: 'main' },
          ],
        }],
      },
      { str: spec.description ?? 'neural-diff test model' },
      { tables: allBuffers.map(bufferTable) },
    ],
  };
  let bytes = writeFlatBuffer(model);
  if (offsetSet.size) {
    // Append the offset buffers past the FlatBuffer, each on 16 bytes, and patch their offsets.
    let at = bytes.length;
    const places = new Map<number, number>();
    for (const i of [...offsetSet].sort((a, b) => a - b)) {
      at = Math.ceil(at / 16) * 16;
      places.set(i, at);
      at += allBuffers[i].length;
    }
    const out = new Uint8Array(Math.ceil(at / 16) * 16);
    out.set(bytes);
    for (const [i, p] of places) out.set(allBuffers[i], p);
    const view = new DataView(out.buffer);
    for (const [i, p] of places) view.setBigUint64(bufferOffsetField(out, i), BigInt(p), true);
    bytes = out;
  }
  return bytes;
}

/** The position of buffer `i`'s `offset` field (its table read through the model's buffers vector). */
export function bufferOffsetField(bytes: Uint8Array, i: number): number {
  const d = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const table = (t: number, f: number) => {
    const vt = t - d.getInt32(t, true);
    const o = d.getUint16(vt + 4 + 2 * f, true);
    return o ? t + o : -1;
  };
  const root = d.getUint32(0, true);
  const bp = table(root, 4);
  const vec = bp + d.getUint32(bp, true);
  const ep = vec + 4 + 4 * i;
  const bt = ep + d.getUint32(ep, true);
  return table(bt, 1);
}

/** LiteRT: x [1, 8] -> FULLY_CONNECTED (dense) -> [FULLY_CONNECTED (head), the teacher only] -> SOFTMAX. */
export function mlpTflite(moved: number, head: boolean): Uint8Array {
  const r = seededRandom(1);
  const m = seededRandom(7);
  const draw = (n: number, scale: number) => Array.from({ length: n }, () => (r() - 0.5) * scale + (m() - 0.5) * moved * scale);
  const fc = { type: 8, fields: [{ u8: 0 }] };
  const headKernel = Array.from({ length: 9 }, (_, i) => (i % 4 === 0 ? 1.2 : 0.3 * Math.sin(i)));
  return buildTflite({
    tensors: [
      { name: 'x', shape: [1, 8], type: T.FLOAT32 }, // 0
      { name: 'dense/kernel', shape: [3, 8], type: T.FLOAT32, buffer: 1 }, // 1
      { name: 'dense/bias', shape: [3], type: T.FLOAT32, buffer: 2 }, // 2
      { name: 'logits', shape: [1, 3], type: T.FLOAT32 }, // 3
      { name: 'probs', shape: [1, 3], type: T.FLOAT32 }, // 4
      ...(head ? [{ name: 'head/kernel', shape: [3, 3], type: T.FLOAT32, buffer: 3 }, { name: 'head/out', shape: [1, 3], type: T.FLOAT32 }] : []), // 5, 6
    ],
    buffers: [f32Bytes(draw(24, 1)), f32Bytes(draw(3, 0.2)), ...(head ? [f32Bytes(headKernel)] : [])],
    operators: head
      ? [{ op: 9, inputs: [0, 1, 2], outputs: [3], options: fc }, { op: 9, inputs: [3, 5, -1], outputs: [6], options: fc }, { op: 25, inputs: [6], outputs: [4], options: { type: 9, fields: [{ f32: 1 }] } }]
      : [{ op: 9, inputs: [0, 1, 2], outputs: [3], options: fc }, { op: 25, inputs: [3], outputs: [4], options: { type: 9, fields: [{ f32: 1 }] } }],
    inputs: [0],
    outputs: [4],
  });
}
