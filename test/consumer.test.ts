/**
 * The published package, used the way a new user uses it: `npm pack` (which builds dist/ through
 * `prepack`), the tarball installed into a fresh project WITHOUT tfjs (what a device app installs),
 * and there:
 *  - plain `node` (no tsx, no bundler) imports every entry, and applies a test-vector payload
 *    through `neural-diff/apply` (in memory) and `neural-diff/node` (a TF.js folder on disk);
 *  - `neural-diff/train` fails with the error that names the install command, then loads once
 *    tfjs is present (linked from this repo's node_modules: nothing is downloaded);
 *  - the bin runs with plain node (`ndiff --version`, `ndiff inspect --json`);
 *  - `tsc --noEmit` type-checks a consumer with strict flags (`strict`,
 *    `noUncheckedIndexedAccess`, `exactOptionalPropertyTypes`, no `skipLibCheck`) under
 *    `moduleResolution` node16, bundler and the legacy `node` (subpaths through typesVersions);
 *  - esbuild bundles `neural-diff/apply` from the installed package for a browser as one file
 *    (as an app does, the pure Ed25519 verifier included) within the 30,000-byte min+gzip goal,
 *    and one error class alone tree-shakes to a few hundred bytes;
 *  - the device install stays under 10 MB of node_modules, in its files and on disk (du -sh);
 *  - the README's scripts type-check under strict TypeScript against the installed package.
 * Prints the figures (tarball, install size, bundle sizes) that docs/BENCHMARKS.md quotes, and checks them there.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';
import { checkNodeUpdaterSummary } from './helpers/node-updater.ts';
import { checkDocumentedFigures } from './helpers/doc-figures.ts';
import { onceSkip } from './helpers/benchmarks.ts';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const vectors = path.join(root, 'test', 'vectors', 'payloads');
let work: string;
let project: string;
let tarball: string;
let packInfo: { filename: string; size: number; entryCount: number };

/** Bytes of every file under `dir` (following no symlinks). */
function duBytes(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) n += statSync(path.join(e.parentPath, e.name)).size;
  }
  return n;
}

/** Run `node` in the consumer project with no loader, no custom conditions, no NODE_OPTIONS. */
function nodeIn(args: string[], options: { expectFail?: boolean } = {}): { stdout: string; stderr: string; status: number | null } {
  const r = spawnSync(process.execPath, args, { cwd: project, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' }, timeout: 60_000 });
  if (!options.expectFail && r.status !== 0) assert.fail(`node ${args.join(' ')} exited ${r.status}:\n${r.stdout}\n${r.stderr}`);
  return r;
}

function tsc(args: string[]): { status: number | null; output: string } {
  const bin = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: project, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
  return { status: r.status, output: r.stdout + r.stderr };
}

before(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'nd-consumer-'));
  // `npm pack` runs `prepack` (npm run build && npm run build:apply): the tarball holds fresh output.
  const packed = execFileSync('npm', ['pack', '--pack-destination', work, '--json'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const info = JSON.parse(packed.slice(packed.indexOf('['))) as { filename: string; size: number; unpackedSize: number; entryCount: number }[];
  tarball = path.join(work, info[0].filename);
  console.log(`# tarball ${info[0].filename}: ${info[0].size} bytes, ${info[0].entryCount} files, ${info[0].unpackedSize} bytes unpacked`);
  packInfo = info[0];
  project = path.join(work, 'app');
  mkdirSync(project);
  writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'device-app', version: '1.0.0', private: true, type: 'module' }));
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball], { cwd: project, stdio: ['ignore', 'pipe', 'pipe'] });
});

after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

