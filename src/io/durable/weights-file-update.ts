/**
 * The crash-safe update of a single-file model opened by `weights-file.ts` (ONNX with its
 * external data files, LiteRT): recovery, the apply, the replay state beside the file, and
 * writing a patched copy elsewhere.
 *
 * An apply rewrites only the files holding changed bytes (the model file, or an external data
 * file, or both), each at its own length with its patched bytes at the same offsets. States:
 *
 * 1. the journal `<model>.ndiff-update.json` is written (temp file, fsync, rename, fsync of
 *    the folder), naming the files about to change;
 * 2. each new file is written to `<file>.tmp-<pid>-<hex>` and fsynced (an external data file is
 *    copied a chunk at a time, holes kept, when its first patched tensor is verified, and each
 *    patched tensor written there at its offset and let go: memory follows the tensors being
 *    patched, not the file); the new version is read back from those files and fingerprinted:
 *    if it is not the payload's target, nothing switches;
 * 3. each current file is hard-linked as `<file>.ndiff-prev` (the previous version is kept),
 *    then each temp file is renamed over its file and the folder is fsynced (the switch);
 * 4. the health check runs; if it fails, every `<file>.ndiff-prev` is renamed back (rollback);
 *    the journal says whether one runs (`awaitsHealthCheck`), for the command that meets the
 *    switch if the process dies meanwhile (src/io/durable/pending-update.ts);
 * 5. if it passes, the journal is renamed to `<model>.ndiff-update.done` (the commit point
 *    of the confirmation), the kept files are deleted, then the `.done` file.
 *
 * {@link recoverWeightsFile}, run at the start of every apply, finishes what a crash interrupted: a
 * journal means the update was never confirmed: before its switch, every file it names keeps its
 * bytes and the temp files are deleted; after it, the update is finished as every command
 * finishes an unconfirmed switch (pending-update.ts: the caller's health check confirms it or
 * rolls it back from the `.ndiff-prev` files; without one it is refused if it awaited a health
 * check, else rolled back); a
 * `.done` file means the confirmation happened and only its clean-up remains. With one file
 * changing (the usual case: the weights inline, or all in one external data file) a loader sees
 * the old or the new version at every instant. When an update changes two files, a crash between
 * their two renames leaves a mix until the next apply or {@link recoverWeightsFile} rolls it back:
 * an app that loads such a model should call {@link recoverWeightsFile} first.
 *
 * A structural rebuild (`weights-file-rebuild.ts`) whose new version names other data files writes
 * a version 2 journal that also names the data files it creates (deleted by a rollback, with any
 * folder made for them) and the ones it drops (deleted after the commit point); recovery does both.
 */
import { randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import { link, open, readdir, readFile, rename, rmdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { ModelFormatError, ModelMismatchError, NeuralDiffError, TargetMismatchError, UsageError } from '../../core/errors.ts';
import { fingerprintStore } from '../../core/fingerprint.ts';
import { getHasher, type Hasher } from '../../core/hasher.ts';
import type { CommitInfo, WeightStore } from '../../core/weight-store.ts';
import type { StorageGrid } from '../../core/grid.ts';
import { applyVerifiedPayload, verifyPayload, type ApplyOptions, type ApplyResult, type TwoPhaseWeightStore } from '../../apply/apply.ts';
import type { SequenceRecord, SequenceStore } from '../../apply/freshness.ts';
import { errCode, makeDirs, syncDir } from './durable.ts';
import { DEFAULT_STATE_FILE, FileSequenceStore, writeFileAtomically } from './sequence-file.ts';
import { lockModelDir, type RecoveryReport } from './lock.ts';
import { settlePendingSwitch, type PendingHealthCheck, type PendingOptions } from './pending-update.ts';
import { MODEL_ID_SUFFIX, readModelIdRecord, writeModelIdRecord } from './model-id-file.ts';
import { openWeightsFile, readAt, realModelPath, sameFile, TEMP_FILE, type ExternalPatch, type OpenedFile, type WeightsFileFormat, type WeightsFileStore } from './weights-file.ts';

/** Suffix of the journal of an unconfirmed update, next to the model file. */
export const JOURNAL_SUFFIX = '.ndiff-update.json';
/** Suffix of the journal once the update is confirmed, until its clean-up is done. */
export const DONE_SUFFIX = '.ndiff-update.done';
/** Suffix of a file's previous version, kept until the update is confirmed. */
export const PREVIOUS_SUFFIX = '.ndiff-prev';
/** Bytes copied per read and write when an external data file is rewritten. */
const COPY_CHUNK = 8 * 1024 * 1024;

export interface WeightsFileJournal {
  /** The format's journal name (`neural-diff-onnx-update`, `neural-diff-tflite-update`). */
  format: string;
  /**
   * 1; 2 when the update also creates or deletes files (a structural rebuild changing an ONNX
   * model's set of data files): an applier that knows only 1 refuses the journal as damaged
   * rather than roll back without deleting the files the update created.
   */
  version: 1 | 2;
  /** Locations (relative to the model's folder; `''` is the model file) being switched, each kept as `.ndiff-prev` until confirmed. */
  files: string[];
  /** Data files the update creates (none before it): a rollback deletes them. */
  created?: string[];
  /** Data files the new version no longer names: left in place until the commit point, deleted after it. */
  removed?: string[];
  /** Folders the update made for created files (relative to the model's folder): a rollback deletes them if empty. */
  folders?: string[];
  /**
   * True when the update is confirmed by a health check: a switch left unconfirmed is then
   * finished by the next command's health check, or refused without one (pending-update.ts).
   */
  awaitsHealthCheck?: boolean;
}
type Journal = WeightsFileJournal;

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch (e) {
    if (errCode(e) === 'ENOENT') return false;
    throw e;
  }
}

export async function removeIfThere(file: string, removed?: string[]): Promise<void> {
  try {
    await unlink(file);
    removed?.push(file);
  } catch (e) {
    if (errCode(e) !== 'ENOENT') throw e;
  }
}

/** A location relative to the model's folder that cannot leave it: not empty or absolute, no `..` segment, no NUL. */
function staysInFolder(loc: string): boolean {
  return loc !== '' && !/^([/\\]|[A-Za-z]:)/.test(loc) && !loc.split(/[\\/]/).includes('..') && !loc.includes('\0');
}

async function readJournal(file: string, format: WeightsFileFormat): Promise<Journal | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if (errCode(e) === 'ENOENT') return null;
    throw e;
  }
  try {
    const j = JSON.parse(text) as Journal;
    // The locations a journal deletes or restores must be relative paths inside the model's folder.
    const locations = (v: unknown, model: boolean) => v === undefined || (Array.isArray(v) && v.every((f) => typeof f === 'string' && ((model && f === '') || staysInFolder(f))));
    if (j.format === format.journal && (j.version === 1 || j.version === 2) && Array.isArray(j.files) && locations(j.files, true) && locations(j.created, false) && locations(j.removed, false) && locations(j.folders, false)) return j;
  } catch {
    /* fall through */
  }
  throw new ModelFormatError(`the update journal ${file} is damaged: expected {"format": "${format.journal}", "version": 1 or 2, "files": [...]} naming files inside the model's folder; it was changed by hand or written by a newer applier: restore the model from the full download (or recover with the newer applier), then delete the journal`, { file });
}

/** Delete temp files of `files` (paths) left by an interrupted write. */
async function removeTemps(files: readonly string[], removed: string[]): Promise<void> {
  const byDir = new Map<string, string[]>();
  for (const f of files) byDir.set(path.dirname(f), [...(byDir.get(path.dirname(f)) ?? []), path.basename(f)]);
  for (const [dir, names] of byDir) {
    let entries: string[];
    try {
      entries = await readdir(dir);
    } catch {
      continue;
    }
    for (const e of entries) {
      if (TEMP_FILE.test(e) && names.some((n) => e.startsWith(`${n}.tmp-`))) await removeIfThere(path.join(dir, e), removed);
    }
  }
}

/** Put each file's kept previous version back (a file never switched keeps its bytes). */
export async function restorePrevious(paths: readonly string[]): Promise<boolean> {
  let rolled = false;
  for (const p of paths) {
    const prev = p + PREVIOUS_SUFFIX;
    let prevStats: Stats;
    try {
      prevStats = await stat(prev);
    } catch (e) {
      if (errCode(e) === 'ENOENT') continue;
      throw e;
    }
    const cur = await stat(p).catch(() => null);
    if (cur && cur.ino === prevStats.ino && cur.dev === prevStats.dev) {
      await unlink(prev); // never switched: the link was the only change
    } else {
      await rename(prev, p);
      rolled = true;
    }
  }
  for (const d of new Set(paths.map((p) => path.dirname(p)))) await syncDir(d);
  return rolled;
}

