/**
 * `neural-diff/onnx`: ONNX models (`.onnx` files) as a {@link WeightStore}, in plain TypeScript
 * with no node imports and no protobuf library, so a device can patch the model it runs with
 * onnxruntime-web or onnxruntime-react-native. The file reading (and the crash-safe apply of
 * a file on disk) is in `onnx-files.ts` (`neural-diff/node`).
 *
 * ```ts
 * import { applyPayload } from 'neural-diff/apply';
 * import { OnnxWeightStore } from 'neural-diff/onnx';
 * const store = new OnnxWeightStore(modelBytes);       // the .onnx file's bytes
 * await applyPayload(store, payloadBytes, { trustedKeys: [releaseKey] });
 * const session = await ort.InferenceSession.create(store.modelBytes());  // the same bytes, patched
 * ```
 *
 * What the store holds (docs/FORMAT.md, "ONNX models", has the naming):
 * - **weights**: every float tensor found by `onnx-proto.ts` (initializers, `Constant` values,
 *   tensor attributes, in subgraphs and functions too, inline or in external data files).
 *   FLOAT ones are patched in place at the same byte offsets (a view into the file's bytes when
 *   aligned, else a copy written back by {@link OnnxWeightStore.commit}); the file keeps its
 *   length. FLOAT16 and BFLOAT16 ones are read as exact float32 and written back only when every
 *   patched value is exactly representable in their dtype (else a {@link ModelMismatchError},
 *   nothing written); ones stored in `int32_data` varints are never patched.
 * - **quantized weights**: an INT8 or UINT8 tensor whose every reader is input 0 of a
 *   `DequantizeLinear` with a scalar FLOAT scale and a scalar zero point of its type (or none),
 *   all with the same parameters, is a weight on a `qint8`/`quint8` storage grid
 *   (src/core/grid.ts): its values are the dequantized float32 values, fround((q − zp) × scale),
 *   as onnxruntime computes them, and {@link OnnxWeightStore.commit} writes the new integers back
 *   into the same bytes (`raw_data`, or the `int32_data` varints, each in its own length). Its
 *   scale and zero point (every input 1 and 2 of a `QuantizeLinear`/`DequantizeLinear`) are
 *   read-only, so a payload can never move a weight's grid.
 * - **read-only tensors**: other integer, BOOL and DOUBLE tensors are listed (converted to
 *   float32, rounded past 2^24) so a payload naming one is refused with an error naming its dtype
 *   (and, for an int8 tensor, why it is not a quantized weight); {@link OnnxWeightStore.values}
 *   refuses them.
 * - **the frame** ({@link ONNX_FRAME}): one read-only tensor of 8 values, the bytes of the xxh64
 *   of the whole `.onnx` file with the value bytes of every weight (float or quantized) left
 *   out. It puts the graph, attributes, metadata and every read-only tensor's exact bytes (the
 *   quantization parameters among them) into the model fingerprint, so a payload made for
 *   another graph or another quantization is refused even if the weights agree.
 *
 * @module neural-diff/onnx
 */
import { ModelFormatError, ModelMismatchError } from '../../core/errors.ts';
import { describeGrid, gridLevel, snapValue, type LinearQuantGrid, type StorageGrid } from '../../core/grid.ts';
import { LITTLE_ENDIAN_HOST } from '../../core/endian.ts';
import { exactBfloat16Bits, exactHalfBits, fromBfloat16Bits as bf16, fromHalfBits } from '../../core/float16.ts';
import type { TensorEntry, WeightStore } from '../../core/weight-store.ts';
import { frameDigest } from '../../core/file-frame.ts';
import { ONNX_DTYPES, RAW_WIDTH, scanOnnxModel, signed64, type OnnxReader, type OnnxTensorRecord } from './proto.ts';

export { scanOnnxModel, ONNX_DTYPES, type OnnxTensorRecord, type OnnxReader, type OnnxScan, type ScanOptions } from './proto.ts';

/** Name of the frame tensor (module doc). A model tensor of the same name is renamed `onnx:frame #2`. */
export const ONNX_FRAME = 'onnx:frame';

const FLOAT = 1;
const UINT8 = 2;
const INT8 = 3;
const FLOAT16 = 10;
const BFLOAT16 = 16;
const DQ = 'DequantizeLinear';

