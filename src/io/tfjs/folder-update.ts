/**
 * Crash-safe updates of a TF.js model folder on disk: whatever instant the process dies or the
 * power goes, a loader that reads `model.json` and the shards it names sees exactly the old
 * version or exactly the new one, and the next apply finishes the job or refuses cleanly.
 *
 * The folder's states (docs/SECURITY.md walks through them; every file operation goes through
 * the {@link FileOps} of src/io/durable/durable.ts, which the power-loss harness records):
 *
 * 1. the update journal `.ndiff-journal.json` is written durably: a random id, the sha256 of the
 *    current model.json and of the new one, the shards the update will create and the old shards
 *    it will retire. Recovery acts only on what such a journal names;
 * 2. at the same time, new shards written (content-addressed names, temp file + fsync + rename;
 *    shards whose bytes the patch left unchanged stay the same files); model.json still names
 *    the old ones: the loader sees the old version, and recovery deletes these files (named like
 *    this writer's, named by nothing) even if the journal never became durable;
 * 3. the new model.json is written to `model.json.tmp-<id>` and fsynced (with the shards); once the
 *    journal is durable and every shard in place, the old model.json is hard-linked as
 *    `model.json.prev` (the previous version is kept), the folder is fsynced;
 * 4. every new file was read back after its fsync and compared with the bytes meant (the
 *    patched tensors' verified values, and the old shard's other bytes): a difference, and
 *    nothing switches;
 * 5. `model.json.tmp-<id>` is renamed over `model.json` and the folder fsynced (the switch);
 * 6. the health check runs; if it fails, `model.json.prev` is renamed back over `model.json`
 *    (rollback, atomic), the folder fsynced, the new shards and the journal deleted;
 * 7. if it passes, `model.json.prev` and the retired shards are deleted at once and the folder
 *    fsynced (the commit point of the confirmation: once any of these deletions is durable the
 *    previous version may be short of a shard, so recovery finishes the confirmation), then the
 *    journal is deleted;
 * 8. the tensor digests are recorded (src/io/tfjs/recorded-digests.ts, during step 7), so the next
 *    apply reads only the shards it patches, and the sequence number is recorded in the state file.
 *
 * {@link recoverModelDir}, run at the start of every apply (under the lock), finishes what a
 * crash interrupted, from the journal: model.json still the previous version → the update never
 * switched: its new files are deleted; model.json the new version with `model.json.prev` still
 * kept and every retired shard there → switched but never confirmed: rolled back; model.json the
 * new version and no `model.json.prev`, or a retired shard gone → confirmed (or the confirmation
 * had begun): `model.json.prev` and the retired shards are deleted. A `model.json.prev` no journal
 * names (someone's copy) is never touched. Temp files and shards named like this writer's that
 * model.json (and a kept previous version) do not name are deleted. After it, the same apply
 * runs again from the old version.
 */
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { ModelFormatError, ModelMismatchError, NeuralDiffError } from '../../core/errors.ts';
import { getHasher, type Hasher } from '../../core/hasher.ts';
import { MemoryWeightStore, type CommitInfo, type WeightStore } from '../../core/weight-store.ts';
import type { StorageGrid } from '../../core/grid.ts';
import { applyVerifiedPayload, verifyPayload, type ApplyOptions, type ApplyResult, type TwoPhaseWeightStore } from '../../apply/apply.ts';
import type { SequenceStore } from '../../apply/freshness.ts';
import { checkManifestNamesNoControlFiles, openTfjsModelDir, type BeforeWriteHook, type TfjsDirWeightStore } from './index.ts';
import { manifestPaths, parseModelJson } from './manifest.ts';
import { FileSequenceStore } from '../durable/sequence-file.ts';
import { readRecordedDigests, writeRecordedDigests } from './recorded-digests.ts';
import { errCode, forEachLimited, nodeFileOps, readRegularFile, TEMP_FILE, writeFileAtomically, type FileOps } from '../durable/durable.ts';
import { lockModelDir, type FolderOptions, type RecoveryReport } from '../durable/lock.ts';
import { readModelIdFile, writeModelIdFile } from '../durable/model-id-file.ts';
import { DEFAULT_STATE_FILE, FOLDER_FILE, JOURNAL_FILE, LOCK_FILE, MODEL_JSON, PREVIOUS_MODEL_JSON, controlFileProblem } from '../durable/control-files.ts';

