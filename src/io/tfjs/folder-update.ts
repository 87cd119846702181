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
 *
 * A model JSON file that shares its folder with other models (`models/movenet-lightning.json`)
 * goes through the same states under names of its own (src/io/durable/control-files.ts): the
 * journal `<file>.ndiff-journal.json`, the kept version `<file>.ndiff-prev`, the temp file
 * `<file>.tmp-<id>`, shards `<stem>.group<g>-shard<i>of<n>-<hash>.bin`, digests
 * `<file>.ndiff-digests.json`, model id `<file>.ndiff-model.json`. Recovery then deletes only that
 * model's temp files and writer-made shards, and no deletion ever takes a file another model file
 * of the folder (or its kept version) names. The lock and the state file stay the folder's.
 */
import * as path from 'node:path';
import { NeuralDiffError } from '../../core/errors.ts';
import { getHasher, type Hasher } from '../../core/hasher.ts';
import { MemoryWeightStore, type CommitInfo, type WeightStore } from '../../core/weight-store.ts';
import type { StorageGrid } from '../../core/grid.ts';
import { applyVerifiedPayload, verifyPayload, type TwoPhaseWeightStore } from '../../apply/apply.ts';
import type { SequenceStore } from '../../apply/freshness.ts';
import { checkManifestNamesNoControlFiles, locateModelFiles, openTfjsModelDir, type BeforeWriteHook, type TfjsDirWeightStore } from './index.ts';
import { namedByOtherModels } from './shared-folder.ts';
import { applyStructuralToModelDir, holdsStructuralPayload } from './folder-rebuild.ts';
import { readRecordedDigests, writeRecordedDigests } from './recorded-digests.ts';
import { nodeFileOps, type FileOps } from '../durable/durable.ts';
import type { ModelFiles } from '../durable/control-files.ts';
import { type Journal, type ModelDirApplyOptions, type ModelDirApplyResult, confirmModel, confirmWritten, emptyReport, lockModelDir, modelIdFor, readJournal, readModelId, recoverModel, resolveState, rollbackModel, sha256, writeJournal, writeModelId } from './folder-journal.ts';

export { RETIRED_MODEL_JSON, recoverModelDir, confirmUpdate, rollbackUpdate, readFolderModelId, recordFolderModelId, type ModelDirApplyOptions, type ModelDirApplyResult, LOCK_FILE, JOURNAL_FILE, FOLDER_FILE, lockModelDir, type RecoveryReport, type FolderOptions } from './folder-journal.ts';

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
    private readonly files: ModelFiles,
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
      await recoverModel(this.ops, this.dir, this.files, { unconfirmed: 'roll-back' }).catch(() => {});
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
    const confirming = written ? confirmWritten(this.ops, this.dir, this.files, written.journal, written.nextModelJson) : confirmModel(this.ops, this.dir, this.files);
    confirming.catch(() => {}); // awaited below
    const recorded = committed ? writeRecordedDigests(this.dir, this.disk.digestRecords(committed.info.digests), { durable: false, fileOps: this.ops, sweep: false, files: this.files }).catch(() => {}) : undefined;
    try {
      await confirming;
      // The folder remembers the model id of the first payload confirmed in it (durably, before
      // the sequence is recorded), so later payloads of another id are refused.
      if (this.pinModelId !== undefined) await writeModelId(this.ops, this.dir, this.files, this.pinModelId);
    } finally {
      await recorded;
    }
  }
  async revertCommit(): Promise<void> {
    if ((await readJournal(this.dir, this.files))?.journal) await rollbackModel(this.ops, this.dir, this.files);
  }
}

/**
 * Verify `payloadBytes` and apply it to the model `model`, crash-safely (see the module doc):
 * a model folder (`model.json` and its shards), or a model JSON file sharing its folder with
 * other models (`models/movenet-lightning.json` + `movenet-lightning.bin`), updated under its own
 * name with the applier's files named after it (`<file>.ndiff-journal.json`, `<file>.ndiff-prev`,
 * `<file>.ndiff-digests.json`, `<file>.ndiff-model.json`) and rewritten shards named after its
 * stem (`<stem>.group1-shard1of1-<hash>.bin`): the other models' files are never touched. The
 * lock and the default state file are the folder's. A payload refused by the signature policy
 * or the decoder touches nothing; otherwise an interrupted earlier apply is recovered first. On
 * any error the model holds the version it held before this call (or the recovered one) and a
 * typed error says what to do; when a recovery ran first, the error's `details.recovery` says
 * what it did.
 *
 * A structural payload (format v7, docs/FORMAT.md §17, `fk` = `tfjs`) is routed to the rebuild
 * of the model's files (`rebuildModelDir`), crash-safe by the same journal: the result then also
 * holds `structural`, the rebuild's own result.
 *
 * The model remembers the model id of the first payload that commits to it
 * (`.ndiff-folder.json`, or `<file>.ndiff-model.json`); later payloads must carry the same id (as
 * with `expectedModelId`).
 */
