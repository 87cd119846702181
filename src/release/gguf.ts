/**
 * GGUF models in a release folder (`modelKind: "gguf"`, docs/format/release-manifests.md): a
 * version is its `.gguf` file, or a split model's parts (`name-00001-of-0000N.gguf`, added by any
 * part's path), stored as blobs a slice at a time, so a model of gigabytes is never held in
 * memory; its fingerprint is the stored-bytes digest GGUF payloads name their base and target by
 * (docs/format/gguf.md, 18.4). A job's payload is the exact block payload (format v8,
 * `diffGgufModels`) between two versions of one layout, read from the blobs in place; publish
 * checks one by applying it in place to a copy of the job's base, as a device does, and reading
 * the digest the copy reaches. Versions laid out differently get no payload: devices holding the
 * older one are told there is no update path (a GGUF model is never installed whole by the
 * updater), and the add says so.
 */
import { copyFile, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { ModelFormatError, ModelMismatchError, UsageError } from '../core/errors.ts';
import { getHasher } from '../core/hasher.ts';
import { CREATED_BY } from '../diff/build.ts';
import { diffGgufModels } from '../io/gguf/diff.ts';
import { openGgufModel } from '../io/gguf/files.ts';
import { applyToGgufFile, ggufModelFiles, ggufPartsDigest } from '../io/gguf/in-place.ts';
import type { PackageFile } from '../updater/manifest.ts';
import { blobProblem, writeBlobFromFile } from './blobs.ts';
import { recordVersion, type ReleaseJob, type ReleaseRecord } from './record.ts';

/** Whether `modelPath` names a GGUF model (a `.gguf` file, or a part of a split one). */
export function isGgufModelPath(modelPath: string): boolean {
  return /\.gguf$/i.test(modelPath);
}

/** The refusal of a method other than exact for a GGUF release (`found`: the method asked for). */
export function ggufExactOnly(found: string): UsageError {
  return new UsageError(`a release of a GGUF model carries exact block payloads only (the device patches the changed blocks in place and reaches the new file byte for byte); found method ${found}: leave --method out (exact is the default). For a smaller, lossy on-grid payload, make it with \`ndiff diff --base OLD.gguf --target NEW.gguf --budget 10%\` and measure it with --eval (docs/guides/llm.md)`, { expected: 'exact', found });
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

/** The exact block payload of a GGUF job, or why there is none (versions laid out differently). */
export async function buildGgufJobPayload(releaseDir: string, record: ReleaseRecord, job: ReleaseJob): Promise<{ bytes: Uint8Array; method: 'exact'; skip?: string }> {
  if (job.via) throw new UsageError(`job ${job.id} starts from a state a lossy payload reached: GGUF releases carry exact payloads only`);
  const from = recordVersion(record, job.fromVersion);
  const to = recordVersion(record, job.toVersion);
  const baseFiles = await layOut(releaseDir, from.files, 'link');
  try {
    const targetFiles = await layOut(releaseDir, to.files, 'link');
    try {
      const base = openGgufModel(baseFiles.file);
      try {
        const target = openGgufModel(targetFiles.file);
        try {
          const r = diffGgufModels(await getHasher(), base.model, target.model, { modelId: record.modelId, sequence: to.version, createdBy: CREATED_BY });
          if (r.baseFingerprint !== job.base || r.targetFingerprint !== to.fingerprint) {
            throw new ModelFormatError(`release folder ${releaseDir}: versions ${from.version} and ${to.version} read as ${r.baseFingerprint} and ${r.targetFingerprint}, recorded as ${job.base} and ${to.fingerprint}: the folder was damaged or edited; restore it from a copy`);
          }
          return { bytes: r.payload, method: 'exact' };
        } finally {
          target.close();
        }
      } catch (e) {
        if (!(e instanceof ModelMismatchError)) throw e;
        return { bytes: new Uint8Array(0), method: 'exact', skip: `versions ${from.version} and ${to.version} are laid out differently (${(e.details as { difference?: string }).difference ?? e.message}): a GGUF payload rewrites blocks in place, so devices holding version ${from.version} have no update path to version ${to.version} (the updater never installs a GGUF model whole)` };
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
 * Apply a GGUF job's payload in place to a copy of the job's base, as a device does; the
 * stored-bytes digest the copy reaches. Throws when the payload does not apply or does not reach
 * the target its header names.
 */
export async function applyGgufJobPayload(releaseDir: string, record: ReleaseRecord, job: ReleaseJob, bytes: Uint8Array): Promise<string> {
  const copy = await layOut(releaseDir, recordVersion(record, job.fromVersion).files, 'copy');
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
