# The native training backend's addon (src/engine/kernels/native/blas.c): OpenBLAS's sgemm on
# tfjs-backend-wasm's heap. Built by `npm run build:native` (scripts/build-native.mjs), which checks
# for Debian's libopenblas-dev first; the output (build/) is git-ignored and not in the npm package.
# -Wno-psabi: the element-wise kernels' 32-byte vectors never cross a call into another unit (all
# static), so GCC's note on their calling convention without AVX does not apply.
{
  "targets": [
    {
      "target_name": "neural_diff_blas",
      "sources": ["src/engine/kernels/native/blas.c", "src/engine/kernels/native/pool.c", "src/engine/kernels/native/blocks.c", "src/engine/kernels/native/maxpool.c", "src/engine/kernels/native/elementwise.c", "src/engine/kernels/native/broadcast.c", "src/engine/kernels/native/optimizer.c"],
      "include_dirs": ["<!@(node scripts/build-native.mjs --include-dirs)"],
      "libraries": ["-lopenblas", "-lpthread"],
      "cflags": ["-O3", "-std=c11", "-ffp-contract=off", "-fno-math-errno", "-Wall", "-Wextra", "-Wno-psabi"],
      "defines": ["NAPI_DISABLE_CPP_EXCEPTIONS"]
    }
  ]
}
