/**
 * A real pretrained model, a real new task: the MobileNetV2 that `nsfwjs` ships (a Keras
 * layers-model, 2.6M weights, BatchNorm, depthwise convolutions, uint8-quantized weights as
 * published) adapted to 5 classes of clothes from Debian's `dataset-fashion-mnist`, each method
 * within 1% of the model as stored, tuned on a validation split, then **applied to a copy of the
 * published folder with the device applier and evaluated by loading that folder with stock
 * tfjs**: the accuracy a user reads here is the accuracy a device gets, sample for sample.
 *
 *   npm run example:pretrained                     all methods at seeds 1,2,3 (~1 h a seed on 2 cores; 2 worker processes)
 *   npm run example:pretrained -- --quick          a few images, full + sparse, no tuning (~1 min; in npm test)
 *   node --import tsx examples/pretrained/run.ts [--methods full,sparse,hash,lora,sparse-lora,topk-retrain]
 *        [--budget 1%] [--epochs 3] [--train-per-class 100] [--eval-per-class 100] [--tune quick]
 *        [--seeds 1,2,3] [--batch-size N] [--jobs 2] [--teacher] [--distill-inputs 0]
 *        [--distill-mix 0.5] [--augment none] [--backend wasm] [--out examples/pretrained/results/full.json]
 *
 * `--seeds`: every method trains once per seed (its validation split, batch order and
 * initialisation; the images stay the same), and the table after the runs gives each method's
 * accuracy at each seed with the mean and spread (min-max): one seed's figure can move by more
 * than a change between versions does (default 1,2,3; 7 alone with --quick). `--batch-size`:
 * examples per step (default: what fits the backend's memory, up to 32).
 *
 * `--teacher`: every method but full trains toward full's result (the model a device gets from
 * the full download, on the uint8 grid) instead of the labels alone, and each row adds its top-1
 * agreement with that teacher on the evaluation images, measured on the applied folder: the
 * teacher row of a method (e.g. `--methods full,lowbit --teacher`). One job: full runs first.
 *
 * With `--teacher` only (full trains on the labels alone, without them):
 * - `--distill-inputs N`: N more images of each of the 5 classes, unlabeled, as the trainer's
 *   wider distillation inputs (the inputs a device meets that the update's labelled set did not
 *   include): the next N of each class in the training split's seeded order after the training
 *   images, so no image is in two of the training, evaluation and distillation sets (evaluation
 *   comes from the other split). `--distill-mix` is their share of the training stream (the
 *   trainer draws as many as the training images at 0.5: more than that widens the pool it
 *   draws from, not the stream).
 * - `--augment LIST`: augmentations each step applies before the teacher and the diff score the
 *   batch (`crop`, `flip`, `colour`, `noise`; `mixup` is refused, the training images have labels).
 *
 * `--backend`: `wasm` (default, the committed figures'), `native` (the OpenBLAS addon, each step
 * cut over a worker pool of the machine's cores; faster on MobileNetV2) or `auto` (native when
 * its addon loads, as `ndiff train` picks).
 *
 * Needs the dev dependency nsfwjs (installed by npm install) and Debian's dataset-fashion-mnist
 * (installed with apt-get when missing; the script says so). Writes the results JSON and prints a
 * table: accuracy of the base and of each update (as the trainer measured it and as the applied
 * folder gives it), payload bytes, the folder's size before and after, training speed, tuning
 * cost, and peak memory of the worker.
 */
