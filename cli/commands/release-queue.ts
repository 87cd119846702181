/**
 * `ndiff release run --queue`, `ndiff release status` and `ndiff worker`: a release's plan on a
 * job engine (BullMQ on Redis, an optional dependency loaded only by these commands).
 */
import { availableParallelism, constants as osConstants } from 'node:os';
import type { Argv, Options } from 'yargs';
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

/** The library's `release` calls, loaded when a release command runs: `ndiff --help` and the other commands never load them. */
export const releaseLibrary = async () => (await import('../../src/front/release.ts')).release;

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
  const release = await releaseLibrary();
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
  const release = await releaseLibrary();
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

/** The signals that stop `ndiff worker`, one promise per signal received, in order. */
function stopSignals(): { next(): Promise<NodeJS.Signals>; off(): void } {
  const received: NodeJS.Signals[] = [];
  const waiting: ((s: NodeJS.Signals) => void)[] = [];
  const on = (signal: NodeJS.Signals) => {
    const w = waiting.shift();
    if (w) w(signal);
    else received.push(signal);
  };
  process.on('SIGINT', on);
  process.on('SIGTERM', on);
  return {
    next: () => new Promise((resolve) => {
      const s = received.shift();
      if (s) resolve(s);
      else waiting.push(resolve);
    }),
    off: () => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
    },
  };
}

/** `jobs a, b` or `job a`. */
const jobsNamed = (ids: string[]) => `job${ids.length === 1 ? '' : 's'} ${ids.join(', ')}`;

/**
 * `worker`: runs until SIGINT or SIGTERM, then takes no new job and lets the running ones finish
 * (exit 0); a second signal meanwhile hands them back to the queue (exit 128 + the signal's
 * number, as a shell reports a process ended by it); a third exits at once.
 */
export async function runWorker(a: WorkerArgs, io: CliIO): Promise<number> {
  const release = await releaseLibrary();
  const worker = await release.worker({ queue: a.queue, concurrency: a.concurrency, lockSeconds: a.lockSeconds, onProgress: (l) => io.progress(l) });
  const signals = stopSignals();
  try {
    io.progress(`worker on ${a.queue} (${a.concurrency} at once, ${worker.threads} thread(s) a job of this machine's ${availableParallelism()} cores): waiting for jobs; Ctrl-C or SIGTERM stops it once its running jobs finish, a second one hands them back to the queue at once`);
    const first = await signals.next();
    const finishing = worker.running();
    io.progress(finishing.length
      ? `stopping: finishing ${jobsNamed(finishing)}, taking no new one (${first}; a second SIGINT or SIGTERM hands ${finishing.length === 1 ? 'it' : 'them'} back to the queue for another worker)`
      : `stopping: no job running, taking no new one (${first})`);
    const stop = await Promise.race([worker.close().then(() => undefined), signals.next()]);
    if (stop === undefined) {
      io.progress(`stopped: ${finishing.length ? `${jobsNamed(finishing)} finished; ` : ''}took no new job`);
      return 0;
    }
    // A third signal while the jobs are handed back (Redis unreachable, say): out at once; the jobs' locks then lapse.
    void signals.next().then((third) => {
      io.err(`stopped at once (a third ${third}): a job not yet handed back is taken again by another worker once its lock lapses (--lock-seconds)`);
      process.exit(128 + osConstants.signals[third]);
    });
    const now = worker.running();
    io.progress(`stopping now (a second ${stop}): handing ${now.length ? jobsNamed(now) : 'any job still running'} back to the queue`);
    const handed = await worker.handBack();
    io.progress(`stopped: ${handed.length ? `${jobsNamed(handed)} handed back to the queue, for another worker to take now` : 'no job was left to hand back'}`);
    return 128 + osConstants.signals[stop];
  } finally {
    signals.off();
  }
}
