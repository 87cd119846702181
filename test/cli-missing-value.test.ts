/**
 * Usage errors a newcomer makes first, each naming the option. An option that takes a value,
 * given without one (`--budget` at the end of the line, `--epochs --tune off`), is refused, not
 * given its default in silence (yargs does: `ndiff train ... --budget` trained at 1%); a misspelt
 * required option is named as misspelt, not only as missing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../cli/ndiff.ts';

async function run(argv: string[]): Promise<{ code: number; err: string }> {
  const err: string[] = [];
  const code = await main(argv, { out: () => {}, err: (l) => err.push(l), progress: () => {} });
  return { code, err: err.join('\n') };
}

// Paths that do not exist: a run that got past the options would stop at them (exit 7), not at 2.
const train = ['train', '--model-id', 'm', '--base', 'no-such-model', '--train', 'no-such-data', '--out', 'never.ndiff'];

test('an option given without its value is refused, naming it and what came instead', async () => {
  const atEnd = await run([...train, '--budget']);
  assert.equal(atEnd.code, 2, atEnd.err);
  assert.match(atEnd.err, /--budget expects a value, found none/);
  const beforeFlag = await run([...train, '--epochs', '--tune', 'off']);
  assert.equal(beforeFlag.code, 2, beforeFlag.err);
  assert.match(beforeFlag.err, /--epochs expects a value, found the option --tune/);
  const repeatable = await run(['apply', '--model', 'no-such-model', '--patch', 'p.ndiff', '--public-key']);
  assert.equal(repeatable.code, 2, repeatable.err);
  assert.match(repeatable.err, /--public-key expects a value/);
  assert.match(atEnd.err, /run `ndiff train --help` for the options/);
});

test('flags, negations, joined values and negative numbers are not taken for missing values', async () => {
  // Past the options: each stops at the model path that does not exist.
  for (const extra of [['--budget=2%'], ['--allow-worse', '--budget', '2%'], ['-q', '--epochs', '2']]) {
    const r = await run([...train, ...extra]);
    assert.notEqual(r.code, 2, `ndiff ${[...train, ...extra].join(' ')}: ${r.err}`);
    assert.doesNotMatch(r.err, /expects a value/);
  }
  // A negative number is read as the value, and refused by its range (it trained uphill before).
  for (const lr of ['-1', '0']) {
    const r = await run([...train, '--lr', lr]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, new RegExp(`^ndiff: --lr must be a learning rate above 0, e\\.g\\. 1e-3, found ${lr}$`, 'm'));
  }
  const noState = await run(['apply', '--model', 'no-such-model', '--patch', 'p.ndiff', '--no-state']);
  assert.doesNotMatch(noState.err, /expects a value/);
  assert.match(noState.err, /no payload file at p\.ndiff/, 'past the options, at the payload that does not exist');
});

test('a misspelt required option is named as misspelt, not only as the missing one; a stray option or word is named once', async () => {
  const typo = await run(['diff', '--model-id', 'm', '--base', 'a', '--target', 'b', '--out', 'c.ndiff', '--budgt', '2%']);
  assert.equal(typo.code, 2, typo.err);
  // yargs checks required options first: it said only "Missing required argument: budget".
  assert.match(typo.err, /--budget is required and not given, and --budgt is no option of this command \(misspelt\?\): add --budget VALUE/);
  const stray = await run(['diff', '--model-id', 'm', '--base', 'a', '--target', 'b', '--out', 'c.ndiff', '--budget', '2%', '--modl-id', 'x']);
  assert.equal(stray.code, 2, stray.err);
  assert.match(stray.err, /^ndiff: --modl-id is no option of this command \(misspelt\?\)$/m, 'named once, as written (yargs added modlId)');
  const word = await run(['inspect', 'p.ndiff', 'extra']);
  assert.equal(word.code, 2, word.err);
  assert.match(word.err, /"extra": more than this command takes/);
});

test('a value outside an option\'s choices, and a misspelt command, are named with what would do', async () => {
  const choice = await run(['diff', '--model-id', 'm', '--base', 'a', '--target', 'b', '--out', 'c.ndiff', '--budget', '2%', '--method', 'lowbt']);
  assert.equal(choice.code, 2, choice.err);
  assert.match(choice.err, /^ndiff: --method "lowbt" is not one of its choices: topk, lowbit, auto$/m);
  const command = await run(['difff', '--base', 'a']);
  assert.equal(command.code, 2, command.err);
  assert.match(command.err, /^ndiff: "difff" is no ndiff command: did you mean diff\?$/m);
  assert.match((await run(['release', 'ad', '--release', 'x'])).err, /^ndiff: "ad" is no ndiff release command: did you mean add\?$/m);
  assert.match((await run(['frobnicate'])).err, /^ndiff: "frobnicate" is no ndiff command \(ndiff --help lists them\)$/m);
});

test('a command run without its positional argument names it, with the usage line', async () => {
  // yargs said "Not enough non-option arguments: got 0, need at least 1".
  for (const [command, wanted] of [['inspect', '<payload>'], ['fingerprint', '<model>'], ['sign', '<payload>']] as const) {
    const r = await run([command]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, new RegExp(`^ndiff: ${wanted} is required and not given \\(usage: ndiff ${command} ${wanted}`, 'm'));
  }
});

test('an option of one value given twice is refused, naming both values; repeatable options still repeat', async () => {
  // yargs made each an array the command read as neither value: --method topk --method lowbit got past the options.
  const d = ['diff', '--model-id', 'm', '--base', 'a', '--target', 'b', '--out', 'c.ndiff'];
  for (const [argv, pattern] of [
    [[...d, '--budget', '2%', '--method', 'topk', '--method', 'lowbit'], /--method is given 2 times \("topk", "lowbit"\) and takes one value: give it once/],
    [[...train, '--budget', '1%', '--budget', '2%'], /--budget is given 2 times \("1%", "2%"\)/],
    [[...train, '--lr', '1e-3', '--lr', '5'], /--lr is given 2 times \("0\.001", "5"\)/],
  ] as const) {
    const r = await run([...argv]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, pattern);
  }
  const keys = await run(['apply', '--model', 'no-such-model', '--patch', 'p.ndiff', '--public-key', 'a.pem', '--public-key', 'b.pem']);
  assert.match(keys.err, /no payload file at p\.ndiff/, 'past the options, at the payload that does not exist');
  const also = await run([...train, '--also-consider', '0.5%', '--also-consider', '0.2%']);
  assert.notEqual(also.code, 2, also.err);
});

test('an option with choices given without its value is refused, not given its default', async () => {
  // yargs gave --codec and --store their defaults in silence: the run went on to the model paths.
  const d = ['diff', '--model-id', 'm', '--base', 'a', '--target', 'b', '--out', 'c.ndiff', '--budget', '2%'];
  const atEnd = await run([...d, '--codec']);
  assert.equal(atEnd.code, 2, atEnd.err);
  assert.match(atEnd.err, /--codec expects a value, found none/);
  const beforeFlag = await run([...d, '--store', '--method', 'topk']);
  assert.equal(beforeFlag.code, 2, beforeFlag.err);
  assert.match(beforeFlag.err, /--store expects a value, found the option --method/);
  const given = await run([...d, '--codec', 'f16', '--store', 'float32', '--json']);
  assert.notEqual(given.code, 2, given.err);
});

test('a value that starts with - is pointed to the joined form, which takes it', async () => {
  // Paths nothing makes (not relative ones: the suite's other files run beside this one in its folder).
  const nowhere = join(tmpdir(), `nd-no-such-model-${process.pid}`);
  const d = ['diff', '--model-id', 'm', '--base', join(nowhere, 'a'), '--target', join(nowhere, 'b'), '--budget', '2%'];
  const apart = await run([...d, '--out', '-c.ndiff']);
  assert.equal(apart.code, 2, apart.err);
  assert.match(apart.err, /--out expects a value, found -c\.ndiff, which reads as options: write it as --out VALUE, or --out=-c\.ndiff for a value that starts with -/);
  const joined = await run([...d, '--out=-c.ndiff']);
  assert.ok(joined.err.includes(`--base: no model at ${join(nowhere, 'a')}`), `past the options: ${joined.err}`);
  // A short option of the command in the value's place is named as the option it is.
  assert.match((await run([...d, '--out', '-q'])).err, /--out expects a value, found the option -q in its place: write it as --out VALUE$/m);
});

test('an empty value (--seed=$SEED with SEED unset) is refused, not read as 0 or as nothing', async () => {
  // yargs read --seed= as seed 0 and --lr= as 0: the run went on to the model paths.
  for (const extra of [['--seed='], ['--lr='], ['--budget='], ['--seed', '']]) {
    const r = await run([...train, ...extra]);
    assert.equal(r.code, 2, `${extra.join(' ')}: ${r.err}`);
    assert.match(r.err, new RegExp(`^ndiff: ${extra[0].replace(/=$/, '')} expects a value, found an empty one: write it as ${extra[0].replace(/=$/, '')} VALUE$`, 'm'));
  }
});
