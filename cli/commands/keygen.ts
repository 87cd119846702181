import type { Argv } from 'yargs';
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

/** `ndiff keygen`: one call of the library's {@link keygen}, its result printed. */
export async function runKeygen(a: KeygenArgs, io: CliIO): Promise<number> {
  const { keygen } = await import('../../src/front/keys.ts');
  const k = await keygen({ out: a.out });
  io.result?.(k);
  io.out(`wrote ${k.privateKeyFile} (keep it on the build server, never on a device) and ${k.publicKeyFile} (ship it with devices)`);
  io.out(`key id ${k.keyId}`);
  return 0;
}
