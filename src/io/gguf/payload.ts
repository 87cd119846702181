/**
 * The GGUF block payload (format version 8, docs/format/gguf.md §18.4): two versions of one GGUF
 * model with one layout (the same parts, file lengths, tensor infos and data offsets; metadata
 * values may differ where the header keeps its length) as the byte ranges that changed, each
 * range whole ggml blocks inside a tensor (or bytes of the header and of the padding), grouped
 * into chunks; a chunk carries its ranges, the XXH64 of the bytes they hold in the base and in
 * the target, and a byte delta (§16) from the base's bytes to the target's. The whole model is
 * named by a digest of its stored bytes (every part's XXH64), not by the float32 fingerprint of
 * §18.3: the device must end with the target's bytes, and hashing bytes costs a read where
 * dequantizing costs far more.
 *
 * This file encodes and decodes the document and checks it against the parts' lengths; every
 * length, count and range is checked before anything of that size is read or allocated. The
 * file update in place (node) is `in-place.ts`; the diff (build side) `diff.ts`.
 *
 * Pure code (no node, no tfjs): a device decodes a payload with it.
 */
import { applyByteDelta, readByteDeltaHeader } from '../../core/byte-delta.ts';
import { PayloadFormatError, PayloadTooLargeError, UnsupportedVersionError } from '../../core/errors.ts';
import { payloadLimit, type PayloadHeader } from '../../core/format.ts';
import { isObject, isUint, own } from '../../core/format-fields.ts';
import { toHex } from '../../core/hex.ts';
import type { Hasher } from '../../core/hash-types.ts';
import { readMsgpack } from '../../core/msgpack-read.ts';
import { encodeXorBytes, encodeXrMasks, openXr } from '../../core/xr.ts';

/** The format version of a GGUF block payload. */
export const GGUF_PAYLOAD_VERSION = 8;
/** The bytes of changed ranges the encoder puts in one chunk (the applier holds one chunk's base and target bytes at a time). */
export const GGUF_CHUNK_BYTES = 1 << 20;
/** The most bytes of ranges a chunk may hold: a larger one is refused before it is read. */
export const GGUF_MAX_CHUNK_BYTES = 16 << 20;
/** The most parts a payload may name (a split model's `split.count` is a UINT16). */
export const GGUF_MAX_PARTS = 65535;

/** One changed byte range of a part file. */
export interface GgufRun {
  /** The part's index (0 for an unsplit model). */
  part: number;
  offset: number;
  length: number;
}

/** Ranges of a part closer than this are read in one read, the bytes between them dropped (a read's round trip costs more than copying them). */
const READ_GAP = 64 << 10;
/** The most bytes one such read spans. */
const READ_SPAN = 4 << 20;

/** One read of a chunk's ranges: `[from, to)` of `part`, covering `runs[first..end)`. */
export interface GgufRunSpan {
  part: number;
  from: number;
  to: number;
  first: number;
  end: number;
}

/** The reads that fetch `runs` (in file order per part): ranges of a part close to each other read together. */
export function ggufRunSpans(runs: readonly GgufRun[]): GgufRunSpan[] {
  const spans: GgufRunSpan[] = [];
  for (let i = 0; i < runs.length; ) {
    const { part, offset: from } = runs[i];
    let to = from + runs[i].length;
    let j = i + 1;
    while (j < runs.length && runs[j].part === part && runs[j].offset - to <= READ_GAP && runs[j].offset + runs[j].length - from <= READ_SPAN) {
      to = runs[j].offset + runs[j].length;
      j++;
    }
    spans.push({ part, from, to, first: i, end: j });
    i = j;
  }
  return spans;
}

/** Copy the runs `span` covers from its `bytes` into `out` from `at`, one after the other; returns where they end. */
export function copyGgufRuns(out: Uint8Array, at: number, runs: readonly GgufRun[], span: GgufRunSpan, bytes: Uint8Array): number {
  for (let i = span.first; i < span.end; i++) {
    out.set(bytes.subarray(runs[i].offset - span.from, runs[i].offset - span.from + runs[i].length), at);
    at += runs[i].length;
  }
  return at;
}

/** `runs`' bytes one after the other (`total` of them), each span read by `bytesOf` in turn (one span held at a time). */
export function gatherGgufRuns(runs: readonly GgufRun[], total: number, bytesOf: (span: GgufRunSpan) => Uint8Array): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const sp of ggufRunSpans(runs)) at = copyGgufRuns(out, at, runs, sp, bytesOf(sp));
  return out;
}

