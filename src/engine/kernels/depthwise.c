/*
 * Depthwise conv2d gradients (NHWC, dilation 1) in WebAssembly SIMD, run on the tfjs wasm
 * backend's own memory: every pointer is a byte offset of a tensor the backend allocated.
 * Built by scripts/build-train-kernels.ts; loaded by train-kernels-simd.ts.
 *
 * Both kernels give the bits of their JavaScript twins (depthwise-conv2d-backprop-*.ts): each
 * product of two float32 is exact in float64, every sum is accumulated in float64 in the twin's
 * order, and rounded to float32 once. So a payload's bytes do not depend on which of the two ran.
 *
 * No stack, no globals, no data: the module owns no memory of its own (a test checks it).
 */
#include <wasm_simd128.h>

/* acc[0..3] += (double)a[0..3] * (double)b[0..3]; acc is float64, a and b float32 lanes. */
static inline void madd4(double *acc, v128_t a, v128_t b) {
  v128_t a_hi = wasm_i32x4_shuffle(a, a, 2, 3, 0, 1);
  v128_t b_hi = wasm_i32x4_shuffle(b, b, 2, 3, 0, 1);
  v128_t lo = wasm_f64x2_mul(wasm_f64x2_promote_low_f32x4(a), wasm_f64x2_promote_low_f32x4(b));
  v128_t hi = wasm_f64x2_mul(wasm_f64x2_promote_low_f32x4(a_hi), wasm_f64x2_promote_low_f32x4(b_hi));
  wasm_v128_store(acc, wasm_f64x2_add(wasm_v128_load(acc), lo));
  wasm_v128_store(acc + 2, wasm_f64x2_add(wasm_v128_load(acc + 2), hi));
}

/* Two float64x2 rounded to four float32 lanes. */
static inline v128_t demote4(v128_t lo, v128_t hi) {
  return wasm_i32x4_shuffle(wasm_f32x4_demote_f64x2_zero(lo), wasm_f32x4_demote_f64x2_zero(hi), 0, 1, 4, 5);
}

/*
 * dw[kh][kw][c*M+m] = sum over (b, oh, ow) in that order of x[b][ih][iw][c] * dy[b][oh][ow][c*M+m].
 * acc: KH*KW*C*M float64 of scratch.
 */
__attribute__((export_name("depthwise_filter_grad")))
void depthwise_filter_grad(const float *x, const float *dy, double *acc, float *dw,
                           int B, int H, int W, int C, int OH, int OW, int KH, int KW,
                           int sh, int sw, int pt, int pl, int M) {
  const int CM = C * M;
  const int n = KH * KW * CM;
  for (int i = 0; i < n; i++) acc[i] = 0.0;
  for (int b = 0; b < B; b++) {
    for (int oh = 0; oh < OH; oh++) {
      for (int ow = 0; ow < OW; ow++) {
        const float *dyp = dy + ((b * OH + oh) * OW + ow) * CM;
        for (int kh = 0; kh < KH; kh++) {
          const int ih = oh * sh + kh - pt;
          if (ih < 0 || ih >= H) continue;
          for (int kw = 0; kw < KW; kw++) {
            const int iw = ow * sw + kw - pl;
            if (iw < 0 || iw >= W) continue;
            const float *xp = x + ((b * H + ih) * W + iw) * C;
            double *ap = acc + (kh * KW + kw) * CM;
            if (M == 1) {
              int c = 0;
              for (; c + 4 <= C; c += 4) madd4(ap + c, wasm_v128_load(xp + c), wasm_v128_load(dyp + c));
              for (; c < C; c++) ap[c] += (double)xp[c] * (double)dyp[c];
            } else {
              for (int c = 0; c < C; c++) {
                const double xv = (double)xp[c];
                const v128_t xv2 = wasm_f64x2_splat(xv);
                double *am = ap + c * M;
                const float *dm = dyp + c * M;
                int m = 0;
                for (; m + 2 <= M; m += 2) {
                  v128_t d = wasm_f64x2_promote_low_f32x4(wasm_v128_load64_zero(dm + m));
                  wasm_v128_store(am + m, wasm_f64x2_add(wasm_v128_load(am + m), wasm_f64x2_mul(xv2, d)));
                }
                for (; m < M; m++) am[m] += xv * (double)dm[m];
              }
            }
          }
        }
      }
    }
  }
  int i = 0;
  for (; i + 4 <= n; i += 4) wasm_v128_store(dw + i, demote4(wasm_v128_load(acc + i), wasm_v128_load(acc + i + 2)));
  for (; i < n; i++) dw[i] = (float)acc[i];
}

