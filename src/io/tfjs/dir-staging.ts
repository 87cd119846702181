/**
 * The folder store's writes ahead of its commit ({@link OpenOptions.stageWrites}): as the applier
 * settles tensors, each shard whose new bytes are final is written under its content-addressed
 * name (temp file, fsync, read back, rename: a file nothing names until the commit, which
 * recovery deletes after a crash), whole or a piece at a time, at most {@link SHARD_WRITERS} at
 * once; the commit (dir-commit.ts) takes the files over, and `dropStaged` ends the apply by
 * deleting every staged file no commit switched to, never one a model file names.
 */
import { SHARD_WRITERS, VERIFY_CHUNK, discardStreaming, newId, overlaps, settleAll, shardName, type StagedShard, type StreamingShard, verifyWritten, writeShardFile } from './write.ts';
import type { OpenOptions } from './options.ts';
import { fileExists, fileIdent, storedRange } from './read.ts';
import { stat } from 'node:fs/promises';
import * as path from 'node:path';
import { getHasher } from '../../core/hasher.ts';
import { manifestPaths, parseModelJson } from './manifest.ts';
import { nodeFileOps, readIfExists, type FileOps } from '../durable/durable.ts';
import { encodeForCommit, type FinishedShard, type StoreAccess } from './dir-entries.ts';
import type { ReleasedTensors } from './dir-release.ts';

/** The shards one folder store writes ahead of its commit, from one apply to the next. */
export class ShardStaging {
  /** Shards written ahead of the commit (`stageWrites`), by `<group>/<shard index>`. */
  private staged = new Map<string, StagedShard>();
  /** The tensors {@link settled} was told of since the last {@link dropStaged}. */
  private settledNames = new Set<string>();
  /** Staged writes running, and the ones waiting for a writer (at most {@link SHARD_WRITERS} at once). */
  private stageRunning = 0;
  private stageWaiting: (() => void)[] = [];
  private stageBuffers: Uint8Array[] = [];
  /** Set by {@link dropStaged}: staged writes that have not started yet do not start. */
  private stagingOver = false;
  /** Shards being written a piece at a time, not complete yet, by `<group>/<shard index>`. */
  private streaming = new Map<string, StreamingShard>();
  /** Shards that cannot be staged in this apply (their group is laid out again): the commit writes them. */
  private unstageable = new Set<string>();
  private abandoned: Promise<void>[] = [];
  /** A commit succeeded since the store was opened or {@link dropStaged} last ran. */
  private committed = false;

  /**
   * @param store what the staged writes see of the folder store.
   * @param released where a tensor whose new shards are all written is let go of.
   */
  constructor(
    private readonly store: StoreAccess,
    private readonly released: ReleasedTensors,
  ) {}

  /** A commit succeeded since the store was opened or {@link dropStaged} last ran (the store's `forget` refuses then). */
  get committedSinceStaging(): boolean {
    return this.committed;
  }

  /** A commit switched the folder: what staged shards were finished is of the apply before it. */
  noteCommit(): void {
    this.committed = true;
    this.released.forgetWritten();
  }

  /** The shard staged for `<group>/<shard index>`, if any. */
  stagedShard(key: string): StagedShard | undefined {
    return this.staged.get(key);
  }

  /**
   * The staged writes a commit does not use (a group laid out again), failures ignored, and the
   * shards abandoned part-written: the commit lets them finish first, so none renames a file
   * over one it writes.
   */
  writesNotIn(used: ReadonlySet<StagedShard>): Promise<unknown>[] {
    return [...[...this.staged.values()].filter((st) => !used.has(st)).map((st) => st.job.catch(() => {})), ...this.abandoned];
  }

  /**
   * See the store's `settled`. With `stageWrites`, each shard whose changed tensors are all
   * settled (none of its tensors still `pending`) is written now, in the background, as the
   * commit would write it; the commit then waits for it instead of writing it. Yields to the
   * event loop, so the writes in flight go on while the applier patches the next tensor.
   */
  async settled(name: string, pending: ReadonlySet<string>): Promise<void> {
    const o = this.store.options;
    if (!o.stageWrites || o.shardBytes !== undefined || o.quantizedUnchanged === 'float32' || this.store.committing()) return;
    await this.stageSettled(name, pending);
    if (o.releaseWritten) await this.holdBack();
    await this.yieldToWrites();
  }

