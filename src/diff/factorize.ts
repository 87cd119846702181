/**
 * Truncated SVD of a tensor's change seen as a matrix (`matrixDims`), shared by the post-hoc
 * low-rank diff (src/lowrank-diff/encoder.ts), low-bit's low-rank options
 * (src/lowbit-diff/encoder.ts) and the Delta-CoMe baseline (delta-come.ts).
 */
import { matrixDims } from '../core/format.ts';

/**
 * Eigen-decomposition of a symmetric matrix (cyclic Jacobi). Returns eigenvalues descending
 * and eigenvectors as columns of a row-major n x n matrix.
 */
export function symmetricEigen(a: Float64Array, n: number, sweeps = 30): { values: Float64Array; vectors: Float64Array } {
  const m = Float64Array.from(a);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  for (let sweep = 0; sweep < sweeps; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += m[p * n + q] ** 2;
    if (off < 1e-30) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = m[p * n + q];
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (m[q * n + q] - m[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const mkp = m[k * n + p];
          const mkq = m[k * n + q];
          m[k * n + p] = c * mkp - s * mkq;
          m[k * n + q] = s * mkp + c * mkq;
        }
        for (let k = 0; k < n; k++) {
          const mpk = m[p * n + k];
          const mqk = m[q * n + k];
          m[p * n + k] = c * mpk - s * mqk;
          m[q * n + k] = s * mpk + c * mqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p];
          const vkq = v[k * n + q];
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => m[y * n + y] - m[x * n + x] || x - y);
  const values = Float64Array.from(order, (i) => m[i * n + i]);
  const vectors = new Float64Array(n * n);
  order.forEach((src, dst) => {
    for (let k = 0; k < n; k++) vectors[k * n + dst] = v[k * n + src];
  });
  return { values, vectors };
}

export interface Factorization {
  name: string;
  rows: number;
  cols: number;
  /** Per component: balanced factors u (rows) and v (cols) with u ⊗ v the component. */
  components: { energy: number; u: Float32Array; v: Float32Array }[];
}

/** Truncated SVD of `d` as a rows x cols matrix, via the eigenvectors of the smaller Gram matrix. */
export function factorize(name: string, d: Float32Array, shape: readonly number[], maxRank: number): Factorization {
  const { rows, cols } = matrixDims(shape);
  const transpose = rows < cols; // work on the smaller side
  const n = transpose ? rows : cols;
  const other = transpose ? cols : rows;
  const at = (r: number, c: number) => d[r * cols + c];
  const gram = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      let s = 0;
      for (let k = 0; k < other; k++) s += transpose ? at(i, k) * at(j, k) : at(k, i) * at(k, j);
      gram[i * n + j] = s;
      gram[j * n + i] = s;
    }
  }
  const { values, vectors } = symmetricEigen(gram, n);
  const components: Factorization['components'] = [];
  for (let c = 0; c < Math.min(maxRank, n); c++) {
    const lambda = values[c];
    if (!(lambda > 1e-20)) break;
    const sigma = Math.sqrt(lambda);
    // small-side vector e (unit), large-side vector f = M e / sigma; component = sigma f e^T
    const e = new Float64Array(n);
    for (let k = 0; k < n; k++) e[k] = vectors[k * n + c];
    const f = new Float64Array(other);
    for (let k = 0; k < other; k++) {
      let s = 0;
      for (let i = 0; i < n; i++) s += (transpose ? at(i, k) : at(k, i)) * e[i];
      f[k] = s / sigma;
    }
    const root = Math.sqrt(sigma);
    const small = Float32Array.from(e, (x) => x * root);
    const large = Float32Array.from(f, (x) => x * root);
    components.push({ energy: lambda, u: transpose ? small : large, v: transpose ? large : small });
  }
  return { name, rows, cols, components };
}
