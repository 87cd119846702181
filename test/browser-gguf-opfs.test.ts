/**
 * A GGUF model patched in place in the browser's Origin Private File System by the device's
 * applier (`neural-diff/gguf`, bundled for the browser: no node module, no WebAssembly needed), in
 * headless Chromium (Debian's `chromium`, driven by playwright-core; skipped with the reason where
 * it is missing and cannot be installed, as the other browser tests are). The committed
 * stories260K pair (test/vectors/gguf/stories/) goes into OPFS; a dedicated worker applies the
 * payload read from an OPFS file. Checked: the file reaches the target byte for byte with no
 * second copy of it; a signed payload verifies; a worker terminated in the middle of the
 * overwrite leaves a journal that brings the old version back byte for byte; one terminated in
 * its health check leaves the new version waiting, refused without a check, confirmed by a
 * passing one, rolled back by a failing one; `neural-diff/updater` with `ggufOpfsTarget` updates
 * the file from a release served over HTTP, a failing health check leaving v1; the page's main
 * thread is refused (no access handles);
 * and wllama (llama.cpp built for WebAssembly, test/helpers/wllama.ts) loads the patched file from
 * OPFS and generates v2's greedy tokens, where v1's differ from the first token.
 *
 * The prompt is text (wllama 3 takes no prompt of token ids; test/helpers/wllama-browser-entry.ts).
 * `The dog` is chosen because both versions' continuations are whole text: these files' vocabulary
 * keeps only byte tokens, and a continuation whose bytes are not valid UTF-8 cannot be reported by
 * wllama 3.13 (the helper then throws, saying so). Native llama.cpp generates the same 32 tokens
 * for this prompt; that is not asserted: on other prompts the wasm and native builds part at near
 * ties (two tokens within 1.5% of probability), so another machine's kernels could part here too.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { build } from 'esbuild';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { getHasher } from '../src/core/hasher.ts';
import { bytesSource } from '../src/io/gguf/header.ts';
import { ggufModelOf } from '../src/io/gguf/model.ts';
import { diffGgufModels } from '../src/io/gguf/diff.ts';
import { generateKeyPair, signPayload } from '../src/sign/node-keys.ts';
import { findChromium, CHROMIUM_ARGS } from './helpers/chromium.ts';
import { GGUF_VECTORS } from './helpers/gguf-pairs.ts';
import { serveRelease, type ReleaseServer } from './helpers/release-server.ts';
import { writeGgufRelease, type GgufRelease } from './helpers/gguf-release.ts';
import { openWllamaPage, prepareWllamaSite, wllamaGreedy, type GreedyRun } from './helpers/wllama.ts';

const chromiumPath = findChromium();
const skip = 'skip' in chromiumPath ? chromiumPath.skip : false;

let site: string;
let server: ReleaseServer;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let v1: Uint8Array;
let v2: Uint8Array;
let target: string;
let publicKey: string;
let release: GgufRelease;

type Outcome = { value?: unknown; error?: { name: string; code?: string; message: string }; killed?: string };

before(async () => {
  if (skip) return;
  site = await mkdtemp(join(tmpdir(), 'nd-gguf-opfs-'));
  const hasher = await getHasher();
  v1 = new Uint8Array(await readFile(join(GGUF_VECTORS, 'stories', 'v1.gguf')));
  v2 = new Uint8Array(await readFile(join(GGUF_VECTORS, 'stories', 'v2.gguf')));
  const d = diffGgufModels(hasher, ggufModelOf(bytesSource(v1)), ggufModelOf(bytesSource(v2)), { modelId: 'stories260K', sequence: 1, createdBy: 'test' });
  target = d.targetFingerprint;
  const keys = generateKeyPair();
  publicKey = keys.publicKeyPem;
  await writeFile(join(site, 'v1.gguf'), v1);
  await writeFile(join(site, 'payload.ndiff'), d.payload);
  await writeFile(join(site, 'signed.ndiff'), signPayload(d.payload, keys.privateKeyPem));
  for (const [entry, out] of [['gguf-opfs-worker.ts', 'gguf-worker.js'], ['gguf-opfs-page.ts', 'page.js']]) {
    const b = await build({ entryPoints: [join(import.meta.dirname, 'helpers', entry)], bundle: true, platform: 'browser', format: 'esm', write: false, logLevel: 'silent', metafile: true });
    const inputs = Object.keys(b.metafile.inputs);
    assert.deepEqual(inputs.filter((p) => p.startsWith('node:') || p.includes('node_modules/')), [], `${entry} bundles no node module and no package`);
    await writeFile(join(site, out), b.outputFiles[0].contents);
  }
  await writeFile(join(site, 'index.html'), '<!doctype html><body><script type="module" src="./page.js"></script></body>');
  await writeFile(join(site, 'v2.gguf'), v2);
  release = await writeGgufRelease(join(site, 'llm'), [v1, v2], { modelId: 'stories260K' });
  await prepareWllamaSite(site);
  server = await serveRelease(site);
  browser = await chromium.launch({ executablePath: (chromiumPath as { path: string }).path, headless: true, args: CHROMIUM_ARGS });
  // One context: the applier's page and wllama's share the origin's OPFS.
  context = await browser.newContext();
  page = await context.newPage();
  await page.goto(`${server.url}index.html`);
  await page.waitForSelector('body[data-state="ready"]', { state: 'attached' });
});

after(async () => {
  await browser?.close();
  await server?.close();
  if (site) await rm(site, { recursive: true, force: true });
});

/** One request in a new worker; `killOn`: terminate it at that event. */
const run = (request: Record<string, unknown>, killOn?: string): Promise<Outcome> => page.evaluate(([r, k]) => (window as unknown as { gguf: { run(r: unknown, k?: string): Promise<Outcome> } }).gguf.run(r, k), [request, killOn] as const);

