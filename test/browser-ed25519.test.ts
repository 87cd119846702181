/**
 * Ed25519 on the standard vectors in a real browser: the code of test/helpers/ed25519-verdicts.ts
 * (the applier's parsePublicKey and verifyEd25519, the pure verifier, Chromium's crypto.subtle)
 * bundled into headless Chromium (Debian's `chromium` via playwright-core; skipped with the reason
 * where it is missing), on Wycheproof's 151 cases, RFC 8032's TEST 1024 and TEST SHA(abc), and the
 * twelve ed25519-speccheck cases, whose verdicts must be the ones docs/security/ed25519-verdicts.md
 * gives for Chromium. The same checks in Node: test/ed25519-vectors.test.ts.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { chromium, type Browser, type Page } from 'playwright-core';
import { findChromium, CHROMIUM_ARGS } from './helpers/chromium.ts';
import { documentedVerdicts } from './helpers/ed25519-verdict-table.ts';
import type { SpeccheckVerdicts } from './helpers/ed25519-verdicts.ts';

const chromiumPath = findChromium();
const skip = 'skip' in chromiumPath ? chromiumPath.skip : false;

const vectors = (name: string): unknown => JSON.parse(readFileSync(new URL(`./vectors/ed25519/${name}`, import.meta.url), 'utf8'));
const wycheproof = vectors('wycheproof-ed25519_test.json');
const speccheck = vectors('speccheck-cases.json');
const rfc8032 = (vectors('rfc8032.json') as { vectors: unknown[] }).vectors;
/** A made-up https origin served by the test itself: a secure context, where crypto.subtle exists. */
const ORIGIN = 'https://ed25519.test/';

let browser: Browser;
let page: Page;

before(async () => {
  if (skip) return;
  const helper = join(import.meta.dirname, 'helpers', 'ed25519-verdicts.ts');
  const bundle = await build({
    stdin: { contents: `import * as v from ${JSON.stringify(helper)}; globalThis.ed25519Vectors = v;`, resolveDir: import.meta.dirname, loader: 'ts' },
    bundle: true, platform: 'browser', format: 'iife', target: 'es2022', write: false, logLevel: 'silent',
  });
  const script = bundle.outputFiles[0].text;
  assert.ok(!/from ["']node:/.test(script), 'nothing from Node in the page');
  browser = await chromium.launch({ executablePath: (chromiumPath as { path: string }).path, headless: true, args: CHROMIUM_ARGS });
  page = await browser.newPage();
  await page.route(`${ORIGIN}**`, (route) =>
    route.request().url().endsWith('/vectors.js')
      ? route.fulfill({ contentType: 'text/javascript', body: script })
      : route.fulfill({ contentType: 'text/html', body: '<!doctype html><script src="vectors.js"></script><body></body>' }),
  );
  await page.goto(ORIGIN);
  assert.equal(await page.evaluate('typeof globalThis.ed25519Vectors.speccheckVerdicts'), 'function');
});

after(async () => {
  await browser?.close();
});

test('in Chromium: the page is a secure context whose crypto.subtle has Ed25519 (else the WebCrypto verdicts would measure nothing)', { skip }, async () => {
  assert.equal(await page.evaluate('isSecureContext'), true);
  assert.equal(await page.evaluate('crypto.subtle.importKey("raw", new Uint8Array(32).fill(0x66).map((b, i) => (i ? b : 0x58)), { name: "Ed25519" }, false, ["verify"]).then(() => true, () => false)'), true);
});

for (const impl of ['pure', 'webcrypto'] as const) {
  test(`in Chromium, ${impl}: every Wycheproof case gets the file's verdict`, { skip, timeout: 120_000 }, async () => {
    const { checked, disagreements } = (await page.evaluate(([file, i]) => (globalThis as never as { ed25519Vectors: typeof import('./helpers/ed25519-verdicts.ts') }).ed25519Vectors.wycheproofDisagreements(file as never, i as 'pure'), [wycheproof, impl] as const)) as { checked: number; disagreements: string[] };
    assert.equal(checked, 151);
    assert.deepEqual(disagreements, []);
  });

  test(`in Chromium, ${impl}: RFC 8032 TEST 1024 and TEST SHA(abc) verify, and refuse any changed bit`, { skip }, async () => {
    const problems = await page.evaluate(([v, i]) => (globalThis as never as { ed25519Vectors: typeof import('./helpers/ed25519-verdicts.ts') }).ed25519Vectors.rfc8032Problems(v as never, i as 'pure'), [rfc8032, impl] as const);
    assert.deepEqual(problems, []);
  });
}

test('in Chromium: each path decides each speccheck case as docs/security/ed25519-verdicts.md says (BoringSSL\'s column), and the device refuses all twelve on both paths', { skip }, async () => {
  const measured = (await page.evaluate((cases) => (globalThis as never as { ed25519Vectors: typeof import('./helpers/ed25519-verdicts.ts') }).ed25519Vectors.speccheckVerdicts(cases as never), speccheck)) as SpeccheckVerdicts[];
  const documented = documentedVerdicts();
  assert.equal(measured.length, 12);
  for (const [i, m] of measured.entries()) {
    const d = documented[i];
    assert.deepEqual(m, { pure: d.pure, webcrypto: d.webcrypto, pureAlone: d.pureAlone, webcryptoAlone: d.chromiumAlone }, `case ${i}`);
    assert.equal(m.pure, m.webcrypto, `case ${i}: the paths disagree`);
    assert.notEqual(m.pure, 'accepted', `case ${i} was accepted`);
  }
});
