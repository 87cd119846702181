/**
 * Writing a TF.js model folder atomically: content-addressed shards, the new model.json, the
 * switch (see the protocol in src/io/tfjs/index.ts).
 */
import { fileIdent, type GroupSource, type Shard } from './read.ts';
import type { WriteOptions } from './options.ts';
import { randomBytes } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { ModelFormatError, TargetMismatchError, UsageError } from '../../core/errors.ts';
import { getHasher, hex64, type Hasher } from '../../core/hasher.ts';
import { DEFAULT_SHARD_BYTES, manifestPaths, parseModelJson, splitIntoShards, type EntryLayout, type TfjsWeightEntry, type TfjsWeightGroup } from './manifest.ts';
import { errCode, forEachLimited, nodeFileOps, readIfExists, type FileOps, type NewFile } from '../durable/durable.ts';
import { FOLDER_MODEL_FILES, controlFileProblem, type ModelFiles } from '../durable/control-files.ts';
import { namedByOtherModels } from './shared-folder.ts';

/**
 * A shard of a planned write: an existing file kept as it is, or new bytes, given as the parts
 * they are made of in order (views of the tensors' values and of the old shard: a patched
 * shard is never assembled into a copy).
 */
export type PlannedShard =
  | { keep: Shard }
  | { parts: Uint8Array[] }
  /** Written ahead (see {@link StagedShard}); `parts` gives its bytes in the rare case they are needed (it was not created by its job). */
  | { staged: StagedShard; size: number; parts: () => Uint8Array[] };

/** A shard being written a piece at a time (see `ShardStaging.stageSettled` in dir-staging.ts). */
export interface StreamingShard {
  /** Its temp file. */
  tmp: string;
  /**
   * How far it is made: the entries of the shard (in order) taken so far (`next`), the group
   * offset its bytes reach (`at`), those bytes as parts, and the settled entries among them.
   */
  progress: { next: number; at: number; parts: Uint8Array[]; changed: string[] };
  /** The open file, once every piece asked for so far is written. */
  io: Promise<NewFile>;
  /** The file once opened, until closed (for the cleanup after a failed write). */
  file?: NewFile;
}

/** Close a shard's file written a piece at a time (if open) and delete its temp file. */
export async function discardStreaming(ops: FileOps, st: StreamingShard): Promise<void> {
  await st.io.catch(() => {});
  const file = st.file;
  st.file = undefined;
  await file?.close().catch(() => {});
  await ops.unlink(st.tmp).catch(() => {});
}

/** A shard written ahead of the commit (see {@link OpenOptions.stageWrites}). */
export interface StagedShard {
  /** Its content-addressed name in the folder, and the path. */
  name: string;
  file: string;
  /** The names of the entries whose new bytes it holds. */
  changed: string[];
  /**
   * Settles when it is written, fsynced, read back and renamed to `name` (`created`, with the
   * file's identity), or found already there (not `created`: the commit then treats the shard
   * as if it had not been staged). Rejects when writing failed (its temp file removed).
   */
  job: Promise<{ created: boolean; ident?: string }>;
  /**
   * Set once a commit took the file over (it is among the files that commit created: the
   * commit's cleanup, or the journal's recovery, deletes it if the update does not happen).
   */
  consumed: boolean;
  /** Set once `job` settled. */
  finished: boolean;
}

export interface PlannedGroup {
  /** The original group object (its keys other than paths/weights are kept), or `{}`. */
  base: Record<string, unknown>;
  weights: TfjsWeightEntry[];
  /** Concatenated bytes of `weights`, in order, cut into shards of `shardBytes`; or … */
  data?: Uint8Array;
  /** … the shards themselves (a patch that keeps the layout keeps the unchanged files). */
  shards?: PlannedShard[];
}

interface WritePlan extends WriteOptions {
  dir: string;
  groups: PlannedGroup[];
  /** Render the new model.json text for the new manifest. */
  render: (manifest: TfjsWeightGroup[]) => string;
  /** If set, model.json must still hold exactly these bytes (`null`: must not exist). */
  expectedModelJson?: Uint8Array | null;
  /** The model file's name and the applier's files beside it (default: a folder of its own, `model.json`). */
  files?: ModelFiles;
}

