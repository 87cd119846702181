/*
 * The intra-op thread pool of the native backend (pool.h). A call publishes its parts; every
 * thread, the caller included, claims the next unclaimed part until none is left, so a worker the
 * system has not scheduled (on a busy machine) costs nothing: the caller computes its parts. What
 * a part computes depends on its index alone, never on the thread that claimed it (the thread
 * only picks its own scratch), so the bits do not depend on who ran what. Idle workers spin
 * briefly (a training step calls kernels back to back) and then sleep on a condition variable,
 * so an idle pool costs no CPU.
 */
#define _GNU_SOURCE
#include "pool.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

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

/*
 * After SPINS, an idle thread (a worker between calls, the caller waiting for the last parts) may
 * keep watching for up to idle_ns more, yielding its core to any other runnable thread between
 * looks, before it sleeps (pool_set_idle; IDLE_NS, none, unless set). A thread asleep between a
 * step's calls is woken late and cold: the keyword step's Adam on conv2's weights (37k values)
 * after 300 us of other work took 0.093 ms on two sleeping threads, 0.031 on two watching, 0.036
 * on one (one process, load 7). But on a machine whose other processes keep its cores busy the
 * whole step was slower watching: a thread always runnable is preempted more, often in the middle
 * of a part its caller then waits for (keyword replays at load 7, one process: 49-58 ms a replay
 * watching 2 ms, 42-54 watching 0.1-0.5 ms, 19-33 sleeping). So none by default.
 */
#define IDLE_NS 0

/* The state word: a call's generation (24 bits), its part count and the next part to claim (20 bits each). */
#define GEN_SHIFT 40
#define PARTS_SHIFT 20
#define FIELD ((UINT64_C(1) << 20) - 1)
#define MAX_PARTS ((int)FIELD)

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
  pthread_cond_t wake, finished;
  int sleepers; /* under mutex */
  _Atomic uint64_t state;
  atomic_int done;
  atomic_int stop;
  uint64_t generation; /* the caller's */
  double calls, parts; /* pool_counts, the caller's */
  _Atomic int64_t idle_ns; /* how long an idle thread watches before it sleeps (IDLE_NS unless set) */
  /* The call in progress: written by the caller before the state is published, read after a claim. */
  pool_task task;
  void *arg;
};

static uint64_t generation_of(uint64_t s) {
  return s >> GEN_SHIFT;
}

/* The next part of call `gen` for this thread, or -1 when none is left (or the call is over). */
static int claim(Pool *pool, uint64_t gen, int *parts) {
  uint64_t s = atomic_load_explicit(&pool->state, memory_order_acquire);
  for (;;) {
    if (generation_of(s) != gen) return -1;
    const uint64_t total = (s >> PARTS_SHIFT) & FIELD, next = s & FIELD;
    if (next >= total) return -1;
    if (atomic_compare_exchange_weak_explicit(&pool->state, &s, s + 1, memory_order_acq_rel, memory_order_acquire)) {
      *parts = (int)total;
      return (int)next;
    }
  }
}

/* Claim and run parts of call `gen` until none is left; the thread finishing the last part says so. */
static void work(Pool *pool, uint64_t gen, int thread) {
  int parts = 0, i;
  while ((i = claim(pool, gen, &parts)) >= 0) {
    pool->task(pool->arg, i, parts, thread);
    if (atomic_fetch_add_explicit(&pool->done, 1, memory_order_acq_rel) + 1 == parts && thread != 0) {
      pthread_mutex_lock(&pool->mutex);
      pthread_cond_signal(&pool->finished);
      pthread_mutex_unlock(&pool->mutex);
    }
  }
}

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void *worker_main(void *p) {
  Worker *w = (Worker *)p;
  Pool *pool = w->pool;
  uint64_t seen = 0;
  for (;;) {
    uint64_t g = generation_of(atomic_load_explicit(&pool->state, memory_order_acquire));
    for (int s = 0; g == seen && s < SPINS && !atomic_load_explicit(&pool->stop, memory_order_relaxed); s++) {
      relax();
      g = generation_of(atomic_load_explicit(&pool->state, memory_order_acquire));
    }
    if (g == seen && seen != 0) {
      /* Between the calls of a step: watch, yielding the core, before sleeping (IDLE_NS). */
      const int64_t until = now_ns() + atomic_load_explicit(&pool->idle_ns, memory_order_relaxed);
      while (g == seen && !atomic_load_explicit(&pool->stop, memory_order_relaxed) && now_ns() < until) {
        sched_yield();
        for (int s = 0; s < 64 && g == seen; s++) {
          relax();
          g = generation_of(atomic_load_explicit(&pool->state, memory_order_acquire));
        }
      }
    }
    if (g == seen) {
      pthread_mutex_lock(&pool->mutex);
      pool->sleepers++;
      while ((g = generation_of(atomic_load_explicit(&pool->state, memory_order_acquire))) == seen && !atomic_load(&pool->stop)) {
        pthread_cond_wait(&pool->wake, &pool->mutex);
      }
      pool->sleepers--;
      pthread_mutex_unlock(&pool->mutex);
    }
    if (atomic_load(&pool->stop)) return NULL;
    seen = g;
    work(pool, seen, w->index);
  }
}

