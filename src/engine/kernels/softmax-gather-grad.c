/*
 * Two gradients a transformer's step runs as chains of tfjs ops, in WebAssembly SIMD on the tfjs
 * wasm backend's memory (softmax-grad.ts and gather-grad.ts hold their JavaScript twins):
 *
 *   softmax_grad  dx = dy y - (sum over the row of dy y) y, per row of `width` (the last axis):
 *                 tfjs' Multiply, Sum, Multiply and Sub in one pass; the products rounded to
 *                 float32 and summed in order, as tfjs' Sum does, so the result has their bits.
 *   gather_grad   dx[ids[i]] += dy[i] for rows of `inner` values: the gradient of a Gather along
 *                 the first axis (an embedding's), which tfjs runs as Reshape, Transpose,
 *                 UnsortedSegmentSum and Transpose; sums in float64 (`acc`, rows x inner doubles
 *                 of scratch), added in order of i and rounded once, as unsorted-segment-sum.ts
 *                 does, so the result has its bits. Ids outside [0, rows) are dropped.
 *
 * Built by scripts/build-train-kernels.ts. No stack, no globals.
 */
#include <wasm_simd128.h>

__attribute__((export_name("softmax_grad")))
void softmax_grad(const float *dy, const float *y, float *dx, int rows, int width) {
  for (int r = 0; r < rows; r++) {
    const float *g = dy + (long)r * width;
    const float *p = y + (long)r * width;
    float *out = dx + (long)r * width;
    int i = 0;
    for (; i + 4 <= width; i += 4) wasm_v128_store(out + i, wasm_f32x4_mul(wasm_v128_load(g + i), wasm_v128_load(p + i)));
    for (; i < width; i++) out[i] = g[i] * p[i];
    float s = 0.0f;
    for (i = 0; i < width; i++) s += out[i];
    const v128_t sv = wasm_f32x4_splat(s);
    i = 0;
    for (; i + 4 <= width; i += 4) wasm_v128_store(out + i, wasm_f32x4_sub(wasm_v128_load(out + i), wasm_f32x4_mul(sv, wasm_v128_load(p + i))));
    for (; i < width; i++) out[i] = out[i] - s * p[i];
  }
}

__attribute__((export_name("gather_grad")))
void gather_grad(const float *dy, const int *ids, double *acc, float *dx, int n, int inner, int rows) {
  const long total = (long)rows * inner;
  for (long k = 0; k < total; k++) acc[k] = 0.0;
  for (int i = 0; i < n; i++) {
    const int s = ids[i];
    if (s < 0 || s >= rows) continue;
    const float *d = dy + (long)i * inner;
    double *a = acc + (long)s * inner;
    int j = 0;
    for (; j + 4 <= inner; j += 4) {
      const v128_t v = wasm_v128_load(d + j);
      wasm_v128_store(a + j, wasm_f64x2_add(wasm_v128_load(a + j), wasm_f64x2_promote_low_f32x4(v)));
      wasm_v128_store(a + j + 2, wasm_f64x2_add(wasm_v128_load(a + j + 2), wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(v, v, 2, 3, 0, 1))));
    }
    for (; j < inner; j++) a[j] += (double)d[j];
  }
  long k = 0;
  for (; k + 4 <= total; k += 4) {
    const v128_t lo = wasm_f32x4_demote_f64x2_zero(wasm_v128_load(acc + k));
    const v128_t hi = wasm_f32x4_demote_f64x2_zero(wasm_v128_load(acc + k + 2));
    wasm_v128_store(dx + k, wasm_i32x4_shuffle(lo, hi, 0, 1, 4, 5));
  }
  for (; k < total; k++) dx[k] = (float)acc[k];
}
