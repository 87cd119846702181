/*
 * Batched matrix products C_t = op(A_t) op(B_t) in WebAssembly SIMD, on the tfjs wasm backend's
 * memory, with the stock tfjs-backend-wasm kernel's bits: that kernel (batch_mat_mul_impl.cc,
 * slow_batch_matmul, what tfjs runs for every batched or transposed product) sums each output in
 * blocks of 48 along the shared dimension, every block from 0 in float32 in order, and adds the
 * block sums to the output in order, starting from 0:
 *
 *   C(i, j) = ((0 + s_0) + s_1) + ...,   s_b = ((0 + A(i, 48b) B(48b, j)) + A(i, 48b + 1) B(48b + 1, j)) + ...
 *
 * Each vector lane holds one output column, so every output keeps exactly that order; tiles of up
 * to 4 rows by 8 columns keep their sums in registers (the stock loop reads B with a stride of a
 * row per multiply-add). A transposed B is first copied untransposed into `pack` (k x n floats,
 * once per distinct B item), so columns of B are contiguous, or the transposed product is
 * computed instead (below). op(A)(i, p) is a[i*k + p], or a[p*m +
 * i] when transposed; a stride of 0 broadcasts one operand over the batch. batch-mat-mul.ts holds
 * the scalar twin (batchMatMulReference) the tests compare this with, and with the stock kernel.
 *
 * Built by scripts/build-train-kernels.ts. No stack, no globals.
 */
#include <wasm_simd128.h>

/* The stock kernel's block along the shared dimension (kBlockSize). */
#define KB 48

/*
 * R rows (1 to 4) by 4V columns (V = 1 or 2) of C: A(r, p) = A[r*ai + p*ap], B(p, v) = B[p*ldb + v],
 * C(r, v) = C[r*ldc + v]. Constant R and V after inlining, so the sums live in registers.
 */
static inline __attribute__((always_inline)) void tile(const float *A, int ai, int ap, const float *B, int ldb, float *C, int ldc, int k, const int R, const int V) {
  for (int p0 = 0; p0 < k; p0 += KB) {
    const int p1 = p0 + KB < k ? p0 + KB : k;
    v128_t s[4][2];
    for (int r = 0; r < R; r++)
      for (int v = 0; v < V; v++) s[r][v] = wasm_f32x4_splat(0.0f);
    for (int p = p0; p < p1; p++) {
      const float *br = B + (long)p * ldb;
      v128_t b[2];
      for (int v = 0; v < V; v++) b[v] = wasm_v128_load(br + 4 * v);
      for (int r = 0; r < R; r++) {
        const v128_t a = wasm_v128_load32_splat(A + (long)r * ai + (long)p * ap);
        for (int v = 0; v < V; v++) s[r][v] = wasm_f32x4_add(s[r][v], wasm_f32x4_mul(a, b[v]));
      }
    }
    for (int r = 0; r < R; r++)
      for (int v = 0; v < V; v++) {
        float *c = C + (long)r * ldc + 4 * v;
        const v128_t before = p0 == 0 ? wasm_f32x4_splat(0.0f) : wasm_v128_load(c);
        wasm_v128_store(c, wasm_f32x4_add(before, s[r][v]));
      }
  }
}

/* One output the same way, without vectors (the columns past the last multiple of 4). */
static float single(const float *A, int ap, const float *B, int ldb, int k) {
  float acc = 0.0f;
  for (int p0 = 0; p0 < k; p0 += KB) {
    const int p1 = p0 + KB < k ? p0 + KB : k;
    float s = 0.0f;
    for (int p = p0; p < p1; p++) s += A[(long)p * ap] * B[(long)p * ldb];
    acc = acc + s;
  }
  return acc;
}

/* R rows of C (every column), R constant after inlining. */
static inline __attribute__((always_inline)) void rows(const float *A, int ai, int ap, const float *B, int n, float *C, int k, const int R) {
  int j = 0;
  for (; j + 8 <= n; j += 8) tile(A, ai, ap, B + j, n, C + j, n, k, R, 2);
  if (j + 4 <= n) {
    tile(A, ai, ap, B + j, n, C + j, n, k, R, 1);
    j += 4;
  }
  for (; j < n; j++)
    for (int r = 0; r < R; r++) C[(long)r * n + j] = single(A + (long)r * ai, ap, B + j, n, k);
}

