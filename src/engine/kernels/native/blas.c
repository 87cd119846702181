/*
 * The native backend's compute: OpenBLAS's cblas_sgemm on Float32Array views of tfjs-backend-wasm's
 * heap (a WebAssembly.Memory), with im2col / col2im in C beside it. Nothing is copied in or out:
 * every argument is a view of a tensor's bytes in the heap, and results are written straight into
 * the output tensor's bytes. Loaded by loader.ts; built by `npm run build:native` (binding.gyp).
 *
 * Layouts (channels last, as tfjs): x [B, H, W, CI], filter [KH, KW, CI, CO], y [B, OH, OW, CO].
 * The column matrix has one row per output position (b, oh, ow) and one column per filter tap
 * (kh, kw, ci): the filter reshaped to [KH*KW*CI, CO] multiplies it directly.
 *
 * Nothing here allocates wasm memory, so the views stay valid for the whole call. Column matrices
 * live in scratch buffers of this addon instance (one per Node thread), one per thread of its pool,
 * kept between calls so large convolutions do not page-fault a fresh mapping every step.
 *
 * Threads (pool.c): setThreads(n) starts n - 1 workers beside the calling thread, once; OpenBLAS
 * stays on one thread. Every product is cut into blocks from its shape alone (blocks_for), each one
 * single-threaded cblas_sgemm claimed by any thread: the bits depend on the shapes, not on the
 * thread count (OpenBLAS's small-matrix kernels sum in another order than its large ones). Batched
 * products split their items, convolutions their output rows (forward), whole items (input
 * gradient: col2im adds overlapping windows of one item) or the filter gradient's items.
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "blocks.h"
#include "maxpool.h"
#include "elementwise.h"
#include "pool.h"

/*
 * The interface version loader.ts expects. The loader looks for the exported symbol
 * NEURAL_DIFF_BLAS_ABI_SYMBOL in the file's dynamic symbols before loading it (another project's
 * addon is refused without running its code) and checks the `abi` export after loading.
 */
#define NEURAL_DIFF_BLAS_ABI 6
__attribute__((visibility("default"), used)) const int neural_diff_blas_abi_6 = NEURAL_DIFF_BLAS_ABI;

/* OpenBLAS extensions (declared in its cblas.h; repeated so the intent is visible). */
extern void openblas_set_num_threads(int num_threads);
extern int openblas_get_num_threads(void);
extern char *openblas_get_config(void);
extern char *openblas_get_corename(void);

/* The most threads setThreads takes. */
#define MAX_THREADS 256

typedef struct {
  Pool *pool; /* NULL: one thread */
  float *scratch[MAX_THREADS];
  size_t capacity[MAX_THREADS]; /* floats */
  float *partials;              /* partial sums of a product cut along its sum */
  int64_t idle_ns;              /* setThreads' idle watch + 1 (0: never set, the pool's default) */
  size_t partials_capacity;
} Instance;

static void instance_free(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  Instance *inst = (Instance *)data;
  pool_destroy(inst->pool);
  for (int t = 0; t < MAX_THREADS; t++) free(inst->scratch[t]);
  free(inst->partials);
  free(inst);
}

static Instance *instance(napi_env env) {
  Instance *inst = NULL;
  if (napi_get_instance_data(env, (void **)&inst) != napi_ok) return NULL;
  return inst;
}

Pool *addon_pool(napi_env env) {
  Instance *inst = instance(env);
  return inst == NULL ? NULL : inst->pool;
}

/* Thread t's column scratch of at least `floats` floats, or NULL when out of memory. */
static float *scratch_floats(Instance *inst, int t, size_t floats) {
  if (inst == NULL || floats > SIZE_MAX / sizeof(float)) return NULL;
  if (inst->capacity[t] < floats) {
    free(inst->scratch[t]);
    inst->scratch[t] = (float *)malloc(floats * sizeof(float));
    inst->capacity[t] = inst->scratch[t] == NULL ? 0 : floats;
  }
  return inst->scratch[t];
}

/* Scratch of `floats` for each of the first `threads` threads; 0 (with a JS error) when out of memory. */
static int scratch_each(napi_env env, Instance *inst, int threads, size_t floats) {
  for (int t = 0; t < threads; t++) {
    if (scratch_floats(inst, t, floats) == NULL) {
      napi_throw_error(env, "ND_NATIVE_MEMORY", "out of memory for the column matrix");
      return 0;
    }
  }
  return 1;
}

/* Partial sums' scratch of at least `floats`, or NULL (with a JS error) when out of memory. */
static float *partials_floats(napi_env env, Instance *inst, size_t floats) {
  if (inst != NULL && inst->partials_capacity < floats) {
    free(inst->partials);
    inst->partials = (float *)malloc(floats * sizeof(float));
    inst->partials_capacity = inst->partials == NULL ? 0 : floats;
  }
  if (inst == NULL || inst->partials == NULL) {
    napi_throw_error(env, "ND_NATIVE_MEMORY", "out of memory for the partial sums");
    return NULL;
  }
  return inst->partials;
}

/*
 * The product on the pool, in blocks from its shape (blocks_for): the same bits at any thread
 * count. Blocks of C's rows or columns (the longer), or when both are short and the sum is long
 * (a weight gradient), blocks of the sum added in order. 0 (a JS error thrown) when out of memory.
 */