Pool *pool_create(int threads) {
  if (threads < 1) return NULL;
  Pool *pool = (Pool *)calloc(1, sizeof(Pool));
  if (pool == NULL) return NULL;
  pool->threads = threads;
  pthread_mutex_init(&pool->mutex, NULL);
  pthread_cond_init(&pool->wake, NULL);
  pthread_cond_init(&pool->finished, NULL);
  atomic_init(&pool->state, 0);
  atomic_init(&pool->done, 0);
  atomic_init(&pool->stop, 0);
  atomic_init(&pool->idle_ns, IDLE_NS);
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
  if (pool == NULL || pool->threads == 1 || parts == 1 || parts > MAX_PARTS) {
    for (int i = 0; i < parts; i++) task(arg, i, parts, 0);
    return;
  }
  pool->calls += 1;
  pool->parts += parts;
  pool->task = task;
  pool->arg = arg;
  atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
  pool->generation = (pool->generation + 1) & ((UINT64_C(1) << 24) - 1);
  if (pool->generation == 0) pool->generation = 1; /* 0 is the workers' "nothing seen yet" */
  const uint64_t gen = pool->generation;
  atomic_store_explicit(&pool->state, (gen << GEN_SHIFT) | ((uint64_t)parts << PARTS_SHIFT), memory_order_release);
  pthread_mutex_lock(&pool->mutex);
  if (pool->sleepers > 0) pthread_cond_broadcast(&pool->wake);
  pthread_mutex_unlock(&pool->mutex);
  work(pool, gen, 0);
  /* Every part is claimed; wait for the ones other threads are still computing: watching, as an
   * idle worker does (a part can take a millisecond; asleep, the caller would be woken late). */
  for (int s = 0; s < SPINS && atomic_load_explicit(&pool->done, memory_order_acquire) < parts; s++) relax();
  if (atomic_load_explicit(&pool->done, memory_order_acquire) < parts) {
    const int64_t until = now_ns() + atomic_load_explicit(&pool->idle_ns, memory_order_relaxed);
    while (atomic_load_explicit(&pool->done, memory_order_acquire) < parts && now_ns() < until) {
      sched_yield();
      for (int s = 0; s < 64 && atomic_load_explicit(&pool->done, memory_order_acquire) < parts; s++) relax();
    }
  }
  if (atomic_load_explicit(&pool->done, memory_order_acquire) < parts) {
    pthread_mutex_lock(&pool->mutex);
    while (atomic_load_explicit(&pool->done, memory_order_acquire) < parts) pthread_cond_wait(&pool->finished, &pool->mutex);
    pthread_mutex_unlock(&pool->mutex);
  }
}

void pool_set_idle(Pool *pool, int64_t ns) {
  if (pool != NULL) atomic_store_explicit(&pool->idle_ns, ns < 0 ? 0 : ns, memory_order_relaxed);
}

void pool_counts(const Pool *pool, double *calls, double *parts) {
  *calls = pool == NULL ? 0 : pool->calls;
  *parts = pool == NULL ? 0 : pool->parts;
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
  pthread_cond_destroy(&pool->finished);
  free(pool->ids);
  free(pool->workers);
  free(pool);
}
