/*
 * The native backend's element-wise, row and reduction kernels (issue 63), on Float32Array views
 * of tfjs-backend-wasm's heap like blas.c's products, split over the addon's pool (pool.c):
 *
 *   geluForward, geluGrad       the exact GELU and its gradient (transformer.c's formulas)
 *   layerNorm, layerNormGrad    a LayerNorm's normalisation and its gradient, per row
 *   softmax, softmaxGrad        Softmax over the last axis and its gradient, per row
 *   reduceSum                   Sum and Mean over adjacent axes (a bias's gradient, a mean pool)
 *   activationGrad              Relu's, Relu6's and ClipByValue's gradients (activation-grad.c's)
 *   elementwise                 a fused chain's program (src/engine/kernels/elementwise.ts)
 *
 * Every element (or row, or channel of a sum) is computed alone, with the float32 operations of
 * the WebAssembly kernel it stands in for, in the same order (compiled with -ffp-contract=off, so
 * no fused multiply-add): the same bits as the wasm backend's kernel whatever the thread count or
 * the vector width. Softmax is the exception: tfjs computes it with XNNPACK, whose exponential is
 * not ours; softmaxJs (src/engine/kernels/native/elementwise.ts) is its twin, bit for bit.
 *
 * broadcast.c holds the binary ops with broadcasting and Transpose; elementwise-common.h what both
 * share. How many parts a kernel is cut into comes from its shape alone (parts_for); which
 * thread runs a part changes nothing. Small tensors stay on the calling thread: waking the pool costs more.
 */
#include "elementwise-common.h"
#include <math.h>
#include <stdlib.h>

/*
 * ---- GELU (transformer.c's erf4, exp4, gelu4 and gelu_grad4) ----
 * Eight lanes at a time in GCC's vector extensions (two SSE vectors or one AVX vector, as the
 * clone built for the CPU), each lane the float32 operations of one WebAssembly lane.
 */
static inline vf erf8(vf x) {
  const vf v = wmin(wmax(x, -4.0f), 4.0f);
  const vf x2 = v * v;
  vf p = x2 * SPLAT(-2.72614225801306e-10f) + SPLAT(2.77068142495902e-8f);
  p = x2 * p + SPLAT(-2.10102402082508e-6f);
  p = x2 * p + SPLAT(-5.69250639462346e-5f);
  p = x2 * p + SPLAT(-7.34990630326855e-4f);
  p = x2 * p + SPLAT(-2.95459980854025e-3f);
  p = x2 * p + SPLAT(-1.60960333262415e-2f);
  vf q = x2 * SPLAT(-1.45660718464996e-5f) + SPLAT(-2.13374055278905e-4f);
  q = x2 * q + SPLAT(-1.68282697438203e-3f);
  q = x2 * q + SPLAT(-7.37332916720468e-3f);
  q = x2 * q + SPLAT(-1.42647390514189e-2f);
  return (v * p) / q;
}

/*
 * Cephes' expf as transformer.c's exp4: clamped to [-87.3, 88.3], n = x log2(e) rounded to the
 * nearest even integer (adding and taking away 1.5 * 2^23 rounds so for |n| < 2^22, as f32x4.nearest),
 * 2^n put in the exponent bits.
 */
static inline vf exp8(vf x) {
  x = wmin(wmax(x, -87.3f), 88.3f);
  const vf n = (x * SPLAT(1.44269504088896341f) + SPLAT(12582912.0f)) - SPLAT(12582912.0f);
  vf r = x - n * SPLAT(0.693359375f);
  r = r - n * SPLAT(-2.12194440e-4f);
  vf p = SPLAT(1.9875691500e-4f);
  p = p * r + SPLAT(1.3981999507e-3f);
  p = p * r + SPLAT(8.3334519073e-3f);
  p = p * r + SPLAT(4.1665795894e-2f);
  p = p * r + SPLAT(1.6666665459e-1f);
  p = p * r + SPLAT(5.0000001201e-1f);
  const vf y = ((p * r) * r + r) + SPLAT(1.0f);
  const vi ni = __builtin_convertvector(sel(n == n, n, SPLAT(0.0f)), vi);
  return y * (vf)((ni + 127) << 23);
}

static inline vf gelu8(vf x) {
  const vf e = erf8(x * SPLAT(0.70710678118654752f));
  return (SPLAT(0.5f) * x) * (SPLAT(1.0f) + e);
}

