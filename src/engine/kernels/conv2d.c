/*
 * 2-D convolutions (channels last) in WebAssembly SIMD, on the tfjs wasm backend's memory: the
 * forward pass with an optional bias and ReLU/ReLU6 epilogue (Conv2D, FusedConv2D), the filter
 * gradient (Conv2DBackpropFilter) and the input gradient (Conv2DBackpropInput).
 *
 * No column matrix: an indirection table (as XNNPACK's convolutions use) holds, for every output
 * position p and filter tap t, the address of the input row of channels that tap reads, or of a
 * row of zeros where it falls in the padding (or, for the input gradient, between strides). The
 * products then read the input in place. Every output is one sum in a fixed order, from 0, with
 * padded taps multiplied like the others (0 · w):
 *
 *   forward      y(p, o)  = (((0 + x_t0(p, 0) w(t0, 0, o)) + x_t0(p, 1) w(t0, 1, o)) + ...) over taps t, then channels c
 *   filter grad  dw(t, c, o) = ((0 + x_t(p0, c) dy(p0, o)) + x_t(p1, c) dy(p1, o)) + ...  over positions p in order
 *   input grad   dx(q, c) = the forward sum over taps t and output channels o of dy_t(q, o) w(t, c, o)
 *
 * then, forward only, y + bias(o) and the activation. Vector lanes hold output channels, so each
 * lane keeps exactly that order; tiles of up to 4 rows by 8 channels keep their sums in registers (6 rows
 * spill on x86's 16 vector registers: 3-4x slower, bench/conv-shapes.ts).
 * conv2d.ts holds the scalar twins the tests compare these with.
 *
 * Built by scripts/build-train-kernels.ts. No stack, no globals. Pointers are byte addresses in
 * the backend's memory (unsigned: tensors past 2 GiB are fine), sizes in elements.
 */
#include <wasm_simd128.h>

/* Activations of the forward epilogue (conv2d.ts: ACTIVATIONS). */
#define ACT_LINEAR 0
#define ACT_RELU 1
#define ACT_RELU6 2

/* Rows per register tile (by 8 output channels): MR·2 sums, 2 columns of w and a splat in 16 registers. */
#ifndef MR
#define MR 4
#endif

static inline __attribute__((always_inline)) v128_t activate(v128_t v, int act) {
  if (act == ACT_RELU) return wasm_f32x4_max(v, wasm_f32x4_splat(0.0f));
  if (act == ACT_RELU6) return wasm_f32x4_min(wasm_f32x4_max(v, wasm_f32x4_splat(0.0f)), wasm_f32x4_splat(6.0f));
  return v;
}

static inline float activate1(float v, int act) {
  if (act == ACT_LINEAR) return v;
  /* As wasm's f32x4.max and min: NaN stays NaN, max(-0, 0) = 0. */
  if (v != v) return v;
  if (!(v > 0.0f)) v = 0.0f;
  if (act == ACT_RELU6 && v > 6.0f) v = 6.0f;
  return v;
}

/*
 * The indirection table of a convolution's forward pass and filter gradient: ind[p*T + t], for
 * output position p = (b, oh, ow) and tap t = (kh, kw), the address of x(b, ih, iw, 0), or `zero`
 * outside the input.
 */
__attribute__((export_name("conv_indirection")))
void conv_indirection(const float *x, const float *zero, const float **ind, int B, int H, int W, int C, int OH, int OW,
                      int KH, int KW, int sh, int sw, int dh, int dw, int pt, int pl) {
  const int T = KH * KW;
  for (int b = 0; b < B; b++)
    for (int oh = 0; oh < OH; oh++)
      for (int ow = 0; ow < OW; ow++) {
        const float **row = ind + ((b * OH + oh) * OW + ow) * T;
        for (int kh = 0; kh < KH; kh++) {
          const int ih = oh * sh + kh * dh - pt;
          for (int kw = 0; kw < KW; kw++) {
            const int iw = ow * sw + kw * dw - pl;
            row[kh * KW + kw] = ih >= 0 && ih < H && iw >= 0 && iw < W ? x + ((b * H + ih) * W + iw) * C : zero;
          }
        }
      }
}

/*
 * The indirection table of the input gradient: ind[q*T + t], for input position q = (b, ih, iw)
 * and tap t = (kh, kw), the address of dy(b, oh, ow, 0) with oh·sh + kh - pt = ih and ow·sw + kw - pl
 * = iw, or `zero` where no such output exists (padding, or between strides). Dilation 1.
 */
