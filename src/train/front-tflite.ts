/**
 * `train()` (and `ndiff train`) on a `.tflite` base: learn a diff of a LiteRT model (src/train/tflite/). Data
 * folders hold one `.npy` per model input, named after the input tensor (`/` and `:` as `_`), or
 * `x.npy` for a model of one input; examples on the first axis, each the input's shape without
 * its batch of 1. `y.npy` (class per example) is optional with `--teacher NEW.tflite`.
 */
import { writeFile } from 'node:fs/promises';
import { epochEvent, fileTrainOutputs, writeMetrics, writeOut, wroteLine, type FrontResult, type TrainReporter } from './front-sources.ts';
import path from 'node:path';
import { UsageError } from '../core/errors.ts';
import { formatBytes, parseBudget } from '../diff/budget.ts';
import { TfliteWeightStore } from '../io/tflite/store.ts';
import { importWithTrainerPeers } from './peer.ts';
import { exampleCount, loadDistillFolders, loadFolder, readTfliteModel, tfliteInputFiles } from './data-folders.ts';
import { writeUpdatedModel } from '../io/model-paths.ts';
import { autoChoiceLines, distillStreamMetrics, methodMetrics, programResultLines, programTrainOptions, settleDefaultMethod, trainingWhat, worseThanBaseWarning, writtenMethod, type ProgramSettings, type TrainSettings, epochScore, lossText } from './front-settings.ts';
import { keptTrainable, structuralLines, structuralMetrics, structuralTeacher, wrapLearned } from './structural-teacher.ts';

