/** The package's entry points resolve by name (package.json "exports") and expose the documented API. */
import { test } from 'node:test';
import assert from 'node:assert/strict';

test('neural-diff and neural-diff/apply resolve and export the documented names', async () => {
  const lib = await import('neural-diff');
  for (const name of ['diff', 'apply', 'inspect', 'verify', 'update', 'checkUpdate', 'openTfjsModelDir', 'fileSystemIO', 'applyPayload', 'renderHtml', 'openSafetensorsFile', 'generateKeyPair', 'signPayload', 'addVersion', 'publishRelease', 'planJobs', 'runJob']) {
    assert.equal(typeof (lib as Record<string, unknown>)[name], 'function', name);
  }
  const device = await import('neural-diff/apply');
  for (const name of ['applyPayload', 'verifyPayload', 'openPayload', 'fingerprintStore', 'getHasher', 'MemoryWeightStore', 'MemorySequenceStore', 'NeuralDiffError']) {
    assert.ok(name in device, name);
  }
  // Build-server parts stay out of the device bundle (they are in neural-diff/kit).
  const kit = await import('neural-diff/kit');
  for (const name of ['decodePayload', 'applyDecodedPayload', 'sealEnvelope', 'envelopeSigningInput']) {
    assert.ok(!(name in device), `${name} is not in the device entry`);
    assert.equal(typeof (kit as Record<string, unknown>)[name], 'function', name);
  }
  assert.ok(!('trainDiff' in device), 'the device entry has no trainer');
  assert.ok(!('trainDiff' in lib), 'the trainers (tfjs) are neural-diff/train');
  const train = await import('neural-diff/train');
  for (const name of ['train', 'trainDiff', 'initBackend', 'evaluate', 'fromDataset', 'modelToStore', 'tfModelStore', 'SparseMask', 'HashedBuckets']) {
    assert.ok(name in train, name);
  }
});

test('neural-diff/kit holds the codecs, quantizers and payload builders, and the main entry does not', async () => {
  const lib = await import('neural-diff') as Record<string, unknown>;
  const kit = await import('neural-diff/kit') as Record<string, unknown>;
  const kitNames = ['encodePayload', 'packPayload', 'buildPayload', 'decodePayload', 'topkDiff', 'lowbitDiff', 'quantizeLowBit', 'quantizeFactors', 'roundAgainstInputs', 'inverseCholesky',
    'exactDiff', 'dropDiff', 'lowRankDiff', 'diffOnnxModels', 'canonicalJson', 'TFJS_FRAME', 'ONNX_FRAME', 'scanOnnxModel', 'parseNpy', 'writeNpy', 'parseBudget', 'getHasher', 'sealEnvelope'];
  for (const name of kitNames) {
    assert.ok(name in kit, `neural-diff/kit exports ${name}`);
    assert.ok(!(name in lib), `${name} is a tool-builder's part: neural-diff/kit, not the main entry`);
  }
  // The two entries share no value: each name has one home.
  assert.deepEqual(Object.keys(kit).filter((n) => n in lib), []);
  // The main entry stays small: the calls, stores, applier entry points, keys, releases, reports and errors
  // (every typed error a call throws, DiffWorkerError the 92nd value).
  const values = Object.keys(lib);
  assert.ok(values.length <= 92, `neural-diff exports ${values.length} values: ${values.join(', ')}`);
});

test('neural-diff/train re-exports every value of its implementation module', async () => {
  const train = await import('neural-diff/train');
  const api = await import('../src/train/api.ts');
  for (const name of Object.keys(api)) assert.equal((train as Record<string, unknown>)[name], (api as Record<string, unknown>)[name], name);
});

test('no entry but neural-diff/train loads tfjs (bundled, packages external)', async () => {
  const { build } = await import('esbuild');
  for (const entry of ['src/index.ts', 'src/kit.ts', 'src/apply/index.ts', 'src/node.ts', 'src/io/safetensors/store.ts']) {
    const out = await build({ entryPoints: [entry], bundle: true, platform: 'node', format: 'esm', write: false, metafile: true, packages: 'external', logLevel: 'silent' });
    const imported = new Set(Object.values(out.metafile.outputs).flatMap((o) => o.imports.map((i) => i.path)));
    assert.ok(![...imported].some((p) => p.startsWith('@tensorflow/')), `${entry} imports tfjs: ${[...imported].join(', ')}`);
  }
});

test('neural-diff/node (Node and Electron updaters) exports the folder updater and loads no tfjs', async () => {
  const node = await import('neural-diff/node');
  for (const name of ['applyToModelDir', 'recoverModelDir', 'recordModelDirDigests', 'FileSequenceStore', 'openTfjsModelDir', 'openSafetensorsFile', 'applyPayload', 'verifyPayload']) {
    assert.ok(name in node, name);
  }
  assert.ok(!('trainDiff' in node), 'no trainer');
  // What the entry pulls in at run time: bundle it and list the packages it imports.
  const { build } = await import('esbuild');
  const out = await build({ entryPoints: ['src/node.ts'], bundle: true, platform: 'node', format: 'esm', write: false, metafile: true, packages: 'external', logLevel: 'silent' });
  const imported = new Set(Object.values(out.metafile.outputs).flatMap((o) => o.imports.map((i) => i.path)));
  assert.ok(![...imported].some((p) => p.startsWith('@tensorflow/')), `imports tfjs: ${[...imported].join(', ')}`);
});

