/**
 * Model targets on disk for the device updater (Node, Electron's main process): a TF.js model
 * folder and a model file (`.onnx`, `.tflite`, `.safetensors`). Payloads go through the existing
 * crash-safe appliers (`applyToModelDir`, `applyToWeightsFile`; a structural payload, format v7, through the file rebuild of
 * `rebuildOnnxFile`/`rebuildTfliteFile`). A full package replaces the model whole, crash-safely:
 *
 * - a TF.js folder `dir`: the package is written and fsynced into `dir.ndiff-incoming`, its
 *   fingerprint checked, then `dir` is renamed to `dir.ndiff-previous` and the new folder to
 *   `dir` (each rename followed by an fsync of the parent); the health check runs; on success the
 *   previous folder is renamed to `dir.ndiff-retired` and deleted, on failure it is renamed back
 *   (a first install, with no previous folder: the new one is retired and deleted);
 * - an ONNX file: written to `file.ndiff-incoming`, the old one hard-linked as
 *   `file.ndiff-previous`, the new one renamed over `file`, and the same health check and ending.
 *
 * Recovery, before every read of the fingerprint: a `retired` leftover is deleted (the switch
 * was confirmed); a `previous` one means a switch never confirmed: it is undone (the previous
 * model is back, as the appliers roll back an unconfirmed update); a `first-install` marker, a
 * first install (no previous model) never confirmed: the same, its rollback being to no model;
 * an `incoming` one, a switch that never happened: it is deleted. A loader reading `dir` (or `file`) sees the old model or
 * the new one, never a mix; during the instant between the two renames of a folder, no `dir`.
 */
import { cp, link, lstat, readdir, readlink, rename, rm, stat, symlink } from 'node:fs/promises';
import * as path from 'node:path';
import { HealthCheckError, ModelFormatError, ModelMismatchError, TargetMismatchError } from '../../core/errors.ts';
import { fingerprintStore } from '../../core/fingerprint.ts';
import { getHasher } from '../../core/hasher.ts';
import type { ModelTarget, TargetApplyOptions, TargetInstallOptions } from '../../updater/target.ts';
import { applyToModelDir, recordFolderModelId } from '../tfjs/folder-update.ts';
import { ONNX_FILE } from '../onnx/files.ts';
import { TFLITE_FILE } from '../tflite/files.ts';
import { SAFETENSORS_FILE } from '../safetensors/files.ts';
import { openWeightsFile, type WeightsFileFormat } from '../durable/weights-file.ts';
import { applyToWeightsFile } from '../durable/weights-file-update.ts';
import { rebuildWeightsFile } from '../durable/weights-file-rebuild.ts';
import { isStructuralPayload } from '../../apply/rebuild.ts';
import { isSignedEnvelope, parseEnvelope } from '../../apply/envelope.ts';
import { readRecordedDigests, recordModelDirDigests } from '../tfjs/recorded-digests.ts';
import { openTfjsModelDir, referencedFiles } from '../tfjs/index.ts';
import { openTfjsModel } from '../tfjs/model-file.ts';
import { lockModelDir } from '../durable/lock.ts';
import { DEFAULT_STATE_FILE, JOURNAL_FILE, modelFilesOf } from '../durable/control-files.ts';
import { kindOf, makeDirs, syncDir, writeFileAtomically } from '../durable/durable.ts';
import { settlePendingSwitch, type PendingOptions } from '../durable/pending-update.ts';
import type { RecoveryReport } from '../durable/lock.ts';
import { JOURNAL_SUFFIX as WEIGHTS_JOURNAL_SUFFIX, recoverWeightsFile } from '../durable/weights-file-update.ts';
import { realModelPath } from '../durable/weights-file.ts';
import { recoverModelDir } from '../tfjs/folder-update.ts';
import type { PendingCheck, PendingUpdateOutcome } from '../../updater/target.ts';

/** Suffixes of the names a full install uses beside the model. */
export const INCOMING_SUFFIX = '.ndiff-incoming';
export const PREVIOUS_SUFFIX = '.ndiff-previous';
export const RETIRED_SUFFIX = '.ndiff-retired';
/** Beside a model a first install (no previous model) switched in and has not confirmed yet. */
export const FIRST_INSTALL_SUFFIX = '.ndiff-first-install';

async function exists(p: string): Promise<boolean> {
  return (await stat(p).catch(() => undefined)) !== undefined;
}

