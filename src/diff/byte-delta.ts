/**
 * The byte delta's encoder (build side; the format and the decoder are src/core/byte-delta.ts,
 * docs/FORMAT.md §16): the target file as COPY instructions from the base or from the output
 * already written, and INSERT literals.
 *
 * The matcher hashes the base's 16-byte windows (every position for a file up to 2 MiB, every
 * s-th beyond, so the index stays at most 2^21 windows, the first 4 of each hash kept) and scans
 * the target with a rolling hash; at each position it tries the index's candidates, the copy that
 * would continue the last one (the base bytes right after it, skipping as many as the target
 * skipped) and the latest earlier occurrence of the window in the target itself (a name or a
 * tensor written twice: a copy of the output), extends each forward and backward into the
 * pending literals, and takes the longest.
 * Moved and renamed regions become copies wherever their bytes are. The instructions and the
 * literals are each written raw or range-coded, whichever is smaller (raw on a tie). For inputs
 * up to 32 MiB together the modelled coding (coding 4: an optimal parse, each instruction field
 * through its own model, byte-delta-model.ts) is written too, and the smaller delta kept.
 * Deterministic: the same two inputs always give the same bytes.
 */
import { ByteWriter, varintSize } from '../core/varint.ts';
import { encodeXrMasks } from '../core/xr.ts';
import { BYTE_DELTA_MAX_BASE, BYTE_DELTA_MAX_SPAN, INSTRUCTIONS_RANGE_CODED, LITERALS_RANGE_CODED, LITERALS_RAW, MODELLED, MODELLED_CONTEXT } from '../core/byte-delta.ts';
import { advance, BYTE_BEFORE, chooseLiteralContext, encodeModelled, parseModelled, type ModelOp } from './byte-delta-model.ts';

/** Window of the base index: a match must hold at least this many bytes to be found by hash. */
const WINDOW = 16;
/** The shortest copy taken when it continues the last one (its offset costs a byte or two). */
const CONTINUE_MIN = 8;
/** Base windows kept per hash slot (the first ones met): candidates tried at each position. */
const WAYS = 4;
const PRIME = 0x01000193;
const MAX_INDEXED = 1 << 21;

/** One instruction: an insert (`self` false, offset -1), a copy of `length` base bytes from `offset`, or (`self`) of output bytes from `offset`. */
interface Op {
  offset: number;
  length: number;
  self?: boolean;
}

/** What the encoder found, for reports. */
export interface ByteDeltaStats {
  copies: number;
  copiedBytes: number;
  inserts: number;
  insertedBytes: number;
  literalCoding: 'raw' | 'range-coded' | 'modelled';
  instructionCoding: 'raw' | 'range-coded' | 'modelled';
}

/** The optimal parse's hash chain holds an entry per byte of base and target: up to this many together. */
const MODELLED_MAX = 1 << 25;

/** The modelled delta (coding 4 or 5) of `target` from `base`, by the optimal parse. */
function modelledDelta(base: Uint8Array, target: Uint8Array): { bytes: Uint8Array; stats: ByteDeltaStats } {
  // Three parses, each priced by the probabilities the coding of the one before ended with.
  // The literal context is chosen on the first parse's literals and again on the last's.
  let ops = parseModelled(base, target);
  const ctx = chooseLiteralContext(target, ops);
  for (let k = 0; k < 2; k++) ops = parseModelled(base, target, encodeModelled(target, ops, ctx).prices);
  return writeModelled(base, target, ops);
}

/**
 * The greedy matcher's instructions in the modelled coding: each copy at a repeat displacement
 * or distance where it is one, else at a new one. No parse to pay for, so it serves inputs too
 * large for the optimal parse, whose literals (a file's new tensors) still gain their context.
 */
function modelledFromGreedy(base: Uint8Array, target: Uint8Array, greedy: readonly Op[]): { bytes: Uint8Array; stats: ByteDeltaStats } {
  const ops: ModelOp[] = [];
  // The repeat state (§16: base displacements r0 r1, output distances s0 s1 s2), as the parse keeps it.
  const state = new Float64Array(5);
  let w = 0;
  for (const op of greedy) {
    if (op.offset < 0) ops.push({ kind: 0, length: op.length, value: 0 });
    else {
      // A base copy's displacement, or an output copy's distance.
      const x = op.self ? w - op.offset : op.offset - w;
      const at = op.self ? [2, 3, 4].find((k) => state[k] === x) : [0, 1].find((k) => state[k] === x);
      const kind = at === undefined ? (op.self ? 2 : 1) : [3, 5, 4, 6, 7][at];
      const z = x - state[0];
      const value = kind === 2 ? x - op.length : kind === 1 ? (z >= 0 ? 2 * z : -2 * z - 1) : 0;
      ops.push({ kind, length: op.length, value });
      advance(state, 0, state, 0, kind, x);
    }
    w += op.length;
  }
  return writeModelled(base, target, ops);
}

