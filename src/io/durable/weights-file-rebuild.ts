/**
 * A structural payload (format v7, `neural-diff/rebuild`) applied to a model file on disk (Node
 * and Electron), crash-safely, with the journal, kept previous version and recovery of
 * `weights-file-update.ts`: the rebuilt file is checked in memory (base, intermediate, target
 * fingerprints), written whole as a new file beside the model, fsynced, read back and
 * fingerprinted, then switched in with one rename. An ONNX model with external data files is
 * rebuilt with them (the payload's file list `fl`, FORMAT.md §17): every file whose bytes change
 * goes through the same steps, the journal naming them all (the model file renamed last). The
 * target may name other data files than the model on disk: a data file it adds is created (its
 * location checked to lie inside the model's folder, through no symbolic link, where no file is:
 * a file in the way is refused, nothing written), and one it no longer names is deleted once the
 * update is confirmed. States:
 *
 * 1. the journal `<model>.ndiff-update.json` names the files replaced, created and to be deleted
 *    (and any folder made for a created file): temp file, fsync, rename, fsync of the folder;
 * 2. each new file is written to `<file>.tmp-<pid>-<hex>` and fsynced, then all are reopened and
 *    fingerprinted together: if they are not the payload's target, nothing switches;
 * 3. each replaced file is hard-linked as `<file>.ndiff-prev`; the created files are linked into
 *    place (a link never overwrites), then the temp files renamed over the replaced ones, the
 *    model file last, the folders fsynced (the switch); the files to be deleted are still there;
 * 4. the health check runs; if it fails, every `.ndiff-prev` is renamed back and the created
 *    files deleted (rollback);
 * 5. if it passes, the journal becomes `<model>.ndiff-update.done` (the commit point), the kept
 *    files and the data files the new version no longer names are deleted, then the `.done`
 *    file; the sequence is recorded last.
 *
 * A crash anywhere is finished by `recoverWeightsFile` (run first by every apply and rebuild):
 * before the commit point the journal rolls back to exactly the old files (kept versions renamed
 * back, created files deleted); after it the `.done` file finishes the deletions, leaving exactly
 * the new ones.
 */
import { randomBytes } from 'node:crypto';
import { link, lstat, mkdir, open, readdir, rename, stat, unlink } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import * as path from 'node:path';
import { HealthCheckError, ModelMismatchError, NeuralDiffError, StateStoreError, TargetMismatchError, UsageError } from '../../core/errors.ts';
import { fingerprintStore } from '../../core/fingerprint.ts';
import { getHasher, type Hasher } from '../../core/hasher.ts';
import { modelPathProblem, type ModelFilesReader } from '../../core/model-files.ts';
import { decodeStructuralPayload, rebuildModelBytes, rebuildModelFiles, type RebuildFileKind, type RebuildOptions, type RebuildResult } from '../../apply/rebuild.ts';
import { openSignedPayload } from '../../apply/signature.ts';
import type { SequenceStore } from '../../apply/freshness.ts';
import { errCode, kindOf, readRegularFile, syncDir } from './durable.ts';
import { FileSequenceStore, writeFileAtomically } from './sequence-file.ts';
import { lockModelDir, type RecoveryReport } from './lock.ts';
import { readModelIdRecord, writeModelIdRecord } from './model-id-file.ts';
import { openWeightsFile, readAt, realModelPath, sameFile, TEMP_FILE, type OpenedFile, type WeightsFileFormat, type WeightsFileStore } from './weights-file.ts';
import { JOURNAL_SUFFIX, DONE_SUFFIX, PREVIOUS_SUFFIX, foldersBelow, recoverWeightsFile, removeEmptyFolders, removeIfThere, restorePrevious, weightsFileSequenceStore, WeightsFileSequenceStore, type WeightsFileJournal } from './weights-file-update.ts';

