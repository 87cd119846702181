/**
 * docs/guides/litert.md's browser snippet, as written, in headless Chromium with LiteRT.js
 * (`@litertjs/core`, its WebAssembly served from `node_modules/@litertjs/core/wasm/` as the guide
 * says): a dense layer built here, patched in memory by a signed exact payload, compiled and run
 * by LiteRT.js with v2's outputs. Only the names the snippet leaves to the app (`modelBytes`,
 * `payloadBytes`, `releaseKey`) are defined around it. Chromium as test/browser.test.ts finds it
 * (skipped with the reason when there is none).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { build } from 'esbuild';
import { chromium } from 'playwright-core';
import { diffOnnxModels } from '../src/diff/onnx.ts';
import { getHasher } from '../src/core/hasher.ts';
import { TfliteWeightStore } from '../src/io/tflite/store.ts';
import { signPayload } from '../src/sign/node-keys.ts';
import { buildTflite, f32Bytes, T } from './helpers/tflite-build.ts';
import { findChromium, CHROMIUM_ARGS } from './helpers/chromium.ts';

const chromiumPath = findChromium();
const root = path.join(import.meta.dirname, '..');

/** One dense layer, y = relu(x W^T + b): FULLY_CONNECTED with a fused RELU. */
function dense(w: number[], b: number[]): Uint8Array {
  return buildTflite({
    tensors: [
      { name: 'x', shape: [1, 3], type: T.FLOAT32 },
      { name: 'dense/kernel', shape: [2, 3], type: T.FLOAT32, buffer: 1 },
      { name: 'dense/bias', shape: [2], type: T.FLOAT32, buffer: 2 },
      { name: 'y', shape: [1, 2], type: T.FLOAT32 },
    ],
    buffers: [f32Bytes(w), f32Bytes(b)],
    operators: [{ op: 9, inputs: [0, 1, 2], outputs: [3], options: { type: 8, fields: [{ u8: 1 }] } }],
    inputs: [0],
    outputs: [3],
  });
}

test('litert.md\'s browser snippet runs as written in Chromium: LiteRT.js loaded, the model patched and run with v2\'s outputs', { skip: 'skip' in chromiumPath ? chromiumPath.skip : false, timeout: 180_000 }, async () => {
  const guide = await readFile(path.join(root, 'docs', 'guides', 'litert.md'), 'utf8');
  const snippet = [...guide.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]).find((code) => code.startsWith('// app.js: in a browser'));
  assert.ok(snippet, 'litert.md has a browser snippet starting `// app.js: in a browser`');
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-litert-browser-'));
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const v1 = dense([1, 2, 3, 4, 5, 6], [0.5, -0.5]);
  const v2 = dense([1, -2, 3, 4, 0.25, 6], [0.5, -20]);
  const payload = diffOnnxModels(await getHasher(), new TfliteWeightStore(v1.slice()), new TfliteWeightStore(v2.slice()), { mode: 'all', budgetBytes: 0, modelId: 'dense', sequence: 2 }).bytes;
  const files: Record<string, Uint8Array | string> = {
    '/model.tflite': v1,
    '/update.ndiff': signPayload(payload, privateKey),
    '/index.html': '<!doctype html><body><script type="module" src="/page.js"></script>',
  };
  // The snippet, with what it leaves to the app defined before it and its model run after it.
  // Its imports stay at the top of the module; the rest runs inside the page's try.
  const imports = snippet.split('\n').filter((l) => l.startsWith('import '));
  const body = snippet.split('\n').filter((l) => !l.startsWith('import ')).join('\n');
  const page = [
    ...imports,
    "const modelBytes = new Uint8Array(await (await fetch('/model.tflite')).arrayBuffer());",
    "const payloadBytes = new Uint8Array(await (await fetch('/update.ndiff')).arrayBuffer());",
    `const releaseKey = ${JSON.stringify(publicKey.export({ type: 'spki', format: 'pem' }))};`,
    'try {',
    body,
    "  const { Tensor } = await import('@litertjs/core');",
    '  const [y] = await model.run([new Tensor(Float32Array.from([1, 1, 1]), [1, 3])]);',
    "  document.body.dataset.result = JSON.stringify(Array.from(y.toTypedArray()));",
    "  document.body.dataset.state = 'done';",
    '} catch (e) {',
    "  document.body.dataset.result = String(e && e.message || e);",
    "  document.body.dataset.state = 'error';",
    '}',
  ].join('\n');
  // A project as an app has it: neural-diff and LiteRT.js in node_modules.
  await mkdir(path.join(dir, 'node_modules', '@litertjs'), { recursive: true });
  await symlink(root, path.join(dir, 'node_modules', 'neural-diff'), 'dir');
  await symlink(path.join(root, 'node_modules', '@litertjs', 'core'), path.join(dir, 'node_modules', '@litertjs', 'core'), 'dir');
  await writeFile(path.join(dir, 'page.js'), page);
  const bundled = await build({ entryPoints: [path.join(dir, 'page.js')], bundle: true, platform: 'browser', format: 'esm', target: 'es2022', conditions: ['neural-diff-source'], write: false, logLevel: 'silent' });
  files['/page.js'] = bundled.outputFiles[0].contents;
  const wasm = path.join(root, 'node_modules', '@litertjs', 'core', 'wasm');
  const server = createServer(async (req, res) => {
    const name = new URL(req.url ?? '/', 'http://x').pathname;
    const body = name === '/' ? files['/index.html'] : files[name] ?? (/^\/litert-wasm\/[\w.-]+$/.test(name) ? await readFile(path.join(wasm, name.slice('/litert-wasm/'.length))).catch(() => undefined) : undefined);
    if (body === undefined) {
      res.writeHead(404).end();
      return;
    }
    const type = name === '/' ? 'text/html' : name.endsWith('.js') ? 'text/javascript' : name.endsWith('.wasm') ? 'application/wasm' : 'application/octet-stream';
    res.writeHead(200, { 'content-type': type, 'cache-control': 'no-store' }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const browser = await chromium.launch({ executablePath: (chromiumPath as { path: string }).path, headless: true, args: CHROMIUM_ARGS });
  try {
    const tab = await browser.newPage();
    const log: string[] = [];
    tab.on('pageerror', (e) => log.push(`pageerror: ${e.message}`));
    tab.on('console', (m) => log.push(`console.${m.type()}: ${m.text()}`));
    await tab.goto(`http://127.0.0.1:${(server.address() as { port: number }).port}/`);
    await tab.waitForSelector('body[data-state]', { state: 'attached', timeout: 120_000 }).catch((e: Error) => assert.fail(`${e.message.split('\n')[0]}\n${log.join('\n')}`));
    const [state, result] = [await tab.getAttribute('body', 'data-state'), await tab.getAttribute('body', 'data-result')];
    assert.equal(state, 'done', `the page failed: ${result}`);
    assert.deepEqual(JSON.parse(result as string), [2.5, 0], 'v2\'s outputs: relu(1 - 2 + 3 + 0.5), relu(4 + 0.25 + 6 - 20)');
  } finally {
    await browser.close();
    await new Promise((resolve) => server.close(resolve));
    await rm(dir, { recursive: true, force: true });
  }
});