/** `train()` on a LiteRT base (a path or a file's bytes). */
export async function trainTfliteFront(a: TrainSettings & ProgramSettings, io: TrainReporter): Promise<FrontResult> {
  if (a.state.length) throw new UsageError('state (--state) is for ONNX models: a .tflite model trains on independent examples here');
  if (a.replay) throw new UsageError('replay (--replay) is for TF.js layers models and ONNX models for now; for a .tflite model put the replayed examples in train (--train)');
  if (a.alsoConsider.length) throw new UsageError('alsoConsider (--also-consider) is for TF.js layers models and ONNX models for now; for a .tflite model leave it out');
  if (a.teacher && !a.teacherBytes && !/\.tflite$/i.test(a.teacher)) throw new UsageError(`teacher (--teacher) ${a.teacher} is not a .tflite file; the base is a LiteRT model: give the new version as a .tflite file`);
  const { tf, initBackend, describeBackend, trainTfliteDiff } = await importWithTrainerPeers(async () => ({
    tf: await import('@tensorflow/tfjs'),
    ...(await import('../engine/backend.ts')),
    ...(await import('./tflite/train-tflite.ts')),
  }), '`ndiff train`');
  const { parseTrainable } = await import('./select.ts');
  // Before any work: the outputs, and the id devices know the model by (never the file name).
  const modelId = await fileTrainOutputs(a);
  const bytes = a.baseBytes ?? await readTfliteModel(a.base, 'base (--base)');
  const teacher = a.teacherBytes ?? (a.teacher ? await readTfliteModel(a.teacher, 'teacher (--teacher)') : undefined);
  // A teacher of another structure: learn on the file the structural payload rebuilds first.
  const teacherStore = teacher ? new TfliteWeightStore(teacher, { source: a.teacher }) : undefined;
  const plan = teacher && teacherStore ? structuralTeacher('tflite', { bytes, store: new TfliteWeightStore(bytes, { source: a.base }) }, { bytes: teacher, store: teacherStore, file: a.teacher as string }) : undefined;
  const trainBytes = plan ? plan.intermediate : bytes;
  const inputs = tfliteInputFiles(trainBytes, a.base);
  const train = loadFolder(a.train, inputs, 'train (--train)', false);
  const val = a.val ? loadFolder(a.val, inputs, 'val (--val)', false).data : undefined;
  const evalData = a.eval ? loadFolder(a.eval, inputs, 'eval (--eval)', false).data : undefined;
  const distillInputs = loadDistillFolders(a.distillInputs ?? [], inputs, train.shared);
  const store = new TfliteWeightStore(trainBytes, { source: a.base });
  a = settleDefaultMethod(a, store.list(), teacherStore?.list(), (l) => io.progress(l));
  const total = store.storedWeightBytes();
  const budgetBytes = a.method === 'full' ? 0 : parseBudget(a.budget, total);
  const backend = await initBackend(a.backend);
  io.progress(`backend ${describeBackend(backend)}; base ${a.base} (LiteRT): ${store.weights().length} weights, ${formatBytes(total)} as stored; ${trainingWhat(a.method, formatBytes(budgetBytes), a.autoSearch)}; ${exampleCount(train.data)} training examples${train.data.labels ? '' : ' (unlabeled)'}${teacher ? `; teacher ${a.teacher}` : ''}`);
  const trainable = plan ? keptTrainable(plan, parseTrainable(a.trainable)) : parseTrainable(a.trainable);
  const res = await trainTfliteDiff(trainBytes, train.data, {
    ...programTrainOptions(a, { budgetBytes, val, evalData, distillInputs, shared: train.shared, modelId, trainable, progress: (m) => io.progress(m), warn: (m) => io.warn(m) }),
    ...(teacher ? { teacher, teacherSource: path.basename(a.teacher as string), teacherWeight: a.teacherWeight, teacherLoss: a.teacherLoss, temperature: a.temperature } : {}),
    source: path.basename(a.base),
    onProgress: (m) => io.progress(m),
    onEpoch: (r) => epochEvent(io, r, `epoch ${r.epoch}/${r.epochs} loss ${lossText(r.loss)}${epochScore(r.trainAccuracy, !!train.data.labels)} · ${r.samplesPerSecond.toFixed(1)} examples/s`),
  });
  tf.disposeVariables();
  if (res.auto) for (const l of autoChoiceLines(res.auto)) io.progress(l);
  const wrapped = plan ? await wrapLearned(plan, bytes, teacher as Uint8Array, res.bytes) : undefined;
  const outBytes = wrapped ? wrapped.built.bytes : res.bytes;
  await writeOut(a.out, outBytes);
  io.out(`${wroteLine(a.out, outBytes.length)} (${((100 * outBytes.length) / total).toFixed(3)}% of the model as stored), ${writtenMethod(a.method, res.auto)}, trained in ${res.trainSeconds.toFixed(1)} s (${Number.isNaN(res.tuning.learningRate) ? `kept ${res.tuning.chosen}` : `learning rate ${res.tuning.learningRate}`})`);
  if (plan && wrapped) for (const line of structuralLines(plan, wrapped.built)) io.out(line);
  for (const line of programResultLines(res, !!evalData?.labels)) io.out(line);
  const worse = worseThanBaseWarning(res);
  if (worse) io.warn(worse);
  // A structural payload's model is rebuilt as a device would; the fingerprint is the payload's target either way.
  if (a.modelOut && wrapped) await writeFile(a.modelOut, wrapped.model);
  const modelOutFingerprint = !a.modelOut ? undefined : wrapped ? wrapped.built.header.targetFingerprint : await writeUpdatedModel(a.base, a.modelOut, res.bytes);
  if (a.modelOut) io.out(`wrote the updated model to ${a.modelOut} (${modelOutFingerprint})`);
  const metrics = {
    kind: 'ndiff-train-metrics', format: 'tflite', ...methodMetrics(a.method, res.auto), ...(a.methodDefault ? { methodDefault: a.methodDefault } : {}), modelId, sequence: a.sequence, budgetBytes,
    budgetRequested: a.method === 'full' ? null : a.budget, bytes: outBytes.length, modelBytes: total,
    ...(plan && wrapped ? { structural: structuralMetrics(plan, wrapped.built) } : {}),
    ...(teacher ? { teacherModelBytes: teacher.length } : {}),
    accuracyBefore: res.accuracyBefore ?? null, accuracyAfter: res.accuracyAfter ?? null, validation: res.validation ?? null, teacher: res.teacher ?? null, teacherEval: res.teacherEval ?? null,
    ...distillStreamMetrics(a, res.augmentation),
    tuning: res.tuning, trainSeconds: res.trainSeconds, epochs: res.epochs, unreachable: res.unreachable, scalars: res.scalars,
    baseFingerprint: wrapped ? wrapped.built.header.baseFingerprint : res.payload.header.baseFingerprint, targetFingerprint: res.payload.header.targetFingerprint,
    backend, seed: a.seed, out: a.out, ...(a.modelOut ? { modelOut: a.modelOut, modelOutFingerprint } : {}),
  };
  await writeMetrics(a.metricsOut, metrics);
  return { doc: metrics, payload: outBytes };
}
