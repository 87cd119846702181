/**
 * `neural-diff/tflite`: LiteRT models (`.tflite` files) as a {@link WeightStore}, in plain
 * TypeScript with no node imports and no FlatBuffers library, so a device can patch the model it
 * runs with LiteRT.js (`@litertjs/core`), `react-native-fast-tflite` or MediaPipe's tasks. The
 * crash-safe apply of a file on disk is in `files.ts` (`neural-diff/node`).
 *
 * ```ts
 * import { applyPayload } from 'neural-diff/apply';
 * import { TfliteWeightStore } from 'neural-diff/tflite';
 * const store = new TfliteWeightStore(modelBytes);          // the .tflite file's bytes
 * await applyPayload(store, payloadBytes, { trustedKeys: [releaseKey] });
 * const model = await loadAndCompile(store.modelBytes(), { accelerator: 'wasm' }); // the same bytes, patched
 * ```
 *
 * What the store holds (docs/FORMAT.md, "LiteRT models"; the file's layout in `schema.ts`):
 * - **weights**: every tensor with constant data of type FLOAT32 (patched in place, a view into
 *   the file's bytes when aligned), FLOAT16 (read as exact float32; written back only when
 *   every patched value is a float16, else a {@link ModelMismatchError} and nothing written),
 *   and INT8/UINT8 with quantization parameters: value = fround((q − zero point) × scale), as
 *   LiteRT dequantizes. One scale per tensor is a `qint8`/`quint8` storage grid (src/core/grid.ts),
 *   so payloads built against the model round onto it; one scale per channel
 *   (`quantized_dimension`) keeps each channel on its own grid: only values on it are written
 *   (an exact payload, or a diff that rounds onto it, as `ndiff diff` does). Scales and zero
 *   points are part of the frame, so a payload never moves a grid. The file keeps its length and
 *   every other byte.
 * - **read-only tensors**: other constant tensors (INT32 shapes and indices, BOOL, INT16, ...),
 *   tensors that share one buffer, INT8/UINT8 data without scales: listed (as float32) so a
 *   payload naming one is refused with the reason. Tensors stored sparse, strings and 4-bit
 *   tensors are in the frame only (their bytes are not one value per element).
 * - **the frame** ({@link TFLITE_FRAME}): one read-only tensor of 8 values, the bytes of the
 *   xxh64 of the whole file with the value bytes of every weight left out. It puts the graph,
 *   operators, quantization parameters, metadata and every read-only tensor's exact bytes into
 *   the model fingerprint, so a payload made for another graph is refused even if the weights agree.
 *
 * @module neural-diff/tflite
 */
import { ModelFormatError, ModelMismatchError } from '../../core/errors.ts';
import { describeGrid, gridLevel, snapValue, type LinearQuantGrid, type StorageGrid } from '../../core/grid.ts';
import { LITTLE_ENDIAN_HOST } from '../../core/endian.ts';
import { exactHalfBits, fromBfloat16Bits, fromHalfBits } from '../../core/float16.ts';
import type { TensorEntry, WeightStore } from '../../core/weight-store.ts';
import { frameDigest } from '../../core/file-frame.ts';
import { FLOAT16, FLOAT32, INT8, scanTfliteModel, TFLITE_TYPES, TFLITE_WIDTH, UINT8, type TfliteTensorRecord } from './schema.ts';

export { scanTfliteModel, TFLITE_TYPES, type TfliteScan, type TfliteTensorRecord, type TfliteQuantization, type TfliteScanOptions } from './schema.ts';

/** Name of the frame tensor (module doc). A model tensor of the same name is renamed `tflite:frame #2`. */
export const TFLITE_FRAME = 'tflite:frame';

/** The largest `.tflite` file a store reads: the file is held in memory as one array. */
export const MAX_TFLITE_MODEL_BYTES = 2 ** 31 - 1;

