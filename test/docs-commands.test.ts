/**
 * Commands the docs give newcomers run as written (issue 45): each is taken from its page, not
 * copied here, and run on small stand-in models in a temporary folder. Options that only make it
 * quicker (fewer epochs) may be appended; nothing the command needs is added.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { main } from '../cli/ndiff.ts';
import { initBackend } from '../src/engine/backend.ts';
import { fileSystemIO } from '../src/io/tfjs/index.ts';
import { saveNpy } from '../src/io/npy/files.ts';
import { seededRandom } from '../src/core/random.ts';
import { tempDir } from './helpers/dirs.ts';

const root = join(import.meta.dirname, '..');

/** The first line of the page's first sh block that starts with `ndiff <command>`, as argv. */
async function commandFrom(page: string, command: string): Promise<string[]> {
  const text = await readFile(join(root, page), 'utf8');
  for (const block of text.matchAll(/```sh\n([\s\S]*?)```/g)) {
    const line = block[1].replace(/\\\n\s*/g, ' ').split('\n').find((l) => l.startsWith(`ndiff ${command} `));
    if (line) return line.split(/\s+/).filter(Boolean).slice(1);
  }
  throw new Error(`${page} shows no \`ndiff ${command}\` command`);
}

test('the shipping guide\'s short answer runs as written', { timeout: 240_000 }, async () => {
  await initBackend('wasm');
  const dir = await tempDir('nd-docs-');
  // Large enough that 1% of it holds a few patches (about 84 KB of weights).
  const make = () => tf.sequential({ layers: [tf.layers.dense({ inputShape: [16], units: 256, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }), tf.layers.dense({ units: 64, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }), tf.layers.dense({ units: 4, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }) })] });
  const m = make();
  await m.save(fileSystemIO(join(dir, 'v1')));
  const r = seededRandom(3);
  m.setWeights(m.getWeights().map((w) => tf.tidy(() => w.add(tf.tensor(Float32Array.from({ length: w.size }, () => (r() - 0.5) * 0.2), w.shape)))));
  await m.save(fileSystemIO(join(dir, 'v2')));
  await saveNpy(join(dir, 'field-inputs', 'x.npy'), Float32Array.from({ length: 200 * 16 }, () => r() * 2 - 1), [200, 16]);
  const argv = await commandFrom('docs/guides/shipping-a-trained-model.md', 'train');
  const paths = argv.map((a) => (/^[\w.-]+\/?$/.test(a) && /\/$|\.ndiff$/.test(a) ? join(dir, a) : a));
  const err: string[] = [];
  const code = await main([...paths, '--epochs', '1', '--tune', 'off', '-q'], { out: () => {}, err: (l) => err.push(l), progress: () => {} });
  assert.equal(code, 0, `ndiff ${argv.join(' ')}: ${err.join('\n')}`);
});

test('docs/CLI.md describes every command `ndiff --help` lists, and every exit code', async () => {
  const { spawnSync } = await import('node:child_process');
  const help = spawnSync(process.execPath, [join(root, 'cli', 'ndiff.mjs'), '--help'], { encoding: 'utf8' }).stdout;
  const commands = [...help.matchAll(/^ {2}ndiff (\w+)/gm)].map((m) => m[1]);
  assert.ok(commands.length >= 10, help);
  const codes = [...help.matchAll(/^ {2}(\d+) +\S/gm)].map((m) => m[1]);
  const cli = await readFile(join(root, 'docs', 'CLI.md'), 'utf8');
  const rows = cli.split('\n').filter((l) => l.startsWith('| `ndiff '));
  for (const c of commands) assert.ok(rows.some((r) => r.startsWith(`| \`ndiff ${c}`) || r.includes(`/ \`ndiff ${c}\``)), `docs/CLI.md has a row for ndiff ${c}`);
  for (const code of codes) assert.match(cli, new RegExp(`\`${code}\` `), `docs/CLI.md lists exit code ${code}`);
});

/** The ```js block of `page` whose first line is `// <file>`, as written there. */
async function scriptFrom(page: string, file: string): Promise<string> {
  const text = await readFile(join(root, page), 'utf8');
  const block = [...text.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]).find((code) => code.startsWith(`// ${file}:`));
  if (!block) throw new Error(`${page} shows no js block starting \`// ${file}:\``);
  return block;
}

