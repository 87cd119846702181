/**
 * The gradient of one shard of a batch: the piece of a training step that data-parallel training
 * runs on every thread (src/train/parallel/pool.ts). The parent thread and each worker call this
 * same function on their own backend, so a shard's gradient does not depend on which thread
 * computed it.
 *
 * Every loss term of the training loop is a mean over the batch, so the batch's gradient is the
 * sum over shards of (shard size / batch size) × the shard's mean-loss gradient: each shard's loss
 * is scaled by that fraction here and the caller sums the shards in a fixed order.
 */
import * as tf from '@tensorflow/tfjs';
import { sparseCrossEntropy } from '../data.ts';
import { keepLossOf, type Teacher } from '../keep-loss.ts';
import type { CompiledSteps, StepOutputs } from '../../engine/compiled/step.ts';
import { teacherTerm, type TeacherTarget } from '../teacher.ts';
import { forwardFromCut } from '../prefix-cache.ts';
import { copyOfValues } from './heap.ts';

/** The loss of the run, the same for every shard (plain data: it crosses to the workers). */
export interface ShardLossSpec {
  /** Whether the model outputs logits. */
  fromLogits: boolean;
  /** Distillation toward the base's outputs (see {@link Teacher}); its rows come with each shard. */
  keep?: { weight: number; temperature: number };
  /** Teacher diffs' target (see `LoopOptions.target`); its rows come with each shard. */
  target?: TeacherTarget;
  /**
   * The examples are this layer's activations, not the model's inputs: the run caches a frozen
   * prefix (src/train/prefix-cache.ts) and the shard runs the model from there.
   */
  inputsAt?: string;
}

/** The examples of one shard, as plain arrays (row-major). */
export interface ShardExamples {
  x: Float32Array;
  /** Shape of x, the first dimension being the shard's example count. */
  xShape: number[];
  y: Int32Array;
  /** The base's rows and right-flags of these examples when the keep term is on. */
  keepRows?: { outputs: Float32Array; right: Uint8Array };
  /** The teacher's rows of these examples for teacher diffs. */
  targetRows?: Float32Array;
  /**
   * A graph program's inputs of these examples, by input name (its `x` holds example ids, and the
   * rows live in the parent's model): one example's shape each, float32 or int32 (token ids).
   */
  inputs?: Record<string, { values: Float32Array | Int32Array; shape: number[] }>;
}

/** A model that takes a batch's inputs made outside its forward pass (a graph program's rows: src/engine/program/training-model.ts). */
interface GivenInputs {
  useStepInputs(x: tf.Tensor, feeds: Record<string, tf.Tensor>): void;
  endStep(): void;
}

/** The feed name of a program input's rows. */
const INPUT = 'input:';

/** What one shard gives back: dL/dW per target (in the order asked), its scaled loss and hits. */
export interface ShardResult {
  /** Empty for a target the loss does not depend on (the loop then leaves it to its optimizer untouched). */
  grads: Float32Array[];
  /** The shard's mean loss × its fraction of the batch. */
  loss: number;
  /** Examples whose top output equals the label. */
  hits: number;
}

/** The tensors a shard's step reads (its feeds: a compiled step is replayed on new ones). */
function shardFeeds(shard: ShardExamples, spec: ShardLossSpec, fraction: number): Record<string, tf.Tensor> {
  const size = shard.y.length;
  const feeds: Record<string, tf.Tensor> = {
    x: tf.tensor(shard.x, shard.xShape, 'float32'),
    y: tf.tensor1d(shard.y, 'int32'),
    fraction: tf.scalar(fraction, 'float32'),
  };
  for (const [name, v] of Object.entries(shard.inputs ?? {})) feeds[INPUT + name] = tf.tensor(v.values, [size, ...v.shape], v.values instanceof Int32Array ? 'int32' : 'float32');
  if (spec.target) feeds.rows = tf.tensor2d(shard.targetRows as Float32Array, [size, spec.target.width]);
  else if (spec.keep && shard.keepRows) {
    feeds.keepRows = tf.tensor2d(shard.keepRows.outputs, [size, shard.keepRows.outputs.length / size]);
    feeds.keep = tf.tensor1d(Float32Array.from(shard.keepRows.right), 'float32');
  }
  return feeds;
}

