/**
 * ONNX model files on disk (Node and Electron): open a `.onnx` file and its external data files
 * as a {@link WeightStore}, and apply a payload to them crash-safely, with the same checks,
 * sequence file and health check as TF.js model folders (model-dir-update.ts). The format
 * itself is in the pure `onnx.ts`.
 *
 * An apply rewrites only the files holding changed bytes (the `.onnx` file, or the external data
 * file, or both), each at its own length with its patched bytes at the same offsets. States:
 *
 * 1. the journal `<model>.onnx.ndiff-update.json` is written (temp file, fsync, rename, fsync of
 *    the folder), naming the files about to change;
 * 2. each new file is written to `<file>.tmp-<pid>-<hex>` and fsynced; the new version is read
 *    back from those files and fingerprinted: if it is not the payload's target, nothing switches;
 * 3. each current file is hard-linked as `<file>.ndiff-prev` (the previous version is kept),
 *    then each temp file is renamed over its file and the folder is fsynced (the switch);
 * 4. the health check runs; if it fails, every `<file>.ndiff-prev` is renamed back (rollback);
 * 5. if it passes, the journal is renamed to `<model>.onnx.ndiff-update.done` (the commit point
 *    of the confirmation), the kept files are deleted, then the `.done` file.
 *
 * {@link recoverOnnxFile}, run at the start of every apply, finishes what a crash interrupted: a
 * journal means the update was never confirmed, so every file it names is rolled back from its
 * `.ndiff-prev` (a file not yet switched is left as it is) and the temp files are deleted; a
 * `.done` file means the confirmation happened and only its clean-up remains. With one file
 * changing (the usual case: the weights inline, or all in one external data file) a loader sees
 * the old or the new version at every instant. When an update changes two files, a crash between
 * their two renames leaves a mix until the next apply or {@link recoverOnnxFile} rolls it back:
 * an app that loads such a model should call {@link recoverOnnxFile} first.
 */
