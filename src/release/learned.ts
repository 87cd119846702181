/**
 * Learned (training) jobs of a release plan: what `release add --plan --method sparse --train
 * DATA --eval INPUTS` records in each job's policy. The job's inputs besides its base and target
 * (the training data, the eval inputs, and a teacher other than the new version when one is
 * given) are stored in the release folder as blobs and named by content, like a version's files,
 * so a worker fetches and checks them as it fetches the rest (ticket.ts). Free of tfjs: training
 * (learned-train.ts) and measuring (learned-check.ts) load it only when a learned job runs or is
 * checked.
 */
import { lstat, mkdir, readdir } from 'node:fs/promises';
import * as path from 'node:path';
import { UsageError } from '../core/errors.ts';
import { readRegularFile } from '../io/durable/durable.ts';
import { PACKAGE_PATH, type PackageFile } from '../updater/manifest.ts';
import { BLOBS, copyBlob, writeBlob } from './blobs.ts';

/** The learned methods a release plans (`ndiff train`'s, less `topk`, which a release means post hoc). */
export const LEARNED_METHODS = ['sparse', 'hash', 'lora', 'sparse-lora', 'full', 'topk-retrain', 'drop', 'lowrank', 'lowbit', 'auto'] as const;
export type LearnedMethod = (typeof LEARNED_METHODS)[number];

/**
 * How the worker trains a learned job, and what the run measures it on: `ndiff train`'s options
 * of the same names. The training threads are part of the job (1: the payload bytes are the same
 * on any worker; another count sums gradients in another order).
 */
export interface LearnedSpec {
  method: LearnedMethod;
  /** The training data's files (`x.npy`, `y.npy`, or one `<input>.npy` per model input). */
  train: PackageFile[];
  /** The inputs the worker and the run measure the payload on, against the teacher. */
  eval: PackageFile[];
  /** A teacher other than the new version (its files); absent: the job's target version teaches. */
  teacher?: { files: PackageFile[]; fingerprint: string };
  epochs: number;
  seed: number;
  tune: 'quick' | 'thorough' | 'off';
  threads: number;
}

/** What a learned plan is given: {@link LearnedSpec} with its data, eval inputs and teacher as paths (stored as blobs by the add). */
export interface LearnedInputs extends Omit<LearnedSpec, 'train' | 'eval' | 'teacher'> {
  train: string;
  eval: string;
  teacher?: string;
}

/**
 * The closeness a learned payload reaches on the job's eval inputs, base + payload against the
 * teacher: what a worker claims in its result, and what the run measures again before it signs.
 */
export interface LearnedCloseness {
  examples: number;
  metric: 'top1' | 'mae';
  /** Top-1 agreement with the teacher (NaN is written as null: outputs that are not classes). */
  agreement: number | null;
  meanAbsDiff: number;
}

/**
 * How much worse than the worker's claim the run's own measurement may be before the result is
 * refused: 0.5 points of top-1 agreement, or 1% of mean |output − teacher|. The run measures with
 * the worker's code on the same inputs, so an honest claim matches to the last digit; the margin
 * covers another build's float rounding only.
 */
export const LEARNED_CLOSENESS_TOLERANCE = { agreement: 0.005, meanAbsDiffRatio: 0.01 } as const;

/** The id suffix of a learned job: `v4-from-v3-train-sparse`. */
export function learnedIdSuffix(method: LearnedMethod): string {
  return `-train-${method}`;
}

/** The files of a data folder (or one `.npy` file) as blobs of the release folder: `.npy` files only, by name. */
export async function storeDataFolder(releaseDir: string, where: string, flag: string): Promise<PackageFile[]> {
  const st = await lstat(where).catch(() => undefined);
  if (!st) throw new UsageError(`${flag} ${where} does not exist: expected a folder of .npy files (x.npy, and y.npy with labels; one <input>.npy per model input) or an x.npy file`, { [flag]: where });
  const names = st.isDirectory() ? (await readdir(where)).filter((n) => n.endsWith('.npy')).sort() : [path.basename(where)];
  const dir = st.isDirectory() ? where : path.dirname(where);
  if (!names.length) throw new UsageError(`${flag} ${where} holds no .npy file: expected x.npy (and y.npy with labels), or one <input>.npy per model input`, { [flag]: where });
  const files: PackageFile[] = [];
  for (const name of names) {
    if (!PACKAGE_PATH.test(name)) throw new UsageError(`${flag} ${where}: the file name ${JSON.stringify(name)} cannot be planned (letters, digits and _.@+- only): rename it`, { file: name });
    const bytes = await readRegularFile(path.join(dir, name));
    if (!bytes) throw new UsageError(`${flag} ${path.join(dir, name)} is not a regular file: copy the data into the folder`, { file: name });
    files.push({ path: name, ...(await writeBlob(releaseDir, bytes)) });
  }
  return files;
}

/** Copy `files` out of the release folder's blobs into `dir`; returns `dir`. */
export async function layOutFiles(releaseDir: string, files: readonly PackageFile[], dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  for (const f of files) await copyBlob(releaseDir, f, path.join(dir, f.path));
  return dir;
}

/** Where a teacher laid out in `dir` is opened from: the folder (TF.js) or its model file. */
export function teacherPath(dir: string, files: readonly PackageFile[], modelKind: string): string {
  return modelKind === 'tfjs' ? dir : path.join(dir, files[0].path);
}

/** Every blob a learned job reads besides its base and target. */
export function learnedBlobs(spec: LearnedSpec | undefined): PackageFile[] {
  return spec ? [...spec.train, ...spec.eval, ...(spec.teacher?.files ?? [])] : [];
}

/** Whether `s` is a learned spec `add --plan` writes (a record or a ticket is read back before anything runs). */
export function isLearnedSpec(s: unknown): s is LearnedSpec {
  const l = s as LearnedSpec;
  const fileOk = (f: PackageFile) => typeof f === 'object' && f !== null && typeof f.sha256 === 'string' && /^[0-9a-f]{64}$/.test(f.sha256) && f.file === `${BLOBS}/${f.sha256}`
    && Number.isSafeInteger(f.length) && f.length >= 0 && typeof f.path === 'string' && PACKAGE_PATH.test(f.path);
  const filesOk = (a: unknown) => Array.isArray(a) && a.length >= 1 && a.length <= 64 && a.every(fileOk);
  return typeof l === 'object' && l !== null && (LEARNED_METHODS as readonly string[]).includes(l.method) && filesOk(l.train) && filesOk(l.eval)
    && (l.teacher === undefined || (typeof l.teacher === 'object' && l.teacher !== null && filesOk(l.teacher.files) && typeof l.teacher.fingerprint === 'string' && /^[0-9a-f]{16}$/.test(l.teacher.fingerprint)))
    && Number.isSafeInteger(l.epochs) && l.epochs >= 1 && l.epochs <= 10_000 && Number.isSafeInteger(l.seed) && ['quick', 'thorough', 'off'].includes(l.tune)
    && Number.isSafeInteger(l.threads) && l.threads >= 1 && l.threads <= 256;
}
