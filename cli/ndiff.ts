/**
 * `ndiff`: thin yargs commands over the library. `main` runs in-process (tests call it) and
 * returns the exit code instead of exiting.
 */
import yargs from 'yargs';
import { NeuralDiffError, UsageError } from '../src/core/errors.ts';
import { EXIT_CODES_HELP, errorDocument, exitCodeOf, inCliWords, processIO, type CliIO } from './common.ts';
import { boundedMessage, terminalSafe } from '../src/front/text.ts';
import { diffCommand, runDiff } from './commands/diff.ts';
import { inspectCommand, runInspect } from './commands/inspect.ts';
import { applyCommand, runApply } from './commands/apply.ts';
import { verifyCommand, runVerify } from './commands/verify.ts';
import { fingerprintCommand, runFingerprint } from './commands/fingerprint.ts';
import { trainCommand, runTrain } from './commands/train.ts';
import { reportCommand, runReport } from './commands/report.ts';
import { extraCommands } from './commands/index.ts';
import { releaseCommand } from './commands/release.ts';
import { updateCommand, runUpdate } from './commands/update.ts';

export const VERSION = '0.1.0';

/**
 * `--budget -5%` and `--epochs -1`: yargs reads a value that starts with `-` as more flags
 * ("Unknown arguments: 5, %"). Join such values to their flag so the option's own check
 * explains what is wrong with them.
 */
function joinDashValues(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = argv[i + 1];
    if (/^--[a-z][\w-]*$/.test(a) && next !== undefined && /^-[\d.]/.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

/**
 * Whether the boolean flag `name` ends up on, as yargs reads it before the command runs: the last
 * of `--name` (or `-short`), `--name true|false`, `--name=true|false` and `--no-name` wins.
 */
function flagOn(argv: string[], name: string, short?: string): boolean {
  let on = false;
  for (let i = 0; i < argv.length && argv[i] !== '--'; i++) {
    const a = argv[i];
    if (a === `--${name}` || (short !== undefined && a === `-${short}`)) {
      const next = argv[i + 1];
      on = next !== 'false';
      if (next === 'true' || next === 'false') i++;
    } else if (a === `--${name}=true` || a === `--${name}=false`) on = a.endsWith('true');
    else if (a === `--no-${name}`) on = false;
  }
  return on;
}

/** The text given for `--name` (or `--name=`) in argv, for messages about values that are not numbers. */
function rawValueOf(argv: string[], name: string): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === `--${name}`) return argv[i + 1];
    if (argv[i].startsWith(`--${name}=`)) return argv[i].slice(name.length + 3);
  }
  return undefined;
}

const COMMANDS = new Set(['diff', 'inspect', 'apply', 'verify', 'train', 'report', 'fingerprint', 'release', 'update', ...extraCommands.map((c) => c.command.split(' ')[0])]);
const RELEASE_SUBCOMMANDS = new Set(['add', 'job', 'publish', 'run', 'status', 'show', 'cancel']);

/** The help to point a usage error to: `ndiff train --help` for `ndiff train ...`, `ndiff --help` when no command was named. */
function helpCommandOf(argv: string[]): string {
  const words = argv.filter((a) => !a.startsWith('-'));
  if (!COMMANDS.has(words[0])) return 'ndiff --help';
  const sub = words[0] === 'release' && RELEASE_SUBCOMMANDS.has(words[1]) ? ` ${words[1]}` : '';
  return `ndiff ${words[0]}${sub} --help`;
}

/** JSON for `--json`: BigInts as strings, typed arrays as plain arrays. */
function toJson(doc: unknown): string {
  return JSON.stringify(doc, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : ArrayBuffer.isView(v) && !(v instanceof DataView) ? Array.from(v as unknown as ArrayLike<number>) : v), 2);
}