export interface WeightsFileRebuildOptions extends Omit<RebuildOptions, 'sequenceStore'> {
  /** Where the applied sequence is kept, as for `applyToWeightsFile` (default `<model>.ndiff-state.json`; `null` for none). */
  state?: string | SequenceStore | null;
  /**
   * Runs after the switch, before the update is confirmed; false or a throw rolls back to the
   * previous file. It also finishes an update an earlier run switched in and never confirmed
   * (`pending` true, no `result`; see `applyToWeightsFile`).
   */
  healthCheck?: (info: { file: string; result?: RebuildResult; pending?: true }) => boolean | void | Promise<boolean | void>;
  /** Check everything and rebuild in memory; write nothing (no recovery, no state). */
  dryRun?: boolean;
}

export interface WeightsFileRebuildResult extends RebuildResult {
  recovery: RecoveryReport;
  /** The files rewritten or created (the model file, data files); empty when already applied. */
  filesWritten: string[];
  /** The data files deleted because the new version no longer names them; empty when none. */
  filesRemoved: string[];
  /** What was left alone, and why: a data file the new version drops but another model of the folder names is kept. */
  warnings: string[];
  sequenceRecorded: boolean;
}

/** A file a rebuild writes: its location (`''` the model file, else an external data file's) and bytes. */
interface RebuiltFile {
  loc: string;
  bytes: Uint8Array;
  /** A data file the model on disk does not have (the target adds it). */
  created: boolean;
}

/** What a rebuild does to the model's files, decided before anything is written. */
interface FilesPlan {
  /** The files written: replaced (their bytes changed) or created. */
  outputs: RebuiltFile[];
  /** Data files the target no longer names: deleted after the commit point. */
  removed: string[];
  /** Folders to make for created files (locations, the outermost first). */
  folders: string[];
}

/**
 * Verify a structural payload (cap, signature, document) and rebuild the model `file` of `format`
 * with it, crash-safely (module doc). A payload refused before the model is read touches nothing;
 * otherwise an interrupted earlier update is recovered first. On any error the files are the ones
 * they were before this call (or the recovered ones) and a typed error says what to do. An ONNX
 * model with external data files is rebuilt with them, data files added or dropped (module doc).
 */