__attribute__((export_name("conv_indirection_grad")))
void conv_indirection_grad(const float *dy, const float *zero, const float **ind, int B, int H, int W, int CO, int OH, int OW,
                           int KH, int KW, int sh, int sw, int pt, int pl) {
  const int T = KH * KW;
  for (int b = 0; b < B; b++)
    for (int ih = 0; ih < H; ih++)
      for (int iw = 0; iw < W; iw++) {
        const float **row = ind + ((b * H + ih) * W + iw) * T;
        for (int kh = 0; kh < KH; kh++) {
          const int nh = ih + pt - kh;
          const int oh = nh >= 0 ? nh / sh : -1;
          const int hOk = nh >= 0 && oh * sh == nh && oh < OH;
          for (int kw = 0; kw < KW; kw++) {
            const int nw = iw + pl - kw;
            const int ow = nw >= 0 ? nw / sw : -1;
            const int ok = hOk && nw >= 0 && ow * sw == nw && ow < OW;
            row[kh * KW + kw] = ok ? dy + ((b * OH + oh) * OW + ow) * CO : zero;
          }
        }
      }
}

/*
 * R rows (1 to MR) by 4V output channels (V = 1 or 2) of out(p, o) = sum over t, c of
 * ind[p*T + t][c] · w[(t*C + c)*N + o], then bias and activation. R and V constant after inlining.
 */
static inline __attribute__((always_inline)) void gather_tile(const float **ind, int T, int C, const float *w, int N,
                                                              float *out, const float *bias, int act, const int R, const int V) {
  v128_t s[MR][2];
  for (int r = 0; r < R; r++)
    for (int v = 0; v < V; v++) s[r][v] = wasm_f32x4_splat(0.0f);
  for (int t = 0; t < T; t++) {
    const float *x[MR];
    for (int r = 0; r < R; r++) x[r] = ind[r * T + t];
    const float *wt = w + t * C * N;
    for (int c = 0; c < C; c++) {
      v128_t b[2];
      for (int v = 0; v < V; v++) b[v] = wasm_v128_load(wt + c * N + 4 * v);
      for (int r = 0; r < R; r++) {
        const v128_t a = wasm_v128_load32_splat(x[r] + c);
        for (int v = 0; v < V; v++) s[r][v] = wasm_f32x4_add(s[r][v], wasm_f32x4_mul(a, b[v]));
      }
    }
  }
  for (int r = 0; r < R; r++)
    for (int v = 0; v < V; v++) {
      v128_t y = s[r][v];
      if (bias) y = wasm_f32x4_add(y, wasm_v128_load(bias + 4 * v));
      wasm_v128_store(out + r * N + 4 * v, activate(y, act));
    }
}

/* One output the same way, without vectors (channels past the last multiple of 4). */
static float gather_single(const float **ind, int T, int C, const float *w, int N, int o) {
  float s = 0.0f;
  for (int t = 0; t < T; t++) {
    const float *x = ind[t];
    const float *wt = w + t * C * N + o;
    for (int c = 0; c < C; c++) s += x[c] * wt[c * N];
  }
  return s;
}

static inline __attribute__((always_inline)) void gather_rows(const float **ind, int T, int C, const float *w, int N,
                                                              float *out, const float *bias, int act, const int R) {
  int o = 0;
  for (; o + 8 <= N; o += 8) gather_tile(ind, T, C, w + o, N, out + o, bias ? bias + o : 0, act, R, 2);
  if (o + 4 <= N) {
    gather_tile(ind, T, C, w + o, N, out + o, bias ? bias + o : 0, act, R, 1);
    o += 4;
  }
  for (; o < N; o++)
    for (int r = 0; r < R; r++) {
      float y = gather_single(ind + r * T, T, C, w, N, o);
      if (bias) y += bias[o];
      out[r * N + o] = activate1(y, act);
    }
}

/*
 * out[p*N + o] = act(sum over t < T, c < C of ind[p*T + t][c] · w[(t*C + c)*N + o] (+ bias[o])) for
 * p < P: the forward convolution (rows: x's channels, w: the [KH, KW, CI, CO] filter) and the input
 * gradient (rows: dy's channels, w: the filter per tap transposed to [KH, KW, CO, CI]). `bias` 0 for none.
 */
__attribute__((export_name("conv_gather_gemm")))
void conv_gather_gemm(const float **ind, int P, int T, int C, const float *w, int N, float *out, const float *bias, int act) {
  int p = 0;
  for (; p + MR <= P; p += MR) gather_rows(ind + p * T, T, C, w, N, out + p * N, bias, act, MR);
#if MR > 4
  if (p + 4 <= P) {
    gather_rows(ind + p * T, T, C, w, N, out + p * N, bias, act, 4);
    p += 4;
  }
#endif
  if (p + 2 <= P) {
    gather_rows(ind + p * T, T, C, w, N, out + p * N, bias, act, 2);
    p += 2;
  }
  for (; p < P; p++) gather_rows(ind + p * T, T, C, w, N, out + p * N, bias, act, 1);
}