static int gemm_blocked(napi_env env, Instance *inst, Gemm g) {
  Pool *pool = inst == NULL ? NULL : inst->pool;
  const double flops = 2.0 * g.M * g.N * g.K;
  g.by_rows = g.M >= g.N;
  int parts = blocks_for(flops, (double)(g.by_rows ? g.M : g.N) / MIN_EXTENT);
  if (parts > 1) {
    pool_run(pool, gemm_block, &g, parts);
    return 1;
  }
  parts = blocks_for(flops, (double)g.K / MIN_SUM);
  if (parts == 1 || g.ldc != g.N) {
    gemm_block(&g, 0, 1, 0);
    return 1;
  }
  if ((g.partials = partials_floats(env, inst, (size_t)(parts - 1) * g.M * g.N)) == NULL) return 0;
  pool_run(pool, gemm_k_block, &g, parts);
  reduce_partials(pool, g.C, g.partials, (size_t)g.M * g.N, parts - 1);
  if (g.bias != NULL || g.act != 0) epilogue_run(pool, g.C, (size_t)g.M, (size_t)g.N, g.bias, g.act);
  return 1;
}

/* C = op(A) op(B) + beta C, then act(C + bias) per column (bias NULL and act 0: none). */
static Gemm gemm_of(int ta, int tb, int32_t M, int32_t N, int32_t K, const float *A, const float *B, float beta, float *C, const float *bias, int act) {
  Gemm g = {ta, tb, 1, M, N, K, ta ? M : K, tb ? K : N, N, A, B, C, beta, NULL, bias, act};
  return g;
}

#define CHECK(call)                                                   \
  do {                                                                \
    if ((call) != napi_ok) {                                          \
      napi_throw_error(env, "ND_NATIVE", "N-API call failed: " #call); \
      return NULL;                                                    \
    }                                                                 \
  } while (0)

static int throw_type(napi_env env, const char *message) {
  napi_throw_type_error(env, "ND_NATIVE_ARGUMENT", message);
  return 0;
}

/* A Float32Array argument: its data pointer (already at the view's offset) and element count. */
static int get_f32(napi_env env, napi_value value, float **data, size_t *length) {
  bool is_typed = false;
  if (napi_is_typedarray(env, value, &is_typed) != napi_ok || !is_typed) return throw_type(env, "expected a Float32Array");
  napi_typedarray_type type;
  void *ptr = NULL;
  if (napi_get_typedarray_info(env, value, &type, length, &ptr, NULL, NULL) != napi_ok) return throw_type(env, "unreadable typed array");
  if (type != napi_float32_array) return throw_type(env, "expected a Float32Array");
  *data = (float *)ptr;
  return 1;
}

static int get_i32(napi_env env, napi_value value, int32_t *out) {
  if (napi_get_value_int32(env, value, out) != napi_ok) return throw_type(env, "expected an integer");
  return 1;
}

/* An Int32Array of geometry values, at least `count` long. */
static int get_geometry(napi_env env, napi_value value, const int32_t **geom, size_t count) {
  bool is_typed = false;
  napi_typedarray_type type;
  size_t length = 0;
  void *ptr = NULL;
  if (napi_is_typedarray(env, value, &is_typed) != napi_ok || !is_typed) return throw_type(env, "expected an Int32Array geometry");
  if (napi_get_typedarray_info(env, value, &type, &length, &ptr, NULL, NULL) != napi_ok || type != napi_int32_array || length < count) {
    return throw_type(env, "expected an Int32Array geometry of the documented length");
  }
  *geom = (const int32_t *)ptr;
  return 1;
}

static int need(napi_env env, size_t have, size_t want, const char *what) {
  if (have < want) {
    char message[160];
    snprintf(message, sizeof message, "%s: view holds %zu floats, the shapes need %zu", what, have, want);
    napi_throw_range_error(env, "ND_NATIVE_ARGUMENT", message);
    return 0;
  }
  return 1;
}

/* An epilogue's arguments (bias | null, activation): a bias of `columns` values or none, act 0-2. */
static int get_epilogue(napi_env env, napi_value *argv, size_t columns, float **bias, int32_t *act) {
  napi_valuetype bt;
  size_t lb = 0;
  if (napi_typeof(env, argv[0], &bt) != napi_ok) return throw_type(env, "bias: unreadable"), 0;
  if (bt != napi_null && bt != napi_undefined && !get_f32(env, argv[0], bias, &lb)) return 0;
  if (!get_i32(env, argv[1], act)) return 0;
  if (*act < 0 || *act > 2) return throw_type(env, "activation must be 0 (linear), 1 (relu) or 2 (relu6)"), 0;
  return *bias == NULL || need(env, lb, columns, "bias");
}

/*
 * Sizes are products of values JavaScript passes: each is checked for overflow (a product that
 * wraps at 2^64 would pass the length checks with tiny arrays and index far past them).
 */
static int range_error(napi_env env, const char *what) {
  char message[200];
  snprintf(message, sizeof message, "%s: the sizes' product does not fit in memory (it overflows)", what);
  napi_throw_range_error(env, "ND_NATIVE_ARGUMENT", message);
  return 0;
}

/* *out = a * b, or a RangeError when it overflows size_t. */
static int mul_size(napi_env env, size_t a, size_t b, size_t *out, const char *what) {
  if (__builtin_mul_overflow(a, b, out)) return range_error(env, what);
  return 1;
}

/* *out = a + b, or a RangeError when it overflows size_t. */
static int add_size(napi_env env, size_t a, size_t b, size_t *out, const char *what) {
  if (__builtin_add_overflow(a, b, out)) return range_error(env, what);
  return 1;
}

/* The product of `count` non-negative values, or a RangeError when it overflows size_t. */
static int product(napi_env env, const int32_t *values, int count, size_t *out, const char *what) {
  size_t p = 1;
  for (int i = 0; i < count; i++) {
    if (!mul_size(env, p, (size_t)values[i], &p, what)) return 0;
  }
  *out = p;
  return 1;
}

/* A dimension OpenBLAS takes as an int: the product must fit in int32 too. */
static int fits_blas_int(napi_env env, size_t n, const char *what) {
  if (n > INT32_MAX) {
    char message[200];
    snprintf(message, sizeof message, "%s: %zu is more than a BLAS dimension can hold (2^31 - 1)", what, n);
    napi_throw_range_error(env, "ND_NATIVE_ARGUMENT", message);
    return 0;
  }
  return 1;
}

/* Items of a batched product, each one cblas_sgemm. */
typedef struct {
  Gemm g;
  int32_t aStride, bStride;
} Items;

static void gemm_item(void *arg, int i, int parts, int thread) {
  (void)parts;
  (void)thread;
  const Items *it = (const Items *)arg;
  const Gemm *g = &it->g;
  cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans, g->tb ? CblasTrans : CblasNoTrans, g->M, g->N, g->K, 1.0f,
              g->A + (size_t)i * it->aStride, g->lda, g->B + (size_t)i * it->bStride, g->ldb, 0.0f, g->C + (size_t)i * g->M * g->N, g->ldc);
}