export async function rebuildWeightsFile(file: string, payloadBytes: Uint8Array, format: WeightsFileFormat, kind: RebuildFileKind, options: WeightsFileRebuildOptions = {}): Promise<WeightsFileRebuildResult> {
  if (!format.extension.test(file)) throw new UsageError(`${file}: expected ${format.what}`, { file });
  // Refuse a bad payload before anything on disk is touched (rebuildModelBytes checks it again).
  const { header: checked } = await decodeStructuralPayload((await openSignedPayload(payloadBytes, options)).payload, options);
  const real = await realModelPath(file, format);
  const state = options.state;
  const sequences: SequenceStore | undefined =
    state === null ? undefined : state === undefined ? weightsFileSequenceStore(real) : typeof state === 'string' ? new FileSequenceStore(state) : state;
  const reserved = sequences instanceof FileSequenceStore ? [sequences.file] : sequences instanceof WeightsFileSequenceStore ? [sequences.file, sequences.legacy.file] : [];
  const hasher: Hasher = options.hasher && typeof options.hasher === 'object' ? options.hasher : await getHasher(options.hasher ? { prefer: options.hasher } : undefined);
  const dir = path.dirname(real);
  const multiFile = kind === 'onnx' && checked.files !== undefined;
  if (options.dryRun) {
    const disk = await openWeightsFile(real, format, { reserved });
    try {
      const readOnly: SequenceStore | undefined = sequences && { get: (id) => sequences.get(id), set: () => {} };
      const recorded = await readModelIdRecord(real);
      const { result, plan } = await rebuildInMemory(disk, real, payloadBytes, format, kind, multiFile, { ...options, expectedModelId: options.expectedModelId ?? recorded, sequenceStore: readOnly, hasher });
      // A file in the way of a data file the new version creates is refused by a dry run too.
      const warnings = result.status === 'applied' ? await keepSharedDataFiles(real, format, plan) : [];
      if (result.status === 'applied') await checkCreatedLocations(real, plan.outputs.filter((o) => o.created).map((o) => o.loc), disk.stats as ReadonlyMap<string, Stats>, reserved);
      return { ...result, recovery: { actions: [], rolledBack: false, removed: [] }, filesWritten: [], filesRemoved: [], warnings, sequenceRecorded: false };
    } finally {
      await disk.close();
    }
  }
  const unlock = await lockModelDir(dir);
  let recovery: RecoveryReport = { actions: [], rolledBack: false, removed: [] };
  try {
    const healthCheck = options.healthCheck;
    recovery = await recoverWeightsFile(real, format, { healthCheck: healthCheck && (() => healthCheck({ file: real, pending: true })) });
    const recorded = await readModelIdRecord(real);
    if (options.expectedModelId !== undefined && recorded !== undefined && options.expectedModelId !== recorded) {
      throw new ModelMismatchError(`${real} holds model ${JSON.stringify(recorded)}, but expectedModelId is ${JSON.stringify(options.expectedModelId)}: check which model this file is, and pass its id`, { file: real, expected: options.expectedModelId, found: recorded });
    }
    const disk = await openWeightsFile(real, format, { reserved });
    let result: RebuildResult;
    let plan: FilesPlan;
    /** Each file of the model on disk as it was opened: '' the model file, else a data file's location. */
    const stats = new Map<string, Stats>();
    try {
      for (const [loc, st] of disk.stats) stats.set(loc, st as Stats);
      ({ result, plan } = await rebuildInMemory(disk, real, payloadBytes, format, kind, multiFile, { ...options, expectedModelId: options.expectedModelId ?? recorded, sequenceStore: sequences, hasher }));
    } finally {
      await disk.close();
    }
    const { header } = result;
    const pin = recorded === undefined ? header.modelId : undefined;
    const record = async (): Promise<boolean> => {
      if (!sequences || (result.previousSequence !== undefined && header.sequence <= result.previousSequence)) return false;
      try {
        await sequences.set(header.modelId, header.sequence, { fingerprint: header.targetFingerprint });
      } catch (e) {
        throw new StateStoreError(`${real} is now ${header.targetFingerprint.slice(0, 8)}… (sequence ${header.sequence}), but recording the sequence failed (${(e as Error).message}): fix the store and run the same rebuild again: it reports already applied and records the sequence`, { modelId: header.modelId, sequence: header.sequence, applied: true });
      }
      return true;
    };
    if (result.status === 'already-applied') {
      if (pin !== undefined) await writeModelIdRecord(real, pin);
      return { ...result, recovery, filesWritten: [], filesRemoved: [], warnings: [], sequenceRecorded: await record() };
    }

    const at = (loc: string) => (loc === '' ? real : path.resolve(dir, loc));
    // Another model's data files: one to be rewritten is refused, one to be deleted kept.
    const warnings = await keepSharedDataFiles(real, format, plan);
    const { outputs, removed } = plan;
    const created = outputs.filter((o) => o.created);
    const replaced = outputs.filter((o) => !o.created);
    // A created data file must land inside the model's folder, where no file is (refused, nothing written).
    plan.folders = await checkCreatedLocations(real, created.map((o) => o.loc), stats, reserved);
    // 1. the journal (version 2 when files are created or deleted: an older applier refuses it rather than half recover it).
    const changesSet = created.length > 0 || removed.length > 0;
    const journal = real + JOURNAL_SUFFIX;
    const journalDoc: WeightsFileJournal = {
      format: format.journal,
      version: changesSet ? 2 : 1,
      files: replaced.map((o) => o.loc),
      ...(changesSet ? { created: created.map((o) => o.loc), removed, folders: plan.folders } : {}),
      ...(options.healthCheck ? { awaitsHealthCheck: true } : {}),
    };
    await writeFileAtomically(journal, new TextEncoder().encode(JSON.stringify(journalDoc) + '\n'));
    const tmps = new Map(outputs.map((o) => [o.loc, `${at(o.loc)}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`]));
    /** The folders the files go in: fsynced after each change of their entries. */
    const touched = [...new Set([dir, ...outputs.map((o) => path.dirname(at(o.loc)))])];
    const madeFolders: string[] = [];
    const linked: string[] = [];
    let switched = false;
    try {
      // 2. the new files, fsynced, read back together.
      for (const f of plan.folders) {
        await mkdir(at(f));
        madeFolders.push(at(f));
        await syncDir(path.dirname(at(f)));
      }
      for (const o of outputs) {
        const fh = await open(tmps.get(o.loc) as string, 'wx', 0o600);
        try {
          for (let w = 0; w < o.bytes.length; ) w += (await fh.write(o.bytes, w, o.bytes.length - w, w)).bytesWritten;
          // A replaced file keeps its permissions; a created one takes the model file's.
          const st = stats.get(o.created ? '' : o.loc);
          if (st) await fh.chmod(st.mode & 0o7777);
          await fh.sync();
        } finally {
          await fh.close();
        }
      }
      const fresh = await openWeightsFile(real, format, { replace: tmps, reserved });
      try {
        const written = fingerprintStore(hasher, fresh).fingerprint;
        if (written !== header.targetFingerprint) {
          throw new TargetMismatchError(`the rebuilt ${real} read back as ${written.slice(0, 8)}…, not the target ${header.targetFingerprint.slice(0, 8)}…: the disk did not keep what was written; nothing was switched: check the storage, then retry`, { expected: header.targetFingerprint, found: written });
        }
      } finally {
        await fresh.close();
      }
      for (const loc of [...replaced.map((o) => o.loc), ...removed]) {
        const now = await stat(at(loc)).catch(() => null);
        const st = stats.get(loc);
        if (!now || !st || !sameFile(now, st)) throw new UsageError(`${at(loc)} changed on disk while ${real} was being rebuilt: nothing was switched; apply again (one writer per model)`, { file: at(loc) });
      }
      // 3. keep the previous files, switch: the created files first, the model file last.
      for (const o of replaced) {
        await removeIfThere(at(o.loc) + PREVIOUS_SUFFIX);
        await link(at(o.loc), at(o.loc) + PREVIOUS_SUFFIX);
      }
      await syncDir(dir);
      switched = true;
      for (const o of created) {
        try {
          await link(tmps.get(o.loc) as string, at(o.loc));
        } catch (e) {
          if (errCode(e) !== 'EEXIST') throw e;
          throw new UsageError(`${at(o.loc)} appeared while ${real} was being rebuilt (the new version creates this data file): nothing was switched and that file was left alone; move it away, then apply again (one writer per model)`, { file: at(o.loc) });
        }
        linked.push(at(o.loc));
        await unlink(tmps.get(o.loc) as string);
      }
      for (const o of [...replaced].reverse()) await rename(tmps.get(o.loc) as string, at(o.loc));
      for (const d of touched) await syncDir(d);
      // 4. the health check.
      if (options.healthCheck) {
        let ok: boolean | void;
        try {
          ok = await options.healthCheck({ file: real, result });
        } catch (e) {
          throw new HealthCheckError(`the health check of the rebuilt ${real} threw (${(e as Error).message}): rolled back to the previous file`, { file: real, cause: (e as Error).message });
        }
        if (ok === false) throw new HealthCheckError(`the health check of the rebuilt ${real} returned false: rolled back to the previous file`, { file: real });
      }
    } catch (e) {
      for (const t of tmps.values()) await removeIfThere(t);
      if (switched) await restorePrevious(replaced.map((o) => at(o.loc)));
      else for (const o of replaced) await removeIfThere(at(o.loc) + PREVIOUS_SUFFIX);
      for (const f of linked) await removeIfThere(f);
      await removeEmptyFolders(madeFolders);
      for (const d of touched) await syncDir(d).catch(() => {});
      await removeIfThere(journal);
      await syncDir(dir);
      throw e;
    }
    // 5. confirm: the journal becomes .done (the commit point), then the clean-up.
    await rename(journal, real + DONE_SUFFIX);
    await syncDir(dir);
    for (const o of replaced) await removeIfThere(at(o.loc) + PREVIOUS_SUFFIX);
    for (const loc of removed) await removeIfThere(at(loc));
    await removeEmptyFolders(foldersBelow(dir, removed));
    // The deletions durable before the .done journal's: a power cut must not keep its deletion
    // and lose theirs (a dropped data file nothing would ever delete).
    for (const d of new Set([dir, ...[...replaced.map((o) => o.loc), ...removed].map((l) => path.dirname(at(l)))])) await syncDir(d).catch(() => {});
    await removeIfThere(real + DONE_SUFFIX);
    if (pin !== undefined) await writeModelIdRecord(real, pin);
    return { ...result, recovery, filesWritten: outputs.map((o) => at(o.loc)), filesRemoved: removed.map(at), warnings, sequenceRecorded: await record() };
  } catch (e) {
    // What the recovery of an earlier interrupted update did, even though this one failed.
    if (e instanceof NeuralDiffError && recovery.actions.length > 0) (e.details as Record<string, unknown>).recovery = recovery;
    throw e;
  } finally {
    await unlock();
  }
}

