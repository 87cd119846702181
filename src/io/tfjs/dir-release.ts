/**
 * The folder store's memory while it stages writes with {@link OpenOptions.releaseWritten}: a
 * patched tensor's array is let go once every new shard holding its bytes is written, verified
 * and renamed (dir-staging.ts says when), its buffer takes the next tensor read, and asked for
 * again its values are read back from those new files.
 */
import type { OpenOptions } from './options.ts';
import { readFileRange, shardRanges, type GroupSource } from './read.ts';
import * as path from 'node:path';
import type { EntryRecord, FinishedShard } from './dir-entries.ts';

/**
 * The staged shards finished in this apply (written, verified, renamed) and the buffers of the
 * tensors let go of, kept by one folder store.
 */
export class ReleasedTensors {
  /** Buffers of released tensors ({@link OpenOptions.releaseWritten}), for the next ones read. */
  private pool: ArrayBuffer[] = [];
  /** The staged shards written, verified and renamed, by `<group>/<shard index>`. */
  private finished = new Map<string, FinishedShard>();

  /** A buffer of at least `n` bytes: the smallest pooled one up to 2n, else a new one. */
  takeBuffer(n: number): ArrayBuffer {
    let best = -1;
    for (let k = 0; k < this.pool.length; k++) {
      const size = this.pool[k].byteLength;
      if (size >= n && size <= 2 * n && (best < 0 || size < this.pool[best].byteLength)) best = k;
    }
    return best < 0 ? new ArrayBuffer(n) : this.pool.splice(best, 1)[0];
  }

  /** The values of a released tensor of `dir`, read again from the new shards that hold them. */
  readBack(dir: string, groups: readonly GroupSource[], r: EntryRecord): void {
    const g = r.layout.group;
    const src = groups[g];
    const { offset, byteLength } = r.layout;
    const buffer = this.takeBuffer(byteLength);
    const into = new Uint8Array(buffer, 0, byteLength);
    try {
      for (const { shard, from, to } of shardRanges(src, offset, byteLength)) {
        const done = this.finished.get(`${g}/${src.shards.indexOf(shard)}`);
        if (!done) throw new Error(`internal: ${r.entry.name} was let go before every new shard holding it was written`);
        const at = shard.start + from - offset;
        readFileRange(dir, done.file, path.basename(done.file), done.ident, shard.size, from, to, into.subarray(at, at + to - from));
      }
    } catch (e) {
      this.pool.push(buffer);
      throw e;
    }
    r.values = new Float32Array(buffer, 0, r.layout.size);
    r.owned = buffer;
    r.released = false;
    r.untouched = false;
  }

  /** Staged shard `key` (`<group>/<shard index>`) is written, verified and renamed as `done`. */
  shardWritten(key: string, done: FinishedShard): void {
    this.finished.set(key, done);
  }

  /**
   * Let go of a changed tensor's array if every new shard holding it is written and nobody was
   * handed it since it settled; its buffer takes the next tensors read.
   */
  letGo(r: EntryRecord, groups: readonly GroupSource[]): void {
    if (!r.untouched || !r.owned || !r.values || r.released) return;
    const g = r.layout.group;
    const src = groups[g];
    if (!shardRanges(src, r.layout.offset, r.layout.byteLength).every(({ shard }) => this.finished.has(`${g}/${src.shards.indexOf(shard)}`))) return;
    this.pool.push(r.owned);
    r.owned = undefined;
    r.values = undefined;
    r.released = true;
  }

  /** A commit switched the folder: the shards finished before it are of the apply before it. */
  forgetWritten(): void {
    this.finished.clear();
  }

  /** Staging ended: no shard is finished, no buffer kept. */
  reset(): void {
    this.finished.clear();
    this.pool = [];
  }
}
