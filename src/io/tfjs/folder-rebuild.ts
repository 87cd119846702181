/**
 * A structural payload (format v7, docs/FORMAT.md §17, `fk` = `tfjs`) applied to a TF.js model on
 * disk: tensors added, removed, renamed or reshaped, the graph changed. The target's files are
 * rebuilt and checked in memory first (`rebuildModelFiles` of neural-diff/rebuild: base,
 * intermediate and target fingerprints), then written by the same protocol and journal as an
 * ordinary update of the folder (folder-update.ts, write.ts), so a crash at any point leaves the
 * old model or the new one and the next apply (or `recoverModelDir`) finishes or undoes it:
 *
 * 1. the update journal names the previous and the new model JSON and the shards the update
 *    creates and retires;
 * 2. the target's shards are written under content-addressed names
 *    (`group<g>-shard<i>of<n>-<hash>.bin`, the target's shard boundaries kept; a shard whose bytes
 *    a file of the folder already holds under that name is not written again), fsynced, read back;
 *    the target's model JSON, its manifest naming those files, to a temp file; the old model JSON
 *    kept as `model.json.prev`;
 * 3. the switch (one rename), the new folder read back and fingerprinted, then the health check:
 *    a failure rolls back to the kept version;
 * 4. the confirmation: the kept version and the shards only the old model named are deleted (the
 *    commit point), then the journal; the model id and the sequence are recorded last.
 *
 * The model JSON on disk is the target's except for its shard paths (the files' names are the
 * device's own, so no live file is ever overwritten); the fingerprint does not cover shard paths.
 */
import * as path from 'node:path';
import { HealthCheckError, ModelFormatError, NeuralDiffError, StateStoreError, TargetMismatchError, UsageError } from '../../core/errors.ts';
import { fingerprintStore } from '../../core/fingerprint.ts';
import { getHasher, type Hasher } from '../../core/hasher.ts';
import type { ModelFile } from '../../core/model-files.ts';
import { decodeStructuralPayload, isStructuralPayload, rebuildModelFiles, type FingerprintedBase, type RebuildFilesFormat, type RebuildOptions, type RebuildResult } from '../../apply/rebuild.ts';
import { isSignedEnvelope, parseEnvelope } from '../../apply/envelope.ts';
import type { ApplyResult } from '../../apply/apply.ts';
import { openSignedPayload } from '../../apply/signature.ts';
import type { SequenceStore } from '../../apply/freshness.ts';
import { errCode, nodeFileOps, readRegularFile, type FileOps } from '../durable/durable.ts';
import { lockModelDir, type RecoveryReport } from '../durable/lock.ts';
import type { ModelFiles } from '../durable/control-files.ts';
import { checkManifestNamesNoControlFiles, locateModelFiles, openTfjsModelDir, type BeforeWriteHook } from './index.ts';
import { parseModelJson, replaceTopLevelValue } from './manifest.ts';
import { readModelJsonFile } from './read.ts';
import { BYTE_DELTA_MAX_BASE } from '../../core/byte-delta.ts';
import { namedByOtherModels } from './shared-folder.ts';
import { writeModelAtomically, type PlannedGroup } from './write.ts';
import { TfjsFilesStore, tfjsFileOrder } from './files-store.ts';
import { confirmWritten, emptyReport, modelIdFor, readModelId, recoverModel, resolveState, rollbackModel, sha256, writeJournal, writeModelId, type Journal, type ModelDirApplyOptions, type ModelDirApplyResult } from './folder-journal.ts';

/** How `neural-diff/rebuild` reads a TF.js model's files. */
export const TFJS_REBUILD: RebuildFilesFormat = { kind: 'tfjs', open: (files) => new TfjsFilesStore(files) };

export interface ModelDirRebuildOptions extends Omit<RebuildOptions, 'sequenceStore'> {
  /** Where the applied sequence is kept, as for `applyToModelDir` (default `.ndiff-state.json` in the folder; `null` for none). */
  state?: string | SequenceStore | null;
  /**
   * Runs after the switch, before the update is confirmed; false or a throw rolls back to the
   * previous version. It also finishes an update an earlier run switched in and never confirmed
   * (`pending` true, no `result`; see `applyToModelDir`).
   */
  healthCheck?: (info: { dir: string; file: string; result?: RebuildResult; pending?: true }) => boolean | void | Promise<boolean | void>;
  /** Check everything and rebuild in memory; write nothing (no recovery, no state). */
  dryRun?: boolean;
  /** The file operations that change the folder (default: node:fs; tests record them). */
  fileOps?: FileOps;
}

