/**
 * Rounding a tensor's change against its layer's inputs (GPTQ / OBQ, Frantar et al. 2022, applied
 * to a delta): the codes of a matrix's change are chosen one input row at a time, and each row's
 * rounding error is carried into the rows not yet rounded, weighted by the inverse of the
 * inputs' second moment, so the layer's *outputs* on those inputs move as little as they can.
 *
 * A layer computes y = x W with W [rows x cols] (a dense kernel [in, out]; a convolution's kernel
 * [taps..., in, out] read as [taps * in, out], x then one patch of its input). Carrying W0 + Q for
 * W0 + D changes its outputs on inputs X by X (Q - D), whose squared size over the inputs is
 * sum over columns j of (q_j - d_j)' H (q_j - d_j) with H = X'X / N, the inputs' second moment
 * ({@link InputMoments}). Nearest rounding minimises the plain squared error of Q - D instead;
 * rounding against H trades some of that for less output error.
 */
import { lowBitScales, type LowBit } from '../core/lowbit.ts';

/** A change in codec l's codes: the layout and scales, the values the device decodes, their squared error (src/diff/lowbit-quantize.ts's QuantizedDelta). */
export interface QuantizedCodes {
  lowbit: LowBit;
  decoded: Float32Array;
  squaredError: number;
}

/** The second moment of a layer's inputs, for the rows of its kernel: H = X'X / N, rows x rows. */
export interface InputMoments {
  rows: number;
  /** rows x rows, row-major, symmetric. */
  hessian: Float64Array;
  /** Input vectors it was estimated on (examples, or patches of a convolution's input). */
  samples: number;
}

/** Damping added to H's diagonal, as a share of its mean (GPTQ's 1%): keeps its inverse stable. */
const DAMPING = 0.01;

/**
 * The upper Cholesky factor U of H⁻¹ (H⁻¹ = U'U), with H damped: what GPTQ's row-by-row update
 * reads. Rows whose inputs are always zero (H_ii = 0) get 1 on the diagonal: their rounding
 * changes no output. Null when H is not positive definite even damped (it then rounds to nearest).
 */
export function inverseCholesky(m: InputMoments): Float64Array | null {
  const n = m.rows;
  const h = Float64Array.from(m.hessian);
  let mean = 0;
  for (let i = 0; i < n; i++) mean += h[i * n + i];
  mean /= n;
  if (!(mean > 0)) return null;
  for (let i = 0; i < n; i++) {
    if (h[i * n + i] === 0) {
      for (let j = 0; j < n; j++) h[i * n + j] = h[j * n + i] = 0;
      h[i * n + i] = 1;
    } else h[i * n + i] += DAMPING * mean;
  }
  // H = L L' (lower), then H⁻¹ = L'⁻¹ L⁻¹, then H⁻¹'s Cholesky, upper.
  const l = cholesky(h, n);
  if (!l) return null;
  const li = lowerInverse(l, n);
  const inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      // (L⁻¹)' L⁻¹ at (i, j) = sum over k >= max(i, j) of li[k, i] li[k, j]
      let s = 0;
      for (let k = i; k < n; k++) s += li[k * n + i] * li[k * n + j];
      inv[i * n + j] = inv[j * n + i] = s;
    }
  }
  const c = cholesky(inv, n);
  if (!c) return null;
  // Upper U = C' (C lower): U[i, j] = C[j, i].
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) u[i * n + j] = c[j * n + i];
  return u;
}

/** Lower Cholesky factor of a symmetric n x n matrix, or null if it is not positive definite. */
function cholesky(a: Float64Array, n: number): Float64Array | null {
  const l = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let d = a[j * n + j];
    for (let k = 0; k < j; k++) d -= l[j * n + k] * l[j * n + k];
    if (!(d > 0)) return null;
    const ljj = Math.sqrt(d);
    l[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let s = a[i * n + j];
      for (let k = 0; k < j; k++) s -= l[i * n + k] * l[j * n + k];
      l[i * n + j] = s / ljj;
    }
  }
  return l;
}

