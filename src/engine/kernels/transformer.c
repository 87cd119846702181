/*
 * The fused transformer kernels of transformer.ts in WebAssembly SIMD, on the tfjs wasm backend's
 * memory (the wasm and native backends): the exact GELU and its gradient, four lanes at a time,
 * and a LayerNorm's normalisation and its gradient, row by row. transformer.ts holds the
 * JavaScript twins (float64 inside) the tests compare these with:
 *
 *   gelu        y  = 0.5 x (1 + erf(x / sqrt 2))
 *   gelu_grad   dx = dy (0.5 (1 + erf(x / sqrt 2)) + x exp(-x^2 / 2) / sqrt(2 pi))
 *   layer_norm  n  = (x - mean) * rstd, rstd = 1 / sqrt(var + eps), per row of `width`
 *   layer_norm_grad  dx = rstd (dy - mean(dy) - n mean(dy n)) per row
 *
 * erf is Eigen's float rational function over [-4, 4] (no exponential); exp is Cephes' expf
 * (range reduction by ln 2, a degree-6 polynomial, 2^n put in the exponent bits), within 2 ulp.
 * Built by scripts/build-train-kernels.ts. No stack, no globals, no data.
 */
#include <wasm_simd128.h>

#define S(v) wasm_f32x4_splat(v)

static inline v128_t erf4(v128_t x) {
  const v128_t v = wasm_f32x4_min(wasm_f32x4_max(x, S(-4.0f)), S(4.0f));
  const v128_t x2 = wasm_f32x4_mul(v, v);
  v128_t p = wasm_f32x4_add(wasm_f32x4_mul(x2, S(-2.72614225801306e-10f)), S(2.77068142495902e-8f));
  p = wasm_f32x4_add(wasm_f32x4_mul(x2, p), S(-2.10102402082508e-6f));
  p = wasm_f32x4_add(wasm_f32x4_mul(x2, p), S(-5.69250639462346e-5f));
  p = wasm_f32x4_add(wasm_f32x4_mul(x2, p), S(-7.34990630326855e-4f));
  p = wasm_f32x4_add(wasm_f32x4_mul(x2, p), S(-2.95459980854025e-3f));
  p = wasm_f32x4_add(wasm_f32x4_mul(x2, p), S(-1.60960333262415e-2f));
  v128_t q = wasm_f32x4_add(wasm_f32x4_mul(x2, S(-1.45660718464996e-5f)), S(-2.13374055278905e-4f));
  q = wasm_f32x4_add(wasm_f32x4_mul(x2, q), S(-1.68282697438203e-3f));
  q = wasm_f32x4_add(wasm_f32x4_mul(x2, q), S(-7.37332916720468e-3f));
  q = wasm_f32x4_add(wasm_f32x4_mul(x2, q), S(-1.42647390514189e-2f));
  return wasm_f32x4_div(wasm_f32x4_mul(v, p), q);
}

static inline v128_t exp4(v128_t x) {
  x = wasm_f32x4_min(wasm_f32x4_max(x, S(-87.3f)), S(88.3f));
  const v128_t n = wasm_f32x4_nearest(wasm_f32x4_mul(x, S(1.44269504088896341f)));
  v128_t r = wasm_f32x4_sub(x, wasm_f32x4_mul(n, S(0.693359375f)));
  r = wasm_f32x4_sub(r, wasm_f32x4_mul(n, S(-2.12194440e-4f)));
  v128_t p = S(1.9875691500e-4f);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), S(1.3981999507e-3f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), S(8.3334519073e-3f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), S(4.1665795894e-2f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), S(1.6666665459e-1f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), S(5.0000001201e-1f));
  const v128_t y = wasm_f32x4_add(wasm_f32x4_add(wasm_f32x4_mul(wasm_f32x4_mul(p, r), r), r), S(1.0f));
  const v128_t two_n = wasm_i32x4_shl(wasm_i32x4_add(wasm_i32x4_trunc_sat_f32x4(n), wasm_i32x4_splat(127)), 23);
  return wasm_f32x4_mul(y, two_n);
}

static inline v128_t gelu4(v128_t x) {
  const v128_t e = erf4(wasm_f32x4_mul(x, S(0.70710678118654752f)));
  return wasm_f32x4_mul(wasm_f32x4_mul(S(0.5f), x), wasm_f32x4_add(S(1.0f), e));
}

static inline v128_t gelu_grad4(v128_t dy, v128_t x) {
  const v128_t cdf = wasm_f32x4_mul(S(0.5f), wasm_f32x4_add(S(1.0f), erf4(wasm_f32x4_mul(x, S(0.70710678118654752f)))));
  const v128_t pdf = wasm_f32x4_mul(exp4(wasm_f32x4_mul(S(-0.5f), wasm_f32x4_mul(x, x))), S(0.39894228040143268f));
  return wasm_f32x4_mul(dy, wasm_f32x4_add(cdf, wasm_f32x4_mul(x, pdf)));
}