/*
 * sgemmBatched(transA, transB, batch, M, N, K, a, aStride, b, bStride, c[, bias | null, activation])
 * For i < batch: C_i[M, N] = op(A_i) op(B_i), row-major, A_i at a + i*aStride (aStride 0 broadcasts
 * one matrix), op(A_i) is [M, K] (A_i stored [K, M] when transA), op(B_i) is [K, N]; then
 * act(C + bias) per column (biasActivation's codes): one product's on each block of C as it is
 * finished, a batch's in one pass after.
 */
static napi_value sgemm_batched(napi_env env, napi_callback_info info) {
  size_t argc = 13;
  napi_value argv[13];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 11) return throw_type(env, "sgemmBatched takes 11 or 13 arguments"), NULL;
  bool ta = false, tb = false;
  CHECK(napi_get_value_bool(env, argv[0], &ta));
  CHECK(napi_get_value_bool(env, argv[1], &tb));
  int32_t batch, M, N, K, aStride, bStride;
  float *a, *b, *c;
  size_t la, lb, lc;
  if (!get_i32(env, argv[2], &batch) || !get_i32(env, argv[3], &M) || !get_i32(env, argv[4], &N) || !get_i32(env, argv[5], &K) ||
      !get_f32(env, argv[6], &a, &la) || !get_i32(env, argv[7], &aStride) || !get_f32(env, argv[8], &b, &lb) ||
      !get_i32(env, argv[9], &bStride) || !get_f32(env, argv[10], &c, &lc)) {
    return NULL;
  }
  float *bias = NULL;
  int32_t act = 0;
  if (argc >= 13 && !get_epilogue(env, argv + 11, N < 0 ? 0 : (size_t)N, &bias, &act)) return NULL;
  if (batch < 0 || M < 0 || N < 0 || K < 0 || aStride < 0 || bStride < 0) return throw_type(env, "negative size"), NULL;
  if (batch == 0 || M == 0 || N == 0) return NULL;
  /* Each operand's extent: (batch - 1) * stride + one matrix, every step checked. */
  size_t a_mat, b_mat, c_mat, a_end, b_end, c_all, c_bytes;
  if (!mul_size(env, (size_t)M, (size_t)K, &a_mat, "a") || !mul_size(env, (size_t)(batch - 1), (size_t)aStride, &a_end, "a") ||
      !add_size(env, a_end, a_mat, &a_end, "a") || !mul_size(env, (size_t)K, (size_t)N, &b_mat, "b") ||
      !mul_size(env, (size_t)(batch - 1), (size_t)bStride, &b_end, "b") || !add_size(env, b_end, b_mat, &b_end, "b") ||
      !mul_size(env, (size_t)M, (size_t)N, &c_mat, "c") || !mul_size(env, (size_t)batch, c_mat, &c_all, "c") ||
      !mul_size(env, c_all, sizeof(float), &c_bytes, "c")) {
    return NULL;
  }
  if (!need(env, la, a_end, "a") || !need(env, lb, b_end, "b") || !need(env, lc, c_all, "c")) return NULL;
  Instance *inst = instance(env);
  Pool *pool = inst == NULL ? NULL : inst->pool;
  const int epilogue = bias != NULL || act != 0;
  if (K == 0) {
    memset(c, 0, c_bytes);
    if (epilogue) epilogue_run(pool, c, (size_t)batch * M, (size_t)N, bias, act);
    return NULL;
  }
  if (batch == 1) {
    gemm_blocked(env, inst, gemm_of(ta, tb, M, N, K, a, b, 0.0f, c, bias, act));
    return NULL;
  }
  /* Items, each one call whatever thread runs it: split when the whole is worth a wake-up. */
  Items items = {gemm_of(ta, tb, M, N, K, a, b, 0.0f, c, NULL, 0), aStride, bStride};
  const double flops = 2.0 * batch * M * N * K;
  pool_run(flops < BLOCK_FLOPS ? NULL : pool, gemm_item, &items, batch);
  if (epilogue) epilogue_run(pool, c, (size_t)batch * M, (size_t)N, bias, act);
  return NULL;
}