test('the tarball ships compiled entries, types, LICENSE, and no tests, benchmarks or CI scripts', () => {
  const pkgDir = path.join(project, 'node_modules', 'neural-diff');
  const pkg = JSON.parse(readFileSync(path.join(pkgDir, 'package.json'), 'utf8')) as { exports: Record<string, unknown>; bin: Record<string, string> };
  for (const [entry, conditions] of Object.entries(pkg.exports)) {
    if (typeof conditions === 'string') continue;
    const c = conditions as Record<string, string>;
    for (const key of ['types', 'import', 'default']) {
      assert.ok(c[key], `${entry} has a ${key} condition`);
      assert.ok(statSync(path.join(pkgDir, c[key])).isFile(), `${entry} ${key}: ${c[key]} is in the tarball`);
    }
  }
  assert.ok(statSync(path.join(pkgDir, 'LICENSE')).isFile());
  // What a device needs is the compiled code and its types: no TypeScript sources, no source maps (issue 45, item 13).
  for (const absent of ['test', 'bench', 'examples', '.ci', 'scripts', 'src', 'cli']) {
    assert.throws(() => statSync(path.join(pkgDir, absent)), `${absent}/ is not published`);
  }
  assert.equal(statSync(path.join(pkgDir, pkg.bin.ndiff)).mode & 0o111, 0o111, 'the bin is executable');
  const maps = (readdirSync(path.join(pkgDir, 'dist'), { recursive: true }) as string[]).filter((f) => f.endsWith('.map'));
  assert.deepEqual(maps, [], 'no source maps (their sources are not shipped)');
});

test('the README\'s install is what npm pack makes: its tarball name, installed by path (the package is not on the registry yet)', () => {
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  const install = readme.slice(readme.indexOf('## Install'), readme.indexOf('\n## ', readme.indexOf('## Install') + 5));
  assert.match(install, /npm pack/);
  const names = [...install.matchAll(/npm i (\S+\.tgz)/g)].map((m) => path.basename(m[1]));
  assert.ok(names.length >= 2, install);
  for (const n of names) assert.equal(n, packInfo.filename, 'the README installs the file npm pack writes');
  assert.doesNotMatch(install, /^npm i neural-diff\b/m, 'no install line the registry would 404');
});

test('a device install (no tfjs) is under 10 MB of node_modules', () => {
  const modules = path.join(project, 'node_modules');
  assert.ok(!readdirSync(modules).includes('@tensorflow'), 'tfjs is an optional peer: not installed');
  assert.ok(!readdirSync(modules).includes('tsx'), 'tsx is a dev dependency');
  const bytes = duBytes(modules);
  // On disk, as du -sh measures it (each file takes whole blocks): what a user sees.
  const onDisk = Number(execFileSync('du', ['-s', '-B1', modules], { encoding: 'utf8' }).split(/\s/)[0]);
  console.log(`# device install: ${(bytes / 1e6).toFixed(2)} MB in node_modules (${readdirSync(modules).length} top-level entries), ${(onDisk / 2 ** 20).toFixed(2)} MiB on disk`);
  assert.ok(bytes < 10e6, `node_modules holds ${bytes} bytes`);
  assert.ok(onDisk < 10 * 2 ** 20, `node_modules takes ${onDisk} bytes on disk (du -sh prints over 10M)`);
});

test('docs/BENCHMARKS.md quotes the tarball and the device install as measured here', () => {
  const kb = Math.round(packInfo.size / 1000);
  checkDocumentedFigures('npm tarball', [kb, packInfo.entryCount], `${kb} KB, ${packInfo.entryCount} files`);
  const mb = duBytes(path.join(project, 'node_modules')) / 1e6;
  checkDocumentedFigures('device install (`npm i neural-diff`, no tfjs)', [mb], `${mb.toFixed(1)} MB of node_modules`);
});

test('the README\'s install quotes the tarball and the device install as measured here (within 10%)', () => {
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  const tarball = Number(/neural-diff-[\d.]+\.tgz \(compiled, ~([\d.]+) MB\)/.exec(readme)?.[1]);
  const [, onDisk, installed] = (/`node_modules` is about ([\d.]+) MiB on disk with it \(`du -sh`; ([\d.]+) MB of files\)/.exec(readme) ?? []).map(Number);
  const [tarballMb, installedMb] = [packInfo.size / 1e6, duBytes(path.join(project, 'node_modules')) / 1e6];
  assert.ok(Math.abs(tarball - tarballMb) <= 0.1 * tarballMb, `README says the tarball is ~${tarball} MB, measured ${tarballMb.toFixed(2)} MB`);
  assert.ok(Math.abs(installed - installedMb) <= 0.1 * installedMb, `README says node_modules holds ${installed} MB of files, measured ${installedMb.toFixed(2)} MB`);
  // The on-disk figure is the one du -sh prints (MiB, one decimal): it said 8.4 where du said 8.6.
  const du = execFileSync('du', ['-sh', path.join(project, 'node_modules')], { encoding: 'utf8' });
  const printed = /^([\d.]+)M\b/.exec(du)?.[1];
  assert.ok(printed, `du -sh printed ${JSON.stringify(du)}, expected a size in M`);
  assert.ok(Math.abs(onDisk - Number(printed)) <= 0.1 + 1e-9, `README says node_modules is about ${onDisk} MiB on disk, du -sh prints ${printed}M: write ${printed} there`);
});

