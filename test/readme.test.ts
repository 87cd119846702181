/**
 * The README's quick starts, run as written from a fresh temp folder, so they cannot rot:
 * every ```js block that opens with a `// <file>` comment is written to that file, and every
 * ```sh block of the quick starts is run, line by line, in a shell (stopping at the first
 * failure). The folder is set up as `npm i neural-diff @tensorflow/tfjs ...` would leave it, from
 * this checkout instead of the registry: node_modules/neural-diff links to the repository (its
 * sources through the `neural-diff-source` condition and tsx), node_modules/@tensorflow to this
 * repository's tfjs, and node_modules/.bin/ndiff runs the CLI. The `npm i` lines themselves are
 * left out: test/consumer.test.ts installs the packed tarball the way a user does. The browser
 * quick start is bundled for a browser with esbuild, and run in headless Chromium (real
 * IndexedDB, page reloads as app restarts) on quick start 1's model and payload, then after the
 * device installed a model of another structure whole, as the README says to keep it.
 *
 * Also checked: the README stays a short door (at most 250 lines), every relative link of the
 * README and the guides points at a file the repository holds, and the published README links
 * only to what the npm package holds (or to the placeholders other work fills).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { benchmarkSkip } from './helpers/benchmarks.ts';
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs';
import { chromium } from 'playwright-core';
import { main } from '../cli/ndiff.ts';
import { fileSystemIO } from '../src/io/tfjs/index.ts';
import { findChromium, CHROMIUM_ARGS } from './helpers/chromium.ts';
import { JOURNAL_SUFFIX, PREVIOUS_SUFFIX, STATE_SUFFIX } from '../src/io/durable/weights-file-update.ts';
import { MODEL_ID_SUFFIX } from '../src/io/durable/model-id-file.ts';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
let work: string;

/** The fenced blocks of `markdown` between `from` and `to` headings, in order. */
function blocks(markdown: string, from: string, to: string): { lang: string; code: string }[] {
  const start = markdown.indexOf(from);
  const end = markdown.indexOf(to, start);
  assert.ok(start >= 0 && end > start, `sections ${from} .. ${to}`);
  return [...markdown.slice(start, end).matchAll(/```(\w+)\n([\s\S]*?)```/g)].map((m) => ({ lang: m[1], code: m[2] }));
}

/** The file a ```js block writes, from its first line `// name.mjs`. */
const fileOf = (code: string): string | undefined => /^\/\/ ([\w.-]+\.m?js)\b/.exec(code)?.[1];

before(() => {
  work = mkdtempSync(path.join(tmpdir(), 'nd-readme-'));
  const modules = path.join(work, 'node_modules');
  mkdirSync(path.join(modules, '.bin'), { recursive: true });
  symlinkSync(root, path.join(modules, 'neural-diff'), 'dir');
  symlinkSync(path.join(root, 'node_modules', '@tensorflow'), path.join(modules, '@tensorflow'), 'dir');
  const ndiff = path.join(modules, '.bin', 'ndiff');
  writeFileSync(ndiff, `#!/bin/sh\nexec "${process.execPath}" "${path.join(root, 'cli', 'ndiff.mjs')}" "$@"\n`);
  chmodSync(ndiff, 0o755);
  writeFileSync(path.join(work, 'package.json'), JSON.stringify({ name: 'readme-quick-start', private: true, type: 'module' }));
});

after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

test('the README is a short door: at most 250 lines, install, three quick starts, the two contributor commands', () => {
  const lines = readme.split('\n').length;
  assert.ok(lines <= 250, `README.md has ${lines} lines`);
  for (const heading of ['## Install', '## Quick start 1', '## Quick start 2', '## Quick start 3', '## Read on', '## Working on neural-diff']) {
    assert.ok(readme.includes(heading), heading);
  }
  assert.match(readme, /npm install && npm run demo/);
  assert.match(readme, /\nnpm test\b/);
});