export interface ModelDirRebuildResult extends RebuildResult {
  /** What was recovered from an earlier interrupted update before this one ran. */
  recovery: RecoveryReport;
  sequenceRecorded: boolean;
}

/**
 * The model's files as a structural payload orders them: the model JSON, then its shards in
 * manifest order. Read as the value apply reads them (read.ts): regular files only, opened
 * without waiting (a FIFO is refused, never waited on; a link to a device is refused, never
 * read), and at most {@link BYTE_DELTA_MAX_BASE} bytes in all, the most a byte delta can read.
 * @throws ModelFormatError naming the file that is missing, not a regular file or too big
 */
export async function readTfjsModelFiles(dir: string, modelJsonFile: string): Promise<ModelFile[]> {
  const { bytes: json, modelJson } = await readModelJsonFile(dir, modelJsonFile);
  let room = BYTE_DELTA_MAX_BASE - json.length;
  const shards: ModelFile[] = [];
  for (const p of tfjsFileOrder(modelJson)) {
    const file = path.resolve(dir, p);
    let bytes: Uint8Array | null;
    try {
      bytes = await readRegularFile(file, { maxBytes: Math.max(0, room) });
    } catch (e) {
      const code = errCode(e);
      const found = code === 'EFTYPE' ? (e as { found?: string }).found ?? 'not a regular file' : code === 'EFBIG' ? `over ${BYTE_DELTA_MAX_BASE} bytes with the files before it` : (e as Error).message;
      throw new ModelFormatError(`${file}, a weight shard ${modelJsonFile} names, is ${found}: expected a regular file the model's files total at most ${BYTE_DELTA_MAX_BASE} bytes with; nothing was read further or changed: restore the model's shards (copy the model again), then retry`, { file, found });
    }
    if (bytes === null) throw new ModelFormatError(`${file}, a weight shard ${modelJsonFile} names, is missing: nothing was changed: restore the model's shards (copy the model again), then retry`, { file });
    room -= bytes.length;
    shards.push({ path: p, bytes });
  }
  return [{ path: modelJsonFile, bytes: json }, ...shards];
}

/**
 * The model in `dir` fingerprinted a tensor at a time (the folder store, opened lazily: one
 * tensor's bytes held at once), its files read whole only when it is the payload's base or
 * target: a payload for another base is refused without the model's shards held in memory.
 */
async function fingerprintedBase(dir: string, modelJsonFile: string, reservedFiles: string[], hasher: Hasher, header: { baseFingerprint: string; targetFingerprint: string }): Promise<FingerprintedBase & { files(): readonly ModelFile[] }> {
  const fingerprint = fingerprintStore(hasher, await openTfjsModelDir(dir, { modelJsonFile, reservedFiles, lazy: true })).fingerprint;
  const files = fingerprint === header.baseFingerprint || fingerprint === header.targetFingerprint ? await readTfjsModelFiles(dir, modelJsonFile) : undefined;
  return {
    fingerprint,
    files: () => {
      // The rebuild reads the files only past its base check, which this fingerprint failed.
      if (!files) throw new ModelFormatError(`${path.join(dir, modelJsonFile)} was read for a payload it is not the base of (a bug in neural-diff)`, { dir });
      return files;
    },
  };
}

/**
 * Verify a structural payload for a TF.js model and rebuild the model `model` (a folder with
 * `model.json`, or a model JSON file sharing its folder) with it, crash-safely (module doc). A
 * payload refused by its signature or its decoding touches nothing; otherwise an interrupted
 * earlier update is recovered first. On any error the model is the version it was before this
 * call (or the recovered one) and a typed error says what to do.
 */
