/**
 * `train()` (and `ndiff train`) on a TF.js graph-model folder or model JSON file: learn a diff of a TF.js graph model
 * (src/train/tfjs-graph/train-graph.ts). Data folders hold one `.npy` per model input, named
 * after it (`/` and `:` in the name as `_`), or `x.npy` for a model with one input; examples on
 * the first axis; `y.npy` (class per example) is optional with `--teacher`. The teacher is the
 * new version as a graph-model or layers-model folder with the same inputs and outputs. A
 * graph-model teacher of another structure (tensors added, removed, renamed or reshaped, the graph
 * edited) gives a structural payload (structural-teacher.ts): the kept weights learn on the graph
 * the payload rebuilds first.
 */
import { epochEvent, TfjsSource, trainModelId, writeMetrics, writeOut, wroteLine, type FrontResult, type TrainReporter } from './front-sources.ts';
import path from 'node:path';
import { UsageError } from '../core/errors.ts';
import { formatBytes, parseBudget } from '../diff/budget.ts';
import { storedModelBytes } from '../diff/build.ts';
import { importWithTrainerPeers } from './peer.ts';
import { checkOutputPath, writeUpdatedModel } from '../io/model-paths.ts';
import { exampleCount, loadDistillFolders, loadFolder, type InputFile } from './data-folders.ts';
import { autoChoiceLines, distillStreamMetrics, methodMetrics, programResultLines, programTrainOptions, settleDefaultMethod, trainingWhat, worseThanBaseWarning, writtenMethod, type ProgramSettings, type TrainSettings, epochScore, lossText } from './front-settings.ts';
import { artifactsOf, samePorts, keptTrainable, structuralFolderTeacher, structuralLines, structuralMetrics, wrapLearnedFolder, writeRebuiltFolder } from './structural-teacher.ts';
import { TfjsFilesStore } from '../io/tfjs/files-store.ts';
import type { WeightStore } from '../core/weight-store.ts';
import type { ModelFile } from '../core/model-files.ts';

/** The base's files, and the plan when the teacher's files have another structure. */
function folderTeacher(baseFiles: ModelFile[], teacherFiles: ModelFile[]) {
  return { baseFiles, plan: structuralFolderTeacher(baseFiles, teacherFiles) };
}

/** The data file names of a graph input: its name with `/` and `:` as `_`, and `x.npy` when the model has one input. */
function inputFiles(inputs: readonly { name: string }[]): InputFile[] {
  return inputs.map((i) => ({ name: i.name, files: [`${i.name.replace(/[/:\\]/g, '_')}.npy`, ...(inputs.length === 1 ? ['x.npy'] : [])] }));
}