interface WriteResult {
  text: string;
  bytes: Uint8Array;
  manifest: TfjsWeightGroup[];
  /** The new version's shards, group by group. */
  groups: GroupSource[];
}

export function newId(): string {
  return `${process.pid}-${randomBytes(6).toString('hex')}`;
}


export function sameBytes(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === null || b === null) return a === b;
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

/**
 * A content-addressed shard name (after `prefix`: a model file's stem in a shared folder). xxh64 (a third of sha256's time here) is enough: names only
 * keep one file from holding two contents, and a name that collides with a live shard of other
 * bytes is refused before anything is overwritten (see writeModelAtomically).
 */
export function shardName(hasher: Hasher, g: number, i: number, n: number, parts: readonly Uint8Array[], prefix = ''): string {
  const h = hasher.create64(0n);
  for (const part of parts) h.update(part);
  return `${prefix}group${g + 1}-shard${i + 1}of${n}-${hex64(h.digest())}.bin`;
}

/** Whether `bytes` are the concatenation of `parts`. */
function sameAsParts(bytes: Uint8Array, parts: readonly Uint8Array[]): boolean {
  let at = 0;
  for (const part of parts) {
    if (!sameBytes(bytes.subarray(at, at + part.length), part)) return false;
    at += part.length;
  }
  return at === bytes.length;
}

function groupObject(base: Record<string, unknown>, paths: string[], weights: TfjsWeightEntry[]): TfjsWeightGroup {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(base)) out[k] = k === 'paths' ? paths : k === 'weights' ? weights : v;
  if (!('paths' in out)) out.paths = paths;
  if (!('weights' in out)) out.weights = weights;
  return out as TfjsWeightGroup;
}

/** New shards written at once: libuv's default thread pool size, so one write's fsync overlaps the others' writes. */
export const SHARD_WRITERS = 4;

/** Bytes read at a time when a written file is compared with what was meant (a buffer per writer). */
export const VERIFY_CHUNK = 1 << 20;

/**
 * Read `file` back and compare it with `parts`, in order, through `buf`; a difference (or a
 * size that is not theirs) is a {@link TargetMismatchError}: the storage did not keep the
 * bytes.
 */
export async function verifyWritten(dir: string, file: string, parts: readonly Uint8Array[], buf: Uint8Array): Promise<void> {
  const size = parts.reduce((n, part) => n + part.length, 0);
  const fh = await open(file, 'r');
  let equal = 0;
  try {
    const st = await fh.stat();
    let part = 0;
    let inPart = 0;
    for (let at = 0; at < size && st.size === size;) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - at), at);
      if (bytesRead === 0) break;
      // Compare the bytes read with the parts they should be.
      let k = 0;
      while (k < bytesRead) {
        const want = parts[part].subarray(inPart, inPart + bytesRead - k);
        if (Buffer.compare(buf.subarray(k, k + want.length), want) !== 0) break;
        k += want.length;
        inPart += want.length;
        if (inPart === parts[part].length) {
          part++;
          inPart = 0;
        }
      }
      equal = at + k;
      if (k < bytesRead) break;
      at += bytesRead;
    }
    if (st.size === size && equal === size) return;
    throw new TargetMismatchError(
      `the new model files in ${dir} read back as other bytes than were written (${path.basename(file)}: ${st.size} bytes, ${equal} of the ${size} meant read back equal), not the target version: the disk did not keep what was written; nothing was switched and the model is unchanged: check the storage, then retry`,
      { file: path.basename(file), expected: size, found: st.size },
    );
  } finally {
    await fh.close();
  }
}

/**
 * One new shard (step 2 of the module doc): `parts` written to `tmp`, fsynced, read back through
 * `buf` and compared (when given), renamed to `file` (`renamed` runs right after); returns the
 * file's identity.
 */
