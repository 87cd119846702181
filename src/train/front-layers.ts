/**
 * `train()` (and `ndiff train`) on a TF.js layers-model folder (src/train/train-diff.ts,
 * src/train/auto.ts): data as an x.npy/y.npy pair or a folder holding them (y optional toward a
 * teacher), the teacher a layers-model or graph-model folder; a layers-model teacher of another
 * structure gives a structural payload (structural-teacher.ts).
 */
import { readFile } from 'node:fs/promises';
import { UsageError } from '../core/errors.ts';
import { formatBytes, parseBudget } from '../diff/budget.ts';
import { storedModelBytes } from '../diff/build.ts';
import { loadInputs, loadXY } from '../io/npy/files.ts';
import type { ModelFile } from '../core/model-files.ts';
import type { WeightStore } from '../core/weight-store.ts';
import { fileSystemIO } from '../io/tfjs/index.ts';
import { TfjsFilesStore } from '../io/tfjs/files-store.ts';
import { checkOutputPath, parseExpiry, readPayloadFile, writeUpdatedModel } from '../io/model-paths.ts';
import type { InputData, LabelledData } from './data.ts';
import type { EpochReport } from './loop.ts';
import type { TrainDiffOptions } from './options.ts';
import type { AutoResult, AutoSearch } from './auto.ts';
import { importWithTrainerPeers } from './peer.ts';
import type { TrainableSpec } from './select.ts';
import { autoCandidateLine, autoChoiceLines, distillStreamMetrics, settleDefaultMethod, worseThanBaseWarning, type TrainSettings, epochScore, lossText } from './front-settings.ts';
import { epochEvent, TfjsSource, trainModelId, writeMetrics, writeOut, wroteLine, type FrontResult, type TrainReporter } from './front-sources.ts';
import type { StructuralFolderTeacher } from './structural-teacher.ts';

const SUPPORTED_LOSSES = ['sparse_categorical_crossentropy', 'categorical_crossentropy', 'sparseCategoricalCrossentropy', 'categoricalCrossentropy'];

function toInputs(tf: typeof import('@tensorflow/tfjs'), path: string, numClasses: number): InputData {
  const d = loadInputs(path, { numClasses });
  return { x: tf.tensor(d.x, d.xShape, 'float32'), ...(d.y ? { y: d.y } : {}) };
}

function toLabelled(tf: typeof import('@tensorflow/tfjs'), path: string, numClasses: number): LabelledData {
  const d = loadXY(path, { numClasses });
  return { x: tf.tensor(d.x, d.xShape, 'float32'), y: d.y };
}

/** `--train` followed by `--replay`, the replayed examples marked (see LabelledData.replay). */
function withReplay(tf: typeof import('@tensorflow/tfjs'), trainPath: string, replayPath: string, numClasses: number): LabelledData {
  const d = loadXY(trainPath, { numClasses });
  const r = loadXY(replayPath, { numClasses });
  if (r.n === 0) throw new UsageError(`replay (--replay) ${replayPath} holds no examples: expected the old data replayed with train (--train); leave replay (--replay) out to train on train (--train) alone`);
  if (r.xShape.slice(1).join('x') !== d.xShape.slice(1).join('x')) {
    throw new UsageError(`replay (--replay) ${replayPath} holds examples of shape [${r.xShape.slice(1).join(', ')}], train (--train) ${trainPath} of shape [${d.xShape.slice(1).join(', ')}]: expected the same; pass replayed data in the form the training data has`);
  }
  const x = new Float32Array(d.x.length + r.x.length);
  x.set(d.x);
  x.set(r.x, d.x.length);
  const y = new Int32Array(d.n + r.n);
  y.set(d.y);
  y.set(r.y, d.n);
  return { x: tf.tensor(x, [d.n + r.n, ...d.xShape.slice(1)], 'float32'), y, replay: new Uint8Array(d.n + r.n).fill(1, d.n) };
}

function bar(done: number, total: number, width = 20): string {
  const filled = Math.round((done / Math.max(1, total)) * width);
  return '[' + '#'.repeat(filled) + '.'.repeat(width - filled) + ']';
}

/** Samples per second with a decimal below 100 (a MobileNetV2 trains at 4.3, not "4"). */
function rate(x: number): string {
  return x >= 100 ? x.toFixed(0) : x.toFixed(1);
}

