/**
 * `neural-diff/tfjs` and the persistent sequence stores in a real browser: the page of
 * examples/browser-tfjs, bundled with esbuild together with stock tfjs (as an app bundles it),
 * loads a real pretrained model nobody here wrote (the nsfwjs MobileNetV2 layers-model, uint8
 * shards as published) twice with `tf.loadLayersModel`, applies a payload to the second copy
 * through `tfModelStore` (keyed by manifest names, checked against model.json), and records the
 * sequence in IndexedDB (or localStorage). Checked against Node: the fingerprints the payload
 * promised, the prediction of the folder patched by the same payload and loaded by tfjs in Node,
 * a reload that refuses the same payload as a replay (the record persisted), and a manifest that
 * lacks a weight refused with that weight's name.
 *
 * On every backend tfjs ships for browsers: WebGL (tfjs's default; Chromium's SwiftShader serves
 * it headless), WebGPU (where Chromium offers an adapter), wasm and cpu. The page reports the
 * backend it ran on, so a silent fall-back to cpu fails the test, and the prediction after the
 * apply must be the patched model's, not v1's: a store that patched only a CPU-side copy of a
 * GPU tensor (what WebGL's cached readSync array once led to) fails here.
 *
 * Chromium as test/browser.test.ts finds it (skipped with the reason when there is none).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { build } from 'esbuild';
import * as tf from '@tensorflow/tfjs';
import { chromium, type Browser, type BrowserContext } from 'playwright-core';
import { applyPayload } from '../src/apply/index.ts';
import { getHasher } from '../src/core/hasher.ts';
import { topkDiff } from '../src/topk-diff/encoder.ts';
import { fileSystemIO, openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { findChromium, CHROMIUM_ARGS } from './helpers/chromium.ts';
import { pretrainedModelDir } from './helpers/pretrained.ts';
import { memoryCopy, perturbed } from './helpers/perturb.ts';

const chromiumPath = findChromium();
const skip = 'skip' in chromiumPath ? chromiumPath.skip : false;
const root = path.join(import.meta.dirname, '..');
const example = path.join(root, 'examples', 'browser-tfjs');

let work: string;
let server: Server;
let url: string;
let browser: Browser;
let webgpuAdapter = false;
let expected: { base: string; target: string; prediction: Float32Array; before: Float32Array };
const wasmDist = path.join(root, 'node_modules', '@tensorflow', 'tfjs-backend-wasm', 'dist');

before(async () => {
  if (skip) return;
  work = await mkdtemp(path.join(tmpdir(), 'nd-browser-tfjs-'));
  const modelDir = await pretrainedModelDir('layers');
  // The page's script with tfjs and neural-diff bundled in (resolved from this repo's sources).
  await build({
    entryPoints: [path.join(example, 'main.ts')], bundle: true, platform: 'browser', format: 'esm', target: 'es2022',
    conditions: ['neural-diff-source'], outfile: path.join(work, 'main.js'), logLevel: 'silent',
  });
  // A 2%-perturbed target and a top-k payload between them, made in Node.
  const hasher = await getHasher();
  const base = memoryCopy(await openTfjsModelDir(modelDir));
  const target = perturbed(base, 0.02, 5);
  // A BatchNorm variance moved below zero would make every prediction NaN: those stay as they were.
  for (const t of target.list()) if (/moving_variance/.test(t.name)) target.values(t.name).set(base.values(t.name));
  const built = topkDiff(hasher, base, target, { budgetBytes: 64_000, codec: 'f16', modelId: 'nsfwjs-layers', sequence: 1 });
  await writeFile(path.join(work, 'update.ndiff'), built.bytes);
  // What the page must show: the folder patched by the same payload, loaded by tfjs in Node.
  const patched = path.join(work, 'patched');
  await cp(modelDir, patched, { recursive: true });
  await applyPayload(await openTfjsModelDir(patched), built.bytes);
  await tf.setBackend('cpu');
  const input = tf.linspace(0, 1, 224 * 224 * 3).reshape([1, 224, 224, 3]);
  const predict = async (dir: string) => {
    const model = await tf.loadLayersModel(fileSystemIO(dir));
    const out = (model.predict(input) as tf.Tensor).dataSync() as Float32Array;
    model.dispose();
    return out;
  };
  expected = { base: built.payload.header.baseFingerprint, target: built.payload.header.targetFingerprint, prediction: await predict(patched), before: await predict(modelDir) };

  server = createServer(async (req, res) => {
    const name = new URL(req.url ?? '/', 'http://x').pathname;
    const file = name === '/' ? path.join(example, 'index.html')
      : name === '/main.js' || name === '/update.ndiff' ? path.join(work, name.slice(1))
      : /^\/model\/[\w.-]+$/.test(name) ? path.join(modelDir, name.slice('/model/'.length))
      : /^\/wasm\/[\w.-]+\.wasm$/.test(name) ? path.join(wasmDist, name.slice('/wasm/'.length))
      : undefined;
    if (name === '/probe') {
      res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>probe</title>');
      return;
    }
    const body = file && await readFile(file).catch(() => undefined);
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    const type = file.endsWith('.html') ? 'text/html' : file.endsWith('.js') ? 'text/javascript' : file.endsWith('.json') ? 'application/json' : file.endsWith('.wasm') ? 'application/wasm' : 'application/octet-stream';
    res.writeHead(200, { 'content-type': type, 'cache-control': 'no-store' }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}/`;
  browser = await chromium.launch({ executablePath: (chromiumPath as { path: string }).path, headless: true, args: [...CHROMIUM_ARGS, '--enable-unsafe-webgpu'] });
  const probe = await browser.newPage();
  await probe.goto(url + 'probe'); // any page of the origin: WebGPU needs a secure context, which 127.0.0.1 is
  webgpuAdapter = await probe.evaluate(async () => !!(await (navigator as unknown as { gpu?: { requestAdapter(): Promise<unknown> } }).gpu?.requestAdapter()));
  await probe.close();
});

after(async () => {
  await browser?.close();
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  if (work) await rm(work, { recursive: true, force: true });
});

/** Open the page in `context` and read its report once it is done. */
async function runPage(context: BrowserContext, query = ''): Promise<{ state: string | null; report: Record<string, unknown>; errors: string[] }> {
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(url + query);
  await page.waitForSelector('body[data-state="done"], body[data-state="error"]', { timeout: 120_000 });
  const report = JSON.parse((await page.getAttribute('body', 'data-report')) ?? '{}') as Record<string, unknown>;
  const state = await page.getAttribute('body', 'data-state');
  await page.close();
  return { state, report, errors };
}

