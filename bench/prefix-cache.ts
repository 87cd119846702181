/**
 * What caching a frozen prefix saves (src/train/prefix-cache.ts): the keyword model's last two
 * layers trained (conv1-conv4 frozen by `trainable`), fully fine-tuned and as a sparse diff, each
 * with the cache and with `prefixCacheBytes: 0`, runs interleaved in one process, one thread,
 * with the default learning-rate search (several runs share one cache). Prints the CPU time of
 * each whole run and of its training steps alone, the ratios, and whether both made the same
 * payload bytes; writes bench/out/prefix-cache.json.
 *
 *   node --conditions=neural-diff-source --import tsx bench/prefix-cache.ts [--quick]
 *
 * Random inputs and labels: the time of a step does not depend on the values.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { modelToStore } from '../src/engine/model-weights.ts';
import { trainDiff } from '../src/train/train-diff.ts';
import { keywordModel } from '../examples/keyword-spotting/model.ts';

const quick = process.argv.includes('--quick');
const examples = quick ? 256 : 2048;
const epochs = quick ? 2 : 3;
const rounds = quick ? 1 : 2;
const classes = 12;

await initBackend('wasm');
const x = tf.randomNormal([examples, 49, 40, 1], 0, 1, 'float32', 7);
const y = Int32Array.from({ length: examples }, (_, i) => (i * 7919) % classes);

type Method = 'full' | 'sparse';
const methods: Method[] = ['full', 'sparse'];

const cpuSince = (from: NodeJS.CpuUsage) => {
  const used = process.cpuUsage(from);
  return (used.user + used.system) / 1e6;
};

/** One training job; `stepSeconds` is the CPU time spent from each step's start to its end (the cached activations' computation excluded). */
async function run(method: Method, cache: boolean): Promise<{ cpuSeconds: number; stepSeconds: number; bytes: Uint8Array; cached?: number }> {
  const model = keywordModel(classes, 1);
  const base = modelToStore(model);
  const before = process.cpuUsage();
  let stepSeconds = 0;
  let stepStart: NodeJS.CpuUsage | undefined;
  const r = await trainDiff(model, { x, y }, {
    method, budgetBytes: 8000, epochs, seed: 1, base, threads: 1, batchSize: 64,
    ...(quick ? { tune: 'off' as const, validation: 0 } : {}),
    trainable: /hidden|words/, distill: 0, ...(cache ? {} : { prefixCacheBytes: 0 }),
    // A step's CPU time: from the end of the step before it in the same epoch.
    onBatch: (b) => {
      if (stepStart && b.batch > 1) stepSeconds += cpuSince(stepStart);
      stepStart = process.cpuUsage();
    },
  });
  const cpuSeconds = cpuSince(before);
  model.dispose();
  return { cpuSeconds, stepSeconds, bytes: r.bytes, ...(r.prefixCache ? { cached: r.prefixCache.bytes } : {}) };
}

const rows: { method: Method; round: number; cache: boolean; cpuSeconds: number; stepSeconds: number }[] = [];
let same = true;
let cachedBytes = 0;
for (let round = 1; round <= rounds; round++) {
  for (const method of methods) {
    const off = await run(method, false);
    const on = await run(method, true);
    same &&= Buffer.from(off.bytes).equals(Buffer.from(on.bytes));
    cachedBytes = on.cached ?? 0;
    rows.push({ method, round, cache: false, cpuSeconds: off.cpuSeconds, stepSeconds: off.stepSeconds }, { method, round, cache: true, cpuSeconds: on.cpuSeconds, stepSeconds: on.stepSeconds });
    console.log(`round ${round}, ${method}: every step computes conv1-conv4: ${off.cpuSeconds.toFixed(1)} s CPU (steps ${off.stepSeconds.toFixed(1)} s); cached: ${on.cpuSeconds.toFixed(1)} s CPU (steps ${on.stepSeconds.toFixed(1)} s); whole run ${(off.cpuSeconds / on.cpuSeconds).toFixed(2)}x, steps ${(off.stepSeconds / on.stepSeconds).toFixed(2)}x`);
  }
}
const total = (method: Method, cache: boolean, key: 'cpuSeconds' | 'stepSeconds') => rows.filter((r) => r.method === method && r.cache === cache).reduce((a, r) => a + r[key], 0);
const ratios = Object.fromEntries(methods.map((m) => [m, { run: total(m, false, 'cpuSeconds') / total(m, true, 'cpuSeconds'), steps: total(m, false, 'stepSeconds') / total(m, true, 'stepSeconds') }]));
console.log(`keyword model, ${examples} examples x ${epochs} epochs${quick ? '' : ' with the learning-rate search'}, conv1-conv4 frozen (hidden and words train), one thread, activations cached: ${(cachedBytes / 1048576).toFixed(1)} MiB. CPU time without the cache / with it: ${methods.map((m) => `${m} ${ratios[m].run.toFixed(2)}x the whole run, ${ratios[m].steps.toFixed(2)}x a step`).join('; ')}. Same payload bytes: ${same ? 'yes' : 'NO'}`);

const out = path.join(path.dirname(fileURLToPath(import.meta.url)), 'out');
mkdirSync(out, { recursive: true });
writeFileSync(path.join(out, 'prefix-cache.json'), JSON.stringify({ date: new Date().toISOString(), node: process.version, loadavg: os.loadavg(), quick, examples, epochs, rows, ratios, cachedBytes, samePayload: same }, null, 2) + '\n');
x.dispose();
if (!same) process.exitCode = 1;