  /**
   * With {@link OpenOptions.releaseWritten}: while {@link SHARD_WRITERS} staged shards are not
   * finished, wait for the oldest, so the applier reads no further ahead than the writes go
   * (the arrays it reads next can take the finished shards' buffers).
   */
  private async holdBack(): Promise<void> {
    for (;;) {
      const running = [...this.staged.values()].filter((st) => !st.finished);
      if (running.length < SHARD_WRITERS) return;
      await running[0].job.catch(() => {});
    }
  }

  /**
   * The staging part of {@link settled}. A shard is staged once none of its tensors is still
   * pending. Where the file layer writes files a piece at a time ({@link FileOps.openNewFile}),
   * a shard's bytes are appended to its temp file as they become final, in order, while the
   * next tensors are patched; the last piece, the fsync (with the read-back beside it) and the
   * rename follow when the shard is complete. A shard is never written a piece at a time
   * without that: files from a layer without it are written whole, as before.
   */
  private async stageSettled(name: string, pending: ReadonlySet<string>): Promise<void> {
    const { dir, options, modelFiles } = this.store;
    const r = this.store.floatRecord(name);
    this.settledNames.add(name);
    r.untouched = true;
    const g = r.layout.group;
    const model = this.store.model();
    const src = model.groups[g];
    const entries = model.layouts[g].entries;
    const ops = options.fileOps ?? nodeFileOps;
    for (const [i, s] of src.shards.entries()) {
      const key = `${g}/${i}`;
      if (this.staged.has(key) || this.unstageable.has(key) || !overlaps(r.layout, s)) continue;
      const inShard = entries.filter((l) => overlaps(l, s));
      const streaming = this.streaming.get(key);
      if (!streaming && !ops.openNewFile && inShard.some((l) => pending.has(l.entry.name))) continue; // a tensor in it is still to be patched
      // The shard's bytes from where the last call stopped, up to the first tensor still to be
      // patched: the new bytes of the settled ones, the stored bytes of the others.
      const progress: StreamingShard['progress'] = streaming?.progress ?? { next: 0, at: s.start, parts: [], changed: [] };
      const fresh: Uint8Array[] = [];
      const end = s.start + s.size;
      const old = (from: number, to: number) => storedRange(dir, s, from, to);
      let k = progress.next;
      let at = progress.at;
      for (; k < inShard.length && !pending.has(inShard[k].entry.name); k++) {
        const l = inShard[k];
        const from = Math.max(l.offset, s.start);
        const to = Math.min(l.offset + l.byteLength, end);
        if (from > at) fresh.push(old(at, from));
        if (this.settledNames.has(l.entry.name)) {
          const { bytes } = encodeForCommit(this.store, this.store.record(l.entry.name)!, true, false);
          // A tensor whose stored size changes (off its grid: written as float32) lays the group
          // out again at the commit: nothing to stage.
          if (bytes === undefined || bytes.length !== l.byteLength) {
            // The whole group is laid out again: none of its shards is staged any more.
            for (const j of src.shards.keys()) {
              const other = `${g}/${j}`;
              this.unstageable.add(other);
              const st = this.streaming.get(other);
              if (st) this.abandon(other, st);
            }
            break;
          }
          fresh.push(bytes.subarray(from - l.offset, to - l.offset));
          progress.changed.push(l.entry.name);
        } else fresh.push(old(from, to));
        at = to;
      }
      if (this.unstageable.has(key)) continue;
      const complete = k === inShard.length;
      if (complete && at < end) fresh.push(old(at, end));
      progress.parts.push(...fresh);
      progress.next = k;
      progress.at = complete ? end : at;
      if (!complete) {
        if (fresh.length === 0) continue;
        // Not complete: write what is final so far (the file is opened on the first piece).
        const st = streaming ?? this.openStreaming(key, `${modelFiles.shardPrefix}group${g + 1}-shard${i + 1}of${src.shards.length}.bin`, progress);
        st.io = st.io.then(async (file) => {
          for (const part of fresh) await file.append(part);
          return file;
        });
        st.io.catch(() => {});
        continue;
      }
      const shardFile = shardName(await getHasher(), g, i, src.shards.length, progress.parts, modelFiles.shardPrefix);
      if (!streaming) {
        this.staged.set(key, this.stage(key, shardFile, progress.parts, progress.changed));
        continue;
      }
      this.streaming.delete(key);
      this.staged.set(key, this.finishStreaming(key, streaming, shardFile, fresh));
    }
  }