/* w[t][c][o] (C x N per tap) -> wt[t][o][c]: the filter as the input gradient reads it. */
__attribute__((export_name("conv_filter_per_tap_transpose")))
void conv_filter_per_tap_transpose(const float *w, float *wt, int T, int C, int N) {
  for (int t = 0; t < T; t++) {
    const float *src = w + t * C * N;
    float *dst = wt + t * C * N;
    for (int c = 0; c < C; c++)
      for (int o = 0; o < N; o++) dst[o * C + c] = src[c * N + o];
  }
}

/*
 * R input channels (1 to MR) by 4V output channels of the filter gradient for one tap t, over the
 * positions p0 <= p < p1: dw(c, o) = sum over p of ind[p*T + t][c] · dy[p*N + o], in order of p,
 * from 0 when `fresh`, else continuing the sums stored in dw (so blocks of positions add in the
 * same order as one pass).
 */
static inline __attribute__((always_inline)) void filter_tile(const float **ind, int T, int c, const float *dy, int N, int p0, int p1,
                                                              int fresh, float *dw, const int R, const int V) {
  v128_t s[MR][2];
  for (int r = 0; r < R; r++)
    for (int v = 0; v < V; v++) s[r][v] = fresh ? wasm_f32x4_splat(0.0f) : wasm_v128_load(dw + r * N + 4 * v);
  for (int p = p0; p < p1; p++) {
    const float *x = ind[p * T] + c;
    const float *d = dy + p * N;
    v128_t b[2];
    for (int v = 0; v < V; v++) b[v] = wasm_v128_load(d + 4 * v);
    for (int r = 0; r < R; r++) {
      const v128_t a = wasm_v128_load32_splat(x + r);
      for (int v = 0; v < V; v++) s[r][v] = wasm_f32x4_add(s[r][v], wasm_f32x4_mul(a, b[v]));
    }
  }
  for (int r = 0; r < R; r++)
    for (int v = 0; v < V; v++) wasm_v128_store(dw + r * N + 4 * v, s[r][v]);
}

static inline __attribute__((always_inline)) void filter_rows(const float **ind, int T, int c, const float *dy, int N, int p0, int p1,
                                                              int fresh, float *dw, const int R) {
  int o = 0;
  for (; o + 8 <= N; o += 8) filter_tile(ind, T, c, dy + o, N, p0, p1, fresh, dw + o, R, 2);
  if (o + 4 <= N) {
    filter_tile(ind, T, c, dy + o, N, p0, p1, fresh, dw + o, R, 1);
    o += 4;
  }
  for (; o < N; o++)
    for (int r = 0; r < R; r++) {
      float s = fresh ? 0.0f : dw[r * N + o];
      for (int p = p0; p < p1; p++) s += ind[p * T][c + r] * dy[p * N + o];
      dw[r * N + o] = s;
    }
}

/* Bytes of dy and input rows one block of positions reads: kept in cache while every tap and channel tile runs over it. */
#define FILTER_BLOCK_BYTES (128 * 1024)

/*
 * dw[(t*C + c)*N + o] = sum over p < P, in order, of ind[p*T + t][c] · dy[p*N + o]: the filter
 * gradient ([KH, KW, CI, CO]) from the forward pass's indirection table over x and dy [P, CO].
 * The positions go in blocks, each block's sums continuing the last's: the same order as one pass.
 * With `accumulate`, the first block continues the sums already in dw too (the caller's chunks of
 * batch items, each with its own indirection table, in order).
 */
__attribute__((export_name("conv_filter_grad")))
void conv_filter_grad(const float **ind, int P, int T, int C, const float *dy, int N, float *dw, int accumulate) {
  int block = FILTER_BLOCK_BYTES / (4 * (N + T * C));
  if (block < 16) block = 16;
  if (P == 0 && !accumulate)
    for (int i = 0; i < T * C * N; i++) dw[i] = 0.0f;
  for (int p0 = 0; p0 < P; p0 += block) {
    const int p1 = p0 + block < P ? p0 + block : P;
    const int fresh = p0 == 0 && !accumulate;
    for (int t = 0; t < T; t++) {
      float *out = dw + t * C * N;
      int c = 0;
      for (; c + MR <= C; c += MR) filter_rows(ind + t, T, c, dy, N, p0, p1, fresh, out + c * N, MR);
#if MR > 4
      if (c + 4 <= C) {
        filter_rows(ind + t, T, c, dy, N, p0, p1, fresh, out + c * N, 4);
        c += 4;
      }
#endif
      if (c + 2 <= C) {
        filter_rows(ind + t, T, c, dy, N, p0, p1, fresh, out + c * N, 2);
        c += 2;
      }
      for (; c < C; c++) filter_rows(ind + t, T, c, dy, N, p0, p1, fresh, out + c * N, 1);
    }
  }
}

