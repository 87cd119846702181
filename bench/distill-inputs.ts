/**
 * A small check of wider distillation inputs and augmentation (issue #64, deliverables 1-2), not
 * the issue's targets: MNIST digits at 14x14 (examples/lib/mnist-task.ts), a base trained on 0-6,
 * a teacher fine-tuned from it on all ten digits. The update's own inputs are 300 images of the new
 * digits 7-9 only (where the teacher moved); the wider inputs are 2,000 images of the base's own
 * training set (0-6, unlabeled). A 1% sparse teacher diff learned with and without them, with and
 * without mixup + noise, is scored by top-1 agreement with the teacher on 1,800 held-out images of
 * every digit, for two seeds. About 3 minutes on one core.
 *
 *   node --conditions=neural-diff-source --import tsx bench/distill-inputs.ts
 */
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { mnistModel, mnistSplits } from '../examples/lib/mnist-task.ts';
import { modelToStore, setModelWeights } from '../src/engine/model-weights.ts';
import { trainDiff, type TrainDiffOptions } from '../src/train/train-diff.ts';
import { seededRandom, permutation } from '../src/train/data.ts';

await initBackend('wasm');
const splits = mnistSplits(6000);
const model = mnistModel(1);
await trainDiff(model, splits.baseTrain, { method: 'full', budgetBytes: 0, epochs: 4, seed: 1, tune: 'off', validation: 0, threads: 1 });
const base = modelToStore(model);
const teacher = mnistModel(1);
setModelWeights(teacher, (n) => base.values(n));
await trainDiff(teacher, splits.updateTrain, { method: 'full', budgetBytes: 0, epochs: 6, seed: 3, tune: 'off', validation: 0, base: modelToStore(teacher), threads: 1 });

/** The first `n` examples (in a seeded order) whose label passes `keep`. */
function inputsOf(d: { x: tf.Tensor; y: Int32Array }, keep: (label: number) => boolean, n: number, seed: number): tf.Tensor {
  const order = [...permutation(d.y.length, seededRandom(seed))].filter((i) => keep(d.y[i])).slice(0, n);
  return tf.gather(d.x, tf.tensor1d(order, 'int32'));
}
const own = inputsOf(splits.updateTrain, (c) => c >= 7, 300, 1);
const wider = inputsOf(splits.baseTrain, () => true, 2000, 2);
const held = { x: splits.eval.x.slice(0, 1800) };
const budgetBytes = Math.floor(base.list().reduce((n, t) => n + 4 * t.shape.reduce((a, b) => a * b, 1), 0) * 0.01);

const SEEDS = [3, 4];
/** Agreement with the teacher on the held-out images after each seed's payload, and its bytes. */
const run = async (label: string, extra: Partial<TrainDiffOptions>) => {
  const cells: string[] = [];
  let bytes = 0;
  let before = 0;
  for (const seed of SEEDS) {
    setModelWeights(model, (n) => base.values(n));
    const r = await trainDiff(model, { x: own }, { method: 'sparse', budgetBytes, epochs: 6, seed, tune: 'off', base, teacher, eval: held, allowWorse: true, refuseWorseOnEval: false, threads: 1, ...extra });
    const e = r.teacher?.eval;
    if (!e) throw new Error('no closeness on the held-out inputs');
    cells.push(`${(100 * e.agreementAfter).toFixed(1)}%`);
    bytes = Math.max(bytes, r.bytes.length);
    before = e.agreementBefore;
  }
  console.log(`| ${label} | ${(100 * before).toFixed(1)}% | ${cells.join(' | ')} | ${bytes} |`);
};
console.log(`budget ${budgetBytes} bytes (1%); update's own inputs ${own.shape[0]} (digits 7-9), wider ${wider.shape[0]} (base's 0-6), held out ${held.x.shape[0]} (0-9)`);
console.log(`| distillation inputs | base agrees | ${SEEDS.map((s) => `payload agrees, seed ${s}`).join(' | ')} | bytes (at most) |\n|---|---:|${SEEDS.map(() => '---:|').join('')}---:|`);
await run("the update's own", {});
for (const mix of [0.25, 0.5, 0.75]) await run(`own + \`--distill-inputs\`, \`--distill-mix ${mix}\``, { distillInputs: [{ x: wider }], distillMix: mix });
await run('own + `--augment noise`', { augment: 'noise' });
await run('own + `--augment mixup,noise`', { augment: 'mixup,noise' });
await run('own + `--distill-inputs` (0.5) + `--augment noise`', { distillInputs: [{ x: wider }], augment: 'noise' });
await run('own + `--distill-inputs` (0.5) + `--augment mixup,noise`', { distillInputs: [{ x: wider }], augment: 'mixup,noise' });
await run('own + `--distill-inputs` (0.5) + `--augment auto`', { distillInputs: [{ x: wider }], augment: 'auto', onProgress: (l) => { if (/augment auto: kept/.test(l)) console.log(`  ${l}`); } });