/** A chunk's target bytes as a byte delta (§16) from its base bytes. */
export const CHUNK_BYTE_DELTA = 0;
/** A chunk's target bytes as the XOR of its base and target bytes, range-coded a byte a value (codec `xr`'s coder). */
export const CHUNK_XOR_RANGE_CODED = 1;

/** One chunk: its ranges, the digests of their bytes before and after, and how the target bytes are coded against the base's. */
export interface GgufChunk {
  runs: GgufRun[];
  /** The bytes of its ranges together. */
  bytes: number;
  /** XXH64 (16 hex) of the ranges' base bytes, one after the other. */
  baseDigest: string;
  /** XXH64 (16 hex) of the ranges' target bytes, one after the other. */
  targetDigest: string;
  /** {@link CHUNK_BYTE_DELTA} or {@link CHUNK_XOR_RANGE_CODED}. */
  coding: number;
  /** The byte delta, or the range-coded XOR bytes. */
  delta: Uint8Array;
}

/** A part of the model: its length (the same before and after) and the XXH64 of its bytes before and after. */
export interface GgufPartDigests {
  length: number;
  base: string;
  target: string;
}

/**
 * The header of a GGUF block payload: a value payload's header ({@link PayloadHeader}) whose
 * fingerprints are the models' stored-bytes digests ({@link ggufModelDigest}), its method always
 * `blocks` and its budget always 0 (every changed block exactly), with no metadata.
 */
export interface GgufPayloadHeader extends Omit<PayloadHeader, 'version' | 'method' | 'meta'> {
  version: typeof GGUF_PAYLOAD_VERSION;
  method: 'blocks';
}

/** A decoded GGUF block payload. */
export interface GgufPayload {
  header: GgufPayloadHeader;
  parts: GgufPartDigests[];
  chunks: GgufChunk[];
}

function fail(message: string, details: Record<string, unknown> = {}): never {
  throw new PayloadFormatError(`GGUF payload: ${message}; the payload is corrupt, hostile or not a neural-diff payload: nothing was written; fetch it again or fall back to the full model`, details);
}

function bin(o: Record<string, unknown> | unknown[], k: string | number, len?: number): Uint8Array {
  const v = Array.isArray(o) ? o[k as number] : own(o, k as string);
  if (!(v instanceof Uint8Array) || (len !== undefined && v.length !== len)) fail(`"${k}" must be ${len === undefined ? 'binary' : `${len} bytes of binary`}`);
  return v;
}
function str(o: Record<string, unknown>, k: string, max: number): string {
  const v = own(o, k);
  if (typeof v !== 'string' || v.length > max) fail(`"${k}" must be a string of at most ${max} chars`);
  return v;
}
function hexTo8(hex: string): Uint8Array {
  const out = new Uint8Array(8);
  for (let i = 0; i < 8; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** An unsigned LEB128 varint of a value up to 2^53 - 1 (offsets of files past 4 GiB). */
function pushVarint(out: number[], v: number): void {
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
}

/** Reads the varints of a chunk's ranges (`rs`), at most 8 bytes (2^56) each, refused past 2^53 - 1. */
class VarintReader {
  at = 0;
  constructor(private readonly bytes: Uint8Array, private readonly where: string) {}
  get done(): boolean {
    return this.at >= this.bytes.length;
  }
  next(what: string): number {
    let v = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      if (this.at >= this.bytes.length) fail(`${this.where}: the ranges end inside ${what} (truncated)`);
      const b = this.bytes[this.at++];
      v += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (!Number.isSafeInteger(v)) fail(`${this.where}: ${what} is past 2^53 - 1`);
        return v;
      }
      scale *= 0x80;
    }
    fail(`${this.where}: ${what} is a varint of more than 8 bytes`);
  }
}

/** A stream of a chunk's ranges stored as it is. */
const STREAM_RAW = 0;
/** A stream of a chunk's ranges range-coded, a byte a value (codec `xr`'s coder, no raw low bytes). */
const STREAM_RANGE_CODED = 1;
/** Range-coded bytes come out of at most this many times their coded size plus 64 (the coder's probabilities stop short of certainty). */
const MAX_RANGE_CODED_RATIO = 64;

