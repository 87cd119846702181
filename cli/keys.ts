/** Signature options shared by `ndiff apply` and `ndiff verify`. */
import type { Argv } from 'yargs';
import type { SignatureCheck } from '../src/apply/signature.ts';

export interface SignatureArgs {
  publicKey?: string[];
  requireSignature?: boolean;
}

export function signatureOptions<T>(y: Argv<T>): Argv<T & SignatureArgs> {
  return y
    .option('public-key', { type: 'string', array: true, describe: 'trusted Ed25519 public key (repeatable)' })
    .option('require-signature', { type: 'boolean', describe: 'refuse unsigned payloads (default: with --public-key)' }) as unknown as Argv<T & SignatureArgs>;
}

/** One line saying what the signature check found. */
export function describeSignature(s: SignatureCheck): string {
  if (!s.signed) return 'signature: none (a bare payload; devices with --public-key refuse it)';
  if (!s.verified) return `signature: signed by key id ${s.keyId}, NOT checked (pass --public-key to check it)`;
  return `signature: valid, trusted key id ${s.keyId} (${s.verifier})`;
}