/** An epoch's progress line; `labelled` false when the training data has no labels (a teacher's top class stands in). */
export function describeEpoch(r: EpochReport, labelled = true): string {
  const st = r.status;
  const extra = [
    st.nonzeros !== undefined ? `non-zeros ${st.nonzeros}/${st.target}` : '',
    st.beta !== undefined ? `β ${st.beta}` : '',
    st.phase !== undefined ? `${st.phase} mask` : '',
    st.buckets !== undefined ? `${st.buckets} buckets` : '',
    st.adapters !== undefined ? `${st.adapters} adapters` : '',
  ].filter(Boolean).join(', ');
  return `epoch ${r.epoch}/${r.epochs} ${bar(r.epoch, r.epochs)} loss ${lossText(r.loss)}${epochScore(r.trainAccuracy, labelled)}${extra ? ' · ' + extra : ''} · ${rate(r.samplesPerSecond)} samples/s`;
}

/** `train()` on a TF.js layers-model base. */
export async function trainLayersFront(a: TrainSettings, io: TrainReporter): Promise<FrontResult> {
  if (!(a.distill >= 0 && Number.isFinite(a.distill))) throw new UsageError(`distill (--distill) must be a weight >= 0 (0 turns it off), found ${a.distill}`);
  if (!(a.valFraction >= 0 && a.valFraction < 1)) throw new UsageError(`valFraction (--val-fraction) must be at least 0 and below 1, found ${a.valFraction}`);
  if (a.valFraction === 0 && !a.val && a.tune !== 'off') throw new UsageError('valFraction (--val-fraction) 0 leaves no validation data to tune on: pass val (--val) DATA, or tune (--tune) off');
  // tfjs and the trainers load only when training (the other commands start faster, and run
  // without tfjs installed); without them, nothing else is worth checking.
  const { tf, initBackend, describeBackend, nativeAddonStatus, NATIVE_HOW_TO, trainDiff, trainAuto, competingPayload, silenceTfjsNodeBanner, parseTrainable, weightRoles, outputLayout } = await importWithTrainerPeers(async () => ({
    tf: await import('@tensorflow/tfjs'),
    ...(await import('../engine/backend.ts')),
    ...(await import('../engine/kernels/native/index.ts')),
    ...(await import('./train-diff.ts')),
    ...(await import('./auto.ts')),
    ...(await import('../engine/quiet.ts')),
    ...(await import('./select.ts')),
    ...(await import('./teacher.ts')),
  }), '`ndiff train`');
  let trainable: TrainableSpec = parseTrainable(a.trainable);
  // Every output is checked before the (possibly hour-long) training starts.
  if (a.out) await checkOutputPath(a.out, 'out (--out)');
  if (a.metricsOut) await checkOutputPath(a.metricsOut, 'metricsOut (--metrics-out)');
  if (a.modelOut) await checkOutputPath(a.modelOut, 'modelOut (--model-out)', 'folder');
  const baseSource = new TfjsSource(a.base, a.baseFiles);
  const teacherSource = a.teacher ? new TfjsSource(a.teacher, a.teacherFiles) : undefined;
  const modelJson = JSON.parse(await (a.baseFiles ? baseSource.modelJsonText() : readFile(`${a.base}/model.json`, 'utf8')).catch(() => {
    throw new UsageError(`no model.json in ${a.base}: base (--base) must be a TF.js layers-model folder (model.json + weight shards)`);
  })) as { format?: string; modelTopology?: unknown; trainingConfig?: { loss?: unknown } };
  if (a.teacher && /\.onnx$/i.test(a.teacher)) throw new UsageError(`teacher (--teacher) ${a.teacher} is an ONNX model; the base is a TF.js layers model: give the new version as a TF.js layers-model or graph-model folder`);
  const teacherFormat = teacherSource ? await teacherSource.format('teacher (--teacher)') : undefined;
  if (!a.teacher && a.sparseStart === 'teacher') throw new UsageError('sparseStart (--sparse-start) teacher needs teacher (--teacher)');
  if (a.sparseShare !== undefined && a.method !== 'sparse-lora') throw new UsageError(`sparseShare (--sparse-share) splits the budget of method (--method) sparse-lora; this run is method (--method) ${a.method}: drop sparseShare (--sparse-share) or use method (--method) sparse-lora`);
  if (a.sparseShare !== undefined && !(a.sparseShare > 0 && a.sparseShare < 1)) throw new UsageError(`sparseShare (--sparse-share): expected a fraction between 0 and 1 (exclusive), e.g. 0.5, found ${a.sparseShare}`);
  const loss = a.loss ?? (typeof modelJson.trainingConfig?.loss === 'string' ? modelJson.trainingConfig.loss : 'sparse_categorical_crossentropy');
  // With a teacher the targets are its outputs: any model (a regressor too) trains toward them.
  if (!a.teacher && !SUPPORTED_LOSSES.includes(loss)) throw new UsageError(`loss ${JSON.stringify(loss)} is not supported by ndiff train (classification losses only: ${SUPPORTED_LOSSES.slice(0, 2).join(', ')}); pass loss (--loss) to override`);

  const modelId = await trainModelId(a.base, a.modelId, baseSource.inMemory);

  silenceTfjsNodeBanner();
  const backend = await initBackend(a.backend);
  const nativeStatus = nativeAddonStatus();
  const why = a.backend === 'auto' && !nativeStatus.available ? ` (the native backend is not available: ${nativeStatus.reason}; ${NATIVE_HOW_TO})` : '';
  io.progress(`backend ${describeBackend(backend)}${why}; loading ${a.base}`);
  let disk: WeightStore = await baseSource.store(true);
  let model = await tf.loadLayersModel(a.baseFiles ? await baseSource.handler(tf) : fileSystemIO(a.base));
  // A graph-model teacher (the new version converted from a SavedModel) is read through tfjs' graph executor.
  const graphTeacher = a.teacher && teacherFormat === 'graph-model'
    ? new (await import('./tfjs-graph/graph-teacher.ts')).GraphModelTeacher(await tf.loadGraphModel(await (teacherSource as TfjsSource).handler(tf)), model.inputs[0].shape.slice(1).map((d) => d ?? 1), a.teacher)
    : undefined;
  const teacher = graphTeacher ? graphTeacher.asLayersModel() : teacherSource ? await tf.loadLayersModel(await teacherSource.handler(tf)) : undefined;
  // A layers-model teacher of another structure (a layer added or reshaped, the topology edited):
  // the diff is learned on the model the structural payload rebuilds first, held in memory as
  // the device will rebuild it. The inputs and outputs must stay the base's: the app feeding the
  // model does not change with a payload.
  let plan: StructuralFolderTeacher | undefined;
  let baseFiles: ModelFile[] = [];
  const structural = teacher && !graphTeacher ? await import('./structural-teacher.ts') : undefined;
  if (teacher && structural) {
    outputLayout(model, teacher);
    baseFiles = await baseSource.files();
    plan = structural.structuralFolderTeacher(baseFiles, await (teacherSource as TfjsSource).files());
  }
  if (plan && structural) {
    if (a.alsoConsider.length) throw new UsageError('alsoConsider (--also-consider) compares payloads on the base\'s structure; the teacher has another, so this training writes a structural payload: leave alsoConsider (--also-consider) out');
    const configTrainable = new Set(weightRoles(model).filter((r) => r.role === 'trainable').map((r) => r.name));
    trainable = structural.keptTrainable(plan, trainable, configTrainable);
    model.dispose();
    disk = new TfjsFilesStore(plan.intermediateFiles);
    model = await tf.loadLayersModel(tf.io.fromMemory(structural.artifactsOf(plan.intermediateFiles) as import('@tensorflow/tfjs').io.ModelArtifacts));
    io.progress(`the teacher's structure differs from the base's (${plan.reason.split(':')[0]}): training the ${plan.kept.length} weights it keeps from the base on the model a structural payload rebuilds first (the teacher's topology, its new tensors whole)`);
  }
  const total = storedModelBytes(disk);
  // What shipping the teacher whole would cost: a report sets the payloads beside it.
  const teacherStore = teacherSource ? await teacherSource.store() : undefined;
  const teacherBytes = teacherStore ? storedModelBytes(teacherStore) : undefined;
  a = settleDefaultMethod(a, disk.list(), teacherStore?.list(), (l) => io.progress(l));
  const budgetBytes = a.method === 'full' ? 0 : parseBudget(a.budget, total);
  const competitors = [];
  for (const file of a.alsoConsider) {
    const bytes = await readPayloadFile(file);
    const c = await competingPayload(disk, bytes, `--also-consider ${file}`).catch((e: unknown) => {
      throw new UsageError(`alsoConsider (--also-consider) ${file} cannot compete with this training: ${e instanceof Error ? e.message : String(e)}`);
    });
    const h = c.payload.header;
    if (h.modelId !== modelId || h.sequence !== a.sequence) {
      throw new UsageError(`alsoConsider (--also-consider) ${file} is model ${JSON.stringify(h.modelId)} sequence ${h.sequence}, this training writes ${JSON.stringify(modelId)} sequence ${a.sequence}: pass a payload of the same update (or modelId (--model-id)/sequence (--sequence) to match it)`);
    }
    competitors.push(c);
  }
  const numClasses = model.outputs[0].shape[model.outputs[0].shape.length - 1] as number;
  io.progress(`loading data: ${a.train}${a.replay ? `, ${a.replay}` : ''}${a.val ? `, ${a.val}` : ''}${a.eval ? `, ${a.eval}` : ''}`);
  // With a teacher, labels are optional: each file pair may lack y.npy.
  const load = (path: string): LabelledData | InputData => (teacher ? toInputs(tf, path, numClasses) : toLabelled(tf, path, numClasses));
  const train = a.replay ? withReplay(tf, a.train, a.replay, numClasses) : load(a.train);
  const val = a.val ? load(a.val) : undefined;
  const evalData = a.eval ? load(a.eval) : undefined;
  const distillInputs = (a.distillInputs ?? []).map((path) => ({ x: toInputs(tf, path, numClasses).x }));
  const count = (d: InputData) => d.x.shape[0];
  const what = a.method === 'full'
    ? 'a full fine-tune (dense payload of every trained tensor, no budget)'
    : `a ${a.method} diff within ${formatBytes(budgetBytes)} (${((100 * budgetBytes) / total).toFixed(2)}% of the model as stored)`;
  io.progress(`base ${a.base}: ${disk.list().length} tensors, ${formatBytes(total)} as stored; ${what}; ${count(train)} training examples${train.y ? '' : ' (unlabeled)'}${a.replay ? ` (${(train.replay as Uint8Array).reduce((n, r) => n + r, 0)} replayed)` : ''}${val ? `, ${count(val)} for validation` : ''}${evalData ? `, ${count(evalData)} for evaluation` : ''}; tuning ${a.tune}${teacher ? `; teacher ${a.teacher}` : ''}`);
  try {
    const options: Omit<TrainDiffOptions, 'method'> & { autoSearch?: AutoSearch } = {
      budgetBytes,
      epochs: a.epochs,
      ...(a.batchSize !== undefined ? { batchSize: a.batchSize } : {}),
      ...(a.threads !== undefined ? { threads: a.threads } : {}),
      ...(a.step ? { step: a.step } : {}),
      ...(a.prefixCacheMb !== undefined ? { prefixCacheBytes: Math.round(a.prefixCacheMb * 1024 * 1024) } : {}),
      seed: a.seed,
      learningRate: a.lr,
      codec: a.codec,
      base: disk,
      eval: evalData,
      validation: val ?? a.valFraction,
      tune: a.tune,
      trainable,
      allowWorse: a.allowWorse,
      distill: a.distill,
      alsoConsider: competitors,
      autoSearch: a.autoSearch,
      ...(a.lowbitCache ? { lowbitCache: a.lowbitCache } : {}),
      ...(a.sparseShare !== undefined ? { sparseShare: a.sparseShare } : {}),
      ...(distillInputs.length ? { distillInputs, distillMix: a.distillMix ?? 0.5 } : {}),
      ...(a.augment && a.augment !== 'none' ? { augment: a.augment } : {}),
      ...(teacher ? { teacher, teacherWeight: a.teacherWeight, teacherLoss: a.teacherLoss, temperature: a.temperature, sparseStart: a.sparseStart } : {}),
      store: a.store,
      header: { modelId, sequence: a.sequence, ...(a.expires ? { expiresAt: parseExpiry(a.expires) } : {}) },
      onProgress: (m) => io.progress(m),
      onWarning: (m) => io.warn(m),
      onBatch: (b) => io.event({ kind: 'batch', epoch: b.epoch, batch: b.batch, batches: b.batches, loss: b.loss, text: `  epoch ${b.epoch} ${bar(b.batch, b.batches)} batch ${b.batch}/${b.batches} loss ${lossText(b.loss)}` }),
      onEpoch: (r) => epochEvent(io, r, describeEpoch(r, (train as { y?: Int32Array }).y !== undefined)),
    };
    const res = a.method === 'auto'
      ? await trainAuto(model, train, options, (c) => io.progress(autoCandidateLine(c)))
      : await trainDiff(model, train, { ...options, method: a.method });
    const auto = 'auto' in res ? (res as AutoResult).auto : undefined;
    if (auto) for (const l of autoChoiceLines(auto)) io.progress(l);
    const method = auto ? auto.chosen : a.method;
    // A teacher of another structure: the learned payload (from the intermediate) inside a structural payload from the base.
    const built = plan && structural ? await structural.wrapLearnedFolder(plan, baseFiles, res.bytes) : undefined;
    const outBytes = built ? built.bytes : res.bytes;
    await writeOut(a.out, outBytes);
    const acc = (x: number | undefined) => (x === undefined ? 'n/a' : `${(100 * x).toFixed(2)}%`);
    io.out(`${wroteLine(a.out, outBytes.length)} (${((100 * outBytes.length) / total).toFixed(3)}% of the model as stored${a.method === 'full' ? '' : `, budget ${budgetBytes}${built ? ' for the learned part' : ''}`}), ${auto ? `auto: ${method}` : method}, trained in ${res.trainSeconds.toFixed(1)} s (${Number.isNaN(res.tuning.learningRate) ? `kept ${res.tuning.chosen}` : `learning rate ${res.tuning.learningRate}`}, ${res.tuning.cost.toFixed(2)}x one run)`);
    if (plan && built && structural) for (const line of structural.structuralLines(plan, built)) io.out(line);
    if (res.validation) io.out(`validation accuracy ${acc(res.validation.baseAccuracy)} -> ${acc(res.validation.accuracy)} on ${res.validation.examples} examples`);
    const worse = worseThanBaseWarning(res);
    if (worse) io.warn(worse);
    if (evalData && res.accuracyAfter !== undefined) io.out(`eval accuracy ${acc(res.accuracyBefore)} -> ${acc(res.accuracyAfter)} (measured on the weights a device gets by applying the payload)`);
    const tv = res.teacher?.validation;
    const te = res.teacher?.eval;
    const close = (agreement: number, mad: number) => `${Number.isNaN(agreement) ? '' : `top-1 agreement ${acc(agreement)}, `}mean |output − teacher| ${mad.toPrecision(3)}`;
    if (tv) io.out(`validation, closeness to the teacher: base ${close(tv.baseAgreement, tv.baseMeanAbsDiff)} -> ${close(tv.agreement, tv.meanAbsDiff)} on ${tv.examples} examples`);
    if (te) io.out(`eval, closeness to the teacher: base ${close(te.agreementBefore, te.meanAbsDiffBefore)} -> ${close(te.agreementAfter, te.meanAbsDiffAfter)} on ${te.examples} examples (the weights a device gets)`);
    // A structural payload's folder is rebuilt from the base's files as a device rebuilds it.
    const modelOutFingerprint = !a.modelOut ? undefined : plan && built && structural ? await structural.writeRebuiltFolder(a.base, baseFiles, a.modelOut, outBytes) : await writeUpdatedModel(a.base, a.modelOut, res.bytes);
    if (a.modelOut) io.out(`wrote the updated model to ${a.modelOut} (${modelOutFingerprint})`);
    const metrics = {
      kind: 'ndiff-train-metrics',
      method,
      ...(a.methodDefault ? { methodDefault: a.methodDefault } : {}),
      ...(auto ? { auto } : {}),
      modelId: res.payload.header.modelId,
      sequence: res.payload.header.sequence,
      budgetBytes,
      // The budget as asked (`1%`), so a report labels it so rather than as the bytes' 0.9996%.
      budgetRequested: a.method === 'full' ? null : a.budget,
      bytes: outBytes.length,
      modelBytes: total,
      ...(plan && built && structural ? { structural: structural.structuralMetrics(plan, built) } : {}),
      accuracyBefore: res.accuracyBefore ?? null,
      accuracyAfter: res.accuracyAfter ?? null,
      validation: res.validation ?? null,
      tuning: res.tuning,
      trainable: { trained: res.trainable.trained.length, frozenByConfig: res.trainable.frozenByConfig.length, statistics: res.trainable.statistics },
      distill: res.distill ?? null,
      ...(res.teacher ? { teacher: { path: a.teacher, modelBytes: teacherBytes, ...res.teacher } } : {}),
      ...(res.distillOff ? { distillOff: res.distillOff } : {}),
      // What the teacher saw: the wider inputs and their share, the augmentation asked and (auto) kept.
      ...distillStreamMetrics(a, res.augmentation),
      // --also-consider: what competed (this run's own result first), and which was written.
      ...(res.selection ? { selection: res.selection.considered } : {}),
      batchSize: res.batchSize,
      trainSeconds: res.trainSeconds,
      epochs: res.epochs,
      baseFingerprint: built ? built.header.baseFingerprint : res.payload.header.baseFingerprint,
      targetFingerprint: res.payload.header.targetFingerprint,
      trainExamples: count(train),
      evalExamples: evalData ? count(evalData) : 0,
      backend,
      seed: a.seed,
      out: a.out,
      ...(a.modelOut ? { modelOut: a.modelOut, modelOutFingerprint } : {}),
    };
    await writeMetrics(a.metricsOut, metrics);
    return { doc: metrics, payload: outBytes };
  } finally {
    train.x.dispose();
    val?.x.dispose();
    evalData?.x.dispose();
    for (const d of distillInputs) d.x.dispose();
    graphTeacher?.dispose();
  }
}