/**
 * Rebuild the model `disk` holds in memory with the payload, and say which files change: for an
 * ONNX model with external data files (or a payload naming its files), the files rebuilt
 * together, each data file the target adds marked created, each it no longer names removed.
 */
async function rebuildInMemory(disk: WeightsFileStore, real: string, payloadBytes: Uint8Array, format: WeightsFileFormat, kind: RebuildFileKind, multiFile: boolean, options: RebuildOptions): Promise<{ result: RebuildResult; plan: FilesPlan }> {
  const external = format.externalLocations(disk.contents.modelBytes(), real);
  if (!external.length && !multiFile) {
    const result = await rebuildModelBytes(disk.contents.modelBytes(), payloadBytes, { kind, open: (bytes) => format.contents(bytes, new Map(), real) }, options);
    return { result, plan: { outputs: [{ loc: '', bytes: result.bytes, created: false }], removed: [], folders: [] } };
  }
  if (!format.files) throw new UsageError(`${real} keeps weights in external data files (${external.join(', ')}): a structural payload rebuilds a single-file ${kind} model; ship this model whole`, { file: real, external });
  // An ONNX model with external data files: the .onnx and its data files rebuilt together. The
  // model is fingerprinted first a tensor at a time (its data files can be gigabytes), and the
  // byte delta reads its data files only where it copies from (issue #77): never whole.
  const opened = external.map((loc) => disk.openedAt(loc));
  const modelBytes = disk.contents.modelBytes();
  const reader: ModelFilesReader = {
    files: [{ path: path.basename(real), length: modelBytes.length }, ...external.map((loc, i) => ({ path: loc, length: opened[i].stats.size }))],
    read: (index, offset, into) => {
      if (index === 0) into.set(modelBytes.subarray(offset, offset + into.length));
      else readAt(opened[index - 1], offset, into.length, into);
    },
  };
  const result = await rebuildModelFiles({ fingerprint: fingerprintStore(options.hasher as Hasher, disk).fingerprint, reader }, payloadBytes, format.files, options);
  if (result.status === 'already-applied') return { result, plan: { outputs: [], removed: [], folders: [] } };
  // A payload without a file list rebuilds the model file alone: its data files are no longer named.
  const files = result.files ?? [{ path: path.basename(real), bytes: result.bytes }];
  const was = new Map(external.map((loc, i) => [loc, opened[i]]));
  const now = new Set(files.slice(1).map((f) => f.path));
  // Only the files whose bytes changed are written, and the data files the target adds.
  const outputs = files
    .map((f, i): RebuiltFile => ({ loc: i === 0 ? '' : f.path, bytes: f.bytes, created: i > 0 && !was.has(f.path) }))
    .filter((o) => o.created || !(o.loc === '' ? sameBytes(o.bytes, modelBytes) : sameAsFile(o.bytes, was.get(o.loc) as OpenedFile)));
  return { result, plan: { outputs, removed: external.filter((loc) => !now.has(loc)), folders: [] } };
}

