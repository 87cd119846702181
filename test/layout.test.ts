/**
 * The house rules of `src/` (docs/ARCHITECTURE.md), checked on the code's own imports: what each
 * folder may import, and no import cycles between files (zod keeps the same kind of test).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { builtinModules } from 'node:module';

const root = join(import.meta.dirname, '..');
const builtins = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') && !p.endsWith('.d.ts') ? [p] : [];
  });
}

/** Every import of a file: relative ones resolved to repo paths, packages as written. Type-only imports included. */
function importsOf(file: string): { local: string[]; packages: string[] } {
  const src = readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const local: string[] = [];
  const packages: string[] = [];
  for (const m of src.matchAll(/(?:import|export)\s[^'";]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|^import\s+['"]([^'"]+)['"]/gm)) {
    const spec = m[1] ?? m[2] ?? m[3];
    if (spec.startsWith('.')) local.push(relative(root, resolve(dirname(file), spec)));
    else packages.push(spec);
  }
  return { local, packages };
}

const files = sources(join(root, 'src')).map((f) => relative(root, f));
const graph = new Map(files.map((f) => [f, importsOf(join(root, f))]));

/** Folders whose files must run on a device: no node builtins, no tfjs, nothing of the trainers. */
const pure = ['src/core/', 'src/apply/', 'src/updater/', 'src/io/onnx/store.ts', 'src/io/onnx/proto.ts', 'src/io/onnx/wire.ts', 'src/io/tflite/store.ts', 'src/io/tflite/schema.ts', 'src/io/tflite/flatbuffers.ts', 'src/io/tflite/structure.ts', 'src/io/safetensors/store.ts', 'src/io/npy/npy.ts', 'src/io/tfjs/manifest.ts', ...['types', 'header', 'blocks', 'write', 'model', 'fingerprint', 'store', 'summary', 'payload', 'payload-scan', 'payload-open', 'volume', 'undo-journal', 'in-place-core', 'opfs', 'target-payload'].map((f) => `src/io/gguf/${f}.ts`), 'src/io/durable/pending-update.ts', 'src/io/durable/model-id-record.ts'];

test('device-side files import no node builtin, no tfjs and nothing outside the device side', () => {
  const bad: string[] = [];
  for (const [file, { local, packages }] of graph) {
    if (!pure.some((p) => file.startsWith(p))) continue;
    for (const p of packages) if (builtins.has(p) || p.startsWith('@tensorflow/') || p === 'buffer') bad.push(`${file} imports ${p}`);
    for (const l of local) if (!pure.some((p) => l.startsWith(p))) bad.push(`${file} imports ${l}`);
  }
  assert.deepEqual(bad, []);
});

test('only the trainers, the live-model store and the library calls\' measuring on inputs import tfjs', () => {
  // src/front/measure/ (diff's eval and calibrate) loads tfjs and the trainers at run time only
  // (src/front/measure/lazy.ts); test/package.test.ts bundles the neural-diff entry to prove it pulls in no tfjs.
  const allowed = ['src/engine/', 'src/train/', 'src/method/contract.ts', ...['sparse', 'hash', 'lowrank', 'composite', 'lowbit'].map((m) => `src/${m}-diff/trainer.ts`), 'src/io/tfjs/live-model-store.ts', 'src/front/measure/'];
  const bad = [...graph].filter(([file, { packages }]) => packages.some((p) => p.startsWith('@tensorflow/')) && !allowed.some((a) => file.startsWith(a))).map(([f]) => f);
  assert.deepEqual(bad, []);
});

test('each model format is its own folder: formats do not import each other, and the durable layer imports no format', () => {
  const formats = ['tfjs', 'onnx', 'tflite', 'safetensors', 'npy', 'gguf'];
  const bad: string[] = [];
  for (const [file, { local }] of graph) {
    const m = /^src\/io\/([^/]+)\//.exec(file);
    if (!m) continue;
    for (const l of local) {
      const n = /^src\/io\/([^/]+)\//.exec(l);
      if (!n || n[1] === m[1]) continue;
      if (m[1] === 'durable' || (formats.includes(m[1]) && n[1] !== 'durable')) bad.push(`${file} imports ${l}`);
    }
  }
  assert.deepEqual(bad, []);
});

/** What the training engine (src/engine/) may import: itself, the core and the model formats' readers. */
const engineMayImport = ['src/engine/', 'src/core/', 'src/io/'];

test('the training engine knows nothing of diffs: src/engine/ imports only itself, src/core/ and src/io/', () => {
  const bad: string[] = [];
  for (const [file, { local }] of graph) {
    if (!file.startsWith('src/engine/')) continue;
    for (const l of local) if (!engineMayImport.some((p) => l.startsWith(p))) bad.push(`${file} imports ${l}`);
  }
  assert.ok([...graph.keys()].filter((f) => f.startsWith('src/engine/')).length > 50, 'src/engine/ holds the engine');
  assert.deepEqual(bad, []);
});

test('no import cycles between the files of src/', () => {
  const state = new Map<string, 'open' | 'done'>();
  const cycles: string[] = [];
  const visit = (f: string, stack: string[]) => {
    if (state.get(f) === 'done') return;
    if (state.get(f) === 'open') {
      cycles.push([...stack.slice(stack.indexOf(f)), f].join(' -> '));
      return;
    }
    state.set(f, 'open');
    for (const l of graph.get(f)?.local ?? []) if (graph.has(l)) visit(l, [...stack, f]);
    state.set(f, 'done');
  };
  for (const f of files) visit(f, []);
  assert.ok(files.length > 50, `read only ${files.length} files`);
  assert.deepEqual(cycles, []);
});

/**
 * One folder per method (docs/ARCHITECTURE.md): its post-hoc encoder (encoder.ts) and its trainer
 * parameterization (trainer.ts), where it has them, named by the folder's index.ts. A method
 * without one of them says so in its index.
 */
const methods: Record<string, { encoder: boolean; trainer: boolean }> = {
  'sparse-diff': { encoder: false, trainer: true },
  'hash-diff': { encoder: false, trainer: true },
  'lowrank-diff': { encoder: true, trainer: true },
  'composite-diff': { encoder: false, trainer: true },
  'lowbit-diff': { encoder: true, trainer: true },
  'topk-diff': { encoder: true, trainer: false },
};
const inMethod = (f: string) => Object.keys(methods).some((m) => f.startsWith(`src/${m}/`));

test('each method folder holds its encoder and its parameterization, and its index names both and the patch kind', () => {
  const bad: string[] = [];
  for (const [m, has] of Object.entries(methods)) {
    for (const part of ['encoder', 'trainer'] as const) {
      const file = `src/${m}/${part}.ts`;
      if (graph.has(file) !== has[part]) bad.push(`${file} ${has[part] ? 'is missing' : 'exists: add it to this table'}`);
    }
    const index = `src/${m}/index.ts`;
    if (!graph.has(index)) {
      bad.push(`${index} is missing`);
      continue;
    }
    const text = readFileSync(join(root, index), 'utf8');
    for (const label of ['Post-hoc encoder:', 'Trainer parameterization:']) if (!text.includes(label)) bad.push(`${index} does not say its ${label}`);
    for (const part of ['encoder', 'trainer'] as const) {
      if (has[part] && !graph.get(index)!.local.includes(`src/${m}/${part}.ts`)) bad.push(`${index} does not export from ${part}.ts`);
    }
    if (!/Patch kinds?: `/.test(text)) bad.push(`${index} does not name its patch kind`);
    const trainer = `src/${m}/trainer.ts`;
    if (has.trainer && !(graph.get(trainer)!.local.includes('src/method/contract.ts') && /implements Parameterization\b/.test(readFileSync(join(root, trainer), 'utf8')))) {
      bad.push(`${trainer} does not implement the contract's Parameterization`);
    }
  }
  assert.deepEqual(bad, []);
});

test('the methods import no part of the training loop, and the contract between them imports neither', () => {
  const bad: string[] = [];
  for (const [file, { local }] of graph) {
    const lower = ['src/core/', 'src/diff/', 'src/method/contract.ts'];
    if (inMethod(file)) for (const l of local) if (!lower.some((p) => l.startsWith(p)) && !inMethod(l)) bad.push(`${file} imports ${l}`);
    if (file.startsWith('src/method/')) for (const l of local) if (!['src/core/', 'src/diff/'].some((p) => l.startsWith(p))) bad.push(`${file} imports ${l}`);
  }
  assert.deepEqual(bad, []);
});

test('the shared post-hoc modules of src/diff import no method folder (but the ONNX diff, which chooses between two)', () => {
  const bad = [...graph]
    .filter(([file]) => file.startsWith('src/diff/') && file !== 'src/diff/onnx.ts')
    .flatMap(([file, { local }]) => local.filter(inMethod).map((l) => `${file} imports ${l}`));
  assert.deepEqual(bad, []);
});