/** A tensor of a LiteRT model, as {@link TfliteWeightStore.list} gives it. */
export interface TfliteTensorEntry extends TensorEntry {
  /** The LiteRT type (`FLOAT32`, `FLOAT16`, `INT8`, ...); `FRAME` for {@link TFLITE_FRAME}. */
  readonly dtype: string;
  /** True for the weights a payload may patch. */
  readonly patchable: boolean;
  /** For an INT8/UINT8 weight quantized per tensor: its grid (see {@link TfliteWeightStore.grid}). */
  readonly quantization?: LinearQuantGrid;
  /** For an INT8/UINT8 weight quantized per channel: the channel axis and the number of channels. */
  readonly perChannel?: { axis: number; channels: number };
  /** For a read-only tensor: why a payload may not patch it. */
  readonly readOnly?: string;
}

/** Options of {@link TfliteWeightStore}. */
export interface TfliteStoreOptions {
  /** Name for error messages (a path or URL). */
  source?: string;
}

/** Per-channel quantization: channel c's values are fround((q − zeroPoint[c]) × scale[c]). */
interface ChannelGrids {
  signed: boolean;
  scale: number[];
  zeroPoint: number[];
  /** Values per step of the channel axis (the product of the dimensions after it), and the channel count. */
  inner: number;
  channels: number;
}

interface Slot {
  rec: TfliteTensorRecord;
  grid?: LinearQuantGrid;
  channels?: ChannelGrids;
  why?: string;
  values?: Float32Array;
  view?: boolean;
}


/** The grid of channel `c` of a per-channel weight. */
function channelGrid(ch: ChannelGrids, c: number): LinearQuantGrid {
  return { dtype: ch.signed ? 'qint8' : 'quint8', scale: ch.scale[c], zeroPoint: ch.zeroPoint[c] };
}

/** The other readers of a shared buffer, for a message: a few names, then how many more. */
function sharersOf(rec: TfliteTensorRecord): string {
  const names = (rec.sharedWith ?? []).map((n) => JSON.stringify(n)).join(', ');
  const more = (rec.sharing ?? 0) - 1 - (rec.sharedWith?.length ?? 0);
  return more > 0 ? `${names} and ${more} other tensors` : names;
}

/** The quantization of an INT8/UINT8 tensor, or why it is not a weight. */
function quantizationOf(rec: TfliteTensorRecord): { grid: LinearQuantGrid } | { channels: ChannelGrids } | string {
  const q = rec.quantization;
  if (!q) return 'it has no quantization scale, so its integers are not weights of known value';
  const signed = rec.type === INT8;
  const lo = signed ? -128 : 0;
  const hi = signed ? 127 : 255;
  const zps = q.zeroPoint.length ? q.zeroPoint : q.scale.map(() => 0);
  if (zps.length !== q.scale.length) return `it has ${q.scale.length} scales but ${zps.length} zero points`;
  for (let c = 0; c < q.scale.length; c++) {
    const s = q.scale[c];
    if (!(s > 0 && s < Infinity)) return `its scale ${c} is ${s}, not a finite positive number`;
    if (!Number.isInteger(zps[c]) || zps[c] < lo || zps[c] > hi) return `its zero point ${c} is ${zps[c]}, outside the ${TFLITE_TYPES[rec.type]} range`;
  }
  if (q.scale.length === 1) return { grid: { dtype: signed ? 'qint8' : 'quint8', scale: q.scale[0], zeroPoint: zps[0] } };
  const axis = q.dimension;
  if (!(axis >= 0 && axis < rec.shape.length) || rec.shape[axis] !== q.scale.length) {
    return `it has ${q.scale.length} scales on axis ${axis} of shape [${rec.shape.join(', ')}]: expected one scale, or one per channel of that axis`;
  }
  let inner = 1;
  for (let d = axis + 1; d < rec.shape.length; d++) inner *= rec.shape[d];
  return { channels: { signed, scale: q.scale, zeroPoint: zps, inner, channels: q.scale.length } };
}

/**
 * A {@link WeightStore} over the bytes of a `.tflite` file (module doc). Pure: hand it the file's
 * bytes, patch, then take {@link modelBytes} for LiteRT or for writing.
 */
export class TfliteWeightStore implements WeightStore {
  /** Name used in error messages. */
  readonly source: string;
  private readonly bytes: Uint8Array;
  private readonly slots = new Map<string, Slot>();
  private readonly entries: TfliteTensorEntry[] = [];
  private frameValues?: Float32Array;
  /** The weights' value bytes, sorted by offset (start, end): left out of the frame. */
  private readonly weightRanges: number[] = [];

