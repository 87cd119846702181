/**
 * `ndiff train --base model.tflite`: learn a diff of a LiteRT model (src/train/tflite/). Data
 * folders hold one `.npy` per model input, named after the input tensor (`/` and `:` as `_`), or
 * `x.npy` for a model of one input; examples on the first axis, each the input's shape without
 * its batch of 1. `y.npy` (class per example) is optional with `--teacher NEW.tflite`.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../../src/core/errors.ts';
import { formatBytes, parseBudget } from '../../src/diff/budget.ts';
import { TfliteWeightStore } from '../../src/io/tflite/store.ts';
import { importWithTrainerPeers } from '../../src/train/peer.ts';
import type { CliIO } from '../common.ts';
import { exampleCount, loadFolder, readTfliteModel, tfliteInputFiles } from '../data-folders.ts';
import { checkOutputPath, resolveModelId, writeUpdatedModel } from '../models.ts';
import { programResultLines, programTrainOptions, type OnnxTrainArgs, type TrainArgs } from './train-args.ts';

/** `ndiff train` on a LiteRT base. */
export async function runTrainTflite(a: TrainArgs & OnnxTrainArgs, io: CliIO): Promise<number> {
  if (a.state.length) throw new UsageError('--state is for ONNX models: a .tflite model trains on independent examples here');
  if (a.replay) throw new UsageError('--replay is for TF.js layers models and ONNX models for now; for a .tflite model put the replayed examples in --train');
  if (a.alsoConsider.length) throw new UsageError('--also-consider is for TF.js layers models and ONNX models for now; for a .tflite model leave it out');
  if (a.teacher && !/\.tflite$/i.test(a.teacher)) throw new UsageError(`--teacher ${a.teacher} is not a .tflite file; the base is a LiteRT model: give the new version as a .tflite file with the same inputs and outputs`);
  const { tf, initBackend, trainTfliteDiff } = await importWithTrainerPeers(async () => ({
    tf: await import('@tensorflow/tfjs'),
    ...(await import('../../src/train/backend.ts')),
    ...(await import('../../src/train/tflite/train-tflite.ts')),
  }), '`ndiff train`');
  const { parseTrainable } = await import('../../src/train/select.ts');
  await checkOutputPath(a.out, '--out');
  // Before any work: the id devices know the model by (never the file name).
  const modelId = await resolveModelId(a.base, a.modelId);
  if (a.metricsOut) await checkOutputPath(a.metricsOut, '--metrics-out');
  if (a.modelOut) await checkOutputPath(a.modelOut, '--model-out');
  const bytes = await readTfliteModel(a.base, '--base');
  const teacher = a.teacher ? await readTfliteModel(a.teacher, '--teacher') : undefined;
  const inputs = tfliteInputFiles(bytes, a.base);
  const train = loadFolder(a.train, inputs, '--train', false);
  const val = a.val ? loadFolder(a.val, inputs, '--val', false).data : undefined;
  const evalData = a.eval ? loadFolder(a.eval, inputs, '--eval', false).data : undefined;
  const store = new TfliteWeightStore(bytes, { source: a.base });
  const total = store.storedWeightBytes();
  const budgetBytes = a.method === 'full' ? 0 : parseBudget(a.budget, total);
  const backend = await initBackend(a.backend);
  io.progress(`backend ${backend}; base ${a.base} (LiteRT): ${store.weights().length} weights, ${formatBytes(total)} as stored; ${a.method === 'full' ? 'a full fine-tune' : `a ${a.method} diff within ${formatBytes(budgetBytes)}`}; ${exampleCount(train.data)} training examples${train.data.labels ? '' : ' (unlabeled)'}${teacher ? `; teacher ${a.teacher}` : ''}`);
  const res = await trainTfliteDiff(bytes, train.data, {
    ...programTrainOptions(a, { budgetBytes, val, evalData, shared: train.shared, modelId, trainable: parseTrainable(a.trainable) }),
    ...(teacher ? { teacher, teacherSource: path.basename(a.teacher as string), teacherWeight: a.teacherWeight, teacherLoss: a.teacherLoss, temperature: a.temperature } : {}),
    source: path.basename(a.base),
    onProgress: (m) => io.progress(m),
    onEpoch: (r) => io.progress(`epoch ${r.epoch}/${r.epochs} loss ${r.loss.toFixed(4)} acc ${(100 * r.trainAccuracy).toFixed(1)}% · ${r.samplesPerSecond.toFixed(1)} examples/s`),
  });
  tf.disposeVariables();
  await writeFile(a.out, res.bytes);
  io.out(`wrote ${a.out}: ${res.bytes.length} bytes (${((100 * res.bytes.length) / total).toFixed(3)}% of the model as stored), ${a.method}, trained in ${res.trainSeconds.toFixed(1)} s (${Number.isNaN(res.tuning.learningRate) ? `kept ${res.tuning.chosen}` : `learning rate ${res.tuning.learningRate}`})`);
  for (const line of programResultLines(res, !!evalData?.labels)) io.out(line);
  const modelOutFingerprint = a.modelOut ? await writeUpdatedModel(a.base, a.modelOut, res.bytes) : undefined;
  if (a.modelOut) io.out(`wrote the updated model to ${a.modelOut} (${modelOutFingerprint})`);
  const metrics = {
    kind: 'ndiff-train-metrics', format: 'tflite', method: a.method, modelId, sequence: a.sequence, budgetBytes,
    budgetRequested: a.method === 'full' ? null : a.budget, bytes: res.bytes.length, modelBytes: total,
    ...(teacher ? { teacherModelBytes: teacher.length } : {}),
    accuracyBefore: res.accuracyBefore ?? null, accuracyAfter: res.accuracyAfter ?? null, validation: res.validation ?? null, teacher: res.teacher ?? null, teacherEval: res.teacherEval ?? null,
    tuning: res.tuning, trainSeconds: res.trainSeconds, epochs: res.epochs, unreachable: res.unreachable, scalars: res.scalars,
    baseFingerprint: res.payload.header.baseFingerprint, targetFingerprint: res.payload.header.targetFingerprint,
    backend, seed: a.seed, out: a.out, ...(a.modelOut ? { modelOut: a.modelOut, modelOutFingerprint } : {}),
  };
  if (a.metricsOut) await writeFile(a.metricsOut, JSON.stringify(metrics, null, 2) + '\n');
  io.result?.(metrics);
  return 0;
}