import { randomBytes } from 'node:crypto';
import { link, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import * as path from 'node:path';
import { ModelFormatError, TargetMismatchError, UsageError } from '../../core/errors.ts';
import { fingerprintStore } from '../../core/fingerprint.ts';
import { getHasher, type Hasher } from '../../core/hasher.ts';
import type { CommitInfo, WeightStore } from '../../core/weight-store.ts';
import type { StorageGrid } from '../../core/grid.ts';
import { applyVerifiedPayload, verifyPayload, type ApplyOptions, type ApplyResult, type TwoPhaseWeightStore } from '../../apply/apply.ts';
import type { SequenceStore } from '../../apply/freshness.ts';
import { errCode, syncDir } from '../durable/durable.ts';
import { DEFAULT_STATE_FILE, FileSequenceStore, writeFileAtomically } from '../durable/sequence-file.ts';
import { lockModelDir, type RecoveryReport } from '../durable/lock.ts';
import { OnnxWeightStore, onnxExternalLocations, type OnnxTensorEntry } from './store.ts';

/** Suffix of the journal of an unconfirmed update, next to the model file. */
export const ONNX_JOURNAL_SUFFIX = '.ndiff-update.json';
/** Suffix of the journal once the update is confirmed, until its clean-up is done. */
export const ONNX_DONE_SUFFIX = '.ndiff-update.done';
/** Suffix of a file's previous version, kept until the update is confirmed. */
export const ONNX_PREVIOUS_SUFFIX = '.ndiff-prev';
const TEMP = /\.tmp-\d+-[0-9a-f]+$/;

/** Read a whole file, with typed errors for a missing one. */
async function readWhole(file: string, what: string): Promise<{ bytes: Uint8Array; stats: Stats }> {
  let fh;
  try {
    fh = await open(file, 'r');
  } catch (err) {
    const code = errCode(err);
    throw new ModelFormatError(
      code === 'ENOENT' ? `no file at ${file}: expected ${what}; check the path` : `cannot open ${file} (${what}): ${(err as Error).message}; check the path and its permissions`,
      { file, code },
    );
  }
  try {
    const stats = await fh.stat();
    if (!stats.isFile()) throw new ModelFormatError(`${file} is not a file: expected ${what}`, { file });
    const bytes = new Uint8Array(stats.size);
    let at = 0;
    while (at < bytes.length) {
      const { bytesRead } = await fh.read(bytes, at, bytes.length - at, at);
      if (bytesRead === 0) break;
      at += bytesRead;
    }
    if (at !== bytes.length) throw new ModelFormatError(`${file} shrank while it was read (expected ${bytes.length} bytes, read ${at}); another process is writing it: retry when it is done`, { file });
    return { bytes, stats };
  } finally {
    await fh.close();
  }
}

function sameFile(a: Stats, b: Stats): boolean {
  return a.size === b.size && a.mtimeMs === b.mtimeMs && a.ino === b.ino;
}

/** Options of {@link openOnnxFile}. */
export interface OnnxOpenOptions {
  /** Read the model from this file instead (the files of a version not yet switched). */
  replace?: ReadonlyMap<string, string>;
}

/**
 * A {@link WeightStore} over an ONNX model on disk (opened with {@link openOnnxFile}): patches go
 * into the files' bytes in memory; {@link OnnxFileStore.files} gives what to write.
 */
export class OnnxFileStore implements WeightStore {
  /** @internal use {@link openOnnxFile}. */
  constructor(
    /** The `.onnx` file. */
    readonly file: string,
    /** The in-memory store over the files' bytes. */
    readonly contents: OnnxWeightStore,
    /** Each file's stats when read: the model file (key `''`) and the external ones by location. */
    readonly stats: ReadonlyMap<string, Stats>,
  ) {}
  list(): OnnxTensorEntry[] {
    return this.contents.list();
  }
  values(name: string): Float32Array {
    return this.contents.values(name);
  }
  read(name: string): Float32Array {
    return this.contents.read(name);
  }
  /** How a weight is stored (see {@link OnnxWeightStore.grid}): the applier refuses a payload rounding onto another grid. */
  grid(name: string): StorageGrid | undefined {
    return this.contents.grid(name);
  }
  /** Write patched copies into the files' bytes in memory (nothing on disk). */
  commit(changed: readonly string[]): void {
    this.contents.commit(changed);
  }
  /** The path of the file holding `location` (`''`: the model file). */
  pathOf(location: string): string {
    return location === '' ? this.file : path.join(path.dirname(this.file), location);
  }
  /** The files (by location, `''` for the model file) holding any of `tensors`, with their current bytes. */
  filesOf(tensors: readonly string[]): Map<string, Uint8Array> {
    const out = new Map<string, Uint8Array>();
    for (const name of tensors) {
      const loc = this.contents.fileOf(name) ?? '';
      out.set(loc, loc === '' ? this.contents.modelBytes() : (this.contents.externalBytes().get(loc) as Uint8Array));
    }
    return out;
  }
}

/**
 * Open an ONNX model file (and the external data files it names, relative to its folder) as a
 * {@link WeightStore}. Every file is read into memory once.
 *
 * @throws ModelFormatError a missing file, or bytes that are not a well-formed ONNX model.
 */
export async function openOnnxFile(file: string, options: OnnxOpenOptions = {}): Promise<OnnxFileStore> {
  const at = (loc: string) => options.replace?.get(loc) ?? (loc === '' ? file : path.join(path.dirname(file), loc));
  const { bytes, stats } = await readWhole(at(''), 'an ONNX model (.onnx)');
  const all = new Map<string, Stats>([['', stats]]);
  const external = new Map<string, Uint8Array>();
  for (const loc of onnxExternalLocations(bytes, file)) {
    const r = await readWhole(at(loc), `the external data file ${JSON.stringify(loc)} that ${path.basename(file)} names`);
    external.set(loc, r.bytes);
    all.set(loc, r.stats);
  }
  return new OnnxFileStore(file, new OnnxWeightStore(bytes, { external, source: file }), all);
}

// ---------------------------------------------------------------------------------------------
// crash-safe update

interface Journal {
  format: 'neural-diff-onnx-update';
  version: 1;
  /** Locations (relative to the model's folder; `''` is the model file) being switched. */
  files: string[];
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch (e) {
    if (errCode(e) === 'ENOENT') return false;
    throw e;
  }
}

async function removeIfThere(file: string, removed?: string[]): Promise<void> {
  try {
    await unlink(file);
    removed?.push(file);
  } catch (e) {
    if (errCode(e) !== 'ENOENT') throw e;
  }
}

async function readJournal(file: string): Promise<Journal | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if (errCode(e) === 'ENOENT') return null;
    throw e;
  }
  try {
    const j = JSON.parse(text) as Journal;
    if (j.format === 'neural-diff-onnx-update' && j.version === 1 && Array.isArray(j.files) && j.files.every((f) => typeof f === 'string')) return j;
  } catch {
    /* fall through */
  }
  throw new ModelFormatError(`the update journal ${file} is damaged: expected {"format": "neural-diff-onnx-update", "version": 1, "files": [...]}; it was changed by hand: restore the model from the full download, then delete the journal`, { file });
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
      if (TEMP.test(e) && names.some((n) => e.startsWith(`${n}.tmp-`))) await removeIfThere(path.join(dir, e), removed);
    }
  }
}

