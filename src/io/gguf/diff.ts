/**
 * The GGUF block payload's encoder (build side; the format and its decoder are `payload.ts`,
 * docs/format/gguf.md §18.4): two versions of one GGUF model with one layout compared a region
 * at a time (the header and the padding byte by byte, each tensor ggml block by block), the
 * changed ranges grouped into chunks of about {@link GGUF_CHUNK_BYTES}, each chunk's target bytes
 * coded against its base bytes as a byte delta (§16: its equal bytes copied from where they are,
 * its changed bytes inserted, `encodeAlignedByteDelta`) or as their XOR range-coded, whichever is
 * smaller. Models whose layout differs are refused with
 * a {@link ModelMismatchError} saying what differs: the exact GGUF path patches bytes in place,
 * and a file laid out otherwise is shipped whole.
 *
 * Deterministic: the same two models give the same payload bytes. Memory: one region slice (at
 * most 16 MiB of each model) while comparing, one chunk while coding.
 */
import { Buffer } from 'node:buffer';
import { ModelMismatchError } from '../../core/errors.ts';
import type { Hasher } from '../../core/hash-types.ts';
import { toHex } from '../../core/hex.ts';
import { packDocument } from '../../core/encode.ts';
import { encodeAlignedByteDelta } from '../../diff/byte-delta.ts';
import type { GgufModel } from './model.ts';
import { bytes8, codeChunk, gatherGgufRuns, GGUF_CHUNK_BYTES, GGUF_PAYLOAD_VERSION, ggufModelDigest, ggufPayloadDocument, type GgufChunk, type GgufChunkCoding, type GgufPartDigests, type GgufRun } from './payload.ts';

/** Two changed ranges closer than this are carried as one (the bytes between cost less in the delta than a range's varints). */
const MERGE_GAP = 16;
/** Bytes compared per read. */
const SLICE_BYTES = 16 << 20;

/**
 * Why two GGUF models cannot be patched in place by a block payload, or undefined when they can:
 * a different number of parts, a part of another length or header length, a tensor added,
 * removed, renamed, retyped, reshaped or moved.
 */
export function ggufLayoutDifference(base: GgufModel, target: GgufModel): string | undefined {
  if (base.parts.length !== target.parts.length) return `the base has ${base.parts.length} file(s), the target ${target.parts.length}`;
  for (let p = 0; p < base.parts.length; p++) {
    const a = base.parts[p].header;
    const b = target.parts[p].header;
    const where = base.parts.length > 1 ? `part ${p + 1}: ` : '';
    if (a.fileSize !== b.fileSize) return `${where}the base file is ${a.fileSize} bytes, the target ${b.fileSize}`;
    if (a.headerBytes !== b.headerBytes || a.dataStart !== b.dataStart) return `${where}the header is ${a.headerBytes} bytes (data at ${a.dataStart}) in the base, ${b.headerBytes} (data at ${b.dataStart}) in the target`;
    if (a.tensors.length !== b.tensors.length) return `${where}the base has ${a.tensors.length} tensors, the target ${b.tensors.length}`;
    for (let i = 0; i < a.tensors.length; i++) {
      const x = a.tensors[i];
      const y = b.tensors[i];
      if (x.name !== y.name) return `${where}tensor ${i} is ${JSON.stringify(x.name)} in the base, ${JSON.stringify(y.name)} in the target`;
      if (x.type.id !== y.type.id) return `${where}tensor ${JSON.stringify(x.name)} is ${x.type.name} in the base, ${y.type.name} in the target`;
      if (x.ne.join() !== y.ne.join()) return `${where}tensor ${JSON.stringify(x.name)} has dimensions [${x.ne.join(', ')}] in the base, [${y.ne.join(', ')}] in the target`;
      if (x.offset !== y.offset) return `${where}tensor ${JSON.stringify(x.name)} is at data offset ${x.offset} in the base, ${y.offset} in the target`;
    }
  }
  return undefined;
}

/** A region of a part compared in units of `unit` bytes (1 for the header and padding, a block for a tensor). */
interface Region {
  from: number;
  to: number;
  unit: number;
}

/** The regions of a part in file order: the header with its padding, each tensor, the bytes between and after. */
function regionsOf(model: GgufModel, part: number): Region[] {
  const h = model.parts[part].header;
  const tensors = [...h.tensors].sort((a, b) => a.offset - b.offset);
  const out: Region[] = [];
  let at = 0;
  for (const t of tensors) {
    const from = h.dataStart + t.offset;
    if (from > at) out.push({ from: at, to: from, unit: 1 });
    if (t.bytes > 0) out.push({ from, to: from + t.bytes, unit: t.type.typeSize });
    at = from + t.bytes;
  }
  if (h.fileSize > at) out.push({ from: at, to: h.fileSize, unit: 1 });
  return out;
}

