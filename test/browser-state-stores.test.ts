/**
 * Two tabs updating one model at once, in headless Chromium (Debian's `chromium` via
 * playwright-core; skipped with the reason where it is missing): each store read its record, then
 * wrote it back whole, so a tab whose read came before the other tab's write put back the lower
 * sequence (and release) it had read, and a replayed payload or manifest was accepted again.
 * The IndexedDB updater state and sequence store now never lower what is recorded: the read and
 * the write are one transaction. Nor does a tab drop a failed payload another tab recorded: the
 * failed lists are joined, unless the later save cleared the list (forgetFailed).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { build } from 'esbuild';
import { chromium, type Browser, type Page } from 'playwright-core';
import { findChromium, CHROMIUM_ARGS } from './helpers/chromium.ts';
import { serveRelease, type ReleaseServer } from './helpers/release-server.ts';
import { tempDir } from './helpers/dirs.ts';

const chromiumPath = findChromium();
const skip = 'skip' in chromiumPath ? chromiumPath.skip : false;

let work: string;
let server: ReleaseServer;
let browser: Browser;

before(async () => {
  if (skip) return;
  work = await tempDir('nd-idb-');
  const site = join(work, 'site');
  await mkdir(site, { recursive: true });
  const src = join(import.meta.dirname, '..', 'src');
  const bundle = await build({
    stdin: { contents: `export { IndexedDbUpdaterState } from ${JSON.stringify(join(src, 'updater', 'indexeddb.ts'))}; export { IndexedDbSequenceStore } from ${JSON.stringify(join(src, 'apply', 'sequence-stores.ts'))}; export { Updater } from ${JSON.stringify(join(src, 'updater', 'updater.ts'))};`, resolveDir: src, loader: 'ts' },
    bundle: true, platform: 'browser', format: 'esm', write: false, logLevel: 'silent',
  });
  await writeFile(join(site, 'stores.js'), bundle.outputFiles[0].contents);
  await writeFile(join(site, 'index.html'), '<!doctype html><script type="module">import * as s from "./stores.js"; window.stores = s; window.state = new s.IndexedDbUpdaterState(); window.sequences = new s.IndexedDbSequenceStore(); document.body.dataset.state = "ready";</script><body></body>');
  server = await serveRelease(site);
  browser = await chromium.launch({ executablePath: (chromiumPath as { path: string }).path, headless: true, args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  await server?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

async function tab(context: import('playwright-core').BrowserContext): Promise<Page> {
  const page = await context.newPage();
  await page.goto(`${server.url}index.html`);
  await page.waitForSelector('body[data-state="ready"]', { state: 'attached' });
  return page;
}

test('in Chromium: a tab saving a record it read before another tab\'s write does not lower the sequence or the release', { skip, timeout: 60_000 }, async () => {
  const context = await browser.newContext();
  try {
    const [a, b] = [await tab(context), await tab(context)];
    await a.evaluate(`window.state.save('kws', { release: 1, manifestSha256: 'm1', sequence: 3, fingerprint: 'f3', failed: [] })`);
    // Tab b reads; tab a then takes a newer release and applies a later payload.
    await b.evaluate(`window.read = window.state.load('kws')`);
    await a.evaluate(`window.state.save('kws', { release: 2, manifestSha256: 'm2', sequence: 5, fingerprint: 'f5', failed: [] })`);
    // Tab b writes what it read, with a payload that failed its health check.
    await b.evaluate(`window.read.then((r) => window.state.save('kws', { ...r, failed: ['bad'] }))`);
    assert.deepEqual(await a.evaluate(`window.state.load('kws')`), { release: 2, manifestSha256: 'm2', sequence: 5, fingerprint: 'f5', failed: ['bad'] });
    // A higher sequence is still recorded (and the failure recorded before kept: see the next test).
    await b.evaluate(`window.state.save('kws', { release: 3, manifestSha256: 'm3', sequence: 6, fingerprint: 'f6', failed: [] })`);
    assert.deepEqual(await a.evaluate(`window.state.load('kws')`), { release: 3, manifestSha256: 'm3', sequence: 6, fingerprint: 'f6', failed: ['bad'] });
  } finally {
    await context.close();
  }
});

test('in Chromium: a tab saving the failed list it read does not drop a failure another tab recorded since; a cleared list stays cleared', { skip, timeout: 60_000 }, async () => {
  const context = await browser.newContext();
  try {
    const [a, b] = [await tab(context), await tab(context)];
    await a.evaluate(`window.state.save('kws', { release: 1, sequence: 3, failed: [] })`);
    // Both tabs read; a's payload fails its health check, then b's another one.
    await b.evaluate(`window.read = window.state.load('kws')`);
    await a.evaluate(`window.state.load('kws').then((r) => window.state.save('kws', { ...r, failed: [...r.failed, 'payload-a'] }))`);
    await b.evaluate(`window.read.then((r) => window.state.save('kws', { ...r, failed: [...r.failed, 'payload-b'] }))`);
    assert.deepEqual(await a.evaluate(`window.state.load('kws')`), { release: 1, sequence: 3, failed: ['payload-a', 'payload-b'] });
    // Updater.forgetFailed clears the list (and counts the clearing): the union does not bring it back.
    const forget = `new window.stores.Updater({ modelId: 'kws', urls: ['https://unused.example/'], trustedKeys: ['unused'], target: {}, state: window.state }).forgetFailed()`;
    assert.equal(await a.evaluate(forget), 2);
    assert.deepEqual(await b.evaluate(`window.state.load('kws')`), { release: 1, sequence: 3, failed: [], failedCleared: 1 });
    await b.evaluate(`window.state.load('kws').then((r) => window.state.save('kws', { ...r, failed: [...r.failed, 'payload-c'] }))`);
    assert.deepEqual(await a.evaluate(`window.state.load('kws')`), { release: 1, sequence: 3, failed: ['payload-c'], failedCleared: 1 });
  } finally {
    await context.close();
  }
});

test('in Chromium: the applier\'s IndexedDB sequence store never records a lower sequence over a higher one', { skip, timeout: 60_000 }, async () => {
  const context = await browser.newContext();
  try {
    const [a, b] = [await tab(context), await tab(context)];
    await a.evaluate(`window.sequences.set('kws', 5, { fingerprint: 'f5' })`);
    await b.evaluate(`window.sequences.set('kws', 3, { fingerprint: 'f3' })`);
    assert.equal(await b.evaluate(`window.sequences.get('kws')`), 5);
    await b.evaluate(`window.sequences.set('kws', 6, { fingerprint: 'f6' })`);
    assert.equal(await a.evaluate(`window.sequences.get('kws')`), 6);
  } finally {
    await context.close();
  }
});
