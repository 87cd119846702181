/**
 * `ndiff train --base <graph-model folder or .json>`: learn a diff of a TF.js graph model
 * (src/train/tfjs-graph/train-graph.ts). Data folders hold one `.npy` per model input, named
 * after it (`/` and `:` in the name as `_`), or `x.npy` for a model with one input; examples on
 * the first axis; `y.npy` (class per example) is optional with `--teacher`. The teacher is the
 * new version as a graph-model or layers-model folder with the same inputs and outputs. A
 * graph-model teacher of another structure (tensors added, removed, renamed or reshaped, the graph
 * edited) gives a structural payload (train-structural.ts): the kept weights learn on the graph
 * the payload rebuilds first.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../../src/core/errors.ts';
import { formatBytes, parseBudget } from '../../src/diff/budget.ts';
import { storedModelBytes } from '../../src/diff/build.ts';
import { fileSystemIO, locateTfjsModel, openTfjsModel } from '../../src/io/tfjs/index.ts';
import { importWithTrainerPeers } from '../../src/train/peer.ts';
import type { CliIO } from '../common.ts';
import { checkOutputPath, resolveModelId, writeUpdatedModel } from '../models.ts';
import { exampleCount, loadFolder, type InputFile } from '../data-folders.ts';
import { autoChoiceLine, methodMetrics, programResultLines, programTrainOptions, epochScore, settleDefaultMethod, trainingWhat, writtenMethod, type OnnxTrainArgs, type TrainArgs } from './train-args.ts';
import { artifactsOf, samePorts, keptTrainable, readFolderTeacher, structuralLines, structuralMetrics, wrapLearnedFolder, writeRebuiltFolder } from './train-structural.ts';
import { TfjsFilesStore } from '../../src/io/tfjs/files-store.ts';
import type { WeightStore } from '../../src/core/weight-store.ts';

/** `format` of a TF.js model path's model JSON (a folder's model.json, or the `.json` named), or undefined when it has none. */
export async function tfjsModelFormat(p: string, flag: string): Promise<string | undefined> {
  const where = await locateTfjsModel(p).catch(() => {
    throw new UsageError(`cannot read ${flag} ${p}: expected a TF.js model folder (model.json and its shards), a model JSON file (<name>.json with its shards beside it) or an .onnx file`);
  });
  const text = await readFile(path.join(where.dir, where.modelJsonFile), 'utf8').catch(() => {
    throw new UsageError(`no ${where.modelJsonFile} in ${where.dir}: ${flag} must be a TF.js model folder (model.json and its shards) or a model JSON file`);
  });
  try {
    const format = (JSON.parse(text) as { format?: unknown }).format;
    return typeof format === 'string' ? format : undefined;
  } catch {
    return undefined; // the store reports a malformed model JSON with the details
  }
}

/** A handler that loads the model at a TF.js model path (a folder, or a `.json` file beside its shards). */
export async function modelPathIO(p: string): Promise<ReturnType<typeof fileSystemIO>> {
  const where = await locateTfjsModel(p);
  return fileSystemIO(where.dir, where.isFile ? { modelJsonFile: where.modelJsonFile } : {});
}

/** The data file names of a graph input: its name with `/` and `:` as `_`, and `x.npy` when the model has one input. */
function inputFiles(inputs: readonly { name: string }[]): InputFile[] {
  return inputs.map((i) => ({ name: i.name, files: [`${i.name.replace(/[/:\\]/g, '_')}.npy`, ...(inputs.length === 1 ? ['x.npy'] : [])] }));
}

