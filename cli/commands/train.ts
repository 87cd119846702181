import type { Argv } from 'yargs';
import { readFile, writeFile } from 'node:fs/promises';
import { UsageError } from '../../src/core/errors.ts';
import { formatBytes, parseBudget } from '../../src/diff/budget.ts';
import { loadXY } from '../../src/io/npy-files.ts';
import { fileSystemIO, openTfjsModelDir } from '../../src/io/tfjs-artifacts.ts';
import type { TrainBackendName } from '../../src/train/backend.ts';
import type { LabelledData } from '../../src/train/data.ts';
import type { EpochReport } from '../../src/train/loop.ts';
import { TRAIN_METHODS, type TrainMethod } from '../../src/train/methods.ts';
import type { CliIO } from '../common.ts';
import { defaultModelId, modelBytes, parseExpiry, writeUpdatedModel } from '../models.ts';

export interface TrainArgs {
  method: TrainMethod;
  base: string;
  train: string;
  eval?: string;
  budget: string;
  epochs: number;
  seed: number;
  out: string;
  modelOut?: string;
  metricsOut?: string;
  backend: TrainBackendName;
  batchSize: number;
  lr?: number;
  codec: 'auto' | 'f32' | 'f16' | 'i8';
  loss?: string;
  modelId?: string;
  sequence: number;
  expires?: string;
}

const SUPPORTED_LOSSES = ['sparse_categorical_crossentropy', 'categorical_crossentropy', 'sparseCategoricalCrossentropy', 'categoricalCrossentropy'];

export function trainCommand(y: Argv): Argv<TrainArgs> {
  return y
    .option('method', { choices: TRAIN_METHODS, default: 'sparse' as TrainMethod, describe: 'sparse: learned sparse-mask diff; hash: learned hashed-bucket diff; full: fine-tune everything (dense payload); topk|drop|lowrank: compress a full fine-tune after the fact' })
    .option('base', { type: 'string', demandOption: true, describe: 'the model devices hold: a TF.js layers-model folder (model.json + shards)' })
    .option('train', { type: 'string', demandOption: true, describe: 'training data: x.npy/y.npy pair or a folder holding them (y as class indices or one-hot)' })
    .option('eval', { type: 'string', describe: 'evaluation data (same form); reports accuracy before and after' })
    .option('budget', { type: 'string', default: '1%', describe: 'byte budget for the whole payload: `1%` of the float32 model, `40KB`, `40KiB`, or bytes' })
    .option('epochs', { type: 'number', default: 10, describe: 'training epochs' })
    .option('seed', { type: 'number', default: 0, describe: 'seed for batch order and hashing: same seed and data, same payload bytes' })
    .option('out', { type: 'string', demandOption: true, describe: 'payload file to write' })
    .option('model-out', { type: 'string', describe: 'also write the updated model folder (the base patched with the payload, exactly as a device gets it)' })
    .option('metrics-out', { type: 'string', describe: 'write a metrics JSON (accuracy before/after, bytes, time, per-epoch loss)' })
    .option('backend', { choices: ['wasm', 'cpu', 'tensorflow'] as const, default: 'wasm' as TrainBackendName, describe: 'tfjs backend: wasm (fast here, with our kernels), cpu (plain JS), tensorflow (needs @tensorflow/tfjs-node)' })
    .option('batch-size', { type: 'number', default: 64 })
    .option('lr', { type: 'number', describe: 'Adam learning rate (default: 3e-3 for the diff of sparse/hash, 1e-3 for full fine-tuning and post-hoc methods)' })
    .option('codec', { choices: ['auto', 'f32', 'f16', 'i8'] as const, default: 'auto' as const, describe: 'value codec; auto: int8 trained quantization-aware for sparse/hash, the most accurate for post-hoc methods' })
    .option('loss', { type: 'string', describe: "loss (default: the model's training config, else sparse_categorical_crossentropy); classification losses only" })
    .option('model-id', { type: 'string', describe: 'model identifier written in the header (default: the id the base folder recorded in .ndiff-folder.json, else its name); keep one id along a chain of updates' })
    .option('sequence', { type: 'number', default: 1, describe: 'update sequence number' })
    .option('expires', { type: 'string', describe: 'expiry: ISO date or a duration from now (30d, 12h)' })
    .example('$0 train --method sparse --base v1/ --train data/train --eval data/eval --budget 1% --epochs 10 --out v1-v2.ndiff', 'learn a sparse diff within 1% of the model') as unknown as Argv<TrainArgs>;
}

function toLabelled(tf: typeof import('@tensorflow/tfjs'), path: string, numClasses: number): LabelledData {
  const d = loadXY(path, { numClasses });
  return { x: tf.tensor(d.x, d.xShape, 'float32'), y: d.y };
}

function bar(done: number, total: number, width = 20): string {
  const filled = Math.round((done / Math.max(1, total)) * width);
  return '[' + '#'.repeat(filled) + '.'.repeat(width - filled) + ']';
}

