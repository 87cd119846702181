/**
 * What a `.tflite` (LiteRT) file holds, read with the checked FlatBuffers reader: every tensor of
 * every subgraph with its type, shape, quantization and where its constant data lies in the file.
 * Plain TypeScript, no node imports: it runs on a device beside the applier.
 *
 * Fields read (tensorflow/lite/schema/schema.fbs; a field's number is its place in the table):
 * `Model.subgraphs` (2) and `.buffers` (4); `SubGraph.tensors` (0); `Tensor.shape` (0), `.type`
 * (1), `.buffer` (2), `.name` (3), `.quantization` (4), `.is_variable` (5), `.sparsity` (6);
 * `QuantizationParameters.scale` (2), `.zero_point` (3), `.quantized_dimension` (6);
 * `Buffer.data` (0), `.offset` (1), `.size` (2). Everything else (operators, options, metadata,
 * signatures) is the model's frame: hashed whole, and walked only to find where it lies
 * (`structure.ts`), so that no buffer's bytes overlap it.
 *
 * A buffer's bytes are its `data` vector, or, in files written by converters that keep large
 * weights outside the FlatBuffer, `size` bytes at `offset` from the start of the file (when
 * `offset` > 1). Refused as malformed (a {@link ModelFormatError}, before anything is patched):
 * any offset, vector or string outside the file, a vtable or field outside its table, a walk
 * that reads more than the file could hold (tables that refer to one another over and over),
 * two buffers whose bytes overlap, buffer bytes that overlap the FlatBuffer's own tables and
 * vectors (operators' options tables included), a tensor whose buffer index is out of range or
 * whose data disagrees with its shape, tensors that together read more than 4 × the file
 * (+ 1 MiB) of constant data.
 *
 * Naming: a tensor by its name; a name met a second time (in another subgraph, say) gets ` #2`
 * (then ` #3`, ...) in file order (subgraph by subgraph, tensor by tensor).
 */
import { ModelFormatError } from '../../core/errors.ts';
import { uniqueNamer } from '../../core/file-frame.ts';
import { FlatBufferReader } from './flatbuffers.ts';
import { walkTfliteStructure } from './structure.ts';

/** LiteRT `TensorType` names, by number. */
export const TFLITE_TYPES: readonly string[] = [
  'FLOAT32', 'FLOAT16', 'INT32', 'UINT8', 'INT64', 'STRING', 'BOOL', 'INT16', 'COMPLEX64', 'INT8', 'FLOAT64', 'COMPLEX128', 'UINT64', 'RESOURCE', 'VARIANT', 'UINT32', 'UINT16', 'INT4', 'BFLOAT16',
];

/** Bytes per element of the types whose values are read as numbers (others: frame only). */
export const TFLITE_WIDTH: Readonly<Record<number, number>> = { 0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 8, 12: 8, 15: 4, 16: 2, 18: 2 };

export const FLOAT32 = 0;
export const FLOAT16 = 1;
export const UINT8 = 3;
export const INT8 = 9;

/** A tensor's quantization parameters, as the file gives them. */
export interface TfliteQuantization {
  /** float32 scales: one (per tensor) or one per channel. */
  scale: number[];
  /** Zero points, one per scale (or none: zero). */
  zeroPoint: number[];
  /** The channel axis when there is a scale per channel. */
  dimension: number;
}

/** One tensor of the model that holds constant data. */
export interface TfliteTensorRecord {
  /** Stable name (module doc). */
  name: string;
  /** The tensor's name in the file. */
  fileName: string;
  /** Its subgraph, and its index there. */
  subgraph: number;
  index: number;
  /** The `TensorType` number. */
  type: number;
  shape: number[];
  /** Element count (the product of the shape). */
  count: number;
  /** Index into `Model.buffers`. */
  buffer: number;
  /** Where its bytes lie in the file: [start, end). */
  start: number;
  end: number;
  quantization?: TfliteQuantization;
  /** Stored sparse (`Tensor.sparsity`): its buffer holds the sparse format, not the values. */
  sparse: boolean;
  /**
   * Set when other tensors read the same buffer: the names of up to three (`SHARED_NAMES_SHOWN`)
   * of them (a file may have thousands of tensors on one buffer: listing every one for every
   * tensor would be quadratic in the file).
   */
  sharedWith?: string[];
  /** How many tensors read this tensor's buffer, this one included (set with {@link sharedWith}). */
  sharing?: number;
}

/** At most this many other tensors' names are kept in {@link TfliteTensorRecord.sharedWith}. */
export const SHARED_NAMES_SHOWN = 3;

/**
 * The constant data the tensors of a file read, all together, is at most this many times the
 * file's length plus {@link SHARED_READ_SLACK}: tensors may share a buffer (tied weights,
 * deduplicated constants), but a few kilobytes of tensor tables naming one big buffer must not
 * make every reader of the model (the fingerprint, the trainer) handle gigabytes.
 */
