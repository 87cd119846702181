import type { Argv } from 'yargs';
import { fingerprintStore } from '../../src/core/fingerprint.ts';
import { getHasher } from '../../src/core/hasher.ts';
import { openTfjsModelDir } from '../../src/io/tfjs-artifacts.ts';
import { table, type CliIO } from '../common.ts';

export interface FingerprintArgs {
  model: string;
  tensors: boolean;
}

export function fingerprintCommand(y: Argv): Argv<FingerprintArgs> {
  return y
    .positional('model', { type: 'string', demandOption: true, describe: 'model folder' })
    .option('tensors', { type: 'boolean', default: false, describe: 'also list every tensor digest' }) as unknown as Argv<FingerprintArgs>;
}

export async function runFingerprint(a: FingerprintArgs, io: CliIO): Promise<number> {
  const store = await openTfjsModelDir(a.model);
  const { fingerprint, digests } = fingerprintStore(await getHasher(), store);
  io.out(fingerprint);
  if (a.tensors) io.out(table(store.list().map((t) => [t.name, `[${t.shape.join('x')}]`, digests.get(t.name) as string]), ['tensor', 'shape', 'digest']));
  return 0;
}
