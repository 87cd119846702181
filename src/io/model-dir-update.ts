/**
 * Crash-safe updates of a TF.js model folder on disk: whatever instant the process dies, a
 * loader that reads `model.json` and the shards it names sees exactly the old version or exactly
 * the new one, and the next apply finishes the job or refuses cleanly.
 *
 * The folder's states (docs/SECURITY.md walks through them):
 *
 * 1. new shards written (content-addressed names, temp file + fsync + rename; shards whose
 *    bytes the patch left unchanged stay the same files); model.json still names the old ones:
 *    the loader sees the old version;
 * 2. the new model.json is written to `model.json.tmp-<id>` and fsynced, the old model.json is
 *    hard-linked as `model.json.prev` (the previous version is kept), the folder is fsynced;
 * 3. the new version is read back from its files and fingerprinted: if it is not the payload's
 *    target, nothing switches;
 * 4. `model.json.tmp-<id>` is renamed over `model.json` and the folder fsynced (the switch);
 * 5. the health check runs; if it fails, `model.json.prev` is renamed back over `model.json`
 *    (rollback, atomic) and the new shards are deleted;
 * 6. if it passes, `model.json.prev` is renamed to `model.json.retired` (the commit point of
 *    the confirmation), the shards only it names are deleted, then it is deleted;
 * 7. the tensor digests are recorded (src/io/recorded-digests.ts), so the next apply reads only
 *    the shards it patches, and the sequence number is recorded in the state file.
 *
 * {@link recoverModelDir}, run at the start of every apply, finishes what a crash interrupted:
 * `model.json.prev` still there means the update was never confirmed, so it is rolled back
 * (or, if the switch had not happened, simply removed); `model.json.retired` means the
 * confirmation happened and only its garbage collection remains; temp files and shards that
 * model.json does not name are deleted. After it, the same apply runs again from the old version.
 */
