/**
 * Distilled low-bit deltas (`ndiff train --method lowbit`): the post-hoc lowbit payload's codes
 * stay, its scales (and low-rank factors) are trained toward the teacher, as BitDelta distills
 * its per-matrix scales. Every tensor the post-hoc payload carries is trained:
 *
 * - codec l: W = W0 + code(k) * s[group(k)] (W0 = 0 for a tensor carried as its new values, kind
 *   n); the scales s are the variables, and the forward pass
 *   uses them as the device decodes them (each a float16 times the patch's power of two), the
 *   gradient passing straight through the rounding: dL/ds[j] = sum over the group of dL/dW * code;
 * - low-rank factors in codec l: W = W0 + (cu * su) (cv * sv), the codes cu of U's columns and
 *   cv of V's rows kept, each factor vector's scale (su, sv) trained the same way.
 *
 * The variables are relative, so one learning rate suits scales of any size: each scale is its
 * post-hoc value times a trained multiplier (1 at first), each trained code's change is in units
 * of its post-hoc scale. A scale is kept at or above zero (the format's scales are not negative). The payload built
 * from {@link LowBitScales.specs} has the post-hoc payload's size: the same codes, scales and
 * factors, other values.
 */
import * as tf from '@tensorflow/tfjs';
import type { TensorPatch } from '../core/format.ts';
import { fromHalfBits } from '../core/float16.ts';
import type { LowBit, LowBitFactors } from '../core/lowbit.ts';
import type { PatchSpec } from '../diff/build.ts';
import { lowBitCode, scaleExponent, wireScale } from './encoder.ts';
import { matrixDims } from '../core/format.ts';
import { trainingVariableName, type Parameterization } from '../method/contract.ts';
import { isIntegerGrid, type IntegerGrid } from '../core/grid.ts';
import { GRID_CODE_SLACK, wholeSteps } from './grid-codes.ts';

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
  /** The post-hoc scales; the variable `s` holds each one's multiplier (1 at first). */
  s0: Float64Array;
  s: tf.Variable;
  code: tf.Tensor1D;
  chan: tf.Tensor1D;
  /** The largest changes carried apart at float16 (a composite patch), kept as they are. */
  outliers?: { positions: Uint32Array; values: Float32Array };
  /** Codes of the tensor's new values (kind n): `w0` is then all +0, the base not used. */
  replace?: true;
  /**
   * Codes trained too: a float change per value, in units of its post-hoc scale, whose rounding at
   * the current scale is its code (straight through), started at the change the post-hoc codes
   * were rounded from.
   */
  delta?: tf.Variable;
  /**
   * Codes in whole steps of an integer storage grid (grid-codes.ts): each scale stays a
   * whole number of grid steps as it trains (the device clamps past the grid's ends, as the
   * training step's rounding onto the grid does).
   */
  onGrid?: IntegerGrid;
}

interface FactorState {
  kind: 'factors';
  name: string;
  shape: number[];
  w0: Float32Array;
  rows: number;
  cols: number;
  rank: number;
  widths: readonly number[];
  exponent: number;
  /** The codes of U [rows x rank] and of V [rank x cols]. */
  cu: Float32Array;
  cv: Float32Array;
  cuT: tf.Tensor2D;
  cvT: tf.Tensor2D;
  /** The post-hoc scales of U's columns and of V's rows; the variables hold their multipliers. */
  su0: Float64Array;
  sv0: Float64Array;
  su: tf.Variable;
  sv: tf.Variable;
}

type State = CodeState | FactorState;

