/**
 * `train()`: what `ndiff train` does, as one library call, for every kind of base: a TF.js
 * layers-model or graph-model folder (or model JSON file), an `.onnx` file, a `.tflite` file, each
 * given by its path or its bytes, toward labels or toward a teacher (one of another structure
 * included, which gives a structural payload). The format, the default method, the refusals of
 * options a base cannot take, and the structural case are decided here; `ndiff train` parses its
 * arguments, calls this and prints the result.
 *
 * ```ts
 * import { train } from 'neural-diff/train';
 * const res = await train({ base: 'models/v1', teacher: 'models/v2', train: 'unlabeled/', modelId: 'kws-en', budget: '1%' });
 * ```
 */
import { UsageError } from '../core/errors.ts';
import { checkChoices } from '../core/choices.ts';
import type { ModelFile } from '../core/model-files.ts';
import type { LowBitCache } from '../lowbit-diff/cache.ts';
import { isOnnxPath, isTflitePath } from '../io/model-paths.ts';
import type { TrainBackendName } from '../engine/backend.ts';
import { TRAIN_CHOICES, checkDistillStream, defaultMethod, type MethodDefault, type ProgramSettings, type TrainSettings } from './front-settings.ts';
import { TfjsSource, type TrainProgress, type TrainReporter } from './front-sources.ts';
import type { TrainMethod } from './methods.ts';
import type { OnnxOutputKind } from '../engine/onnx/layers-model.ts';
import { importWithTrainerPeers } from './peer.ts';
import { qualityTargetOf, type QualityTargetOptions } from '../front/quality-target.ts';

export type { MethodDefault } from './front-settings.ts';
export type { TrainProgress } from './front-sources.ts';

/**
 * A model to train from: its path (a TF.js model folder or model JSON file, an `.onnx` or a
 * `.tflite` file), the bytes of an `.onnx` or `.tflite` file (told apart by the LiteRT file
 * identifier `TFL3`), or a TF.js model's files (its model JSON first, then its shards under the
 * paths its manifest names).
 */
export type ModelInput = string | Uint8Array | readonly ModelFile[];

/** What {@link train} takes; each option is `ndiff train`'s of the same name (camelCase), with the same default. */
export interface TrainOptions extends QualityTargetOptions {
  /** The model devices hold. */
  base: ModelInput;
  /** The new version your team trained, with the base's inputs and outputs: learn a diff whose outputs match it (labels optional). */
  teacher?: ModelInput;
  /** Training data: an x.npy/y.npy pair or folder (TF.js layers models), or a folder of one `<input>.npy` per model input. */
  train: string;
  /** A method, or `auto` (the candidate best on validation kept, see `autoSearch`). Default: lowbit toward a teacher that holds the base's weights, sparse otherwise. */
  method?: TrainMethod | 'auto';
  /**
   * How `method: 'auto'` chooses: `halving` (default) starts every candidate, drops the worse half
   * on validation after each round and continues the survivors where they stopped, the last one to
   * its end (its payload is the one that method alone gives); `exhaustive` trains every candidate
   * to its end and keeps the best (about one training per candidate).
   */
  autoSearch?: 'halving' | 'exhaustive';
  /**
   * Byte budget for the whole payload: `1%` of the model as stored (default), `40KB`, `40KiB`, or
   * bytes; or `auto`: the smallest budget of the grid (`budgetGrid`) whose payload meets the quality
   * target (`minAgreement`, `maxMeanAbsDiff` or `maxAccuracyDrop`) on `eval`, post hoc first toward
   * a teacher; the exact payload (a teacher) or a full fine-tune (labels) when none below its size does.
   */
  budget?: string | number;
  /**
   * Budget auto: `once` (default) tunes the learning rate at the first budget trained and trains
   * each larger budget once at that rate (its payload then the one `budget B, lr RATE, tune 'off'`
   * gives); `each` tunes at every budget, as `budget: B` alone does (a tuning costs 2.5 to 5 runs).
   */
  budgetTune?: 'once' | 'each';
  /** The id devices know this model by. Required unless the base's path recorded one. */
  modelId?: string;
  sequence?: number;
  /** An ISO date, or a duration from now (`30d`, `12h`). */
  expires?: string;
  eval?: string;
  val?: string;
  replay?: string;
  valFraction?: number;
  tune?: 'quick' | 'thorough' | 'off';
  /** `config`, `all`, or a regular expression over weight names. */
  trainable?: string;
  allowWorse?: boolean;
  distill?: number;
  /** Payload files of the same update that compete on validation with this run's result. */
  alsoConsider?: string[];
  store?: 'stored' | 'float32';
  epochs?: number;
  seed?: number;
  backend?: TrainBackendName;
  batchSize?: number;
  threads?: number;
  /** How each training step runs: compiled once per phase and replayed (default, where it verifies), or eager. */
  step?: 'compiled' | 'eager';
  prefixCacheMb?: number;
  lr?: number;
  codec?: 'auto' | 'f32' | 'f16' | 'i8';
  loss?: string;
  teacherWeight?: number;
  teacherLoss?: 'auto' | 'kl' | 'mse';
  temperature?: number;
  sparseStart?: 'auto' | 'zero' | 'teacher';
  sparseShare?: number;
  /** With a teacher, for every kind of base: folders of unlabeled inputs from where the model runs, laid out as `train` is, drawn into the stream beside it. */
  distillInputs?: string[];
  /** The share of the training stream drawn from `distillInputs`, in [0, 1) (default 0.5). */
  distillMix?: number;
  /** With a teacher: `none` (default), augmentations comma-separated in the order they apply, or `auto`; the teacher scores each augmented batch. */
  augment?: string;
  /** ONNX stateful models: `INPUT:OUTPUT` pairs carried from frame to frame. */
  state?: string[];
  bptt?: number;
  output?: string;
  outputKind?: OnnxOutputKind;
  /** Also write the payload here (checked writable before training). */
  out?: string;
  /** Also write the updated model here, as a device gets it (needs the base as a path). */
  modelOut?: string;
  /** Also write the metrics JSON `ndiff report` reads. */
  metricsOut?: string;
  /**
   * `lowbit`: the post-hoc start's quantizations kept between trainings of the same change (a
   * `LowBitCache` of `neural-diff/kit`, made once and passed to each, as `diff()` takes one): a
   * training at another budget reuses every tensor's codes and factors instead of making them
   * again, as `budget: 'auto'` does between the budgets it tries. The same bytes with or without it.
   */
  lowbitCache?: LowBitCache;
  /** Progress as it happens: lines, batches, epochs, warnings. */
  onProgress?: (event: TrainProgress) => void;
}