async function value(request: Record<string, unknown>): Promise<unknown> {
  const o = await run(request);
  assert.equal(o.error, undefined, `${request.op}: ${o.error?.message}`);
  return o.value;
}

/** OPFS holding v1 as `model.gguf` and the payloads, nothing else. */
async function fresh(): Promise<void> {
  await value({ op: 'clear' });
  await value({ op: 'put', name: 'model.gguf', url: `${server.url}v1.gguf` });
  await value({ op: 'put', name: 'payload.ndiff', url: `${server.url}payload.ndiff` });
  await value({ op: 'put', name: 'signed.ndiff', url: `${server.url}signed.ndiff` });
}

/** The OPFS model's SHA-256, and the versions' (taken in Node): the file is compared byte for byte by its digest. */
const modelBytes = async () => (await value({ op: 'sha256', name: 'model.gguf' })) as string;
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const same = (a: string, b: Uint8Array) => a === sha256(b);
const files = async () => (await value({ op: 'list' })) as string[];

test('a dedicated worker patches the GGUF file in OPFS in place: v2 byte for byte, the target fingerprint, no copy or journal left; a signed payload verifies; again: already applied', { skip }, async () => {
  await fresh();
  const r = (await value({ op: 'apply', name: 'model.gguf', payload: 'payload.ndiff' })) as { status: string; writtenBytes: number; targetFingerprint: string };
  assert.equal(r.status, 'applied');
  assert.ok(r.writtenBytes > 0 && r.writtenBytes < v1.length, `${r.writtenBytes} bytes written`);
  assert.ok(same(await modelBytes(), v2), 'the OPFS file is v2 byte for byte');
  assert.equal(await value({ op: 'fingerprint', name: 'model.gguf' }), target);
  assert.deepEqual(await files(), ['model.gguf', 'model.gguf.ndiff-model.json', 'payload.ndiff', 'signed.ndiff']);
  assert.equal(((await value({ op: 'apply', name: 'model.gguf', payload: 'payload.ndiff' })) as { status: string }).status, 'already-applied');
  // The sequence was recorded in IndexedDB (the default store): v1 put back is refused the same payload again.
  await value({ op: 'put', name: 'model.gguf', url: `${server.url}v1.gguf` });
  const replayed = await run({ op: 'apply', name: 'model.gguf', payload: 'payload.ndiff' });
  assert.equal(replayed.error?.code, 'ND_FRESHNESS', JSON.stringify(replayed));
  assert.ok(same(await modelBytes(), v1));

  await fresh();
  const signed = (await value({ op: 'apply', name: 'model.gguf', payload: 'signed.ndiff', trustedKeys: [publicKey] })) as { verified: boolean };
  assert.equal(signed.verified, true);
  assert.ok(same(await modelBytes(), v2));
  await fresh();
  const unsigned = await run({ op: 'apply', name: 'model.gguf', payload: 'payload.ndiff', trustedKeys: [publicKey] });
  assert.equal(unsigned.error?.code, 'ND_SIGNATURE');
  assert.ok(same(await modelBytes(), v1), 'refused: the file untouched');
});

test('a worker terminated in the middle of the overwrite: the journal brings v1 back byte for byte, and the apply run again reaches v2', { skip }, async () => {
  await fresh();
  const killed = await run({ op: 'apply', name: 'model.gguf', payload: 'payload.ndiff', holdAtWrite: 3 }, 'held');
  assert.equal(killed.killed, 'held');
  assert.ok((await files()).includes('model.gguf.ndiff-undo'), 'the journal was durable before the overwrite began');
  const report = (await value({ op: 'recover', name: 'model.gguf' })) as { rolledBack: boolean; actions: string[] };
  assert.equal(report.rolledBack, true, JSON.stringify(report));
  assert.ok(same(await modelBytes(), v1), 'v1 byte for byte after the recovery');
  assert.ok(!(await files()).some((f) => f.includes('ndiff-undo')));
  const again = (await value({ op: 'apply', name: 'model.gguf', payload: 'payload.ndiff' })) as { status: string };
  assert.equal(again.status, 'applied');
  assert.ok(same(await modelBytes(), v2));
});

