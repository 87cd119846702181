/**
 * The training loop shared by every method. The base model's own layers compute the forward
 * and backward pass; a {@link Parameterization} (src/method/contract.ts, what each method folder
 * implements) decides what weights the layers see (e.g. W0 + m ⊙ D) and turns dL/dW into
 * gradients of its own variables. Because every
 * parameterization here is elementwise in W, the chain rule is a few elementwise ops per step,
 * so diff training costs little more than fine-tuning the model itself.
 *
 * Layers run in inference mode (dropout off, batch-norm on its moving statistics): training
 * stays deterministic for a seed, and non-trainable state is left as the base has it.
 */
import * as tf from '@tensorflow/tfjs';
import type { StorageGrid } from '../core/grid.ts';
import type { Parameterization } from '../method/contract.ts';
import { epochBatches, seededRandom, sparseCrossEntropy, type LabelledData } from './data.ts';
import { snapTensor } from './grid-ops.ts';
import { namedVariables, type NamedVariable } from '../engine/model-weights.ts';
import { keepLossOf, keepRows, type Teacher } from './keep-loss.ts';
import { fusedAdam } from '../engine/kernels/adam.ts';
import type { ForwardPlans } from '../engine/compiled/forward.ts';
import { CompiledSteps, type StepMode, type StepOutputs } from '../engine/compiled/step.ts';
import { outputRows, teacherTerm, type TeacherTarget } from './teacher.ts';
import type { Augmentation } from './augment.ts';
import type { TrainingPool } from './parallel/pool.ts';
import type { FrozenPrefixCache } from './prefix-cache.ts';
import type { ShardExamples } from './parallel/shard-step.ts';

/** A run stopped because its loss became NaN or infinite (a learning rate too high, usually). */
export class TrainingDiverged extends Error {
  constructor(readonly epoch: number, readonly batch: number, readonly loss: number) {
    super(`the training loss became ${loss} at epoch ${epoch}, batch ${batch}`);
  }
}

/**
 * A model whose forward pass makes its inputs from the batch in JavaScript (the graph programs'
 * example ids, src/engine/program/training-model.ts): it makes them before the step, as feeds a
 * compiled step can take, and uses them in the step's forward pass.
 */
export interface StepInputs {
  /** The inputs of batch `x` (held until {@link endStep}), or null when the model cannot give them ahead. */
  stepInputs(x: tf.Tensor): Record<string, tf.Tensor> | null;
  endStep(): void;
}

/**
 * A model whose `x` names its examples rather than holding their inputs (the graph programs'
 * example ids, src/engine/program/training-model.ts): it augments a batch's inputs itself and
 * gives the `x` that names the augmented batch, for the model and the teacher alike.
 */
export interface AugmentedInputs {
  /** The example shape of the input augmentations change (for the checks of src/train/augment.ts). */
  augmentedInput(): { name: string; shape: number[]; sequences?: boolean };
  augmentBatch(x: tf.Tensor, transform: Augmentation, random: () => number): tf.Tensor;
}