/** A tensor of an ONNX model, as {@link OnnxWeightStore.list} gives it. */
export interface OnnxTensorEntry extends TensorEntry {
  /** The ONNX dtype (`FLOAT`, `FLOAT16`, `INT64`, ...); `FRAME` for {@link ONNX_FRAME}. */
  readonly dtype: string;
  /** True for the weights a payload may patch (float, and quantized INT8/UINT8); false for read-only tensors and the frame. */
  readonly patchable: boolean;
  /** For an INT8/UINT8 weight: its `DequantizeLinear` quantization (see {@link OnnxWeightStore.grid}). */
  readonly quantization?: LinearQuantGrid;
  /** For a read-only INT8/UINT8 tensor or a quantization parameter: why a payload may not patch it. */
  readonly readOnly?: string;
  /** The external data file holding its values, if any. */
  readonly external?: string;
}

/** Options of {@link OnnxWeightStore}. */
export interface OnnxStoreOptions {
  /**
   * The bytes of the model's external data files, by `location` (relative to the model's
   * folder). Float32 tensors in them are patched in these arrays. List what a model needs with
   * {@link onnxExternalLocations}.
   */
  external?: ReadonlyMap<string, Uint8Array | OnnxExternalSource> | Readonly<Record<string, Uint8Array | OnnxExternalSource>>;
  /** Name for error messages (a path or URL). */
  source?: string;
}

/**
 * An external data file read a range at a time, for files too big to hold in memory (ONNX models
 * ship gigabytes of external data): a store reads a tensor's bytes when it needs them, keeps the
 * bytes of the tensors handed out by {@link OnnxWeightStore.values} (what a payload patches) and
 * lets go of the others once hashed. Offsets are exact below 2^53 (past 4 GiB included).
 */
export interface OnnxExternalSource {
  /** The file's size in bytes. */
  readonly size: number;
  /** `length` bytes at `offset` (a new array the store may keep and patch). */
  read(offset: number, length: number): Uint8Array;
}

/** A patched tensor's new bytes in an external file read through an {@link OnnxExternalSource}. */
export interface OnnxExternalPatch {
  /** Byte offset in the file. */
  offset: number;
  /** The tensor's bytes as they must be written there. */
  bytes: Uint8Array;
}

/**
 * The external data files an ONNX model references (their `location`s), without reading them.
 * @throws ModelFormatError when the bytes are not a well-formed ONNX model.
 */
export function onnxExternalLocations(bytes: Uint8Array, source?: string): string[] {
  return scanOnnxModel(bytes, { source, externalSize: () => Number.MAX_SAFE_INTEGER }).externalLocations;
}

interface Slot {
  rec: OnnxTensorRecord;
  /** A quantized weight's grid. */
  grid?: LinearQuantGrid;
  /** Why a tensor a payload might expect to patch is read-only (an int8 one, a scale, a zero point). */
  why?: string;
  /** The bytes its ranges refer to: the model file, or an external file held in memory; for a tensor in an {@link OnnxExternalSource}, its own bytes once loaded. */
  bytes?: Uint8Array;
  /** Its byte ranges in {@link bytes} (the record's, or `[0, length]` once loaded from a source). */
  ranges: readonly number[];
  /** The external file it is read from a range at a time, if any. */
  source?: OnnxExternalSource;
  /** The source it was opened with (before a {@link OnnxWeightStore.release}). */
  origin?: OnnxExternalSource;
  /** Handed-out values (a view into `bytes`, or a decoded copy). */
  values?: Float32Array;
  view?: boolean;
}

/** A slot's bytes and ranges, read from its source if they are not in memory (`keep`: kept in the slot). */
function loaded(slot: Slot, keep: boolean): { bytes: Uint8Array; ranges: readonly number[] } {
  if (slot.bytes) return { bytes: slot.bytes, ranges: slot.ranges };
  const src = slot.source as OnnxExternalSource;
  const [at, end] = slot.rec.ranges;
  const bytes = src.read(at, end - at);
  const ranges = [0, end - at];
  if (keep) Object.assign(slot, { bytes, ranges });
  return { bytes, ranges };
}

