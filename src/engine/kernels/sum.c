/*
 * Sum over every axis but the last (C channels, P = every other position) in WebAssembly SIMD, on
 * the tfjs wasm backend's memory: out[c] = sum over p of x[p,c], adding p = 0, 1, ... in float32 as
 * tfjs' Sum does after moving the channel axis first (four channels a vector keeps each channel's
 * additions in that order), so sum.ts's kernel gives the stock kernel's bits without its transpose.
 *
 * Built by scripts/build-train-kernels.ts. No stack, no globals.
 */
#include <wasm_simd128.h>

__attribute__((export_name("channel_sum")))
void channel_sum(const float *dy, float *out, int P, int C) {
  for (int c = 0; c < C; c++) out[c] = 0.0f;
  for (int p = 0; p < P; p++) {
    const float *d = dy + p * C;
    int c = 0;
    for (; c + 4 <= C; c += 4) wasm_v128_store(out + c, wasm_f32x4_add(wasm_v128_load(out + c), wasm_v128_load(d + c)));
    for (; c < C; c++) out[c] += d[c];
  }
}
