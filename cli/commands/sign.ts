import type { Argv } from 'yargs';
import { writeFile } from 'node:fs/promises';
import { keyIdOf } from '../../src/apply/ed25519.ts';
import { ENVELOPE_OVERHEAD } from '../../src/apply/envelope.ts';
import { rawPublicKey, readPrivateKeyFile, signPayload } from '../../src/sign/node-keys.ts';
import type { CliIO } from '../common.ts';
import { seeDocs } from '../help.ts';
import { checkOutputPath, readPayloadFile } from '../models.ts';

export interface SignArgs {
  payload: string;
  key: string;
  out?: string;
}

/** `v1-v2.ndiff` -> `v1-v2.signed.ndiff`; anything else gets `.signed` appended. */
export function signedName(file: string): string {
  return file.endsWith('.ndiff') ? `${file.slice(0, -'.ndiff'.length)}.signed.ndiff` : `${file}.signed`;
}

export function signCommand(y: Argv): Argv<SignArgs> {
  return y
    .positional('payload', { type: 'string', demandOption: true, describe: 'payload file (from ndiff diff or ndiff train)' })
    .option('key', { type: 'string', demandOption: true, describe: 'Ed25519 private key (PEM, from ndiff keygen)' })
    .option('out', { type: 'string', describe: 'envelope to write (default: <payload>.signed.ndiff)' })
    .example('$0 sign v1-v2.ndiff --key keys/release.private.pem', 'writes v1-v2.signed.ndiff')
    .epilogue(seeDocs('sign')) as unknown as Argv<SignArgs>;
}

export async function runSign(a: SignArgs, io: CliIO): Promise<number> {
  const payload = await readPayloadFile(a.payload);
  const key = await readPrivateKeyFile(a.key, (l) => io.err(l));
  const envelope = signPayload(payload, key);
  const out = a.out ?? signedName(a.payload);
  await checkOutputPath(out, '--out');
  await writeFile(out, envelope);
  io.result?.({ out, bytes: envelope.length, payloadBytes: payload.length, keyId: keyIdOf(rawPublicKey(key)) });
  io.out(`wrote ${out}: ${envelope.length} bytes (payload + ${ENVELOPE_OVERHEAD}), signed with key id ${keyIdOf(rawPublicKey(key))}`);
  return 0;
}
