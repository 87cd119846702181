/**
 * Downloads for the device updater, over an injected `fetch` (the WHATWG one: global in
 * browsers, Node >= 18 and React Native): base URLs tried in order (mirrors), a size cap, an idle
 * timeout, and HTTP Range resume. Bytes are kept in a {@link DownloadStore} as they arrive, a
 * chunk at a time, so a dropped connection resumes from the last byte received and a restarted
 * app from the last chunk stored (at most one chunk is fetched twice). A mirror is asked again
 * only after a backoff with jitter and its `Retry-After` (retry.ts). A file is used only once its
 * length and SHA-256 are the manifest's: a body the server sent with a `Content-Encoding` (a CDN's
 * gzip, decoded by fetch) is judged by its decoded bytes, not by its `Content-Length`.
 */
import { DownloadError, NeuralDiffError, PayloadTooLargeError } from '../core/errors.ts';
import type { ReleaseFile } from './manifest.ts';
import { retryAfterMs, waitBeforeRetry, type RetryHint, type RetryOptions } from './retry.ts';
import { sha256Hex } from './sha256.ts';
import { concatBytes, type DownloadStore } from './state.ts';

/** The part of a fetch Response the updater reads. */
export interface FetchResponse {
  status: number;
  headers: { get(name: string): string | null };
  /**
   * A byte stream (absent on React Native's fetch: then `arrayBuffer` is used, without resume
   * mid-body; a length given by Content-Length is compared with the cap, or with the manifest's,
   * before the body is read, and a body of unknown size, without Content-Length or coded, is not
   * read: the request is made again bounded by a Range header, and a mirror that still answers
   * with a body of unknown size is left).
   */
  body?: ReadableStream<Uint8Array> | null;
  arrayBuffer(): Promise<ArrayBuffer>;
}

/**
 * The `fetch` the updater calls: the global one fits. The manifest is asked for with
 * `cache: 'no-cache'` (the request's cache mode, not a `Cache-Control` header, which is not
 * CORS-safelisted and would cost a cross-origin mirror a preflight): browsers and Node's fetch
 * then revalidate, sending `Cache-Control: max-age=0` themselves; a fetch that ignores the mode
 * sends no such header (see docs/PUBLISHING.md, "The static host").
 */
export type FetchLike = (url: string, init: { headers: Record<string, string>; signal: AbortSignal; cache?: 'no-cache' }) => Promise<FetchResponse>;

/** Download settings (with when to retry: {@link RetryOptions}). */
export interface DownloadOptions extends RetryOptions {
  fetch: FetchLike;
  /** Base URLs of the release folder, tried in order. */
  mirrors: readonly string[];
  /** Abort a request that delivers no byte for this long (default 30 s). */
  timeoutMs?: number;
  /**
   * Slowest average a request may keep up, in bytes per second (default 1024), after the first
   * `timeoutMs`: a mirror that sends a byte now and then (never idle long enough to time out)
   * is dropped for the next one instead of holding the device for hours (TUF's slow-retrieval
   * attack). 0 turns it off.
   */
  minBytesPerSecond?: number;
  /** Bytes kept in memory before they are stored (default 256 KiB): what a crash can lose. */
  chunkBytes?: number;
  /** Requests per mirror for one file, resumes included (default 4). */
  attemptsPerMirror?: number;
  /**
   * The most body bytes the run's {@link DownloadStats} may count (the updater's
   * `maxDownloadBytes`): a body that would take the run past it is refused as it arrives, and so
   * is a whole file answered to a Range request (a restart from byte 0) that would not fit.
   */
  maxRunBytes?: number;
  /** Called as bytes arrive. */
  onProgress?: (event: { file: string; received: number; length: number }) => void;
}

/** What the downloads of one run cost. */
export interface DownloadStats {
  /** HTTP requests made. */
  requests: number;
  /** Body bytes received. */
  bytesReceived: number;
  /** Requests that resumed a partial file with a Range header. */
  resumes: number;
  /** Bytes received for a range already received once (a restarted download). */
  bytesRefetched: number;
  /** Milliseconds waited before asking a mirror again (backoff and `Retry-After`), bounded by `maxRetryWaitMs`. */
  retryWaitMs: number;
}