/* Geometry array layout shared with loader.ts (GEOMETRY_FIELDS). */
enum { G_B, G_H, G_W, G_CI, G_OH, G_OW, G_CO, G_KH, G_KW, G_SH, G_SW, G_DH, G_DW, G_PT, G_PL, G_COUNT };

/* True when the column matrix of this conv is x itself (1x1, stride 1, no padding). */
static int columns_are_input(const int32_t *g) {
  return g[G_KH] == 1 && g[G_KW] == 1 && g[G_SH] == 1 && g[G_SW] == 1 && g[G_PT] == 0 && g[G_PL] == 0 && g[G_OH] == g[G_H] &&
         g[G_OW] == g[G_W];
}

/* Rows [r0, r1) of the column matrix [B*OH*OW, KH*KW*CI] (rows are output positions b, oh, ow) into cols. */
static void im2col_rows(const float *x, float *cols, const int32_t *g, int64_t r0, int64_t r1) {
  const int32_t H = g[G_H], W = g[G_W], C = g[G_CI], OH = g[G_OH], OW = g[G_OW], KH = g[G_KH], KW = g[G_KW];
  const int32_t sh = g[G_SH], sw = g[G_SW], dh = g[G_DH], dw = g[G_DW], pt = g[G_PT], pl = g[G_PL];
  const int64_t per_item = (int64_t)OH * OW;
  float *d = cols;
  for (int64_t r = r0; r < r1; r++) {
    const int64_t b = r / per_item;
    const int32_t at = (int32_t)(r - b * per_item), oh = at / OW, ow = at % OW;
    const float *img = x + (size_t)b * H * W * C;
    for (int32_t kh = 0; kh < KH; kh++) {
      const int32_t ih = oh * sh - pt + kh * dh;
      if (ih < 0 || ih >= H) {
        memset(d, 0, (size_t)KW * C * sizeof(float));
        d += (size_t)KW * C;
        continue;
      }
      for (int32_t kw = 0; kw < KW; kw++) {
        const int32_t iw = ow * sw - pl + kw * dw;
        if (iw < 0 || iw >= W) memset(d, 0, (size_t)C * sizeof(float));
        else memcpy(d, img + ((size_t)ih * W + iw) * C, (size_t)C * sizeof(float));
        d += C;
      }
    }
  }
}

/* Scatter-add the column matrix of batch items [b0, b0 + nb) into dx (zeroed by the caller). */
static void col2im_add(const float *cols, float *dx, const int32_t *g, int32_t b0, int32_t nb) {
  const int32_t H = g[G_H], W = g[G_W], C = g[G_CI], OH = g[G_OH], OW = g[G_OW], KH = g[G_KH], KW = g[G_KW];
  const int32_t sh = g[G_SH], sw = g[G_SW], dh = g[G_DH], dw = g[G_DW], pt = g[G_PT], pl = g[G_PL];
  const float *s = cols;
  for (int32_t b = b0; b < b0 + nb; b++) {
    float *img = dx + (size_t)b * H * W * C;
    for (int32_t oh = 0; oh < OH; oh++) {
      for (int32_t ow = 0; ow < OW; ow++) {
        for (int32_t kh = 0; kh < KH; kh++) {
          const int32_t ih = oh * sh - pt + kh * dh;
          if (ih < 0 || ih >= H) {
            s += (size_t)KW * C;
            continue;
          }
          for (int32_t kw = 0; kw < KW; kw++) {
            const int32_t iw = ow * sw - pl + kw * dw;
            if (iw >= 0 && iw < W) {
              float *d = img + ((size_t)ih * W + iw) * C;
              for (int32_t c = 0; c < C; c++) d[c] += s[c];
            }
            s += C;
          }
        }
      }
    }
  }
}

/* Batch items per chunk so that a chunk's column matrix holds at most `budget` floats. */
static int32_t chunk_items(const int32_t *g, int64_t budget) {
  /* conv_args checked that OH*OW (rows) and KH*KW*CI (K) each fit in int32: no overflow here. */
  const int64_t per_item = (int64_t)g[G_OH] * g[G_OW] * ((int64_t)g[G_KH] * g[G_KW] * g[G_CI]);
  int64_t n = per_item > 0 ? budget / per_item : g[G_B];
  if (n < 1) n = 1;
  if (n > g[G_B]) n = g[G_B];
  return (int32_t)n;
}

typedef struct {
  const int32_t *g;
  float *a; /* x (forward, filter grad) or dy (input grad) */
  float *w; /* filter (forward, input grad) or dy (filter grad) */
  float *out;
  int64_t budget;
} ConvArgs;

