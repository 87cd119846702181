import type { Argv } from 'yargs';
import type { TrainBackendName } from '../../src/engine/backend.ts';
import { TRAIN_CHOICES } from '../../src/train/front-settings.ts';
import { choicesOf } from '../../src/core/choices.ts';
import type { TrainOptions, TrainProgress } from '../../src/train/front.ts';
import { importWithTrainerPeers } from '../../src/train/peer.ts';
import { throttled, type CliIO } from '../common.ts';
import { seeDocs } from '../help.ts';
import type { OnnxTrainArgs, TrainArgs } from './train-args.ts';

export function trainCommand(y: Argv): Argv<TrainArgs> {
  return y
    .usage('ndiff train --base V1 --train DATA [--teacher V2] --budget B --out FILE [options]')
    .option('method', {
      choices: choicesOf(TRAIN_CHOICES, 'method'),
      describe: 'diff to learn, or baseline (default: lowbit with --teacher, else sparse)',
    })
    .option('auto-search', { choices: choicesOf(TRAIN_CHOICES, 'autoSearch'), default: 'halving' as const, describe: 'method auto: halving (default) or exhaustive' })
    .option('base', { type: 'string', demandOption: true, describe: 'model devices hold: TF.js folder or JSON, .onnx, .tflite' })
    .option('train', { type: 'string', demandOption: true, describe: 'training data: x.npy/y.npy, or a folder of .npy' })
    .option('teacher', { type: 'string', describe: 'the v2 you trained: learn a diff that agrees with it' })
    .option('teacher-weight', { type: 'number', default: 1, describe: 'weight of the teacher term' })
    .option('teacher-loss', { choices: choicesOf(TRAIN_CHOICES, 'teacherLoss'), default: 'auto' as const, describe: 'loss toward the teacher' })
    .option('temperature', { type: 'number', default: 1, describe: 'softening of the kl loss' })
    .option('sparse-start', { choices: choicesOf(TRAIN_CHOICES, 'sparseStart'), default: 'auto' as const, describe: 'sparse diff\'s start' })
    .option('sparse-share', { type: 'number', describe: 'sparse-lora: budget share of the sparse part (tuned)' })
    .option('distill-inputs', { type: 'string', array: true, default: [] as string[], describe: 'unlabeled inputs mixed into training' })
    .option('distill-mix', { type: 'number', default: 0.5, describe: 'share of the stream from --distill-inputs' })
    .option('augment', { type: 'string', default: 'none', describe: 'augmentations, comma-separated, or auto' })
    .option('eval', { type: 'string', describe: 'evaluation data: accuracy before and after' })
    .option('replay', { type: 'string', describe: 'old data replayed against forgetting' })
    .option('val', { type: 'string', describe: 'validation data (default: --val-fraction of --train)' })
    .option('val-fraction', { type: 'number', default: 0.1, describe: 'share of --train held out for validation' })
    .option('tune', { choices: choicesOf(TRAIN_CHOICES, 'tune'), default: 'quick' as const, describe: '--lr search' })
    .option('trainable', { type: 'string', default: 'config', describe: 'weights that train: config, all or a REGEX' })
    .option('distill', { type: 'number', default: 1, describe: 'weight keeping the base\'s right outputs' })
    .option('allow-worse', { type: 'boolean', default: false, describe: 'write even when worse than the base' })
    .option('also-consider', { type: 'string', array: true, default: [] as string[], describe: 'smaller payloads that compete on validation' })
    .option('store', { choices: choicesOf(TRAIN_CHOICES, 'store'), default: 'stored' as const, describe: 'quantized tensors\' grid' })
    .option('budget', { type: 'string', default: '1%', describe: 'payload bytes: 1% of the model as stored, 40KB, or auto' })
    .option('min-agreement', { type: 'number', describe: 'budget auto: least top-1 agreement with --teacher on --eval' })
    .option('max-mean-abs-diff', { type: 'number', describe: 'budget auto: most mean |output − teacher| on --eval' })
    .option('max-accuracy-drop', { type: 'number', describe: 'budget auto: most points below the reference accuracy' })
    .option('budget-grid', { type: 'string', describe: 'budget auto: budgets tried (default 0.5%,1%,2%,5%,10%,20%)' })
    .option('budget-tune', { choices: ['once', 'each'] as const, describe: 'budget auto: --lr tuned at the first budget trained, reused (once, default), or at each' })
    .option('epochs', { type: 'number', default: 10, describe: 'epochs of a full run (early stopping may end it)' })
    .option('seed', { type: 'number', default: 0, describe: 'same seed and data, same payload bytes' })
    .option('out', { type: 'string', demandOption: true, describe: 'payload file to write' })
    .option('model-out', { type: 'string', describe: 'also write the updated model' })
    .option('metrics-out', { type: 'string', describe: 'write a metrics JSON for ndiff report' })
    .option('backend', { choices: choicesOf(TRAIN_CHOICES, 'backend'), default: 'auto' as TrainBackendName, describe: 'tfjs backend' })
    .option('threads', { type: 'number', describe: 'threads per step (default: every core)' })
    .option('step', { choices: choicesOf(TRAIN_CHOICES, 'step'), describe: 'compiled (default) or eager training steps' })
    .option('prefix-cache-mb', { type: 'number', describe: 'MiB caching frozen first layers (default 512)' })
    .option('batch-size', { type: 'number', describe: 'examples per step (default: 32, or what fits)' })
    .option('lr', { type: 'number', describe: 'starting learning rate (default: 3e-3, full 3e-4)' })
    .option('codec', { choices: choicesOf(TRAIN_CHOICES, 'codec'), default: 'auto' as const, describe: 'value codec' })
    .option('loss', { type: 'string', describe: 'loss (default: the model\'s training config)' })
    .option('model-id', { type: 'string', describe: 'id devices know the model by (default: recorded)' })
    .option('sequence', { type: 'number', default: 1, describe: 'update sequence number' })
    .option('expires', { type: 'string', describe: 'expiry: ISO date or a duration (30d, 12h)' })
    .option('state', { type: 'string', array: true, default: [] as string[], describe: 'stateful .onnx: INPUT:OUTPUT pairs' })
    .option('bptt', { type: 'number', default: 1, describe: 'stateful .onnx: frames of backpropagation' })
    .option('output', { type: 'string', describe: 'the output to train (default: first non-state)' })
    .option('output-kind', { choices: choicesOf(TRAIN_CHOICES, 'outputKind'), describe: 'how the output reads (default: from its shape and last op)' })
    // Four groups, no --version line and the options few runs need hidden (--show-hidden lists
    // them): the help of train fits a screen (40 lines at 100 columns).
    .showHidden('show-hidden', 'with --help: also list the options hidden here')
    .group(['base', 'train', 'teacher', 'eval', 'val', 'val-fraction', 'replay', 'budget', 'min-agreement', 'max-mean-abs-diff', 'max-accuracy-drop', 'budget-grid', 'budget-tune', 'out', 'model-id', 'sequence', 'expires', 'codec', 'store', 'model-out', 'metrics-out', 'quiet', 'json', 'help', 'show-hidden'], 'Models, data and output:')
    .group(['method', 'auto-search', 'also-consider', 'allow-worse', 'sparse-start', 'sparse-share', 'distill', 'teacher-weight', 'teacher-loss', 'temperature', 'distill-inputs', 'distill-mix', 'augment'], 'Method:')
    .group(['tune', 'lr', 'epochs', 'batch-size', 'seed', 'trainable', 'loss', 'backend', 'threads', 'prefix-cache-mb'], 'Training:')
    .group(['state', 'bptt', 'output', 'output-kind'], 'ONNX, TF.js graph and LiteRT models:')
    .hide('version')
    // A switch for comparisons (the default is right): documented in docs/cli/train.md, off the screen-sized help.
    .hide('step')
    // Options that tune what the defaults already choose, or serve one kind of model: --show-hidden and docs/cli/train.md list them.
    .hide('min-agreement').hide('max-mean-abs-diff').hide('max-accuracy-drop').hide('budget-grid').hide('budget-tune')
    .hide('val-fraction').hide('replay').hide('expires').hide('codec').hide('store')
    .hide('auto-search').hide('also-consider').hide('sparse-start').hide('sparse-share').hide('teacher-weight').hide('teacher-loss').hide('temperature').hide('distill-mix')
    .hide('trainable').hide('loss').hide('backend').hide('threads').hide('prefix-cache-mb')
    .hide('bptt').hide('output-kind')
    .epilogue(seeDocs('train')) as unknown as Argv<TrainArgs>;
}