/** Stats of a run that has not downloaded anything yet. */
export function emptyStats(): DownloadStats {
  return { requests: 0, bytesReceived: 0, resumes: 0, bytesRefetched: 0, retryWaitMs: 0 };
}

/** One failed try, for the error and the report. */
export interface DownloadAttempt {
  url: string;
  problem: string;
}

class AttemptFailure extends Error {
  /**
   * `mirror`: this mirror will not serve it (move on); `retry`: try the same mirror again
   * (resume) after a backoff; `again`: try it again at once (the device's own bytes were wrong).
   */
  constructor(message: string, readonly next: 'mirror' | 'retry' | 'again', readonly hint: RetryHint = {}) {
    super(message);
  }
}

/** A status the same mirror is asked again for, after a backoff (and its `Retry-After`). */
const retriable = (status: number) => status >= 500 || status === 429 || status === 408;

/** The failure of an HTTP status that is not the file: retried or the next mirror. */
function statusFailure(res: FetchResponse, now: number): AttemptFailure {
  if (!retriable(res.status)) return new AttemptFailure(`HTTP ${res.status}`, 'mirror');
  const after = retryAfterMs(res.headers.get('retry-after'), now);
  return new AttemptFailure(`HTTP ${res.status}${after !== undefined ? ` (Retry-After ${res.headers.get('retry-after')})` : ''}`, 'retry', after !== undefined ? { retryAfterMs: after } : {});
}

/**
 * Whether the body's size is unknown until it is read: no `Content-Length`, or a content coding
 * (the length is then the coded one). Where fetch has no body streams, such a body is not read:
 * `arrayBuffer()` would hold all of it before any cap applies.
 */
function sizeUnknown(res: FetchResponse): boolean {
  return contentCoded(res) || !/^\d+$/.test(res.headers.get('content-length') ?? '');
}

/**
 * The headers of a request bounded to the bytes `from`..`to` (inclusive), for a fetch without
 * body streams. A fetch asks a Range request uncoded itself (the Fetch standard adds
 * `Accept-Encoding: identity`; OkHttp, under React Native, asks no gzip then).
 */
const boundedRequest = (from: number, to: number): Record<string, string> => ({ Range: `bytes=${from}-${to}` });

/** Why a body of unknown size is not read where fetch has no body streams. */
function unknownSize(res: FetchResponse, bounded: boolean): AttemptFailure {
  const what = contentCoded(res) ? `a ${res.headers.get('content-encoding')}-coded body (its decoded size unknown)` : 'a body without Content-Length';
  return bounded
    ? new AttemptFailure(`sent ${what} to a request bounded by Range, where fetch has no body streams: not read (it would be held whole before any cap applied); serve Range requests, or files with Content-Length and no Content-Encoding`, 'mirror')
    : new AttemptFailure(`sent ${what} where fetch has no body streams: not read (it would be held whole before any cap applied); asking again bounded by a Range header`, 'again');
}

/**
 * Whether the body is sent with a content coding (gzip, br, …) that fetch decodes: its
 * `Content-Length` then counts the coded bytes, not the file's.
 */
function contentCoded(res: FetchResponse): boolean {
  const coding = res.headers.get('content-encoding');
  return coding !== null && coding.trim() !== '' && coding.trim().toLowerCase() !== 'identity';
}

/** `base` + `path`, with one slash between. */
export function joinUrl(base: string, path: string): string {
  return base.endsWith('/') ? base + path : `${base}/${path}`;
}

/** What watches a request: the idle timer, and the pace every byte must keep up. */
interface Watch {
  /** Waiting for the server: the timers run. */
  arm(): void;
  /** Not waiting for the server (storing bytes): the timers stop. */
  stop(): void;
  /** `n` body bytes arrived. */
  got(n: number): void;
}