import { fork } from 'node:child_process';
import { cp, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { parseBudget } from '../../src/diff/budget.ts';
import { storedModelBytes } from '../../src/diff/build.ts';
import { applyToModelDir } from '../../src/io/tfjs/folder-update.ts';
import { fileSystemIO, openTfjsModelDir, referencedFiles } from '../../src/io/tfjs/index.ts';
import { UsageError } from '../../src/core/errors.ts';
import { initBackend, type TrainBackendName } from '../../src/engine/backend.ts';
import { evaluate, type LabelledData } from '../../src/train/data.ts';
import { setModelWeights } from '../../src/engine/model-weights.ts';
import { silenceTfjsNodeBanner } from '../../src/engine/quiet.ts';
import { trainDiff, type TrainDiffResult, type TuneMode } from '../../src/train/train-diff.ts';
import type { TrainMethod } from '../../src/train/methods.ts';
import { CLASSES, ensureFashionMnist, fashionImages, fashionSets } from './fashion.ts';
import { pretrainedModelDir } from './nsfwjs.ts';
import { dealRuns, parseSeeds, renderSeedSummary, summarizeSeeds, type PretrainedRun } from './seeds.ts';

const here = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    methods: { type: 'string' },
    budget: { type: 'string', default: '1%' },
    epochs: { type: 'string' },
    'train-per-class': { type: 'string' },
    'eval-per-class': { type: 'string' },
    tune: { type: 'string' },
    jobs: { type: 'string' },
    out: { type: 'string' },
    worker: { type: 'string' },
    work: { type: 'string' },
    teacher: { type: 'boolean', default: false },
    'distill-inputs': { type: 'string' },
    'distill-mix': { type: 'string' },
    augment: { type: 'string' },
    backend: { type: 'string' },
    seeds: { type: 'string' },
    'batch-size': { type: 'string' },
  },
});
const quick = args.quick as boolean;
const methods = (args.methods ?? (quick ? 'full,sparse' : 'full,topk-retrain,sparse,hash,lora,sparse-lora')).split(',') as TrainMethod[];
const epochs = Number(args.epochs ?? (quick ? 1 : 3));
const trainPerClass = Number(args['train-per-class'] ?? (quick ? 12 : 100));
const evalPerClass = Number(args['eval-per-class'] ?? (quick ? 8 : 100));
const tune = (args.tune ?? (quick ? 'off' : 'quick')) as TuneMode;
const teacherMode = args.teacher as boolean;
if (teacherMode && methods[0] !== 'full') throw new Error(`--teacher distills toward full's result: list full first in --methods, found ${methods.join(',')}`);
const distillPerClass = Number(args['distill-inputs'] ?? 0);
const distillMix = args['distill-mix'] === undefined ? undefined : Number(args['distill-mix']);
const augment = args.augment ?? 'none';
const seeds = parseSeeds(args.seeds ?? (quick ? '7' : '1,2,3'));
const batchSize = args['batch-size'] === undefined ? undefined : Number(args['batch-size']);
if (batchSize !== undefined && !(Number.isInteger(batchSize) && batchSize >= 1)) throw new UsageError(`--batch-size takes a whole number of examples >= 1, found ${args['batch-size']}`);
const backend = (args.backend ?? 'wasm') as TrainBackendName;
if (!['wasm', 'native', 'auto'].includes(backend)) throw new UsageError(`--backend takes wasm, native or auto, found ${backend}`);
if (!teacherMode && (distillPerClass > 0 || distillMix !== undefined || augment !== 'none')) {
  throw new UsageError('--distill-inputs, --distill-mix and --augment train toward a teacher: pass --teacher (full runs first and teaches the other methods), or leave them out');
}
const jobs = teacherMode ? 1 : Math.max(1, Math.min(Number(args.jobs ?? (quick ? 1 : 2)), methods.length * seeds.length));
const outFile = resolve(args.out ?? join(here, 'results', quick ? 'quick.json' : 'full.json'));
const workDir = resolve(args.work ?? join(tmpdir(), `nd-pretrained-${process.pid}`));
const log = (l: string) => console.log(l);

/** One method's outcome. */
export interface PretrainedRow {
  method: TrainMethod | 'base';
  /** The training run's seed (the base row: the first seed's run measured it; the same for every seed). */
  seed: number;
  budgetBytes: number;
  bytes: number;
  /** Accuracy the trainer measured on the evaluation images (base + payload in memory). */
  accuracy: number;
  /** Accuracy of the applied folder loaded by stock tfjs. */
  folderAccuracy: number;
  /** Every evaluation image predicted the same by the trainer and by the loaded folder. */
  samePredictions: boolean;
  /** Bytes of model.json and its shards before and after the apply. */
  folderBytesBefore: number;
  folderBytesAfter: number;
  /** Every weight entry of model.json (dtype and quantization of every tensor) as it was. */
  manifestKept: boolean;
  valAccuracy: number | null;
  baseValAccuracy: number | null;
  learningRate: number | null;
  tuningCost: number | null;
  trainSeconds: number;
  /** Training speed of the runs on all the training data. */
  samplesPerSecond: number | null;
  batchSize: number | null;
  trainedTensors: number;
  frozenByConfig: number;
  /** Peak resident memory of the worker process so far (VmHWM), MiB. */
  peakRssMiB: number;
  /** With --teacher: top-1 agreement of the applied folder with full's result on the evaluation images (the base's on the base row). */
  teacherAgreement?: number;
}

