/**
 * The ONNX browser proof, in headless Chromium (as test/browser.test.ts does): the page loads
 * Silero VAD v5 with onnxruntime-web, applies the v5 -> v6 payload with `neural-diff/onnx`,
 * creates a new session from the patched bytes and shows its output; the test checks the
 * fingerprint against the payload's target and the output against v6 run in Node.
 */
import { checkDocumentedFigures } from './helpers/doc-figures.ts';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-web';
import { chromium, type Browser } from 'playwright-core';
import { buildApplyBundle } from '../scripts/build-apply.ts';
import { serveOnnxExample, writeOnnxDemoFiles, type OnnxExampleServer } from '../examples/browser-onnx/serve.ts';
import { findChromium, CHROMIUM_ARGS } from './helpers/chromium.ts';

const chromiumPath = findChromium();
const skip = 'skip' in chromiumPath ? chromiumPath.skip : false;
const VAD = 'node_modules/@ricky0123/vad-web/dist';

let work: string;
let server: OnnxExampleServer;
let browser: Browser;
let expected: { baseFingerprint: string; targetFingerprint: string };
let gzipBytes: number;

/** The page's test frame (examples/browser-onnx/main.js), run in Node on a model file. */
async function speechProbability(file: string): Promise<number> {
  ort.env.wasm.numThreads = 1;
  ort.env.logLevel = 'error';
  const x = new Float32Array(64 + 512);
  let seed = 1;
  for (let i = 0; i < x.length; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    x[i] = 0.4 * Math.sin((2 * Math.PI * (200 + 3 * i) * i) / 16000) + 0.01 * (seed / 2 ** 32 - 0.5);
  }
  const s = await ort.InferenceSession.create(new Uint8Array(await readFile(file)));
  const out = await s.run({ input: new ort.Tensor('float32', x, [1, x.length]), state: new ort.Tensor('float32', new Float32Array(256), [2, 1, 128]), sr: new ort.Tensor('int64', BigInt64Array.from([16000n]), []) });
  await s.release();
  return (out.output.data as Float32Array)[0];
}

before(async () => {
  if (skip) return;
  work = await mkdtemp(path.join(tmpdir(), 'nd-browser-onnx-'));
  const dist = path.join(work, 'dist');
  gzipBytes = (await buildApplyBundle(dist)).onnxWithApply.gzipBytes;
  expected = await writeOnnxDemoFiles(work);
  server = await serveOnnxExample({ distDir: dist, dataDir: work });
  browser = await chromium.launch({ executablePath: (chromiumPath as { path: string }).path, headless: true, args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  await server?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

test('the ONNX store with the applier stays within 40 KB min+gzip', { skip }, (t) => {
  t.diagnostic(`neural-diff/onnx + neural-diff/apply: ${gzipBytes} bytes min+gzip`);
  assert.ok(gzipBytes <= 40_000, `${gzipBytes} bytes`);
  checkDocumentedFigures('`dist/onnx-apply.js` (`neural-diff/onnx` with the applier)', [gzipBytes, 40_000], `${gzipBytes.toLocaleString('en-US')} bytes min+gzip`);
});

test('the page patches Silero VAD v5 to v6 with neural-diff/onnx and runs the patched bytes in onnxruntime-web', { skip, timeout: 120_000 }, async () => {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(server.url);
    await page.waitForSelector('body[data-state="done"], body[data-state="error"]', { timeout: 90_000 });
    const shown: Record<string, string> = {};
    for (const id of ['status', 'before', 'after', 'output-before', 'output-after']) shown[id] = ((await page.textContent(`#${id}`)) ?? '').trim();
    assert.equal(await page.getAttribute('body', 'data-state'), 'done', `${shown.status} ${errors.join('; ')}`);
    assert.equal(shown.before, expected.baseFingerprint);
    assert.equal(shown.after, expected.targetFingerprint);
    assert.match(shown.status, /^applied: update 6 .* patched 28 tensors$/);
    const [v5, v6] = [await speechProbability(`${VAD}/silero_vad_v5.onnx`), await speechProbability(`${VAD}/silero_vad_v6.onnx`)];
    assert.ok(Math.abs(v5 - v6) > 1e-3, `the test frame tells v5 (${v5}) from v6 (${v6})`);
    assert.ok(Math.abs(Number(shown['output-before']) - v5) < 1e-5, `before: page ${shown['output-before']}, v5 in Node ${v5}`);
    assert.ok(Math.abs(Number(shown['output-after']) - v6) < 1e-5, `after: page ${shown['output-after']}, v6 in Node ${v6}`);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});