export interface LoopOptions {
  epochs: number;
  batchSize: number;
  seed: number;
  /** Whether the model outputs logits (no softmax on the last layer). */
  fromLogits: boolean;
  /** One optimizer per group of variables: variable name -> optimizer. */
  optimizerFor: (variableName: string) => tf.Optimizer;
  /** After each epoch; returning `true` stops the run there (early stopping). */
  onEpoch?: (e: EpochReport) => boolean | void;
  onBatch?: (b: { epoch: number; batch: number; batches: number; loss: number }) => void;
  /**
   * Storage grids by tensor name: the layers compute with the weights rounded onto them, as the
   * device will store them (gradients pass straight through).
   */
  grids?: ReadonlyMap<string, StorageGrid>;
  /** Keep the base model's outputs where it was right (see `Teacher`). */
  teacher?: Teacher;
  /**
   * Match a teacher model's outputs (teacher diffs, src/train/teacher.ts): its rows on this
   * data (one per example, in the data's order). The labels' cross-entropy is weighted by
   * `labelWeight` (0: labels unused, as when the data has none).
   */
  target?: { rows: Float32Array; teacher: TeacherTarget };
  /**
   * With `target`: each batch augmented (src/train/augment.ts) and scored by the teacher model
   * anew, so teacher and model see the same augmented input (the cached rows hold only for the
   * inputs as given). Drawn from its own seeded stream: the batch order stays the seed's.
   * `forward`: the teacher's compiled forward passes (src/engine/compiled/forward.ts), if any.
   */
  augment?: { transform: Augmentation; teacher: tf.LayersModel; forward?: ForwardPlans };
  /**
   * Compute each step's gradient on these threads (data parallel, src/train/parallel/pool.ts)
   * instead of in one pass on this thread. Without it the loop runs as it always has.
   */
  pool?: TrainingPool;
  /**
   * The model's frozen first layers, computed once per example (src/train/prefix-cache.ts): the
   * steps run from its cut when the data's activations fit the cache's memory bound.
   */
  prefix?: FrozenPrefixCache;
  /** The step compiled once per phase and replayed (default, where it verifies) or always eager. */
  step?: StepMode;
  /** Which path the steps take, and why a phase runs eagerly (once per reason). */
  onStepPath?: (message: string) => void;
}

export { keepLoss, type Teacher } from './keep-loss.ts';
export { sayOnce } from '../engine/compiled/step.ts';

export interface EpochReport {
  epoch: number;
  epochs: number;
  /**
   * Mean training loss of the epoch: cross-entropy plus, when it is on, the distillation term
   * (so not comparable with a validation loss, which is cross-entropy alone).
   */
  loss: number;
  /** Share of training examples whose top-1 class matched (the teacher's, toward one); NaN when an output is plain values (a sigmoid, a map), which has no classes. */
  trainAccuracy: number;
  seconds: number;
  samplesPerSecond: number;
  status: Record<string, string | number>;
}

/** Does the model end in a softmax (probabilities) or in logits? */
export function outputsLogits(model: tf.LayersModel): boolean {
  const last = model.layers[model.layers.length - 1];
  const act = (last.getConfig() as { activation?: string }).activation;
  return act !== 'softmax';
}

/** Run the loop; returns per-epoch reports. */
export function trainLoop(model: tf.LayersModel, data: LabelledData, param: Parameterization, options: LoopOptions): EpochReport[] {
  const epochs = trainEpochs(model, data, param, options);
  for (let r = epochs.next(); ; r = epochs.next()) if (r.done) return r.value;
}

/**
 * The loop as {@link trainLoop} runs it, yielding after each epoch (its report, `onEpoch`
 * already called): a caller may suspend the run there and continue it later
 * (src/train/auto-halving.ts) with nothing recomputed: the schedules, the optimizer and the
 * batch order carry on as if it had not stopped. Returning early (`return()`) disposes the run.
 */
