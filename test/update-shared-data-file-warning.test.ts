/**
 * A structural payload applied by the updater's `.onnx` target to a model with external data
 * files, whose new version no longer names a data file another model of the folder names: the
 * file is kept (deleting it would break the other model), and the warning that says so, which
 * `ndiff apply` prints, reaches the updater's result (the step's `warnings`, and `onProgress`)
 * instead of being dropped by the target. Release folders hold single-file ONNX models only, so
 * the updater meets such a model only where the device's file was saved with external data; the
 * target is driven here directly, and the updater's handling of a target's warnings through an
 * app's own target (the public `ModelTarget` interface) over a real release.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { getHasher } from '../src/core/hasher.ts';
import { MemorySequenceStore } from '../src/apply/freshness.ts';
import { structuralDiffFiles } from '../src/diff/structural.ts';
import { ONNX_FILES_REBUILD } from '../src/io/onnx/files-store.ts';
import { onnxFileTarget, tfjsFolderTarget } from '../src/io/updater/targets.ts';
import { FileUpdaterState, FileDownloadStore } from '../src/io/updater/state-files.ts';
import { Updater } from '../src/updater/updater.ts';
import { generateKeyPair, loadPrivateKey, signPayload } from '../src/sign/node-keys.ts';
import { DT, graph, model as onnxModel, tensor, valueInfo } from './helpers/onnx-build.ts';
import { onnxDataFilesPair, type PairFile } from './helpers/structural-pairs.ts';
import { releaseChain } from './helpers/release-chain.ts';
import { serveRelease } from './helpers/release-server.ts';

async function writeFiles(dir: string, files: readonly PairFile[]): Promise<void> {
  for (const f of files) {
    await mkdir(path.dirname(path.join(dir, f.path)), { recursive: true });
    await writeFile(path.join(dir, f.path), f.bytes);
  }
}

const kept = /no longer names the data file "more\.bin", but .*other\.onnx names it too: kept it/;

test('the .onnx target returns the warning of a shared data file it kept', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-shared-data-'));
  try {
    const hasher = await getHasher();
    const pair = onnxDataFilesPair(3, 'dropped');
    const keys = generateKeyPair();
    const payload = signPayload(structuralDiffFiles(hasher, pair.baseFiles as PairFile[], pair.targetFiles as PairFile[], ONNX_FILES_REBUILD, { modelId: 'net', sequence: 1 }).bytes, loadPrivateKey(keys.privateKeyPem));
    await writeFiles(dir, pair.baseFiles as PairFile[]);
    // Another model of the folder reads its weights from more.bin, which the new version drops.
    await writeFile(path.join(dir, 'other.onnx'), onnxModel(graph({
      initializers: [tensor({ name: 'other.w', dims: [4], dataType: DT.FLOAT, external: { location: 'more.bin', offset: '0', length: '16' } })],
      inputs: [valueInfo('x', [4])],
      outputs: [valueInfo('other.w', [4])],
    })));
    const more = await readFile(path.join(dir, 'more.bin'));
    const applied = await onnxFileTarget(path.join(dir, 'model.onnx')).applyPayload(payload, { trustedKeys: [keys.publicKeyPem], expectedModelId: 'net', sequenceStore: new MemorySequenceStore(), now: Date.now });
    assert.equal(applied?.warnings?.length, 1, 'the warning is returned');
    assert.match(applied.warnings[0], kept);
    assert.deepEqual(await readFile(path.join(dir, 'more.bin')), more, 'more.bin kept byte for byte');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the updater puts a target\'s warnings on the applied step and says them through onProgress', async () => {
  const chain = await releaseChain(2);
  const server = await serveRelease(chain.releaseDir);
  try {
    const model = path.join(chain.work, 'device', 'model');
    await cp(chain.versions[0], model, { recursive: true });
    const folder = tfjsFolderTarget(model);
    const said = 'the new version of model.onnx no longer names the data file "more.bin", but other.onnx names it too: kept it';
    // An app's own target: the folder target, saying what it kept.
    const target = { ...folder, applyPayload: async (...args: Parameters<typeof folder.applyPayload>) => ({ ...(await folder.applyPayload(...args)), warnings: [said] }) };
    const progress: string[] = [];
    const stateDir = path.join(chain.work, 'device', 'state');
    const r = await new Updater({ modelId: 'kws', urls: [server.url], trustedKeys: [chain.keys.publicKeyPem], target, state: new FileUpdaterState(path.join(stateDir, 'state.json')), downloads: new FileDownloadStore(path.join(stateDir, 'downloads')), onProgress: (m) => progress.push(m) }).update();
    assert.equal(r.status, 'updated', JSON.stringify(r.error));
    assert.deepEqual(r.steps.map((s) => [s.outcome, s.warnings]), [['applied', [said]]]);
    assert.ok(progress.includes(`warning: ${said}`), progress.join('\n'));
  } finally {
    await server.close();
    await rm(chain.work, { recursive: true, force: true });
  }
});