/*
 * Winograd's F(2, 3) for convolutions of 3 taps along the width, stride 1 (the keyword model's
 * temporal layers, and their input gradients): two outputs from four inputs with 4 products
 * where the direct sum takes 6, 1.5x fewer multiply-adds. Per row of the input and tile i of two
 * outputs (inputs d0..d3 at 2i - pl .. 2i + 3 - pl, zeros outside the row):
 *
 *   u = (d0 - d2, d1 + d2, d2 - d1, d1 - d3)              per input channel  (winograd_input)
 *   G = (g0, ((g0 + g1) + g2) · 0.5, ((g0 - g1) + g2) · 0.5, g2)  per filter entry (winograd_filter)
 *   M_e = U_e · G_e, e = 0..3                              conv_gather_gemm over U_e's rows
 *   y0 = (M0 + M1) + M2, y1 = (M1 - M2) - M3               then + bias, activation  (winograd_output)
 *
 * Every step in float32 in this order; conv2d.ts' twin computes the same.
 */

/* U[e][tile][c], tiles row by row, ceil(OW / 2) a row; x: rows of W by C. */
__attribute__((export_name("winograd_input")))
void winograd_input(const float *x, float *U, int rows, int W, int C, int OW, int pl) {
  const int tpr = (OW + 1) / 2;
  const int plane = rows * tpr * C;
  for (int r = 0; r < rows; r++) {
    const float *row = x + r * W * C;
    for (int i = 0; i < tpr; i++) {
      const int at = 2 * i - pl;
      const float *d[4];
      int inside[4];
      for (int q = 0; q < 4; q++) {
        inside[q] = at + q >= 0 && at + q < W;
        d[q] = row + (at + q) * C;
      }
      float *u = U + (r * tpr + i) * C;
      int c = 0;
      for (; c + 4 <= C; c += 4) {
        v128_t v[4];
        for (int q = 0; q < 4; q++) v[q] = inside[q] ? wasm_v128_load(d[q] + c) : wasm_f32x4_splat(0.0f);
        wasm_v128_store(u + c, wasm_f32x4_sub(v[0], v[2]));
        wasm_v128_store(u + plane + c, wasm_f32x4_add(v[1], v[2]));
        wasm_v128_store(u + 2 * plane + c, wasm_f32x4_sub(v[2], v[1]));
        wasm_v128_store(u + 3 * plane + c, wasm_f32x4_sub(v[1], v[3]));
      }
      for (; c < C; c++) {
        float v[4];
        for (int q = 0; q < 4; q++) v[q] = inside[q] ? d[q][c] : 0.0f;
        u[c] = v[0] - v[2];
        u[plane + c] = v[1] + v[2];
        u[2 * plane + c] = v[2] - v[1];
        u[3 * plane + c] = v[1] - v[3];
      }
    }
  }
}

/* G[e][c][o] from a filter of 3 taps g[k][c][o] (C x N each), its taps reversed when `flip`. */
__attribute__((export_name("winograd_filter")))
void winograd_filter(const float *g, float *G, int C, int N, int flip) {
  const int n = C * N;
  const float *first = flip ? g + 2 * n : g, *last = flip ? g : g + 2 * n;
  for (int j = 0; j < n; j++) {
    const float g0 = first[j], g1 = g[n + j], g2 = last[j];
    G[j] = g0;
    G[n + j] = ((g0 + g1) + g2) * 0.5f;
    G[2 * n + j] = ((g0 - g1) + g2) * 0.5f;
    G[3 * n + j] = g2;
  }
}