/** Bytes compared at once before a span is compared unit by unit (most spans of an update are unchanged). */
const SPAN_BYTES = 4096;

/** The changed ranges of `part` as they are found in file order (`add`), a range within {@link MERGE_GAP} of the last merged into it. */
function runCollector(part: number): { runs: GgufRun[]; add: (offset: number, length: number) => void } {
  const runs: GgufRun[] = [];
  const add = (offset: number, length: number) => {
    const last = runs.at(-1);
    if (last && offset - (last.offset + last.length) <= MERGE_GAP) last.length = offset + length - last.offset;
    else runs.push({ part, offset, length });
  };
  return { runs, add };
}

/**
 * The changed ranges of one part, in file order, close ones merged; and the XXH64 of both parts'
 * bytes, hashed from the slices the comparison reads when its regions cover the part end to end
 * (they do for any layout the reader accepts), so each file is read once.
 */
function changedRuns(hasher: Hasher, base: GgufModel, target: GgufModel, part: number): { runs: GgufRun[]; baseDigest?: string; targetDigest?: string } {
  const a = base.parts[part].source;
  const b = target.parts[part].source;
  const { runs, add } = runCollector(part);
  const ha = hasher.create64();
  const hb = hasher.create64();
  let hashedTo = 0;
  for (const r of regionsOf(base, part)) {
    const slice = Math.max(r.unit, Math.floor(SLICE_BYTES / r.unit) * r.unit);
    const span = r.unit * Math.max(1, Math.floor(SPAN_BYTES / r.unit));
    for (let at = r.from; at < r.to; at += slice) {
      const n = Math.min(slice, r.to - at);
      const x = a.read(at, n);
      const y = b.read(at, n);
      if (at === hashedTo) {
        ha.update(x);
        hb.update(y);
        hashedTo = at + n;
      }
      for (let s = 0; s < n; s += span) {
        const m = Math.min(span, n - s);
        if (Buffer.compare(x.subarray(s, s + m), y.subarray(s, s + m)) === 0) continue;
        for (let u = s; u < s + m; u += r.unit) {
          for (let k = u; k < u + r.unit; k++) {
            if (x[k] !== y[k]) {
              add(at + u, r.unit);
              break;
            }
          }
        }
      }
    }
  }
  // Regions that skipped or repeated bytes (a layout the reader would refuse): hashed apart.
  if (hashedTo !== a.size) return { runs };
  return { runs, baseDigest: toHex(bytes8(ha.digest())), targetDigest: toHex(bytes8(hb.digest())) };
}

/**
 * Every change between a base and a target, and the base's part digests, from one full
 * comparison ({@link ggufChanges}): a later diff from the same base to a model that differs from
 * it only inside those ranges (an on-grid mix of the two, `src/gguf-diff/mixed.ts`) compares only
 * them ({@link GgufDiffOptions.within}).
 */
export interface GgufKnownChanges {
  /** The changed ranges, in file order per part (close ones merged, as a diff's runs). */
  runs: readonly GgufRun[];
  /** Each part's XXH64, 16 hex. */
  baseDigests: readonly string[];
}

/** The changes from `base` to `target` (one layout), each part read once. */
export function ggufChanges(hasher: Hasher, base: GgufModel, target: GgufModel): GgufKnownChanges {
  const compared = base.parts.map((_, p) => changedRuns(hasher, base, target, p));
  return { runs: compared.flatMap((c) => c.runs), baseDigests: compared.map((c, p) => c.baseDigest ?? partDigest(hasher, base, p)) };
}

/**
 * {@link changedRuns} for a target that equals the base outside `within` (this part's known
 * changes, in file order): only those ranges are compared, unit by unit in their regions, which
 * gives the runs the whole comparison would (the same units, in the same order); the target's
 * digest is hashed from the base's bytes outside them and the target's inside, as of the whole file.
 */