/** The options `train()` takes, from the parsed arguments (the same names; yargs' own keys left out). */
function trainOptionsOf(a: TrainArgs & Partial<OnnxTrainArgs>): TrainOptions {
  const keys = ['method', 'autoSearch', 'base', 'teacher', 'train', 'eval', 'val', 'replay', 'valFraction', 'tune', 'trainable', 'allowWorse', 'distill', 'alsoConsider', 'store', 'budget', 'epochs', 'seed',
    'out', 'modelOut', 'metricsOut', 'backend', 'batchSize', 'threads', 'step', 'prefixCacheMb', 'lr', 'codec', 'loss', 'modelId', 'sequence', 'expires', 'teacherWeight', 'teacherLoss', 'temperature',
    'sparseStart', 'sparseShare', 'distillInputs', 'distillMix', 'augment', 'state', 'bptt', 'output', 'outputKind', 'minAgreement', 'maxMeanAbsDiff', 'maxAccuracyDrop', 'budgetGrid', 'budgetTune'] as const;
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
  // The warnings stay in the JSON document (each also went to stderr as it came).
  const { payload: _payload, lines, ...doc } = await train({ ...trainOptionsOf(a), onProgress });
  for (const line of lines) io.out(line);
  io.result?.(doc);
  return 0;
}
