import type { Argv } from 'yargs';
import { NeuralDiffError } from '../../src/core/errors.ts';
import type { RecoveryReport } from '../../src/io/durable/lock.ts';
import type { ApplyReport } from '../../src/front/apply.ts';
import type { CliIO } from '../common.ts';
import { describePending } from './update.ts';
import { describeSignature, signatureOptions, type SignatureArgs } from '../keys.ts';
import { terminalSafe } from '../../src/front/text.ts';
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
    .option('model', { type: 'string', demandOption: true, describe: 'TF.js folder or <name>.json, .onnx, .tflite, .safetensors or .gguf file to patch' })
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
 * What the recovery of an earlier interrupted apply did, though this one failed: its lines, and
 * how an update left unconfirmed was finished (even with -q: the model changed version).
 */
function reportRecovery(model: string, e: unknown, io: CliIO): void {
  const recovery = e instanceof NeuralDiffError ? (e.details.recovery as RecoveryReport | undefined) : undefined;
  for (const line of recovery?.actions ?? []) io.progress(`recovered ${model}: ${line}`);
  if (recovery?.pending) io.err(`ndiff: ${describePending(model, recovery.pending)}`);
}

/** `ndiff apply`: one call of the library's {@link apply}, its result printed. */
export async function runApply(a: ApplyArgs, io: CliIO): Promise<number> {
  const { apply } = await import('../../src/front/apply.ts');
  let r: ApplyReport;
  try {
    r = await apply({
      model: a.model, payload: a.patch, dryRun: a.dryRun, maxPayloadBytes: a.maxPayloadBytes, healthCheckTimeout: a.healthCheckTimeout, fullCheck: a.fullCheck,
      publicKeys: a.publicKey ?? [],
      ...(a.requireSignature !== undefined ? { requireSignature: a.requireSignature } : {}),
      ...(a.modelId !== undefined ? { modelId: a.modelId } : {}),
      ...(a.state !== undefined ? { state: a.state === false ? null : a.state } : {}),
      ...(a.healthCheck ? { healthCheck: a.healthCheck } : {}),
      onProgress: (line) => io.progress(line),
    });
  } catch (e) {
    reportRecovery(a.model, e, io);
    throw e;
  }
  io.result?.(r);
  for (const line of r.recovery) io.progress(`recovered ${a.model}: ${line}`);
  if (r.pendingUpdate) io.err(`ndiff: ${describePending(a.model, r.pendingUpdate)}`);
  io.progress(describeSignature(r.signature));
  for (const w of r.warnings ?? []) io.progress(`warning: ${w}`);
  const ms = r.milliseconds.toFixed(0);
  if (r.status === 'already-applied') io.out(`${a.model} is already at target ${r.targetFingerprint}: nothing to do`);
  else if (r.structural) io.out(`${a.dryRun ? 'dry run: would rebuild' : 'rebuilt'} ${a.model}: ${r.baseFingerprint} -> ${r.targetFingerprint} (a structural payload: ${r.files ? `${r.files} files` : 'the file'} rebuilt, ${r.fileBytes} bytes, then ${r.writtenValues} values patched in ${r.changedTensors.length} tensors; ${ms} ms)`);
  else if (r.formatVersion === 8) io.out(`${a.dryRun ? 'dry run: would patch' : 'patched'} ${a.model} in place: ${r.baseFingerprint} -> ${r.targetFingerprint} (stored-bytes digests), ${a.dryRun ? 'every changed block checked' : `${r.writtenValues} bytes in ${r.changedTensors.length} tensors`} (${ms} ms)`);
  else io.out(`${a.dryRun ? 'dry run: would patch' : 'patched'} ${a.model}: ${r.baseFingerprint} -> ${r.targetFingerprint}, ${r.writtenValues} values in ${r.changedTensors.length} tensors (${ms} ms)`);
  if (r.baseCheck) {
    const { hashedTensors, recordedTensors } = r.baseCheck;
    io.progress(`base checked: ${hashedTensors} tensor(s) read and hashed${recordedTensors ? `, ${recordedTensors} by recorded digests (their files unchanged since; --full-check hashes them too)` : ''}`);
  }
  if (r.sequenceRecorded) io.progress(`recorded sequence ${r.sequence} for model ${terminalSafe(JSON.stringify(r.modelId))} in ${r.statePath}`);
  return 0;
}
