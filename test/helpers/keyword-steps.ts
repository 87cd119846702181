/**
 * The keyword-spotting CNN (4 classes) fully fine-tuned for one epoch on 24 spectrograms, once
 * through eager steps and once through compiled ones, from the same weights: what the compiled-step
 * tests compare (losses, payload bytes, the path the progress names).
 */
import * as tf from '@tensorflow/tfjs';
import type { MemoryWeightStore } from '../../src/core/weight-store.ts';
import { modelToStore, setModelWeights } from '../../src/engine/model-weights.ts';
import { trainDiff, type TrainDiffResult } from '../../src/train/train-diff.ts';
import { keywordModel } from '../../examples/keyword-spotting/model.ts';

/** Examples the runs train on; `x` holds their 24 x 49 x 40 values. */
export const KEYWORD_EXAMPLES = 24;

/** The eager run, the compiled run and what the compiled run's progress said. */
export async function keywordEagerAndCompiled(x: Float32Array): Promise<{ eager: TrainDiffResult; compiled: TrainDiffResult; said: string[] }> {
  const n = KEYWORD_EXAMPLES;
  const model = keywordModel(4);
  const base = modelToStore(model) as MemoryWeightStore;
  const y = Int32Array.from({ length: n }, (_, i) => i % 4);
  const run = async (step: 'eager' | 'compiled', said: string[]) => {
    setModelWeights(model, (name) => base.values(name));
    const xs = tf.tensor4d(x, [n, 49, 40, 1]);
    try {
      return await trainDiff(model, { x: xs, y }, { method: 'full', budgetBytes: 0, epochs: 1, seed: 1, tune: 'off', validation: 0, batchSize: 6, step, base, distill: 0, threads: 1, onProgress: (m) => said.push(m) });
    } finally {
      xs.dispose();
    }
  };
  const said: string[] = [];
  const eager = await run('eager', []);
  const compiled = await run('compiled', said);
  model.dispose();
  return { eager, compiled, said };
}
