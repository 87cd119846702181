/**
 * The journal of the crash-safe TF.js folder update and what acts on it: recovery, confirmation,
 * rollback, the model id and state records (the folder's states are described in
 * folder-update.ts). Shared by value payloads (`applyToModelDir`, folder-update.ts) and
 * structural payloads (`rebuildModelDir`, folder-rebuild.ts), so a crash in either is finished
 * the same way.
 */
import { createHash } from 'node:crypto';
import { lstat, readdir } from 'node:fs/promises';
import * as path from 'node:path';
import { ModelFormatError, ModelMismatchError } from '../../core/errors.ts';
import { type WeightStore } from '../../core/weight-store.ts';
import { type ApplyOptions, type ApplyResult } from '../../apply/apply.ts';
import type { SequenceStore } from '../../apply/freshness.ts';
import { locateModelFiles } from './index.ts';
import { manifestPaths, parseModelJson } from './manifest.ts';
import { namedByOtherModels } from './shared-folder.ts';
import { FileSequenceStore } from '../durable/sequence-file.ts';
import { errCode, forEachLimited, nodeFileOps, readIfExists, readRegularFile, writeFileAtomically, type FileOps } from '../durable/durable.ts';
import { lockModelDir, type FolderOptions, type RecoveryReport } from '../durable/lock.ts';
import { settlePendingSwitch, type PendingOptions } from '../durable/pending-update.ts';
import { readModelIdFile, writeModelIdFile } from '../durable/model-id-file.ts';
import { DEFAULT_STATE_FILE, FOLDER_FILE, JOURNAL_FILE, LOCK_FILE, PREVIOUS_MODEL_JSON, controlFileProblem, isOwnTempFile, writerShardPattern, type ModelFiles } from '../durable/control-files.ts';

export { LOCK_FILE, JOURNAL_FILE, FOLDER_FILE };
export { lockModelDir, type RecoveryReport, type FolderOptions };
/**
 * The name older appliers (before the update journal) gave the previous version after the
 * confirmation. This applier never writes it, and recovery leaves such a file alone.
 */
export const RETIRED_MODEL_JSON = 'model.json.retired';

function emptyReport(): RecoveryReport {
  return { actions: [], rolledBack: false, removed: [] };
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
  /**
   * True when a health check confirms the update: a switch left unconfirmed is then finished by
   * the next command's health check, or refused without one (src/io/durable/pending-update.ts).
   */
  awaitsHealthCheck?: boolean;
}