  /** Open the temp file of a shard to be written a piece at a time. */
  private openStreaming(key: string, base: string, progress: StreamingShard['progress']): StreamingShard {
    const ops = this.store.options.fileOps ?? nodeFileOps;
    // A temp name (recovery deletes it after a crash); the content-addressed one comes at the end.
    const tmp = path.join(this.store.dir, `${base}.tmp-${newId()}`);
    const st: StreamingShard = { tmp, progress, io: (ops.openNewFile as NonNullable<FileOps['openNewFile']>)(tmp).then((file) => (st.file = file)) };
    st.io.catch(() => {});
    this.streaming.set(key, st);
    return st;
  }

  /** Stop writing a shard a piece at a time: its temp file is closed and deleted. */
  private abandon(key: string, st: StreamingShard): void {
    const ops = this.store.options.fileOps ?? nodeFileOps;
    this.streaming.delete(key);
    this.abandoned.push(discardStreaming(ops, st));
  }

  /**
   * The rest of a shard written a piece at a time, as {@link stage} does for a whole one: its
   * last pieces, fsync, read back, renamed to its content-addressed `name` (unless a file of that
   * name is there already: then the temp file is deleted and the commit checks that file).
   */
  private finishStreaming(key: string, st: StreamingShard, name: string, fresh: readonly Uint8Array[]): StagedShard {
    const { dir, options } = this.store;
    const ops = options.fileOps ?? nodeFileOps;
    const file = path.join(dir, name);
    const verify = options.verifyWrites === true;
    const { parts, changed } = st.progress;
    const job = (async () => {
      let renamed = false;
      if (!(await this.writerSlot())) {
        await discardStreaming(ops, st);
        return { created: false };
      }
      try {
        const open = await st.io;
        for (const part of fresh) await open.append(part);
        if (await fileExists(file)) {
          await discardStreaming(ops, st);
          return { created: false };
        }
        // The read-back runs while the fsync does: both see what the file system holds for the
        // file (a read after an fsync is served from the same page cache).
        const readBack = async () => {
          if (!verify) return;
          const buf = this.stageBuffers.pop() ?? new Uint8Array(VERIFY_CHUNK);
          try {
            await verifyWritten(dir, st.tmp, parts, buf);
          } finally {
            this.stageBuffers.push(buf);
          }
        };
        await settleAll([open.sync(), readBack()]);
        st.file = undefined;
        await open.close();
        await ops.rename(st.tmp, file);
        renamed = true;
        const ident = fileIdent(await stat(file, { bigint: true }));
        this.releaseWritten(key, { file, ident }, changed);
        return { created: true, ident };
      } catch (e) {
        if (renamed) await ops.unlink(file).catch(() => {});
        else await discardStreaming(ops, st);
        throw e;
      } finally {
        this.releaseWriter();
      }
    })();
    return this.tracked(name, file, changed, job);
  }

  /** The record of a staged write (`finished` once its job settles). */
  private tracked(name: string, file: string, changed: string[], job: StagedShard['job']): StagedShard {
    const st: StagedShard = { name, file, changed, job, consumed: false, finished: false };
    const end = () => {
      st.finished = true;
    };
    job.then(end, end); // awaited by the commit or by dropStaged
    return st;
  }

  private yieldToWrites(): Promise<void> {
    return new Promise((resolve) => setImmediate(resolve));
  }