static inline vf gelu_grad8(vf dy, vf x) {
  const vf cdf = SPLAT(0.5f) * (SPLAT(1.0f) + erf8(x * SPLAT(0.70710678118654752f)));
  const vf pdf = exp8(SPLAT(-0.5f) * (x * x)) * SPLAT(0.39894228040143268f);
  return dy * (cdf + x * pdf);
}

typedef struct {
  const float *a, *b;
  float *out;
  int64_t n;
} Map;

VECTOR_CLONES static void gelu_part(void *arg, int i, int parts, int thread) {
  (void)thread;
  const Map *m = (const Map *)arg;
  int64_t lo, hi, j;
  part_range(m->n, i, parts, &lo, &hi);
  for (j = lo; j + LANES <= hi; j += LANES) store8(m->out + j, gelu8(load8(m->a + j)));
  if (j < hi) store_tail(m->out + j, gelu8(load_tail(m->a + j, hi - j)), hi - j);
}

VECTOR_CLONES static void gelu_grad_part(void *arg, int i, int parts, int thread) {
  (void)thread;
  const Map *m = (const Map *)arg;
  int64_t lo, hi, j;
  part_range(m->n, i, parts, &lo, &hi);
  for (j = lo; j + LANES <= hi; j += LANES) store8(m->out + j, gelu_grad8(load8(m->a + j), load8(m->b + j)));
  if (j < hi) store_tail(m->out + j, gelu_grad8(load_tail(m->a + j, hi - j), load_tail(m->b + j, hi - j)), hi - j);
}

/* Element operations a GELU value costs, about (for parts_for). */
#define GELU_COST 24.0

/* geluForward(x, y): y = 0.5 x (1 + erf(x / sqrt 2)). */
static napi_value gelu_forward(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  Map m = {0};
  size_t lx, ly;
  if (!args_of(env, info, argv, 2, "geluForward") || !f32_arg(env, argv[0], (float **)&m.a, &lx, "geluForward x") ||
      !f32_arg(env, argv[1], &m.out, &ly, "geluForward y") || !holds(env, ly, lx, "geluForward y")) {
    return NULL;
  }
  m.n = (int64_t)lx;
  run(env, gelu_part, &m, parts_for(m.n, GELU_COST));
  return NULL;
}

/* geluGrad(dy, x, dx): dx = dy (0.5 (1 + erf(x / sqrt 2)) + x exp(-x^2 / 2) / sqrt(2 pi)). */
static napi_value gelu_grad(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  Map m = {0};
  size_t ld, lx, lo;
  if (!args_of(env, info, argv, 3, "geluGrad") || !f32_arg(env, argv[0], (float **)&m.a, &ld, "geluGrad dy") ||
      !f32_arg(env, argv[1], (float **)&m.b, &lx, "geluGrad x") || !f32_arg(env, argv[2], &m.out, &lo, "geluGrad dx") ||
      !holds(env, ld, lx, "geluGrad dy") || !holds(env, lo, lx, "geluGrad dx")) {
    return NULL;
  }
  m.n = (int64_t)lx;
  run(env, gelu_grad_part, &m, parts_for(m.n, 2 * GELU_COST));
  return NULL;
}

/* ---- rows: LayerNorm, Softmax and their gradients ---- */

typedef struct {
  const float *a, *b, *c;
  float *out, *out2;
  int64_t rows;
  int32_t width;
  float eps;
} Rows;

/* transformer.c's four running sums: v128 lanes, added across as row_sum does, (l0 + l1) + (l2 + l3). */
typedef float v4 __attribute__((vector_size(16), aligned(4)));
static inline v4 load4(const float *p) { v4 v; memcpy(&v, p, sizeof v); return v; }
static inline float lanes(v4 l) { return (l[0] + l[1]) + (l[2] + l[3]); }

VECTOR_CLONES static void layer_norm_part(void *arg, int part, int parts, int thread) {
  (void)thread;
  const Rows *R = (const Rows *)arg;
  const int32_t width = R->width;
  int64_t lo, hi;
  part_range(R->rows, part, parts, &lo, &hi);
  for (int64_t r = lo; r < hi; r++) {
    const float *xr = R->a + r * width;
    float *nr = R->out + r * width;
    v4 acc = {0, 0, 0, 0};
    int32_t i = 0;
    for (; i + 4 <= width; i += 4) acc += load4(xr + i);
    float sum = lanes(acc);
    for (; i < width; i++) sum += xr[i];
    const float mean = sum / (float)width;
    const v4 m4 = {mean, mean, mean, mean};
    acc = (v4){0, 0, 0, 0};
    for (i = 0; i + 4 <= width; i += 4) {
      const v4 d = load4(xr + i) - m4;
      acc += d * d;
    }
    float sq = lanes(acc);
    for (; i < width; i++) sq += (xr[i] - mean) * (xr[i] - mean);
    const float s = 1.0f / __builtin_sqrtf(sq / (float)width + R->eps);
    R->out2[r] = s;
    for (i = 0; i + LANES <= width; i += LANES) store8(nr + i, (load8(xr + i) - SPLAT(mean)) * SPLAT(s));
    for (; i < width; i++) nr[i] = (xr[i] - mean) * s;
  }
}

