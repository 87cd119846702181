/*
 * The native backend's intra-op threads (pool.c): a fixed set of threads created once per addon
 * instance, each kernel's work cut into parts by a static partition (part i always covers the
 * same rows, whichever thread claims it), so which thread ran a part never changes the result's bits.
 */
#ifndef NEURAL_DIFF_POOL_H
#define NEURAL_DIFF_POOL_H
#include <stdint.h>

/* One part of a kernel: part `index` of `parts`, run by the pool's thread `thread`. */
typedef void (*pool_task)(void *arg, int index, int parts, int thread);

typedef struct Pool Pool;

/* A pool computing on `threads` threads: the caller and threads - 1 workers; NULL when out of memory or threads fail to start. */
Pool *pool_create(int threads);
/* The threads computing (the caller included). */
int pool_threads(const Pool *pool);
/*
 * Run task(arg, i, parts, thread) for every i < parts and return when all are done. Each thread
 * (0 is the caller) claims the next part until none is left: what part i computes must depend on
 * i alone (the thread index only picks the thread's own scratch). A NULL pool runs every part on
 * the caller.
 */
void pool_run(Pool *pool, pool_task task, void *arg, int parts);
/*
 * How long an idle thread keeps watching for the next call, or the caller for its last parts
 * (yielding its core), before it sleeps: 0 unless set, sleep after a few microseconds of spinning
 * (pool.c says why; a benchmark's comparison).
 */
void pool_set_idle(Pool *pool, int64_t ns);
/*
 * Calls pool_run handed to the workers (more than one part on more than one thread) and their
 * parts, since the pool started: which kernels a step splits, read by tests and benchmarks
 * (counted by the calling thread alone). NULL: 0.
 */
void pool_counts(const Pool *pool, double *calls, double *parts);
/* Stop and join the workers, then free the pool (NULL is accepted). */
void pool_destroy(Pool *pool);

#endif
