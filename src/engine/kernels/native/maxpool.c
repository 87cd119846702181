/*
 * Max pooling's gradient on the native backend's threads (blas.c registers it): each output window
 * finds its maximum once per channel and sends dy there, the rule of max-pool-grad.ts's kernels
 * (ties to the first maximum in row-major window order, padding never wins, a window of NaNs or
 * -Infinity sends nothing), and optionally Relu's gradient in the same pass (dx * step(x), the
 * bits of activation-grad.ts's kernel), where a compiled step reads the pool's gradient only
 * through it. Layout NHWC: x and dx [B, H, W, C], dy [B, OH, OW, C].
 *
 * Threads: whole batch items per part. An item's dx is written by one part alone, its windows in
 * the same order whoever runs it: the bits do not depend on the thread count or the cut.
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "blocks.h"
#include "maxpool.h"
#include "pool.h"

/* Geometry array layout shared with kernels.ts (poolGeometry). */
enum { P_B, P_H, P_W, P_C, P_OH, P_OW, P_KH, P_KW, P_SH, P_SW, P_PT, P_PL, P_COUNT };

/* Channels whose running maxima live on the stack; more take the heap. */
#define STACK_CHANNELS 512

typedef struct {
  const int32_t *g;
  const float *x, *dy, *rx; /* rx: Relu's input (or output) for the fused gradient, or NULL */
  float *dx;
  float *best;   /* above STACK_CHANNELS: C running maxima a part, allocated by the caller */
  int32_t *at;   /* and their taps */
} MaxPoolGrad;

/* The running maxima of one window over a row of C channels (vectorized: no branch, no aliasing). */
static inline __attribute__((always_inline)) void window_max(const float *__restrict row, float *__restrict best, int32_t *__restrict at, int32_t tap, int32_t C) {
  for (int32_t c = 0; c < C; c++) {
    const int more = row[c] > best[c];
    best[c] = more ? row[c] : best[c];
    at[c] = more ? tap : at[c];
  }
}

/* Relu's gradient over n values: dx * step(x), step 1 above 0, 0 elsewhere, NaN for NaN. */
static inline __attribute__((always_inline)) void relu_grad_in_place(float *__restrict dx, const float *__restrict rx, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const float v = rx[i];
    const float s = v != v ? v : (v > 0.0f ? 1.0f : 0.0f);
    dx[i] = dx[i] * s;
  }
}

/*
 * Items [lo, hi) of dx, with running maxima `best` and their taps `at` of C entries each. Built for
 * AVX2 and for any x86-64, chosen when loaded (comparisons, selects and one multiply per value: the
 * same bits either way).
 */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
static void grad_items(const MaxPoolGrad *p, int64_t lo, int64_t hi, float *best, int32_t *at) {
  const int32_t *g = p->g;
  const int32_t H = g[P_H], W = g[P_W], C = g[P_C], OH = g[P_OH], OW = g[P_OW], KH = g[P_KH], KW = g[P_KW];
  const int32_t sh = g[P_SH], sw = g[P_SW], pt = g[P_PT], pl = g[P_PL];
  const size_t item = (size_t)H * W * C;
  for (int64_t b = lo; b < hi; b++) {
    const float *x = p->x + (size_t)b * item;
    float *dx = p->dx + (size_t)b * item;
    const float *dy = p->dy + (size_t)b * OH * OW * C;
    memset(dx, 0, item * sizeof(float));
    for (int32_t oh = 0; oh < OH; oh++) {
      /* In 64 bits: oh * sh may pass 2^31 on a hostile geometry (the window is then empty). */
      const int64_t ih0 = (int64_t)oh * sh - pt, ihLo = ih0 < 0 ? 0 : ih0, ihHi = ih0 + KH < H ? ih0 + KH : H;
      for (int32_t ow = 0; ow < OW; ow++, dy += C) {
        const int64_t iw0 = (int64_t)ow * sw - pl, iwLo = iw0 < 0 ? 0 : iw0, iwHi = iw0 + KW < W ? iw0 + KW : W;
        for (int32_t c = 0; c < C; c++) {
          best[c] = -__builtin_inff();
          at[c] = -1;
        }
        for (int64_t ih = ihLo; ih < ihHi; ih++) {
          for (int64_t iw = iwLo; iw < iwHi; iw++) {
            const int32_t tap = (int32_t)(ih * W + iw);
            window_max(x + (size_t)tap * C, best, at, tap, C);
          }
        }
        for (int32_t c = 0; c < C; c++) {
          if (at[c] >= 0) dx[(size_t)at[c] * C + c] += dy[c];
        }
      }
    }
    if (p->rx != NULL) relu_grad_in_place(dx, p->rx + (size_t)b * item, item);
  }
}

/*
 * Items [lo, hi) of y = the max pool of x: each window's maximum by the gradient's rule (the first
 * value above the running maximum from -Infinity, padding never counted), so the value forward is
 * the one whose position the gradient picks; a window of NaNs or -Infinity gives -Infinity.
 */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
