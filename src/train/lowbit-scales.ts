/**
 * Distilled low-bit deltas (`ndiff train --method lowbit`): the post-hoc lowbit payload's codes
 * stay, its scales (and low-rank factors) are trained toward the teacher, as BitDelta distills
 * its per-matrix scales. Every tensor the post-hoc payload carries is trained:
 *
 * - codec l: W = W0 + code(k) * s[group(k)]; the scales s are the variables, and the forward pass
 *   uses them as the device decodes them (each a float16 times the patch's power of two), the
 *   gradient passing straight through the rounding: dL/ds[j] = sum over the group of dL/dW * code;
 * - int8 low-rank factors: W = W0 + U V, both trained (int8-rounded in the forward pass).
 *
 * A scale is kept at or above zero (the format's scales are not negative). The payload built
 * from {@link LowBitScales.specs} has the post-hoc payload's size: the same codes, scales and
 * factors, other values.
 */
import * as tf from '@tensorflow/tfjs';
import type { TensorPatch } from '../core/format.ts';
import { fromHalfBits } from '../core/float16.ts';
import type { LowBit } from '../core/lowbit.ts';
import type { PatchSpec } from '../diff/build.ts';
import { int8Factors, scaleExponent, wireScale } from '../diff/lowbit.ts';
import { matrixDims } from '../core/format.ts';
import type { Parameterization } from './loop.ts';

interface CodeState {
  kind: 'codes';
  name: string;
  shape: number[];
  w0: Float32Array;
  bits: number;
  group: number;
  /** The post-hoc payload's scale exponent. */
  exponent: number;
  /** Each value's code (1 bit: -1 or +1). */
  codes: Float32Array;
  /** Each value's scale index. */
  chanOf: Int32Array;
  s: tf.Variable;
  code: tf.Tensor1D;
  chan: tf.Tensor1D;
}

interface FactorState {
  kind: 'factors';
  name: string;
  shape: number[];
  w0: Float32Array;
  rows: number;
  cols: number;
  rank: number;
  u: tf.Variable;
  v: tf.Variable;
}

type State = CodeState | FactorState;

/**
 * Float16 bits of every scale with one shared exponent, and the scales they stand for. The
 * post-hoc payload's exponent `e` stays while the largest scale is a normal float16 under it (the
 * same bytes then, and the post-hoc patch exactly before training); else one is chosen as
 * lowbit.ts chooses it.
 */
function wireScales(s: Float32Array, e: number): { h: Uint16Array; e: number; values: Float64Array } {
  let top = 0;
  for (const x of s) top = Math.max(top, x);
  if (top > 0 && !(top / 2 ** e < 65504 && top / 2 ** e >= 2 ** -14)) e = scaleExponent(top);
  const h = new Uint16Array(s.length);
  const values = new Float64Array(s.length);
  for (let j = 0; j < s.length; j++) ({ h: h[j], s: values[j] } = wireScale(Math.max(0, s[j]), e));
  return { h, e, values };
}

export class LowBitScales implements Parameterization {
  readonly names: string[];
  private readonly states = new Map<string, State>();

  /**
   * @param base each patched tensor's base values and shape
   * @param patches the post-hoc payload's patches (dense codec l, or low-rank), decoded
   */
  constructor(base: ReadonlyMap<string, { shape: number[]; values: Float32Array }>, patches: readonly TensorPatch[]) {
    this.names = patches.map((p) => p.name);
    for (const p of patches) {
      const b = base.get(p.name) as { shape: number[]; values: Float32Array };
      if (p.kind === 'dense' && p.lowbit) {
        const lb = p.lowbit;
        const n = p.values.length;
        const count = lb.scales.length;
        const scale = Float64Array.from(lb.scales, (h) => fromHalfBits(h) * 2 ** lb.exponent);
        const chanOf = Int32Array.from({ length: n }, (_, k) => Math.floor(k / lb.group) % count);
        // value = code * scale exactly: the code back from the value (a zero scale: +1, any).
        const codes = Float32Array.from(p.values, (x, k) => (scale[chanOf[k]] > 0 ? Math.round(x / scale[chanOf[k]]) : 1));
        this.states.set(p.name, {
          kind: 'codes', name: p.name, shape: b.shape, w0: b.values, bits: lb.bits, group: lb.group, exponent: lb.exponent, codes, chanOf,
          s: tf.variable(tf.tensor1d(Float32Array.from(scale)), true, `nd_lowbit_s/${p.name}`),
          code: tf.tensor1d(codes, 'float32'),
          chan: tf.tensor1d(chanOf, 'int32'),
        });
      } else if (p.kind === 'lowrank') {
        const { rows, cols } = matrixDims(b.shape);
        this.states.set(p.name, {
          kind: 'factors', name: p.name, shape: b.shape, w0: b.values, rows, cols, rank: p.rank,
          u: tf.variable(tf.tensor2d(p.u, [rows, p.rank]), true, `nd_lowbit_u/${p.name}`),
          v: tf.variable(tf.tensor2d(p.v, [p.rank, cols]), true, `nd_lowbit_v/${p.name}`),
        });
      } else {
        throw new Error(`LowBitScales: patch ${p.name} is ${p.kind}${p.kind === 'dense' ? ` with codec ${p.codec}` : ''}, not codec l or low-rank`);
      }
    }
  }