/** The closeness and accuracy figures a run measured, per format as its trainer reports them. */
type Measured = Record<string, unknown>;

/**
 * What {@link train} returns: the fields `ndiff train --json` prints (and `--metrics-out`
 * writes), the payload's bytes, the result lines `ndiff train` prints, and the warnings given.
 */
export interface TrainResult extends Measured {
  kind: 'ndiff-train-metrics';
  /** `onnx`, `tflite`, `tfjs-graph`; absent for a TF.js layers model. */
  format?: 'onnx' | 'tflite' | 'tfjs-graph';
  /** The method written (auto's choice under `auto`). */
  method: TrainMethod;
  methodDefault?: MethodDefault;
  modelId: string;
  sequence: number;
  budgetBytes: number;
  budgetRequested: string | null;
  /** The payload's size. */
  bytes: number;
  modelBytes: number;
  accuracyBefore: number | null;
  accuracyAfter: number | null;
  baseFingerprint: string;
  targetFingerprint: string;
  trainSeconds: number;
  seed: number;
  backend: string;
  out?: string;
  /** The payload. */
  payload: Uint8Array;
  /** What `ndiff train` prints on stdout for this result. */
  lines: string[];
  /** Warnings given during the run (each also sent to `onProgress` as it came). */
  warnings: string[];
}

/** The kind of model a base is. */
export type BaseKind = 'tflite' | 'onnx' | 'tfjs-graph' | 'tfjs-layers';

/** The kind of model at a path or in bytes (a LiteRT file carries `TFL3` at offset 4; other bytes are read as ONNX). */
export async function baseKind(m: ModelInput, what = 'base'): Promise<BaseKind> {
  if (m instanceof Uint8Array) return m.length >= 8 && String.fromCharCode(...m.subarray(4, 8)) === 'TFL3' ? 'tflite' : 'onnx';
  if (typeof m === 'string' && isTflitePath(m)) return 'tflite';
  if (typeof m === 'string' && isOnnxPath(m)) return 'onnx';
  const source = typeof m === 'string' ? new TfjsSource(m) : new TfjsSource(what, m);
  return (await source.format(`--${what}`)) === 'graph-model' ? 'tfjs-graph' : 'tfjs-layers';
}

