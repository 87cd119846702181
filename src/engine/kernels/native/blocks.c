/*
 * Cutting products into blocks for the native backend's pool (blocks.h). Every choice here comes
 * from the shapes, never the thread count, so the bits of a result do not depend on how many
 * threads computed it: OpenBLAS's small-matrix kernels sum in another order than its large ones,
 * so a product cut differently rounds differently; cut the same way, it rounds the same.
 */
#include "blocks.h"
#include <cblas.h>

/*
 * Blocks a product is cut into: about one per BLOCK_FLOPS of work (a smaller block is not worth
 * waking a thread for), at most `most` (the caller's bound from MIN_EXTENT or MIN_SUM: thin
 * blocks cost the one-thread step more than they give), rounded down to
 * a count 2, 4 or 8 threads share evenly. From the shape alone, never the thread count.
 */
int blocks_for(double flops, double most) {
  static const int counts[] = {8, 6, 4, 2};
  double q = flops / BLOCK_FLOPS;
  if (q > most) q = most;
  for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
    if (q >= counts[i]) return counts[i];
  }
  return 1;
}

int span_parts(int64_t items, double cost, double least) {
  static const int counts[] = {8, 6, 4, 2};
  const double q = (double)items * cost / least;
  for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
    if (q >= counts[i] && items >= counts[i]) return counts[i];
  }
  return 1;
}

/* [*lo, *hi): part i of n over `extent`. */
void part_range(int64_t extent, int i, int n, int64_t *lo, int64_t *hi) {
  *lo = extent * i / n;
  *hi = extent * (i + 1) / n;
}

void gemm_block(void *arg, int i, int parts, int thread) {
  (void)thread;
  const Gemm *g = (const Gemm *)arg;
  int64_t lo, hi;
  part_range(g->by_rows ? g->M : g->N, i, parts, &lo, &hi);
  if (hi <= lo) return;
  const float *A = g->A, *B = g->B;
  float *C = g->C;
  int32_t M = g->M, N = g->N;
  if (g->by_rows) {
    A += g->ta ? lo : lo * g->lda;
    C += lo * g->ldc;
    M = (int32_t)(hi - lo);
  } else {
    B += g->tb ? lo * g->ldb : lo;
    C += lo;
    N = (int32_t)(hi - lo);
  }
  cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans, g->tb ? CblasTrans : CblasNoTrans, M, N, g->K, 1.0f, A, g->lda, B,
              g->ldb, g->beta, C, g->ldc);
  /* The epilogue while the block is in cache (each value alone: the same bits as a pass after). */
  if (g->bias != NULL || g->act != 0) {
    epilogue_strided(C, (size_t)M, (size_t)N, (size_t)g->ldc, g->bias == NULL ? NULL : g->by_rows ? g->bias : g->bias + lo, g->act);
  }
}

/* Block i of the sum over K: the first into C (with beta), the others into their partial. */
void gemm_k_block(void *arg, int i, int parts, int thread) {
  (void)thread;
  const Gemm *g = (const Gemm *)arg;
  int64_t lo, hi;
  part_range(g->K, i, parts, &lo, &hi);
  float *C = i == 0 ? g->C : g->partials + (size_t)(i - 1) * g->M * g->N;
  cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans, g->tb ? CblasTrans : CblasNoTrans, g->M, g->N, (int32_t)(hi - lo), 1.0f,
              g->A + (g->ta ? lo * g->lda : lo), g->lda, g->B + (g->tb ? lo : lo * g->ldb), g->ldb, i == 0 ? g->beta : 0.0f, C,
              i == 0 ? g->ldc : g->N);
}

/* dst += partial 0, then partial 1, ... per element in that order (the same bits however cut). */
typedef struct {
  float *dst;
  const float *partials;
  size_t n;
  int count;
} Reduce;

static void reduce_part(void *arg, int i, int parts, int thread) {
  (void)thread;
  const Reduce *r = (const Reduce *)arg;
  int64_t lo, hi;
  part_range((int64_t)r->n, i, parts, &lo, &hi);
  for (int c = 0; c < r->count; c++) {
    const float *p = r->partials + (size_t)c * r->n;
    for (int64_t x = lo; x < hi; x++) r->dst[x] += p[x];
  }
}

/* Add the `count` partials of n floats into dst in order, rows of the work on the pool. */
void reduce_partials(Pool *pool, float *dst, const float *partials, size_t n, int count) {
  Reduce r = {dst, partials, n, count};
  pool_run(pool, reduce_part, &r, (double)n * count < SPLIT_ELEMENTS ? 1 : span_parts((int64_t)n, count, SPAN_LEAST));
}


/* act(y + bias) over rows [0, rows) of y [rows, cols] in place (see blocks.h). */
void epilogue_span(float *y, size_t rows, size_t cols, const float *bias, int act) {
  epilogue_strided(y, rows, cols, cols, bias, act);
}

void epilogue_strided(float *y, size_t rows, size_t cols, size_t stride, const float *bias, int act) {
  for (size_t r = 0; r < rows; r++) {
    float *row = y + r * stride;
    if (bias != NULL)
      for (size_t c = 0; c < cols; c++) row[c] += bias[c];
    if (act == 1) {
      /* tfjs' Relu (wasm): zero wherever the sign bit is set (-0 and a NaN with it too), so a ReLU
       * moved into the epilogue keeps the Relu kernel's bits. */
      for (size_t c = 0; c < cols; c++) row[c] = __builtin_signbit(row[c]) ? 0.0f : row[c];
    } else if (act == 2) {
      for (size_t c = 0; c < cols; c++) row[c] = row[c] < 0.0f ? 0.0f : (row[c] > 6.0f ? 6.0f : row[c]);
    }
  }
}

typedef struct {
  float *y;
  const float *bias;
  size_t rows, cols;
  int act;
} Epilogue;

static void epilogue_part(void *arg, int i, int parts, int thread) {
  (void)thread;
  const Epilogue *e = (const Epilogue *)arg;
  int64_t lo, hi;
  part_range((int64_t)e->rows, i, parts, &lo, &hi);
  epilogue_span(e->y + (size_t)lo * e->cols, (size_t)(hi - lo), e->cols, e->bias, e->act);
}

void epilogue_run(Pool *pool, float *y, size_t rows, size_t cols, const float *bias, int act) {
  Epilogue e = {y, bias, rows, cols, act};
  pool_run(pool, epilogue_part, &e, rows * cols < SPLIT_ELEMENTS ? 1 : span_parts((int64_t)rows, (double)cols, SPAN_LEAST));
}