/* y rows of OW by N from M[e][tile][o]: y0 = (M0 + M1) + M2, y1 = (M1 - M2) - M3, + bias, activation. */
__attribute__((export_name("winograd_output")))
void winograd_output(const float *M, float *y, const float *bias, int act, int rows, int OW, int N) {
  const int tpr = (OW + 1) / 2;
  const int plane = rows * tpr * N;
  for (int r = 0; r < rows; r++)
    for (int i = 0; i < tpr; i++) {
      const float *m = M + (r * tpr + i) * N;
      float *y0 = y + (r * OW + 2 * i) * N;
      const int two = 2 * i + 1 < OW;
      int o = 0;
      for (; o + 4 <= N; o += 4) {
        const v128_t m0 = wasm_v128_load(m + o), m1 = wasm_v128_load(m + plane + o);
        const v128_t m2 = wasm_v128_load(m + 2 * plane + o), m3 = wasm_v128_load(m + 3 * plane + o);
        v128_t a = wasm_f32x4_add(wasm_f32x4_add(m0, m1), m2);
        v128_t b = wasm_f32x4_sub(wasm_f32x4_sub(m1, m2), m3);
        if (bias) {
          const v128_t bv = wasm_v128_load(bias + o);
          a = wasm_f32x4_add(a, bv);
          b = wasm_f32x4_add(b, bv);
        }
        wasm_v128_store(y0 + o, activate(a, act));
        if (two) wasm_v128_store(y0 + N + o, activate(b, act));
      }
      for (; o < N; o++) {
        float a = (m[o] + m[plane + o]) + m[2 * plane + o];
        float b = (m[plane + o] - m[2 * plane + o]) - m[3 * plane + o];
        if (bias) {
          a += bias[o];
          b += bias[o];
        }
        y0[o] = activate1(a, act);
        if (two) y0[N + o] = activate1(b, act);
      }
    }
}

/*
 * The filter gradient by F(2, 3): per tile of two outputs, dy's transform
 * V = (dy0, dy0 + dy1, dy0 - dy1, -dy1) (dy1 = 0 past an odd row's end), W_e = sum over tiles of
 * U_e ⊗ V_e (conv_filter_grad over U_e's rows, in order of tiles), then
 * dw0 = (W0 + W1 · 0.5) + W2 · 0.5, dw1 = W1 · 0.5 - W2 · 0.5, dw2 = (W1 · 0.5 + W2 · 0.5) + W3.
 */
__attribute__((export_name("winograd_dy")))
void winograd_dy(const float *dy, float *V, int rows, int OW, int N) {
  const int tpr = (OW + 1) / 2;
  const int plane = rows * tpr * N;
  for (int r = 0; r < rows; r++)
    for (int i = 0; i < tpr; i++) {
      const float *d0 = dy + (r * OW + 2 * i) * N;
      const int two = 2 * i + 1 < OW;
      float *v = V + (r * tpr + i) * N;
      int o = 0;
      for (; o + 4 <= N; o += 4) {
        const v128_t a = wasm_v128_load(d0 + o), b = two ? wasm_v128_load(d0 + N + o) : wasm_f32x4_splat(0.0f);
        wasm_v128_store(v + o, a);
        wasm_v128_store(v + plane + o, wasm_f32x4_add(a, b));
        wasm_v128_store(v + 2 * plane + o, wasm_f32x4_sub(a, b));
        wasm_v128_store(v + 3 * plane + o, wasm_f32x4_neg(b));
      }
      for (; o < N; o++) {
        const float a = d0[o], b = two ? d0[N + o] : 0.0f;
        v[o] = a;
        v[plane + o] = a + b;
        v[2 * plane + o] = a - b;
        v[3 * plane + o] = -b;
      }
    }
}

__attribute__((export_name("winograd_filter_grad")))
void winograd_filter_grad(const float *Wt, float *dw, int n) {
  for (int j = 0; j < n; j++) {
    const float w0 = Wt[j], w1 = Wt[n + j] * 0.5f, w2 = Wt[2 * n + j] * 0.5f, w3 = Wt[3 * n + j];
    dw[j] = (w0 + w1) + w2;
    dw[n + j] = w1 - w2;
    dw[2 * n + j] = (w1 + w2) + w3;
  }
}

/*
 * Winograd's F(4, 3) (points 0, ±1, ±2): four outputs from six inputs with 6 products where the
 * direct sum takes 12. The same steps as F(2, 3) above with these transforms, in this order:
 *
 *   u0 = (d0·4 - d2·5) + d4        u1 = (d3 + d4) - (d1 + d2)·4   u2 = (d4 - d3) + (d1 - d2)·4
 *   u3 = (d4 - d2) + (d3 - d1)·2   u4 = (d4 - d2) - (d3 - d1)·2   u5 = (d1·4 - d3·5) + d5
 *   G0 = g0·¼  G1 = ((g0 + g1) + g2)·(-⅙)  G2 = ((g0 - g1) + g2)·(-⅙)
 *   G3 = ((g0 + g1·2) + g2·4)·(1/24)  G4 = ((g0 - g1·2) + g2·4)·(1/24)  G5 = g2
 *   y0 = (m0 + (m1 + m2)) + (m3 + m4)   y1 = (m1 - m2) + (m3 - m4)·2
 *   y2 = (m1 + m2) + (m3 + m4)·4        y3 = ((m1 - m2) + (m3 - m4)·8) + m5
 */
