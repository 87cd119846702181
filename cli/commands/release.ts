/**
 * `ndiff release`: keep a release folder for one model on the build server (add a version,
 * plan and run its payload jobs, publish the signed manifest, show what it holds).
 */
import type { Argv } from 'yargs';
import { UsageError } from '../../src/core/errors.ts';
import { formatBytes } from '../../src/diff/budget.ts';
import { readPrivateKeyFile } from '../../src/sign/node-keys.ts';
import { addVersion, cancelPending, type DriftCheck, type LossyJobPayload } from '../../src/release/add.ts';
import { sha256Of } from '../../src/release/blobs.ts';
import type { PayloadCloseness } from '../../src/train/target-closeness.ts';
import { adoptJobPayload, exportJob, runJob, type RunJobResult } from '../../src/release/jobs.ts';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ProgramOutputKind } from '../../src/train/program/training-model.ts';
import { closenessLines, measurePayload, movesAwayText } from '../../src/front/measure/payload-eval.ts';
import { publishReleaseFolder } from '../../src/release/publish.ts';
import { newestVersion, readRecord, type ReleaseJob, type ReleaseRecord } from '../../src/release/record.ts';
import { materializeVersion } from '../../src/release/package.ts';
import { interfaceWarning, modelPortsAt } from '../../src/front/ports.ts';
import { table, type CliIO } from '../common.ts';
import { seeDocs } from '../help.ts';
import { parseExpiry } from '../models.ts';
import { releaseRunOptions, runReleaseRun, runReleaseStatus } from './release-queue.ts';

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
  method: 'exact' | 'topk';
  budget?: string;
  expires: string;
  plan: boolean;
  keyframeBelow?: number;
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

async function readExisting(dir: string): Promise<ReleaseRecord> {
  const record = await readRecord(dir);
  if (!record) throw new UsageError(`${dir} holds no release (no release.json): create it with \`ndiff release add --release ${dir} --model PATH --model-id ID --key private.pem\``);
  return record;
}

function jobLine(dir: string, job: ReleaseJob): Record<string, unknown> {
  return { id: job.id, fromVersion: job.fromVersion, toVersion: job.toVersion, base: job.base, ...(job.via ? { via: job.via } : {}), method: job.policy.method, ...(job.policy.budget ? { budget: job.policy.budget } : {}), command: `ndiff release job --release ${dir} --id ${job.id}` };
}