export const SHARED_READ_FACTOR = 4;
/** Bytes of shared reads allowed beyond {@link SHARED_READ_FACTOR} times the file (small files sharing small constants). */
export const SHARED_READ_SLACK = 1 << 20;

/** The result of {@link scanTfliteModel}. */
export interface TfliteScan {
  /** The schema version (`Model.version`). */
  version: number;
  /** Every tensor with constant data, in file order (subgraph, then tensor index). */
  tensors: TfliteTensorRecord[];
  /** How many subgraphs and tensors the model has in all (constant or not). */
  subgraphs: number;
  tensorCount: number;
}

/** Options of {@link scanTfliteModel}. */
export interface TfliteScanOptions {
  /** Name for error messages. */
  source?: string;
  /** Names the model's tensors must not take (a tensor so named becomes `<name> #2`). */
  reserved?: readonly string[];
}

/**
 * Read a `.tflite` file's tensors that hold constant data (module doc).
 * @throws ModelFormatError when the bytes are not a well-formed LiteRT model.
 */
export function scanTfliteModel(bytes: Uint8Array, options: TfliteScanOptions = {}): TfliteScan {
  const source = options.source ?? 'LiteRT model';
  const fb = new FlatBufferReader(bytes, source);
  if (bytes.length >= 8 && String.fromCharCode(...bytes.subarray(4, 8)) !== 'TFL3') {
    throw new ModelFormatError(`${source} is not a LiteRT (.tflite) model: expected the file identifier "TFL3" at bytes 4-7, found ${JSON.stringify(String.fromCharCode(...bytes.subarray(4, 8)))}; check the file`, { source });
  }
  const model = fb.root('TFL3');
  const version = fb.fieldU32(model, 0, 0);
  // Buffers: where each one's bytes lie (start, end), -1 for an empty one.
  const bufVec = fb.fieldVector(model, 4, 4, 'the model\'s buffers');
  const nBuffers = bufVec?.length ?? 0;
  const bufStart = new Float64Array(nBuffers).fill(-1);
  const bufEnd = new Float64Array(nBuffers).fill(-1);
  const offsetBuffers: number[] = [];
  for (let i = 0; i < nBuffers; i++) {
    const b = fb.tableAt(bufVec as { at: number; length: number }, i, `buffer ${i}`);
    const data = fb.fieldVector(b, 0, 1, `the data of buffer ${i}`, true);
    const offset = fb.fieldU64(b, 1, 0);
    const size = fb.fieldU64(b, 2, 0);
    if (offset > 1) {
      if (data && data.length) fb.fail(`buffer ${i} has both inline data and an offset (${offset}): expected one or the other`);
      fb.check(offset, size, `the data of buffer ${i}`);
      if (size) {
        bufStart[i] = offset;
        bufEnd[i] = offset + size;
        offsetBuffers.push(i);
      }
    } else if (data && data.length) {
      bufStart[i] = data.at;
      bufEnd[i] = data.at + data.length;
    }
  }
  const unique = uniqueNamer(options.reserved);
  const tensors: TfliteTensorRecord[] = [];
  const subVec = fb.fieldVector(model, 2, 4, 'the model\'s subgraphs');
  let tensorCount = 0;
  const byBuffer = new Map<number, TfliteTensorRecord[]>();
  for (let g = 0; g < (subVec?.length ?? 0); g++) {
    const sub = fb.tableAt(subVec as { at: number; length: number }, g, `subgraph ${g}`);
    const tVec = fb.fieldVector(sub, 0, 4, `the tensors of subgraph ${g}`);
    for (let k = 0; k < (tVec?.length ?? 0); k++) {
      tensorCount++;
      const what = `tensor ${k} of subgraph ${g}`;
      const t = fb.tableAt(tVec as { at: number; length: number }, k, what);
      const buffer = fb.fieldU32(t, 2, 0);
      if (buffer >= nBuffers && !(buffer === 0 && nBuffers === 0)) fb.fail(`${what} names buffer ${buffer}, but the model has ${nBuffers}: a corrupt file`);
      if (buffer === 0 || bufStart[buffer] < 0) continue; // no constant data (an activation, an input, or an empty buffer)
      const fileName = fb.fieldString(t, 3, `the name of ${what}`);
      const shape = fb.ints(fb.fieldVector(t, 0, 4, `the shape of ${what}`));
      const type = fb.fieldU8(t, 1, 0);
      let count = 1;
      for (const d of shape) {
        if (d < 0) fb.fail(`${what} (${JSON.stringify(fileName)}) has shape [${shape.join(', ')}]: a constant tensor's dimensions must be known and not negative`);
        count *= d;
      }
      const sparse = fb.field(t, 6, 4) >= 0;
      const start = bufStart[buffer];
      const end = bufEnd[buffer];
      const width = TFLITE_WIDTH[type];
      if (width !== undefined && !sparse && end - start !== count * width) {
        fb.fail(`${what} (${JSON.stringify(fileName)}) is ${TFLITE_TYPES[type]} [${shape.join(', ')}], ${count * width} bytes, but its buffer ${buffer} holds ${end - start}: expected the data to match the shape`);
      }
      let quantization: TfliteQuantization | undefined;
      const q = fb.fieldTable(t, 4, `the quantization of ${what}`);
      if (q >= 0) {
        const scale = fb.floats(fb.fieldVector(q, 2, 4, `the scales of ${what}`));
        const zeroPoint = fb.longs(fb.fieldVector(q, 3, 8, `the zero points of ${what}`));
        if (scale.length) quantization = { scale, zeroPoint, dimension: fb.fieldI32(q, 6, 0) };
      }
      const rec: TfliteTensorRecord = { name: unique(fileName || `tensor ${g}:${k}`), fileName, subgraph: g, index: k, type, shape, count, buffer, start, end, sparse, ...(quantization ? { quantization } : {}) };
      tensors.push(rec);
      const list = byBuffer.get(buffer);
      if (list) list.push(rec);
      else byBuffer.set(buffer, [rec]);
    }
  }
  let readBytes = 0;
  for (const r of tensors) readBytes += r.end - r.start;
  const readLimit = SHARED_READ_FACTOR * bytes.length + SHARED_READ_SLACK;
  if (readBytes > readLimit) {
    const [buffer, list] = [...byBuffer].reduce((a, b) => (b[1].length > a[1].length ? b : a));
    fb.fail(`its tensors read ${readBytes} bytes of constant data from a file of ${bytes.length} bytes (${list.length} tensors read buffer ${buffer} alone): expected at most ${SHARED_READ_FACTOR} times the file plus ${SHARED_READ_SLACK} bytes, as tensors sharing a buffer read in a real model; a hostile or corrupt file`);
  }
  // Linear in the tensors: each reader of a shared buffer names a few of the others, not all.
  for (const list of byBuffer.values()) {
    if (list.length < 2) continue;
    const shown = list.slice(0, SHARED_NAMES_SHOWN + 1).map((o) => o.name);
    for (const r of list) {
      r.sharedWith = shown.filter((n) => n !== r.name).slice(0, SHARED_NAMES_SHOWN);
      r.sharing = list.length;
    }
  }
  // Everything else the schema reaches (operators and their options, names, signatures, ...):
  // structure a buffer's bytes must not overlap either.
  for (const at of walkTfliteStructure(fb, model)) fb.structure.push(at);
  checkLayout(fb, bufStart, bufEnd, offsetBuffers, source);
  return { version, tensors, subgraphs: subVec?.length ?? 0, tensorCount };
}