/**
 * The ranges of a chunk (`rs`): the range count, then three streams of varints, one value a
 * range each: the part steps (the part's index minus the previous range's, 0 or more), the
 * offsets (from the previous range's end in the same part, absolute in a new part), the lengths
 * (1 or more). Each stream is a coding byte ({@link STREAM_RAW} or {@link STREAM_RANGE_CODED},
 * whichever is smaller; raw on a tie), the varint count of its bytes decoded, the varint count of
 * its bytes stored, and those bytes. The state runs on from one chunk to the next, so ranges are
 * in file order and cannot overlap by construction. Block-sized lengths and steps of 0 cost
 * next to nothing range-coded.
 */
function encodeRuns(runs: readonly GgufRun[], state: { part: number; end: number }): Uint8Array {
  const fields: number[][] = [[], [], []];
  for (const r of runs) {
    const step = r.part - state.part;
    pushVarint(fields[0], step);
    pushVarint(fields[1], step > 0 ? r.offset : r.offset - state.end);
    pushVarint(fields[2], r.length);
    state.part = r.part;
    state.end = r.offset + r.length;
  }
  const out: number[] = [];
  pushVarint(out, runs.length);
  for (const f of fields) {
    const coded = encodeXrMasks(Uint32Array.from(f), 0);
    const useCoded = coded.length < f.length;
    out.push(useCoded ? STREAM_RANGE_CODED : STREAM_RAW);
    pushVarint(out, f.length);
    pushVarint(out, useCoded ? coded.length : f.length);
    for (const b of useCoded ? coded : f) out.push(b);
  }
  return Uint8Array.from(out);
}

/** The three streams of a chunk's `rs`, decoded (each bounded before anything is allocated). */
function decodeRunStreams(rs: Uint8Array, where: string, maxRuns: number): { count: number; streams: Uint8Array[] } {
  const head = new VarintReader(rs, where);
  const count = head.next('the range count');
  if (count < 1 || count > maxRuns) fail(`${where}: ${count} ranges declared, expected 1 to ${maxRuns}`);
  const streams: Uint8Array[] = [];
  for (const what of ['part steps', 'offsets', 'lengths']) {
    if (head.done) fail(`${where}: the ranges end before the ${what} (truncated)`);
    const coding = rs[head.at++];
    if (coding !== STREAM_RAW && coding !== STREAM_RANGE_CODED) fail(`${where}: the ${what} stream's coding must be 0 (raw) or 1 (range-coded), found ${coding}`);
    const decoded = head.next(`the ${what} stream's length`);
    const stored = head.next(`the ${what} stream's stored length`);
    if (decoded < count || decoded > 8 * count) fail(`${where}: the ${what} stream holds ${decoded} bytes for ${count} ranges (1 to 8 bytes each)`);
    if (head.at + stored > rs.length) fail(`${where}: the ${what} stream of ${stored} bytes goes past the ranges' end (truncated)`);
    const bytes = rs.subarray(head.at, head.at + stored);
    head.at += stored;
    if (coding === STREAM_RAW) {
      if (stored !== decoded) fail(`${where}: the raw ${what} stream stores ${stored} bytes, declared ${decoded}`);
      streams.push(bytes);
    } else {
      if (decoded > MAX_RANGE_CODED_RATIO * stored + 64) fail(`${where}: the ${what} stream declares ${decoded} bytes from ${stored} range-coded ones (at most ${MAX_RANGE_CODED_RATIO} x + 64)`);
      const values = new Uint32Array(decoded);
      openXr(bytes, decoded, `${where} ${what}`, 0).read(0, decoded, values);
      streams.push(Uint8Array.from(values));
    }
  }
  if (!head.done) fail(`${where}: ${rs.length - head.at} bytes after the ranges' streams`);
  return { count, streams };
}

/** The msgpack document of a payload (packed by the caller: the build side's deterministic packer). */
export function ggufPayloadDocument(p: GgufPayload): Record<string, unknown> {
  const h = p.header;
  const state = { part: 0, end: 0 };
  return {
    nd: GGUF_PAYLOAD_VERSION,
    fk: 'gguf',
    m: h.method,
    id: h.modelId,
    bf: hexTo8(h.baseFingerprint),
    tf: hexTo8(h.targetFingerprint),
    sq: h.sequence,
    bb: h.budgetBytes,
    cb: h.createdBy,
    ...(h.createdAt !== undefined ? { ct: h.createdAt } : {}),
    ...(h.expiresAt !== undefined ? { ex: h.expiresAt } : {}),
    pt: p.parts.map((x) => [x.length, hexTo8(x.base), hexTo8(x.target)]),
    ch: p.chunks.map((c) => [encodeRuns(c.runs, state), hexTo8(c.baseDigest), hexTo8(c.targetDigest), c.coding, c.delta]),
  };
}