async function runAdd(a: AddArgs, io: CliIO): Promise<number> {
  if (a.method === 'topk' && !a.budget) throw new UsageError('--method topk needs --budget (e.g. --budget 2%): the byte budget of each payload');
  if (a.method === 'exact' && a.budget) throw new UsageError('--budget applies to --method topk; exact payloads carry every change (add --method topk to cap them)');
  if (!a.plan && !a.key) throw new UsageError('--key is needed to publish (the Ed25519 private key from ndiff keygen); with --plan the key is needed only by `ndiff release publish`');
  if (a.eval !== undefined && a.plan) throw new UsageError('--eval measures the payloads add makes before it signs them; with --plan add makes none: measure a job\'s payload with ndiff diff --eval, or add without --plan');
  if (a.eval !== undefined && a.method !== 'topk') throw new UsageError('--eval measures lossy payloads (--method topk --budget B); exact payloads reach the version bit for bit, so there is nothing to measure: leave --eval out');
  if (a.eval === undefined && (a.state.length || a.output || a.outputKind)) throw new UsageError('--state, --output and --output-kind tell --eval how to run an .onnx model: add --eval INPUTS, or leave them out');
  if (a.eval !== undefined) await stat(a.eval).catch(() => { throw new UsageError(`--eval ${a.eval} does not exist: expected the inputs (x.npy, or a folder holding it; for .onnx files one .npy per model input)`); });
  if (a.keyframeBelow !== undefined && a.eval === undefined) throw new UsageError('--keyframe-below is the least agreement with the version a lossy chain may drift to, measured on the --eval inputs: add --eval INPUTS, or leave --keyframe-below out');
  const threshold = a.keyframeBelow ?? DEFAULT_KEYFRAME_BELOW;
  if (!(threshold >= 0 && threshold <= 1)) throw new UsageError(`--keyframe-below ${a.keyframeBelow}: expected an agreement from 0 to 1 (0.98 for 98%)`, { expected: '0 to 1', found: a.keyframeBelow });
  const key = a.key ? await readPrivateKeyFile(a.key, (l) => io.err(l)) : undefined;
  const warning = await interfaceChangeOfAdd(a.release, a.model);
  if (warning) io.err(`warning: ${warning}`);
  const dir = a.eval !== undefined ? await mkdtemp(path.join(tmpdir(), 'ndiff-release-eval-')) : undefined;
  const measured = new Map<string, PayloadCloseness>();
  const measure = async (l: LossyJobPayload) => {
    const sha = sha256Of(l.bytes);
    let m = measured.get(sha);
    if (!m) {
      const models = await exportJob(a.release, l.record, l.job, path.join(dir as string, `${l.job.id}-${measured.size}`));
      m = await measurePayload({ base: models.base, target: models.target, labels: { base: `${l.job.id}'s base (${l.job.via ? `the state a lossy chain reached from version ${l.job.fromVersion}` : `version ${l.job.fromVersion}`})`, target: `version ${l.job.toVersion}` }, eval: a.eval as string, state: a.state, ...(a.output ? { output: a.output } : {}), ...(a.outputKind ? { outputKind: a.outputKind } : {}) }, l.bytes, (line) => io.progress(line));
      measured.set(sha, m);
    }
    return m;
  };
  if (dir) io.out(`keyframe threshold: ${pct(threshold)} top-1 agreement with the new version on the --eval inputs (--keyframe-below): a lossy payload whose devices would agree less is made exact`);
  const res = await addVersion(a.release, a.model, {
    ...(dir ? { keyframes: { threshold, larger: KEYFRAME_LARGER, agreement: async (l) => { const m = await measure(l); return Number.isNaN(m.patched.agreement) ? undefined : m.patched.agreement; } } } : {}),
    beforePublish: async (lossy) => {
      for (const l of lossy) io.err(`warning: ${lossyText(l.job, l.result)}${a.eval ? '' : '. Measure it on inputs before devices get it: add with --eval INPUTS (a payload that takes the model further from the version than not updating is then refused; a chain that drifts below --keyframe-below gets an exact payload)'}`);
      if (a.eval !== undefined) await measureLossy(a, lossy, io, measure);
    },
    ...(a.modelId !== undefined ? { modelId: a.modelId } : {}),
    ...(a.history !== undefined ? { history: a.history } : {}),
    policy: { method: a.method, ...(a.budget ? { budget: a.budget } : {}) },
    planOnly: a.plan,
    ...(key ? { key, expiresAt: parseExpiry(a.expires) } : {}),
    onProgress: (l) => io.progress(l),
  }).finally(() => dir && rm(dir, { recursive: true, force: true }));
  for (const d of res.drift ?? []) io.out(driftLine(d));
  if (a.plan) {
    io.result?.({ modelId: res.modelId, version: res.version, fingerprint: res.fingerprint, jobs: res.jobs.map((j) => jobLine(a.release, j)), ...(warning ? { interfaceChanged: true, warning } : {}) });
    // One JSON line per job, for a CI matrix; then `ndiff release publish`.
    for (const j of res.jobs) io.out(JSON.stringify(jobLine(a.release, j)));
    return 0;
  }
  const pub = res.published;
  io.result?.({ modelId: res.modelId, version: res.version, fingerprint: res.fingerprint, packageBytes: res.packageBytes, release: pub?.release, added: pub?.added, skipped: pub?.skipped, ...(res.drift ? { keyframeBelow: threshold, drift: res.drift } : {}), ...(warning ? { interfaceChanged: true, warning } : {}) });
  io.out(`${a.release}: model ${JSON.stringify(res.modelId)} version ${res.version} (${res.fingerprint}), full package ${formatBytes(res.packageBytes)}; ${pub?.added ?? 0} payload(s) added${pub?.skipped.length ? `, ${pub.skipped.length} not kept (no smaller than the package)` : ''}; manifest release ${pub?.release} signed`);
  return 0;
}

