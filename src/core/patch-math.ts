/**
 * The arithmetic of applying one tensor patch, shared by the device applier and by the
 * encoder (which runs it on a copy to learn the exact target digests). Each added value is
 * an exact float32 and each result is rounded to float32 by the typed array, so the result
 * is the IEEE float32 sum on every platform.
 */
import type { CompositePatch, HashPatch, LowRankPatch, SparsePatch, TensorPatch } from './format.ts';
import { exactBits } from './values.ts';
import { fromGridCode, gridCode, snapValue, type StorageGrid } from './grid.ts';
import { hashAddWasm } from './hash-kernel.ts';

// xxh32 primes (see docs/FORMAT-hashing.md).
const P2 = 0x85ebca77;
const P3 = 0xc2b2ae3d;
const P4 = 0x27d4eb2f;
const P5 = 0x165667b1;

/**
 * What restores a tensor after {@link applyTensorPatch}, never a copy of the tensor: undo
 * subtracts the same deltas again, `fround(new - d)`, which gives back the old value exactly
 * except where the addition rounded it away (the delta dwarfs the weight, or a power of two was
 * crossed) or the old value was a signed zero or NaN; those positions and their old bits are
 * logged (`exceptions`: typically 1-6% of the written values, 8 bytes each). Old values are kept
 * as bits, so undo restores a tensor bit for bit, NaN payloads included.
 */
export type UndoRecord = { name: string; kind: 'inverse'; patch: TensorPatch; exceptions: ExceptionBlock[] };
// A patch with a storage grid rounds what it writes, which subtracting cannot undo: its log holds
// the old bits of every value it writes, and undo only puts them back.

/** Logged positions and their old bits (parallel arrays of equal length). */
export interface ExceptionBlock {
  positions: Uint32Array;
  bits: Uint32Array;
}

/** Entries per block: 32 KiB per block pair, so the log grows without copying and wastes little. */
const BLOCK = 4096;

/**
 * A growable log of (position, old bits) pairs in fixed-size blocks (no copy on growth):
 * positions are the tensor's, so one log serves a patch applied in pieces and ranges.
 */
export class ExceptionLog {
  private readonly blocks: ExceptionBlock[] = [];
  private positions = new Uint32Array(0);
  private bits = new Uint32Array(0);
  private at = 0;
  /** Entries logged so far. */
  get size(): number {
    return this.blocks.length * BLOCK + this.at;
  }
  /** Start a new block once the current one is full. */
  private room(): void {
    if (this.at < this.positions.length) return;
    if (this.positions.length) this.blocks.push({ positions: this.positions, bits: this.bits });
    this.positions = new Uint32Array(BLOCK);
    this.bits = new Uint32Array(BLOCK);
    this.at = 0;
  }
  push(position: number, bits: number): void {
    this.room();
    this.positions[this.at] = position;
    this.bits[this.at] = bits;
    this.at++;
  }
  /** Push the first `count` entries of `positions` and `bits` (a kernel's log), block by block. */
  pushMany(positions: Uint32Array, bits: Uint32Array, count: number): void {
    for (let k = 0; k < count;) {
      this.room();
      const n = Math.min(count - k, BLOCK - this.at);
      this.positions.set(positions.subarray(k, k + n), this.at);
      this.bits.set(bits.subarray(k, k + n), this.at);
      this.at += n;
      k += n;
    }
  }
  /** The logged blocks (the last one cut to its entries). */
  exceptions(): ExceptionBlock[] {
    const out = [...this.blocks];
    if (this.at) out.push({ positions: this.positions.subarray(0, this.at), bits: this.bits.subarray(0, this.at) });
    return out;
  }
  record(name: string, patch: TensorPatch): UndoRecord {
    return { name, kind: 'inverse', patch, exceptions: this.exceptions() };
  }
  /**
   * The first position logged from entry `since` on where `w` now holds NaN or infinity, or -1.
   * A weight a patch made non-finite is always logged (subtracting its delta again cannot give
   * a finite old value back), so this finds every overflow of the entries logged since.
   */
  nonFiniteSince(w: Float32Array, since: number): number {
    for (let k = since; k < this.size; k++) {
      const b = k < this.blocks.length * BLOCK ? this.blocks[(k / BLOCK) | 0] : null;
      const pos = b ? b.positions[k % BLOCK] : this.positions[k - this.blocks.length * BLOCK];
      const x = w[pos];
      if (x - x !== 0) return pos;
    }
    return -1;
  }
  /** Put the logged old bits back. */
  restore(w: Float32Array): void {
    restoreExceptions(w, this.exceptions());
  }
}

