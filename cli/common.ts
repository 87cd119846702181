/** Shared pieces of the CLI: exit codes, error reporting, output. */
import { NeuralDiffError } from '../src/core/errors.ts';
import { EXIT_CODES, exitCodeOf } from '../src/front/exit-codes.ts';

export { exitCodeOf, isFileAccess, isMissingFile } from '../src/front/exit-codes.ts';

/** Exit codes, documented in docs/CLI.md and in `ndiff --help`: the library's one table. */
export const EXIT = EXIT_CODES;

export const EXIT_CODES_HELP = `Exit codes (each in full: docs/CLI.md):
  0  success
  1  internal error (a bug: please report it)
  2  usage error (unknown option, missing argument, bad budget)
  3  payload refused (corrupt, truncated, unsupported version, bad signature, stale or expired)
  4  payload does not fit this model (another base or architecture); model untouched
  5  target missed or health check failed: rolled back (or an update awaits its health check)
  6  byte budget cannot be met
  7  model folder or state file missing or malformed (or a rollback could not finish)
  8  training or evaluation data missing or malformed
  9  a package this command needs is not installed (the message says what to install)
  10 worse than the base (train: on validation; diff --eval; measure --base): nothing written
  11 a release file could not be downloaded intact from any URL (ndiff update)`;

/** Where the CLI writes. Tests pass their own. */
export interface CliIO {
  /** A line of the human-readable result (stdout). Dropped under `--json`. */
  out(line: string): void;
  /** An error line (stderr). */
  err(line: string): void;
  /** Progress lines (stderr); silenced by --quiet. */
  progress(line: string): void;
  /**
   * The command's result as data: under `--json` the last value given is printed on stdout as
   * one JSON document when the command ends; otherwise it is ignored.
   */
  result?(doc: unknown): void;
}

/** The output streams whose reader has gone (`ndiff ... | head`, `2>&1 | head`): what is left to print there is dropped. */
const closed = new Set<NodeJS.WriteStream>();
let watched = false;

/**
 * A closed output pipe is an ordinary end for a command line (`| head`), not a crash: its EPIPE
 * stops further output there and the command finishes its work with its own exit code (a payload
 * being trained is still written). Other errors propagate.
 */
function watchOutputs(): void {
  if (watched) return;
  watched = true;
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPIPE') throw e;
      closed.add(stream);
    });
  }
}

function writeLine(stream: NodeJS.WriteStream, line: string): void {
  if (!closed.has(stream)) stream.write(line + '\n');
}

export function processIO(quiet = false): CliIO {
  watchOutputs();
  return {
    out: (l) => writeLine(process.stdout, l),
    err: (l) => writeLine(process.stderr, l),
    progress: (l) => {
      if (!quiet) writeLine(process.stderr, l);
    },
  };
}

/**
 * Progress every `everyMs` at most (plus the final call with `force`): a line per step on a
 * terminal or in a log file alike, never a flood.
 */
export function throttled(report: (line: string) => void, everyMs = 5000): (line: string, force?: boolean) => void {
  let last = -Infinity;
  return (line, force = false) => {
    const now = performance.now();
    if (force || now - last >= everyMs) {
      last = now;
      report(line);
    }
  };
}

/** The `{error}` document `--json` prints on failure. */
export function errorDocument(e: unknown, message: string): { error: { code: string; exitCode: number; message: string; details?: Record<string, unknown> } } {
  const code = e instanceof NeuralDiffError ? e.code : typeof e === 'object' && e !== null && typeof (e as NodeJS.ErrnoException).code === 'string' ? (e as NodeJS.ErrnoException).code as string : 'ND_INTERNAL';
  const details = e instanceof NeuralDiffError && Object.keys(e.details).length > 0 ? { details: e.details } : {};
  return { error: { code, exitCode: exitCodeOf(e), message, ...details } };
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

/**
 * Library option names in messages, and the flags that set them on the command line: an error
 * raised by the library speaks of `maxPayloadBytes`; the CLI user can only pass a flag.
 */
const FLAG_OF_OPTION: [RegExp, string][] = [
  [/\bmaxPayloadBytes\b/g, '--max-payload-bytes'],
  [/\bexpectedModelId\b/g, '--model-id'],
  [/\brequireSignature\b/g, '--require-signature'],
  [/\btrustedKeys\b/g, '--public-key'],
];

/** `modelId` as a flag's name: `model-id`. */
const kebab = (word: string) => word.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/**
 * A message from the library, in the command line's words. The library names an option with its
 * flag beside it, `modelId (--model-id)` or `method topk (--method topk)`: the command line user
 * reads the flag alone, `--model-id`, `--method topk`.
 */
export function inCliWords(message: string): string {
  let m = message;
  for (const [re, flag] of FLAG_OF_OPTION) m = m.replace(re, flag);
  m = m.replace(/\b([a-z][A-Za-z]*) (\S+) \((--([a-z][a-z-]*) \2)\)/g, (all, word: string, _value: string, flagText: string, flag: string) => (kebab(word) === flag ? flagText : all));
  return m.replace(/\b([a-z][A-Za-z]*) \((--([a-z][a-z-]*)[^)]*)\)/g, (all, word: string, flagText: string, flag: string) => (kebab(word) === flag ? flagText : all));
}