  /**
   * @param bytes the whole `.tflite` file; weights are patched in it, in place.
   * @throws ModelFormatError when the bytes are not a well-formed LiteRT model (see `scanTfliteModel`).
   */
  constructor(bytes: Uint8Array, options: TfliteStoreOptions = {}) {
    this.bytes = bytes;
    this.source = options.source ?? 'LiteRT model';
    if (bytes.length > MAX_TFLITE_MODEL_BYTES) {
      throw new ModelFormatError(`${this.source} is ${bytes.length} bytes: a .tflite file is read whole, at most 2 GiB - 1 bytes; ship such a model as a full download`, { source: this.source, size: bytes.length });
    }
    const scan = scanTfliteModel(bytes, { source: this.source, reserved: [TFLITE_FRAME] });
    const ranges: [number, number][] = [];
    for (const rec of scan.tensors) {
      // Strings, resources, int4, and tensors stored sparse (their buffer holds the sparse format,
      // not one value per element): in the frame only, byte for byte.
      if (TFLITE_WIDTH[rec.type] === undefined || rec.sparse) continue;
      const slot: Slot = { rec };
      const t = rec.type;
      if (rec.sharedWith) slot.why = `it shares its buffer with ${sharersOf(rec)}: patching one would change the others`;
      else if (t === INT8 || t === UINT8) {
        const q = quantizationOf(rec);
        if (typeof q === 'string') slot.why = q;
        else Object.assign(slot, q);
      } else if (rec.quantization && t !== FLOAT32 && t !== FLOAT16) slot.why = `it is quantized ${TFLITE_TYPES[t]}`;
      this.slots.set(rec.name, slot);
      const patchable = this.isPatchable(slot);
      if (patchable) ranges.push([rec.start, rec.end]);
      this.entries.push({
        name: rec.name, shape: rec.shape, dtype: TFLITE_TYPES[t], patchable,
        ...(slot.grid ? { quantization: slot.grid } : {}),
        ...(slot.channels ? { perChannel: { axis: rec.quantization?.dimension as number, channels: slot.channels.channels } } : {}),
        ...(slot.why ? { readOnly: slot.why } : {}),
      });
    }
    ranges.sort((a, b) => a[0] - b[0]);
    for (const [s, e] of ranges) this.weightRanges.push(s, e);
    this.entries.push({ name: TFLITE_FRAME, shape: [8], dtype: 'FRAME', patchable: false });
  }

  /** Every tensor: the weights, the read-only tensors and the frame, in file order. */
  list(): TfliteTensorEntry[] {
    return this.entries.slice();
  }

  /** The weights a payload may patch. */
  weights(): TfliteTensorEntry[] {
    return this.entries.filter((e) => e.patchable);
  }

  /** Bytes of the weights as the file stores them (float32 4, float16 2, int8 1 a value): what `1%` budgets are a share of. */
  storedWeightBytes(): number {
    let n = 0;
    for (let i = 0; i < this.weightRanges.length; i += 2) n += this.weightRanges[i + 1] - this.weightRanges[i];
    return n;
  }

  /**
   * How a weight is stored: FLOAT32 → float32, FLOAT16 → float16, INT8/UINT8 quantized per
   * tensor → qint8/quint8 with its scale and zero point; undefined for a weight quantized per
   * channel (no single grid: the store itself accepts only values on each channel's grid, see
   * {@link snap}) and for read-only tensors.
   */
  grid(name: string): StorageGrid | undefined {
    const s = this.slots.get(name);
    if (!s || !this.isPatchable(s) || s.channels) return undefined;
    return s.grid ?? { dtype: s.rec.type === FLOAT32 ? 'float32' : 'float16' };
  }

  /**
   * Round `values` (a weight's new values) onto the way the file stores it, in place: a float16
   * weight onto float16, a quantized one onto its grid (each channel onto its own); a float32
   * weight is left as is. A diff does this before it packs values for this model.
   */
  snap(name: string, values: Float32Array): Float32Array {
    const s = this.slots.get(name);
    if (!s || !this.isPatchable(s)) throw this.notPatchable(name, s);
    const ch = s.channels;
    if (ch) {
      for (let i = 0; i < values.length; i++) values[i] = snapValue(values[i], channelGrid(ch, Math.floor(i / ch.inner) % ch.channels));
      return values;
    }
    const g = this.grid(name) as StorageGrid;
    if (g.dtype !== 'float32') for (let i = 0; i < values.length; i++) values[i] = snapValue(values[i], g);
    return values;
  }

