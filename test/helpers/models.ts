/** Small deterministic models for tests (plain Float32Arrays, no tfjs). */
import { MemoryWeightStore } from '../../src/core/weight-store.ts';
import { seededRandom } from '../../src/core/random.ts';

/** The project's seeded PRNG, so fixtures are the same on every run. */
export const rng = seededRandom;

export const SHAPES: Record<string, number[]> = {
  'conv1/kernel': [3, 3, 1, 8],
  'conv1/bias': [8],
  'dense/kernel': [128, 32],
  'dense/bias': [32],
  'out/kernel': [32, 10],
  'out/bias': [10],
};

/** A base model and a target whose deltas are mostly small with a few large ones. */
export function baseAndTarget(seed = 1): { base: MemoryWeightStore; target: MemoryWeightStore } {
  const r = rng(seed);
  const base: Record<string, { shape: number[]; data: Float32Array }> = {};
  const target: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const [name, shape] of Object.entries(SHAPES)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const b = new Float32Array(n);
    const t = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      b[i] = (r() - 0.5) * 0.2;
      const big = r() < 0.05;
      t[i] = b[i] + (big ? (r() - 0.5) * 0.5 : r() < 0.5 ? (r() - 0.5) * 0.002 : 0);
    }
    base[name] = { shape, data: b };
    target[name] = { shape, data: t };
  }
  return { base: new MemoryWeightStore(base), target: new MemoryWeightStore(target) };
}

/** Every tensor's bytes, for byte-for-byte "untouched" checks. */
export function snapshot(store: MemoryWeightStore): Map<string, Uint8Array> {
  return new Map(store.list().map((t) => {
    const v = store.values(t.name);
    return [t.name, new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength))];
  }));
}

export function sameBytes(a: Map<string, Uint8Array>, b: Map<string, Uint8Array>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) {
    const w = b.get(k);
    if (!w || w.length !== v.length) return false;
    for (let i = 0; i < v.length; i++) if (v[i] !== w[i]) return false;
  }
  return true;
}