/** Run the health check: true when it passed (returned anything but false, and did not throw). */
async function passes(check: TargetInstallOptions['healthCheck']): Promise<{ ok: boolean; why?: string }> {
  if (!check) return { ok: true };
  try {
    return (await check()) === false ? { ok: false, why: 'it returned false' } : { ok: true };
  } catch (e) {
    return { ok: false, why: `it threw: ${(e as Error)?.message ?? String(e)}` };
  }
}

/**
 * Finish or undo an interrupted full install of `model` (a folder or a file); true if something
 * was done. A new model switched in but never confirmed (killed during its health check) is
 * finished as every command finishes an unconfirmed switch (src/io/durable/pending-update.ts):
 * by `options.healthCheck` if given (confirmed if it passes, rolled back if not), else rolled
 * back; `report` (if given) says which.
 */
export async function recoverFullInstall(given: string, options: PendingOptions = {}, report: RecoveryReport = { actions: [], rolledBack: false, removed: [] }): Promise<boolean> {
  const model = withoutTrailingSlash(given);
  const parent = path.dirname(path.resolve(model));
  let changed = false;
  if (await exists(model + RETIRED_SUFFIX)) {
    await rm(model + RETIRED_SUFFIX, { recursive: true, force: true });
    changed = true;
  }
  if (await exists(model + PREVIOUS_SUFFIX)) {
    const rollBack = async () => {
      if (await exists(model)) {
        await rename(model, model + RETIRED_SUFFIX);
        await syncDir(parent);
      }
      await rename(model + PREVIOUS_SUFFIX, model);
      await syncDir(parent);
      await rm(model + RETIRED_SUFFIX, { recursive: true, force: true });
    };
    if (await exists(model)) {
      // Switched but never confirmed. A full install records no journal of its own: it awaited
      // a health check or not, unknown, so without one it is rolled back (the updater installs it again).
      await settlePendingSwitch({
        model,
        what: 'a full install',
        awaitsHealthCheck: false,
        confirm: async () => {
          await rename(model + PREVIOUS_SUFFIX, model + RETIRED_SUFFIX);
          await syncDir(parent);
          await rm(model + RETIRED_SUFFIX, { recursive: true, force: true });
        },
        rollBack,
      }, options, report);
    } else {
      // Half switched (between its two renames): the previous model comes back.
      await rollBack();
    }
    changed = true;
  }
  if (await exists(model + FIRST_INSTALL_SUFFIX)) {
    // A first install: its rollback is to no model, as before it.
    const forget = async () => {
      await rm(model + FIRST_INSTALL_SUFFIX, { force: true });
      await syncDir(parent);
    };
    if (await exists(model)) {
      await settlePendingSwitch({
        model,
        what: 'a full install (the first: there was no model before)',
        awaitsHealthCheck: false,
        confirm: forget,
        rollBack: async () => {
          await rename(model, model + RETIRED_SUFFIX);
          await forget();
          await rm(model + RETIRED_SUFFIX, { recursive: true, force: true });
        },
      }, options, report);
    } else await forget(); // stopped before its switch
    changed = true;
  }
  if (await exists(model + INCOMING_SUFFIX)) {
    await rm(model + INCOMING_SUFFIX, { recursive: true, force: true });
    changed = true;
  }
  return changed;
}

/**
 * Whether a full install of `model` waits to be finished (switched in, never confirmed) or was
 * stopped half way: what {@link recoverFullInstall} would settle.
 */
export async function fullInstallPending(model: string): Promise<boolean> {
  const m = withoutTrailingSlash(model);
  return (await exists(m + PREVIOUS_SUFFIX)) || exists(m + FIRST_INSTALL_SUFFIX);
}