/* pack[p*n + j] = B[j*k + p]: 4x4 blocks transposed in registers, the edges one value at a time. */
static void pack_transposed(const float *B, float *pack, int n, int k) {
  int j = 0;
  for (; j + 4 <= n; j += 4) {
    const float *b0 = B + (long)j * k;
    int p = 0;
    for (; p + 4 <= k; p += 4) {
      const v128_t r0 = wasm_v128_load(b0 + p), r1 = wasm_v128_load(b0 + k + p);
      const v128_t r2 = wasm_v128_load(b0 + 2L * k + p), r3 = wasm_v128_load(b0 + 3L * k + p);
      const v128_t lo01 = wasm_i32x4_shuffle(r0, r1, 0, 4, 1, 5), hi01 = wasm_i32x4_shuffle(r0, r1, 2, 6, 3, 7);
      const v128_t lo23 = wasm_i32x4_shuffle(r2, r3, 0, 4, 1, 5), hi23 = wasm_i32x4_shuffle(r2, r3, 2, 6, 3, 7);
      float *out = pack + (long)p * n + j;
      wasm_v128_store(out, wasm_i64x2_shuffle(lo01, lo23, 0, 2));
      wasm_v128_store(out + n, wasm_i64x2_shuffle(lo01, lo23, 1, 3));
      wasm_v128_store(out + 2L * n, wasm_i64x2_shuffle(hi01, hi23, 0, 2));
      wasm_v128_store(out + 3L * n, wasm_i64x2_shuffle(hi01, hi23, 1, 3));
    }
    for (; p < k; p++)
      for (int q = 0; q < 4; q++) pack[(long)p * n + j + q] = b0[(long)q * k + p];
  }
  for (; j < n; j++)
    for (int p = 0; p < k; p++) pack[(long)p * n + j] = B[(long)j * k + p];
}

/* C = op(A) B for one item: A(i, p) = A[i*ai + p*ap], B row-major k x n, C row-major m x n. */
static void product(const float *A, int ai, int ap, const float *B, float *C, int m, int n, int k) {
  int i = 0;
  for (; i + 4 <= m; i += 4) rows(A + (long)i * ai, ai, ap, B, n, C + (long)i * n, k, 4);
  for (; i < m; i++) rows(A + (long)i * ai, ai, ap, B, n, C + (long)i * n, k, 1);
}

__attribute__((export_name("batch_matmul")))
void batch_matmul(const float *a, int a_stride, const float *b, int b_stride, float *c, int batch, int m, int n, int k,
                  int trans_a, int trans_b, float *pack) {
  const int ai = trans_a ? 1 : k, ap = trans_a ? m : 1;
  /*
   * With B transposed, Cᵀ = op(B)ᵀ op(A)ᵀ needs no copy of B (op(B)ᵀ is b as stored) but a copy
   * of A (none when A is transposed: op(A)ᵀ is a as stored) and a transpose of the output; each
   * output is the same products added in the same order. Taken when it copies fewer values (a
   * few rows against a wide B, as a dense layer's input gradient at a small batch), and not when
   * one B serves every item (copied once).
   */
  const long copy_b = (long)k * n, copy_swapped = (trans_a ? 0 : (long)k * m) + (long)m * n;
  const int swap = trans_b && copy_swapped < copy_b && (b_stride != 0 || batch == 1);
  const float *packed = 0;
  for (int t = 0; t < batch; t++) {
    const float *A = a + (long)t * a_stride;
    const float *B = b + (long)t * b_stride;
    float *C = c + (long)t * m * n;
    if (k == 0) {
      for (long i = 0; i < (long)m * n; i++) C[i] = 0.0f;
      continue;
    }
    if (swap) {
      /* pack: op(A)ᵀ (k x m, unless a is it already), then Cᵀ (n x m). */
      const float *at = A;
      float *ct = pack;
      if (!trans_a) {
        pack_transposed(A, pack, m, k);
        at = pack;
        ct = pack + (long)k * m;
      }
      product(B, k, 1, at, ct, n, m, k);
      pack_transposed(ct, C, n, m);
      continue;
    }
    if (trans_b) {
      /* B(p, j) = B[j*k + p]: copy it to pack[p*n + j], once per distinct item. */
      if (B != packed) {
        pack_transposed(B, pack, n, k);
        packed = B;
      }
      B = pack;
    }
    product(A, ai, ap, B, C, m, n, k);
  }
}