/** The inverse of a lower-triangular n x n matrix (lower too). */
function lowerInverse(l: Float64Array, n: number): Float64Array {
  const x = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    x[j * n + j] = 1 / l[j * n + j];
    for (let i = j + 1; i < n; i++) {
      let s = 0;
      for (let k = j; k < i; k++) s -= l[i * n + k] * x[k * n + j];
      x[i * n + j] = s / l[i * n + i];
    }
  }
  return x;
}

/**
 * `start`'s codes chosen again against the inputs: the same layout and scales (nearest rounding's
 * choice, {@link quantizeLowBit}), each row of the [rows x cols] change rounded in turn and its
 * error carried into the rows after it through `u` ({@link inverseCholesky}). `delta` is not
 * changed. The result's `squaredError` is the plain squared error of the weights, as for nearest
 * rounding; {@link outputError} gives what this rounding minimises.
 */
export function roundAgainstInputs(delta: Float32Array, start: QuantizedCodes, rows: number, u: Float64Array): QuantizedCodes {
  const n = delta.length;
  const cols = n / rows;
  const { bits, group, scales: h } = start.lowbit;
  const count = h.length;
  const scale = lowBitScales(start.lowbit);
  const qmax = bits === 1 ? 1 : 2 ** (bits - 1) - 1;
  const lo = -qmax - 1;
  const w = Float64Array.from(delta);
  const decoded = new Float32Array(n);
  const err = new Float64Array(cols);
  for (let i = 0; i < rows; i++) {
    const d = u[i * rows + i];
    for (let j = 0; j < cols; j++) {
      const k = i * cols + j;
      const s = scale[Math.floor(k / group) % count];
      const x = w[k];
      const q = bits === 1 ? (x >= 0 ? 1 : -1) : s > 0 ? Math.max(lo, Math.min(qmax, Math.round(x / s))) + 0 : 0;
      decoded[k] = q * s;
      err[j] = (x - decoded[k]) / d;
    }
    for (let r = i + 1; r < rows; r++) {
      const f = u[i * rows + r];
      if (f === 0) continue;
      const at = r * cols;
      for (let j = 0; j < cols; j++) w[at + j] -= err[j] * f;
    }
  }
  let squaredError = 0;
  for (let k = 0; k < n; k++) squaredError += (delta[k] - decoded[k]) ** 2;
  return { lowbit: start.lowbit, decoded, squaredError };
}

/** sum over columns j of e_j' H e_j, e = delta - decoded as [rows x cols]: the layer's mean squared output change on its inputs. */
export function outputError(delta: Float32Array, decoded: Float32Array, m: InputMoments): number {
  const rows = m.rows;
  const cols = delta.length / rows;
  const e = new Float64Array(delta.length);
  for (let k = 0; k < e.length; k++) e[k] = delta[k] - decoded[k];
  let total = 0;
  const he = new Float64Array(cols);
  for (let i = 0; i < rows; i++) {
    he.fill(0);
    for (let r = 0; r < rows; r++) {
      const hir = m.hessian[i * rows + r];
      if (hir === 0) continue;
      const at = r * cols;
      for (let j = 0; j < cols; j++) he[j] += hir * e[at + j];
    }
    const at = i * cols;
    for (let j = 0; j < cols; j++) total += e[at + j] * he[j];
  }
  return total;
}

/** 1 / (the mean of the layer's output energy on its inputs with the base's and the target's kernel): output errors as relative changes of its outputs. */
export function relativeOutput(w: Float32Array, d: Float32Array, m: InputMoments): number {
  const zero = new Float32Array(w.length);
  const target = Float32Array.from(w, (x, i) => x + d[i]);
  const norm = (outputError(w, zero, m) + outputError(target, zero, m)) / 2;
  return norm > 0 ? 1 / norm : 1;
}
