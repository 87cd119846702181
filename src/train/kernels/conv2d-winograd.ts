/**
 * Winograd's F(2, 3) for the convolutions of 3 taps along the width at stride 1 (conv2d.c's
 * winograd_*): the keyword model's temporal layers (as tfjs runs a conv1d: a [1, 3, in, out]
 * filter over [batch, 1, frames, channels]), their input gradients, which are the same kind of
 * convolution over dy with the taps reversed, and their filter gradients (the algorithm's adjoint). Two outputs from four inputs with 4 products where
 * the direct sum takes 6: 4 matrix products (conv2d.c's gathered product over the rows of the
 * transformed input, each sum over the input channels in order from 0), between an input and an
 * output transform. Other rounding than the direct sum (conv2d.c's gather), the same for the same
 * inputs; the twin below computes the same float32 steps.
 */
import type { TensorInfo } from '@tensorflow/tfjs';
import type { ConvActivation, ConvShape } from './conv2d.ts';
import type { TrainKernelExports } from './train-kernels-simd.ts';
import { dispose, kernelLimits, offsetOf, type WasmBackendLike } from './util.ts';

/** The epilogue activations as conv2d.c numbers them. */
const ACT = { linear: 0, relu: 1, relu6: 2 } as const;

/** Switch for tests and benchmarks: false runs these convolutions as direct sums (conv2d.c's gather). */
export const winogradSwitch = { enabled: true };

/**
 * Whether F(2, 3) runs this call: a [1, 3] filter, stride and dilation 1, no padding along the
 * height; for the input gradient a left padding of at most 2 (the reversed convolution's is 2 - it).
 */
export function winogradFits(s: ConvShape, kind: 'forward' | 'filter' | 'input'): boolean {
  if (!winogradSwitch.enabled || s.filterHeight !== 1 || s.filterWidth !== 3 || s.strideHeight !== 1 || s.strideWidth !== 1) return false;
  if (s.dilationHeight !== 1 || s.dilationWidth !== 1 || s.padTop !== 0 || s.inHeight !== s.outHeight) return false;
  return kind !== 'input' || s.padLeft <= 2;
}

/**
 * One F(2, 3) convolution along rows: `rows` rows of `W` positions by `C` channels at `src`, a
 * [3, C, N] filter (or, with `flip`, taps reversed from a [3, C, N] table), `pl` zeros on the
 * left; writes `rows` rows of `OW` by `N` at `dst`. Rows in chunks whose transforms fit
 * kernelLimits.columnFloats (rows are independent: the same bits).
 */
function winogradRows(
  backend: WasmBackendLike, k: TrainKernelExports, srcAt: number, filterAt: number, flip: boolean, dstAt: number,
  rows: number, W: number, C: number, OW: number, N: number, pl: number, biasAt: number, act: number,
): void {
  const tpr = (OW + 1) >> 1;
  const chunk = Math.max(1, Math.min(rows, Math.floor(kernelLimits.columnFloats / Math.max(1, 4 * tpr * (C + N)))));
  const G = backend.makeOutput([4 * C * N], 'float32');
  const U = backend.makeOutput([4 * chunk * tpr * C], 'float32');
  const M = backend.makeOutput([4 * chunk * tpr * N], 'float32');
  const ind = backend.makeOutput([chunk * tpr], 'int32');
  const [gAt, uAt, mAt, indAt] = [offsetOf(backend, G), offsetOf(backend, U), offsetOf(backend, M), offsetOf(backend, ind)];
  k.winograd_filter(filterAt, gAt, C, N, flip ? 1 : 0);
  for (let r0 = 0; r0 < rows; r0 += chunk) {
    const n = Math.min(chunk, rows - r0);
    const tiles = n * tpr;
    k.winograd_input(srcAt + 4 * r0 * W * C, uAt, n, W, C, OW, pl);
    for (let e = 0; e < 4; e++) {
      // M_e = U_e · G_e: the gathered product of one tap over the rows of U_e (no padding: `zero` unused).
      const ue = uAt + 4 * e * tiles * C;
      k.conv_indirection(ue, ue, indAt, 1, 1, tiles, C, 1, tiles, 1, 1, 1, 1, 1, 1, 0, 0);
      k.conv_gather_gemm(indAt, tiles, 1, C, gAt + 4 * e * C * N, N, mAt + 4 * e * tiles * N, 0, 0);
    }
    k.winograd_output(mAt, dstAt + 4 * r0 * OW * N, biasAt, act, n, OW, N);
  }
  dispose(backend, G);
  dispose(backend, U);
  dispose(backend, M);
  dispose(backend, ind);
}

