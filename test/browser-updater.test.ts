/**
 * The device updater in headless Chromium (Debian's `chromium`, driven by playwright-core; the
 * test is skipped with the reason when it is missing and cannot be installed, like
 * test/browser.test.ts): `neural-diff/updater` bundled for the browser, a page served by the
 * same static server as the Node tests (same origin), state and downloads in IndexedDB, the
 * model in memory. It updates a device on version 1 to the newest over payloads (one download
 * dropped mid-body and resumed), then, after a reload, refuses the old manifest replayed: the
 * release it accepted survived the reload in IndexedDB. Then a page updates from a mirror of
 * another origin (another port) that allows CORS simple requests only: no request of the update
 * may need a preflight.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, rm, writeFile, cp } from 'node:fs/promises';
import { join } from 'node:path';
import { build } from 'esbuild';
import { chromium, type Browser } from 'playwright-core';
import { openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { readForDigest } from '../src/core/weight-store.ts';
import { validateManifest } from '../src/updater/manifest.ts';
import { findChromium, CHROMIUM_ARGS } from './helpers/chromium.ts';
import { releaseChain, type ReleaseChain } from './helpers/release-chain.ts';
import { serveRelease, type ReleaseServer } from './helpers/release-server.ts';

const chromiumPath = findChromium();
const skip = 'skip' in chromiumPath ? chromiumPath.skip : false;

let chain: ReleaseChain;
let server: ReleaseServer;
/** The same site at another origin, answering CORS simple requests only. */
let crossOrigin: ReleaseServer;
let browser: Browser;
let site: string;