static inline __attribute__((always_inline)) void w4_in(const v128_t *d, v128_t *u) {
  const v128_t four = wasm_f32x4_splat(4.0f), five = wasm_f32x4_splat(5.0f), two = wasm_f32x4_splat(2.0f);
  u[0] = wasm_f32x4_add(wasm_f32x4_sub(wasm_f32x4_mul(d[0], four), wasm_f32x4_mul(d[2], five)), d[4]);
  u[1] = wasm_f32x4_sub(wasm_f32x4_add(d[3], d[4]), wasm_f32x4_mul(wasm_f32x4_add(d[1], d[2]), four));
  u[2] = wasm_f32x4_add(wasm_f32x4_sub(d[4], d[3]), wasm_f32x4_mul(wasm_f32x4_sub(d[1], d[2]), four));
  u[3] = wasm_f32x4_add(wasm_f32x4_sub(d[4], d[2]), wasm_f32x4_mul(wasm_f32x4_sub(d[3], d[1]), two));
  u[4] = wasm_f32x4_sub(wasm_f32x4_sub(d[4], d[2]), wasm_f32x4_mul(wasm_f32x4_sub(d[3], d[1]), two));
  u[5] = wasm_f32x4_add(wasm_f32x4_sub(wasm_f32x4_mul(d[1], four), wasm_f32x4_mul(d[3], five)), d[5]);
}

static inline void w4_in1(const float *d, float *u) {
  u[0] = (d[0] * 4.0f - d[2] * 5.0f) + d[4];
  u[1] = (d[3] + d[4]) - (d[1] + d[2]) * 4.0f;
  u[2] = (d[4] - d[3]) + (d[1] - d[2]) * 4.0f;
  u[3] = (d[4] - d[2]) + (d[3] - d[1]) * 2.0f;
  u[4] = (d[4] - d[2]) - (d[3] - d[1]) * 2.0f;
  u[5] = (d[1] * 4.0f - d[3] * 5.0f) + d[5];
}

/* U[e][tile][c] (e < 6), ceil(OW / 4) tiles a row. */
__attribute__((export_name("winograd4_input")))
void winograd4_input(const float *x, float *U, int rows, int W, int C, int OW, int pl) {
  const int tpr = (OW + 3) / 4;
  const int plane = rows * tpr * C;
  for (int r = 0; r < rows; r++) {
    const float *row = x + r * W * C;
    for (int i = 0; i < tpr; i++) {
      const int at = 4 * i - pl;
      int inside[6];
      for (int q = 0; q < 6; q++) inside[q] = at + q >= 0 && at + q < W;
      float *u = U + (r * tpr + i) * C;
      int c = 0;
      for (; c + 4 <= C; c += 4) {
        v128_t d[6], v[6];
        for (int q = 0; q < 6; q++) d[q] = inside[q] ? wasm_v128_load(row + (at + q) * C + c) : wasm_f32x4_splat(0.0f);
        w4_in(d, v);
        for (int e = 0; e < 6; e++) wasm_v128_store(u + e * plane + c, v[e]);
      }
      for (; c < C; c++) {
        float d[6], v[6];
        for (int q = 0; q < 6; q++) d[q] = inside[q] ? row[(at + q) * C + c] : 0.0f;
        w4_in1(d, v);
        for (int e = 0; e < 6; e++) u[e * plane + c] = v[e];
      }
    }
  }
}

__attribute__((export_name("winograd4_filter")))
void winograd4_filter(const float *g, float *G, int C, int N, int flip) {
  const int n = C * N;
  const float *first = flip ? g + 2 * n : g, *last = flip ? g : g + 2 * n;
  for (int j = 0; j < n; j++) {
    const float g0 = first[j], g1 = g[n + j], g2 = last[j];
    G[j] = g0 * 0.25f;
    G[n + j] = ((g0 + g1) + g2) * (-1.0f / 6.0f);
    G[2 * n + j] = ((g0 - g1) + g2) * (-1.0f / 6.0f);
    G[3 * n + j] = ((g0 + g1 * 2.0f) + g2 * 4.0f) * (1.0f / 24.0f);
    G[4 * n + j] = ((g0 - g1 * 2.0f) + g2 * 4.0f) * (1.0f / 24.0f);
    G[5 * n + j] = g2;
  }
}