  /**
   * The values of a weight as a mutable Float32Array (the same array on every call): a view into
   * the file's bytes for an aligned FLOAT32 tensor on a little-endian host, else a decoded copy
   * that {@link commit} writes back.
   * @throws ModelMismatchError for an unknown name, a read-only tensor or the frame.
   */
  values(name: string): Float32Array {
    const s = this.slots.get(name);
    if (!s || !this.isPatchable(s)) throw this.notPatchable(name, s);
    if (s.values) return s.values;
    const { rec } = s;
    const at = this.bytes.byteOffset + rec.start;
    if (LITTLE_ENDIAN_HOST && rec.type === FLOAT32 && at % 4 === 0) {
      s.values = new Float32Array(this.bytes.buffer, at, rec.count);
      s.view = true;
    } else {
      s.values = this.decode(s);
    }
    return s.values;
  }

  /** Values for hashing only: handed-out values, a view, or a transient decoded copy. */
  read(name: string): Float32Array {
    if (name === TFLITE_FRAME) return this.frame();
    const s = this.slots.get(name);
    if (!s) throw this.notPatchable(name, s);
    if (s.values) return s.values;
    if (this.isPatchable(s) && s.rec.type === FLOAT32) return this.values(name);
    return this.decode(s);
  }

  /** A tensor's values as float32 (a quantized weight's dequantized, wide integers rounded). */
  private decode(s: Slot): Float32Array {
    const { rec } = s;
    const out = new Float32Array(rec.count);
    const dv = new DataView(this.bytes.buffer, this.bytes.byteOffset + rec.start, rec.end - rec.start);
    const t = rec.type;
    const w = TFLITE_WIDTH[t];
    for (let i = 0, p = 0; i < out.length; i++, p += w) {
      out[i] =
        t === FLOAT32 ? dv.getFloat32(p, true)
        : t === FLOAT16 ? fromHalfBits(dv.getUint16(p, true))
        : t === 18 ? fromBfloat16Bits(dv.getUint16(p, true))
        : t === 10 ? dv.getFloat64(p, true)
        : t === 4 ? Number(dv.getBigInt64(p, true))
        : t === 12 ? Number(dv.getBigUint64(p, true))
        : t === 2 ? dv.getInt32(p, true)
        : t === 15 ? dv.getUint32(p, true)
        : t === 7 ? dv.getInt16(p, true)
        : t === 16 ? dv.getUint16(p, true)
        : t === INT8 ? dv.getInt8(p)
        : dv.getUint8(p);
    }
    const g = s.grid;
    const ch = s.channels;
    // Exact in float64, rounded once by the Float32Array: LiteRT's float(scale × (q − zero point)).
    if (g) for (let i = 0; i < out.length; i++) out[i] = (out[i] - g.zeroPoint) * g.scale;
    else if (ch) {
      for (let i = 0; i < out.length; i++) {
        const c = Math.floor(i / ch.inner) % ch.channels;
        out[i] = (out[i] - ch.zeroPoint[c]) * ch.scale[c];
      }
    }
    return out;
  }

  private isPatchable(s: Slot): boolean {
    if (s.why) return false;
    const t = s.rec.type;
    return !!s.grid || !!s.channels || t === FLOAT32 || t === FLOAT16;
  }

