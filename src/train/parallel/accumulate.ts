/**
 * A shard's gradient computed in chunks of at most `maxChunk` examples and summed in order
 * (gradient accumulation): the same batch with a bounded activation memory per thread.
 */
import type * as tf from '@tensorflow/tfjs';
import type { CompiledSteps } from '../../engine/compiled/step.ts';
import { shardGradients, type ShardExamples, type ShardLossSpec, type ShardResult } from './shard-step.ts';

/**
 * Rows [from, to) of a shard: views into its arrays, or (`copy`) fresh arrays, for a shard that
 * is transferred to a worker.
 */
export function sliceShard(s: ShardExamples, from: number, to: number, copy = false): ShardExamples {
  const cut = <T extends Float32Array | Int32Array | Uint8Array>(a: T, lo: number, hi: number): T => (copy ? a.slice(lo, hi) : a.subarray(lo, hi)) as T;
  const row = s.xShape.slice(1).reduce((a, b) => a * b, 1);
  const out: ShardExamples = { x: cut(s.x, from * row, to * row), xShape: [to - from, ...s.xShape.slice(1)], y: cut(s.y, from, to) };
  if (s.keepRows) {
    const w = s.keepRows.outputs.length / s.y.length;
    out.keepRows = { outputs: cut(s.keepRows.outputs, from * w, to * w), right: cut(s.keepRows.right, from, to) };
  }
  if (s.inputs) {
    // A graph program's inputs, each in its own element type (token ids stay int32).
    out.inputs = {};
    for (const [name, v] of Object.entries(s.inputs)) {
      const per = v.shape.reduce((a, b) => a * b, 1);
      out.inputs[name] = { values: cut(v.values, from * per, to * per), shape: v.shape };
    }
  }
  if (s.targetRows) {
    const w = s.targetRows.length / s.y.length;
    out.targetRows = cut(s.targetRows, from * w, to * w);
  }
  return out;
}

/** Add `b` into `a`, elementwise (float32 rounding at each add, always in this order). */
export function addInto(a: Float32Array[], b: Float32Array[]): void {
  for (let j = 0; j < a.length; j++) {
    const x = a[j];
    const y = b[j];
    if (x.length !== y.length) throw new Error(`gradient ${j} has ${x.length} values in one shard and ${y.length} in another`);
    for (let i = 0; i < x.length; i++) x[i] += y[i];
  }
}

/**
 * {@link shardGradients} over chunks of at most `maxChunk` examples, summed in order; with
 * `compiled`, each chunk's step compiled by its shapes (a smaller last chunk gets its own plan).
 */
export function accumulatedShardGradients(model: tf.LayersModel, variables: tf.Variable[], shard: ShardExamples, spec: ShardLossSpec, batchSize: number, maxChunk: number, compiled?: CompiledSteps): ShardResult {
  const n = shard.y.length;
  let total: ShardResult | undefined;
  for (let from = 0; from < n; from += maxChunk) {
    const to = Math.min(n, from + maxChunk);
    const r = shardGradients(model, variables, sliceShard(shard, from, to), spec, (to - from) / batchSize, compiled);
    if (!total) total = r;
    else {
      addInto(total.grads, r.grads);
      total.loss += r.loss;
      total.hits += r.hits;
    }
  }
  return total ?? { grads: variables.map(() => new Float32Array(0)), loss: 0, hits: 0 };
}