/** What a model option takes, for messages. */
const EXPECTED_MODEL = 'expected a path, the bytes of an .onnx or .tflite file, or a TF.js model\'s files ({ path, bytes }[], the model JSON first)';

/** Every option with its default, as `ndiff train` parses them. */
function settle(o: TrainOptions): TrainSettings & ProgramSettings {
  const bytesOf = (m: ModelInput | undefined) => (m instanceof Uint8Array ? m : undefined);
  const filesOf = (m: ModelInput | undefined) => (Array.isArray(m) ? [...(m as readonly ModelFile[])] : undefined);
  const baseBytes = bytesOf(o.base);
  const teacherBytes = bytesOf(o.teacher);
  const baseFiles = filesOf(o.base);
  const teacherFiles = filesOf(o.teacher);
  if (o.teacher !== undefined && typeof o.teacher !== 'string' && !teacherBytes && !teacherFiles) throw new UsageError(`teacher: ${EXPECTED_MODEL}, found ${typeof o.teacher}`);
  if ((baseBytes || baseFiles) && o.modelOut) throw new UsageError('modelOut writes the base patched beside its files, and this base was given in memory: pass the base as a path, or apply the payload to your copy with neural-diff\'s applyPayload');
  checkChoices(o, TRAIN_CHOICES);
  const budget = o.budget === undefined ? '1%' : String(o.budget);
  return {
    method: o.method as TrainMethod | 'auto',
    base: typeof o.base === 'string' ? o.base : 'base',
    ...(baseBytes ? { baseBytes } : {}),
    ...(teacherBytes ? { teacherBytes } : {}),
    ...(baseFiles ? { baseFiles } : {}),
    ...(teacherFiles ? { teacherFiles } : {}),
    train: o.train,
    ...(o.eval !== undefined ? { eval: o.eval } : {}),
    ...(o.val !== undefined ? { val: o.val } : {}),
    ...(o.replay !== undefined ? { replay: o.replay } : {}),
    valFraction: o.valFraction ?? 0.1,
    tune: o.tune ?? 'quick',
    trainable: o.trainable ?? 'config',
    allowWorse: o.allowWorse ?? false,
    distill: o.distill ?? 1,
    alsoConsider: o.alsoConsider ?? [],
    store: o.store ?? 'stored',
    budget,
    epochs: o.epochs ?? 10,
    seed: o.seed ?? 0,
    ...(o.out !== undefined ? { out: o.out } : {}),
    ...(o.modelOut !== undefined ? { modelOut: o.modelOut } : {}),
    ...(o.metricsOut !== undefined ? { metricsOut: o.metricsOut } : {}),
    backend: o.backend ?? 'auto',
    ...(o.batchSize !== undefined ? { batchSize: o.batchSize } : {}),
    ...(o.threads !== undefined ? { threads: o.threads } : {}),
    ...(o.step !== undefined ? { step: o.step } : {}),
    ...(o.prefixCacheMb !== undefined ? { prefixCacheMb: o.prefixCacheMb } : {}),
    ...(o.lr !== undefined ? { lr: o.lr } : {}),
    codec: o.codec ?? 'auto',
    ...(o.loss !== undefined ? { loss: o.loss } : {}),
    ...(o.modelId !== undefined ? { modelId: o.modelId } : {}),
    sequence: o.sequence ?? 1,
    ...(o.expires !== undefined ? { expires: o.expires } : {}),
    ...(o.teacher !== undefined ? { teacher: typeof o.teacher === 'string' ? o.teacher : 'teacher' } : {}),
    teacherWeight: o.teacherWeight ?? 1,
    teacherLoss: o.teacherLoss ?? 'auto',
    temperature: o.temperature ?? 1,
    sparseStart: o.sparseStart ?? 'auto',
    autoSearch: o.autoSearch ?? 'halving',
    ...(o.sparseShare !== undefined ? { sparseShare: o.sparseShare } : {}),
    distillInputs: o.distillInputs ?? [],
    distillMix: o.distillMix ?? 0.5,
    augment: o.augment ?? 'none',
    state: o.state ?? [],
    bptt: o.bptt ?? 1,
    ...(o.output !== undefined ? { output: o.output } : {}),
    ...(o.outputKind !== undefined ? { outputKind: o.outputKind } : {}),
    ...(o.lowbitCache ? { lowbitCache: o.lowbitCache } : {}),
  };
}

