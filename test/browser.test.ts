/**
 * The browser build of the applier, in a real browser: build dist/ with esbuild (as
 * `npm run build:apply` does), serve examples/browser on 127.0.0.1, open it in headless Chromium
 * (Debian's `chromium`, driven by playwright-core) and check that the page's fingerprint after
 * applying equals the target fingerprint computed in Node, once with WebAssembly (the region kernel's XXH64)
 * and once with `WebAssembly` deleted before any script runs (pure TypeScript hashing).
 *
 * Chromium: used from /usr/bin/chromium (or $CHROMIUM_PATH). When it is missing and the test
 * runs as root, it is installed with apt-get (as CI on a fresh machine does); otherwise the test
 * is skipped with the reason.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { buildApplyBundle, type ApplyBundle } from '../scripts/build-apply.ts';
import { serveExample, writeDemoFiles, type ExampleServer } from '../examples/browser/serve.ts';
import { openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { pretrainedModelDir } from './helpers/pretrained.ts';
import { findChromium, CHROMIUM_ARGS } from './helpers/chromium.ts';
import { memoryCopy, perturbed, weightsCopy } from './helpers/perturb.ts';
import { checkDocumentedFigures } from './helpers/doc-figures.ts';

const chromiumPath = findChromium();
const skip = 'skip' in chromiumPath ? chromiumPath.skip : false;

let work: string;
let bundle: ApplyBundle;
let server: ExampleServer;
let browser: Browser;
let expected: { baseFingerprint: string; targetFingerprint: string; payloadBytes: number; hashedTargetFingerprint: string };

before(async () => {
  if (skip) return;
  work = await mkdtemp(path.join(tmpdir(), 'nd-browser-'));
  const dist = path.join(work, 'dist');
  bundle = await buildApplyBundle(dist);
  // The real pretrained MobileNetV2 (2.6M weights) as the model, a 2%-perturbed copy as the target.
  const base = weightsCopy(await openTfjsModelDir(await pretrainedModelDir('layers')));
  expected = await writeDemoFiles(work, base, perturbed(base, 0.02, 3), 100_000);
  server = await serveExample({ distDir: dist, dataDir: work });
  browser = await chromium.launch({
    executablePath: (chromiumPath as { path: string }).path,
    headless: true,
    args: CHROMIUM_ARGS,
  });
});

after(async () => {
  await browser?.close();
  await server?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

// The goal is 30 KB (30,000 bytes) min+gzip, everything a device may run included: the pure
// Ed25519 verifier (for runtimes whose WebCrypto lacks Ed25519) and our SHA-512 are in the file
// (they replaced @noble/ed25519, a 3.7 KB chunk loaded apart); the two WebAssembly kernels
// (hashed patches; XXH64 and the sparse/dense region kernel, which replaced xxhash-wasm's ~11 KB
// min) ~2.5 KB gzipped; the payload's msgpack is read by our own reader (msgpackr's decoder was
// ~14 KB min).
const BUNDLE_GUARD_BYTES = 30_000;

test(`the applier bundle stays under ${BUNDLE_GUARD_BYTES} bytes min+gzip with its dependencies, nothing loaded apart`, { skip }, (t) => {
  t.diagnostic(`neural-diff/apply: ${bundle.apply.minBytes} bytes minified, ${bundle.apply.gzipBytes} bytes min+gzip`);
  assert.ok(bundle.apply.gzipBytes < BUNDLE_GUARD_BYTES, `apply bundle is ${bundle.apply.gzipBytes} bytes min+gzip`);
  assert.ok(bundle.applyInputs.some((i) => i.path.includes('ed25519-point')), 'the pure Ed25519 verifier is in the bundle');
  assert.ok(!bundle.applyInputs.some((i) => i.path.includes('node_modules')), 'no other package');
  checkDocumentedFigures('`dist/browser/apply.js` and its chunks', [bundle.apply.gzipBytes, BUNDLE_GUARD_BYTES], `${bundle.apply.gzipBytes.toLocaleString('en-US')} bytes min+gzip (goal 30,000)`);
  assert.ok(bundle.apply.gzipBytes > 5000, 'suspiciously small: are the kernels bundled?');
  assert.ok(bundle.applyInputs.some((i) => i.path.includes('region-kernel-wasm')) && bundle.applyInputs.some((i) => i.path.includes('msgpack-read')));
  assert.ok(!bundle.applyInputs.some((i) => i.path.includes('xxhash-wasm')), 'XXH64 is the region kernel\'s: xxhash-wasm stays out');
  assert.ok(!bundle.applyInputs.some((i) => i.path.includes('msgpackr')), 'msgpackr (the build-side encoder) stays out of the device bundle');
  assert.ok(!bundle.applyInputs.some((i) => i.path.includes('@tensorflow')));
});

/** Open the page (optionally with `WebAssembly` deleted first) and read what it shows once done. */
async function runPage(wasm: boolean, query = ''): Promise<{ state: string | null; shown: Record<string, string | undefined>; errors: string[] }> {
  const context = await browser.newContext();
  try {
    if (!wasm) await context.addInitScript('delete globalThis.WebAssembly;');
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${server.url}${query}`);
    await page.waitForSelector('body[data-state="done"], body[data-state="error"]', { timeout: 60_000 });
    const shown: Record<string, string | undefined> = {};
    for (const id of ['hasher', 'before', 'after', 'status']) shown[id] = (await page.textContent(`#${id}`))?.trim();
    return { state: await page.getAttribute('body', 'data-state'), shown, errors };
  } finally {
    await context.close();
  }
}

for (const wasm of [true, false]) {
  test(`the page applies the update and shows the target fingerprint (${wasm ? 'WebAssembly' : 'WebAssembly deleted: pure TypeScript'})`, { skip }, async () => {
    const { state, shown, errors } = await runPage(wasm);
    assert.equal(state, 'done', `page status: ${shown.status} ${errors.join('; ')}`);
    assert.equal(shown.hasher, wasm ? 'wasm' : 'pure');
    assert.equal(shown.before, expected.baseFingerprint);
    assert.equal(shown.after, expected.targetFingerprint);
    assert.match(shown.status ?? '', /^applied: update 1 /);
    assert.deepEqual(errors, []);
  });

  test(`the page applies a hashed update of every tensor (${wasm ? 'WebAssembly SIMD kernel' : 'WebAssembly deleted: TypeScript kernel'})`, { skip }, async () => {
    const { state, shown, errors } = await runPage(wasm, '?payload=update-hashed.ndiff');
    assert.equal(state, 'done', `page status: ${shown.status} ${errors.join('; ')}`);
    assert.equal(shown.before, expected.baseFingerprint);
    assert.equal(shown.after, expected.hashedTargetFingerprint);
    assert.deepEqual(errors, []);
  });
}

test('the page reports a typed error for a payload that does not fit', { skip }, async () => {
  // The model file given as the payload: not a payload at all.
  const { state, shown } = await runPage(true, '?payload=model.safetensors');
  assert.equal(state, 'error');
  assert.match(shown.status ?? '', /^ND_PAYLOAD_FORMAT: /);
});
