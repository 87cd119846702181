/**
 * `inspect`: what `ndiff inspect` shows of a payload, as a library call: the header and one
 * summary per patched tensor, every patch checked as a device checks it (openPayload) but none
 * decoded (1-bit low-rank codes decode to 32 times their bytes). A signed envelope is opened to
 * the payload inside and its signer named, not checked (that is {@link verify}'s job). A
 * structural payload (format v7) shows its own header, then the value payload inside it.
 */
import { isSignedEnvelope, parseEnvelope } from '../apply/envelope.ts';
import { decodeStructuralPayload, isStructuralPayload, type StructuralPayload } from '../apply/rebuild.ts';
import { CHUNK_XOR_RANGE_CODED, decodeGgufPayload, isGgufPayloadDocument, type GgufPartDigests, type GgufPayloadHeader } from '../io/gguf/payload.ts';
import { UsageError } from '../core/errors.ts';
import { readByteDeltaHeader } from '../core/byte-delta.ts';
import { openPayload, shapeSize, type PayloadHeader, type TensorPatch } from '../core/format.ts';
import { readMsgpack } from '../core/msgpack-read.ts';
import type { WireCodec } from '../core/values.ts';
import { payloadArgument } from './models.ts';

/** One patched tensor as {@link inspect} shows it: its wire fields, read without decoding its values. */
export interface PatchSummary {
  tensor: string;
  kind: TensorPatch['kind'];
  shape: number[];
  size: number;
  codec: WireCodec;
  scale?: number;
  /** Sparse: entries written and how positions are coded. */
  count?: number;
  positionCoding?: 'gaps' | 'bitmap';
  /** Hashed: buckets, seed, signed. */
  buckets?: number;
  seed?: number;
  signed?: boolean;
  /** Low-rank and composite: the rank. */
  rank?: number;
  /** Composite: its sparse entries and their codec, and with codec l dense codes the bits a code. */
  sparseValues?: number;
  sparseCodec?: string;
  bits?: number;
  baseDigest: string;
  targetDigest: string;
}

/** A value payload (format v1-v6) as {@link inspect} shows it. */
export interface PayloadSummary {
  bytes: number;
  header: PayloadHeader;
  patches: PatchSummary[];
}

/** A GGUF block payload (format v8) as {@link inspect} shows it: its header, its parts, and its chunks counted (none decoded). */
export interface GgufPayloadSummary {
  bytes: number;
  gguf: true;
  header: GgufPayloadHeader;
  /** Each part file's length and the digests of its bytes before and after. */
  parts: GgufPartDigests[];
  chunks: number;
  /** Changed byte ranges over every chunk. */
  runs: number;
  /** Bytes of the model the payload rewrites (its ranges together). */
  changedBytes: number;
  /** Chunks coded as a byte delta, and as range-coded XOR. */
  byteDeltaChunks: number;
  xorChunks: number;
}

/** What {@link inspect} returns: the fields `ndiff inspect --json` prints. */
export type InspectReport = ({ structural?: undefined; gguf?: undefined } & PayloadSummary | GgufPayloadSummary & { structural?: undefined } | {
  gguf?: undefined;
  bytes: number;
  structural: true;
  /** The structural header, with the byte delta's lengths and the value payload's size. */
  header: Record<string, unknown> & { fileKind: string; rebuildBytes: number; rebuildBaseLength: number; rebuildOutputLength: number; valueBytes: number; files?: { path: string; length: number }[] };
  /** The value payload from the intermediate file to the target. */
  values: PayloadSummary;
}) & {
  /** The file read, when a path was given. */
  file?: string;
  /** A signed envelope: the signer's key id (not checked here). */
  signedBy?: string;
  signatureChecked?: false;
  /** A signed envelope: the file's length, the payload's (`bytes`) with the envelope's framing and signature. */
  fileBytes?: number;
};

/** The byte delta's lengths, its header checked (FORMAT.md §16; the rebuild checks it whole against the base). */
export function rebuildLengths(p: StructuralPayload): { baseLength: number; outputLength: number } {
  const { baseLength, outputLength } = readByteDeltaHeader(p.rebuild, 2 ** 31 - 1, 'structural payload: byte delta "rb"');
  return { baseLength, outputLength };
}

/** The header and a summary of each patch of a value payload. */
function summarize(bytes: Uint8Array): PayloadSummary {
  const opened = openPayload(bytes);
  // The document again for the patches' own fields (binaries are views: nothing is copied).
  const raw = (readMsgpack(bytes) as { p: Record<string, unknown>[] }).p;
  const patches = opened.patches.map((src, i): PatchSummary => {
    const r = raw[i];
    const num = (k: string) => (typeof r[k] === 'number' ? (r[k] as number) : undefined);
    return {
      tensor: src.name, kind: src.kind, shape: src.shape, size: shapeSize(src.shape), codec: src.codec, ...(src.scale !== undefined ? { scale: src.scale } : {}),
      ...(src.kind === 'sparse' ? { count: src.written, positionCoding: r.ic === 'm' ? 'bitmap' : 'gaps' } : {}),
      ...(src.kind === 'hash' ? { buckets: num('nb'), seed: num('h'), signed: r.sg === true } : {}),
      ...(src.kind === 'lowrank' || src.kind === 'composite' ? { rank: num('r') ?? 0 } : {}),
      ...(src.kind === 'composite' ? { sparseValues: num('n'), sparseCodec: String(r.wc), ...(typeof r.lb === 'number' ? { bits: r.lb } : {}) } : {}),
      baseDigest: src.baseDigest,
      targetDigest: src.targetDigest,
    };
  });
  return { bytes: bytes.length, header: opened.header, patches };
}

/**
 * Show a payload (a file's path, or its bytes) as `ndiff inspect` does. Throws PayloadFormatError
 * (or the structural reader's typed error) for bytes a device would refuse.
 */
export async function inspect(payload: string | Uint8Array): Promise<InspectReport> {
  const file = await payloadArgument(payload, "inspect('v1-v2.ndiff')");
  const envelope = isSignedEnvelope(file) ? parseEnvelope(file) : null;
  const bytes = envelope ? envelope.payload : file;
  const where = typeof payload === 'string' ? { file: payload } : {};
  const signed = envelope ? { signedBy: envelope.keyId, signatureChecked: false as const, fileBytes: file.length } : {};
  if (isGgufPayloadDocument(bytes)) {
    // Decoded as the device decodes it (every field checked); the chunks' deltas are counted, not applied.
    const p = decodeGgufPayload(bytes);
    const xorChunks = p.chunks.filter((c) => c.coding === CHUNK_XOR_RANGE_CODED).length;
    return {
      ...where, bytes: bytes.length, gguf: true, header: p.header, parts: p.parts, chunks: p.chunks.length,
      runs: p.chunks.reduce((n, c) => n + c.runs.length, 0), changedBytes: p.chunks.reduce((n, c) => n + c.bytes, 0),
      byteDeltaChunks: p.chunks.length - xorChunks, xorChunks, ...signed,
    };
  }
  if (isStructuralPayload(bytes)) {
    const p = await decodeStructuralPayload(bytes);
    const lengths = rebuildLengths(p);
    const header = { ...p.header, rebuildBytes: p.rebuild.length, rebuildBaseLength: lengths.baseLength, rebuildOutputLength: lengths.outputLength, valueBytes: p.values.length };
    return { ...where, bytes: bytes.length, structural: true, header, values: summarize(p.values), ...signed };
  }
  return { ...where, ...summarize(bytes), ...signed };
}