function restoreExceptions(w: Float32Array, exceptions: readonly ExceptionBlock[]): void {
  const wb = bitsOf(w);
  for (const { positions, bits } of exceptions) {
    for (let k = 0; k < positions.length; k++) wb[positions[k]] = bits[k];
  }
}

/** The bits of `w`, as a second view on the same memory. */
function bitsOf(w: Float32Array): Uint32Array {
  return new Uint32Array(w.buffer, w.byteOffset, w.length);
}

/** Which hashed kernel runs: WebAssembly SIMD where it can (`'wasm'`), or the JS loops only. */
let hashKernel: 'wasm' | 'js' = 'wasm';

/**
 * Choose the hashed kernel (for tests and benchmarks: both give the same bits); `'wasm'`, the
 * default, still falls back to JS where WebAssembly is missing. Returns the previous choice.
 */
export function useHashKernel(kind: 'wasm' | 'js'): 'wasm' | 'js' {
  const was = hashKernel;
  hashKernel = kind;
  return was;
}

/**
 * Add `sign(i) * buckets[bucket(i)]` to `w[i]` for i in [from, to) (or subtract it when
 * `direction` is -1), logging into `log` the old bits wherever subtracting again would not give
 * them back. The WebAssembly SIMD kernel (hash-kernel.ts) runs where it can; the loops below are
 * the same arithmetic in plain JS for runtimes without WebAssembly (and bucket counts above 2^24).
 *
 * Speed notes for the JS loops (V8): the bucket `(h >>> 1) % nb` is computed with a float
 * reciprocal and one correction step, about twice as fast as the integer division, and exact for
 * every bucket count the format allows (1 to 2^32 − 1): x = h >>> 1 < 2^31, and the float64
 * quotient x × (1/nb) is off by at most one, which the correction fixes; above 2^30 buckets it
 * is 0 or 1 (x / nb < 2 − 2^−30; 0 from 2^31 on), so `Math.imul` of it by nb never wraps
 * (test/hash-kernel.test.ts checks counts up to 2^32 − 1); the sign multiplies instead of
 * branching (the sign bit is random, so a branch mispredicts half the time); the logged and the
 * plain loops are separate functions so each compiles to a tight loop.
 */
function hashLoop(w: Float32Array, patch: HashPatch, direction: 1 | -1, log: ExceptionLog | null, from: number, to: number): void {
  const base = (patch.seed + P5 + 4) | 0;
  if (hashKernel === 'wasm' && hashAddWasm(w, patch.buckets, base, patch.signed, direction === -1, log, from, to)) return;
  if (log && direction === 1) hashAddLogged(w, patch.buckets, base, patch.signed ? 1 : 0, log, from, to);
  else hashAddPlain(w, patch.buckets, base, patch.signed ? 1 : 0, direction, from, to);
}

function hashAddLogged(w: Float32Array, b: Float32Array, base: number, signMask: number, log: ExceptionLog, from: number, to: number): void {
  const nb = b.length;
  const inv = 1 / nb;
  const wb = bitsOf(w);
  for (let i = from; i < to; i++) {
    // xxh32 of the 4-byte little-endian position, inlined (equal to bucket.positionHash).
    let h = (base + Math.imul(i, P3)) | 0;
    h = Math.imul((h << 17) | (h >>> 15), P4);
    h ^= h >>> 15;
    h = Math.imul(h, P2);
    h ^= h >>> 13;
    h = Math.imul(h, P3);
    h ^= h >>> 16;
    const x = h >>> 1;
    let r = (x - Math.imul((x * inv) | 0, nb)) | 0;
    if (r >= nb) r -= nb;
    else if (r < 0) r += nb;
    const d = b[r] * (1 - 2 * (h & signMask));
    const o = w[i];
    const nw = Math.fround(o + d);
    const back = Math.fround(nw - d);
    if (back !== o || (o === 0 && 1 / back !== 1 / o)) log.push(i, wb[i]);
    w[i] = nw;
  }
}

