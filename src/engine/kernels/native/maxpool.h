/*
 * Max pooling and its gradient on the pool's threads (maxpool.c), registered by blas.c.
 */
#ifndef NEURAL_DIFF_MAXPOOL_H
#define NEURAL_DIFF_MAXPOOL_H
#include <node_api.h>
#include "pool.h"

/* maxPool(x, y, geometry) on `pool`'s threads (NULL: the caller's alone). */
napi_value max_pool(napi_env env, napi_callback_info info, Pool *pool);
/* maxPoolGrad(x, dy, dx, geometry, reluX | null) on `pool`'s threads. */
napi_value max_pool_grad(napi_env env, napi_callback_info info, Pool *pool);

#endif