/** Decode any numeric tensor's values to float32 (rounded for wide integers and float64). */
function decode(slot: Slot, keep = false): Float32Array {
  const { rec } = slot;
  const { bytes, ranges } = loaded(slot, keep);
  const out = new Float32Array(rec.count);
  let k = 0;
  const t = rec.dataType;
  if (rec.encoding === 'varint') {
    for (let r = 0; r < ranges.length; r += 2) {
      const e = ranges[r + 1];
      let p = ranges[r];
      while (p < e) {
        let lo = 0;
        let hi = 0;
        for (let i = 0; ; i++) {
          if (p >= e || i === 10) throw new ModelFormatError(`tensor ${JSON.stringify(rec.name)}: a varint of its data is cut short or too long`, { tensor: rec.name });
          const x = bytes[p++];
          if (i < 4) lo |= (x & 0x7f) << (7 * i);
          else if (i === 4) {
            lo |= (x & 0x0f) << 28;
            hi |= (x & 0x7f) >>> 4;
          } else hi |= (x & 0x7f) << (7 * i - 32);
          if (x < 0x80) break;
        }
        out[k++] =
          t === FLOAT16 ? fromHalfBits(lo & 0xffff)
          : t === BFLOAT16 ? bf16(lo & 0xffff)
          : t === 13 || t === 12 ? (hi >>> 0) * 4294967296 + (lo >>> 0)
          : t === 7 ? signed64(lo, hi)
          : t === 2 ? lo & 0xff
          : t === 3 ? (lo << 24) >> 24
          : t === 4 ? lo & 0xffff
          : t === 5 ? (lo << 16) >> 16
          : t === 9 ? lo & 1
          : lo | 0;
      }
    }
    return out;
  }
  for (let r = 0; r < ranges.length; r += 2) {
    const [s, e] = [ranges[r], ranges[r + 1]];
    const dv = new DataView(bytes.buffer, bytes.byteOffset + s, e - s);
    if (rec.encoding === 'fixed32') for (let p = 0; p < e - s; p += 4) out[k++] = dv.getFloat32(p, true);
    else if (rec.encoding === 'fixed64') for (let p = 0; p < e - s; p += 8) out[k++] = dv.getFloat64(p, true);
    else {
      const w = RAW_WIDTH[t];
      for (let p = 0; p + w <= e - s; p += w) {
        out[k++] =
          t === FLOAT ? dv.getFloat32(p, true)
          : t === FLOAT16 ? fromHalfBits(dv.getUint16(p, true))
          : t === BFLOAT16 ? bf16(dv.getUint16(p, true))
          : t === 11 ? dv.getFloat64(p, true)
          : t === 7 ? Number(dv.getBigInt64(p, true))
          : t === 13 ? Number(dv.getBigUint64(p, true))
          : t === 6 ? dv.getInt32(p, true)
          : t === 12 ? dv.getUint32(p, true)
          : t === 5 ? dv.getInt16(p, true)
          : t === 4 ? dv.getUint16(p, true)
          : t === 3 ? dv.getInt8(p)
          : dv.getUint8(p);
      }
    }
  }
  return out;
}

/** A tensor's values as float32: a quantized weight's dequantized, fround((q − zp) × scale). */
function decodeSlot(s: Slot, keep = false): Float32Array {
  if (s.rec.count === 0) return new Float32Array(0);
  const out = decode(s, keep);
  const g = s.grid;
  if (g) for (let i = 0; i < out.length; i++) out[i] = (out[i] - g.zeroPoint) * g.scale; // exact in float64, rounded once by the Float32Array
  return out;
}

/**
 * The grid of an INT8/UINT8 tensor whose readers are all `DequantizeLinear` nodes (input 0)
 * with the same scalar FLOAT scale and scalar zero point of its type, or why it is not a
 * quantized weight (see the module doc).
 */
function quantization(rec: OnnxTensorRecord, slotOf: (r: OnnxTensorRecord) => Slot): LinearQuantGrid | string {
  const readers: OnnxReader[] = rec.readers ?? [];
  if (!readers.length) return 'no node reads it by name, so it is no DequantizeLinear input';
  const dims = (t: OnnxTensorRecord) => `[${t.dims.join(', ')}]`;
  let grid: LinearQuantGrid | undefined;
  for (const r of readers) {
    const at = `${r.op} node ${JSON.stringify(r.node)}`;
    if (r.op !== DQ || r.input) return `it is input ${r.input} of ${at}, not only the input of DequantizeLinear nodes`;
    if (r.alsoInput !== undefined) return `it is inputs 0 and ${r.alsoInput} of ${at}, not only its input 0`;
    const [, scale, zero] = r.inputs;
    if (!scale || scale.dataType !== FLOAT) return `the scale of ${at} is ${scale ? ONNX_DTYPES[scale.dataType] : 'not a tensor stored in the model (a graph input or a node output)'}, not a stored FLOAT`;
    const block = r.ints.block_size;
    if (scale.count !== 1 || scale.dims.length > 1 || block) return `it is quantized per axis or per block: the scale of ${at} has shape ${dims(scale)}${block ? ` and block_size ${block}` : ''}, not one value`;
    if (r.names[2] && !zero) return `the zero point of ${at} is not a tensor stored in the model`;
    if (zero && (zero.dataType !== rec.dataType || zero.count !== 1 || zero.dims.length > 1)) return `the zero point of ${at} is ${ONNX_DTYPES[zero.dataType]} ${dims(zero)}, not one ${ONNX_DTYPES[rec.dataType]} value (per-axis quantization, or another type)`;
    const out = r.ints.output_dtype;
    if (out && out !== FLOAT) return `${at} dequantizes to ${ONNX_DTYPES[out] ?? `data type ${out}`}, not FLOAT`;
    const sc = decode(slotOf(scale))[0];
    if (!(sc > 0 && sc < Infinity)) return `the scale of ${at} is ${sc}, not a finite positive number`;
    const g: LinearQuantGrid = { dtype: rec.dataType === INT8 ? 'qint8' : 'quint8', scale: sc, zeroPoint: zero ? decode(slotOf(zero))[0] : 0 };
    if (grid && describeGrid(grid) !== describeGrid(g)) return `it feeds DequantizeLinear nodes with different quantization (${describeGrid(grid)} and ${describeGrid(g)})`;
    grid = g;
  }
  return grid as LinearQuantGrid;
}