function changedRunsWithin(hasher: Hasher, base: GgufModel, target: GgufModel, part: number, within: readonly GgufRun[]): { runs: GgufRun[]; targetDigest: string } {
  const a = base.parts[part].source;
  const b = target.parts[part].source;
  const { runs, add } = runCollector(part);
  const hb = hasher.create64();
  const hashBase = (from: number, to: number) => {
    for (let at = from; at < to; at += SLICE_BYTES) hb.update(a.read(at, Math.min(SLICE_BYTES, to - at)));
  };
  const regions = regionsOf(base, part);
  let r = 0;
  let at = 0;
  for (const w of within) {
    const end = w.offset + w.length;
    hashBase(at, w.offset);
    while (regions[r].to <= w.offset) r++;
    // A known range starts and ends on unit boundaries of its regions (it is made of whole units).
    for (let k = r; k < regions.length && regions[k].from < end; k++) {
      const { from: rf, to: rt, unit } = regions[k];
      const from = Math.max(rf, w.offset);
      const to = Math.min(rt, end);
      const x = a.read(from, to - from);
      const y = b.read(from, to - from);
      hb.update(y);
      for (let u = 0; u < to - from; u += unit) {
        for (let i = u; i < u + unit; i++) {
          if (x[i] !== y[i]) {
            add(from + u, unit);
            break;
          }
        }
      }
    }
    at = end;
  }
  hashBase(at, a.size);
  return { runs, targetDigest: toHex(bytes8(hb.digest())) };
}

/** The ranges of every part cut into chunks of at most {@link GGUF_CHUNK_BYTES} bytes (a longer range split). */
function chunkRuns(runs: readonly GgufRun[]): GgufRun[][] {
  const chunks: GgufRun[][] = [];
  let current: GgufRun[] = [];
  let bytes = 0;
  for (const r of runs) {
    let { offset, length } = r;
    while (length > 0) {
      if (bytes === GGUF_CHUNK_BYTES) {
        chunks.push(current);
        current = [];
        bytes = 0;
      }
      const n = Math.min(length, GGUF_CHUNK_BYTES - bytes);
      current.push({ part: r.part, offset, length: n });
      bytes += n;
      offset += n;
      length -= n;
    }
  }
  if (current.length) chunks.push(current);
  return chunks;
}

/** The XXH64 of each part's bytes, a slice at a time. */
function partDigest(hasher: Hasher, model: GgufModel, part: number): string {
  const { source } = model.parts[part];
  const h = hasher.create64();
  for (let at = 0; at < source.size; at += SLICE_BYTES) h.update(source.read(at, Math.min(SLICE_BYTES, source.size - at)));
  return toHex(bytes8(h.digest()));
}

/** What {@link diffGgufModels} takes besides the models. */
export interface GgufDiffOptions {
  modelId: string;
  sequence: number;
  expiresAt?: number;
  createdBy: string;
  /** How chunks are coded: the smaller of a byte delta and the XOR range-coded (default), or one of them (tests, measures). */
  chunkCoding?: GgufChunkCoding;
  /** Called after each chunk is coded with the changed bytes coded so far and their total (progress on a large model). */
  onChunk?: (codedBytes: number, changedBytes: number) => void;
  /**
   * Worker threads to code the chunks on (`GgufChunkCoders` on Node), used when the changes fill
   * more than {@link PARALLEL_MIN_BYTES}; without, every chunk is coded on this thread. The
   * payload's bytes are the same either way.
   */
  coders?: GgufChunkCoderPool;
  /**
   * The changes from this same base to a model the target differs from the base only within
   * ({@link ggufChanges}): only those ranges are compared and read from the target, the base's
   * digests are taken as given. The same payload as without, in a fraction of the reading (the
   * on-grid search codes one mix of two versions after another).
   */
  within?: GgufKnownChanges;
}

/** One chunk's bytes handed to a {@link GgufChunkCoderPool} (its own buffers: they may be transferred). */
export interface GgufChunkInput {
  base: Uint8Array;
  target: Uint8Array;
}

/** Codes chunks on other threads (src/io/gguf/chunk-coders.ts). */
export interface GgufChunkCoderPool {
  /**
   * Code every chunk `next` yields (undefined: none left), each as `codeChunk` with the aligned
   * byte delta would, calling `done` with its index (in `next`'s order) as each is coded, in any order.
   */
  codeAll(next: () => GgufChunkInput | undefined, coding: GgufChunkCoding | undefined, done: (index: number, coded: { coding: number; delta: Uint8Array }) => void): void;
}

/** Changed bytes below which the chunks are coded on the caller's thread even with coders (starting workers costs more). */
export const PARALLEL_MIN_BYTES = 4 << 20;

/** What {@link diffGgufModels} returns: the payload and what it carries. */
export interface GgufDiffResult {
  payload: Uint8Array;
  baseFingerprint: string;
  targetFingerprint: string;
  /** Bytes of the changed ranges, and how many ranges. */
  changedBytes: number;
  runs: number;
  chunks: number;
  /** The tensors with a changed block, in file order; `header` true when header or padding bytes changed. */
  changedTensors: string[];
  header: boolean;
  /** Every part's length together. */
  modelBytes: number;
}