/** Run the CLI with `argv` (without `node ndiff`). Resolves to the exit code. */
export async function main(rawArgv: string[], io?: CliIO): Promise<number> {
  const argv = joinDashValues(rawArgv);
  const quiet = flagOn(argv, 'quiet', 'q');
  const json = flagOn(argv, 'json');
  const base = io ?? processIO(quiet);
  let resultDoc: unknown;
  // Under --json, stdout carries exactly one JSON document: human result lines are dropped
  // (progress and errors stay on stderr).
  const cio: CliIO = json ? { out: () => {}, err: base.err, progress: base.progress, result: (d) => { resultDoc = d; } } : base;
  let code = 0;
  /** The command's options and aliases, as the middleware found them: a missing required option's error names a misspelt one. */
  let known: Set<string> | undefined;
  const run = <A>(fn: (a: A, io: CliIO) => Promise<number>) => async (a: A) => {
    code = await fn(a, cio);
  };
  let y = yargs(argv)
    .scriptName('ndiff')
    .usage('ndiff <command> [options]\n\nShip neural-network updates as small diffs: built on a build server, applied in place on devices.')
    .command('diff', 'payload of two TF.js, .onnx or .tflite versions: lowbit, topk, exact', diffCommand, run(runDiff))
    .command('inspect <payload>', 'show a payload: header and one row per patched tensor', inspectCommand, run(runInspect))
    .command('apply', 'verify a payload, patch a TF.js, .onnx or .tflite model in place', applyCommand, run(runApply))
    .command('verify <payload>', 'check a payload (and with --model that it applies); writes nothing', verifyCommand, run(runVerify))
    .command('train', 'learn a diff of a TF.js, .onnx or .tflite model (data or --teacher)', trainCommand, run(runTrain))
    .command('report <results..>', 'compare payloads by size and accuracy (HTML + Markdown); recommend one', reportCommand, run(runReport))
    .command('fingerprint <model>', 'fingerprint of a TF.js, .onnx or .tflite model (as payloads name it)', fingerprintCommand, run(runFingerprint))
    .command('release', 'keep a release folder: versions, payloads, a signed manifest', (c) => releaseCommand(c, run), () => {})
    .command('update', 'bring a model to a release\'s newest version by the fewest bytes', updateCommand, run(runUpdate));
  for (const c of extraCommands) y = y.command(c.command, c.describe, c.builder, run(c.handler));
  y = y
    .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'no progress output on stderr' })
    .option('json', { type: 'boolean', default: false, describe: 'stdout: one JSON document, the result or {error}' })
    .middleware((args, parser?: unknown) => {
      // yargs gives an option written without its value (`--budget` last, `--epochs --tune off`)
      // its default, or nothing: refuse it, naming it and what came instead.
      const declared = (parser as unknown as { getOptions(): Record<'string' | 'number' | 'array' | 'boolean' | 'count', string[]> & { key: object; alias: Record<string, string[]> } }).getOptions();
      known = new Set([...Object.keys(declared.key), ...Object.values(declared.alias).flat()]);
      // Every option but flags takes a value: those with choices only (--codec, --store) too.
      const valued = new Set(Object.keys(declared.key).filter((k) => ![...declared.boolean, ...declared.count].includes(k)));
      for (let i = 0; i < argv.length; i++) {
        // An empty value (`--seed=$SEED` with SEED unset) reads as 0 or as nothing: refuse it too.
        const empty = /^--([a-z][\w-]*)=$/.exec(argv[i])?.[1] ?? (/^--([a-z][\w-]*)$/.test(argv[i]) && argv[i + 1] === '' ? argv[i].slice(2) : undefined);
        if (empty !== undefined && valued.has(empty)) throw new UsageError(`--${empty} expects a value, found an empty one: write it as --${empty} VALUE`);
        const flag = /^--([a-z][\w-]*)$/.exec(argv[i])?.[1];
        const next = argv[i + 1];
        if (flag && valued.has(flag) && (next === undefined || next.startsWith('-'))) {
          // `--out -v2.ndiff`: a value may start with `-` when joined to its option (a single dash
          // and no short option of the command: not a flag written in its place).
          const dashValue = next !== undefined && /^-[^-]/.test(next) && !known.has(next.slice(1));
          const found = next === undefined ? 'none (it ends the command)' : dashValue ? `${next}, which reads as options` : `the option ${next} in its place`;
          throw new UsageError(`--${flag} expects a value, found ${found}: write it as --${flag} VALUE${dashValue ? `, or --${flag}=${next} for a value that starts with -` : ''}`);
        }
      }
      // An option of one value given twice (`--lr 1e-3 --lr 5`) comes as an array, which the
      // command would read as neither: refuse it, naming both values (repeatable options are arrays).
      const single = Object.keys(declared.key).filter((k) => ![...declared.array, ...declared.boolean, ...declared.count].includes(k));
      for (const key of single) {
        const value = (args as Record<string, unknown>)[key];
        if (Array.isArray(value) && /^[a-z][a-z0-9-]*$/.test(key)) {
          throw new UsageError(`--${key} is given ${value.length} times (${value.map((v) => JSON.stringify(String(v))).join(', ')}) and takes one value: give it once`);
        }
      }
      // yargs turns `--epochs abc` into NaN silently: refuse it, quoting what was given.
      for (const [key, value] of Object.entries(args)) {
        if (typeof value === 'number' && Number.isNaN(value) && /^[a-z][a-z0-9-]*$/.test(key)) {
          throw new UsageError(`--${key} expects a number, found ${JSON.stringify(rawValueOf(argv, key) ?? String(value))}`);
        }
      }
    }, true)
    .demandCommand(1, 'name a command (ndiff --help lists them)')
    .strict()
    .recommendCommands()
    .help()
    .alias('h', 'help')
    .version(VERSION)
    .epilogue(EXIT_CODES_HELP + '\n\nDocs (in the package): docs/CLI.md (each command: docs/cli/<command>.md), README.md, docs/guides/')
    .wrap(Math.min(110, process.stdout.columns || 100))
    .exitProcess(false)
    .fail((msg, err, usage) => {
      if (err) throw err;
      // "Not enough non-option arguments: got 0, need at least 1": name the argument, from the command's usage line.
      if (/^Not enough non-option arguments/.test(msg)) {
        const line = ((usage as unknown as { getUsage?(): [string, string][] }).getUsage?.()[0]?.[0] ?? '').split('\n')[0].replace('$0', 'ndiff');
        const wanted = [...line.matchAll(/<[\w.]+>/g)].map((m) => m[0]);
        throw new UsageError(`${wanted.length ? wanted.join(' ') : 'an argument'} ${wanted.length > 1 ? 'are' : 'is'} required and not given${line ? ` (usage: ${line})` : ''}`);
      }
      // yargs checks required options before unknown ones: `--budgt 2%` read "Missing required argument: budget".
      const missing = /^Missing required arguments?: (.+)$/.exec(msg)?.[1].split(', ');
      // "Unknown arguments: modl-id, modlId": each once, as written (an option, or a word too many).
      const stray = /^Unknown arguments?: (.+)$/.exec(msg)?.[1].split(', ').filter((a) => !/[A-Z]/.test(a));
      if (stray?.length) {
        const flags = stray.filter((a) => argv.some((t) => t === `--${a}` || t.startsWith(`--${a}=`) || t === `-${a}`)).map((a) => (a.length > 1 ? `--${a}` : `-${a}`));
        const extra = stray.filter((a) => !flags.includes(`--${a}`) && !flags.includes(`-${a}`));
        if (extra[0] !== undefined && extra[0] === argv.find((a) => !a.startsWith('-'))) throw new UsageError(`${JSON.stringify(extra[0])} is no ndiff command (ndiff --help lists them)`);
        const words = extra.map((a) => JSON.stringify(a));
        throw new UsageError([flags.length ? `${flags.join(', ')} ${flags.length > 1 ? 'are no options' : 'is no option'} of this command (misspelt?)` : '', words.length ? `${words.join(', ')}: more than this command takes (a value with spaces needs quotes)` : ''].filter(Boolean).join('; '));
      }
      // "Invalid values:\n  Argument: method, Given: "lowbt", Choices: ...", and "Did you mean diff?" for a misspelt command.
      const invalid = [...msg.matchAll(/Argument: ([\w-]+), Given: (.+?), Choices: (.+)$/gm)];
      if (invalid.length) throw new UsageError(invalid.map(([, name, given, choices]) => `--${name} ${given} is not one of its choices: ${choices.replace(/"/g, '')}`).join('; '));
      const guess = /^Did you mean (\S+)\?$/.exec(msg)?.[1];
      const words = argv.filter((a) => !a.startsWith('-'));
      const command = COMMANDS.has(words[0]) ? `ndiff ${words[0]}` : 'ndiff';
      if (guess) throw new UsageError(`${JSON.stringify(command === 'ndiff' ? words[0] : words[1])} is no ${command} command: did you mean ${guess}?`);
      if (!missing) throw new UsageError(msg);
      const unknown = argv.map((a) => /^--([a-z][\w-]*)/.exec(a)?.[1]).filter((f): f is string => f !== undefined && known !== undefined && !known.has(f) && !known.has(f.replace(/^no-/, '')));
      const list = missing.map((m) => `--${m}`).join(', ');
      throw new UsageError(`${list} ${missing.length > 1 ? 'are' : 'is'} required and not given${unknown.length ? `, and ${unknown.map((u) => `--${u}`).join(', ')} ${unknown.length > 1 ? 'are no options' : 'is no option'} of this command (misspelt?)` : ''}: add ${missing.map((m) => `--${m} VALUE`).join(' ')}`);
    });
  try {
    await y.parseAsync();
  } catch (e) {
    // Bounded: a hostile model can make a message quote megabytes.
    const msg = boundedMessage(inCliWords(e instanceof Error ? e.message : String(e)));
    const exit = exitCodeOf(e);
    // A message may quote a payload's model id or tensor names: printed with controls escaped
    // (in JSON, every such character is inside a string, and its escape reads back the same).
    if (json) base.out(terminalSafe(toJson(errorDocument(e, msg))));
    cio.err(`ndiff: ${terminalSafe(msg)}`);
    if (e instanceof UsageError && !(e.details as { fromLibrary?: boolean }).fromLibrary) cio.err(`run \`${helpCommandOf(argv)}\` for the options`);
    if (!(e instanceof NeuralDiffError) && exit === 1 && e instanceof Error && e.stack) cio.err(e.stack);
    return exit;
  }
  const helpOrVersion = argv.some((a) => a === '--help' || a === '-h' || a === '--version');
  // A command that fails without throwing (ndiff update) gives its {error} document as the result.
  const errorDoc = typeof resultDoc === 'object' && resultDoc !== null && 'error' in resultDoc;
  if (json && !helpOrVersion && (code === 0 || errorDoc)) base.out(terminalSafe(toJson(resultDoc ?? { ok: true })));
  return code;
}
