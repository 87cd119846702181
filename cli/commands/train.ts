import type { Argv } from 'yargs';
import type { TrainBackendName } from '../../src/train/backend.ts';
import { TRAIN_METHODS } from '../../src/train/methods.ts';
import type { TrainOptions, TrainProgress } from '../../src/train/front.ts';
import { importWithTrainerPeers } from '../../src/train/peer.ts';
import { throttled, type CliIO } from '../common.ts';
import type { OnnxTrainArgs, TrainArgs } from './train-args.ts';

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

/** The options `train()` takes, from the parsed arguments (the same names; yargs' own keys left out). */
function trainOptionsOf(a: TrainArgs & Partial<OnnxTrainArgs>): TrainOptions {
  const keys = ['method', 'base', 'teacher', 'train', 'eval', 'val', 'replay', 'valFraction', 'tune', 'trainable', 'allowWorse', 'distill', 'alsoConsider', 'store', 'budget', 'epochs', 'seed',
    'out', 'modelOut', 'metricsOut', 'backend', 'batchSize', 'threads', 'prefixCacheMb', 'lr', 'codec', 'loss', 'modelId', 'sequence', 'expires', 'teacherWeight', 'teacherLoss', 'temperature',
    'sparseStart', 'sparseShare', 'distillInputs', 'distillMix', 'augment', 'state', 'bptt', 'output', 'outputKind'] as const;
  const o: Record<string, unknown> = {};
  for (const k of keys) if (a[k] !== undefined) o[k] = a[k];
  return o as unknown as TrainOptions;
}

/** `ndiff train`: the arguments to `train()` (src/train/front.ts), its progress to stderr, its result printed. */
export async function runTrain(a: TrainArgs, io: CliIO): Promise<number> {
  // tfjs and the trainers load only when training (the other commands start faster, and run
  // without tfjs installed); without them, the error names what to install.
  const { train } = await importWithTrainerPeers(() => import('../../src/train/front.ts'), '`ndiff train`');
  const interactive = process.stderr.isTTY;
  // A line at most every 10 s off a terminal (CI logs), a live bar on one.
  const batchLine = throttled((l) => io.progress(l), 10_000);
  const onProgress = (e: TrainProgress) => {
    if (e.kind === 'warning') io.err(`warning: ${e.text}`);
    else if (e.kind === 'batch') {
      if (interactive) process.stderr.write(`\r${e.text}   `);
      else batchLine(e.text);
    } else {
      if (e.kind === 'epoch' && interactive) process.stderr.write('\r');
      io.progress(e.text);
    }
  };
  const { payload: _payload, lines, warnings: _warnings, ...doc } = await train({ ...trainOptionsOf(a), onProgress });
  for (const line of lines) io.out(line);
  io.result?.(doc);
  return 0;
}