VECTOR_CLONES static void layer_norm_grad_part(void *arg, int part, int parts, int thread) {
  (void)thread;
  const Rows *R = (const Rows *)arg;
  const int32_t width = R->width;
  int64_t lo, hi;
  part_range(R->rows, part, parts, &lo, &hi);
  for (int64_t r = lo; r < hi; r++) {
    const float *g = R->a + r * width, *nr = R->b + r * width;
    float *out = R->out + r * width;
    v4 a4 = {0, 0, 0, 0}, b4 = {0, 0, 0, 0};
    int32_t i = 0;
    for (; i + 4 <= width; i += 4) {
      const v4 gv = load4(g + i);
      a4 += gv;
      b4 += gv * load4(nr + i);
    }
    float a = lanes(a4), b = lanes(b4);
    for (; i < width; i++) {
      a += g[i];
      b += g[i] * nr[i];
    }
    a /= (float)width;
    b /= (float)width;
    const float s = R->c[r];
    for (i = 0; i + LANES <= width; i += LANES) store8(out + i, SPLAT(s) * ((load8(g + i) - SPLAT(a)) - load8(nr + i) * SPLAT(b)));
    for (; i < width; i++) out[i] = s * ((g[i] - a) - nr[i] * b);
  }
}

/*
 * Softmax of a row: e = exp(x - max) (exp8, 0 below -87.3 as an exponential underflows), each
 * divided by the row's sum of e, added in eight float64 lanes (element i to lane i % 8, the lanes
 * then added pairwise, the tail in order: fixed by the width alone, whatever the vector width)
 * and rounded once. A NaN anywhere makes the row NaN, a +Inf too (Inf - Inf), as tfjs' kernel
 * gives; the max skips NaN (they make the row NaN through their own e).
 */
typedef double vd4 __attribute__((vector_size(32), aligned(8)));

/* Rows a softmax pass takes together: each phase runs over all of them, so one row's chain of
 * dependent operations (max, then exponentials, then the sum, then the division) overlaps the
 * others' instead of waiting on itself (the attention's rows are 32 wide: latency, not work). */
#define SOFTMAX_ROWS 8

VECTOR_CLONES static void softmax_part(void *arg, int part, int parts, int thread) {
  (void)thread;
  const Rows *R = (const Rows *)arg;
  const int32_t width = R->width, body = width & ~7;
  int64_t lo, hi;
  part_range(R->rows, part, parts, &lo, &hi);
  for (int64_t r0 = lo; r0 < hi; r0 += SOFTMAX_ROWS) {
    const int rows = hi - r0 < SOFTMAX_ROWS ? (int)(hi - r0) : SOFTMAX_ROWS;
    float ms[SOFTMAX_ROWS];
    float ss[SOFTMAX_ROWS];
    /* Lane l keeps the max of elements i = l mod 8 in order (a NaN never replaces it), as one scalar per lane would. */
    for (int k = 0; k < rows; k++) {
      const float *xr = R->a + (r0 + k) * width;
      vf m8 = SPLAT(-INFINITY);
      for (int32_t i = 0; i < body; i += 8) {
        const vf x = load8(xr + i);
        m8 = sel(x > m8, x, m8);
      }
      float m = -INFINITY;
      for (int l = 0; l < 8; l++) m = m8[l] > m ? m8[l] : m;
      for (int32_t i = body; i < width; i++) m = xr[i] > m ? xr[i] : m;
      ms[k] = m;
    }
    /* e = exp(x - max), and its float64 sum in eight lanes (element i to lane i mod 8) in the same pass. */
    for (int k = 0; k < rows; k++) {
      const float *xr = R->a + (r0 + k) * width;
      float *yr = R->out + (r0 + k) * width;
      const float m = ms[k];
      vd4 lo4 = {0, 0, 0, 0}, hi4 = {0, 0, 0, 0};
      int32_t i = 0;
      for (; i < body; i += 8) {
        const vf d = load8(xr + i) - SPLAT(m);
        const vf e = sel(d < SPLAT(-87.3f), SPLAT(0.0f), exp8(d));
        store8(yr + i, e);
        lo4 += __builtin_convertvector(__builtin_shufflevector(e, e, 0, 1, 2, 3), vd4);
        hi4 += __builtin_convertvector(__builtin_shufflevector(e, e, 4, 5, 6, 7), vd4);
      }
      if (i < width) {
        const vf d = load_tail(xr + i, width - i) - SPLAT(m);
        store_tail(yr + i, sel(d < SPLAT(-87.3f), SPLAT(0.0f), exp8(d)), width - i);
      }
      double sd = ((lo4[0] + lo4[1]) + (lo4[2] + lo4[3])) + ((hi4[0] + hi4[1]) + (hi4[2] + hi4[3]));
      for (i = body; i < width; i++) sd += (double)yr[i];
      ss[k] = (float)sd;
    }
    for (int k = 0; k < rows; k++) {
      float *yr = R->out + (r0 + k) * width;
      const float s = ss[k];
      int32_t i = 0;
      for (; i < body; i += 8) store8(yr + i, load8(yr + i) / SPLAT(s));
      for (; i < width; i++) yr[i] = yr[i] / s;
    }
  }
}