/** Bytes compared per read with a data file on disk. */
const COMPARE_CHUNK = 16 * 1024 * 1024;

/** Whether `bytes` are the bytes of the opened file `f`, read a chunk at a time. */
function sameAsFile(bytes: Uint8Array, f: OpenedFile): boolean {
  if (bytes.length !== f.stats.size) return false;
  const chunk = new Uint8Array(Math.min(COMPARE_CHUNK, bytes.length));
  for (let at = 0; at < bytes.length; at += chunk.length) {
    const n = Math.min(chunk.length, bytes.length - at);
    if (!sameBytes(bytes.subarray(at, at + n), readAt(f, at, n, chunk))) return false;
  }
  return true;
}

/** The largest other model file of the folder read to learn which data files it names. */
const MAX_OTHER_MODEL_BYTES = 256 * 1024 * 1024;

/**
 * The data files the other model files of `real`'s folder (and their kept previous versions)
 * name, as resolved paths, each with the first model naming it; and the model files that could
 * not be read (too big, not a regular file, no permission), whose data files are unknown. A file
 * that does not parse as a model names nothing.
 */
async function namedByOtherModelFiles(real: string, format: WeightsFileFormat): Promise<{ named: Map<string, string>; unreadable: string[] }> {
  const dir = path.dirname(real);
  const own = await stat(real);
  const named = new Map<string, string>();
  const unreadable: string[] = [];
  for (const name of (await readdir(dir)).sort()) {
    const file = path.join(dir, name);
    const modelName = name.endsWith(PREVIOUS_SUFFIX) ? name.slice(0, -PREVIOUS_SUFFIX.length) : name;
    if (!format.extension.test(modelName) || TEMP_FILE.test(name) || file === real || file === real + PREVIOUS_SUFFIX) continue;
    let bytes: Uint8Array | null;
    try {
      const st = await stat(file);
      if (sameFile(st, own)) continue; // this model under another name
      bytes = await readRegularFile(file, { maxBytes: MAX_OTHER_MODEL_BYTES });
    } catch (e) {
      if (errCode(e) === 'ENOENT') continue; // gone, or a dangling link: it names nothing
      unreadable.push(`${file} (${errCode(e) === 'EFBIG' ? `over ${MAX_OTHER_MODEL_BYTES / 1024 / 1024} MiB` : (e as Error).message})`);
      continue;
    }
    if (bytes === null) continue;
    let locations: string[];
    try {
      locations = format.externalLocations(bytes, file);
    } catch {
      continue; // not a model: it names nothing
    }
    for (const loc of locations) if (!named.has(path.resolve(dir, loc))) named.set(path.resolve(dir, loc), file);
  }
  return { named, unreadable };
}