/** y = act(conv(x, w) + bias) by F(2, 3); the caller checked {@link winogradFits}. */
export function conv2dWinograd(
  backend: WasmBackendLike, k: TrainKernelExports, x: TensorInfo, w: TensorInfo, bias: TensorInfo | null, act: ConvActivation, s: ConvShape,
): TensorInfo {
  const y = backend.makeOutput([s.batch, s.outHeight, s.outWidth, s.outChannels], 'float32');
  winogradRows(backend, k, offsetOf(backend, x), offsetOf(backend, w), false, offsetOf(backend, y), s.batch * s.inHeight, s.inWidth, s.inChannels, s.outWidth, s.outChannels, s.padLeft, bias === null ? 0 : offsetOf(backend, bias), ACT[act]);
  return y;
}

/** dx by F(2, 3) over dy with the filter's taps reversed and its channels swapped; the caller checked {@link winogradFits}. */
export function conv2dInputGradWinograd(backend: WasmBackendLike, k: TrainKernelExports, dy: TensorInfo, w: TensorInfo, s: ConvShape): TensorInfo {
  const dx = backend.makeOutput([s.batch, s.inHeight, s.inWidth, s.inChannels], 'float32');
  const wt = backend.makeOutput([3 * s.outChannels * s.inChannels], 'float32');
  k.conv_filter_per_tap_transpose(offsetOf(backend, w), offsetOf(backend, wt), 3, s.inChannels, s.outChannels);
  winogradRows(backend, k, offsetOf(backend, dy), offsetOf(backend, wt), true, offsetOf(backend, dx), s.batch * s.outHeight, s.outWidth, s.outChannels, s.inWidth, s.inChannels, 2 - s.padLeft, 0, 0);
  dispose(backend, wt);
  return dx;
}

/**
 * dw [1, 3, CI, CO] by F(2, 3): the transforms of x's and dy's tiles, the 4 products summed over
 * the tiles in order (conv2d.c's filter gradient over the rows of U_e, continuing from one chunk
 * of rows to the next), then the filter transform's adjoint. The caller checked {@link winogradFits}.
 */
export function conv2dFilterGradWinograd(backend: WasmBackendLike, k: TrainKernelExports, x: TensorInfo, dy: TensorInfo, s: ConvShape): TensorInfo {
  const { inWidth: W, inChannels: C, outWidth: OW, outChannels: N } = s;
  const rows = s.batch * s.inHeight;
  const tpr = (OW + 1) >> 1;
  const chunk = Math.max(1, Math.min(rows, Math.floor(kernelLimits.columnFloats / Math.max(1, 4 * tpr * (C + N)))));
  const dw = backend.makeOutput([1, 3, C, N], 'float32');
  const Wt = backend.makeOutput([4 * C * N], 'float32');
  const U = backend.makeOutput([4 * chunk * tpr * C], 'float32');
  const V = backend.makeOutput([4 * chunk * tpr * N], 'float32');
  const ind = backend.makeOutput([chunk * tpr], 'int32');
  const [xAt, dyAt, wAt, uAt, vAt, indAt] = [x, dy, Wt, U, V, ind].map((t) => offsetOf(backend, t));
  for (let r0 = 0; r0 < rows; r0 += chunk) {
    const n = Math.min(chunk, rows - r0);
    const tiles = n * tpr;
    k.winograd_input(xAt + 4 * r0 * W * C, uAt, n, W, C, OW, s.padLeft);
    k.winograd_dy(dyAt + 4 * r0 * OW * N, vAt, n, OW, N);
    for (let e = 0; e < 4; e++) {
      const ue = uAt + 4 * e * tiles * C;
      k.conv_indirection(ue, ue, indAt, 1, 1, tiles, C, 1, tiles, 1, 1, 1, 1, 1, 1, 0, 0);
      k.conv_filter_grad(indAt, tiles, 1, C, vAt + 4 * e * tiles * N, N, wAt + 4 * e * C * N, r0 > 0 ? 1 : 0);
    }
  }
  k.winograd_filter_grad(wAt, offsetOf(backend, dw), C * N);
  for (const t of [Wt, U, V, ind]) dispose(backend, t);
  return dw;
}