/**
 * Whether an update switched any of `paths` in: its kept previous version (`.ndiff-prev`) is
 * another file than the one under the name now.
 */
async function switchedIn(paths: readonly string[]): Promise<boolean> {
  for (const p of paths) {
    const prev = await stat(p + PREVIOUS_SUFFIX).catch((e) => {
      if (errCode(e) === 'ENOENT') return null;
      throw e;
    });
    if (!prev) continue;
    const cur = await stat(p).catch(() => null);
    if (!cur || cur.ino !== prev.ino || cur.dev !== prev.dev) return true;
  }
  return false;
}

/**
 * Delete the folders `folders` (paths) that are empty, deepest first: the folders an update made
 * for the data files it created (after a rollback), or the ones a confirmed update emptied by
 * deleting data files. A folder holding anything, or gone already, is left as it is.
 */
export async function removeEmptyFolders(folders: readonly string[]): Promise<void> {
  for (const f of [...new Set(folders)].sort((a, b) => b.length - a.length)) {
    try {
      await rmdir(f);
    } catch (e) {
      if (!['ENOENT', 'ENOTEMPTY', 'EEXIST', 'ENOTDIR'].includes(errCode(e) ?? '')) throw e;
    }
  }
}

/** The folders holding `locations` below the model's folder (`a/b/w.bin`: `a/b`, `a`), as paths under `dir`. */
export function foldersBelow(dir: string, locations: readonly string[]): string[] {
  const root = path.resolve(dir);
  const out: string[] = [];
  for (const loc of locations) {
    for (let up = path.dirname(path.resolve(root, loc)); up.startsWith(root + path.sep); up = path.dirname(up)) out.push(up);
  }
  return out;
}

/**
 * Bring a model file back to a confirmed version after an interrupted update, and delete the
 * leftovers (module doc). An update switched in but never confirmed is finished by
 * `options.healthCheck` (confirmed if it passes, rolled back if not), refused without one when
 * the update awaited a health check, else rolled back (src/io/durable/pending-update.ts); the
 * report's `pending` says which. Safe to call at any time (one writer per model); does nothing
 * on a clean model.
 *
 * @throws ModelFormatError when the journal is damaged.
 * @throws PendingUpdateError when an unconfirmed update awaits a health check and none is given.
 */
export async function recoverWeightsFile(file: string, format: WeightsFileFormat, options: PendingOptions = {}): Promise<RecoveryReport> {
  const report: RecoveryReport = { actions: [], rolledBack: false, removed: [] };
  const dir = path.dirname(file);
  const loc = (l: string) => (l === '' ? file : path.join(dir, l));
  const journalFile = file + JOURNAL_SUFFIX;
  const doneFile = file + DONE_SUFFIX;
  const journal = await readJournal(journalFile, format);
  if (journal) {
    const paths = journal.files.map(loc);
    const created = (journal.created ?? []).map(loc);
    /** Put the previous version back and delete what the update made; true if anything of the new version was in place. */
    const undo = async (): Promise<boolean> => {
      let rolled = await restorePrevious(paths);
      // Data files the update created did not exist before it (checked under the lock): deleted.
      for (const p of created) {
        const before = report.removed.length;
        await removeIfThere(p, report.removed);
        if (report.removed.length > before) rolled = true;
      }
      await removeTemps([...paths, ...created], report.removed);
      await removeEmptyFolders((journal.folders ?? []).map(loc));
      for (const d of new Set(created.map((p) => path.dirname(p)))) await syncDir(d).catch(() => {});
      await removeIfThere(journalFile, report.removed);
      await syncDir(dir);
      return rolled;
    };
    if (await switchedIn(paths)) {
      // Switched, never confirmed: finished the one way every command finishes it (pending-update.ts).
      await settlePendingSwitch({
        model: file,
        what: `the ${journal.version === 2 ? 'rebuild' : 'update'} journalled in ${path.basename(journalFile)}`,
        awaitsHealthCheck: journal.awaitsHealthCheck === true,
        // The confirmation's commit point, as an apply's: the journal becomes .done; the clean-up below finishes it.
        confirm: async () => {
          await removeTemps([...paths, ...created], report.removed);
          await rename(journalFile, doneFile);
          await syncDir(dir);
        },
        rollBack: async () => {
          await undo();
        },
      }, options, report);
    } else {
      report.rolledBack = await undo();
      report.actions.push(report.rolledBack
        ? 'an update was interrupted while it switched files in: rolled back to the previous version'
        : 'an update was interrupted before its switch: the model is the previous version; removed its leftovers');
    }
  }
  const done = await readJournal(doneFile, format);
  if (done) {
    for (const p of done.files.map(loc)) await removeIfThere(p + PREVIOUS_SUFFIX, report.removed);
    // The data files the confirmed version no longer names.
    for (const p of (done.removed ?? []).map(loc)) await removeIfThere(p, report.removed);
    await removeEmptyFolders(foldersBelow(dir, done.removed ?? []));
    // Those deletions durable before the .done journal's (else a cut could orphan a data file).
    for (const d of new Set([dir, ...[...done.files, ...(done.removed ?? [])].map((l) => path.dirname(loc(l)))])) await syncDir(d).catch(() => {});
    await removeIfThere(doneFile, report.removed);
    if (report.pending?.outcome !== 'confirmed') report.actions.push('an update was confirmed but its previous version was not all deleted: deleted it');
  }
  const before = report.removed.length;
  // A kept previous version of the model file that no journal names (a journal's was settled
  // above): only a journal can need it. The confirmation (and a rollback before the switch)
  // deletes it and then the journal without a folder fsync between, so a power cut can keep
  // the second deletion and lose the first, leaving a whole copy of the old file here.
  await removeIfThere(file + PREVIOUS_SUFFIX, report.removed);
  // Temp files of the model file and of the applier's own files beside it (journal, model id
  // record, replay state: a power cut while the sequence is recorded leaves the state's).
  await removeTemps([file, journalFile, doneFile, file + MODEL_ID_SUFFIX, file + STATE_SUFFIX], report.removed);
  if (report.removed.length > before && !journal) report.actions.push(`removed ${report.removed.length - before} leftover file(s) of an interrupted write`);
  return report;
}