static void forward_items(const MaxPoolGrad *p, int64_t lo, int64_t hi) {
  const int32_t *g = p->g;
  const int32_t H = g[P_H], W = g[P_W], C = g[P_C], OH = g[P_OH], OW = g[P_OW], KH = g[P_KH], KW = g[P_KW];
  const int32_t sh = g[P_SH], sw = g[P_SW], pt = g[P_PT], pl = g[P_PL];
  for (int64_t b = lo; b < hi; b++) {
    const float *x = p->x + (size_t)b * H * W * C;
    float *y = p->dx + (size_t)b * OH * OW * C;
    for (int32_t oh = 0; oh < OH; oh++) {
      const int64_t ih0 = (int64_t)oh * sh - pt, ihLo = ih0 < 0 ? 0 : ih0, ihHi = ih0 + KH < H ? ih0 + KH : H;
      for (int32_t ow = 0; ow < OW; ow++, y += C) {
        const int64_t iw0 = (int64_t)ow * sw - pl, iwLo = iw0 < 0 ? 0 : iw0, iwHi = iw0 + KW < W ? iw0 + KW : W;
        for (int32_t c = 0; c < C; c++) y[c] = -__builtin_inff();
        for (int64_t ih = ihLo; ih < ihHi; ih++) {
          for (int64_t iw = iwLo; iw < iwHi; iw++) {
            const float *__restrict row = x + (size_t)(ih * W + iw) * C;
            float *__restrict best = y;
            for (int32_t c = 0; c < C; c++) best[c] = row[c] > best[c] ? row[c] : best[c];
          }
        }
      }
    }
  }
}

static void forward_part(void *arg, int i, int parts, int thread) {
  (void)thread;
  const MaxPoolGrad *p = (const MaxPoolGrad *)arg;
  int64_t lo, hi;
  part_range(p->g[P_B], i, parts, &lo, &hi);
  if (hi > lo) forward_items(p, lo, hi);
}

static void grad_part(void *arg, int i, int parts, int thread) {
  (void)thread;
  const MaxPoolGrad *p = (const MaxPoolGrad *)arg;
  const int32_t C = p->g[P_C];
  int64_t lo, hi;
  part_range(p->g[P_B], i, parts, &lo, &hi);
  if (hi <= lo) return;
  if (C <= STACK_CHANNELS) {
    float best[STACK_CHANNELS];
    int32_t at[STACK_CHANNELS];
    grad_items(p, lo, hi, best, at);
    return;
  }
  grad_items(p, lo, hi, p->best + (size_t)i * C, p->at + (size_t)i * C);
}

static int arg_error(napi_env env, const char *message) {
  napi_throw_type_error(env, "ND_NATIVE_ARGUMENT", message);
  return 0;
}

static int f32_arg(napi_env env, napi_value v, float **data, size_t *length) {
  bool typed = false;
  napi_typedarray_type type;
  void *ptr = NULL;
  if (napi_is_typedarray(env, v, &typed) != napi_ok || !typed || napi_get_typedarray_info(env, v, &type, length, &ptr, NULL, NULL) != napi_ok ||
      type != napi_float32_array) {
    return arg_error(env, "maxPoolGrad: expected a Float32Array");
  }
  *data = (float *)ptr;
  return 1;
}

/* The product of `n` non-negative values, or 0 with a RangeError thrown when it overflows size_t. */
static int checked_product(napi_env env, const int32_t *v, int n, size_t *out) {
  size_t p = 1;
  for (int i = 0; i < n; i++) {
    if (__builtin_mul_overflow(p, (size_t)v[i], &p)) {
      napi_throw_range_error(env, "ND_NATIVE_ARGUMENT", "maxPoolGrad: the sizes' product does not fit in memory (it overflows)");
      return 0;
    }
  }
  *out = p;
  return 1;
}

/*
 * The geometry (an Int32Array of P_COUNT values, each at least 0, windows and strides at least 1)
 * and the sizes of x [B, H, W, C] and y [B, OH, OW, C]; 0 with a JS error when they are not.
 */
static int pool_geometry(napi_env env, napi_value value, const int32_t **geometry, size_t *xs, size_t *ys) {
  bool typed = false;
  napi_typedarray_type type;
  size_t lg = 0;
  void *gp = NULL;
  if (napi_is_typedarray(env, value, &typed) != napi_ok || !typed || napi_get_typedarray_info(env, value, &type, &lg, &gp, NULL, NULL) != napi_ok ||
      type != napi_int32_array || lg < P_COUNT) {
    return arg_error(env, "max pool: expected an Int32Array geometry of 12 values");
  }
  const int32_t *g = (const int32_t *)gp;
  for (int i = 0; i < P_COUNT; i++) {
    if (g[i] < 0) return arg_error(env, "max pool: negative geometry value");
  }
  if (g[P_KH] == 0 || g[P_KW] == 0 || g[P_SH] == 0 || g[P_SW] == 0) return arg_error(env, "max pool: windows and strides must be at least 1");
  const int32_t xd[4] = {g[P_B], g[P_H], g[P_W], g[P_C]}, yd[4] = {g[P_B], g[P_OH], g[P_OW], g[P_C]}, taps[3] = {g[P_H], g[P_W], 1};
  size_t tapCount;
  if (!checked_product(env, xd, 4, xs) || !checked_product(env, yd, 4, ys) || !checked_product(env, taps, 3, &tapCount)) return 0;
  if (tapCount > INT32_MAX) {
    napi_throw_range_error(env, "ND_NATIVE_ARGUMENT", "max pool: H * W must fit in an int32");
    return 0;
  }
  *geometry = g;
  return 1;
}

