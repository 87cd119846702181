/**
 * `ndiff update`: bring a model on this machine to the newest version a release folder offers,
 * over HTTP (the device updater of `neural-diff/node`, for scripts and fleets of servers).
 */
import type { Argv } from 'yargs';
import { formatBytes } from '../../src/diff/budget.ts';
import { EXIT, type CliIO } from '../common.ts';
import { seeDocs } from '../help.ts';

interface UpdateArgs {
  model: string;
  from: string[];
  publicKey: string[];
  modelId?: string;
  state?: string;
  timeout: number;
  minRate: number;
  maxBytes?: number;
  healthCheck?: string;
  healthCheckTimeout: number;
  check: boolean;
  retryFailed: boolean;
}

/** Exit codes of the error codes an update can end with (the table of `ndiff --help`). */
const EXIT_OF: Record<string, number> = {
  ND_USAGE: EXIT.usage,
  ND_SIGNATURE: EXIT.payload, ND_FRESHNESS: EXIT.payload, ND_PAYLOAD_FORMAT: EXIT.payload, ND_PAYLOAD_TOO_LARGE: EXIT.payload, ND_UNSUPPORTED_VERSION: EXIT.payload,
  ND_MODEL_MISMATCH: EXIT.model, ND_BASE_MISMATCH: EXIT.model,
  ND_HEALTH_CHECK: EXIT.target, ND_PENDING_UPDATE: EXIT.target, ND_TARGET_MISMATCH: EXIT.target, ND_NO_UPDATE_PATH: EXIT.target,
  ND_STATE: EXIT.files, ND_MODEL_FORMAT: EXIT.files,
  ND_DOWNLOAD: EXIT.download,
};

export function updateCommand(y: Argv): Argv<UpdateArgs> {
  return y
    .usage('ndiff update --model PATH --from URL --public-key FILE [options]\n\nBring a model to the newest version of a release folder (ndiff release) by the fewest bytes: a payload, a chain of them, or the full model. Downloads resume; every file is checked; the switch is atomic.')
    .option('model', { type: 'string', demandOption: true, describe: 'TF.js folder, .onnx, .tflite or .safetensors file (may not exist yet), or .gguf file (payloads only)' })
    .option('from', { type: 'string', array: true, demandOption: true, describe: 'release folder URL; repeat for mirrors' })
    .option('public-key', { type: 'string', array: true, demandOption: true, describe: 'publisher\'s Ed25519 public key (repeatable)' })
    .option('model-id', { type: 'string', describe: 'model id expected (default: the one recorded)' })
    .option('state', { type: 'string', describe: 'updater state folder (default <model>.ndiff-updater)' })
    .option('timeout', { type: 'number', default: 30, describe: 'seconds without a byte before the next mirror' })
    .option('min-rate', { type: 'number', default: 1024, describe: 'bytes/s a download must average (0: none)' })
    .option('max-bytes', { type: 'number', describe: 'most bytes to download in one run' })
    .option('health-check', { type: 'string', describe: 'command run on the new version; failing rolls back' })
    .option('health-check-timeout', { type: 'number', default: 300, describe: 'seconds before the check counts as failed' })
    .option('retry-failed', { type: 'boolean', default: false, describe: 'try again what failed a health check' })
    .option('check', { type: 'boolean', default: false, describe: 'print the plan only; change nothing' })
    .group(['model', 'from', 'public-key', 'model-id', 'state', 'check'], 'Model and release:')
    .group(['timeout', 'min-rate', 'max-bytes', 'health-check', 'health-check-timeout', 'retry-failed'], 'Downloads and health check:')
    .example('$0 update --model models/kws --from https://cdn.example.com/kws/ --public-key release.public.pem', 'update the folder models/kws')
    .example('$0 update --model vad.onnx --from https://a.example/vad/ --from https://b.example/vad/ --public-key release.public.pem --health-check "node smoke.js"', 'an ONNX model, a mirror, a smoke test before the update is kept')
    .epilogue(seeDocs('update')) as unknown as Argv<UpdateArgs>;
}

/** One line on how an update left unconfirmed by an earlier run was finished. */
export function describePending(model: string, p: { outcome: 'confirmed' | 'rolled-back'; healthCheck: 'passed' | 'failed' | 'none'; why?: string }): string {
  return `${model} held an update switched in but never confirmed (an earlier run was interrupted): ${p.outcome === 'confirmed' ? 'the health check passed: confirmed, the new version stays' : p.healthCheck === 'failed' ? `the health check failed (${p.why}): rolled back to the previous version` : 'no health check was to confirm it: rolled back to the previous version'}`;
}

