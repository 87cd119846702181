/**
 * The MNIST digit model trained a little and saved as a TF.js folder, then quantized as the
 * converter does: the quantized stores the low-bit and grid-training tests start from.
 */
import { join } from 'node:path';
import { fileSystemIO, quantizeModelDir } from '../../src/io/tfjs/index.ts';
import { initBackend } from '../../src/engine/backend.ts';
import { mnistModel, mnistSplits, type MnistSplits } from '../../examples/lib/mnist-task.ts';
import { trainDiff } from '../../src/train/train-diff.ts';
import { tempDir } from './dirs.ts';

export interface QuantizedMnist {
  splits: MnistSplits;
  /** Holds `f32/` (the trained float32 folder) and one folder per quantized dtype asked for. */
  root: string;
}

/** Train the digit model (3 epochs on 3,000 examples, seed 1) and write it as `f32/` and each of `dtypes`. */
export async function quantizedMnist(dtypes: ('uint8' | 'uint16' | 'float16')[]): Promise<QuantizedMnist> {
  await initBackend('wasm');
  const splits = mnistSplits(3000);
  const model = mnistModel(1);
  await trainDiff(model, splits.baseTrain, { method: 'full', budgetBytes: 0, epochs: 3, seed: 1, tune: 'off', validation: 0 });
  const root = await tempDir();
  await model.save(fileSystemIO(join(root, 'f32')));
  model.dispose();
  for (const dtype of dtypes) await quantizeModelDir(join(root, 'f32'), join(root, dtype), dtype);
  return { splits, root };
}

/** Free the splits' tensors. */
export function disposeSplits(splits: MnistSplits | undefined): void {
  if (splits) for (const d of [splits.baseTrain, splits.updateTrain, splits.eval]) d.x.dispose();
}