test('litert.md\'s Node snippet runs as written in Node: it patches the .tflite file and says so, then says already-applied', { timeout: 120_000 }, async () => {
  const { mkdir, symlink, writeFile } = await import('node:fs/promises');
  const { spawnSync } = await import('node:child_process');
  const { buildTflite, f32Bytes, T } = await import('./helpers/tflite-build.ts');
  const { TfliteWeightStore } = await import('../src/io/tflite/store.ts');
  const { diffOnnxModels } = await import('../src/diff/onnx.ts');
  const { signPayload } = await import('../src/sign/node-keys.ts');
  const { getHasher } = await import('../src/core/hasher.ts');
  const { fingerprintStore } = await import('../src/core/fingerprint.ts');
  const dir = await tempDir('nd-docs-litert-');
  const weights = (shift: number) => Array.from({ length: 256 }, (_, i) => Math.fround(Math.sin(i * 0.3) + (i % 5 === 0 ? shift : 0)));
  const file = (shift: number) => buildTflite({ tensors: [{ name: 'x', shape: [1, 4], type: T.FLOAT32 }, { name: 'w', shape: [256], type: T.FLOAT32, buffer: 1 }], buffers: [f32Bytes(weights(shift))], inputs: [0], outputs: [0] });
  const [v1, v2] = [file(0), file(0.25)];
  await mkdir(join(dir, 'models'));
  await mkdir(join(dir, 'updates'));
  await writeFile(join(dir, 'models', 'selfie.tflite'), v1);
  const err: string[] = [];
  assert.equal(await main(['keygen', '--out', join(dir, 'keys', 'release')], { out: () => {}, err: (l) => err.push(l), progress: () => {} }), 0, err.join('\n'));
  const hasher = await getHasher();
  const payload = diffOnnxModels(hasher, new TfliteWeightStore(v1.slice()), new TfliteWeightStore(v2.slice()), { mode: 'all', budgetBytes: 0, modelId: 'selfie', sequence: 2 }).bytes;
  await writeFile(join(dir, 'updates', 'v1-v2.signed.ndiff'), signPayload(payload, await readFile(join(dir, 'keys', 'release.private.pem'), 'utf8')));
  await writeFile(join(dir, 'update.mjs'), await scriptFrom('docs/guides/litert.md', 'update.mjs'));
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'litert-device', private: true, type: 'module' }));
  await mkdir(join(dir, 'node_modules'));
  await symlink(root, join(dir, 'node_modules', 'neural-diff'), 'dir');
  // neural-diff's sources through tsx, as the compiled package would be in an install.
  const run = () => spawnSync(process.execPath, ['update.mjs'], { cwd: dir, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: `--conditions=neural-diff-source --import=${import.meta.resolve('tsx')}` } });
  const first = run();
  assert.equal(first.status, 0, first.stderr);
  assert.equal(first.stdout.trim(), 'applied');
  assert.equal(fingerprintStore(hasher, new TfliteWeightStore(await readFile(join(dir, 'models', 'selfie.tflite')))).fingerprint, fingerprintStore(hasher, new TfliteWeightStore(v2.slice())).fingerprint);
  const again = run();
  assert.equal(again.stdout.trim(), 'already-applied', again.stderr);
});

test('`ndiff --help` names every model kind each command takes, and says diff is more than top-k', async () => {
  const { spawnSync } = await import('node:child_process');
  const help = (...args: string[]) => spawnSync(process.execPath, [join(root, 'cli', 'ndiff.mjs'), ...args, '--help'], { encoding: 'utf8' }).stdout;
  const top = help();
  // A command's line and its wrapped continuation lines, joined.
  const line = (command: string) => (new RegExp(`^  ndiff ${command}\\b.*(?:\\n {20,}.*)*`, 'm').exec(top)?.[0] ?? '').replace(/\s+/g, ' ');
  for (const c of ['diff', 'apply', 'train', 'fingerprint']) assert.match(line(c), /\.onnx.*\.tflite|\.tflite.*\.onnx/, `ndiff --help, ${c}: ${line(c)}`);
  assert.match(line('diff'), /lowbit/, `ndiff --help, diff: ${line('diff')}`);
  for (const [c, option] of [['apply', '--model'], ['verify', '--model'], ['fingerprint', 'model'], ['diff', '--base']]) {
    // The option's own entry: its line and the wrapped lines after it, up to its [type].
    const entry = new RegExp(`^ +${option} [^[]*`, 'm').exec(help(c))?.[0] ?? '';
    assert.match(entry, /\.tflite/, `ndiff ${c} --help, ${option}: ${entry.replace(/\s+/g, ' ')}`);
  }
});

test('every `ndiff train` / `ndiff diff` the docs show names --model-id, unless its base records one (a --model-out of the same page)', async () => {
  const { readdir } = await import('node:fs/promises');
  const pages = ['README.md', ...(await readdir(join(root, 'docs'), { recursive: true })).filter((f) => f.endsWith('.md')).map((f) => join('docs', f))];
  const missing: string[] = [];
  for (const page of pages) {
    const text = await readFile(join(root, page), 'utf8');
    const recorded = new Set([...text.matchAll(/--model-out ([^\s`]+)/g)].map((m) => m[1].replace(/\/$/, '')));
    for (const block of text.matchAll(/```\w*\n([\s\S]*?)```/g)) {
      for (const raw of block[1].replace(/\\\n\s*/g, ' ').split('\n')) {
        const line = raw.trim().replace(/^npx /, '');
        if (!/^ndiff (train|diff) /.test(line) || line.includes('[options]') || line.includes(' ... ')) continue; // a synopsis or an elided line
        const base = /--base (\S+)/.exec(line)?.[1].replace(/\/$/, '');
        if (!line.includes('--model-id') && !(base && recorded.has(base))) missing.push(`${page}: ${line}`);
      }
    }
  }
  // Without it, a base that records no id is refused (exit 2): the newcomer's first run of the command fails.
  assert.deepEqual(missing, []);
});

test('every command page says how to do it from code (## From code), ndiff worker\'s too (release.worker)', async () => {
  const { readdir } = await import('node:fs/promises');
  const pages = (await readdir(join(root, 'docs', 'cli'))).filter((f) => f.endsWith('.md'));
  const without: string[] = [];
  for (const page of pages) if (!(await readFile(join(root, 'docs', 'cli', page), 'utf8')).includes('\n## From code\n')) without.push(page);
  assert.deepEqual(without, []);
});
