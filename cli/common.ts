/** Shared pieces of the CLI: exit codes, error reporting, output. */
import {
  BaseMismatchError, BudgetError, FreshnessError, ModelFormatError, ModelMismatchError, NeuralDiffError,
  NonFiniteValueError, PayloadFormatError, PayloadTooLargeError, SignatureError, TargetMismatchError,
  UnsupportedVersionError, UsageError, HealthCheckError, StateStoreError,
} from '../src/core/errors.ts';

/** Exit codes, documented in the README and in `ndiff --help`. */
export const EXIT = {
  ok: 0,
  /** An unexpected internal error (a bug: please report it). */
  internal: 1,
  /** Wrong command line: unknown option, missing argument, bad budget. */
  usage: 2,
  /** The payload was refused: corrupt, truncated, hostile, unsupported version, bad signature, stale or expired. */
  payload: 3,
  /** The payload does not fit this model: another base, another architecture. */
  model: 4,
  /** Patching did not reach the promised target, or the health check failed; everything was rolled back. */
  target: 5,
  /** The byte budget cannot be met. */
  budget: 6,
  /** A model folder or file is missing or malformed, the state file is unusable, or a rollback could not finish. */
  files: 7,
} as const;

export const EXIT_CODES_HELP = `Exit codes:
  0  success
  1  internal error (a bug: please report it)
  2  usage error (unknown option, missing argument, bad budget)
  3  payload refused (corrupt, truncated, unsupported version, bad signature, stale or expired)
  4  payload does not fit this model (another base or architecture); model untouched
  5  patched weights did not match the promised target, or the health check failed; rolled back
  6  byte budget cannot be met
  7  model folder or state file missing or malformed (or a rollback could not finish)`;

/** Where the CLI writes. Tests pass their own. */
export interface CliIO {
  out(line: string): void;
  err(line: string): void;
  /** Progress lines (stderr); silenced by --quiet. */
  progress(line: string): void;
}

export function processIO(quiet = false): CliIO {
  return {
    out: (l) => process.stdout.write(l + '\n'),
    err: (l) => process.stderr.write(l + '\n'),
    progress: (l) => {
      if (!quiet) process.stderr.write(l + '\n');
    },
  };
}

/** Map an error to an exit code. */
export function exitCodeOf(e: unknown): number {
  if (e instanceof UsageError) return EXIT.usage;
  if (e instanceof PayloadFormatError || e instanceof PayloadTooLargeError || e instanceof UnsupportedVersionError || e instanceof SignatureError || e instanceof FreshnessError || e instanceof NonFiniteValueError) return EXIT.payload;
  if (e instanceof BaseMismatchError || e instanceof ModelMismatchError) return EXIT.model;
  if (e instanceof TargetMismatchError || e instanceof HealthCheckError) return EXIT.target;
  if (e instanceof StateStoreError || (e instanceof NeuralDiffError && e.code === 'ND_ROLLBACK_FAILED')) return EXIT.files;
  if (e instanceof BudgetError) return EXIT.budget;
  if (e instanceof ModelFormatError) return EXIT.files;
  if (e instanceof NeuralDiffError) return EXIT.target;
  if (isMissingFile(e)) return EXIT.files;
  return EXIT.internal;
}

export function isMissingFile(e: unknown): e is NodeJS.ErrnoException {
  return typeof e === 'object' && e !== null && ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'EISDIR');
}

/** Left-aligned text table. */
export function table(rows: (string | number)[][], header: string[]): string {
  const all = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, c) => Math.max(...all.map((r) => r[c].length)));
  return all.map((r, i) => {
    const line = r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]))).join('  ');
    return i === 0 ? line + '\n' + widths.map((w) => '-'.repeat(w)).join('  ') : line;
  }).join('\n');
}
