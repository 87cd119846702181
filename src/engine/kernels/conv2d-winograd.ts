/**
 * Winograd's F(m, 3) for the convolutions of 3 taps along the width at stride 1 (conv2d.c's
 * winograd_* and winograd4_*): the keyword model's temporal layers (as tfjs runs a conv1d: a
 * [1, 3, in, out] filter over [batch, 1, frames, channels]), their input gradients, which are the
 * same kind of convolution over dy with the taps reversed, and their filter gradients (the
 * algorithm's adjoint). F(2, 3) makes two outputs from four inputs with 4 products, F(4, 3) four
 * from six with 6, where the direct sum takes 6 and 12: m + 2 matrix products (conv2d.c's gathered
 * product over the rows of the transformed input, each sum over the input channels in order from
 * 0), between an input and an output transform. Other rounding than the direct sum (conv2d.c's
 * gather), the same for the same inputs; the twin below computes the same float32 steps.
 */
import type { TensorInfo } from '@tensorflow/tfjs';
import type { ConvActivation, ConvShape } from './conv2d-shape.ts';
import type { TrainKernelExports } from './train-kernels-simd.ts';
import { dispose, kernelLimits, offsetOf, type WasmBackendLike } from './util.ts';

/** The epilogue activations as conv2d.c numbers them. */
const ACT = { linear: 0, relu: 1, relu6: 2 } as const;

/**
 * Switch for tests and benchmarks: `enabled` false runs these convolutions as direct sums
 * (conv2d.c's gather); `tile` the outputs a tile, F(2, 3) or F(4, 3), or 'auto' ({@link tileFor}).
 */
export const winogradSwitch = { enabled: true, tile: 'auto' as 'auto' | 2 | 4 };

/**
 * The tile for rows of `OW` outputs: F(4, 3) where it takes fewer products a row than F(2, 3)
 * (ceil(OW / 4)·6 against ceil(OW / 2)·4; its transforms cost more), else F(2, 3). Measured
 * (bench/conv-shapes.ts): F(4, 3) 1.3-1.8x the direct sums on the keyword model's rows of 25 and 12,
 * F(2, 3) 1.2-1.5x; on rows of 6, where F(4, 3) computes 8 outputs for 6, 1.03-1.4x against
 * F(2, 3)'s 1.2-1.5x.
 */
export function tileFor(OW: number): 2 | 4 {
  if (winogradSwitch.tile !== 'auto') return winogradSwitch.tile;
  return Math.ceil(OW / 4) * 6 < Math.ceil(OW / 2) * 4 ? 4 : 2;
}

/**
 * Whether F(m, 3) runs this call: a [1, 3] filter, stride and dilation 1, no padding along the
 * height; for the input gradient a left padding of at most 2 (the reversed convolution's is 2 - it).
 */
export function winogradFits(s: ConvShape, kind: 'forward' | 'filter' | 'input'): boolean {
  if (!winogradSwitch.enabled || s.filterHeight !== 1 || s.filterWidth !== 3 || s.strideHeight !== 1 || s.strideWidth !== 1) return false;
  if (s.dilationHeight !== 1 || s.dilationWidth !== 1 || s.padTop !== 0 || s.inHeight !== s.outHeight) return false;
  return kind !== 'input' || s.padLeft <= 2;
}

/** The kernels of one tile size. */
function kernelsOf(k: TrainKernelExports, tile: 2 | 4) {
  return tile === 2
    ? { input: k.winograd_input, filter: k.winograd_filter, output: k.winograd_output, dy: k.winograd_dy, filterGrad: k.winograd_filter_grad }
    : { input: k.winograd4_input, filter: k.winograd4_filter, output: k.winograd4_output, dy: k.winograd4_dy, filterGrad: k.winograd4_filter_grad };
}

