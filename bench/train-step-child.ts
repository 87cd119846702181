/**
 * One of our training configurations in its own process, for bench/train-vs-torch.ts (a process
 * per run makes its peak memory its own: the workers' wasm heaps live in this process too).
 *
 *   node --conditions=neural-diff-source --import tsx bench/train-step-child.ts MODEL THREADS BATCH STEPS CHUNK [BACKEND]
 *
 * Full fine-tuning of every trainable weight through our training loop (src/train/loop.ts): the
 * trainer's Adam (src/engine/kernels/adam.ts, as trainDiff uses it),
 * layers in inference mode, random inputs. BACKEND is `wasm` (default), `native`, `native-pool` or
 * `native-threads` (bench/step-backends.ts): on wasm, THREADS > 1 splits each batch across worker
 * threads; on native, what `ndiff train` does: the worker pool with the native kernels on one
 * thread in each for a model with depthwise convolutions or batch norms (MobileNetV2), else one
 * JavaScript thread with the native kernels on THREADS threads (the addon's); native-pool and
 * native-threads force one or the other (for comparisons; native-blas is native-threads' old name);
 * CHUNK bounds the examples a thread runs at once (gradient accumulation inside the batch).
 * WARMUP steps (3), then STEPS timed steps: the first three steps of a phase record the compiled
 * plan twice and check its first replay against an eager step (src/engine/compiled/capture.ts), a
 * cost each phase pays once (on the keyword model about 0.2 s, as much as a dozen replayed steps)
 * that a training run of hundreds of steps amortizes; PyTorch's rows likewise time the steps after
 * its first. Until this, one warm-up step: the timed steps held two of those three. Prints one JSON line.
 */
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { nativePrefersWorkerPool, setNativeThreads } from '../src/engine/kernels/native/index.ts';
import { Identity } from '../src/train/full-params.ts';
import { trainLoop } from '../src/train/loop.ts';
import { namedVariables } from '../src/engine/model-weights.ts';
import { TrainingPool } from '../src/train/parallel/pool.ts';
import { fileSystemIO } from '../src/io/tfjs/index.ts';
import { keywordModel } from '../examples/keyword-spotting/model.ts';
import { pretrainedModelDir } from '../examples/pretrained/nsfwjs.ts';
import { seededRandom } from '../src/train/data.ts';
import { stepBackend } from './step-backends.ts';
import { adam } from '../src/engine/kernels/adam.ts';

const [modelName, threadsArg, batchArg, stepsArg, chunkArg, backendArg = 'wasm'] = process.argv.slice(2);
const mode = stepBackend(backendArg);
const threads = Number(threadsArg);
const batch = Number(batchArg);
const steps = Number(stepsArg);
const chunk = Number(chunkArg);

await initBackend(mode.backend, mode.backend === 'wasm' ? {} : { threads });
const model = modelName === 'keyword' ? keywordModel(12) : await tf.loadLayersModel(fileSystemIO(await pretrainedModelDir('layers')));
// The worker pool (the native kernels on one thread in each worker), or one thread with the native kernels on every thread.
const pooled = mode.pool === 'always' || (mode.pool === 'auto' && threads > 1 && nativePrefersWorkerPool(model));
if (mode.backend !== 'wasm' && pooled) setNativeThreads(1);
const inputShape = (model.inputs[0].shape as number[]).slice(1);
const classes = model.outputs[0].shape[model.outputs[0].shape.length - 1] as number;
/** Steps before the timed ones: the compiled plan's two recordings and its checked first replay. */
const WARMUP = 3;
const examples = batch * (steps + WARMUP);
const random = seededRandom(7);
const x = tf.tensor(Float32Array.from({ length: examples * inputShape.reduce((a, b) => a * b, 1) }, () => random() * 2 - 1), [examples, ...inputShape]);
const y = Int32Array.from({ length: examples }, () => Math.floor(random() * classes));
// Every layer trains, as PyTorch trains every parameter (batch-norm statistics stay non-trainable).
for (const layer of model.layers) layer.trainable = true;
const vars = namedVariables(model).filter((v) => v.trainable);
const param = new Identity(vars.map((v) => v.name), new Map(vars.map((v) => [v.name, v.variable.name])));
// The trainer's Adam (what `ndiff train` runs: adam.ts's fused step, inside the compiled plan),
// not tfjs' own, whose dozen eager kernel calls per variable ran outside the plan after every step.
const opt = adam(1e-4);
const fromLogits = (model.layers[model.layers.length - 1].getConfig() as { activation?: string }).activation !== 'softmax';
// Threads 1 without a chunk limit is the loop exactly as it runs without a pool.
const poolThreads = pooled ? threads : 1;
const pool = poolThreads > 1 || chunk < batch ? await TrainingPool.start(model, { threads: poolThreads, backend: tf.getBackend(), maxChunk: chunk }) : undefined;
const stamps: number[] = [];
let cpuAtFirst: NodeJS.CpuUsage | undefined;
try {
  let done = 0;
  trainLoop(model, { x, y }, param, { epochs: 1, batchSize: batch, seed: 1, fromLogits, optimizerFor: () => opt, ...(pool ? { pool } : {}), onBatch: () => {
    if (++done < WARMUP) return;
    stamps.push(performance.now());
    cpuAtFirst ??= process.cpuUsage();
  } });
} finally {
  pool?.dispose();
}
const seconds = (stamps[stamps.length - 1] - stamps[0]) / 1000;
// CPU time of every thread of the process over the timed steps: what a step costs whatever the load.
const cpu = process.cpuUsage(cpuAtFirst);
console.log(JSON.stringify({
  samplesPerSecond: (batch * (stamps.length - 1)) / seconds,
  cpuMsPerSample: (cpu.user + cpu.system) / 1000 / (batch * (stamps.length - 1)),
  peakRssBytes: process.resourceUsage().maxRSS * 1024,
  weights: vars.reduce((n, v) => n + v.variable.size, 0),
}));
