/*
 * The gradients of ReLU, ReLU6 and clipByValue as one pass each in WebAssembly SIMD, on the tfjs
 * wasm backend's memory, instead of tfjs' chains of 3 to 5 elementwise kernels. Each gives the
 * bits of tfjs' own formula (activation-grad.ts holds them and the JavaScript twins):
 *
 *   Relu         dy * step(x)                      step(x) = x > 0 ? 1 : 0, NaN for NaN
 *   Relu6        dy * (step(x) * (x <= 6))
 *   ClipByValue  (x >= lo && x <= hi) ? dy : 0
 *
 * Built by scripts/build-train-kernels.ts. No stack, no globals, no data.
 */
#include <wasm_simd128.h>

/* 1 where `keep`, 0 elsewhere, NaN where x is NaN (tfjs' step of NaN is NaN). */
static inline v128_t step_mask(v128_t x, v128_t keep) {
  const v128_t one = wasm_f32x4_splat(1.0f);
  const v128_t m = wasm_v128_and(keep, one);
  return wasm_v128_bitselect(m, x, wasm_f32x4_eq(x, x));
}

static inline float step_scalar(float x, int keep) {
  if (x != x) return x;
  return keep ? 1.0f : 0.0f;
}

__attribute__((export_name("relu_grad")))
void relu_grad(const float *dy, const float *x, float *dx, int n) {
  const v128_t zero = wasm_f32x4_splat(0.0f);
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    const v128_t xv = wasm_v128_load(x + i);
    const v128_t m = step_mask(xv, wasm_f32x4_gt(xv, zero));
    wasm_v128_store(dx + i, wasm_f32x4_mul(wasm_v128_load(dy + i), m));
  }
  for (; i < n; i++) dx[i] = dy[i] * step_scalar(x[i], x[i] > 0.0f);
}

__attribute__((export_name("relu6_grad")))
void relu6_grad(const float *dy, const float *x, float *dx, int n) {
  const v128_t zero = wasm_f32x4_splat(0.0f);
  const v128_t six = wasm_f32x4_splat(6.0f);
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    const v128_t xv = wasm_v128_load(x + i);
    const v128_t keep = wasm_v128_and(wasm_f32x4_gt(xv, zero), wasm_f32x4_le(xv, six));
    wasm_v128_store(dx + i, wasm_f32x4_mul(wasm_v128_load(dy + i), step_mask(xv, keep)));
  }
  for (; i < n; i++) dx[i] = dy[i] * step_scalar(x[i], x[i] > 0.0f && x[i] <= 6.0f);
}

__attribute__((export_name("clip_grad")))
void clip_grad(const float *dy, const float *x, float *dx, int n, float lo, float hi) {
  const v128_t lov = wasm_f32x4_splat(lo);
  const v128_t hiv = wasm_f32x4_splat(hi);
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    const v128_t xv = wasm_v128_load(x + i);
    const v128_t keep = wasm_v128_and(wasm_f32x4_ge(xv, lov), wasm_f32x4_le(xv, hiv));
    wasm_v128_store(dx + i, wasm_v128_and(wasm_v128_load(dy + i), keep));
  }
  for (; i < n; i++) dx[i] = (x[i] >= lo && x[i] <= hi) ? dy[i] : 0.0f;
}
