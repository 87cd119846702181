/**
 * Train a diff of a tf.LayersModel against the weights it holds now (the base devices have),
 * within a byte budget, and return the payload plus the metrics a report needs.
 *
 * Methods:
 * - `sparse`: learned sparse-mask diff (src/sparse-diff);
 * - `hash`: learned hashed-bucket diff (src/hash-diff);
 * - `lora`: trained low-rank adapters U · V per weight matrix (src/lowrank-diff), shipped as the
 *   low-rank patch kind;
 * - `full`: fine-tune every trainable weight; the payload is a dense delta (the accuracy
 *   ceiling, sized like the whole model as stored);
 * - `topk-retrain`: the mask is the top-k of a full fine-tune's change; those entries are then
 *   retrained from the base (LT-SFT, Ansell et al. 2022; SHiRA ships this way);
 * - `topk`, `drop`, `lowrank`: post-hoc compression of the full fine-tune's delta.
 *
 * Every run is steered by a **validation split** (`validation`, by default a seeded, stratified
 * 10% of the training data, held out of training): it picks the learning rate (`tune`: `quick`
 * tries three rates on half the data, the start, a third of it, then a ninth if the third won or
 * three times the start if not, and trains the best on all of it; `thorough` trains five
 * rates on all of it; `off` trains one), keeps the best checkpoint of each run (early stopping),
 * and catches a run that diverges (NaN or exploding loss) or collapses (predicting one class),
 * which is retried at a lower rate and never shipped. A result whose validation accuracy is below
 * the base model's is refused ({@link NoImprovementError}) unless `allowWorse`.
 *
 * Layers run in inference mode: BatchNorm normalizes with its moving statistics (never trained,
 * never shipped), dropout is off, so the model a device gets by applying the payload is exactly
 * the model evaluated. Which weights train: the model's config (`trainable: 'config'`), every
 * weight (`'all'`), or a name pattern. Tensors the base stores quantized (uint8/uint16/float16)
 * are trained on their grid and stay on it (`store: 'float32'` to widen them instead).
 *
 * Whatever the method, the model ends holding exactly the weights a device gets by applying the
 * payload to the base, and `accuracyAfter` is measured on those.
 */
import * as tf from '@tensorflow/tfjs';
import { BudgetError, NoImprovementError, UsageError } from '../core/errors.ts';
import { getHasher, type Hasher } from '../core/hasher.ts';
import { isIntegerGrid, type StorageGrid } from '../core/grid.ts';
import { type ValueCodec } from '../core/values.ts';
import { MemoryWeightStore, type WeightStore } from '../core/weight-store.ts';
import { decodePayload, type Payload } from '../core/format.ts';
import { applyPayload } from '../apply/apply.ts';
import { baseDigests, buildPayload, payloadSize, storageGrids, type BuiltPayload, type HeaderOptions, type PatchSpec, type StoreAs } from '../diff/build.ts';
import { dropDiff, lowRankDiff } from '../diff/baselines.ts';
import { largestFitting, MagnitudeRanking, topkFromDeltas } from '../diff/topk.ts';
import { HashedBuckets } from '../hash-diff/trainer.ts';
import { LowRankAdapters, loraEligible } from '../lowrank-diff/trainer.ts';
import { DEFAULT_SPARSE_MASK, SparseMask, type SparseMaskOptions } from '../sparse-diff/trainer.ts';
import { checkData, evaluate, pick, stratifiedSplit, type Evaluation, type LabelledData } from './data.ts';
import { outputsLogits, trainLoop, TrainingDiverged, type EpochReport, type Parameterization, type Teacher } from './loop.ts';
import { modelToStore, namedVariables, setModelWeights } from './model-weights.ts';
import { silenceTfjsNodeBanner } from './quiet.ts';
import { activationsPerExample, chooseBatchSize, maxBatchSize, selectTrainable, type TrainableSpec } from './select.ts';
import { TRAIN_METHODS, type TrainMethod } from './methods.ts';

export { TRAIN_METHODS, type TrainMethod } from './methods.ts';

/** How much learning-rate search a run does (see the module doc). */
export type TuneMode = 'off' | 'quick' | 'thorough';

export interface TrainDiffOptions {
  method: TrainMethod;
  /** Byte budget for the whole payload (ignored by `full`). */
  budgetBytes: number;
  /** Epochs of the full run (early stopping may end it sooner). */
  epochs: number;
  /** Examples per step; default: 32, or less where the backend's memory needs it. */
  batchSize?: number;
  seed?: number;
  /**
   * The learning rate to start from (Adam): of the diff values for `sparse`, `hash`, `lora` and
   * the retrain of `topk-retrain` (default 3e-3: a diff starts at zero and has few values), of
   * the weights for `full` and the fine-tune behind the post-hoc methods (default 3e-4). With
   * `tune` the search is around it.
   */
  learningRate?: number;
  /** Adam learning rate of the sparse mask scores. */
  maskLearningRate?: number;
  /** Value codec; learned methods default to int8 (trained quantization-aware), post-hoc ones to the most accurate. */
  codec?: ValueCodec | 'auto';
  /** Fraction of the epochs spent fine-tuning under the final hard mask (sparse). */
  hardFraction?: number;
  sparse?: Partial<SparseMaskOptions>;
  /** Hashed diffs: multiply bucket values by a ±1 sign per position (default true). */
  hashSigned?: boolean;
  /** Header fields of the payload. */
  header?: Omit<HeaderOptions, 'method' | 'budgetBytes' | 'grids'>;
  /** Evaluation data: accuracy before and after (reported only; never used to choose). */
  eval?: LabelledData;
  /**
   * Validation data that chooses the learning rate and the checkpoint, or the fraction of the
   * training data held out for it (default 0.1, seeded and stratified); 0 trains on everything
   * and validates nothing (then `tune` must be `'off'`).
   */
  validation?: LabelledData | number;
  /** Learning-rate search: `quick` (default), `thorough` or `off`. */
  tune?: TuneMode;
  /** Stop a run after this many checkpoints without a better validation result (default 2). */
  patience?: number;
  /** Which weights train: the model's config (default), `'all'`, or a pattern over weight names. */
  trainable?: TrainableSpec;
  /**
   * Weight of the distillation term that keeps the base model's outputs on the training
   * examples it already classifies right (default 1; 0 turns it off). An update trains on new
   * data and usually on replayed old data; the labels alone let the model drift on what it
   * knew (forgetting), the base's full output distribution holds it there. See {@link Teacher}.
   * When the training data marks its replayed examples (`LabelledData.replay`), only those are
   * kept: the update's own examples learn from their labels alone, even where the base already
   * gets them right (old classes in new conditions, which the update is there to make surer).
   * Off by itself when the base agrees with the training labels little better than chance
   * (Cohen's kappa below {@link DISTILL_MIN_KAPPA} on the examples of the classes it ever answers:
   * a new task or an untrained model, nothing to keep); `distillOff` says why.
   */
  distill?: number;
  /** Temperature of the distillation term (default 2). */
  distillTemperature?: number;
  /** Return a result worse than the base on validation instead of refusing it. */
  allowWorse?: boolean;
  /**
   * Results of smaller budgets on the same base and data (earlier `trainDiff` results, or payload
   * files through {@link competingPayload}): they compete in the final choice. More bytes must
   * earn their place: going from the fewest bytes up, a larger payload replaces the one kept only
   * when it is right on significantly more validation examples ({@link significantlyBetter}); of
   * two the same size, the better on validation is kept; a model predicting one class loses to
   * one that does not. So the result never validates below the smallest payload considered, and
   * when each smaller payload was itself chosen this way on the same validation rows (every
   * smaller budget's result passed in turn, as the keyword benchmark does), a larger budget never
   * validates below any of them: budgets are monotone. One for another base, or larger than the
   * budget, is passed over; competing needs validation data. A run whose every learning rate
   * diverges still refuses (NoImprovementError): the smaller payload is then the one to ship.
   * `result.selection` says what competed.
   */
  alsoConsider?: readonly CompetingResult[];
  /** Post-hoc methods and `topk-retrain`: reuse a full fine-tune's final weights instead of training one. */
  fullWeights?: ReadonlyMap<string, Float32Array>;
  /** The base as a store (default: a snapshot of the model's weights now). */
  base?: WeightStore;
  /**
   * How patched tensors are stored on the device: `'stored'` (default) keeps tensors the base
   * stores quantized (uint8/uint16/float16) on their grid, `'float32'` gives float32 results.
   */
  store?: StoreAs;
  hasher?: Hasher;
  onEpoch?: (r: EpochReport) => void;
  onBatch?: (b: { epoch: number; batch: number; batches: number; loss: number }) => void;
  onProgress?: (message: string) => void;
}

