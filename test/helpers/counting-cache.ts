/**
 * A lowbit cache that counts what was asked of it (tests of the reuse `diff()` and `train()` make
 * through `lowbitCache`): every lookup, and per tensor how often its quantizations had to be made
 * (a change the cache had not seen for that tensor).
 */
import { LowBitCache } from 'neural-diff/kit';

export class CountingLowBitCache extends LowBitCache {
  /** Lookups, every tensor and call. */
  asked = 0;
  /** Per tensor, how often its entry was made anew. */
  readonly made = new Map<string, number>();
  private readonly seen = new Map<string, Map<string, unknown>>();

  override of(name: string, delta: Float32Array, weight: Float32Array | undefined): Map<string, unknown> {
    this.asked++;
    const results = super.of(name, delta, weight);
    if (this.seen.get(name) !== results) this.made.set(name, (this.made.get(name) ?? 0) + 1);
    this.seen.set(name, results);
    return results;
  }
}