/*
 * dx[b][ih][iw][c] = sum over m of dy[b][oh][ow][c*M+m] * w[kh][kw][c*M+m], summed over the
 * (oh, ow) that reach (ih, iw), in increasing (oh, ow): the order in which the JavaScript twin's
 * scatter loop adds them. Written as a gather, so no scratch is needed.
 */
__attribute__((export_name("depthwise_input_grad")))
void depthwise_input_grad(const float *dy, const float *w, float *dx,
                          int B, int H, int W, int C, int OH, int OW, int KH, int KW,
                          int sh, int sw, int pt, int pl, int M) {
  const int CM = C * M;
  for (int b = 0; b < B; b++) {
    for (int ih = 0; ih < H; ih++) {
      /* oh*sh + kh - pt == ih with 0 <= kh < KH and 0 <= oh < OH. */
      const int th = ih + pt;
      const int oh0 = th - KH + 1 <= 0 ? 0 : (th - KH + 1 + sh - 1) / sh;
      int oh1 = th / sh;
      if (oh1 > OH - 1) oh1 = OH - 1;
      for (int iw = 0; iw < W; iw++) {
        const int tw = iw + pl;
        const int ow0 = tw - KW + 1 <= 0 ? 0 : (tw - KW + 1 + sw - 1) / sw;
        int ow1 = tw / sw;
        if (ow1 > OW - 1) ow1 = OW - 1;
        float *dxp = dx + ((b * H + ih) * W + iw) * C;
        if (M == 1) {
          int c = 0;
          for (; c + 4 <= C; c += 4) {
            v128_t lo = wasm_f64x2_splat(0.0);
            v128_t hi = wasm_f64x2_splat(0.0);
            for (int oh = oh0; oh <= oh1; oh++) {
              const int kh = th - oh * sh;
              for (int ow = ow0; ow <= ow1; ow++) {
                const int kw = tw - ow * sw;
                const v128_t d = wasm_v128_load(dy + ((b * OH + oh) * OW + ow) * C + c);
                const v128_t f = wasm_v128_load(w + (kh * KW + kw) * C + c);
                const v128_t d_hi = wasm_i32x4_shuffle(d, d, 2, 3, 0, 1);
                const v128_t f_hi = wasm_i32x4_shuffle(f, f, 2, 3, 0, 1);
                lo = wasm_f64x2_add(lo, wasm_f64x2_mul(wasm_f64x2_promote_low_f32x4(d), wasm_f64x2_promote_low_f32x4(f)));
                hi = wasm_f64x2_add(hi, wasm_f64x2_mul(wasm_f64x2_promote_low_f32x4(d_hi), wasm_f64x2_promote_low_f32x4(f_hi)));
              }
            }
            wasm_v128_store(dxp + c, demote4(lo, hi));
          }
          for (; c < C; c++) {
            double acc = 0.0;
            for (int oh = oh0; oh <= oh1; oh++) {
              const int kh = th - oh * sh;
              for (int ow = ow0; ow <= ow1; ow++) {
                const int kw = tw - ow * sw;
                acc += (double)dy[((b * OH + oh) * OW + ow) * C + c] * (double)w[(kh * KW + kw) * C + c];
              }
            }
            dxp[c] = (float)acc;
          }
        } else {
          for (int c = 0; c < C; c++) {
            double acc = 0.0;
            for (int oh = oh0; oh <= oh1; oh++) {
              const int kh = th - oh * sh;
              for (int ow = ow0; ow <= ow1; ow++) {
                const int kw = tw - ow * sw;
                const float *dm = dy + ((b * OH + oh) * OW + ow) * CM + c * M;
                const float *wm = w + (kh * KW + kw) * CM + c * M;
                double s = 0.0;
                for (int m = 0; m < M; m++) s += (double)dm[m] * (double)wm[m];
                acc += s;
              }
            }
            dxp[c] = (float)acc;
          }
        }
      }
    }
  }
}