/** Put each file's kept previous version back (a file never switched keeps its bytes). */
async function restorePrevious(paths: readonly string[]): Promise<boolean> {
  let rolled = false;
  for (const p of paths) {
    const prev = p + ONNX_PREVIOUS_SUFFIX;
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
 * Bring an ONNX model back to a confirmed version after an interrupted update, and delete the
 * leftovers (module doc). Safe to call at any time (one writer per model); does nothing on a
 * clean model.
 *
 * @throws ModelFormatError when the journal is damaged.
 */
export async function recoverOnnxFile(file: string): Promise<RecoveryReport> {
  const report: RecoveryReport = { actions: [], rolledBack: false, removed: [] };
  const dir = path.dirname(file);
  const loc = (l: string) => (l === '' ? file : path.join(dir, l));
  const journalFile = file + ONNX_JOURNAL_SUFFIX;
  const journal = await readJournal(journalFile);
  if (journal) {
    const paths = journal.files.map(loc);
    report.rolledBack = await restorePrevious(paths);
    await removeTemps(paths, report.removed);
    await removeIfThere(journalFile, report.removed);
    await syncDir(dir);
    report.actions.push(report.rolledBack
      ? 'an update was interrupted after its switch but before it was confirmed: rolled back to the previous version'
      : 'an update was interrupted before its switch: the model is the previous version; removed its leftovers');
  }
  const doneFile = file + ONNX_DONE_SUFFIX;
  const done = await readJournal(doneFile);
  if (done) {
    for (const p of done.files.map(loc)) await removeIfThere(p + ONNX_PREVIOUS_SUFFIX, report.removed);
    await removeIfThere(doneFile, report.removed);
    report.actions.push('an update was confirmed but its previous version was not all deleted: deleted it');
  }
  const before = report.removed.length;
  await removeTemps([file], report.removed);
  if (report.removed.length > before && !journal) report.actions.push(`removed ${report.removed.length - before} leftover file(s) of an interrupted write`);
  return report;
}

/** The ONNX file store during an apply: commits write, verify and switch files, keeping the previous version until confirmed. */
class UpdatingOnnxFile implements TwoPhaseWeightStore {
  private switched: string[] = [];
  constructor(private readonly disk: OnnxFileStore, private readonly hasher: Hasher) {}
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
  async commit(changed: readonly string[], info?: CommitInfo): Promise<void> {
    if (changed.length === 0) return;
    this.disk.commit(changed); // typed error, nothing written, if a value cannot be stored
    const file = this.disk.file;
    const files = this.disk.filesOf(changed);
    const locations = [...files.keys()].sort();
    const journalFile = file + ONNX_JOURNAL_SUFFIX;
    await writeFileAtomically(journalFile, new TextEncoder().encode(JSON.stringify({ format: 'neural-diff-onnx-update', version: 1, files: locations } satisfies Journal) + '\n'));
    const temps = new Map<string, string>();
    try {
      for (const loc of locations) {
        const target = this.disk.pathOf(loc);
        const tmp = `${target}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
        temps.set(loc, tmp);
        const fh = await open(tmp, 'wx');
        try {
          const bytes = files.get(loc) as Uint8Array;
          let at = 0;
          while (at < bytes.length) at += (await fh.write(bytes, at, bytes.length - at)).bytesWritten;
          await fh.sync();
        } finally {
          await fh.close();
        }
      }
      // A loader must never see a version that does not hash to the target.
      if (info) {
        const fresh = await openOnnxFile(file, { replace: temps });
        const written = fingerprintStore(this.hasher, fresh).fingerprint;
        if (written !== info.fingerprint) {
          throw new TargetMismatchError(
            `the new model files of ${file} read back as ${written.slice(0, 8)}…, not the target ${info.fingerprint.slice(0, 8)}…: the disk did not keep what was written; nothing was switched and the model is unchanged: check the storage, then retry`,
            { expected: info.fingerprint, found: written },
          );
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
        await removeIfThere(p + ONNX_PREVIOUS_SUFFIX);
        await link(p, p + ONNX_PREVIOUS_SUFFIX);
      }
      await syncDir(path.dirname(file));
    } catch (e) {
      for (const tmp of temps.values()) await removeIfThere(tmp);
      await restorePrevious(locations.map((l) => this.disk.pathOf(l)));
      await removeIfThere(journalFile);
      throw e;
    }
    for (const loc of locations) {
      await rename(temps.get(loc) as string, this.disk.pathOf(loc));
      this.switched.push(this.disk.pathOf(loc));
    }
    for (const d of new Set(locations.map((l) => path.dirname(this.disk.pathOf(l))))) await syncDir(d);
  }
  async confirmCommit(): Promise<void> {
    const file = this.disk.file;
    if (!(await exists(file + ONNX_JOURNAL_SUFFIX))) return;
    await rename(file + ONNX_JOURNAL_SUFFIX, file + ONNX_DONE_SUFFIX);
    await syncDir(path.dirname(file)); // the commit point of the confirmation
    for (const p of this.switched) await removeIfThere(p + ONNX_PREVIOUS_SUFFIX);
    await removeIfThere(file + ONNX_DONE_SUFFIX);
  }
  async revertCommit(): Promise<void> {
    const file = this.disk.file;
    if (!(await exists(file + ONNX_JOURNAL_SUFFIX))) return;
    await restorePrevious(this.switched);
    await removeIfThere(file + ONNX_JOURNAL_SUFFIX);
    await syncDir(path.dirname(file));
  }
}

/** Options of {@link applyToOnnxFile}. */
export interface OnnxApplyOptions extends Omit<ApplyOptions, 'healthCheck' | 'sequenceStore'> {
  /**
   * Where the applied sequence is kept: a state file path, a {@link SequenceStore}, or `null`
   * for none. Default: `.ndiff-state.json` in the model file's folder.
   */
  state?: string | SequenceStore | null;
  /**
   * Runs after the switch, before the update is confirmed (the new version is in place: load
   * `file`, e.g. `ort.InferenceSession.create(file)`, and run one inference). Returning false or
   * throwing rolls back to the previous version.
   */
  healthCheck?: (info: { file: string; store: WeightStore; result: ApplyResult }) => boolean | void | Promise<boolean | void>;
  /** Check everything, patch a copy in memory, write nothing (no recovery, no state). */
  dryRun?: boolean;
}

export interface OnnxApplyResult extends ApplyResult {
  /** What was recovered from an earlier interrupted apply before this one ran. */
  recovery: RecoveryReport;
  /** The files rewritten (the model file and/or external data files); empty when nothing changed. */
  filesWritten: string[];
}

/**
 * Verify `payloadBytes` and apply it to the ONNX model `file`, crash-safely (module doc). A
 * payload refused by the signature policy or the decoder touches nothing; otherwise an
 * interrupted earlier apply is recovered first. On any error the files hold the version they
 * held before this call (or the recovered one) and a typed error says what to do.
 */
export async function applyToOnnxFile(file: string, payloadBytes: Uint8Array, options: OnnxApplyOptions = {}): Promise<OnnxApplyResult> {
  if (!/\.onnx$/i.test(file)) throw new UsageError(`${file}: expected an ONNX model file (.onnx)`, { file });
  const verified = await verifyPayload(payloadBytes, options);
  const state = options.state;
  const sequences: SequenceStore | undefined =
    state === null ? undefined : state === undefined ? new FileSequenceStore(path.join(path.dirname(file), DEFAULT_STATE_FILE)) : typeof state === 'string' ? new FileSequenceStore(state) : state;
  const empty: RecoveryReport = { actions: [], rolledBack: false, removed: [] };
  const hasher: Hasher = options.hasher && typeof options.hasher === 'object' ? options.hasher : await getHasher(options.hasher ? { prefer: options.hasher } : undefined);

  if (options.dryRun) {
    const store = (await openOnnxFile(file)).contents;
    const readOnly: SequenceStore | undefined = sequences && { get: (id) => sequences.get(id), set: () => {} };
    const res = await applyVerifiedPayload(store, verified, { ...options, hasher, sequenceStore: readOnly, healthCheck: undefined });
    return { ...res, sequenceRecorded: false, recovery: empty, filesWritten: [] };
  }

  const unlock = await lockModelDir(path.dirname(file));
  try {
    const recovery = await recoverOnnxFile(file);
    const disk = await openOnnxFile(file);
    const store = new UpdatingOnnxFile(disk, hasher);
    const healthCheck = options.healthCheck;
    const res = await applyVerifiedPayload(store, verified, {
      ...options,
      hasher,
      sequenceStore: sequences,
      healthCheck: healthCheck && ((info) => healthCheck({ file, ...info })),
    });
    const filesWritten = res.status === 'applied' ? [...disk.filesOf(res.changedTensors).keys()].map((l) => disk.pathOf(l)) : [];
    return { ...res, recovery, filesWritten };
  } finally {
    await unlock();
  }
}