static int conv_args(napi_env env, napi_callback_info info, ConvArgs *ca, const char *names[3], const int which_sizes[3]) {
  size_t argc = 5;
  napi_value argv[5];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 5) return throw_type(env, "a conv takes 5 arguments");
  size_t la, lw, lo;
  double budget;
  if (!get_f32(env, argv[0], &ca->a, &la) || !get_f32(env, argv[1], &ca->w, &lw) || !get_f32(env, argv[2], &ca->out, &lo) ||
      !get_geometry(env, argv[3], &ca->g, G_COUNT)) {
    return 0;
  }
  if (napi_get_value_double(env, argv[4], &budget) != napi_ok || !(budget >= 1)) return throw_type(env, "expected a positive float budget");
  ca->budget = (int64_t)budget;
  const int32_t *g = ca->g;
  for (int i = 0; i < G_COUNT; i++) {
    if (g[i] < 0) return throw_type(env, "negative geometry value");
  }
  /* Every size below is a checked product: B*H*W*CI wrapping at 2^64 once passed with one-element arrays. */
  const int32_t x_dims[4] = {g[G_B], g[G_H], g[G_W], g[G_CI]};
  const int32_t w_dims[4] = {g[G_KH], g[G_KW], g[G_CI], g[G_CO]};
  const int32_t y_dims[4] = {g[G_B], g[G_OH], g[G_OW], g[G_CO]};
  const int32_t k_dims[3] = {g[G_KH], g[G_KW], g[G_CI]};
  const int32_t r_dims[3] = {g[G_B], g[G_OH], g[G_OW]};
  size_t xs, ws, ys, k, rows, bytes;
  if (!product(env, x_dims, 4, &xs, "x") || !product(env, w_dims, 4, &ws, "filter") || !product(env, y_dims, 4, &ys, "y") ||
      !mul_size(env, xs, sizeof(float), &bytes, "x") || !mul_size(env, ys, sizeof(float), &bytes, "y") ||
      !mul_size(env, ws, sizeof(float), &bytes, "filter") || !product(env, k_dims, 3, &k, "filter taps (KH*KW*CI)") ||
      !product(env, r_dims, 3, &rows, "output positions (B*OH*OW)")) {
    return 0;
  }
  /* OpenBLAS takes M, N, K and leading dimensions as int: the GEMMs' dimensions must fit. */
  if (!fits_blas_int(env, k, "filter taps (KH*KW*CI)") || !fits_blas_int(env, rows, "output positions (B*OH*OW)")) return 0;
  const size_t sizes[3] = {xs, ws, ys};
  const size_t have[3] = {la, lw, lo};
  for (int i = 0; i < 3; i++) {
    if (!need(env, have[i], sizes[which_sizes[i]], names[i])) return 0;
  }
  return 1;
}

/* One convolution's arguments and plan, shared by the pool's threads. */
typedef struct {
  const int32_t *g;
  const float *a, *w;
  float *out;
  Instance *inst;
  int64_t rows;       /* output positions B*OH*OW */
  int32_t K, CO;      /* filter taps KH*KW*CI, output channels */
  int64_t chunk;      /* rows (forward) or items (gradients) per column matrix */
  int32_t b0, nb;     /* filter gradient: the chunk of items in progress */
  const float *bias;  /* forward: the epilogue's bias (or NULL) and activation, on each chunk's rows */
  int32_t act;
} Conv;

/* Forward, block i: im2col of its rows in chunks, each times the filter (one single-thread sgemm). */
static void forward_block(void *arg, int i, int parts, int thread) {
  const Conv *c = (const Conv *)arg;
  float *cols = c->inst->scratch[thread];
  int64_t lo, hi;
  part_range(c->rows, i, parts, &lo, &hi);
  for (int64_t r = lo; r < hi; r += c->chunk) {
    const int64_t n = hi - r < c->chunk ? hi - r : c->chunk;
    im2col_rows(c->a, cols, c->g, r, r + n);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int32_t)n, c->CO, c->K, 1.0f, cols, c->K, c->w, c->CO, 0.0f,
                c->out + (size_t)r * c->CO, c->CO);
    /* The epilogue while the chunk's rows are in cache (each value alone: the same bits as after). */
    if (c->bias != NULL || c->act != 0) epilogue_span(c->out + (size_t)r * c->CO, (size_t)n, (size_t)c->CO, c->bias, c->act);
  }
}

/*
 * conv2dForward(x, filter, y, geometry, columnBudget[, bias | null, activation]): y = conv(x,
 * filter), then act(y + bias) per output channel on each block's rows (biasActivation's codes).
 */