/**
 * The warning for a version whose inputs or outputs differ from the newest one in the release
 * (as `ndiff diff` warns for a structural payload): devices get it through payloads and the
 * package alike, and the app feeding the model must change with it. Undefined for a first version
 * or the same interface.
 */
async function interfaceChangeOfAdd(releaseDir: string, modelPath: string): Promise<string | undefined> {
  const record = await readRecord(releaseDir).catch(() => undefined);
  const newest = record ? newestVersion(record) : undefined;
  if (!record || !newest) return undefined;
  const stored = await materializeVersion(releaseDir, record, newest.version);
  try {
    const [before, after] = await Promise.all([modelPortsAt(stored.path), modelPortsAt(modelPath)]);
    return before && after ? interfaceWarning(before, after, `devices updated to this version (by payload or package) need an app that feeds the model the new way; ship that app with it or first`) : undefined;
  } finally {
    await stored.dispose();
  }
}

/** The default of `release add --keyframe-below`: the least top-1 agreement with the version a lossy chain may drift to. */
export const DEFAULT_KEYFRAME_BELOW = 0.98;

/** Before an exact payload, `release add --eval` tries top-k payloads of these multiples of the budget. */
const KEYFRAME_LARGER = [2, 4];

const pct = (x: number) => `${(100 * x).toFixed(2)}%`;

/** One line per lossy payload measured for keyframes: its chain, its agreement, and what was shipped. */
function driftLine(d: DriftCheck): string {
  const chain = d.chain > 1 ? `after a chain of ${d.chain} lossy payloads` : 'after one lossy payload';
  if (d.agreement === undefined) return `${d.job}: drift not measured (the output has no classes to agree on): the lossy payload is kept`;
  const verdict = d.larger
    ? `below ${pct(d.threshold)}: a larger payload is shipped (budget ${d.larger.budget}, ${formatBytes(d.larger.bytes)}), with which they agree on ${pct(d.larger.agreement)}`
    : d.keyframe
    ? `below ${pct(d.threshold)}: keyframe, the exact payload is shipped (${d.keyframeBytes !== undefined ? `${formatBytes(d.keyframeBytes)}` : 'no smaller than the package: devices take the package'})`
    : `at or above ${pct(d.threshold)}: the lossy payload is kept`;
  return `${d.job}: devices agree with version ${d.toVersion} on ${pct(d.agreement)} of the --eval inputs ${chain}, ${verdict}`;
}

/** What a lossy payload is, in words: how much of the change it carries and where devices end. */
function lossyText(job: ReleaseJob, result: RunJobResult): string {
  const share = result.carried !== undefined ? `it carries ${(100 * result.carried).toFixed(1)}% of the weight change from version ${job.fromVersion} to ${job.toVersion} (by squared size)` : `it reaches ${result.payload?.target}, not version ${job.toVersion}`;
  return `payload ${job.id} is lossy (top-k within ${job.policy.budget}): ${share}; devices that take it hold a model near version ${job.toVersion}, not version ${job.toVersion}, and for a retrained version, whose weights all moved a little, its outputs can be far from version ${job.toVersion}'s`;
}

/**
 * \`release add --eval\`: each lossy payload measured on the inputs against its version (base and
 * version written from the release's blobs to a temporary folder), before anything is signed. A
 * payload that takes the model further from the version than not updating refuses the add.
 */
