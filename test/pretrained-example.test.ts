/**
 * The pretrained example's quick mode (examples/pretrained/run.ts --quick): the nsfwjs
 * MobileNetV2 (BatchNorm, depthwise convolutions, uint8 weights) adapted to a Fashion-MNIST task
 * by a full fine-tune and a 1% sparse diff, each applied to a copy of the published folder with
 * the device applier. What it must show, whatever the accuracy of so short a run:
 * - the accuracy the trainer reports is the accuracy of the applied folder loaded by stock
 *   tfjs, sample for sample (BatchNorm in inference mode: what is evaluated is what ships);
 * - the folder keeps every tensor's dtype and quantization, and its size within 1%;
 * - the sparse payload fits 1% of the model as stored.
 * Skipped where Debian's dataset-fashion-mnist is missing and cannot be installed (not root).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FASHION_DIR } from '../examples/pretrained/fashion.ts';
import type { PretrainedRow } from '../examples/pretrained/run.ts';
import { benchmarkSkip } from './helpers/benchmarks.ts';

const root = join(fileURLToPath(new URL('.', import.meta.url)), '..');
const canInstall = process.getuid?.() === 0 && spawnSync('apt-get', ['--version']).status === 0;
const skip = benchmarkSkip || (!existsSync(join(FASHION_DIR, 'train-images-idx3-ubyte.gz')) && !canInstall ? 'dataset-fashion-mnist is not installed and apt-get is not available as root' : false);

test('the pretrained MobileNetV2, adapted and applied: the folder tfjs loads predicts what the trainer measured, and stays uint8', { skip, timeout: 1_200_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'nd-pretrained-test-'));
  try {
    const out = join(dir, 'quick.json');
    const r = spawnSync(process.execPath, [...process.execArgv, join(root, 'examples/pretrained/run.ts'), '--quick', '--out', out], { encoding: 'utf8', cwd: root, timeout: 1_140_000 });
    assert.equal(r.status, 0, `example failed:\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}`);
    const { rows } = JSON.parse(await readFile(out, 'utf8')) as { rows: PretrainedRow[] };
    assert.deepEqual(rows.map((x) => x.method), ['base', 'full', 'sparse']);
    for (const row of rows) {
      t.diagnostic(`${row.method}: ${row.bytes} bytes, accuracy ${row.accuracy} (folder ${row.folderAccuracy}), folder ${row.folderBytesBefore} -> ${row.folderBytesAfter} bytes, ${row.samplesPerSecond ?? '-'} samples/s, peak RSS ${row.peakRssMiB} MiB`);
      assert.equal(row.samePredictions, true, `${row.method}: the applied folder predicts differently from the trainer`);
      assert.equal(row.folderAccuracy, row.accuracy, row.method);
      assert.equal(row.manifestKept, true, `${row.method}: a tensor changed dtype or quantization`);
      assert.ok(Math.abs(row.folderBytesAfter - row.folderBytesBefore) <= 0.01 * row.folderBytesBefore, `${row.method}: ${row.folderBytesBefore} -> ${row.folderBytesAfter}`);
    }
    const sparse = rows.find((x) => x.method === 'sparse')!;
    assert.ok(sparse.bytes <= sparse.budgetBytes && sparse.budgetBytes <= 0.01 * sparse.folderBytesBefore, `${sparse.bytes} / ${sparse.budgetBytes}`);
    assert.equal(sparse.frozenByConfig, 99, 'the model config freezes 99 weight tensors (reported, not silently skipped)');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