/**
 * Read a response body into `sink`, aborting through the watch when no byte comes for
 * `timeoutMs` or the body falls below the minimum pace. Resolves when the body ended; rejects when
 * it broke off or stalled.
 */
async function readBody(res: FetchResponse, sink: (bytes: Uint8Array) => void | Promise<void>, watch: Watch): Promise<void> {
  if (!res.body) {
    await sink(new Uint8Array(await res.arrayBuffer()));
    return;
  }
  const reader = res.body.getReader();
  try {
    for (;;) {
      watch.arm();
      const { done, value } = await reader.read();
      watch.stop(); // storing the bytes (an fsync) is not the server's idleness
      if (done) return;
      watch.got(value.length);
      await sink(value);
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

/**
 * The timers of one request: idle (no byte for `ms`) and pace (after a grace of `ms`, at least
 * `minRate` bytes per second on average: each byte buys 1/minRate s). Time spent storing bytes
 * (stop .. arm) counts for neither.
 */
function requestWatch(controller: AbortController, ms: number, minRate: number): Watch {
  let idle: ReturnType<typeof setTimeout> | undefined;
  let pace: ReturnType<typeof setTimeout> | undefined;
  // The moment the pace runs out, as time waited for the server (paused while storing).
  let credit = ms;
  let waited = 0;
  let armedAt: number | undefined;
  const clear = () => {
    if (idle !== undefined) clearTimeout(idle);
    if (pace !== undefined) clearTimeout(pace);
    idle = pace = undefined;
  };
  return {
    arm() {
      clear();
      const now = Date.now();
      if (armedAt !== undefined) waited += now - armedAt;
      armedAt = now;
      idle = setTimeout(() => controller.abort(new Error(`no data for ${ms} ms`)), ms);
      if (minRate > 0) pace = setTimeout(() => controller.abort(new Error(`slower than ${minRate} bytes/s on average (a slow-retrieval stall)`)), Math.max(0, credit - waited));
    },
    stop() {
      clear();
      if (armedAt !== undefined) waited += Date.now() - armedAt;
      armedAt = undefined;
    },
    got(n: number) {
      if (minRate > 0) credit += (n * 1000) / minRate;
    },
  };
}

function describe(e: unknown, signal: AbortSignal): string {
  if (signal.aborted) return `timed out (${(signal.reason as Error)?.message ?? 'aborted'})`;
  return (e as Error)?.message ?? String(e);
}

/**
 * Fetch a file of unknown length (the manifest) whole, refusing more than `maxBytes`, from the
 * first mirror that serves it. A 5xx, 429 or a dropped connection asks the same mirror again
 * after a backoff (up to `attemptsPerMirror` requests); a timeout, another status or a refusal
 * moves on to the next mirror. Returns the bytes and the base URL that served them.
 */
export async function fetchSmallFile(path: string, maxBytes: number, options: DownloadOptions, stats: DownloadStats, accept?: (bytes: Uint8Array, base: string) => Promise<void>): Promise<{ bytes: Uint8Array; base: string }> {
  const attempts: DownloadAttempt[] = [];
  let refusal: unknown;
  const now = options.now ?? Date.now;
  // Whether fetch was seen to give no body streams (React Native's): requests are bounded then.
  let noStreams = false;
  for (const base of options.mirrors) {
    const url = joinUrl(base, path);
    // Retries after a backoff so far, and what the last failure said (undefined: ask at once).
    let backoffs = 0;
    let wait: RetryHint | undefined;
    for (let attempt = 0; attempt < (options.attemptsPerMirror ?? 4); attempt++) {
      if (wait) {
        const refused = await waitBeforeRetry(backoffs++, wait, options, stats);
        if (refused) {
          attempts.push({ url, problem: refused.refused });
          break;
        }
      }
      wait = undefined;
      const controller = new AbortController();
      const idle = requestWatch(controller, options.timeoutMs ?? 30_000, options.minBytesPerSecond ?? 1024);
      const parts: Uint8Array[] = [];
      let size = 0;
      try {
        stats.requests++;
        idle.arm();
        // Without body streams, bounded to one byte past the cap (learned from the first answer).
        const res = await options.fetch(url, { headers: noStreams ? boundedRequest(0, maxBytes) : {}, cache: 'no-cache', signal: controller.signal });
        const part = noStreams && res.status === 206 && /^bytes 0-\d+\/(\d+|\*)$/.test(res.headers.get('content-range') ?? '');
        if (res.status !== 200 && !part) throw statusFailure(res, now());
        if (!res.body && sizeUnknown(res)) {
          controller.abort(new Error('a body of unknown size, not read'));
          const failure = unknownSize(res, noStreams);
          noStreams = true;
          throw failure;
        }
        // Refused before a byte is read when its length is given: a fetch without body streams
        // (React Native) can only read a body whole. A coded body's length is not the file's.
        const declared = contentCoded(res) ? null : res.headers.get('content-length');
        if (declared !== null && /^\d+$/.test(declared) && Number(declared) > maxBytes) {
          res.body?.cancel().catch(() => {});
          throw new AttemptFailure(`declares ${declared} bytes (Content-Length), more than the ${maxBytes}-byte cap: not read`, 'mirror');
        }
        await readBody(res, (b) => {
          size += b.length;
          stats.bytesReceived += b.length;
          // Thrown out of readBody, which cancels the stream (an abort here would read as a timeout).
          if (size > maxBytes) throw new AttemptFailure(`more than the ${maxBytes}-byte cap`, 'mirror');
          parts.push(b);
        }, idle);
        const bytes = concatBytes(parts);
        // The caller's checks (signature, rollback): a mirror whose copy fails them is passed over.
        if (accept) await accept(bytes, base);
        return { bytes, base };
      } catch (e) {
        if (e instanceof NeuralDiffError) {
          refusal ??= e;
          attempts.push({ url, problem: `${e.code}: ${e.message}` });
          break;
        }
        attempts.push({ url, problem: e instanceof AttemptFailure ? e.message : describe(e, controller.signal) });
        // A dropped connection (not a timeout: a stalled mirror is left) is asked again.
        if (e instanceof AttemptFailure ? e.next === 'mirror' : controller.signal.aborted || !isNetworkError(e)) break;
        if (!(e instanceof AttemptFailure) || e.next === 'retry') wait = e instanceof AttemptFailure ? e.hint : {};
      } finally {
        idle.stop();
      }
    }
  }
  // Every mirror answered with a manifest the device refuses: that refusal is the answer.
  if (refusal && attempts.every((a) => /^ND_/.test(a.problem))) throw refusal;
  throw new DownloadError(`could not fetch ${path} from any of ${options.mirrors.length} mirror(s): ${attempts.map((a) => `${a.url}: ${a.problem}`).join('; ')}: check the network and the release URLs`, { attempts, ...(refusal ? { refusal: (refusal as NeuralDiffError).code } : {}) });
}

/**
 * Download `file` into `store` (resuming what it holds) and return its bytes once their length
 * and SHA-256 are the manifest's. Mirrors are tried in order; on a dropped or stalled connection,
 * a 5xx or a 429, the same mirror is asked for the rest (Range) after a backoff and its
 * `Retry-After` (retry.ts), up to `attemptsPerMirror` requests.
 *
 * @throws DownloadError when no mirror served it intact (what it holds is removed)
 */
export async function downloadFile(file: ReleaseFile, store: DownloadStore, options: DownloadOptions, stats: DownloadStats): Promise<Uint8Array> {
  const key = file.sha256;
  const chunk = options.chunkBytes ?? 256 * 1024;
  const attempts: DownloadAttempt[] = [];
  let have = await store.size(key);
  if (have === file.length) {
    // Complete from an earlier run (the app stopped between download and apply).
    const bytes = await store.read(key);
    if (bytes.length === file.length && (await sha256Hex(bytes)) === file.sha256) return bytes;
  }
  if (have >= file.length) {
    await store.remove(key);
    have = 0;
  }
  // Bytes received once, even if dropped later: a second receipt counts as re-fetched.
  let highWater = have;
  const now = options.now ?? Date.now;
  // Whether fetch was seen to give no body streams (React Native's): requests are bounded then.
  let noStreams = false;
  for (const base of options.mirrors) {
    const url = joinUrl(base, file.file);
    // The retries after a backoff so far on this mirror, and what the last failure said.
    let backoffs = 0;
    let wait: RetryHint | undefined;
    for (let attempt = 0; attempt < (options.attemptsPerMirror ?? 4) && have < file.length; attempt++) {
      if (wait) {
        const refused = await waitBeforeRetry(backoffs++, wait, options, stats);
        if (refused) {
          attempts.push({ url, problem: refused.refused });
          break;
        }
      }
      wait = undefined;
      const controller = new AbortController();
      const idle = requestWatch(controller, options.timeoutMs ?? 30_000, options.minBytesPerSecond ?? 1024);
      let pending: Uint8Array[] = [];
      let pendingBytes = 0;
      // Store what was received, a chunk per append (each durable on its own), all of it or
      // (`whole` false) only whole chunks. A store that fails is not written to again.
      let storeFailed = false;
      const flush = async (whole = true) => {
        if (!pendingBytes || storeFailed) return;
        let bytes = concatBytes(pending);
        pending = [bytes];
        while (bytes.length >= chunk || (whole && bytes.length > 0)) {
          const piece = bytes.subarray(0, Math.min(bytes.length, chunk));
          try {
            await store.append(key, piece);
          } catch (e) {
            storeFailed = true;
            throw e;
          }
          have += piece.length;
          bytes = bytes.subarray(piece.length);
          pending = bytes.length ? [bytes] : [];
          pendingBytes = bytes.length;
        }
      };
      try {
        stats.requests++;
        if (have > 0) stats.resumes++;
        idle.arm();
        // Without body streams, bounded to one byte past the file's end (a server stops at the end).
        const res = await options.fetch(url, { headers: noStreams ? boundedRequest(have, file.length) : have > 0 ? { Range: `bytes=${have}-` } : {}, signal: controller.signal });
        if (res.status === 416) {
          // What is stored does not fit the server's file: start again.
          await store.remove(key);
          have = 0;
          throw new AttemptFailure('HTTP 416 (range not satisfiable): restarting the file', 'again');
        }
        if (res.status !== 200 && res.status !== 206) throw statusFailure(res, now());
        if (!res.body && sizeUnknown(res)) {
          controller.abort(new Error('a body of unknown size, not read'));
          const failure = unknownSize(res, noStreams);
          noStreams = true;
          throw failure;
        }
        if (res.status === 200 && have > 0) {
          // The server ignored the Range header: the body is the whole file again, a restart from
          // byte 0. What is stored goes either way: kept, the next run would plan only the rest
          // of a file this mirror serves whole.
          const held = have;
          await store.remove(key);
          have = 0;
          const cap = options.maxRunBytes;
          if (cap !== undefined && stats.bytesReceived + file.length > cap) {
            controller.abort(new Error('over the run\'s download cap'));
            throw new PayloadTooLargeError(
              stats.bytesReceived + file.length,
              cap,
              `${url} answered the request for the rest of ${file.file} (from byte ${held}) with the whole file (HTTP 200, ${file.length} bytes), which would take this run to ${stats.bytesReceived + file.length} bytes, above maxDownloadBytes (--max-bytes) ${cap}: nothing of it was read, and the ${held} bytes stored were dropped so that the next run plans the whole file; raise the cap, or serve the release from a host that answers Range requests`,
            );
          }
        }
        if (res.status === 206 && contentCoded(res)) {
          // A range of the coded body: its offsets are not the decoded file's. Start again whole.
          res.body?.cancel().catch(() => {});
          const from = have;
          await store.remove(key);
          have = 0;
          throw new AttemptFailure(`answered Range bytes=${from}- with a ${res.headers.get('content-encoding')}-coded part, whose offsets are not the file's: restarting the file without Range`, 'again');
        }
        if (res.status === 206) {
          const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
          if (!range || Number(range[1]) !== have || (range[3] !== '*' && Number(range[3]) !== file.length)) {
            throw new AttemptFailure(`answered Range bytes=${have}- with Content-Range ${JSON.stringify(res.headers.get('content-range'))}: expected bytes ${have}-${file.length - 1}/${file.length}`, 'mirror');
          }
        }
        // A coded body's Content-Length counts the coded bytes: its decoded bytes are counted as
        // they arrive (no more than the manifest's length) and hashed at the end.
        const declared = contentCoded(res) ? null : res.headers.get('content-length');
        if (declared !== null && /^\d+$/.test(declared) && have + Number(declared) !== file.length) {
          throw new AttemptFailure(`serves ${have + Number(declared)} bytes, the manifest says ${file.length}: another file or a stale copy`, 'mirror');
        }
        await readBody(res, async (b) => {
          const cap = options.maxRunBytes;
          if (cap !== undefined && stats.bytesReceived + b.length > cap) {
            controller.abort(new Error('over the run\'s download cap'));
            throw new PayloadTooLargeError(stats.bytesReceived + b.length, cap, `${url} sent more of ${file.file} than this run may download: ${stats.bytesReceived + b.length} bytes, above maxDownloadBytes (--max-bytes) ${cap}; the device keeps the model it holds now: raise the cap, or run the update where a larger download is fine`);
          }
          stats.bytesReceived += b.length;
          const at = have + pendingBytes;
          stats.bytesRefetched += Math.max(0, Math.min(highWater, at + b.length) - at);
          highWater = Math.max(highWater, at + b.length);
          if (at + b.length > file.length) {
            controller.abort(new Error('body longer than the manifest says'));
            throw new AttemptFailure(`sent more than the ${file.length} bytes the manifest lists: another file or a hostile server`, 'mirror');
          }
          pending.push(b);
          pendingBytes += b.length;
          options.onProgress?.({ file: file.file, received: have + pendingBytes, length: file.length });
          if (pendingBytes >= chunk) await flush(false);
        }, idle);
        await flush();
        if (have < file.length) throw new AttemptFailure(`the body ended after ${have} of ${file.length} bytes`, 'retry');
      } catch (e) {
        if (e instanceof PayloadTooLargeError) {
          await flush().catch(() => {});
          throw e;
        }
        const over = e instanceof AttemptFailure && /more than/.test(e.message);
        // Bytes that arrived before a drop are kept (the hash decides at the end); an over-long
        // body is not the file: drop all of it.
        if (over) {
          await store.remove(key);
          have = 0;
        } else await flush().catch(() => {});
        attempts.push({ url, problem: e instanceof AttemptFailure ? e.message : describe(e, controller.signal) });
        if (e instanceof AttemptFailure && e.next === 'mirror') break;
        if (!(e instanceof AttemptFailure) && !controller.signal.aborted && !isNetworkError(e)) throw e;
        // A failure of the server or the network: the same mirror after a backoff.
        if (!(e instanceof AttemptFailure) || e.next === 'retry') wait = e instanceof AttemptFailure ? e.hint : {};
      } finally {
        idle.stop();
      }
    }
    if (have === file.length) {
      const bytes = await store.read(key);
      if (bytes.length === file.length && (await sha256Hex(bytes)) === file.sha256) return bytes;
      attempts.push({ url, problem: `served bytes whose SHA-256 is not the manifest's ${file.sha256.slice(0, 12)}…: a tampered or damaged copy` });
      await store.remove(key);
      have = 0;
    }
  }
  throw new DownloadError(
    `could not download ${file.file} (${file.length} bytes) intact from any of ${options.mirrors.length} mirror(s): ${attempts.map((a) => `${a.url}: ${a.problem}`).join('; ')}`,
    { file: file.file, attempts },
  );
}

/** Errors fetch and body streams raise for network trouble (retry), as opposed to bugs. */
function isNetworkError(e: unknown): boolean {
  return e instanceof TypeError || (e as Error)?.name === 'AbortError' || /terminated|socket|ECONNRESET|network|fetch failed|other side closed/i.test((e as Error)?.message ?? '');
}
