/**
 * A structural payload (format v7, `neural-diff/rebuild`) applied to a model file on disk (Node
 * and Electron), crash-safely, with the journal, kept previous version and recovery of
 * `weights-file-update.ts`: the rebuilt file is checked in memory (base, intermediate, target
 * fingerprints), written whole as a new file beside the model, fsynced, read back and
 * fingerprinted, then switched in with one rename. An ONNX model with external data files is
 * rebuilt with them (the payload's file list `fl`, FORMAT.md §17): every file whose bytes change
 * goes through the same steps, the journal naming them all (the model file renamed last); the
 * target must keep the model's set of data files (one that adds or drops a data file is refused,
 * nothing written). States:
 *
 * 1. the journal `<model>.ndiff-update.json` names the model file (temp file, fsync, rename,
 *    fsync of the folder);
 * 2. the new file is written to `<model>.tmp-<pid>-<hex>` and fsynced, reopened and fingerprinted:
 *    if it is not the payload's target, nothing switches;
 * 3. the current file is hard-linked as `<model>.ndiff-prev`, the temp file renamed over the
 *    model, the folder fsynced (the switch);
 * 4. the health check runs; if it fails, `<model>.ndiff-prev` is renamed back (rollback);
 * 5. if it passes, the journal becomes `<model>.ndiff-update.done` (the commit point), the kept
 *    file is deleted, then the `.done` file; the sequence is recorded last.
 *
 * A crash anywhere is finished by `recoverWeightsFile` (run first by every apply and rebuild):
 * the journal names the model file, so it is rolled back from its `.ndiff-prev`.
 */
