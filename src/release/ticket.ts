/**
 * A payload job that carries what it needs, so a worker needs no shared disk: a **job ticket**
 * names the job's inputs by content (the base and target versions' files as `blobs/<sha256>`,
 * and for a base a lossy chain reached, the chain's first version and its payloads' blobs), and a worker fetches them from
 * where the release folder is served (HTTP(S), or a path), checks each against its SHA-256, and
 * runs the job in a folder of its own. A learned job's ticket also names its training data, eval
 * inputs and teacher (in its policy, learned.ts), fetched the same way. What it gives back (the unsigned payload and its result)
 * is a claim like any job's: `publish` checks it before anything is signed.
 */
import { randomBytes } from 'node:crypto';
import { copyFile, link, mkdir, readFile, rm } from 'node:fs/promises';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DownloadError, UsageError } from '../core/errors.ts';
import { errCode, readRegularFile, writeFileAtomically } from '../io/durable/durable.ts';
import { PACKAGE_PATH, type ManifestPayload, type ManifestVersion } from '../updater/manifest.ts';
import { BLOBS, sha256Of } from './blobs.ts';
import { jobFiles, runJob } from './jobs.ts';
import { isLearnedSpec, learnedBlobs } from './learned.ts';
import { lossyChain, recordVersion, type JobResult, type ReleaseJob, type ReleaseRecord } from './record.ts';

/** One job with its inputs named by content (JSON; what a queue or a CI matrix carries). */
export interface JobTicket {
  format: 'neural-diff-release-job';
  version: 1;
  modelId: string;
  modelKind: ReleaseRecord['modelKind'];
  job: ReleaseJob;
  /** The job's base version and its target version, each with its files (`blobs/<sha256>`). */
  versions: ManifestVersion[];
  /** When the job's base is a state a lossy payload reached: that payload (a signed blob). */
  via?: ManifestPayload;
  /** When that state is on a lossy chain: the chain's earlier payloads, in order (`versions` then holds the chain's first version). */
  chain?: ManifestPayload[];
}

/** What a worker gives back for a ticket: the result, and the payload's bytes when one was kept. */
export interface TicketOutcome {
  result: JobResult;
  payload?: Uint8Array;
}

/** The tickets of the release's pending jobs (none when nothing is pending). */
export function ticketsOf(record: ReleaseRecord): JobTicket[] {
  return (record.pending?.jobs ?? []).map((job) => {
    const chain = job.via === undefined ? [] : lossyChain(record, job.via);
    const versions = [...new Set([...(chain.length ? [chain[0].fromVersion] : []), job.fromVersion, job.toVersion])].map((n) => {
      const { version, fingerprint, files } = recordVersion(record, n);
      return { version, fingerprint, files };
    });
    const via = chain.at(-1);
    return { format: 'neural-diff-release-job', version: 1, modelId: record.modelId, modelKind: record.modelKind, job, versions, ...(via ? { via } : {}), ...(chain.length > 1 ? { chain: chain.slice(0, -1) } : {}) };
  });
}

/** Refuse what is not a ticket `ticketsOf` makes (a queue is shared: a worker checks before it fetches). */
export function checkTicket(doc: unknown): JobTicket {
  const t = doc as JobTicket;
  const sha = (s: unknown) => typeof s === 'string' && /^[0-9a-f]{64}$/.test(s);
  const blobOk = (f: { file?: unknown; sha256?: unknown; length?: unknown } | undefined) => !!f && sha(f.sha256) && f.file === `${BLOBS}/${f.sha256}` && Number.isSafeInteger(f.length) && (f.length as number) >= 0;
  const ok = typeof t === 'object' && t !== null && t.format === 'neural-diff-release-job' && t.version === 1 && typeof t.modelId === 'string'
    && ['tfjs', 'onnx', 'tflite', 'safetensors', 'gguf'].includes(t.modelKind) && typeof t.job?.id === 'string' && Array.isArray(t.versions)
    && t.versions.every((v) => Number.isSafeInteger(v?.version) && Array.isArray(v.files) && v.files.every((f) => blobOk(f) && typeof f.path === 'string' && PACKAGE_PATH.test(f.path)))
    && (t.via === undefined || blobOk(t.via)) && (t.chain === undefined || (t.via !== undefined && Array.isArray(t.chain) && t.chain.length <= 64 && t.chain.every(blobOk)))
    && (t.job.policy?.method !== 'learned' || (typeof t.job.policy.budget === 'string' && isLearnedSpec(t.job.policy.learned)));
  if (!ok) throw new UsageError(`expected a release job ticket (format "neural-diff-release-job", version 1, files named blobs/<sha256>, model files named without folders), found ${JSON.stringify(doc)?.slice(0, 120)}: queue jobs with \`ndiff release run\`, which writes them`);
  jobFiles('.', t.job.id); // a job id `add --plan` makes, or a UsageError
  return t;
}