function hashAddPlain(w: Float32Array, b: Float32Array, base: number, signMask: number, direction: number, from: number, to: number): void {
  const nb = b.length;
  const inv = 1 / nb;
  for (let i = from; i < to; i++) {
    let h = (base + Math.imul(i, P3)) | 0;
    h = Math.imul((h << 17) | (h >>> 15), P4);
    h ^= h >>> 15;
    h = Math.imul(h, P2);
    h ^= h >>> 13;
    h = Math.imul(h, P3);
    h ^= h >>> 16;
    const x = h >>> 1;
    let r = (x - Math.imul((x * inv) | 0, nb)) | 0;
    if (r >= nb) r -= nb;
    else if (r < 0) r += nb;
    w[i] += b[r] * (1 - 2 * (h & signMask)) * direction;
  }
}

/** The low-rank delta at positions [from, to): pinned order, fround after each multiply and add. */
function lowRankLoop(w: Float32Array, patch: LowRankPatch, direction: 1 | -1, log: ExceptionLog | null, from: number, to: number): void {
  // Pinned order: acc = 0; for k: acc = f32(acc + f32(u[i,k] * v[k,j])); w = f32(w + acc).
  // Products of two float32 are exact in float64, so each fround is one IEEE float32 op.
  const { u, v, rank } = patch;
  const cols = patch.shape.length ? patch.shape[patch.shape.length - 1] : 1;
  if (!cols) return;
  const wb = log ? bitsOf(w) : null;
  let i = Math.floor(from / cols);
  let j = from - i * cols;
  for (let at = from; at < to; at++) {
    let acc = 0;
    for (let k = 0; k < rank; k++) acc = Math.fround(acc + Math.fround(u[i * rank + k] * v[k * cols + j]));
    const d = acc * direction;
    const o = w[at];
    const nw = Math.fround(o + d);
    if (log) {
      const back = Math.fround(nw - d);
      if (back !== o || (o === 0 && 1 / back !== 1 / o)) log.push(at, (wb as Uint32Array)[at]);
    }
    w[at] = nw;
    if (++j === cols) {
      j = 0;
      i++;
    }
  }
}

/**
 * The composite delta (format v5) at positions [from, to): the low-rank accumulator in the
 * pinned order of {@link lowRankLoop}, then `acc = f32(acc + s)` where the position is one of
 * the sparse part's, then one write `w = f32(w + acc)`: one rounding of the weight per position,
 * so undoing it is the same subtract-and-log as the other kinds.
 */
function compositeLoop(w: Float32Array, patch: CompositePatch, direction: 1 | -1, log: ExceptionLog | null, from: number, to: number): void {
  const { u, v, rank, positions, values, dense } = patch;
  const cols = patch.shape.length ? patch.shape[patch.shape.length - 1] : 1;
  if (!cols) return;
  const wb = log ? bitsOf(w) : null;
  // The first sparse entry at or after `from` (positions increase).
  let lo = 0;
  let hi = positions.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (positions[mid] < from) lo = mid + 1;
    else hi = mid;
  }
  let k = lo;
  let next = k < positions.length ? positions[k] : -1;
  let i = Math.floor(from / cols);
  let j = from - i * cols;
  for (let at = from; at < to; at++) {
    // A dense part (codec l) in place of the factors: its value starts the accumulator.
    let acc = dense ? dense[at] : 0;
    for (let r = 0; r < rank; r++) acc = Math.fround(acc + Math.fround(u[i * rank + r] * v[r * cols + j]));
    if (at === next) {
      acc = Math.fround(acc + values[k]);
      next = ++k < positions.length ? positions[k] : -1;
    }
    const d = acc * direction;
    const o = w[at];
    const nw = Math.fround(o + d);
    if (log) {
      const back = Math.fround(nw - d);
      if (back !== o || (o === 0 && 1 / back !== 1 / o)) log.push(at, (wb as Uint32Array)[at]);
    }
    w[at] = nw;
    if (++j === cols) {
      j = 0;
      i++;
    }
  }
}

