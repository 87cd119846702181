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
 * Nothing here allocates wasm memory, so the views stay valid for the whole call. The column
 * matrix lives in a scratch buffer of this addon instance (one per Node thread that loads it),
 * kept between calls so large convolutions do not page-fault a fresh mapping every step.
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * The interface version loader.ts expects. The loader looks for the exported symbol
 * NEURAL_DIFF_BLAS_ABI_SYMBOL in the file's dynamic symbols before loading it (another project's
 * addon is refused without running its code) and checks the `abi` export after loading.
 */
#define NEURAL_DIFF_BLAS_ABI 1
__attribute__((visibility("default"), used)) const int neural_diff_blas_abi_1 = NEURAL_DIFF_BLAS_ABI;

/* OpenBLAS extensions (declared in its cblas.h; repeated so the intent is visible). */
extern void openblas_set_num_threads(int num_threads);
extern int openblas_get_num_threads(void);
extern char *openblas_get_config(void);
extern char *openblas_get_corename(void);

typedef struct {
  float *scratch;
  size_t capacity; /* floats */
} Instance;

static void instance_free(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  Instance *inst = (Instance *)data;
  free(inst->scratch);
  free(inst);
}

static float *scratch_floats(napi_env env, size_t floats) {
  Instance *inst = NULL;
  if (napi_get_instance_data(env, (void **)&inst) != napi_ok || inst == NULL) return NULL;
  if (floats > SIZE_MAX / sizeof(float)) return NULL;
  if (inst->capacity < floats) {
    free(inst->scratch);
    inst->scratch = (float *)malloc(floats * sizeof(float));
    inst->capacity = inst->scratch == NULL ? 0 : floats;
  }
  return inst->scratch;
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

/*
 * sgemmBatched(transA, transB, batch, M, N, K, a, aStride, b, bStride, c)
 * For i < batch: C_i[M, N] = op(A_i) op(B_i), row-major, A_i at a + i*aStride (aStride 0 broadcasts
 * one matrix), op(A_i) is [M, K] (A_i stored [K, M] when transA), op(B_i) is [K, N].
 */
static napi_value sgemm_batched(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value argv[11];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 11) return throw_type(env, "sgemmBatched takes 11 arguments"), NULL;
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
  if (K == 0) {
    memset(c, 0, c_bytes);
    return NULL;
  }
  for (int32_t i = 0; i < batch; i++) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1.0f,
                a + (size_t)i * aStride, ta ? M : K, b + (size_t)i * bStride, tb ? K : N, 0.0f, c + (size_t)i * M * N, N);
  }
  return NULL;
}

/* Geometry array layout shared with loader.ts (GEOMETRY_FIELDS). */
enum { G_B, G_H, G_W, G_CI, G_OH, G_OW, G_CO, G_KH, G_KW, G_SH, G_SW, G_DH, G_DW, G_PT, G_PL, G_COUNT };

/* True when the column matrix of this conv is x itself (1x1, stride 1, no padding). */
static int columns_are_input(const int32_t *g) {
  return g[G_KH] == 1 && g[G_KW] == 1 && g[G_SH] == 1 && g[G_SW] == 1 && g[G_PT] == 0 && g[G_PL] == 0 && g[G_OH] == g[G_H] &&
         g[G_OW] == g[G_W];
}