/** Write all of `bytes` at `position`. */
async function writeAll(fh: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let at = 0;
  while (at < bytes.length) at += (await fh.write(bytes, at, bytes.length - at, position + at)).bytesWritten;
}

/**
 * Copy an external data file into `to` a chunk at a time (memory: one chunk, whatever the file's
 * size), leaving all-zero chunks as holes (a sparse file stays sparse; holes read as zeros), then
 * write each patched tensor's bytes at its offset.
 */
async function copyWithPatches(from: OpenedFile, to: FileHandle, patches: readonly ExternalPatch[]): Promise<void> {
  const size = from.stats.size;
  const chunk = new Uint8Array(Math.min(COPY_CHUNK, Math.max(size, 1)));
  const zeros = new Uint8Array(chunk.length);
  for (let at = 0; at < size; ) {
    const n = Math.min(chunk.length, size - at);
    const { bytesRead } = await from.fh.read(chunk, 0, n, at);
    if (bytesRead !== n) throw new ModelFormatError(`${from.path} shrank while it was copied (expected ${size} bytes); another process is writing it: retry when it is done`, { file: from.path });
    // memcmp against zeros: a hole of a sparse file stays a hole.
    const zero = Buffer.compare(chunk.subarray(0, n), zeros.subarray(0, n)) === 0;
    if (!zero) await writeAll(to, n === chunk.length ? chunk : chunk.subarray(0, n), at);
    at += n;
  }
  await to.truncate(size);
  for (const p of patches) await writeAll(to, p.bytes, p.offset);
}

/** A copy of an external data file being written by an apply: its temp path and handle. */
interface StagedFile {
  tmp: string;
  fh: FileHandle;
}

/**
 * The file store during an apply: commits write, verify and switch files, keeping the
 * previous version until confirmed. An external data file is copied to its temp file when the
 * first of its tensors settles (the journal naming it written first), and each settled tensor's
 * bytes are written there and let go: an apply holds the tensors it is patching, not every one.
 */