/** Literal bytes the aligned delta chooses its context on (a chunk's first changes tell its tensor's kind). */
const ALIGNED_CHOOSE_ON = 1 << 16;

/**
 * The byte delta of two byte strings laid out alike (build side; a GGUF chunk's old and new
 * blocks): every stretch of equal bytes a copy from the same offset of the base (kind 3, the
 * repeat displacement 0 every delta starts with), every stretch of changed bytes an insert, in
 * the modelled coding (§16). One pass and one coding: where nothing moved, the hash matcher and
 * the optimal parse find nothing better (an equal byte costs a copy's few bits wherever it
 * falls), and they cost two orders of magnitude more time. The literal context is chosen on the
 * first 64 KiB of changed bytes (as small as keeps a GGUF pair's payloads within 0.02% of
 * choosing on 2 MiB).
 * @throws RangeError when the two differ in length
 */
export function encodeAlignedByteDelta(base: Uint8Array, target: Uint8Array): { bytes: Uint8Array; stats: ByteDeltaStats } {
  if (base.length !== target.length) throw new RangeError(`byte delta: an aligned delta needs two strings of one length, found ${base.length} and ${target.length} bytes`);
  if (base.length > BYTE_DELTA_MAX_BASE) throw new RangeError(`byte delta: the base (${base.length} bytes) must be at most ${BYTE_DELTA_MAX_BASE} bytes`);
  const ops: ModelOp[] = [];
  const n = base.length;
  for (let i = 0; i < n;) {
    const same = base[i] === target[i];
    const end = Math.min(n, i + BYTE_DELTA_MAX_SPAN);
    let j = i + 1;
    if (same) while (j < end && base[j] === target[j]) j++;
    else while (j < end && base[j] !== target[j]) j++;
    ops.push({ kind: same ? 3 : 0, length: j - i, value: 0 });
    i = j;
  }
  return writeModelled(base, target, ops, ALIGNED_CHOOSE_ON);
}

/** The modelled delta of these instructions, the literals in the context that codes them smallest (chosen on the first `chooseOn` literal bytes). */
function writeModelled(base: Uint8Array, target: Uint8Array, ops: readonly ModelOp[], chooseOn?: number): { bytes: Uint8Array; stats: ByteDeltaStats } {
  const ctx = chooseLiteralContext(target, ops, chooseOn);
  const { instructions, literals, literalCount } = encodeModelled(target, ops, ctx);
  const byteBefore = ctx.lc === BYTE_BEFORE.lc && ctx.lp === BYTE_BEFORE.lp;
  const stats: ByteDeltaStats = { copies: 0, copiedBytes: 0, inserts: 0, insertedBytes: 0, literalCoding: 'modelled', instructionCoding: 'modelled' };
  for (const op of ops) {
    if (op.kind) {
      stats.copies++;
      stats.copiedBytes += op.length;
    } else {
      stats.inserts++;
      stats.insertedBytes += op.length;
    }
  }
  const head = new ByteWriter(32);
  for (const v of [target.length, base.length, ops.length, byteBefore ? MODELLED : MODELLED_CONTEXT, literalCount, ...(byteBefore ? [] : [16 * ctx.lp + ctx.lc]), instructions.length]) head.varint(v);
  const h = head.bytes();
  const bytes = new Uint8Array(h.length + instructions.length + literals.length);
  bytes.set(h);
  bytes.set(instructions, h.length);
  bytes.set(literals, h.length + instructions.length);
  return { bytes, stats };
}

function windowHash(b: Uint8Array, at: number): number {
  let h = 0;
  for (let j = 0; j < WINDOW; j++) h = (Math.imul(h, PRIME) + b[at + j]) | 0;
  return h;
}

// The best candidate so far at the scanned position: its offset in its source, whether that is
// the output written so far, the bytes it extends backward and its whole length.
let bestAt = -1;
let bestSelf = false;
let bestBack = 0;
let bestLength = 0;

/**
 * Try a copy from offset `c` of `src` (the base, or with `self` the target before position `i`)
 * at target position `i`, extending backward down to `pending`.
 */
function consider(src: Uint8Array, self: boolean, target: Uint8Array, i: number, pending: number, c: number, min: number): void {
  const end = self ? i : src.length;
  if (c < 0 || c >= end) return;
  let fwd = 0;
  const limit = Math.min(end - c, target.length - i);
  while (fwd < limit && src[c + fwd] === target[i + fwd]) fwd++;
  if (fwd < min) return;
  let back = 0;
  while (i - back > pending && c - back > 0 && src[c - back - 1] === target[i - back - 1]) back++;
  // A copy of the output reads only bytes written before it starts.
  if (self && c + fwd > i - back) fwd = i - back - c;
  if (fwd + back < min) return;
  if (fwd + back > bestLength) {
    bestLength = fwd + back;
    bestBack = back;
    bestAt = c;
    bestSelf = self;
  }
}

