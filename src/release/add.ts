/**
 * Adding a version to a release folder: store its full package, plan the payloads into it from
 * the last K versions (jobs.ts), and, unless only planned, run them and publish.
 */
import type { KeyObject } from 'node:crypto';
import { UsageError } from '../core/errors.ts';
import { makeDirs } from '../io/durable/durable.ts';
import { modelKindOf, storePackage } from './package.ts';
import { planJobs, runJob } from './jobs.ts';
import { publishRelease, type PublishResult } from './publish.ts';
import { newestVersion, readRecord, writeRecord, type EdgePolicy, type ReleaseJob, type ReleaseRecord } from './record.ts';

/** Options of {@link addVersion}. */
export interface AddVersionOptions {
  /** Required for the first version (the id every payload carries); later, must match the record's if given. */
  modelId?: string;
  /** Payloads from each of the last K versions (default 3; the record keeps it once set). */
  history?: number;
  /** How each payload is made (default exact). */
  policy?: EdgePolicy;
  /** Only plan: record the version and its jobs; run them with `runJob`, then `publishRelease`. */
  planOnly?: boolean;
  /** Needed unless `planOnly`: signs the payloads and the manifest. */
  key?: KeyObject;
  /** Needed unless `planOnly`: the manifest's expiry, seconds since 1970. */
  expiresAt?: number;
  onProgress?: (line: string) => void;
}

/** What {@link addVersion} did. */
export interface AddVersionResult {
  modelId: string;
  version: number;
  fingerprint: string;
  /** Bytes of the new version's full package. */
  packageBytes: number;
  jobs: ReleaseJob[];
  /** Set unless `planOnly`. */
  published?: PublishResult;
}

/** Add the model at `modelPath` as the next version of the release in `releaseDir`. */
export async function addVersion(releaseDir: string, modelPath: string, options: AddVersionOptions = {}): Promise<AddVersionResult> {
  const progress = options.onProgress ?? (() => {});
  if (!options.planOnly && (!options.key || options.expiresAt === undefined)) throw new UsageError('adding a version without --plan publishes it: the signing key (--key) and an expiry are needed');
  const kind = modelKindOf(modelPath);
  let record: ReleaseRecord | undefined = await readRecord(releaseDir);
  if (!record) {
    if (!options.modelId) {
      throw new UsageError(`${releaseDir} holds no release yet: name the model with --model-id (the id every payload carries and devices check; it is kept in ${releaseDir}/release.json, never taken from a folder name)`);
    }
    await makeDirs(releaseDir);
    record = { format: 'neural-diff-release-record', version: 1, modelId: options.modelId, modelKind: kind, history: options.history ?? 3, release: 0, versions: [], payloads: [], pending: null };
  }
  if (options.modelId !== undefined && options.modelId !== record.modelId) {
    throw new UsageError(`${releaseDir} is the release of model ${JSON.stringify(record.modelId)}, not ${JSON.stringify(options.modelId)}: one release folder per model id; drop --model-id (the record keeps it) or use another folder`, { expected: record.modelId, found: options.modelId });
  }
  if (record.modelKind !== kind) throw new UsageError(`${releaseDir} holds ${record.modelKind === 'onnx' ? '.onnx files' : 'TF.js folders'}, and ${modelPath} is ${kind === 'onnx' ? 'an .onnx file' : 'a TF.js folder'}: add versions of the same kind`);
  if (record.pending) {
    throw new UsageError(`version ${record.pending.version} of ${JSON.stringify(record.modelId)} was planned but not published: run its jobs (ndiff release job) and publish it (ndiff release publish) before adding another`, { pending: record.pending.version });
  }
  if (options.history !== undefined) {
    if (!Number.isSafeInteger(options.history) || options.history < 1) throw new UsageError(`--history must be a whole number >= 1, found ${options.history}`);
    record.history = options.history;
  }
  progress(`storing ${modelPath} as a full package`);
  const { files, fingerprint } = await storePackage(releaseDir, modelPath);
  const newest = newestVersion(record);
  if (newest?.fingerprint === fingerprint) throw new UsageError(`${modelPath} is version ${newest.version} again (fingerprint ${fingerprint}): nothing to add`);
  const version = (newest?.version ?? 0) + 1;
  record.versions.push({ version, fingerprint, files, addedAt: new Date().toISOString(), source: modelPath });
  const jobs = planJobs(record, version, options.policy ?? { method: 'exact' });
  record.pending = { version, jobs };
  await writeRecord(releaseDir, record);
  const packageBytes = files.reduce((n, f) => n + f.length, 0);
  progress(`version ${version} (${fingerprint}, ${packageBytes} bytes as a package): ${jobs.length} payload job(s)`);
  const out: AddVersionResult = { modelId: record.modelId, version, fingerprint, packageBytes, jobs };
  if (options.planOnly) return out;
  for (const job of jobs) await runJob(releaseDir, record, job, progress);
  out.published = await publishRelease(releaseDir, record, { key: options.key as KeyObject, expiresAt: options.expiresAt as number });
  return out;
}
