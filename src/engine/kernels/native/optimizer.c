/*
 * The optimizer's step on the native backend's pool (Adam; elementwise.h): adam.c's float32
 * operations in its order, so the bits are the wasm kernel's at any thread count.
 */
#include "elementwise-common.h"

/* One Adam step over elements [lo, hi) of part i. */
typedef struct {
  const float *x, *g, *s;
  float *m, *v, *xo;
  size_t n;
} Adam;

VECTOR_CLONES
static void adam_part(void *arg, int i, int parts, int thread) {
  (void)thread;
  const Adam *a = (const Adam *)arg;
  const float b1 = a->s[0], nb1 = a->s[1], b2 = a->s[2], nb2 = a->s[3], c1 = a->s[4], c2 = a->s[5], eps = a->s[6], nlr = a->s[7];
  int64_t lo, hi;
  part_range((int64_t)a->n, i, parts, &lo, &hi);
  for (int64_t j = lo; j < hi; j++) {
    const float gi = a->g[j];
    const float mn = a->m[j] * b1 + gi * nb1;
    const float vn = a->v[j] * b2 + (gi * gi) * nb2;
    const float den = __builtin_sqrtf(vn / c2) + eps;
    a->m[j] = mn;
    a->v[j] = vn;
    a->xo[j] = ((mn / c1) / den) * nlr + a->x[j];
  }
}

/*
 * adamStep(x, g, m, v, xo, s): one Adam step of a variable, m and v updated in place, the new
 * values into xo; s holds b1, 1 - b1, b2, 1 - b2, 1 - b1^t, 1 - b2^t, epsilon, -learning rate.
 * Elements split over the pool's threads (each computed alone: the same bits at any split).
 */
static napi_value adam_step(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  if (!args_of(env, info, argv, 6, "adamStep")) return NULL;
  Adam a;
  float *x, *g, *s;
  size_t lengths[6];
  if (!f32_arg(env, argv[0], &x, &lengths[0], "adamStep x") || !f32_arg(env, argv[1], &g, &lengths[1], "adamStep g") ||
      !f32_arg(env, argv[2], &a.m, &lengths[2], "adamStep m") || !f32_arg(env, argv[3], &a.v, &lengths[3], "adamStep v") ||
      !f32_arg(env, argv[4], &a.xo, &lengths[4], "adamStep xo") || !f32_arg(env, argv[5], &s, &lengths[5], "adamStep s")) {
    return NULL;
  }
  for (int i = 1; i < 5; i++) {
    if (!holds(env, lengths[i], lengths[0], "adamStep: g, m, v and xo as long as x")) return NULL;
  }
  if (!holds(env, lengths[5], 8, "adamStep: s (8 scalars)")) return NULL;
  a.x = x;
  a.g = g;
  a.s = s;
  a.n = lengths[0];
  pool_run(addon_pool(env), adam_part, &a, a.n == 0 ? 0 : a.n < SPLIT_ELEMENTS ? 1 : span_parts((int64_t)a.n, 1.0, SPAN_LEAST));
  return NULL;
}

int optimizer_define(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"adamStep", NULL, adam_step, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props) == napi_ok;
}
