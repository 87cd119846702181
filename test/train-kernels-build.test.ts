/**
 * The trainer's SIMD kernels (src/engine/kernels/*.c) are rebuilt from source with
 * scripts/build-train-kernels.ts and must give the committed module's bytes, from this checkout and
 * from a copy of the sources elsewhere (no path reaches the output). Skipped, saying why, only where
 * clang or wasm-ld is missing (CI installs them: .ci/run). Also: the module owns no memory of its
 * own, so it can only touch what the backend hands it.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import wabt from 'wabt';
import { buildTrainKernels, C_SOURCES, clangVersion, EXPORTS, KERNEL_DIR, missingToolchain } from '../scripts/build-train-kernels.ts';
import { fromHex } from '../src/core/hex.ts';
import { onceSkip } from './helpers/benchmarks.ts';
import { TRAIN_KERNELS_COMPILER, TRAIN_KERNELS_WASM } from '../src/engine/kernels/train-kernels-wasm.ts';

const committed = fromHex(TRAIN_KERNELS_WASM);

test('the committed train kernels are what the build script makes from the C sources, wherever they are', { skip: onceSkip('the kernels rebuilt by clang from a copy of their sources elsewhere are') }, async (t) => {
  const missing = await missingToolchain();
  if (missing !== null) {
    console.log(`# skipped: cannot rebuild the train kernels here: ${missing}`);
    t.skip(missing);
    return;
  }
  const built = await buildTrainKernels();
  const compiler = await clangVersion();
  const stale = compiler === TRAIN_KERNELS_COMPILER
    ? 'src/engine/kernels/train-kernels-wasm.ts is stale: run npm run build:train-kernels'
    : `the committed module was built by ${TRAIN_KERNELS_COMPILER}, this machine has ${compiler}: rebuild with the former`;
  assert.ok(Buffer.from(built).equals(Buffer.from(committed)), stale);
  const elsewhere = await mkdtemp(path.join(os.tmpdir(), 'ndiff kernels é '));
  try {
    for (const source of C_SOURCES) await copyFile(path.join(KERNEL_DIR, source), path.join(elsewhere, source));
    const again = await buildTrainKernels(elsewhere);
    assert.ok(Buffer.from(again).equals(Buffer.from(committed)), 'the build depends on where the sources are');
  } finally {
    await rm(elsewhere, { recursive: true, force: true });
  }
});

test('the module imports only the backend memory, exports only its kernels, and has no data or globals in use', async () => {
  const mod = new WebAssembly.Module(committed);
  assert.deepEqual(WebAssembly.Module.imports(mod), [{ module: 'env', name: 'memory', kind: 'memory' }]);
  assert.deepEqual(WebAssembly.Module.exports(mod).map((e) => `${e.kind} ${e.name}`), EXPORTS.map((e) => `function ${e}`));
  const text = (await wabt()).readWasm(committed, { readDebugNames: false, simd: true }).toText({});
  // wasm-ld declares a stack pointer; the kernels must never use it (it would point into tfjs' heap).
  assert.doesNotMatch(text, /global\.(get|set)/);
  assert.doesNotMatch(text, /\(data /);
  assert.doesNotMatch(text, /\(start /);
});