/** The names of the tensors a range overlaps, and whether one lies outside every tensor. */
function touched(model: GgufModel, runs: readonly GgufRun[]): { tensors: string[]; outside: boolean } {
  const names = new Set<string>();
  let outside = false;
  for (const r of runs) {
    const h = model.parts[r.part].header;
    let covered = 0;
    for (const t of h.tensors) {
      const from = Math.max(r.offset, h.dataStart + t.offset);
      const to = Math.min(r.offset + r.length, h.dataStart + t.offset + t.bytes);
      if (to > from) {
        names.add(t.name);
        covered += to - from;
      }
    }
    if (covered < r.length) outside = true;
  }
  return { tensors: model.tensors.map((t) => t.info.name).filter((n) => names.has(n)), outside };
}

/**
 * The block payload from `base` to `target` (two GGUF models of one layout, opened by
 * `openGgufModel` on Node or from bytes).
 * @throws ModelMismatchError when their layouts differ (the message says what differs and that
 *   the new file must be shipped whole)
 */
export function diffGgufModels(hasher: Hasher, base: GgufModel, target: GgufModel, o: GgufDiffOptions): GgufDiffResult {
  const difference = ggufLayoutDifference(base, target);
  if (difference) {
    throw new ModelMismatchError(`the two GGUF models are laid out differently (${difference}): a GGUF payload rewrites changed blocks in place, so tensors, types, shapes, data offsets and the header's length must stay; ship the new .gguf file whole (a full download), or diff two versions of one layout (metadata values may change where the header keeps its length)`, { difference, structural: true });
  }
  const known = o.within;
  const compared = base.parts.map((_, p) => known ? { ...changedRunsWithin(hasher, base, target, p, known.runs.filter((r) => r.part === p)), baseDigest: known.baseDigests[p] } : changedRuns(hasher, base, target, p));
  const runs = compared.flatMap((c) => c.runs);
  const parts: GgufPartDigests[] = base.parts.map((x, p) => ({ length: x.header.fileSize, base: compared[p].baseDigest ?? partDigest(hasher, base, p), target: compared[p].targetDigest ?? partDigest(hasher, target, p) }));
  // A chunk's ranges, one after the other; ranges of a part close to each other read in one read.
  const read = (model: GgufModel, rs: readonly GgufRun[], total: number) => gatherGgufRuns(rs, total, (sp) => model.parts[sp.part].source.read(sp.from, sp.to - sp.from));
  const changedBytes = runs.reduce((n, r) => n + r.length, 0);
  let coded = 0;
  const groups = chunkRuns(runs);
  const chunks: GgufChunk[] = [];
  // Each chunk's ranges read from both models and hashed here, then coded here or by a worker.
  let nextGroup = 0;
  const next = (): GgufChunkInput | undefined => {
    const rs = groups[nextGroup];
    if (!rs) return undefined;
    const total = rs.reduce((n, r) => n + r.length, 0);
    const was = read(base, rs, total);
    const now = read(target, rs, total);
    chunks[nextGroup++] = { runs: rs, bytes: total, baseDigest: toHex(bytes8(hasher.h64(was))), targetDigest: toHex(bytes8(hasher.h64(now))), coding: -1, delta: new Uint8Array(0) };
    return { base: was, target: now };
  };
  const done = (i: number, c: { coding: number; delta: Uint8Array }): void => {
    chunks[i].coding = c.coding;
    chunks[i].delta = c.delta;
    coded += chunks[i].bytes;
    o.onChunk?.(coded, changedBytes);
  };
  if (o.coders && changedBytes >= PARALLEL_MIN_BYTES && groups.length > 1) o.coders.codeAll(next, o.chunkCoding, done);
  else {
    for (let input = next(); input; input = next()) done(nextGroup - 1, codeChunk(input.base, input.target, (a, b) => encodeAlignedByteDelta(a, b).bytes, o.chunkCoding));
  }
  const baseFingerprint = ggufModelDigest(hasher, parts.map((p) => p.base));
  const targetFingerprint = ggufModelDigest(hasher, parts.map((p) => p.target));
  const payload = packDocument(ggufPayloadDocument({
    header: { version: GGUF_PAYLOAD_VERSION, method: 'blocks', modelId: o.modelId, baseFingerprint, targetFingerprint, sequence: o.sequence, budgetBytes: 0, createdBy: o.createdBy, ...(o.expiresAt !== undefined ? { expiresAt: o.expiresAt } : {}) },
    parts,
    chunks,
  }));
  const { tensors, outside } = touched(base, runs);
  return {
    payload, baseFingerprint, targetFingerprint,
    changedBytes, runs: runs.length, chunks: chunks.length,
    changedTensors: tensors, header: outside, modelBytes: parts.reduce((n, p) => n + p.length, 0),
  };
}