test('neural-diff/onnx resolves and exports the ONNX store; neural-diff/node the file updater', async () => {
  const onnx = await import('neural-diff/onnx');
  for (const name of ['OnnxWeightStore', 'scanOnnxModel', 'onnxExternalLocations', 'ONNX_FRAME']) assert.ok(name in onnx, name);
  const node = await import('neural-diff/node');
  for (const name of ['applyToOnnxFile', 'openOnnxFile', 'recoverOnnxFile', 'OnnxWeightStore']) assert.ok(name in node, name);
});

test('neural-diff/node exports the GGUF in-place apply, its recovery and the GGUF payload decoder', async () => {
  const node = await import('neural-diff/node');
  for (const name of ['applyToGgufFile', 'recoverGgufFile', 'ggufModelFiles', 'ggufUndoJournal', 'decodeGgufPayload', 'ggufModelDigest', 'GGUF_PAYLOAD_VERSION']) assert.ok(name in node, name);
});

test('neural-diff/tflite resolves and exports the LiteRT store; neural-diff/node its file apply and updater target', async () => {
  const tflite = await import('neural-diff/tflite');
  for (const name of ['TfliteWeightStore', 'scanTfliteModel', 'TFLITE_FRAME', 'TFLITE_TYPES']) assert.ok(name in tflite, name);
  const node = await import('neural-diff/node');
  for (const name of ['applyToTfliteFile', 'openTfliteFile', 'recoverTfliteFile', 'TfliteWeightStore', 'tfliteFileTarget']) assert.ok(name in node, name);
});

test('neural-diff/rebuild resolves and exports the structural rebuild; neural-diff/node its crash-safe file rebuilds', async () => {
  const rebuild = await import('neural-diff/rebuild');
  for (const name of ['rebuildModelBytes', 'rebuildModelFiles', 'checkModelFileList', 'decodeStructuralPayload', 'isStructuralPayload', 'applyByteDelta', 'STRUCTURAL_VERSION', 'PayloadFormatError']) assert.ok(name in rebuild, name);
  const node = await import('neural-diff/node');
  for (const name of ['rebuildOnnxFile', 'rebuildTfliteFile', 'rebuildWeightsFile', 'rebuildModelDir', 'TfjsFilesStore']) assert.ok(name in node, name);
});

test('neural-diff/updater resolves and exports the device updater; neural-diff/node its Node adapters', async () => {
  const updater = await import('neural-diff/updater');
  for (const name of ['Updater', 'openTrustedRelease', 'planUpdate', 'weightStoreTarget', 'IndexedDbUpdaterState', 'IndexedDbDownloadStore', 'MemoryUpdaterState', 'MemoryDownloadStore', 'validateManifest', 'canonicalJson']) {
    assert.ok(name in updater, name);
  }
  const node = await import('neural-diff/node');
  for (const name of ['updateModel', 'nodeUpdater', 'tfjsFolderTarget', 'onnxFileTarget', 'FileUpdaterState', 'FileDownloadStore', 'Updater']) assert.ok(name in node, name);
});

test('the docs the package ships link only files the package holds (npm pack --dry-run): a link into test/, bench/ or examples/ is dead in node_modules', async () => {
  const { execFileSync } = await import('node:child_process');
  const { readFileSync } = await import('node:fs');
  const path = await import('node:path');
  const root = path.join(import.meta.dirname, '..');
  // --ignore-scripts: the file list, without the build prepack runs.
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const files = new Set((JSON.parse(out.slice(out.indexOf('['))) as { files: { path: string }[] }[])[0].files.map((f) => f.path));
  const folders = new Set<string>();
  for (const f of files) for (let d = path.posix.dirname(f); d !== '.'; d = path.posix.dirname(d)) folders.add(d);
  const docs = [...files].filter((f) => f.endsWith('.md'));
  assert.ok(docs.includes('README.md') && docs.some((f) => f.startsWith('docs/')), 'the README and docs/ are packed');
  const dead: string[] = [];
  for (const doc of docs) {
    const text = readFileSync(path.join(root, doc), 'utf8');
    // Inline links [text](target) and reference definitions [name]: target.
    for (const m of text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)|^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/gm)) {
      const target = (m[1] ?? m[2]).split('#')[0];
      if (!target || /^[a-z][a-z0-9+.-]*:/i.test(target)) continue;
      const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(doc), decodeURI(target))).replace(/\/$/, '');
      if (!files.has(resolved) && !folders.has(resolved)) dead.push(`${doc}: ${m[1] ?? m[2]}`);
    }
  }
  assert.deepEqual(dead, [], 'links from packed docs to files the tarball leaves out');
});