/** Switch `incoming` into place as `model`, run the health check, keep or undo (module doc). */
async function switchAndCheck(model: string, options: TargetInstallOptions, keepPrevious: (model: string, previous: string) => Promise<boolean>): Promise<void> {
  const parent = path.dirname(path.resolve(model));
  const hadPrevious = await keepPrevious(model, model + PREVIOUS_SUFFIX);
  if (hadPrevious) await syncDir(parent);
  // A first install keeps no previous model: a marker says it is not confirmed yet (recovery).
  else await writeFileAtomically(model + FIRST_INSTALL_SUFFIX, new Uint8Array(0));
  await rename(model + INCOMING_SUFFIX, model);
  await syncDir(parent);
  const health = await passes(options.healthCheck);
  if (!health.ok) {
    // Rolled back: to the previous model, or (a first install) to no model, as before.
    await rename(model, model + RETIRED_SUFFIX);
    if (hadPrevious) await rename(model + PREVIOUS_SUFFIX, model);
    else await rm(model + FIRST_INSTALL_SUFFIX, { force: true });
    await syncDir(parent);
    await rm(model + RETIRED_SUFFIX, { recursive: true, force: true });
    throw new HealthCheckError(
      `the health check rejected the full model ${options.fingerprint} (${health.why}): ${hadPrevious ? 'the previous model is back in place' : 'there was no model before, and there is none again (the new one was removed)'}: report it to the publisher`,
      { target: options.fingerprint, rolledBack: true },
    );
  }
  if (hadPrevious) {
    await rename(model + PREVIOUS_SUFFIX, model + RETIRED_SUFFIX);
    await syncDir(parent);
    await rm(model + RETIRED_SUFFIX, { recursive: true, force: true });
  } else {
    await rm(model + FIRST_INSTALL_SUFFIX, { force: true });
    await syncDir(parent);
  }
}

/**
 * {@link ModelTarget.settlePending} for a model on disk: an unconfirmed full install, then (under
 * the model's lock, when an update journal is there) an unconfirmed payload (`recoverPayload`, with
 * the health check or none), each finished the one way (src/io/durable/pending-update.ts).
 * `fingerprintNow` reads the version in place for the health check's `fingerprint`; `journal`
 * names the update journal to look for.
 */
async function settleOnDisk(
  model: string,
  check: PendingCheck | undefined,
  fingerprintNow: () => Promise<string>,
  recoverPayload: (options: PendingOptions) => Promise<RecoveryReport | undefined>,
  journal: () => Promise<string>,
): Promise<PendingUpdateOutcome | undefined> {
  const healthCheck = (kind: 'payload' | 'full') => check && (async () => check({ kind, fingerprint: await fingerprintNow() }));
  // A full install renames a model folder whole (its lock file inside): settled outside the
  // lock, as the fingerprint's recovery always was; the updater holds its state folder's lock.
  const report: RecoveryReport = { actions: [], rolledBack: false, removed: [] };
  await recoverFullInstall(model, { healthCheck: healthCheck('full') }, report);
  let payload: RecoveryReport | undefined;
  const st = await stat(model).catch(() => undefined);
  // Only an update's journal can hold a switch to finish: without one, no lock is taken (an
  // apply holding it is then met, and reported, by the step that needs it).
  if (st && (await exists(await journal()))) {
    const unlock = await lockModelDir(st.isDirectory() ? model : path.dirname(path.resolve(model)));
    try {
      payload = await recoverPayload({ healthCheck: healthCheck('payload') });
    } finally {
      await unlock();
    }
  }
  const settled = payload?.pending ?? report.pending;
  return settled && { ...settled, actions: [...report.actions, ...(payload?.actions ?? [])] };
}

/**
 * Where the model in effect is, for a read that finishes or undoes nothing (a check): `model`, or
 * the kept previous version when a switch stopped between its two renames.
 */
async function inEffect(model: string): Promise<string> {
  return !(await exists(model)) && (await exists(model + PREVIOUS_SUFFIX)) ? model + PREVIOUS_SUFFIX : model;
}

function mismatch(expected: string, found: string): TargetMismatchError {
  return new TargetMismatchError(`the full package opens as model ${found}, the manifest promises ${expected}: the package and the manifest disagree (a faulty release); nothing was switched, the model is unchanged`, { expected, found });
}

/** Names in a model folder that belong to the applier (rewritten for the new version, never carried over). */
function isApplierFile(name: string): boolean {
  return name.startsWith('.ndiff-') || name.startsWith('model.json.');
}

/**
 * What a folder at `dir` holds, for a full install: nothing (no folder, or an empty one), a model
 * (model.json, read or not), or files that are no model (refused: a full install would replace them).
 */
