/**
 * `ndiff release run --queue`, `ndiff release status` and `ndiff worker`: a release's plan on a
 * job engine (BullMQ on Redis, an optional dependency loaded only by these commands).
 */
import { availableParallelism } from 'node:os';
import type { Argv, Options } from 'yargs';
import { release } from '../../src/front/release.ts';
import { DEFAULT_LOCK_SECONDS } from '../../src/release/queue/worker.ts';
import { inCliWords, table, type CliIO } from '../common.ts';
import { seeDocs } from '../help.ts';

interface RunArgs {
  release: string;
  queue: string;
  source?: string;
  key?: string;
  expires: string;
  accept?: string[];
  attempts: number;
  checkConcurrency?: number;
}
interface StatusArgs {
  release: string;
  queue: string;
}
interface WorkerArgs {
  queue: string;
  concurrency: number;
  lockSeconds: number;
}

const queueOption = { type: 'string', demandOption: true, describe: 'job queue: redis://HOST[:PORT] (rediss:// TLS)' } as const;

/** `release run`: options. */
export function releaseRunOptions(c: Argv<any>, releaseOption: Options, expiresOption: Options): Argv<any> {
  return c
    .option('release', releaseOption)
    .option('queue', queueOption)
    .option('source', { type: 'string', describe: 'URL or path workers fetch blobs from (default: --release)' })
    .option('key', { type: 'string', describe: 'Ed25519 private key: publish when all checked' })
    .option('expires', expiresOption)
    .option('accept', { type: 'string', array: true, describe: 'as ndiff release publish --accept' })
    .option('attempts', { type: 'number', default: 3, describe: 'tries per job a worker fails' })
    .option('check-concurrency', { type: 'number', describe: 'results checked at once as they arrive, each in its own process (default: this machine\'s cores)' })
    .example('$0 release add --release site/kws --model models/v4 --plan && $0 release run --release site/kws --queue redis://queue.internal --source https://cdn.example.com/kws/ --key release.private.pem', 'plan, then run the plan on the workers and publish');
}

/** `release run`: one call of `release.run`, its result printed. */
export async function runReleaseRun(a: RunArgs, io: CliIO): Promise<number> {
  const res = await release.run({
    release: a.release, queue: a.queue, expires: a.expires, attempts: a.attempts,
    ...(a.source ? { source: a.source } : {}),
    ...(a.key ? { key: a.key } : {}),
    ...(a.accept ? { accept: a.accept } : {}),
    ...(a.checkConcurrency !== undefined ? { checkConcurrency: a.checkConcurrency } : {}),
    onProgress: (l) => io.progress(l),
  });
  const warnings = res.warnings.map(inCliWords);
  const doc = { ...res, warnings };
  for (const w of warnings) io.err(`warning: ${w}`);
  io.result?.(doc);
  io.out(res.release !== undefined
    ? `${a.release}: plan ${res.plan} done (${res.jobs} job(s)); manifest release ${res.release} signed, ${res.added} payload(s) added`
    : `${a.release}: plan ${res.plan} done (${res.jobs} job(s)), every result checked and left in jobs/: publish with ndiff release publish --release ${a.release} --key ...`);
  return 0;
}

/** `release status`. */
export async function runReleaseStatus(a: StatusArgs, io: CliIO): Promise<number> {
  const s = await release.status({ release: a.release, queue: a.queue });
  io.result?.(s);
  const n = (state: string) => s.jobs.filter((j) => j.state === state).length;
  io.out(`plan ${s.planId}: ${n('waiting')} waiting, ${n('running')} running, ${n('done')} done, ${n('failed') + n('refused')} failed${n('refused') ? ` (${n('refused')} refused by publish's checks)` : ''}${n('not queued') ? `, ${n('not queued')} not queued (ndiff release run)` : ''}; publish: ${s.publish}${s.publishReason ? ` (${s.publishReason})` : ''}`);
  io.out(table(s.jobs.map((j) => [j.id, j.state, j.attempts, (j.reason ?? j.progress ?? '').slice(0, 160)]), ['job', 'state', 'tries', 'reason or last progress']));
  return 0;
}

/** `worker`: options. */
export function workerCommand(y: Argv<any>): Argv<any> {
  return y
    .option('queue', queueOption)
    .option('concurrency', { type: 'number', default: 1, describe: 'jobs at once, each in its own process with cores/N threads' })
    .option('lock-seconds', { type: 'number', default: DEFAULT_LOCK_SECONDS, describe: 'whole seconds a dead worker holds its job before another takes it (BullMQ\'s default; lower finds a dead worker sooner)' })
    .example('$0 worker --queue redis://queue.internal --concurrency 4', 'run payload jobs until stopped (Ctrl-C or SIGTERM lets running jobs finish)')
    .epilogue(seeDocs('worker'));
}

/** `worker`: runs until SIGINT or SIGTERM. */
export async function runWorker(a: WorkerArgs, io: CliIO): Promise<number> {
  const worker = await release.worker({ queue: a.queue, concurrency: a.concurrency, lockSeconds: a.lockSeconds, onProgress: (l) => io.progress(l) });
  io.progress(`worker on ${a.queue} (${a.concurrency} at once, ${worker.threads} thread(s) a job of this machine's ${availableParallelism()} cores): waiting for jobs; Ctrl-C stops`);
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  io.progress('stopping: letting running jobs finish');
  await worker.close();
  return 0;
}
