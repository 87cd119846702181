/**
 * Exact diffs: every weight that changed between two versions of a model, carried as the XOR
 * of its new and old float32 bits (codec `x`, format v2), so the device ends at the target bit
 * for bit, whatever the two values are (an additive float32 delta cannot reach every target:
 * 1 + d never gives 1e-10). A mask drops the bytes its high end shares with zero, so a weight
 * whose sign and exponent did not change costs about 3 bytes; a tensor with most weights changed
 * goes dense (no positions at all), a few changes sparse, whichever is smaller.
 */
import type { Hasher } from '../core/hasher.ts';
import { onGrid, type StorageGrid } from '../core/grid.ts';
import { encodeXorMasks } from '../core/values.ts';
import { readForDigest, type WeightStore } from '../core/weight-store.ts';
import { encodePositions } from '../core/encode.ts';
import { shapeSize } from '../core/format.ts';
import { buildPayload, storageGrids, type BuiltPayload, type HeaderOptions, type PatchSpec, type StoreAs } from './build.ts';

export interface ExactDiffOptions extends Omit<HeaderOptions, 'method' | 'grids'> {
  /** The tensors to diff (default: every tensor of the base). */
  names?: readonly string[];
  /** `'stored'` keeps quantized tensors' grids where the target's values are on them. */
  store?: StoreAs;
}

export interface ExactDiffResult extends BuiltPayload {
  /** Weights whose bits changed (every one is in the payload). */
  changed: number;
}

/** Bits of a Float32Array, as a view. */
function bits(v: Float32Array): Uint32Array {
  return new Uint32Array(v.buffer, v.byteOffset, v.length);
}

/**
 * The payload that takes `base` exactly to `target` (same tensor names and shapes), every
 * changed bit included, whatever its size. The two stores are read, never written.
 */
export function exactDiff(hasher: Hasher, base: WeightStore, target: WeightStore, options: ExactDiffOptions = {}): ExactDiffResult {
  const names = options.names ?? base.list().map((t) => t.name);
  const shapes = new Map(base.list().map((t) => [t.name, t.shape] as const));
  const baseGrids = storageGrids(base, options.store);
  const grids = new Map<string, StorageGrid>();
  const specs: PatchSpec[] = [];
  let changed = 0;
  for (const name of names) {
    const a = readForDigest(base, name);
    const b = readForDigest(target, name);
    const ab = bits(a);
    const bb = bits(b);
    const positions: number[] = [];
    for (let i = 0; i < ab.length; i++) if (ab[i] !== bb[i]) positions.push(i);
    if (!positions.length) continue;
    changed += positions.length;
    const size = shapeSize(shapes.get(name) as readonly number[]);
    // Sparse: positions plus the changed masks; dense: every mask (a zero costs one byte).
    const pos = Uint32Array.from(positions);
    const masks = Uint32Array.from(positions, (i) => ab[i] ^ bb[i]);
    const sparseBytes = encodePositions(pos, size).bytes.length + encodeXorMasks(masks).length;
    const all = new Uint32Array(size);
    for (let i = 0; i < size; i++) all[i] = ab[i] ^ bb[i];
    const denseBytes = encodeXorMasks(all).length;
    const values = Float32Array.from(b); // the new weights; buildPayload XORs them with the base
    if (denseBytes < sparseBytes) specs.push({ kind: 'dense', name, values, codec: 'x' });
    else specs.push({ kind: 'sparse', name, positions: pos, values: Float32Array.from(positions, (i) => b[i]), codec: 'x' });
    // A quantized tensor keeps its grid when the target's values are on it (then rounding
    // changes nothing); otherwise the exact float32 values are the result.
    const grid = baseGrids.get(name);
    if (grid && onGrid(b, grid)) grids.set(name, grid);
  }
  const { names: _names, store: _store, ...header } = options;
  // The header names the family (top-k with k = every change); the metadata says exact.
  const built = buildPayload(hasher, base, specs, { ...header, method: 'topk', budgetBytes: 0, grids, meta: { ...(header.meta ?? {}), method: 'exact' } });
  return { ...built, changed };
}
