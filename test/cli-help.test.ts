/**
 * `--help` fits a screen, and the full text lives in one page per command (issue 65): every
 * command's help, at 100 columns, is at most 40 lines of at most 100 characters (options few runs
 * need are hidden; `--help --show-hidden` lists them) and ends by naming
 * its page, docs/cli/<command>.md; that page exists and documents every option the help lists; and
 * docs/CLI.md, the index, links every page.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { main } from '../cli/ndiff.ts';

const root = join(import.meta.dirname, '..');
const MAX_LINES = 40;
const COLUMNS = 100;

/** The commands a help screen lists under "Commands:", as argv (`['release', 'add']`). */
function commandsOf(help: string): string[][] {
  const list = /^Commands:\n((?: {2}.*\n)+)/m.exec(`${help}\n`)?.[1] ?? '';
  return [...list.matchAll(/^ {2}ndiff ((?:[a-z]+ ?)+?)(?: <| {2,}|$)/gm)].map((m) => m[1].trim().split(' '));
}

/** Every command line `ndiff` has (read from `ndiff --help` and `ndiff release --help`), and the page that documents it. */
async function allCommands(): Promise<[string[], string][]> {
  const commands: string[][] = [];
  for (const argv of commandsOf(await helpOf([]))) {
    commands.push(argv);
    commands.push(...commandsOf(await helpOf(argv)));
  }
  assert.ok(commands.length >= 19, `ndiff has at least 12 commands and 7 release subcommands: ${commands.map((c) => c.join(' ')).join(', ')}`);
  return commands.map((argv) => [argv, argv[0]]);
}

/** `ndiff <argv> --help` as printed on a terminal 100 columns wide, run in this process. */
async function helpOf(argv: string[]): Promise<string> {
  const printed: string[] = [];
  const log = console.log;
  const columns = Object.getOwnPropertyDescriptor(process.stdout, 'columns');
  Object.defineProperty(process.stdout, 'columns', { value: COLUMNS, configurable: true });
  console.log = (...parts: unknown[]) => { printed.push(parts.map(String).join(' ')); };
  try {
    const code = await main([...argv, '--help'], { out: (l) => printed.push(l), err: (l) => printed.push(l), progress: () => {} });
    assert.equal(code, 0, `ndiff ${argv.join(' ')} --help exits 0`);
  } finally {
    console.log = log;
    if (columns) Object.defineProperty(process.stdout, 'columns', columns);
    else delete (process.stdout as { columns?: number }).columns;
  }
  return printed.join('\n').replace(/\n+$/, '');
}

/** The options a help screen lists (`--name`), and its positionals (`<name>`), without --help and --version. */
function optionsOf(help: string): { options: string[]; positionals: string[] } {
  const options = [...help.matchAll(/^ {2}(?:-\w, |    )--([\w-]+)/gm)].map((m) => m[1]).filter((o) => o !== 'help' && o !== 'version' && o !== 'show-hidden');
  const section = /^Positionals:\n((?: {2}.*\n?)+)/m.exec(help)?.[1] ?? '';
  const positionals = [...section.matchAll(/^ {2}(\w+) {2,}/gm)].map((m) => m[1]);
  return { options, positionals };
}

