/**
 * Writing GGUF: a header encoded from its parsed form ({@link encodeGgufHeader}; an unmodified
 * header gives back the bytes it was read from), a file rewritten from a header and its source
 * with the source's padding and data bytes kept ({@link ggufFileChunks}), and a new file laid out
 * as ggml's writers lay it out ({@link buildGguf}: tensors in order, each at the next multiple of
 * the alignment, zero padding).
 *
 * Pure code (no node, no tfjs).
 */
import { UsageError } from '../../core/errors.ts';
import { encodeUtf8 } from '../../core/utf8.ts';
import { GGUF_MAGIC, GGUF_VALUE_BYTES, GGUF_VALUE_TYPES, GGUF_DEFAULT_ALIGNMENT, padTo, type GgufArray, type GgufHeader, type GgufMetadataEntry, type GgufSource, type GgufValue, type GgufValueType } from './header.ts';
import { ggmlTensorBytes, type GgmlType } from './types.ts';

/** Bytes appended one piece at a time into a growing buffer. */
class ByteSink {
  private buf = new Uint8Array(4096);
  private dv = new DataView(this.buf.buffer);
  length = 0;

  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const grown = new Uint8Array(Math.max(2 * this.buf.length, this.length + n));
    grown.set(this.buf.subarray(0, this.length));
    this.buf = grown;
    this.dv = new DataView(grown.buffer);
  }

  u32(v: number): void {
    this.room(4);
    this.dv.setUint32(this.length, v, true);
    this.length += 4;
  }

  u64(v: number | bigint): void {
    this.room(8);
    this.dv.setBigUint64(this.length, BigInt(v), true);
    this.length += 8;
  }

  bytes(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }

  string(b: Uint8Array): void {
    this.u64(b.length);
    this.bytes(b);
  }

  /** A scalar of a fixed-size type. */
  scalar(type: GgufValueType, v: number | bigint | boolean): void {
    const n = GGUF_VALUE_BYTES[type] as number;
    this.room(n);
    const at = this.length;
    const dv = this.dv;
    switch (type) {
      case 'UINT8': dv.setUint8(at, v as number); break;
      case 'INT8': dv.setInt8(at, v as number); break;
      case 'BOOL': dv.setUint8(at, v ? 1 : 0); break;
      case 'UINT16': dv.setUint16(at, v as number, true); break;
      case 'INT16': dv.setInt16(at, v as number, true); break;
      case 'UINT32': dv.setUint32(at, v as number, true); break;
      case 'INT32': dv.setInt32(at, v as number, true); break;
      case 'FLOAT32': dv.setFloat32(at, v as number, true); break;
      case 'FLOAT64': dv.setFloat64(at, v as number, true); break;
      case 'UINT64': dv.setBigUint64(at, v as bigint, true); break;
      case 'INT64': dv.setBigInt64(at, v as bigint, true); break;
      default: throw new UsageError(`GGUF: ${type} is not a fixed-size value type`);
    }
    this.length += n;
  }

  result(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

function typeId(type: GgufValueType): number {
  return GGUF_VALUE_TYPES.indexOf(type);
}

function writeArray(out: ByteSink, a: GgufArray): void {
  out.u32(typeId(a.itemType));
  out.u64(a.items.length);
  if (a.itemType === 'STRING') for (const s of a.items as Uint8Array[]) out.string(s);
  else if (a.itemType === 'ARRAY') for (const inner of a.items as GgufArray[]) writeArray(out, inner);
  else {
    const items = a.items as ArrayLike<number | bigint | boolean>;
    for (let i = 0; i < items.length; i++) out.scalar(a.itemType, items[i]);
  }
}

function writeValue(out: ByteSink, v: GgufValue): void {
  out.u32(typeId(v.type));
  if (v.type === 'STRING') out.string(v.value);
  else if (v.type === 'ARRAY') writeArray(out, v);
  else if ((v.type === 'FLOAT32' || v.type === 'FLOAT64') && v.raw && Number.isNaN(v.value)) out.bytes(v.raw);
  else out.scalar(v.type, v.value);
}

/** What {@link encodeGgufHeader} writes: a header's version, metadata and tensor infos (type, dimensions, offset). */
export type GgufHeaderFields = Pick<GgufHeader, 'version' | 'metadata'> & { tensors: readonly { name: string; ne: readonly number[]; type: GgmlType; offset: number }[] };

/** The header's bytes: magic, version, counts, metadata entries, tensor infos (no padding). */
export function encodeGgufHeader(h: GgufHeaderFields): Uint8Array {
  const out = new ByteSink();
  out.u32(GGUF_MAGIC);
  out.u32(h.version);
  out.u64(h.tensors.length);
  out.u64(h.metadata.length);
  for (const { key, value } of h.metadata) {
    out.string(encodeUtf8(key));
    writeValue(out, value);
  }
  for (const t of h.tensors) {
    out.string(encodeUtf8(t.name));
    out.u32(t.ne.length);
    for (const d of t.ne) out.u64(d);
    out.u32(t.type.id);
    out.u64(t.offset);
  }
  return out.result();
}

/** Bytes of the data section copied per chunk by {@link ggufFileChunks}. */
const COPY_CHUNK = 16 * 1024 * 1024;

/**
 * The file `header` describes, as chunks (none larger than 16 MiB past the header): the header
 * encoded, the padding up to the data section, then the source's data section as it is. When the
 * encoded header has the length of the source's, the padding is the source's own bytes, so an
 * unmodified header gives back the source byte for byte; otherwise zeros up to the alignment
 * the metadata names (tensor offsets are relative to the data section, which moves with the
 * header; a changed alignment leaves them as they are, so they must still be multiples of it).
 */
export function* ggufFileChunks(header: GgufHeader, source: GgufSource): Generator<Uint8Array> {
  const head = encodeGgufHeader(header);
  yield head;
  const alignment = alignmentIn(header.metadata);
  if (head.length === header.headerBytes && alignment === header.alignment) yield source.read(header.headerBytes, header.dataStart - header.headerBytes);
  else yield new Uint8Array(padTo(head.length, alignment) - head.length);
  for (let at = header.dataStart; at < header.fileSize; at += COPY_CHUNK) yield source.read(at, Math.min(COPY_CHUNK, header.fileSize - at));
}

/** `general.alignment` of `metadata` when it is a UINT32, else the default 32. */
function alignmentIn(metadata: readonly GgufMetadataEntry[]): number {
  const v = metadata.find((e) => e.key === 'general.alignment')?.value;
  return v?.type === 'UINT32' ? v.value : GGUF_DEFAULT_ALIGNMENT;
}

/** A tensor for {@link buildGguf}: ggml dimensions (innermost first), its type and its stored bytes. */
export interface GgufTensorInput {
  name: string;
  ne: readonly number[];
  type: GgmlType;
  data: Uint8Array;
}

/**
 * A new GGUF file laid out as llama.cpp's and gguf-py's writers do: the header, zero padding to
 * the alignment (`general.alignment` when `metadata` sets it, else 32), each tensor's bytes at
 * the next multiple of the alignment after the previous one's, zero padding after each.
 * @throws UsageError a tensor whose bytes do not match its type and dimensions
 */
export function buildGguf(o: { version?: 2 | 3; metadata: readonly GgufMetadataEntry[]; tensors: readonly GgufTensorInput[] }): Uint8Array {
  const alignment = alignmentIn(o.metadata);
  let offset = 0;
  const infos = o.tensors.map((t) => {
    const elements = t.ne.reduce((a, b) => a * b, 1);
    const bytes = ggmlTensorBytes(t.type, t.ne.length === 0 ? 1 : t.ne[0], elements);
    if (bytes !== t.data.length) throw new UsageError(`buildGguf: tensor ${JSON.stringify(t.name)}: a ${t.type.name} tensor of dimensions [${t.ne.join(', ')}] needs ${typeof bytes === 'number' ? `${bytes} bytes` : bytes}, found ${t.data.length} bytes`, { tensor: t.name });
    const info = { name: t.name, ne: t.ne, type: t.type, offset };
    offset = padTo(offset + bytes, alignment);
    return info;
  });
  const head = encodeGgufHeader({ version: o.version ?? 3, metadata: o.metadata, tensors: infos });
  const dataStart = padTo(head.length, alignment);
  const out = new Uint8Array(dataStart + offset);
  out.set(head);
  o.tensors.forEach((t, i) => out.set(t.data, dataStart + infos[i].offset));
  return out;
}