/** `train()` on a TF.js graph-model base. */
export async function trainGraphFront(a: TrainSettings & ProgramSettings, io: TrainReporter): Promise<FrontResult> {
  if (a.state.length) throw new UsageError('state (--state) is for ONNX models for now: a TF.js graph model trains on independent examples here');
  if (a.replay) throw new UsageError('replay (--replay) is for TF.js layers models and ONNX models for now; for a graph model put the replayed examples in train (--train)');
  if (a.alsoConsider.length) throw new UsageError('alsoConsider (--also-consider) is for TF.js layers models and ONNX models for now; for a graph model leave it out and compare the payloads on your own data (ndiff diff --eval does not run graph models yet)');
  const { tf, initBackend, describeBackend, trainTfjsGraphDiff } = await importWithTrainerPeers(async () => ({
    tf: await import('@tensorflow/tfjs'),
    ...(await import('../engine/backend.ts')),
    ...(await import('./tfjs-graph/train-graph.ts')),
  }), '`ndiff train`');
  const { parseTrainable } = await import('./select.ts');
  if (a.out) await checkOutputPath(a.out, 'out (--out)');
  // Before any work: the id devices know the model by (never the folder's name).
  const baseSource = new TfjsSource(a.base, a.baseFiles);
  const teacherSource = a.teacher ? new TfjsSource(a.teacher, a.teacherFiles) : undefined;
  const modelId = await trainModelId(a.base, a.modelId, baseSource.inMemory);
  if (a.metricsOut) await checkOutputPath(a.metricsOut, 'metricsOut (--metrics-out)');
  if (a.modelOut) await checkOutputPath(a.modelOut, 'modelOut (--model-out)', 'folder');
  const teacherFormat = teacherSource ? await teacherSource.format('teacher (--teacher)') : undefined;
  if (a.teacher && /\.onnx$/i.test(a.teacher)) throw new UsageError(`teacher (--teacher) ${a.teacher} is an ONNX model; the base is a TF.js graph model: give the new version as a TF.js graph-model or layers-model folder`);

  const backend = await initBackend(a.backend);
  let store: WeightStore = await baseSource.store();
  let model = await tf.loadGraphModel(await baseSource.handler(tf));
  const teacher = teacherSource
    ? teacherFormat === 'graph-model' ? await tf.loadGraphModel(await teacherSource.handler(tf)) : await tf.loadLayersModel(await teacherSource.handler(tf))
    : undefined;
  // A graph-model teacher of another structure, with the base's inputs and outputs: the diff is
  // learned on the graph the structural payload rebuilds first (the teacher's graph, the kept
  // weights the base's), held in memory. One of other inputs or outputs the trainer refuses.
  const folder = teacherSource && teacherFormat === 'graph-model' ? await folderTeacher(await baseSource.files(), await teacherSource.files()) : undefined;
  const baseFiles = folder?.baseFiles ?? [];
  const plan = folder?.plan && samePorts(model, teacher as import('@tensorflow/tfjs').GraphModel, baseFiles[0], folder.plan.teacherFiles[0]) ? folder.plan : undefined;
  const trainable = plan ? keptTrainable(plan, parseTrainable(a.trainable)) : parseTrainable(a.trainable);
  if (plan) {
    model.dispose();
    store = new TfjsFilesStore(plan.intermediateFiles);
    model = await tf.loadGraphModel(tf.io.fromMemory(artifactsOf(plan.intermediateFiles) as import('@tensorflow/tfjs').io.ModelArtifacts));
    io.progress(`the teacher's structure differs from the base's (${plan.reason.split(':')[0]}): training the ${plan.kept.length} weights it keeps from the base on the graph a structural payload rebuilds first (the teacher's graph, its new tensors whole)`);
  }
  // What shipping the teacher whole would cost: a report sets the payloads beside it.
  const teacherStore = teacherSource ? await teacherSource.store() : undefined;
  const teacherBytes = teacherStore ? storedModelBytes(teacherStore) : undefined;
  a = settleDefaultMethod(a, store.list(), teacherStore?.list(), (l) => io.progress(l));
  const inputs = inputFiles(model.inputs);
  const train = loadFolder(a.train, inputs, 'train (--train)', false);
  const val = a.val ? loadFolder(a.val, inputs, 'val (--val)', false).data : undefined;
  const evalData = a.eval ? loadFolder(a.eval, inputs, 'eval (--eval)', false).data : undefined;
  const distillInputs = loadDistillFolders(a.distillInputs ?? [], inputs, train.shared);
  const total = storedModelBytes(store);
  const budgetBytes = a.method === 'full' ? 0 : parseBudget(a.budget, total);
  const examples = exampleCount(train.data);
  io.progress(`backend ${describeBackend(backend)}; base ${a.base} (graph model): ${store.list().filter((t) => t.patchable !== false).length} float tensors, ${formatBytes(total)} as stored; ${trainingWhat(a.method, formatBytes(budgetBytes), a.autoSearch)}; ${examples} training examples${train.data.labels ? '' : ' (unlabeled)'}${teacher ? `; teacher ${a.teacher} (${teacherFormat === 'graph-model' ? 'graph model' : 'layers model'})` : ''}`);
  try {
    const res = await trainTfjsGraphDiff(model, store, train.data, {
      ...programTrainOptions(a, { budgetBytes, val, evalData, distillInputs, shared: train.shared, modelId, trainable, progress: (m) => io.progress(m), warn: (m) => io.warn(m) }),
      ...(teacher ? { teacher, teacherSource: a.teacher, teacherWeight: a.teacherWeight, teacherLoss: a.teacherLoss, temperature: a.temperature } : {}),
      source: path.basename(a.base),
      onProgress: (m) => io.progress(m),
      onEpoch: (r) => epochEvent(io, r, `epoch ${r.epoch}/${r.epochs} loss ${lossText(r.loss)}${epochScore(r.trainAccuracy, !!train.data.labels)} · ${r.samplesPerSecond.toFixed(1)} examples/s`),
    });
    if (res.auto) for (const l of autoChoiceLines(res.auto)) io.progress(l);
    // A teacher of another structure: the learned payload (from the intermediate) inside a structural payload from the base.
    const built = plan ? await wrapLearnedFolder(plan, baseFiles, res.bytes) : undefined;
    const outBytes = built ? built.bytes : res.bytes;
    await writeOut(a.out, outBytes);
    io.out(`${wroteLine(a.out, outBytes.length)} (${((100 * outBytes.length) / total).toFixed(3)}% of the model as stored), ${writtenMethod(a.method, res.auto)}, trained in ${res.trainSeconds.toFixed(1)} s (learning rate ${res.tuning.learningRate})`);
    if (plan && built) for (const line of structuralLines(plan, built)) io.out(line);
    for (const line of programResultLines(res, !!evalData?.labels)) io.out(line);
    const worse = worseThanBaseWarning(res);
    if (worse) io.warn(worse);
    const modelOutFingerprint = !a.modelOut ? undefined : plan && built ? await writeRebuiltFolder(a.base, baseFiles, a.modelOut, outBytes) : await writeUpdatedModel(a.base, a.modelOut, res.bytes);
    if (a.modelOut) io.out(`wrote the updated model to ${a.modelOut} (${modelOutFingerprint})`);
    const metrics = {
      kind: 'ndiff-train-metrics', format: 'tfjs-graph', ...methodMetrics(a.method, res.auto), ...(a.methodDefault ? { methodDefault: a.methodDefault } : {}), modelId, sequence: a.sequence, budgetBytes,
      budgetRequested: a.method === 'full' ? null : a.budget, bytes: outBytes.length, modelBytes: total,
      ...(plan && built ? { structural: structuralMetrics(plan, built) } : {}),
      accuracyBefore: res.accuracyBefore ?? null, accuracyAfter: res.accuracyAfter ?? null, validation: res.validation ?? null,
      teacher: res.teacher ? { path: a.teacher, modelBytes: teacherBytes, ...res.teacher } : null, teacherEval: res.teacherEval ?? null,
      ...distillStreamMetrics(a, res.augmentation),
      tuning: res.tuning, trainSeconds: res.trainSeconds, epochs: res.epochs, unreachable: res.unreachable, scalars: res.scalars,
      baseFingerprint: built ? built.header.baseFingerprint : res.payload.header.baseFingerprint, targetFingerprint: res.payload.header.targetFingerprint,
      backend, seed: a.seed, out: a.out, ...(a.modelOut ? { modelOut: a.modelOut, modelOutFingerprint } : {}),
    };
    await writeMetrics(a.metricsOut, metrics);
    return { doc: metrics, payload: outBytes };
  } finally {
    model.dispose();
    teacher?.dispose();
  }
}