/**
 * One F(m, 3) convolution along rows: `rows` rows of `W` positions by `C` channels at `src`, a
 * [3, C, N] filter (or, with `flip`, taps reversed from a [3, C, N] table), `pl` zeros on the
 * left; writes `rows` rows of `OW` by `N` at `dst`. Rows in chunks whose transforms fit
 * kernelLimits.columnFloats (rows are independent: the same bits).
 */
function winogradRows(
  backend: WasmBackendLike, k: TrainKernelExports, srcAt: number, filterAt: number, flip: boolean, dstAt: number,
  rows: number, W: number, C: number, OW: number, N: number, pl: number, biasAt: number, act: number,
): void {
  const tile = tileFor(OW);
  const wk = kernelsOf(k, tile);
  const E = tile + 2;
  const tpr = Math.ceil(OW / tile);
  const chunk = Math.max(1, Math.min(rows, Math.floor(kernelLimits.columnFloats / Math.max(1, E * tpr * (C + N)))));
  const G = backend.makeOutput([E * C * N], 'float32');
  const U = backend.makeOutput([E * chunk * tpr * C], 'float32');
  const M = backend.makeOutput([E * chunk * tpr * N], 'float32');
  const ind = backend.makeOutput([chunk * tpr], 'int32');
  const [gAt, uAt, mAt, indAt] = [offsetOf(backend, G), offsetOf(backend, U), offsetOf(backend, M), offsetOf(backend, ind)];
  wk.filter(filterAt, gAt, C, N, flip ? 1 : 0);
  for (let r0 = 0; r0 < rows; r0 += chunk) {
    const n = Math.min(chunk, rows - r0);
    const tiles = n * tpr;
    wk.input(srcAt + 4 * r0 * W * C, uAt, n, W, C, OW, pl);
    for (let e = 0; e < E; e++) {
      // M_e = U_e · G_e: the gathered product of one tap over the rows of U_e (no padding: `zero` unused).
      const ue = uAt + 4 * e * tiles * C;
      k.conv_indirection(ue, ue, indAt, 1, 1, tiles, C, 1, tiles, 1, 1, 1, 1, 1, 1, 0, 0);
      k.conv_gather_gemm(indAt, tiles, 1, C, gAt + 4 * e * C * N, N, mAt + 4 * e * tiles * N, 0, 0);
    }
    wk.output(mAt, dstAt + 4 * r0 * OW * N, biasAt, act, n, OW, N);
  }
  for (const t of [G, U, M, ind]) dispose(backend, t);
}

/** y = act(conv(x, w) + bias) by F(m, 3); the caller checked {@link winogradFits}. */
export function conv2dWinograd(
  backend: WasmBackendLike, k: TrainKernelExports, x: TensorInfo, w: TensorInfo, bias: TensorInfo | null, act: ConvActivation, s: ConvShape,
): TensorInfo {
  const y = backend.makeOutput([s.batch, s.outHeight, s.outWidth, s.outChannels], 'float32');
  winogradRows(backend, k, offsetOf(backend, x), offsetOf(backend, w), false, offsetOf(backend, y), s.batch * s.inHeight, s.inWidth, s.inChannels, s.outWidth, s.outChannels, s.padLeft, bias === null ? 0 : offsetOf(backend, bias), ACT[act]);
  return y;
}

/** dx by F(m, 3) over dy with the filter's taps reversed and its channels swapped; the caller checked {@link winogradFits}. */
export function conv2dInputGradWinograd(backend: WasmBackendLike, k: TrainKernelExports, dy: TensorInfo, w: TensorInfo, s: ConvShape): TensorInfo {
  const dx = backend.makeOutput([s.batch, s.inHeight, s.inWidth, s.inChannels], 'float32');
  const wt = backend.makeOutput([3 * s.outChannels * s.inChannels], 'float32');
  k.conv_filter_per_tap_transpose(offsetOf(backend, w), offsetOf(backend, wt), 3, s.inChannels, s.outChannels);
  winogradRows(backend, k, offsetOf(backend, dy), offsetOf(backend, wt), true, offsetOf(backend, dx), s.batch * s.outHeight, s.outWidth, s.outChannels, s.inWidth, s.inChannels, 2 - s.padLeft, 0, 0);
  dispose(backend, wt);
  return dx;
}