test('npm run demo prints the figures docs/BENCHMARKS.md quotes from it, and the README gives its time as a range', { skip: benchmarkSkip, timeout: 600_000 }, () => {
  const benchmarks = readFileSync(path.join(root, 'docs', 'BENCHMARKS.md'), 'utf8');
  const start = benchmarks.indexOf('`npm run demo` runs');
  assert.ok(start >= 0, 'docs/BENCHMARKS.md describes the demo');
  const paragraph = benchmarks.slice(start, benchmarks.indexOf('\n\n', start));
  const quotes = [...paragraph.matchAll(/`([^`]*accuracy[^`]*)`/g)].map((m) => m[1]);
  assert.ok(quotes.length >= 2, `the demo's figures are quoted as it prints them:\n${paragraph}`);
  const sizes = [...paragraph.matchAll(/\((\d+) bytes\)/g)].map((m) => `${m[1]} bytes`);
  assert.match(readme, /npm run demo +# [^\n]*\(\d+-\d+ s\)/, 'the README gives the demo\'s time as a range');
  const r = spawnSync('npm', ['run', '--silent', 'demo'], { cwd: root, encoding: 'utf8', timeout: 590_000 });
  assert.equal(r.status, 0, r.stderr.slice(-3000));
  for (const q of [...quotes, ...sizes]) assert.ok(r.stdout.includes(q), `the demo prints ${JSON.stringify(q)}; it printed:\n${r.stdout.split('\n').filter((l) => /accuracy|bytes/.test(l)).join('\n')}`);
});

test('the build-server and Node quick starts run as written from a fresh folder', { timeout: 240_000 }, () => {
  const env = {
    ...process.env,
    PATH: `${path.join(work, 'node_modules', '.bin')}:${process.env.PATH}`,
    // neural-diff's sources through tsx, as the compiled package would be in an install.
    NODE_OPTIONS: `--conditions=neural-diff-source --import=${import.meta.resolve('tsx')}`,
    npm_config_yes: 'false', // npx must find the local ndiff, never fetch one
  };
  const run = [...blocks(readme, '## Quick start 1', '## Quick start 3')];
  let shell = 0;
  let diffed = false;
  for (const { lang, code } of run) {
    if (lang === 'js') {
      const file = fileOf(code);
      assert.ok(file, `a js block of the quick starts names its file on its first line:\n${code.slice(0, 80)}`);
      writeFileSync(path.join(work, file), code);
      continue;
    }
    assert.equal(lang, 'sh');
    shell++;
    const script = code.split('\n').filter((l) => !/^npm i\b/.test(l)).join('\n');
    const r = spawnSync('sh', ['-e', '-c', script], { cwd: work, env, encoding: 'utf8', timeout: 200_000 });
    assert.equal(r.status, 0, `quick-start block failed:\n${script}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr.slice(-4000)}`);
    if (script.includes('node update.mjs')) {
      assert.match(r.stdout, /^applied [0-9a-f]{16}$/m, 'update.mjs applied the signed payload');
      // And again: the folder now holds the target.
      const again = spawnSync(process.execPath, ['update.mjs'], { cwd: work, env, encoding: 'utf8' });
      assert.match(again.stdout, /^already-applied [0-9a-f]{16}$/m, again.stderr);
    }
    if (script.includes('node train.mjs')) {
      // The library call of quick start 1 gives the bytes its `ndiff train` wrote, and says what it measured.
      assert.match(r.stdout, /^\d+ bytes, eval accuracy [\d.]+ -> [\d.]+$/m, r.stdout);
      // Its onProgress prints the messages that say which learning-rate trial the epochs after them belong to.
      const trial = r.stdout.search(/^\w[\w-]* lr [\d.e+-]+ \(trial\): \d+ epoch\(s\) on \d+ examples$/m);
      assert.ok(trial >= 0, `train.mjs printed no trial line:\n${r.stdout}`);
      assert.match(r.stdout.slice(trial), /\n(?:.*\n)*?epoch 1\/\d+ /, 'an epoch line follows the trial it belongs to');
      assert.ok(readFileSync(path.join(work, 'v1-v2-again.ndiff')).equals(readFileSync(path.join(work, 'v1-v2.ndiff'))), 'train() wrote the bytes ndiff train wrote');
    }
    if (script.includes('node diff.mjs')) {
      // The library's diff() gives the bytes `ndiff diff` wrote for the same models, budget and id.
      assert.match(r.stdout, /^\d+ bytes, (lowbit|topk), [\d.]+% of the model$/m, r.stdout);
      assert.ok(readFileSync(path.join(work, 'v1-v2-posthoc-again.ndiff')).equals(readFileSync(path.join(work, 'v1-v2-posthoc.ndiff'))), 'diff() wrote the bytes ndiff diff wrote');
      diffed = true;
    }
  }
  assert.ok(shell >= 3, `ran ${shell} shell blocks`);
  assert.ok(diffed, 'quick start 1 runs its library diff() example beside the `ndiff diff` it mirrors');
  // What the blocks promised exists.
  for (const file of ['models/v1/model.json', 'models/v2/model.json', 'v1-v2.signed.ndiff', 'keys/release.public.pem', 'device-model/.ndiff-state.json']) {
    assert.ok(existsSync(path.join(work, file)), file);
  }
});

test('the browser / React Native quick start bundles for a browser as written', async () => {
  const [app] = blocks(readme, '## Quick start 3', '## Read on').filter((b) => b.lang === 'js');
  assert.ok(app && fileOf(app.code) === 'app.js');
  const result = await build({
    stdin: { contents: app.code, resolveDir: work, loader: 'js' }, bundle: true, platform: 'browser', format: 'esm', target: 'es2022',
    conditions: ['neural-diff-source'], write: false, metafile: true, logLevel: 'silent',
  });
  const inputs = Object.keys(result.metafile.inputs);
  assert.deepEqual(inputs.filter((p) => p.startsWith('node:')), []);
  assert.ok(inputs.some((p) => p.includes('live-model-store')) && inputs.some((p) => p.includes('sequence-stores')));
});

const chromiumPath = findChromium();

test('the browser quick start runs in Chromium: applies v1 -> v2, keeps it across restarts, and after a model of another structure was installed whole it loads that model with its own model.json', { skip: 'skip' in chromiumPath ? chromiumPath.skip : false, timeout: 240_000 }, async () => {
  // Made by the quick starts above: models/v1, keys/release.*.pem, v1-v2.signed.ndiff.
  assert.ok(existsSync(path.join(work, 'v1-v2.signed.ndiff')), 'quick start 1 ran first');
  const [app] = blocks(readme, '## Quick start 3', '## Read on').filter((b) => b.lang === 'js');
  // The one thing a reader fills in: the placeholder key, with the key quick start 1 made.
  const publicKey = readFileSync(path.join(work, 'keys', 'release.public.pem'), 'utf8');
  const code = app.code.replace(/'-----BEGIN PUBLIC KEY-----\\n\.\.\.'/, JSON.stringify(publicKey));
  assert.notEqual(code, app.code, 'the quick start has a placeholder key to fill in');
  const www = path.join(work, 'www');
  mkdirSync(www, { recursive: true });
  writeFileSync(path.join(work, 'app.js'), code);
  // What an app does when a release's structure changed: install the new model whole, kept as the README keeps it.
  writeFileSync(path.join(work, 'install.js'), [
    "import * as tf from '@tensorflow/tfjs';",
    "const model = await tf.loadLayersModel('/models/v3/model.json');",
    "model.setUserDefinedMetadata({ modelJson: await (await fetch('/models/v3/model.json')).json() });",
    "await model.save('indexeddb://kws');",
  ].join('\n'));
  for (const name of ['app', 'install']) {
    await build({ entryPoints: [path.join(work, `${name}.js`)], bundle: true, platform: 'browser', format: 'esm', target: 'es2022', conditions: ['neural-diff-source'], outfile: path.join(www, `${name}.js`), logLevel: 'silent' });
  }
  // v3: another structure (16 hidden units, not 256); v4: v3 retrained a little; the payload v3 -> v4 signed.
  const v3 = tf.sequential({ layers: [tf.layers.dense({ inputShape: [32], units: 16, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }) }), tf.layers.dense({ units: 4, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 4 }) })] });
  await v3.save(fileSystemIO(path.join(work, 'models', 'v3')));
  v3.setWeights(v3.getWeights().map((w) => tf.tidy(() => w.add(0.01))));
  await v3.save(fileSystemIO(path.join(work, 'models', 'v4')));
  const cli = async (...argv: string[]) => {
    const err: string[] = [];
    assert.equal(await main(argv, { out: () => {}, err: (l) => err.push(l), progress: () => {} }), 0, `ndiff ${argv.join(' ')}: ${err.join('\n')}`);
  };
  const at = (f: string) => path.join(work, f);
  await cli('diff', '--base', at('models/v3'), '--target', at('models/v4'), '--budget', 'all', '--model-id', 'demo-classifier', '--sequence', '3', '--out', at('v3-v4.ndiff'));
  await cli('sign', at('v3-v4.ndiff'), '--key', at('keys/release.private.pem'));

  let update = at('v1-v2.signed.ndiff'); // what the site serves as the update
  const server = createServer(async (req, res) => {
    const name = new URL(req.url ?? '/', 'http://x').pathname;
    const page = /^\/(app|install)$/.exec(name);
    if (page) {
      // Errors reach the page's state before the module runs.
      res.writeHead(200, { 'content-type': 'text/html' }).end(`<!doctype html><body><script>
        const fail = (e) => { document.body.dataset.error = String(e && (e.message || e.reason?.message || e.reason) || e); document.body.dataset.state = 'error'; };
        addEventListener('error', fail); addEventListener('unhandledrejection', (e) => fail(e.reason));
      </script><script type="module">import '/${page[1]}.js'; document.body.dataset.state = 'done';</script>`);
      return;
    }
    const file = name === '/updates/v1-v2.signed.ndiff' ? update : /^\/(app|install)\.js$/.test(name) ? path.join(www, name) : /^\/models\/v[134]\/[\w.-]+$/.test(name) ? path.join(work, name) : undefined;
    const body = file && await readFile(file).catch(() => undefined);
    if (!body) res.writeHead(404).end();
    else res.writeHead(200, { 'content-type': name.endsWith('.js') ? 'text/javascript' : 'application/octet-stream', 'cache-control': 'no-store' }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/`;
  const browser = await chromium.launch({ executablePath: (chromiumPath as { path: string }).path, headless: true, args: CHROMIUM_ARGS });
  try {
    const context = await browser.newContext(); // one profile: IndexedDB lasts across page loads, as across app restarts
    const open = async (name: string) => {
      const p = await context.newPage();
      await p.goto(url + name);
      await p.waitForSelector('body[data-state]', { state: 'attached', timeout: 120_000 });
      const state = [await p.getAttribute('body', 'data-state'), await p.getAttribute('body', 'data-error')];
      await p.close();
      return state;
    };
    assert.deepEqual(await open('app'), ['done', null], 'first start: v1 -> v2 applied and kept');
    assert.deepEqual(await open('app'), ['done', null], 'next start: the kept v2, already applied');
    assert.deepEqual(await open('install'), ['done', null], 'a model of another structure installed whole');
    update = at('v3-v4.signed.ndiff');
    assert.deepEqual(await open('app'), ['done', null], 'the installed model loads with its own model.json and takes its update');
    assert.deepEqual(await open('app'), ['done', null], 'and keeps it');
  } finally {
    await browser.close();
    await new Promise((resolve) => server.close(resolve));
  }
});

test('relative links of the README and docs/ point at files the repository holds; the package README links only into the package', () => {
  // Links to files other work in progress writes may be listed here until it lands.
  const placeholders = new Set<string>([]);
  const docs = ['README.md', ...readdirSync(path.join(root, 'docs'), { recursive: true }).map((f) => path.join('docs', String(f))).filter((f) => f.endsWith('.md') && !f.startsWith(path.join('docs', 'api')))];
  const missing: string[] = [];
  for (const doc of docs) {
    const text = readFileSync(path.join(root, doc), 'utf8');
    for (const m of text.matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)) {
      const target = m[1];
      if (/^[a-z]+:/.test(target)) continue;
      const resolved = path.normalize(path.join(path.dirname(doc), target));
      if (!existsSync(path.join(root, resolved)) && !placeholders.has(resolved)) missing.push(`${doc} -> ${target}`);
    }
  }
  assert.deepEqual(missing, []);
  // The tarball holds docs/, src/, dist/, README and LICENSE: no examples/, bench/ or test/.
  const published = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { files: string[] }).files;
  for (const m of readme.matchAll(/\]\(([^)#\s]+)/g)) {
    const top = m[1].split('/')[0];
    if (/^[a-z]+:/.test(m[1])) continue;
    assert.ok(published.some((f) => f === top || f.startsWith(`${top}/`) || f === m[1]), `README links to ${m[1]}, which the npm package does not hold`);
  }
});

test('the README names the files a single model file keeps beside it (where it says to try on a copy), as the code names them', () => {
  const device = readme.slice(readme.indexOf('## Quick start 2'), readme.indexOf('## Quick start 3'));
  for (const suffix of [STATE_SUFFIX, MODEL_ID_SUFFIX, JOURNAL_SUFFIX, PREVIOUS_SUFFIX, '.ndiff-updater/']) {
    assert.ok(device.includes(`vad.onnx${suffix}`), `Quick start 2 names vad.onnx${suffix}`);
  }
});
