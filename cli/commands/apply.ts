import type { Argv } from 'yargs';
import { NeuralDiffError } from '../../src/core/errors.ts';
import { DIGESTS_FILE } from '../../src/io/tfjs/recorded-digests.ts';
import { DEFAULT_STATE_FILE } from '../../src/io/durable/sequence-file.ts';
import { FOLDER_FILE } from '../../src/io/durable/control-files.ts';
import { MODEL_ID_SUFFIX } from '../../src/io/durable/model-id-file.ts';
import type { RecoveryReport } from '../../src/io/durable/lock.ts';
import { apply, type ApplyReport } from '../../src/front/apply.ts';
import type { CliIO } from '../common.ts';
import { describePending } from './update.ts';
import { describeSignature, signatureOptions, type SignatureArgs } from '../keys.ts';
import { terminalSafe } from '../text.ts';

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
    .option('model', { type: 'string', demandOption: true, describe: 'model folder (TF.js model.json + shards), TF.js model JSON file sharing its folder with other models (<name>.json, its shards beside it; its own files beside it are named <name>.json.ndiff-*) ONNX model file (.onnx, with its external data) or LiteRT model file (.tflite), patched in place' })
    .option('patch', { type: 'string', demandOption: true, describe: 'payload file (bare or signed)' })
    .option('dry-run', { type: 'boolean', default: false, describe: 'check everything and patch a copy in memory; write nothing' })
    .option('max-payload-bytes', { type: 'number', default: 256 * 1024 * 1024, describe: 'refuse larger payloads before parsing' }))
    .option('state', { type: 'string', describe: `file keeping the highest applied sequence per model id (default: <model>/${DEFAULT_STATE_FILE}; for a <name>.json file, in its folder; for a .onnx or .tflite file, <file>.ndiff-state.json beside it); older or replayed payloads are refused. --no-state keeps none` })
    .option('health-check', { type: 'string', describe: 'shell command run after the switch with NDIFF_MODEL_DIR (the model\'s folder) and NDIFF_MODEL_FILE (its model.json, <name>.json, .onnx or .tflite file) set, e.g. one inference; a non-zero exit rolls back to the previous version' })
    .option('health-check-timeout', { type: 'number', default: 300, describe: 'seconds before the health check counts as failed' })
    .option('model-id', { type: 'string', describe: `the model id this folder (or file) holds: payloads for another id are refused (default: the id recorded by its first apply: <model>/${FOLDER_FILE} for a folder, <model>${MODEL_ID_SUFFIX} for an .onnx, .tflite or <name>.json file)` })
    .option('full-check', { type: 'boolean', default: false, describe: `read and hash every tensor of the base, not only the patched ones (by default the others are checked against the digests the last apply recorded in <model>/${DIGESTS_FILE}, or <name>.json.ndiff-digests.json, while their shard files are unchanged; an ONNX file is always hashed whole)` })
    .example('$0 apply --model ./model --patch v1-v2.signed.ndiff --public-key release.public.pem', 'verify the signature, then patch in place; the folder switches atomically')
    .example('$0 apply --model models/movenet-lightning.json --patch v3-v4.ndiff', 'patch one model of a folder holding several (<name>.json + <name>.bin); the others are not touched')
    .example('$0 apply --model vad.onnx --patch v5-v6.ndiff --health-check "node smoke.js"', 'patch an ONNX model file; rolled back if the health check fails') as unknown as Argv<ApplyArgs>;
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
  else io.out(`${a.dryRun ? 'dry run: would patch' : 'patched'} ${a.model}: ${r.baseFingerprint} -> ${r.targetFingerprint}, ${r.writtenValues} values in ${r.changedTensors.length} tensors (${ms} ms)`);
  if (r.baseCheck) {
    const { hashedTensors, recordedTensors } = r.baseCheck;
    io.progress(`base checked: ${hashedTensors} tensor(s) read and hashed${recordedTensors ? `, ${recordedTensors} by recorded digests (their files unchanged since; --full-check hashes them too)` : ''}`);
  }
  if (r.sequenceRecorded) io.progress(`recorded sequence ${r.sequence} for model ${terminalSafe(JSON.stringify(r.modelId))} in ${r.statePath}`);
  return 0;
}
