/**
 * Quantizations of lowbit's variants kept between encodings of the same change (see
 * {@link LowBitCache}).
 */

/**
 * Each tensor's quantizations (codes at every width and layout, with outliers apart, low-rank
 * factors), kept for the next encoding of the same change. lowbit's variants (errors relative or
 * squared, with or without low-rank factors) quantize a change the same way and differ only in
 * how they weigh the errors and which options they offer, so a run comparing them on validation
 * (`ndiff diff --calibrate`, `ndiff train --method lowbit`) did the same quantizations four times:
 * most of a post-hoc encoding's time. An entry is used only while the tensor's change and
 * importance hold the very values (bit for bit) it was made from; else it is made again.
 */
export class LowBitCache {
  private readonly tensors = new Map<string, { delta: Float32Array; weight?: Float32Array; results: Map<string, unknown> }>();

  /** The kept results of tensor `name`, emptied when its change or importance differs from the last one seen. */
  of(name: string, delta: Float32Array, weight: Float32Array | undefined): Map<string, unknown> {
    const had = this.tensors.get(name);
    if (had && sameBits(had.delta, delta) && (had.weight === undefined ? weight === undefined : weight !== undefined && sameBits(had.weight, weight))) return had.results;
    const entry = { delta: delta.slice(), ...(weight ? { weight: weight.slice() } : {}), results: new Map<string, unknown>() };
    this.tensors.set(name, entry);
    return entry.results;
  }

  /** Drops every kept result. */
  clear(): void {
    this.tensors.clear();
  }
}

/** Whether two arrays hold the same bits. */
export function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/**
 * The kept results that also depend on the tensor's base values (its new values' codes): emptied
 * when `base` differs from the base they were made from (the same change from another base).
 */
export function keptFromBase(kept: Map<string, unknown> | undefined, base: Float32Array): Map<string, unknown> | undefined {
  if (!kept) return undefined;
  const had = kept.get('base') as { values: Float32Array; results: Map<string, unknown> } | undefined;
  if (had && sameBits(had.values, base)) return had.results;
  const results = new Map<string, unknown>();
  kept.set('base', { values: base.slice(), results });
  return results;
}

/** `make()`'s result under `key` in `kept` (made once). */
export function keep<T>(kept: Map<string, unknown> | undefined, key: string, make: () => T): T {
  if (!kept) return make();
  if (kept.has(key)) return kept.get(key) as T;
  const v = make();
  kept.set(key, v);
  return v;
}