/**
 * dw [1, 3, CI, CO] by F(m, 3): the transforms of x's and dy's tiles, the m + 2 products summed
 * over the tiles in order (conv2d.c's filter gradient over the rows of U_e, continuing from one
 * chunk of rows to the next), then the filter transform's adjoint. The caller checked {@link winogradFits}.
 */
export function conv2dFilterGradWinograd(backend: WasmBackendLike, k: TrainKernelExports, x: TensorInfo, dy: TensorInfo, s: ConvShape): TensorInfo {
  const { inWidth: W, inChannels: C, outWidth: OW, outChannels: N } = s;
  const tile = tileFor(OW);
  const wk = kernelsOf(k, tile);
  const E = tile + 2;
  const rows = s.batch * s.inHeight;
  const tpr = Math.ceil(OW / tile);
  const chunk = Math.max(1, Math.min(rows, Math.floor(kernelLimits.columnFloats / Math.max(1, E * tpr * (C + N)))));
  const dw = backend.makeOutput([1, 3, C, N], 'float32');
  const Wt = backend.makeOutput([E * C * N], 'float32');
  const U = backend.makeOutput([E * chunk * tpr * C], 'float32');
  const V = backend.makeOutput([E * chunk * tpr * N], 'float32');
  const ind = backend.makeOutput([chunk * tpr], 'int32');
  const [xAt, dyAt, wAt, uAt, vAt, indAt] = [x, dy, Wt, U, V, ind].map((t) => offsetOf(backend, t));
  for (let r0 = 0; r0 < rows; r0 += chunk) {
    const n = Math.min(chunk, rows - r0);
    const tiles = n * tpr;
    wk.input(xAt + 4 * r0 * W * C, uAt, n, W, C, OW, s.padLeft);
    wk.dy(dyAt + 4 * r0 * OW * N, vAt, n, OW, N);
    for (let e = 0; e < E; e++) {
      const ue = uAt + 4 * e * tiles * C;
      k.conv_indirection(ue, ue, indAt, 1, 1, tiles, C, 1, tiles, 1, 1, 1, 1, 1, 1, 0, 0);
      k.conv_filter_grad(indAt, tiles, 1, C, vAt + 4 * e * tiles * N, N, wAt + 4 * e * C * N, r0 > 0 ? 1 : 0);
    }
  }
  wk.filterGrad(wAt, offsetOf(backend, dw), C * N);
  for (const t of [Wt, U, V, ind]) dispose(backend, t);
  return dw;
}

// ---------------------------------------------------------------------------------------------
// The scalar twin: the same float32 steps in the same order (conv2d.c's comments give them).

const f = Math.fround;
const [SIXTH, TWELFTH, TWENTYFOURTH] = [f(1 / 6), f(1 / 12), f(1 / 24)];

function activate(v: number, act: ConvActivation): number {
  if (act === 'linear' || Number.isNaN(v)) return v;
  const r = v > 0 ? v : 0;
  return act === 'relu6' && r > 6 ? 6 : r;
}

/** The input transform of one tile (tile + 2 values in, as many out). */
function inputTransform(d: number[], tile: 2 | 4): number[] {
  if (tile === 2) return [f(d[0] - d[2]), f(d[1] + d[2]), f(d[2] - d[1]), f(d[1] - d[3])];
  return [
    f(f(f(d[0] * 4) - f(d[2] * 5)) + d[4]),
    f(f(d[3] + d[4]) - f(f(d[1] + d[2]) * 4)),
    f(f(d[4] - d[3]) + f(f(d[1] - d[2]) * 4)),
    f(f(d[4] - d[2]) + f(f(d[3] - d[1]) * 2)),
    f(f(d[4] - d[2]) - f(f(d[3] - d[1]) * 2)),
    f(f(f(d[1] * 4) - f(d[3] * 5)) + d[5]),
  ];
}

