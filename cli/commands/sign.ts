import type { Argv } from 'yargs';
import { ENVELOPE_OVERHEAD } from '../../src/apply/envelope.ts';
import { inCliWords, type CliIO } from '../common.ts';
import { seeDocs } from '../help.ts';

export interface SignArgs {
  payload: string;
  key: string;
  out?: string;
}

export function signCommand(y: Argv): Argv<SignArgs> {
  return y
    .positional('payload', { type: 'string', demandOption: true, describe: 'payload file (from ndiff diff or ndiff train)' })
    .option('key', { type: 'string', demandOption: true, describe: 'Ed25519 private key (PEM, from ndiff keygen)' })
    .option('out', { type: 'string', describe: 'envelope to write (default: <payload>.signed.ndiff)' })
    .example('$0 sign v1-v2.ndiff --key keys/release.private.pem', 'writes v1-v2.signed.ndiff')
    .epilogue(seeDocs('sign')) as unknown as Argv<SignArgs>;
}

/** `ndiff sign`: one call of the library's {@link sign}, its result printed. */
export async function runSign(a: SignArgs, io: CliIO): Promise<number> {
  const { sign } = await import('../../src/front/keys.ts');
  const { envelope: _envelope, warnings, ...doc } = await sign({ payload: a.payload, key: a.key, ...(a.out !== undefined ? { out: a.out } : {}) });
  for (const w of warnings) io.err(`warning: ${inCliWords(w)}`);
  io.result?.(doc);
  io.out(`wrote ${doc.out}: ${doc.bytes} bytes (payload + ${ENVELOPE_OVERHEAD}), signed with key id ${doc.keyId}`);
  return 0;
}