test('plain node imports every entry and applies a test-vector payload in memory and to a model folder', () => {
  cpSync(vectors, path.join(project, 'vectors'), { recursive: true });
  writeFileSync(path.join(project, 'apply.mjs'), `
import { readFileSync } from 'node:fs';
import * as lib from 'neural-diff';
import * as kit from 'neural-diff/kit';
import { applyPayload, MemoryWeightStore } from 'neural-diff/apply';
import { applyToModelDir, openTfjsModelDir, writeModelDir } from 'neural-diff/node';
import { SafetensorsWeightStore } from 'neural-diff/safetensors';
import { OnnxWeightStore } from 'neural-diff/onnx';

const hex = (h) => new Float32Array(Uint8Array.from(h.match(/../g).map((b) => parseInt(b, 16))).buffer);
const model = (file) => JSON.parse(readFileSync('vectors/' + file, 'utf8'));
const base = model('multi-tensor.base.json');
const target = model('multi-tensor.target.json');
const payload = new Uint8Array(readFileSync('vectors/multi-tensor.ndiff'));

const store = new MemoryWeightStore(Object.fromEntries(Object.entries(base.tensors).map(([n, t]) => [n, { shape: t.shape, data: hex(t.values) }])));
const r = await applyPayload(store, payload);
for (const [n, t] of Object.entries(target.tensors)) {
  if (Buffer.compare(Buffer.from(store.values(n).buffer), Buffer.from(hex(t.values).buffer)) !== 0) throw new Error('memory apply: ' + n + ' differs from the target');
}

await writeModelDir('model', { format: 'layers-model', modelTopology: {} }, Object.fromEntries(Object.entries(base.tensors).map(([n, t]) => [n, { shape: t.shape, data: hex(t.values) }])));
// The vector's payload covers the weights alone; a folder's fingerprint covers its frame too
// (docs/FORMAT.md section 14): refused, saying so.
const legacy = await applyToModelDir('model', payload).then(() => 'applied', (e) => (e.details && e.details.withoutFrame === true ? 'refused: built without the frame' : String(e)));
// A payload built for the folder, to the vector's target values.
const diskBase = await openTfjsModelDir('model');
const want = MemoryWeightStore.copyOf(diskBase);
for (const [n, t] of Object.entries(target.tensors)) want.values(n).set(hex(t.values));
const built = kit.exactDiff(await kit.getHasher(), diskBase, want, { modelId: 'm' });
const disk = await applyToModelDir('model', built.bytes);
const after = await openTfjsModelDir('model');
for (const [n, t] of Object.entries(target.tensors)) {
  if (Buffer.compare(Buffer.from(after.values(n).buffer), Buffer.from(hex(t.values).buffer)) !== 0) throw new Error('folder apply: ' + n + ' differs from the target');
}
console.log(JSON.stringify({ memory: r.status, memoryTarget: r.targetFingerprint, legacy, disk: disk.status, diskAtBuiltTarget: disk.targetFingerprint === built.payload.header.targetFingerprint, lib: typeof lib.diff, kit: typeof kit.buildPayload, safetensors: typeof SafetensorsWeightStore, onnx: typeof OnnxWeightStore }));
`);
  const out = JSON.parse(nodeIn(['apply.mjs']).stdout) as Record<string, string>;
  const target = JSON.parse(readFileSync(path.join(vectors, 'multi-tensor.target.json'), 'utf8')) as { fingerprint: string };
  assert.deepEqual(out, { memory: 'applied', memoryTarget: target.fingerprint, legacy: 'refused: built without the frame', disk: 'applied', diskAtBuiltTarget: true, lib: 'function', kit: 'function', safetensors: 'function', onnx: 'function' });
  // require() of the ESM build works too (Node >= 20.19 loads ES modules synchronously).
  const req = nodeIn(['-e', "const m = require('neural-diff/apply'); console.log(typeof m.applyPayload, typeof m.NeuralDiffError)"]);
  assert.equal(req.stdout.trim(), 'function function');
});

