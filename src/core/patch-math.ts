/**
 * The arithmetic of applying one tensor patch, shared by the device applier and by the
 * encoder (which runs it on a copy to learn the exact target digests). Each added value is
 * an exact float32 and each result is rounded to float32 by the typed array, so the result
 * is the IEEE float32 sum on every platform.
 */
import type { HashPatch, LowRankPatch, SparsePatch, TensorPatch } from './format.ts';
import { snapInPlace, snapValue, type StorageGrid } from './grid.ts';
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

/** A growable log of (position, old bits) pairs in fixed-size blocks (no copy on growth). */
class ExceptionLog {
  private readonly blocks: ExceptionBlock[] = [];
  private positions = new Uint32Array(0);
  private bits = new Uint32Array(0);
  private at = 0;
  push(position: number, bits: number): void {
    if (this.at === this.positions.length) {
      if (this.positions.length) this.blocks.push({ positions: this.positions, bits: this.bits });
      this.positions = new Uint32Array(BLOCK);
      this.bits = new Uint32Array(BLOCK);
      this.at = 0;
    }
    this.positions[this.at] = position;
    this.bits[this.at] = bits;
    this.at++;
  }
  record(name: string, patch: TensorPatch): UndoRecord {
    const exceptions = [...this.blocks];
    if (this.at) exceptions.push({ positions: this.positions.subarray(0, this.at), bits: this.bits.subarray(0, this.at) });
    return { name, kind: 'inverse', patch, exceptions };
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
 * Add `sign(i) * buckets[bucket(i)]` to every `w[i]` (or subtract it when `direction` is -1),
 * logging into `log` the old bits wherever subtracting again would not give them back. The
 * WebAssembly SIMD kernel (hash-kernel.ts) runs where it can; the loops below are the same
 * arithmetic in plain JS for runtimes without WebAssembly (and bucket counts above 2^24).
 *
 * Speed notes for the JS loops (V8): the bucket `(h >>> 1) % nb` is computed with a float
 * reciprocal and one correction step, exact for h < 2^31 and nb <= 2^30 and about twice as fast
 * as the integer division; the sign multiplies instead of branching (the sign bit is random, so a
 * branch mispredicts half the time); the logged and the plain loops are separate functions so
 * each compiles to a tight loop.
 */
function hashLoop(w: Float32Array, patch: HashPatch, direction: 1 | -1, log: ExceptionLog | null): void {
  const nb = patch.buckets.length;
  const base = (patch.seed + P5 + 4) | 0;
  if (hashKernel === 'wasm' && hashAddWasm(w, patch.buckets, base, patch.signed, direction === -1, log)) return;
  if (nb > 0x40000000) hashLoopGeneric(w, patch, direction, log);
  else if (log && direction === 1) hashAddLogged(w, patch.buckets, base, patch.signed ? 1 : 0, log);
  else hashAddPlain(w, patch.buckets, base, patch.signed ? 1 : 0, direction);
}

function hashAddLogged(w: Float32Array, b: Float32Array, base: number, signMask: number, log: ExceptionLog): void {
  const nb = b.length;
  const inv = 1 / nb;
  const n = w.length;
  const wb = bitsOf(w);
  for (let i = 0; i < n; i++) {
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

function hashAddPlain(w: Float32Array, b: Float32Array, base: number, signMask: number, direction: number): void {
  const nb = b.length;
  const inv = 1 / nb;
  const n = w.length;
  for (let i = 0; i < n; i++) {
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

/** Any bucket count (integer division); only for counts above 2^30, which no real payload has. */
function hashLoopGeneric(w: Float32Array, patch: HashPatch, direction: 1 | -1, log: ExceptionLog | null): void {
  const b = patch.buckets;
  const nb = b.length;
  const base = (patch.seed + P5 + 4) | 0;
  const signMask = patch.signed ? 1 : 0;
  const wb = bitsOf(w);
  for (let i = 0; i < w.length; i++) {
    let h = (base + Math.imul(i, P3)) | 0;
    h = Math.imul((h << 17) | (h >>> 15), P4);
    h ^= h >>> 15;
    h = Math.imul(h, P2);
    h ^= h >>> 13;
    h = Math.imul(h, P3);
    h ^= h >>> 16;
    const d = b[(h >>> 1) % nb] * (1 - 2 * (h & signMask)) * direction;
    const o = w[i];
    const nw = Math.fround(o + d);
    if (log) {
      const back = Math.fround(nw - d);
      if (back !== o || (o === 0 && 1 / back !== 1 / o)) log.push(i, wb[i]);
    }
    w[i] = nw;
  }
}

/** The low-rank delta of element (i, j): pinned order, fround after each multiply and add. */
function lowRankLoop(w: Float32Array, patch: LowRankPatch, direction: 1 | -1, log: ExceptionLog | null): void {
  // Pinned order: acc = 0; for k: acc = f32(acc + f32(u[i,k] * v[k,j])); w = f32(w + acc).
  // Products of two float32 are exact in float64, so each fround is one IEEE float32 op.
  const { u, v, rank } = patch;
  const cols = patch.shape.length ? patch.shape[patch.shape.length - 1] : 1;
  const rows = cols ? w.length / cols : 0;
  const wb = log ? bitsOf(w) : null;
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      let acc = 0;
      for (let k = 0; k < rank; k++) acc = Math.fround(acc + Math.fround(u[i * rank + k] * v[k * cols + j]));
      const at = i * cols + j;
      const d = acc * direction;
      const o = w[at];
      const nw = Math.fround(o + d);
      if (log) {
        const back = Math.fround(nw - d);
        if (back !== o || (o === 0 && 1 / back !== 1 / o)) log.push(at, (wb as Uint32Array)[at]);
      }
      w[at] = nw;
    }
  }
}

/** Add a sparse patch, logging the old bits wherever subtracting again would not give them back. */
function sparseAddLogged(w: Float32Array, patch: SparsePatch, log: ExceptionLog): void {
  const { positions, values } = patch;
  const wb = bitsOf(w);
  for (let k = 0; k < positions.length; k++) {
    const at = positions[k];
    const d = values[k];
    const o = w[at];
    const nw = Math.fround(o + d);
    const back = Math.fround(nw - d);
    if (back !== o || (o === 0 && 1 / back !== 1 / o)) log.push(at, wb[at]);
    w[at] = nw;
  }
}

function denseLoop(w: Float32Array, values: Float32Array, direction: 1 | -1, log: ExceptionLog | null): void {
  const n = w.length;
  if (!log) {
    if (direction === 1) for (let i = 0; i < n; i++) w[i] += values[i];
    else for (let i = 0; i < n; i++) w[i] -= values[i];
    return;
  }
  const wb = bitsOf(w);
  for (let i = 0; i < n; i++) {
    const d = values[i];
    const o = w[i];
    const nw = Math.fround(o + d);
    const back = Math.fround(nw - d);
    if (back !== o || (o === 0 && 1 / back !== 1 / o)) log.push(i, wb[i]);
    w[i] = nw;
  }
}

/**
 * A patch with a storage grid (format v2): add as usual, then round every written value onto
 * the grid (grid.ts). The log keeps the old bits of every written value.
 */
function applyOnGrid(w: Float32Array, patch: TensorPatch, grid: StorageGrid, log: ExceptionLog | null): void {
  const wb = bitsOf(w);
  if (patch.kind === 'sparse') {
    const { positions, values } = patch;
    const masks = patch.codec === 'x' ? bitsOf(values) : null;
    for (let k = 0; k < positions.length; k++) {
      const at = positions[k];
      if (log) log.push(at, wb[at]);
      if (masks) wb[at] ^= masks[k];
      else w[at] = Math.fround(w[at] + values[k]);
      w[at] = snapValue(w[at], grid);
    }
    return;
  }
  if (log) for (let i = 0; i < w.length; i++) log.push(i, wb[i]);
  if (patch.kind === 'dense' && patch.codec === 'x') xorLoop(wb, bitsOf(patch.values));
  else if (patch.kind === 'dense') denseLoop(w, patch.values, 1, null);
  else if (patch.kind === 'lowrank') lowRankLoop(w, patch, 1, null);
  else hashLoop(w, patch, 1, null);
  snapInPlace(w, grid);
}

/** Codec x, dense: every word of `wb` XORed with its mask (its own inverse). */
function xorLoop(wb: Uint32Array, masks: Uint32Array): void {
  for (let i = 0; i < wb.length; i++) wb[i] ^= masks[i];
}

/** Codec x, sparse: the words at the positions XORed with their masks (its own inverse). */
function xorSparse(wb: Uint32Array, positions: Uint32Array, masks: Uint32Array): void {
  for (let k = 0; k < positions.length; k++) wb[positions[k]] ^= masks[k];
}

/** Apply `patch` to `w` in place. When `recordUndo` is set, returns what restores `w`. */
export function applyTensorPatch(w: Float32Array, patch: TensorPatch, recordUndo: boolean): UndoRecord | null {
  if (patch.grid && patch.grid.dtype !== 'float32') {
    const log = recordUndo ? new ExceptionLog() : null;
    applyOnGrid(w, patch, patch.grid, log);
    return log ? log.record(patch.name, patch) : null;
  }
  if (patch.codec === 'x') {
    // Exact new bits: the XOR of new and old. Applying it again restores the old bits, so the
    // undo record logs nothing.
    if (patch.kind === 'sparse') xorSparse(bitsOf(w), patch.positions, bitsOf(patch.values));
    else if (patch.kind === 'dense') xorLoop(bitsOf(w), bitsOf(patch.values));
    return recordUndo ? { name: patch.name, kind: 'inverse', patch, exceptions: [] } : null;
  }
  if (patch.kind === 'sparse' && !recordUndo) {
    const { positions, values } = patch;
    for (let k = 0; k < positions.length; k++) w[positions[k]] += values[k];
    return null;
  }
  const log = recordUndo ? new ExceptionLog() : null;
  if (patch.kind === 'sparse') sparseAddLogged(w, patch, log as ExceptionLog);
  else if (patch.kind === 'dense') denseLoop(w, patch.values, 1, log);
  else if (patch.kind === 'lowrank') lowRankLoop(w, patch, 1, log);
  else hashLoop(w, patch, 1, log);
  return log ? log.record(patch.name, patch) : null;
}

/** Restore a tensor from an undo record (bit for bit). */
export function undoTensorPatch(w: Float32Array, undo: UndoRecord): void {
  const wb = bitsOf(w);
  const { patch } = undo;
  if (patch.grid && patch.grid.dtype !== 'float32') {
    // Only the logged old bits (every written value) restore a rounded patch.
  } else if (patch.codec === 'x') {
    if (patch.kind === 'sparse') xorSparse(wb, patch.positions, bitsOf(patch.values));
    else if (patch.kind === 'dense') xorLoop(wb, bitsOf(patch.values));
  } else if (patch.kind === 'sparse') {
    const { positions, values } = patch;
    for (let k = 0; k < positions.length; k++) w[positions[k]] -= values[k];
  } else if (patch.kind === 'dense') {
    const v = patch.values;
    for (let i = 0; i < w.length; i++) w[i] = Math.fround(w[i] - v[i]);
  } else if (patch.kind === 'lowrank') {
    lowRankLoop(w, patch, -1, null);
  } else if (patch.kind === 'hash') {
    hashLoop(w, patch, -1, null);
  }
  for (const { positions, bits } of undo.exceptions) {
    for (let k = 0; k < positions.length; k++) wb[positions[k]] = bits[k];
  }
}