/* softmax-gather-grad.c's softmax_grad: dx = dy y - s y, s the row's sum of dy y in order. */
VECTOR_CLONES static void softmax_grad_part(void *arg, int part, int parts, int thread) {
  (void)thread;
  const Rows *R = (const Rows *)arg;
  const int32_t width = R->width;
  int64_t lo, hi;
  part_range(R->rows, part, parts, &lo, &hi);
  for (int64_t r = lo; r < hi; r++) {
    const float *g = R->a + r * width, *p = R->b + r * width;
    float *out = R->out + r * width;
    int32_t i = 0;
    for (; i + LANES <= width; i += LANES) store8(out + i, load8(g + i) * load8(p + i));
    for (; i < width; i++) out[i] = g[i] * p[i];
    float s = 0.0f;
    for (i = 0; i < width; i++) s += out[i];
    for (i = 0; i + LANES <= width; i += LANES) store8(out + i, load8(out + i) - SPLAT(s) * load8(p + i));
    for (; i < width; i++) out[i] = out[i] - s * p[i];
  }
}

/* Element operations a row's value costs, about. */
#define ROW_COST 4.0
#define SOFTMAX_COST 16.0

/* layerNorm(x, n, rstd, width, eps): n = (x - mean) rstd per row, rstd = 1 / sqrt(var + eps). */
static napi_value layer_norm(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  Rows R = {0};
  size_t lx, ln, lr, rows;
  double eps;
  if (!args_of(env, info, argv, 5, "layerNorm") || !f32_arg(env, argv[0], (float **)&R.a, &lx, "layerNorm x") ||
      !f32_arg(env, argv[1], &R.out, &ln, "layerNorm n") || !f32_arg(env, argv[2], &R.out2, &lr, "layerNorm rstd") ||
      !i32_arg(env, argv[3], &R.width, "layerNorm width") || !rows_of(env, lx, R.width, &rows, "layerNorm") ||
      !holds(env, ln, lx, "layerNorm n") || !holds(env, lr, rows, "layerNorm rstd")) {
    return NULL;
  }
  if (napi_get_value_double(env, argv[4], &eps) != napi_ok) return fail(env, 0, "layerNorm eps: expected a number"), NULL;
  R.rows = (int64_t)rows;
  R.eps = (float)eps;
  run(env, layer_norm_part, &R, parts_for(R.rows, ROW_COST * R.width));
  return NULL;
}

/* layerNormGrad(dy, n, rstd, dx, width): dx = rstd (dy - mean(dy) - n mean(dy n)) per row. */
static napi_value layer_norm_grad(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  Rows R = {0};
  size_t ld, ln, lr, lo, rows;
  if (!args_of(env, info, argv, 5, "layerNormGrad") || !f32_arg(env, argv[0], (float **)&R.a, &ld, "layerNormGrad dy") ||
      !f32_arg(env, argv[1], (float **)&R.b, &ln, "layerNormGrad n") || !f32_arg(env, argv[2], (float **)&R.c, &lr, "layerNormGrad rstd") ||
      !f32_arg(env, argv[3], &R.out, &lo, "layerNormGrad dx") || !i32_arg(env, argv[4], &R.width, "layerNormGrad width") ||
      !rows_of(env, ld, R.width, &rows, "layerNormGrad") || !holds(env, ln, ld, "layerNormGrad n") ||
      !holds(env, lr, rows, "layerNormGrad rstd") || !holds(env, lo, ld, "layerNormGrad dx")) {
    return NULL;
  }
  R.rows = (int64_t)rows;
  run(env, layer_norm_grad_part, &R, parts_for(R.rows, ROW_COST * R.width));
  return NULL;
}