/** Buffers' bytes overlap neither one another nor the FlatBuffer's own tables, vectors and strings. */
function checkLayout(fb: FlatBufferReader, bufStart: Float64Array, bufEnd: Float64Array, offsetBuffers: number[], source: string): void {
  const ids: number[] = [];
  for (let i = 0; i < bufStart.length; i++) if (bufStart[i] >= 0) ids.push(i);
  ids.sort((a, b) => bufStart[a] - bufStart[b]);
  for (let j = 1; j < ids.length; j++) {
    if (bufStart[ids[j]] < bufEnd[ids[j - 1]]) {
      throw new ModelFormatError(`${source}: buffers ${ids[j - 1]} and ${ids[j]} share bytes (offsets ${bufStart[ids[j - 1]]}-${bufEnd[ids[j - 1]]} and ${bufStart[ids[j]]}-${bufEnd[ids[j]]}): patching one would change the other; expected separate data for every buffer`, { source });
    }
  }
  const s = fb.structure;
  const order = Uint32Array.from({ length: s.length / 2 }, (_, i) => i).sort((a, b) => s[2 * a] - s[2 * b]);
  let k = 0;
  let reach = -1; // the furthest end among structural regions starting before the current buffer's end
  let reachFrom = -1;
  for (const i of ids) {
    while (k < order.length && s[2 * order[k]] < bufEnd[i]) {
      if (s[2 * order[k] + 1] > reach) {
        reach = s[2 * order[k] + 1];
        reachFrom = s[2 * order[k]];
      }
      k++;
    }
    if (reach > bufStart[i]) {
      throw new ModelFormatError(`${source}: the data of buffer ${i} (offsets ${bufStart[i]}-${bufEnd[i]}) overlaps the model's own structure (bytes ${reachFrom}-${reach}): a patch to it would change the graph; a hostile or corrupt file`, { source, buffer: i, offset: !!offsetBuffers.length });
    }
  }
}