export async function rebuildModelDir(model: string, payloadBytes: Uint8Array, options: ModelDirRebuildOptions = {}): Promise<ModelDirRebuildResult> {
  // A bad payload is refused before anything on disk is read or touched (checked again below).
  const decoded = await decodeStructuralPayload((await openSignedPayload(payloadBytes, options)).payload, options);
  if (decoded.header.fileKind !== 'tfjs') throw new UsageError(`this structural payload rebuilds a ${decoded.header.fileKind} file, ${model} is a TF.js model: apply it to the ${decoded.header.fileKind} file it was made for`, { expected: 'tfjs', found: decoded.header.fileKind });
  const { dir, files } = await locateModelFiles(model);
  const modelFile = path.join(dir, files.model);
  const ops = options.fileOps ?? nodeFileOps;
  const sequences = resolveState(dir, options.state, ops);
  const reservedFiles = typeof options.state === 'string' ? [path.resolve(options.state)] : [];
  await checkManifestNamesNoControlFiles(dir, reservedFiles, files.model);
  const hasher: Hasher = options.hasher && typeof options.hasher === 'object' ? options.hasher : await getHasher(options.hasher ? { prefer: options.hasher } : undefined);

  if (options.dryRun) {
    const expectedModelId = modelIdFor(dir, files, options.expectedModelId, await readModelId(dir, files));
    const readOnly: SequenceStore | undefined = sequences && { get: (id) => sequences.get(id), set: () => {} };
    const base = await fingerprintedBase(dir, files.model, reservedFiles, hasher, decoded.header);
    const result = await rebuildModelFiles(base, payloadBytes, TFJS_REBUILD, { ...options, expectedModelId, sequenceStore: readOnly, hasher });
    return { ...result, recovery: emptyReport(), sequenceRecorded: false };
  }

  const unlock = await lockModelDir(dir, { fileOps: ops });
  let recovery = emptyReport();
  try {
    const healthCheck = options.healthCheck;
    recovery = await recoverModel(ops, dir, files, { healthCheck: healthCheck && (() => healthCheck({ dir, file: modelFile, pending: true })) });
    await namedByOtherModels(dir, files);
    const recordedModelId = await readModelId(dir, files);
    const expectedModelId = modelIdFor(dir, files, options.expectedModelId, recordedModelId);
    const base = await fingerprintedBase(dir, files.model, reservedFiles, hasher, decoded.header);
    const result = await rebuildModelFiles(base, payloadBytes, TFJS_REBUILD, { ...options, expectedModelId, sequenceStore: sequences, hasher });
    const { header } = result;
    const pin = recordedModelId === undefined ? header.modelId : undefined;
    const record = async (): Promise<boolean> => {
      if (!sequences || (result.previousSequence !== undefined && header.sequence <= result.previousSequence)) return false;
      try {
        await sequences.set(header.modelId, header.sequence, { fingerprint: header.targetFingerprint });
      } catch (e) {
        throw new StateStoreError(`${modelFile} is now ${header.targetFingerprint.slice(0, 8)}… (sequence ${header.sequence}), but recording the sequence failed (${(e as Error).message}): fix the store and run the same update again: it reports already applied and records the sequence`, { modelId: header.modelId, sequence: header.sequence, applied: true });
      }
      return true;
    };
    if (result.status === 'already-applied') {
      if (pin !== undefined) await writeModelId(ops, dir, files, pin);
      return { ...result, recovery, sequenceRecorded: await record() };
    }
    const written = await writeTarget(ops, dir, files, base.files()[0].bytes, result.files as ModelFile[], options.healthCheck !== undefined);
    try {
      // The switched folder read back as a loader sees it.
      const disk = await openTfjsModelDir(dir, { modelJsonFile: files.model, reservedFiles });
      const found = fingerprintStore(hasher, disk).fingerprint;
      if (found !== header.targetFingerprint) {
        throw new TargetMismatchError(`${modelFile} read back after the switch as ${found.slice(0, 8)}…, not the target ${header.targetFingerprint.slice(0, 8)}…: rolled back to the previous version; check the storage, then retry`, { expected: header.targetFingerprint, found });
      }
      if (options.healthCheck) {
        let ok: boolean | void;
        try {
          ok = await options.healthCheck({ dir, file: modelFile, result });
        } catch (e) {
          throw new HealthCheckError(`the health check of the rebuilt ${modelFile} threw (${(e as Error).message}): rolled back to the previous version`, { file: modelFile, cause: (e as Error).message });
        }
        if (ok === false) throw new HealthCheckError(`the health check of the rebuilt ${modelFile} returned false: rolled back to the previous version`, { file: modelFile });
      }
    } catch (e) {
      await rollbackModel(ops, dir, files);
      throw e;
    }
    await confirmWritten(ops, dir, files, written.journal, written.nextModelJson);
    if (pin !== undefined) await writeModelId(ops, dir, files, pin);
    return { ...result, recovery, sequenceRecorded: await record() };
  } catch (e) {
    if (e instanceof NeuralDiffError && recovery.actions.length > 0) (e.details as Record<string, unknown>).recovery = recovery;
    throw e;
  } finally {
    await unlock();
  }
}

/**
 * Write the target's files into the folder and switch to them (steps 1 to 3 of the module doc,
 * by writeModelAtomically with the update journal): its shards under content-addressed names,
 * the target's model JSON with its manifest naming them, the old model JSON kept. On an error
 * before the switch nothing a loader reads changed, and what was written is deleted.
 */
