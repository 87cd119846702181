/**
 * Training cost of learned diffs against full fine-tuning, side by side in one process on the
 * same data and backend: samples/s of whole training runs (every epoch, with the sparse
 * trainer's pruning and hardening and the payload build) of `full`, `sparse` and `hash` on the
 * keyword model (temporal convolutions, ~0.5M parameters) and the MNIST MLP. Methods are
 * interleaved round by round so machine noise hits them alike; the median round is reported.
 *
 *   node --import tsx bench/train-methods.ts [--quick] [--backend wasm|cpu]
 *
 * Goal (issue #3): diff training costs at most 1.25x full fine-tuning per epoch.
 * Writes bench/out/train-methods.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend, type TrainBackendName } from '../src/engine/backend.ts';
import { silenceTfjsNodeBanner } from '../src/engine/quiet.ts';
import { trainDiff } from '../src/train/train-diff.ts';
import { modelToStore, setModelWeights } from '../src/engine/model-weights.ts';
import { mnistModel } from '../examples/lib/mnist-task.ts';
import { keywordModel } from '../examples/keyword-spotting/model.ts';

const quick = process.argv.includes('--quick');
const bi = process.argv.indexOf('--backend');
const backendName = (bi > 0 ? process.argv[bi + 1] : 'wasm') as TrainBackendName;
// --quick (the test's mode) proves the script runs end to end; its figures measure nothing.
const rounds = quick ? 1 : 3;
const epochs = quick ? 1 : 4;

await initBackend(backendName);
silenceTfjsNodeBanner();

interface Case {
  name: string;
  model: () => tf.LayersModel;
  x: () => tf.Tensor;
  classes: number;
  n: number;
}
const cases: Case[] = [
  { name: 'keyword temporal-conv (49x40 log-mel)', model: () => keywordModel(38, 0), x: () => tf.randomNormal([quick ? 256 : 1536, 49, 40, 1], 0, 1, 'float32', 1), classes: 38, n: quick ? 256 : 1536 },
  { name: 'MNIST MLP 196-128-64-10', model: () => mnistModel(0), x: () => tf.randomUniform([quick ? 1024 : 8192, 196], 0, 1, 'float32', 2), classes: 10, n: quick ? 1024 : 8192 },
];

const results: Record<string, unknown>[] = [];
for (const c of cases) {
  const model = c.model();
  const base = modelToStore(model);
  const total = base.list().reduce((a, t) => a + 4 * t.shape.reduce((p, q) => p * q, 1), 0);
  const data = { x: c.x(), y: Int32Array.from({ length: c.n }, (_, i) => (i * 7) % c.classes) };
  const speeds: Record<string, number[]> = { full: [], sparse: [], hash: [] };
  for (let round = 0; round < rounds; round++) {
    for (const method of ['full', 'sparse', 'hash'] as const) {
      setModelWeights(model, (n) => base.values(n));
      // It times training on random labels: whether the result beats the base is not the question.
      const r = await trainDiff(model, data, { method, budgetBytes: Math.floor(total * 0.01), epochs, seed: round, base, allowWorse: true });
      speeds[method].push((c.n * epochs) / r.trainSeconds);
    }
  }
  const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
  const m = { full: median(speeds.full), sparse: median(speeds.sparse), hash: median(speeds.hash) };
  const row = { model: c.name, params: model.countParams(), backend: tf.getBackend(), samplesPerSecond: m, costVsFull: { sparse: m.full / m.sparse, hash: m.full / m.hash }, rounds, epochs, examples: c.n };
  results.push(row);
  console.log(`\n${c.name} (${row.params} params, ${row.backend}, ${c.n} examples x ${epochs} epochs, median of ${rounds} interleaved runs)`);
  console.log(`  full fine-tuning  ${m.full.toFixed(0).padStart(7)} samples/s`);
  console.log(`  sparse diff       ${m.sparse.toFixed(0).padStart(7)} samples/s  -> ${(m.full / m.sparse).toFixed(2)}x the cost of full (goal <= 1.25x)`);
  console.log(`  hash diff         ${m.hash.toFixed(0).padStart(7)} samples/s  -> ${(m.full / m.hash).toFixed(2)}x the cost of full (goal <= 1.25x)`);
  data.x.dispose();
  model.dispose();
}
const outDir = join(import.meta.dirname, 'out');
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'train-methods.json'), JSON.stringify(results, null, 2) + '\n');
