import type { Argv } from 'yargs';
import { readFile, writeFile } from 'node:fs/promises';
import { UsageError } from '../../src/core/errors.ts';
import { formatBytes, parseBudget } from '../../src/diff/budget.ts';
import { storedModelBytes } from '../../src/diff/build.ts';
import { loadInputs, loadXY } from '../../src/io/npy/files.ts';
import type { ModelFile } from '../../src/core/model-files.ts';
import type { WeightStore } from '../../src/core/weight-store.ts';
import { fileSystemIO, openTfjsModel, openTfjsModelDir } from '../../src/io/tfjs/index.ts';
import { TfjsFilesStore } from '../../src/io/tfjs/files-store.ts';
import type { TrainBackendName } from '../../src/train/backend.ts';
import type { InputData, LabelledData } from '../../src/train/data.ts';
import type { EpochReport } from '../../src/train/loop.ts';
import { TRAIN_METHODS, type TrainMethod } from '../../src/train/methods.ts';
import type { TrainDiffOptions } from '../../src/train/options.ts';
import type { AutoResult } from '../../src/train/auto.ts';
import { importWithTrainerPeers } from '../../src/train/peer.ts';
import { throttled, type CliIO } from '../common.ts';
import { checkOutputPath, resolveModelId, parseExpiry, readPayloadFile, writeUpdatedModel } from '../models.ts';
import type { TrainableSpec } from '../../src/train/select.ts';
import { autoCandidateLine, autoChoiceLine, checkDistillStream, defaultMethod, epochScore, settleDefaultMethod, type OnnxTrainArgs, type TrainArgs } from './train-args.ts';
import type { StructuralFolderTeacher } from './train-structural.ts';


const SUPPORTED_LOSSES = ['sparse_categorical_crossentropy', 'categorical_crossentropy', 'sparseCategoricalCrossentropy', 'categoricalCrossentropy'];