async function writeTarget(ops: FileOps, dir: string, files: ModelFiles, previousModelJson: Uint8Array, target: readonly ModelFile[], awaitsHealthCheck: boolean): Promise<{ journal: Journal; nextModelJson: Uint8Array }> {
  const text = new TextDecoder().decode(target[0].bytes);
  const modelJson = parseModelJson(text, target[0].path);
  const bytesOf = new Map(target.slice(1).map((f) => [f.path, f.bytes]));
  const groups: PlannedGroup[] = modelJson.weightsManifest.map((g) => ({
    base: g as unknown as Record<string, unknown>,
    weights: g.weights,
    shards: g.paths.map((p) => ({ parts: [bytesOf.get(p) as Uint8Array] })),
  }));
  let written: { journal: Journal; nextModelJson: Uint8Array } | undefined;
  const onBeforeWrite: BeforeWriteHook = async ({ id, previousModelJson: previous, nextModelJson, createdShards, retiredShards }) => {
    const journal: Journal = {
      format: 'neural-diff-journal',
      version: 1,
      id,
      startedAt: new Date().toISOString(),
      previous: sha256(previous ?? new Uint8Array()),
      next: sha256(nextModelJson),
      created: [...createdShards],
      retired: [...retiredShards],
      ...(awaitsHealthCheck ? { awaitsHealthCheck: true } : {}),
    };
    await writeJournal(ops, dir, files, journal);
    written = { journal, nextModelJson };
  };
  try {
    await writeModelAtomically({
      dir,
      groups,
      files,
      fileOps: ops,
      keepPrevious: true,
      verifyWrites: true,
      expectedModelJson: previousModelJson,
      onBeforeWrite,
      render: (manifest) => replaceTopLevelValue(text, 'weightsManifest', JSON.stringify(manifest)),
    });
  } catch (e) {
    // Whatever the write left (its journal, a kept previous version, new shards): settled from
    // the journal, so the folder holds the version it held before.
    await recoverModel(ops, dir, files, { unconfirmed: 'roll-back' }).catch(() => {});
    throw e;
  }
  if (!written) throw new ModelFormatError(`${path.join(dir, files.model)}: the update wrote no journal (a bug in neural-diff)`, { dir });
  return written;
}

/** Whether `bytes` (a payload or a signed envelope) holds a structural payload; false for anything unreadable. */
export function holdsStructuralPayload(bytes: Uint8Array): boolean {
  try {
    return isStructuralPayload(isSignedEnvelope(bytes) ? parseEnvelope(bytes).payload : bytes);
  } catch {
    return false;
  }
}

/**
 * `applyToModelDir` for a structural payload: {@link rebuildModelDir} with the same options, its
 * result in the shape of an apply's (the value payload's changed tensors and values; `structural`
 * the rebuild's own result). The health check gets the rebuilt folder's store.
 */
export async function applyStructuralToModelDir(model: string, payloadBytes: Uint8Array, options: ModelDirApplyOptions): Promise<ModelDirApplyResult & { structural: ModelDirRebuildResult }> {
  const { healthCheck, shardBytes: _s, quantizedUnchanged: _q, baseCheck: _b, ...rest } = options;
  const decoded = await decodeStructuralPayload((await openSignedPayload(payloadBytes, options)).payload, options);
  const shaped = (r: RebuildResult, sequenceRecorded: boolean): ApplyResult => ({
    status: r.status,
    baseFingerprint: r.header.baseFingerprint,
    targetFingerprint: r.header.targetFingerprint,
    sequence: r.header.sequence,
    changedTensors: r.values?.changedTensors ?? [],
    writtenValues: r.values?.writtenValues ?? 0,
    baseCheck: r.values?.baseCheck ?? { hashedTensors: 0, recordedTensors: 0 },
    payload: r.values?.payload ?? decoded.verifiedValues.payload,
    signature: r.signature,
    ...(r.previousSequence !== undefined ? { previousSequence: r.previousSequence } : {}),
    sequenceRecorded,
  });
  const r = await rebuildModelDir(model, payloadBytes, {
    ...rest,
    ...(healthCheck ? { healthCheck: async (info) => healthCheck({ dir: info.dir, file: info.file, store: await openTfjsModelDir(info.dir, { modelJsonFile: path.basename(info.file) }), ...(info.result ? { result: shaped(info.result, false) } : { pending: true as const }) }) } : {}),
  });
  return { ...shaped(r, r.sequenceRecorded), recovery: r.recovery, structural: r };
}