/** Where a worker fetches blobs from: a release folder's URL (http, https, file) or a path. */
export function blobSource(source: string): { url?: URL; dir?: string } {
  if (/^https?:\/\//i.test(source)) return { url: new URL(source.endsWith('/') ? source : `${source}/`) };
  if (/^file:\/\//i.test(source)) return { dir: fileURLToPath(source) };
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(source)) throw new UsageError(`source (--source) ${JSON.stringify(source)}: expected the release folder as an http(s):// or file:// URL, or a path`);
  return { dir: path.resolve(source) };
}

/** Options of {@link runTicket}. */
export interface RunTicketOptions {
  /** Where the release folder is served (the blobs are fetched from `<source>/blobs/<sha256>`). */
  source: string;
  /** A folder for this worker's blobs (kept between jobs: named by content, checked when fetched). */
  cacheDir: string;
  onProgress?: (line: string) => void;
  /** Per blob download (default 10 minutes). */
  timeoutMs?: number;
}

/**
 * Run a ticket on this machine: fetch its inputs (each checked against its SHA-256), lay them out
 * as a release folder of its own with a record of just what the job needs, run the job there, and
 * give back its result and payload. Deterministic like `ndiff release job`: the same inputs give
 * the same payload bytes.
 */
export async function runTicket(ticket: JobTicket, options: RunTicketOptions): Promise<TicketOutcome> {
  const progress = options.onProgress ?? (() => {});
  const chain = [...(ticket.chain ?? []), ...(ticket.via ? [ticket.via] : [])];
  // A learned job's data, eval inputs and teacher are fetched and checked as the versions' files are.
  const blobs = [...ticket.versions.flatMap((v) => v.files), ...chain, ...learnedBlobs(ticket.job.policy?.learned)];
  const cache = path.join(options.cacheDir, BLOBS);
  await mkdir(cache, { recursive: true });
  for (const b of blobs) await fetchBlob(options.source, b, cache, options.timeoutMs ?? 600_000, progress);
  const work = path.join(options.cacheDir, `job-${ticket.job.id}-${randomBytes(4).toString('hex')}`);
  try {
    await mkdir(path.join(work, BLOBS), { recursive: true });
    for (const b of blobs) {
      const at = path.join(work, b.file);
      await link(path.join(cache, b.sha256), at).catch(() => copyFile(path.join(cache, b.sha256), at));
    }
    const record: ReleaseRecord = {
      format: 'neural-diff-release-record', version: 1, modelId: ticket.modelId, modelKind: ticket.modelKind, history: 1, release: 0,
      versions: ticket.versions.map((v) => ({ ...v, addedAt: '', source: '' })),
      payloads: chain,
      pending: null,
    };
    const result = await runJob(work, record, ticket.job, progress);
    const { carried: _carried, ...kept } = result;
    const payload = kept.payload ? new Uint8Array(await readFile(jobFiles(work, ticket.job.id).payload)) : undefined;
    return { result: kept, ...(payload ? { payload } : {}) };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Fetch one blob into the cache (unless there already), checked against its length and SHA-256. */
async function fetchBlob(source: string, blob: { file: string; sha256: string; length: number }, cache: string, timeoutMs: number, progress: (line: string) => void): Promise<void> {
  const at = path.join(cache, blob.sha256);
  const cached = await readRegularFile(at, { maxBytes: blob.length }).catch(() => null);
  if (cached && cached.length === blob.length && sha256Of(cached) === blob.sha256) return;
  const from = blobSource(source);
  let bytes: Uint8Array;
  const where = from.url ? new URL(blob.file, from.url).href : path.join(from.dir as string, blob.file);
  progress(`fetching ${blob.file} (${blob.length} bytes) from ${where}`);
  try {
    if (from.url) {
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(new Error(`no whole file within ${timeoutMs} ms`)), timeoutMs);
      try {
        const res = await fetch(where, { signal: controller.signal });
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        bytes = await bodyUpTo(res, blob.length, controller);
      } finally {
        clearTimeout(timer);
      }
    } else {
      const read = await readRegularFile(where, { maxBytes: blob.length });
      if (!read) throw Object.assign(new Error('not there'), { code: 'ENOENT' });
      bytes = read;
    }
  } catch (e) {
    const why = errCode(e) === 'ENOENT' ? 'not there' : e instanceof TooLong ? `a body longer than the ${blob.length} bytes the job names: another file, or a hostile source` : (e as Error).message;
    throw new DownloadError(`job input ${blob.file} could not be fetched from ${where} (${why}): serve the release folder there (any static host) or pass its path as source (--source)`, { file: blob.file, source });
  }
  if (bytes.length !== blob.length || sha256Of(bytes) !== blob.sha256) {
    throw new DownloadError(`job input ${blob.file} from ${where} is ${bytes.length} bytes with another SHA-256 than its name (expected ${blob.length} bytes): the source serves another or a damaged file; fix the host and the job is retried`, { file: blob.file, source });
  }
  await writeFileAtomically(at, bytes);
}

class TooLong extends Error {}

/**
 * A response's body, read until it ends; a body longer than `length` (the input's length in the
 * ticket) is not the input: reading stops there (the request aborted) instead of holding all
 * that the server sends.
 */
async function bodyUpTo(res: Response, length: number, controller: AbortController): Promise<Uint8Array> {
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (declared > length) {
    controller.abort();
    throw new TooLong();
  }
  if (!res.body) return new Uint8Array(await res.arrayBuffer());
  // Held as it arrives (never the length a job names allocated up front: a job may name any).
  const parts: Uint8Array[] = [];
  let at = 0;
  const reader = res.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return Buffer.concat(parts, at);
      if (at + value.length > length) {
        controller.abort();
        throw new TooLong();
      }
      parts.push(value);
      at += value.length;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}
