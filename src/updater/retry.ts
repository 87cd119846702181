/**
 * When the updater asks a mirror again after a failure (5xx, 429, a dropped connection, a body
 * cut short, a timeout): after an exponential backoff with full jitter (a wait drawn uniformly
 * from 0 to `min(cap, base * 2^retry)`), added to what the server's `Retry-After` asks for, so a
 * fleet of devices that met the same failing mirror at once does not come back at once. A
 * `Retry-After` above a bound is not waited for (the next mirror is asked), and the waits of one
 * run together are bounded. The clock, the sleep and the random source are injectable.
 */

/** How the updater waits before asking a mirror again (all optional; the defaults are documented per field). */
export interface RetryOptions {
  /** The backoff's base, in milliseconds: the n-th retry of a file waits up to `base * 2^n` (default 1000). */
  retryBaseMs?: number;
  /** The most one backoff draws, in milliseconds, before any `Retry-After` (default 30 000). */
  retryCapMs?: number;
  /**
   * The longest `Retry-After` honoured, in milliseconds (default 120 000): a mirror asking for
   * more is not asked again in this run (the next mirror is), rather than asked too early.
   */
  maxRetryAfterMs?: number;
  /**
   * The most one run waits between retries, all files and mirrors together, in milliseconds
   * (default 300 000): a retry whose wait would go past it is not made (the next mirror is asked,
   * or the file fails as undownloadable).
   */
  maxRetryWaitMs?: number;
  /** Waits `ms` milliseconds (default: a timer). */
  sleep?: (ms: number) => Promise<void>;
  /** A number in [0, 1) (default `Math.random`): the jitter. */
  random?: () => number;
  /** Milliseconds since 1970 (default `Date.now`): the reference of a `Retry-After` date. */
  now?: () => number;
}

/** The defaults of {@link RetryOptions}. */
export const RETRY_DEFAULTS = { retryBaseMs: 1000, retryCapMs: 30_000, maxRetryAfterMs: 120_000, maxRetryWaitMs: 300_000 } as const;

/**
 * A `Retry-After` header's wait in milliseconds (RFC 9110 §10.2.3): delta-seconds, or an
 * HTTP-date taken against `now` (a date in the past is 0). Undefined when absent or unreadable.
 */
export function retryAfterMs(header: string | null, now: number): number | undefined {
  if (header === null) return undefined;
  const value = header.trim();
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  // An HTTP-date (IMF-fixdate, or the obsolete RFC 850 and asctime forms a recipient must take)
  // names a weekday and a time of day; Date.parse alone would take "12" as a year. All are GMT:
  // asctime says no zone, which Date.parse would read as local time.
  if (!/^[A-Za-z]{3,9},? .*\d\d:\d\d:\d\d/.test(value)) return undefined;
  const at = Date.parse(/GMT$/i.test(value) ? value : `${value} GMT`);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** What a mirror said about when to ask again. */
export interface RetryHint {
  /** From its `Retry-After` header. */
  retryAfterMs?: number;
}

/** The waits of one run: what was waited so far, shared by every file and mirror of the run. */
export interface RetryClock {
  /** Milliseconds waited before retries so far. */
  retryWaitMs: number;
}

/** Why a retry is not made. */
export type RetryRefusal = { refused: string };

/**
 * Wait before retry number `retry` (0 for the first) of a request, or say why not: the server
 * asks for more than `maxRetryAfterMs`, or the wait would take the run past `maxRetryWaitMs`.
 * Resolves once the wait is over (it is added to `clock`).
 */
export async function waitBeforeRetry(retry: number, hint: RetryHint, options: RetryOptions, clock: RetryClock): Promise<undefined | RetryRefusal> {
  const base = options.retryBaseMs ?? RETRY_DEFAULTS.retryBaseMs;
  const cap = options.retryCapMs ?? RETRY_DEFAULTS.retryCapMs;
  const maxAfter = options.maxRetryAfterMs ?? RETRY_DEFAULTS.maxRetryAfterMs;
  const budget = options.maxRetryWaitMs ?? RETRY_DEFAULTS.maxRetryWaitMs;
  const after = hint.retryAfterMs ?? 0;
  if (after > maxAfter) return { refused: `asks to be retried after ${seconds(after)}, more than the ${seconds(maxAfter)} the updater waits for one mirror (maxRetryAfterMs)` };
  const jitter = Math.floor((options.random ?? Math.random)() * Math.min(cap, base * 2 ** Math.min(retry, 52)));
  const ms = after + jitter;
  if (clock.retryWaitMs + ms > budget) return { refused: `not retried: waiting ${seconds(ms)} more would take this run past its ${seconds(budget)} of waits between retries (maxRetryWaitMs)` };
  clock.retryWaitMs += ms;
  await (options.sleep ?? timerSleep)(ms);
  return undefined;
}

const seconds = (ms: number) => `${Math.round(ms / 100) / 10} s`;

function timerSleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
