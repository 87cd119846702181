/*
 * What the native backend's element-wise kernels share (elementwise.c, broadcast.c): how many parts
 * a kernel is cut into, the N-API argument checks (each failure a TypeError or RangeError with a
 * code ND_NATIVE_ARGUMENT, which loader.ts turns into a typed error), and eight-lane float32
 * vectors in GCC's vector extensions. Everything here is static: each file its own copy.
 */
#ifndef NEURAL_DIFF_ELEMENTWISE_COMMON_H
#define NEURAL_DIFF_ELEMENTWISE_COMMON_H
#define NAPI_VERSION 8
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "blocks.h"
#include "elementwise.h"

/* Op codes of elementwise.ts (OP), in its order. */
enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MAX, OP_MIN, OP_SQDIFF, OP_NEG, OP_ABS, OP_SQUARE, OP_SQRT, OP_RSQRT, OP_RECIP, OP_RELU, OP_RELU6, OP_STEP, OP_CLIP, OP_COUNT };

/* Built for AVX2 and for any x86-64, chosen when loaded (IEEE operations either way: the same bits). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/*
 * Parts of a kernel over `items` (elements, rows or channels) costing `cost` element operations
 * each: one per GRAIN of work (a smaller part is not worth waking a thread for), 8, 6, 4 or 2
 * (counts 2, 4 and 8 threads share evenly), at most `items`. From the shape alone.
 */
#define GRAIN 32768.0
static inline int parts_for(int64_t items, double cost) {
  static const int counts[] = {8, 6, 4, 2};
  const double q = (double)items * cost / GRAIN;
  for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
    if (q >= counts[i] && items >= counts[i]) return counts[i];
  }
  return 1;
}

static inline void run(napi_env env, pool_task task, void *arg, int parts) {
  pool_run(parts > 1 ? addon_pool(env) : NULL, task, arg, parts);
}

/* ---- arguments ---- */

static inline int fail(napi_env env, int range, const char *message) {
  if (range) napi_throw_range_error(env, "ND_NATIVE_ARGUMENT", message);
  else napi_throw_type_error(env, "ND_NATIVE_ARGUMENT", message);
  return 0;
}

/* The arguments of a call, at least `want` of them. */
static inline int args_of(napi_env env, napi_callback_info info, napi_value *argv, size_t want, const char *name) {
  size_t argc = want;
  char message[120];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return fail(env, 0, "unreadable arguments");
  if (argc < want) {
    snprintf(message, sizeof message, "%s takes %zu arguments, got %zu", name, want, argc);
    return fail(env, 0, message);
  }
  return 1;
}

static inline int typed(napi_env env, napi_value value, napi_typedarray_type want, void **data, size_t *length, const char *what) {
  bool is_typed = false;
  napi_typedarray_type type;
  char message[120];
  if (napi_is_typedarray(env, value, &is_typed) == napi_ok && is_typed &&
      napi_get_typedarray_info(env, value, &type, length, data, NULL, NULL) == napi_ok && type == want) {
    return 1;
  }
  snprintf(message, sizeof message, "%s: expected %s", what, want == napi_float32_array ? "a Float32Array" : "an Int32Array");
  return fail(env, 0, message);
}

static inline int f32_arg(napi_env env, napi_value value, float **data, size_t *length, const char *what) {
  return typed(env, value, napi_float32_array, (void **)data, length, what);
}

static inline int i32_arg(napi_env env, napi_value value, int32_t *out, const char *what) {
  char message[120];
  if (napi_get_value_int32(env, value, out) == napi_ok) return 1;
  snprintf(message, sizeof message, "%s: expected an integer", what);
  return fail(env, 0, message);
}

/* `have` floats where the shapes need `want`. */
static inline int holds(napi_env env, size_t have, size_t want, const char *what) {
  char message[160];
  if (have >= want) return 1;
  snprintf(message, sizeof message, "%s: view holds %zu floats, the shapes need %zu", what, have, want);
  return fail(env, 1, message);
}

/* A row width > 0 dividing n. */
static inline int rows_of(napi_env env, size_t n, int32_t width, size_t *rows, const char *what) {
  char message[160];
  if (width < 1 || n % (size_t)width != 0) {
    snprintf(message, sizeof message, "%s: a row width of %d does not divide the %zu values", what, width, n);
    return fail(env, 1, message);
  }
  *rows = n / (size_t)width;
  return 1;
}

/* ---- vectors ---- */

typedef float vf __attribute__((vector_size(32), aligned(4)));
typedef int32_t vi __attribute__((vector_size(32), aligned(4)));
#define LANES 8
/* Every lane c (a vector of zeros plus c would turn -0 into +0). */
#define SPLAT(c) splat8((float)(c))
static inline vf splat8(float c) {
  const vf v = {c};
  return __builtin_shufflevector(v, v, 0, 0, 0, 0, 0, 0, 0, 0);
}

static inline vf sel(vi m, vf a, vf b) { return (vf)((m & (vi)a) | (~m & (vi)b)); }
/* WebAssembly's f32x4.min and max against a constant: NaN stays NaN. */
static inline vf wmin(vf x, float c) { return sel((x < SPLAT(c)) | (x != x), x, SPLAT(c)); }
static inline vf wmax(vf x, float c) { return sel((x > SPLAT(c)) | (x != x), x, SPLAT(c)); }

/* Load and store LANES floats at any alignment. */
static inline vf load8(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void store8(float *p, vf v) { memcpy(p, &v, sizeof v); }
/* The first `k` < LANES floats, the other lanes zero. */
static inline vf load_tail(const float *p, int64_t k) { vf v = {0}; memcpy(&v, p, (size_t)k * sizeof(float)); return v; }
static inline void store_tail(float *p, vf v, int64_t k) { memcpy(p, &v, (size_t)k * sizeof(float)); }

static inline vf vpmax(vf x, vf y) { return sel(x < y, y, x); }
static inline vf vpmin(vf x, vf y) { return sel(y < x, y, x); }

#endif