/**
 * Float16 bits of every scale with one shared exponent, and the scales they stand for. The
 * post-hoc payload's exponent `e` stays while the largest scale is a normal float16 under it (the
 * same bytes then, and the post-hoc patch exactly before training); else one is chosen as
 * the post-hoc encoder (encoder.ts) chooses it.
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
   * @param patches the post-hoc payload's patches (codec l: dense, composite or low-rank), decoded
   * @param deltas with it, the codes train too (straight-through rounding of a float change per
   * value, started at these changes: the full change of each tensor, target - base), else only
   * the scales (BitDelta's recipe)
   */
  constructor(base: ReadonlyMap<string, { shape: number[]; values: Float32Array }>, patches: readonly TensorPatch[], deltas?: ReadonlyMap<string, Float32Array>) {
    this.names = patches.map((p) => p.name);
    for (const p of patches) {
      const b = base.get(p.name) as { shape: number[]; values: Float32Array };
      const dense = p.kind === 'dense' ? p.values : p.kind === 'composite' ? p.dense : undefined;
      if (dense && p.lowbit) {
        const lb = p.lowbit;
        // New values (kind n): the codes are the weights themselves, from +0.
        const replace = p.kind === 'dense' && p.replace === true;
        const w0 = replace ? new Float32Array(b.values.length) : b.values;
        const change = deltas?.get(p.name);
        const n = dense.length;
        const count = lb.scales.length;
        const scale = Float64Array.from(lb.scales, (h) => fromHalfBits(h) * 2 ** lb.exponent);
        const chanOf = Int32Array.from({ length: n }, (_, k) => Math.floor(k / lb.group) % count);
        // value = code * scale exactly: the code back from the value (a zero scale: +1, any).
        const codes = Float32Array.from(dense, (x, k) => (scale[chanOf[k]] > 0 ? Math.round(x / scale[chanOf[k]]) : 1));
        // Codes the post-hoc encoder made in whole grid steps train in whole grid steps.
        const grid = p.kind === 'dense' && !replace && p.grid && isIntegerGrid(p.grid) && wholeSteps(scale, p.grid, lb.bits) ? p.grid : undefined;
        this.states.set(p.name, {
          kind: 'codes', name: p.name, shape: b.shape, w0, bits: lb.bits, group: lb.group, exponent: lb.exponent, codes, chanOf,
          ...(replace ? { replace: true as const } : {}),
          ...(grid ? { onGrid: grid } : {}),
          s0: scale,
          s: tf.variable(tf.ones([count]), true, trainingVariableName(`nd_lowbit_s/${p.name}`)),
          code: tf.tensor1d(codes, 'float32'),
          chan: tf.tensor1d(chanOf, 'int32'),
          ...(p.kind === 'composite' ? { outliers: { positions: p.positions, values: p.values } } : {}),
          ...(change ? { delta: tf.variable(tf.tensor1d(startOfCodes(replace ? Float32Array.from(change, (d, k) => b.values[k] + d) : change, p, (k) => scale[chanOf[k]])), true, trainingVariableName(`nd_lowbit_d/${p.name}`)) } : {}),
        });
      } else if (p.kind === 'lowrank' && p.lowbitFactors) {
        const f = p.lowbitFactors;
        const { rows, cols } = matrixDims(b.shape);
        const r = p.rank;
        const scale = Float64Array.from(f.scales, (h) => fromHalfBits(h) * 2 ** f.exponent);
        // value = code * scale exactly: the codes back from the values (a zero scale: code 0).
        const code = (x: number, sc: number) => (sc > 0 ? Math.round(x / sc) : 0);
        const cu = Float32Array.from(p.u, (x, i) => code(x, scale[2 * (i % r)]));
        const cv = Float32Array.from(p.v, (x, i) => code(x, scale[2 * Math.floor(i / cols) + 1]));
        this.states.set(p.name, {
          kind: 'factors', name: p.name, shape: b.shape, w0: b.values, rows, cols, rank: r, widths: f.widths, exponent: f.exponent, cu, cv,
          cuT: tf.tensor2d(cu, [rows, r]),
          cvT: tf.tensor2d(cv, [r, cols]),
          su0: Float64Array.from({ length: r }, (_, k) => scale[2 * k]),
          sv0: Float64Array.from({ length: r }, (_, k) => scale[2 * k + 1]),
          su: tf.variable(tf.ones([r]), true, trainingVariableName(`nd_lowbit_su/${p.name}`)),
          sv: tf.variable(tf.ones([r]), true, trainingVariableName(`nd_lowbit_sv/${p.name}`)),
        });
      } else {
        throw new Error(`LowBitScales: patch ${p.name} is ${p.kind} with codec ${p.codec}, not codec l (dense, composite or low-rank)`);
      }
    }
  }

  /** With trained codes: each value's code from its float change at the current scales. */
  private recode(st: CodeState, values: Float64Array): void {
    if (!st.delta) return;
    const t = st.delta.dataSync() as Float32Array;
    for (let k = 0; k < t.length; k++) st.codes[k] = lowBitCode(t[k] * st.s0[st.chanOf[k]], values[st.chanOf[k]], st.bits);
  }

  /** The scales a codes tensor's variables stand for, on the wire: whole grid steps on a grid. */
  private wire(st: CodeState): { h: Uint16Array; e: number; values: Float64Array } {
    const s = times(st.s0, st.s);
    const g = st.onGrid;
    if (!g) return wireScales(s, st.exponent);
    for (let j = 0; j < s.length; j++) s[j] = Math.round(s[j] / g.scale) * g.scale;
    const w = wireScales(s, st.exponent);
    // A step count whose float16 strays too far from whole steps (many steps of a uint16 grid)
    // keeps the post-hoc scale, which the encoder checked.
    const wide = st.bits === 1 ? 1 : 2 ** (st.bits - 1);
    let strays = false;
    for (let j = 0; j < s.length; j++) if (Math.abs(w.values[j] - s[j]) / g.scale * wide > GRID_CODE_SLACK) (s[j] = st.s0[j]), (strays = true);
    return strays ? wireScales(s, st.exponent) : w;
  }

  /** The values the device will hold for codes tensor `st` with the current variables. */
  private weights(st: CodeState): Float32Array {
    const w = new Float32Array(st.w0.length);
    const { values } = this.wire(st);
    this.recode(st, values);
    for (let k = 0; k < w.length; k++) w[k] = st.w0[k] + Math.fround(st.codes[k] * values[st.chanOf[k]]);
    // An outlier joins the code's value before the weight is written (FORMAT.md 5.2).
    const o = st.outliers;
    if (o) for (let m = 0; m < o.positions.length; m++) {
      const k = o.positions[m];
      w[k] = st.w0[k] + Math.fround(Math.fround(st.codes[k] * values[st.chanOf[k]]) + o.values[m]);
    }
    return w;
  }

  /** U and V as the device decodes them with the current scales, and the layout. */
  private factors(st: FactorState): { u: Float32Array; v: Float32Array; lowbitFactors: LowBitFactors } {
    const { cols, rank: r } = st;
    const su = times(st.su0, st.su);
    const sv = times(st.sv0, st.sv);
    const both = new Float32Array(2 * r);
    for (let k = 0; k < r; k++) [both[2 * k], both[2 * k + 1]] = [su[k], sv[k]];
    const { h, e, values } = wireScales(both, st.exponent);
    // (+ 0: a zero scale decodes to +0 whatever the code, as the encoder writes it.)
    const u = new Float32Array(st.cu.length);
    for (let i = 0; i < u.length; i++) u[i] = st.cu[i] * values[2 * (i % r)] + 0;
    const v = new Float32Array(st.cv.length);
    for (let k = 0; k < r; k++) {
      const sk = values[2 * k + 1];
      for (let j = k * cols; j < (k + 1) * cols; j++) v[j] = st.cv[j] * sk + 0;
    }
    return { u, v, lowbitFactors: { widths: st.widths, scales: h, exponent: e } };
  }

  /**
   * The weights the training step runs with. Codes: exactly the device's values. Low-rank
   * factors: the base plus U·V from the backend's matrix product (one GEMM, its float32 sums in
   * the backend's order, not the device's term by term: a last-bit difference a gradient step does
   * not see, where the exact product cost most of a step). Checkpoints are measured on the
   * payload's exact device weights (BuiltPayload.targetValues), so what ships is measured as shipped.
   */
  effective(name: string): tf.Tensor {
    const st = this.states.get(name) as State;
    if (st.kind === 'codes') return tf.tensor(this.weights(st), st.shape, 'float32');
    const { u, v } = this.factors(st);
    return tf.tidy(() => tf.reshape(tf.add(tf.tensor2d(st.w0, [st.rows, st.cols]), tf.matMul(tf.tensor2d(u, [st.rows, st.rank]), tf.tensor2d(v, [st.rank, st.cols]))), st.shape));
  }

  gradients(name: string, dW: tf.Tensor): tf.NamedTensorMap {
    const st = this.states.get(name) as State;
    if (st.kind === 'codes' && st.delta) {
      // Straight through the rounding (LSQ): dW/d(change) = 1 where the code is not clipped, and
      // dW/ds = code - change / s there, the clipped code where clipped; 1 bit: the sign passes
      // where |change| <= s, and dW/ds = the sign.
      // (The variables are in units of the post-hoc scales: their gradients times those scales.)
      const g = tf.reshape(dW, [st.codes.length]).dataSync() as Float32Array;
      const t = st.delta.dataSync() as Float32Array;
      const { values } = this.wire(st);
      const qmax = st.bits === 1 ? 1 : 2 ** (st.bits - 1) - 1;
      const gd = new Float32Array(g.length);
      const gs = new Float32Array(st.s.shape[0] as number);
      for (let k = 0; k < g.length; k++) {
        const j = st.chanOf[k];
        const sc = values[j];
        const x = sc > 0 ? (t[k] * st.s0[j]) / sc : 0;
        const inside = st.bits === 1 ? Math.abs(x) <= 1 : x >= -qmax - 1.5 && x <= qmax + 0.5;
        if (inside) gd[k] = g[k] * st.s0[j];
        gs[j] += g[k] * (st.bits === 1 || !inside ? st.codes[k] : st.codes[k] - x) * st.s0[j];
      }
      return { [st.delta.name]: tf.tensor1d(gd), [st.s.name]: tf.tensor1d(gs) };
    }
    if (st.kind === 'codes') {
      const g = tf.mul(tf.reshape(dW, [st.codes.length]), st.code);
      return { [st.s.name]: tf.mul(tf.unsortedSegmentSum(g, st.chan, st.s.shape[0] as number), tf.tensor1d(Float32Array.from(st.s0))) };
    }
    // W = W0 + (cu * su) (cv * sv): dL/dsu[k] = sum_i cu[i,k] (G V')[i,k], dL/dsv[k] = sum_j cv[k,j] (U'^T G)[k,j].
    const g = tf.reshape(dW, [st.rows, st.cols]);
    const su0 = tf.tensor1d(Float32Array.from(st.su0));
    const sv0 = tf.tensor1d(Float32Array.from(st.sv0));
    const u = tf.mul(st.cuT, tf.reshape(tf.mul(st.su, su0), [1, st.rank]));
    const v = tf.mul(st.cvT, tf.reshape(tf.mul(st.sv, sv0), [st.rank, 1]));
    return {
      [st.su.name]: tf.mul(tf.sum(tf.mul(st.cuT, tf.matMul(g, v, false, true)), 0), su0),
      [st.sv.name]: tf.mul(tf.sum(tf.mul(st.cvT, tf.matMul(u, g, true, false)), 1), sv0),
    };
  }

  /** After a step: scales kept at or above zero. */
  afterStep(): void {
    for (const st of this.states.values()) {
      for (const x of st.kind === 'codes' ? [st.s] : [st.su, st.sv]) tf.tidy(() => x.assign(tf.relu(x)));
    }
  }

  /** The patches of the current variables, as the payload builder takes them. */
  specs(): PatchSpec[] {
    const out: PatchSpec[] = [];
    for (const st of this.states.values()) {
      if (st.kind === 'codes') {
        const { h, e, values } = this.wire(st);
        this.recode(st, values);
        const lowbit: LowBit = { bits: st.bits, group: st.group, scales: h, exponent: e };
        // (+ 0: a zero scale decodes to +0 whatever the code, as the encoder writes it.)
        const decoded = Float32Array.from(st.codes, (c, k) => c * values[st.chanOf[k]] + 0);
        if (st.outliers) out.push({ kind: 'composite', name: st.name, dense: decoded, lowbit, positions: st.outliers.positions, values: st.outliers.values, codec: 'l', sparseCodec: 'f16' });
        else out.push({ kind: 'dense', name: st.name, values: decoded, codec: 'l', lowbit, ...(st.replace ? { replace: true } : {}) });
      } else {
        out.push({ kind: 'lowrank', name: st.name, rank: st.rank, codec: 'l', ...this.factors(st) });
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
        st.delta?.dispose();
        st.code.dispose();
        st.chan.dispose();
      } else {
        for (const t of [st.su, st.sv, st.cuT, st.cvT]) t.dispose();
      }
    }
  }
}

/**
 * The float change a trained code starts from: the tensor's change, where the post-hoc codes
 * were rounded from it (an outlier's position starts at 0: its code was rounded from 0).
 */
function startOfCodes(delta: Float32Array, p: TensorPatch, scaleOf: (k: number) => number): Float32Array {
  const t = Float32Array.from(delta, (d, k) => (scaleOf(k) > 0 ? d / scaleOf(k) : 0));
  if (p.kind === 'composite') for (const at of p.positions) t[at] = 0;
  return t;
}

/** Each post-hoc scale times its trained multiplier (never below 0). */
function times(s0: Float64Array, m: tf.Variable): Float32Array {
  const x = m.dataSync() as Float32Array;
  return Float32Array.from(s0, (s, j) => s * Math.max(0, x[j]));
}