/**
 * Whether `bytes` (not an envelope) is a GGUF block payload: a msgpack map whose `nd` is 8. False
 * for anything else; never throws.
 */
export function isGgufPayloadDocument(bytes: Uint8Array): boolean {
  try {
    const doc = readMsgpack(bytes);
    return isObject(doc) && own(doc, 'nd') === GGUF_PAYLOAD_VERSION;
  } catch {
    return false;
  }
}

/**
 * Decode and check a GGUF block payload's document (not an envelope): the header, the parts, and
 * every chunk's ranges (in file order, inside their part, at most {@link GGUF_MAX_CHUNK_BYTES} a
 * chunk) and byte delta header (a base and an output of the chunk's length). The model is not
 * read: {@link ggufPayloadMisfit} checks the payload against it.
 * @throws PayloadTooLargeError, PayloadFormatError, UnsupportedVersionError
 */
export function decodeGgufPayload(bytes: Uint8Array, options: { maxPayloadBytes?: number } = {}): GgufPayload {
  const limit = payloadLimit(options.maxPayloadBytes);
  if (bytes.length > limit) throw new PayloadTooLargeError(bytes.length, limit);
  let doc: unknown;
  try {
    doc = readMsgpack(bytes);
  } catch (e) {
    fail(`malformed msgpack: ${(e as Error).message}`);
  }
  if (!isObject(doc)) fail('expected a msgpack map');
  const { header, parts } = decodeGgufPayloadFields(doc);
  const ch = own(doc, 'ch');
  if (!Array.isArray(ch)) fail(`"ch" must be an array of chunks, found ${typeof ch}`);
  const state = newRangeState();
  const chunks = ch.map((e, i): GgufChunk => decodeGgufChunkEntry(e, i, parts, state));
  return { header, parts, chunks };
}

/** Where the previous range ended: the ranges of a chunk carry on from those of the chunk before. */
export interface GgufRangeState {
  part: number;
  end: number;
}

/** The range state before a payload's first chunk (part 0, offset 0). */
export function newRangeState(): GgufRangeState {
  return { part: 0, end: 0 };
}

/**
 * Decode and check every field of a GGUF block payload's document but its chunks (`ch`): the
 * version, the header and the parts. `o` is the document's map (any `ch` in it is ignored).
 * @throws PayloadFormatError, UnsupportedVersionError
 */
export function decodeGgufPayloadFields(o: Record<string, unknown>): { header: GgufPayloadHeader; parts: GgufPartDigests[] } {
  const version = own(o, 'nd');
  if (version === undefined) fail('missing the format version field "nd"');
  if (version !== GGUF_PAYLOAD_VERSION) throw new UnsupportedVersionError(version, [GGUF_PAYLOAD_VERSION]);
  if (own(o, 'fk') !== 'gguf') fail(`"fk" must be "gguf", found ${JSON.stringify(own(o, 'fk'))}`);
  if (own(o, 'm') !== 'blocks') fail(`"m" must be "blocks", found ${JSON.stringify(own(o, 'm'))}`);
  const sequence = own(o, 'sq');
  const budget = own(o, 'bb');
  if (!isUint(sequence)) fail('"sq" must be a non-negative integer');
  if (budget !== 0) fail('"bb" must be 0 (the payload carries every change)');
  const header: GgufPayloadHeader = {
    version: GGUF_PAYLOAD_VERSION,
    method: 'blocks',
    modelId: str(o, 'id', 256),
    baseFingerprint: toHex(bin(o, 'bf', 8)),
    targetFingerprint: toHex(bin(o, 'tf', 8)),
    sequence,
    budgetBytes: 0,
    createdBy: str(o, 'cb', 256),
  };
  if (own(o, 'ct') !== undefined) header.createdAt = str(o, 'ct', 64);
  const ex = own(o, 'ex');
  if (ex !== undefined) {
    if (!isUint(ex)) fail('"ex" must be a non-negative integer (seconds since 1970)');
    header.expiresAt = ex;
  }
  const pt = own(o, 'pt');
  if (!Array.isArray(pt) || pt.length < 1 || pt.length > GGUF_MAX_PARTS) fail(`"pt" must list the model's parts (1 to ${GGUF_MAX_PARTS}), found ${Array.isArray(pt) ? `${pt.length} entries` : typeof pt}`);
  const parts = pt.map((e, i) => {
    if (!Array.isArray(e) || e.length !== 3 || !isUint(e[0])) fail(`"pt" entry ${i} must be [length, base digest (8 bytes), target digest (8 bytes)]`);
    return { length: e[0] as number, base: toHex(bin(e, 1, 8)), target: toHex(bin(e, 2, 8)) };
  });
  return { header, parts };
}