/**
 * Quantization parameter inputs of the ops that take them (scales, then zero points), in the
 * default domain and in `com.microsoft` (onnxruntime's contrib ops): FORMAT.md §12, a payload
 * never moves a grid, so they are read-only.
 */
const QUANT_PARAMS: Readonly<Record<string, { scales: number[]; zeros: number[] }>> = {
  DequantizeLinear: { scales: [1], zeros: [2] },
  QuantizeLinear: { scales: [1], zeros: [2] },
  QLinearMatMul: { scales: [1, 4, 6], zeros: [2, 5, 7] },
  QLinearConv: { scales: [1, 4, 6], zeros: [2, 5, 7] },
  MatMulInteger: { scales: [], zeros: [2, 3] },
  ConvInteger: { scales: [], zeros: [2, 3] },
  QLinearAdd: { scales: [1, 4, 6], zeros: [2, 5, 7] },
  QLinearMul: { scales: [1, 4, 6], zeros: [2, 5, 7] },
  QLinearSigmoid: { scales: [1, 3], zeros: [2, 4] },
  QLinearLeakyRelu: { scales: [1, 3], zeros: [2, 4] },
  QLinearAveragePool: { scales: [1, 3], zeros: [2, 4] },
  QLinearGlobalAveragePool: { scales: [1, 3], zeros: [2, 4] },
  QGemm: { scales: [1, 4, 7], zeros: [2, 5, 8] },
  DynamicQuantizeMatMul: { scales: [2], zeros: [3] },
  MatMulIntegerToFloat: { scales: [2, 3], zeros: [4, 5] },
};

/** A reader's op type without the `com.microsoft:` domain (other domains keep theirs, and match nothing). */
function opName(op: string): string {
  return op.startsWith('com.microsoft:') ? op.slice('com.microsoft:'.length) : op;
}

/** The quantization parameter input of `r` that names the tensor, if it is one. */
function quantParamInput(r: OnnxReader): number | undefined {
  const p = QUANT_PARAMS[opName(r.op)];
  if (!p) return undefined;
  for (const at of [r.input, r.alsoInput]) if (at !== undefined && (p.scales.includes(at) || p.zeros.includes(at))) return at;
  return undefined;
}

/**
 * The write of a quantized weight's new integers, checked first: every value on the weight's
 * grid; in `int32_data`, every changed integer fits the varint it replaces (a varint is rewritten
 * in its own length, padded with continuation bytes, which protobuf readers accept; a negative
 * int32 needs 5 bytes), so the file keeps every offset and length.
 */