async function folderContents(dir: string): Promise<'none' | 'model' | { other: string[] }> {
  const st = await lstat(dir).catch(() => undefined);
  if (!st) return 'none';
  if (!st.isDirectory()) {
    throw new ModelFormatError(`${dir} is ${st.isSymbolicLink() ? 'a symbolic link' : 'a file'}, not a TF.js model folder: nothing was changed. Pass the model's folder (model.json and its shards), a model JSON file (<name>.json, updated by payload) or an .onnx file`, { path: dir });
  }
  const names = await readdir(dir);
  if (names.includes('model.json')) return 'model';
  const other = names.filter((n) => !isApplierFile(n));
  return other.length ? { other } : 'none';
}

/**
 * `model` without the separators a shell's completion leaves after a folder's name (`models/kws/`):
 * the names an install puts beside the model (`models/kws.ndiff-previous`) are made by appending,
 * and would land inside it.
 */
function withoutTrailingSlash(model: string): string {
  return model.replace(/(?<=[^\\/])[\\/]+$/, '');
}

/** A TF.js model folder as an updater target. */
export function tfjsFolderTarget(given: string): ModelTarget {
  const dir = withoutTrailingSlash(given);
  return {
    kind: 'tfjs',
    async hasPending() {
      return (await exists(dir + PREVIOUS_SUFFIX)) || (await exists(dir + FIRST_INSTALL_SUFFIX)) || exists(path.join(dir, JOURNAL_FILE));
    },
    async settlePending(check) {
      return settleOnDisk(dir, check, async () => fingerprintStore(await getHasher(), await openTfjsModelDir(dir, { lazy: true })).fingerprint, async (options) => ((await exists(path.join(dir, 'model.json'))) ? recoverModelDir(dir, options) : undefined), async () => path.join(dir, JOURNAL_FILE));
    },
    async fingerprint(options) {
      // `recover: false`: a check, which reads the model in effect and changes nothing.
      const check = options?.recover === false;
      if (!check) await recoverFullInstall(dir);
      const at = check ? await inEffect(dir) : dir;
      const contents = await folderContents(at);
      if (typeof contents === 'object') {
        throw new ModelFormatError(`${dir} holds ${contents.other.length} file(s) (${contents.other.slice(0, 3).join(', ')}${contents.other.length > 3 ? ', …' : ''}) but no model.json: not a TF.js model folder, and installing the model there would replace them. Nothing was changed: point --model at the model's own folder (a new or empty one is fine)`, { path: dir, files: contents.other.slice(0, 20) });
      }
      if (contents === 'none') return undefined;
      try {
        // Tensors whose shard files are unchanged since the last confirmed apply are identified by
        // their recorded digests (src/io/tfjs/recorded-digests.ts), the others hashed.
        return fingerprintStore(await getHasher(), await openTfjsModelDir(at, { lazy: true, recordedDigests: await readRecordedDigests(at) })).fingerprint;
      } catch (e) {
        // A damaged model: the full package replaces it (the files beside it are kept).
        if (e instanceof ModelFormatError) return undefined;
        throw e;
      }
    },
    async applyPayload(bytes: Uint8Array, o: TargetApplyOptions) {
      await applyToModelDir(dir, bytes, { trustedKeys: o.trustedKeys, expectedModelId: o.expectedModelId, state: o.sequenceStore, now: o.now, ...(o.healthCheck ? { healthCheck: o.healthCheck } : {}) });
    },
    async installPackage(files, o: TargetInstallOptions) {
      await recoverFullInstall(dir);
      const contents = await folderContents(dir);
      if (typeof contents === 'object') throw new ModelFormatError(`${dir} holds files but no model.json: not replaced (see ndiff update --help)`, { path: dir });
      // One writer: an apply to the folder waits for (or is refused by) the install, and the
      // reverse; the new folder carries its own lock through the switch.
      const unlockOld = contents === 'none' ? undefined : await lockModelDir(dir);
      const incoming = dir + INCOMING_SUFFIX;
      let unlockNew: Awaited<ReturnType<typeof lockModelDir>> | undefined;
      try {
        await makeDirs(incoming);
        for (const f of files) await writeFileAtomically(path.join(incoming, f.path), f.bytes);
        const found = fingerprintStore(await getHasher(), await openTfjsModelDir(incoming, { lazy: true })).fingerprint;
        if (found !== o.fingerprint) {
          await rm(incoming, { recursive: true, force: true });
          throw mismatch(o.fingerprint, found);
        }
        // Files the folder holds beside the model (labels.json, a README) come along: hard links
        // (the old folder stays whole until the switch), folders copied.
        if (contents === 'model') await carryOver(dir, incoming, new Set(files.map((f) => f.path)), unlockOld?.file);
        // The folder's model id and digests, as an apply would have left them (fast next apply).
        await recordFolderModelId(incoming, o.modelId);
        await recordModelDirDigests(incoming);
        await syncDir(incoming);
        unlockNew = await lockModelDir(incoming);
        await switchAndCheck(dir, o, async (model, previous) => {
          if (!(await exists(model))) return false;
          await rename(model, previous);
          return true;
        });
      } finally {
        await unlockOld?.();
        if (unlockNew) {
          await unlockNew();
          // The lock file moved with the folder it was taken in.
          await rm(path.join(dir, unlockNew.file), { force: true });
        }
      }
    },
  };
}