export { LOCK_FILE, JOURNAL_FILE, FOLDER_FILE };
export { lockModelDir, type RecoveryReport, type FolderOptions };
/**
 * The name older appliers (before the update journal) gave the previous version after the
 * confirmation. This applier never writes it, and recovery leaves such a file alone.
 */
export const RETIRED_MODEL_JSON = 'model.json.retired';
/** Shard names this project's writer makes (content-addressed), safe to delete when unreferenced. */
const WRITER_SHARD = /^group\d+-shard\d+of\d+-[0-9a-f]{16}\.bin$/;

function emptyReport(): RecoveryReport {
  return { actions: [], rolledBack: false, removed: [] };
}

async function readIfExists(file: string): Promise<Uint8Array | null> {
  try {
    return await readFile(file);
  } catch (e) {
    if (errCode(e) === 'ENOENT') return null;
    throw e;
  }
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function pathsOf(bytes: Uint8Array, file: string, dir: string): Set<string> {
  return new Set(manifestPaths(parseModelJson(new TextDecoder().decode(bytes), file)).map((p) => path.resolve(dir, p)));
}

async function removeFile(ops: FileOps, dir: string, name: string, report: RecoveryReport): Promise<void> {
  try {
    await ops.unlink(path.join(dir, name));
    report.removed.push(name);
  } catch (e) {
    if (errCode(e) !== 'ENOENT') throw e;
  }
}

/** Files deleted at once: libuv's default thread pool size (freeing a shard's blocks takes about a millisecond). */
const REMOVERS = 4;

/**
 * Delete `names` (in the folder), {@link REMOVERS} at a time; `report.removed` lists them in
 * the order given. Every deletion has settled when this returns or throws.
 */
async function removeFiles(ops: FileOps, dir: string, names: readonly string[], report: RecoveryReport): Promise<void> {
  const gone: boolean[] = new Array(names.length).fill(false);
  try {
    await forEachLimited(names, REMOVERS, async (name, k) => {
      try {
        await ops.unlink(path.join(dir, name));
        gone[k] = true;
      } catch (e) {
        if (errCode(e) !== 'ENOENT') throw e;
      }
    });
  } finally {
    names.forEach((name, k) => gone[k] && report.removed.push(name));
  }
}

// ---------------------------------------------------------------------------------------------
// the update journal

/** `.ndiff-journal.json`: what an update in progress is about to do (see the module doc). */
interface Journal {
  format: 'neural-diff-journal';
  version: 1;
  /** Random id of the update (also in its temporary files' names). */
  id: string;
  startedAt: string;
  /** sha256 (hex) of model.json before the update: the bytes `model.json.prev` holds. */
  previous: string;
  /** sha256 (hex) of the new model.json. */
  next: string;
  /** Shards (names in the folder) the update creates. */
  created: string[];
  /** Shards of the previous version the new one does not name: deleted once confirmed. */
  retired: string[];
}

/** The journal of `dir`: absent, this applier's (parsed), or a file that is not one (left alone). */
async function readJournal(dir: string): Promise<{ journal?: Journal; unreadable?: string } | null> {
  let bytes: Uint8Array | null;
  try {
    bytes = await readRegularFile(path.join(dir, JOURNAL_FILE));
  } catch (e) {
    return { unreadable: (e as Error).message };
  }
  if (bytes === null) return null;
  let doc: Partial<Journal>;
  try {
    doc = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return { unreadable: 'not JSON' };
  }
  const hex = (v: unknown) => typeof v === 'string' && /^[0-9a-f]{64}$/.test(v);
  const names = (v: unknown) => Array.isArray(v) && v.every((n) => typeof n === 'string');
  if (doc?.format !== 'neural-diff-journal' || doc.version !== 1 || typeof doc.id !== 'string' || !hex(doc.previous) || !hex(doc.next) || !names(doc.created) || !names(doc.retired)) {
    return { unreadable: 'not a neural-diff update journal of version 1' };
  }
  return { journal: doc as Journal };
}

/** Write the journal durably: it must be on disk before any file it names is. */
async function writeJournal(ops: FileOps, dir: string, journal: Journal): Promise<void> {
  // Under the lock, after recovery deleted every temp file nothing names: nothing to sweep.
  await writeFileAtomically(path.join(dir, JOURNAL_FILE), new TextEncoder().encode(JSON.stringify(journal, null, 1) + '\n'), { fileOps: ops, sweep: false });
}

/**
 * Of `names` (a journal's list), the ones to delete: directly in the folder, not named by
 * `keep`, never a file the applier owns (the manifest was checked when the update started;
 * this keeps a hand-edited journal from deleting them).
 */
function deletable(dir: string, names: readonly string[], keep: ReadonlySet<string>): string[] {
  return names.filter((name) => {
    const file = path.resolve(dir, name);
    return path.dirname(file) === path.resolve(dir) && !keep.has(file) && !controlFileProblem(dir, name);
  }).map((name) => path.basename(name));
}

/** Delete the files an update created that model.json (and a kept previous version) do not name. */
async function removeCreated(ops: FileOps, dir: string, journal: Journal, report: RecoveryReport): Promise<void> {
  await removeFiles(ops, dir, deletable(dir, journal.created, await referencedNow(dir)), report);
}

/**
 * The first retired shard of the journal (one the new model.json `next` does not name) that is
 * no longer in the folder, or undefined.
 */
async function retiredShardGone(dir: string, journal: Journal, next: Uint8Array): Promise<string | undefined> {
  let keep: Set<string>;
  try {
    keep = pathsOf(next, path.join(dir, MODEL_JSON), dir);
  } catch {
    return undefined;
  }
  for (const name of deletable(dir, journal.retired, keep)) {
    try {
      await lstat(path.join(dir, name));
    } catch (e) {
      if (errCode(e) === 'ENOENT') return name;
      // A name that cannot be looked up (a hand-edited journal): not evidence of a confirmation.
    }
  }
  return undefined;
}

/** Delete the retired shards of a confirmed update that model.json does not name. */
async function removeRetired(ops: FileOps, dir: string, journal: Journal, report: RecoveryReport): Promise<void> {
  await removeFiles(ops, dir, deletable(dir, journal.retired, await referencedNow(dir)), report);
}

/**
 * Every file model.json and a kept model.json.prev name (resolved paths); `current` is
 * model.json's bytes when already read, `hasPrevious` false when a listing showed no
 * model.json.prev.
 */
async function referencedNow(dir: string, current?: Uint8Array, hasPrevious = true): Promise<Set<string>> {
  const out = new Set<string>();
  for (const name of [MODEL_JSON, PREVIOUS_MODEL_JSON]) {
    if (name === PREVIOUS_MODEL_JSON && !hasPrevious) continue;
    const bytes = name === MODEL_JSON && current ? current : await readIfExists(path.join(dir, name));
    if (bytes === null) continue;
    try {
      for (const p of pathsOf(bytes, path.join(dir, name), dir)) out.add(p);
    } catch {
      /* unreadable: it names nothing we could keep or delete */
    }
  }
  return out;
}

/**
 * Delete temp files and writer-made shards that model.json (and a kept previous version) do not
 * name. `names` is the folder's listing.
 */
async function collectGarbage(ops: FileOps, dir: string, names: readonly string[], report: RecoveryReport): Promise<void> {
  // Only such files are ever deleted: without one there is nothing to read.
  const candidates = names.filter((name) => TEMP_FILE.test(name) || WRITER_SHARD.test(name)).sort();
  if (candidates.length === 0) return;
  const current = await readIfExists(path.join(dir, MODEL_JSON));
  if (current === null) return; // nothing to attribute shards to: delete nothing
  const referenced = await referencedNow(dir, current, names.includes(PREVIOUS_MODEL_JSON));
  const before = report.removed.length;
  for (const name of candidates) {
    // Never a file model.json (or a kept previous version) names, whatever its name.
    if (referenced.has(path.resolve(dir, name))) continue;
    await removeFile(ops, dir, name, report);
  }
  if (report.removed.length > before) await ops.syncDir(dir);
}

/**
 * Finish or undo the update the journal describes, by what model.json and `model.json.prev`
 * hold now (see the module doc), then delete the journal.
 *
 * @throws ModelFormatError when model.json is neither version the journal names (then nothing
 *   is touched).
 */
async function settleJournal(ops: FileOps, dir: string, journal: Journal, report: RecoveryReport, mode: 'recover' | 'rollback' = 'recover'): Promise<void> {
  const modelFile = path.join(dir, MODEL_JSON);
  const prevFile = path.join(dir, PREVIOUS_MODEL_JSON);
  const current = await readIfExists(modelFile);
  const prev = await readIfExists(prevFile);
  const currentIs = current === null ? 'missing' : sha256(current) === journal.previous ? 'previous' : sha256(current) === journal.next ? 'next' : 'other';
  // The kept previous version is the update's only if its bytes are the ones the journal recorded.
  const prevIsOurs = prev !== null && sha256(prev) === journal.previous;
  const tag = `update ${journal.id}`;
  // The confirmation deletes model.json.prev and the retired shards under one folder fsync: a
  // retired shard already gone means it began, and the previous version cannot come back whole.
  const confirming = currentIs === 'next' && prevIsOurs && (await retiredShardGone(dir, journal, current as Uint8Array));
  if (confirming && mode === 'rollback') {
    throw new ModelFormatError(
      `cannot roll back ${dir}: the previous version's shard ${confirming} is gone (the update's confirmation had begun, or the file was deleted by hand); the folder stays at the new version. Restore the model from the full download if the new version is not wanted`,
      { dir, journal: journal.id, missing: confirming },
    );
  }

  if (currentIs === 'previous') {
    // Never switched: drop the kept copy and the new files.
    if (prevIsOurs) await removeFile(ops, dir, PREVIOUS_MODEL_JSON, report);
    await removeCreated(ops, dir, journal, report);
    await ops.syncDir(dir);
    report.actions.push(`${tag} was interrupted before its switch: the model is the previous version; removed its new files`);
  } else if (currentIs === 'next' && prevIsOurs && !confirming) {
    // Switched, never confirmed: the previous version comes back (atomic rename), durably,
    // before anything else is deleted.
    await ops.rename(prevFile, modelFile);
    await ops.syncDir(dir);
    report.rolledBack = true;
    await removeCreated(ops, dir, journal, report);
    report.actions.push(`${tag} was interrupted after its switch but before it was confirmed: rolled back to the previous version`);
  } else if (currentIs === 'next') {
    // Confirmed (the kept copy is gone, or a retired shard: the confirmation had begun): finish
    // deleting the kept copy and the retired shards, durably, before the journal that lists
    // them goes.
    if (prevIsOurs) await removeFile(ops, dir, PREVIOUS_MODEL_JSON, report);
    await removeRetired(ops, dir, journal, report);
    await ops.syncDir(dir);
    report.actions.push(`${tag} was confirmed; finished deleting the shards of the previous version`);
  } else {
    throw new ModelFormatError(
      `${dir} holds the journal of ${tag} (from ${journal.startedAt}), but ${MODEL_JSON} is ${currentIs === 'missing' ? 'missing' : 'neither the version it started from nor the one it wrote'}: expected one of them; the folder was changed by hand during an update. Nothing was touched: restore the model from the full download, then delete ${JOURNAL_FILE}`,
      { dir, journal: journal.id },
    );
  }
  await removeFile(ops, dir, JOURNAL_FILE, report);
}

/**
 * Bring a model folder back to a confirmed version after an interrupted update, and delete the
 * leftovers. Acts only on the update journal this applier wrote (a `model.json.prev` or
 * `model.json.retired` no journal names is left alone, and reported). Safe to call at any time
 * (one writer per folder: take {@link lockModelDir} first); does nothing on a clean folder.
 *
 * @throws ModelFormatError when the journal names an update model.json is no version of.
 */
export async function recoverModelDir(dir: string, options: FolderOptions = {}): Promise<RecoveryReport> {
  const ops = options.fileOps ?? nodeFileOps;
  const report = emptyReport();
  // One listing says which of the files below exist; a clean folder costs it and model.json.
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if (errCode(e) === 'ENOENT' || errCode(e) === 'ENOTDIR') return report; // no folder: nothing to recover
    throw e;
  }
  const read = names.includes(JOURNAL_FILE) ? await readJournal(dir) : null;
  if (read?.journal) {
    await settleJournal(ops, dir, read.journal, report);
    names = await readdir(dir); // settling deleted files
  } else if (read?.unreadable) report.actions.push(`left ${JOURNAL_FILE} alone: ${read.unreadable} (this applier writes only its own format there; an update will replace it)`);
  // Settling the journal removed the kept previous version it named: one still there is not ours.
  for (const name of [PREVIOUS_MODEL_JSON, RETIRED_MODEL_JSON]) {
    if (names.includes(name) && (await readIfExists(path.join(dir, name))) !== null) {
      report.actions.push(`left ${name} alone: no update journal names it, so this applier did not write it (a copy kept by hand, or an older applier's)`);
    }
  }
  const before = report.removed.length;
  await collectGarbage(ops, dir, names, report);
  if (report.removed.length > before && !read?.journal) report.actions.push(`removed ${report.removed.length - before} leftover file(s) of an interrupted write`);
  return report;
}