  /** The values the device will hold for tensor `st` with the current variables. */
  private weights(st: State): Float32Array {
    const w = new Float32Array(st.w0.length);
    if (st.kind === 'codes') {
      const { values } = wireScales(st.s.dataSync() as Float32Array, st.exponent);
      for (let k = 0; k < w.length; k++) w[k] = st.w0[k] + Math.fround(st.codes[k] * values[st.chanOf[k]]);
      return w;
    }
    const { u, v } = int8Factors(st.u.dataSync() as Float32Array, st.v.dataSync() as Float32Array);
    const { rows, cols, rank } = st;
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        let acc = 0;
        for (let c = 0; c < rank; c++) acc = Math.fround(acc + Math.fround(u[i * rank + c] * v[c * cols + j]));
        w[i * cols + j] = st.w0[i * cols + j] + acc;
      }
    }
    return w;
  }

  effective(name: string): tf.Tensor {
    const st = this.states.get(name) as State;
    return tf.tensor(this.weights(st), st.shape, 'float32');
  }

  gradients(name: string, dW: tf.Tensor): tf.NamedTensorMap {
    const st = this.states.get(name) as State;
    if (st.kind === 'codes') {
      const g = tf.mul(tf.reshape(dW, [st.codes.length]), st.code);
      return { [st.s.name]: tf.unsortedSegmentSum(g, st.chan, st.s.shape[0] as number) };
    }
    const d = tf.reshape(dW, [st.rows, st.cols]);
    return { [st.u.name]: tf.matMul(d, st.v, false, true), [st.v.name]: tf.matMul(st.u, d, true, false) };
  }

  /** After a step: scales kept at or above zero. */
  afterStep(): void {
    for (const st of this.states.values()) {
      if (st.kind === 'codes') tf.tidy(() => st.s.assign(tf.relu(st.s)));
    }
  }

  /** The patches of the current variables, as the payload builder takes them. */
  specs(): PatchSpec[] {
    const out: PatchSpec[] = [];
    for (const st of this.states.values()) {
      if (st.kind === 'codes') {
        const { h, e, values } = wireScales(st.s.dataSync() as Float32Array, st.exponent);
        const lowbit: LowBit = { bits: st.bits, group: st.group, scales: h, exponent: e };
        // (+ 0: a zero scale decodes to +0 whatever the code, as the encoder writes it.)
        const decoded = Float32Array.from(st.codes, (c, k) => c * values[st.chanOf[k]] + 0);
        out.push({ kind: 'dense', name: st.name, values: decoded, codec: 'l', lowbit });
      } else {
        out.push({ kind: 'lowrank', name: st.name, rank: st.rank, u: Float32Array.from(st.u.dataSync() as Float32Array), v: Float32Array.from(st.v.dataSync() as Float32Array), codec: 'i8' });
      }
    }
    return out;
  }

  status(): Record<string, string | number> {
    return { tensors: this.states.size };
  }

  dispose(): void {
    for (const st of this.states.values()) {
      if (st.kind === 'codes') {
        st.s.dispose();
        st.code.dispose();
        st.chan.dispose();
      } else {
        st.u.dispose();
        st.v.dispose();
      }
    }
  }
}
