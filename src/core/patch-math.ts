/**
 * The arithmetic of applying one tensor patch, shared by the device applier and by the
 * encoder (which runs it on a copy to learn the exact target digests). Each added value is
 * an exact float32 and each result is rounded to float32 by the typed array, so the result
 * is the IEEE float32 sum on every platform.
 */
import type { TensorPatch } from './format.ts';

// xxh32 primes (see docs/FORMAT-hashing.md).
const P2 = 0x85ebca77;
const P3 = 0xc2b2ae3d;
const P4 = 0x27d4eb2f;
const P5 = 0x165667b1;

/** What is needed to undo one patch: old values at the touched positions, or the whole tensor. */
export type UndoRecord = { name: string; positions: Uint32Array; old: Float32Array } | { name: string; whole: Float32Array };

/** Apply `patch` to `w` in place. When `recordUndo` is set, returns what restores `w`. */
export function applyTensorPatch(w: Float32Array, patch: TensorPatch, recordUndo: boolean): UndoRecord | null {
  if (patch.kind === 'sparse') {
    const { positions, values } = patch;
    let undo: UndoRecord | null = null;
    if (recordUndo) {
      const old = new Float32Array(positions.length);
      for (let k = 0; k < positions.length; k++) old[k] = w[positions[k]];
      undo = { name: patch.name, positions, old };
    }
    for (let k = 0; k < positions.length; k++) w[positions[k]] += values[k];
    return undo;
  }
  const undo: UndoRecord | null = recordUndo ? { name: patch.name, whole: w.slice() } : null;
  if (patch.kind === 'dense') {
    const v = patch.values;
    for (let i = 0; i < w.length; i++) w[i] += v[i];
    return undo;
  }
  if (patch.kind === 'lowrank') {
    // Pinned order: acc = 0; for k: acc = f32(acc + f32(u[i,k] * v[k,j])); w = f32(w + acc).
    // Products of two float32 are exact in float64, so each fround is one IEEE float32 op.
    const { u, v, rank } = patch;
    const cols = patch.shape.length ? patch.shape[patch.shape.length - 1] : 1;
    const rows = cols ? w.length / cols : 0;
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        let acc = 0;
        for (let k = 0; k < rank; k++) acc = Math.fround(acc + Math.fround(u[i * rank + k] * v[k * cols + j]));
        w[i * cols + j] += acc;
      }
    }
    return undo;
  }
  const b = patch.buckets;
  const nb = b.length;
  const base = (patch.seed + P5 + 4) | 0;
  const signed = patch.signed;
  for (let i = 0; i < w.length; i++) {
    // xxh32 of the 4-byte little-endian position, inlined (equal to bucket.positionHash).
    let h = (base + Math.imul(i, P3)) | 0;
    h = Math.imul((h << 17) | (h >>> 15), P4);
    h ^= h >>> 15;
    h = Math.imul(h, P2);
    h ^= h >>> 13;
    h = Math.imul(h, P3);
    h ^= h >>> 16;
    const v = b[(h >>> 1) % nb];
    w[i] += signed && h & 1 ? -v : v;
  }
  return undo;
}

/** Restore a tensor from an undo record. */
export function undoTensorPatch(w: Float32Array, undo: UndoRecord): void {
  if ('whole' in undo) {
    w.set(undo.whole);
    return;
  }
  const { positions, old } = undo;
  for (let k = 0; k < positions.length; k++) w[positions[k]] = old[k];
}
