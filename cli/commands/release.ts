/**
 * `ndiff release`: keep a release folder for one model on the build server (add a version,
 * plan and run its payload jobs, publish the signed manifest, show what it holds).
 */
import type { Argv } from 'yargs';
import { LEARNED_METHODS, type LearnedMethod } from '../../src/release/learned.ts';
import { formatBytes } from '../../src/diff/budget.ts';
import type { DriftCheck } from '../../src/release/add.ts';
import type { ReleaseJob } from '../../src/release/record.ts';
import type { ProgramOutputKind } from '../../src/engine/program/training-model.ts';
import type { ReleaseJobExport } from '../../src/front/release.ts';
import { DEFAULT_KEYFRAME_BELOW } from '../../src/front/quality-target.ts';
import type { QualityTarget } from '../../src/front/quality-target.ts';
import type { RunJobResult } from '../../src/release/jobs.ts';
import { inCliWords, table, type CliIO } from '../common.ts';
import { seeDocs } from '../help.ts';
import { releaseLibrary, releaseRunOptions, runReleaseRun, runReleaseStatus } from './release-queue.ts';

/** Wraps a command handler so it writes through the CLI's io and sets the exit code (from ndiff.ts). */
export type Runner = <A>(fn: (a: A, io: CliIO) => Promise<number>) => (a: A) => Promise<void>;

interface ReleaseDirArgs {
  release: string;
}
interface AddArgs extends ReleaseDirArgs {
  model: string;
  eval?: string;
  state: string[];
  output?: string;
  outputKind?: ProgramOutputKind;
  modelId?: string;
  key?: string;
  history?: number;
  /** exact, topk or a learned method: `release.add` checks it. */
  method: string;
  budget?: string;
  expires: string;
  plan: boolean;
  keyframeBelow?: number;
  minAgreement?: number;
  budgetGrid?: string;
  train?: string;
  teacher?: string;
  epochs?: number;
  seed?: number;
  tune?: 'quick' | 'thorough' | 'off';
  threads?: number;
}
interface JobArgs extends ReleaseDirArgs {
  id?: string;
  index?: number;
  method?: 'exact' | 'topk';
  budget?: string;
  export?: string;
  payload?: string;
}
interface PublishArgs extends ReleaseDirArgs {
  key: string;
  expires: string;
  accept?: string[];
}

const releaseOption = { type: 'string', demandOption: true, describe: 'release folder (serve it from any static host)' } as const;
const expiresOption = { type: 'string', default: '30d', describe: 'manifest expiry: a duration (30d, 12h) or ISO date' } as const;

const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
const autoLine = (a: { target: QualityTarget; grid: readonly string[] }) => `budget auto: each payload the smallest of ${a.grid.join(', ')} whose devices agree with the new version on at least ${pct(a.target.value)} of the --eval inputs (--min-agreement); none: the exact payload (a keyframe)`;
const thresholdLine = (t: number) => `keyframe threshold: ${pct(t)} top-1 agreement with the new version on the --eval inputs (--keyframe-below): a lossy payload whose devices would agree less is made exact`;