/** Largest absolute difference between two predictions. */
const worstDifference = (a: ArrayLike<number>, b: ArrayLike<number>) => Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i])));

// tfjs's default backend is WebGL (the page reports it, and the test requires it), so the default
// run is the WebGL run: a second page asking for 'webgl' by name would compile the same shaders on
// SwiftShader again (about 45 s) to check nothing more. The two sequence stores are each covered:
// IndexedDB here (as quick start 3 keeps it) and on WebGPU and wasm, localStorage on cpu.
const runs: { backend: 'webgpu' | 'wasm' | 'cpu' | undefined; store: 'indexeddb' | 'local' }[] = [
  { backend: undefined, store: 'indexeddb' }, // tfjs's default backend (WebGL), as quick start 3 runs it
  { backend: 'webgpu', store: 'indexeddb' },
  { backend: 'wasm', store: 'indexeddb' },
  { backend: 'cpu', store: 'local' },
];
for (const { backend, store } of runs) {
  const where = backend ?? 'the default backend (WebGL)';
  test(`on ${where}, a live tf.LayersModel loaded twice is patched in the browser and predicts as v2; the sequence persists in ${store === 'local' ? 'localStorage' : 'IndexedDB'}, a reload runs the kept v2, and a page that loads v1 again is told so`, { skip }, async (t) => {
    if (backend === 'webgpu' && !webgpuAdapter) {
      t.skip('this Chromium offers no WebGPU adapter');
      return;
    }
    const context = await browser.newContext();
    try {
      const params = new URLSearchParams();
      if (backend) params.set('backend', backend);
      if (store === 'local') params.set('store', 'local');
      const query = params.size ? `?${params}` : '';
      const { state, report, errors } = await runPage(context, query);
      assert.equal(state, 'done', `${String(report.error)} ${errors.join('; ')}`);
      assert.equal(report.backend, backend ?? 'webgl', 'the page ran on the backend under test, not a fall-back');
      assert.equal(report.renamed, true, 'the second load has renamed runtime variables');
      assert.equal(report.sequenceStore, store === 'local' ? 'KeyValueSequenceStore' : 'IndexedDbSequenceStore');
      assert.equal(report.before, expected.base);
      assert.equal(report.status, 'applied');
      assert.equal(report.sequenceRecorded, true);
      assert.equal(report.after, expected.target);
      assert.equal(report.firstUnchanged, true, 'the other loaded copy is untouched');
      const got = report.prediction as number[];
      const before = report.predictionBefore as number[];
      assert.equal(got.length, expected.prediction.length);
      assert.ok(expected.prediction.every(Number.isFinite), 'the patched model predicts finite values');
      // v1 and v2 predict measurably apart, so "predicts as v2" cannot be met by v1.
      const change = worstDifference(expected.before, expected.prediction);
      assert.ok(worstDifference(before, expected.before) < change / 10, `before the apply the page predicts as v1 (off by ${worstDifference(before, expected.before)}; v1 and v2 differ by ${change})`);
      const worst = worstDifference(got, expected.prediction);
      assert.ok(worst < change / 10, `after the apply the page predicts as the patched folder does in Node (worst difference ${worst}; v1 and v2 differ by ${change}; the page's v1 differs by ${worstDifference(got, expected.before)})`);
      if (backend === 'cpu' || backend === 'wasm') assert.ok(worst < 1e-5, `on ${backend} the prediction equals Node's within 1e-5 (worst ${worst})`);

      assert.equal(report.loadedFrom, 'files');

      // A reload, as quick start 3 does it: the kept updated model is loaded (v2), so the same
      // payload is already applied and the page predicts as v2 from the start.
      const again = await runPage(context, query);
      assert.equal(again.state, 'done', String(again.report.error));
      assert.equal(again.report.loadedFrom, 'indexeddb');
      assert.equal(again.report.before, expected.target);
      assert.equal(again.report.status, 'already-applied');
      assert.ok(worstDifference(again.report.predictionBefore as number[], expected.prediction) < change / 10, 'the reloaded page predicts as v2');

      // An app that loads the published v1 again instead: the recorded sequence survived the
      // reload, so the payload is refused, and the message says what happened on the device.
      if (backend === undefined) {
        const forgot = await runPage(context, `?keep=no${store === 'local' ? '&store=local' : ''}`);
        assert.equal(forgot.state, 'error');
        assert.match(String(forgot.report.error), /^ND_FRESHNESS: payload sequence 1 .* was already applied on this device, yet the model it holds now .* is that payload's base.*the device went back to a model older than the sequence it recorded/);
      }
    } finally {
      await context.close();
    }
  });
}

test('a manifest that lacks a weight the live model holds is refused, naming that weight', { skip }, async () => {
  const context = await browser.newContext();
  try {
    const modelJson = JSON.parse(await readFile(path.join(await pretrainedModelDir('layers'), 'model.json'), 'utf8')) as { weightsManifest: { weights: { name: string; dtype: string }[] }[] };
    const dropped = modelJson.weightsManifest[0].weights[0];
    assert.equal(dropped.dtype, 'float32');
    const { state, report } = await runPage(context, '?manifest=drop');
    assert.equal(state, 'error');
    assert.match(String(report.error), /^ND_MODEL_MISMATCH: the live layers model does not hold the weights of the manifest/);
    assert.ok(String(report.error).includes(`1 weight(s) its manifest does not name: ${JSON.stringify(dropped.name)}`), String(report.error));
  } finally {
    await context.close();
  }
});
