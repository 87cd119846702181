/**
 * What `ndiff worker` runs for each payload job, in a job process (job-process.ts, sandbox.ts), so
 * a CPU-heavy job never stops the worker from renewing its jobs' locks, and a crash takes down one
 * job, not the worker. The job's data is a ticket and where the release folder is served; the
 * return value is the job's result with its payload (base64), which `release run` writes into the
 * release folder for publish to check.
 */
import { checkTicket, runTicket } from '../ticket.ts';

/** What `release run` puts in a payload job. */
export interface QueuedJobData {
  ticket: unknown;
  /** Where the release folder is served: http(s):// URL or a path. */
  source: string;
}

/** What a payload job returns. */
export interface QueuedJobReturn {
  result: unknown;
  /** The unsigned payload, base64 (absent when the job kept none). */
  payload?: string;
}

interface SandboxedJob {
  data: QueuedJobData;
  updateProgress(value: object): Promise<void>;
}

/** Longest progress line kept whole; a longer one is cut at a space (never mid-path), marked `…`. */
const PROGRESS_LINE_MAX = 2000;

/** A progress line as the queue keeps it: whole up to {@link PROGRESS_LINE_MAX}, else cut at its last space before it. */
export function wholeLine(line: string): string {
  if (line.length <= PROGRESS_LINE_MAX) return line;
  const space = line.lastIndexOf(' ', PROGRESS_LINE_MAX - 1);
  return `${line.slice(0, space > 0 ? space : PROGRESS_LINE_MAX - 1)} …`;
}

export default async function processPayloadJob(job: SandboxedJob): Promise<QueuedJobReturn> {
  const ticket = checkTicket(job.data.ticket);
  const cacheDir = process.env.NDIFF_WORKER_CACHE;
  if (!cacheDir) throw new Error('NDIFF_WORKER_CACHE is not set: this processor runs under ndiff worker');
  let lines = 0;
  const out = await runTicket(ticket, {
    source: job.data.source,
    cacheDir,
    onProgress: (line) => {
      lines++;
      job.updateProgress({ step: lines, line: wholeLine(line) }).catch(() => {});
    },
  });
  return { result: out.result, ...(out.payload ? { payload: Buffer.from(out.payload).toString('base64') } : {}) };
}