/* softmax(x, y, width): y = exp(x - max) / sum per row. */
static napi_value softmax(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  Rows R = {0};
  size_t lx, ly, rows;
  if (!args_of(env, info, argv, 3, "softmax") || !f32_arg(env, argv[0], (float **)&R.a, &lx, "softmax x") ||
      !f32_arg(env, argv[1], &R.out, &ly, "softmax y") || !i32_arg(env, argv[2], &R.width, "softmax width") ||
      !rows_of(env, lx, R.width, &rows, "softmax") || !holds(env, ly, lx, "softmax y")) {
    return NULL;
  }
  R.rows = (int64_t)rows;
  run(env, softmax_part, &R, parts_for(R.rows, SOFTMAX_COST * R.width));
  return NULL;
}

/* softmaxGrad(dy, y, dx, width): dx = dy y - (sum of dy y) y per row. */
static napi_value softmax_grad(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  Rows R = {0};
  size_t ld, ly, lo, rows;
  if (!args_of(env, info, argv, 4, "softmaxGrad") || !f32_arg(env, argv[0], (float **)&R.a, &ld, "softmaxGrad dy") ||
      !f32_arg(env, argv[1], (float **)&R.b, &ly, "softmaxGrad y") || !f32_arg(env, argv[2], &R.out, &lo, "softmaxGrad dx") ||
      !i32_arg(env, argv[3], &R.width, "softmaxGrad width") || !rows_of(env, ld, R.width, &rows, "softmaxGrad") ||
      !holds(env, ly, ld, "softmaxGrad y") || !holds(env, lo, ld, "softmaxGrad dx")) {
    return NULL;
  }
  R.rows = (int64_t)rows;
  run(env, softmax_grad_part, &R, parts_for(R.rows, ROW_COST * R.width));
  return NULL;
}

/*
 * ---- reduceSum: the sum (or mean) over a block of adjacent axes ----
 * x viewed as [outer, P, C], out as [outer, C]: out[o, c] = the sum over p of x[o, p, c], added
 * in order of p from 0 in float32, as tfjs' Sum and Mean add after moving the reduced axes last
 * (sum.c's channel_sum is the case outer 1); the mean divides that sum by P. Output values split.
 */

typedef struct {
  const float *x;
  float *out;
  int64_t outer, P, C;
  int mean;
} Reduce;

VECTOR_CLONES static void reduce_part(void *arg, int part, int parts, int thread) {
  (void)thread;
  const Reduce *s = (const Reduce *)arg;
  int64_t lo, hi;
  part_range(s->outer * s->C, part, parts, &lo, &hi);
  for (int64_t at = lo; at < hi;) {
    const int64_t o = at / s->C, c0 = at % s->C, c1 = hi - o * s->C < s->C ? hi - o * s->C : s->C;
    float *out = s->out + o * s->C;
    const float *x = s->x + o * s->P * s->C;
    for (int64_t c = c0; c < c1; c++) out[c] = 0.0f;
    for (int64_t p = 0; p < s->P; p++) {
      const float *d = x + p * s->C;
      for (int64_t c = c0; c < c1; c++) out[c] += d[c];
    }
    if (s->mean) {
      const float n = (float)s->P;
      for (int64_t c = c0; c < c1; c++) out[c] = out[c] / n;
    }
    at = o * s->C + c1;
  }
}

/* reduceSum(x, out, outer, mean): out[o, c] = the sum (mean: / P) over p of x[o, p, c]; C = out.length / outer, P = x.length / out.length. */
static napi_value reduce_sum(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  Reduce s = {0};
  size_t lx, lo;
  int32_t outer;
  bool mean = false;
  if (!args_of(env, info, argv, 4, "reduceSum") || !f32_arg(env, argv[0], (float **)&s.x, &lx, "reduceSum x") ||
      !f32_arg(env, argv[1], &s.out, &lo, "reduceSum out") || !i32_arg(env, argv[2], &outer, "reduceSum outer")) {
    return NULL;
  }
  if (napi_get_value_bool(env, argv[3], &mean) != napi_ok) return fail(env, 0, "reduceSum mean: expected a boolean"), NULL;
  if (outer < 1 || lo == 0 || lo % (size_t)outer != 0 || lx % lo != 0 || lx == 0) {
    return fail(env, 1, "reduceSum: out's length must be a multiple of outer and divide x's (x [outer, P, C], out [outer, C])"), NULL;
  }
  s.outer = outer;
  s.C = (int64_t)(lo / (size_t)outer);
  s.P = (int64_t)(lx / lo);
  s.mean = mean;
  /* Parts of at least 16 output values (a vector's worth each), from the shape alone. */
  run(env, reduce_part, &s, parts_for((s.outer * s.C) / 16, 16.0 * (double)s.P));
  return NULL;
}