/**
 * Leave alone the data files another model of the folder names (issue #61): one the new version
 * no longer names is kept rather than deleted (taken off `plan.removed`, a warning returned);
 * one whose bytes the new version changes is refused, since rewriting it would change the other
 * model too. A model file beside that cannot be read counts as naming every file.
 * @throws UsageError naming the data file and the other model; nothing was written
 */
async function keepSharedDataFiles(real: string, format: WeightsFileFormat, plan: FilesPlan): Promise<string[]> {
  const rewritten = plan.outputs.filter((o) => o.loc !== '' && !o.created);
  if (!plan.removed.length && !rewritten.length) return [];
  const dir = path.dirname(real);
  const { named, unreadable } = await namedByOtherModelFiles(real, format);
  const user = (loc: string): string | undefined => {
    const by = named.get(path.resolve(dir, loc));
    return by !== undefined ? `${by} names it too` : unreadable.length ? `${unreadable.join(', ')} beside it cannot be read, so it may name it` : undefined;
  };
  for (const o of rewritten) {
    const by = user(o.loc);
    if (by) throw new UsageError(`the new version of ${real} changes its data file ${JSON.stringify(o.loc)}, but ${by}: rewriting it would change that model too, so nothing was written. Give each model its own data files (save one of them with other locations), move the other model away, or ship this version whole`, { file: real, location: o.loc, sharedWith: named.get(path.resolve(dir, o.loc)) ?? unreadable });
  }
  const warnings: string[] = [];
  plan.removed = plan.removed.filter((loc) => {
    const by = user(loc);
    if (by) warnings.push(`the new version of ${real} no longer names the data file ${JSON.stringify(loc)}, but ${by}: kept it`);
    return !by;
  });
  return warnings;
}