/* Rows of batch items [b0, b0 + nb) of the column matrix [nb*OH*OW, KH*KW*CI] into cols. */
static void im2col(const float *x, float *cols, const int32_t *g, int32_t b0, int32_t nb) {
  const int32_t H = g[G_H], W = g[G_W], C = g[G_CI], OH = g[G_OH], OW = g[G_OW], KH = g[G_KH], KW = g[G_KW];
  const int32_t sh = g[G_SH], sw = g[G_SW], dh = g[G_DH], dw = g[G_DW], pt = g[G_PT], pl = g[G_PL];
  float *d = cols;
  for (int32_t b = b0; b < b0 + nb; b++) {
    const float *img = x + (size_t)b * H * W * C;
    for (int32_t oh = 0; oh < OH; oh++) {
      for (int32_t ow = 0; ow < OW; ow++) {
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

/* conv2dForward(x, filter, y, geometry, columnBudget): y = conv(x, filter). */
static napi_value conv2d_forward(napi_env env, napi_callback_info info) {
  ConvArgs ca;
  const char *names[3] = {"x", "filter", "y"};
  const int sizes[3] = {0, 1, 2};
  if (!conv_args(env, info, &ca, names, sizes)) return NULL;
  const int32_t *g = ca.g;
  const int32_t K = g[G_KH] * g[G_KW] * g[G_CI], CO = g[G_CO], rows = g[G_OH] * g[G_OW];
  if (g[G_B] == 0 || rows == 0 || CO == 0) return NULL;
  if (K == 0) {
    memset(ca.out, 0, (size_t)g[G_B] * rows * CO * sizeof(float));
    return NULL;
  }
  if (columns_are_input(g)) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g[G_B] * rows, CO, K, 1.0f, ca.a, K, ca.w, CO, 0.0f, ca.out, CO);
    return NULL;
  }
  const int32_t bc = chunk_items(g, ca.budget);
  float *cols = scratch_floats(env, (size_t)bc * rows * K);
  if (cols == NULL) return napi_throw_error(env, "ND_NATIVE_MEMORY", "out of memory for the column matrix"), NULL;
  for (int32_t b0 = 0; b0 < g[G_B]; b0 += bc) {
    const int32_t nb = g[G_B] - b0 < bc ? g[G_B] - b0 : bc;
    im2col(ca.a, cols, g, b0, nb);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb * rows, CO, K, 1.0f, cols, K, ca.w, CO, 0.0f,
                ca.out + (size_t)b0 * rows * CO, CO);
  }
  return NULL;
}

/* conv2dBackpropFilter(x, dy, dw, geometry, columnBudget): dw = colsᵀ · dy, summed over chunks. */
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
  if (columns_are_input(g)) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, CO, g[G_B] * rows, 1.0f, ca.a, K, ca.w, CO, 0.0f, ca.out, CO);
    return NULL;
  }
  const int32_t bc = chunk_items(g, ca.budget);
  float *cols = scratch_floats(env, (size_t)bc * rows * K);
  if (cols == NULL) return napi_throw_error(env, "ND_NATIVE_MEMORY", "out of memory for the column matrix"), NULL;
  for (int32_t b0 = 0; b0 < g[G_B]; b0 += bc) {
    const int32_t nb = g[G_B] - b0 < bc ? g[G_B] - b0 : bc;
    im2col(ca.a, cols, g, b0, nb);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, CO, nb * rows, 1.0f, cols, K, ca.w + (size_t)b0 * rows * CO, CO,
                b0 == 0 ? 0.0f : 1.0f, ca.out, CO);
  }
  return NULL;
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
  if (columns_are_input(g) && CO > 0 && K > 0) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g[G_B] * rows, K, CO, 1.0f, ca.a, CO, ca.w, CO, 0.0f, ca.out, K);
    return NULL;
  }
  memset(ca.out, 0, xs * sizeof(float));
  if (g[G_B] == 0 || rows == 0 || K == 0 || CO == 0) return NULL;
  const int32_t bc = chunk_items(g, ca.budget);
  float *cols = scratch_floats(env, (size_t)bc * rows * K);
  if (cols == NULL) return napi_throw_error(env, "ND_NATIVE_MEMORY", "out of memory for the column matrix"), NULL;
  for (int32_t b0 = 0; b0 < g[G_B]; b0 += bc) {
    const int32_t nb = g[G_B] - b0 < bc ? g[G_B] - b0 : bc;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb * rows, K, CO, 1.0f, ca.a + (size_t)b0 * rows * CO, CO, ca.w, CO, 0.0f,
                cols, K);
    col2im_add(cols, ca.out, g, b0, nb);
  }
  return NULL;
}

/*
 * biasActivation(y, bias | null, activation): y[r, c] = act(y[r, c] + bias[c]) in place, for the
 * fused kernels; activation 0 linear, 1 relu, 2 relu6. y's length is a multiple of bias's.
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
  const size_t cols = bias != NULL ? lb : ly;
  for (size_t r = 0; r < ly; r += cols) {
    float *row = y + r;
    if (bias != NULL)
      for (size_t c = 0; c < cols; c++) row[c] += bias[c];
    if (act == 1) {
      for (size_t c = 0; c < cols; c++) row[c] = row[c] < 0.0f ? 0.0f : row[c];
    } else if (act == 2) {
      for (size_t c = 0; c < cols; c++) row[c] = row[c] < 0.0f ? 0.0f : (row[c] > 6.0f ? 6.0f : row[c]);
    }
  }
  return NULL;
}

/* setThreads(n): OpenBLAS's thread count for every later call (process-wide). */
static napi_value set_threads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t n;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || !get_i32(env, argv[0], &n)) return NULL;
  if (n < 1) return throw_type(env, "threads must be at least 1"), NULL;
  openblas_set_num_threads(n);
  return NULL;
}

/* info(): { config, corename, threads } of the OpenBLAS that was loaded. */
static napi_value blas_info(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result, config, core, threads;
  CHECK(napi_create_object(env, &result));
  CHECK(napi_create_string_utf8(env, openblas_get_config(), NAPI_AUTO_LENGTH, &config));
  CHECK(napi_create_string_utf8(env, openblas_get_corename(), NAPI_AUTO_LENGTH, &core));
  CHECK(napi_create_int32(env, openblas_get_num_threads(), &threads));
  CHECK(napi_set_named_property(env, result, "config", config));
  CHECK(napi_set_named_property(env, result, "corename", core));
  CHECK(napi_set_named_property(env, result, "threads", threads));
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
      {"setThreads", NULL, set_threads, NULL, NULL, NULL, napi_enumerable, NULL},
      {"info", NULL, blas_info, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  napi_value abi;
  if (napi_create_int32(env, neural_diff_blas_abi_1, &abi) != napi_ok || napi_set_named_property(env, exports, "abi", abi) != napi_ok) return NULL;
  return exports;
}
