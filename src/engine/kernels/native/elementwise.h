/*
 * The native backend's element-wise, row and reduction kernels (elementwise.c, broadcast.c) beside blas.c's
 * products: defined on the addon's exports at load, run on the addon's pool (pool.h).
 */
#ifndef NEURAL_DIFF_ELEMENTWISE_H
#define NEURAL_DIFF_ELEMENTWISE_H
#include <node_api.h>
#include "pool.h"

/* The pool of this addon instance (blas.c), or NULL when it runs on the calling thread alone. */
Pool *addon_pool(napi_env env);
/* Define elementwise.c's functions (and broadcast.c's) on `exports`; 0 when N-API failed. */
int elementwise_define(napi_env env, napi_value exports);
/* Define optimizer.c's functions (Adam's step) on `exports`; 0 when N-API failed. */
int optimizer_define(napi_env env, napi_value exports);
/* Define broadcast.c's functions on `exports`; 0 when N-API failed. */
int broadcast_define(napi_env env, napi_value exports);

#endif