export function trainCommand(y: Argv): Argv<TrainArgs> {
  return y
    .option('method', {
      choices: [...TRAIN_METHODS, 'auto'] as const,
      describe: '(default: lowbit with --teacher, what the teacher chains measured closest, or sparse when the teacher lacks the base\'s weights; sparse with labels alone; the progress says which) sparse: learned sparse-mask diff; hash: learned hashed-bucket diff; lora: trained low-rank adapters (U·V per weight matrix); sparse-lora: a low-rank and a sparse part trained jointly (LoRA warm-up, the sparse mask from accumulated squared gradients, both from a restart; composite patches, payload format v5: devices need an applier of this release); full: fine-tune every trainable weight (dense payload, the accuracy ceiling); topk-retrain: mask from a full fine-tune, retrained from the base (LT-SFT); lowbit: every change of the teacher (or of a full fine-tune) at 1 to 8 bits or as low-rank factors with a width per singular direction, as `ndiff diff --method lowbit` makes it, then trained toward the teacher or the labels twice from it: its scales (of codes and of factor vectors) with the codes kept (BitDelta\'s distillation), and its codes too, straight through their rounding; the closer on validation is written (format v6 when codes are used; the post-hoc payload competes on validation); topk|drop|lowrank: compress a full fine-tune after the fact; auto: lowbit, sparse, lora, sparse-lora and topk-retrain each trained at the budget (each tuned as --tune says: about five times one method), the best on validation written, every candidate\'s score, bytes and time reported',
    })
    .option('base', { type: 'string', demandOption: true, describe: 'the model devices hold: a TF.js layers-model folder (model.json + shards); a TF.js graph-model folder or model JSON file (data folders then hold one <input>.npy per model input, or x.npy for one input; see docs/tfjs-graph-training.md); an ONNX model (.onnx: one <input>.npy per model input, see docs/onnx-training.md); or a LiteRT model (.tflite: one <input>.npy per model input, or x.npy for one; see docs/guides/litert.md)' })
    .option('train', { type: 'string', demandOption: true, describe: 'training data: x.npy/y.npy pair or a folder holding them (y as class indices or one-hot); with --teacher, y.npy may be absent (unlabeled inputs)' })
    .option('teacher', { type: 'string', describe: "the new version your team already trained, with the base's inputs and outputs: a TF.js layers-model or graph-model folder (or model JSON file) for a TF.js base, an .onnx file for an ONNX base, a .tflite file for a LiteRT base: learn a diff of --base whose outputs match the teacher's on the --train inputs, which need no labels (a teacher diff). Checkpoints, tuning and --also-consider are judged by agreement with the teacher on validation (top-1 agreement for classifiers, whose outputs end in a softmax or are class logits as PyTorch exports them; mean absolute output difference otherwise; the progress says which); a result less close to the teacher than the unpatched base is refused (exit 10) unless --allow-worse. Pass a few thousand unlabeled inputs from where the model runs. A teacher of another structure (tensors added, removed, renamed or reshaped, the graph or topology changed; the same inputs and outputs) gives a structural payload (format v7, devices need neural-diff/rebuild): the weights it keeps from the base learn on the model the payload rebuilds first, its new tensors come whole, and --budget bounds the learned part (the rebuild on top); for .onnx and .tflite files and TF.js folders (a layers-model teacher of a layers-model base, a graph-model teacher of a graph-model base)" })
    .option('teacher-weight', { type: 'number', default: 1, describe: "with --teacher: weight of the teacher term; labels, when y.npy is there, add their cross-entropy at weight 1" })
    .option('teacher-loss', { choices: ['auto', 'kl', 'mse'] as const, default: 'auto' as const, describe: 'with --teacher: kl (divergence of probabilities softened by --temperature; auto for a model whose outputs end in a softmax) or mse (squared error of the raw outputs; auto otherwise)' })
    .option('temperature', { type: 'number', default: 1, describe: 'with --teacher and the kl loss: above 1 softens both distributions so the teacher\'s runner-up classes count more (1, the default, the plain probabilities, measured best on the digits, keyword and Silero updates)' })
    .option('sparse-start', { choices: ['auto', 'zero', 'teacher'] as const, default: 'auto' as const, describe: "with --teacher and --method sparse: start the diff from zero, or from the teacher's change (teacher − base; the teacher must have the base's weights); auto (default): both when the teacher has the base's weights, the closer on validation written (about twice the time: the teacher's change helped fine-tuned updates and hurt a retrained one), else zero" })
    .option('sparse-share', { type: 'number', describe: 'with --method sparse-lora: the share of the budget for the sparse part, in (0, 1); default: 0.5 while the learning rate is tuned, then 0.25 and 0.75 at that rate, the best on validation kept' })
    .option('distill-inputs', { type: 'string', array: true, default: [] as string[], describe: 'with --teacher (TF.js layers models): unlabeled inputs from where the model runs (x.npy or a folder holding it; the base\'s own training inputs, field captures; repeatable), drawn into the training stream beside --train, the teacher\'s outputs their targets' })
    .option('distill-mix', { type: 'number', default: 0.5, describe: 'with --distill-inputs: the share of the training stream drawn from them, in [0, 1) (all of them when fewer; validation is held out of the mixed stream)' })
    .option('augment', { type: 'string', default: 'none', describe: 'with --teacher (TF.js layers models): augmentations each step applies before the teacher and the model score the batch, comma-separated in order: time-shift, gain, noise, time-mask, freq-mask (audio features [frames, bins]), crop, flip, colour (images [h, w, c]), mixup, noise (any input); auto: those that fit the kind of input, each kept only where validation agreement with the teacher improves (up to 2 + candidates runs); none (default: not yet measured better on the keyword chains)' })
    .option('eval', { type: 'string', describe: 'evaluation data (same form): accuracy before and after is reported, never used to choose anything; with --teacher, y.npy may be absent and closeness to the teacher is reported' })
    .option('replay', { type: 'string', describe: 'old data (same form) replayed against forgetting: trained on with --train, and with --distill the only examples whose base outputs are kept, so the update\'s own examples learn from their labels alone (old classes in new conditions may grow surer). Without it, every training example the base gets right is kept' })
    .option('val', { type: 'string', describe: 'validation data (same form) that chooses the learning rate and the checkpoint; default: --val-fraction of the training data' })
    .option('val-fraction', { type: 'number', default: 0.1, describe: 'without --val: the fraction of the training data held out for validation (seeded, stratified); 0 validates nothing (needs --tune off)' })
    .option('tune', { choices: ['quick', 'thorough', 'off'] as const, default: 'quick' as const, describe: 'learning-rate search on validation: quick tries 3 rates on half the data (the start --lr, a third of it, then a ninth if the third was better, else 3x the start) then trains the best (about 2.5x one run); thorough trains 5 rates (5x); off trains one. Every run keeps its best checkpoint, stops early, and is retried lower if it diverges or collapses to one class' })
    .option('trainable', { type: 'string', default: 'config', describe: "which weights train: config (what the model's config leaves trainable), all (frozen layers too), or a regular expression over weight names. BatchNorm moving statistics never train (layers run in inference mode)" })
    .option('distill', { type: 'number', default: 1, describe: "weight of a distillation term that keeps the base model's outputs on the training examples it already classifies right, so an update does not forget what the model knew (train on new data plus replayed old data; the labels alone let old words drift). Off by itself when the base agrees with the training labels little better than chance (Cohen's kappa below 0.2 on the classes it ever answers: a new task, an untrained model); 0 turns it off, e.g. for a base trained briefly that the update should improve on its old classes too" })
    .option('allow-worse', { type: 'boolean', default: false, describe: "write the payload even when its validation accuracy is below the base model's (refused by default: exit 10)" })
    .option('also-consider', { type: 'string', array: true, default: [] as string[], describe: 'payload file(s) made for the same base, model id and sequence (say, this update at a smaller budget): each competes on validation with what this run trains; from the smallest up, a larger payload is written only when it is right on significantly more validation examples (McNemar, one standard error), so extra bytes are spent only where they clearly help. Give it the same --train data, --val-fraction and --seed as the run that made it (or the same --val DATA), so both are judged on rows neither trained on; pass every smaller budget\'s file, each made this way, and a larger budget never validates below any of them' })
    .option('store', { choices: ['stored', 'float32'] as const, default: 'stored' as const, describe: 'stored: tensors the base keeps quantized (uint8/uint16/float16) stay on their grid after the update, so the model keeps its size; float32: patched tensors become float32 on the device' })
    .option('budget', { type: 'string', default: '1%', describe: 'byte budget for the whole payload: `1%` of the model as stored (the bytes of its weight files: uint8 tensors count 1 byte a weight), `40KB`, `40KiB`, or bytes. Ignored by --method full' })
    .option('epochs', { type: 'number', default: 10, describe: 'epochs of a full run (early stopping may end it sooner)' })
    .option('seed', { type: 'number', default: 0, describe: 'seed for splits, batch order and hashing: same seed and data, same payload bytes' })
    .option('out', { type: 'string', demandOption: true, describe: 'payload file to write (checked before training starts)' })
    .option('model-out', { type: 'string', describe: 'also write the updated model folder (the base patched with the payload, exactly as a device gets it)' })
    .option('metrics-out', { type: 'string', describe: 'write a metrics JSON (accuracy before/after, validation, tuning, bytes, time, per-epoch loss); `ndiff report` reads it' })
    .option('backend', { choices: ['auto', 'wasm', 'native', 'cpu', 'tensorflow'] as const, default: 'auto' as TrainBackendName, describe: 'tfjs backend: auto (native when its addon is built, else wasm), wasm (portable, with our kernels; 4 GiB of memory), native (wasm with convolutions and matmuls on the system\'s OpenBLAS: apt-get install libopenblas-dev, then npm run build:native), cpu (plain JS), tensorflow (needs @tensorflow/tfjs-node)' })
    .option('threads', { type: 'number', describe: 'threads computing each step: the batch is split across worker threads and their gradients summed in a fixed order (default: every core of the machine; 1 trains on one thread); on the native backend, one JavaScript thread and OpenBLAS on this many, or for a model with depthwise convolutions or batch norms the worker threads with OpenBLAS on one each. The same seed, backend and thread count give the same payload; another count rounds differently, so its bytes differ slightly' })
    .option('prefix-cache-mb', { type: 'number', describe: 'memory bound (MiB) for caching the outputs of the model\'s first layers when none of them trains (frozen by the model\'s config or --trainable): computed once per example instead of at every step; 0 turns it off (TF.js layers-models; default 512)' })
    .option('batch-size', { type: 'number', describe: "examples per step (default: 32, or the most the backend's memory takes; a larger request is refused with the largest that fits)" })
    .option('lr', { type: 'number', describe: 'learning rate to start the search from (Adam): default 3e-3 for the diff values of sparse/hash/lora/topk-retrain, 3e-4 for the weights in full fine-tuning (also behind topk/drop/lowrank)' })
    .option('codec', { choices: ['auto', 'f32', 'f16', 'i8'] as const, default: 'auto' as const, describe: 'value codec; auto: int8 trained quantization-aware for learned methods, the most accurate for post-hoc ones' })
    .option('loss', { type: 'string', describe: "loss (default: the model's training config, else sparse_categorical_crossentropy); classification losses only" })
    .option('model-id', { type: 'string', describe: 'the id devices know this model by, written in the payload (devices refuse a payload for another id); keep one id along a chain of updates. Required unless the base folder recorded one (.ndiff-folder.json, written by ndiff apply and --model-out); never taken from the folder name' })
    .option('sequence', { type: 'number', default: 1, describe: 'update sequence number' })
    .option('expires', { type: 'string', describe: 'expiry: ISO date or a duration from now (30d, 12h)' })
    .option('state', { type: 'string', array: true, default: [] as string[], describe: 'ONNX stateful models: INPUT:OUTPUT pairs carried from frame to frame (Silero VAD: --state state:stateN); the data folders then need sequence.npy' })
    .option('bptt', { type: 'number', default: 1, describe: 'ONNX stateful models: frames the gradient flows back through, from the state carried into the first of them' })
    .option('output', { type: 'string', describe: 'ONNX and TF.js graph models: the output to train (default: the first that is not a state)' })
    .option('output-kind', { choices: ['probability', 'logit', 'probabilities', 'logits', 'values'] as const, describe: 'ONNX, TF.js graph and LiteRT models: how the output reads (default: probability of class 1 for one value per example; else probabilities after a Softmax, plain values (no classes: matched by closeness) after a Sigmoid or for a map, logits otherwise)' })
    .example('$0 train --method sparse --model-id kws-en --base v1/ --train data/train --eval data/eval --budget 1% --epochs 10 --out v1-v2.ndiff', 'learn a sparse diff within 1% of the model as stored')
    .example('$0 train --model-id kws-en --base v1/ --train data/train --budget 5% --also-consider v1-v2-1pct.ndiff --out v1-v2-5pct.ndiff', 'a 5% diff that is never worse on validation than the 1% one already made')
    .example('$0 train --model-id kws-en --base v1/ --teacher v2/ --train unlabeled/ --budget 1% --out v1-v2.ndiff', 'ship the v2 your team trained: a 1% diff of v1 that agrees with v2 (no labels needed)')
    .example('$0 train --method sparse-lora --model-id kws-en --base v1/ --train data/train --budget 1% --out v1-v2.ndiff', 'a low-rank part for the many small changes and a sparse part for the few large ones, in one payload')
    .example('$0 train --method full --model-id kws-en --base v1/ --train data/train --trainable all --tune thorough --out full.ndiff', 'the honest ceiling: a tuned full fine-tune of every layer')
    .example('$0 train --model-id pose --base movenet-v1/ --teacher movenet-v2/ --train frames/ --budget 5% --out v1-v2.ndiff', 'a TF.js graph model (converter output, "format": "graph-model"): frames/ holds one .npy per model input (or x.npy); operators tfjs cannot differentiate are refused by name before training')
    .example('$0 train --model-id silero-vad --base silero_vad_v5.onnx --teacher silero_vad_v6.onnx --state state:stateN --train frames/ --budget 2% --out v5-v6.ndiff', 'ONNX: teach v5 what v6 says over audio frames (frames/: input.npy [n, 576], sr.npy 16000, sequence.npy)') as unknown as Argv<TrainArgs>;
}

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
  if (r.n === 0) throw new UsageError(`--replay ${replayPath} holds no examples: expected the old data replayed with --train; leave --replay out to train on --train alone`);
  if (r.xShape.slice(1).join('x') !== d.xShape.slice(1).join('x')) {
    throw new UsageError(`--replay ${replayPath} holds examples of shape [${r.xShape.slice(1).join(', ')}], --train ${trainPath} of shape [${d.xShape.slice(1).join(', ')}]: expected the same; pass replayed data in the form the training data has`);
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
  return `epoch ${r.epoch}/${r.epochs} ${bar(r.epoch, r.epochs)} loss ${r.loss.toFixed(4)}${epochScore(r.trainAccuracy, labelled)}${extra ? ' · ' + extra : ''} · ${rate(r.samplesPerSecond)} samples/s`;
}