export async function writeShardFile(ops: FileOps, dir: string, tmp: string, file: string, parts: readonly Uint8Array[], buf: Uint8Array | undefined, renamed: () => void): Promise<string> {
  await ops.writeNewFile(tmp, parts, { sync: true });
  if (buf) await verifyWritten(dir, tmp, parts, buf);
  await ops.rename(tmp, file);
  renamed();
  return fileIdent(await stat(file, { bigint: true })); // after the rename, which sets ctime
}

/**
 * Write new shards (step 2 of the module doc: temp file, fsync, rename), {@link SHARD_WRITERS}
 * at a time, and set each entry's file identity. Every temp file name is in `temps` while it may
 * exist and every renamed file in `created`, for the caller's cleanup; on an error the writes
 * in flight finish first, so nothing is created after this returns or throws.
 */
async function writeShards(ops: FileOps, writes: readonly { entry: Shard; file: string; parts: readonly Uint8Array[] }[], id: string, temps: string[], created: string[], written: string[], dir: string, verify: boolean): Promise<void> {
  const tmps = writes.map((w) => `${w.file}.tmp-${id}`);
  temps.push(...tmps);
  const bufs: Uint8Array[] = [];
  await forEachLimited(writes, SHARD_WRITERS, async (w, k, worker) => {
    const buf = verify ? (bufs[worker] ??= new Uint8Array(VERIFY_CHUNK)) : undefined;
    w.entry.ident = await writeShardFile(ops, dir, tmps[k], w.file, w.parts, buf, () => created.push(w.file));
  });
  for (const t of tmps) temps.splice(temps.indexOf(t), 1);
  for (const w of writes) written.push(w.entry.path);
}

