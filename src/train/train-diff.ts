/**
 * Train a diff of a tf.LayersModel against the weights it holds now (the base devices have),
 * within a byte budget, and return the payload plus the metrics a report needs.
 *
 * Methods:
 * - `sparse`: learned sparse-mask diff (src/sparse-diff);
 * - `hash`: learned hashed-bucket diff (src/hash-diff);
 * - `full`: fine-tune every weight; the payload is a dense delta (the accuracy ceiling, sized
 *   like the whole model);
 * - `topk`, `drop`, `lowrank`: post-hoc compression of the full fine-tune's delta.
 *
 * Whatever the method, the model ends holding exactly the weights a device gets by applying the
 * payload to the base, and `accuracyAfter` is measured on those.
 */
import * as tf from '@tensorflow/tfjs';
import { BudgetError } from '../core/errors.ts';
import { getHasher, type Hasher } from '../core/hasher.ts';
import { type ValueCodec } from '../core/values.ts';
import type { WeightStore } from '../core/weight-store.ts';
import type { Payload } from '../core/format.ts';
import { baseDigests, buildPayload, payloadSize, storageGrids, type BuiltPayload, type HeaderOptions, type PatchSpec, type StoreAs } from '../diff/build.ts';
import { dropDiff, lowRankDiff } from '../diff/baselines.ts';
import { largestFitting, MagnitudeRanking, topkFromDeltas } from '../diff/topk.ts';
import { HashedBuckets } from '../hash-diff/trainer.ts';
import { DEFAULT_SPARSE_MASK, SparseMask, type SparseMaskOptions } from '../sparse-diff/trainer.ts';
import { checkData, evaluate, type LabelledData } from './data.ts';
import { outputsLogits, trainLoop, type EpochReport, type Parameterization } from './loop.ts';
import { modelToStore, namedVariables, setModelWeights } from './model-weights.ts';
import { silenceTfjsNodeBanner } from './quiet.ts';

import type { TrainMethod } from './methods.ts';
export { TRAIN_METHODS, type TrainMethod } from './methods.ts';

export interface TrainDiffOptions {
  method: TrainMethod;
  /** Byte budget for the whole payload (ignored by `full`). */
  budgetBytes: number;
  epochs: number;
  batchSize?: number;
  seed?: number;
  /**
   * Adam learning rate: of the diff values for `sparse` and `hash` (default 3e-3: a diff starts
   * at zero and has few values, so it wants a larger step than the weights themselves), of the
   * weights for `full` and the post-hoc methods (default 1e-3).
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
  header?: Omit<HeaderOptions, 'method' | 'budgetBytes'>;
  /** Evaluation data: accuracy before and after. */
  eval?: LabelledData;
  /** Post-hoc methods: reuse a full fine-tune's final weights instead of training one. */
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
  trainSeconds: number;
  /** Full fine-tune final weights (methods full/topk/drop/lowrank), to reuse across budgets. */
  fullWeights?: Map<string, Float32Array>;
}

interface TrainableTensor {
  name: string;
  shape: number[];
  values: Float32Array;
}

function trainableTensors(model: tf.LayersModel, base: WeightStore): TrainableTensor[] {
  const inStore = new Set(base.list().map((t) => t.name));
  return namedVariables(model)
    .filter((v) => v.trainable && v.variable.dtype === 'float32' && inStore.has(v.name))
    .map((v) => ({ name: v.name, shape: v.shape, values: base.values(v.name) }));
}

