import type { Argv } from 'yargs';
import { applyPayload } from '../../src/apply/index.ts';
import { decodePayload } from '../../src/core/format.ts';
import { openTfjsModelDir } from '../../src/io/tfjs-artifacts.ts';
import type { CliIO } from '../common.ts';
import { memoryCopy, readPayloadFile } from '../models.ts';

export interface VerifyArgs {
  payload: string;
  model?: string;
}

export function verifyCommand(y: Argv): Argv<VerifyArgs> {
  return y
    .positional('payload', { type: 'string', demandOption: true, describe: 'payload file' })
    .option('model', { type: 'string', describe: 'also check that it applies to this model folder (in memory; nothing is written)' })
    .example('$0 verify v1-v2.ndiff --model ./model', 'would this payload apply cleanly to this model?') as unknown as Argv<VerifyArgs>;
}

export async function runVerify(a: VerifyArgs, io: CliIO): Promise<number> {
  const bytes = await readPayloadFile(a.payload);
  const payload = decodePayload(bytes);
  io.out(`${a.payload}: well-formed v${payload.header.version} payload, ${payload.patches.length} patches, ${bytes.length} bytes`);
  if (a.model) {
    const copy = memoryCopy(await openTfjsModelDir(a.model));
    const res = await applyPayload(copy, bytes);
    io.out(res.status === 'already-applied'
      ? `${a.model} is already at the target ${res.targetFingerprint}`
      : `applies cleanly to ${a.model}: ${res.baseFingerprint} -> ${res.targetFingerprint}`);
  }
  return 0;
}