__attribute__((export_name("gelu")))
void gelu(const float *x, float *y, int n) {
  int i = 0;
  for (; i + 4 <= n; i += 4) wasm_v128_store(y + i, gelu4(wasm_v128_load(x + i)));
  /* The tail one element at a time, in lane 0 (no stack for a partial vector). */
  for (; i < n; i++) y[i] = wasm_f32x4_extract_lane(gelu4(wasm_f32x4_splat(x[i])), 0);
}

__attribute__((export_name("gelu_grad")))
void gelu_grad(const float *dy, const float *x, float *dx, int n) {
  int i = 0;
  for (; i + 4 <= n; i += 4) wasm_v128_store(dx + i, gelu_grad4(wasm_v128_load(dy + i), wasm_v128_load(x + i)));
  for (; i < n; i++) dx[i] = wasm_f32x4_extract_lane(gelu_grad4(wasm_f32x4_splat(dy[i]), wasm_f32x4_splat(x[i])), 0);
}

/* The sum of a row's lanes: four running sums, then across. */
static inline float row_sum(v128_t acc) {
  return (wasm_f32x4_extract_lane(acc, 0) + wasm_f32x4_extract_lane(acc, 1)) + (wasm_f32x4_extract_lane(acc, 2) + wasm_f32x4_extract_lane(acc, 3));
}

static inline float sqrt1(float v) {
  return wasm_f32x4_extract_lane(wasm_f32x4_sqrt(wasm_f32x4_splat(v)), 0);
}

__attribute__((export_name("layer_norm")))
void layer_norm(const float *x, float *out, float *rstd, int rows, int width, float eps) {
  for (int r = 0; r < rows; r++) {
    const float *xr = x + (long)r * width;
    float *nr = out + (long)r * width;
    v128_t acc = S(0.0f);
    int i = 0;
    for (; i + 4 <= width; i += 4) acc = wasm_f32x4_add(acc, wasm_v128_load(xr + i));
    float sum = row_sum(acc);
    for (; i < width; i++) sum += xr[i];
    const float mean = sum / (float)width;
    const v128_t m = S(mean);
    acc = S(0.0f);
    i = 0;
    for (; i + 4 <= width; i += 4) {
      const v128_t d = wasm_f32x4_sub(wasm_v128_load(xr + i), m);
      acc = wasm_f32x4_add(acc, wasm_f32x4_mul(d, d));
    }
    float sq = row_sum(acc);
    for (; i < width; i++) sq += (xr[i] - mean) * (xr[i] - mean);
    const float s = 1.0f / sqrt1(sq / (float)width + eps);
    rstd[r] = s;
    const v128_t sv = S(s);
    i = 0;
    for (; i + 4 <= width; i += 4) wasm_v128_store(nr + i, wasm_f32x4_mul(wasm_f32x4_sub(wasm_v128_load(xr + i), m), sv));
    for (; i < width; i++) nr[i] = (xr[i] - mean) * s;
  }
}

__attribute__((export_name("layer_norm_grad")))
void layer_norm_grad(const float *dy, const float *n, const float *rstd, float *dx, int rows, int width) {
  for (int r = 0; r < rows; r++) {
    const float *g = dy + (long)r * width;
    const float *nr = n + (long)r * width;
    float *out = dx + (long)r * width;
    v128_t a4 = S(0.0f);
    v128_t b4 = S(0.0f);
    int i = 0;
    for (; i + 4 <= width; i += 4) {
      const v128_t gv = wasm_v128_load(g + i);
      a4 = wasm_f32x4_add(a4, gv);
      b4 = wasm_f32x4_add(b4, wasm_f32x4_mul(gv, wasm_v128_load(nr + i)));
    }
    float a = row_sum(a4);
    float b = row_sum(b4);
    for (; i < width; i++) {
      a += g[i];
      b += g[i] * nr[i];
    }
    a /= (float)width;
    b /= (float)width;
    const float s = rstd[r];
    const v128_t av = S(a), bv = S(b), sv = S(s);
    i = 0;
    for (; i + 4 <= width; i += 4) {
      const v128_t v = wasm_f32x4_sub(wasm_f32x4_sub(wasm_v128_load(g + i), av), wasm_f32x4_mul(wasm_v128_load(nr + i), bv));
      wasm_v128_store(out + i, wasm_f32x4_mul(sv, v));
    }
    for (; i < width; i++) out[i] = s * (g[i] - a - nr[i] * b);
  }
}