/** The part of a docs page about `ndiff release <sub>`: its preamble (shared options) and its own section. */
function sectionOf(page: string, argv: string[]): string {
  if (argv.length < 2) return page;
  const parts = page.split(/^(?=## )/m);
  return parts[0] + (parts.find((p) => p.startsWith(`## \`ndiff ${argv.join(' ')}\``)) ?? '');
}

test('every command\'s --help fits a screen (40 lines, 100 columns) and ends by naming its docs page', async () => {
  for (const [argv, page] of await allCommands()) {
    const help = await helpOf(argv);
    const lines = help.split('\n');
    const name = `ndiff ${argv.join(' ')} --help`;
    assert.ok(lines.length <= MAX_LINES, `${name}: ${lines.length} lines, expected at most ${MAX_LINES}; move long explanations to docs/cli/${page}.md`);
    const longest = lines.reduce((a, l) => (l.length > a.length ? l : a), '');
    assert.ok(longest.length <= COLUMNS, `${name}: a line of ${longest.length} characters: ${longest}`);
    assert.match(lines[lines.length - 1], new RegExp(`docs/cli/${page}\\.md\\b`), `${name} ends by naming docs/cli/${page}.md`);
    // Within an option group, a line indented past the option names is only its [type] [default] wrapped (ending in `]`), never more words.
    let group = '';
    for (const l of lines) {
      if (/^[A-Z][^:]*:$/.test(l)) group = l;
      else if (l === '') group = '';
      else if (group && group !== 'Examples:' && /^ {10,}[^[ ]/.test(l) && !/\]$/.test(l)) assert.fail(`${name}: an option's description runs past one line (${group}): ${l.trim()}`);
    }
    assert.ok(existsSync(join(root, 'docs', 'cli', `${page}.md`)), `docs/cli/${page}.md exists`);
  }
  const top = (await helpOf([])).split('\n');
  assert.ok(top.length <= MAX_LINES, `ndiff --help: ${top.length} lines`);
  assert.ok(top.every((l) => l.length <= COLUMNS), 'ndiff --help: every line within 100 columns');
  assert.match(top.join('\n'), /docs\/CLI\.md/, 'ndiff --help names the index of the command pages');
});

test('the command list gives each command one line, and no longer calls diff top-k only', async () => {
  const top = await helpOf([]);
  const list = /^Commands:\n((?: {2}.*\n)+)/m.exec(`${top}\n`)?.[1] ?? '';
  const entries = list.split('\n').filter(Boolean);
  assert.ok(entries.length >= 12, list);
  for (const e of entries) assert.match(e, /^ {2}ndiff /, `one line per command, no wrapped continuation: ${e}`);
  assert.doesNotMatch(list, /post-hoc top-k/);
  assert.match(list, /ndiff diff .*lowbit/);
});

test('each docs/cli page documents every option its command\'s --help lists', async () => {
  for (const [argv, page] of await allCommands()) {
    const whole = readFileSync(join(root, 'docs', 'cli', `${page}.md`), 'utf8');
    const text = sectionOf(whole, argv);
    const { options, positionals } = optionsOf(await helpOf(argv));
    if (argv.join(' ') !== 'release') assert.ok(options.length > 0, `ndiff ${argv.join(' ')} --help lists options`);
    for (const o of options) assert.match(text, new RegExp(`\`--${o}[\` ]`), `docs/cli/${page}.md documents --${o} of ndiff ${argv.join(' ')}`);
    for (const p of positionals) assert.match(text, new RegExp(`\`<${p}(?:\\.\\.\\.)?>\``), `docs/cli/${page}.md documents <${p}> of ndiff ${argv.join(' ')}`);
    assert.match(whole, /^## Exit codes$/m, `docs/cli/${page}.md has its exit codes`);
    assert.match(text, /```sh\nndiff /, `docs/cli/${page}.md has an example`);
  }
});

test('docs/CLI.md links every command page, and every page it links exists', async () => {
  const index = readFileSync(join(root, 'docs', 'CLI.md'), 'utf8');
  const linked = [...index.matchAll(/\]\(cli\/([\w-]+)\.md\)/g)].map((m) => m[1]);
  for (const page of new Set((await allCommands()).map(([, p]) => p))) assert.ok(linked.includes(page), `docs/CLI.md links cli/${page}.md`);
  for (const page of linked) assert.ok(existsSync(join(root, 'docs', 'cli', `${page}.md`)), `docs/cli/${page}.md exists`);
});

/** The anchors GitHub gives a Markdown file's headings: lower case, punctuation dropped, spaces as hyphens. */
function anchorsOf(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const m of markdown.replace(/```[\s\S]*?```/g, '').matchAll(/^#{1,6} (.*)$/gm)) {
    const slug = m[1].trim().toLowerCase().replace(/[^\p{L}\p{N}_\- ]/gu, '').replace(/ /g, '-');
    const n = seen.get(slug);
    seen.set(slug, (n ?? -1) + 1);
    out.add(n === undefined ? slug : `${slug}-${n + 1}`);
  }
  return out;
}

test('the section links of docs/CLI.md and the command pages land on headings that exist', async () => {
  const pages = ['docs/CLI.md', ...[...new Set((await allCommands()).map(([, p]) => p))].map((p) => `docs/cli/${p}.md`)];
  const broken: string[] = [];
  for (const page of pages) {
    const text = readFileSync(join(root, page), 'utf8');
    for (const m of text.matchAll(/\]\(([^)#\s]*)#([^)\s]+)\)/g)) {
      const target = m[1] ? join(root, page, '..', m[1]) : join(root, page);
      if (!target.endsWith('.md')) continue;
      if (!anchorsOf(readFileSync(target, 'utf8')).has(m[2])) broken.push(`${page} -> ${m[1]}#${m[2]}`);
    }
  }
  assert.deepEqual(broken, []);
});

test('a usage error names the command whose --help lists the options, not a placeholder', async () => {
  const cases: [string[], string][] = [
    [['train', '--bse', 'models/v1'], 'ndiff train --help'],
    [['--json', 'inspect'], 'ndiff inspect --help'],
    [['release', 'add', '--no-such-option'], 'ndiff release add --help'],
    [['no-such-command'], 'ndiff --help'],
  ];
  for (const [argv, hint] of cases) {
    const err: string[] = [];
    const code = await main(argv, { out: () => {}, err: (l) => err.push(l), progress: () => {} });
    assert.equal(code, 2, `ndiff ${argv.join(' ')}: ${err.join('\n')}`);
    assert.ok(err.includes(`run \`${hint}\` for the options`), `ndiff ${argv.join(' ')} points to ${hint}: ${err.join('\n')}`);
  }
});

test('options hidden from a screen-sized help are listed by --help --show-hidden, and documented', async () => {
  for (const [argv, hidden] of [[['train'], ['backend', 'threads', 'codec', 'teacher-loss', 'output-kind', 'min-agreement', 'max-mean-abs-diff', 'max-accuracy-drop', 'budget-grid']], [['diff'], ['exact-codec', 'state', 'output-kind', 'min-agreement', 'max-mean-abs-diff', 'max-accuracy-drop', 'budget-grid']]] as const) {
    const short = optionsOf(await helpOf([...argv])).options;
    const all = optionsOf(await helpOf([...argv, '--show-hidden'])).options;
    const page = readFileSync(join(root, 'docs', 'cli', `${argv[0]}.md`), 'utf8');
    for (const o of hidden) {
      assert.ok(!short.includes(o), `ndiff ${argv[0]} --help hides --${o}`);
      assert.ok(all.includes(o), `ndiff ${argv[0]} --help --show-hidden lists --${o}`);
      assert.match(page, new RegExp(`\`--${o}[\` ]`), `docs/cli/${argv[0]}.md documents --${o}`);
    }
    assert.match(await helpOf([...argv]), /--show-hidden +with --help: also list the options hidden here/);
  }
});

test('exit 10 is described as the trainers decide it: a result below the base is refused (one level with it is written)', async () => {
  // src/train/train-diff.ts refuses `chosen < base` on validation, and ndiff diff --eval a payload further from --target than the base.
  const help = (await helpOf([])).split('\n').find((l) => /^ {2}10 /.test(l)) ?? '';
  const readme = readFileSync(join(root, 'README.md'), 'utf8').replace(/\n/g, ' ');
  const cli = readFileSync(join(root, 'docs', 'CLI.md'), 'utf8').split('\n').find((l) => l.startsWith('| `10` |')) ?? '';
  const train = readFileSync(join(root, 'docs', 'cli', 'train.md'), 'utf8').replace(/\n/g, ' ');
  const sentences = {
    'ndiff --help': help,
    'README.md': /[^.]*\(exit 10\)/.exec(readme)?.[0] ?? '',
    'docs/CLI.md': cli,
    'docs/cli/train.md': /`10` [^·]*/.exec(train)?.[0] ?? '',
  };
  for (const [where, text] of Object.entries(sentences)) {
    assert.ok(text, `${where} describes exit 10`);
    assert.doesNotMatch(text, /no (model )?better/, `${where}: a result level with the base is written, not refused: ${text}`);
    assert.match(text, /below|worse|further/, `${where} says what is refused: ${text}`);
  }
});