import { randomBytes } from 'node:crypto';
import { link, open, readFile, rename, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import * as path from 'node:path';
import { HealthCheckError, ModelMismatchError, StateStoreError, TargetMismatchError, UsageError } from '../../core/errors.ts';
import { fingerprintStore } from '../../core/fingerprint.ts';
import { getHasher, type Hasher } from '../../core/hasher.ts';
import { decodeStructuralPayload, rebuildModelBytes, rebuildModelFiles, type RebuildFileKind, type RebuildOptions, type RebuildResult } from '../../apply/rebuild.ts';
import { openSignedPayload } from '../../apply/signature.ts';
import type { SequenceStore } from '../../apply/freshness.ts';
import { syncDir } from './durable.ts';
import { FileSequenceStore, writeFileAtomically } from './sequence-file.ts';
import { lockModelDir, type RecoveryReport } from './lock.ts';
import { readModelIdRecord, writeModelIdRecord } from './model-id-file.ts';
import { openWeightsFile, realModelPath, sameFile, type WeightsFileFormat } from './weights-file.ts';
import { JOURNAL_SUFFIX, DONE_SUFFIX, PREVIOUS_SUFFIX, recoverWeightsFile, removeIfThere, restorePrevious, weightsFileSequenceStore, WeightsFileSequenceStore } from './weights-file-update.ts';

export interface WeightsFileRebuildOptions extends Omit<RebuildOptions, 'sequenceStore'> {
  /** Where the applied sequence is kept, as for `applyToWeightsFile` (default `<model>.ndiff-state.json`; `null` for none). */
  state?: string | SequenceStore | null;
  /** Runs after the switch, before the update is confirmed; false or a throw rolls back to the previous file. */
  healthCheck?: (info: { file: string; result: RebuildResult }) => boolean | void | Promise<boolean | void>;
  /** Check everything and rebuild in memory; write nothing (no recovery, no state). */
  dryRun?: boolean;
}

export interface WeightsFileRebuildResult extends RebuildResult {
  recovery: RecoveryReport;
  /** The model file when it was rewritten; empty when already applied. */
  filesWritten: string[];
  sequenceRecorded: boolean;
}

/**
 * Verify a structural payload (cap, signature, document) and rebuild the model `file` of `format`
 * with it, crash-safely (module doc). A payload refused before the model is read touches nothing;
 * otherwise an interrupted earlier update is recovered first. On any error the file is the one
 * it was before this call (or the recovered one) and a typed error says what to do. An ONNX
 * model with external data files is rebuilt with them (module doc).
 */
export async function rebuildWeightsFile(file: string, payloadBytes: Uint8Array, format: WeightsFileFormat, kind: RebuildFileKind, options: WeightsFileRebuildOptions = {}): Promise<WeightsFileRebuildResult> {
  if (!format.extension.test(file)) throw new UsageError(`${file}: expected ${format.what}`, { file });
  // Refuse a bad payload before anything on disk is touched (rebuildModelBytes checks it again).
  await decodeStructuralPayload((await openSignedPayload(payloadBytes, options)).payload, options);
  const real = await realModelPath(file, format);
  const state = options.state;
  const sequences: SequenceStore | undefined =
    state === null ? undefined : state === undefined ? weightsFileSequenceStore(real) : typeof state === 'string' ? new FileSequenceStore(state) : state;
  const reserved = sequences instanceof FileSequenceStore ? [sequences.file] : sequences instanceof WeightsFileSequenceStore ? [sequences.file, sequences.legacy.file] : [];
  const hasher: Hasher = options.hasher && typeof options.hasher === 'object' ? options.hasher : await getHasher(options.hasher ? { prefer: options.hasher } : undefined);
  const dir = path.dirname(real);
  if (options.dryRun) {
    const disk = await openWeightsFile(real, format, { reserved });
    try {
      const readOnly: SequenceStore | undefined = sequences && { get: (id) => sequences.get(id), set: () => {} };
      const recorded = await readModelIdRecord(real);
      const result = await rebuildModelBytes(disk.contents.modelBytes(), payloadBytes, { kind, open: (bytes) => format.contents(bytes, new Map(), real) }, { ...options, expectedModelId: options.expectedModelId ?? recorded, sequenceStore: readOnly, hasher });
      return { ...result, recovery: { actions: [], rolledBack: false, removed: [] }, filesWritten: [], sequenceRecorded: false };
    } finally {
      await disk.close();
    }
  }
  const unlock = await lockModelDir(dir);
  try {
    const recovery = await recoverWeightsFile(real, format);
    const recorded = await readModelIdRecord(real);
    if (options.expectedModelId !== undefined && recorded !== undefined && options.expectedModelId !== recorded) {
      throw new ModelMismatchError(`${real} holds model ${JSON.stringify(recorded)}, but expectedModelId is ${JSON.stringify(options.expectedModelId)}: check which model this file is, and pass its id`, { file: real, expected: options.expectedModelId, found: recorded });
    }
    const disk = await openWeightsFile(real, format, { reserved });
    let result: RebuildResult;
    const stats = new Map<string, Stats>();
    /** The files to write: '' the model file, else an external data file's location. */
    let outputs: { loc: string; bytes: Uint8Array }[];
    try {
      const external = format.externalLocations(disk.contents.modelBytes(), real);
      for (const loc of ['', ...external]) {
        const st = disk.stats.get(loc);
        if (st) stats.set(loc, st as Stats);
      }
      const rebuildOptions = { ...options, expectedModelId: options.expectedModelId ?? recorded, sequenceStore: sequences, hasher };
      if (external.length || (kind === 'onnx' && (await decodeStructuralPayload((await openSignedPayload(payloadBytes, options)).payload, options)).header.files)) {
        if (!format.files) throw new UsageError(`${real} keeps weights in external data files (${external.join(', ')}): a structural payload rebuilds a single-file ${kind} model; ship this model whole`, { file: real, external });
        // An ONNX model with external data files: the .onnx and its data files rebuilt together.
        const base = [{ path: path.basename(real), bytes: disk.contents.modelBytes().slice() }, ...(await Promise.all(external.map(async (loc) => ({ path: loc, bytes: new Uint8Array(await readFile(path.resolve(dir, loc))) }))))];
        result = await rebuildModelFiles(base, payloadBytes, format.files, rebuildOptions);
        const files = result.files ?? base;
        const was = new Set(external);
        const now = files.slice(1).map((f) => f.path);
        if (now.length !== was.size || now.some((l) => !was.has(l))) {
          throw new UsageError(`the rebuilt ${real} references the external data files ${JSON.stringify(now)}, the model on disk ${JSON.stringify(external)}: the file update rewrites the files a model has, and does not yet create or delete data files: nothing was written; ship this version whole`, { file: real, external, target: now });
        }
        // Only the files whose bytes changed are written.
        outputs = files.map((f, i) => ({ loc: i === 0 ? '' : f.path, bytes: f.bytes })).filter((f, i) => !sameBytes(f.bytes, base[i === 0 ? 0 : base.findIndex((b) => b.path === f.loc)].bytes));
      } else {
        result = await rebuildModelBytes(disk.contents.modelBytes(), payloadBytes, { kind, open: (bytes) => format.contents(bytes, new Map(), real) }, rebuildOptions);
        outputs = [{ loc: '', bytes: result.bytes }];
      }
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
      return { ...result, recovery, filesWritten: [], sequenceRecorded: await record() };
    }

    // 1. the journal; 2. the new files, fsynced, read back.
    const at = (loc: string) => (loc === '' ? real : path.resolve(dir, loc));
    const journal = real + JOURNAL_SUFFIX;
    await writeFileAtomically(journal, new TextEncoder().encode(JSON.stringify({ format: format.journal, version: 1, files: outputs.map((o) => o.loc) }) + '\n'));
    const tmps = new Map(outputs.map((o) => [o.loc, `${at(o.loc)}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`]));
    let switched = false;
    try {
      for (const o of outputs) {
        const fh = await open(tmps.get(o.loc) as string, 'wx', 0o600);
        try {
          for (let w = 0; w < o.bytes.length; ) w += (await fh.write(o.bytes, w, o.bytes.length - w, w)).bytesWritten;
          const st = stats.get(o.loc);
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
      for (const o of outputs) {
        const now = await stat(at(o.loc)).catch(() => null);
        const st = stats.get(o.loc);
        if (!now || !st || !sameFile(now, st)) throw new UsageError(`${at(o.loc)} changed on disk while ${real} was being rebuilt: nothing was switched; apply again (one writer per model)`, { file: at(o.loc) });
      }
      // 3. keep the previous files, switch (the model file last).
      for (const o of outputs) {
        await removeIfThere(at(o.loc) + PREVIOUS_SUFFIX);
        await link(at(o.loc), at(o.loc) + PREVIOUS_SUFFIX);
      }
      await syncDir(dir);
      switched = true;
      for (const o of [...outputs].reverse()) await rename(tmps.get(o.loc) as string, at(o.loc));
      await syncDir(dir);
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
      if (switched) await restorePrevious(outputs.map((o) => at(o.loc)));
      else for (const o of outputs) await removeIfThere(at(o.loc) + PREVIOUS_SUFFIX);
      await removeIfThere(journal);
      await syncDir(dir);
      throw e;
    }
    // 5. confirm: the journal becomes .done (the commit point), then the clean-up.
    await rename(journal, real + DONE_SUFFIX);
    await syncDir(dir);
    for (const o of outputs) await removeIfThere(at(o.loc) + PREVIOUS_SUFFIX);
    await removeIfThere(real + DONE_SUFFIX);
    if (pin !== undefined) await writeModelIdRecord(real, pin);
    return { ...result, recovery, filesWritten: outputs.map((o) => at(o.loc)), sequenceRecorded: await record() };
  } finally {
    await unlock();
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}
