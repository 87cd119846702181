/**
 * Train a diff of a tf.LayersModel against the weights it holds now (the base devices have),
 * within a byte budget, and return the payload plus the metrics a report needs.
 *
 * Methods:
 * - `sparse`: learned sparse-mask diff (src/sparse-diff);
 * - `hash`: learned hashed-bucket diff (src/hash-diff);
 * - `lora`: trained low-rank adapters U · V per weight matrix (src/lowrank-diff), shipped as the
 *   low-rank patch kind;
 * - `sparse-lora`: a low-rank part and a sparse part trained jointly (src/composite-diff, after
 *   RoSA): a LoRA warm-up, the mask from accumulated squared gradients, then both from a restart;
 *   shipped as composite patches (format v5), the budget split between the parts on validation;
 * - `full`: fine-tune every trainable weight; the payload is a dense delta (the accuracy
 *   ceiling, sized like the whole model as stored);
 * - `topk-retrain`: the mask is the top-k of a full fine-tune's change; those entries are then
 *   retrained from the base (LT-SFT, Ansell et al. 2022; SHiRA ships this way);
 * - `topk`, `drop`, `lowrank`: post-hoc compression of the full fine-tune's delta.
 *
 * Every run is steered by a **validation split** (`validation`, by default a seeded, stratified
 * 10% of the training data, held out of training): it picks the learning rate (`tune`, see
 * src/train/tuning.ts: `quick` tries three rates on half the data and trains the best on all of it,
 * `thorough` trains five on all of it, `off` one), keeps the best checkpoint of each run (early stopping),
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
import { getHasher } from '../core/hasher.ts';
import { type ValueCodec } from '../core/values.ts';
import { baseDigests, buildPayload, payloadSize, storageGrids, type BuiltPayload, type HeaderOptions, type PatchSpec } from '../diff/build.ts';
import { dropDiff } from '../diff/baselines.ts';
import { MagnitudeRanking, topkFromDeltas } from '../topk-diff/index.ts';
import { largestFitting } from '../diff/budget.ts';
import { describeWidths, lowbitFromDeltas, lowbitVariants, LowBitScales, type LowBitOptions } from '../lowbit-diff/index.ts';
import type { TensorPatch } from '../core/format.ts';
import { adam } from '../engine/kernels/adam.ts';
import { HashedBuckets } from '../hash-diff/index.ts';
import { LowRankAdapters, lowRankDiff } from '../lowrank-diff/index.ts';
import { compositeSpecs, FisherRanking, FisherWarmup, SparseLowRank } from '../composite-diff/index.ts';
import { DEFAULT_SPARSE_MASK, SparseMask } from '../sparse-diff/index.ts';
import { better, type Checkpoint } from './checkpoint.ts';
import { compete, pct } from './compete.ts';
import { checkData, evaluateWith, pick, stratifiedSplit, warnFewValidation, type Evaluation, type InputData, type LabelledData } from './data.ts';
import { agreementBeyondChance, DISTILL_MIN_KAPPA, majority } from './distill-gate.ts';
import { Identity, Shadow } from './full-params.ts';
import { checkThreads, defaultThreads, type TrainingPool } from './parallel/pool.ts';
import { startTrainingThreads, stopTrainingThreads } from './parallel/threads.ts';
import { frozenPrefixCache, type FrozenPrefixCache } from './prefix-cache.ts';
import { outputsLogits, sayOnce, trainEpochs, TrainingDiverged, type EpochReport, type Teacher } from './loop.ts';
import { ForwardPlans, forwardSwitch } from '../engine/compiled/forward.ts';
import type { Parameterization } from '../method/contract.ts';
import { modelToStore, namedVariables, setModelWeights } from '../engine/model-weights.ts';
import type { TrainDiffOptions, TrainDiffResult, TuneMode, TuningCandidate } from './options.ts';
import { silenceTfjsNodeBanner } from '../engine/quiet.ts';
import { activationsPerExample, chooseBatchSize, isOutOfMemory, maxBatchSize, selectTrainable } from './select.ts';
import { chooseBucketCounts, chooseLoraRanks, denseCodec, estimateSparseCount, type TrainableTensor } from './sizing.ts';
import { augmentOf, trainWithAugmentAuto, widerStream } from './distill-stream.ts';
import { closeness, closenessScore, describeCloseness, outputRows, prepareTeacher, withLabels, type Closeness, type PreparedTeacher } from './teacher.ts';
import { checkTrainingRun, searchLearningRate } from './tuning.ts';
import { TRAIN_METHODS } from './methods.ts';
import { refuseWorseOnEval } from './eval-gate.ts';
import { lossText } from './loss-text.ts';

export { TRAIN_METHODS, type TrainMethod } from './methods.ts';
export type { TrainDiffOptions, TrainDiffResult, TuneMode, TuningCandidate, CompetingResult } from './options.ts';
export { significantlyBetter, competingPayload } from './compete.ts';
export { agreementBeyondChance, DISTILL_MIN_KAPPA } from './distill-gate.ts';
export { chooseBucketCounts, chooseLoraRanks } from './sizing.ts';
export type { TeacherLoss, TeacherMetric } from './teacher.ts';

const DEFAULT_DIFF_LR = 3e-3;
const DEFAULT_FULL_LR = 3e-4;
/**
 * sparse-lora starts higher: both parts start at zero (V, S) and train from a restart in the run's
 * epochs; on the digits task (test/train-composite.test.ts) 1e-2 to 3e-2 validated 8-18 points
 * above 3e-3 at 1%.
 */