test('neural-diff/train names the install command without tfjs, and loads with it; the node-updater example runs from the installed package', () => {
  const failed = nodeIn(['-e', "import('neural-diff/train').catch((e) => { console.log(JSON.stringify({ code: e.code, message: e.message })); process.exit(3); })"], { expectFail: true });
  assert.equal(failed.status, 3, failed.stderr);
  const err = JSON.parse(failed.stdout) as { code: string; message: string };
  assert.equal(err.code, 'ND_MISSING_DEPENDENCY', err.message);
  assert.match(err.message, /npm i @tensorflow\/tfjs @tensorflow\/tfjs-backend-wasm/);
  // The CLI says the same and exits with its documented code, not "a bug".
  const cli = nodeIn([path.join('node_modules', 'neural-diff', 'dist', 'cli', 'bin.js'), 'train', '--base', 'nowhere', '--train', 'nowhere', '--out', 'x.ndiff', '--json'], { expectFail: true });
  const doc = JSON.parse(cli.stdout) as { error: { code: string; exitCode: number; message: string } };
  assert.equal(doc.error.code, 'ND_MISSING_DEPENDENCY');
  assert.equal(cli.status, doc.error.exitCode);
  assert.match(doc.error.message, /npm i @tensorflow\/tfjs/);

  // A build server installs the peers; link this repo's copies instead of downloading them.
  mkdirSync(path.join(project, 'node_modules', '@tensorflow'));
  for (const p of readdirSync(path.join(root, 'node_modules', '@tensorflow'))) {
    symlinkSync(path.join(root, 'node_modules', '@tensorflow', p), path.join(project, 'node_modules', '@tensorflow', p), 'dir');
  }
  try {
    const loaded = nodeIn(['-e', "const m = await import('neural-diff/train'); console.log(typeof m.trainDiff, typeof m.initBackend, typeof m.SparseMask)", '--input-type=module']);
    assert.equal(loaded.stdout.trim(), 'function function function');
    // The device entry for live TF.js models, with the app's tfjs.
    const live = nodeIn(['-e', "const m = await import('neural-diff/tfjs'); const s = await import('neural-diff/sequence-stores'); console.log(typeof m.tfModelStore, typeof s.IndexedDbSequenceStore)", '--input-type=module']);
    assert.equal(live.stdout.trim(), 'function function');
    // The Node/Electron updater example, as an app runs it: plain node, the installed package.
    cpSync(path.join(root, 'examples', 'node-updater', 'run.mjs'), path.join(project, 'updater.mjs'));
    const updater = nodeIn(['updater.mjs', path.join(work, 'updater-out'), '--json']);
    checkNodeUpdaterSummary(updater.stdout);
  } finally {
    rmSync(path.join(project, 'node_modules', '@tensorflow'), { recursive: true, force: true });
  }
});

test('the bin runs with plain node: --version and inspect --json', () => {
  const bin = path.join('node_modules', '.bin', 'ndiff');
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };
  assert.equal(nodeIn([bin, '--version']).stdout.trim(), pkg.version);
  const doc = JSON.parse(nodeIn([bin, 'inspect', path.join('vectors', 'multi-tensor.ndiff'), '--json']).stdout) as { header: { method: string }; patches: unknown[] };
  const index = JSON.parse(readFileSync(path.join(vectors, 'vectors.json'), 'utf8')) as { valid: { name: string; header: { m: string } }[] };
  assert.equal(doc.header.method, index.valid.find((v) => v.name === 'multi-tensor')?.header.m);
  assert.ok(doc.patches.length > 1);
});

