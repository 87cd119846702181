import type { Argv } from 'yargs';
import { checkOutputPath } from '../models.ts';
import { writeKeyPairFiles } from '../../src/sign/node-keys.ts';
import type { CliIO } from '../common.ts';
import { seeDocs } from '../help.ts';

export interface KeygenArgs {
  out: string;
}

export function keygenCommand(y: Argv): Argv<KeygenArgs> {
  return y
    .option('out', { type: 'string', demandOption: true, describe: 'path prefix of <out>.private.pem and <out>.public.pem' })
    .example('$0 keygen --out keys/release', 'make keys/release.private.pem and keys/release.public.pem')
    .epilogue(seeDocs('keygen')) as unknown as Argv<KeygenArgs>;
}

export async function runKeygen(a: KeygenArgs, io: CliIO): Promise<number> {
  await checkOutputPath(`${a.out}.private.pem`, '--out');
  const k = await writeKeyPairFiles(a.out);
  io.result?.({ privateKeyFile: k.privateKeyFile, publicKeyFile: k.publicKeyFile, keyId: k.keyId });
  io.out(`wrote ${k.privateKeyFile} (keep it on the build server, never on a device) and ${k.publicKeyFile} (ship it with devices)`);
  io.out(`key id ${k.keyId}`);
  return 0;
}