/** The model's journal in `dir`: absent, this applier's (parsed), or a file that is not one (left alone). */
async function readJournal(dir: string, files: ModelFiles): Promise<{ journal?: Journal; unreadable?: string } | null> {
  let bytes: Uint8Array | null;
  try {
    bytes = await readRegularFile(path.join(dir, files.journal));
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
async function writeJournal(ops: FileOps, dir: string, files: ModelFiles, journal: Journal): Promise<void> {
  // Under the lock, after recovery deleted every temp file nothing names: nothing to sweep.
  await writeFileAtomically(path.join(dir, files.journal), new TextEncoder().encode(JSON.stringify(journal, null, 1) + '\n'), { fileOps: ops, sweep: false });
}

/**
 * Of `names` (a journal's list), the ones to delete: directly in the folder, not named by
 * `keep`, never a file the applier owns (the manifest was checked when the update started;
 * this keeps a hand-edited journal from deleting them).
 */
function deletable(dir: string, files: ModelFiles, names: readonly string[], keep: ReadonlySet<string>): string[] {
  return names.filter((name) => {
    const file = path.resolve(dir, name);
    return path.dirname(file) === path.resolve(dir) && !keep.has(file) && !controlFileProblem(dir, name, [], files.shared);
  }).map((name) => path.basename(name));
}

/** Delete the files an update created that model.json (and a kept previous version) do not name. */
async function removeCreated(ops: FileOps, dir: string, files: ModelFiles, journal: Journal, report: RecoveryReport): Promise<void> {
  await removeFiles(ops, dir, deletable(dir, files, journal.created, await referencedNow(dir, files)), report);
}

/**
 * The first retired shard of the journal (one the new model.json `next` does not name) that is
 * no longer in the folder, or undefined.
 */
async function retiredShardGone(dir: string, files: ModelFiles, journal: Journal, next: Uint8Array): Promise<string | undefined> {
  let keep: Set<string>;
  try {
    keep = pathsOf(next, path.join(dir, files.model), dir);
  } catch {
    return undefined;
  }
  for (const name of deletable(dir, files, journal.retired, keep)) {
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
async function removeRetired(ops: FileOps, dir: string, files: ModelFiles, journal: Journal, report: RecoveryReport): Promise<void> {
  await removeFiles(ops, dir, deletable(dir, files, journal.retired, await referencedNow(dir, files)), report);
}

/**
 * Every file model.json and a kept model.json.prev name (resolved paths), and in a shared folder
 * every file the other models name; `current` is model.json's bytes when already read,
 * `hasPrevious` false when a listing showed no model.json.prev.
 */
async function referencedNow(dir: string, files: ModelFiles, current?: Uint8Array, hasPrevious = true): Promise<Set<string>> {
  const out = await namedByOtherModels(dir, files);
  for (const name of [files.model, files.previous]) {
    if (name === files.previous && !hasPrevious) continue;
    const bytes = name === files.model && current ? current : await readIfExists(path.join(dir, name));
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
 * name. `names` is the folder's listing. In a shared folder, only this model's (named after its
 * file), never a file another model names.
 */
async function collectGarbage(ops: FileOps, dir: string, files: ModelFiles, names: readonly string[], report: RecoveryReport): Promise<void> {
  // Only such files are ever deleted: without one there is nothing to read.
  const writerShard = writerShardPattern(files);
  const candidates = names.filter((name) => isOwnTempFile(files, name) || writerShard.test(name)).sort();
  if (candidates.length === 0) return;
  const current = await readIfExists(path.join(dir, files.model));
  if (current === null) return; // nothing to attribute shards to: delete nothing
  const referenced = await referencedNow(dir, files, current, names.includes(files.previous));
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
async function settleJournal(ops: FileOps, dir: string, files: ModelFiles, journal: Journal, report: RecoveryReport, mode: 'recover' | 'rollback' = 'recover', pending: PendingOptions = {}): Promise<void> {
  const modelFile = path.join(dir, files.model);
  const prevFile = path.join(dir, files.previous);
  const current = await readIfExists(modelFile);
  const prev = await readIfExists(prevFile);
  const currentIs = current === null ? 'missing' : sha256(current) === journal.previous ? 'previous' : sha256(current) === journal.next ? 'next' : 'other';
  // The kept previous version is the update's only if its bytes are the ones the journal recorded.
  const prevIsOurs = prev !== null && sha256(prev) === journal.previous;
  const tag = `update ${journal.id}`;
  // The confirmation deletes model.json.prev and the retired shards under one folder fsync: a
  // retired shard already gone means it began, and the previous version cannot come back whole.
  const confirming = currentIs === 'next' && prevIsOurs && (await retiredShardGone(dir, files, journal, current as Uint8Array));
  if (confirming && mode === 'rollback') {
    throw new ModelFormatError(
      `cannot roll back ${modelFile}: the previous version's shard ${confirming} is gone (the update's confirmation had begun, or the file was deleted by hand); the folder stays at the new version. Restore the model from the full download if the new version is not wanted`,
      { dir, journal: journal.id, missing: confirming },
    );
  }

  if (currentIs === 'previous') {
    // Never switched: drop the kept copy and the new files.
    if (prevIsOurs) await removeFile(ops, dir, files.previous, report);
    await removeCreated(ops, dir, files, journal, report);
    await ops.syncDir(dir);
    report.actions.push(`${tag} was interrupted before its switch: the model is the previous version; removed its new files`);
  } else if (currentIs === 'next' && prevIsOurs && !confirming) {
    // Switched, never confirmed: the previous version comes back (atomic rename, durably, before
    // anything else is deleted), or the command's health check confirms the new one: the one
    // way every command finishes such a switch (src/io/durable/pending-update.ts).
    const rollBack = async () => {
      await ops.rename(prevFile, modelFile);
      await ops.syncDir(dir);
      await removeCreated(ops, dir, files, journal, report);
    };
    if (mode === 'rollback') {
      await rollBack();
      report.rolledBack = true;
      report.actions.push(`${tag} was interrupted after its switch but before it was confirmed: rolled back to the previous version`);
    } else {
      await settlePendingSwitch({
        model: modelFile,
        what: tag,
        awaitsHealthCheck: journal.awaitsHealthCheck === true,
        // As the apply confirms: the kept copy and the retired shards go under one folder fsync.
        confirm: async () => {
          await removeFile(ops, dir, files.previous, report);
          await removeRetired(ops, dir, files, journal, report);
          await ops.syncDir(dir);
        },
        rollBack,
      }, pending, report);
    }
  } else if (currentIs === 'next') {
    // Confirmed (the kept copy is gone, or a retired shard: the confirmation had begun): finish
    // deleting the kept copy and the retired shards, durably, before the journal that lists
    // them goes.
    if (prevIsOurs) await removeFile(ops, dir, files.previous, report);
    await removeRetired(ops, dir, files, journal, report);
    await ops.syncDir(dir);
    report.actions.push(`${tag} was confirmed; finished deleting the shards of the previous version`);
  } else {
    throw new ModelFormatError(
      `${dir} holds the journal of ${tag} (from ${journal.startedAt}, ${files.journal}), but ${files.model} is ${currentIs === 'missing' ? 'missing' : 'neither the version it started from nor the one it wrote'}: expected one of them; the model was changed by hand during an update. Nothing was touched: restore the model from the full download, then delete ${files.journal}`,
      { dir, journal: journal.id, file: files.journal },
    );
  }
  await removeFile(ops, dir, files.journal, report);
}

/**
 * Bring a model back to a confirmed version after an interrupted update, and delete the
 * leftovers. `model` is a folder (`model.json`), or a model JSON file sharing its folder with
 * other models (its own journal, kept version and shards are recovered; the other models' files
 * are never touched). Acts only on the update journal this applier wrote (a `model.json.prev` or
 * `model.json.retired` no journal names is left alone, and reported). An update switched in but
 * never confirmed is finished by `options.healthCheck` (confirmed if it passes, rolled back if
 * not), refused without one when the update awaited a health check, else rolled back
 * (src/io/durable/pending-update.ts); the report's `pending` says which. Safe to call at any time
 * (one writer per folder: take {@link lockModelDir} of the folder first); does nothing on a clean
 * folder.
 *
 * @throws ModelFormatError when the journal names an update model.json is no version of.
 * @throws PendingUpdateError when an unconfirmed update awaits a health check and none is given.
 */
export async function recoverModelDir(model: string, options: FolderOptions & { healthCheck?: (info: { dir: string; file: string }) => boolean | void | Promise<boolean | void> } = {}): Promise<RecoveryReport> {
  const { dir, files } = await locateModelFiles(model);
  const healthCheck = options.healthCheck;
  return recoverModel(options.fileOps ?? nodeFileOps, dir, files, { healthCheck: healthCheck && (() => healthCheck({ dir, file: path.join(dir, files.model) })) });
}

async function recoverModel(ops: FileOps, dir: string, files: ModelFiles, pending: PendingOptions = {}): Promise<RecoveryReport> {
  const report = emptyReport();
  // One listing says which of the files below exist; a clean folder costs it and model.json.
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if (errCode(e) === 'ENOENT' || errCode(e) === 'ENOTDIR') return report; // no folder: nothing to recover
    throw e;
  }
  const read = names.includes(files.journal) ? await readJournal(dir, files) : null;
  if (read?.journal) {
    await settleJournal(ops, dir, files, read.journal, report, 'recover', pending);
    names = await readdir(dir); // settling deleted files
  } else if (read?.unreadable) report.actions.push(`left ${files.journal} alone: ${read.unreadable} (this applier writes only its own format there; an update will replace it)`);
  // Settling the journal removed the kept previous version it named: one still there is not ours.
  for (const name of files.shared ? [files.previous] : [PREVIOUS_MODEL_JSON, RETIRED_MODEL_JSON]) {
    if (names.includes(name) && (await readIfExists(path.join(dir, name))) !== null) {
      report.actions.push(`left ${name} alone: no update journal names it, so this applier did not write it (a copy kept by hand, or an older applier's)`);
    }
  }
  const before = report.removed.length;
  await collectGarbage(ops, dir, files, names, report);
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
async function confirmWritten(ops: FileOps, dir: string, files: ModelFiles, journal: Journal, nextModelJson: Uint8Array): Promise<void> {
  const report = emptyReport();
  // model.json.prev first: if deleting it fails, nothing else was deleted and a rollback is
  // still possible; the retired shards without waiting for a folder fsync in between (the list
  // is worked out while model.json.prev is being deleted).
  const previousGone = removeFile(ops, dir, files.previous, report);
  previousGone.catch(() => {}); // awaited (and thrown) below, after the listing's I/O
  let retired: string[];
  try {
    // In a shared folder, never a shard another model names.
    // A model file beside it that became unreadable since the apply began: delete nothing (fail closed).
    const keep = await namedByOtherModels(dir, files).catch(() => undefined);
    for (const p of pathsOf(nextModelJson, path.join(dir, files.model), dir)) keep?.add(p);
    retired = keep ? deletable(dir, files, journal.retired, keep) : [];
  } finally {
    await previousGone;
  }
  await removeFiles(ops, dir, retired, report);
  await ops.syncDir(dir); // the commit point of the confirmation
  await removeFile(ops, dir, files.journal, report);
}

/**
 * Keep the new version: drop the previous one and the retired shards (no-op without a journal).
 * `model` is a folder or a model JSON file, as for {@link recoverModelDir}.
 */
export async function confirmUpdate(model: string, options: FolderOptions = {}): Promise<void> {
  const { dir, files } = await locateModelFiles(model);
  await confirmModel(options.fileOps ?? nodeFileOps, dir, files);
}

async function confirmModel(ops: FileOps, dir: string, files: ModelFiles): Promise<void> {
  const read = await readJournal(dir, files);
  if (!read?.journal) return;
  const report = emptyReport();
  const prev = await readIfExists(path.join(dir, files.previous));
  if (prev !== null && sha256(prev) === read.journal.previous) {
    await removeFile(ops, dir, files.previous, report);
    await ops.syncDir(dir); // the commit point of the confirmation
  }
  await settleJournal(ops, dir, files, read.journal, report);
}

/**
 * Make the kept previous version current again, atomically, and delete the new files. `model`
 * is a folder or a model JSON file, as for {@link recoverModelDir}.
 */
export async function rollbackUpdate(model: string, options: FolderOptions = {}): Promise<void> {
  const { dir, files } = await locateModelFiles(model);
  await rollbackModel(options.fileOps ?? nodeFileOps, dir, files);
}

async function rollbackModel(ops: FileOps, dir: string, files: ModelFiles): Promise<void> {
  const read = await readJournal(dir, files);
  const prev = await readIfExists(path.join(dir, files.previous));
  if (!read?.journal || prev === null || sha256(prev) !== read.journal.previous) {
    throw new ModelFormatError(`cannot roll back ${path.join(dir, files.model)}: expected an update journal and the previous version it names in ${files.previous}, found ${!read?.journal ? 'no journal' : 'no such previous version'} (another process finished or undid the update?)`, { dir });
  }
  await settleJournal(ops, dir, files, read.journal, emptyReport(), 'rollback');
}

// ---------------------------------------------------------------------------------------------
// the folder's model id

/**
 * The model id recorded by the model's first apply, or undefined: `model` is a folder
 * (`.ndiff-folder.json`) or a model JSON file sharing its folder (`<file>.ndiff-model.json`).
 */
export async function readFolderModelId(model: string): Promise<string | undefined> {
  const { dir, files } = await locateModelFiles(model);
  return readModelId(dir, files);
}

function readModelId(dir: string, files: ModelFiles): Promise<string | undefined> {
  return readModelIdFile(path.join(dir, files.modelId), files.modelIdFormat);
}

/**
 * Record `modelId` as the model `model` holds (a folder's `.ndiff-folder.json`, or a model JSON
 * file's `<file>.ndiff-model.json`, durably): applies then refuse payloads of another id. An
 * apply records it itself when it first confirms an update; a build server records it in a
 * folder it makes (`ndiff diff --model-out`), so the next diff made against that folder carries
 * the same id.
 */
export async function recordFolderModelId(model: string, modelId: string, options: FolderOptions = {}): Promise<void> {
  const { dir, files } = await locateModelFiles(model);
  await writeModelId(options.fileOps ?? nodeFileOps, dir, files, modelId);
}

function writeModelId(ops: FileOps, dir: string, files: ModelFiles, modelId: string): Promise<void> {
  return writeModelIdFile(path.join(dir, files.modelId), files.modelIdFormat, modelId, { fileOps: ops });
}

// ---------------------------------------------------------------------------------------------
// applying


export interface ModelDirApplyOptions extends Omit<ApplyOptions, 'healthCheck' | 'sequenceStore'> {
  /**
   * Where the applied sequence is kept: a state file path, a {@link SequenceStore}, or `null`
   * for none. Default: `.ndiff-state.json` in the model's folder (one for every model of a
   * shared folder, keyed by model id).
   */
  state?: string | SequenceStore | null;
  /**
   * Runs after the switch, before the update is confirmed (the new version is in place, so it
   * can load `file`, e.g. `tf.loadGraphModel(fileSystemIO(dir))` for a folder's model.json, and
   * run one inference). `file` is the model JSON file's path. Returning false or throwing rolls
   * back to the previous version. It also finishes an update an earlier run switched in and never
   * confirmed (killed during its health check): then `pending` is true and `result` absent;
   * passing confirms that update, failing rolls it back, before this payload is applied (the
   * result's `recovery.pending` says which; src/io/durable/pending-update.ts).
   */
  healthCheck?: (info: { dir: string; file: string; store: WeightStore; result?: ApplyResult; pending?: true }) => boolean | void | Promise<boolean | void>;
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
 * The model id payloads must carry: the caller's (`expectedModelId`), else the one the model
 * recorded at its first apply. Both set and different is refused.
 */
function modelIdFor(dir: string, files: ModelFiles, expected: string | undefined, recorded: string | undefined): string | undefined {
  if (expected !== undefined && recorded !== undefined && expected !== recorded) {
    const which = files.shared ? `${path.join(dir, files.model)} holds` : 'this folder holds';
    throw new ModelMismatchError(
      `${which} model ${JSON.stringify(recorded)} (recorded in ${path.join(dir, files.modelId)} by its first apply), but expectedModelId is ${JSON.stringify(expected)}: expected them to agree; check which model this ${files.shared ? 'file' : 'folder'} is, and pass its id`,
      { dir, expected, found: recorded },
    );
  }
  return expected ?? recorded;
}

export { type Journal, writeJournal, readJournal, recoverModel, confirmWritten, confirmModel, rollbackModel, readModelId, writeModelId, resolveState, modelIdFor, sha256, emptyReport };
