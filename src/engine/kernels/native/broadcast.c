/*
 * The native backend's broadcast and copy kernels (issue 63), on the addon's pool like
 * elementwise.c's:
 *
 *   binary        Add, Sub, Multiply, RealDiv, Maximum, Minimum, SquaredDifference with tfjs'
 *                 broadcasting: the same IEEE float32 operation per element as tfjs' kernel (its bits)
 *   transpose32   a permutation of 4-byte elements: transpose.c's copy, output rows split
 *
 * Each writes its output in order, one row of the innermost axis at a time, the others walked by
 * an odometer; rows are split into parts from the shape alone.
 */
#include "elementwise-common.h"

/*
 * ---- binary: Add, Sub, Multiply, RealDiv, Maximum, Minimum, SquaredDifference with broadcasting ----
 * The output written in order, rows of its innermost axis; each operand steps 1 or 0 (broadcast)
 * along that axis and by its own strides along the others (an odometer). The ops of the fused
 * chains (op_block), eight lanes at a time: tfjs' bits.
 */

#define MAX_BINARY_RANK 8

typedef struct {
  int op, rank;
  const float *a, *b;
  float *out;
  int64_t dims[MAX_BINARY_RANK], sa[MAX_BINARY_RANK], sb[MAX_BINARY_RANK];
  int64_t rows;
} Binary;

static inline vf binary8(int op, vf x, vf y) {
  switch (op) {
    case OP_ADD: return x + y;
    case OP_SUB: return x - y;
    case OP_MUL: return x * y;
    case OP_DIV: return x / y;
    case OP_MAX: return vpmax(x, y);
    case OP_MIN: return vpmin(x, y);
    default: return (x - y) * (x - y); /* OP_SQDIFF */
  }
}

/* One row of n values: a and b each step 1 along it, or 0 (one value repeated). */
static inline void binary_row(int op, float *d, const float *a, int ia, const float *b, int ib, int64_t n) {
  int64_t i = 0;
  const vf as = SPLAT(a[0]), bs = SPLAT(b[0]);
  for (; i + LANES <= n; i += LANES) store8(d + i, binary8(op, ia ? load8(a + i) : as, ib ? load8(b + i) : bs));
  if (i < n) store_tail(d + i, binary8(op, ia ? load_tail(a + i, n - i) : as, ib ? load_tail(b + i, n - i) : bs), n - i);
}

/* Rows longer than this are cut into pieces of it, so a long row alone still splits. */
#define ROW_PIECE 4096

VECTOR_CLONES static void binary_part(void *arg, int part, int parts, int thread) {
  (void)thread;
  const Binary *t = (const Binary *)arg;
  const int last = t->rank - 1;
  const int64_t inner = t->dims[last], pieces = (inner + ROW_PIECE - 1) / ROW_PIECE;
  int64_t lo, hi, index[MAX_BINARY_RANK];
  part_range(t->rows * pieces, part, parts, &lo, &hi);
  if (hi <= lo) return;
  int64_t rest = lo / pieces, piece = lo % pieces, at = 0, bt = 0;
  for (int d = last - 1; d >= 0; d--) {
    index[d] = rest % t->dims[d];
    rest /= t->dims[d];
    at += index[d] * t->sa[d];
    bt += index[d] * t->sb[d];
  }
  const int ia = t->sa[last] != 0, ib = t->sb[last] != 0;
  for (int64_t k = lo; k < hi; k++) {
    const int64_t r = k / pieces, c0 = piece * ROW_PIECE, n = inner - c0 < ROW_PIECE ? inner - c0 : ROW_PIECE;
    binary_row(t->op, t->out + r * inner + c0, t->a + at + (ia ? c0 : 0), ia, t->b + bt + (ib ? c0 : 0), ib, n);
    if (++piece < pieces) continue;
    piece = 0;
    for (int d = last - 1; d >= 0; d--) {
      at += t->sa[d];
      bt += t->sb[d];
      if (++index[d] < t->dims[d]) break;
      at -= t->sa[d] * t->dims[d];
      bt -= t->sb[d] * t->dims[d];
      index[d] = 0;
    }
  }
}