export function* trainEpochs(model: tf.LayersModel, data: LabelledData, param: Parameterization, options: LoopOptions): Generator<EpochReport, EpochReport[], undefined> {
  const vars = new Map<string, NamedVariable>(namedVariables(model).map((v) => [v.name, v]));
  const targets = param.names.map((n) => {
    const v = vars.get(n);
    if (!v) throw new Error(`parameterization names ${n}, which the model does not have`);
    return v;
  });
  const varList = targets.map((t) => t.variable);
  const random = seededRandom(options.seed);
  const n = data.y.length;
  // The examples as the steps take them: the cut's cached activations, or the inputs themselves.
  const cached = options.prefix?.inputsFor(data, options.batchSize);
  const examples = cached ?? data;
  if (cached && options.augment) throw new Error('augmented steps run the whole model: train without a frozen-prefix cache');
  const augmentRandom = options.augment ? seededRandom((options.seed ^ 0x6a09e667) >>> 0) : undefined;
  const forward = (x: tf.Tensor): tf.Tensor[] => {
    if (cached) return (options.prefix as FrozenPrefixCache).forward(x);
    const applied = model.apply(x, { training: false }) as tf.Tensor | tf.Tensor[];
    return Array.isArray(applied) ? applied : [applied];
  };
  const stepsPerEpoch = Math.ceil(n / options.batchSize);
  const totalSteps = stepsPerEpoch * options.epochs;
  const reports: EpochReport[] = [];
  let step = 0;
  const say = options.onStepPath ?? (() => {});
  options.pool?.begin(targets, {
    fromLogits: options.fromLogits,
    ...(options.teacher ? { keep: { weight: options.teacher.weight, temperature: options.teacher.temperature } } : {}),
    ...(options.target ? { target: options.target.teacher } : {}),
    ...(cached ? { inputsAt: (options.prefix as FrozenPrefixCache).plan.cut } : {}),
  }, options.step ?? 'compiled', say);
  /** The weights the layers compute with this step (the method's effective weights, on their grids). */
  const assignEffective = () => {
    for (const t of targets) {
      const w = param.effective(t.name);
      const grid = options.grids?.get(t.name);
      if (w) t.variable.assign(grid ? snapTensor(w, grid) : w);
    }
  };
  // With a pool, each thread compiles its shard's step (src/train/parallel/shard-plans.ts) and
  // the optimizer runs here after the gradients are summed.
  const stepMode: StepMode = options.step ?? 'compiled';
  if (stepMode === 'eager') say('step: eager (as asked)');
  const compiled = stepMode === 'compiled' && !options.pool ? new CompiledSteps(say) : undefined;
  /** Whether the method's own part (effective weights, its gradients) is in the plan; off after one refusal. */
  let whole = true;
  const stepModel = model as unknown as Partial<StepInputs>;
  /**
   * The step's kernels from its feeds: with `whole`, the method's effective weights and its
   * gradients too (outputs `g:<variable>`), else dL/dW of each trained tensor (`w:<name>`).
   */
  const region = (withParam: boolean) => (f: Record<string, tf.Tensor>): StepOutputs => {
    if (withParam) assignEffective();
    const y = f.y as tf.Tensor1D;
    let logits: tf.Tensor | null = null;
    const { value, grads } = tf.variableGrads(() => {
      const outs = forward(f.x);
      const out = outs[0];
      logits = tf.keep(out);
      const target = options.target;
      if (target) {
        const term = teacherTerm(outs, f.rows as tf.Tensor2D, target.teacher);
        const lw = target.teacher.labelWeight;
        return lw > 0 ? tf.add(term, tf.mul(sparseCrossEntropy(out, y, options.fromLogits), lw)) as tf.Scalar : term;
      }
      const ce = sparseCrossEntropy(out, y, options.fromLogits);
      return options.teacher ? tf.add(ce, keepLossOf(out, f.keepRows, f.keep, options.teacher, options.fromLogits)) as tf.Scalar : ce;
    }, varList);
    const hitsT = tf.sum(tf.cast(tf.equal(tf.argMax(logits as unknown as tf.Tensor, -1), y), 'int32'));
    (logits as unknown as tf.Tensor).dispose();
    const out: StepOutputs = [['loss', value], ['hits', hitsT]];
    for (const t of targets) {
      const g = grads[t.variable.name];
      if (!g) continue;
      if (!withParam) out.push([`w:${t.name}`, g]);
      else for (const [vname, grad] of Object.entries(param.gradients(t.name, g))) out.push([`g:${vname}`, grad]);
    }
    if (!withParam) return out;
    // The optimizer inside the step (so inside its plan) when every variable's optimizer is the
    // fused Adam with its kernel here; else the gradients go out and are applied after the step.
    const byOptimizer = new Map<tf.Optimizer, tf.NamedTensorMap>();
    for (const [n, grad] of out) {
      if (!n.startsWith('g:')) continue;
      const opt = options.optimizerFor(n.slice(2));
      if (!fusedAdam(opt)) return out;
      if (!byOptimizer.has(opt)) byOptimizer.set(opt, {});
      (byOptimizer.get(opt) as tf.NamedTensorMap)[n.slice(2)] = grad;
    }
    for (const [opt, map] of byOptimizer) opt.applyGradients(map);
    return out.filter(([n]) => !n.startsWith('g:'));
  };
  /** One step (inside tf.tidy): eager, or through the phase's plan. */
  const oneStep = (b: { x: tf.Tensor; y: tf.Tensor1D; size: number; idx: Int32Array; rows?: Float32Array }): { loss: number; hits: number } => {
    const feeds: Record<string, tf.Tensor> = { x: b.x, y: b.y };
    const target = options.target;
    if (target) {
      const w = target.teacher.width;
      const rows = b.rows ?? new Float32Array(b.size * w);
      if (!b.rows) for (let i = 0; i < b.size; i++) rows.set(target.rows.subarray(b.idx[i] * w, (b.idx[i] + 1) * w), i * w);
      feeds.rows = tf.tensor2d(rows, [b.size, w]);
    } else if (options.teacher) {
      const k = keepRows(b.idx, options.teacher, options.teacher.outputs.length / options.teacher.right.length);
      feeds.keepRows = k.rows;
      feeds.keep = k.keep;
    }
    const inputs = cached ? null : stepModel.stepInputs?.(b.x) ?? null;
    if (inputs) for (const [name, t] of Object.entries(inputs)) feeds[`input:${name}`] = t;
    let outputs: StepOutputs;
    try {
      if (!compiled) outputs = region(true)(feeds);
      else {
        const shapes = Object.entries(feeds).map(([k, t]) => `${k}[${t.shape.join(',')}]${t.dtype}`).join(' ');
        const keyOf = (w: boolean) => `${tf.getBackend()} ${shapes}${w ? ` whole ${param.planKey?.() ?? ''}` : ''}`;
        const withParam = whole && (param.planKey?.() ?? null) !== null;
        if (withParam && compiled.refused(keyOf(true))) whole = false;
        if (!withParam || !whole) assignEffective();
        const w = withParam && whole;
        outputs = compiled.run(keyOf(w), feeds, region(w), w ? 'step' : 'step (the method\'s part eager)');
      }
    } finally {
      stepModel.endStep?.();
    }
    const grads = new Map(outputs);
    const gradOf = (t: NamedVariable) => grads.get(`w:${t.name}`);
    if (outputs.some(([n]) => n.startsWith('w:'))) applyByOptimizer(targets, gradOf, param, options);
    else {
      const byOptimizer = new Map<tf.Optimizer, tf.NamedTensorMap>();
      for (const [n, grad] of outputs) {
        if (!n.startsWith('g:')) continue;
        const vname = n.slice(2);
        const opt = options.optimizerFor(vname);
        if (!byOptimizer.has(opt)) byOptimizer.set(opt, {});
        (byOptimizer.get(opt) as tf.NamedTensorMap)[vname] = grad;
      }
      for (const [opt, map] of byOptimizer) opt.applyGradients(map);
    }
    return { loss: (grads.get('loss') as tf.Tensor).dataSync()[0], hits: (grads.get('hits') as tf.Tensor).dataSync()[0] };
  };
  try {
    for (let epoch = 1; epoch <= options.epochs; epoch++) {
      const t0 = performance.now();
      let lossSum = 0;
      let correct = 0;
      let batch = 0;
      for (const given of epochBatches(examples, options.batchSize, random)) {
        const b: typeof given & { rows?: Float32Array } = options.augment && options.target ? augmented(model, given, options.augment, options.target.teacher.width, augmentRandom as () => number) : given;
        const { loss, hits } = tf.tidy(() => {
          if (options.pool) {
            assignEffective();
            return pooledStep(options.pool, b, targets, param, options, b.rows);
          }
          return oneStep(b);
        });
        b.x.dispose();
        b.y.dispose();
        if (!Number.isFinite(loss)) throw new TrainingDiverged(epoch, batch + 1, loss);
        lossSum += loss * b.size;
        correct += hits;
        step++;
        param.afterStep?.(step, step / totalSteps);
        options.onBatch?.({ epoch, batch: ++batch, batches: stepsPerEpoch, loss });
      }
      const seconds = (performance.now() - t0) / 1000;
      const report: EpochReport = { epoch, epochs: options.epochs, loss: lossSum / n, trainAccuracy: options.target?.teacher.segments.some((g) => g.values) ? NaN : correct / n, seconds, samplesPerSecond: n / seconds, status: param.status?.() ?? {} };
      reports.push(report);
      const stop = options.onEpoch?.(report) === true;
      yield report;
      if (stop) break;
    }
  } finally {
    compiled?.dispose();
  }
  return reports;
}

