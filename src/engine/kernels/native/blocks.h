/*
 * Cutting the native kernels' products into blocks (blocks.c): how many, from the shape alone,
 * and the block functions the pool (pool.h) runs. A block is one single-threaded cblas_sgemm.
 */
#ifndef NEURAL_DIFF_BLOCKS_H
#define NEURAL_DIFF_BLOCKS_H
#include <stddef.h>
#include <stdint.h>
#include "pool.h"

/*
 * The least work (flops) of a block; the fewest rows or columns of C a block holds (each block
 * packs the other operand again); the fewest rows of a sum a block holds (each block's partial
 * sum is written and added again). Measured on the whole keyword step (batch 64, load 1.1-1.5):
 * 64 and 128 cost nothing at one thread against 256 and 512 and gave 1.30x at two threads
 * instead of 1.13x; 32 and 64 gave no more (docs/benchmarks/training-speed.md).
 */
#define BLOCK_FLOPS (4.0 * 1024 * 1024)
#define MIN_EXTENT 64
#define MIN_SUM 128

/* One row-major product C = op(A) op(B) + beta C, cut into blocks of C's rows, columns or the sum. */
typedef struct {
  int ta, tb, by_rows;
  int32_t M, N, K, lda, ldb, ldc;
  const float *A, *B;
  float *C, beta;
  float *partials; /* sums over blocks of K after the first: (parts - 1) * M * N floats */
  const float *bias; /* the epilogue (bias per column or NULL, activation), on each block of C as it is finished */
  int act;
} Gemm;

/* Blocks of `flops` of work, at most `most` (see blocks.c). */
int blocks_for(double flops, double most);
/* [*lo, *hi): part i of n over `extent`. */
void part_range(int64_t extent, int i, int n, int64_t *lo, int64_t *hi);
/* Pool tasks: block i of C's rows (by_rows) or columns, then its epilogue; block i of the sum over K (no epilogue: the sum is not finished). */
void gemm_block(void *arg, int i, int parts, int thread);
void gemm_k_block(void *arg, int i, int parts, int thread);
/*
 * Parts of a pass over `items` items of `cost` floats each: 8, 6, 4 or 2 (counts 2, 4 and 8
 * threads share evenly) of at least `least` floats, at most `items`; 1 when the whole holds less
 * than two. From the shape alone: an item's values never depend on the cut. More parts than
 * threads on purpose: a thread that claims its first part late (the system ran something else on
 * its core) leaves the caller waiting for one small part, not for half of the pass.
 */
int span_parts(int64_t items, double cost, double least);
/* The least floats of a part of an element-wise pass (Adam, the epilogue, adding partial sums). */
#define SPAN_LEAST 8192.0
/*
 * Elements below which an element-wise pass stays on the calling thread: a sleeping thread is
 * woken late and cold (Adam on conv2's 37k weights after 300 us of other work: 0.093 ms on two
 * threads, 0.036 on one), more than a short pass gives.
 */
#define SPLIT_ELEMENTS 65536

/*
 * The fused kernels' epilogue: y[r, c] = act(y[r, c] + bias[c]) in place (bias NULL: none; act 0
 * linear, 1 relu as tfjs' Relu, 2 relu6), each value alone (the same bits however cut): over
 * `rows` rows here, or split into rows on the pool.
 */
void epilogue_span(float *y, size_t rows, size_t cols, const float *bias, int act);
/* The same over `cols` columns of each of `rows` rows `stride` floats apart (a block of C's columns). */
void epilogue_strided(float *y, size_t rows, size_t cols, size_t stride, const float *bias, int act);
void epilogue_run(Pool *pool, float *y, size_t rows, size_t cols, const float *bias, int act);
/* dst += partials[0], then partials[1], ... (count of them, n floats each), per element in that order. */
void reduce_partials(Pool *pool, float *dst, const float *partials, size_t n, int count);

#endif