/** `ndiff release add`: one call of the library's `release.add`, its result printed. */
async function runAdd(a: AddArgs, io: CliIO): Promise<number> {
  let saidThreshold = false;
  const release = await releaseLibrary();
  const { closenessLines } = await import('../../src/front/measure/payload-eval.ts');
  const res = await release.add({
    release: a.release, model: a.model, method: a.method as 'exact' | 'topk' | LearnedMethod, expires: a.expires, plan: a.plan, state: a.state,
    ...(a.eval !== undefined ? { eval: a.eval } : {}),
    ...(a.output !== undefined ? { output: a.output } : {}),
    ...(a.outputKind !== undefined ? { outputKind: a.outputKind } : {}),
    ...(a.modelId !== undefined ? { modelId: a.modelId } : {}),
    ...(a.key !== undefined ? { key: a.key } : {}),
    ...(a.history !== undefined ? { history: a.history } : {}),
    ...(a.budget !== undefined ? { budget: a.budget } : {}),
    ...(a.keyframeBelow !== undefined ? { keyframeBelow: a.keyframeBelow } : {}),
    ...(a.minAgreement !== undefined ? { minAgreement: a.minAgreement } : {}),
    ...(a.budgetGrid !== undefined ? { budgetGrid: a.budgetGrid } : {}),
    ...Object.fromEntries((['train', 'teacher', 'epochs', 'seed', 'tune', 'threads'] as const).filter((k) => a[k] !== undefined).map((k) => [k, a[k]])),
    onProgress: (l) => io.progress(l),
    onMeasured: (m) => {
      if (!saidThreshold) io.out(m.budgetAuto ? autoLine(m.budgetAuto) : thresholdLine(m.keyframeBelow));
      saidThreshold = true;
      for (const line of closenessLines(m.closeness, `version ${m.job.toVersion}`)) io.out(`${m.job.id}: ${line}`);
    },
  });
  const warnings = res.warnings.map(inCliWords);
  const doc = { ...res, warnings };
  for (const w of warnings) io.err(`warning: ${w}`);
  if (res.keyframeBelow !== undefined && !saidThreshold) io.out(res.budgetAuto ? autoLine(res.budgetAuto) : thresholdLine(res.keyframeBelow));
  for (const d of res.drift ?? []) io.out(driftLine(d));
  io.result?.(doc);
  if (res.jobs) {
    // One JSON line per job, for a CI matrix; then `ndiff release publish`.
    for (const j of res.jobs) io.out(JSON.stringify(j));
    return 0;
  }
  io.out(`${a.release}: model ${JSON.stringify(res.modelId)} version ${res.version} (${res.fingerprint}), full package ${formatBytes(res.packageBytes ?? 0)}; ${res.added ?? 0} payload(s) added${res.skipped?.length ? `, ${res.skipped.length} not kept (no smaller than the package)` : ''}; manifest release ${res.release} signed`);
  return 0;
}

/** One line per lossy payload measured for keyframes: its chain, its agreement, and what was shipped. */
function driftLine(d: DriftCheck): string {
  const chain = d.chain > 1 ? `after a chain of ${d.chain} lossy payloads` : 'after one lossy payload';
  if (d.agreement === undefined) return `${d.job}: drift not measured (the output has no classes to agree on): the lossy payload is kept`;
  const verdict = d.larger
    ? `below ${pct(d.threshold)}: a larger payload is shipped (budget ${d.larger.budget}, ${formatBytes(d.larger.bytes)}), with which they agree on ${pct(d.larger.agreement)}`
    : d.keyframe
    ? `below ${pct(d.threshold)}: keyframe, the exact payload is shipped (${d.keyframeBytes !== undefined ? `${formatBytes(d.keyframeBytes)}` : 'no smaller than the package: devices take the package'})`
    : `at or above ${pct(d.threshold)}: the lossy payload${d.budget !== undefined ? ` (budget ${d.budget})` : ''} is kept`;
  return `${d.job}: devices agree with version ${d.toVersion} on ${pct(d.agreement)} of the --eval inputs ${chain}, ${verdict}`;
}

/** `ndiff release job`: one call of `release.job`, its result printed. */
async function runJobCommand(a: JobArgs, io: CliIO): Promise<number> {
  const release = await releaseLibrary();
  const res = await release.job({
    release: a.release,
    ...(a.id !== undefined ? { id: a.id } : {}),
    ...(a.index !== undefined ? { index: a.index } : {}),
    ...(a.method !== undefined ? { method: a.method } : {}),
    ...(a.budget !== undefined ? { budget: a.budget } : {}),
    ...(a.export !== undefined ? { export: a.export } : {}),
    ...(a.payload !== undefined ? { payload: a.payload } : {}),
    onProgress: (l) => io.progress(l),
  });
  const { job, ...rest } = res;
  const warnings = res.warnings.map(inCliWords);
  const doc = { ...rest, warnings };
  io.result?.(doc);
  if (a.export !== undefined) printExport(a, io, job, res as ReleaseJobExport);
  else printJobResult(a, io, job, res as RunJobResult);
  for (const w of warnings) io.err(`warning: ${w}`);
  return 0;
}