  private notPatchable(name: string, s: Slot | undefined): ModelMismatchError {
    // values() and snap() hand out weights to patch, to the applier for a payload's tensor or to
    // code reading one: the message says what each should do, and blames no payload that is not there.
    const tail = 'A payload that names it was made for another model: fetch the full model';
    const readInstead = 'values() hands out only those, to patch; read(name) gives any tensor\'s values as float32 (a copy)';
    if (name === TFLITE_FRAME) {
      return new ModelMismatchError(`${JSON.stringify(name)} in ${this.source} stands for the graph and every read-only tensor of the model; it is never patched. ${tail}`, { tensor: name, dtype: 'FRAME' });
    }
    if (s) {
      const dtype = TFLITE_TYPES[s.rec.type];
      return new ModelMismatchError(
        `tensor ${JSON.stringify(name)} in ${this.source} is ${dtype} and read-only${s.why ? `: ${s.why}` : ''}. Only FLOAT32 and FLOAT16 weights, and INT8/UINT8 weights with quantization scales, are patched; ${readInstead}. ${tail}`,
        { tensor: name, dtype, ...(s.why ? { reason: s.why } : {}) },
      );
    }
    const w = this.weights();
    return new ModelMismatchError(`no tensor named ${JSON.stringify(name)} in ${this.source}: expected one of its ${w.length} weights (e.g. ${w.slice(0, 3).map((e) => JSON.stringify(e.name)).join(', ')}). ${tail}`, { tensor: name });
  }

  /** The frame's 8 values: the bytes of xxh64 over the file without its weights' value bytes. */
  private frame(): Float32Array {
    return (this.frameValues ??= frameDigest(this.bytes, [this.weightRanges]));
  }

  /**
   * Write handed-out copies back into the file's bytes at their own offsets (views already
   * are). Checks every changed tensor first and writes nothing if one cannot be stored exactly.
   * @throws ModelMismatchError a FLOAT16 weight holds a value that is not a float16, or a
   *   quantized weight a value off its grid (its channel's grid).
   */
  commit(changed: readonly string[]): void {
    const writes: (() => void)[] = [];
    for (const name of changed) {
      const s = this.slots.get(name);
      if (!s || !this.isPatchable(s)) throw this.notPatchable(name, s);
      if (!s.values || s.view) continue;
      writes.push(this.planWrite(name, s, s.values));
    }
    for (const w of writes) w();
  }

  /**
   * Why `values` cannot be written into weight `name` of this file (a value its dtype or grid
   * cannot hold), or null when they can: what {@link commit} would refuse, checked without
   * writing. A diff checks its target with it, so a payload is only written for values the
   * device's file can take.
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

  private planWrite(name: string, s: Slot, v: Float32Array): () => void {
    const { rec } = s;
    const dtype = TFLITE_TYPES[rec.type];
    const dv = new DataView(this.bytes.buffer, this.bytes.byteOffset + rec.start, rec.end - rec.start);
    if (rec.type === FLOAT32) return () => { for (let i = 0; i < v.length; i++) dv.setFloat32(4 * i, v[i], true); };
    const off = (i: number, grid: string, hint: string) =>
      new ModelMismatchError(
        `tensor ${JSON.stringify(name)} in ${this.source} is ${dtype}${grid}, and the patched value at position ${i} (${v[i]}) is not on it: ${hint}; nothing was written. Ask the publisher for a payload made for this model, or fetch the full model`,
        { tensor: name, dtype, position: i, value: v[i] },
      );
    if (rec.type === FLOAT16) {
      const halves = new Uint16Array(v.length);
      for (let i = 0; i < v.length; i++) {
        const h = exactHalfBits(v[i]);
        if (h < 0) throw off(i, '', 'a payload for a FLOAT16 weight must land on float16 values (one built against this model does)');
        halves[i] = h;
      }
      return () => { for (let i = 0; i < halves.length; i++) dv.setUint16(2 * i, halves[i], true); };
    }
    const q = new Uint8Array(v.length);
    const ch = s.channels;
    for (let i = 0; i < v.length; i++) {
      const g = ch ? channelGrid(ch, Math.floor(i / ch.inner) % ch.channels) : (s.grid as LinearQuantGrid);
      if (!Object.is(snapValue(v[i], g), v[i])) throw off(i, ` quantized ${ch ? `per channel (here ${describeGrid(g)})` : `as ${describeGrid(g)}`}`, 'a payload for a quantized weight must round onto its grid (one built against this model does)');
      q[i] = gridLevel(v[i], g) & 0xff;
    }
    return () => this.bytes.set(q, rec.start);
  }

  /** The `.tflite` file's bytes (patched in place after {@link commit}). */
  modelBytes(): Uint8Array {
    return this.bytes;
  }
}

export type { LinearQuantGrid } from '../../core/grid.ts';