async function measureLossy(a: AddArgs, lossy: LossyJobPayload[], io: CliIO, measure: (l: LossyJobPayload) => Promise<PayloadCloseness>): Promise<void> {
  if (!lossy.length) {
    io.progress('--eval: every payload is exact (it reaches the version bit for bit): nothing to measure');
    return;
  }
  const worse: string[] = [];
  for (const l of lossy) {
    const m = await measure(l);
    for (const line of closenessLines(m, `version ${l.job.toVersion}`)) io.out(`${l.job.id}: ${line}`);
    if (m.movesAway) worse.push(`${l.job.id}: ${movesAwayText(m, `version ${l.job.toVersion}`, '')}`.trim().replace(/\.$/, ''));
  }
  if (worse.length) {
    throw new UsageError(`nothing was published and ${a.release} is as it was: ${worse.join('; ')}. A larger --budget, --method exact, or a payload learned toward the version (add --plan, then ndiff release job --export, ndiff train --teacher, ndiff release job --payload) gets closer`);
  }
}

async function runJobCommand(a: JobArgs, io: CliIO): Promise<number> {
  const record = await readExisting(a.release);
  if ((a.id === undefined) === (a.index === undefined)) throw new UsageError('name the job with --id (v3-from-v1) or --index (its place in the plan, from 0: a Kubernetes Indexed Job\'s JOB_COMPLETION_INDEX), one of the two');
  if (a.index !== undefined) {
    const jobs = record.pending?.jobs ?? [];
    if (!Number.isSafeInteger(a.index) || a.index < 0 || a.index >= jobs.length) throw new UsageError(`--index ${a.index}: the plan of ${a.release} has ${jobs.length} job(s), numbered 0 to ${jobs.length - 1}${jobs.length ? '' : ' (no version is pending: add one with --plan first)'}`);
    a.id = jobs[a.index].id;
  }
  const job = record.pending?.jobs.find((j) => j.id === a.id);
  if (!job) {
    const ids = record.pending?.jobs.map((j) => j.id) ?? [];
    throw new UsageError(`no pending job ${JSON.stringify(a.id)} in ${a.release}: ${ids.length ? `the pending jobs are ${ids.join(', ')}` : 'no version is pending (add one with --plan first)'}`);
  }
  if (a.export !== undefined && a.payload !== undefined) throw new UsageError('--export writes the job\'s models for training, --payload takes the trained payload back: run them as two steps');
  if ((a.export !== undefined || a.payload !== undefined) && (a.method !== undefined || a.budget !== undefined)) throw new UsageError('--method/--budget choose how this command builds the payload; with --export or --payload the payload is made by your training command');
  if (a.export !== undefined) {
    const out = await exportJob(a.release, record, job, a.export);
    io.result?.({ id: job.id, base: out.base, teacher: out.target, modelId: record.modelId, sequence: job.toVersion });
    io.out(`${a.id}: base (version ${job.fromVersion}) in ${out.base}, target (version ${job.toVersion}) in ${out.target}. Learn the payload toward the target, e.g.`);
    io.out(`  ndiff train --base ${out.base} --teacher ${out.target} --train INPUTS --budget 1% --model-id ${record.modelId} --sequence ${job.toVersion} --out ${a.id}.ndiff`);
    io.out(`then: ndiff release job --release ${a.release} --id ${a.id} --payload ${a.id}.ndiff`);
    return 0;
  }
  if (a.payload !== undefined) {
    const res = await adoptJobPayload(a.release, record, job, new Uint8Array(await readFile(a.payload)), (l) => io.progress(l));
    io.result?.(res);
    io.out(res.payload ? `${a.id}: payload of ${res.payload.length} bytes (${res.payload.method}${res.payload.exact ? '' : ', lossy'}) checked against the job's base and left in ${a.release}/jobs/; publish when every job has run${res.payload.exact ? '' : ` (a lossy payload is signed only when you vouch for it: ndiff release publish ... --accept ${res.payload.sha256.slice(0, 16)})`}` : `${a.id}: ${res.skipped}`);
    return 0;
  }
  // A policy for this edge alone (a CI matrix may give each edge its own budget).
  if (a.method !== undefined || a.budget !== undefined) {
    const method = a.method ?? (a.budget ? 'topk' : 'exact');
    if (method === 'topk' && !a.budget) throw new UsageError('--method topk needs --budget (e.g. --budget 2%)');
    if (method === 'exact' && a.budget) throw new UsageError('--budget applies to --method topk; exact payloads carry every change');
    if (job.via && method !== 'exact' && job.policy.method === 'exact') throw new UsageError(`job ${job.id} starts from a state a lossy payload reached and ends its chain: its payload is exact, so that the chain ends at version ${job.toVersion} exactly`);
    job.policy = { method, ...(a.budget ? { budget: a.budget } : {}) };
  }
  const res = await runJob(a.release, record, job, (l) => io.progress(l));
  io.result?.(res);
  io.out(res.payload ? `${a.id}: payload of ${res.payload.length} bytes (${res.payload.method}) left in ${a.release}/jobs/; publish when every job has run` : `${a.id}: ${res.skipped}`);
  if (res.payload && !res.payload.exact) io.err(`warning: ${lossyText(job, res)}. Measure it on inputs before publishing: ndiff release job --export DIR writes the base and the version, then ndiff diff --base DIR/base --target DIR/target --budget ${job.policy.budget} --eval INPUTS`);
  return 0;
}