/** The instructions that rebuild `target` from `base` (greedy; see the file comment). */
function match(base: Uint8Array, target: Uint8Array): Op[] {
  const ops: Op[] = [];
  const T = target.length;
  const B = base.length;
  let pending = 0; // first target byte not yet covered
  const flush = (to: number): void => {
    for (let at = pending; at < to; at += BYTE_DELTA_MAX_SPAN) ops.push({ offset: -1, length: Math.min(BYTE_DELTA_MAX_SPAN, to - at) });
    pending = to;
  };
  if (T < WINDOW) {
    flush(T);
    return ops;
  }
  // PRIME^(WINDOW - 1), to take the leaving byte out of the rolling hash.
  let top = 1;
  for (let j = 1; j < WINDOW; j++) top = Math.imul(top, PRIME);
  const stride = Math.max(1, Math.ceil((Math.max(B, T) - WINDOW + 1) / MAX_INDEXED));
  const entries = Math.ceil((Math.max(B, T) - WINDOW + 1) / stride);
  let bits = 10;
  while (1 << bits < 2 * entries && bits < 22) bits++;
  const shift = 32 - bits;
  const slot = (h: number): number => Math.imul(h, 0x9e3779b1) >>> shift;
  // The base's windows (first occurrence), and the target's already written (latest occurrence).
  const table = new Int32Array((1 << bits) * WAYS).fill(-1);
  const own = new Int32Array(1 << bits).fill(-1);
  if (B >= WINDOW) {
    let h = windowHash(base, 0);
    for (let p = 0; ; p++) {
      if (p % stride === 0) {
        const s = slot(h);
        for (let w = 0; w < WAYS; w++) if (table[s * WAYS + w] < 0) {
          table[s * WAYS + w] = p;
          break;
        }
      }
      if (p + WINDOW >= B) break;
      h = (Math.imul(h - Math.imul(base[p], top), PRIME) + base[p + WINDOW]) | 0;
    }
  }
  let ownNext = 0; // target windows starting before this are in `own`
  let ownHash = windowHash(target, 0);
  // The copy the last base copy would continue into: base offset = lastSrc + (i - lastOut).
  let lastSrc = 0;
  let lastOut = 0;
  let i = 0;
  let h = windowHash(target, 0);
  while (i + WINDOW <= T) {
    for (; ownNext + WINDOW <= i; ownNext++) {
      if (ownNext % stride === 0) own[slot(ownHash)] = ownNext;
      ownHash = (Math.imul(ownHash - Math.imul(target[ownNext], top), PRIME) + target[ownNext + WINDOW]) | 0;
    }
    const diagonal = lastSrc + (i - lastOut);
    bestAt = -1;
    bestLength = 0;
    consider(base, false, target, i, pending, diagonal, CONTINUE_MIN);
    const s = slot(h);
    for (let w = 0; w < WAYS; w++) {
      const c = table[s * WAYS + w];
      if (c < 0) break;
      if (c !== diagonal) consider(base, false, target, i, pending, c, WINDOW);
    }
    if (own[s] >= 0) consider(target, true, target, i, pending, own[s], WINDOW);
    if (bestAt >= 0) {
      const from = i - bestBack;
      flush(from);
      let src = bestAt - bestBack;
      for (let left = bestLength; left > 0; ) {
        const n = Math.min(BYTE_DELTA_MAX_SPAN, left);
        ops.push({ offset: src, length: n, self: bestSelf });
        src += n;
        left -= n;
      }
      pending = from + bestLength;
      i = pending;
      if (!bestSelf) {
        lastSrc = src;
        lastOut = i;
      }
      if (i + WINDOW <= T) h = windowHash(target, i);
      continue;
    }
    if (i + WINDOW < T) h = (Math.imul(h - Math.imul(target[i], top), PRIME) + target[i + WINDOW]) | 0;
    i++;
  }
  flush(T);
  return ops;
}

/**
 * The byte delta that rebuilds `target` from `base` (docs/FORMAT.md §16): the smallest of the
 * greedy matcher's (codings 0-3), the modelled one by the optimal parse (codings 4 and 5, for
 * inputs up to 2^25 bytes together) and the greedy matcher's instructions in the modelled
 * coding; the earlier on a tie. `modelled` true forces the optimal parse's (where the inputs
 * fit), false the greedy one (tests, vectors).
 * @throws RangeError when the base is longer than 2^31 - 1 bytes (a copy cannot address more) or the target than 2^32 - 1.
 */