/** Add entries [from, to) of a sparse patch, logging the old bits wherever subtracting again would not give them back. */
function sparseAddLogged(w: Float32Array, positions: Uint32Array, values: Float32Array, log: ExceptionLog, from: number, to: number): void {
  const wb = bitsOf(w);
  for (let k = from; k < to; k++) {
    const at = positions[k];
    const d = values[k];
    const o = w[at];
    const nw = Math.fround(o + d);
    const back = Math.fround(nw - d);
    if (back !== o || (o === 0 && 1 / back !== 1 / o)) log.push(at, wb[at]);
    w[at] = nw;
  }
}

/** `w[offset + i] ±= values[i]` for i in [from, to), logging as the other kernels do. */
function denseLoop(w: Float32Array, values: Float32Array, offset: number, direction: 1 | -1, log: ExceptionLog | null, from: number, to: number): void {
  if (!log) {
    if (direction === 1) for (let i = from; i < to; i++) w[offset + i] += values[i];
    else for (let i = from; i < to; i++) w[offset + i] = Math.fround(w[offset + i] - values[i]);
    return;
  }
  const wb = bitsOf(w);
  for (let i = from; i < to; i++) {
    const at = offset + i;
    const d = values[i];
    const o = w[at];
    const nw = Math.fround(o + d);
    const back = Math.fround(nw - d);
    if (back !== o || (o === 0 && 1 / back !== 1 / o)) log.push(at, wb[at]);
    w[at] = nw;
  }
}

/** Whether a patch rounds what it writes onto a storage grid (format v2). */
function onAGrid(patch: TensorPatch): patch is TensorPatch & { grid: StorageGrid } {
  return patch.grid !== undefined && patch.grid.dtype !== 'float32';
}

/**
 * Length of the range {@link applyRange} takes for a piece of a patch of a tensor of `size`
 * values: a sparse piece's entries, a dense piece's values, else the tensor's positions.
 */
export function pieceLength(patch: TensorPatch, size: number): number {
  return patch.kind === 'sparse' ? patch.positions.length : patch.kind === 'dense' ? patch.values.length : size;
}

/**
 * Apply part of one piece of a patch to the tensor `w` in place: a sparse piece's entries
 * [from, to), a dense piece's values [from, to) (at tensor positions `offset + i`), or tensor
 * positions [from, to) of a hashed, low-rank or composite patch. With a `log`, it records what
 * {@link subtractRange} cannot restore (see {@link UndoRecord}); a patch with a storage grid
 * (format v2) rounds every written value onto it and logs the old bits of each.
 */
export function applyRange(w: Float32Array, patch: TensorPatch, offset: number, from: number, to: number, log: ExceptionLog | null): void {
  if (patch.kind === 'dense' && patch.replace) {
    // New values (kind n): each weight set to +0, then the value added as a delta's would be
    // (and rounded onto the grid); every old value is logged, and the undo restores them alone.
    for (let i = offset + from; i < offset + to; i++) {
      log?.push(i, bitsOf(w)[i]);
      w[i] = 0;
    }
    log = null;
  }
  if (onAGrid(patch)) {
    const { grid } = patch;
    const wb = bitsOf(w);
    // Codec xs: the masks XOR the stored code (docs/FORMAT.md §4.3), not the float32 bits.
    const stored = patch.codec === 'xs';
    if (patch.kind === 'sparse') {
      const { positions, values } = patch;
      const masks = exactBits(patch.codec) ? bitsOf(values) : null;
      for (let k = from; k < to; k++) {
        const at = positions[k];
        if (log) log.push(at, wb[at]);
        // A stored code is on the grid already (and a non-finite one stays so, to be refused).
        if (stored) w[at] = fromGridCode(gridCode(w[at], grid) ^ (masks as Uint32Array)[k], grid);
        else {
          if (masks) wb[at] ^= masks[k];
          else w[at] = Math.fround(w[at] + values[k]);
          w[at] = snapValue(w[at], grid);
        }
      }
      return;
    }
    const a = patch.kind === 'dense' ? offset + from : from;
    const b = a + to - from;
    if (log) for (let i = a; i < b; i++) log.push(i, wb[i]);
    if (patch.kind === 'dense' && stored) {
      const masks = bitsOf(patch.values);
      for (let i = from; i < to; i++) w[offset + i] = fromGridCode(gridCode(w[offset + i], grid) ^ masks[i], grid);
      return;
    } else if (patch.kind === 'dense' && exactBits(patch.codec)) xorDense(wb, bitsOf(patch.values), offset, from, to);
    else if (patch.kind === 'dense') denseLoop(w, patch.values, offset, 1, null, from, to);
    else if (patch.kind === 'lowrank') lowRankLoop(w, patch, 1, null, from, to);
    else if (patch.kind === 'composite') compositeLoop(w, patch, 1, null, from, to);
    else hashLoop(w, patch, 1, null, from, to);
    for (let i = a; i < b; i++) w[i] = snapValue(w[i], grid);
    return;
  }
  if (exactBits(patch.codec)) {
    // Exact new bits, as the XOR of new and old: applying it again restores the old bits, so
    // nothing is logged. (What the new bits are is checked by the caller: see applyPayload.)
    xorRange(w, patch, offset, from, to);
  } else if (patch.kind === 'sparse') {
    if (log) sparseAddLogged(w, patch.positions, patch.values, log, from, to);
    else for (let k = from; k < to; k++) w[patch.positions[k]] += patch.values[k];
  } else if (patch.kind === 'dense') denseLoop(w, patch.values, offset, 1, log, from, to);
  else if (patch.kind === 'lowrank') lowRankLoop(w, patch, 1, log, from, to);
  else if (patch.kind === 'composite') compositeLoop(w, patch, 1, log, from, to);
  else hashLoop(w, patch, 1, log, from, to);
}