async function runPublish(a: PublishArgs, io: CliIO): Promise<number> {
  await readExisting(a.release);
  const res = await publishReleaseFolder(a.release, { key: await readPrivateKeyFile(a.key, (l) => io.err(l)), expiresAt: parseExpiry(a.expires), ...(a.accept ? { accept: a.accept } : {}) });
  io.result?.({ release: res.release, latest: res.latest, added: res.added, skipped: res.skipped, expiresAt: res.manifest.expiresAt });
  io.out(`${a.release}: manifest release ${res.release} signed (newest version ${res.latest}, ${res.manifest.payloads.length} payload(s), ${res.added} new), expires ${new Date(res.manifest.expiresAt * 1000).toISOString()}`);
  return 0;
}

async function runCancel(a: ReleaseDirArgs, io: CliIO): Promise<number> {
  const version = await cancelPending(a.release);
  io.result?.({ cancelled: version });
  io.out(`${a.release}: version ${version} dropped (its package, jobs and job files); the release is as it was before it was planned`);
  return 0;
}

async function runShow(a: ReleaseDirArgs, io: CliIO): Promise<number> {
  const record = await readExisting(a.release);
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
    .command('add', 'add a version (TF.js, .onnx, .tflite): store, make its payloads, sign', (c) => c
      .option('release', releaseOption)
      .option('model', { type: 'string', demandOption: true, describe: 'new version: TF.js folder, .onnx or .tflite file' })
      .option('model-id', { type: 'string', describe: 'model id (first version; kept in release.json)' })
      .option('key', { type: 'string', describe: 'Ed25519 private key (not with --plan)' })
      .option('history', { type: 'number', describe: 'payloads from the last K versions (default 3)' })
      .option('method', { choices: ['exact', 'topk'] as const, default: 'exact' as const, describe: 'exact, or topk within --budget (teacher diffs: --plan)' })
      .option('budget', { type: 'string', describe: 'topk: bytes per payload (1%, 40KB, bytes)' })
      .option('expires', expiresOption)
      .option('plan', { type: 'boolean', default: false, describe: 'print the payload jobs, run nothing' })
      .option('eval', { type: 'string', describe: 'topk: inputs that check each payload before signing' })
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
      .example('$0 release cancel --release site/kws', 'then add the version again, or another one')
      .epilogue(seeDocs('release')), run(runCancel))
    .demandCommand(1, 'name a release command: add, job, publish, run, status, show or cancel')
    .epilogue(seeDocs('release'));
}