export async function applyToModelDir(model: string, payloadBytes: Uint8Array, options: ModelDirApplyOptions = {}): Promise<ModelDirApplyResult> {
  // A structural payload (format v7: tensors added, removed, renamed or reshaped, the graph
  // changed) rebuilds the model's files, with the same journal and recovery (folder-rebuild.ts).
  if (holdsStructuralPayload(payloadBytes)) return applyStructuralToModelDir(model, payloadBytes, options);
  const verified = await verifyPayload(payloadBytes, options);
  const { dir, files } = await locateModelFiles(model);
  const modelFile = path.join(dir, files.model);
  const ops = options.fileOps ?? nodeFileOps;
  const sequences = resolveState(dir, options.state, ops);
  const { dryRun, healthCheck, shardBytes, quantizedUnchanged } = options;
  // A state file kept in the folder under another name is the applier's too.
  const reservedFiles = typeof options.state === 'string' ? [path.resolve(options.state)] : [];
  // Before the lock and the recovery, which delete files of the applier's (stale locks, temporary
  // files): a manifest that names one as a weight shard is refused with nothing touched.
  await checkManifestNamesNoControlFiles(dir, reservedFiles, files.model);

  if (dryRun) {
    const expectedModelId = modelIdFor(dir, files, options.expectedModelId, await readModelId(dir, files));
    const disk = await openTfjsModelDir(dir, { reservedFiles, modelJsonFile: files.model });
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
    // An update an earlier run switched in and never confirmed: finished by this apply's health check (pending-update.ts).
    recovery = await recoverModel(ops, dir, files, { healthCheck: healthCheck && (async () => healthCheck({ dir, file: modelFile, store: await openTfjsModelDir(dir, { modelJsonFile: files.model, lazy: true }), pending: true })) });
    // Other model files beside this one must be readable (which shards they name), or nothing is changed.
    await namedByOtherModels(dir, files);
    // Three independent reads at once, their failures reported in this order.
    const idRead = readModelId(dir, files);
    const hasherRead: Promise<Hasher> = options.hasher && typeof options.hasher === 'object' ? Promise.resolve(options.hasher) : getHasher(options.hasher ? { prefer: options.hasher } : undefined);
    const digestsRead = options.baseCheck === 'full' ? undefined : readRecordedDigests(dir, files);
    for (const p of [idRead, hasherRead, digestsRead]) p?.catch(() => {});
    const recordedModelId = await idRead;
    const expectedModelId = modelIdFor(dir, files, options.expectedModelId, recordedModelId);
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
        ...(healthCheck ? { awaitsHealthCheck: true } : {}),
      };
      await writeJournal(ops, dir, files, journal);
      written = { journal, nextModelJson };
    };
    disk = await openTfjsModelDir(dir, {
      modelJsonFile: files.model,
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
    const store = new UpdatingModelDir(disk, dir, files, ops, pin, () => written);
    const res = await applyVerifiedPayload(store, verified, {
      ...options,
      expectedModelId,
      hasher,
      sequenceStore: sequences,
      healthCheck: healthCheck && ((info) => healthCheck({ dir, file: modelFile, ...info })),
    });
    // Already at the target (nothing committed): the model is this id's all the same.
    if (pin !== undefined && res.status === 'already-applied') await writeModelId(ops, dir, files, pin);
    return { ...res, recovery };
  } catch (e) {
    if (e instanceof NeuralDiffError && recovery.actions.length > 0) (e.details as Record<string, unknown>).recovery = recovery;
    throw e;
  } finally {
    await disk?.dropStaged();
    await unlock();
  }
}

/** @internal the journal and its settling, shared with the structural rebuild of a folder (folder-rebuild.ts): one journal, one recovery. */