export function describeEpoch(r: EpochReport): string {
  const st = r.status;
  const extra = [
    st.nonzeros !== undefined ? `non-zeros ${st.nonzeros}/${st.target}` : '',
    st.beta !== undefined ? `β ${st.beta}` : '',
    st.phase !== undefined ? `${st.phase} mask` : '',
    st.buckets !== undefined ? `${st.buckets} buckets` : '',
  ].filter(Boolean).join(', ');
  return `epoch ${r.epoch}/${r.epochs} ${bar(r.epoch, r.epochs)} loss ${r.loss.toFixed(4)} acc ${(100 * r.trainAccuracy).toFixed(1)}%${extra ? ' · ' + extra : ''} · ${r.samplesPerSecond.toFixed(0)} samples/s`;
}

export async function runTrain(a: TrainArgs, io: CliIO): Promise<number> {
  if (!(a.epochs >= 1)) throw new UsageError(`--epochs must be at least 1, found ${a.epochs}`);
  const modelJson = JSON.parse(await readFile(`${a.base}/model.json`, 'utf8').catch(() => {
    throw new UsageError(`no model.json in ${a.base}: --base must be a TF.js layers-model folder (model.json + weight shards)`);
  })) as { format?: string; modelTopology?: unknown; trainingConfig?: { loss?: unknown } };
  if (modelJson.format === 'graph-model') throw new UsageError(`${a.base} is a graph-model: training needs a layers-model (graph models have no trainable layers in tfjs); convert it as a Keras/layers model`);
  const loss = a.loss ?? (typeof modelJson.trainingConfig?.loss === 'string' ? modelJson.trainingConfig.loss : 'sparse_categorical_crossentropy');
  if (!SUPPORTED_LOSSES.includes(loss)) throw new UsageError(`loss ${JSON.stringify(loss)} is not supported by ndiff train (classification losses only: ${SUPPORTED_LOSSES.slice(0, 2).join(', ')}); pass --loss to override`);

  // tfjs and the trainers load only when training (the other commands start faster).
  const tf = await import('@tensorflow/tfjs');
  const { initBackend } = await import('../../src/train/backend.ts');
  const { trainDiff } = await import('../../src/train/train-diff.ts');
  const { silenceTfjsNodeBanner } = await import('../../src/train/quiet.ts');
  silenceTfjsNodeBanner();
  const backend = await initBackend(a.backend);
  io.progress(`backend ${backend}`);
  const disk = await openTfjsModelDir(a.base);
  const model = await tf.loadLayersModel(fileSystemIO(a.base));
  const total = modelBytes(disk);
  const budgetBytes = parseBudget(a.budget, total);
  const numClasses = model.outputs[0].shape[model.outputs[0].shape.length - 1] as number;
  const train = toLabelled(tf, a.train, numClasses);
  const evalData = a.eval ? toLabelled(tf, a.eval, numClasses) : undefined;
  io.progress(`base ${a.base}: ${disk.list().length} tensors, ${formatBytes(total)} as float32; ${a.method} diff within ${formatBytes(budgetBytes)}; ${train.y.length} training examples${evalData ? `, ${evalData.y.length} for evaluation` : ''}`);
  const interactive = process.stderr.isTTY;
  const res = await trainDiff(model, train, {
    method: a.method,
    budgetBytes,
    epochs: a.epochs,
    batchSize: a.batchSize,
    seed: a.seed,
    learningRate: a.lr,
    codec: a.codec,
    base: disk,
    eval: evalData,
    header: { modelId: a.modelId ?? await defaultModelId(a.base), sequence: a.sequence, ...(a.expires ? { expiresAt: parseExpiry(a.expires) } : {}) },
    onProgress: (m) => io.progress(m),
    onBatch: interactive ? (b) => process.stderr.write(`\r  epoch ${b.epoch} ${bar(b.batch, b.batches)} batch ${b.batch}/${b.batches} loss ${b.loss.toFixed(4)}   `) : undefined,
    onEpoch: (r) => {
      if (interactive) process.stderr.write('\r');
      io.progress(describeEpoch(r));
    },
  });
  await writeFile(a.out, res.bytes);
  const acc = (x: number | undefined) => (x === undefined ? 'n/a' : `${(100 * x).toFixed(2)}%`);
  io.out(`wrote ${a.out}: ${res.bytes.length} bytes (${((100 * res.bytes.length) / total).toFixed(3)}% of the model, budget ${budgetBytes}), ${a.method}, trained in ${res.trainSeconds.toFixed(1)} s`);
  if (evalData) io.out(`eval accuracy ${acc(res.accuracyBefore)} -> ${acc(res.accuracyAfter)} (measured on the weights a device gets by applying the payload)`);
  if (a.modelOut) io.out(`wrote the updated model to ${a.modelOut} (${await writeUpdatedModel(a.base, a.modelOut, res.bytes)})`);
  if (a.metricsOut) {
    const metrics = {
      method: a.method,
      budgetBytes,
      bytes: res.bytes.length,
      modelBytes: total,
      accuracyBefore: res.accuracyBefore ?? null,
      accuracyAfter: res.accuracyAfter ?? null,
      trainSeconds: res.trainSeconds,
      epochs: res.epochs,
      baseFingerprint: res.payload.header.baseFingerprint,
      targetFingerprint: res.payload.header.targetFingerprint,
      trainExamples: train.y.length,
      evalExamples: evalData?.y.length ?? 0,
      backend,
      seed: a.seed,
    };
    await writeFile(a.metricsOut, JSON.stringify(metrics, null, 2) + '\n');
  }
  train.x.dispose();
  evalData?.x.dispose();
  return 0;
}
