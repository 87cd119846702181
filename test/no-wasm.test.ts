/**
 * The applier where WebAssembly does not exist (React Native's Hermes, locked-down webviews):
 * the device entry is bundled with esbuild and run by plain Node after a preload that deletes the
 * global `WebAssembly` (so it is undefined from the runner's first line, on every Node release:
 * Node 24 dropped the `--no-expose-wasm` flag this used; tsx is not loaded in the child, since it
 * needs WebAssembly itself). The child patches a real pretrained model (nsfwjs MobileNetV2 as a
 * safetensors file) with a payload mixing sparse, hashed and composite (low-rank + sparse,
 * format v5) patches and prints what it saw.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { getHasher } from '../src/core/hasher.ts';
import { buildPayload, type PatchSpec } from '../src/diff/build.ts';
import { openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { writeSafetensorsFile } from '../src/io/safetensors/files.ts';
import { pretrainedModelDir } from './helpers/pretrained.ts';
import { weightsCopy } from './helpers/perturb.ts';
import { rng } from './helpers/models.ts';

const root = path.join(import.meta.dirname, '..');
let work: string;
before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'nd-no-wasm-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const RUNNER = `
// argv[5] 'no-text': also no TextEncoder / TextDecoder (Hermes before React Native 0.74).
if (process.argv[5] === 'no-text') { delete globalThis.TextEncoder; delete globalThis.TextDecoder; }
const textAtStart = typeof TextEncoder + '/' + typeof TextDecoder;
const wasmAtStart = typeof WebAssembly;
const { readFileSync } = await import('node:fs');
const nd = await import(process.argv[2]);
const store = new nd.SafetensorsWeightStore(new Uint8Array(readFileSync(process.argv[3])), 'model');
const hasher = await nd.getHasher();
const before = nd.fingerprintStore(hasher, store).fingerprint;
const result = await nd.applyPayload(store, new Uint8Array(readFileSync(process.argv[4])));
const after = nd.fingerprintStore(hasher, store).fingerprint;
let refused = '';
try { await nd.applyPayload(store, new Uint8Array(readFileSync(process.argv[4])).subarray(0, 100)); } catch (e) { refused = e.code; }
console.log(JSON.stringify({ wasmAtStart, textAtStart, kind: hasher.kind, before, after, status: result.status, refused }));
`;

test('with WebAssembly absent (and TextEncoder / TextDecoder too) the bundled applier hashes in pure TypeScript and reaches the target', async () => {
  const bundle = path.join(work, 'device.mjs');
  await build({
    stdin: {
      contents: `export * from './src/apply/index.ts'; export { SafetensorsWeightStore } from './src/io/safetensors/store.ts';`,
      resolveDir: root,
      loader: 'ts',
    },
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    mainFields: ['module', 'main'],
    conditions: ['browser'],
    outfile: bundle,
    logLevel: 'silent',
  });
  const base = weightsCopy(await openTfjsModelDir(await pretrainedModelDir('layers')));
  const modelFile = path.join(work, 'model.safetensors');
  await writeSafetensorsFile(modelFile, new Map(base.list().map((t) => [t.name, { shape: t.shape, data: base.values(t.name) }])));
  const r = rng(8);
  const names = base.list().map((t) => t.name).filter((n) => n.endsWith('/kernel') || n.endsWith('/depthwise_kernel'));
  const specs: PatchSpec[] = names.slice(0, 12).map((name, i) => {
    const n = base.values(name).length;
    if (i % 3 === 1) return { kind: 'hash', name, seed: 1000 + i, signed: true, buckets: Float32Array.from({ length: 64 }, () => (r() - 0.5) * 1e-3), codec: 'f16' };
    const positions = Uint32Array.from(new Set(Array.from({ length: Math.min(200, n) }, () => Math.floor(r() * n)))).sort();
    if (i % 3 === 2) {
      const shape = base.list().find((t) => t.name === name)!.shape;
      const cols = shape[shape.length - 1];
      const rows = n / cols;
      const rank = Math.min(2, rows, cols);
      const small = (k: number) => Float32Array.from({ length: k }, () => (r() - 0.5) * 0.03);
      return { kind: 'composite', name, rank, u: small(rows * rank), v: small(rank * cols), positions, values: Float32Array.from(positions, () => (r() - 0.5) * 1e-2), codec: 'f16', sparseCodec: 'i8' };
    }
    return { kind: 'sparse', name, positions, values: Float32Array.from(positions, () => (r() - 0.5) * 1e-2), codec: 'i8' };
  });
  const built = buildPayload(await getHasher(), base, specs, { method: 'hash', modelId: 'no-wasm' });
  assert.equal(built.payload.header.version, 5);
  assert.deepEqual([...new Set(built.payload.patches.map((p) => p.kind))].sort(), ['composite', 'hash', 'sparse']);
  const payloadFile = path.join(work, 'update.ndiff');
  await writeFile(payloadFile, built.bytes);
  await writeFile(path.join(work, 'runner.mjs'), RUNNER);
  await writeFile(path.join(work, 'no-wasm.mjs'), 'delete globalThis.WebAssembly;\n');

  // As Hermes in React Native 0.85+ (no WebAssembly), and before 0.74 (no TextEncoder / TextDecoder either).
  for (const variant of ['text', 'no-text']) {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', pathToFileURL(path.join(work, 'no-wasm.mjs')).href, path.join(work, 'runner.mjs'), bundle, modelFile, payloadFile, variant], { env: { ...process.env, NODE_OPTIONS: '' } });
    const seen = JSON.parse(stdout.trim().split('\n').pop() as string);
    assert.deepEqual(seen, {
      wasmAtStart: 'undefined',
      textAtStart: variant === 'text' ? 'function/function' : 'undefined/undefined',
      kind: 'pure',
      before: built.payload.header.baseFingerprint,
      after: built.payload.header.targetFingerprint,
      status: 'applied',
      refused: 'ND_PAYLOAD_FORMAT',
    }, variant);
  }
});

test('neural-diff/apply and neural-diff/safetensors resolve through the package exports (self-reference)', async () => {
  const apply = await import('neural-diff/apply');
  const safetensors = await import('neural-diff/safetensors');
  const { applyPayload } = await import('../src/apply/index.ts');
  assert.equal(apply.applyPayload, applyPayload, 'the same module as the source entry');
  assert.equal(typeof safetensors.SafetensorsWeightStore, 'function');
});