function quantizedWrite(name: string, source: string, s: Slot, v: Float32Array): () => void {
  const { rec } = s;
  const { bytes, ranges } = loaded(s, true);
  const g = s.grid as LinearQuantGrid;
  const dtype = ONNX_DTYPES[rec.dataType];
  const where = `tensor ${JSON.stringify(name)} in ${source} is ${dtype}`;
  const q = new Int16Array(v.length);
  for (let i = 0; i < v.length; i++) {
    if (!Object.is(snapValue(v[i], g), v[i])) {
      throw new ModelMismatchError(
        `${where} quantized as ${describeGrid(g)}, and the patched value at position ${i} (${v[i]}) is not on that grid: a payload for a quantized weight must round onto it (a format v2 payload built against this model does); nothing was written. Ask the publisher for a payload made for this model, or fetch the full model`,
        { tensor: name, dtype, position: i, value: v[i] },
      );
    }
    q[i] = gridLevel(v[i], g);
  }
  if (rec.encoding !== 'varint') {
    const at = ranges.length ? ranges[0] : 0;
    return () => {
      for (let i = 0; i < q.length; i++) bytes[at + i] = q[i] & 0xff;
    };
  }
  const old = decode(s);
  const plan: number[] = []; // (offset, length, value) of every varint to rewrite
  let k = 0;
  for (let r = 0; r < ranges.length; r += 2) {
    const e = ranges[r + 1];
    for (let p = ranges[r]; p < e; k++) {
      const at = p;
      while (bytes[p] >= 0x80) p++;
      const len = ++p - at;
      if (q[k] === old[k]) continue;
      const need = q[k] < 0 ? 5 : q[k] < 0x80 ? 1 : 2;
      if (need > len) {
        throw new ModelMismatchError(
          `${where} stored as int32_data varints, and the new value at position ${k} (${q[k]}) needs a ${need}-byte varint where the file has ${len} byte(s): it cannot be written at the same offsets; nothing was written. Save the model with raw_data (the default of onnx.numpy_helper.from_array), or fetch the full model`,
          { tensor: name, dtype, position: k },
        );
      }
      plan.push(at, len, q[k]);
    }
  }
  return () => {
    for (let j = 0; j < plan.length; j += 3) {
      const [at, n, x] = [plan[j], plan[j + 1], plan[j + 2]];
      const hi = x < 0 ? -1 : 0; // sign-extended to 64 bits, as protobuf writes an int32
      for (let b = 0; b < n; b++) {
        const group = b < 4 ? x >>> (7 * b) : b === 4 ? (x >>> 28) | (hi << 4) : hi >>> (7 * b - 32);
        bytes[at + b] = (group & 0x7f) | (b < n - 1 ? 0x80 : 0);
      }
    }
  };
}

/**
 * A {@link WeightStore} over the bytes of an ONNX model (module doc). Pure: hand it the file's
 * bytes (and those of its external data files), patch, then take {@link modelBytes} (and
 * {@link externalBytes}) for onnxruntime or for writing.
 */
export class OnnxWeightStore implements WeightStore {
  /** Name used in error messages. */
  readonly source: string;
  private readonly bytes: Uint8Array;
  private readonly external: Map<string, Uint8Array | OnnxExternalSource>;
  private readonly slots = new Map<string, Slot>();
  private readonly entries: OnnxTensorEntry[] = [];
  private frameValues?: Float32Array;
  /** Byte ranges of the model file left out of the frame (the inline weights' values): each weight's ranges, the weights in file order. */
  private readonly frameRanges: (readonly number[])[];

  /**
   * @param bytes the whole `.onnx` file; float32 weights are patched in it, in place.
   * @throws ModelFormatError when the bytes are not a well-formed ONNX model (see
   *   `scanOnnxModel`), an external data file is missing, or two float weights share bytes.
   */
  constructor(bytes: Uint8Array, options: OnnxStoreOptions = {}) {
    this.bytes = bytes;
    this.source = options.source ?? 'ONNX model';
    const ext = options.external;
    this.external = new Map(ext instanceof Map ? ext : Object.entries((ext ?? {}) as Record<string, Uint8Array | OnnxExternalSource>));
    const sizeOf = (loc: string) => {
      const e = this.external.get(loc);
      return e === undefined ? undefined : e instanceof Uint8Array ? e.length : e.size;
    };
    const scan = scanOnnxModel(bytes, { source: this.source, externalSize: sizeOf, reserved: [ONNX_FRAME] });
    // Every patchable range by file, flat (start, end, index into `read`): checked for overlaps below.
    const claimed = new Map<string, number[]>();
    const read = scan.tensors.filter((rec) => RAW_WIDTH[rec.dataType] !== undefined); // strings, complex, 8/4/2-bit: in the frame only
    for (const rec of read) {
      const ext = rec.external === undefined ? bytes : this.external.get(rec.external);
      this.slots.set(rec.name, ext instanceof Uint8Array ? { rec, bytes: ext, ranges: rec.ranges } : { rec, ranges: rec.ranges, source: ext, origin: ext });
    }
    read.forEach((rec, index) => {
      const slot = this.slots.get(rec.name) as Slot;
      const t = rec.dataType;
      // A quantization parameter (a scale or zero point of a (De)QuantizeLinear, QLinear* or
      // *Integer node, in the default domain or com.microsoft) is read-only: a payload never moves a grid.
      const param = rec.readers?.map((r) => ({ r, at: quantParamInput(r) })).find((x) => x.at !== undefined);
      if (param) {
        const kind = QUANT_PARAMS[opName(param.r.op)].scales.includes(param.at as number) ? 'scale' : 'zero point';
        slot.why = `it is the ${kind} of ${param.r.op} node ${JSON.stringify(param.r.node)} (input ${param.at}), and quantization parameters are never patched`;
      }
      else if (rec.shadowedBy !== undefined) slot.why = `a later tensor of the same name in the same graph (${JSON.stringify(rec.shadowedBy)}) hides it: onnxruntime uses the last initializer of a name, so this one is never read`;
      else if (t === INT8 || t === UINT8) {
        const q = quantization(rec, (r) => this.slots.get(r.name) as Slot);
        if (typeof q === 'string') slot.why = q;
        else slot.grid = q;
      }
      const patchable = this.isPatchable(slot);
      if (patchable) {
        const key = rec.external ?? '';
        const list = claimed.get(key) ?? [];
        // One extent per tensor: a tensor's ranges lie in order inside its own message, so
        // extents overlap exactly when bytes are shared (and a million unpacked values cost one entry).
        if (rec.ranges.length) list.push(rec.ranges[0], rec.ranges[rec.ranges.length - 1], index);
        claimed.set(key, list);
      }
      this.entries.push({
        name: rec.name, shape: rec.dims, dtype: ONNX_DTYPES[t], patchable,
        ...(slot.grid ? { quantization: slot.grid } : {}), ...(slot.why ? { readOnly: slot.why } : {}), ...(rec.external !== undefined ? { external: rec.external } : {}),
      });
    });
    let frameRanges: (readonly number[])[] = [];
    for (const [key, list] of claimed) {
      const order = Uint32Array.from({ length: list.length / 3 }, (_, i) => i).sort((x, y) => list[3 * x] - list[3 * y]);
      for (let i = 1; i < order.length; i++) {
        const [p, q] = [3 * order[i - 1], 3 * order[i]];
        if (list[q] < list[p + 1]) {
          throw new ModelFormatError(`${this.source}: weights ${JSON.stringify(read[list[p + 2]].name)} and ${JSON.stringify(read[list[q + 2]].name)} share bytes in ${key ? JSON.stringify(key) : 'the model file'}: patching one would change the other; expected separate data for every tensor`, { source: this.source });
        }
      }
      if (key === '') frameRanges = Array.from(order, (o) => read[list[3 * o + 2]].ranges);
    }
    this.entries.push({ name: ONNX_FRAME, shape: [8], dtype: 'FRAME', patchable: false });
    this.frameRanges = frameRanges;
  }