const DEFAULT_COMPOSITE_LR = 1e-2;
/**
 * Distilled lowbit: its variables are relative (each scale's multiplier, each trained code's change
 * in units of its scale), so a step moves a scale by about 1% and a code by a hundredth of a step.
 */
const DEFAULT_LOWBIT_LR = 1e-2;
/** Default memory bound of the frozen prefix's activation cache (`prefixCacheBytes`). */
const DEFAULT_PREFIX_CACHE_BYTES = 512 * 1024 * 1024;
/** sparse-lora: the sparse shares trained at the tuned rate besides the 0.5 it was tuned at. */
const SPLITS_TRIED = [0.25, 0.75];

/**
 * Train a diff of `model` (holding the base weights) on `train`. The model is left holding the
 * updated weights (base + payload, exactly as a device will).
 *
 * @throws NoImprovementError when nothing trained beats the base on validation (and not `allowWorse`);
 *   BudgetError, DataError, UsageError (bad options, a batch too large for the backend's memory).
 */
export async function trainDiff(model: tf.LayersModel, trainInput: LabelledData | InputData, options: TrainDiffOptions): Promise<TrainDiffResult> {
  silenceTfjsNodeBanner();
  if (!TRAIN_METHODS.includes(options.method)) throw new UsageError(`unknown method ${JSON.stringify(options.method)} (expected ${TRAIN_METHODS.join(', ')})`);
  checkTrainingRun(options);
  const hasher = options.hasher ?? (await getHasher());
  const base = options.base ?? modelToStore(model);
  const numClasses = (model.outputs[0].shape[model.outputs[0].shape.length - 1] as number) ?? 0;
  const progress = options.onProgress ?? (() => {});
  if (options.augment === 'auto') return trainWithAugmentAuto(model, trainInput, options, trainDiff);
  const teach = options.teacher ? prepareTeacher(model, options.teacher, options, trainInput.y !== undefined, progress) : undefined;
  // The teacher's passes from here on may leave compiled plans: the finally below frees them, whatever throws.
  const owned: LabelledData[] = [];
  let selection: ReturnType<typeof selectTrainable> | undefined, pool: TrainingPool | undefined, prefix: FrozenPrefixCache | undefined, forward: ForwardPlans | undefined;
  try {
    // Wider distillation inputs (src/train/distill-inputs.ts) join the stream before the validation split.
    const wider = widerStream(withLabels(trainInput, 'training data', teach), options, teach, progress);
    if (wider.owned) owned.push(wider.data);
    const train = wider.data;
    const augment = augmentOf(model, options, teach, trainInput.y !== undefined);
    const evalData = options.eval ? withLabels(options.eval, 'evaluation data', teach) : undefined;
    const givenVal = options.validation !== undefined && typeof options.validation !== 'number' ? withLabels(options.validation, 'validation data', teach) : undefined;
    checkData(train, model.inputs[0].shape, numClasses, 'training data');
    if (evalData) checkData(evalData, model.inputs[0].shape, numClasses, 'evaluation data');
    const epochs = Math.max(1, Math.floor(options.epochs));
    const seed = options.seed ?? 0;
    const tune: TuneMode = options.tune ?? 'quick';
    if (options.sparseShare !== undefined && !(options.sparseShare > 0 && options.sparseShare < 1)) throw new UsageError(`sparseShare must be a fraction of the budget between 0 and 1 (exclusive), found ${options.sparseShare}`);
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
      method: method === 'lora' || method === 'sparse-lora' ? 'lowrank' : method === 'topk-retrain' ? 'topk' : method,
      budgetBytes: method === 'full' ? 0 : options.budgetBytes,
      grids,
      ...(method === 'lora' || method === 'sparse-lora' || method === 'topk-retrain' ? { meta: { ...(options.header?.meta ?? {}), method } } : {}),
    };
    // The fine-tune behind the post-hoc methods and topk-retrain ships nothing itself: no budget.
    const fullHeader: HeaderOptions = { ...header, method: 'full', budgetBytes: 0 };
    const digests = baseDigests(hasher, base);
    // Which weights train (statistics never); flags go back as they were at the end.
    selection = selectTrainable(model, options.trainable ?? 'config');
    const t0 = performance.now();
    const inStore = new Set(base.list().map((t) => t.name));
    const tensors: TrainableTensor[] = namedVariables(model)
      .filter((v) => v.trainable && v.variable.dtype === 'float32' && inStore.has(v.name))
      .map((v) => ({ name: v.name, shape: v.shape, values: base.values(v.name) }));
    /**
     * The teacher's weights by the base's names (methods that use teacher − base): it must hold
     * every tensor trained here, same shape. Tensors not trained (frozen, or in a graph branch no
     * input reaches, whose names a re-exported teacher need not keep) are not asked for.
     */
    const teacherWeights = (): Map<string, Float32Array> => {
      const t = teach as PreparedTeacher;
      const store = modelToStore(t.model);
      const have = new Map(store.list().map((w) => [w.name, w.shape] as const));
      const out = new Map<string, Float32Array>();
      for (const w of tensors) {
        const shape = have.get(w.name);
        if (!shape || shape.length !== w.shape.length || shape.some((d, i) => d !== w.shape[i])) {
          throw new UsageError(
            `--method ${method}${method === 'sparse' ? ' with sparseStart teacher' : ''} uses the teacher's change (teacher − base), but the teacher ${shape ? `holds ${w.name} as [${shape.join(', ')}], the base as [${w.shape.join(', ')}]` : `has no weight ${w.name}`}: expected the base's weights, names and shapes, retrained; use --method sparse, hash or lora, which need only the same inputs and outputs`,
            { weight: w.name },
          );
        }
        out.set(w.name, store.values(w.name));
      }
      return out;
    };
    /** The teacher holds every trained tensor of the base, by name and shape (its change is defined). */
    const hasBaseWeights = (): boolean => {
      try {
        teacherWeights();
        return true;
      } catch (e) {
        if (e instanceof UsageError) return false;
        throw e;
      }
    };
    /** teacher − base for each trained tensor (a sparse diff's start with `sparseStart: 'teacher'`). */
    const teacherChange = (): Map<string, Float32Array> => {
      const w1 = teacherWeights();
      return new Map(tensors.map((t) => {
        const d = new Float32Array(t.values.length);
        const to = w1.get(t.name) as Float32Array;
        for (let i = 0; i < d.length; i++) d[i] = to[i] - t.values[i];
        return [t.name, d] as [string, Float32Array];
      }));
    };
    if (options.sparseStart === 'teacher' && !teach) throw new UsageError('sparseStart teacher needs a teacher model');
    /** A sparse run starts from the teacher's change (sparseStart teacher, or auto's second run). */
    let sparseFromTeacher = options.sparseStart === 'teacher';

    // A budget that cannot hold the header and one value fails now, not after an hour of training.
    if (method !== 'full' && tensors.length > 0) {
      const headerOnly = payloadSize([], shapes, header);
      if (headerOnly >= options.budgetBytes) throw new BudgetError(`a budget of ${options.budgetBytes} bytes leaves no room for any value after the header (${headerOnly} bytes with no patch at all): raise the budget`);
    }
    progress(`training ${tensors.length} weight tensors${selection.frozenByConfig.length ? `; ${selection.frozenByConfig.length} are frozen by the model's config${options.trainable === 'all' || options.trainable instanceof RegExp ? ' (trained here as asked)' : ' (--trainable all trains them)'}` : ''}${selection.statistics ? `; ${selection.statistics} BatchNorm statistics stay as the base has them (inference mode)` : ''}`);

    // Validation: given, or a seeded stratified fraction held out of the training data.
    let trainData = train;
    let val: LabelledData | undefined;
    let valLabelled = trainInput.y !== undefined;
    if (givenVal) {
      checkData(givenVal, model.inputs[0].shape, numClasses, 'validation data');
      val = givenVal;
      valLabelled = (options.validation as InputData).y !== undefined;
    } else {
      const fraction = (options.validation as number | undefined) ?? 0.1;
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
    if (val) warnFewValidation(val.y.length, train.y.length, givenVal !== undefined, options.onWarning ?? ((m) => progress(`warning: ${m}`)));
    if (!val && tune !== 'off') throw new UsageError('tuning needs validation data: pass validation (--val DATA or --val-fraction > 0), or tune off');
    if (!val && options.alsoConsider?.length) throw new UsageError('competing payloads (--also-consider) are judged on validation data: pass validation (--val DATA or --val-fraction > 0)');

    const backend = tf.getBackend();
    const heldBytes = [train, val, evalData, ...owned].reduce((n, d) => n + (d ? d.x.size * 4 : 0), 0);
    const batchSize = chooseBatchSize(model, backend, heldBytes, options.batchSize, trainData.y.length);
    // Evaluation keeps a batch's forward activations (about 6 bytes per output value with tfjs' temporaries).
    const evalBatch = Math.max(1, Math.min(256, maxBatchSize(model, backend, heldBytes, 6 * activationsPerExample(model))));
    const threads = Math.min(checkThreads(options.threads ?? defaultThreads()), batchSize);
    pool = await startTrainingThreads(model, { threads, backend, asked: options.threads !== undefined, progress });
    // An augmented step runs the whole model on inputs made anew: no activation to cache.
    prefix = augment ? undefined : frozenPrefixCache(model, tensors.map((t) => t.name), options.prefixCacheBytes ?? DEFAULT_PREFIX_CACHE_BYTES, trainData.y.length, progress);
    progress(`${trainData.y.length} training examples${val ? `, ${val.y.length} held out for validation${typeof options.validation === 'object' ? '' : ' (seeded, stratified)'}` : ''}; batch size ${batchSize}${options.batchSize === undefined ? ' (fits the backend\'s memory)' : ''}`);

    // The model's validation and evaluation passes, compiled as the teacher's are (the same bits).
    forward = options.step === 'eager' || !forwardSwitch.compiled ? undefined : new ForwardPlans('validation', sayOnce(progress));
    const evaluateOn = (data: LabelledData, what: string): Evaluation => {
      if (data.y.length > 200) progress(`evaluating ${what} on ${data.y.length} examples`);
      return evaluateWith(forward, model, data, evalBatch, fromLogits);
    };
    const evalLabelled = options.eval?.y !== undefined;
    const accuracyBefore = evalData && evalLabelled ? evaluateOn(evalData, 'the base').accuracy : undefined;
    const baseVal = val && (valLabelled || !teach) ? evaluateOn(val, 'the base (validation)') : undefined;
    if (baseVal) progress(`base model: validation accuracy ${pct(baseVal.accuracy)}`);
    /** The teacher's outputs on `data` (computed once per inputs tensor). */
    const teacherRowsOf = (data: LabelledData): Float32Array => {
      const t = teach as PreparedTeacher;
      let rows = t.rows.get(data.x);
      if (!rows) t.rows.set(data.x, (rows = outputRows(t.model, data.x, t.target.width, evalBatch, t.forward)));
      return rows;
    };
    /** How close the model as it is now is to the teacher on `data`. */
    const closenessOn = (data: LabelledData): Closeness => {
      const t = teach as PreparedTeacher;
      return closeness(outputRows(model, data.x, t.target.width, evalBatch, forward), teacherRowsOf(data), t.target, t.metric);
    };
    /** The teacher's own accuracy on labelled `data` (what a report holds the update against). */
    const teacherAccuracyOn = (data: LabelledData): number => {
      const t = teach as PreparedTeacher;
      const { predictions } = closeness(teacherRowsOf(data), teacherRowsOf(data), t.target, 'top1');
      let right = 0;
      for (let i = 0; i < data.y.length; i++) if (predictions[i] === data.y[i]) right++;
      return right / Math.max(1, data.y.length);
    };
    const baseClose = teach && val ? closenessOn(val) : undefined;
    if (teach && baseClose) progress(`base model on validation: ${describeCloseness(baseClose, teach.metric)}`);
    const baseEvalClose = teach && evalData ? closenessOn(evalData) : undefined;
    /** With a teacher, a checkpoint predicting one class where the teacher does not has collapsed. */
    const teacherTopShare = teach && val && teach.metric === 'top1' ? closeness(teacherRowsOf(val), teacherRowsOf(val), teach.target, 'top1').topClassShare : 1;
    const majorityShare = val ? majority(val.y) : 1;
    const isCollapsed = (e: Evaluation) => e.topClassShare >= 0.9 && majorityShare < 0.6;

    /** Evaluate a built payload's exact device weights on validation; the model's weights come back. */
    const checkpointOf = (built: BuiltPayload, label: string, lr: number, keepWeights: boolean): Checkpoint => {
      if (!val) return { built, valAccuracy: NaN, valLoss: NaN, score: NaN, scoreText: 'n/a', collapsed: false, perExample: new Uint8Array(0), label, learningRate: lr, ...(keepWeights ? { weights: built.targetValues } : {}) };
      const values = (n: string) => built.targetValues.get(n) ?? tensors.find((t) => t.name === n)?.values; // base + payload: a trained tensor it leaves out holds the base
      const saved = new Map<string, Float32Array>();
      for (const v of namedVariables(model)) if (values(v.name)) saved.set(v.name, Float32Array.from(v.variable.dataSync() as Float32Array));
      setModelWeights(model, values);
      try {
        if (teach) {
          const c = closenessOn(val);
          let right = 0;
          if (valLabelled) for (let i = 0; i < val.y.length; i++) if (c.predictions[i] === val.y[i]) right++;
          const score = closenessScore(c, teach.metric);
          return {
            built, valAccuracy: valLabelled ? right / val.y.length : NaN, valLoss: c.loss, score, scoreText: teach.metric === 'top1' ? `${pct(c.agreement)} agreement` : `mean |Δ| ${c.meanAbsDiff.toPrecision(4)}`,
            collapsed: teach.metric === 'top1' && c.topClassShare >= 0.9 && teacherTopShare < 0.6, perExample: c.perExample,
            teacherCloseness: { agreement: c.agreement, meanAbsDiff: c.meanAbsDiff }, label, learningRate: lr, ...(keepWeights ? { weights: built.targetValues } : {}),
          };
        }
        // Validation runs from the frozen prefix's cached activations too, when they fit.
        const cachedVal = prefix?.inputsFor(val, evalBatch);
        const e = cachedVal ? evaluateWith(forward, model, cachedVal, evalBatch, fromLogits, (x) => (prefix as FrozenPrefixCache).forward(x)[0]) : evaluateWith(forward, model, val, evalBatch, fromLogits);
        const correct = Uint8Array.from(e.predictions, (p, i) => (p === val.y[i] ? 1 : 0));
        return { built, valAccuracy: e.accuracy, valLoss: e.loss, score: e.accuracy, scoreText: pct(e.accuracy), collapsed: isCollapsed(e), perExample: correct, label, learningRate: lr, ...(keepWeights ? { weights: built.targetValues } : {}) };
      } finally {
        setModelWeights(model, saved);
      }
    };

    const teachers = new Map<LabelledData, Teacher>();
    let distilled: TrainDiffResult['distill'];
    /** Why the term is off; undefined while it is on. */
    let distillOff: string | undefined = teach ? 'a teacher gives every target (teacher diffs keep nothing of the base)' : distill > 0 ? undefined : 'turned off (distill 0)';
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
    type Kind = 'full' | 'sparse' | 'hash' | 'lora' | 'retrain' | 'sparse-lora' | 'lowbit' | 'lowbit-codes';
    /** Distilled lowbit: the post-hoc payload whose scales and factors train (set before its runs). */
    let lowbitStart: TensorPatch[] | undefined;
    /** Distilled lowbit with its codes trained too: the change each tensor's codes were rounded from. */
    let lowbitDeltas: Map<string, Float32Array> | undefined;
    let methodBest: Checkpoint | undefined; // the best checkpoint of the method's own payload so far (told to `pause`)
    const runOnce = async (kind: Kind, lr: number, data: LabelledData, n: number, candidateKind: TuningCandidate['kind'], retrainPositions?: Map<string, Uint32Array>, share?: number): Promise<Checkpoint | undefined> => {
      const started = performance.now();
      const label = `${kind === 'retrain' ? 'retrain' : kind}${share !== undefined ? ` sparse share ${share}` : ''} lr ${lr.toExponential(1)}${candidateKind === 'trial' ? ' (trial)' : ''}`;
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
        if (kind !== 'full' || method === 'full') methodBest = better(c, methodBest) ? c : methodBest;
        if (improved) {
          best = c;
          sinceBest = 0;
        } else sinceBest++;
        if (val) progress(`  ${at}: validation ${c.scoreText} (loss ${lossText(c.valLoss)})${c.collapsed ? ', predicts one class' : ''}${improved ? ' (best)' : ''}`);
        return val !== undefined && sinceBest >= patience;
      };
      const teacher = teacherOf(data);
      const loop = async (param: Parameterization, optimizerFor: (v: string) => tf.Optimizer, count: number, offset: number, of: number, afterEpoch?: (r: EpochReport) => boolean) => {
        const epochs = trainEpochs(model, data, param, {
          ...(teacher ? { teacher } : {}),
          ...(teach ? { target: { rows: teacherRowsOf(data), teacher: teach.target } } : {}),
          ...(augment && teach ? { augment: { transform: augment, teacher: teach.model, forward: teach.forward } } : {}),
          epochs: count,
          batchSize,
          ...(pool ? { pool } : {}),
          ...(prefix ? { prefix } : {}),
          ...(options.step ? { step: options.step } : {}), onStepPath: sayOnce(progress),
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
        const pause = options.pause;
        for (const _epoch of epochs) if (pause) await pause({ best: methodBest && { score: methodBest.score, scoreText: methodBest.scoreText, bytes: methodBest.built.bytes.length } });
      };
      const modelVars = new Map(namedVariables(model).map((v) => [v.name, v]));
      const restoreBase = () => setModelWeights(model, (name) => (shapes.has(name) ? base.values(name) : undefined));
      try {
        if (kind === 'full') {
          const useShadow = tensors.some((t) => grids.has(t.name));
          const param = useShadow ? new Shadow(tensors) : new Identity(tensors.map((t) => t.name), new Map([...modelVars].map(([n, v]) => [n, v.variable.name])));
          const opt = adam(lr);
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
            await loop(param, () => opt, n, 0, n, (r) => !skip(r) && consider(buildPayload(hasher, base, specsNow(), fullHeader, digests), `epoch ${r.epoch}`, true));
          } finally {
            opt.dispose();
            param.dispose();
          }
        } else if (kind === 'sparse' || kind === 'retrain') {
          const hardEpochs = kind === 'retrain' ? n : n >= 2 ? Math.max(1, Math.round(n * (options.hardFraction ?? 0.25))) : 0;
          const softEpochs = n - hardEpochs;
          const estimate = kind === 'retrain' ? [...(retrainPositions as Map<string, Uint32Array>).values()].reduce((a, p) => a + p.length, 0) : estimateSparseCount(tensors, shapes, header, codec, options.budgetBytes);
          if (estimate === 0) throw new BudgetError(`a budget of ${options.budgetBytes} bytes leaves no room for any value after the header: raise the budget`);
          const start = kind === 'sparse' && sparseFromTeacher ? teacherChange() : undefined;
          const mask = new SparseMask(tensors, estimate, Math.max(1, softEpochs * stepsPerEpoch), { ...DEFAULT_SPARSE_MASK, ...(options.sparse ?? {}) }, start);
          const optD = adam(lr);
          const optS = adam(options.maskLearningRate ?? 1e-2);
          try {
            let positions: Map<string, Uint32Array>;
            if (kind === 'retrain') {
              positions = retrainPositions as Map<string, Uint32Array>;
            } else {
              progress(`  sparse: about ${estimate} of ${mask.total} weights fit ${options.budgetBytes} bytes as ${codec}; ${softEpochs} soft-mask epoch(s), ${hardEpochs} hard-mask epoch(s)`);
              await loop(mask, (v) => (mask.isScore(v) ? optS : optD), softEpochs, 0, n);
              // The exact mask: the largest effective changes that fit the budget with the real encoder.
              const ranking = new MagnitudeRanking(mask.effectiveDeltas());
              const k = largestFitting(ranking.total, (k) => payloadSize(ranking.specs(k, codec), shapes, header) <= options.budgetBytes);
              positions = new Map(ranking.specs(k, codec).map((s) => [s.name, (s as { positions: Uint32Array }).positions]));
            }
            mask.harden(positions, codec);
            if (kind === 'sparse' && (val || !hardEpochs)) consider(buildPayload(hasher, base, mask.specs(), header, digests), `hard mask of ${[...positions.values()].reduce((a, p) => a + p.length, 0)} weights`);
            if (hardEpochs) {
              const optH = adam(lr);
              try {
                await loop(mask, () => optH, hardEpochs, softEpochs, n, (r) => !skip(r) && consider(buildPayload(hasher, base, mask.specs(), header, digests), `epoch ${r.epoch}`));
              } finally {
                optH.dispose();
              }
            }
          } finally {
            mask.dispose();
            optD.dispose();
            optS.dispose();
          }
        } else if (kind === 'lowbit' || kind === 'lowbit-codes') {
          const patches = lowbitStart as TensorPatch[];
          const param = new LowBitScales(new Map(patches.map((p) => [p.name, { shape: shapes.get(p.name) as number[], values: base.values(p.name) }])), patches, kind === 'lowbit-codes' ? lowbitDeltas : undefined);
          const opt = adam(lr);
          try {
            await loop(param, () => opt, n, 0, n, (r) => {
              if (skip(r)) return false;
              // The same codes, scales and factors as the post-hoc payload; a wider exponent could
              // add a byte, and a payload over the budget is never a checkpoint.
              const built = buildPayload(hasher, base, param.specs(), header, digests);
              return built.bytes.length <= options.budgetBytes ? consider(built, `epoch ${r.epoch}`) : false;
            });
          } finally {
            opt.dispose();
            param.dispose();
          }
        } else if (kind === 'hash') {
          const signed = options.hashSigned ?? true;
          const counts = chooseBucketCounts(tensors, shapes, header, codec, options.budgetBytes, signed);
          progress(`  hash: ${[...counts.values()].reduce((a, b) => a + b, 0)} buckets over ${tensors.length} tensors fit ${options.budgetBytes} bytes as ${codec}`);
          const hb = new HashedBuckets(tensors, counts, seed, signed, codec);
          const opt = adam(lr);
          try {
            await loop(hb, () => opt, n, 0, n, (r) => !skip(r) && consider(buildPayload(hasher, base, hb.specs(), header, digests), `epoch ${r.epoch}`));
          } finally {
            hb.dispose();
            opt.dispose();
          }
        } else if (kind === 'sparse-lora') {
          const sparseShare = share as number;
          // The adapters get the low-rank share of the budget; the mask takes what is left of all of it.
          let ranks = new Map<string, number>();
          try {
            ranks = chooseLoraRanks(tensors, shapes, header, codec, Math.floor(options.budgetBytes * (1 - sparseShare)));
          } catch (e) {
            if (!(e instanceof BudgetError)) throw e;
          }
          // 1. Low-rank warm-up (one epoch, or the run's only one), summing squared gradients.
          const warmAdapters = new LowRankAdapters(tensors, ranks, seed, codec);
          const warm = new FisherWarmup(tensors, warmAdapters);
          const optW = adam(lr);
          let scores: Map<string, Float32Array>;
          try {
            await loop(warm, () => optW, 1, 0, n + 1);
            scores = warm.scores();
          } finally {
            warm.dispose();
            warmAdapters.dispose();
            optW.dispose();
            restoreBase();
          }
          // 2. The mask: the largest squared-gradient sums over all tensors, as many as fit.
          const ranking = new FisherRanking(scores);
          const k = largestFitting(ranking.total, (k) => payloadSize(compositeSpecs(shapes, ranks, ranking.at(k), codec), shapes, header) <= options.budgetBytes);
          const positions = ranking.at(k);
          if (!ranks.size && !positions.size) throw new BudgetError(`a budget of ${options.budgetBytes} bytes leaves no room for any value after the header: raise the budget`);
          progress(`  sparse-lora: rank ${ranks.size ? Math.max(...ranks.values()) : 0} adapters on ${ranks.size} tensors and ${[...positions.values()].reduce((a, p) => a + p.length, 0)} sparse weights (chosen by squared gradients after the warm-up) fit ${options.budgetBytes} bytes as ${codec}`);
          // 3. Both parts from a restart, jointly.
          const joint = new SparseLowRank(tensors, ranks, positions, seed, codec);
          const opt = adam(lr);
          try {
            await loop(joint, () => opt, n, 1, n + 1, (r) => !skip(r) && consider(buildPayload(hasher, base, joint.specs(shapes), header, digests), `epoch ${r.epoch}`));
          } finally {
            joint.dispose();
            opt.dispose();
          }
        } else {
          const ranks = chooseLoraRanks(tensors, shapes, header, codec, options.budgetBytes);
          const rankValues = [...ranks.values()];
          progress(`  lora: rank ${Math.max(...rankValues)} adapters on ${ranks.size} of ${tensors.length} weight tensors fit ${options.budgetBytes} bytes as ${codec}`);
          const adapters = new LowRankAdapters(tensors, ranks, seed, codec);
          const opt = adam(lr);
          try {
            await loop(adapters, () => opt, n, 0, n, (r) => !skip(r) && consider(buildPayload(hasher, base, adapters.specs(), header, digests), `epoch ${r.epoch}`));
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
      candidates.push({ learningRate: lr, kind: candidateKind, ...(share !== undefined ? { sparseShare: share } : {}), examplesSeen: epochsRun * data.y.length, epochs: epochsRun, ...(usable && val ? { valAccuracy: usable.valAccuracy, valLoss: usable.valLoss } : {}), diverged, collapsed: best !== undefined && allCollapsed, seconds });
      return usable;
    };

    /** Tune the learning rate of `kind` (see src/train/tuning.ts); the best checkpoint over every run. */
    const tuned = (kind: Kind, defaultLr: number, retrainPositions?: Map<string, Uint32Array>, share?: number): Promise<Checkpoint> =>
      searchLearningRate((lr, data, candidateKind) => runOnce(kind, lr, data, epochs, candidateKind, retrainPositions, share), {
        mode: tune, what: kind, lr0: options.learningRate ?? defaultLr, trainData, seed, candidates, owned, progress,
      });

    let chosen: Checkpoint;
    let fullWeights: Map<string, Float32Array> | undefined;
    const needsFull = method === 'full' || method === 'topk' || method === 'drop' || method === 'lowrank' || method === 'topk-retrain' || method === 'lowbit';
    if (needsFull) {
      if (teach && method !== 'full') {
        // The teacher is the full fine-tune: its change is the one to compress or to mask.
        fullWeights = teacherWeights();
        progress(`${method}: the teacher's weights are the full fine-tune (teacher − base)`);
      } else if (options.fullWeights && method !== 'full') {
        fullWeights = new Map(options.fullWeights);
      } else {
        const f = await tuned('full', DEFAULT_FULL_LR);
        fullWeights = f.weights as Map<string, Float32Array>;
        chosen = f;
      }
    }
    if (method === 'full') {
      chosen = chosen!;
    } else if (method === 'sparse' || method === 'hash' || method === 'lora') {
      chosen = await tuned(method, DEFAULT_DIFF_LR);
      // sparseStart auto: also from the teacher's change, when the teacher has the base's weights;
      // validation keeps the closer (a fine-tune's change is a good start, a retrained model's is not).
      if (method === 'sparse' && teach && val && (options.sparseStart ?? 'auto') === 'auto' && hasBaseWeights()) {
        sparseFromTeacher = true;
        const fromTeacher = await tuned('sparse', DEFAULT_DIFF_LR);
        sparseFromTeacher = false;
        progress(`sparse: from zero ${chosen.scoreText}, from the teacher's change ${fromTeacher.scoreText} on validation (sparseStart auto; zero or teacher trains one)`);
        if (better(fromTeacher, chosen)) chosen = fromTeacher;
      }
    } else if (method === 'sparse-lora') {
      const fixed = options.sparseShare;
      // The learning rate is tuned at one split; the other splits train once at that rate, and
      // validation keeps the best (the split is a property of the update: few large changes or
      // many small ones).
      chosen = await tuned(method, DEFAULT_COMPOSITE_LR, undefined, fixed ?? 0.5);
      if (fixed === undefined && tune !== 'off' && val) {
        for (const share of SPLITS_TRIED) {
          const k = await runOnce(method, chosen.learningRate, trainData, epochs, 'full', undefined, share);
          if (k && better(k, chosen)) chosen = k;
        }
      }
    } else {
      const deltas = new Map<string, Float32Array>();
      for (const t of base.list()) {
        if (t.patchable === false) continue; // a read-only part (a TF.js folder's frame)
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
        progress(`topk-retrain: mask of the ${k} largest changes of the ${teach ? 'teacher' : 'full fine-tune'}; retraining them from the base`);
        chosen = await tuned('retrain', DEFAULT_DIFF_LR, positions);
      } else if (method === 'lowbit') {
        // The post-hoc lowbit payload of the change, then its scales and factors distilled toward
        // the teacher (or trained on the labels); the post-hoc payload competes as a checkpoint.
        const trained = new Map([...deltas].filter(([name]) => tensors.some((t) => t.name === name)));
        // The start: the post-hoc payload, each of lowbit's variants (errors relative to each
        // layer or plain, with and without low-rank factors) measured on validation and the
        // closest to the teacher kept, as `ndiff diff --calibrate` chooses (options.lowbit: that one).
        const variants = options.lowbit ? [{ name: 'lowbit', options: (): Partial<LowBitOptions> => ({ ...options.lowbit, cache: options.lowbitCache }) }] : lowbitVariants(undefined, options.lowbitCache);
        let post: ReturnType<typeof lowbitFromDeltas> | undefined;
        let start: Checkpoint | undefined;
        for (const v of variants) {
          const built = lowbitFromDeltas(hasher, base, trained, { ...common, ...v.options(), onProgress: progress });
          const c = checkpointOf(built, `${v.name} post hoc`, NaN, false);
          if (variants.length > 1) progress(`lowbit: post hoc ${v.name}: ${built.bytes.length} bytes, validation ${c.scoreText}`);
          if (!start || better(c, start)) [post, start] = [built, c];
        }
        if (!post || !start) throw new Error('lowbit: no post-hoc variant');
        progress(`lowbit: post hoc ${post.bytes.length} bytes (${describeWidths(post.allocation)}), validation ${start.scoreText}; its scales${post.allocation.some((a) => a.rank) ? ' (of codes and of low-rank factor vectors)' : ''} now train`);
        lowbitStart = post.payload.patches;
        lowbitDeltas = trained;
        methodBest = start;
        chosen = lowbitStart.length ? await tuned('lowbit', DEFAULT_LOWBIT_LR) : start;
        // The codes trained too (straight through their rounding), from the same start: the one
        // closer to the teacher on validation is kept (BitDelta's scales alone plateau where a
        // retrained model needs other codes).
        if (lowbitStart.length && options.lowbitCodes !== false) {
          const codes = await tuned('lowbit-codes', DEFAULT_LOWBIT_LR);
          progress(`lowbit: scales alone ${chosen.scoreText}, codes and scales ${codes.scoreText} on validation`);
          if (better(codes, chosen)) chosen = codes;
        }
        if (better(start, chosen)) {
          progress('lowbit: the post-hoc payload stays the best on validation');
          chosen = start;
        }
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
      ({ chosen, selection: competition } = compete(chosen!, options.alsoConsider, options.budgetBytes, (other, label) => checkpointOf({ bytes: other.bytes, payload: other.payload, targetValues: other.targetValues }, label, other.tuning?.learningRate ?? NaN, false), progress));
    }

    if (teach && baseClose) {
      const baseScore = closenessScore(baseClose, teach.metric);
      progress(`chosen: ${chosen!.label}, validation ${chosen!.scoreText} (base ${describeCloseness(baseClose, teach.metric)})`);
      if (chosen!.score < baseScore && !options.allowWorse) {
        const mine = chosen!.teacherCloseness ?? { agreement: NaN, meanAbsDiff: NaN };
        throw new NoImprovementError(
          `the best ${method} result is less close to the teacher on validation than the unpatched base: ${describeCloseness(mine, teach.metric)}, the base ${describeCloseness(baseClose, teach.metric)}; shipping it would take devices further from the new version than not updating. Nothing was written: try a larger budget, more epochs, more inputs from the deployment distribution, --tune thorough, or --allow-worse to write it anyway`,
          { method, score: chosen!.score, baseScore, metric: teach.metric, candidates },
        );
      }
    } else if (val && baseVal) {
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
    if (evalData && evalLabelled) ({ accuracy: accuracyAfter, predictions } = evaluateOn(evalData, 'the update'));
    const evalClose = teach && evalData ? closenessOn(evalData) : undefined;
    // One untuned run of the method: topk-retrain that fine-tunes first is two.
    const stages = method === 'topk-retrain' && !options.fullWeights ? 2 : 1;
    const oneRun = stages * epochs * trainData.y.length;
    const seen = candidates.reduce((n, c) => n + c.examplesSeen, 0);
    const result: TrainDiffResult = {
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
      ...(teach ? {
        teacher: {
          loss: teach.target.loss, metric: teach.metric, temperature: teach.target.temperature, weight: teach.target.weight, labels: trainInput.y !== undefined,
          ...(val && baseClose && chosen.teacherCloseness ? { validation: { examples: val.y.length, baseAgreement: baseClose.agreement, agreement: chosen.teacherCloseness.agreement, baseMeanAbsDiff: baseClose.meanAbsDiff, meanAbsDiff: chosen.teacherCloseness.meanAbsDiff } } : {}),
          ...(evalData && baseEvalClose && evalClose ? { eval: { examples: evalData.y.length, agreementBefore: baseEvalClose.agreement, agreementAfter: evalClose.agreement, meanAbsDiffBefore: baseEvalClose.meanAbsDiff, meanAbsDiffAfter: evalClose.meanAbsDiff, ...(evalLabelled ? { teacherAccuracy: teacherAccuracyOn(evalData) } : {}) } } : {}),
        },
      } : {}),
      tuning: { mode: tune, candidates, learningRate: chosen.learningRate, chosen: chosen.label, seconds: trainSeconds, cost: oneRun ? seen / oneRun : 0 },
      trainable: { trained: tensors.map((t) => t.name), frozenByConfig: selection.frozenByConfig, statistics: selection.statistics },
      ...(prefix ? { prefixCache: { cut: prefix.plan.cut, layers: prefix.plan.layers, of: prefix.plan.of, bytes: prefix.bytes } } : {}),
      ...(distilled ? { distill: distilled } : {}),
      ...(distillOff ? { distillOff } : {}),
      ...(competition ? { selection: competition } : {}),
      batchSize,
    };
    if (options.refuseWorseOnEval !== false) refuseWorseOnEval(result, options.allowWorse);
    return result;
  } finally {
    stopTrainingThreads(pool, tf.getBackend());
    prefix?.dispose();
    teach?.forward?.dispose();
    forward?.dispose();
    selection?.restore();
    for (const d of owned) d.x.dispose();
  }
}