test('the published types hold under a strict consumer (node16, bundler and legacy node resolution, no skipLibCheck)', { skip: onceSkip('TypeScript\'s checks of the published types are') }, () => {
  mkdirSync(path.join(project, 'node_modules', '@types'), { recursive: true });
  symlinkSync(path.join(root, 'node_modules', '@types', 'node'), path.join(project, 'node_modules', '@types', 'node'), 'dir');
  writeFileSync(path.join(project, 'consumer.ts'), `
import { applyPayload, MemoryWeightStore, NeuralDiffError, BaseMismatchError, type ApplyResult, type WeightStore } from 'neural-diff/apply';
import { applyToModelDir, openTfjsModelDir, FileSequenceStore, type ModelDirApplyOptions } from 'neural-diff/node';
import { SafetensorsWeightStore } from 'neural-diff/safetensors';
import { diff, type DiffOptions } from 'neural-diff';
import { buildPayload, topkDiff, parseBudget, decodePayload, type PatchSpec } from 'neural-diff/kit';
import { OnnxWeightStore, type OnnxStoreOptions } from 'neural-diff/onnx';
import { KeyValueSequenceStore, browserSequenceStore, type KeyValueStorage } from 'neural-diff/sequence-stores';

const store: WeightStore = new MemoryWeightStore({ w: { shape: [2], data: new Float32Array(2) } });
export async function device(bytes: Uint8Array): Promise<ApplyResult | undefined> {
  try {
    return await applyPayload(store, bytes, { maxPayloadBytes: 1 << 20 });
  } catch (e) {
    if (e instanceof BaseMismatchError) return undefined;
    if (e instanceof NeuralDiffError) {
      // The codes are a union of literals: a typo is a compile error.
      // @ts-expect-error 'ND_BASE_MISSMATCH' is not a NeuralDiffErrorCode
      if (e.code === 'ND_BASE_MISSMATCH') return undefined;
      if (e.code === 'ND_FRESHNESS') return undefined;
      throw new Error(e.code + ': ' + e.message);
    }
    throw e;
  }
}
export async function node(dir: string, bytes: Uint8Array): Promise<string> {
  const options: ModelDirApplyOptions = { state: new FileSequenceStore(dir + '/.state.json') };
  const r = await applyToModelDir(dir, bytes, options);
  const m = await openTfjsModelDir(dir);
  return r.status + m.list().length;
}
export const budget: number = parseBudget('1%', 1000);
export const specs: PatchSpec[] = [];
export const onnxOptions: OnnxStoreOptions = {};
export const diffOptions: DiffOptions = { base: 'models/v1', target: 'models/v2', budget: '5%', out: 'v1-v2.ndiff' };
void diff; void OnnxWeightStore; void SafetensorsWeightStore; void buildPayload; void topkDiff; void decodePayload;
const asyncStorage: KeyValueStorage = { getItem: async () => null, setItem: async () => {} };
export const sequences = [new KeyValueSequenceStore(asyncStorage), browserSequenceStore];
`);
  // node16 and bundler read the exports map; legacy "node" (node10) resolution reads typesVersions.
  for (const [moduleKind, resolution] of [['node16', 'node16'], ['esnext', 'bundler'], ['es2022', 'node']]) {
    writeFileSync(path.join(project, 'tsconfig.json'), JSON.stringify({
      compilerOptions: {
        strict: true, noUncheckedIndexedAccess: true, exactOptionalPropertyTypes: true, noImplicitOverride: true,
        module: moduleKind, moduleResolution: resolution, target: 'es2022', lib: ['es2022', 'dom'], types: ['node'], noEmit: true, skipLibCheck: false,
      },
      files: ['consumer.ts'],
    }));
    const r = tsc(['-p', '.']);
    assert.equal(r.status, 0, `tsc (${resolution}):\n${r.output}`);
  }
});