/*
 * binary(op, a, b, out, geometry): out = a op b, op an elementwise.ts code (add 0 ... sqdiff 6);
 * geometry = rank (1 to 8), then per output axis its size, a's stride, b's stride (elements; 0
 * where that operand is broadcast); the innermost strides 0 or 1.
 */
static napi_value binary(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  Binary t = {0};
  int32_t op;
  size_t la, lb, lo, lg;
  const int32_t *g;
  if (!args_of(env, info, argv, 5, "binary") || !i32_arg(env, argv[0], &op, "binary op") || !f32_arg(env, argv[1], (float **)&t.a, &la, "binary a") ||
      !f32_arg(env, argv[2], (float **)&t.b, &lb, "binary b") || !f32_arg(env, argv[3], &t.out, &lo, "binary out") ||
      !typed(env, argv[4], napi_int32_array, (void **)&g, &lg, "binary geometry")) {
    return NULL;
  }
  if (op < OP_ADD || op > OP_SQDIFF) return fail(env, 1, "binary: op must be 0 (add) to 6 (squared difference)"), NULL;
  if (lg < 1 || g[0] < 1 || g[0] > MAX_BINARY_RANK || lg < 1 + 3 * (size_t)g[0]) return fail(env, 1, "binary: the geometry holds a rank of 1 to 8, then a size and two strides per axis"), NULL;
  t.op = op;
  t.rank = g[0];
  size_t count = 1, ea = 1, eb = 1;
  for (int d = 0; d < t.rank; d++) {
    t.dims[d] = g[1 + 3 * d];
    t.sa[d] = g[2 + 3 * d];
    t.sb[d] = g[3 + 3 * d];
    if (t.dims[d] < 0 || t.sa[d] < 0 || t.sb[d] < 0) return fail(env, 1, "binary: negative size or stride"), NULL;
    if (__builtin_mul_overflow(count, (size_t)t.dims[d], &count)) return fail(env, 1, "binary: the sizes' product overflows"), NULL;
    if (t.dims[d] > 0 && (__builtin_add_overflow(ea, (size_t)(t.dims[d] - 1) * (size_t)t.sa[d], &ea) ||
                          __builtin_add_overflow(eb, (size_t)(t.dims[d] - 1) * (size_t)t.sb[d], &eb))) {
      return fail(env, 1, "binary: the strides overflow"), NULL;
    }
  }
  if (t.sa[t.rank - 1] > 1 || t.sb[t.rank - 1] > 1) return fail(env, 1, "binary: the innermost strides must be 0 or 1"), NULL;
  if (count == 0) return NULL;
  if (!holds(env, la, ea, "binary a") || !holds(env, lb, eb, "binary b") || !holds(env, lo, count, "binary out")) return NULL;
  t.rows = (int64_t)(count / (size_t)t.dims[t.rank - 1]);
  const int64_t pieces = (t.dims[t.rank - 1] + ROW_PIECE - 1) / ROW_PIECE;
  run(env, binary_part, &t, parts_for(t.rows * pieces, (double)t.dims[t.rank - 1] / (double)pieces));
  return NULL;
}

/* ---- transpose32: transpose.c's copy of 4-byte elements, output rows split ---- */

#define MAX_RANK 16

typedef struct {
  const uint32_t *x;
  uint32_t *out;
  int rank;
  int64_t dims[MAX_RANK], strides[MAX_RANK];
  int64_t rows; /* the output's rows: every axis but the innermost */
} Transpose;