/**
 * Check that each data file the target adds (`locations`, relative to the model's folder) can be
 * created: its path inside the folder, every folder on the way a plain folder (no symbolic
 * link, no file) or missing, and no file at it. Returns the folders to make, outermost first.
 * @throws UsageError naming what is in the way; nothing was written.
 */
async function checkCreatedLocations(real: string, locations: readonly string[], opened: ReadonlyMap<string, Stats>, reserved: readonly string[]): Promise<string[]> {
  const dir = path.dirname(real);
  const folders: string[] = [];
  const refuse = (loc: string, found: string, what: string): never => {
    throw new UsageError(`the new version of ${real} creates the data file ${JSON.stringify(loc)}, but ${found}: expected no file there, inside the model's folder; nothing was written: ${what}`, { file: real, location: loc, found });
  };
  for (const loc of locations) {
    const target = path.resolve(dir, loc);
    const problem = modelPathProblem(loc);
    if (problem || !target.startsWith(dir + path.sep)) refuse(loc, `its path is ${problem ?? 'outside the model\'s folder'}`, 'the payload is corrupt or hostile; fetch it again or the full model');
    if (reserved.some((r) => path.resolve(r) === target)) refuse(loc, `${target} is the model's state file`, 'keep the state elsewhere (the state option), or ship this version whole');
    const segments = loc.split('/');
    for (let i = 1; i < segments.length; i++) {
      const folder = segments.slice(0, i).join('/');
      const st = await lstat(path.resolve(dir, folder)).catch((e: unknown) => (errCode(e) === 'ENOENT' ? null : Promise.reject(e)));
      if (!st) {
        if (!folders.includes(folder)) folders.push(folder);
      } else if (st.isSymbolicLink()) {
        refuse(loc, `${path.resolve(dir, folder)} is a symbolic link`, 'data files must lie inside the model\'s folder reached without links (docs/SECURITY.md); replace the link with a folder, or ship this version whole');
      } else if (!st.isDirectory()) {
        refuse(loc, `${path.resolve(dir, folder)} is ${st.isFile() ? 'a file' : kindOf(st)}, not a folder`, 'move it away, then apply again');
      }
    }
    const st = await lstat(target).catch((e: unknown) => (errCode(e) === 'ENOENT' ? null : Promise.reject(e)));
    if (st) {
      const alias = [...opened].find(([, o]) => o.dev === st.dev && o.ino === st.ino);
      if (alias) {
        refuse(loc, `${target} is already ${alias[0] === '' ? 'the model file' : `the model's data file ${JSON.stringify(alias[0])}`} under another spelling (a file system that ignores case?)`, 'ship this version whole');
      }
      refuse(loc, `${target} already exists and is not one of the model's files (${st.isFile() ? `a file of ${st.size} bytes` : kindOf(st)})`, 'it may belong to another model or to you: move it away (or delete it if it is not needed), then apply again');
    }
  }
  return folders;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}