  /** Every tensor: the weights, the read-only tensors and the frame, in file order. */
  list(): OnnxTensorEntry[] {
    return this.entries.slice();
  }

  /**
   * How a weight is stored: FLOAT → float32, FLOAT16 → float16, BFLOAT16 → bfloat16, a
   * quantized INT8/UINT8 → qint8/quint8 with its `DequantizeLinear` scale and zero point (see
   * `WeightStore.grid`): payloads built against the model round onto it, so half weights stay
   * half and int8 weights int8; undefined for read-only tensors.
   */
  grid(name: string): StorageGrid | undefined {
    const s = this.slots.get(name);
    if (!s || !this.isPatchable(s)) return undefined;
    const t = s.rec.dataType;
    return s.grid ?? { dtype: t === FLOAT ? 'float32' : t === FLOAT16 ? 'float16' : 'bfloat16' };
  }

  /** The weights a payload may patch (float, and quantized INT8/UINT8). */
  weights(): OnnxTensorEntry[] {
    return this.entries.filter((e) => e.patchable);
  }

  /**
   * The values of a weight as a mutable Float32Array (the same array on every call): a view
   * into the file's bytes for an aligned FLOAT tensor on a little-endian host, else a decoded
   * copy that {@link commit} writes back (for a quantized weight, its dequantized values).
   * @throws ModelMismatchError for an unknown name, a read-only tensor or the frame.
   */
  values(name: string): Float32Array {
    const s = this.slots.get(name);
    if (!s || !this.isPatchable(s)) throw this.notPatchable(name, s);
    return this.valuesOf(s);
  }

  private valuesOf(s: Slot): Float32Array {
    if (s.values) return s.values;
    const { rec } = s;
    const { bytes, ranges } = loaded(s, true);
    const at = ranges.length === 2 ? bytes.byteOffset + ranges[0] : -1;
    if (LITTLE_ENDIAN_HOST && rec.dataType === FLOAT && rec.encoding !== 'varint' && at % 4 === 0) {
      s.values = new Float32Array(bytes.buffer, at, rec.count);
      s.view = true;
    } else {
      s.values = decodeSlot(s, true);
    }
    return s.values;
  }

  private isPatchable(s: Slot): boolean {
    const t = s.rec.dataType;
    return !!s.grid || (!s.why && (t === FLOAT || t === FLOAT16 || t === BFLOAT16));
  }

