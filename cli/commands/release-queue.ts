/**
 * `ndiff release run --queue`, `ndiff release status` and `ndiff worker`: a release's plan on a
 * job engine (BullMQ on Redis, an optional dependency loaded only by these commands).
 */
import { availableParallelism } from 'node:os';
import type { Argv, Options } from 'yargs';
import { release } from '../../src/front/release.ts';
import type { PlanJobStatus } from '../../src/release/queue/status.ts';
import { DEFAULT_LOCK_SECONDS } from '../../src/release/queue/worker.ts';
import { DEFAULT_PLAN_LOCK_SECONDS } from '../../src/release/queue/plan-lock.ts';
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
  lockSeconds?: number;
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
    .option('lock-seconds', { type: 'number', default: DEFAULT_PLAN_LOCK_SECONDS, describe: 'seconds the plan\'s Redis lock lasts unrenewed (a run that cannot renew it for half of it stops)' })
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
    ...(a.lockSeconds !== undefined ? { lockSeconds: a.lockSeconds } : {}),
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
  if (s.finished) {
    io.out(`${a.release}: no plan pending: version ${s.finished.version} is the latest, signed in manifest release ${s.finished.release}; nothing to run. Its plan ${s.planId} on the queue: ${s.publish === 'completed' ? 'published (completed)' : s.publish}`);
    return 0;
  }
  const n = (state: string) => s.jobs.filter((j) => j.state === state).length;
  io.out(`plan ${s.planId}: ${n('waiting')} waiting, ${n('running')} running, ${n('done')} done, ${n('failed') + n('refused')} failed${n('refused') ? ` (${n('refused')} refused by publish's checks)` : ''}${n('not queued') ? `, ${n('not queued')} not queued (ndiff release run)` : ''}; publish: ${s.publish}${s.publishReason ? ` (${s.publishReason})` : ''}`);
  io.out(table(s.jobs.map((j) => [j.id, j.state, j.attempts, j.reason ?? j.progress ?? '']), ['job', 'state', 'tries', 'reason or last progress']));
  for (const j of s.jobs) if (j.state === 'running') io.out(runningLine(j));
  return 0;
}

/** A running job as `release status` says it: its worker, its last progress's age, its lock. */
export function runningLine(j: PlanJobStatus): string {
  const seconds = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
  const lock = j.lockExpiresInMs === undefined ? ''
    : j.lockExpiresInMs > 0 ? `; its lock expires in ${seconds(j.lockExpiresInMs)} unless the worker renews it`
      : '; its lock expired: the worker is gone (killed, or its machine lost), and a live worker takes the job again at its next look for stalled jobs';
  return `${j.id}: running on worker ${j.worker ?? '(unnamed)'} (attempt ${j.attempts})${j.progressAgeMs !== undefined ? `, last progress ${seconds(j.progressAgeMs)} ago` : ', no progress reported yet'}${lock}`;
}

/** `worker`: options. */
export function workerCommand(y: Argv<any>): Argv<any> {
  return y
    .option('queue', queueOption)
    .option('concurrency', { type: 'number', default: 1, describe: 'jobs at once, each in its own process with cores/N threads' })
    .option('lock-seconds', { type: 'number', default: DEFAULT_LOCK_SECONDS, describe: 'seconds a dead worker holds its job before another takes it (a kill costs one to two)' })
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
