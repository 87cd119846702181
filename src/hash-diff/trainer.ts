/**
 * Hashed-bucket diffs: every position i of a tensor maps through the pinned hash (see
 * docs/FORMAT-hashing.md) to one of b buckets and a ±1 sign; the layers compute with
 * W = W0 + sign(i) · B[bucket(i)], and only the bucket values B are learned and shipped.
 * The gradient of B is a segment sum of dL/dW ⊙ sign over each bucket's positions.
 */
import * as tf from '@tensorflow/tfjs';
import { fillBuckets, tensorSeed } from '../core/bucket.ts';
import type { ValueCodec } from '../core/values.ts';
import type { PatchSpec } from '../diff/build.ts';
import { trainingVariableName, type Parameterization } from '../method/contract.ts';

interface TensorState {
  name: string;
  shape: number[];
  size: number;
  seed: number;
  /** Base values and the position -> bucket / sign maps, kept in JS: spreading the buckets is a
   * plain loop here, several times faster than tfjs-wasm's GatherV2 over every weight. */
  w0: Float32Array;
  bucketOf: Int32Array;
  signOf: Float32Array | null;
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
        w0: Float32Array.from(t.values),
        bucketOf: bucket,
        signOf: sign,
        b: tf.variable(tf.zeros([nb]), true, trainingVariableName(`nd_hash_b/${t.name}`)),
        bucket: tf.tensor1d(bucket, 'int32'),
        sign: sign ? tf.tensor1d(sign, 'float32') : null,
      });
    }
  }

  /** Bucket values as the codec will deliver them (int8: quantize-dequantize; forward only). */
  private values(st: TensorState): Float32Array {
    const b = st.b.dataSync() as Float32Array;
    if (this.codec !== 'i8') return b;
    let maxAbs = 0;
    for (let i = 0; i < b.length; i++) maxAbs = Math.max(maxAbs, Math.abs(b[i]));
    const scale = Math.max(maxAbs / 127, 1e-12);
    return Float32Array.from(b, (v) => Math.round(v / scale) * scale);
  }

  effective(name: string): tf.Tensor {
    const st = this.tensors.get(name) as TensorState;
    const b = this.values(st);
    const w = new Float32Array(st.size);
    const { w0, bucketOf, signOf } = st;
    if (signOf) for (let i = 0; i < w.length; i++) w[i] = w0[i] + signOf[i] * b[bucketOf[i]];
    else for (let i = 0; i < w.length; i++) w[i] = w0[i] + b[bucketOf[i]];
    return tf.tensor(w, st.shape, 'float32');
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

  /** What ships: each tensor's seed and bucket values as a hash patch (no positions: the device recomputes them). */
  specs(): PatchSpec[] {
    return [...this.buckets()].map(([name, b]) => ({ kind: 'hash', name, seed: b.seed, signed: this.signed, buckets: b.values, codec: this.codec }));
  }

  status(): Record<string, string | number> {
    let nb = 0;
    for (const st of this.tensors.values()) nb += st.b.shape[0] as number;
    return { buckets: nb };
  }

  dispose(): void {
    for (const st of this.tensors.values()) {
      st.b.dispose();
      st.bucket.dispose();
      st.sign?.dispose();
    }
  }
}