/** The filter transform of one filter entry's three taps. */
function filterTransform(g0: number, g1: number, g2: number, tile: 2 | 4): number[] {
  if (tile === 2) return [g0, f(f(f(g0 + g1) + g2) * 0.5), f(f(f(g0 - g1) + g2) * 0.5), g2];
  return [
    f(g0 * 0.25),
    f(f(f(g0 + g1) + g2) * -SIXTH),
    f(f(f(g0 - g1) + g2) * -SIXTH),
    f(f(f(g0 + f(g1 * 2)) + f(g2 * 4)) * TWENTYFOURTH),
    f(f(f(g0 - f(g1 * 2)) + f(g2 * 4)) * TWENTYFOURTH),
    g2,
  ];
}

/** The output transform of one tile's products (tile outputs). */
function outputTransform(m: number[], tile: 2 | 4): number[] {
  if (tile === 2) return [f(f(m[0] + m[1]) + m[2]), f(f(m[1] - m[2]) - m[3])];
  const [s12, d12, s34, d34] = [f(m[1] + m[2]), f(m[1] - m[2]), f(m[3] + m[4]), f(m[3] - m[4])];
  return [f(f(m[0] + s12) + s34), f(d12 + f(d34 * 2)), f(s12 + f(s34 * 4)), f(f(d12 + f(d34 * 8)) + m[5])];
}

/** dy's transform of one tile (tile values in, tile + 2 out). */
function dyTransform(d: number[], tile: 2 | 4): number[] {
  if (tile === 2) return [d[0], f(d[0] + d[1]), f(d[0] - d[1]), -d[1]];
  return [
    d[0],
    f(f(d[0] + d[1]) + f(d[2] + d[3])),
    f(f(d[0] - d[1]) + f(d[2] - d[3])),
    f(f(d[0] + f(d[1] * 2)) + f(f(d[2] * 4) + f(d[3] * 8))),
    f(f(d[0] - f(d[1] * 2)) + f(f(d[2] * 4) - f(d[3] * 8))),
    d[3],
  ];
}

/** The filter transform's adjoint: the three taps' gradients from the tile + 2 sums. */
function filterGradTransform(w: number[], tile: 2 | 4): number[] {
  if (tile === 2) {
    const [w1, w2] = [f(w[1] * 0.5), f(w[2] * 0.5)];
    return [f(f(w[0] + w1) + w2), f(w1 - w2), f(f(w1 + w2) + w[3])];
  }
  const s12 = f(f(w[1] + w[2]) * SIXTH);
  const s34 = f(w[3] + w[4]);
  return [
    f(f(f(w[0] * 0.25) - s12) + f(s34 * TWENTYFOURTH)),
    f(f(f(w[2] - w[1]) * SIXTH) + f(f(w[3] - w[4]) * TWELFTH)),
    f(f(f(s34 * SIXTH) - s12) + w[5]),
  ];
}

/** The input transform of every tile of `rows` rows of W by C (zeros outside a row): U[e][tile][c]. */
function transformInput(src: Float32Array, rows: number, W: number, C: number, OW: number, pl: number, tile: 2 | 4): Float32Array {
  const E = tile + 2;
  const tpr = Math.ceil(OW / tile);
  const tiles = rows * tpr;
  const U = new Float32Array(E * tiles * C);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < tpr; i++) {
      for (let c = 0; c < C; c++) {
        const d = Array.from({ length: E }, (_, q) => {
          const at = tile * i - pl + q;
          return at >= 0 && at < W ? src[(r * W + at) * C + c] : 0;
        });
        inputTransform(d, tile).forEach((u, e) => (U[(e * tiles + r * tpr + i) * C + c] = u));
      }
    }
  }
  return U;
}