/** `ndiff train` on a TF.js graph-model base. */
export async function runTrainGraph(a: TrainArgs & OnnxTrainArgs, io: CliIO): Promise<number> {
  if (a.state.length) throw new UsageError('--state is for ONNX models for now: a TF.js graph model trains on independent examples here');
  if (a.replay) throw new UsageError('--replay is for TF.js layers models and ONNX models for now; for a graph model put the replayed examples in --train');
  if (a.alsoConsider.length) throw new UsageError('--also-consider is for TF.js layers models and ONNX models for now; for a graph model leave it out and compare the payloads on your own data (ndiff diff --eval does not run graph models yet)');
  const { tf, initBackend, describeBackend, trainTfjsGraphDiff } = await importWithTrainerPeers(async () => ({
    tf: await import('@tensorflow/tfjs'),
    ...(await import('../../src/train/backend.ts')),
    ...(await import('../../src/train/tfjs-graph/train-graph.ts')),
  }), '`ndiff train`');
  const { parseTrainable } = await import('../../src/train/select.ts');
  await checkOutputPath(a.out, '--out');
  // Before any work: the id devices know the model by (never the folder's name).
  const modelId = await resolveModelId(a.base, a.modelId);
  if (a.metricsOut) await checkOutputPath(a.metricsOut, '--metrics-out');
  if (a.modelOut) await checkOutputPath(a.modelOut, '--model-out', 'folder');
  const teacherFormat = a.teacher ? await tfjsModelFormat(a.teacher, '--teacher') : undefined;
  if (a.teacher && /\.onnx$/i.test(a.teacher)) throw new UsageError(`--teacher ${a.teacher} is an ONNX model; the base is a TF.js graph model: give the new version as a TF.js graph-model or layers-model folder`);

  const backend = await initBackend(a.backend);
  let store: WeightStore = await openTfjsModel(a.base);
  let model = await tf.loadGraphModel(await modelPathIO(a.base));
  const teacher = a.teacher
    ? teacherFormat === 'graph-model' ? await tf.loadGraphModel(await modelPathIO(a.teacher)) : await tf.loadLayersModel(await modelPathIO(a.teacher))
    : undefined;
  // A graph-model teacher of another structure, with the base's inputs and outputs: the diff is
  // learned on the graph the structural payload rebuilds first (the teacher's graph, the kept
  // weights the base's), held in memory. One of other inputs or outputs the trainer refuses.
  const folder = teacher && teacherFormat === 'graph-model' ? await readFolderTeacher(a.base, a.teacher as string) : undefined;
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
  const teacherStore = a.teacher ? await openTfjsModel(a.teacher) : undefined;
  const teacherBytes = teacherStore ? storedModelBytes(teacherStore) : undefined;
  a = settleDefaultMethod(a, store.list(), teacherStore?.list(), (l) => io.progress(l));
  const inputs = inputFiles(model.inputs);
  const train = loadFolder(a.train, inputs, '--train', false);
  const val = a.val ? loadFolder(a.val, inputs, '--val', false).data : undefined;
  const evalData = a.eval ? loadFolder(a.eval, inputs, '--eval', false).data : undefined;
  const total = storedModelBytes(store);
  const budgetBytes = a.method === 'full' ? 0 : parseBudget(a.budget, total);
  const examples = exampleCount(train.data);
  io.progress(`backend ${describeBackend(backend)}; base ${a.base} (graph model): ${store.list().filter((t) => t.patchable !== false).length} float tensors, ${formatBytes(total)} as stored; ${trainingWhat(a.method, formatBytes(budgetBytes))}; ${examples} training examples${train.data.labels ? '' : ' (unlabeled)'}${teacher ? `; teacher ${a.teacher} (${teacherFormat === 'graph-model' ? 'graph model' : 'layers model'})` : ''}`);
  try {
    const res = await trainTfjsGraphDiff(model, store, train.data, {
      ...programTrainOptions(a, { budgetBytes, val, evalData, shared: train.shared, modelId, trainable, progress: (m) => io.progress(m), warn: (m) => io.err(`warning: ${m}`) }),
      ...(teacher ? { teacher, teacherSource: a.teacher, teacherWeight: a.teacherWeight, teacherLoss: a.teacherLoss, temperature: a.temperature } : {}),
      source: path.basename(a.base),
      onProgress: (m) => io.progress(m),
      onEpoch: (r) => io.progress(`epoch ${r.epoch}/${r.epochs} loss ${r.loss.toFixed(4)}${epochScore(r.trainAccuracy, !!train.data.labels)} · ${r.samplesPerSecond.toFixed(1)} examples/s`),
    });
    if (res.auto) io.progress(autoChoiceLine(res.auto));
    // A teacher of another structure: the learned payload (from the intermediate) inside a structural payload from the base.
    const built = plan ? await wrapLearnedFolder(plan, baseFiles, res.bytes) : undefined;
    const outBytes = built ? built.bytes : res.bytes;
    await writeFile(a.out, outBytes);
    io.out(`wrote ${a.out}: ${outBytes.length} bytes (${((100 * outBytes.length) / total).toFixed(3)}% of the model as stored), ${writtenMethod(a.method, res.auto)}, trained in ${res.trainSeconds.toFixed(1)} s (learning rate ${res.tuning.learningRate})`);
    if (plan && built) for (const line of structuralLines(plan, built)) io.out(line);
    for (const line of programResultLines(res, !!evalData?.labels)) io.out(line);
    const modelOutFingerprint = !a.modelOut ? undefined : plan && built ? await writeRebuiltFolder(a.base, baseFiles, a.modelOut, outBytes) : await writeUpdatedModel(a.base, a.modelOut, res.bytes);
    if (a.modelOut) io.out(`wrote the updated model to ${a.modelOut} (${modelOutFingerprint})`);
    const metrics = {
      kind: 'ndiff-train-metrics', format: 'tfjs-graph', ...methodMetrics(a.method, res.auto), ...(a.methodDefault ? { methodDefault: a.methodDefault } : {}), modelId, sequence: a.sequence, budgetBytes,
      budgetRequested: a.method === 'full' ? null : a.budget, bytes: outBytes.length, modelBytes: total,
      ...(plan && built ? { structural: structuralMetrics(plan, built) } : {}),
      accuracyBefore: res.accuracyBefore ?? null, accuracyAfter: res.accuracyAfter ?? null, validation: res.validation ?? null,
      teacher: res.teacher ? { path: a.teacher, modelBytes: teacherBytes, ...res.teacher } : null, teacherEval: res.teacherEval ?? null,
      tuning: res.tuning, trainSeconds: res.trainSeconds, epochs: res.epochs, unreachable: res.unreachable, scalars: res.scalars,
      baseFingerprint: built ? built.header.baseFingerprint : res.payload.header.baseFingerprint, targetFingerprint: res.payload.header.targetFingerprint,
      backend, seed: a.seed, out: a.out, ...(a.modelOut ? { modelOut: a.modelOut, modelOutFingerprint } : {}),
    };
    if (a.metricsOut) await writeFile(a.metricsOut, JSON.stringify(metrics, null, 2) + '\n');
    io.result?.(metrics);
  } finally {
    model.dispose();
    teacher?.dispose();
  }
  return 0;
}
