/**
 * What `trainDiff` takes and returns: the options of a training run, the learning rates it tried,
 * and its result. Types only, so the CLI and reports can name them without loading tfjs.
 */
import type { LowBitOptions } from '../lowbit-diff/index.ts';
import type { LowBitCache } from '../lowbit-diff/cache.ts';
import type { Hasher } from '../core/hasher.ts';
import type { ValueCodec } from '../core/values.ts';
import type { WeightStore } from '../core/weight-store.ts';
import type { Payload } from '../core/format.ts';
import type { HeaderOptions, StoreAs } from '../diff/build.ts';
import type { SparseMaskOptions } from '../sparse-diff/index.ts';
import type * as tf from '@tensorflow/tfjs';
import type { InputData, LabelledData } from './data.ts';
import type { TeacherLoss, TeacherMetric } from './teacher.ts';
import type { EpochReport } from './loop.ts';
import type { TrainableSpec } from './select.ts';
import type { TrainMethod } from './methods.ts';

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
  /**
   * Threads computing each training step (data parallel: the batch is split across worker threads,
   * each with its own backend, and their gradients summed in a fixed order and applied once).
   * Default: the machine's cores (`os.availableParallelism()`). The same seed and thread count give
   * the same payload bytes; another thread count sums the shards' gradients in another order, so its
   * float rounding and hence its bytes differ slightly (the accuracy does not, beyond noise). 1 trains
   * on the calling thread alone, exactly as before threads existed. When the default cannot start its
   * workers (a model a fresh thread cannot rebuild) the run says so and trains on one thread; an
   * explicit count fails with a TrainingWorkerError instead.
   */
  threads?: number;
  /**
   * How each training step runs (src/engine/compiled/): `compiled` (default) records the first
   * steps of each phase as a plan of kernel calls, checks its first replay against an eager step
   * from the same state and replays it from then on; a phase that cannot be captured (a value read
   * into JavaScript mid-step, a random op) or does not verify runs eagerly, and `onProgress` says
   * why, once. The forward-only passes (the teacher's outputs, validation and evaluation) are
   * compiled the same way, keyed by the pass and its inputs' shapes and checked bit for bit
   * (src/engine/compiled/forward.ts). `eager` runs every step and every pass through the engine.
   * Same seed and path, same payload bytes.
   */
  step?: 'compiled' | 'eager';
  /**
   * Memory bound, in bytes, for caching the outputs of the model's first layers when none of
   * them trains (frozen by the config or by `trainable`): they are computed once per example
   * and reused by every step and run (src/train/prefix-cache.ts). Default 512 MiB; 0 computes
   * them at every step. Data whose activations would not fit is not cached.
   */
  prefixCacheBytes?: number;
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
  eval?: LabelledData | InputData;
  /**
   * Validation data that chooses the learning rate and the checkpoint, or the fraction of the
   * training data held out for it (default 0.1, seeded and stratified); 0 trains on everything
   * and validates nothing (then `tune` must be `'off'`).
   */
  validation?: LabelledData | InputData | number;
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
   * knew (forgetting), the base's full output distribution holds it there. See `Teacher` (src/train/loop.ts).
   * When the training data marks its replayed examples (`LabelledData.replay`), only those are
   * kept: the update's own examples learn from their labels alone, even where the base already
   * gets them right (old classes in new conditions, which the update is there to make surer).
   * Off by itself when the base agrees with the training labels little better than chance
   * (Cohen's kappa below `DISTILL_MIN_KAPPA` (0.2) on the examples of the classes it ever answers:
   * a new task or an untrained model, nothing to keep); `distillOff` says why.
   */
  distill?: number;
  /** Temperature of the distillation term (default 2). */
  distillTemperature?: number;
  /** Return a result worse than the base on validation (or, for a teacher diff, on `eval`) instead of refusing it. */
  allowWorse?: boolean;
  /**
   * Refuse a teacher diff less close to the teacher than the base on `eval` (default true; see
   * eval-gate.ts). `trainAuto` turns it off for its candidates and asks it of the chosen one, so
   * the evaluation examples never choose.
   */
  refuseWorseOnEval?: boolean;
  /** Called with what the caller should see even when progress is quiet (too few validation examples); default: a progress line. */
  onWarning?: (message: string) => void;
  /**
   * Teacher diffs: the new version a team already trained (same inputs and outputs as the base;
   * its layers and weights may differ). The diff learns to make the base's outputs match the
   * teacher's on the training inputs, which then need no labels (`y` may be absent); labels that
   * are given add their cross-entropy. Checkpoints, tuning, early stopping and `alsoConsider` are
   * then judged by closeness to the teacher on validation (top-1 agreement for classifiers, mean
   * absolute output difference otherwise), and a result less close than the base is refused
   * unless `allowWorse`. The base-keeping distillation term is off (the teacher gives every
   * target). `topk-retrain` and the post-hoc methods take the teacher's weights as the full
   * fine-tune (then the teacher must have the base's weights, same names and shapes).
   * See src/train/teacher.ts.
   */
  teacher?: tf.LayersModel;
  /**
   * With a teacher: unlabeled inputs from where the model runs (the base's own training inputs,
   * field captures; any number of sets) drawn into the training stream beside the update's own,
   * the teacher's outputs their targets. See src/train/distill-inputs.ts. Empty: nothing changes.
   */
  distillInputs?: InputData[];
  /** The share of the training stream drawn from `distillInputs`, in [0, 1) (default 0.5). */
  distillMix?: number;
  /**
   * With a teacher: augmentations each step applies to its batch before the teacher and the
   * model score it (src/train/augment.ts): `none` (default) or names in the order they apply;
   * `auto`: those that fit the input's kind, each kept only where validation agreement with the
   * teacher improves (src/train/augment-auto.ts: up to 2 + candidates runs).
   */
  augment?: string | readonly string[];
  /** Weight of the teacher term (default 1); labels, when given, add their cross-entropy at weight 1. */
  teacherWeight?: number;
  /** The teacher term: `kl` of softened probabilities (default for a model whose outputs end in a softmax) or `mse` of the raw outputs (default otherwise). */
  teacherLoss?: TeacherLoss | 'auto';
  /**
   * Temperature of the `kl` teacher term (default 1: what the digits, keyword and Silero updates
   * measured best; docs/guides/shipping-a-trained-model.md).
   */
  temperature?: number;
  /**
   * Sparse diffs with a teacher: start the diff from the teacher's change (teacher − base;
   * `'teacher'`, the teacher must have the base's weights) or from zero (`'zero'`). `'auto'`
   * (default): with a teacher that has the base's weights and a validation set, both are trained
   * and the closer to the teacher on validation is kept (about twice the time; the teacher's
   * change helped the fine-tuned digits and keyword updates and hurt the retrained Silero v6);
   * otherwise zero.
   */
  sparseStart?: 'zero' | 'teacher' | 'auto';
  /**
   * `sparse-lora`: the share of the byte budget given to the sparse part (the rest goes to the
   * low-rank adapters), in (0, 1). Unset: 0.5 while the learning rate is tuned, then 0.25 and
   * 0.75 are trained at the chosen rate and the best on validation is kept (with `tune: 'off'`,
   * 0.5 alone).
   */
  sparseShare?: number;
  /**
   * `lowbit`: how the post-hoc payload whose scales then train is made (src/lowbit-diff's options:
   * `widths`, `layouts`, `lowRank`, `outliers`, `newValues`, `cover`, `proxy`). BitDelta is
   * `BITDELTA_CODE`: the sign of every change and one scale per tensor, distilled.
   */
  lowbit?: Pick<LowBitOptions, 'widths' | 'layouts' | 'lowRank' | 'outliers' | 'newValues' | 'cover' | 'proxy'>;
  /**
   * `lowbit`: also train the codes (default true): a float change per value whose rounding at the
   * current scale is its code, straight through the rounding, from the change the post-hoc codes
   * were rounded from; trained beside the scales-only run (BitDelta's recipe), the one closer to
   * the teacher on validation kept. Doubles the training time; false trains the scales alone.
   */
  lowbitCodes?: boolean;
  /**
   * `lowbit`: the post-hoc start's quantizations kept between runs on the same change (the
   * teacher's, or the full fine-tune's), as `diff()`'s `lowbitCache`: `budget: 'auto'` hands its
   * search's cache to each trained budget, which then quantizes no tensor the post-hoc payloads
   * or a smaller budget's run already did. The payload is the same bytes with or without it.
   */
  lowbitCache?: LowBitCache;
  /**
   * Results of smaller budgets on the same base and data (earlier `trainDiff` results, or payload
   * files through {@link competingPayload}): they compete in the final choice. More bytes must
   * earn their place: going from the fewest bytes up, a larger payload replaces the one kept only
   * when it is right on significantly more validation examples (`significantlyBetter`); of
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
  /**
   * Awaited after every epoch of every run (tuning trials included), with the best checkpoint of
   * the method's own payload so far (none yet: in a full fine-tune the method starts from, or a
   * sparse mask's soft phase). The run may be suspended there and continued later exactly as it
   * would have gone on (src/train/auto-halving.ts), or stopped by throwing: the run's resources are
   * freed and the error comes out of `trainDiff`. The model's weights must be as the run left them
   * when the promise settles.
   */
  pause?: (at: { best?: { score: number; scoreText: string; bytes: number } }) => Promise<void>;
}