// ---------------------------------------------------------------------------------------------
// The scalar twin: the same float32 steps in the same order.

const f = Math.fround;

function activate(v: number, act: ConvActivation): number {
  if (act === 'linear' || Number.isNaN(v)) return v;
  const r = v > 0 ? v : 0;
  return act === 'relu6' && r > 6 ? 6 : r;
}

/**
 * F(2, 3) along rows: `src` rows of W by C, `g` a [3, C, N] filter (taps reversed when `flip`),
 * `pl` zeros on the left; returns rows of OW by N.
 */
export function winogradRowsReference(
  src: Float32Array, g: Float32Array, flip: boolean, rows: number, W: number, C: number, OW: number, N: number, pl: number,
  bias: Float32Array | null, act: ConvActivation,
): Float32Array {
  const tpr = (OW + 1) >> 1;
  const tiles = rows * tpr;
  const U = new Float32Array(4 * tiles * C);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < tpr; i++) {
      for (let c = 0; c < C; c++) {
        const d = [0, 1, 2, 3].map((q) => {
          const at = 2 * i - pl + q;
          return at >= 0 && at < W ? src[(r * W + at) * C + c] : 0;
        });
        const t = (r * tpr + i) * C + c;
        U[t] = f(d[0] - d[2]);
        U[tiles * C + t] = f(d[1] + d[2]);
        U[2 * tiles * C + t] = f(d[2] - d[1]);
        U[3 * tiles * C + t] = f(d[1] - d[3]);
      }
    }
  }
  const n = C * N;
  const G = new Float32Array(4 * n);
  for (let j = 0; j < n; j++) {
    const g0 = g[(flip ? 2 : 0) * n + j];
    const g1 = g[n + j];
    const g2 = g[(flip ? 0 : 2) * n + j];
    G[j] = g0;
    G[n + j] = f(f(f(g0 + g1) + g2) * 0.5);
    G[2 * n + j] = f(f(f(g0 - g1) + g2) * 0.5);
    G[3 * n + j] = g2;
  }
  // M_e = U_e · G_e, each output one sum over the channels in order from 0 (conv2d.c's gathered product).
  const M = new Float32Array(4 * tiles * N);
  for (let e = 0; e < 4; e++) {
    for (let t = 0; t < tiles; t++) {
      for (let o = 0; o < N; o++) {
        let sum = 0;
        for (let c = 0; c < C; c++) sum = f(sum + f(U[(e * tiles + t) * C + c] * G[(e * C + c) * N + o]));
        M[(e * tiles + t) * N + o] = sum;
      }
    }
  }
  const y = new Float32Array(rows * OW * N);
  const plane = tiles * N;
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < tpr; i++) {
      for (let o = 0; o < N; o++) {
        const m = (r * tpr + i) * N + o;
        let a = f(f(M[m] + M[plane + m]) + M[2 * plane + m]);
        let b = f(f(M[plane + m] - M[2 * plane + m]) - M[3 * plane + m]);
        if (bias !== null) {
          a = f(a + bias[o]);
          b = f(b + bias[o]);
        }
        y[(r * OW + 2 * i) * N + o] = activate(a, act);
        if (2 * i + 1 < OW) y[(r * OW + 2 * i + 1) * N + o] = activate(b, act);
      }
    }
  }
  return y;
}

