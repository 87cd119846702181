import type { Argv } from 'yargs';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { NeuralDiffError, UsageError } from '../../src/core/errors.ts';
import { applyToModelDir } from '../../src/io/tfjs/folder-update.ts';
import { locateModelFiles } from '../../src/io/tfjs/model-file.ts';
import { ONNX_STATE_SUFFIX, applyToOnnxFile, rebuildOnnxFile } from '../../src/io/onnx/files.ts';
import { isStructuralPayload } from '../../src/apply/rebuild.ts';
import { rebuildModelDir } from '../../src/io/tfjs/folder-rebuild.ts';
import { isSignedEnvelope, parseEnvelope } from '../../src/apply/envelope.ts';
import { applyToTfliteFile, rebuildTfliteFile } from '../../src/io/tflite/files.ts';
import { DEFAULT_STATE_FILE } from '../../src/io/durable/sequence-file.ts';
import type { CliIO } from '../common.ts';
import type { RecoveryReport } from '../../src/io/durable/lock.ts';
import { describePending } from './update.ts';
import { describeSignature, signatureOptions, trustedKeysOf, type SignatureArgs } from '../keys.ts';
import { isModelFilePath, isTflitePath, readPayloadFile } from '../models.ts';
import { terminalSafe } from '../text.ts';
import { seeDocs } from '../help.ts';

export interface ApplyArgs extends SignatureArgs {
  model: string;
  patch: string;
  dryRun: boolean;
  maxPayloadBytes: number;
  /** A path, or false for `--no-state`. */
  state?: string | false;
  healthCheck?: string;
  healthCheckTimeout: number;
  fullCheck: boolean;
  modelId?: string;
}

export function applyCommand(y: Argv): Argv<ApplyArgs> {
  return signatureOptions(y
    .usage('ndiff apply --model PATH --patch FILE [options]\n\nVerify a payload and patch a model in place: atomic switch, the model untouched on any error.')
    .option('model', { type: 'string', demandOption: true, describe: 'TF.js folder or <name>.json, .onnx or .tflite file to patch' })
    .option('patch', { type: 'string', demandOption: true, describe: 'payload file (bare or signed)' })
    .option('dry-run', { type: 'boolean', default: false, describe: 'check all, patch in memory, write nothing' })
    .option('max-payload-bytes', { type: 'number', default: 256 * 1024 * 1024, describe: 'refuse larger payloads before parsing' }))
    .option('state', { type: 'string', describe: 'file of the applied sequences (default: beside the model)' })
    .option('health-check', { type: 'string', describe: 'command run after the switch; failing rolls back' })
    .option('health-check-timeout', { type: 'number', default: 300, describe: 'seconds before the check counts as failed' })
    .option('model-id', { type: 'string', describe: 'id this model holds (default: the one recorded)' })
    .option('full-check', { type: 'boolean', default: false, describe: 'hash every tensor, not only the patched' })
    .group(['model', 'patch', 'model-id', 'state', 'dry-run', 'full-check', 'max-payload-bytes'], 'Model and payload:')
    .group(['public-key', 'require-signature', 'health-check', 'health-check-timeout'], 'Signature and health check:')
    .example('$0 apply --model ./model --patch v1-v2.signed.ndiff --public-key release.public.pem', 'verify the signature, then patch in place; the folder switches atomically')
    .example('$0 apply --model vad.onnx --patch v5-v6.ndiff --health-check "node smoke.js"', 'patch an ONNX model file; rolled back if the health check fails')
    .epilogue(seeDocs('apply')) as unknown as Argv<ApplyArgs>;
}

/**
 * Run `command` in a shell; resolves true on exit 0 within `timeoutS`, else rejects with what
 * happened (the exit code or signal, a timeout, a command that cannot start, and its last output
 * line), which the applier's HealthCheckError quotes.
 */
