/*
 * A chain of element-wise ops as one kernel: a small program (written by the compiled step's
 * fusion pass, src/engine/compiled/fuse.ts; its format in elementwise.ts) run over the output in
 * blocks, each instruction one SIMD loop over the block, so the chain's intermediate values stay
 * in a few kilobytes of scratch instead of a tensor each, and the output is written once.
 *
 * Operands are entries of a table of (kind, byte pointer) pairs: kind 1 streams with the block
 * (the output, an input of the output's size: its pointer moves by the block's start), kind 0 is
 * a fixed block (a register of the chain, or a scalar or a per-channel vector already repeated
 * over one block by the caller). Instructions are five ints: op, destination, a, b, c.
 *
 * Every op computes what tfjs' wasm kernel computes, in float32, so a fused chain gives the bits
 * of the kernels it replaces (the JavaScript twin in elementwise.ts gives the same bits).
 *
 * Built by scripts/build-train-kernels.ts. No stack, no globals, no data.
 */
#include <wasm_simd128.h>

enum {
  OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MAX, OP_MIN, OP_SQDIFF, OP_NEG, OP_ABS, OP_SQUARE,
  OP_SQRT, OP_RSQRT, OP_RECIP, OP_RELU, OP_RELU6, OP_STEP, OP_CLIP,
};

static inline float *operand(const int *table, int k, int start) {
  float *p = (float *)table[2 * k + 1];
  return table[2 * k] ? p + start : p;
}

/* tfjs' Maximum and Minimum on wasm: a < b ? b : a and b < a ? b : a (f32x4.pmax / pmin). */
static inline float pmax(float a, float b) { return a < b ? b : a; }
static inline float pmin(float a, float b) { return b < a ? b : a; }
static inline float sign_clear(float x) { return __builtin_signbit(x) ? 0.0f : x; }

__attribute__((export_name("elementwise")))
void elementwise(const int *prog, int count, const int *table, int n, int block) {
  const v128_t zero = wasm_f32x4_splat(0.0f);
  const v128_t one = wasm_f32x4_splat(1.0f);
  const v128_t six = wasm_f32x4_splat(6.0f);
  for (int start = 0; start < n; start += block) {
    const int len = n - start < block ? n - start : block;
    for (int p = 0; p < count; p++) {
      const int *ins = prog + 5 * p;
      const int op = ins[0];
      float *d = operand(table, ins[1], start);
      const float *a = operand(table, ins[2], start);
      const float *b = operand(table, ins[3], start);
      const float *c = operand(table, ins[4], start);
      int i = 0;
/* Sixteen values an iteration (four independent vectors), then four, then one by one. */
#define BODY(J, VEC)                                              \
  {                                                               \
    const v128_t x = wasm_v128_load(a + (J));                     \
    const v128_t y = wasm_v128_load(b + (J));                     \
    (void)y;                                                      \
    wasm_v128_store(d + (J), (VEC));                              \
  }
#define LOOP(VEC, SCALAR)                                         \
  for (; i + 16 <= len; i += 16) {                                \
    BODY(i, VEC) BODY(i + 4, VEC) BODY(i + 8, VEC) BODY(i + 12, VEC) \
  }                                                               \
  for (; i + 4 <= len; i += 4) BODY(i, VEC)                       \
  for (; i < len; i++) {                                          \
    const float x = a[i];                                         \
    const float y = b[i];                                         \
    (void)y;                                                      \
    d[i] = (SCALAR);                                              \
  }                                                               \
  break;
      switch (op) {
        case OP_ADD: LOOP(wasm_f32x4_add(x, y), x + y)
        case OP_SUB: LOOP(wasm_f32x4_sub(x, y), x - y)
        case OP_MUL: LOOP(wasm_f32x4_mul(x, y), x * y)
        case OP_DIV: LOOP(wasm_f32x4_div(x, y), x / y)
        case OP_MAX: LOOP(wasm_f32x4_pmax(x, y), pmax(x, y))
        case OP_MIN: LOOP(wasm_f32x4_pmin(x, y), pmin(x, y))
        case OP_SQDIFF: LOOP(wasm_f32x4_mul(wasm_f32x4_sub(x, y), wasm_f32x4_sub(x, y)), (x - y) * (x - y))
        case OP_NEG: LOOP(wasm_f32x4_neg(x), -x)
        case OP_ABS: LOOP(wasm_f32x4_abs(x), __builtin_fabsf(x))
        case OP_SQUARE: LOOP(wasm_f32x4_mul(x, x), x * x)
        case OP_SQRT: LOOP(wasm_f32x4_sqrt(x), __builtin_sqrtf(x))
        case OP_RSQRT: LOOP(wasm_f32x4_div(one, wasm_f32x4_sqrt(x)), 1.0f / __builtin_sqrtf(x))
        case OP_RECIP: LOOP(wasm_f32x4_div(one, x), 1.0f / x)
        /* Relu as tfjs' wasm kernel (XNNPACK) computes it: 0 wherever the sign bit is set (-0, a
         * negative NaN), x elsewhere (a positive NaN stays NaN). */
        case OP_RELU: LOOP(wasm_v128_andnot(x, wasm_i32x4_shr(x, 31)), sign_clear(x))
        /* Relu6: NaN and -0 become 0, then at most 6. */
        case OP_RELU6: LOOP(wasm_f32x4_pmin(six, wasm_v128_and(x, wasm_f32x4_gt(x, zero))), pmin(6.0f, x > 0.0f ? x : 0.0f))
        /* Step: 1 above 0, alpha (b) elsewhere, NaN for NaN. */
        case OP_STEP:
          LOOP(wasm_v128_bitselect(x, wasm_v128_bitselect(one, y, wasm_f32x4_gt(x, zero)), wasm_f32x4_ne(x, x)),
               x != x ? x : (x > 0.0f ? 1.0f : y))
        /* ClipByValue: at least lo (b; NaN becomes lo), then at most hi (c). */
        case OP_CLIP:
          for (; i + 4 <= len; i += 4) {
            const v128_t t = wasm_f32x4_pmax(wasm_v128_load(b + i), wasm_v128_load(a + i));
            wasm_v128_store(d + i, wasm_f32x4_pmin(wasm_v128_load(c + i), t));
          }
          for (; i < len; i++) d[i] = pmin(c[i], pmax(b[i], a[i]));
          break;
        default: __builtin_trap();
      }
#undef LOOP
#undef BODY
    }
  }
}