/* ---- activationGrad: activation-grad.c's Relu, Relu6 and ClipByValue gradients ---- */

typedef struct {
  const float *dy, *x;
  float *dx;
  int64_t n;
  int which; /* 0 relu, 1 relu6, 2 clip */
  float lo, hi;
} ActGrad;

/* dy times 1 where kept, 0 elsewhere, NaN where x is NaN (activation-grad.c's step_mask); clip: dy where kept, else 0. */
static inline vf act_grad8(const ActGrad *g, vf dy, vf x) {
  if (g->which == 2) return sel((x >= SPLAT(g->lo)) & (x <= SPLAT(g->hi)), dy, SPLAT(0.0f));
  const vi keep = g->which == 0 ? x > SPLAT(0.0f) : (x > SPLAT(0.0f)) & (x <= SPLAT(6.0f));
  return dy * sel(x != x, x, sel(keep, SPLAT(1.0f), SPLAT(0.0f)));
}

VECTOR_CLONES static void act_grad_part(void *arg, int part, int parts, int thread) {
  (void)thread;
  const ActGrad *g = (const ActGrad *)arg;
  int64_t lo, hi, j;
  part_range(g->n, part, parts, &lo, &hi);
  for (j = lo; j + LANES <= hi; j += LANES) store8(g->dx + j, act_grad8(g, load8(g->dy + j), load8(g->x + j)));
  if (j < hi) store_tail(g->dx + j, act_grad8(g, load_tail(g->dy + j, hi - j), load_tail(g->x + j, hi - j)), hi - j);
}

/* activationGrad(which, dy, x, dx, lo, hi): which 0 Relu's gradient, 1 Relu6's, 2 ClipByValue's (between lo and hi). */
static napi_value activation_grad(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  ActGrad g = {0};
  int32_t which;
  size_t ld, lx, lo;
  double lo_bound, hi_bound;
  if (!args_of(env, info, argv, 6, "activationGrad") || !i32_arg(env, argv[0], &which, "activationGrad which") ||
      !f32_arg(env, argv[1], (float **)&g.dy, &ld, "activationGrad dy") || !f32_arg(env, argv[2], (float **)&g.x, &lx, "activationGrad x") ||
      !f32_arg(env, argv[3], &g.dx, &lo, "activationGrad dx") || !holds(env, ld, lx, "activationGrad dy") || !holds(env, lo, lx, "activationGrad dx")) {
    return NULL;
  }
  if (which < 0 || which > 2) return fail(env, 1, "activationGrad: which must be 0 (relu), 1 (relu6) or 2 (clip)"), NULL;
  if (napi_get_value_double(env, argv[4], &lo_bound) != napi_ok || napi_get_value_double(env, argv[5], &hi_bound) != napi_ok) {
    return fail(env, 0, "activationGrad lo, hi: expected numbers"), NULL;
  }
  g.which = which;
  g.lo = (float)lo_bound;
  g.hi = (float)hi_bound;
  g.n = (int64_t)lx;
  run(env, act_grad_part, &g, parts_for(g.n, 2.0));
  return NULL;
}

/* ---- elementwise: a fused chain's program (elementwise.c, the wasm kernel, op for op) ---- */

enum { KIND_FULL, KIND_SCALAR, KIND_CHANNEL };

/* The most operands and instructions a program takes (fuse.ts writes a few dozen). */
#define MAX_OPERANDS 1024
#define MAX_CODE 1024

typedef struct {
  const int32_t *code; /* 5 ints an instruction: op, dst, a, b, c */
  int32_t count, operands, first_register, registers;
  const float **base; /* per operand: streamed (output, full inputs) or a fixed block; registers NULL */
  const uint8_t *streams;
  float *scratch; /* registers: parts x registers x L floats */
  int64_t n, L;
} Program;

static inline float pmax(float a, float b) { return a < b ? b : a; }
static inline float pmin(float a, float b) { return b < a ? b : a; }

