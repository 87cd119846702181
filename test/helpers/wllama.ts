/**
 * wllama (llama.cpp built for WebAssembly, npm `@wllama/wllama`) in a page of headless Chromium,
 * for tests of GGUF models that live in the origin's private file system (OPFS), as a device
 * keeps the model it patches in place. {@link prepareWllamaSite} writes a folder to serve (the
 * page's bundle and wllama's wasm: nothing is fetched from elsewhere at run time);
 * {@link openWllamaPage} opens it; {@link wllamaGreedy} has wllama read a GGUF file from OPFS
 * and generate tokens greedily, and returns their ids (test/browser-gguf-opfs.test.ts puts the
 * files into OPFS and patches them there).
 *
 * wllama runs single-threaded here (one worker, no pthreads: multi-threading needs the page to be
 * cross-origin isolated), on the CPU (no WebGPU), reading the file as a Blob in slices through
 * JSPI (Chromium 137 and later; older browsers would need wllama's compat build from a CDN, which
 * the page turns off).
 */
import { copyFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { build } from 'esbuild';
import type { BrowserContext, Page } from 'playwright-core';
import type { GreedyArgs, GreedyRun } from './wllama-browser-entry.ts';

export type { GreedyArgs, GreedyRun };

/** The page {@link prepareWllamaSite} writes. */
export const WLLAMA_PAGE = 'wllama.html';

/** wllama's wasm in node_modules (its one build: single- or multi-threaded is chosen at run time). */
export function wllamaWasmPath(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('@wllama/wllama/package.json')), 'esm', 'wasm', 'wllama.wasm');
}

/**
 * Write into `dir` what the page needs: `wllama.html`, `wllama-page.js` (the page's code bundled
 * with wllama's ESM build) and `wllama.wasm`. Other files of the folder are left as they are.
 */
export async function prepareWllamaSite(dir: string): Promise<void> {
  const bundle = await build({ entryPoints: [join(import.meta.dirname, 'wllama-browser-entry.ts')], bundle: true, platform: 'browser', format: 'esm', target: 'es2022', write: false, logLevel: 'silent' });
  await writeFile(join(dir, 'wllama-page.js'), bundle.outputFiles[0].contents);
  await copyFile(wllamaWasmPath(), join(dir, 'wllama.wasm'));
  await writeFile(join(dir, WLLAMA_PAGE), '<!doctype html><body><script type="module">import * as page from "./wllama-page.js"; window.wllamaPage = page; document.body.dataset.state = "ready";</script></body>');
}

/**
 * A new page of `context` on `siteUrl` (the served folder, ending with `/`), ready to run. Errors
 * the page throws and requests to any other origin are collected in `problems` (the test asserts
 * it stays empty: nothing is downloaded from a CDN).
 */
export async function openWllamaPage(context: BrowserContext, siteUrl: string): Promise<{ page: Page; problems: string[] }> {
  const page = await context.newPage();
  const problems: string[] = [];
  const origin = new URL(siteUrl).origin;
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('request', (r) => {
    const url = r.url();
    if (!url.startsWith(origin) && !url.startsWith('blob:') && !url.startsWith('data:')) problems.push(`request to another origin: ${url}`);
  });
  await page.goto(`${siteUrl}${WLLAMA_PAGE}`);
  await page.waitForSelector('body[data-state="ready"]', { state: 'attached' });
  return { page, problems };
}

/**
 * In the page: wllama loads the GGUF file `args.file` from OPFS and generates `args.n` tokens
 * greedily from the text `args.prompt` (BOS first; wllama 3 takes no prompt of token ids, see
 * {@link GreedyArgs}), on one thread with a context of `args.nCtx` (256). The model is unloaded
 * after (wllama keeps no hold on the file), so the file may be patched and run again. wllama reads
 * the File in slices while the model loads, and in Chromium a File taken from OPFS reads the
 * bytes as they are at the read, not a snapshot: a change made during a load would give a model
 * of both versions' bytes. See test/helpers/wllama-browser-entry.ts `greedy`.
 */
export async function wllamaGreedy(page: Page, args: GreedyArgs): Promise<GreedyRun> {
  return (await page.evaluate(`window.wllamaPage.greedy(${JSON.stringify(args)})`)) as GreedyRun;
}