/** Bytes of the model's own files: model.json and the shards it names (not the applier's records). */
async function folderSize(dir: string): Promise<number> {
  let n = 0;
  for (const f of await referencedFiles(dir)) n += (await stat(join(dir, f))).size;
  return n;
}

/** The weight entries of model.json (names, shapes, dtypes, quantization), without shard paths. */
async function weightEntries(dir: string): Promise<string> {
  const groups = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')).weightsManifest as { weights: unknown[] }[];
  return JSON.stringify(groups.map((g) => g.weights));
}

async function peakRssMiB(): Promise<number> {
  const status = await readFile('/proc/self/status', 'utf8').catch(() => '');
  const m = /VmHWM:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) / 1024 : process.resourceUsage().maxRSS / 1024;
}

function tensorData(d: { x: Float32Array; shape: number[]; y: Int32Array }): LabelledData {
  return { x: tf.tensor(d.x, d.shape, 'float32'), y: d.y };
}

async function runWorker(mine: PretrainedRun[], id: number): Promise<PretrainedRow[]> {
  const backendName = await initBackend(backend);
  silenceTfjsNodeBanner();
  const dir = await pretrainedModelDir('layers');
  const base = await openTfjsModelDir(dir);
  const model = await tf.loadLayersModel(fileSystemIO(dir));
  const total = storedModelBytes(base);
  const budgetBytes = parseBudget(args.budget as string, total);
  const sets = fashionSets({ trainPerClass, evalPerClass, distillPerClass });
  const train = tensorData(fashionImages('train', sets.train));
  const evalData = tensorData(fashionImages('t10k', sets.eval));
  // Unlabeled: only the teacher's outputs teach on them.
  const distill = sets.distill.length ? { x: tf.tensor(fashionImages('train', sets.distill).x, [sets.distill.length, 224, 224, 3], 'float32') } : undefined;
  log(`[job ${id}] backend ${backendName}${distill ? `; ${sets.distill.length} unlabeled distillation images (${distillPerClass} a class)` : ''}${augment !== 'none' ? `; augment ${augment}` : ''}`);
  const manifest = await weightEntries(dir);
  const sizeBefore = await folderSize(dir);
  const rows: PretrainedRow[] = [];
  /** This seed's full fine-tune (topk-retrain retrains its mask) and, with --teacher, it as a model with its predictions. */
  let full: TrainDiffResult | undefined;
  let teacher: { model: tf.LayersModel; predictions: Int32Array } | undefined;
  let fullSeed: number | undefined;
  const agreement = (p: Int32Array) => (teacher ? p.reduce((n, x, i) => n + (x === teacher!.predictions[i] ? 1 : 0), 0) / p.length : undefined);
  for (const { method: m, seed } of mine) {
    const method = m as TrainMethod;
    if (seed !== fullSeed) {
      // A new seed: the last seed's full fine-tune teaches nothing here.
      teacher?.model.dispose();
      teacher = undefined;
      full = undefined;
      fullSeed = seed;
    }
    setModelWeights(model, (n) => (base.list().some((t) => t.name === n) ? base.values(n) : undefined));
    const tag = seeds.length > 1 ? `${method} seed ${seed}` : method;
    log(`[job ${id}] ${tag}: ${train.y.length} training images, ${evalData.y.length} evaluation images, budget ${budgetBytes} bytes (${args.budget} of the ${total}-byte model as stored), tune ${tune}, seed ${seed}`);
    const res = await trainDiff(model, train, {
      method,
      budgetBytes,
      epochs,
      seed,
      ...(batchSize !== undefined ? { batchSize } : {}),
      base,
      eval: evalData,
      tune,
      allowWorse: true, // measured here whatever it gives; the CLI refuses a worse one
      header: { modelId: 'nsfwjs-mobilenet-v2-fashion', sequence: 1 },
      ...(method === 'topk-retrain' && full?.fullWeights ? { fullWeights: full.fullWeights } : {}),
      ...(teacher ? { teacher: teacher.model } : {}),
      ...(teacher && distill ? { distillInputs: [distill], ...(distillMix !== undefined ? { distillMix } : {}) } : {}),
      ...(teacher && augment !== 'none' ? { augment } : {}),
      onProgress: (m) => log(`[job ${id}] ${tag}: ${m}`),
      onEpoch: (r) => log(`[job ${id}] ${tag}: epoch ${r.epoch}/${r.epochs} loss ${r.loss.toFixed(4)} ${r.samplesPerSecond.toFixed(1)} samples/s`),
    });
    if (method === 'full') full = res;
    if (method === 'full' && teacherMode) {
      const t = await tf.loadLayersModel(fileSystemIO(dir));
      setModelWeights(t, (n) => res.targetValues.get(n));
      teacher = { model: t, predictions: evaluate(t, evalData, 16).predictions };
    }
    // The device side: a copy of the published folder, the real applier, stock tfjs loading it.
    const device = join(workDir, `${method}-${seed}-device`);
    await rm(device, { recursive: true, force: true });
    await cp(dir, device, { recursive: true });
    await applyToModelDir(device, res.bytes, { state: null });
    const loaded = await tf.loadLayersModel(fileSystemIO(device));
    const onDevice = evaluate(loaded, evalData, 16);
    loaded.dispose();
    const after = await weightEntries(device);
    const fullRuns = res.tuning.candidates.filter((c) => c.kind !== 'trial');
    const speedReports = res.epochs.filter((e) => e.samplesPerSecond > 0);
    const row: PretrainedRow = {
      method,
      seed,
      budgetBytes: method === 'full' ? 0 : budgetBytes,
      bytes: res.bytes.length,
      accuracy: res.accuracyAfter as number,
      folderAccuracy: onDevice.accuracy,
      samePredictions: onDevice.predictions.every((p, i) => p === res.predictions![i]),
      folderBytesBefore: sizeBefore,
      folderBytesAfter: await folderSize(device),
      manifestKept: after === manifest,
      valAccuracy: res.validation?.accuracy ?? null,
      baseValAccuracy: res.validation?.baseAccuracy ?? null,
      learningRate: res.tuning.learningRate,
      tuningCost: res.tuning.cost,
      trainSeconds: Number(res.trainSeconds.toFixed(1)),
      samplesPerSecond: speedReports.length && fullRuns.length ? Number((speedReports.reduce((a, e) => a + e.samplesPerSecond, 0) / speedReports.length).toFixed(2)) : null,
      batchSize: res.batchSize,
      trainedTensors: res.trainable.trained.length,
      frozenByConfig: res.trainable.frozenByConfig.length,
      peakRssMiB: Math.round(await peakRssMiB()),
      ...(teacher && method !== 'full' ? { teacherAgreement: agreement(onDevice.predictions) } : {}),
    };
    if (!rows.some((r) => r.method === 'base')) {
      rows.push({ ...row, method: 'base', budgetBytes: 0, bytes: 0, accuracy: res.accuracyBefore as number, folderAccuracy: res.accuracyBefore as number, samePredictions: true, folderBytesAfter: sizeBefore, manifestKept: true, valAccuracy: res.validation?.baseAccuracy ?? null, learningRate: null, tuningCost: null, trainSeconds: 0, samplesPerSecond: null, batchSize: null });
    }
    if (teacher && !rows.some((r) => r.method === 'base' && r.teacherAgreement !== undefined)) {
      const b = rows.find((r) => r.method === 'base') as PretrainedRow;
      const unpatched = await tf.loadLayersModel(fileSystemIO(dir));
      b.teacherAgreement = agreement(evaluate(unpatched, evalData, 16).predictions);
      unpatched.dispose();
    }
    rows.push(row);
    log(`[job ${id}] ${tag}: ${row.bytes} bytes, accuracy ${(100 * row.accuracy).toFixed(1)}% (folder loaded by tfjs: ${(100 * row.folderAccuracy).toFixed(1)}%, same predictions: ${row.samePredictions}), folder ${row.folderBytesBefore} -> ${row.folderBytesAfter} bytes`);
    await rm(device, { recursive: true, force: true });
  }
  teacher?.model.dispose();
  train.x.dispose();
  evalData.x.dispose();
  distill?.x.dispose();
  return rows;
}