export async function runTrain(a: TrainArgs, io: CliIO): Promise<number> {
  if (!(a.epochs >= 1)) throw new UsageError(`--epochs must be at least 1, found ${a.epochs}`);
  if ((a.method as TrainArgs['method'] | undefined) === undefined) {
    // Without --method: what the measured tables put first (lowbit toward a teacher, sparse with
    // labels); each runner settles it once the teacher is read, and says so before training.
    const d = defaultMethod(!!a.teacher);
    a = { ...a, method: d.method, methodDefault: d };
  }
  // Every kind of base trains with tfjs: without it, say what to install before anything else.
  await importWithTrainerPeers(() => import('@tensorflow/tfjs'), '`ndiff train`');
  if (a.distillInputs?.length || (a.augment ?? 'none') !== 'none') checkDistillStream(a, /\.tflite$/i.test(a.base) ? 'a LiteRT file' : /\.onnx$/i.test(a.base) ? 'an ONNX file' : (await (await import('./train-graph.ts')).tfjsModelFormat(a.base, '--base')) === 'graph-model' ? 'a TF.js graph model' : undefined);
  if (/\.tflite$/i.test(a.base)) return (await import('./train-tflite.ts')).runTrainTflite(a as TrainArgs & OnnxTrainArgs, io);
  if (/\.onnx$/i.test(a.base)) return (await import('./train-onnx.ts')).runTrainOnnx(a as TrainArgs & OnnxTrainArgs, io);
  const { tfjsModelFormat, modelPathIO } = await import('./train-graph.ts');
  if ((await tfjsModelFormat(a.base, '--base')) === 'graph-model') return (await import('./train-graph.ts')).runTrainGraph(a as TrainArgs & OnnxTrainArgs, io);
  if ((a as Partial<OnnxTrainArgs>).state?.length) throw new UsageError('--state is for ONNX models (--base model.onnx): a TF.js model carries no state between examples here');
  if (!(a.distill >= 0 && Number.isFinite(a.distill))) throw new UsageError(`--distill must be a weight >= 0 (0 turns it off), found ${a.distill}`);
  if (!(a.valFraction >= 0 && a.valFraction < 1)) throw new UsageError(`--val-fraction must be at least 0 and below 1, found ${a.valFraction}`);
  if (a.valFraction === 0 && !a.val && a.tune !== 'off') throw new UsageError('--val-fraction 0 leaves no validation data to tune on: pass --val DATA, or --tune off');
  // tfjs and the trainers load only when training (the other commands start faster, and run
  // without tfjs installed); without them, nothing else is worth checking.
  const { tf, initBackend, describeBackend, nativeAddonStatus, NATIVE_HOW_TO, trainDiff, trainAuto, competingPayload, silenceTfjsNodeBanner, parseTrainable, weightRoles, outputLayout } = await importWithTrainerPeers(async () => ({
    tf: await import('@tensorflow/tfjs'),
    ...(await import('../../src/train/backend.ts')),
    ...(await import('../../src/train/kernels/native/index.ts')),
    ...(await import('../../src/train/train-diff.ts')),
    ...(await import('../../src/train/auto.ts')),
    ...(await import('../../src/train/quiet.ts')),
    ...(await import('../../src/train/select.ts')),
    ...(await import('../../src/train/teacher.ts')),
  }), '`ndiff train`');
  let trainable: TrainableSpec = parseTrainable(a.trainable);
  // Every output is checked before the (possibly hour-long) training starts.
  await checkOutputPath(a.out, '--out');
  if (a.metricsOut) await checkOutputPath(a.metricsOut, '--metrics-out');
  if (a.modelOut) await checkOutputPath(a.modelOut, '--model-out', 'folder');
  const modelJson = JSON.parse(await readFile(`${a.base}/model.json`, 'utf8').catch(() => {
    throw new UsageError(`no model.json in ${a.base}: --base must be a TF.js layers-model folder (model.json + weight shards)`);
  })) as { format?: string; modelTopology?: unknown; trainingConfig?: { loss?: unknown } };
  if (a.teacher && /\.onnx$/i.test(a.teacher)) throw new UsageError(`--teacher ${a.teacher} is an ONNX model; the base is a TF.js layers model: give the new version as a TF.js layers-model or graph-model folder`);
  const teacherFormat = a.teacher ? await tfjsModelFormat(a.teacher, '--teacher') : undefined;
  if (!a.teacher && a.sparseStart === 'teacher') throw new UsageError('--sparse-start teacher needs --teacher');
  if (a.sparseShare !== undefined && a.method !== 'sparse-lora') throw new UsageError(`--sparse-share splits the budget of --method sparse-lora; this run is --method ${a.method}: drop --sparse-share or use --method sparse-lora`);
  if (a.sparseShare !== undefined && !(a.sparseShare > 0 && a.sparseShare < 1)) throw new UsageError(`--sparse-share: expected a fraction between 0 and 1 (exclusive), e.g. 0.5, found ${a.sparseShare}`);
  const loss = a.loss ?? (typeof modelJson.trainingConfig?.loss === 'string' ? modelJson.trainingConfig.loss : 'sparse_categorical_crossentropy');
  // With a teacher the targets are its outputs: any model (a regressor too) trains toward them.
  if (!a.teacher && !SUPPORTED_LOSSES.includes(loss)) throw new UsageError(`loss ${JSON.stringify(loss)} is not supported by ndiff train (classification losses only: ${SUPPORTED_LOSSES.slice(0, 2).join(', ')}); pass --loss to override`);

  const modelId = await resolveModelId(a.base, a.modelId);

  silenceTfjsNodeBanner();
  const backend = await initBackend(a.backend);
  const nativeStatus = nativeAddonStatus();
  const why = a.backend === 'auto' && !nativeStatus.available ? ` (the native backend is not available: ${nativeStatus.reason}; ${NATIVE_HOW_TO})` : '';
  io.progress(`backend ${describeBackend(backend)}${why}; loading ${a.base}`);
  let disk: WeightStore = await openTfjsModelDir(a.base);
  let model = await tf.loadLayersModel(fileSystemIO(a.base));
  // A graph-model teacher (the new version converted from a SavedModel) is read through tfjs' graph executor.
  const graphTeacher = a.teacher && teacherFormat === 'graph-model'
    ? new (await import('../../src/train/tfjs-graph/graph-teacher.ts')).GraphModelTeacher(await tf.loadGraphModel(await modelPathIO(a.teacher)), model.inputs[0].shape.slice(1).map((d) => d ?? 1), a.teacher)
    : undefined;
  const teacher = graphTeacher ? graphTeacher.asLayersModel() : a.teacher ? await tf.loadLayersModel(await modelPathIO(a.teacher)) : undefined;
  // A layers-model teacher of another structure (a layer added or reshaped, the topology edited):
  // the diff is learned on the model the structural payload rebuilds first, held in memory as
  // the device will rebuild it. The inputs and outputs must stay the base's: the app feeding the
  // model does not change with a payload.
  let plan: StructuralFolderTeacher | undefined;
  let baseFiles: ModelFile[] = [];
  const structural = teacher && !graphTeacher ? await import('./train-structural.ts') : undefined;
  if (teacher && structural) {
    outputLayout(model, teacher);
    ({ baseFiles, plan } = await structural.readFolderTeacher(a.base, a.teacher as string));
  }
  if (plan && structural) {
    if (a.alsoConsider.length) throw new UsageError('--also-consider compares payloads on the base\'s structure; the teacher has another, so this training writes a structural payload: leave --also-consider out');
    const configTrainable = new Set(weightRoles(model).filter((r) => r.role === 'trainable').map((r) => r.name));
    trainable = structural.keptTrainable(plan, trainable, configTrainable);
    model.dispose();
    disk = new TfjsFilesStore(plan.intermediateFiles);
    model = await tf.loadLayersModel(tf.io.fromMemory(structural.artifactsOf(plan.intermediateFiles) as import('@tensorflow/tfjs').io.ModelArtifacts));
    io.progress(`the teacher's structure differs from the base's (${plan.reason.split(':')[0]}): training the ${plan.kept.length} weights it keeps from the base on the model a structural payload rebuilds first (the teacher's topology, its new tensors whole)`);
  }
  const total = storedModelBytes(disk);
  // What shipping the teacher whole would cost: a report sets the payloads beside it.
  const teacherStore = a.teacher ? await openTfjsModel(a.teacher) : undefined;
  const teacherBytes = teacherStore ? storedModelBytes(teacherStore) : undefined;
  a = settleDefaultMethod(a, disk.list(), teacherStore?.list(), (l) => io.progress(l));
  const budgetBytes = a.method === 'full' ? 0 : parseBudget(a.budget, total);
  const competitors = [];
  for (const file of a.alsoConsider) {
    const bytes = await readPayloadFile(file);
    const c = await competingPayload(disk, bytes, `--also-consider ${file}`).catch((e: unknown) => {
      throw new UsageError(`--also-consider ${file} cannot compete with this training: ${e instanceof Error ? e.message : String(e)}`);
    });
    const h = c.payload.header;
    if (h.modelId !== modelId || h.sequence !== a.sequence) {
      throw new UsageError(`--also-consider ${file} is model ${JSON.stringify(h.modelId)} sequence ${h.sequence}, this training writes ${JSON.stringify(modelId)} sequence ${a.sequence}: pass a payload of the same update (or --model-id/--sequence to match it)`);
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
  const interactive = process.stderr.isTTY;
  // A line at most every 10 s off a terminal (CI logs), a live bar on one.
  const batchLine = throttled((l) => io.progress(l), 10_000);
  try {
    const options: Omit<TrainDiffOptions, 'method'> = {
      budgetBytes,
      epochs: a.epochs,
      ...(a.batchSize !== undefined ? { batchSize: a.batchSize } : {}),
      ...(a.threads !== undefined ? { threads: a.threads } : {}),
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
      ...(a.sparseShare !== undefined ? { sparseShare: a.sparseShare } : {}),
      ...(distillInputs.length ? { distillInputs, distillMix: a.distillMix ?? 0.5 } : {}),
      ...(a.augment && a.augment !== 'none' ? { augment: a.augment } : {}),
      ...(teacher ? { teacher, teacherWeight: a.teacherWeight, teacherLoss: a.teacherLoss, temperature: a.temperature, sparseStart: a.sparseStart } : {}),
      store: a.store,
      header: { modelId, sequence: a.sequence, ...(a.expires ? { expiresAt: parseExpiry(a.expires) } : {}) },
      onProgress: (m) => io.progress(m),
      onWarning: (m) => io.err(`warning: ${m}`),
      onBatch: (b) => {
        const line = `  epoch ${b.epoch} ${bar(b.batch, b.batches)} batch ${b.batch}/${b.batches} loss ${b.loss.toFixed(4)}`;
        if (interactive) process.stderr.write(`\r${line}   `);
        else batchLine(line);
      },
      onEpoch: (r) => {
        if (interactive) process.stderr.write('\r');
        io.progress(describeEpoch(r, (train as { y?: Int32Array }).y !== undefined));
      },
    };
    const res = a.method === 'auto'
      ? await trainAuto(model, train, options, (c) => io.progress(autoCandidateLine(c)))
      : await trainDiff(model, train, { ...options, method: a.method });
    const auto = 'auto' in res ? (res as AutoResult).auto : undefined;
    if (auto) io.progress(autoChoiceLine(auto));
    const method = auto ? auto.chosen : a.method;
    // A teacher of another structure: the learned payload (from the intermediate) inside a structural payload from the base.
    const built = plan && structural ? await structural.wrapLearnedFolder(plan, baseFiles, res.bytes) : undefined;
    const outBytes = built ? built.bytes : res.bytes;
    await writeFile(a.out, outBytes);
    const acc = (x: number | undefined) => (x === undefined ? 'n/a' : `${(100 * x).toFixed(2)}%`);
    io.out(`wrote ${a.out}: ${outBytes.length} bytes (${((100 * outBytes.length) / total).toFixed(3)}% of the model as stored${a.method === 'full' ? '' : `, budget ${budgetBytes}${built ? ' for the learned part' : ''}`}), ${auto ? `auto: ${method}` : method}, trained in ${res.trainSeconds.toFixed(1)} s (${Number.isNaN(res.tuning.learningRate) ? `kept ${res.tuning.chosen}` : `learning rate ${res.tuning.learningRate}`}, ${res.tuning.cost.toFixed(2)}x one run)`);
    if (plan && built && structural) for (const line of structural.structuralLines(plan, built)) io.out(line);
    if (res.validation) io.out(`validation accuracy ${acc(res.validation.baseAccuracy)} -> ${acc(res.validation.accuracy)} on ${res.validation.examples} examples`);
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
      ...(distillInputs.length || (a.augment ?? 'none') !== 'none' ? { distillStream: { distillInputs: a.distillInputs ?? [], distillMix: a.distillMix ?? 0.5, augment: a.augment ?? 'none', ...(res.augmentation ? { augmentation: res.augmentation } : {}) } } : {}),
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
    if (a.metricsOut) await writeFile(a.metricsOut, JSON.stringify(metrics, null, 2) + '\n');
    io.result?.(metrics);
  } finally {
    train.x.dispose();
    val?.x.dispose();
    evalData?.x.dispose();
    for (const d of distillInputs) d.x.dispose();
    graphTeacher?.dispose();
  }
  return 0;
}