/*
 * Input floats below which a pass stays on the calling thread: the keyword model's pools
 * (123k-205k floats at batch 64, ~0.1-0.2 ms) ran slower split over 2 threads than on one (a
 * sleeping thread is woken late). Above it, parts of whole items from the shape (span_parts).
 */
#define SPLIT_FLOATS (1 << 18)

static int parts_of(const int32_t *g, size_t xs) {
  return g[P_B] == 0 || xs < SPLIT_FLOATS ? 1 : span_parts(g[P_B], (double)xs / g[P_B], 2 * SPAN_LEAST);
}

/* maxPool(x, y, geometry): y = the max pool of x (geometry as maxPoolGrad's). */
napi_value max_pool(napi_env env, napi_callback_info info, Pool *pool) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3) return arg_error(env, "maxPool takes 3 arguments"), NULL;
  MaxPoolGrad p = {NULL, NULL, NULL, NULL, NULL, NULL, NULL};
  float *x;
  size_t lx, ly, xs, ys;
  if (!f32_arg(env, argv[0], &x, &lx) || !f32_arg(env, argv[1], &p.dx, &ly) || !pool_geometry(env, argv[2], &p.g, &xs, &ys)) return NULL;
  if (lx < xs || ly < ys) {
    char message[160];
    snprintf(message, sizeof message, "maxPool: x needs %zu floats, y %zu; found %zu and %zu", xs, ys, lx, ly);
    napi_throw_range_error(env, "ND_NATIVE_ARGUMENT", message);
    return NULL;
  }
  if (ys == 0) return NULL;
  p.x = x;
  pool_run(pool, forward_part, &p, parts_of(p.g, xs));
  return NULL;
}

/*
 * maxPoolGrad(x, dy, dx, geometry, reluX | null): dx = the gradient of a max pool of x (geometry:
 * B, H, W, C, OH, OW, KH, KW, strideH, strideW, padTop, padLeft), times step(reluX) when given.
 */
napi_value max_pool_grad(napi_env env, napi_callback_info info, Pool *pool) {
  size_t argc = 5;
  napi_value argv[5];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 5) return arg_error(env, "maxPoolGrad takes 5 arguments"), NULL;
  MaxPoolGrad p = {NULL, NULL, NULL, NULL, NULL, NULL, NULL};
  float *x, *dy, *rx = NULL;
  size_t lx, ldy, ldx, lrx = 0, xs, ys;
  if (!f32_arg(env, argv[0], &x, &lx) || !f32_arg(env, argv[1], &dy, &ldy) || !f32_arg(env, argv[2], &p.dx, &ldx)) return NULL;
  const int32_t *g;
  if (!pool_geometry(env, argv[3], &g, &xs, &ys)) return NULL;
  napi_valuetype rt;
  if (napi_typeof(env, argv[4], &rt) != napi_ok) return arg_error(env, "maxPoolGrad: unreadable reluX"), NULL;
  if (rt != napi_null && rt != napi_undefined && !f32_arg(env, argv[4], &rx, &lrx)) return NULL;
  if (lx < xs || ldx < xs || ldy < ys || (rx != NULL && lrx < xs)) {
    char message[200];
    snprintf(message, sizeof message, "maxPoolGrad: x, dx (and reluX) need %zu floats, dy %zu; found %zu, %zu, %zu and %zu", xs, ys, lx, ldx, ldy, lrx);
    napi_throw_range_error(env, "ND_NATIVE_ARGUMENT", message);
    return NULL;
  }
  if (xs == 0) return NULL;
  p.g = g;
  p.x = x;
  p.dy = dy;
  p.rx = rx;
  /* A part per thread when the whole is worth a wake-up; an item is never split (same bits). */
  const int parts = parts_of(g, xs);
  if (g[P_C] > STACK_CHANNELS) {
    /* The parts' running maxima on the heap, allocated here where a failure can be said (a part
     * cannot throw): refused before dx is written. */
    p.best = (float *)malloc((size_t)parts * g[P_C] * sizeof(float));
    p.at = (int32_t *)malloc((size_t)parts * g[P_C] * sizeof(int32_t));
    if (p.best == NULL || p.at == NULL) {
      free(p.best);
      free(p.at);
      char message[160];
      snprintf(message, sizeof message, "maxPoolGrad: out of memory for the running maxima of %d channels (%d parts); free memory or use fewer channels", g[P_C], parts);
      napi_throw_error(env, "ND_NATIVE_MEMORY", message);
      return NULL;
    }
  }
  pool_run(pool, grad_part, &p, parts);
  free(p.best);
  free(p.at);
  return NULL;
}