__attribute__((export_name("winograd4_output")))
void winograd4_output(const float *M, float *y, const float *bias, int act, int rows, int OW, int N) {
  const int tpr = (OW + 3) / 4;
  const int plane = rows * tpr * N;
  for (int r = 0; r < rows; r++)
    for (int i = 0; i < tpr; i++) {
      const float *m = M + (r * tpr + i) * N;
      float *y0 = y + (r * OW + 4 * i) * N;
      const int valid = OW - 4 * i < 4 ? OW - 4 * i : 4;
      int o = 0;
      for (; o + 4 <= N; o += 4) {
        v128_t mm[6], out[4];
        for (int e = 0; e < 6; e++) mm[e] = wasm_v128_load(m + e * plane + o);
        const v128_t s12 = wasm_f32x4_add(mm[1], mm[2]), d12 = wasm_f32x4_sub(mm[1], mm[2]);
        const v128_t s34 = wasm_f32x4_add(mm[3], mm[4]), d34 = wasm_f32x4_sub(mm[3], mm[4]);
        out[0] = wasm_f32x4_add(wasm_f32x4_add(mm[0], s12), s34);
        out[1] = wasm_f32x4_add(d12, wasm_f32x4_mul(d34, wasm_f32x4_splat(2.0f)));
        out[2] = wasm_f32x4_add(s12, wasm_f32x4_mul(s34, wasm_f32x4_splat(4.0f)));
        out[3] = wasm_f32x4_add(wasm_f32x4_add(d12, wasm_f32x4_mul(d34, wasm_f32x4_splat(8.0f))), mm[5]);
        if (bias) {
          const v128_t bv = wasm_v128_load(bias + o);
          for (int q = 0; q < 4; q++) out[q] = wasm_f32x4_add(out[q], bv);
        }
        /* Constant indices only (a variable one would put out[] on a stack the module does not have). */
        wasm_v128_store(y0 + o, activate(out[0], act));
        if (valid > 1) wasm_v128_store(y0 + N + o, activate(out[1], act));
        if (valid > 2) wasm_v128_store(y0 + 2 * N + o, activate(out[2], act));
        if (valid > 3) wasm_v128_store(y0 + 3 * N + o, activate(out[3], act));
      }
      for (; o < N; o++) {
        float mm[6], out[4];
        for (int e = 0; e < 6; e++) mm[e] = m[e * plane + o];
        const float s12 = mm[1] + mm[2], d12 = mm[1] - mm[2], s34 = mm[3] + mm[4], d34 = mm[3] - mm[4];
        out[0] = (mm[0] + s12) + s34;
        out[1] = d12 + d34 * 2.0f;
        out[2] = s12 + s34 * 4.0f;
        out[3] = (d12 + d34 * 8.0f) + mm[5];
        if (bias)
          for (int q = 0; q < 4; q++) out[q] += bias[o];
        y0[o] = activate1(out[0], act);
        if (valid > 1) y0[N + o] = activate1(out[1], act);
        if (valid > 2) y0[2 * N + o] = activate1(out[2], act);
        if (valid > 3) y0[3 * N + o] = activate1(out[3], act);
      }
    }
}

/*
 * F(4, 3)'s filter gradient: V = (dy0, (dy0 + dy1) + (dy2 + dy3), (dy0 - dy1) + (dy2 - dy3),
 * (dy0 + dy1·2) + (dy2·4 + dy3·8), (dy0 - dy1·2) + (dy2·4 - dy3·8), dy3) (zeros past a row's end);
 * then dw0 = (W0·¼ - (W1 + W2)·⅙) + (W3 + W4)·(1/24), dw1 = (W2 - W1)·⅙ + (W3 - W4)·(1/12),
 * dw2 = ((W3 + W4)·⅙ - (W1 + W2)·⅙) + W5.
 */
