/**
 * What the native backend's "how to get it" says, where neural-diff runs from: in a clone, run
 * `npm run build:native` there; in an installed package (no C sources, nothing to build), build it
 * in a clone and point NDIFF_NATIVE_ADDON at that build, since the package looks for the addon
 * under its own folder.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { nativeHowTo } from '../src/engine/kernels/native/loader.ts';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

test('in a clone, the advice is to build the addon there', () => {
  const text = nativeHowTo(root);
  assert.match(text, /apt-get install libopenblas-dev/);
  assert.match(text, /`npm run build:native` in this clone/);
  assert.doesNotMatch(text, /NDIFF_NATIVE_ADDON/);
});

test('in an installed package, the advice is to build in a clone and point NDIFF_NATIVE_ADDON at it', async () => {
  const installed = await mkdtemp(path.join(tmpdir(), 'nd-installed-'));
  try {
    await writeFile(path.join(installed, 'package.json'), JSON.stringify({ name: 'neural-diff', version: '0.1.0' }));
    const text = nativeHowTo(installed);
    assert.match(text, /apt-get install libopenblas-dev/);
    assert.match(text, /`npm run build:native` in a clone of the neural-diff repository/);
    assert.match(text, /NDIFF_NATIVE_ADDON=\S*build\/Release\/neural_diff_blas\.node/);
    assert.doesNotMatch(text, /in this clone|in the neural-diff checkout/);
  } finally {
    await rm(installed, { recursive: true, force: true });
  }
});