  /** Start writing one staged shard (when a writer is free). */
  private stage(key: string, name: string, parts: readonly Uint8Array[], changed: string[]): StagedShard {
    const { dir, options } = this.store;
    const ops = options.fileOps ?? nodeFileOps;
    const file = path.join(dir, name);
    const tmp = `${file}.tmp-${newId()}`;
    const verify = options.verifyWrites === true;
    const job = (async () => {
      // The apply ended (failed, and its values were put back) while this one waited: nothing to write.
      if (!(await this.writerSlot())) return { created: false };
      const buf = verify ? (this.stageBuffers.pop() ?? new Uint8Array(VERIFY_CHUNK)) : undefined;
      let renamed = false;
      try {
        if (await fileExists(file)) return { created: false };
        const ident = await writeShardFile(ops, dir, tmp, file, parts, buf, () => (renamed = true));
        this.releaseWritten(key, { file, ident }, changed);
        return { created: true, ident };
      } catch (e) {
        await ops.unlink(renamed ? file : tmp).catch(() => {});
        throw e;
      } finally {
        if (buf) this.stageBuffers.push(buf);
        this.releaseWriter();
      }
    })();
    return this.tracked(name, file, changed, job);
  }

  /**
   * Staged shard `key` is written, verified and renamed ({@link OpenOptions.releaseWritten}):
   * let go of the arrays of its changed tensors whose every new shard is, if nobody was handed
   * them since they settled; their buffers take the next tensors read.
   */
  private releaseWritten(key: string, done: FinishedShard, changed: readonly string[]): void {
    this.released.shardWritten(key, done);
    if (!this.store.options.releaseWritten || this.stagingOver || this.store.committing()) return;
    const { groups } = this.store.model();
    for (const name of changed) {
      const r = this.store.record(name);
      if (r) this.released.letGo(r, groups);
    }
  }

  /**
   * Wait for one of the {@link SHARD_WRITERS} slots of staged writes (whole shards, and the
   * fsync and read-back that finish a shard written a piece at a time). False when staging
   * ended meanwhile (the apply failed): then nothing is to be written.
   */
  private async writerSlot(): Promise<boolean> {
    if (this.stageRunning >= SHARD_WRITERS) await new Promise<void>((resolve) => this.stageWaiting.push(resolve));
    if (this.stagingOver) {
      this.stageWaiting.shift()?.();
      return false;
    }
    this.stageRunning++;
    return true;
  }

  private releaseWriter(): void {
    this.stageRunning--;
    this.stageWaiting.shift()?.();
  }

  /**
   * End staging (see {@link OpenOptions.stageWrites}): wait for the staged writes in flight,
   * then delete every staged file no commit switched to (never a file model.json names).
   */
  async dropStaged(): Promise<void> {
    const { dir, modelFiles } = this.store;
    const ops = this.store.options.fileOps ?? nodeFileOps;
    const jobs = [...this.staged.values()];
    const unfinished = [...this.streaming.values()];
    this.stagingOver = true;
    this.staged.clear();
    this.streaming.clear();
    this.unstageable.clear();
    this.settledNames.clear();
    // Shards begun a piece at a time and never completed: nothing names their temp files.
    await Promise.all([...unfinished.map((st) => discardStreaming(ops, st)), ...this.abandoned.splice(0)]);
    const results = await Promise.all(jobs.map((st) => st.job.catch(() => undefined)));
    this.stagingOver = false;
    // Tensors let go of and not committed: read from the model's files again, as before the apply.
    this.released.reset();
    this.committed = false;
    for (const r of this.store.records()) r.released = false;
    const leftover = jobs.filter((st, k) => !st.consumed && results[k]?.created);
    if (leftover.length === 0) return; // every staged file was taken over by a commit, or none was made
    // Never a file model.json or a kept model.json.prev names on disk now (whatever a failed
    // commit left), nor one the store's model names.
    const live = new Set(manifestPaths(this.store.model().modelJson).map((p) => path.resolve(dir, p)));
    for (const name of [modelFiles.model, modelFiles.previous]) {
      try {
        const bytes = await readIfExists(path.join(dir, name));
        if (bytes) for (const p of manifestPaths(parseModelJson(new TextDecoder().decode(bytes)))) live.add(path.resolve(dir, p));
      } catch {
        return; // cannot tell what the folder names: delete nothing (recovery deletes what nothing names)
      }
    }
    for (const st of leftover) {
      if (live.has(path.resolve(st.file))) continue;
      await ops.unlink(st.file).catch(() => {});
    }
  }
}
