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
      job.updateProgress({ step: lines, line: line.slice(0, 300) }).catch(() => {});
    },
  });
  return { result: out.result, ...(out.payload ? { payload: Buffer.from(out.payload).toString('base64') } : {}) };
}
