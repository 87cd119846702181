/**
 * The process `ndiff release run` checks workers' results in as they arrive (started by
 * {@link JobProcesses}, kept from check to check): it reads the release record and the job's
 * files from the release folder, runs publish's own check ({@link verifyJobResult}) and answers
 * the verdict bound to the exact bytes it checked ({@link verdictKey}). A refusal is an answer,
 * not a failure: the run keeps it with its reason.
 */
import { NeuralDiffError } from '../../core/errors.ts';
import { readJobResult, verifyJobResult } from '../jobs.ts';
import { verdictKey } from '../publish.ts';
import { readRecord } from '../record.ts';
import type { JobProcessMessage, JobProcessRequest } from './sandbox.ts';

/** What the run asks: check job `job`'s files in `releaseDir`. */
export interface CheckRequest {
  releaseDir: string;
  job: string;
  accept: string[];
}

/** The answer: the entry publish would list, or why the result is refused; `key` binds either to the bytes read. */
export type CheckVerdict =
  | { job: string; key: string; entry: import('../../updater/manifest.ts').ManifestPayload }
  | { job: string; key?: string; refused: string }
  | { job: string; none: string };

/** Check one result (what this process runs; exported for tests in one process). */
export async function checkResult(req: CheckRequest): Promise<CheckVerdict> {
  const record = await readRecord(req.releaseDir);
  const job = record?.pending?.jobs.find((j) => j.id === req.job);
  if (!record || !job) return { job: req.job, refused: `job ${req.job} is not in the release's pending plan` };
  let key: string | undefined;
  try {
    const done = await readJobResult(req.releaseDir, job.id);
    if (!done) return { job: job.id, none: 'not run' };
    if (!done.result.payload || !done.payload) return { job: job.id, none: done.result.skipped ?? 'no payload' };
    key = verdictKey(record, job, done.result, done.payload, req.accept);
    const entry = await verifyJobResult(req.releaseDir, record, job, done.result, done.payload, req.accept.map((a) => a.toLowerCase()));
    return { job: job.id, key, entry };
  } catch (e) {
    if (!(e instanceof NeuralDiffError)) throw e;
    return { job: job.id, ...(key ? { key } : {}), refused: e.message.split(/; nothing was signed/)[0] };
  }
}

const send = (m: JobProcessMessage) => new Promise<void>((resolve) => {
  if (!process.send) return resolve();
  process.send(m, undefined, undefined, () => resolve());
});

if (process.send && process.env.NDIFF_CHECK_PROCESS === '1') {
  process.on('message', (m: JobProcessRequest) => {
    if (m?.type !== 'run') return;
    checkResult(m.data as CheckRequest).then(
      (value) => send({ type: 'done', value }),
      (e: unknown) => send({ type: 'failed', name: (e as Error)?.name ?? 'Error', message: (e as Error)?.message ?? String(e) }),
    );
  });
  process.on('disconnect', () => process.exit(0));
  void send({ type: 'ready' });
}