/** The lines of `release job --export`: where the models are, and the commands that learn the payload and take it back. */
function printExport(a: JobArgs, io: CliIO, job: ReleaseJob, out: ReleaseJobExport): void {
  io.out(`${job.id}: base (version ${job.fromVersion}) in ${out.base}, target (version ${job.toVersion}) in ${out.teacher}. Learn the payload toward the target, e.g.`);
  io.out(`  ndiff train --base ${out.base} --teacher ${out.teacher} --train INPUTS --budget 1% --model-id ${out.modelId} --sequence ${out.sequence} --out ${job.id}.ndiff`);
  io.out(`then: ndiff release job --release ${a.release} --id ${job.id} --payload ${job.id}.ndiff`);
}

/** The line of a job run (or a payload taken in): what was left in jobs/. */
function printJobResult(a: JobArgs, io: CliIO, job: ReleaseJob, res: RunJobResult): void {
  if (!res.payload) {
    io.out(`${job.id}: ${res.skipped}`);
    return;
  }
  if (a.payload === undefined) {
    io.out(`${job.id}: payload of ${res.payload.length} bytes (${res.payload.method}) left in ${a.release}/jobs/; publish when every job has run`);
    return;
  }
  io.out(`${job.id}: payload of ${res.payload.length} bytes (${res.payload.method}${res.payload.exact ? '' : ', lossy'}) checked against the job's base and left in ${a.release}/jobs/; publish when every job has run${res.payload.exact ? '' : ` (a lossy payload is signed only when you vouch for it: ndiff release publish ... --accept ${res.payload.sha256.slice(0, 16)})`}`);
}

/** `ndiff release publish`: one call of `release.publish`, its result printed. */
async function runPublish(a: PublishArgs, io: CliIO): Promise<number> {
  const release = await releaseLibrary();
  const res = await release.publish({ release: a.release, key: a.key, expires: a.expires, ...(a.accept ? { accept: a.accept } : {}) });
  const warnings = res.warnings.map(inCliWords);
  const doc = { ...res, warnings };
  for (const w of warnings) io.err(`warning: ${w}`);
  io.result?.(doc);
  io.out(`${a.release}: manifest release ${res.release} signed (newest version ${res.latest}, ${res.payloads} payload(s), ${res.added} new), expires ${new Date(res.expiresAt * 1000).toISOString()}`);
  return 0;
}

/** `ndiff release cancel`. */
async function runCancel(a: ReleaseDirArgs & { queue?: string }, io: CliIO): Promise<number> {
  const release = await releaseLibrary();
  const res = await release.cancel({ release: a.release, ...(a.queue !== undefined ? { queue: a.queue } : {}) });
  io.result?.(res);
  io.out(`${a.release}: version ${res.cancelled} dropped (its package, jobs and job files); the release is as it was before it was planned`);
  const q = res.queue;
  if (!q) {
    io.out(`job queue not touched (no --queue): if plan ${res.plan} was run on one (ndiff release run), its waiting jobs are still there and workers may run them. To clear them, plan the same model again (ndiff release add --release ${a.release} --model MODEL --plan: the same plan id) and cancel with the queue (ndiff release cancel --release ${a.release} --queue redis://HOST[:PORT])`);
    return 0;
  }
  const removed = q.waiting + q.finished + (q.publish ? 1 : 0);
  io.out(removed === 0 && q.running.length === 0
    ? `plan ${q.plan} was not on ${a.queue}: nothing to take off it`
    : `plan ${q.plan} taken off ${a.queue}: ${q.waiting} waiting job(s) removed (no worker will run them), ${q.finished} finished job result(s) dropped, publish job ${q.publish ? 'removed' : 'not on the queue'}`);
  if (q.lock) io.out(`the plan's run lock on the queue let go (a release run still watching the plan stops)`);
  if (q.running.length) io.out(`${q.running.length} job(s) running on workers (${q.running.join(', ')}) are left to finish; their results will be discarded`);
  return 0;
}