export function encodeByteDelta(base: Uint8Array, target: Uint8Array, options: { modelled?: boolean } = {}): { bytes: Uint8Array; stats: ByteDeltaStats } {
  if (base.length > BYTE_DELTA_MAX_BASE || target.length > 0xffffffff) throw new RangeError(`byte delta: the base (${base.length} bytes) must be at most ${BYTE_DELTA_MAX_BASE} bytes and the target (${target.length}) at most 2^32 - 1`);
  const fits = base.length + target.length <= MODELLED_MAX;
  if (options.modelled === true && fits) return modelledDelta(base, target);
  if (options.modelled === false) {
    const greedy = greedyDelta(base, target);
    return { bytes: greedy.bytes, stats: greedy.stats };
  }
  let best: ByteDeltaCandidate | undefined;
  for (const c of byteDeltaCandidates(base, target)) if (!best || c.bytes.length < best.bytes.length) best = c;
  const { bytes, stats } = best as ByteDeltaCandidate;
  return { bytes, stats };
}

/** One way of writing a byte delta, for {@link byteDeltaCandidates}. */
export interface ByteDeltaCandidate {
  /** `greedy` (codings 0-3), `optimal` (the modelled coding's optimal parse), `greedy-modelled` (the greedy instructions in the modelled coding). */
  name: 'greedy' | 'optimal' | 'greedy-modelled';
  bytes: Uint8Array;
  stats: ByteDeltaStats;
}

/** Every delta {@link encodeByteDelta} chooses among, in its order of preference on a tie (the optimal parse only for inputs up to 2^25 bytes together). */
export function byteDeltaCandidates(base: Uint8Array, target: Uint8Array): ByteDeltaCandidate[] {
  const greedy = greedyDelta(base, target);
  const out: ByteDeltaCandidate[] = [{ name: 'greedy', bytes: greedy.bytes, stats: greedy.stats }];
  if (base.length + target.length <= MODELLED_MAX) out.push({ name: 'optimal', ...modelledDelta(base, target) });
  out.push({ name: 'greedy-modelled', ...modelledFromGreedy(base, target, greedy.ops) });
  return out;
}

/** The delta of the greedy matcher, its instructions and literals each raw or range-coded (codings 0 to 3), and the instructions. */
function greedyDelta(base: Uint8Array, target: Uint8Array): { bytes: Uint8Array; stats: ByteDeltaStats; ops: Op[] } {
  const ops = match(base, target);
  const instructions = new ByteWriter(64 + ops.length * 4);
  const literals = new Uint8Array(ops.reduce((n, op) => n + (op.offset < 0 ? op.length : 0), 0));
  const stats: ByteDeltaStats = { copies: 0, copiedBytes: 0, inserts: 0, insertedBytes: 0, literalCoding: 'raw', instructionCoding: 'raw' };
  let cursor = 0;
  let out = 0;
  for (const op of ops) {
    if (op.offset < 0) {
      instructions.varint(op.length * 4);
      literals.set(target.subarray(out, out + op.length), stats.insertedBytes);
      stats.inserts++;
      stats.insertedBytes += op.length;
    } else if (op.self) {
      instructions.varint(op.length * 4 + 2);
      instructions.varint(out - op.length - op.offset);
      stats.copies++;
      stats.copiedBytes += op.length;
    } else {
      instructions.varint(op.length * 4 + 1);
      const d = op.offset - cursor;
      instructions.varint(d >= 0 ? 2 * d : -2 * d - 1);
      cursor = op.offset + op.length;
      stats.copies++;
      stats.copiedBytes += op.length;
    }
    out += op.length;
  }
  const coded = literals.length ? encodeXrMasks(Uint32Array.from(literals), 0) : literals;
  const rangeCoded = coded.length < literals.length;
  if (rangeCoded) stats.literalCoding = 'range-coded';
  const raw = instructions.bytes();
  const codedInstructions = raw.length ? encodeXrMasks(Uint32Array.from(raw), 0) : raw;
  // The coded stream plus its two length varints against the raw bytes (raw on a tie).
  const instructionsCoded = codedInstructions.length + varintSize(raw.length) + varintSize(codedInstructions.length) < raw.length;
  stats.instructionCoding = instructionsCoded ? 'range-coded' : 'raw';
  const head = new ByteWriter(32);
  head.varint(target.length);
  head.varint(base.length);
  head.varint(ops.length);
  head.varint((rangeCoded ? LITERALS_RANGE_CODED : LITERALS_RAW) | (instructionsCoded ? INSTRUCTIONS_RANGE_CODED : 0));
  head.varint(literals.length);
  if (instructionsCoded) {
    head.varint(raw.length);
    head.varint(codedInstructions.length);
  }
  const parts = [head.bytes(), instructionsCoded ? codedInstructions : raw, rangeCoded ? coded : literals];
  const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.length;
  }
  return { bytes, stats, ops };
}