/**
 * The step of a shard from its feeds: the loss (`loss`, scaled by the shard's fraction), the hits
 * (`hits`) and dL/dW of each variable the loss depends on (`w:<index>`).
 */
function shardStep(model: tf.LayersModel, variables: tf.Variable[], spec: ShardLossSpec) {
  return (f: Record<string, tf.Tensor>): StepOutputs => {
    const y = f.y as tf.Tensor1D;
    let logits: tf.Tensor | null = null;
    const given = Object.keys(f).filter((k) => k.startsWith(INPUT));
    const own = model as unknown as Partial<GivenInputs>;
    if (given.length && own.useStepInputs) own.useStepInputs(f.x, Object.fromEntries(given.map((k) => [k.slice(INPUT.length), f[k]])));
    let result: { value: tf.Scalar; grads: tf.NamedTensorMap };
    try {
      result = tf.variableGrads(() => {
        const applied = spec.inputsAt ? forwardFromCut(model, spec.inputsAt, f.x) : (model.apply(f.x, { training: false }) as tf.Tensor | tf.Tensor[]);
        const outs = Array.isArray(applied) ? applied : [applied];
        const out = outs[0];
        logits = tf.keep(out);
        let loss: tf.Scalar;
        if (spec.target) {
          const term = teacherTerm(outs, f.rows as tf.Tensor2D, spec.target);
          const lw = spec.target.labelWeight;
          loss = lw > 0 ? (tf.add(term, tf.mul(sparseCrossEntropy(out, y, spec.fromLogits), lw)) as tf.Scalar) : term;
        } else {
          loss = sparseCrossEntropy(out, y, spec.fromLogits);
          if (spec.keep && f.keepRows) {
            const teacher: Teacher = { outputs: new Float32Array(0), right: new Uint8Array(0), weight: spec.keep.weight, temperature: spec.keep.temperature };
            loss = tf.add(loss, keepLossOf(out, f.keepRows, f.keep, teacher, spec.fromLogits)) as tf.Scalar;
          }
        }
        return tf.mul(loss, f.fraction) as tf.Scalar;
      }, variables);
    } finally {
      if (given.length) own.endStep?.();
    }
    const { value, grads } = result;
    const hits = tf.sum(tf.cast(tf.equal(tf.argMax(logits as unknown as tf.Tensor, -1), y), 'int32'));
    (logits as unknown as tf.Tensor).dispose();
    const out: StepOutputs = [['loss', value], ['hits', hits]];
    variables.forEach((v, j) => {
      const g = grads[v.name];
      if (g) out.push([`w:${j}`, g]);
    });
    return out;
  };
}

/**
 * Forward and backward pass of `model` over one shard, with `variables` (the step's weights
 * already assigned) as the parameters. `fraction` is the shard's share of the batch. With
 * `compiled`, the step is compiled per feed shapes (src/engine/compiled/) and replayed; the
 * same kernels run in the same order, so the gradient is the eager step's.
 */
export function shardGradients(model: tf.LayersModel, variables: tf.Variable[], shard: ShardExamples, spec: ShardLossSpec, fraction: number, compiled?: CompiledSteps): ShardResult {
  let result: ShardResult | undefined;
  // The result leaves tf.tidy through a closure: returned, its arrays would be walked value by value.
  tf.tidy(() => {
    const feeds = shardFeeds(shard, spec, fraction);
    const step = shardStep(model, variables, spec);
    let outputs: StepOutputs;
    if (!compiled) outputs = step(feeds);
    else {
      const key = `${tf.getBackend()} ${Object.entries(feeds).map(([k, t]) => `${k}[${t.shape.join(',')}]${t.dtype}`).join(' ')}`;
      outputs = compiled.run(key, feeds, step, 'shard');
    }
    const named = new Map(outputs);
    result = {
      grads: variables.map((_, j) => {
        const g = named.get(`w:${j}`);
        return g ? copyOfValues(g) : new Float32Array(0);
      }),
      loss: (named.get('loss') as tf.Tensor).dataSync()[0],
      hits: (named.get('hits') as tf.Tensor).dataSync()[0],
    };
  });
  return result as ShardResult;
}