import { randomBytes } from 'node:crypto';
import { open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { uptime } from 'node:os';
import * as path from 'node:path';
import { ModelFormatError, TargetMismatchError } from '../core/errors.ts';
import { fingerprintStore } from '../core/fingerprint.ts';
import { getHasher, type Hasher } from '../core/hasher.ts';
import { MemoryWeightStore, type CommitInfo, type WeightStore } from '../core/weight-store.ts';
import type { StorageGrid } from '../core/grid.ts';
import { applyVerifiedPayload, verifyPayload, type ApplyOptions, type ApplyResult, type TwoPhaseWeightStore } from '../apply/apply.ts';
import type { SequenceStore } from '../apply/freshness.ts';
import { MODEL_JSON, PREVIOUS_MODEL_JSON, openTfjsModelDir, type TfjsDirWeightStore } from './tfjs-artifacts.ts';
import { manifestPaths, parseModelJson } from './tfjs-manifest.ts';
import { DEFAULT_STATE_FILE, FileSequenceStore, syncDir } from './sequence-file.ts';
import { readRecordedDigests, writeRecordedDigests } from './recorded-digests.ts';

/** The previous version's model.json after the new version was confirmed, until its shards are deleted. */
export const RETIRED_MODEL_JSON = 'model.json.retired';
/** Held while an apply runs: `{"pid": …, "startedAt": …}`. */
export const LOCK_FILE = '.ndiff-apply.lock';
/** Shard names this project's writer makes (content-addressed), safe to delete when unreferenced. */
const WRITER_SHARD = /^group\d+-shard\d+of\d+-[0-9a-f]{16}\.bin$/;
/** Temporary files of this project's writers (`<name>.tmp-<pid>-<hex>`). */
const TEMP_FILE = /\.tmp-\d+-[0-9a-f]+$/;

/** What {@link recoverModelDir} found and did. */
export interface RecoveryReport {
  /** One sentence per action; empty when the folder was clean. */
  actions: string[];
  /** True when an unconfirmed update was rolled back to the previous version. */
  rolledBack: boolean;
  /** Files deleted, relative to the folder. */
  removed: string[];
}

async function readIfExists(file: string): Promise<Uint8Array | null> {
  try {
    return await readFile(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

function pathsOf(bytes: Uint8Array, file: string, dir: string): Set<string> {
  return new Set(manifestPaths(parseModelJson(new TextDecoder().decode(bytes), file)).map((p) => path.resolve(dir, p)));
}

async function removeFile(dir: string, name: string, report: RecoveryReport): Promise<void> {
  try {
    await unlink(path.join(dir, name));
    report.removed.push(name);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/** Delete temp files and writer-made shards that model.json (and a kept previous version) do not name. */
async function collectGarbage(dir: string, report: RecoveryReport): Promise<void> {
  const current = await readIfExists(path.join(dir, MODEL_JSON));
  if (current === null) return; // nothing to attribute shards to: delete nothing
  const referenced = pathsOf(current, path.join(dir, MODEL_JSON), dir);
  const prev = await readIfExists(path.join(dir, PREVIOUS_MODEL_JSON));
  if (prev !== null) for (const p of pathsOf(prev, path.join(dir, PREVIOUS_MODEL_JSON), dir)) referenced.add(p);
  const before = report.removed.length;
  for (const name of (await readdir(dir)).sort()) {
    if (TEMP_FILE.test(name) || (WRITER_SHARD.test(name) && !referenced.has(path.resolve(dir, name)))) await removeFile(dir, name, report);
  }
  if (report.removed.length > before) await syncDir(dir);
}

/** Delete the shards `model.json.retired` names that model.json does not, then the file itself. */
async function finishRetired(dir: string, report: RecoveryReport): Promise<void> {
  const retiredFile = path.join(dir, RETIRED_MODEL_JSON);
  const retired = await readIfExists(retiredFile);
  if (retired === null) return;
  const current = await readIfExists(path.join(dir, MODEL_JSON));
  if (current === null) throw new ModelFormatError(`${dir} has ${RETIRED_MODEL_JSON} but no ${MODEL_JSON}: expected the confirmed model beside it; the folder was changed by hand: restore the model from the full download`, { dir });
  const keep = pathsOf(current, path.join(dir, MODEL_JSON), dir);
  const prev = await readIfExists(path.join(dir, PREVIOUS_MODEL_JSON));
  if (prev !== null) for (const p of pathsOf(prev, path.join(dir, PREVIOUS_MODEL_JSON), dir)) keep.add(p);
  let old: Set<string>;
  try {
    old = pathsOf(retired, retiredFile, dir);
  } catch {
    old = new Set(); // unreadable: its shards are left to the writer-shard sweep
  }
  for (const p of old) {
    if (!keep.has(p) && path.dirname(p) === path.resolve(dir)) await removeFile(dir, path.basename(p), report);
  }
  // Not fsynced: a deletion lost in a crash brings back the retired file, and the next
  // recovery finishes it again.
  await removeFile(dir, RETIRED_MODEL_JSON, report);
}

/**
 * Bring a model folder back to a confirmed version after an interrupted update, and delete the
 * leftovers. Safe to call at any time (one writer per folder); does nothing on a clean folder.
 *
 * @throws ModelFormatError when model.json is unreadable and no previous version is kept.
 */
export async function recoverModelDir(dir: string): Promise<RecoveryReport> {
  const report: RecoveryReport = { actions: [], rolledBack: false, removed: [] };
  const modelFile = path.join(dir, MODEL_JSON);
  const prevFile = path.join(dir, PREVIOUS_MODEL_JSON);
  const prev = await readIfExists(prevFile);
  if (prev !== null) {
    const current = await readIfExists(modelFile);
    if (current !== null && sameBytes(current, prev)) {
      await removeFile(dir, PREVIOUS_MODEL_JSON, report);
      await syncDir(dir);
      report.actions.push('an update was interrupted before its switch: the model is the previous version; removed its leftovers');
    } else {
      await rename(prevFile, modelFile);
      await syncDir(dir);
      report.rolledBack = true;
      report.actions.push('an update was interrupted after its switch but before it was confirmed: rolled back to the previous version');
    }
  }
  if ((await readIfExists(path.join(dir, RETIRED_MODEL_JSON))) !== null) {
    await finishRetired(dir, report);
    report.actions.push('an update was confirmed but its old shards were not all deleted: deleted them');
  }
  const before = report.removed.length;
  await collectGarbage(dir, report);
  if (report.removed.length > before && prev === null) report.actions.push(`removed ${report.removed.length - before} leftover file(s) of an interrupted write`);
  return report;
}

/** Keep the new version: drop the previous one (no-op when none is kept). */
export async function confirmUpdate(dir: string): Promise<void> {
  const report: RecoveryReport = { actions: [], rolledBack: false, removed: [] };
  try {
    await rename(path.join(dir, PREVIOUS_MODEL_JSON), path.join(dir, RETIRED_MODEL_JSON));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  await syncDir(dir); // the commit point of the confirmation
  await finishRetired(dir, report);
}

/** Make the kept previous version current again, atomically, and delete the new files. */
export async function rollbackUpdate(dir: string): Promise<void> {
  const report: RecoveryReport = { actions: [], rolledBack: false, removed: [] };
  try {
    await rename(path.join(dir, PREVIOUS_MODEL_JSON), path.join(dir, MODEL_JSON));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new ModelFormatError(`cannot roll back ${dir}: expected the previous version in ${PREVIOUS_MODEL_JSON}, found none (another process finished or undid the update?)`, { dir });
    }
    throw e;
  }
  await syncDir(dir);
  await collectGarbage(dir, report);
}

// ---------------------------------------------------------------------------------------------
// the lock

/** Lock files this process holds (two applies in one process exclude each other too). */
const heldLocks = new Set<string>();

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Take the folder's apply lock. A lock left by a crashed process is taken over: its pid no longer
 * runs, or it was taken before the last boot (after a reboot the same pid may belong to another
 * process, or to this one). One held by a live process is a {@link ModelFormatError}.
 */
export async function lockModelDir(dir: string): Promise<() => Promise<void>> {
  const file = path.resolve(dir, LOCK_FILE);
  if (heldLocks.has(file)) {
    throw new ModelFormatError(`an apply to ${dir} is already running in this process: expected one writer per model folder; await it, then retry`, { dir });
  }
  const body = JSON.stringify({ pid: process.pid, startedAt: new Date().toISOString(), token: randomBytes(6).toString('hex') });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await open(file, 'wx');
      try {
        await fh.writeFile(body);
      } finally {
        await fh.close();
      }
      heldLocks.add(file);
      return async () => {
        heldLocks.delete(file);
        const now = await readIfExists(file);
        if (now !== null && new TextDecoder().decode(now) === body) await unlink(file).catch(() => {});
      };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new ModelFormatError(`no model folder at ${dir}: check the path`, { dir });
      if (code !== 'EEXIST') throw e;
    }
    let holder: { pid?: unknown; startedAt?: unknown } = {};
    try {
      holder = JSON.parse(new TextDecoder().decode((await readIfExists(file)) ?? new Uint8Array()));
    } catch {
      /* a lock cut short by a crash: stale */
    }
    const bootedAt = Date.now() - uptime() * 1000;
    const takenAt = typeof holder.startedAt === 'string' ? Date.parse(holder.startedAt) : NaN;
    const beforeBoot = Number.isFinite(takenAt) && takenAt < bootedAt - 5000;
    if (typeof holder.pid === 'number' && holder.pid !== process.pid && !beforeBoot && pidAlive(holder.pid)) {
      throw new ModelFormatError(`another apply (pid ${holder.pid}) is updating ${dir} now: expected one writer per model folder; wait for it to finish, then retry`, { dir, pid: holder.pid });
    }
    await unlink(file).catch(() => {});
  }
  throw new ModelFormatError(`cannot take the apply lock ${file}: another process keeps creating it; retry when no other apply runs`, { dir });
}

// ---------------------------------------------------------------------------------------------
// applying

/**
 * The folder store during an apply: commits keep the previous version until confirmed, and a
 * confirmed version's digests are recorded for the next apply.
 */
class UpdatingModelDir implements TwoPhaseWeightStore {
  /** What the applier committed (set during {@link commit}). */
  committing?: { changed: readonly string[]; info: CommitInfo };
  constructor(private readonly disk: TfjsDirWeightStore, private readonly dir: string) {}
  list() {
    return this.disk.list();
  }
  values(name: string): Float32Array {
    return this.disk.values(name);
  }
  read(name: string): Float32Array {
    return this.disk.read(name);
  }
  digest(name: string): string | undefined {
    return this.disk.digest(name);
  }
  grid(name: string): StorageGrid {
    return this.disk.grid(name);
  }
  async commit(changed: readonly string[], info?: CommitInfo): Promise<void> {
    this.committing = info && { changed, info };
    await this.disk.commit(changed);
  }
  async confirmCommit(): Promise<void> {
    await confirmUpdate(this.dir);
    if (!this.committing) return;
    try {
      await writeRecordedDigests(this.dir, this.disk.digestRecords(this.committing.info.digests), { durable: false });
    } catch {
      // Only a cache: without it the next apply reads and hashes every tensor.
    }
  }
  async revertCommit(): Promise<void> {
    if ((await readIfExists(path.join(this.dir, PREVIOUS_MODEL_JSON))) !== null) await rollbackUpdate(this.dir);
  }
}

export interface ModelDirApplyOptions extends Omit<ApplyOptions, 'healthCheck' | 'sequenceStore'> {
  /**
   * Where the applied sequence is kept: a state file path, a {@link SequenceStore}, or `null`
   * for none. Default: `<dir>/.ndiff-state.json`.
   */
  state?: string | SequenceStore | null;
  /**
   * Runs after the switch, before the update is confirmed (the new version is in place, so it
   * can load `dir`, e.g. `tf.loadGraphModel(fileSystemIO(dir))`, and run one inference).
   * Returning false or throwing rolls back to the previous version.
   */
  healthCheck?: (info: { dir: string; store: WeightStore; result: ApplyResult }) => boolean | void | Promise<boolean | void>;
  /**
   * Cut the patched model into shards of this many bytes again (every shard is rewritten). By
   * default the existing shard boundaries are kept and only shards with changed bytes are written.
   */
  shardBytes?: number;
  /** See `OpenOptions.quantizedUnchanged` in tfjs-artifacts.ts. */
  quantizedUnchanged?: 'keep' | 'float32';
  /** Check everything, patch a copy in memory, write nothing (no recovery, no state). */
  dryRun?: boolean;
  /**
   * How the tensors the payload does not patch are checked against the base: `'recorded'`
   * (default) trusts the digests the last confirmed apply recorded (src/io/recorded-digests.ts)
   * while their files are unchanged, so only the patched tensors' shards are read; `'full'`
   * reads and hashes every tensor. The patched tensors are always read and hashed.
   */
  baseCheck?: 'recorded' | 'full';
}

export interface ModelDirApplyResult extends ApplyResult {
  /** What was recovered from an earlier interrupted apply before this one ran. */
  recovery: RecoveryReport;
}

function resolveState(dir: string, state: ModelDirApplyOptions['state']): SequenceStore | undefined {
  if (state === null) return undefined;
  if (state === undefined) return new FileSequenceStore(path.join(dir, DEFAULT_STATE_FILE));
  if (typeof state === 'string') return new FileSequenceStore(state);
  return state;
}

/**
 * Verify `payloadBytes` and apply it to the model folder `dir`, crash-safely (see the module
 * doc). A payload refused by the signature policy or the decoder touches nothing; otherwise an
 * interrupted earlier apply is recovered first. On any error the folder holds the version it
 * held before this call (or the recovered one) and a typed error says what to do.
 */
export async function applyToModelDir(dir: string, payloadBytes: Uint8Array, options: ModelDirApplyOptions = {}): Promise<ModelDirApplyResult> {
  const verified = await verifyPayload(payloadBytes, options);
  const sequences = resolveState(dir, options.state);
  const { dryRun, healthCheck, shardBytes, quantizedUnchanged } = options;
  const empty: RecoveryReport = { actions: [], rolledBack: false, removed: [] };

  if (dryRun) {
    const disk = await openTfjsModelDir(dir);
    const copy = new MemoryWeightStore(disk.list().map((t) => [t.name, { shape: [...t.shape], data: disk.values(t.name).slice() }] as [string, { shape: number[]; data: Float32Array }]));
    // The copy keeps the folder's storage grids, so a dry run refuses a grid mismatch too.
    (copy as WeightStore).grid = (name: string) => disk.grid(name);
    const readOnly: SequenceStore | undefined = sequences && { get: (id) => sequences.get(id), set: () => {} };
    const res = await applyVerifiedPayload(copy, verified, { ...options, sequenceStore: readOnly, healthCheck: undefined });
    return { ...res, sequenceRecorded: false, recovery: empty };
  }

  const unlock = await lockModelDir(dir);
  try {
    const recovery = await recoverModelDir(dir);
    const hasher: Hasher = options.hasher && typeof options.hasher === 'object' ? options.hasher : await getHasher(options.hasher ? { prefer: options.hasher } : undefined);
    const target = verified.payload.header.targetFingerprint;
    const recordedDigests = options.baseCheck === 'full' ? undefined : await readRecordedDigests(dir);
    let updating: UpdatingModelDir | undefined;
    const disk: TfjsDirWeightStore = await openTfjsModelDir(dir, {
      lazy: true,
      recordedDigests,
      keepPrevious: true,
      ...(shardBytes !== undefined ? { shardBytes } : {}),
      ...(quantizedUnchanged !== undefined ? { quantizedUnchanged } : {}),
      // Read the new version back from its files before the switch: a loader must never see a
      // version that does not hash to the target.
      // A tensor whose manifest entry and bytes (same files, same ranges) are as in the
      // verified current version keeps the digest the applier vouched for; the rest is read
      // back from the new files and hashed.
      onBeforeSwitch: async ({ tempModelJson }) => {
        const c = updating?.committing;
        const known = c ? disk.digestRecords(c.info.digests, c.changed) : undefined;
        const fresh = await openTfjsModelDir(dir, { modelJsonFile: path.basename(tempModelJson), lazy: true, recordedDigests: known });
        const written = fingerprintStore(hasher, fresh).fingerprint;
        if (written !== target) {
          throw new TargetMismatchError(
            `the new model files in ${dir} read back as ${written.slice(0, 8)}…, not the target ${target.slice(0, 8)}…: the disk did not keep what was written; nothing was switched and the model is unchanged: check the storage, then retry`,
            { expected: target, found: written },
          );
        }
      },
    });
    const store = new UpdatingModelDir(disk, dir);
    updating = store;
    const res = await applyVerifiedPayload(store, verified, {
      ...options,
      hasher,
      sequenceStore: sequences,
      healthCheck: healthCheck && ((info) => healthCheck({ dir, ...info })),
    });
    return { ...res, recovery };
  } finally {
    await unlock();
  }
}
