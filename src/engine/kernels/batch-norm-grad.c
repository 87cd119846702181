/*
 * The gradients of a batch norm over the last axis (C channels, P = every other position) as one
 * pass each in WebAssembly SIMD, on the tfjs wasm backend's memory. With r = 1/sqrt(variance + eps)
 * per channel (computed by tfjs, C values), each gives the bits of the formula batch-norm-grad.ts
 * writes with tfjs ops, where tfjs runs two to three elementwise kernels, a transpose and a sum:
 *
 *   bn_input_grad   dx[p,c] = (dy[p,c] * r[c]) * scale[c]
 *   bn_scale_grad   out[c]  = sum over p of dy[p,c] * ((x[p,c] - mean[c]) * r[c])
 *
 * The sum adds p = 0, 1, ... in float32, as tfjs' Sum does after moving the channel axis first;
 * four channels a vector keeps each channel's additions in that order. (doffset, the sum of dy,
 * is tfjs' Sum, which sum.c computes in one pass.) Built by
 * scripts/build-train-kernels.ts (-ffp-contract=off: no fused multiply-add). No stack, no globals.
 */
#include <wasm_simd128.h>

__attribute__((export_name("bn_input_grad")))
void bn_input_grad(const float *dy, const float *r, const float *scale, float *dx, int P, int C) {
  for (int p = 0; p < P; p++) {
    const float *d = dy + p * C;
    float *o = dx + p * C;
    int c = 0;
    for (; c + 4 <= C; c += 4) {
      const v128_t t = wasm_f32x4_mul(wasm_v128_load(d + c), wasm_v128_load(r + c));
      wasm_v128_store(o + c, wasm_f32x4_mul(t, wasm_v128_load(scale + c)));
    }
    for (; c < C; c++) o[c] = (d[c] * r[c]) * scale[c];
  }
}

/* out[c] = 0 for every channel, then the sums: out is the accumulator (C floats). */
static void zero(float *out, int C) {
  for (int c = 0; c < C; c++) out[c] = 0.0f;
}

__attribute__((export_name("bn_scale_grad")))
void bn_scale_grad(const float *dy, const float *x, const float *mean, const float *r, float *out, int P, int C) {
  zero(out, C);
  for (int p = 0; p < P; p++) {
    const float *d = dy + p * C;
    const float *v = x + p * C;
    int c = 0;
    for (; c + 4 <= C; c += 4) {
      const v128_t centred = wasm_f32x4_sub(wasm_v128_load(v + c), wasm_v128_load(mean + c));
      const v128_t term = wasm_f32x4_mul(wasm_v128_load(d + c), wasm_f32x4_mul(centred, wasm_v128_load(r + c)));
      wasm_v128_store(out + c, wasm_f32x4_add(wasm_v128_load(out + c), term));
    }
    for (; c < C; c++) out[c] += d[c] * ((v[c] - mean[c]) * r[c]);
  }
}