/** One learning rate tried, and what it gave on validation. */
export interface TuningCandidate {
  learningRate: number;
  /** `trial`: on half the training data (quick tuning); `full`: on all of it; `recovery`: a lower rate after a failed run. */
  kind: 'trial' | 'full' | 'recovery';
  /** Training examples the run saw, epochs times its data. */
  examplesSeen: number;
  epochs: number;
  /** Best checkpoint's validation accuracy (undefined: no usable checkpoint). */
  valAccuracy?: number;
  valLoss?: number;
  diverged: boolean;
  /** Every checkpoint predicted (almost) one class. */
  collapsed: boolean;
  seconds: number;
}

export interface TrainDiffResult {
  method: TrainMethod;
  bytes: Uint8Array;
  payload: Payload;
  budgetBytes: number;
  /** Values of every patched tensor after applying (what the model now holds). */
  targetValues: Map<string, Float32Array>;
  accuracyBefore?: number;
  accuracyAfter?: number;
  /** Per-example predictions on the eval data after the update. */
  predictions?: Int32Array;
  epochs: EpochReport[];
  /** Seconds of training, tuning included. */
  trainSeconds: number;
  /** Full fine-tune final weights (full, topk-retrain and the post-hoc methods), to reuse across budgets. */
  fullWeights?: Map<string, Float32Array>;
  /** The validation split and what it measured (undefined with `validation: 0`). */
  validation?: { examples: number; baseAccuracy: number; accuracy: number; loss: number };
  /** The learning rates tried and the one chosen. */
  tuning: { mode: TuneMode; candidates: TuningCandidate[]; learningRate: number; chosen: string; seconds: number; cost: number };
  /** Which weights trained. */
  trainable: { trained: string[]; frozenByConfig: string[]; statistics: number };
  /** The distillation term (undefined when off, asked or because the base does not do this task): its weight, temperature, and the training examples it kept (those the base classifies right). */
  distill?: { weight: number; temperature: number; examples: number; kappa: number };
  /** Why the distillation term is off, when it is (asked for, or the base does not do this task). */
  distillOff?: string;
  /**
   * With `alsoConsider`: every payload that competed (this run's own first) with its validation
   * accuracy, which one was chosen, and this run's own result when a competitor was chosen
   * instead (to measure what the budget alone would have given).
   */
  selection?: {
    considered: { label: string; bytes: number; valAccuracy: number; chosen: boolean }[];
    own?: Pick<TrainDiffResult, 'bytes' | 'payload' | 'targetValues'> & { valAccuracy: number };
  };
  batchSize: number;
}

/**
 * Whether a model right on `a` (1 per validation example it gets right) is right on
 * significantly more examples than one right on `b`: by more than one standard error of the
 * paired difference. With n_a the examples only `a` gets right and n_b those only `b` gets
 * right, that is n_a - n_b > sqrt(n_a + n_b) (McNemar's statistic above 1; the one-standard-error
 * rule of model selection, applied to paired outcomes). Equal arrays are never significantly better.
 */
export function significantlyBetter(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) throw new RangeError(`compared over ${a.length} and ${b.length} examples: both must be judged on the same validation data`);
  let onlyA = 0;
  let onlyB = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] && !b[i]) onlyA++;
    else if (b[i] && !a[i]) onlyB++;
  }
  return onlyA - onlyB > Math.sqrt(onlyA + onlyB);
}


/** A payload that competes with a training's own result ({@link TrainDiffOptions.alsoConsider}). */
export type CompetingResult = Pick<TrainDiffResult, 'bytes' | 'payload' | 'targetValues'> &
  Partial<Pick<TrainDiffResult, 'method' | 'budgetBytes' | 'tuning'>> & {
    /** How progress lines name it (default: its method and budget). */
    label?: string;
  };

/**
 * A payload file as a competitor of a training on `base` (`ndiff train --also-consider`): applied
 * to a copy of the base by the device applier, so its target values are exactly a device's.
 * Throws the applier's typed error when it does not apply to `base` (another base, corrupt).
 */
export async function competingPayload(base: WeightStore, bytes: Uint8Array, label: string): Promise<CompetingResult> {
  const payload = decodePayload(bytes);
  const touched = new Set(payload.patches.map((p) => p.name));
  const copy = new MemoryWeightStore(base.list().map((t) => [t.name, { shape: [...t.shape], data: touched.has(t.name) ? base.values(t.name).slice() : base.values(t.name) }] as [string, { shape: number[]; data: Float32Array }]));
  // The copy keeps the base's storage grids, so a payload on another grid is refused as on a device.
  if (base.grid) (copy as WeightStore).grid = (name: string) => base.grid?.(name);
  await applyPayload(copy, bytes);
  return { bytes, payload, targetValues: new Map([...touched].map((n) => [n, copy.values(n)])), label };
}

interface TrainableTensor {
  name: string;
  shape: number[];
  values: Float32Array;
}

/** A shippable state of a run, evaluated on validation. */
interface Checkpoint {
  built: BuiltPayload;
  valAccuracy: number;
  valLoss: number;
  collapsed: boolean;
  /** 1 per validation example it gets right (empty without validation). */
  correct: Uint8Array;
  label: string;
  learningRate: number;
  /** `full` and the fine-tune behind post-hoc methods: the fine-tuned weights (exactly the device's). */
  weights?: Map<string, Float32Array>;
}

const DEFAULT_DIFF_LR = 3e-3;
const DEFAULT_FULL_LR = 3e-4;