static napi_value conv2d_forward(napi_env env, napi_callback_info info) {
  ConvArgs ca;
  const char *names[3] = {"x", "filter", "y"};
  const int sizes[3] = {0, 1, 2};
  if (!conv_args(env, info, &ca, names, sizes)) return NULL;
  const int32_t *g = ca.g;
  float *bias = NULL;
  int32_t act = 0;
  size_t argc = 7;
  napi_value argv[7];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc >= 7 && !get_epilogue(env, argv + 5, (size_t)g[G_CO], &bias, &act)) return NULL;
  const int32_t K = g[G_KH] * g[G_KW] * g[G_CI], CO = g[G_CO];
  const int64_t rows = (int64_t)g[G_B] * g[G_OH] * g[G_OW];
  if (rows == 0 || CO == 0) return NULL;
  Instance *inst = instance(env);
  Pool *pool = inst == NULL ? NULL : inst->pool;
  if (K == 0) {
    memset(ca.out, 0, (size_t)rows * CO * sizeof(float));
    if (bias != NULL || act != 0) epilogue_run(pool, ca.out, (size_t)rows, (size_t)CO, bias, act);
    return NULL;
  }
  if (columns_are_input(g)) {
    gemm_blocked(env, inst, gemm_of(0, 0, (int32_t)rows, CO, K, ca.a, ca.w, 0.0f, ca.out, bias, act));
    return NULL;
  }
  const int parts = blocks_for(2.0 * rows * K * CO, (double)rows / MIN_EXTENT);
  int64_t chunk = ca.budget / K;
  if (chunk < 1) chunk = 1;
  if (chunk > (rows + parts - 1) / parts) chunk = (rows + parts - 1) / parts;
  if (!scratch_each(env, inst, parts > 1 ? pool_threads(pool) : 1, (size_t)chunk * K)) return NULL;
  Conv c = {g, ca.a, ca.w, ca.out, inst, rows, K, CO, chunk, 0, 0, bias, act};
  pool_run(pool, forward_block, &c, parts);
  return NULL;
}

/* Filter gradient, part i: im2col of a share of the chunk's rows into the shared column matrix. */
static void filter_columns(void *arg, int i, int parts, int thread) {
  (void)thread;
  const Conv *c = (const Conv *)arg;
  const int64_t per_item = (int64_t)c->g[G_OH] * c->g[G_OW], first = (int64_t)c->b0 * per_item;
  int64_t lo, hi;
  part_range((int64_t)c->nb * per_item, i, parts, &lo, &hi);
  im2col_rows(c->a, c->inst->scratch[0] + (size_t)lo * c->K, c->g, first + lo, first + hi);
}

/* Filter gradient, block i of the batch's items: its sum colsᵀ · dy in chunks, into dw (block 0) or its partial. */
static void filter_block(void *arg, int i, int parts, int thread) {
  const Conv *c = (const Conv *)arg;
  const int64_t per_item = (int64_t)c->g[G_OH] * c->g[G_OW];
  float *cols = c->inst->scratch[thread];
  float *sum = i == 0 ? c->out : c->inst->partials + (size_t)(i - 1) * c->K * c->CO;
  int64_t lo, hi;
  part_range(c->g[G_B], i, parts, &lo, &hi);
  for (int64_t b0 = lo; b0 < hi; b0 += c->chunk) {
    const int64_t n = (hi - b0 < c->chunk ? hi - b0 : c->chunk) * per_item;
    im2col_rows(c->a, cols, c->g, b0 * per_item, b0 * per_item + n);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c->K, c->CO, (int32_t)n, 1.0f, cols, c->K, c->w + (size_t)b0 * per_item * c->CO, c->CO,
                b0 == lo ? 0.0f : 1.0f, sum, c->CO);
  }
}

/*
 * conv2dBackpropFilter(x, dy, dw, geometry, columnBudget): dw = colsᵀ · dy, a sum over the batch.
 * The batch is cut into blocks of items (from the shape), each block's sum computed by one thread
 * in chunks of the column budget, and the blocks' sums added in order.
 */
static napi_value conv2d_backprop_filter(napi_env env, napi_callback_info info) {
  ConvArgs ca;
  const char *names[3] = {"x", "dy", "dw"};
  const int sizes[3] = {0, 2, 1};
  if (!conv_args(env, info, &ca, names, sizes)) return NULL;
  const int32_t *g = ca.g;
  const int32_t K = g[G_KH] * g[G_KW] * g[G_CI], CO = g[G_CO], rows = g[G_OH] * g[G_OW];
  if (K == 0 || CO == 0) return NULL;
  if (g[G_B] == 0 || rows == 0) {
    memset(ca.out, 0, (size_t)K * CO * sizeof(float));
    return NULL;
  }
  Instance *inst = instance(env);
  Pool *pool = inst == NULL ? NULL : inst->pool;
  if (columns_are_input(g)) {
    gemm_blocked(env, inst, gemm_of(1, 0, K, CO, g[G_B] * rows, ca.a, ca.w, 0.0f, ca.out, NULL, 0));
    return NULL;
  }
  const int32_t bc = chunk_items(g, ca.budget);
  const int parts = blocks_for(2.0 * g[G_B] * rows * K * CO, fmin((double)g[G_B], (double)g[G_B] * rows / MIN_SUM));
  Conv c = {g, ca.a, ca.w, ca.out, inst, (int64_t)g[G_B] * rows, K, CO, bc, 0, 0, NULL, 0};
  if (parts > 1) {
    if (!scratch_each(env, inst, pool_threads(pool), (size_t)bc * rows * K) || partials_floats(env, inst, (size_t)(parts - 1) * K * CO) == NULL) return NULL;
    pool_run(pool, filter_block, &c, parts);
    reduce_partials(pool, ca.out, inst->partials, (size_t)K * CO, parts - 1);
    return NULL;
  }
  /* One block (a batch of one item, say): chunks in order, each one's rows written by the threads
   * and its product cut into blocks of dw's rows or columns. */
  if (!scratch_each(env, inst, 1, (size_t)bc * rows * K)) return NULL;
  for (int32_t b0 = 0; b0 < g[G_B]; b0 += bc) {
    c.b0 = b0;
    c.nb = g[G_B] - b0 < bc ? g[G_B] - b0 : bc;
    const int64_t n = (int64_t)c.nb * rows;
    pool_run(n * K < 16384 ? NULL : pool, filter_columns, &c, pool_threads(pool));
    if (!gemm_blocked(env, inst, gemm_of(1, 0, K, CO, (int32_t)n, inst->scratch[0], ca.w + (size_t)b0 * rows * CO, b0 == 0 ? 0.0f : 1.0f, ca.out, NULL, 0))) return NULL;
  }
  return NULL;
}