/**
 * Confirm the update this apply just switched to, from what it wrote (its journal and the new
 * model.json's bytes) instead of reading them back: drop the kept previous version, then the
 * retired shards the new model.json does not name, under one folder fsync (the commit point:
 * once any of these deletions is on disk, recovery finishes the confirmation instead of
 * rolling back), then the journal. The apply holds the folder's lock, so nothing else changed them.
 */
async function confirmWritten(ops: FileOps, dir: string, journal: Journal, nextModelJson: Uint8Array): Promise<void> {
  const report = emptyReport();
  // model.json.prev first: if deleting it fails, nothing else was deleted and a rollback is
  // still possible; the retired shards without waiting for a folder fsync in between (the list
  // is worked out while model.json.prev is being deleted).
  const previousGone = removeFile(ops, dir, PREVIOUS_MODEL_JSON, report);
  let retired: string[];
  try {
    retired = deletable(dir, journal.retired, pathsOf(nextModelJson, path.join(dir, MODEL_JSON), dir));
  } finally {
    await previousGone;
  }
  await removeFiles(ops, dir, retired, report);
  await ops.syncDir(dir); // the commit point of the confirmation
  await removeFile(ops, dir, JOURNAL_FILE, report);
}

/** Keep the new version: drop the previous one and the retired shards (no-op without a journal). */
export async function confirmUpdate(dir: string, options: FolderOptions = {}): Promise<void> {
  const ops = options.fileOps ?? nodeFileOps;
  const read = await readJournal(dir);
  if (!read?.journal) return;
  const report = emptyReport();
  const prev = await readIfExists(path.join(dir, PREVIOUS_MODEL_JSON));
  if (prev !== null && sha256(prev) === read.journal.previous) {
    await removeFile(ops, dir, PREVIOUS_MODEL_JSON, report);
    await ops.syncDir(dir); // the commit point of the confirmation
  }
  await settleJournal(ops, dir, read.journal, report);
}

