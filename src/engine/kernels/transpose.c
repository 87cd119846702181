/*
 * Transpose of 4-byte elements (float32, int32: bits copied as they are) in WebAssembly, on the
 * tfjs wasm backend's memory: the copy transpose.ts plans (axes simplified, the output written in
 * order, the two innermost output axes as loops, an odometer over the others), with runs of the
 * input's innermost axis copied four elements at a time. transpose.ts's transposeInto is the
 * JavaScript twin (the same copy), transposeReference the element-by-element twin the tests
 * compare both with.
 *
 * `geo` holds rank, then per output axis its size and its stride in the input (elements), then
 * rank - 2 ints of room for the odometer; rank >= 2.
 *
 * Built by scripts/build-train-kernels.ts. No stack, no globals, no data.
 */
#include <wasm_simd128.h>

__attribute__((export_name("transpose32")))
void transpose32(const int *x, int *out, int *geo, int count) {
  const int rank = geo[0];
  const int *dims = geo + 1;
  const int *strides = geo + 1 + rank;
  int *index = geo + 1 + 2 * rank;
  for (int d = 0; d < rank - 2; d++) index[d] = 0;
  const int inner = dims[rank - 1];
  const int innerStride = strides[rank - 1];
  const int mid = dims[rank - 2];
  const int midStride = strides[rank - 2];
  int base = 0;
  int o = 0;
  while (o < count) {
    if (innerStride == 1) {
      for (int m = 0, row = base; m < mid; m++, row += midStride) {
        const int *src = x + row;
        int *dst = out + o;
        int i = 0;
        for (; i + 4 <= inner; i += 4) wasm_v128_store(dst + i, wasm_v128_load(src + i));
        for (; i < inner; i++) dst[i] = src[i];
        o += inner;
      }
    } else {
      for (int m = 0, row = base; m < mid; m++, row += midStride) {
        for (int i = 0, at = row; i < inner; i++, at += innerStride) out[o++] = x[at];
      }
    }
    for (int d = rank - 3; d >= 0; d--) {
      base += strides[d];
      if (++index[d] < dims[d]) break;
      base -= strides[d] * dims[d];
      index[d] = 0;
    }
  }
}