/** A batch augmented, with the teacher's rows on the augmented inputs (the given batch's inputs disposed). */
function augmented(model: tf.LayersModel, b: { x: tf.Tensor; y: tf.Tensor1D; size: number; idx: Int32Array }, augment: NonNullable<LoopOptions['augment']>, width: number, random: () => number): { x: tf.Tensor; y: tf.Tensor1D; size: number; idx: Int32Array; rows: Float32Array } {
  const own = model as unknown as Partial<AugmentedInputs>;
  const x = own.augmentBatch ? own.augmentBatch(b.x, augment.transform, random) : tf.tensor(augment.transform(b.x.dataSync() as Float32Array, b.x.shape, random), b.x.shape, 'float32');
  b.x.dispose();
  return { ...b, x, rows: outputRows(augment.teacher, x, width, b.size, augment.forward) };
}

/** Apply gradients grouped by the optimizer each variable belongs to (inside tf.tidy). */
function applyByOptimizer(targets: NamedVariable[], gradOf: (t: NamedVariable) => tf.Tensor | undefined, param: Parameterization, options: LoopOptions): void {
  const byOptimizer = new Map<tf.Optimizer, tf.NamedTensorMap>();
  for (const t of targets) {
    const g = gradOf(t);
    if (!g) continue;
    for (const [vname, grad] of Object.entries(param.gradients(t.name, g))) {
      const opt = options.optimizerFor(vname);
      if (!byOptimizer.has(opt)) byOptimizer.set(opt, {});
      (byOptimizer.get(opt) as tf.NamedTensorMap)[vname] = grad;
    }
  }
  for (const [opt, map] of byOptimizer) opt.applyGradients(map);
}

