/*
 * The intra-op thread pool of the native backend (pool.h). Workers wait for a new generation of
 * work, spinning briefly (a training step calls kernels back to back, so the next call is often
 * microseconds away) and then sleeping on a condition variable, so an idle pool costs no CPU. The
 * caller computes its own share of every call and waits for the workers the same way.
 */
#define _GNU_SOURCE
#include "pool.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define relax() _mm_pause()
#elif defined(__aarch64__)
#define relax() __asm__ __volatile__("yield")
#else
#define relax() ((void)0)
#endif

/* Spins before sleeping: about 10-100 microseconds, depending on the CPU's pause instruction. */
#define SPINS 2000

typedef struct {
  Pool *pool;
  int index;
} Worker;

struct Pool {
  int threads;
  pthread_t *ids;
  Worker *workers;
  int started;
  pthread_mutex_t mutex;
  pthread_cond_t wake, done;
  atomic_ulong generation;
  atomic_int pending;
  atomic_int stop;
  /* The call in progress: written by the caller before the generation moves, read by workers after. */
  pool_task task;
  void *arg;
  int parts;
};

static void run_share(Pool *pool, int thread) {
  const int T = pool->threads, P = pool->parts;
  const int first = (int)((long long)P * thread / T), last = (int)((long long)P * (thread + 1) / T);
  for (int i = first; i < last; i++) pool->task(pool->arg, i, P, thread);
}

static void *worker_main(void *p) {
  Worker *w = (Worker *)p;
  Pool *pool = w->pool;
  unsigned long seen = 0;
  for (;;) {
    unsigned long g = atomic_load_explicit(&pool->generation, memory_order_acquire);
    for (int s = 0; g == seen && s < SPINS && !atomic_load_explicit(&pool->stop, memory_order_relaxed); s++) {
      relax();
      g = atomic_load_explicit(&pool->generation, memory_order_acquire);
    }
    if (g == seen) {
      pthread_mutex_lock(&pool->mutex);
      while ((g = atomic_load_explicit(&pool->generation, memory_order_acquire)) == seen && !atomic_load(&pool->stop)) {
        pthread_cond_wait(&pool->wake, &pool->mutex);
      }
      pthread_mutex_unlock(&pool->mutex);
    }
    if (atomic_load(&pool->stop)) return NULL;
    seen = g;
    run_share(pool, w->index);
    if (atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_acq_rel) == 1) {
      pthread_mutex_lock(&pool->mutex);
      pthread_cond_signal(&pool->done);
      pthread_mutex_unlock(&pool->mutex);
    }
  }
}

Pool *pool_create(int threads) {
  if (threads < 1) return NULL;
  Pool *pool = (Pool *)calloc(1, sizeof(Pool));
  if (pool == NULL) return NULL;
  pool->threads = threads;
  pthread_mutex_init(&pool->mutex, NULL);
  pthread_cond_init(&pool->wake, NULL);
  pthread_cond_init(&pool->done, NULL);
  atomic_init(&pool->generation, 0);
  atomic_init(&pool->pending, 0);
  atomic_init(&pool->stop, 0);
  if (threads > 1) {
    pool->ids = (pthread_t *)calloc((size_t)threads, sizeof(pthread_t));
    pool->workers = (Worker *)calloc((size_t)threads, sizeof(Worker));
    if (pool->ids == NULL || pool->workers == NULL) {
      pool_destroy(pool);
      return NULL;
    }
    for (int t = 1; t < threads; t++) {
      pool->workers[t].pool = pool;
      pool->workers[t].index = t;
      if (pthread_create(&pool->ids[t], NULL, worker_main, &pool->workers[t]) != 0) {
        pool_destroy(pool);
        return NULL;
      }
      pool->started = t;
    }
  }
  return pool;
}

int pool_threads(const Pool *pool) {
  return pool == NULL ? 1 : pool->threads;
}

void pool_run(Pool *pool, pool_task task, void *arg, int parts) {
  if (parts <= 0) return;
  if (pool == NULL || pool->threads == 1 || parts == 1) {
    for (int i = 0; i < parts; i++) task(arg, i, parts, 0);
    return;
  }
  pool->task = task;
  pool->arg = arg;
  pool->parts = parts;
  /* Every worker answers every call (even one with no part), so none lags a generation behind. */
  atomic_store_explicit(&pool->pending, pool->threads - 1, memory_order_relaxed);
  pthread_mutex_lock(&pool->mutex);
  atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
  pthread_cond_broadcast(&pool->wake);
  pthread_mutex_unlock(&pool->mutex);
  run_share(pool, 0);
  for (int s = 0; s < SPINS && atomic_load_explicit(&pool->pending, memory_order_acquire) > 0; s++) relax();
  if (atomic_load_explicit(&pool->pending, memory_order_acquire) > 0) {
    pthread_mutex_lock(&pool->mutex);
    while (atomic_load_explicit(&pool->pending, memory_order_acquire) > 0) pthread_cond_wait(&pool->done, &pool->mutex);
    pthread_mutex_unlock(&pool->mutex);
  }
}

void pool_destroy(Pool *pool) {
  if (pool == NULL) return;
  pthread_mutex_lock(&pool->mutex);
  atomic_store(&pool->stop, 1);
  pthread_cond_broadcast(&pool->wake);
  pthread_mutex_unlock(&pool->mutex);
  for (int t = 1; t <= pool->started; t++) pthread_join(pool->ids[t], NULL);
  pthread_mutex_destroy(&pool->mutex);
  pthread_cond_destroy(&pool->wake);
  pthread_cond_destroy(&pool->done);
  free(pool->ids);
  free(pool->workers);
  free(pool);
}
