/**
 * Hashed-bucket diffs: every position i of a tensor maps through the pinned hash (see
 * docs/FORMAT-hashing.md) to one of b buckets and a ±1 sign; the layers compute with
 * W = W0 + sign(i) · B[bucket(i)], and only the bucket values B are learned and shipped.
 * The gradient of B is a segment sum of dL/dW ⊙ sign over each bucket's positions.
 */
import * as tf from '@tensorflow/tfjs';
import { fillBuckets, tensorSeed } from '../core/bucket.ts';
import type { ValueCodec } from '../core/values.ts';
import type { Parameterization } from '../train/loop.ts';

interface TensorState {
  name: string;
  shape: number[];
  size: number;
  seed: number;
  w0: tf.Tensor;
  b: tf.Variable;
  bucket: tf.Tensor1D;
  sign: tf.Tensor1D | null;
}

export class HashedBuckets implements Parameterization {
  readonly names: string[];
  private readonly tensors = new Map<string, TensorState>();

  /**
   * @param buckets bucket count per tensor name
   * @param globalSeed seeds every tensor's hash via `tensorSeed(name, globalSeed)`
   */
  constructor(
    base: { name: string; shape: number[]; values: Float32Array }[],
    buckets: ReadonlyMap<string, number>,
    globalSeed: number,
    readonly signed: boolean,
    private readonly codec: ValueCodec,
  ) {
    this.names = base.map((b) => b.name);
    for (const t of base) {
      const nb = buckets.get(t.name) as number;
      const seed = tensorSeed(t.name, globalSeed);
      const { bucket, sign } = fillBuckets(t.values.length, seed, nb, signed);
      this.tensors.set(t.name, {
        name: t.name,
        shape: t.shape,
        size: t.values.length,
        seed,
        w0: tf.tensor(t.values, t.shape, 'float32'),
        b: tf.variable(tf.zeros([nb]), true, `nd_hash_b/${t.name}`),
        bucket: tf.tensor1d(bucket, 'int32'),
        sign: sign ? tf.tensor1d(sign, 'float32') : null,
      });
    }
  }

  private values(st: TensorState): tf.Tensor {
    if (this.codec !== 'i8') return st.b;
    const scale = tf.maximum(tf.div(tf.max(tf.abs(st.b)), 127), 1e-12);
    return tf.mul(tf.round(tf.div(st.b, scale)), scale);
  }

  effective(name: string): tf.Tensor {
    const st = this.tensors.get(name) as TensorState;
    let spread = tf.gather(this.values(st), st.bucket);
    if (st.sign) spread = tf.mul(spread, st.sign);
    return tf.add(st.w0, tf.reshape(spread, st.shape));
  }

  gradients(name: string, dW: tf.Tensor): tf.NamedTensorMap {
    const st = this.tensors.get(name) as TensorState;
    let g = tf.reshape(dW, [st.size]);
    if (st.sign) g = tf.mul(g, st.sign);
    return { [st.b.name]: tf.unsortedSegmentSum(g, st.bucket, st.b.shape[0] as number) };
  }

  /** Learned bucket values and each tensor's seed. */
  buckets(): Map<string, { seed: number; values: Float32Array }> {
    const out = new Map<string, { seed: number; values: Float32Array }>();
    for (const st of this.tensors.values()) out.set(st.name, { seed: st.seed, values: Float32Array.from(st.b.dataSync() as Float32Array) });
    return out;
  }

  status(): Record<string, string | number> {
    let nb = 0;
    for (const st of this.tensors.values()) nb += st.b.shape[0] as number;
    return { buckets: nb };
  }

  dispose(): void {
    for (const st of this.tensors.values()) {
      st.w0.dispose();
      st.b.dispose();
      st.bucket.dispose();
      st.sign?.dispose();
    }
  }
}