VECTOR_CLONES static void op_block(int op, float *d, const float *a, const float *b, const float *c, int64_t len) {
  switch (op) {
#define LOOP(EXPR) for (int64_t i = 0; i < len; i++) { const float x = a[i], y = b[i]; (void)y; d[i] = (EXPR); } break;
    case OP_ADD: LOOP(x + y)
    case OP_SUB: LOOP(x - y)
    case OP_MUL: LOOP(x * y)
    case OP_DIV: LOOP(x / y)
    case OP_MAX: LOOP(pmax(x, y))
    case OP_MIN: LOOP(pmin(x, y))
    case OP_SQDIFF: LOOP((x - y) * (x - y))
    case OP_NEG: LOOP(-x)
    case OP_ABS: LOOP(__builtin_fabsf(x))
    case OP_SQUARE: LOOP(x * x)
    case OP_SQRT: LOOP(__builtin_sqrtf(x))
    case OP_RSQRT: LOOP(1.0f / __builtin_sqrtf(x))
    case OP_RECIP: LOOP(1.0f / x)
    /* Relu as XNNPACK: 0 wherever the sign bit is set (-0, a negative NaN). */
    case OP_RELU: LOOP(__builtin_signbit(x) ? 0.0f : x)
    case OP_RELU6: LOOP(pmin(6.0f, x > 0.0f ? x : 0.0f))
    case OP_STEP: LOOP(x != x ? x : (x > 0.0f ? 1.0f : y))
    case OP_CLIP:
      for (int64_t i = 0; i < len; i++) d[i] = pmin(c[i], pmax(b[i], a[i]));
      break;
#undef LOOP
    default: break;
  }
}

static void program_part(void *arg, int part, int parts, int thread) {
  (void)thread;
  const Program *p = (const Program *)arg;
  const int64_t blocks = (p->n + p->L - 1) / p->L;
  int64_t lo, hi;
  part_range(blocks, part, parts, &lo, &hi);
  float *regs = p->scratch + (size_t)part * p->registers * p->L;
  for (int64_t k = lo; k < hi; k++) {
    const int64_t start = k * p->L;
    const int64_t len = p->n - start < p->L ? p->n - start : p->L;
    for (int32_t s = 0; s < p->count; s++) {
      const int32_t *ins = p->code + 5 * s;
      float *ptr[4];
      for (int j = 0; j < 4; j++) {
        const int32_t o = ins[1 + j];
        ptr[j] = o >= p->first_register ? regs + (size_t)(o - p->first_register) * p->L
                                        : (float *)p->base[o] + (p->streams[o] ? start : 0);
      }
      op_block(ins[0], ptr[0], ptr[1], ptr[2], ptr[3], len);
    }
  }
}

/*
 * elementwise(code, kinds, inputs, immediates, registers, out, channels): run a fused chain's
 * program (elementwise.ts's ElementwiseProgram: code 5 ints an instruction, kinds 0 full, 1
 * scalar, 2 channel per input, the inputs' views in order) over out, in blocks of whole rows.
 */
