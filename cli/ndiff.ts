/**
 * `ndiff`: thin yargs commands over the library. `main` runs in-process (tests call it) and
 * returns the exit code instead of exiting.
 */
import yargs from 'yargs';
import { NeuralDiffError, UsageError } from '../src/core/errors.ts';
import { EXIT_CODES_HELP, exitCodeOf, processIO, type CliIO } from './common.ts';
import { terminalSafe } from './text.ts';
import { diffCommand, runDiff } from './commands/diff.ts';
import { inspectCommand, runInspect } from './commands/inspect.ts';
import { applyCommand, runApply } from './commands/apply.ts';
import { verifyCommand, runVerify } from './commands/verify.ts';
import { fingerprintCommand, runFingerprint } from './commands/fingerprint.ts';
import { trainCommand, runTrain } from './commands/train.ts';
import { reportCommand, runReport } from './commands/report.ts';
import { extraCommands } from './commands/index.ts';

export const VERSION = '0.1.0';

/** Run the CLI with `argv` (without `node ndiff`). Resolves to the exit code. */
export async function main(argv: string[], io?: CliIO): Promise<number> {
  const quiet = argv.includes('--quiet') || argv.includes('-q');
  const cio = io ?? processIO(quiet);
  let code = 0;
  const run = <A>(fn: (a: A, io: CliIO) => Promise<number>) => async (a: A) => {
    code = await fn(a, cio);
  };
  let y = yargs(argv)
    .scriptName('ndiff')
    .usage('ndiff <command> [options]\n\nShip neural-network updates as small diffs: build a payload on the build server, apply it in place on the device.')
    .command('diff', 'make a payload from two versions of a model (post-hoc top-k of the change, within a byte budget)', diffCommand, run(runDiff))
    .command('inspect <payload>', 'show a payload: header and one row per patched tensor', inspectCommand, run(runInspect))
    .command('apply', 'verify a payload and patch a model folder in place (atomic switch; untouched on any error)', applyCommand, run(runApply))
    .command('verify <payload>', 'check a payload is well-formed, and with --model that it applies cleanly (writes nothing)', verifyCommand, run(runVerify))
    .command('train', 'learn a diff of a model on new data within a byte budget (sparse, hash) or train a baseline (full, topk, drop, lowrank)', trainCommand, run(runTrain))
    .command('report <results>', 'render the size/accuracy comparison (HTML with charts + Markdown) from benchmark results JSON', reportCommand, run(runReport))
    .command('fingerprint <model>', 'print the fingerprint of a model folder (what payloads name as base and target)', fingerprintCommand, run(runFingerprint));
  for (const c of extraCommands) y = y.command(c.command, c.describe, c.builder, run(c.handler));
  y = y
    .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'no progress output on stderr' })
    .demandCommand(1, 'name a command (ndiff --help lists them)')
    .strict()
    .recommendCommands()
    .help()
    .alias('h', 'help')
    .version(VERSION)
    .epilogue(EXIT_CODES_HELP + '\n\nDocs: README.md and docs/FORMAT.md')
    .wrap(Math.min(110, process.stdout.columns || 100))
    .exitProcess(false)
    .fail((msg, err) => {
      throw err ?? new UsageError(msg);
    });
  try {
    await y.parseAsync();
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    // A message may quote a payload's model id or tensor names: printed with controls escaped.
    cio.err(`ndiff: ${terminalSafe(msg)}`);
    if (e instanceof UsageError && !(e.details as { fromLibrary?: boolean }).fromLibrary) cio.err('run `ndiff <command> --help` for the options');
    if (!(e instanceof NeuralDiffError) && exitCodeOf(e) === 1 && e instanceof Error && e.stack) cio.err(e.stack);
    return exitCodeOf(e);
  }
  return code;
}