/** Fine-tune the model's own variables (the `full` method without storage grids). */
class Identity implements Parameterization {
  /** @param variableOf manifest name -> the tf.Variable name the optimizer knows it by */
  constructor(readonly names: string[], private readonly variableOf: ReadonlyMap<string, string>) {}
  effective(): null {
    return null;
  }
  gradients(name: string, dW: tf.Tensor): tf.NamedTensorMap {
    return { [this.variableOf.get(name) as string]: dW };
  }
  dispose(): void {}
}

/**
 * Fine-tune float copies of the weights (the `full` method on storage grids): the layers see the
 * copies rounded onto the grid while the copies keep accumulating small steps.
 */
class Shadow implements Parameterization {
  readonly names: string[];
  private readonly vars = new Map<string, tf.Variable>();
  constructor(tensors: TrainableTensor[]) {
    this.names = tensors.map((t) => t.name);
    for (const t of tensors) this.vars.set(t.name, tf.variable(tf.tensor(t.values, t.shape, 'float32'), true, `nd_full/${t.name}`));
  }
  effective(name: string): tf.Tensor {
    return (this.vars.get(name) as tf.Variable).clone();
  }
  gradients(name: string, dW: tf.Tensor): tf.NamedTensorMap {
    return { [(this.vars.get(name) as tf.Variable).name]: dW };
  }
  dispose(): void {
    for (const v of this.vars.values()) v.dispose();
  }
}

/** Largest count K of entries spread evenly over the tensors that fits the budget (a pre-training estimate). */
function estimateSparseCount(tensors: TrainableTensor[], shapes: Map<string, readonly number[]>, header: HeaderOptions, codec: ValueCodec, budget: number): number {
  const total = tensors.reduce((n, t) => n + t.values.length, 0);
  const specs = (k: number): PatchSpec[] =>
    tensors.flatMap((t) => {
      const kt = Math.round((k * t.values.length) / total);
      if (!kt) return [];
      const step = t.values.length / kt;
      const positions = Uint32Array.from({ length: kt }, (_, i) => Math.floor(i * step));
      return [{ kind: 'sparse' as const, name: t.name, positions, values: new Float32Array(kt).fill(1e-3), codec }];
    });
  return largestFitting(total, (k) => payloadSize(specs(k), shapes, header) <= budget);
}

/** Bucket counts proportional to tensor size that fit the budget. */
export function chooseBucketCounts(tensors: TrainableTensor[], shapes: Map<string, readonly number[]>, header: HeaderOptions, codec: ValueCodec, budget: number, signed: boolean): Map<string, number> {
  const counts = (alpha: number) => new Map(tensors.map((t) => [t.name, Math.min(t.values.length, Math.max(1, Math.round(alpha * t.values.length)))]));
  // Seed 0xffffffff and non-integer values: the largest msgpack encodings a real seed and an
  // int8 scale can take (msgpack writes an integer-valued scale in fewer bytes), so sizes are upper bounds.
  const specs = (alpha: number): PatchSpec[] => [...counts(alpha)].map(([name, nb]) => ({ kind: 'hash', name, seed: 0xffffffff, signed, buckets: new Float32Array(nb).fill(1e-3), codec }));
  if (payloadSize(specs(0), shapes, header) > budget) {
    throw new BudgetError(`a budget of ${budget} bytes cannot give even one bucket to each of the ${tensors.length} tensors (needs ${payloadSize(specs(0), shapes, header)} bytes): raise the budget`);
  }
  let lo = 0;
  let hi = 1;
  for (let i = 0; i < 40; i++) {
    const mid = (lo + hi) / 2;
    if (payloadSize(specs(mid), shapes, header) <= budget) lo = mid;
    else hi = mid;
  }
  return counts(lo);
}

/**
 * Ranks of LoRA adapters that fit the budget: the largest rank every adapted matrix can share,
 * after taking matrices from the output end of the model while even rank 1 for all does not fit
 * (adapting the last layers first is the usual choice when few bytes are available).
 */
export function chooseLoraRanks(tensors: TrainableTensor[], shapes: Map<string, readonly number[]>, header: HeaderOptions, codec: ValueCodec, budget: number): Map<string, number> {
  const eligible = tensors.filter((t) => loraEligible(t.shape));
  const specs = (chosen: TrainableTensor[], rank: number): PatchSpec[] =>
    chosen.map((t) => {
      const cols = t.shape[t.shape.length - 1];
      const rows = t.values.length / cols;
      const r = Math.min(rank, rows, cols);
      return { kind: 'lowrank', name: t.name, rank: r, u: new Float32Array(rows * r).fill(1e-3), v: new Float32Array(r * cols).fill(1e-3), codec };
    });
  const fits = (chosen: TrainableTensor[], rank: number) => payloadSize(specs(chosen, rank), shapes, header) <= budget;
  // From the output end: the longest tail of eligible matrices that fits at rank 1.
  const n = largestFitting(eligible.length, (k) => fits(eligible.slice(eligible.length - k), 1));
  if (n === 0) throw new BudgetError(`a budget of ${budget} bytes cannot hold even a rank-1 adapter of one weight matrix: raise the budget`);
  const chosen = eligible.slice(eligible.length - n);
  const maxRank = Math.max(...chosen.map((t) => Math.min(t.values.length / t.shape[t.shape.length - 1], t.shape[t.shape.length - 1])));
  const rank = Math.max(1, largestFitting(maxRank, (r) => r >= 1 && fits(chosen, r)));
  return new Map(chosen.map((t) => {
    const cols = t.shape[t.shape.length - 1];
    return [t.name, Math.min(rank, t.values.length / cols, cols)] as [string, number];
  }));
}

/** Codec of a dense delta on a tensor's storage grid: whole steps as i8 when they fit, else f16/f32. */
function denseCodec(delta: Float32Array, grid: StorageGrid | undefined): ValueCodec {
  if (!grid || grid.dtype === 'float32') return 'f32';
  let max = 0;
  for (let i = 0; i < delta.length; i++) max = Math.max(max, Math.abs(delta[i]));
  if (isIntegerGrid(grid) && Math.round(max / grid.scale) <= 127) return 'i8';
  return max <= 65504 ? 'f16' : 'f32';
}

/** The error tfjs-backend-wasm gives when its 4 GiB memory is exhausted. */
function isOutOfMemory(e: unknown): boolean {
  const m = e instanceof Error ? e.message : String(e);
  return /memory access out of bounds|Aborted\(OOM\)|Cannot enlarge memory|Array buffer allocation failed|out of memory/i.test(m.slice(0, 2000));
}

/**
 * Train a diff of `model` (holding the base weights) on `train`. The model is left holding the
 * updated weights (base + payload, exactly as a device will).
 *
 * @throws NoImprovementError when nothing trained beats the base on validation (and not `allowWorse`);
 *   BudgetError, DataError, UsageError (bad options, a batch too large for the backend's memory).
 */