class UpdatingWeightsFile implements TwoPhaseWeightStore {
  private switched: string[] = [];
  private readonly staged = new Map<string, StagedFile>();
  private readonly journalled = new Set<string>();
  private committed = false;
  constructor(
    private readonly disk: WeightsFileStore,
    private readonly format: WeightsFileFormat,
    private readonly hasher: Hasher,
    /** The model id to record for the file once the update is confirmed (undefined: already recorded). */
    private readonly pinModelId?: string,
    /** Whether a health check confirms the update (recorded in the journal). */
    private readonly awaitsHealthCheck = false,
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
  grid(name: string): StorageGrid | undefined {
    return this.disk.grid(name);
  }

  /** Write the journal naming `locations` (and every one named before), durably, before any of them is written. */
  private async journal(locations: readonly string[]): Promise<void> {
    if (locations.every((l) => this.journalled.has(l))) return;
    for (const l of locations) this.journalled.add(l);
    const files = [...this.journalled].sort();
    await writeFileAtomically(this.disk.file + JOURNAL_SUFFIX, new TextEncoder().encode(JSON.stringify({ format: this.format.journal, version: 1, files, ...(this.awaitsHealthCheck ? { awaitsHealthCheck: true } : {}) } satisfies Journal) + '\n'));
  }

  /** The temp file of `loc`, made on first use: a copy of the external file (its holes kept), or the model file's bytes. */
  private async stage(loc: string): Promise<StagedFile> {
    const known = this.staged.get(loc);
    if (known) return known;
    await this.journal([loc]);
    const target = this.disk.pathOf(loc);
    const tmp = `${target}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
    const fh = await open(tmp, 'wx+', 0o600);
    const staged = { tmp, fh };
    this.staged.set(loc, staged);
    if (loc !== '') await copyWithPatches(this.disk.openedAt(loc), fh, []);
    return staged;
  }

  /** Before the commit the files on disk are the base: a tensor read from one is forgotten, not undone. */
  forget(name: string): boolean {
    return !this.committed && !!this.disk.contents.forget?.(name);
  }

  async settled(name: string): Promise<void> {
    const loc = this.disk.contents.fileOf?.(name);
    if (loc === undefined) return; // in the model file: written whole at the commit
    this.disk.contents.commit([name]); // typed error, nothing on disk changed, if a value cannot be stored
    const patch = this.disk.contents.externalPatches?.([name]).get(loc);
    if (!patch) return;
    const { fh, tmp } = await this.stage(loc);
    for (const p of patch) await writeAll(fh, p.bytes, p.offset);
    const size = this.disk.openedAt(loc).stats.size;
    this.disk.contents.release?.(name, { size, read: (offset, length) => readAt({ path: tmp, fh, stats: this.disk.openedAt(loc).stats }, offset, length) });
  }

  async commit(changed: readonly string[], info?: CommitInfo): Promise<void> {
    if (changed.length === 0) return;
    this.disk.commit(changed); // typed error, nothing written, if a value cannot be stored
    const file = this.disk.file;
    const locations = [...new Set([...this.disk.locationsOf(changed), ...this.staged.keys()])].sort();
    const patches = this.disk.contents.externalPatches?.(changed) ?? new Map<string, ExternalPatch[]>();
    const temps = new Map<string, string>();
    try {
      await this.journal(locations);
      for (const loc of locations) {
        const { tmp, fh } = await this.stage(loc);
        temps.set(loc, tmp);
        if (loc === '') await writeAll(fh, this.disk.contents.modelBytes(), 0);
        for (const p of patches.get(loc) ?? []) await writeAll(fh, p.bytes, p.offset);
        await fh.chmod(this.disk.openedAt(loc).stats.mode & 0o7777); // the file keeps its permissions (a 0600 model stays 0600)
        await fh.sync();
      }
      // A loader must never see a version that does not hash to the target.
      if (info) {
        const fresh = await openWeightsFile(file, this.format, { replace: temps });
        try {
          const written = fingerprintStore(this.hasher, fresh).fingerprint;
          if (written !== info.fingerprint) {
            throw new TargetMismatchError(
              `the new model files of ${file} read back as ${written.slice(0, 8)}…, not the target ${info.fingerprint.slice(0, 8)}…: the disk did not keep what was written; nothing was switched and the model is unchanged: check the storage, then retry`,
              { expected: info.fingerprint, found: written },
            );
          }
        } finally {
          await fresh.close();
        }
      }
      for (const loc of locations) {
        const p = this.disk.pathOf(loc);
        const now = await stat(p).catch(() => null);
        const then = this.disk.stats.get(loc);
        if (!now || !then || !sameFile(now, then)) {
          throw new ModelFormatError(`${p} changed on disk while it was being patched: expected the version read when the apply started. Nothing was switched; apply again (one writer per model)`, { file: p });
        }
      }
      for (const loc of locations) {
        const p = this.disk.pathOf(loc);
        await removeIfThere(p + PREVIOUS_SUFFIX);
        await link(p, p + PREVIOUS_SUFFIX);
      }
      for (const d of new Set(locations.map((l) => path.dirname(this.disk.pathOf(l))))) await syncDir(d);
    } catch (e) {
      await this.dropStaged();
      await restorePrevious(locations.map((l) => this.disk.pathOf(l)));
      await removeIfThere(file + JOURNAL_SUFFIX);
      throw e;
    }
    this.committed = true;
    for (const loc of locations) {
      await rename(temps.get(loc) as string, this.disk.pathOf(loc));
      this.switched.push(this.disk.pathOf(loc));
    }
    for (const d of new Set(locations.map((l) => path.dirname(this.disk.pathOf(l))))) await syncDir(d);
  }

  /**
   * After an apply that did not commit: delete the temp files it staged and its journal (nothing
   * was switched). After a commit: only close the handles (the files are the model's now).
   */
  async dropStaged(): Promise<void> {
    for (const { fh, tmp } of this.staged.values()) {
      await fh.close().catch(() => {});
      if (!this.committed) await removeIfThere(tmp);
    }
    if (!this.committed && this.staged.size) await removeIfThere(this.disk.file + JOURNAL_SUFFIX);
    this.staged.clear();
  }

  async confirmCommit(): Promise<void> {
    const file = this.disk.file;
    if (!(await exists(file + JOURNAL_SUFFIX))) {
      if (this.pinModelId !== undefined) await writeModelIdRecord(file, this.pinModelId);
      return;
    }
    await rename(file + JOURNAL_SUFFIX, file + DONE_SUFFIX);
    await syncDir(path.dirname(file)); // the commit point of the confirmation
    for (const p of this.switched) await removeIfThere(p + PREVIOUS_SUFFIX);
    await removeIfThere(file + DONE_SUFFIX);
    // Durably, before the applier records the sequence: later payloads of another id are refused.
    if (this.pinModelId !== undefined) await writeModelIdRecord(file, this.pinModelId);
  }
  async revertCommit(): Promise<void> {
    const file = this.disk.file;
    if (!(await exists(file + JOURNAL_SUFFIX))) return;
    await restorePrevious(this.switched);
    await removeIfThere(file + JOURNAL_SUFFIX);
    await syncDir(path.dirname(file));
  }
}

/** Options of {@link applyToWeightsFile}. */
export interface WeightsFileApplyOptions extends Omit<ApplyOptions, 'healthCheck' | 'sequenceStore'> {
  /**
   * Where the applied sequence is kept: a state file path, a {@link SequenceStore}, or `null`
   * for none. Default: `<model file>.ndiff-state.json` beside the file ({@link WeightsFileSequenceStore}).
   */
  state?: string | SequenceStore | null;
  /**
   * Runs after the switch, before the update is confirmed (the new version is in place: load
   * `file`, e.g. `ort.InferenceSession.create(file)` or LiteRT's `loadAndCompile`, and run one inference). Returning false or
   * throwing rolls back to the previous version. It also finishes an update an earlier run
   * switched in and never confirmed (killed during its health check): then `pending` is true
   * and `result` absent; passing confirms that update, failing rolls it back (before this
   * payload is applied; the result's `recovery.pending` says which).
   */
  healthCheck?: (info: { file: string; store: WeightStore; result?: ApplyResult; pending?: true }) => boolean | void | Promise<boolean | void>;
  /** Check everything, patch a copy in memory, write nothing (no recovery, no state). */
  dryRun?: boolean;
}

export interface WeightsFileApplyResult extends ApplyResult {
  /** What was recovered from an earlier interrupted apply before this one ran. */
  recovery: RecoveryReport;
  /** The files rewritten (the model file and/or external data files); empty when nothing changed. */
  filesWritten: string[];
}

/** Suffix of a model file's own state file: `<model>.onnx.ndiff-state.json`, `<model>.tflite.ndiff-state.json`. */
export const STATE_SUFFIX = '.ndiff-state.json';

/**
 * The replay state of one model file, beside it (`vad.onnx.ndiff-state.json`), so that two
 * model files in one folder (`vad.onnx` and `vad-int8.onnx`, one model id) each keep their own
 * sequence. Appliers before this kept one `.ndiff-state.json` per folder, by model id: its entry
 * still counts for a file whose model id record (written by its first confirmed apply) names that
 * id, so upgrading never forgets what a file applied; a file that never had an apply ignores it.
 */
export class WeightsFileSequenceStore implements SequenceStore {
  readonly file: string;
  readonly legacy: FileSequenceStore;
  private readonly own: FileSequenceStore;
  constructor(private readonly model: string) {
    this.file = model + STATE_SUFFIX;
    this.own = new FileSequenceStore(this.file);
    this.legacy = new FileSequenceStore(path.join(path.dirname(model), DEFAULT_STATE_FILE));
  }
  async get(modelId: string): Promise<number | undefined> {
    const own = await this.own.get(modelId);
    if (own !== undefined) return own;
    return (await readModelIdRecord(this.model)) === modelId ? this.legacy.get(modelId) : undefined;
  }
  set(modelId: string, sequence: number, record: SequenceRecord): Promise<void> {
    return this.own.set(modelId, sequence, record);
  }
}

/** The default replay state of the model `file` (see {@link WeightsFileSequenceStore}). */
export function weightsFileSequenceStore(file: string): WeightsFileSequenceStore {
  return new WeightsFileSequenceStore(file);
}

/**
 * Verify `payloadBytes` and apply it to the model `file` of `format`, crash-safely (module doc). A
 * payload refused by the signature policy or the decoder touches nothing; otherwise an
 * interrupted earlier apply is recovered first. On any error the files hold the version they
 * held before this call (or the recovered one) and a typed error says what to do.
 */
export async function applyToWeightsFile(file: string, payloadBytes: Uint8Array, format: WeightsFileFormat, options: WeightsFileApplyOptions = {}): Promise<WeightsFileApplyResult> {
  if (!format.extension.test(file)) throw new UsageError(`${file}: expected ${format.what}`, { file });
  const verified = await verifyPayload(payloadBytes, options);
  // A symbolic link to the model is followed once: the real file is patched, in its own folder.
  const real = await realModelPath(file, format);
  const state = options.state;
  const sequences: SequenceStore | undefined =
    state === null ? undefined : state === undefined ? weightsFileSequenceStore(real) : typeof state === 'string' ? new FileSequenceStore(state) : state;
  const reserved = sequences instanceof FileSequenceStore ? [sequences.file] : sequences instanceof WeightsFileSequenceStore ? [sequences.file, sequences.legacy.file] : [];
  const empty: RecoveryReport = { actions: [], rolledBack: false, removed: [] };
  const hasher: Hasher = options.hasher && typeof options.hasher === 'object' ? options.hasher : await getHasher(options.hasher ? { prefer: options.hasher } : undefined);

  if (options.dryRun) {
    const expectedModelId = modelIdFor(real, options.expectedModelId, await readModelIdRecord(real));
    const disk = await openWeightsFile(real, format, { reserved });
    try {
      const readOnly: SequenceStore | undefined = sequences && { get: (id) => sequences.get(id), set: () => {} };
      const res = await applyVerifiedPayload(disk.contents, verified, { ...options, expectedModelId, hasher, sequenceStore: readOnly, healthCheck: undefined });
      return { ...res, sequenceRecorded: false, recovery: empty, filesWritten: [] };
    } finally {
      await disk.close();
    }
  }

  const unlock = await lockModelDir(path.dirname(real));
  let recovery: RecoveryReport = empty;
  try {
    recovery = await recoverWeightsFile(real, format, { healthCheck: pendingHealthCheck(real, format, options.healthCheck) });
    const recorded = await readModelIdRecord(real);
    const expectedModelId = modelIdFor(real, options.expectedModelId, recorded);
    const disk = await openWeightsFile(real, format, { reserved });
    let store: UpdatingWeightsFile | undefined;
    try {
      // The model file remembers the model id of the first payload confirmed on it (as a folder does).
      const pin = recorded === undefined ? verified.payload.header.modelId : undefined;
      store = new UpdatingWeightsFile(disk, format, hasher, pin, options.healthCheck !== undefined);
      const healthCheck = options.healthCheck;
      const res = await applyVerifiedPayload(store, verified, {
        ...options,
        expectedModelId,
        hasher,
        sequenceStore: sequences,
        healthCheck: healthCheck && ((info) => healthCheck({ file: real, ...info })),
      });
      if (pin !== undefined && res.status === 'already-applied') await writeModelIdRecord(real, pin);
      const filesWritten = res.status === 'applied' ? disk.locationsOf(res.changedTensors).map((l) => disk.pathOf(l)) : [];
      return { ...res, recovery, filesWritten };
    } finally {
      await store?.dropStaged();
      await disk.close();
    }
  } catch (e) {
    // What the recovery of an earlier interrupted apply did, even though this one failed.
    if (e instanceof NeuralDiffError && recovery.actions.length > 0) (e.details as Record<string, unknown>).recovery = recovery;
    throw e;
  } finally {
    await unlock();
  }
}

/**
 * The apply's health check as the check of an update an earlier run switched in and never
 * confirmed (pending-update.ts): called with the model as it is in place and `pending: true`
 * (no `result`: this run applied nothing yet). Undefined without a health check.
 */
export function pendingHealthCheck(file: string, format: WeightsFileFormat, healthCheck: ((info: { file: string; store: WeightStore; pending?: true }) => boolean | void | Promise<boolean | void>) | undefined): PendingHealthCheck | undefined {
  if (!healthCheck) return undefined;
  return async () => {
    const disk = await openWeightsFile(file, format);
    try {
      return await healthCheck({ file, store: disk, pending: true });
    } finally {
      await disk.close();
    }
  };
}

/**
 * The model id payloads must carry: the caller's (`expectedModelId`), else the one recorded for
 * the model file at its first apply. Both set and different is refused.
 */
function modelIdFor(file: string, expected: string | undefined, recorded: string | undefined): string | undefined {
  if (expected !== undefined && recorded !== undefined && expected !== recorded) {
    throw new ModelMismatchError(
      `${file} holds model ${JSON.stringify(recorded)} (recorded in ${file + MODEL_ID_SUFFIX} by its first apply), but expectedModelId is ${JSON.stringify(expected)}: expected them to agree; check which model this file is, and pass its id`,
      { file, expected, found: recorded },
    );
  }
  return expected ?? recorded;
}

/** Whether `file` is one of the files `disk` reads, the model or an external one at `locations` (the same file by device and inode, so through links too). */
async function isOpenedFile(disk: WeightsFileStore, file: string, locations: readonly string[]): Promise<boolean> {
  const st = await stat(file).catch(() => undefined);
  if (!st) return false;
  for (const loc of ['', ...locations]) {
    const opened = disk.openedAt(loc).stats;
    if (opened.dev === st.dev && opened.ino === st.ino) return true;
  }
  return false;
}

/**
 * Write the model `disk` holds, with the patches committed to `changed`, as a new model at
 * `outFile` (its external data files beside it, under their locations): the model file from
 * memory, each external file copied a chunk at a time with the patched tensors written over it.
 * For a build server's `--model-out`; not crash-safe (the output is a new model, not the device's).
 */
export async function saveWeightsFileAs(disk: WeightsFileStore, changed: readonly string[], outFile: string, format: WeightsFileFormat): Promise<void> {
  const out = path.resolve(outFile);
  if (out === disk.file) throw new UsageError(`${outFile} is the model being read: name another file to write`, { file: outFile });
  const locations = format.externalLocations(disk.contents.modelBytes(), disk.file);
  // The external files keep their locations beside the new model: in the base's own folder they
  // would be the base's files, truncated before they are read. Refused before anything is written.
  for (const loc of locations) {
    const to = path.join(path.dirname(out), loc);
    if (await isOpenedFile(disk, to, locations)) {
      throw new UsageError(
        `${outFile} would write its external data to ${to}, which is ${disk.file}'s own external data (location ${JSON.stringify(loc)}): expected a place of its own for the new model's files; write it into another folder`,
        { file: outFile, external: to },
      );
    }
  }
  const patches = disk.contents.externalPatches?.(changed) ?? new Map<string, ExternalPatch[]>();
  const write = async (to: string, fill: (fh: FileHandle) => Promise<void>, mode: number) => {
    await makeDirs(path.dirname(to));
    const fh = await open(to, 'w', mode & 0o7777);
    try {
      await fh.truncate(0);
      await fill(fh);
    } finally {
      await fh.close();
    }
  };
  await write(out, (fh) => writeAll(fh, disk.contents.modelBytes(), 0), disk.openedAt('').stats.mode);
  for (const loc of locations) {
    const from = disk.openedAt(loc);
    await write(path.join(path.dirname(out), loc), (fh) => copyWithPatches(from, fh, patches.get(loc) ?? []), from.stats.mode);
  }
}
