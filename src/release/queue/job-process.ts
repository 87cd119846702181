/**
 * The process a worker runs payload jobs in (started by {@link JobProcesses}): it loads the
 * processor once, says it is ready, then runs one job at a time for as long as the worker keeps
 * it, so a job pays neither a process start nor the loading of neural-diff. A message in, a
 * message out, over the IPC channel of `child_process.fork`.
 */
import processPayloadJob, { type QueuedJobData } from './processor.ts';
import { useJobTemp, type JobProcessMessage, type JobProcessRequest } from './sandbox.ts';

// What a job leaves in its temporary folder is removed with this process (src/release/queue/sandbox.ts).
useJobTemp();

const send = (m: JobProcessMessage) => new Promise<void>((resolve) => {
  if (!process.send) return resolve();
  process.send(m, undefined, undefined, () => resolve());
});

if (!process.send) {
  process.stderr.write('job-process: started without an IPC channel; ndiff worker starts this file\n');
  process.exit(2);
}
process.on('message', (m: JobProcessRequest) => {
  if (m?.type !== 'run') return;
  const job = {
    data: m.data as QueuedJobData,
    updateProgress: async (value: object) => { await send({ type: 'progress', value }); },
  };
  processPayloadJob(job).then(
    (value) => send({ type: 'done', value }),
    (e: unknown) => send({ type: 'failed', name: (e as Error)?.name ?? 'Error', message: (e as Error)?.message ?? String(e) }),
  );
});
// Ctrl-C (SIGINT) and systemd's stop (SIGTERM) reach every process of the worker's group: the
// worker alone decides whether the job finishes or is handed back, and kills this process when
// it is done with it.
process.on('SIGINT', () => {});
process.on('SIGTERM', () => {});
// The worker going away closes the channel: nothing is left to run jobs for.
process.on('disconnect', () => process.exit(0));
void send({ type: 'ready' });