before(async () => {
  if (skip) return;
  chain = await releaseChain(3);
  site = join(chain.work, 'site');
  await mkdir(site, { recursive: true });
  await cp(chain.releaseDir, join(site, 'kws'), { recursive: true });
  const bundle = await build({ entryPoints: [join(import.meta.dirname, 'helpers', 'updater-browser-entry.ts')], bundle: true, platform: 'browser', format: 'esm', write: false, logLevel: 'silent' });
  await writeFile(join(site, 'updater.js'), bundle.outputFiles[0].contents);
  await writeFile(join(site, 'index.html'), '<!doctype html><script type="module">import * as ndiff from "./updater.js"; window.ndiff = ndiff; document.body.dataset.state = "ready";</script><body></body>');
  server = await serveRelease(site);
  crossOrigin = await serveRelease(site, { cors: 'simple' });
  browser = await chromium.launch({ executablePath: (chromiumPath as { path: string }).path, headless: true, args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  await server?.close();
  await crossOrigin?.close();
  if (chain) await rm(chain.work, { recursive: true, force: true });
});

/** Version `v`'s tensors as plain arrays for the page, its frame (`tfjs:frame`, read-only) included, as a live model given its model.json lists it. */
async function tensorsOf(v: number): Promise<[string, { shape: number[]; data: number[]; patchable?: false }][]> {
  const store = await openTfjsModelDir(chain.versions[v - 1]);
  return store.list().map((t) => [t.name, { shape: [...t.shape], data: Array.from(readForDigest(store, t.name)), ...(t.patchable === false ? { patchable: false as const } : {}) }]);
}

type PageRun = Awaited<ReturnType<typeof import('./helpers/updater-browser-entry.ts').runUpdate>>;

/** One update in the page (test/helpers/updater-browser-entry.ts `runUpdate`). */
function runInPage(page: import('playwright-core').Page, args: { tensors: [string, { shape: number[]; data: number[]; patchable?: false }][]; publicKey: string; url: string }): Promise<PageRun> {
  return page.evaluate(`window.ndiff.runUpdate(${JSON.stringify(args)})`) as Promise<PageRun>;
}

test('in Chromium: updates over payloads with a resumed download, and after a reload refuses a replayed manifest (state in IndexedDB)', { skip, timeout: 120_000 }, async () => {
  const manifest = validateManifest((JSON.parse(await readFile(join(site, 'kws', 'manifest.json'), 'utf8')) as { signed: unknown }).signed);
  const oldManifest = await readFile(join(site, 'kws', 'manifest.json'));
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${server.url}index.html`);
    await page.waitForSelector('body[data-state="ready"]', { state: 'attached' });
    // The first payload the page fetches is cut after 300 bytes (every payload here is longer).
    assert.ok(manifest.payloads.every((p) => p.length > 300));
    server.faults.push({ match: (p) => p.startsWith('/kws/blobs/'), times: 1, kind: 'drop', at: 300 });
    const url = `${server.url}kws/`;
    const first = await runInPage(page, { tensors: await tensorsOf(1), publicKey: chain.keys.publicKeyPem, url });
    assert.equal(first.result.status, 'updated', JSON.stringify(first.result.error));
    assert.equal(first.result.fingerprint, chain.fingerprints[2]);
    // The dropped request and at least one more. Whether the page saw the 300 bytes before the
    // close is the browser's to decide (Chromium may drop bytes it buffered when a body ends
    // short); when it saw them, the download resumed from there and fetched nothing twice. The
    // resume itself is checked byte for byte in test/updater-http.test.ts.
    assert.ok(first.result.download.requests >= 2, `requests ${first.result.download.requests}`);
    assert.ok(first.result.download.resumes <= 1, `resumes ${first.result.download.resumes}`);
    assert.equal(first.result.download.bytesRefetched, 0);
    assert.deepEqual([first.record?.release, first.record?.sequence], [manifest.release, 3]);

    // A new release is published and accepted; then the old manifest is served again.
    await chain.addNext();
    await cp(chain.releaseDir, join(site, 'kws'), { recursive: true });
    await page.reload();
    await page.waitForSelector('body[data-state="ready"]', { state: 'attached' });
    const second = await runInPage(page, { tensors: await tensorsOf(3), publicKey: chain.keys.publicKeyPem, url });
    assert.equal(second.result.status, 'updated', JSON.stringify(second.result.error));
    assert.equal(second.result.fingerprint, chain.fingerprints[3]);
    await page.reload();
    await page.waitForSelector('body[data-state="ready"]', { state: 'attached' });
    server.override('/kws/manifest.json', new Uint8Array(oldManifest));
    const replay = await runInPage(page, { tensors: await tensorsOf(4), publicKey: chain.keys.publicKeyPem, url });
    server.override('/kws/manifest.json', undefined);
    assert.deepEqual([replay.result.status, replay.result.error?.code], ['failed', 'ND_FRESHNESS']);
    assert.match(replay.result.error?.message ?? '', /older than release/);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test('in Chromium: updates from a mirror of another origin that allows CORS simple requests only (no preflight)', { skip, timeout: 120_000 }, async () => {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${server.url}index.html`);
    await page.waitForSelector('body[data-state="ready"]', { state: 'attached' });
    assert.notEqual(new URL(crossOrigin.url).origin, new URL(server.url).origin);
    const from = crossOrigin.log.length;
    const run = await runInPage(page, { tensors: await tensorsOf(1), publicKey: chain.keys.publicKeyPem, url: `${crossOrigin.url}kws/` });
    assert.equal(run.result.status, 'updated', JSON.stringify(run.result.error));
    assert.equal(run.result.fingerprint, chain.fingerprints.at(-1));
    const asked = crossOrigin.log.slice(from);
    assert.deepEqual(asked.filter((q) => q.method === 'OPTIONS').map((q) => q.path), [], 'no preflight');
    const manifestAsk = asked.find((q) => q.path === '/kws/manifest.json');
    assert.equal(manifestAsk?.headers.origin, new URL(server.url).origin, 'asked cross-origin');
    // The browser's own revalidation header (the no-cache mode), which needs no preflight.
    assert.equal(manifestAsk?.headers['cache-control'], 'max-age=0');
    assert.ok(asked.some((q) => q.path.startsWith('/kws/blobs/') && q.status === 200), 'the payloads came from the mirror');
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});
