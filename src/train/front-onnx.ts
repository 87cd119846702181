/**
 * `train()` (and `ndiff train`) on an ONNX base: learn a diff of an ONNX model (src/train/onnx/train-onnx.ts).
 * Data folders hold one `.npy` per model input, named after it (`input.npy`), examples on the
 * first axis; a 0-d array (`sr.npy` holding 16000) is fed as it is to every example. `y.npy`
 * (class per example) is optional with `--teacher`. Stateful models (`--state state:stateN`) also
 * need `sequence.npy`: the sequence of each frame, a sequence's frames consecutive and in order.
 */
import { writeFile } from 'node:fs/promises';
import { epochEvent, fileTrainOutputs, writeMetrics, writeOut, wroteLine, type FrontResult, type TrainReporter } from './front-sources.ts';
import path from 'node:path';
import { UsageError } from '../core/errors.ts';
import { formatBytes, parseBudget } from '../diff/budget.ts';
import { storedModelBytes } from '../diff/build.ts';
import { OnnxWeightStore } from '../io/onnx/store.ts';
import { importWithTrainerPeers } from './peer.ts';
import { exampleCount, fedInputs, loadDistillFolders, loadFolder, parseStatePairs, readOnnxModel } from './data-folders.ts';
import { readPayloadFile, writeUpdatedModel } from '../io/model-paths.ts';
import { autoChoiceLines, distillStreamMetrics, methodMetrics, programTrainOptions, settleDefaultMethod, teacherEvalLine, trainingWhat, worseThanBaseWarning, writtenMethod, type ProgramSettings, type TrainSettings, epochScore, lossText } from './front-settings.ts';
import { keptTrainable, structuralLines, structuralMetrics, structuralTeacher, wrapLearned } from './structural-teacher.ts';