/* Input gradient, block i: its items' dx zeroed, then in chunks of items dy · filterᵀ scattered back. */
static void input_block(void *arg, int i, int parts, int thread) {
  const Conv *c = (const Conv *)arg;
  const int32_t *g = c->g;
  const size_t item = (size_t)g[G_H] * g[G_W] * g[G_CI];
  const int64_t per_item = (int64_t)g[G_OH] * g[G_OW];
  float *cols = c->inst->scratch[thread];
  int64_t lo, hi;
  part_range(g[G_B], i, parts, &lo, &hi);
  memset(c->out + (size_t)lo * item, 0, (size_t)(hi - lo) * item * sizeof(float));
  for (int64_t b0 = lo; b0 < hi; b0 += c->chunk) {
    const int32_t nb = (int32_t)(hi - b0 < c->chunk ? hi - b0 : c->chunk);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int32_t)(nb * per_item), c->K, c->CO, 1.0f, c->a + (size_t)b0 * per_item * c->CO,
                c->CO, c->w, c->CO, 0.0f, cols, c->K);
    col2im_add(cols, c->out, g, (int32_t)b0, nb);
  }
}

/* conv2dBackpropInput(dy, filter, dx, geometry, columnBudget): dx = col2im(dy · filterᵀ). */
static napi_value conv2d_backprop_input(napi_env env, napi_callback_info info) {
  ConvArgs ca;
  const char *names[3] = {"dy", "filter", "dx"};
  const int sizes[3] = {2, 1, 0};
  if (!conv_args(env, info, &ca, names, sizes)) return NULL;
  const int32_t *g = ca.g;
  const int32_t K = g[G_KH] * g[G_KW] * g[G_CI], CO = g[G_CO], rows = g[G_OH] * g[G_OW];
  const size_t xs = (size_t)g[G_B] * g[G_H] * g[G_W] * g[G_CI];
  Instance *inst = instance(env);
  Pool *pool = inst == NULL ? NULL : inst->pool;
  if (columns_are_input(g) && CO > 0 && K > 0) {
    gemm_blocked(env, inst, gemm_of(0, 1, g[G_B] * rows, K, CO, ca.a, ca.w, 0.0f, ca.out, NULL, 0));
    return NULL;
  }
  if (g[G_B] == 0 || rows == 0 || K == 0 || CO == 0) {
    memset(ca.out, 0, xs * sizeof(float));
    return NULL;
  }
  /* Blocks of whole items: col2im adds overlapping windows of one item, so an item is one thread's. */
  const int parts = blocks_for(2.0 * g[G_B] * rows * K * CO, fmin((double)g[G_B], (double)g[G_B] * rows / MIN_EXTENT));
  const int32_t bc = chunk_items(g, ca.budget);
  if (!scratch_each(env, inst, parts > 1 ? pool_threads(pool) : 1, (size_t)bc * rows * K)) return NULL;
  Conv c = {g, ca.a, ca.w, ca.out, inst, (int64_t)g[G_B] * rows, K, CO, bc, 0, 0, NULL, 0};
  pool_run(pool, input_block, &c, parts);
  return NULL;
}

/*
 * biasActivation(y, bias | null, activation): y[r, c] = act(y[r, c] + bias[c]) in place (0 linear,
 * 1 relu as tfjs' Relu: 0 where the sign bit is set, 2 relu6); y's length a multiple of bias's.
 * Rows split over the pool's threads (each element alone: the same bits at any split).
 */
static napi_value bias_activation(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) return throw_type(env, "biasActivation takes 3 arguments"), NULL;
  float *y, *bias = NULL;
  size_t ly, lb = 0;
  int32_t act;
  if (!get_f32(env, argv[0], &y, &ly) || !get_i32(env, argv[2], &act)) return NULL;
  napi_valuetype bt;
  CHECK(napi_typeof(env, argv[1], &bt));
  if (bt != napi_null && bt != napi_undefined && !get_f32(env, argv[1], &bias, &lb)) return NULL;
  if (bias != NULL && (lb == 0 || ly % lb != 0)) return throw_type(env, "bias length must divide the output's"), NULL;
  if (act < 0 || act > 2) return throw_type(env, "activation must be 0 (linear), 1 (relu) or 2 (relu6)"), NULL;
  if (ly == 0) return NULL;
  const size_t cols = bias != NULL ? lb : ly;
  Instance *inst = instance(env);
  epilogue_run(inst == NULL ? NULL : inst->pool, y, ly / cols, cols, bias, act);
  return NULL;
}

