/**
 * Waits for the job-engine tests (real `redis-server`, real worker processes) that no clock of
 * their own can end. Each waits for what it names (a line printed, a job's state, a process) for
 * as long as the test runs; only the test's own timeout ends it, sized for a machine ten times
 * slower than the one these tests were measured on, so a slow but correct run passes. node:test
 * aborts a test's `signal` when its timeout fires: the wait then throws, naming what it waited
 * for, and the test's `finally` still stops its processes (a worker or `redis-server` left
 * running would keep the test file from exiting).
 */

/**
 * The timeout of a job-engine test: the slowest of them takes about 9 s on this 2-core machine
 * under a load average of 5-7 (nice 19); ten times that is 90 s, and CI may run the suite three
 * times at once on as many cores.
 */
export const ENGINE_TEST_TIMEOUT = 300_000;

/** Why a wait ended without what it waited for: the test ended first (its timeout). */
function ended(what: string): Error {
  return new Error(`the test ended (its timeout) while waiting for ${what}`);
}

/** Settle as `promise` does; if the test ends first, reject naming `what` (the caller's `finally` then runs). */
export function orTestEnd<T>(signal: AbortSignal, what: string | (() => string), promise: Promise<T>): Promise<T> {
  const name = () => (typeof what === 'string' ? what : what());
  if (signal.aborted) return Promise.reject(ended(name()));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(ended(name()));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * Wait until `check` holds, asking again every `everyMs` ms: for a state outside this process
 * (a job's state in Redis, a request a server logged, a process in /proc). No deadline but the
 * test's.
 */
export async function until(signal: AbortSignal, what: string, check: () => boolean | Promise<boolean>, everyMs = 100): Promise<void> {
  while (!(await check())) {
    if (signal.aborted) throw ended(what);
    await orTestEnd(signal, what, new Promise((r) => setTimeout(r, everyMs)));
  }
}