/**
 * Link into `incoming` every file of the model folder `dir` that is neither the old model's
 * (model.json and the shards it names, when it can be read) nor a file of the new package nor the
 * applier's own; sub-folders are copied. The apply's sequence state (`.ndiff-state.json`) comes too.
 */
async function carryOver(dir: string, incoming: string, packaged: ReadonlySet<string>, ownLock?: string): Promise<void> {
  let named = new Set<string>();
  try {
    named = new Set(await referencedFiles(dir));
  } catch {
    /* a damaged model.json: its shards are unknown, so every other file is kept */
    named = new Set(['model.json']);
  }
  for (const name of await readdir(dir)) {
    if (packaged.has(name) || named.has(name) || name === ownLock) continue;
    if (isApplierFile(name) && name !== DEFAULT_STATE_FILE) continue;
    const from = path.join(dir, name);
    const st = await lstat(from);
    if (st.isDirectory()) await cp(from, path.join(incoming, name), { recursive: true, verbatimSymlinks: true });
    else if (st.isFile()) await link(from, path.join(incoming, name));
    else if (st.isSymbolicLink()) await symlink(await readlink(from), path.join(incoming, name));
  }
}

/**
 * A TF.js model JSON file sharing its folder with other models (`models/kws.json` beside
 * `models/face.json`): updated by payload, in place, under the shared-folder rules of
 * `applyToModelDir`. A full package is a folder of its own, so it is refused here (the file and
 * the folder are left as they are) rather than turning the file into a folder.
 */
export function tfjsModelFileTarget(file: string): ModelTarget {
  return {
    kind: 'tfjs',
    async hasPending() {
      return exists(path.join(path.dirname(file), modelFilesOf(path.basename(file)).journal));
    },
    async settlePending(check) {
      return settleOnDisk(file, check, async () => fingerprintStore(await getHasher(), await openTfjsModel(file, { lazy: true })).fingerprint, (options) => recoverModelDir(file, options), async () => path.join(path.dirname(file), modelFilesOf(path.basename(file)).journal));
    },
    async fingerprint() {
      if (!(await exists(file))) return undefined;
      try {
        return fingerprintStore(await getHasher(), await openTfjsModel(file, { lazy: true })).fingerprint;
      } catch (e) {
        if (e instanceof ModelFormatError) return undefined;
        throw e;
      }
    },
    async applyPayload(bytes: Uint8Array, o: TargetApplyOptions) {
      await applyToModelDir(file, bytes, { trustedKeys: o.trustedKeys, expectedModelId: o.expectedModelId, state: o.sequenceStore, now: o.now, ...(o.healthCheck ? { healthCheck: o.healthCheck } : {}) });
    },
    async installPackage() {
      throw new ModelFormatError(`${file} is a model file in a folder other models may share; nothing was changed. The full model installs as a folder of its own: keep this model in one and pass it as --model, or publish a payload from the version the file holds`, { path: file });
    },
  };
}

/** The fingerprint of the model file at `file` (its external data files closed again). */
async function fileFingerprint(file: string, format: WeightsFileFormat): Promise<string> {
  const disk = await openWeightsFile(file, format);
  try {
    return fingerprintStore(await getHasher(), disk).fingerprint;
  } finally {
    await disk.close();
  }
}

/**
 * Refuse a folder, a FIFO or a device where a model file should be: no model, and not something
 * an install may replace (a symbolic link is followed as the file's readers follow it).
 */