/**
 * Subtract what {@link applyRange} added over the same range (nothing for a patch with a storage
 * grid): with the logged exceptions put back afterwards ({@link ExceptionLog.restore}), the
 * tensor is as before, bit for bit.
 */
export function subtractRange(w: Float32Array, patch: TensorPatch, offset: number, from: number, to: number): void {
  if (onAGrid(patch) || (patch.kind === 'dense' && patch.replace)) return;
  if (exactBits(patch.codec)) xorRange(w, patch, offset, from, to);
  else if (patch.kind === 'sparse') {
    const { positions, values } = patch;
    for (let k = from; k < to; k++) w[positions[k]] -= values[k];
  } else if (patch.kind === 'dense') denseLoop(w, patch.values, offset, -1, null, from, to);
  else if (patch.kind === 'lowrank') lowRankLoop(w, patch, -1, null, from, to);
  else if (patch.kind === 'composite') compositeLoop(w, patch, -1, null, from, to);
  else hashLoop(w, patch, -1, null, from, to);
}

/** Codec x, dense: words `offset + from .. offset + to - 1` of `wb` XORed with masks [from, to). */
function xorDense(wb: Uint32Array, masks: Uint32Array, offset: number, from: number, to: number): void {
  for (let i = from; i < to; i++) wb[offset + i] ^= masks[i];
}

/** Codec x (no grid), entries or values [from, to) of a piece: its own inverse. */
function xorRange(w: Float32Array, patch: TensorPatch, offset: number, from: number, to: number): void {
  const wb = bitsOf(w);
  if (patch.kind === 'dense') xorDense(wb, bitsOf(patch.values), offset, from, to);
  else if (patch.kind === 'sparse') {
    const { positions } = patch;
    const masks = bitsOf(patch.values);
    for (let k = from; k < to; k++) wb[positions[k]] ^= masks[k];
  }
}

/** Apply `patch` to `w` in place. When `recordUndo` is set, returns what restores `w`. */
export function applyTensorPatch(w: Float32Array, patch: TensorPatch, recordUndo: boolean): UndoRecord | null {
  const log = recordUndo ? new ExceptionLog() : null;
  applyRange(w, patch, 0, 0, pieceLength(patch, w.length), log);
  return log ? log.record(patch.name, patch) : null;
}

/** Restore a tensor from an undo record (bit for bit). */
export function undoTensorPatch(w: Float32Array, undo: UndoRecord): void {
  subtractRange(w, undo.patch, 0, 0, pieceLength(undo.patch, w.length));
  restoreExceptions(w, undo.exceptions);
}