/**
 * Train a diff of `base` as `ndiff train` does, and return its payload with the figures
 * `ndiff train --json` prints. Throws the typed errors of src/core/errors.ts (a `UsageError` for
 * options the base cannot take, `DataError` for unreadable data, `BudgetError`,
 * `NoImprovementError` when the result is below the base and `allowWorse` is off,
 * `MissingDependencyError` without tfjs) before writing anything.
 */
export async function train(options: TrainOptions): Promise<TrainResult> {
  if (typeof options.base !== 'string' && !(options.base instanceof Uint8Array) && !Array.isArray(options.base)) throw new UsageError(`base: ${EXPECTED_MODEL}, found ${options.base === undefined ? 'nothing' : typeof options.base}`);
  if (typeof options.train !== 'string') throw new UsageError(`train: expected the path of the training data (a folder or x.npy), found ${options.train === undefined ? 'nothing' : typeof options.train}`);
  // budget auto: the target checked before any model is read, then the search (front-auto.ts),
  // which calls train() at each budget it tries.
  const auto = qualityTargetOf({ ...options, budget: options.budget ?? '1%' });
  if (options.budgetTune !== undefined && (!auto || !['once', 'each'].includes(options.budgetTune))) throw new UsageError(auto ? `budgetTune (--budget-tune) takes once or each, found ${JSON.stringify(options.budgetTune)}` : `budgetTune (--budget-tune) says how budget auto (--budget auto) tunes the budgets it trains; this run's budget is ${JSON.stringify(String(options.budget ?? '1%'))}: add --budget auto, or leave it out`);
  if (auto) return (await import('./front-auto.ts')).trainBudgetAuto(options, auto, train);
  let a = settle(options);
  if (!(Number.isInteger(a.epochs) && a.epochs >= 1)) throw new UsageError(`epochs (--epochs) must be at least 1, a whole number of passes over the training data, found ${a.epochs}`);
  // A learning rate of 0 learns nothing, a negative one climbs the loss: neither is a training.
  if (a.lr !== undefined && !(a.lr > 0 && Number.isFinite(a.lr))) throw new UsageError(`lr (--lr) must be a learning rate above 0, e.g. 1e-3, found ${a.lr}`);
  if ((a.method as TrainSettings['method'] | undefined) === undefined) {
    // Without a method: what the measured tables put first (lowbit toward a teacher, sparse with
    // labels); each runner settles it once the teacher is read, and says so before training.
    const d = defaultMethod(!!a.teacher);
    a = { ...a, method: d.method, methodDefault: d };
  }
  // Every kind of base trains with tfjs: without it, say what to install before anything else.
  await importWithTrainerPeers(() => import('@tensorflow/tfjs'), '`ndiff train`');
  const kind = await baseKind(options.base);
  if (a.teacherBytes && kind !== 'onnx' && kind !== 'tflite') throw new UsageError('the teacher was given as bytes, which is for an .onnx or .tflite base; this base is a TF.js model: give the teacher as the path of its folder or model JSON file, or as its files');
  if (a.teacherFiles && kind !== 'tfjs-layers' && kind !== 'tfjs-graph') throw new UsageError(`the teacher was given as a TF.js model's files; this base is ${kind === 'onnx' ? 'an ONNX' : 'a LiteRT'} file: give the teacher as the same kind of file (a path or its bytes)`);
  checkDistillStream(a);
  const warnings: string[] = [];
  const lines: string[] = [];
  const emit = options.onProgress ?? (() => {});
  const r: TrainReporter = {
    progress: (text) => emit({ kind: 'message', text }),
    warn: (text) => {
      warnings.push(text);
      emit({ kind: 'warning', text });
    },
    out: (line) => lines.push(line),
    event: emit,
  };
  let doc: Record<string, unknown>;
  let payload: Uint8Array;
  if (kind === 'tflite') ({ doc, payload } = await (await import('./front-tflite.ts')).trainTfliteFront(a, r));
  else if (kind === 'onnx') ({ doc, payload } = await (await import('./front-onnx.ts')).trainOnnxFront(a, r));
  else if (kind === 'tfjs-graph') ({ doc, payload } = await (await import('./front-graph.ts')).trainGraphFront(a, r));
  else {
    if (a.state.length) throw new UsageError('state (--state) is for ONNX models (--base model.onnx): a TF.js model carries no state between examples here');
    ({ doc, payload } = await (await import('./front-layers.ts')).trainLayersFront(a, r));
  }
  return { ...doc, payload, lines, warnings } as TrainResult;
}