function runHealthCheck(command: string, dir: string, timeoutS: number, io: CliIO, file?: string): Promise<true> {
  return new Promise((resolve, reject) => {
    // Its own process group, so a timeout stops whatever the shell started too.
    const child = spawn(command, { shell: true, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NDIFF_MODEL_DIR: dir, ...(file ? { NDIFF_MODEL_FILE: file } : {}) } });
    let lastLine = '';
    let timedOut = false;
    const relay = (chunk: Buffer) => chunk.toString().split('\n').filter(Boolean).forEach((l) => {
      lastLine = l;
      io.progress(`  health check: ${l}`);
    });
    child.stdout.on('data', relay);
    child.stderr.on('data', relay);
    const timer = setTimeout(() => {
      timedOut = true;
      io.progress(`  health check: no answer after ${timeoutS} s, stopping it`);
      try {
        process.kill(-(child.pid as number), 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, timeoutS * 1000);
    const quoted = JSON.stringify(command.length > 80 ? command.slice(0, 77) + '...' : command);
    const last = () => (lastLine ? `; its last line: ${terminalSafe(lastLine.slice(0, 200))}` : '');
    child.on('error', (e) => {
      clearTimeout(timer);
      io.progress(`  health check: cannot start (${e.message})`);
      reject(new Error(`the command ${quoted} could not start (${e.message})`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(true);
      else if (timedOut) reject(new Error(`the command ${quoted} gave no answer within --health-check-timeout ${timeoutS} s and was stopped${last()}`));
      else reject(new Error(`the command ${quoted} ${code !== null ? `exited with code ${code}` : `was killed by ${signal}`}${last()}`));
    });
  });
}

/**
 * What the recovery of an earlier interrupted apply did, though this one failed: its lines, and
 * how an update left unconfirmed was finished (even with -q: the model changed version).
 */
function reportRecovery(model: string, e: unknown, io: CliIO): void {
  const recovery = e instanceof NeuralDiffError ? (e.details.recovery as RecoveryReport | undefined) : undefined;
  for (const line of recovery?.actions ?? []) io.progress(`recovered ${model}: ${line}`);
  if (recovery?.pending) io.err(`ndiff: ${describePending(model, recovery.pending)}`);
}

export async function runApply(a: ApplyArgs, io: CliIO): Promise<number> {
  if (!(a.healthCheckTimeout > 0)) throw new UsageError(`--health-check-timeout must be a positive number of seconds, got ${a.healthCheckTimeout}`);
  // The size cap is checked against the file's size before it is read.
  const bytes = await readPayloadFile(a.patch, a.maxPayloadBytes);
  const trustedKeys = await trustedKeysOf(a);
  const onnx = isModelFilePath(a.model); // a single-file model: .onnx or .tflite
  // A model JSON file keeps its state file in its folder, as an .onnx file does (one for the folder's models, by model id).
  const folder = onnx ? dirname(a.model) : (await locateModelFiles(a.model)).dir;
  // An .onnx file keeps its own (<model>.onnx.ndiff-state.json, src/io/onnx/files.ts): two model files of one folder never share one.
  const statePath = a.state === false ? null : a.state ?? (onnx ? undefined : join(folder, DEFAULT_STATE_FILE));
  const shownState = statePath === undefined ? `${a.model}${ONNX_STATE_SUFFIX}` : statePath;
  const t0 = performance.now();
  const common = {
    maxPayloadBytes: a.maxPayloadBytes,
    trustedKeys,
    ...(a.requireSignature !== undefined ? { requireSignature: a.requireSignature } : {}),
    ...(a.modelId !== undefined ? { expectedModelId: a.modelId } : {}),
    state: statePath,
    dryRun: a.dryRun,
  };
  // A structural payload (format v7): a single-file model or a TF.js model rebuilt with neural-diff/rebuild's checks.
  if (isStructuralPayload(isSignedEnvelope(bytes) ? parseEnvelope(bytes).payload : bytes)) {
    const r = await (onnx
      ? (isTflitePath(a.model) ? rebuildTfliteFile : rebuildOnnxFile)(a.model, bytes, {
        ...common,
        ...(a.healthCheck ? { healthCheck: ({ file }) => runHealthCheck(a.healthCheck as string, dirname(file), a.healthCheckTimeout, io, file) } : {}),
      })
      : rebuildModelDir(a.model, bytes, {
        ...common,
        ...(a.healthCheck ? { healthCheck: ({ dir, file }) => runHealthCheck(a.healthCheck as string, dir, a.healthCheckTimeout, io, file) } : {}),
      })).catch((e: unknown) => {
        reportRecovery(a.model, e, io);
        throw e;
      });
    const h = r.header;
    // A data file another model of the folder names, kept though the new version drops it.
    const warnings = 'warnings' in r ? (r.warnings as string[]) : [];
    io.result?.({
      model: a.model, status: r.status, dryRun: a.dryRun, structural: true, formatVersion: 7, baseFingerprint: h.baseFingerprint, intermediateFingerprint: h.intermediateFingerprint, targetFingerprint: h.targetFingerprint,
      modelId: h.modelId, sequence: h.sequence, fileBytes: r.bytes.length, changedTensors: r.values?.changedTensors ?? [], writtenValues: r.values?.writtenValues ?? 0,
      signature: r.signature, sequenceRecorded: r.sequenceRecorded, statePath: shownState, recovery: r.recovery.actions, ...(r.recovery.pending ? { pendingUpdate: r.recovery.pending } : {}), milliseconds: performance.now() - t0,
      ...(warnings.length ? { warnings } : {}),
    });
    for (const line of r.recovery.actions) io.progress(`recovered ${a.model}: ${line}`);
    if (r.recovery.pending) io.err(`ndiff: ${describePending(a.model, r.recovery.pending)}`);
    io.progress(describeSignature(r.signature));
    for (const w of warnings) io.progress(`warning: ${w}`);
    io.out(r.status === 'already-applied'
      ? `${a.model} is already at target ${h.targetFingerprint}: nothing to do`
      : `${a.dryRun ? 'dry run: would rebuild' : 'rebuilt'} ${a.model}: ${h.baseFingerprint} -> ${h.targetFingerprint} (a structural payload: ${r.files ? `${r.files.length} files` : 'the file'} rebuilt, ${r.bytes.length} bytes, then ${r.values?.writtenValues ?? 0} values patched in ${r.values?.changedTensors.length ?? 0} tensors; ${(performance.now() - t0).toFixed(0)} ms)`);
    if (r.sequenceRecorded) io.progress(`recorded sequence ${h.sequence} for model ${terminalSafe(JSON.stringify(h.modelId))} in ${shownState}`);
    return 0;
  }
  let res;
  try {
    res = onnx
      ? await (isTflitePath(a.model) ? applyToTfliteFile : applyToOnnxFile)(a.model, bytes, {
        ...common,
        ...(a.healthCheck ? { healthCheck: ({ file }) => runHealthCheck(a.healthCheck as string, dirname(file), a.healthCheckTimeout, io, file) } : {}),
      })
      : await applyToModelDir(a.model, bytes, {
        ...common,
        baseCheck: a.fullCheck ? 'full' : 'recorded',
        ...(a.healthCheck ? { healthCheck: ({ dir, file }) => runHealthCheck(a.healthCheck as string, dir, a.healthCheckTimeout, io, file) } : {}),
      });
  } catch (e) {
    reportRecovery(a.model, e, io);
    throw e;
  }
  const ms = performance.now() - t0;
  io.result?.({
    model: a.model, status: res.status, dryRun: a.dryRun, baseFingerprint: res.baseFingerprint, targetFingerprint: res.targetFingerprint,
    modelId: res.payload.header.modelId, sequence: res.sequence, writtenValues: res.writtenValues, changedTensors: res.changedTensors,
    baseCheck: res.baseCheck, signature: res.signature, sequenceRecorded: res.sequenceRecorded, statePath: shownState, recovery: res.recovery.actions, ...(res.recovery.pending ? { pendingUpdate: res.recovery.pending } : {}), milliseconds: ms,
  });
  for (const line of res.recovery.actions) io.progress(`recovered ${a.model}: ${line}`);
  if (res.recovery.pending) io.err(`ndiff: ${describePending(a.model, res.recovery.pending)}`);
  io.progress(describeSignature(res.signature));
  if (res.status === 'already-applied') {
    io.out(`${a.model} is already at target ${res.targetFingerprint}: nothing to do`);
  } else {
    io.out(`${a.dryRun ? 'dry run: would patch' : 'patched'} ${a.model}: ${res.baseFingerprint} -> ${res.targetFingerprint}, ${res.writtenValues} values in ${res.changedTensors.length} tensors (${ms.toFixed(0)} ms)`);
  }
  const { hashedTensors, recordedTensors } = res.baseCheck;
  io.progress(`base checked: ${hashedTensors} tensor(s) read and hashed${recordedTensors ? `, ${recordedTensors} by recorded digests (their files unchanged since; --full-check hashes them too)` : ''}`);
  if (res.sequenceRecorded) io.progress(`recorded sequence ${res.sequence} for model ${terminalSafe(JSON.stringify(res.payload.header.modelId))} in ${shownState}`);
  return 0;
}