/** Fine-tune the model's own variables (the `full` method's parameterization). */
class Identity implements Parameterization {
  /** @param variableOf manifest name -> the tf.Variable name the optimizer knows it by */
  constructor(readonly names: string[], private readonly variableOf: ReadonlyMap<string, string>) {}
  effective(): null {
    return null;
  }
  gradients(name: string, dW: tf.Tensor): tf.NamedTensorMap {
    return { [this.variableOf.get(name) as string]: dW };
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
 * Train a diff of `model` (holding the base weights) on `train`. The model is left holding the
 * updated weights (base + payload, exactly as a device will).
 */
export async function trainDiff(model: tf.LayersModel, train: LabelledData, options: TrainDiffOptions): Promise<TrainDiffResult> {
  silenceTfjsNodeBanner();
  const hasher = options.hasher ?? (await getHasher());
  const base = options.base ?? modelToStore(model);
  const numClasses = (model.outputs[0].shape[model.outputs[0].shape.length - 1] as number) ?? 0;
  checkData(train, model.inputs[0].shape, numClasses, 'training data');
  if (options.eval) checkData(options.eval, model.inputs[0].shape, numClasses, 'evaluation data');
  const progress = options.onProgress ?? (() => {});
  const epochs = Math.max(1, Math.floor(options.epochs));
  const batchSize = options.batchSize ?? 64;
  const seed = options.seed ?? 0;
  const lr = options.learningRate ?? (options.method === 'sparse' || options.method === 'hash' ? 3e-3 : 1e-3);
  const fromLogits = outputsLogits(model);
  const shapes = new Map(base.list().map((t) => [t.name, t.shape] as const));
  const header: HeaderOptions = { ...(options.header ?? {}), method: options.method, budgetBytes: options.method === 'full' ? 0 : options.budgetBytes, grids: storageGrids(base, options.store) };
  const tensors = trainableTensors(model, base);
  const digests = baseDigests(hasher, base);
  const accuracyBefore = options.eval ? evaluate(model, options.eval).accuracy : undefined;
  const t0 = performance.now();
  let built: BuiltPayload;
  let reports: EpochReport[] = [];
  let fullWeights: Map<string, Float32Array> | undefined;
  // `offset`/`of`: epoch numbering across the phases of one run (sparse: soft then hard).
  const loop = (param: Parameterization, optimizerFor: (v: string) => tf.Optimizer, n: number, offset = 0, of = n) =>
    trainLoop(model, train, param, {
      epochs: n,
      batchSize,
      seed: seed + offset,
      fromLogits,
      optimizerFor,
      onEpoch: options.onEpoch && ((r) => options.onEpoch?.({ ...r, epoch: r.epoch + offset, epochs: of })),
      onBatch: options.onBatch && ((b) => options.onBatch?.({ ...b, epoch: b.epoch + offset })),
    }).map((r) => ({ ...r, epoch: r.epoch + offset, epochs: of }));

  if (options.method === 'full' || options.method === 'topk' || options.method === 'drop' || options.method === 'lowrank') {
    if (options.fullWeights && options.method !== 'full') {
      fullWeights = new Map(options.fullWeights);
    } else {
      const id = new Identity(tensors.map((t) => t.name), new Map(namedVariables(model).map((v) => [v.name, v.variable.name])));
      const opt = tf.train.adam(lr);
      reports = loop(id, () => opt, epochs);
      opt.dispose();
      fullWeights = new Map(namedVariables(model).filter((v) => shapes.has(v.name)).map((v) => [v.name, Float32Array.from(v.variable.dataSync() as Float32Array)]));
    }
    const deltas = new Map<string, Float32Array>();
    for (const t of base.list()) {
      const w0 = base.values(t.name);
      const w1 = fullWeights.get(t.name) ?? w0;
      const d = new Float32Array(w0.length);
      for (let i = 0; i < d.length; i++) d[i] = w1[i] - w0[i];
      deltas.set(t.name, d);
    }
    const common = { ...(options.header ?? {}), budgetBytes: options.budgetBytes, seed, ...(options.store ? { store: options.store } : {}) };
    if (options.method === 'full') {
      const specs: PatchSpec[] = [...deltas].filter(([, d]) => d.some((x) => x !== 0)).map(([name, values]) => ({ kind: 'dense', name, values, codec: 'f32' }));
      built = buildPayload(hasher, base, specs, header, digests);
    } else if (options.method === 'topk') {
      const codec = options.codec ?? 'auto';
      built = topkFromDeltas(hasher, base, deltas, { ...common, codec, onProgress: progress }, 'topk');
    } else if (options.method === 'drop') {
      built = dropDiff(hasher, base, deltas, { ...common, codec: options.codec && options.codec !== 'auto' ? options.codec : 'f16' });
    } else {
      built = lowRankDiff(hasher, base, deltas, { ...common, codec: options.codec && options.codec !== 'auto' ? options.codec : 'f16' });
    }
  } else if (options.method === 'sparse') {
    const codec: ValueCodec = options.codec && options.codec !== 'auto' ? options.codec : 'i8';
    const hardEpochs = epochs >= 2 ? Math.max(1, Math.round(epochs * (options.hardFraction ?? 0.25))) : 0;
    const softEpochs = epochs - hardEpochs;
    const stepsPerEpoch = Math.ceil(train.y.length / batchSize);
    const estimate = estimateSparseCount(tensors, shapes, header, codec, options.budgetBytes);
    if (estimate === 0) throw new BudgetError(`a budget of ${options.budgetBytes} bytes leaves no room for any value after the header: raise the budget`);
    progress(`sparse: about ${estimate} of ${tensors.reduce((n, t) => n + t.values.length, 0)} weights fit ${options.budgetBytes} bytes as ${codec}; ${softEpochs} soft-mask epoch(s), ${hardEpochs} hard-mask epoch(s)`);
    const mask = new SparseMask(tensors, estimate, Math.max(1, softEpochs * stepsPerEpoch), { ...DEFAULT_SPARSE_MASK, ...(options.sparse ?? {}) });
    const optD = tf.train.adam(lr);
    const optS = tf.train.adam(options.maskLearningRate ?? 1e-2);
    try {
      reports = loop(mask, (v) => (mask.isScore(v) ? optS : optD), softEpochs, 0, epochs);
      // The exact mask: the largest effective changes that fit the budget with the real encoder.
      const ranking = new MagnitudeRanking(mask.effectiveDeltas());
      const k = largestFitting(ranking.total, (k) => payloadSize(ranking.specs(k, codec), shapes, header) <= options.budgetBytes);
      const positions = new Map(ranking.specs(k, codec).map((s) => [s.name, (s as { positions: Uint32Array }).positions]));
      mask.harden(positions, codec);
      progress(`sparse: hard mask of ${k} weights`);
      if (hardEpochs) {
        const optH = tf.train.adam(lr);
        reports = reports.concat(loop(mask, () => optH, hardEpochs, softEpochs, epochs));
        optH.dispose();
      }
      const deltas = mask.effectiveDeltas();
      const specs: PatchSpec[] = [];
      for (const [name, pos] of positions) {
        const d = deltas.get(name) as Float32Array;
        specs.push({ kind: 'sparse', name, positions: pos, values: Float32Array.from(pos, (p) => d[p]), codec });
      }
      built = buildPayload(hasher, base, specs, header, digests);
    } finally {
      mask.dispose();
      optD.dispose();
      optS.dispose();
    }
  } else if (options.method === 'hash') {
    const codec: ValueCodec = options.codec && options.codec !== 'auto' ? options.codec : 'i8';
    const signed = options.hashSigned ?? true;
    const counts = chooseBucketCounts(tensors, shapes, header, codec, options.budgetBytes, signed);
    progress(`hash: ${[...counts.values()].reduce((a, b) => a + b, 0)} buckets over ${tensors.length} tensors fit ${options.budgetBytes} bytes as ${codec}`);
    const hb = new HashedBuckets(tensors, counts, seed, signed, codec);
    const opt = tf.train.adam(lr);
    try {
      reports = loop(hb, () => opt, epochs);
      const specs: PatchSpec[] = [...hb.buckets()].map(([name, b]) => ({ kind: 'hash', name, seed: b.seed, signed, buckets: b.values, codec }));
      built = buildPayload(hasher, base, specs, header, digests);
    } finally {
      hb.dispose();
      opt.dispose();
    }
  } else {
    throw new Error(`unknown method ${String(options.method)}`);
  }
  const trainSeconds = (performance.now() - t0) / 1000;
  // The model now holds exactly what a device holds after applying the payload.
  setModelWeights(model, (n) => built.targetValues.get(n) ?? (shapes.has(n) ? base.values(n) : undefined));
  let accuracyAfter: number | undefined;
  let predictions: Int32Array | undefined;
  if (options.eval) ({ accuracy: accuracyAfter, predictions } = evaluate(model, options.eval));
  return { method: options.method, bytes: built.bytes, payload: built.payload, budgetBytes: options.budgetBytes, targetValues: built.targetValues, accuracyBefore, accuracyAfter, predictions, epochs: reports, trainSeconds, fullWeights };
}
