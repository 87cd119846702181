/**
 * Serve the browser example on 127.0.0.1: the page, the applier bundles from dist/browser/, and a demo
 * model + update made here.
 *
 *   node --import tsx examples/browser/serve.ts [--port 8080]
 *
 * builds dist/browser/ (npm run build:apply), writes `model.safetensors` and `update.ndiff` to a temp
 * folder (a synthetic 1M-weight model and a 10%-of-weights top-k update), prints the URL and the
 * fingerprint the page should show after applying.
 */
import { createServer, type Server } from 'node:http';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { getHasher } from '../../src/core/hasher.ts';
import { MemoryWeightStore } from '../../src/core/weight-store.ts';
import { topkDiff } from '../../src/topk-diff/encoder.ts';
import { buildPayload, type PatchSpec } from '../../src/diff/build.ts';
import { seededRandom } from '../../src/core/random.ts';
import { writeSafetensorsFile } from '../../src/io/safetensors/files.ts';
import { buildApplyBundle } from '../../scripts/build-apply.ts';

const here = path.dirname(fileURLToPath(import.meta.url));

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.safetensors': 'application/octet-stream',
  '.ndiff': 'application/octet-stream',
};

/** A running example server. */
export interface ExampleServer {
  /** e.g. `http://127.0.0.1:41234/` */
  url: string;
  close(): Promise<void>;
}

/**
 * Serve the page (`/`, `/main.js`), every file of `distDir` (`/apply.js`, `/safetensors.js`,
 * chunks) and the demo files of `dataDir` (`/model.safetensors`, `/update.ndiff`, ...) on
 * 127.0.0.1 at `port` (0: a free one). Only GET of those flat names; nothing else is reachable.
 */
export async function serveExample(options: { distDir: string; dataDir: string; port?: number }): Promise<ExampleServer> {
  const server: Server = createServer(async (req, res) => {
    const name = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).slice(1) || 'index.html';
    const file =
      name === 'index.html' || name === 'main.js' ? path.join(here, name)
      : /^[\w.-]+\.js$/.test(name) ? path.join(options.distDir, name)
      : /^[\w.-]+\.(safetensors|ndiff)$/.test(name) ? path.join(options.dataDir, name)
      : null;
    if (req.method !== 'GET' || !file) {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * Write a demo `model.safetensors` (`base`) and `update.ndiff` (a top-k payload from `base` to
 * `target` within `budgetBytes`) into `dir`. Returns the fingerprints before and after.
 */
/**
 * The demo's files: `model.safetensors` (the base), `update.ndiff` (a sparse top-k diff to
 * `target` within `budgetBytes`) and `update-hashed.ndiff` (a hashed-bucket update of every
 * tensor, 64 buckets each: `?payload=update-hashed.ndiff` applies it).
 */
export async function writeDemoFiles(dir: string, base: MemoryWeightStore, target: MemoryWeightStore, budgetBytes: number): Promise<{ baseFingerprint: string; targetFingerprint: string; payloadBytes: number; hashedTargetFingerprint: string }> {
  const hasher = await getHasher();
  const built = topkDiff(hasher, base, target, { budgetBytes, codec: 'f16', modelId: 'browser-demo' });
  await writeSafetensorsFile(path.join(dir, 'model.safetensors'), new Map(base.list().filter((t) => t.patchable !== false).map((t) => [t.name, { shape: t.shape, data: base.values(t.name) }])));
  await writeFile(path.join(dir, 'update.ndiff'), built.bytes);
  const r = seededRandom(7);
  const hashed = buildPayload(hasher, base, base.list().filter((t) => t.patchable !== false).map((t, i) => ({ kind: 'hash', name: t.name, seed: 100 + i, signed: i % 2 === 0, buckets: Float32Array.from({ length: 64 }, () => (r() - 0.5) * 0.01), codec: 'f16' }) as PatchSpec), { method: 'hash', modelId: 'browser-demo', sequence: 1 });
  await writeFile(path.join(dir, 'update-hashed.ndiff'), hashed.bytes);
  return { baseFingerprint: built.payload.header.baseFingerprint, targetFingerprint: built.payload.header.targetFingerprint, payloadBytes: built.bytes.length, hashedTargetFingerprint: hashed.payload.header.targetFingerprint };
}

/** A synthetic two-layer model and a target that moves 10% of its weights. */
function syntheticPair(): { base: MemoryWeightStore; target: MemoryWeightStore } {
  let s = 1;
  const rand = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32) - 0.5;
  const shapes: Record<string, number[]> = { 'dense_1/kernel': [1024, 960], 'dense_1/bias': [960], 'dense_2/kernel': [960, 64], 'dense_2/bias': [64] };
  const base: Record<string, { shape: number[]; data: Float32Array }> = {};
  const target: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const [name, shape] of Object.entries(shapes)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const b = Float32Array.from({ length: n }, () => rand() * 0.1);
    const t = Float32Array.from(b, (v) => (rand() < -0.4 ? v + rand() * 0.02 : v));
    base[name] = { shape, data: b };
    target[name] = { shape, data: t };
  }
  return { base: new MemoryWeightStore(base), target: new MemoryWeightStore(target) };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--port');
  const bundle = await buildApplyBundle();
  const dataDir = await mkdtemp(path.join(tmpdir(), 'nd-browser-demo-'));
  const { base, target } = syntheticPair();
  const demo = await writeDemoFiles(dataDir, base, target, 200_000);
  const server = await serveExample({ distDir: path.dirname(bundle.apply.outfile), dataDir, port: i > 0 ? Number(process.argv[i + 1]) : 8080 });
  console.log(`applier bundle: ${bundle.apply.gzipBytes} bytes min+gzip; demo files in ${dataDir} (update: ${demo.payloadBytes} bytes)`);
  console.log(`open ${server.url}  (expected fingerprint after applying: ${demo.targetFingerprint})`);
}
