/*
 * MaxPoolGrad (NHWC) in WebAssembly SIMD, on the tfjs wasm backend's memory: each output window
 * finds its maximum once, four channels a vector, and adds dy there. It gives the bits of the
 * JavaScript twin in max-pool-grad.ts: ties go to the first maximum in row-major window order, a
 * NaN or -Infinity never wins (`v > best` is false for them), padding is outside every window,
 * and each input's gradient is summed over the windows in their order.
 *
 * Built by scripts/build-train-kernels.ts. No stack, no globals.
 */
#include <wasm_simd128.h>

__attribute__((export_name("max_pool_grad")))
void max_pool_grad(const float *x, const float *dy, float *dx,
                   int B, int H, int W, int C, int OH, int OW, int KH, int KW,
                   int sh, int sw, int pt, int pl) {
  const int n = B * H * W * C;
  for (int i = 0; i < n; i++) dx[i] = 0.0f;
  const v128_t lanes = wasm_i32x4_make(0, 1, 2, 3);
  int dy_at = 0;
  for (int b = 0; b < B; b++) {
    const int x_batch = b * H * W * C;
    for (int oh = 0; oh < OH; oh++) {
      const int ih0 = oh * sh - pt;
      const int ih_lo = ih0 > 0 ? ih0 : 0;
      const int ih_hi = ih0 + KH < H ? ih0 + KH : H;
      for (int ow = 0; ow < OW; ow++, dy_at += C) {
        const int iw0 = ow * sw - pl;
        const int iw_lo = iw0 > 0 ? iw0 : 0;
        const int iw_hi = iw0 + KW < W ? iw0 + KW : W;
        int c = 0;
        for (; c + 4 <= C; c += 4) {
          v128_t best = wasm_f32x4_splat(-__builtin_inff());
          v128_t at = wasm_i32x4_splat(-1);
          for (int ih = ih_lo; ih < ih_hi; ih++) {
            for (int iw = iw_lo; iw < iw_hi; iw++) {
              const int base = x_batch + (ih * W + iw) * C + c;
              const v128_t v = wasm_v128_load(x + base);
              const v128_t wins = wasm_f32x4_gt(v, best);
              best = wasm_v128_bitselect(v, best, wins);
              at = wasm_v128_bitselect(wasm_i32x4_add(wasm_i32x4_splat(base), lanes), at, wins);
            }
          }
          const int a0 = wasm_i32x4_extract_lane(at, 0), a1 = wasm_i32x4_extract_lane(at, 1);
          const int a2 = wasm_i32x4_extract_lane(at, 2), a3 = wasm_i32x4_extract_lane(at, 3);
          if (a0 >= 0) dx[a0] += dy[dy_at + c];
          if (a1 >= 0) dx[a1] += dy[dy_at + c + 1];
          if (a2 >= 0) dx[a2] += dy[dy_at + c + 2];
          if (a3 >= 0) dx[a3] += dy[dy_at + c + 3];
        }
        for (; c < C; c++) {
          float best = -__builtin_inff();
          int at = -1;
          for (int ih = ih_lo; ih < ih_hi; ih++) {
            for (int iw = iw_lo; iw < iw_hi; iw++) {
              const int i = x_batch + (ih * W + iw) * C + c;
              if (x[i] > best) {
                best = x[i];
                at = i;
              }
            }
          }
          if (at >= 0) dx[at] += dy[dy_at + c];
        }
      }
    }
  }
}
