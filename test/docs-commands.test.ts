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
import { initBackend } from '../src/train/backend.ts';
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