test('the README\'s scripts type-check under strict TypeScript against the installed package (checkJs), with skipLibCheck as the README says tfjs needs', { skip: onceSkip('TypeScript\'s checks of the README\'s scripts are') }, () => {
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  assert.match(readme, /needs `"skipLibCheck": true`/, 'the README says where it speaks of TypeScript that tfjs\'s typings need skipLibCheck');
  const dir = path.join(project, 'readme');
  mkdirSync(dir, { recursive: true });
  const scripts: string[] = [];
  for (const m of readme.matchAll(/```js\n([\s\S]*?)```/g)) {
    const name = /^\/\/ ([\w.-]+\.m?js)\b/.exec(m[1] ?? '')?.[1];
    if (!name) continue;
    writeFileSync(path.join(dir, name), m[1] as string);
    scripts.push(`readme/${name}`);
  }
  assert.deepEqual(scripts.map((f) => path.basename(f)).sort(), ['app.js', 'diff.mjs', 'make-example.mjs', 'train.mjs', 'update.mjs']);
  // The "From code" examples of ndiff diff's and ndiff train's pages, as TypeScript.
  for (const page of ['diff', 'train']) {
    const text = readFileSync(path.join(root, 'docs', 'cli', `${page}.md`), 'utf8');
    const code = /## From code\n[\s\S]*?```ts\n([\s\S]*?)```/.exec(text)?.[1];
    assert.ok(code, `docs/cli/${page}.md has a From code example`);
    writeFileSync(path.join(dir, `from-code-${page}.mts`), code);
    scripts.push(`readme/from-code-${page}.mts`);
  }
  if (!existsSync(path.join(project, 'node_modules', '@types', 'node'))) {
    mkdirSync(path.join(project, 'node_modules', '@types'), { recursive: true });
    symlinkSync(path.join(root, 'node_modules', '@types', 'node'), path.join(project, 'node_modules', '@types', 'node'), 'dir');
  }
  // A build server's project: tfjs beside neural-diff (this repository's copy, linked).
  symlinkSync(path.join(root, 'node_modules', '@tensorflow'), path.join(project, 'node_modules', '@tensorflow'), 'dir');
  const check = (files: string[], extra: Record<string, unknown>) => {
    writeFileSync(path.join(project, 'tsconfig.readme.json'), JSON.stringify({
      compilerOptions: { strict: true, allowJs: true, checkJs: true, noEmit: true, module: 'node16', moduleResolution: 'node16', target: 'es2022', lib: ['es2022', 'dom'], types: ['node'], skipLibCheck: true, ...extra },
      files,
    }));
    return tsc(['-p', 'tsconfig.readme.json']);
  };
  try {
    // The scripts that call neural-diff, strict as written (a result that is a union is narrowed before use).
    const library = check(scripts.filter((f) => !f.endsWith('make-example.mjs')), {});
    assert.equal(library.status, 0, `tsc --strict on the README's scripts:\n${library.output}`);
    // The data-making script is plain JavaScript: strict but for its untyped parameters.
    const example = check(['readme/make-example.mjs'], { noImplicitAny: false });
    assert.equal(example.status, 0, `tsc on make-example.mjs:\n${example.output}`);
    // What the README's note is for: without skipLibCheck, tfjs's own typings fail, and nothing else does.
    const noSkip = check(['readme/make-example.mjs'], { noImplicitAny: false, skipLibCheck: false });
    assert.notEqual(noSkip.status, 0, 'tfjs\'s typings pass without skipLibCheck: the README\'s note is no longer needed');
    const errors = noSkip.output.split('\n').filter((l) => /error TS\d+/.test(l));
    assert.ok(errors.length > 0 && errors.every((l) => l.includes('@tensorflow/')), noSkip.output);
  } finally {
    rmSync(path.join(project, 'node_modules', '@tensorflow'), { force: true });
  }
});

test('esbuild bundles neural-diff/apply from the installed package as an app does, one file with the pure Ed25519 verifier, within 30,000 bytes min+gzip; one error class alone tree-shakes', async () => {
  // One file, as an app's bundler makes it (esbuild without code splitting; Metro always): every
  // line a device may run is counted, the pure verifier Hermes needs included.
  const sizeOf = async (source: string): Promise<{ gzip: number; inputs: string[] }> => {
    const out = await build({ stdin: { contents: source, resolveDir: project, loader: 'js', sourcefile: 'entry.js' }, bundle: true, absWorkingDir: project, format: 'esm', platform: 'browser', target: 'es2022', minify: true, write: false, metafile: true, logLevel: 'silent', legalComments: 'none' });
    assert.equal(out.outputFiles.length, 1);
    return { gzip: gzipSync(out.outputFiles[0].contents, { level: 9 }).length, inputs: Object.keys(out.metafile.inputs) };
  };
  const { gzip: whole, inputs } = await sizeOf("export * from 'neural-diff/apply';");
  const { gzip: oneClass } = await sizeOf("export { UsageError } from 'neural-diff/apply';");
  console.log(`# browser bundle of the installed neural-diff/apply, one file: ${whole} bytes min+gzip; UsageError alone: ${oneClass} bytes`);
  assert.ok(inputs.some((p) => p.includes('ed25519-point')), 'the pure Ed25519 verifier is in the file');
  const others = inputs.filter((p) => p.includes('node_modules/') && !p.includes('node_modules/neural-diff/'));
  assert.deepEqual(others, [], 'the applier needs no other package');
  assert.ok(whole <= 30_000, `${whole} bytes`);
  checkDocumentedFigures('`neural-diff/apply` bundled for a browser from the installed package (one file, as an app bundles it)', [whole], `${whole.toLocaleString('en-US')} bytes min+gzip`);
  assert.ok(oneClass < 1_000, `importing one error class pulls ${oneClass} bytes`);
});