/** The twin of {@link conv2dFilterGradWinograd}: x [B, H, W, CI], dy [B, H, OW, CO]; dw [1, 3, CI, CO]. */
export function conv2dFilterGradWinogradReference(x: Float32Array, dy: Float32Array, s: ConvShape): Float32Array {
  const { inWidth: W, inChannels: C, outWidth: OW, outChannels: N } = s;
  const rows = s.batch * s.inHeight;
  const tpr = (OW + 1) >> 1;
  const tiles = rows * tpr;
  const U = new Float32Array(4 * tiles * C);
  const V = new Float32Array(4 * tiles * N);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < tpr; i++) {
      const t = r * tpr + i;
      for (let c = 0; c < C; c++) {
        const d = [0, 1, 2, 3].map((q) => {
          const at = 2 * i - s.padLeft + q;
          return at >= 0 && at < W ? x[(r * W + at) * C + c] : 0;
        });
        U[t * C + c] = f(d[0] - d[2]);
        U[(tiles + t) * C + c] = f(d[1] + d[2]);
        U[(2 * tiles + t) * C + c] = f(d[2] - d[1]);
        U[(3 * tiles + t) * C + c] = f(d[1] - d[3]);
      }
      for (let o = 0; o < N; o++) {
        const a = dy[(r * OW + 2 * i) * N + o];
        const b = 2 * i + 1 < OW ? dy[(r * OW + 2 * i + 1) * N + o] : 0;
        V[t * N + o] = a;
        V[(tiles + t) * N + o] = f(a + b);
        V[(2 * tiles + t) * N + o] = f(a - b);
        V[(3 * tiles + t) * N + o] = -b;
      }
    }
  }
  const n = C * N;
  const Wt = new Float32Array(4 * n);
  for (let e = 0; e < 4; e++) {
    for (let c = 0; c < C; c++) {
      for (let o = 0; o < N; o++) {
        let sum = 0;
        for (let t = 0; t < tiles; t++) sum = f(sum + f(U[(e * tiles + t) * C + c] * V[(e * tiles + t) * N + o]));
        Wt[e * n + c * N + o] = sum;
      }
    }
  }
  const dw = new Float32Array(3 * n);
  for (let j = 0; j < n; j++) {
    const [w0, w1, w2, w3] = [Wt[j], f(Wt[n + j] * 0.5), f(Wt[2 * n + j] * 0.5), Wt[3 * n + j]];
    dw[j] = f(f(w0 + w1) + w2);
    dw[n + j] = f(w1 - w2);
    dw[2 * n + j] = f(f(w1 + w2) + w3);
  }
  return dw;
}

/** The twin of {@link conv2dWinograd}: x [B, H, W, CI], w [1, 3, CI, CO]. */
export function conv2dWinogradReference(x: Float32Array, w: Float32Array, bias: Float32Array | null, act: ConvActivation, s: ConvShape): Float32Array {
  return winogradRowsReference(x, w, false, s.batch * s.inHeight, s.inWidth, s.inChannels, s.outWidth, s.outChannels, s.padLeft, bias, act);
}

/** The twin of {@link conv2dInputGradWinograd}: dy [B, OH, OW, CO], w [1, 3, CI, CO]. */
export function conv2dInputGradWinogradReference(dy: Float32Array, w: Float32Array, s: ConvShape): Float32Array {
  const { inChannels: CI, outChannels: CO } = s;
  const wt = new Float32Array(3 * CO * CI);
  for (let t = 0; t < 3; t++) for (let c = 0; c < CI; c++) for (let o = 0; o < CO; o++) wt[(t * CO + o) * CI + c] = w[(t * CI + c) * CO + o];
  return winogradRowsReference(dy, wt, true, s.batch * s.outHeight, s.outWidth, CO, s.inWidth, CI, 2 - s.padLeft, null, 'linear');
}