/** Make the kept previous version current again, atomically, and delete the new files. */
export async function rollbackUpdate(dir: string, options: FolderOptions = {}): Promise<void> {
  const ops = options.fileOps ?? nodeFileOps;
  const read = await readJournal(dir);
  const prev = await readIfExists(path.join(dir, PREVIOUS_MODEL_JSON));
  if (!read?.journal || prev === null || sha256(prev) !== read.journal.previous) {
    throw new ModelFormatError(`cannot roll back ${dir}: expected an update journal and the previous version it names in ${PREVIOUS_MODEL_JSON}, found ${!read?.journal ? 'no journal' : 'no such previous version'} (another process finished or undid the update?)`, { dir });
  }
  await settleJournal(ops, dir, read.journal, emptyReport(), 'rollback');
}

// ---------------------------------------------------------------------------------------------
// the folder's model id

/** The model id recorded in `dir` by its first apply, or undefined. */
export function readFolderModelId(dir: string): Promise<string | undefined> {
  return readModelIdFile(path.join(dir, FOLDER_FILE), 'neural-diff-folder');
}

/**
 * Record `modelId` as the model `dir` holds (`.ndiff-folder.json`, durably): applies then refuse
 * payloads of another id. An apply records it itself when it first confirms an update; a build
 * server records it in a folder it makes (`ndiff diff --model-out`), so the next diff made
 * against that folder carries the same id.
 */