/* maxPool(x, y, geometry) and maxPoolGrad(x, dy, dx, geometry, reluX | null): maxpool.c, on this instance's threads. */
static napi_value max_pool_entry(napi_env env, napi_callback_info info) {
  Instance *inst = instance(env);
  return max_pool(env, info, inst == NULL ? NULL : inst->pool);
}
static napi_value max_pool_grad_entry(napi_env env, napi_callback_info info) {
  Instance *inst = instance(env);
  return max_pool_grad(env, info, inst == NULL ? NULL : inst->pool);
}

/*
 * setThreads(n[, idleMicroseconds]): a pool of n - 1 workers beside the caller for this instance's
 * kernels (kept until n changes; a new one starts before the old stops, which stays when it cannot),
 * OpenBLAS on one thread (process-wide); idleMicroseconds: how long idle threads watch (pool_set_idle).
 */
static napi_value set_threads(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t n;
  double idle_us = -1;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || !get_i32(env, argv[0], &n)) return NULL;
  if (n < 1 || n > MAX_THREADS) return throw_type(env, "threads must be at least 1 and at most 256"), NULL;
  napi_valuetype t = napi_undefined;
  if (argc >= 2) CHECK(napi_typeof(env, argv[1], &t));
  if (t != napi_undefined && (napi_get_value_double(env, argv[1], &idle_us) != napi_ok || !(idle_us >= 0 && idle_us <= 1000000) || idle_us != floor(idle_us))) {
    return throw_type(env, "idle microseconds must be a whole number from 0 to 1000000"), NULL;
  }
  Instance *inst = instance(env);
  if (inst == NULL) return napi_throw_error(env, "ND_NATIVE", "the addon's instance data is missing"), NULL;
  openblas_set_num_threads(1);
  if (pool_threads(inst->pool) != n) {
    Pool *next = n > 1 ? pool_create(n) : NULL;
    if (n > 1 && next == NULL) return napi_throw_error(env, "ND_NATIVE_THREADS", "could not start the kernel threads (out of memory or threads); the threads before are kept"), NULL;
    pool_destroy(inst->pool);
    inst->pool = next;
  }
  if (idle_us >= 0) inst->idle_ns = (int64_t)idle_us * 1000 + 1; /* + 1: 0 means never set */
  if (inst->idle_ns > 0) pool_set_idle(inst->pool, inst->idle_ns - 1);
  return NULL;
}

/*
 * info(): { config, corename, threads, poolThreads, poolCalls, poolParts }: the OpenBLAS loaded,
 * its threads, the pool's, and the calls the pool's workers shared since it started (pool_counts).
 */
static napi_value blas_info(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result, config, core, threads, pool;
  Instance *inst = instance(env);
  CHECK(napi_create_object(env, &result));
  CHECK(napi_create_string_utf8(env, openblas_get_config(), NAPI_AUTO_LENGTH, &config));
  CHECK(napi_create_string_utf8(env, openblas_get_corename(), NAPI_AUTO_LENGTH, &core));
  CHECK(napi_create_int32(env, openblas_get_num_threads(), &threads));
  CHECK(napi_set_named_property(env, result, "config", config));
  CHECK(napi_set_named_property(env, result, "corename", core));
  CHECK(napi_set_named_property(env, result, "threads", threads));
  CHECK(napi_create_int32(env, pool_threads(inst == NULL ? NULL : inst->pool), &pool));
  CHECK(napi_set_named_property(env, result, "poolThreads", pool));
  double counts[2];
  pool_counts(inst == NULL ? NULL : inst->pool, &counts[0], &counts[1]);
  CHECK(napi_create_double(env, counts[0], &threads) == napi_ok ? napi_set_named_property(env, result, "poolCalls", threads) : napi_generic_failure);
  CHECK(napi_create_double(env, counts[1], &pool) == napi_ok ? napi_set_named_property(env, result, "poolParts", pool) : napi_generic_failure);
  return result;
}

NAPI_MODULE_INIT() {
  Instance *inst = (Instance *)calloc(1, sizeof(Instance));
  if (inst == NULL || napi_set_instance_data(env, inst, instance_free, NULL) != napi_ok) return NULL;
  const napi_property_descriptor props[] = {
      {"sgemmBatched", NULL, sgemm_batched, NULL, NULL, NULL, napi_enumerable, NULL},
      {"conv2dForward", NULL, conv2d_forward, NULL, NULL, NULL, napi_enumerable, NULL},
      {"conv2dBackpropFilter", NULL, conv2d_backprop_filter, NULL, NULL, NULL, napi_enumerable, NULL},
      {"conv2dBackpropInput", NULL, conv2d_backprop_input, NULL, NULL, NULL, napi_enumerable, NULL},
      {"biasActivation", NULL, bias_activation, NULL, NULL, NULL, napi_enumerable, NULL},
      {"maxPool", NULL, max_pool_entry, NULL, NULL, NULL, napi_enumerable, NULL},
      {"maxPoolGrad", NULL, max_pool_grad_entry, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setThreads", NULL, set_threads, NULL, NULL, NULL, napi_enumerable, NULL},
      {"info", NULL, blas_info, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok || !elementwise_define(env, exports) || !optimizer_define(env, exports)) return NULL;
  napi_value abi;
  if (napi_create_int32(env, neural_diff_blas_abi_6, &abi) != napi_ok || napi_set_named_property(env, exports, "abi", abi) != napi_ok) return NULL;
  return exports;
}