/** `ndiff release show`. */
async function runShow(a: ReleaseDirArgs, io: CliIO): Promise<number> {
  const release = await releaseLibrary();
  const record = await release.show({ release: a.release });
  io.result?.(record);
  io.out(`model ${JSON.stringify(record.modelId)} (${record.modelKind}), manifest release ${record.release}, payloads from the last ${record.history} version(s)${record.pending ? `; version ${record.pending.version} pending (${record.pending.jobs.length} job(s))` : ''}`);
  io.out(table(record.versions.map((v) => [v.version, v.fingerprint, formatBytes(v.files.reduce((n, f) => n + f.length, 0)), v.source]), ['version', 'fingerprint', 'package', 'added from']));
  if (record.payloads.length) {
    io.out('');
    io.out(table(record.payloads.map((p) => [`${p.fromVersion} -> ${p.toVersion}`, p.base, p.target, formatBytes(p.length), p.method + (p.exact ? '' : ' (lossy)')]), ['payload', 'base', 'target', 'bytes', 'method']));
  }
  return 0;
}

/** The `release` command and its subcommands. */
export function releaseCommand(y: Argv, run: Runner): Argv {
  return y
    .usage('ndiff release <add|job|publish|run|status|show|cancel> --release DIR ...\n\nKeep a release folder for one model: full versions, payloads from the last K, a signed manifest; any static host serves it.')
    .command('add', 'add a version (a model folder or file): store, make its payloads, sign', (c) => c
      .option('release', releaseOption)
      .option('model', { type: 'string', demandOption: true, describe: 'new version: TF.js folder, .onnx, .tflite, .safetensors or .gguf file (a split GGUF by any part)' })
      .option('model-id', { type: 'string', describe: 'model id (first version; kept in release.json)' })
      .option('key', { type: 'string', describe: 'Ed25519 private key (not with --plan)' })
      .option('history', { type: 'number', describe: 'payloads from the last K versions (default 3)' })
      // Not as choices: the list of learned methods would take lines of the screen-sized help (add checks it, naming each).
      .option('method', { type: 'string', default: 'exact', describe: `exact, topk within --budget (for .gguf: the on-grid payload), or ${LEARNED_METHODS.slice(0, 2).join(', ')}... learned (--plan)` })
      .option('budget', { type: 'string', describe: 'topk, learned: bytes per payload (1%, 40KB, bytes); topk: auto' })
      .option('min-agreement', { type: 'number', describe: 'budget auto: least top-1 agreement with --model on --eval' })
      .option('budget-grid', { type: 'string', describe: 'budget auto: budgets tried (default 0.5%,1%,2%,5%,10%,20%)' })
      .option('expires', expiresOption)
      .option('plan', { type: 'boolean', default: false, describe: 'print the payload jobs, run nothing' })
      .option('eval', { type: 'string', describe: 'topk, learned: inputs that check each payload before signing (for .gguf: a held-out text, run through llama.cpp)' })
      .option('train', { type: 'string', describe: 'learned: training data each job learns on (x.npy, or a folder)' })
      .option('teacher', { type: 'string', describe: 'learned: the model payloads learn toward (default: --model)' })
      .option('epochs', { type: 'number', describe: 'learned: epochs of each job\'s training (default 10)' })
      .option('seed', { type: 'number', describe: 'learned: training seed (default 0; same seed, same bytes)' })
      .option('tune', { choices: ['quick', 'thorough', 'off'] as const, describe: 'learned: --lr search (default quick)' })
      .option('threads', { type: 'number', describe: 'learned: training threads per job (default 1: same bytes anywhere)' })
      // The screen-sized help (40 lines): docs/cli/release.md documents --threads.
      .hide('version').hide('threads').hide('budget-grid')
      .option('state', { type: 'string', array: true, default: [] as string[], describe: 'stateful .onnx: INPUT:OUTPUT pairs carried' })
      .option('output', { type: 'string', describe: '.onnx: the output compared (default: first non-state)' })
      .option('output-kind', { choices: ['probability', 'logit', 'probabilities', 'logits', 'values'] as const, describe: '.onnx: how the output reads (default: from its shape and last op)' })
      .option('keyframe-below', { type: 'number', describe: `--eval: least agreement before a keyframe (default ${DEFAULT_KEYFRAME_BELOW})` })
      .example('$0 release add --release site/kws --model models/v2 --model-id kws --key release.private.pem', 'add version 2, make its payloads, sign the manifest')
      .example('$0 release add --release site/kws --model models/v3 --plan > jobs.jsonl', 'plan only: one job per line for a CI matrix')
      .epilogue(seeDocs('release')), run(runAdd))
    .command('job', 'run one job that `add --plan` printed (needs the folder, not the key)', (c) => c
      .option('release', releaseOption)
      .option('id', { type: 'string', describe: 'the job id (v3-from-v1)' })
      .option('index', { type: 'number', describe: 'instead of --id: the job\'s place in the plan, from 0' })
      .option('method', { choices: ['exact', 'topk'] as const, describe: 'this edge\'s method (default: add\'s)' })
      .option('budget', { type: 'string', describe: 'topk: this edge\'s budget (1%, 40KB, bytes)' })
      .option('export', { type: 'string', describe: 'write base/ and target/ here to learn the payload elsewhere' })
      .option('payload', { type: 'string', describe: 'take this payload (ndiff train or diff) as the job\'s' })
      .example('$0 release job --release site/kws --id v3-from-v1', 'leaves site/kws/jobs/v3-from-v1.{ndiff,json}')
      .example('$0 release job --release site/kws --id v3-from-v1 --payload e1.ndiff', 'the learned payload becomes this edge\'s')
      .epilogue(seeDocs('release')), run(runJobCommand))
    .command('publish', 'sign the jobs\' payloads into a new manifest (or re-sign: fresh expiry)', (c) => c
      .option('release', releaseOption)
      .option('key', { type: 'string', demandOption: true, describe: 'Ed25519 private key (from ndiff keygen)' })
      .option('expires', expiresOption)
      .option('accept', { type: 'string', array: true, describe: 'SHA-256 of a learned payload you vouch for' })
      .example('$0 release publish --release site/kws --key release.private.pem --expires 30d', 'run this from a timer, before the manifest expires')
      .epilogue(seeDocs('release')), run(runPublish))
    .command('run', 'run the pending plan on a queue (BullMQ on Redis); publish with --key', (c) => releaseRunOptions(c, releaseOption, expiresOption).epilogue(seeDocs('release')), run<any>(runReleaseRun))
    .command('status', 'the pending plan\'s jobs on the queue: waiting, running, done, failed', (c) => c.option('release', releaseOption).option('queue', { type: 'string', demandOption: true, describe: 'the job queue (redis://HOST[:PORT])' }).epilogue(seeDocs('release')), run(runReleaseStatus))
    .command('show', 'list the versions and payloads of a release folder', (c) => c.option('release', releaseOption).epilogue(seeDocs('release')), run(runShow))
    .command('cancel', 'drop the pending version (planned, not published) with its jobs', (c) => c
      .option('release', releaseOption)
      .option('queue', { type: 'string', describe: 'the job queue the plan ran on (redis://HOST[:PORT]): take its jobs off' })
      .example('$0 release cancel --release site/kws --queue redis://queue.internal', 'then add the version again, or another one')
      .epilogue(seeDocs('release')), run(runCancel))
    .demandCommand(1, 'name a release command: add, job, publish, run, status, show or cancel')
    .epilogue(seeDocs('release'));
}
