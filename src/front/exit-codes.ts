/**
 * The exit code of each error: the one table `ndiff` exits by (docs/CLI.md, `ndiff --help`), for
 * scripts and tools that call the library and want to exit as the command would.
 */
import {
  BaseMismatchError, BudgetError, FreshnessError, ModelFormatError, ModelMismatchError, NeuralDiffError, UnsupportedOperatorError,
  NonFiniteValueError, PayloadFormatError, PayloadTooLargeError, SignatureError, TargetMismatchError,
  UnsupportedVersionError, UsageError, HealthCheckError, PendingUpdateError, StateStoreError, DataError, MissingDependencyError, NoImprovementError, DownloadError,
} from '../core/errors.ts';

/** Exit codes by what went wrong, documented in docs/CLI.md and in `ndiff --help`. */
export const EXIT_CODES = {
  ok: 0,
  /** An unexpected internal error (a bug: please report it). */
  internal: 1,
  /** Wrong command line or options: unknown option, missing argument, bad budget. */
  usage: 2,
  /** The payload was refused: corrupt, truncated, hostile, unsupported version, bad signature, stale or expired. */
  payload: 3,
  /** The payload does not fit this model: another base, another architecture. */
  model: 4,
  /** Patching did not reach the promised target, or the health check failed (everything was rolled back), or an unconfirmed update waits for its health check (nothing changed). */
  target: 5,
  /** The byte budget cannot be met. */
  budget: 6,
  /** A model folder or file is missing or malformed, the state file is unusable, or a rollback could not finish. */
  files: 7,
  /** Training or evaluation data is missing or malformed. */
  data: 8,
  /** A package this command needs is not installed (the message names the install command). */
  dependency: 9,
  /** Training gave a model worse than the base on validation (or a diff measured further from its target); nothing was written. */
  noImprovement: 10,
  /** A release file could not be downloaded intact from any URL (network, status, length or hash). */
  download: 11,
} as const;

/** A permission, read-only or full file-system error (not a bug: the folder cannot be written). */
export function isFileAccess(e: unknown): e is NodeJS.ErrnoException {
  const code = typeof e === 'object' && e !== null ? (e as NodeJS.ErrnoException).code : undefined;
  return code === 'EACCES' || code === 'EPERM' || code === 'EROFS' || code === 'ENOSPC';
}

/** A file or folder that is not there (or a folder where a file was expected). */
export function isMissingFile(e: unknown): e is NodeJS.ErrnoException {
  return typeof e === 'object' && e !== null && ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'EISDIR');
}

/**
 * The exit code `ndiff` uses for an error a library call threw: 2 for a `UsageError`, 3 for a
 * refused payload, 4 for another model, ... (the whole table: {@link EXIT_CODES}, exported by `neural-diff/kit`); 7 for a file
 * missing or not writable; 1 for anything else (a bug).
 *
 * @example
 * ```ts
 * import { diff, exitCodeOf } from 'neural-diff';
 * try {
 *   await diff({ base: 'models/v1', target: 'models/v2', budget: '2%', modelId: 'kws', out: 'v1-v2.ndiff' });
 * } catch (e) {
 *   console.error(e instanceof Error ? e.message : e);
 *   process.exitCode = exitCodeOf(e); // 4 for a target of another architecture, as ndiff diff exits
 * }
 * ```
 */
export function exitCodeOf(e: unknown): number {
  if (e instanceof UsageError) return EXIT_CODES.usage;
  if (e instanceof PayloadFormatError || e instanceof PayloadTooLargeError || e instanceof UnsupportedVersionError || e instanceof SignatureError || e instanceof FreshnessError || e instanceof NonFiniteValueError) return EXIT_CODES.payload;
  if (e instanceof BaseMismatchError || e instanceof ModelMismatchError || e instanceof UnsupportedOperatorError) return EXIT_CODES.model;
  if (e instanceof TargetMismatchError || e instanceof HealthCheckError || e instanceof PendingUpdateError) return EXIT_CODES.target;
  if (e instanceof BudgetError) return EXIT_CODES.budget;
  if (e instanceof StateStoreError || e instanceof ModelFormatError || (e instanceof NeuralDiffError && e.code === 'ND_ROLLBACK_FAILED')) return EXIT_CODES.files;
  if (e instanceof DataError) return EXIT_CODES.data;
  if (e instanceof MissingDependencyError) return EXIT_CODES.dependency;
  if (e instanceof NoImprovementError) return EXIT_CODES.noImprovement;
  if (e instanceof DownloadError) return EXIT_CODES.download;
  if (isMissingFile(e) || isFileAccess(e)) return EXIT_CODES.files;
  return EXIT_CODES.internal;
}