/** The write protocol of the module doc. */
export async function writeModelAtomically(plan: WritePlan): Promise<WriteResult> {
  const { dir } = plan;
  const ops = plan.fileOps ?? nodeFileOps;
  const shardBytes = plan.shardBytes ?? DEFAULT_SHARD_BYTES;
  if (!Number.isSafeInteger(shardBytes) || shardBytes <= 0) {
    throw new UsageError(`shardBytes must be a positive integer number of bytes, got ${String(shardBytes)}`, { shardBytes });
  }
  await ops.mkdir(dir);
  const hasher = await getHasher();
  const files = plan.files ?? FOLDER_MODEL_FILES;
  const modelFile = path.join(dir, files.model);
  const startBytes = await readIfExists(modelFile);
  if (plan.expectedModelJson !== undefined && !sameBytes(startBytes, plan.expectedModelJson)) {
    throw concurrentChange(modelFile);
  }
  let oldPaths: string[] = [];
  if (startBytes) {
    try {
      // Never a file the applier owns (a manifest naming one is refused when the folder is
      // opened; this keeps a write from deleting one even so).
      oldPaths = manifestPaths(parseModelJson(new TextDecoder().decode(startBytes))).filter((p) => !controlFileProblem(dir, p, [], files.shared));
    } catch {
      oldPaths = []; // an unreadable old model: replace it, delete nothing we cannot attribute
    }
  }
  const oldResolved = new Set(oldPaths.map((p) => path.resolve(dir, p)));
  const prevFile = path.join(dir, files.previous);
  if (plan.keepPrevious && (await readIfExists(prevFile)) !== null) {
    throw new ModelFormatError(
      `${prevFile} exists: expected no previous version kept. Either an earlier update of ${dir} is still waiting to be confirmed or rolled back (recoverModelDir, or running \`ndiff apply\` again, finishes it), or the file is not the applier's (no update journal names it: someone's copy of ${files.model}?): move it out of the folder, then retry`,
      { dir },
    );
  }

  // Whether a new shard's file already holds its bytes (content-addressed: then it is not
  // written; its identity is set); a live shard whose bytes are not its name's is refused.
  const alreadyThere = async (entry: Shard, file: string, parts: readonly Uint8Array[]): Promise<boolean> => {
    const existing = await readIfExists(file);
    if (existing && sameAsParts(existing, parts)) {
      entry.ident = fileIdent(await stat(file, { bigint: true }));
      return true;
    }
    if (existing && oldResolved.has(path.resolve(file))) throw corruptShard(dir, file, entry.path);
    return false;
  };
  const id = newId();
  let switched = false;
  const created: string[] = [];
  const temps: string[] = [];
  const manifest: TfjsWeightGroup[] = [];
  const newShards: string[] = [];
  const writtenShards: string[] = [];
  const sources: GroupSource[] = [];
  try {
    const writes: { entry: Shard; file: string; parts: readonly Uint8Array[] }[] = [];
    const stagedWrites: { entry: Shard; file: string; parts: () => readonly Uint8Array[]; staged: StagedShard }[] = [];
    for (const [g, group] of plan.groups.entries()) {
      const planned: PlannedShard[] = group.shards ?? splitIntoShards(group.data ?? new Uint8Array(0), shardBytes).map((bytes) => ({ parts: [bytes] }));
      const paths: string[] = [];
      const source: GroupSource = { shards: [], total: 0 };
      sources.push(source);
      for (const [i, p] of planned.entries()) {
        if ('keep' in p) {
          paths.push(p.keep.path);
          newShards.push(p.keep.path);
          source.shards.push({ ...p.keep, start: source.total });
          source.total += p.keep.size;
          continue;
        }
        if ('staged' in p) {
          // Written ahead of the commit (or being written): awaited below with the other writes.
          const file = path.join(dir, p.staged.name);
          paths.push(p.staged.name);
          newShards.push(p.staged.name);
          const entry: Shard = { path: p.staged.name, start: source.total, size: p.size, ident: '' };
          source.shards.push(entry);
          source.total += p.size;
          stagedWrites.push({ entry, file, parts: p.parts, staged: p.staged });
          continue;
        }
        const { parts } = p;
        const size = parts.reduce((n, part) => n + part.length, 0);
        const name = shardName(hasher, g, i, planned.length, parts, files.shardPrefix);
        const file = path.join(dir, name);
        paths.push(name);
        newShards.push(name);
        // A single part is a buffer of its own (a new model's data); a patched shard's parts are
        // views of live values, so its bytes are read from the file when needed.
        const entry: Shard = { path: name, start: source.total, size, ident: '', ...(group.shards ? {} : { bytes: parts[0] }) };
        source.shards.push(entry);
        source.total += size;
        if (!(await alreadyThere(entry, file, parts))) writes.push({ entry, file, parts });
      }
      manifest.push(groupObject(group.base, paths, group.weights));
    }
    const text = plan.render(manifest);
    const bytes = new TextEncoder().encode(text);
    const keepNames = new Set(newShards.map((p) => path.resolve(dir, p)));
    const tmpJson = `${modelFile}.tmp-${id}`;
    temps.push(tmpJson);
    // The caller's hook (the update journal), the new shards and the new model.json's temp file
    // at the same time: until the link and the switch below, nothing names the new files, and
    // recovery deletes such files whether or not a journal lists them. Every one has settled
    // before anything else happens (or the cleanup below runs).
    await settleAll([
      (async () => {
        await plan.onBeforeWrite?.({
          dir,
          id,
          previousModelJson: startBytes,
          nextModelJson: bytes,
          createdShards: [...stagedWrites, ...writes].map((w) => path.basename(w.file)),
          retiredShards: oldPaths.filter((p) => !keepNames.has(path.resolve(dir, p))),
        });
      })(),
      writeShards(ops, writes, id, temps, created, writtenShards, dir, plan.verifyWrites === true),
      // A staged shard found already in the folder (not written by its job) is checked and
      // written here like any other. One this write takes over is in `created`: this write's
      // cleanup (or the journal's recovery) deletes it if the update does not happen, never
      // dropStaged.
      settleAll(stagedWrites.map(async (w) => {
        const done = await w.staged.job;
        if (done.created) {
          created.push(w.file);
          w.staged.consumed = true;
          writtenShards.push(w.entry.path);
          w.entry.ident = done.ident as string;
          return;
        }
        const parts = w.parts();
        if (!(await alreadyThere(w.entry, w.file, parts))) await writeShards(ops, [{ entry: w.entry, file: w.file, parts }], id, temps, created, writtenShards, dir, plan.verifyWrites === true);
      })),
      (async () => {
        await ops.writeNewFile(tmpJson, [bytes], { sync: true });
        if (plan.verifyWrites) await verifyWritten(dir, tmpJson, [bytes], new Uint8Array(bytes.length));
      })(),
    ]);
    if (plan.keepPrevious && startBytes) {
      // The previous version's model.json under a second name (its shards stay): a hard link,
      // so nothing is copied; a durable copy where the file system has no hard links.
      try {
        await ops.link(modelFile, prevFile);
      } catch (err) {
        if (!['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'EXDEV', 'ENOSYS', 'EMLINK'].includes(errCode(err) ?? '')) throw err;
        const tmpPrev = `${prevFile}.tmp-${id}`;
        temps.push(tmpPrev);
        await ops.writeNewFile(tmpPrev, [startBytes], { sync: true });
        await ops.rename(tmpPrev, prevFile);
        temps.pop();
      }
      created.push(prevFile);
    }
    // One folder fsync makes the new shards' and the kept version's names durable.
    await ops.syncDir(dir);
    await plan.onBeforeSwitch?.({ dir, tempModelJson: tmpJson, newShards: [...newShards], writtenShards: [...writtenShards] });

    if (!sameBytes(await readIfExists(modelFile), startBytes)) throw concurrentChange(modelFile);
    await ops.rename(tmpJson, modelFile); // the switch
    switched = true;
    temps.splice(temps.indexOf(tmpJson), 1);
    await ops.syncDir(dir);

    // After the switch: the old shards are garbage (unless the previous version is kept, or, in
    // a folder several model files share, another one names them). Best effort and not fsynced:
    // the switch is durable, and a deletion lost in a crash leaves only files listStaleFiles (or
    // the next apply's recovery) finds.
    // A model file beside it that cannot be read: which shards it names is unknown, so none is deleted.
    const keep = plan.keepPrevious ? new Set<string>() : await namedByOtherModels(dir, files).catch(() => undefined);
    for (const p of newShards) keep?.add(path.resolve(dir, p));
    for (const old of plan.keepPrevious || !keep ? [] : oldResolved) {
      if (keep?.has(old)) continue;
      try { await ops.unlink(old); } catch { /* left for listStaleFiles */ }
    }
    return { text, bytes, manifest, groups: sources };
  } catch (err) {
    // After the switch the new files are the model: removing them would break it.
    for (const f of switched ? [] : [...temps, ...created]) {
      try { await ops.unlink(f); } catch { /* already gone */ }
    }
    try { await ops.syncDir(dir); } catch { /* nothing more to undo */ }
    throw err;
  }
}

/** Wait for every promise to settle, then throw the first rejection (if any). */
export async function settleAll(jobs: readonly Promise<unknown>[]): Promise<void> {
  const failed = (await Promise.allSettled(jobs)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/** Whether an entry's bytes lie partly in shard `s`. */
export function overlaps(l: EntryLayout, s: Shard): boolean {
  return l.offset < s.start + s.size && l.offset + l.byteLength > s.start;
}

/** A live shard whose bytes are not the ones its content-addressed name says. */
function corruptShard(dir: string, file: string, name: string): ModelFormatError {
  return new ModelFormatError(
    `${file} is part of the current model but its content does not match the hash in its name: expected ${name} to hold those bytes, found other bytes. The folder is corrupt; copy the model folder again`,
    { dir, path: name },
  );
}

function concurrentChange(modelFile: string): ModelFormatError {
  return new ModelFormatError(
    `${modelFile} changed while this write was in progress: expected the version this operation started from, found different bytes. Nothing was written; reopen the model and retry (only one writer per model at a time)`,
    { dir: path.dirname(modelFile), file: path.basename(modelFile) },
  );
}
