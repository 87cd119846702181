/**
 * Training on the storage grid (issue #16, item 2), on a model small enough for every method:
 * the MNIST digit model saved as a TF.js folder and quantized as the converter does (uint8 and
 * float16). For each method the trainer's measured accuracy must be the accuracy of the folder
 * after the device applier patched it, loaded with stock tfjs, prediction for prediction; every
 * patched value lies on its tensor's grid, and the folder keeps its dtypes and size.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { snapValue, type StorageGrid } from '../src/core/grid.ts';
import { storedModelBytes } from '../src/diff/build.ts';
import { applyToModelDir } from '../src/io/tfjs/folder-update.ts';
import { fileSystemIO, openTfjsModelDir, referencedFiles } from '../src/io/tfjs/index.ts';
import { evaluate } from '../src/train/data.ts';
import type { MnistSplits } from '../examples/lib/mnist-task.ts';
import { trainDiff, type TrainMethod } from '../src/train/train-diff.ts';
import { tempDir } from './helpers/dirs.ts';
import { disposeSplits, quantizedMnist } from './helpers/quantized-mnist.ts';
import { onceSkip } from './helpers/benchmarks.ts';

// Trains in this process only, through the readers and writers other files test on every Node
// release (whose CLI training cases run there too): checked once per CI (test/helpers/benchmarks.ts).
const once = { skip: onceSkip('the in-process training on a quantized folder\'s grid is') };

interface ManifestEntry { name: string; dtype: string; quantization?: { dtype: string; scale?: number; min?: number } }

/** Bytes of the model's files: model.json and the shards it names (the applier's records left out). */
async function modelBytes(dir: string): Promise<number> {
  return (await Promise.all((await referencedFiles(dir)).map((f) => stat(join(dir, f))))).reduce((n, s) => n + s.size, 0);
}

async function manifest(dir: string): Promise<ManifestEntry[]> {
  const json = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as { weightsManifest: { weights: ManifestEntry[] }[] };
  return json.weightsManifest.flatMap((g) => g.weights);
}

describe('learned diffs trained on the storage grid of a quantized folder', once, () => {
  let splits: MnistSplits;
  let root: string;

  before(async () => {
    ({ splits, root } = await quantizedMnist(['uint8', 'float16']));
  });
  after(() => disposeSplits(splits));

  const cases: [string, TrainMethod][] = [['uint8', 'sparse'], ['uint8', 'hash'], ['uint8', 'lora'], ['uint8', 'full'], ['uint8', 'topk'], ['float16', 'sparse'], ['float16', 'full']];
  for (const [storage, method] of cases) {
    test(`${storage}, ${method}: the folder tfjs loads after the apply predicts what the trainer measured, on the grid, same size`, async () => {
      const dir = join(await tempDir(), 'model');
      await cp(join(root, storage), dir, { recursive: true });
      const manifestBefore = await manifest(dir);
      const bytesBefore = await modelBytes(dir);
      const disk = await openTfjsModelDir(dir);
      const budgetBytes = Math.floor(storedModelBytes(disk) * 0.03);
      const model = await tf.loadLayersModel(fileSystemIO(dir));
      const res = await trainDiff(model, splits.updateTrain, { method, budgetBytes, epochs: 2, seed: 5, base: disk, eval: splits.eval, tune: 'off', allowWorse: true });
      model.dispose();
      if (method !== 'full') assert.ok(res.bytes.length <= budgetBytes, `${res.bytes.length} > ${budgetBytes}`);
      // Every value the payload leads to is on its tensor's grid: what was evaluated is storable.
      for (const [name, values] of res.targetValues) {
        const grid = disk.grid(name) as StorageGrid;
        assert.notEqual(grid.dtype, 'float32', `${name} is stored quantized`);
        for (let i = 0; i < values.length; i++) {
          if (!Object.is(snapValue(values[i], grid), values[i])) assert.fail(`${name}[${i}] = ${values[i]} is off its ${grid.dtype} grid`);
        }
      }
      await applyToModelDir(dir, res.bytes, { state: null });
      const after = await tf.loadLayersModel(fileSystemIO(dir));
      const folder = evaluate(after, splits.eval);
      after.dispose();
      assert.equal(folder.accuracy, res.accuracyAfter);
      assert.deepEqual(Array.from(folder.predictions), Array.from(res.predictions as Int32Array), 'prediction for prediction');
      const manifestAfter = await manifest(dir);
      assert.deepEqual(manifestAfter.map((e) => [e.name, e.dtype, e.quantization?.dtype]), manifestBefore.map((e) => [e.name, e.dtype, e.quantization?.dtype]), 'dtypes and quantization kept');
      const bytesAfter = await modelBytes(dir);
      assert.ok(Math.abs(bytesAfter - bytesBefore) <= 64, `the folder keeps its size: ${bytesBefore} -> ${bytesAfter}`);
    });
  }
});