  private notPatchable(name: string, s: Slot | undefined): ModelMismatchError {
    // values() and snap() hand out weights to patch, to the applier for a payload's tensor or to
    // code reading one: the message says what each should do, and blames no payload that is not there.
    const tail = 'A payload that names it was made for another model: fetch the full model';
    const readInstead = 'values() hands out only those, to patch; read(name) gives any tensor\'s values as float32 (a copy)';
    if (name === ONNX_FRAME) {
      return new ModelMismatchError(`${JSON.stringify(name)} in ${this.source} stands for the graph and every read-only tensor of the model; it is never patched. ${tail}`, { tensor: name, dtype: 'FRAME' });
    }
    if (s) {
      const dtype = ONNX_DTYPES[s.rec.dataType];
      return new ModelMismatchError(
        s.why
          ? `tensor ${JSON.stringify(name)} in ${this.source} is ${dtype} and read-only: ${s.why}. Only FLOAT, FLOAT16 and BFLOAT16 weights, and INT8/UINT8 weights of DequantizeLinear nodes, are patched (these as input 0 alone, with one scalar FLOAT scale and zero point); ${readInstead}. ${tail}`
          : `tensor ${JSON.stringify(name)} in ${this.source} is ${dtype}: only FLOAT, FLOAT16 and BFLOAT16 weights, and INT8/UINT8 weights of DequantizeLinear nodes, are patched; ${readInstead}. ${tail}`,
        { tensor: name, dtype, ...(s.why ? { reason: s.why } : {}) },
      );
    }
    const w = this.weights();
    return new ModelMismatchError(`no tensor named ${JSON.stringify(name)} in ${this.source}: expected one of its ${w.length} weights (e.g. ${w.slice(0, 3).map((e) => JSON.stringify(e.name)).join(', ')}). ${tail}`, { tensor: name });
  }

  /** Values for hashing only: handed-out values, a view, or a transient decoded copy. */
  read(name: string): Float32Array {
    if (name === ONNX_FRAME) return this.frame();
    const s = this.slots.get(name);
    if (!s) throw this.notPatchable(name, s);
    if (s.values) return s.values;
    // In memory: a view. From an external source: a transient copy, let go once hashed.
    if (this.isPatchable(s) && s.rec.dataType === FLOAT && !s.source) return this.valuesOf(s);
    return decodeSlot(s);
  }

  /** The frame's 8 values: the bytes of xxh64 over the model file without its float weights' value bytes. */
  private frame(): Float32Array {
    return (this.frameValues ??= frameDigest(this.bytes, this.frameRanges));
  }

  /**
   * Write handed-out copies back into the file's bytes, at their own offsets (views already
   * are). Checks every changed tensor first and writes nothing if one cannot be stored exactly.
   *
   * @throws ModelMismatchError a FLOAT16/BFLOAT16 weight holds a value its dtype cannot
   *   represent exactly, or a half weight stored as `int32_data` varints changed; a quantized
   *   weight holds a value off its grid, or a new integer needs a longer `int32_data` varint
   *   than the file has at its place.
   */
  commit(changed: readonly string[]): void {
    const writes: (() => void)[] = [];
    for (const name of changed) {
      const s = this.slots.get(name);
      if (!s || !this.isPatchable(s)) throw this.notPatchable(name, s);
      if (!s.values || s.view) continue;
      const write = this.planWrite(name, s, s.values);
      if (write) writes.push(write);
    }
    for (const w of writes) w();
  }

  /**
   * Why `values` cannot be written into tensor `name` of this file at its byte offsets (a value
   * its dtype or grid cannot hold, a longer `int32_data` varint), or null when they can: what
   * {@link commit} would refuse, checked without writing. A diff checks its target with it, so a
   * payload is only written for values the device's file can take.
   */
  writeProblem(name: string, values: Float32Array): string | null {
    const s = this.slots.get(name);
    if (!s || !this.isPatchable(s)) return this.notPatchable(name, s).message;
    try {
      this.planWrite(name, s, values);
      return null;
    } catch (e) {
      if (e instanceof ModelMismatchError) return e.message;
      throw e;
    }
  }