/** `train()` on an ONNX base (a path, or the bytes of a file with its weights inside). */
export async function trainOnnxFront(a: TrainSettings & ProgramSettings, io: TrainReporter): Promise<FrontResult> {
  const { tf, initBackend, describeBackend, trainOnnxDiff, competingPayload } = await importWithTrainerPeers(async () => ({
    tf: await import('@tensorflow/tfjs'),
    ...(await import('../engine/backend.ts')),
    ...(await import('./onnx/train-onnx.ts')),
    ...(await import('./compete.ts')),
  }), '`ndiff train`');
  const { parseTrainable } = await import('./select.ts');
  // Before any work: the outputs, and the id devices know the model by (never the file name).
  const modelId = await fileTrainOutputs(a);
  // Each model with its external data files (read from beside it, under their locations).
  const base = a.baseBytes ? { bytes: a.baseBytes, external: new Map<string, Uint8Array>() } : await readOnnxModel(a.base, 'base (--base)');
  const bytes = base.bytes;
  if (a.modelOut && base.external.size && path.resolve(path.dirname(a.modelOut)) === path.resolve(path.dirname(a.base))) {
    // Said before training; writing the model checks the same again, by file identity.
    throw new UsageError(`modelOut (--model-out) ${a.modelOut} would write its external data (${[...base.external.keys()].join(', ')}) over base (--base) ${a.base}'s own: expected a place of its own for the new model's files; write it into another folder`);
  }
  const teacherModel = a.teacherBytes ? { bytes: a.teacherBytes, external: new Map<string, Uint8Array>() } : a.teacher ? await readOnnxModel(a.teacher, 'teacher (--teacher)') : undefined;
  const teacher = teacherModel?.bytes;
  // A teacher of another structure: learn on the file the structural payload rebuilds first.
  const teacherStore = teacherModel ? new OnnxWeightStore(teacherModel.bytes, { source: a.teacher, external: teacherModel.external }) : undefined;
  const plan = teacherModel && teacherStore ? structuralTeacher('onnx', { bytes, store: new OnnxWeightStore(bytes, { source: a.base, external: base.external }), external: base.external.size > 0 }, { bytes: teacherModel.bytes, store: teacherStore, external: teacherModel.external.size > 0, file: a.teacher as string }) : undefined;
  if (plan && a.alsoConsider.length) throw new UsageError('alsoConsider (--also-consider) compares payloads on the base\'s structure; the teacher has another, so this training writes a structural payload: leave alsoConsider (--also-consider) out');
  const trainBytes = plan ? plan.intermediate : bytes;
  const state = parseStatePairs(a.state);
  const inputs = fedInputs(trainBytes, a.base, state, base.external);
  const train = loadFolder(a.train, inputs, 'train (--train)', state.length > 0);
  const val = a.val ? loadFolder(a.val, inputs, 'val (--val)', state.length > 0).data : undefined;
  const evalData = a.eval ? loadFolder(a.eval, inputs, 'eval (--eval)', state.length > 0).data : undefined;
  const replay = a.replay ? loadFolder(a.replay, inputs, 'replay (--replay)', state.length > 0).data : undefined;
  const distillInputs = loadDistillFolders(a.distillInputs ?? [], inputs, train.shared);
  const store = new OnnxWeightStore(trainBytes, { source: a.base, external: base.external });
  a = settleDefaultMethod(a, store.list(), teacherStore?.list(), (l) => io.progress(l));
  // Payloads of the same update (a smaller budget, an earlier run) compete on validation with this run's result.
  const competitors = [];
  for (const file of a.alsoConsider) {
    const c = await competingPayload(store, await readPayloadFile(file), `--also-consider ${file}`).catch((e: unknown) => {
      throw new UsageError(`alsoConsider (--also-consider) ${file} cannot compete with this training: ${e instanceof Error ? e.message : String(e)}`);
    });
    const h = c.payload.header;
    if (h.modelId !== modelId || h.sequence !== a.sequence) {
      throw new UsageError(`alsoConsider (--also-consider) ${file} is model ${JSON.stringify(h.modelId)} sequence ${h.sequence}, this training writes ${JSON.stringify(modelId)} sequence ${a.sequence}: pass a payload of the same update (or modelId (--model-id)/sequence (--sequence) to match it)`);
    }
    competitors.push(c);
  }
  const total = storedModelBytes(store);
  const budgetBytes = a.method === 'full' ? 0 : parseBudget(a.budget, total);
  const backend = await initBackend(a.backend);
  io.progress(`backend ${describeBackend(backend)}; base ${a.base}: ${store.weights().length} patchable tensors, ${formatBytes(total)} as stored; ${trainingWhat(a.method, formatBytes(budgetBytes), a.autoSearch)}; ${exampleCount(train.data)} training examples${replay ? ` and ${exampleCount(replay)} replayed (--replay ${a.replay})` : ''}${state.length ? ` in ${new Set(train.data.sequence).size} sequences (state ${state.map((s) => `${s.input} <- ${s.output}`).join(', ')}, backpropagation over ${a.bptt} frame(s))` : ''}${teacher ? `; teacher ${a.teacher}` : ''}`);
  const trainable = plan ? keptTrainable(plan, parseTrainable(a.trainable)) : parseTrainable(a.trainable);
  const res = await trainOnnxDiff(trainBytes, train.data, {
    ...programTrainOptions(a, { budgetBytes, val, evalData, distillInputs, shared: train.shared, modelId, trainable, progress: (m) => io.progress(m), warn: (m) => io.warn(m) }),
    ...(replay ? { replay } : {}),
    ...(competitors.length ? { alsoConsider: competitors } : {}),
    ...(teacher ? { teacher, teacherProgram: { source: path.basename(a.teacher as string), external: teacherModel?.external }, teacherWeight: a.teacherWeight, teacherLoss: a.teacherLoss, temperature: a.temperature } : {}),
    ...(state.length ? { state, bpttFrames: a.bptt } : {}),
    program: { source: path.basename(a.base), external: base.external },
    onProgress: (m) => io.progress(m),
    onEpoch: (r) => epochEvent(io, r, `epoch ${r.epoch}/${r.epochs} loss ${lossText(r.loss)}${epochScore(r.trainAccuracy, !!train.data.labels)} · ${r.samplesPerSecond.toFixed(0)} examples/s`),
  });
  tf.disposeVariables();
  if (res.auto) for (const l of autoChoiceLines(res.auto)) io.progress(l);
  const wrapped = plan ? await wrapLearned(plan, bytes, teacher as Uint8Array, res.bytes) : undefined;
  const outBytes = wrapped ? wrapped.built.bytes : res.bytes;
  await writeOut(a.out, outBytes);
  const pct = (x: number | undefined) => (x === undefined ? 'n/a' : `${(100 * x).toFixed(2)}%`);
  io.out(`${wroteLine(a.out, outBytes.length)} (${((100 * outBytes.length) / total).toFixed(3)}% of the model as stored), ${writtenMethod(a.method, res.auto)}, trained in ${res.trainSeconds.toFixed(1)} s (${Number.isNaN(res.tuning.learningRate) ? `kept ${res.tuning.chosen}` : `learning rate ${res.tuning.learningRate}`})`);
  if (plan && wrapped) for (const line of structuralLines(plan, wrapped.built)) io.out(line);
  if (res.selection) {
    const score = (c: { score?: number; valAccuracy: number }) => (c.score !== undefined ? (res.teacher?.metric === 'mae' ? `mean |Δ| ${(-c.score).toPrecision(4)}` : `${pct(c.score)} agreement`) : pct(c.valAccuracy));
    io.out(`competing on validation: ${res.selection.considered.map((c) => `${c.label} (${c.bytes} bytes, ${score(c)})${c.chosen ? ' written' : ''}`).join('; ')}`);
  }
  const tv = res.teacher?.validation;
  if (tv) io.out(Number.isNaN(tv.agreement) ? `validation, mean |output - teacher| ${tv.baseMeanAbsDiff.toPrecision(3)} -> ${tv.meanAbsDiff.toPrecision(3)} on ${tv.examples} examples` : `validation agreement with the teacher ${pct(tv.baseAgreement)} -> ${pct(tv.agreement)} on ${tv.examples} examples`);
  else if (res.validation) io.out(`validation accuracy ${pct(res.validation.baseAccuracy)} -> ${pct(res.validation.accuracy)} on ${res.validation.examples} examples`);
  const worse = worseThanBaseWarning(res);
  if (worse) io.warn(worse);
  const how = `computed as onnxruntime computes the patched file${state.length ? ', each sequence from its start with the state carried' : ''}`;
  if (res.teacherEval) io.out(teacherEvalLine(res.teacherEval, how));
  if (evalData?.labels) io.out(`eval accuracy ${pct(res.accuracyBefore)} -> ${pct(res.accuracyAfter)} (${how})`);
  if (a.modelOut) {
    // Patched in memory and written as a new model with its external data beside it (refused in
    // the base's own folder when it has external data); a structural one rebuilt as a device would.
    if (wrapped) await writeFile(a.modelOut, wrapped.model);
    else await writeUpdatedModel(a.base, a.modelOut, res.bytes);
    io.out(`wrote the updated model to ${a.modelOut}`);
  }
  const metrics = {
    kind: 'ndiff-train-metrics', format: 'onnx', ...methodMetrics(a.method, res.auto), ...(a.methodDefault ? { methodDefault: a.methodDefault } : {}), modelId, sequence: a.sequence, budgetBytes,
    // The budget as asked (`1%`), so a report labels it so rather than as the bytes' 0.9996%.
    budgetRequested: a.method === 'full' ? null : a.budget, bytes: outBytes.length, modelBytes: total,
    ...(plan && wrapped ? { structural: structuralMetrics(plan, wrapped.built) } : {}),
    ...(teacher ? { teacherModelBytes: teacher.length } : {}),
    accuracyBefore: res.accuracyBefore ?? null, accuracyAfter: res.accuracyAfter ?? null, validation: res.validation ?? null, teacher: res.teacher ?? null, teacherEval: res.teacherEval ?? null,
    ...(res.distill ? { distill: res.distill } : {}), ...(res.distillOff ? { distillOff: res.distillOff } : {}),
    ...(replay ? { replayExamples: exampleCount(replay) } : {}),
    ...distillStreamMetrics(a, res.augmentation),
    // --also-consider: what competed (this run's own result first), and which was written.
    ...(res.selection ? { selection: res.selection.considered } : {}),
    tuning: res.tuning, trainSeconds: res.trainSeconds, epochs: res.epochs, unreachable: res.unreachable, scalars: res.scalars,
    baseFingerprint: wrapped ? wrapped.built.header.baseFingerprint : res.payload.header.baseFingerprint, targetFingerprint: res.payload.header.targetFingerprint, backend, seed: a.seed, out: a.out,
  };
  await writeMetrics(a.metricsOut, metrics);
  return { doc: metrics, payload: outBytes };
}