async function refuseNonFile(file: string, format: WeightsFileFormat): Promise<void> {
  const st = await stat(file).catch(() => undefined);
  if (!st || st.isFile()) return;
  throw new ModelFormatError(`${file} is ${kindOf(st)}, not ${format.what}: nothing was changed. Pass the path of the model file (one that does not exist yet is fine: the full model is installed there)`, { path: file });
}

/** A single-file ONNX model as an updater target. */
export function onnxFileTarget(file: string): ModelTarget {
  return modelFileTarget(file, 'onnx', ONNX_FILE);
}

/** A LiteRT model (`.tflite`) as an updater target. */
export function tfliteFileTarget(file: string): ModelTarget {
  return modelFileTarget(file, 'tflite', TFLITE_FILE);
}

/**
 * A `.safetensors` file as an updater target: payloads patch it crash-safely, a full install
 * replaces the file; it takes no structural payload (none is made for one), so the updater
 * installs the full file when the structure changed.
 */
export function safetensorsFileTarget(file: string): ModelTarget {
  return modelFileTarget(file, 'safetensors', SAFETENSORS_FILE);
}

/** A single-file model (`.onnx`, `.tflite`, `.safetensors`) as an updater target: payloads patch it crash-safely, a full install replaces the file. */
function modelFileTarget(given: string, kind: 'onnx' | 'tflite' | 'safetensors', format: WeightsFileFormat): ModelTarget {
  const file = withoutTrailingSlash(given);
  return {
    kind,
    rebuilds: kind !== 'safetensors',
    async hasPending() {
      return (await exists(file + PREVIOUS_SUFFIX)) || (await exists(file + FIRST_INSTALL_SUFFIX)) || ((await exists(file)) && exists((await realModelPath(file, format)) + WEIGHTS_JOURNAL_SUFFIX));
    },
    async settlePending(check) {
      return settleOnDisk(file, check, () => fileFingerprint(file, format), async (options) => recoverWeightsFile(await realModelPath(file, format), format, options), async () => (await realModelPath(file, format)) + WEIGHTS_JOURNAL_SUFFIX);
    },
    async fingerprint(options) {
      const check = options?.recover === false;
      if (!check) await recoverFullInstall(file);
      const at = check ? await inEffect(file) : file;
      await refuseNonFile(at, format);
      if (!(await exists(at))) return undefined;
      try {
        return await fileFingerprint(at, format);
      } catch (e) {
        if (e instanceof ModelFormatError) return undefined;
        throw e;
      }
    },
    async applyPayload(bytes: Uint8Array, o: TargetApplyOptions) {
      const options = { trustedKeys: o.trustedKeys, expectedModelId: o.expectedModelId, state: o.sequenceStore, now: o.now, ...(o.healthCheck ? { healthCheck: o.healthCheck } : {}) };
      // A structural payload (format v7) rebuilds the file, with the same journal and recovery.
      if (isStructuralPayload(isSignedEnvelope(bytes) ? parseEnvelope(bytes).payload : bytes)) {
        if (kind === 'safetensors') throw new ModelMismatchError(`a structural payload (format v7) rebuilds a TF.js model, an .onnx or a .tflite file, and ${file} is a .safetensors file, for which none is made: nothing was written; the updater installs the full file instead`, { file, structural: true });
        const { warnings } = await rebuildWeightsFile(file, bytes, format, kind, options);
        return warnings.length ? { warnings } : undefined;
      }
      await applyToWeightsFile(file, bytes, format, options);
      return undefined;
    },
    async installPackage(files, o: TargetInstallOptions) {
      if (files.length !== 1) throw new ModelFormatError(`a package of ${format.what} must be one file, found ${files.length} files: the release is not one this updater installs`);
      const folder = path.dirname(path.resolve(file));
      await makeDirs(folder);
      // One writer: an apply to a model of the folder waits for (or is refused by) the install,
      // its health check included, and the reverse.
      const unlock = await lockModelDir(folder);
      try {
        await recoverFullInstall(file);
        await refuseNonFile(file, format);
        const incoming = file + INCOMING_SUFFIX;
        await writeFileAtomically(incoming, files[0].bytes);
        const found = await fileFingerprint(incoming, format);
        if (found !== o.fingerprint) {
          await rm(incoming, { force: true });
          throw mismatch(o.fingerprint, found);
        }
        await switchAndCheck(file, o, async (model, previous) => {
          if (!(await exists(model))) return false;
          await link(model, previous);
          return true;
        });
      } finally {
        await unlock();
      }
    },
  };
}
