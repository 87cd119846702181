/**
 * LoRA-style low-rank diffs: beside each frozen weight matrix W0 (a tensor seen as rows x cols,
 * cols its last dimension, as the payload's low-rank patch kind does) two factors U [rows x r]
 * and V [r x cols]; the layers compute with W = W0 + U · V. U starts random and small, V at zero,
 * so training starts from the base (Hu et al. 2021). Only U and V travel, as the existing
 * low-rank patch (`k: r`), and the device multiplies them out in a pinned order.
 *
 * Quantization-aware: the codec codes U and V together (one i8 scale for both), so the forward
 * pass sees the factors balanced (U·s, V/s with equal largest magnitudes, which leaves U · V
 * unchanged) and rounded as the device will decode them; gradients pass straight through.
 */
import * as tf from '@tensorflow/tfjs';
import type { ValueCodec } from '../core/values.ts';
import type { PatchSpec } from '../diff/build.ts';
import { matrixDims } from '../core/format.ts';
import { trainingVariableName, type Parameterization } from '../method/contract.ts';

interface Factors {
  name: string;
  shape: number[];
  rows: number;
  cols: number;
  rank: number;
  w0: tf.Tensor2D;
  u: tf.Variable;
  v: tf.Variable;
}

/** The tensors a rank-`rank` adapter can serve: matrices (2+ dimensions) where U · V is smaller than the tensor. */
export function loraEligible(shape: readonly number[], rank = 1): boolean {
  if (shape.length < 2) return false;
  const { rows, cols } = matrixDims(shape);
  return rank <= Math.min(rows, cols) && rank * (rows + cols) < rows * cols;
}

export class LowRankAdapters implements Parameterization {
  readonly names: string[];
  private readonly factors = new Map<string, Factors>();

  /**
   * @param ranks rank per tensor name (tensors not in it are not adapted)
   * @param seed seeds the random start of U
   */
  constructor(base: { name: string; shape: number[]; values: Float32Array }[], ranks: ReadonlyMap<string, number>, seed: number, private readonly codec: ValueCodec) {
    this.names = [];
    let k = 0;
    for (const t of base) {
      const rank = ranks.get(t.name);
      if (!rank) continue;
      const { rows, cols } = matrixDims(t.shape);
      this.names.push(t.name);
      // U ~ N(0, 1/rows): U · V's scale then follows V, which Adam moves from zero.
      const u = tf.variable(tf.randomNormal([rows, rank], 0, 1 / Math.sqrt(rows), 'float32', seed * 1009 + k++), true, trainingVariableName(`nd_lora_u/${t.name}`));
      const v = tf.variable(tf.zeros([rank, cols]), true, trainingVariableName(`nd_lora_v/${t.name}`));
      this.factors.set(t.name, { name: t.name, shape: t.shape, rows, cols, rank, w0: tf.tensor2d(t.values, [rows, cols]), u, v });
    }
  }

  /** U and V as the device will decode them (balanced, and i8 quantize-dequantized when the codec is i8). */
  private shipped(f: Factors): [tf.Tensor2D, tf.Tensor2D] {
    let u = f.u as unknown as tf.Tensor2D;
    let v = f.v as unknown as tf.Tensor2D;
    const mu = tf.max(tf.abs(u));
    const mv = tf.max(tf.abs(v));
    // s = sqrt(max|V| / max|U|): both factors then have the same largest magnitude.
    const s = tf.sqrt(tf.div(tf.maximum(mv, 1e-12), tf.maximum(mu, 1e-12)));
    u = tf.mul(u, s);
    v = tf.div(v, s);
    if (this.codec !== 'i8') return [u, v];
    const scale = tf.maximum(tf.div(tf.maximum(tf.max(tf.abs(u)), tf.max(tf.abs(v))), 127), 1e-12);
    const q = (t: tf.Tensor2D) => tf.mul(tf.round(tf.div(t, scale)), scale) as tf.Tensor2D;
    return [q(u), q(v)];
  }

  effective(name: string): tf.Tensor {
    const f = this.factors.get(name) as Factors;
    const [u, v] = this.shipped(f);
    return tf.reshape(tf.add(f.w0, tf.matMul(u, v)), f.shape);
  }

  gradients(name: string, dW: tf.Tensor): tf.NamedTensorMap {
    const f = this.factors.get(name) as Factors;
    const g = tf.reshape(dW, [f.rows, f.cols]) as tf.Tensor2D;
    // W = W0 + U V: dL/dU = dW Vᵀ, dL/dV = Uᵀ dW.
    return { [f.u.name]: tf.matMul(g, f.v as tf.Tensor2D, false, true), [f.v.name]: tf.matMul(f.u as tf.Tensor2D, g, true, false) };
  }

  /** Balanced factors per tensor, ready for a low-rank patch spec (the codec quantizes them). */
  factorsFor(): Map<string, { rank: number; u: Float32Array; v: Float32Array }> {
    const out = new Map<string, { rank: number; u: Float32Array; v: Float32Array }>();
    for (const f of this.factors.values()) {
      const [u, v] = tf.tidy(() => {
        const mu = tf.max(tf.abs(f.u));
        const mv = tf.max(tf.abs(f.v));
        const s = tf.sqrt(tf.div(tf.maximum(mv, 1e-12), tf.maximum(mu, 1e-12)));
        return [tf.mul(f.u, s), tf.div(f.v, s)];
      });
      out.set(f.name, { rank: f.rank, u: u.dataSync() as Float32Array, v: v.dataSync() as Float32Array });
      u.dispose();
      v.dispose();
    }
    return out;
  }

  /** What ships: the balanced factors as low-rank patches (the device multiplies them out). */
  specs(): PatchSpec[] {
    return [...this.factorsFor()].map(([name, f]) => ({ kind: 'lowrank', name, rank: f.rank, u: f.u, v: f.v, codec: this.codec }));
  }

  status(): Record<string, string | number> {
    let params = 0;
    for (const f of this.factors.values()) params += f.rank * (f.rows + f.cols);
    return { adapters: this.factors.size, factorValues: params };
  }

  dispose(): void {
    for (const f of this.factors.values()) {
      f.w0.dispose();
      f.u.dispose();
      f.v.dispose();
    }
  }
}