/** One learning rate tried, and what it gave on validation. */
export interface TuningCandidate {
  learningRate: number;
  /** `trial`: on half the training data (quick tuning); `full`: on all of it; `recovery`: a lower rate after a failed run. */
  kind: 'trial' | 'full' | 'recovery';
  /** `sparse-lora`: the share of the budget its sparse part had. */
  sparseShare?: number;
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
  /** With `augment: 'auto'`: the augmentations kept, and each run's closeness to the teacher on validation. */
  augmentation?: { kept: string[]; tried: { augment: string; score: number }[] };
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
  /**
   * With a teacher: how the diff was trained toward it and how close the result is, on
   * validation and on the eval data (agreement: top-1 agreement, NaN for outputs without
   * classes; meanAbsDiff: mean absolute output difference), for the base and for the result.
   */
  teacher?: {
    loss: TeacherLoss;
    metric: TeacherMetric;
    temperature: number;
    weight: number;
    /** Whether the training data had labels (then their cross-entropy was added). */
    labels: boolean;
    validation?: { examples: number; baseAgreement: number; agreement: number; baseMeanAbsDiff: number; meanAbsDiff: number };
    /** On the eval data; with its labels, the teacher's own accuracy too. */
    eval?: { examples: number; agreementBefore: number; agreementAfter: number; meanAbsDiffBefore: number; meanAbsDiffAfter: number; teacherAccuracy?: number };
  };
  /** The learning rates tried and the one chosen. */
  tuning: { mode: TuneMode; candidates: TuningCandidate[]; learningRate: number; chosen: string; seconds: number; cost: number };
  /** Which weights trained. */
  trainable: { trained: string[]; frozenByConfig: string[]; statistics: number };
  /**
   * The frozen first layers whose outputs were computed once per example: the layer cut after,
   * how many layers of the model that is, and the bytes the cached activations took at most.
   */
  prefixCache?: { cut: string; layers: number; of: number; bytes: number };
  /** The distillation term (undefined when off, asked or because the base does not do this task): its weight, temperature, and the training examples it kept (those the base classifies right). */
  distill?: { weight: number; temperature: number; examples: number; kappa: number };
  /** Why the distillation term is off, when it is (asked for, or the base does not do this task). */
  distillOff?: string;
  /**
   * With `alsoConsider`: every payload that competed (this run's own first) with its validation
   * accuracy (and with a teacher its `score`, the closeness it was chosen by), which one was chosen, and this run's own result when a competitor was chosen
   * instead (to measure what the budget alone would have given).
   */
  selection?: {
    considered: { label: string; bytes: number; valAccuracy: number; score?: number; chosen: boolean }[];
    own?: Pick<TrainDiffResult, 'bytes' | 'payload' | 'targetValues'> & { valAccuracy: number };
  };
  batchSize: number;
}

/** A payload that competes with a training's own result ({@link TrainDiffOptions.alsoConsider}). */
export type CompetingResult = Pick<TrainDiffResult, 'bytes' | 'payload' | 'targetValues'> &
  Partial<Pick<TrainDiffResult, 'method' | 'budgetBytes' | 'tuning'>> & {
    /** How progress lines name it (default: its method and budget). */
    label?: string;
  };