/**
 * Decode and check chunk `i` of a payload (an entry of `ch`, decoded from msgpack): its ranges
 * (in file order after those of the chunk before, which `state` holds and this advances, inside
 * their part, at most {@link GGUF_MAX_CHUNK_BYTES} together), its digests and its coded bytes'
 * header. The chunks must be decoded in order, from {@link newRangeState}.
 * @throws PayloadFormatError
 */
export function decodeGgufChunkEntry(e: unknown, i: number, parts: readonly GgufPartDigests[], state: GgufRangeState): GgufChunk {
  const where = `chunk ${i}`;
  if (!Array.isArray(e) || e.length !== 5) fail(`${where} must be [ranges, base digest, target digest, coding, coded bytes]`);
  const { count, streams } = decodeRunStreams(bin(e, 0), where, GGUF_MAX_CHUNK_BYTES);
  const [steps, gaps, lengths] = streams.map((b, k) => new VarintReader(b, `${where} ${['part steps', 'offsets', 'lengths'][k]}`));
  const runs: GgufRun[] = [];
  let total = 0;
  for (let k = 0; k < count; k++) {
    const step = steps.next('a part step');
    const gap = gaps.next('an offset');
    const length = lengths.next('a length');
    const part = state.part + step;
    if (part >= parts.length) fail(`${where}: a range in part ${part}, the model has ${parts.length} part(s)`, { part });
    const offset = step > 0 ? gap : state.end + gap;
    if (length < 1) fail(`${where}: a range of 0 bytes at ${offset}`);
    if (offset + length > parts[part].length) fail(`${where}: the range [${offset}, ${offset + length}) of part ${part} goes past its ${parts[part].length} bytes`, { part, offset, length });
    total += length;
    if (total > GGUF_MAX_CHUNK_BYTES) fail(`${where}: its ranges hold more than ${GGUF_MAX_CHUNK_BYTES} bytes`);
    runs.push({ part, offset, length });
    state.part = part;
    state.end = offset + length;
  }
  for (const r of [steps, gaps, lengths]) if (!r.done) fail(`${where}: bytes left in a stream of its ranges after ${count} ranges`);
  if (!runs.length) fail(`${where} holds no range`);
  const coding = e[3];
  const delta = bin(e, 4);
  if (coding === CHUNK_BYTE_DELTA) {
    const dh = readByteDeltaHeader(delta, total, `GGUF payload ${where}'s byte delta`);
    if (dh.baseLength !== total || dh.outputLength !== total) fail(`${where}: its byte delta reads ${dh.baseLength} bytes and writes ${dh.outputLength}, its ranges hold ${total}`);
  } else if (coding === CHUNK_XOR_RANGE_CODED) {
    if (total > MAX_RANGE_CODED_RATIO * delta.length + 64) fail(`${where}: ${total} bytes range-coded in ${delta.length} (at most ${MAX_RANGE_CODED_RATIO} x + 64)`);
    if (delta.length < 4) fail(`${where}: its range-coded XOR bytes must be at least 4 bytes, found ${delta.length}`);
  } else fail(`${where}: its coding must be 0 (a byte delta) or 1 (XOR, range-coded), found ${JSON.stringify(coding)}`);
  return { runs, bytes: total, baseDigest: toHex(bin(e, 1, 8)), targetDigest: toHex(bin(e, 2, 8)), coding: coding as number, delta };
}

/**
 * The target bytes of a chunk from its base bytes (the ranges' bytes one after the other),
 * both checked against the chunk's digests.
 * @throws PayloadFormatError a base or target digest that does not match (the base is not the
 *   payload's, or the payload is inconsistent), or a byte delta that does not decode
 */
export function decodeGgufChunk(hasher: Hasher, chunk: GgufChunk, base: Uint8Array, where: string): Uint8Array {
  checkGgufChunkBase(hasher, chunk, base, where);
  const target = chunk.coding === CHUNK_BYTE_DELTA ? applyByteDelta(base, chunk.delta, chunk.bytes, `GGUF payload ${where}'s byte delta`) : xorDecoded(base, chunk.delta, where);
  const made = toHex(bytes8(hasher.h64(target)));
  if (made !== chunk.targetDigest) fail(`${where}: its coded bytes give bytes that hash to ${made}, the payload names ${chunk.targetDigest}`, { stage: 'target' });
  return target;
}