__attribute__((export_name("winograd4_dy")))
void winograd4_dy(const float *dy, float *V, int rows, int OW, int N) {
  const int tpr = (OW + 3) / 4;
  const int plane = rows * tpr * N;
  for (int r = 0; r < rows; r++)
    for (int i = 0; i < tpr; i++) {
      const float *d0 = dy + (r * OW + 4 * i) * N;
      const int valid = OW - 4 * i < 4 ? OW - 4 * i : 4;
      float *v = V + (r * tpr + i) * N;
      int o = 0;
      for (; o + 4 <= N; o += 4) {
        v128_t d[4];
        for (int q = 0; q < 4; q++) d[q] = q < valid ? wasm_v128_load(d0 + q * N + o) : wasm_f32x4_splat(0.0f);
        const v128_t two = wasm_f32x4_splat(2.0f), four = wasm_f32x4_splat(4.0f), eight = wasm_f32x4_splat(8.0f);
        wasm_v128_store(v + o, d[0]);
        wasm_v128_store(v + plane + o, wasm_f32x4_add(wasm_f32x4_add(d[0], d[1]), wasm_f32x4_add(d[2], d[3])));
        wasm_v128_store(v + 2 * plane + o, wasm_f32x4_add(wasm_f32x4_sub(d[0], d[1]), wasm_f32x4_sub(d[2], d[3])));
        wasm_v128_store(v + 3 * plane + o, wasm_f32x4_add(wasm_f32x4_add(d[0], wasm_f32x4_mul(d[1], two)), wasm_f32x4_add(wasm_f32x4_mul(d[2], four), wasm_f32x4_mul(d[3], eight))));
        wasm_v128_store(v + 4 * plane + o, wasm_f32x4_add(wasm_f32x4_sub(d[0], wasm_f32x4_mul(d[1], two)), wasm_f32x4_sub(wasm_f32x4_mul(d[2], four), wasm_f32x4_mul(d[3], eight))));
        wasm_v128_store(v + 5 * plane + o, d[3]);
      }
      for (; o < N; o++) {
        float d[4];
        for (int q = 0; q < 4; q++) d[q] = q < valid ? d0[q * N + o] : 0.0f;
        v[o] = d[0];
        v[plane + o] = (d[0] + d[1]) + (d[2] + d[3]);
        v[2 * plane + o] = (d[0] - d[1]) + (d[2] - d[3]);
        v[3 * plane + o] = (d[0] + d[1] * 2.0f) + (d[2] * 4.0f + d[3] * 8.0f);
        v[4 * plane + o] = (d[0] - d[1] * 2.0f) + (d[2] * 4.0f - d[3] * 8.0f);
        v[5 * plane + o] = d[3];
      }
    }
}

__attribute__((export_name("winograd4_filter_grad")))
void winograd4_filter_grad(const float *Wt, float *dw, int n) {
  for (int j = 0; j < n; j++) {
    const float w0 = Wt[j], w1 = Wt[n + j], w2 = Wt[2 * n + j], w3 = Wt[3 * n + j], w4 = Wt[4 * n + j], w5 = Wt[5 * n + j];
    const float s12 = (w1 + w2) * (1.0f / 6.0f), s34 = w3 + w4;
    dw[j] = (w0 * 0.25f - s12) + s34 * (1.0f / 24.0f);
    dw[n + j] = (w2 - w1) * (1.0f / 6.0f) + (w3 - w4) * (1.0f / 12.0f);
    dw[2 * n + j] = (s34 * (1.0f / 6.0f) - s12) + w5;
  }
}

/*
 * 1 when all n floats at p are finite, else 0 (an infinity or NaN among them): v - v is 0 for a
 * finite v and NaN otherwise, and a NaN stays in the sum. Winograd's transforms add and subtract
 * inputs before the products, so an infinity there turns into NaN (Inf - Inf) where the direct sum
 * keeps it, and reaches outputs that never read it: such calls take the direct sums (conv2d.ts).
 */
__attribute__((export_name("all_finite")))
int all_finite(const float *p, int n) {
  /* Four sums side by side: one would wait on each add's latency. */
  v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0, a2 = a0, a3 = a0;
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    const v128_t v0 = wasm_v128_load(p + i), v1 = wasm_v128_load(p + i + 4), v2 = wasm_v128_load(p + i + 8), v3 = wasm_v128_load(p + i + 12);
    a0 = wasm_f32x4_add(a0, wasm_f32x4_sub(v0, v0));
    a1 = wasm_f32x4_add(a1, wasm_f32x4_sub(v1, v1));
    a2 = wasm_f32x4_add(a2, wasm_f32x4_sub(v2, v2));
    a3 = wasm_f32x4_add(a3, wasm_f32x4_sub(v3, v3));
  }
  for (; i + 4 <= n; i += 4) {
    const v128_t v = wasm_v128_load(p + i);
    a0 = wasm_f32x4_add(a0, wasm_f32x4_sub(v, v));
  }
  const v128_t acc = wasm_f32x4_add(wasm_f32x4_add(a0, a1), wasm_f32x4_add(a2, a3));
  float s = wasm_f32x4_extract_lane(acc, 0) + wasm_f32x4_extract_lane(acc, 1) + wasm_f32x4_extract_lane(acc, 2) + wasm_f32x4_extract_lane(acc, 3);
  for (; i < n; i++) s += p[i] - p[i];
  return s == s;
}