export async function trainDiff(model: tf.LayersModel, train: LabelledData, options: TrainDiffOptions): Promise<TrainDiffResult> {
  silenceTfjsNodeBanner();
  if (!TRAIN_METHODS.includes(options.method)) throw new UsageError(`unknown method ${JSON.stringify(options.method)} (expected ${TRAIN_METHODS.join(', ')})`);
  const hasher = options.hasher ?? (await getHasher());
  const base = options.base ?? modelToStore(model);
  const numClasses = (model.outputs[0].shape[model.outputs[0].shape.length - 1] as number) ?? 0;
  checkData(train, model.inputs[0].shape, numClasses, 'training data');
  if (options.eval) checkData(options.eval, model.inputs[0].shape, numClasses, 'evaluation data');
  const progress = options.onProgress ?? (() => {});
  const epochs = Math.max(1, Math.floor(options.epochs));
  const seed = options.seed ?? 0;
  const tune: TuneMode = options.tune ?? 'quick';
  if (!['off', 'quick', 'thorough'].includes(tune)) throw new UsageError(`tune must be off, quick or thorough, found ${JSON.stringify(tune)}`);
  const distill = options.distill ?? 1;
  const temperature = options.distillTemperature ?? 2;
  if (!(distill >= 0 && Number.isFinite(distill))) throw new UsageError(`distill must be a weight >= 0 (0 turns it off), found ${distill}`);
  if (!(temperature > 0 && Number.isFinite(temperature))) throw new UsageError(`distill temperature must be > 0, found ${temperature}`);
  const method = options.method;
  const fromLogits = outputsLogits(model);
  const shapes = new Map(base.list().map((t) => [t.name, t.shape] as const));
  const grids = storageGrids(base, options.store);
  const header: HeaderOptions = {
    ...(options.header ?? {}),
    // The payload header names the patch family; the precise method travels in the metadata.
    method: method === 'lora' ? 'lowrank' : method === 'topk-retrain' ? 'topk' : method,
    budgetBytes: method === 'full' ? 0 : options.budgetBytes,
    grids,
    ...(method === 'lora' || method === 'topk-retrain' ? { meta: { ...(options.header?.meta ?? {}), method } } : {}),
  };
  // The fine-tune behind the post-hoc methods and topk-retrain ships nothing itself: no budget.
  const fullHeader: HeaderOptions = { ...header, method: 'full', budgetBytes: 0 };
  const digests = baseDigests(hasher, base);

  // Which weights train (statistics never); flags go back as they were at the end.
  const selection = selectTrainable(model, options.trainable ?? 'config');
  const t0 = performance.now();
  const owned: LabelledData[] = [];
  try {
    const inStore = new Set(base.list().map((t) => t.name));
    const tensors: TrainableTensor[] = namedVariables(model)
      .filter((v) => v.trainable && v.variable.dtype === 'float32' && inStore.has(v.name))
      .map((v) => ({ name: v.name, shape: v.shape, values: base.values(v.name) }));
    // A budget that cannot hold the header and one value fails now, not after an hour of training.
    if (method !== 'full' && tensors.length > 0) {
      const headerOnly = payloadSize([], shapes, header);
      if (headerOnly >= options.budgetBytes) throw new BudgetError(`a budget of ${options.budgetBytes} bytes leaves no room for any value after the header (${headerOnly} bytes with no patch at all): raise the budget`);
    }
    progress(`training ${tensors.length} weight tensors${selection.frozenByConfig.length ? `; ${selection.frozenByConfig.length} are frozen by the model's config${options.trainable === 'all' || options.trainable instanceof RegExp ? ' (trained here as asked)' : ' (--trainable all trains them)'}` : ''}${selection.statistics ? `; ${selection.statistics} BatchNorm statistics stay as the base has them (inference mode)` : ''}`);

    // Validation: given, or a seeded stratified fraction held out of the training data.
    let trainData = train;
    let val: LabelledData | undefined;
    if (options.validation !== undefined && typeof options.validation !== 'number') {
      checkData(options.validation, model.inputs[0].shape, numClasses, 'validation data');
      val = options.validation;
    } else {
      const fraction = options.validation ?? 0.1;
      if (!(fraction >= 0 && fraction < 1)) throw new UsageError(`validation fraction must be in [0, 1), found ${fraction}`);
      if (fraction > 0) {
        const { rest, part } = stratifiedSplit(train.y, fraction, seed ^ 0x5eed);
        if (part.length > 0) {
          trainData = pick(train, rest);
          val = pick(train, part);
          owned.push(trainData, val);
        }
      }
    }
    if (!val && tune !== 'off') throw new UsageError('tuning needs validation data: pass validation (--val DATA or --val-fraction > 0), or tune off');
    if (!val && options.alsoConsider?.length) throw new UsageError('competing payloads (--also-consider) are judged on validation data: pass validation (--val DATA or --val-fraction > 0)');

    const backend = tf.getBackend();
    const heldBytes = [train, val, options.eval, ...owned].reduce((n, d) => n + (d ? d.x.size * 4 : 0), 0);
    const batchSize = chooseBatchSize(model, backend, heldBytes, options.batchSize, trainData.y.length);
    // Evaluation keeps a batch's forward activations (about 6 bytes per output value with tfjs' temporaries).
    const evalBatch = Math.max(1, Math.min(256, maxBatchSize(model, backend, heldBytes, 6 * activationsPerExample(model))));
    progress(`${trainData.y.length} training examples${val ? `, ${val.y.length} held out for validation${typeof options.validation === 'object' ? '' : ' (seeded, stratified)'}` : ''}; batch size ${batchSize}${options.batchSize === undefined ? ' (fits the backend\'s memory)' : ''}`);

    const evaluateOn = (data: LabelledData, what: string): Evaluation => {
      if (data.y.length > 200) progress(`evaluating ${what} on ${data.y.length} examples`);
      return evaluate(model, data, evalBatch, fromLogits);
    };
    const accuracyBefore = options.eval ? evaluateOn(options.eval, 'the base').accuracy : undefined;
    const baseVal = val ? evaluateOn(val, 'the base (validation)') : undefined;
    if (baseVal) progress(`base model: validation accuracy ${pct(baseVal.accuracy)}`);
    const majorityShare = val ? majority(val.y) : 1;
    const isCollapsed = (e: Evaluation) => e.topClassShare >= 0.9 && majorityShare < 0.6;

    /** Evaluate a built payload's exact device weights on validation; the model's weights come back. */
    const checkpointOf = (built: BuiltPayload, label: string, lr: number, keepWeights: boolean): Checkpoint => {
      if (!val) return { built, valAccuracy: NaN, valLoss: NaN, collapsed: false, correct: new Uint8Array(0), label, learningRate: lr, ...(keepWeights ? { weights: built.targetValues } : {}) };
      const saved = new Map<string, Float32Array>();
      for (const v of namedVariables(model)) if (built.targetValues.has(v.name)) saved.set(v.name, Float32Array.from(v.variable.dataSync() as Float32Array));
      setModelWeights(model, built.targetValues);
      const e = evaluate(model, val, evalBatch, fromLogits);
      setModelWeights(model, saved);
      const correct = Uint8Array.from(e.predictions, (p, i) => (p === val.y[i] ? 1 : 0));
      return { built, valAccuracy: e.accuracy, valLoss: e.loss, collapsed: isCollapsed(e), correct, label, learningRate: lr, ...(keepWeights ? { weights: built.targetValues } : {}) };
    };
    const better = (a: Checkpoint, b: Checkpoint | undefined): boolean => {
      if (!b) return true;
      if (a.collapsed !== b.collapsed) return !a.collapsed;
      if (a.valAccuracy !== b.valAccuracy) return a.valAccuracy > b.valAccuracy || Number.isNaN(b.valAccuracy);
      if (a.valLoss !== b.valLoss) return a.valLoss < b.valLoss;
      return a.built.bytes.length < b.built.bytes.length;
    };

    const teachers = new Map<LabelledData, Teacher>();
    let distilled: TrainDiffResult['distill'];
    /** Why the term is off; undefined while it is on. */
    let distillOff: string | undefined = distill > 0 ? undefined : 'turned off (distill 0)';
    /** The base model's outputs on `data` (every run starts with the model holding the base), what it predicts and where it is right. */
    const baseOutputs = (data: LabelledData): { outputs: Float32Array; predicted: Int32Array; right: Uint8Array } => {
      const n = data.y.length;
      const outputs = new Float32Array(n * numClasses);
      const predicted = new Int32Array(n);
      const right = new Uint8Array(n);
      for (let start = 0; start < n; start += evalBatch) {
        const end = Math.min(n, start + evalBatch);
        const out = tf.tidy(() => {
          const o = model.apply(tf.slice(data.x, [start], [end - start]), { training: false }) as tf.Tensor;
          return fromLogits ? tf.logSoftmax(o) : o;
        });
        outputs.set(out.dataSync() as Float32Array, start * numClasses);
        out.dispose();
        for (let i = start; i < end; i++) {
          let top = 0;
          for (let c = 1; c < numClasses; c++) if (outputs[i * numClasses + c] > outputs[i * numClasses + top]) top = c;
          predicted[i] = top;
          right[i] = top === data.y[i] ? 1 : 0;
        }
      }
      return { outputs, predicted, right };
    };
    /**
     * The examples the distillation term keeps the base's outputs on: those it classifies right,
     * and of those only the replayed ones when the data says which are (`LabelledData.replay`):
     * the update's own examples then learn from their labels alone, so a model that already
     * answers them right, but unsurely (old words in a new room or voice), may grow surer.
     */
    const keptBy = (data: LabelledData, right: Uint8Array): Uint8Array => (data.replay ? right.map((r, i) => r & (data.replay as Uint8Array)[i]) : right);
    /** The distillation teacher of `data`, computed once. */
    const teacherOf = (data: LabelledData): Teacher | undefined => {
      if (distillOff) return undefined;
      let t = teachers.get(data);
      if (!t) {
        const { outputs, right } = baseOutputs(data);
        t = { outputs, right: keptBy(data, right), weight: distill, temperature };
        teachers.set(data, t);
      }
      return t;
    };
    if (!distillOff) {
      // A base that does not do this task (a new task, or an untrained model) agrees with the
      // labels by chance only: nothing to keep, and pulling the examples to its outputs would only
      // hold them back. Examples of a class it never answers (a class new in this update) have
      // nothing to keep either, and do not count against it.
      const { outputs, predicted, right: baseRight } = baseOutputs(trainData);
      const right = keptBy(trainData, baseRight);
      const kept = right.reduce((a, r) => a + r, 0);
      const agreement = agreementBeyondChance(trainData.y, predicted);
      if (!(agreement.kappa >= DISTILL_MIN_KAPPA)) {
        distillOff = `the base does not do this task (Cohen's kappa ${agreement.kappa.toFixed(2)} < ${DISTILL_MIN_KAPPA})`;
        progress(`distillation off: the base model agrees with the labels little better than chance (Cohen's kappa ${agreement.kappa.toFixed(2)}, ${DISTILL_MIN_KAPPA} needed, on the ${agreement.examples} training examples of the classes it ever answers), so it has nothing on this task to keep`);
      } else {
        teachers.set(trainData, { outputs, right, weight: distill, temperature });
        distilled = { weight: distill, temperature, examples: kept, kappa: agreement.kappa };
        const replayed = trainData.replay ? trainData.replay.reduce((a, r) => a + r, 0) : undefined;
        progress(`distillation: keeping the base model's outputs on the ${kept} of ${replayed === undefined ? `${trainData.y.length} training examples` : `${replayed} replayed training examples (of ${trainData.y.length})`} it classifies right (weight ${distill}, temperature ${temperature}; Cohen's kappa ${agreement.kappa.toFixed(2)}; --distill 0 turns it off)`);
      }
    }

    const candidates: TuningCandidate[] = [];
    const allReports: EpochReport[] = [];
    const patience = options.patience ?? 2;

    /**
     * One run of `kind` at rate `lr` on `data` for `n` epochs: its best checkpoint by validation,
     * or none when it diverged before any. `prepare` gives the parameterization and how to turn it
     * into patch specs; checkpoints happen where the method's state is shippable.
     */
    type Kind = 'full' | 'sparse' | 'hash' | 'lora' | 'retrain';
    const runOnce = (kind: Kind, lr: number, data: LabelledData, n: number, candidateKind: TuningCandidate['kind'], retrainPositions?: Map<string, Uint32Array>): Checkpoint | undefined => {
      const started = performance.now();
      const label = `${kind === 'retrain' ? 'retrain' : kind} lr ${lr.toExponential(1)}${candidateKind === 'trial' ? ' (trial)' : ''}`;
      progress(`${label}: ${n} epoch(s) on ${data.y.length} examples`);
      const stepsPerEpoch = Math.ceil(data.y.length / batchSize);
      const codec: ValueCodec = options.codec && options.codec !== 'auto' ? options.codec : 'i8';
      let best: Checkpoint | undefined;
      let sinceBest = 0;
      let diverged = false;
      let allCollapsed = true;
      let firstLoss: number | undefined;
      let epochsRun = 0;
      /** Without validation only the last epoch is a checkpoint (nothing to compare the others with). */
      const skip = (r: EpochReport) => !val && r.epoch < r.epochs;
      const consider = (built: BuiltPayload, at: string, keepWeights = false): boolean => {
        const c = checkpointOf(built, `${label} ${at}`, lr, keepWeights);
        if (!c.collapsed) allCollapsed = false;
        const improved = better(c, best);
        if (improved) {
          best = c;
          sinceBest = 0;
        } else sinceBest++;
        if (val) progress(`  ${at}: validation ${pct(c.valAccuracy)} (loss ${c.valLoss.toFixed(4)})${c.collapsed ? ', predicts one class' : ''}${improved ? ' (best)' : ''}`);
        return val !== undefined && sinceBest >= patience;
      };
      const teacher = teacherOf(data);
      const loop = (param: Parameterization, optimizerFor: (v: string) => tf.Optimizer, count: number, offset: number, of: number, afterEpoch?: (r: EpochReport) => boolean) =>
        trainLoop(model, data, param, {
          ...(teacher ? { teacher } : {}),
          epochs: count,
          batchSize,
          seed: seed + offset,
          fromLogits,
          optimizerFor,
          grids: new Map([...grids].filter(([name]) => param.names.includes(name))),
          onBatch: (b) => {
            firstLoss ??= b.loss;
            options.onBatch?.({ ...b, epoch: b.epoch + offset });
          },
          onEpoch: (r) => {
            const report = { ...r, epoch: r.epoch + offset, epochs: of };
            allReports.push(report);
            epochsRun++;
            options.onEpoch?.(report);
            // An exploding loss is a divergence even while it stays finite.
            if (firstLoss !== undefined && r.loss > 3 * firstLoss + 1) {
              diverged = true;
              progress(`  epoch ${report.epoch}: loss ${r.loss.toFixed(3)} exploded from ${firstLoss.toFixed(3)}: stopping this run`);
              return true;
            }
            return afterEpoch?.(report) ?? false;
          },
        });
      const modelVars = new Map(namedVariables(model).map((v) => [v.name, v]));
      const restoreBase = () => setModelWeights(model, (name) => (shapes.has(name) ? base.values(name) : undefined));
      try {
        if (kind === 'full') {
          const useShadow = tensors.some((t) => grids.has(t.name));
          const param = useShadow ? new Shadow(tensors) : new Identity(tensors.map((t) => t.name), new Map([...modelVars].map(([n, v]) => [n, v.variable.name])));
          const opt = tf.train.adam(lr);
          const specsNow = (): PatchSpec[] => {
            const out: PatchSpec[] = [];
            for (const t of tensors) {
              const w1 = modelVars.get(t.name)!.variable.dataSync() as Float32Array;
              const d = new Float32Array(w1.length);
              let any = false;
              for (let i = 0; i < d.length; i++) if ((d[i] = w1[i] - t.values[i]) !== 0) any = true;
              if (any) out.push({ kind: 'dense', name: t.name, values: d, codec: denseCodec(d, grids.get(t.name)) });
            }
            return out;
          };
          try {
            loop(param, () => opt, n, 0, n, (r) => !skip(r) && consider(buildPayload(hasher, base, specsNow(), fullHeader, digests), `epoch ${r.epoch}`, true));
          } finally {
            opt.dispose();
            param.dispose();
          }
        } else if (kind === 'sparse' || kind === 'retrain') {
          const hardEpochs = kind === 'retrain' ? n : n >= 2 ? Math.max(1, Math.round(n * (options.hardFraction ?? 0.25))) : 0;
          const softEpochs = n - hardEpochs;
          const estimate = kind === 'retrain' ? [...(retrainPositions as Map<string, Uint32Array>).values()].reduce((a, p) => a + p.length, 0) : estimateSparseCount(tensors, shapes, header, codec, options.budgetBytes);
          if (estimate === 0) throw new BudgetError(`a budget of ${options.budgetBytes} bytes leaves no room for any value after the header: raise the budget`);
          const mask = new SparseMask(tensors, estimate, Math.max(1, softEpochs * stepsPerEpoch), { ...DEFAULT_SPARSE_MASK, ...(options.sparse ?? {}) });
          const optD = tf.train.adam(lr);
          const optS = tf.train.adam(options.maskLearningRate ?? 1e-2);
          const specsNow = (positions: Map<string, Uint32Array>): PatchSpec[] => {
            const deltas = mask.effectiveDeltas();
            return [...positions].filter(([, pos]) => pos.length).map(([name, pos]) => {
              const d = deltas.get(name) as Float32Array;
              return { kind: 'sparse', name, positions: pos, values: Float32Array.from(pos, (p) => d[p]), codec };
            });
          };
          try {
            let positions: Map<string, Uint32Array>;
            if (kind === 'retrain') {
              positions = retrainPositions as Map<string, Uint32Array>;
            } else {
              progress(`  sparse: about ${estimate} of ${mask.total} weights fit ${options.budgetBytes} bytes as ${codec}; ${softEpochs} soft-mask epoch(s), ${hardEpochs} hard-mask epoch(s)`);
              loop(mask, (v) => (mask.isScore(v) ? optS : optD), softEpochs, 0, n);
              // The exact mask: the largest effective changes that fit the budget with the real encoder.
              const ranking = new MagnitudeRanking(mask.effectiveDeltas());
              const k = largestFitting(ranking.total, (k) => payloadSize(ranking.specs(k, codec), shapes, header) <= options.budgetBytes);
              positions = new Map(ranking.specs(k, codec).map((s) => [s.name, (s as { positions: Uint32Array }).positions]));
            }
            mask.harden(positions, codec);
            if (kind === 'sparse' && (val || !hardEpochs)) consider(buildPayload(hasher, base, specsNow(positions), header, digests), `hard mask of ${[...positions.values()].reduce((a, p) => a + p.length, 0)} weights`);
            if (hardEpochs) {
              const optH = tf.train.adam(lr);
              try {
                loop(mask, () => optH, hardEpochs, softEpochs, n, (r) => !skip(r) && consider(buildPayload(hasher, base, specsNow(positions), header, digests), `epoch ${r.epoch}`));
              } finally {
                optH.dispose();
              }
            }
          } finally {
            mask.dispose();
            optD.dispose();
            optS.dispose();
          }
        } else if (kind === 'hash') {
          const signed = options.hashSigned ?? true;
          const counts = chooseBucketCounts(tensors, shapes, header, codec, options.budgetBytes, signed);
          progress(`  hash: ${[...counts.values()].reduce((a, b) => a + b, 0)} buckets over ${tensors.length} tensors fit ${options.budgetBytes} bytes as ${codec}`);
          const hb = new HashedBuckets(tensors, counts, seed, signed, codec);
          const opt = tf.train.adam(lr);
          try {
            loop(hb, () => opt, n, 0, n, (r) => !skip(r) && consider(buildPayload(hasher, base, [...hb.buckets()].map(([name, b]) => ({ kind: 'hash', name, seed: b.seed, signed, buckets: b.values, codec })), header, digests), `epoch ${r.epoch}`));
          } finally {
            hb.dispose();
            opt.dispose();
          }
        } else {
          const ranks = chooseLoraRanks(tensors, shapes, header, codec, options.budgetBytes);
          const rankValues = [...ranks.values()];
          progress(`  lora: rank ${Math.max(...rankValues)} adapters on ${ranks.size} of ${tensors.length} weight tensors fit ${options.budgetBytes} bytes as ${codec}`);
          const adapters = new LowRankAdapters(tensors, ranks, seed, codec);
          const opt = tf.train.adam(lr);
          try {
            loop(adapters, () => opt, n, 0, n, (r) => !skip(r) && consider(buildPayload(hasher, base, [...adapters.factorsFor()].map(([name, f]) => ({ kind: 'lowrank', name, rank: f.rank, u: f.u, v: f.v, codec })), header, digests), `epoch ${r.epoch}`));
          } finally {
            adapters.dispose();
            opt.dispose();
          }
        }
      } catch (e) {
        if (e instanceof TrainingDiverged) {
          diverged = true;
          progress(`  ${e.message}: this run is dropped`);
        } else if (isOutOfMemory(e)) {
          throw new UsageError(`the ${backend} backend ran out of memory training with batch size ${batchSize}: pass --batch-size ${Math.max(1, Math.floor(batchSize / 2))} (or less)`, { batchSize });
        } else throw e;
      } finally {
        restoreBase();
      }
      const seconds = (performance.now() - started) / 1000;
      // A run that diverged after some checkpoints keeps its best one (restored, not its last state).
      const usable = best;
      candidates.push({ learningRate: lr, kind: candidateKind, examplesSeen: epochsRun * data.y.length, epochs: epochsRun, ...(usable && val ? { valAccuracy: usable.valAccuracy, valLoss: usable.valLoss } : {}), diverged, collapsed: best !== undefined && allCollapsed, seconds });
      return usable;
    };

    /** Tune the learning rate of `kind` (see the module doc); the best checkpoint over every run. */
    const tuned = (kind: Kind, defaultLr: number, retrainPositions?: Map<string, Uint32Array>): Checkpoint => {
      const lr0 = options.learningRate ?? defaultLr;
      const firstCandidate = candidates.length;
      let best: Checkpoint | undefined;
      const offer = (c: Checkpoint | undefined) => {
        if (c && better(c, best)) best = c;
      };
      const ok = (c: Checkpoint | undefined) => c !== undefined && !c.collapsed;
      if (tune === 'off') {
        offer(runOnce(kind, lr0, trainData, epochs, 'full', retrainPositions));
      } else if (tune === 'quick') {
        // Three rates on half the training data (seeded, stratified), then the best on all of
        // it: 1.5 runs of trials plus one. The rates bracket: the start and a third of it, then
        // a third lower again if the lower one won, else three times the start, so a best rate
        // below (or above) the start is found without a fourth trial.
        const { part } = stratifiedSplit(trainData.y, 0.5, seed ^ 0x7e57);
        const half = pick(trainData, part);
        owned.push(half);
        const trials: { lr: number; c: Checkpoint | undefined }[] = [];
        const trial = (lr: number): void => {
          const c = runOnce(kind, lr, half, epochs, 'trial', retrainPositions);
          trials.push({ lr, c });
          offer(c);
        };
        trial(tidy(lr0));
        trial(tidy(lr0 / 3));
        const [start, third] = trials;
        // Lower when the third won, or when the start diverged or collapsed.
        const lower = !ok(start.c) || (ok(third.c) && better(third.c as Checkpoint, start.c));
        trial(tidy(lower ? lr0 / 9 : lr0 * 3));
        const winner = trials.filter((t) => ok(t.c)).sort((a, b) => (better(a.c as Checkpoint, b.c) ? -1 : 1))[0];
        if (winner) offer(runOnce(kind, winner.lr, trainData, epochs, 'full', retrainPositions));
      } else {
        for (const lr of [lr0 * 10, lr0 * 3, lr0, lr0 / 3, lr0 / 10].map(tidy)) offer(runOnce(kind, lr, trainData, epochs, 'full', retrainPositions));
      }
      // Recovery: every run diverged or collapsed; go below the lowest rate tried, 3x and then
      // 30x lower, until one does not.
      const lowest = Math.min(...candidates.slice(firstCandidate).map((c) => c.learningRate), lr0);
      for (let f = 3, tries = 0; !ok(best) && tries < 2; f *= 10, tries++) {
        const lr = tidy(lowest / f);
        progress(`no run gave a usable model (diverged or predicting one class): retrying at learning rate ${lr.toExponential(1)}`);
        offer(runOnce(kind, lr, trainData, epochs, 'recovery', retrainPositions));
      }
      if (!best) {
        throw new NoImprovementError(
          `every ${kind} run diverged (its loss became NaN or exploded) at learning rates ${candidates.map((c) => c.learningRate.toExponential(1)).join(', ')}: nothing was written; check the data (labels in range? inputs scaled as the model expects?) or pass a lower --lr`,
          { candidates },
        );
      }
      return best;
    };

    let chosen: Checkpoint;
    let fullWeights: Map<string, Float32Array> | undefined;
    const needsFull = method === 'full' || method === 'topk' || method === 'drop' || method === 'lowrank' || method === 'topk-retrain';
    if (needsFull) {
      if (options.fullWeights && method !== 'full') {
        fullWeights = new Map(options.fullWeights);
      } else {
        const f = tuned('full', DEFAULT_FULL_LR);
        fullWeights = f.weights as Map<string, Float32Array>;
        chosen = f;
      }
    }
    if (method === 'full') {
      chosen = chosen!;
    } else if (method === 'sparse' || method === 'hash' || method === 'lora') {
      chosen = tuned(method, DEFAULT_DIFF_LR);
    } else {
      const deltas = new Map<string, Float32Array>();
      for (const t of base.list()) {
        const w0 = base.values(t.name);
        const w1 = fullWeights!.get(t.name) ?? w0;
        const d = new Float32Array(w0.length);
        for (let i = 0; i < d.length; i++) d[i] = w1[i] - w0[i];
        deltas.set(t.name, d);
      }
      const common = { ...(options.header ?? {}), budgetBytes: options.budgetBytes, seed, ...(options.store ? { store: options.store } : {}) };
      if (method === 'topk-retrain') {
        const codec: ValueCodec = options.codec && options.codec !== 'auto' ? options.codec : 'i8';
        const ranking = new MagnitudeRanking(new Map([...deltas].filter(([name]) => tensors.some((t) => t.name === name))));
        const k = largestFitting(ranking.total, (k) => payloadSize(ranking.specs(k, codec), shapes, header) <= options.budgetBytes);
        if (k === 0) throw new BudgetError(`a budget of ${options.budgetBytes} bytes leaves no room for any value after the header: raise the budget`);
        const positions = new Map(ranking.specs(k, codec).map((s) => [s.name, (s as { positions: Uint32Array }).positions]));
        progress(`topk-retrain: mask of the ${k} largest changes of the full fine-tune; retraining them from the base`);
        chosen = tuned('retrain', DEFAULT_DIFF_LR, positions);
      } else {
        const built = method === 'topk'
          ? topkFromDeltas(hasher, base, deltas, { ...common, codec: options.codec ?? 'auto', onProgress: progress }, 'topk')
          : method === 'drop'
            ? dropDiff(hasher, base, deltas, { ...common, codec: options.codec && options.codec !== 'auto' ? options.codec : 'f16' })
            : lowRankDiff(hasher, base, deltas, { ...common, codec: options.codec && options.codec !== 'auto' ? options.codec : 'f16' });
        chosen = checkpointOf(built, method, NaN, false);
      }
    }

    // Smaller budgets' results compete: a larger budget is never worse on validation, and its
    // extra bytes are shipped only when they clearly help.
    let competition: TrainDiffResult['selection'];
    if (options.alsoConsider?.length) {
      const own = chosen;
      const competing: Checkpoint[] = [own];
      for (const other of options.alsoConsider) {
        const label = other.label ?? `the ${other.method} result at ${other.budgetBytes} bytes`;
        if (other.payload.header.baseFingerprint !== own.built.payload.header.baseFingerprint) {
          progress(`${label} is for another base: passed over`);
          continue;
        }
        if (other.bytes.length > Math.max(options.budgetBytes, own.built.bytes.length)) {
          progress(`${label} is larger than this budget (${other.bytes.length} bytes): passed over`);
          continue;
        }
        competing.push(checkpointOf({ bytes: other.bytes, payload: other.payload, targetValues: other.targetValues }, label, other.tuning?.learningRate ?? NaN, false));
      }
      if (competing.length > 1) {
        // From the fewest bytes up, each larger payload must beat the one kept so far.
        const bySize = competing.map((c, i) => ({ c, i })).sort((a, b) => a.c.built.bytes.length - b.c.built.bytes.length || a.i - b.i).map(({ c }) => c);
        let kept = bySize[0];
        for (const c of bySize.slice(1)) {
          const sameSize = c.built.bytes.length === kept.built.bytes.length;
          const oneClassDiffers = kept.collapsed !== c.collapsed;
          const takes = oneClassDiffers ? !c.collapsed : sameSize ? better(c, kept) : significantlyBetter(c.correct, kept.correct);
          const verdict = oneClassDiffers
            ? takes ? 'kept (the other predicts one class)' : 'predicts one class, passed over'
            : sameSize ? (takes ? 'better, kept' : 'not better, the first stays') : takes ? 'significantly better, kept' : 'not significantly better, the smaller stays';
          progress(`${c.label} (${c.built.bytes.length} bytes, validation ${pct(c.valAccuracy)}) vs ${kept.label} (${kept.built.bytes.length} bytes, ${pct(kept.valAccuracy)}): ${verdict}`);
          if (takes) kept = c;
        }
        chosen = kept;
        competition = {
          considered: competing.map((c) => ({ label: c.label, bytes: c.built.bytes.length, valAccuracy: c.valAccuracy, chosen: c === kept })),
          ...(kept !== own ? { own: { bytes: own.built.bytes, payload: own.built.payload, targetValues: own.built.targetValues, valAccuracy: own.valAccuracy } } : {}),
        };
      }
    }

    if (val && baseVal) {
      progress(`chosen: ${chosen.label}, validation ${pct(chosen.valAccuracy)} (base ${pct(baseVal.accuracy)})`);
      if (chosen.valAccuracy < baseVal.accuracy && !options.allowWorse) {
        const tried = candidates.map((c) => `lr ${c.learningRate.toExponential(1)}${c.kind === 'trial' ? ' (trial)' : ''}: ${c.valAccuracy === undefined ? 'no usable checkpoint' : pct(c.valAccuracy)}${c.diverged ? ', diverged' : ''}${c.collapsed ? ', one class' : ''}`).join('; ');
        throw new NoImprovementError(
          `the best ${method} result reaches ${pct(chosen.valAccuracy)} on validation, below the base model's ${pct(baseVal.accuracy)}${chosen.collapsed ? ' (it predicts almost everything as one class)' : ''}; tried ${tried || chosen.label}. Nothing was written: try more epochs, a larger budget, more or cleaner data, --tune thorough, or --allow-worse to write it anyway`,
          { method, valAccuracy: chosen.valAccuracy, baseValAccuracy: baseVal.accuracy, candidates },
        );
      }
    }

    const trainSeconds = (performance.now() - t0) / 1000;
    // The model now holds exactly what a device holds after applying the payload.
    setModelWeights(model, (n) => chosen.built.targetValues.get(n) ?? (shapes.has(n) ? base.values(n) : undefined));
    let accuracyAfter: number | undefined;
    let predictions: Int32Array | undefined;
    if (options.eval) ({ accuracy: accuracyAfter, predictions } = evaluateOn(options.eval, 'the update'));
    // One untuned run of the method: topk-retrain that fine-tunes first is two.
    const stages = method === 'topk-retrain' && !options.fullWeights ? 2 : 1;
    const oneRun = stages * epochs * trainData.y.length;
    const seen = candidates.reduce((n, c) => n + c.examplesSeen, 0);
    return {
      method,
      bytes: chosen.built.bytes,
      payload: chosen.built.payload,
      budgetBytes: options.budgetBytes,
      targetValues: chosen.built.targetValues,
      accuracyBefore,
      accuracyAfter,
      predictions,
      epochs: allReports,
      trainSeconds,
      fullWeights,
      ...(val && baseVal ? { validation: { examples: val.y.length, baseAccuracy: baseVal.accuracy, accuracy: chosen.valAccuracy, loss: chosen.valLoss } } : {}),
      tuning: { mode: tune, candidates, learningRate: chosen.learningRate, chosen: chosen.label, seconds: trainSeconds, cost: oneRun ? seen / oneRun : 0 },
      trainable: { trained: tensors.map((t) => t.name), frozenByConfig: selection.frozenByConfig, statistics: selection.statistics },
      ...(distilled ? { distill: distilled } : {}),
      ...(distillOff ? { distillOff } : {}),
      ...(competition ? { selection: competition } : {}),
      batchSize,
    };
  } finally {
    selection.restore();
    for (const d of owned) d.x.dispose();
  }
}

/** A learning rate without float noise (9e-3, not 0.009000000000000001). */
function tidy(lr: number): number {
  return Number(lr.toPrecision(6));
}

function pct(x: number): string {
  return `${(100 * x).toFixed(2)}%`;
}

/**
 * How much better than chance the base does the task, for the distillation gate: below this
 * Cohen's kappa (0.2: "slight" agreement at most, Landis & Koch 1977) it has nothing to keep.
 */
export const DISTILL_MIN_KAPPA = 0.2;

/**
 * Cohen's kappa of `predicted` against `labels` over the examples whose label the model predicts
 * for at least one example (a class it never answers, e.g. one new in this update, is left out;
 * choosing the classes by what it predicts, not by where it is right, keeps a random model at 0
 * however many classes there are): 1 for perfect agreement, 0 for chance (the agreement expected
 * from how often each label occurs and how often each is predicted), below 0 for worse. Unlike
 * accuracy against the most common label's share it works for two classes and unbalanced labels.
 */
export function agreementBeyondChance(labels: Int32Array, predicted: Int32Array): { kappa: number; examples: number } {
  const known = new Set<number>();
  for (const c of predicted) known.add(c);
  const trueCount = new Map<number, number>();
  const predCount = new Map<number, number>();
  let n = 0;
  let agree = 0;
  for (let i = 0; i < labels.length; i++) {
    if (!known.has(labels[i])) continue;
    n++;
    if (predicted[i] === labels[i]) agree++;
    trueCount.set(labels[i], (trueCount.get(labels[i]) ?? 0) + 1);
    predCount.set(predicted[i], (predCount.get(predicted[i]) ?? 0) + 1);
  }
  if (n === 0) return { kappa: 0, examples: 0 };
  let chance = 0;
  for (const [c, k] of trueCount) chance += (k / n) * ((predCount.get(c) ?? 0) / n);
  const observed = agree / n;
  // One class that the model always predicts: no evidence beyond chance. (So a base whose
  // replayed data holds a single old class never distills; and one stray answer of a class new in
  // the update counts all of that class's examples against the base. Bases trained with a softmax
  // do not answer classes they never saw, so neither happens in the benchmarks.)
  return { kappa: chance >= 1 ? 0 : (observed - chance) / (1 - chance), examples: n };
}

/** Share of the most frequent label. */
function majority(y: Int32Array): number {
  const counts = new Map<number, number>();
  for (const v of y) counts.set(v, (counts.get(v) ?? 0) + 1);
  return Math.max(0, ...counts.values()) / Math.max(1, y.length);
}