export async function recordFolderModelId(dir: string, modelId: string, options: FolderOptions = {}): Promise<void> {
  await writeFolderModelId(options.fileOps ?? nodeFileOps, dir, modelId);
}

function writeFolderModelId(ops: FileOps, dir: string, modelId: string): Promise<void> {
  return writeModelIdFile(path.join(dir, FOLDER_FILE), 'neural-diff-folder', modelId, { fileOps: ops });
}

// ---------------------------------------------------------------------------------------------
// the lock

// ---------------------------------------------------------------------------------------------
// applying

/**
 * The folder store during an apply: commits keep the previous version until confirmed (with the
 * journal written first), and a confirmed version's digests are recorded for the next apply.
 */
class UpdatingModelDir implements TwoPhaseWeightStore {
  /** What the applier committed (set during {@link commit}). */
  committing?: { changed: readonly string[]; info: CommitInfo };
  constructor(
    private readonly disk: TfjsDirWeightStore,
    private readonly dir: string,
    private readonly ops: FileOps,
    /** The model id to record in the folder once the update is confirmed (undefined: already recorded). */
    private readonly pinModelId: string | undefined,
    /** The journal this apply wrote and the new model.json's bytes (set when it writes them). */
    private readonly written: () => { journal: Journal; nextModelJson: Uint8Array } | undefined,
  ) {}
  list() {
    return this.disk.list();
  }
  values(name: string): Float32Array {
    return this.disk.values(name);
  }
  read(name: string): Float32Array {
    return this.disk.read(name);
  }
  forget(name: string): boolean {
    return this.disk.forget(name);
  }
  digest(name: string): string | undefined {
    return this.disk.digest(name);
  }
  grid(name: string): StorageGrid {
    return this.disk.grid(name);
  }
  settled(name: string, pending: ReadonlySet<string>): Promise<void> {
    return this.disk.settled(name, pending);
  }
  async commit(changed: readonly string[], info?: CommitInfo): Promise<void> {
    this.committing = info && { changed, info };
    try {
      await this.disk.commit(changed);
    } catch (e) {
      // Whatever the write left (its journal, a kept previous version, new shards): settled
      // from the journal, so the folder holds the version it held before.
      await recoverModelDir(this.dir, { fileOps: this.ops }).catch(() => {});
      throw e;
    }
  }
  async confirmCommit(): Promise<void> {
    // The tensor digests, recorded while the update is confirmed: only a cache (tied to the new
    // files' identities, so it vouches for nothing if the folder ends at the previous version);
    // without it the next apply reads and hashes every tensor.
    const committed = this.committing;
    // The confirmation's first deletion is on its way before the cache is worked out.
    const written = this.written();
    const confirming = written ? confirmWritten(this.ops, this.dir, written.journal, written.nextModelJson) : confirmUpdate(this.dir, { fileOps: this.ops });
    confirming.catch(() => {}); // awaited below
    const recorded = committed ? writeRecordedDigests(this.dir, this.disk.digestRecords(committed.info.digests), { durable: false, fileOps: this.ops, sweep: false }).catch(() => {}) : undefined;
    try {
      await confirming;
      // The folder remembers the model id of the first payload confirmed in it (durably, before
      // the sequence is recorded), so later payloads of another id are refused.
      if (this.pinModelId !== undefined) await writeFolderModelId(this.ops, this.dir, this.pinModelId);
    } finally {
      await recorded;
    }
  }
  async revertCommit(): Promise<void> {
    if ((await readJournal(this.dir))?.journal) await rollbackUpdate(this.dir, { fileOps: this.ops });
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
   * (default) trusts the digests the last confirmed apply recorded (src/io/tfjs/recorded-digests.ts)
   * while their files are unchanged, so only the patched tensors' shards are read; `'full'`
   * reads and hashes every tensor. The patched tensors are always read and hashed.
   */
  baseCheck?: 'recorded' | 'full';
  /** The file operations that change the folder (default: node:fs; tests record them). */
  fileOps?: FileOps;
}

export interface ModelDirApplyResult extends ApplyResult {
  /** What was recovered from an earlier interrupted apply before this one ran. */
  recovery: RecoveryReport;
}

function resolveState(dir: string, state: ModelDirApplyOptions['state'], ops: FileOps): SequenceStore | undefined {
  if (state === null) return undefined;
  if (state === undefined) return new FileSequenceStore(path.join(dir, DEFAULT_STATE_FILE), { fileOps: ops });
  if (typeof state === 'string') return new FileSequenceStore(state, { fileOps: ops });
  return state;
}

/**
 * The model id payloads must carry: the caller's (`expectedModelId`), else the one the folder
 * recorded at its first apply. Both set and different is refused.
 */
function modelIdFor(dir: string, expected: string | undefined, recorded: string | undefined): string | undefined {
  if (expected !== undefined && recorded !== undefined && expected !== recorded) {
    throw new ModelMismatchError(
      `this folder holds model ${JSON.stringify(recorded)} (recorded in ${path.join(dir, FOLDER_FILE)} by its first apply), but expectedModelId is ${JSON.stringify(expected)}: expected them to agree; check which model this folder is, and pass its id`,
      { dir, expected, found: recorded },
    );
  }
  return expected ?? recorded;
}

/**
 * Verify `payloadBytes` and apply it to the model folder `dir`, crash-safely (see the module
 * doc). A payload refused by the signature policy or the decoder touches nothing; otherwise an
 * interrupted earlier apply is recovered first. On any error the folder holds the version it
 * held before this call (or the recovered one) and a typed error says what to do; when a
 * recovery ran first, the error's `details.recovery` says what it did.
 *
 * The folder remembers the model id of the first payload that commits to it
 * (`.ndiff-folder.json`); later payloads must carry the same id (as with `expectedModelId`).
 */
export async function applyToModelDir(dir: string, payloadBytes: Uint8Array, options: ModelDirApplyOptions = {}): Promise<ModelDirApplyResult> {
  const verified = await verifyPayload(payloadBytes, options);
  const ops = options.fileOps ?? nodeFileOps;
  const sequences = resolveState(dir, options.state, ops);
  const { dryRun, healthCheck, shardBytes, quantizedUnchanged } = options;
  // A state file kept in the folder under another name is the applier's too.
  const reservedFiles = typeof options.state === 'string' ? [path.resolve(options.state)] : [];
  // Before the lock and the recovery, which delete files of the applier's (stale locks, temporary
  // files): a manifest that names one as a weight shard is refused with nothing touched.
  await checkManifestNamesNoControlFiles(dir, reservedFiles);

  if (dryRun) {
    const expectedModelId = modelIdFor(dir, options.expectedModelId, await readFolderModelId(dir));
    const disk = await openTfjsModelDir(dir, { reservedFiles });
    const copy = MemoryWeightStore.copyOf(disk);
    // The copy keeps the folder's storage grids, so a dry run refuses a grid mismatch too.
    (copy as WeightStore).grid = (name: string) => disk.grid(name);
    const readOnly: SequenceStore | undefined = sequences && { get: (id) => sequences.get(id), set: () => {} };
    const res = await applyVerifiedPayload(copy, verified, { ...options, expectedModelId, sequenceStore: readOnly, healthCheck: undefined });
    return { ...res, sequenceRecorded: false, recovery: emptyReport() };
  }

  const unlock = await lockModelDir(dir, { fileOps: ops });
  let recovery = emptyReport();
  let disk: TfjsDirWeightStore | undefined;
  try {
    recovery = await recoverModelDir(dir, { fileOps: ops });
    // Three independent reads at once, their failures reported in this order.
    const idRead = readFolderModelId(dir);
    const hasherRead: Promise<Hasher> = options.hasher && typeof options.hasher === 'object' ? Promise.resolve(options.hasher) : getHasher(options.hasher ? { prefer: options.hasher } : undefined);
    const digestsRead = options.baseCheck === 'full' ? undefined : readRecordedDigests(dir);
    for (const p of [idRead, hasherRead, digestsRead]) p?.catch(() => {});
    const recordedModelId = await idRead;
    const expectedModelId = modelIdFor(dir, options.expectedModelId, recordedModelId);
    const hasher = await hasherRead;
    const recordedDigests = await digestsRead;
    // The journal, written durably before the update writes anything (module doc, step 1).
    let written: { journal: Journal; nextModelJson: Uint8Array } | undefined;
    const onBeforeWrite: BeforeWriteHook = async ({ id, previousModelJson, nextModelJson, createdShards, retiredShards }) => {
      const journal: Journal = {
        format: 'neural-diff-journal',
        version: 1,
        id,
        startedAt: new Date().toISOString(),
        previous: sha256(previousModelJson ?? new Uint8Array()),
        next: sha256(nextModelJson),
        created: [...createdShards],
        retired: [...retiredShards],
      };
      await writeJournal(ops, dir, journal);
      written = { journal, nextModelJson };
    };
    disk = await openTfjsModelDir(dir, {
      lazy: true,
      recordedDigests,
      reservedFiles,
      keepPrevious: true,
      fileOps: ops,
      onBeforeWrite,
      ...(shardBytes !== undefined ? { shardBytes } : {}),
      ...(quantizedUnchanged !== undefined ? { quantizedUnchanged } : {}),
      // Every new file is read back after its fsync and compared with the bytes meant, before
      // the switch: a loader must never see files other than the verified target's.
      verifyWrites: true,
      // A shard is written as soon as its patched tensors are verified, while the rest are
      // patched; the staged files this apply does not switch to are deleted below.
      stageWrites: true,
      // ... and the arrays of tensors whose new shards are written are let go and reused for the
      // next ones read: a spread diff holds a few shards in memory, not every tensor it patches.
      releaseWritten: true,
    });
    const pin = recordedModelId === undefined ? verified.payload.header.modelId : undefined;
    const store = new UpdatingModelDir(disk, dir, ops, pin, () => written);
    const res = await applyVerifiedPayload(store, verified, {
      ...options,
      expectedModelId,
      hasher,
      sequenceStore: sequences,
      healthCheck: healthCheck && ((info) => healthCheck({ dir, ...info })),
    });
    // Already at the target (nothing committed): the folder is this model's all the same.
    if (pin !== undefined && res.status === 'already-applied') await writeFolderModelId(ops, dir, pin);
    return { ...res, recovery };
  } catch (e) {
    if (e instanceof NeuralDiffError && recovery.actions.length > 0) (e.details as Record<string, unknown>).recovery = recovery;
    throw e;
  } finally {
    await disk?.dropStaged();
    await unlock();
  }
}