static void transpose_part(void *arg, int part, int parts, int thread) {
  (void)thread;
  const Transpose *t = (const Transpose *)arg;
  const int last = t->rank - 1;
  const int64_t inner = t->dims[last], step = t->strides[last];
  int64_t lo, hi, index[MAX_RANK];
  part_range(t->rows, part, parts, &lo, &hi);
  if (hi <= lo) return;
  /* The first row's index over the outer axes and its start in x. */
  int64_t rest = lo, base = 0;
  for (int d = last - 1; d >= 0; d--) {
    index[d] = rest % t->dims[d];
    rest /= t->dims[d];
    base += index[d] * t->strides[d];
  }
  uint32_t *o = t->out + lo * inner;
  for (int64_t r = lo; r < hi; r++, o += inner) {
    const uint32_t *src = t->x + base;
    if (step == 1 && inner <= 64) {
      /* Short rows (an attention head's 16 values): fixed-size copies the compiler inlines, not a memcpy call per row. */
      int64_t i = 0;
      for (; i + 8 <= inner; i += 8) memcpy(o + i, src + i, 8 * sizeof(uint32_t));
      for (; i < inner; i++) o[i] = src[i];
    } else if (step == 1) memcpy(o, src, (size_t)inner * sizeof(uint32_t));
    else
      for (int64_t i = 0; i < inner; i++) o[i] = src[i * step];
    for (int d = last - 1; d >= 0; d--) {
      base += t->strides[d];
      if (++index[d] < t->dims[d]) break;
      base -= t->strides[d] * t->dims[d];
      index[d] = 0;
    }
  }
}

/*
 * transpose32(x, out, geometry): out written in order, geometry = rank, then per output axis its
 * size and its stride in x (elements), as transpose.ts's transposeGeometry gives (rank 2 to 16).
 * x and out: 4-byte elements (Float32Array, Int32Array or Uint32Array), the bits copied.
 */
static napi_value transpose32(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  Transpose t = {0};
  void *px, *po, *pg;
  size_t lx, lo, lg;
  napi_typedarray_type tx, to, tg;
  bool ok = false;
  if (!args_of(env, info, argv, 3, "transpose32")) return NULL;
  for (int j = 0; j < 3; j++) {
    if (napi_is_typedarray(env, argv[j], &ok) != napi_ok || !ok) return fail(env, 0, "transpose32: expected typed arrays"), NULL;
  }
  if (napi_get_typedarray_info(env, argv[0], &tx, &lx, &px, NULL, NULL) != napi_ok ||
      napi_get_typedarray_info(env, argv[1], &to, &lo, &po, NULL, NULL) != napi_ok ||
      napi_get_typedarray_info(env, argv[2], &tg, &lg, &pg, NULL, NULL) != napi_ok) {
    return fail(env, 0, "transpose32: unreadable typed arrays"), NULL;
  }
  const int four = (tx == napi_float32_array || tx == napi_int32_array || tx == napi_uint32_array) &&
                   (to == napi_float32_array || to == napi_int32_array || to == napi_uint32_array);
  if (!four || tg != napi_int32_array) return fail(env, 0, "transpose32: x and out hold 4-byte elements, the geometry is an Int32Array"), NULL;
  const int32_t *g = (const int32_t *)pg;
  if (lg < 1 || g[0] < 2 || g[0] > MAX_RANK || lg < 1 + 2 * (size_t)g[0]) return fail(env, 1, "transpose32: the geometry holds a rank of 2 to 16, then sizes and strides"), NULL;
  t.rank = g[0];
  size_t count = 1, extent = 1; /* elements; the last x element read + 1 */
  for (int d = 0; d < t.rank; d++) {
    t.dims[d] = g[1 + d];
    t.strides[d] = g[1 + t.rank + d];
    if (t.dims[d] < 0 || t.strides[d] < 0) return fail(env, 1, "transpose32: negative size or stride"), NULL;
    if (__builtin_mul_overflow(count, (size_t)t.dims[d], &count)) return fail(env, 1, "transpose32: the sizes' product overflows"), NULL;
    if (t.dims[d] > 0 && __builtin_add_overflow(extent, (size_t)(t.dims[d] - 1) * (size_t)t.strides[d], &extent)) {
      return fail(env, 1, "transpose32: the strides overflow"), NULL;
    }
  }
  if (count == 0) return NULL;
  if (!holds(env, lx, extent, "transpose32 x") || !holds(env, lo, count, "transpose32 out")) return NULL;
  t.x = (const uint32_t *)px;
  t.out = (uint32_t *)po;
  t.rows = (int64_t)(count / (size_t)t.dims[t.rank - 1]);
  run(env, transpose_part, &t, parts_for(t.rows, (double)t.dims[t.rank - 1]));
  return NULL;
}

int broadcast_define(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"binary", NULL, binary, NULL, NULL, NULL, napi_enumerable, NULL},
      {"transpose32", NULL, transpose32, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props) == napi_ok;
}