export function renderTable(rows: PretrainedRow[]): string {
  const pct = (x: number | null) => (x === null ? '-' : `${(100 * x).toFixed(1)}%`);
  const lines = [
    '| method | seed | payload | accuracy (trainer) | accuracy (applied folder, stock tfjs) | same predictions | folder after | validation | lr | tuning cost | train s | samples/s | peak RSS |',
    '|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  const agreeing = rows.some((r) => r.teacherAgreement !== undefined);
  if (agreeing) {
    lines[0] += ' agreement with full (applied folder) |';
    lines[1] += '---:|';
  }
  for (const r of rows) {
    lines.push(`| ${r.method} | ${r.method === 'base' ? '-' : r.seed} | ${r.bytes ? `${r.bytes.toLocaleString('en')} B` : '-'} | ${pct(r.accuracy)} | ${pct(r.folderAccuracy)} | ${r.samePredictions ? 'yes' : '**no**'} | ${r.folderBytesAfter.toLocaleString('en')} B${r.manifestKept ? '' : ' (manifest changed)'} | ${pct(r.valAccuracy)} | ${r.learningRate ?? '-'} | ${r.tuningCost === null ? '-' : `${r.tuningCost.toFixed(2)}x`} | ${r.trainSeconds || '-'} | ${r.samplesPerSecond ?? '-'} | ${r.peakRssMiB} MiB |${agreeing ? ` ${r.teacherAgreement === undefined ? '-' : pct(r.teacherAgreement)} |` : ''}`);
  }
  return lines.join('\n');
}

if (args.worker !== undefined) {
  const id = Number(args.worker);
  const rows = await runWorker(dealRuns(methods, seeds, jobs)[id], id);
  await writeFile(join(workDir, `rows-${id}.json`), JSON.stringify(rows));
  process.exit(0);
}

const t0 = performance.now();
ensureFashionMnist(log);
await mkdir(workDir, { recursive: true });
await pretrainedModelDir('layers'); // extract once before the workers race for it
log(`pretrained MobileNetV2 (nsfwjs) adapted to ${CLASSES.map((c) => c.name).join(', ')}: ${methods.join(', ')} at ${args.budget}, ${epochs} epoch(s), tune ${tune}, seed${seeds.length > 1 ? 's' : ''} ${seeds.join(', ')}${batchSize !== undefined ? `, batch size ${batchSize}` : ''}, ${jobs} job(s)`);
await Promise.all(
  Array.from({ length: jobs }, (_, i) =>
    new Promise<void>((res, rej) => {
      const child = fork(fileURLToPath(import.meta.url), [...process.argv.slice(2).filter((a, k, all) => a !== '--worker' && all[k - 1] !== '--worker' && a !== '--work' && all[k - 1] !== '--work'), '--worker', String(i), '--work', workDir], { execArgv: process.execArgv });
      child.on('exit', (code) => (code === 0 ? res() : rej(new Error(`job ${i} exited with ${code}`))));
    }),
  ),
);
const rows: PretrainedRow[] = [];
for (let i = 0; i < jobs; i++) {
  const file = join(workDir, `rows-${i}.json`);
  if (existsSync(file)) for (const r of JSON.parse(await readFile(file, 'utf8')) as PretrainedRow[]) if (r.method !== 'base' || !rows.some((x) => x.method === 'base')) rows.push(r);
}
const order = ['base', 'full', 'sparse', 'hash', 'lora', 'sparse-lora', 'topk-retrain', 'topk', 'drop', 'lowrank', 'lowbit'];
rows.sort((a, b) => order.indexOf(a.method) - order.indexOf(b.method) || seeds.indexOf(a.seed) - seeds.indexOf(b.seed));
const summary = summarizeSeeds(rows, seeds);
await mkdir(dirname(outFile), { recursive: true });
await writeFile(outFile, JSON.stringify({ epochs, trainPerClass, evalPerClass, tune, budget: args.budget, seeds, batchSize: batchSize ?? null, teacher: teacherMode, ...(teacherMode ? { distillPerClass, distillMix: distillPerClass ? (distillMix ?? 0.5) : null, augment } : {}), backend, classes: CLASSES.map((c) => c.name), rows, summary }, null, 1) + '\n');
await rm(workDir, { recursive: true, force: true });
log('');
log(renderTable(rows));
log('');
log('Accuracy of the applied folder at each seed:');
log('');
log(renderSeedSummary(summary, seeds));
log('');
log(`wrote ${outFile} in ${((performance.now() - t0) / 60000).toFixed(1)} min`);
