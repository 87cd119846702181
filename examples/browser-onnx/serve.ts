/**
 * Serve the ONNX browser example on 127.0.0.1: the page, `onnx-apply.js` (npm run build:apply),
 * onnxruntime-web's WebAssembly build from node_modules, and the demo files: Silero VAD v5 from
 * the @ricky0123/vad-web package as `model.onnx` and the payload that takes it to v6.
 *
 *   node --import tsx examples/browser-onnx/serve.ts [--port 8080]
 */
import { createServer, type Server } from 'node:http';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { getHasher } from '../../src/core/hasher.ts';
import { diffOnnxModels } from '../../src/diff/onnx.ts';
import { OnnxWeightStore } from '../../src/io/onnx/store.ts';
import { buildApplyBundle } from '../../scripts/build-apply.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..', '..');
const ORT_DIR = path.join(root, 'node_modules', 'onnxruntime-web', 'dist');
/** The only onnxruntime-web files the page needs (the single-threaded WebAssembly build). */
const ORT_FILES = new Set(['ort.wasm.min.mjs', 'ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm']);
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
};

export interface OnnxExampleServer {
  url: string;
  close(): Promise<void>;
}

/** Serve the page, `distDir/onnx-apply.js`, the onnxruntime-web files and `dataDir/*.onnx|*.ndiff` (GET of flat names only). */
export async function serveOnnxExample(options: { distDir: string; dataDir: string; port?: number }): Promise<OnnxExampleServer> {
  const server: Server = createServer(async (req, res) => {
    const name = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).slice(1) || 'index.html';
    const file =
      name === 'index.html' || name === 'main.js' ? path.join(here, name)
      : name === 'onnx-apply.js' ? path.join(options.distDir, name)
      : ORT_FILES.has(name) ? path.join(ORT_DIR, name)
      : /^[\w.-]+\.(onnx|ndiff)$/.test(name) ? path.join(options.dataDir, name)
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
  return { url: `http://127.0.0.1:${port}/`, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/**
 * Write `model.onnx` (Silero VAD v5) and `update.ndiff` (every change to v6) into `dir`.
 * Returns the fingerprints the page should show.
 */
export async function writeOnnxDemoFiles(dir: string): Promise<{ baseFingerprint: string; targetFingerprint: string; payloadBytes: number }> {
  const vad = path.join(root, 'node_modules', '@ricky0123', 'vad-web', 'dist');
  const [v5, v6] = await Promise.all([readFile(path.join(vad, 'silero_vad_v5.onnx')), readFile(path.join(vad, 'silero_vad_v6.onnx'))]);
  const built = diffOnnxModels(await getHasher(), new OnnxWeightStore(new Uint8Array(v5)), new OnnxWeightStore(new Uint8Array(v6)), { mode: 'all', budgetBytes: 0, modelId: 'silero-vad', sequence: 6 });
  await writeFile(path.join(dir, 'model.onnx'), v5);
  await writeFile(path.join(dir, 'update.ndiff'), built.bytes);
  return { baseFingerprint: built.payload.header.baseFingerprint, targetFingerprint: built.payload.header.targetFingerprint, payloadBytes: built.bytes.length };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--port');
  const bundle = await buildApplyBundle();
  const dataDir = await mkdtemp(path.join(tmpdir(), 'nd-browser-onnx-'));
  const demo = await writeOnnxDemoFiles(dataDir);
  const server = await serveOnnxExample({ distDir: path.dirname(bundle.onnxWithApply.outfile), dataDir, port: i > 0 ? Number(process.argv[i + 1]) : 8080 });
  console.log(`ONNX store + applier: ${bundle.onnxWithApply.gzipBytes} bytes min+gzip; update: ${demo.payloadBytes} bytes`);
  console.log(`open ${server.url}  (expected fingerprint after applying: ${demo.targetFingerprint})`);
}