static napi_value elementwise(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  int32_t *code, *kinds, registers, channels;
  size_t lcode, lkinds, limm, lout, ninputs = 0;
  float *imm, *out;
  if (!args_of(env, info, argv, 7, "elementwise") || !typed(env, argv[0], napi_int32_array, (void **)&code, &lcode, "elementwise code") ||
      !typed(env, argv[1], napi_int32_array, (void **)&kinds, &lkinds, "elementwise kinds") ||
      !f32_arg(env, argv[3], &imm, &limm, "elementwise immediates") || !i32_arg(env, argv[4], &registers, "elementwise registers") ||
      !f32_arg(env, argv[5], &out, &lout, "elementwise out") || !i32_arg(env, argv[6], &channels, "elementwise channels")) {
    return NULL;
  }
  bool is_array = false;
  uint32_t len32 = 0;
  if (napi_is_array(env, argv[2], &is_array) != napi_ok || !is_array || napi_get_array_length(env, argv[2], &len32) != napi_ok) {
    return fail(env, 0, "elementwise inputs: expected an array of Float32Array"), NULL;
  }
  ninputs = len32;
  const int64_t total = 1 + (int64_t)ninputs + (int64_t)limm + registers;
  if (lcode == 0 || lcode % 5 != 0 || lcode / 5 > MAX_CODE || lkinds != ninputs || registers < 0 || total > MAX_OPERANDS || channels < 1) {
    return fail(env, 1, "elementwise: a malformed program (code of 5 ints an instruction, a kind per input, at most 1024 operands)"), NULL;
  }
  const int32_t count = (int32_t)(lcode / 5), first_register = (int32_t)(total - registers);
  const int64_t n = (int64_t)lout;
  for (int32_t s = 0; s < count; s++) {
    const int32_t *ins = code + 5 * s;
    int ok = ins[0] >= 0 && ins[0] < OP_COUNT && (s == count - 1 ? ins[1] == 0 : ins[1] >= first_register && ins[1] < total);
    for (int j = 2; j < 5; j++) ok = ok && ins[j] >= 1 && ins[j] < total;
    if (!ok) return fail(env, 1, "elementwise: an instruction's op or operands are out of range (rebuild the plan)"), NULL;
  }
  if (n == 0) return NULL;
  int any_channel = 0, fixed = 0;
  for (size_t j = 0; j < ninputs; j++) {
    if (kinds[j] < KIND_FULL || kinds[j] > KIND_CHANNEL) return fail(env, 1, "elementwise: an input kind is not 0, 1 or 2"), NULL;
    any_channel |= kinds[j] == KIND_CHANNEL;
    fixed += kinds[j] != KIND_FULL;
  }
  if (any_channel && n % channels != 0) return fail(env, 1, "elementwise: channels must divide the output's length"), NULL;
  /* elementwise.ts's blockLength: 512 floats, or whole rows of channel inputs. */
  const int64_t L = !any_channel ? (n < 512 ? n : 512) : (channels >= 512 ? channels : channels * (512 / channels));
  const float *base[MAX_OPERANDS];
  uint8_t streams[MAX_OPERANDS];
  base[0] = out;
  streams[0] = 1;
  const int64_t blocks = (n + L - 1) / L;
  const int parts = parts_for(blocks, (double)L * count);
  const size_t fixed_floats = (size_t)(fixed + limm) * (size_t)L;
  float *mem = (float *)malloc((fixed_floats + (size_t)parts * (size_t)registers * (size_t)L) * sizeof(float) + 1);
  if (mem == NULL) return napi_throw_error(env, "ND_NATIVE_MEMORY", "out of memory for the element-wise program's blocks"), NULL;
  float *next = mem;
  for (size_t j = 0; j < ninputs; j++) {
    napi_value item;
    float *data;
    size_t length;
    if (napi_get_element(env, argv[2], (uint32_t)j, &item) != napi_ok || !f32_arg(env, item, &data, &length, "elementwise input") ||
        !holds(env, length, kinds[j] == KIND_FULL ? (size_t)n : kinds[j] == KIND_SCALAR ? 1 : (size_t)channels, "elementwise input")) {
      free(mem);
      return NULL;
    }
    streams[1 + j] = kinds[j] == KIND_FULL;
    if (kinds[j] == KIND_FULL) {
      base[1 + j] = data;
      continue;
    }
    for (int64_t i = 0; i < L; i++) next[i] = kinds[j] == KIND_SCALAR ? data[0] : data[i % channels];
    base[1 + j] = next;
    next += L;
  }
  for (size_t j = 0; j < limm; j++) {
    for (int64_t i = 0; i < L; i++) next[i] = imm[j];
    base[1 + ninputs + j] = next;
    streams[1 + ninputs + j] = 0;
    next += L;
  }
  Program p = {code, count, (int32_t)total, first_register, registers, base, streams, next, n, L};
  run(env, program_part, &p, parts);
  free(mem);
  return NULL;
}

int elementwise_define(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"geluForward", NULL, gelu_forward, NULL, NULL, NULL, napi_enumerable, NULL},
      {"geluGrad", NULL, gelu_grad, NULL, NULL, NULL, napi_enumerable, NULL},
      {"layerNorm", NULL, layer_norm, NULL, NULL, NULL, napi_enumerable, NULL},
      {"layerNormGrad", NULL, layer_norm_grad, NULL, NULL, NULL, napi_enumerable, NULL},
      {"softmax", NULL, softmax, NULL, NULL, NULL, napi_enumerable, NULL},
      {"softmaxGrad", NULL, softmax_grad, NULL, NULL, NULL, napi_enumerable, NULL},
      {"activationGrad", NULL, activation_grad, NULL, NULL, NULL, napi_enumerable, NULL},
      {"reduceSum", NULL, reduce_sum, NULL, NULL, NULL, napi_enumerable, NULL},
      {"elementwise", NULL, elementwise, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props) == napi_ok && broadcast_define(env, exports);
}
