/**
 * GGUF models in a release folder (`modelKind: "gguf"`, docs/format/release-manifests.md): a
 * version is its `.gguf` file, or a split model's parts (`name-00001-of-0000N.gguf`, added by any
 * part's path), stored as blobs a slice at a time, so a model of gigabytes is never held in
 * memory; its fingerprint is the stored-bytes digest GGUF payloads name their base and target by
 * (docs/format/gguf.md, 18.4). A job's payload is the exact block payload (format v8,
 * `diffGgufModels`) between two versions of one layout, read from the blobs in place, or with
 * method topk and a budget the on-grid payload (`ongridGgufDiff`: the changed blocks that count
 * most within the budget, each block the base's or the version's, so every device reaches the
 * same file, a state of the version). A job from such a state starts from that file, rebuilt by
 * applying its chain's payloads in place to a copy of the version the chain starts from, as the
 * devices on it did. Publish checks an exact payload by applying it in place to a copy of the
 * job's base, as a device does, and reading the digest the copy reaches; an on-grid one by making
 * it again (the encoder is deterministic) and comparing the bytes. Versions laid out differently
 * get no payload: devices holding the older one are told there is no update path (a GGUF model
 * is never installed whole by the updater), and the add says so.
 */
import { copyFile, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { ModelFormatError, ModelMismatchError, UsageError } from '../core/errors.ts';
import { getHasher } from '../core/hasher.ts';
import { CREATED_BY } from '../diff/build.ts';
import { parseBudget } from '../diff/budget.ts';
import { ongridGgufDiff } from '../gguf-diff/encoder.ts';
import { diffGgufModels } from '../io/gguf/diff.ts';
import { openGgufModel } from '../io/gguf/files.ts';
import { applyToGgufFile, ggufModelFiles, ggufPartsDigest } from '../io/gguf/in-place.ts';
import type { PackageFile } from '../updater/manifest.ts';
import { blobProblem, writeBlobFromFile } from './blobs.ts';
import { lossyChain, recordVersion, type EdgePolicy, type ReleaseJob, type ReleaseRecord } from './record.ts';

/** Whether `modelPath` names a GGUF model (a `.gguf` file, or a part of a split one). */
export function isGgufModelPath(modelPath: string): boolean {
  return /\.gguf$/i.test(modelPath);
}

/** The refusal of a method a GGUF release does not take (`found`: the method asked for). */
export function ggufMethodRefused(found: string): UsageError {
  return new UsageError(`a release of a GGUF model carries block payloads (the device patches the changed blocks in place): exact (the default: the new file byte for byte), or topk with a budget (--method topk --budget 10%: the on-grid payload, the changed blocks that count most within the budget); found method ${found}, which trains weights: a GGUF release does not train. Leave --method out, or give --method topk --budget B`, { expected: ['exact', 'topk'], found });
}

/** Store the GGUF model at `modelPath` (every part of a split model) as blobs; its files and stored-bytes digest. */
export async function storeGgufPackage(releaseDir: string, modelPath: string, checkName: (name: string) => void): Promise<{ files: PackageFile[]; fingerprint: string }> {
  const parts = ggufModelFiles(modelPath);
  // The header of every part is read and checked first (a file that is not GGUF is refused before a blob is written).
  openGgufModel(modelPath).close();
  const files: PackageFile[] = [];
  for (const part of parts) {
    const name = path.basename(part);
    checkName(name);
    files.push({ path: name, ...(await writeBlobFromFile(releaseDir, part)) });
  }
  // The version is named by the bytes stored, read back from the blobs (a file rewritten while it was copied cannot name other bytes).
  const stored = await layOut(releaseDir, files, 'link', false);
  try {
    openGgufModel(stored.file).close();
  } finally {
    await stored.dispose();
  }
  const fingerprint = await ggufPartsDigest(files.map((f) => path.resolve(releaseDir, f.file)));
  if (fingerprint === undefined) throw new UsageError(`${modelPath}: a part of the model went missing while it was stored: add it when the model is complete`);
  return { files, fingerprint };
}

/** A version's files laid out under a new temporary folder, linked (read only) or copied (to be written), each first checked against its recorded length and SHA-256 unless `check` is false (blobs just written). */
async function layOut(releaseDir: string, files: readonly PackageFile[], how: 'link' | 'copy', check = true): Promise<{ file: string; dispose(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'ndiff-release-gguf-'));
  try {
    for (const f of files) {
      const problem = check ? await blobProblem(releaseDir, f) : null;
      if (problem) throw new ModelFormatError(`release folder ${releaseDir}: ${f.file} (${f.path}) is ${problem}: the folder was damaged or edited; restore it from a copy`, { file: f.file });
      const from = path.resolve(releaseDir, f.file);
      if (how === 'link') await symlink(from, path.join(dir, f.path));
      else await copyFile(from, path.join(dir, f.path));
    }
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  return { file: path.join(dir, files[0].path), dispose: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * The files a job starts from, as its devices hold them: its version's, linked (`how` link, read
 * only) or copied; for a state a lossy chain reached, the version the chain starts from, copied,
 * with the chain's payloads applied in place as the devices on it applied them. Checked against
 * the job's base fingerprint (a folder whose blobs were edited is refused).
 */
async function layOutJobBase(releaseDir: string, record: ReleaseRecord, job: ReleaseJob, how: 'link' | 'copy'): Promise<{ file: string; dispose(): Promise<void> }> {
  if (!job.via) return layOut(releaseDir, recordVersion(record, job.fromVersion).files, how);
  const chain = lossyChain(record, job.via);
  const state = await layOut(releaseDir, recordVersion(record, chain[0].fromVersion).files, 'copy');
  try {
    const hasher = await getHasher();
    for (const p of chain) {
      const problem = await blobProblem(releaseDir, p);
      if (problem) throw new ModelFormatError(`release folder ${releaseDir}: payload ${p.file} is ${problem}: the folder was damaged or edited; restore it from a copy`, { file: p.file });
      await applyToGgufFile(state.file, path.resolve(releaseDir, p.file), { expectedModelId: record.modelId, state: null, hasher });
    }
    const found = await ggufPartsDigest(ggufModelFiles(state.file), hasher);
    if (found !== job.base) throw new ModelFormatError(`release folder ${releaseDir}: the state job ${job.id} starts from reads as ${found}, the record says ${job.base}: the folder was damaged or edited; restore it from a copy`);
  } catch (e) {
    await state.dispose();
    throw e;
  }
  return state;
}

/**
 * A GGUF job's models as files, to measure a payload on: its base as its devices hold it (a
 * state's file rebuilt) and its version, laid out under temporary folders removed by `dispose`.
 */
export async function layOutGgufJobModels(releaseDir: string, record: ReleaseRecord, job: ReleaseJob): Promise<{ base: string; target: string; dispose(): Promise<void> }> {
  const base = await layOutJobBase(releaseDir, record, job, 'link');
  try {
    const target = await layOut(releaseDir, recordVersion(record, job.toVersion).files, 'link');
    return { base: base.file, target: target.file, dispose: async () => { await target.dispose(); await base.dispose(); } };
  } catch (e) {
    await base.dispose();
    throw e;
  }
}

/** What a GGUF job's payload is: `exact` (reaches the version byte for byte) or `ongrid` (a state of it, within the budget). */
export type GgufJobMethod = 'exact' | 'ongrid';

/**
 * The payload of a GGUF job by `policy`: the exact block payload, or with topk and a budget the
 * on-grid payload within it (the exact one when every change fits); or why there is none
 * (versions laid out differently). The budget's percentage is of the version's file (every part).
 */
export async function buildGgufJobPayload(releaseDir: string, record: ReleaseRecord, job: ReleaseJob, policy: EdgePolicy = job.policy): Promise<{ bytes: Uint8Array; method: GgufJobMethod; skip?: string }> {
  if (policy.method === 'learned') throw ggufMethodRefused(policy.learned?.method ?? policy.method);
  const from = recordVersion(record, job.fromVersion);
  const to = recordVersion(record, job.toVersion);
  const baseFiles = await layOutJobBase(releaseDir, record, job, 'link');
  try {
    const targetFiles = await layOut(releaseDir, to.files, 'link');
    try {
      const base = openGgufModel(baseFiles.file);
      try {
        const target = openGgufModel(targetFiles.file);
        try {
          const hasher = await getHasher();
          const o = { modelId: record.modelId, sequence: to.version, createdBy: CREATED_BY };
          const lossy = policy.method === 'topk' && policy.budget !== undefined;
          const r = lossy
            ? ongridGgufDiff(hasher, base.model, target.model, parseBudget(policy.budget as string, target.model.parts.reduce((n, p) => n + p.header.fileSize, 0)), o)
            : diffGgufModels(hasher, base.model, target.model, o);
          if (r.baseFingerprint !== job.base || (!lossy && r.targetFingerprint !== to.fingerprint)) {
            throw new ModelFormatError(`release folder ${releaseDir}: job ${job.id}'s base and version ${to.version} read as ${r.baseFingerprint} and ${r.targetFingerprint}, recorded as ${job.base} and ${to.fingerprint}: the folder was damaged or edited; restore it from a copy`);
          }
          return { bytes: r.payload, method: r.targetFingerprint === to.fingerprint ? 'exact' : 'ongrid' };
        } finally {
          target.close();
        }
      } catch (e) {
        if (!(e instanceof ModelMismatchError)) throw e;
        return { bytes: new Uint8Array(0), method: 'exact', skip: `versions ${from.version} and ${to.version} are laid out differently (${(e.details as { difference?: string }).difference ?? e.message}): a GGUF payload rewrites blocks in place, so devices holding version ${from.version}${job.via ? ' (a state a lossy chain reached)' : ''} have no update path to version ${to.version} (the updater never installs a GGUF model whole)` };
      } finally {
        base.close();
      }
    } finally {
      await targetFiles.dispose();
    }
  } finally {
    await baseFiles.dispose();
  }
}

/**
 * Apply a GGUF job's payload in place to a copy of the job's base (for a state, its file
 * rebuilt), as a device does; the stored-bytes digest the copy reaches. Throws when the payload
 * does not apply or does not reach the target its header names.
 */
export async function applyGgufJobPayload(releaseDir: string, record: ReleaseRecord, job: ReleaseJob, bytes: Uint8Array): Promise<string> {
  const copy = await layOutJobBase(releaseDir, record, job, 'copy');
  try {
    const hasher = await getHasher();
    const r = await applyToGgufFile(copy.file, bytes, { expectedModelId: record.modelId, state: null, hasher });
    const reached = await ggufPartsDigest(r.files, hasher);
    if (reached !== r.targetFingerprint || reached !== r.header.targetFingerprint) throw new ModelFormatError(`the payload applied to version ${job.fromVersion} reached ${reached}, not the ${r.header.targetFingerprint} its header names`);
    return reached;
  } finally {
    await copy.dispose();
  }
}
