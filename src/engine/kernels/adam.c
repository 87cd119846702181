/*
 * One Adam step for one variable as a single pass in WebAssembly SIMD, on the tfjs wasm backend's
 * memory, instead of tfjs' fourteen elementwise kernels (and their temporaries) per variable. It
 * gives the bits of tfjs' AdamOptimizer, whose float32 operations it repeats in their order
 * (adam.ts holds the formula and the JavaScript twin):
 *
 *   m' = m * b1 + g * (1 - b1)            v' = v * b2 + (g * g) * (1 - b2)
 *   x' = (m' / c1) / (sqrt(v' / c2) + eps) * (-lr) + x      c1 = 1 - b1^t, c2 = 1 - b2^t
 *
 * Every product, quotient, sum and square root is rounded to float32 on its own (no fused
 * multiply-add: -ffp-contract=off). mo and vo may be m and v (the moments updated in place): each
 * element is read before it is written. Built by scripts/build-train-kernels.ts. No stack, no globals.
 */
#include <wasm_simd128.h>

__attribute__((export_name("adam_step")))
void adam_step(const float *x, const float *g, const float *m, const float *v, float *xo, float *mo, float *vo, int n,
               float b1, float nb1, float b2, float nb2, float c1, float c2, float eps, float nlr) {
  const v128_t vb1 = wasm_f32x4_splat(b1), vnb1 = wasm_f32x4_splat(nb1);
  const v128_t vb2 = wasm_f32x4_splat(b2), vnb2 = wasm_f32x4_splat(nb2);
  const v128_t vc1 = wasm_f32x4_splat(c1), vc2 = wasm_f32x4_splat(c2);
  const v128_t veps = wasm_f32x4_splat(eps), vnlr = wasm_f32x4_splat(nlr);
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    const v128_t gv = wasm_v128_load(g + i);
    const v128_t mn = wasm_f32x4_add(wasm_f32x4_mul(wasm_v128_load(m + i), vb1), wasm_f32x4_mul(gv, vnb1));
    const v128_t vn = wasm_f32x4_add(wasm_f32x4_mul(wasm_v128_load(v + i), vb2), wasm_f32x4_mul(wasm_f32x4_mul(gv, gv), vnb2));
    const v128_t den = wasm_f32x4_add(wasm_f32x4_sqrt(wasm_f32x4_div(vn, vc2)), veps);
    const v128_t step = wasm_f32x4_mul(wasm_f32x4_div(wasm_f32x4_div(mn, vc1), den), vnlr);
    wasm_v128_store(mo + i, mn);
    wasm_v128_store(vo + i, vn);
    wasm_v128_store(xo + i, wasm_f32x4_add(step, wasm_v128_load(x + i)));
  }
  for (; i < n; i++) {
    const float gi = g[i];
    const float mn = m[i] * b1 + gi * nb1;
    const float vn = v[i] * b2 + (gi * gi) * nb2;
    const float den = __builtin_sqrtf(vn / c2) + eps;
    mo[i] = mn;
    vo[i] = vn;
    xo[i] = ((mn / c1) / den) * nlr + x[i];
  }
}