/**
 * Check a chunk's base bytes (its ranges' bytes one after the other) against its base digest.
 * @throws PayloadFormatError when they differ (the file is not the payload's base, or the payload is corrupt)
 */
export function checkGgufChunkBase(hasher: Hasher, chunk: GgufChunk, base: Uint8Array, where: string): void {
  const found = toHex(bytes8(hasher.h64(base)));
  if (found !== chunk.baseDigest) {
    throw new PayloadFormatError(`GGUF payload ${where}: the bytes it changes hash to ${found}, the payload expects ${chunk.baseDigest}: this file is not the payload's base (or the payload is corrupt); nothing of this chunk was written`, { expected: chunk.baseDigest, found, stage: 'base' });
  }
}

/** Values decoded per piece of a range-coded XOR chunk (the decoder's buffer). */
const XOR_PIECE = 1 << 16;

/** The target bytes of a {@link CHUNK_XOR_RANGE_CODED} chunk: its base bytes XOR the decoded bytes, decoded a piece at a time. */
function xorDecoded(base: Uint8Array, coded: Uint8Array, where: string): Uint8Array {
  const n = base.length;
  const out = new Uint8Array(n);
  const piece = new Uint32Array(Math.min(n, XOR_PIECE));
  const reader = openXr(coded, n, `GGUF payload ${where}`, 0);
  for (let from = 0; from < n; from += XOR_PIECE) {
    const m = Math.min(XOR_PIECE, n - from);
    reader.read(from, m, piece);
    for (let k = 0; k < m; k++) out[from + k] = base[from + k] ^ piece[k];
  }
  return out;
}

/** How the encoder codes a chunk: the smaller of the two codings (the default), or one of them. */
export type GgufChunkCoding = 'smaller' | 'byte-delta' | 'xor';

/**
 * A chunk's target bytes coded against its base bytes: by default the smaller of a byte delta
 * (§16) and the XOR range-coded (the byte delta on a tie). Build side; deterministic.
 */
export function codeChunk(base: Uint8Array, target: Uint8Array, byteDelta: (base: Uint8Array, target: Uint8Array) => Uint8Array, choice: GgufChunkCoding = 'smaller'): { coding: number; delta: Uint8Array } {
  const delta = choice === 'xor' ? undefined : byteDelta(base, target);
  if (choice === 'byte-delta') return { coding: CHUNK_BYTE_DELTA, delta: delta as Uint8Array };
  const xor = encodeXorBytes(base, target);
  return delta === undefined || xor.length < delta.length ? { coding: CHUNK_XOR_RANGE_CODED, delta: xor } : { coding: CHUNK_BYTE_DELTA, delta };
}

/** A 64-bit hash as 8 bytes, most significant first (as payloads store digests). */
export function bytes8(h: bigint): Uint8Array {
  const out = new Uint8Array(8);
  for (let i = 7; i >= 0; i--) {
    out[i] = Number(h & 0xffn);
    h >>= 8n;
  }
  return out;
}

/**
 * The stored-bytes digest of a GGUF model: XXH64 (seed 0) over each part's XXH64 of its bytes, 8
 * bytes most significant first, in split order (16 hex).
 */
export function ggufModelDigest(hasher: Hasher, partDigests: readonly string[]): string {
  const all = new Uint8Array(8 * partDigests.length);
  partDigests.forEach((d, i) => all.set(hexTo8(d), 8 * i));
  return toHex(bytes8(hasher.h64(all)));
}

/**
 * Check a payload against the model's parts before anything is read: the same number of parts,
 * each of the payload's length.
 * @returns a reason they differ, or undefined
 */
export function ggufPayloadMisfit(payload: Pick<GgufPayload, 'parts'>, partLengths: readonly number[]): string | undefined {
  if (partLengths.length !== payload.parts.length) return `the payload is for a model of ${payload.parts.length} file(s), this one has ${partLengths.length}`;
  for (let i = 0; i < partLengths.length; i++) {
    if (partLengths[i] !== payload.parts[i].length) return `part ${i + 1} is ${partLengths[i]} bytes, the payload's base has ${payload.parts[i].length}`;
  }
  return undefined;
}