test('a worker terminated in its health check: v2 waits with its journal; refused without a check, confirmed by a passing one, rolled back by a failing one', { skip }, async () => {
  for (const verdict of ['pass', 'fail'] as const) {
    await fresh();
    const killed = await run({ op: 'apply', name: 'model.gguf', payload: 'payload.ndiff', health: 'hang' }, 'in-health-check');
    assert.equal(killed.killed, 'in-health-check');
    assert.ok(same(await modelBytes(), v2), 'the health check ran on v2 in place');
    const refused = await run({ op: 'recover', name: 'model.gguf' });
    assert.equal(refused.error?.code, 'ND_PENDING_UPDATE', JSON.stringify(refused));
    assert.ok(same(await modelBytes(), v2), 'refused: nothing changed');
    await value({ op: 'recover', name: 'model.gguf', health: verdict });
    assert.ok(same(await modelBytes(), verdict === 'pass' ? v2 : v1), `the ${verdict}ing check: ${verdict === 'pass' ? 'v2 confirmed' : 'v1 back'}`);
    assert.ok(!(await files()).some((f) => f.includes('ndiff-undo')), 'no journal or marker left');
  }
});

test('the updater (neural-diff/updater, ggufOpfsTarget) in a worker brings the OPFS file to v2 from a release, in place; a failing health check leaves v1 byte for byte', { skip }, async () => {
  await fresh();
  const request = { op: 'update', name: 'model.gguf', release: `${server.url}llm/`, modelId: 'stories260K', trustedKeys: [release.keys.publicKeyPem] };
  const failed = (await value({ ...request, health: 'fail' })) as { status: string; steps: string[]; fingerprint: string };
  assert.equal(failed.status, 'failed', JSON.stringify(failed));
  assert.deepEqual(failed.steps, ['payload health-check-failed']);
  assert.equal(failed.fingerprint, release.digests[0]);
  assert.ok(same(await modelBytes(), v1), 'the journal brought v1 back');
  const r = (await value({ ...request, health: 'pass' })) as { status: string; steps: string[]; fingerprint: string };
  assert.equal(r.status, 'updated', JSON.stringify(r));
  assert.deepEqual(r.steps, ['payload applied']);
  assert.equal(r.fingerprint, release.digests[1]);
  assert.ok(same(await modelBytes(), v2), 'the OPFS file is v2 byte for byte');
  assert.ok(!(await files()).some((f) => f.includes('ndiff-undo')), 'no journal left');
  assert.ok(!server.log.some((q) => q.path.endsWith(release.manifest.versions[1].files[0].file)), 'the full model was not downloaded');
});

test('on the page\'s main thread (no synchronous access handles) the apply is refused, saying to use a worker, and the file is untouched', { skip }, async () => {
  await fresh();
  const err = await page.evaluate(() => (window as unknown as { gguf: { applyOnMainThread(n: string, p: string): Promise<{ code?: string; message: string } | undefined> } }).gguf.applyOnMainThread('model.gguf', 'payload.ndiff'));
  assert.equal(err?.code, 'ND_USAGE');
  assert.match(err?.message ?? '', /dedicated Web Worker/);
  assert.ok(same(await modelBytes(), v1));
});

const PROMPT = 'The dog';
const N = 32;

/** A whole greedy run of N tokens on one thread, from a file of `bytes`. */
function assertWhole(run: GreedyRun, bytes: number): void {
  assert.equal(run.fileBytes, bytes);
  assert.equal(run.tokens.length, N, JSON.stringify(run));
  assert.equal(run.finish, 'length');
  assert.equal(run.multithread, false);
}

test('wllama loads the file patched in OPFS as it is and generates v2\'s greedy tokens, where v1 generates others from the first token', { skip, timeout: 300_000 }, async () => {
  await fresh();
  await value({ op: 'put', name: 'v2.gguf', url: `${server.url}v2.gguf` });
  const { page: llm, problems } = await openWllamaPage(context, server.url);
  try {
    const old = await wllamaGreedy(llm, { file: 'model.gguf', prompt: PROMPT, n: N });
    const want = await wllamaGreedy(llm, { file: 'v2.gguf', prompt: PROMPT, n: N });
    assertWhole(old, v1.length);
    assertWhole(want, v2.length);
    assert.notEqual(old.tokens[0], want.tokens[0], 'v1 and v2 continue the prompt differently from the first token');
    assert.equal(((await value({ op: 'apply', name: 'model.gguf', payload: 'payload.ndiff' })) as { status: string }).status, 'applied');
    const patched = await wllamaGreedy(llm, { file: 'model.gguf', prompt: PROMPT, n: N });
    assertWhole(patched, v2.length);
    assert.deepEqual(patched.tokens, want.tokens, 'the patched file generates v2\'s tokens');
    assert.deepEqual(problems, [], 'no page error, no request to another origin (the wasm is served with the page)');
  } finally {
    await llm.close();
  }
});