  /** The write of `v` into slot `s`, checked, to run after every tensor of a commit is checked (null: nothing to write). */
  private planWrite(name: string, s: Slot, v: Float32Array): (() => void) | null {
    const { rec } = s;
    if (rec.dataType === FLOAT) {
      const { bytes, ranges } = loaded(s, true);
      return () => {
        let k = 0;
        for (let r = 0; r < ranges.length; r += 2) {
          const [a, e] = [ranges[r], ranges[r + 1]];
          const dv = new DataView(bytes.buffer, bytes.byteOffset + a, e - a);
          for (let p = 0; p < e - a; p += 4) dv.setFloat32(p, v[k++], true);
        }
      };
    }
    if (s.grid) return quantizedWrite(name, this.source, s, v);
    const dtype = ONNX_DTYPES[rec.dataType];
    const halves = new Uint16Array(v.length);
    for (let i = 0; i < v.length; i++) {
      const h = rec.dataType === BFLOAT16 ? exactBfloat16Bits(v[i]) : exactHalfBits(v[i]);
      if (h < 0) {
        throw new ModelMismatchError(
          `tensor ${JSON.stringify(name)} in ${this.source} is ${dtype}, and the patched value at position ${i} (${v[i]}) is not a ${dtype} value: a payload for a ${dtype} weight must land on ${dtype} values; nothing was written. Ask the publisher for a payload made for the ${dtype} model, or fetch the full model`,
          { tensor: name, dtype, position: i, value: v[i] },
        );
      }
      halves[i] = h;
    }
    if (rec.encoding === 'varint') {
      const old = decode(s);
      if (old.some((x, i) => !Object.is(x, v[i]))) {
        throw new ModelMismatchError(
          `tensor ${JSON.stringify(name)} in ${this.source} is ${dtype} stored as int32_data varints, whose lengths change with the values, so it cannot be patched at the same byte offsets; nothing was written. Save the model with raw_data (the default of onnx.numpy_helper.from_array), or fetch the full model`,
          { tensor: name, dtype },
        );
      }
      return null;
    }
    if (halves.length === 0) return null; // an empty tensor: no bytes to write (and maybe no data field)
    const { bytes, ranges } = loaded(s, true);
    return () => {
      const dv = new DataView(bytes.buffer, bytes.byteOffset + ranges[0], ranges[1] - ranges[0]);
      for (let i = 0; i < halves.length; i++) dv.setUint16(2 * i, halves[i], true);
    };
  }

  /** The `.onnx` file's bytes (patched in place after {@link commit}). */
  modelBytes(): Uint8Array {
    return this.bytes;
  }

  /**
   * The external data files held in memory, by location (patched in place after {@link commit});
   * files read through an {@link OnnxExternalSource} are not among them: see {@link externalPatches}.
   */
  externalBytes(): ReadonlyMap<string, Uint8Array> {
    const out = new Map<string, Uint8Array>();
    for (const [loc, e] of this.external) if (e instanceof Uint8Array) out.set(loc, e);
    return out;
  }

  /**
   * For tensors kept in an {@link OnnxExternalSource}: the bytes to write at their offsets, by
   * location, for the tensors of `changed` (after {@link commit}). A file writer copies the
   * rest of the file as it is.
   */
  externalPatches(changed: readonly string[]): Map<string, OnnxExternalPatch[]> {
    const out = new Map<string, OnnxExternalPatch[]>();
    for (const name of changed) {
      const s = this.slots.get(name);
      if (!s?.source || !s.bytes || s.rec.external === undefined) continue;
      const list = out.get(s.rec.external) ?? [];
      list.push({ offset: s.rec.ranges[0], bytes: s.bytes.subarray(s.ranges[0], s.ranges[1]) });
      out.set(s.rec.external, list);
    }
    return out;
  }

  /**
   * Let go of the bytes held for `name`, a tensor of an {@link OnnxExternalSource}, once its
   * {@link commit}ted bytes are kept in `source` (a copy of its file being written, at the same
   * offsets): later reads come from there. So an apply holds the tensors it is still patching,
   * not every one it patched. False (nothing done) for a tensor not read through a source.
   */
  release(name: string, source: OnnxExternalSource): boolean {
    const s = this.slots.get(name);
    if (!s?.source) return false;
    Object.assign(s, { source, bytes: undefined, values: undefined, view: undefined, ranges: s.rec.ranges });
    return true;
  }

  /**
   * Forget the values handed out for `name`, a tensor read through an {@link OnnxExternalSource},
   * and read it from the file it was opened with again (see `WeightStore.forget`): true when
   * done; false for a tensor held in memory, whose changes only an undo brings back.
   */
  forget(name: string): boolean {
    const s = this.slots.get(name);
    if (!s?.origin) return false;
    Object.assign(s, { source: s.origin, bytes: undefined, values: undefined, view: undefined, ranges: s.rec.ranges });
    return true;
  }

  /** Where a tensor's values live: the model file (`undefined`) or an external location. */
  fileOf(name: string): string | undefined {
    return this.slots.get(name)?.rec.external;
  }
}

// Types named in the signatures above, so callers can name them too.
export type { OnnxEncoding } from './proto.ts';
export type { LinearQuantGrid } from '../../core/grid.ts';