/**
 * F(m, 3) along rows: `src` rows of W by C, `g` a [3, C, N] filter (taps reversed when `flip`),
 * `pl` zeros on the left; returns rows of OW by N.
 */
export function winogradRowsReference(
  src: Float32Array, g: Float32Array, flip: boolean, rows: number, W: number, C: number, OW: number, N: number, pl: number,
  bias: Float32Array | null, act: ConvActivation, tile: 2 | 4 = tileFor(OW),
): Float32Array {
  const E = tile + 2;
  const tpr = Math.ceil(OW / tile);
  const tiles = rows * tpr;
  const U = transformInput(src, rows, W, C, OW, pl, tile);
  const n = C * N;
  const G = new Float32Array(E * n);
  for (let j = 0; j < n; j++) filterTransform(g[(flip ? 2 : 0) * n + j], g[n + j], g[(flip ? 0 : 2) * n + j], tile).forEach((v, e) => (G[e * n + j] = v));
  // M_e = U_e · G_e, each output one sum over the channels in order from 0 (conv2d.c's gathered product).
  const M = new Float32Array(E * tiles * N);
  for (let e = 0; e < E; e++) {
    for (let t = 0; t < tiles; t++) {
      for (let o = 0; o < N; o++) {
        let sum = 0;
        for (let c = 0; c < C; c++) sum = f(sum + f(U[(e * tiles + t) * C + c] * G[(e * C + c) * N + o]));
        M[(e * tiles + t) * N + o] = sum;
      }
    }
  }
  const y = new Float32Array(rows * OW * N);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < tpr; i++) {
      for (let o = 0; o < N; o++) {
        const m = Array.from({ length: E }, (_, e) => M[(e * tiles + r * tpr + i) * N + o]);
        outputTransform(m, tile).forEach((v, q) => {
          if (tile * i + q < OW) y[(r * OW + tile * i + q) * N + o] = activate(bias === null ? v : f(v + bias[o]), act);
        });
      }
    }
  }
  return y;
}

/** The twin of {@link conv2dFilterGradWinograd}: x [B, H, W, CI], dy [B, H, OW, CO]; dw [1, 3, CI, CO]. */
export function conv2dFilterGradWinogradReference(x: Float32Array, dy: Float32Array, s: ConvShape, tile: 2 | 4 = tileFor(s.outWidth)): Float32Array {
  const { inWidth: W, inChannels: C, outWidth: OW, outChannels: N } = s;
  const E = tile + 2;
  const rows = s.batch * s.inHeight;
  const tpr = Math.ceil(OW / tile);
  const tiles = rows * tpr;
  const U = transformInput(x, rows, W, C, OW, s.padLeft, tile);
  const V = new Float32Array(E * tiles * N);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < tpr; i++) {
      for (let o = 0; o < N; o++) {
        const d = Array.from({ length: tile }, (_, q) => (tile * i + q < OW ? dy[(r * OW + tile * i + q) * N + o] : 0));
        dyTransform(d, tile).forEach((v, e) => (V[(e * tiles + r * tpr + i) * N + o] = v));
      }
    }
  }
  const n = C * N;
  const Wt = new Float32Array(E * n);
  for (let e = 0; e < E; e++) {
    for (let c = 0; c < C; c++) {
      for (let o = 0; o < N; o++) {
        let sum = 0;
        for (let t = 0; t < tiles; t++) sum = f(sum + f(U[(e * tiles + t) * C + c] * V[(e * tiles + t) * N + o]));
        Wt[e * n + c * N + o] = sum;
      }
    }
  }
  const dw = new Float32Array(3 * n);
  for (let j = 0; j < n; j++) filterGradTransform(Array.from({ length: E }, (_, e) => Wt[e * n + j]), tile).forEach((v, k) => (dw[k * n + j] = v));
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