export async function runUpdate(a: UpdateArgs, io: CliIO): Promise<number> {
  const { checkUpdate, update } = await import('../../src/front/update.ts');
  const options = {
    model: a.model, from: a.from, publicKeys: a.publicKey, timeout: a.timeout, minRate: a.minRate, healthCheckTimeout: a.healthCheckTimeout,
    ...(a.modelId !== undefined ? { modelId: a.modelId } : {}),
    ...(a.state !== undefined ? { state: a.state } : {}),
    ...(a.maxBytes !== undefined ? { maxBytes: a.maxBytes } : {}),
    ...(a.healthCheck ? { healthCheck: a.healthCheck } : {}),
    ...(a.retryFailed ? { retryFailed: true } : {}),
    onProgress: (l: string) => io.progress(l),
  };
  if (a.check) {
    const c = await checkUpdate(options);
    io.result?.(c);
    const plan = c.plan;
    io.out(`manifest release ${c.release}: newest version ${c.latest}; this model is ${c.fingerprint ?? 'absent or unreadable'}`);
    if (c.pendingUpdate) io.out(`an update an earlier run switched in was never confirmed (interrupted during its health check?): the next update finishes it first, confirmed if its --health-check passes, rolled back if not; without --health-check, a payload that awaited one is refused, and a full install (which records no journal) is rolled back and installed again`);
    const none = /\.gguf$/i.test(a.model)
      ? 'no way to the newest version: no payload left starts from this model, and a .gguf model is never installed whole by the updater (replace the file by a full download, then update by payloads)'
      : 'no way to the newest version is left (payloads and the package failed here before)';
    io.out(!plan ? none : plan.kind === 'none' ? 'up to date' : plan.kind === 'full' ? `would download the full model: ${formatBytes(plan.bytes)}` : `would download ${plan.steps.length} payload(s): ${formatBytes(plan.bytes)} (the full model is ${formatBytes(plan.fullBytes)})`);
    return 0;
  }
  const r = await update(options);
  const warning = r.warning;
  io.result?.(r);
  // An update an earlier run left unconfirmed, finished first: say which way, even with -q.
  if (r.pendingUpdate) io.err(`ndiff: ${describePending(a.model, r.pendingUpdate)}`);
  for (const s of r.steps) io.out(`${s.kind === 'full' ? 'full model' : `payload v${s.fromVersion} -> v${s.toVersion} (${s.method})`}, ${formatBytes(s.bytes)}: ${s.outcome}${s.error ? ` (${s.error.code}: ${s.error.message.slice(0, 200)})` : ''}`);
  if (r.status === 'failed') {
    const code = r.error?.code ?? 'ND_INTERNAL';
    const exitCode = EXIT_OF[code] ?? EXIT.internal;
    // --json: the error document every command prints on failure, with the run's result beside it.
    io.result?.({ error: { code, exitCode, message: r.error?.message ?? 'unknown error' }, result: r });
    io.err(`ndiff: update failed: ${r.error?.message ?? 'unknown error'}`);
    return exitCode;
  }
  const fetched = r.download.bytesReceived;
  io.out(r.status === 'up-to-date'
    ? `${a.model} is up to date: version ${r.latest} (${r.fingerprint}), manifest release ${r.release}`
    : `${a.model} updated to version ${r.latest} (${r.fingerprint}) by ${r.path === 'full' ? 'the full model' : 'payloads'}: ${formatBytes(fetched)} downloaded (the full model is ${formatBytes(r.fullBytes ?? 0)})`);
  if (warning) io.err(`warning: ${warning}`);
  for (const w of r.steps.flatMap((s) => s.warnings ?? [])) io.err(`warning: ${w}`);
  // A lossy payload (top-k within a budget) ends near the version, not at it: say so.
  const last = r.steps.filter((s) => s.outcome === 'applied' || s.outcome === 'installed').at(-1);
  if (r.status === 'updated' && last?.kind === 'payload' && last.method !== 'exact') {
    io.out(`note: the last payload is lossy (${last.method}): the model is near version ${r.latest}, not bit for bit version ${r.latest}; the next version's payload from here is exact`);
  }
  return 0;
}
