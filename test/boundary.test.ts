/**
 * The device applier must stay small and import neither tfjs nor node-only modules. This test
 * bundles `src/apply/index.ts` for the browser with esbuild and fails if anything it reaches is
 * tfjs or a node builtin, and walks our own import graph from src/apply for the same.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { build } from 'esbuild';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { builtinModules } from 'node:module';
import { gzipSync } from 'node:zlib';

const root = join(import.meta.dirname, '..');

test('src/apply bundles for the browser without tfjs or node modules', async () => {
  const result = await build({
    entryPoints: [join(root, 'src/apply/index.ts')],
    bundle: true,
    platform: 'browser',
    format: 'esm',
    minify: true,
    write: false,
    metafile: true,
    logLevel: 'silent',
  });
  const inputs = Object.keys(result.metafile.inputs);
  const forbidden = inputs.filter((p) => /@tensorflow|node_modules\/(fs|path|os|crypto)\b/.test(p) || p.startsWith('node:'));
  assert.deepEqual(forbidden, [], `the applier bundle reaches: ${forbidden.join(', ')}`);
  assert.ok(inputs.some((p) => p.includes('src/apply/apply.ts')));
  const size = gzipSync(result.outputFiles[0].contents).length;
  assert.ok(size > 1000, 'bundle suspiciously small');
});

test('nothing src/apply imports (transitively, in our sources) names tfjs or a node builtin', () => {
  const builtins = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);
  const seen = new Set<string>();
  const bad: string[] = [];
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const src = readFileSync(file, 'utf8');
    for (const m of src.matchAll(/(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)) {
      const spec = m[1] ?? m[2];
      if (spec.startsWith('.')) visit(resolve(dirname(file), spec));
      else if (builtins.has(spec) || spec.startsWith('@tensorflow/') || spec === 'buffer') bad.push(`${file.slice(root.length + 1)} imports ${spec}`);
    }
  };
  visit(join(root, 'src/apply/index.ts'));
  assert.ok(seen.size >= 8, `walked only ${seen.size} files`);
  assert.deepEqual(bad, []);
});

test('neural-diff/rebuild (src/apply/rebuild.ts) bundles for the browser with nothing but our sources (the pure Ed25519 verifier included), and carries neither store parser nor an encoder', async () => {
  const result = await build({ entryPoints: [join(root, 'src/apply/rebuild.ts')], bundle: true, platform: 'browser', format: 'esm', minify: true, write: false, metafile: true, logLevel: 'silent' });
  const inputs = Object.keys(result.metafile.inputs);
  const forbidden = inputs.filter((p) => /@tensorflow|node_modules\/|src\/io\/|src\/diff\/|msgpackr/.test(p) || p.startsWith('node:'));
  assert.deepEqual(forbidden, [], `the rebuild entry reaches: ${forbidden.join(', ')}`);
  assert.ok(inputs.some((p) => p.includes('src/core/byte-delta.ts')) && inputs.some((p) => p.includes('src/apply/apply.ts')));
  // the byte delta decoder (src/core/byte-delta.ts) is device code too: only our core
  const src = readFileSync(join(root, 'src/core/byte-delta.ts'), 'utf8');
  assert.deepEqual([...src.matchAll(/from\s+['"]([^'"]+)['"]/g)].map((m) => m[1]).sort(), ['./errors.ts']);
});

test('neural-diff/apply does not reach the rebuild entry or the byte delta: a device that never rebuilds does not carry them', async () => {
  const result = await build({ entryPoints: [join(root, 'src/apply/index.ts')], bundle: true, platform: 'browser', format: 'esm', write: false, metafile: true, logLevel: 'silent' });
  const inputs = Object.keys(result.metafile.inputs);
  assert.deepEqual(inputs.filter((p) => /rebuild|byte-delta/.test(p)), []);
});

test('neural-diff/onnx (src/io/onnx/store.ts) bundles for the browser without tfjs, node modules or protobuf libraries', async () => {
  const result = await build({ entryPoints: [join(root, 'src/io/onnx/store.ts')], bundle: true, platform: 'browser', format: 'esm', write: false, metafile: true, logLevel: 'silent' });
  const inputs = Object.keys(result.metafile.inputs);
  const forbidden = inputs.filter((p) => /@tensorflow|protobuf|node_modules\//.test(p) || p.startsWith('node:'));
  assert.deepEqual(forbidden, [], `the ONNX store reaches: ${forbidden.join(', ')}`);
  assert.ok(inputs.some((p) => p.includes('src/io/onnx/proto.ts')));
});

test('the TF.js frame (src/io/tfjs/frame.ts) and the diff\'s JSON difference bundle for the browser with nothing but our sources: a device computes the same frame', async () => {
  for (const entry of ['src/io/tfjs/frame.ts', 'src/diff/json-difference.ts']) {
    const result = await build({ entryPoints: [join(root, entry)], bundle: true, platform: 'browser', format: 'esm', write: false, metafile: true, logLevel: 'silent' });
    const inputs = Object.keys(result.metafile.inputs);
    const forbidden = inputs.filter((p) => /@tensorflow|node_modules\//.test(p) || p.startsWith('node:'));
    assert.deepEqual(forbidden, [], `${entry} reaches: ${forbidden.join(', ')}`);
  }
});

test('the graph programs (src/engine/onnx, src/engine/tflite, src/engine/program, src/engine/tfjs-graph, and their trainers in src/train) import only tfjs and our own sources, never a node builtin themselves: the executors and adapters carry nothing of Node into a browser build', () => {
  const files: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else if (e.name.endsWith('.ts')) files.push(join(d, e.name));
    }
  };
  for (const dir of ['src/engine/onnx', 'src/engine/tflite', 'src/engine/program', 'src/engine/tfjs-graph', 'src/train/onnx', 'src/train/tflite', 'src/train/program', 'src/train/tfjs-graph']) walk(join(root, dir));
  assert.ok(files.length >= 20, `${files.length} files`);
  const bad: string[] = [];
  for (const file of files) {
    for (const m of readFileSync(file, 'utf8').matchAll(/(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]/g)) {
      const spec = m[1];
      if (!spec.startsWith('.') && spec !== '@tensorflow/tfjs') bad.push(`${file.slice(root.length + 1)} imports ${spec}`);
    }
  }
  assert.deepEqual(bad, []);
});

test('neural-diff/updater (src/updater) bundles for the browser without tfjs or node modules, and imports none in our sources', async () => {
  const result = await build({ entryPoints: [join(root, 'src/updater/index.ts')], bundle: true, platform: 'browser', format: 'esm', minify: true, write: false, metafile: true, logLevel: 'silent' });
  const inputs = Object.keys(result.metafile.inputs);
  const forbidden = inputs.filter((p) => /@tensorflow|node_modules\/(fs|path|os|crypto)\b/.test(p) || p.startsWith('node:'));
  assert.deepEqual(forbidden, [], `the updater bundle reaches: ${forbidden.join(', ')}`);
  assert.ok(inputs.some((p) => p.includes('src/updater/updater.ts')));
  assert.ok(inputs.some((p) => p.includes('src/apply/apply.ts')), 'the updater applies through the device applier');
  const builtins = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);
  const bad: string[] = [];
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const m of readFileSync(file, 'utf8').matchAll(/(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)) {
      const spec = m[1] ?? m[2];
      if (spec.startsWith('.')) visit(resolve(dirname(file), spec));
      else if (builtins.has(spec) || spec.startsWith('@tensorflow/') || spec === 'buffer') bad.push(`${file.slice(root.length + 1)} imports ${spec}`);
    }
  };
  visit(join(root, 'src/updater/index.ts'));
  assert.ok([...seen].some((f) => f.endsWith('src/updater/trust.ts')));
  assert.deepEqual(bad, []);
});

test('neural-diff/tfjs (src/tfjs.ts) bundles for a browser and for React Native with tfjs as the app\'s own dependency, and reaches no node module', async () => {
  // As an app bundles it: its own tfjs included, beside the applier and the persistent sequence stores.
  const app = "export { tfModelStore } from './src/tfjs.ts'; export { applyPayload } from './src/apply/index.ts'; export { browserSequenceStore, KeyValueSequenceStore } from './src/apply/sequence-stores.ts';";
  // React Native as Metro resolves: the `react-native` condition and field first, then `browser`
  // (whose `"fs": false` maps keep tfjs's own Node branches out, as in a browser).
  for (const conditions of [[], ['react-native']]) {
    const result = await build({ stdin: { contents: app, resolveDir: root, loader: 'ts' }, bundle: true, platform: 'browser', mainFields: [...conditions, 'browser', 'module', 'main'], conditions, format: 'esm', write: false, metafile: true, logLevel: 'silent' });
    const inputs = Object.keys(result.metafile.inputs);
    const forbidden = inputs.filter((p) => p.startsWith('node:') || /(^|\/)src\/(train|io\/(durable|npy|onnx|safetensors))\//.test(p) || /src\/io\/tfjs\/(?!live-model-store|frame\.ts|manifest\.ts)/.test(p));
    assert.deepEqual(forbidden, [], `neural-diff/tfjs (${conditions.join(',') || 'browser'}) reaches: ${forbidden.join(', ')}`);
    assert.ok(inputs.some((p) => p.includes('@tensorflow/tfjs-core')), 'the app\'s tfjs is bundled in');
    assert.ok(inputs.some((p) => p.includes('src/io/tfjs/live-model-store.ts')));
  }
  // With tfjs left to the app (external): the entry itself is a few KB.
  const alone = await build({ entryPoints: [join(root, 'src/tfjs.ts')], bundle: true, platform: 'browser', format: 'esm', minify: true, write: false, metafile: true, logLevel: 'silent', external: ['@tensorflow/*'] });
  const own = Object.keys(alone.metafile.inputs);
  assert.deepEqual(own.filter((p) => p.includes('node_modules') || p.startsWith('node:')), []);
  assert.ok(gzipSync(alone.outputFiles[0].contents).length < 5_000, 'the live-model store alone stays small');
});

test('neural-diff/gguf (src/io/gguf/opfs.ts), the device\'s in-place GGUF apply, bundles for the browser without tfjs, node modules or WebAssembly', async () => {
  const result = await build({ entryPoints: [join(root, 'src/io/gguf/opfs.ts')], bundle: true, platform: 'browser', format: 'esm', minify: true, write: false, metafile: true, logLevel: 'silent' });
  const inputs = Object.keys(result.metafile.inputs);
  assert.deepEqual(inputs.filter((p) => /@tensorflow|node_modules\/|\.wasm|src\/(train|engine|io\/(durable\/(?!pending-update\.ts|model-id-record\.ts)|onnx|tflite|safetensors|tfjs))/.test(p) || p.startsWith('node:')), []);
  assert.ok(inputs.some((p) => p.endsWith('src/io/gguf/in-place-core.ts')) && inputs.some((p) => p.endsWith('src/core/sha512.ts')));
});

test('neural-diff/sequence-stores (src/apply/sequence-stores.ts) bundles for the browser alone, without tfjs or node modules', async () => {
  const result = await build({ entryPoints: [join(root, 'src/apply/sequence-stores.ts')], bundle: true, platform: 'browser', format: 'esm', minify: true, write: false, metafile: true, logLevel: 'silent' });
  const inputs = Object.keys(result.metafile.inputs);
  assert.deepEqual(inputs.filter((p) => /@tensorflow|node_modules\//.test(p) || p.startsWith('node:')), []);
  assert.ok(gzipSync(result.outputFiles[0].contents).length < 3_000, 'the stores stay small');
});

test('the CLI starts without the library\'s commands: what `ndiff` loads before a command runs (static imports from cli/ndiff.ts) reaches no reader, encoder, trainer or release code; each command loads its own when it runs', () => {
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const src = readFileSync(file, 'utf8');
    // Static imports and re-exports that carry values (`import type` and `export type` are erased).
    for (const m of src.matchAll(/^(?:import|export)\s+(?!type\s)(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]/gm)) {
      if (m[1].startsWith('.')) visit(resolve(dirname(file), m[1]));
    }
  };
  visit(join(root, 'cli/ndiff.ts'));
  const ours = [...seen].map((f) => f.slice(root.length + 1));
  const heavy = ours.filter((f) => /^src\/(front\/(apply|diff|verify|fingerprint|inspect|keys|update|release|gguf|models)\.ts|front\/measure\/|io\/(model-paths|tfjs|onnx|tflite|gguf|safetensors)\b|train\/front\.ts|engine\/|lowbit-diff\/|topk-diff\/)/.test(f));
  assert.deepEqual(heavy, [], 'loaded by every `ndiff` start (load these in the command\'s run instead)');
  assert.ok(ours.includes('cli/commands/apply.ts') && ours.includes('cli/commands/release.ts'), `walked ${ours.length} files`);
  assert.ok(ours.length < 100, `every \`ndiff\` start loads ${ours.length} of our modules`);
});
