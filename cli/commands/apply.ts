import type { Argv } from 'yargs';
import { applyPayload } from '../../src/apply/index.ts';
import { decodePayload } from '../../src/core/format.ts';
import { openTfjsModelDir } from '../../src/io/tfjs-artifacts.ts';
import type { CliIO } from '../common.ts';
import { memoryCopy, readPayloadFile } from '../models.ts';

export interface ApplyArgs {
  model: string;
  patch: string;
  dryRun: boolean;
  maxPayloadBytes: number;
}

export function applyCommand(y: Argv): Argv<ApplyArgs> {
  return y
    .option('model', { type: 'string', demandOption: true, describe: 'model folder (TF.js model.json + shards), patched in place' })
    .option('patch', { type: 'string', demandOption: true, describe: 'payload file' })
    .option('dry-run', { type: 'boolean', default: false, describe: 'check everything and patch a copy in memory; write nothing' })
    .option('max-payload-bytes', { type: 'number', default: 256 * 1024 * 1024, describe: 'refuse larger payloads before parsing' })
    .example('$0 apply --model ./model --patch v1-v2.ndiff', 'patch in place; the folder switches atomically to the new version') as unknown as Argv<ApplyArgs>;
}

export async function runApply(a: ApplyArgs, io: CliIO): Promise<number> {
  const bytes = await readPayloadFile(a.patch);
  // Decode first: a bad payload is refused before the model is even read.
  decodePayload(bytes, { maxPayloadBytes: a.maxPayloadBytes });
  const disk = await openTfjsModelDir(a.model);
  const store = a.dryRun ? memoryCopy(disk) : disk;
  const t0 = performance.now();
  const res = await applyPayload(store, bytes, { maxPayloadBytes: a.maxPayloadBytes });
  const ms = performance.now() - t0;
  if (res.status === 'already-applied') {
    io.out(`${a.model} is already at target ${res.targetFingerprint}: nothing to do`);
    return 0;
  }
  io.out(`${a.dryRun ? 'dry run: would patch' : 'patched'} ${a.model}: ${res.baseFingerprint} -> ${res.targetFingerprint}, ${res.writtenValues} values in ${res.changedTensors.length} tensors (${ms.toFixed(0)} ms)`);
  return 0;
}