/**
 * One step with the gradient computed by a pool of threads (the variables already hold the
 * step's weights): the batch goes out as plain arrays with the teacher rows of its examples, the
 * summed gradient comes back and is applied here, once.
 */
function pooledStep(pool: TrainingPool, b: { x: tf.Tensor; y: tf.Tensor1D; size: number; idx: Int32Array }, targets: NamedVariable[], param: Parameterization, options: LoopOptions, augmentedRows?: Float32Array): { loss: number; hits: number } {
  const x = b.x.dataSync();
  const examples: ShardExamples = { x: x instanceof Float32Array ? x : Float32Array.from(x as ArrayLike<number>), xShape: [...b.x.shape], y: Int32Array.from(b.y.dataSync()) };
  const gather = (rows: Float32Array, width: number) => {
    const out = new Float32Array(b.size * width);
    for (let i = 0; i < b.size; i++) out.set(rows.subarray(b.idx[i] * width, (b.idx[i] + 1) * width), i * width);
    return out;
  };
  if (options.teacher) {
    const classes = options.teacher.outputs.length / options.teacher.right.length;
    examples.keepRows = { outputs: gather(options.teacher.outputs, classes), right: Uint8Array.from(b.idx, (i) => (options.teacher as Teacher).right[i]) };
  }
  if (options.target) examples.targetRows = augmentedRows ?? gather(options.target.rows, options.target.teacher.width);
  const r = pool.step(examples);
  const index = new Map(targets.map((t, j) => [t, j]));
  applyByOptimizer(targets, (t) => {
    const g = r.grads[index.get(t) as number];
    return g.length ? tf.tensor(g, t.shape, 'float32') : undefined;
  }, param, options);
  return { loss: r.loss, hits: r.hits };
}
