/** Targets made from a real base model by perturbing a few weights, for store tests and benches. */
import { MemoryWeightStore, type WeightStore } from '../../src/core/weight-store.ts';
import { rng } from './models.ts';

/** A plain in-memory copy of any store's float tensors. */
export const memoryCopy = (store: WeightStore): MemoryWeightStore => MemoryWeightStore.copyOf(store);

/**
 * A plain in-memory copy of a store's weights only, without its read-only parts (a TF.js folder's
 * frame): for a model carried into another format (safetensors), whose fingerprint has no frame.
 */
export const weightsCopy = (store: WeightStore): MemoryWeightStore =>
  new MemoryWeightStore(store.list().filter((t) => t.patchable !== false).map((t) => [t.name, { shape: [...t.shape], data: store.values(t.name).slice() }]));

/**
 * A copy of `base` with about `fraction` of the weights of every tensor moved by up to
 * `scale` times the tensor's mean absolute value (at least one weight per tensor).
 */
export function perturbed(base: WeightStore, fraction: number, seed = 1, scale = 0.5): MemoryWeightStore {
  const r = rng(seed);
  const out = memoryCopy(base);
  for (const t of out.list()) {
    if (t.patchable === false) continue; // a model's frame
    const w = out.values(t.name);
    let mean = 0;
    for (let i = 0; i < w.length; i++) mean += Math.abs(w[i]);
    mean = mean / Math.max(1, w.length) || 0.01;
    const n = Math.max(1, Math.round(w.length * fraction));
    for (let k = 0; k < n; k++) {
      const i = Math.floor(r() * w.length);
      w[i] += (r() - 0.5) * 2 * scale * mean;
    }
  }
  return out;
}
