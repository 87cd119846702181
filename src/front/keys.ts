/**
 * `keygen` and `sign`: what `ndiff keygen` and `ndiff sign` do, as library calls. A key pair is
 * two PEM files (the private one for the build server, mode 0600; the public one for devices);
 * a signed payload is an envelope over the payload's exact bytes that devices check before they
 * decode anything (docs/FORMAT.md).
 */
import type { KeyObject } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { keyIdOf } from '../apply/ed25519.ts';
import { UsageError } from '../core/errors.ts';
import { rawPublicKey, signPayload, writeKeyPairFiles } from '../sign/node-keys.ts';
import { checkOutputPath, readPayloadFile } from './models.ts';
import { privateKeyOf } from './release-common.ts';

/** What {@link keygen} takes (`ndiff keygen`). */
export interface KeygenOptions {
  /** The path prefix: `<out>.private.pem` and `<out>.public.pem` are written, never over existing files. */
  out: string;
}

/** What {@link keygen} returns: the fields `ndiff keygen --json` prints. */
export interface KeygenResult {
  privateKeyFile: string;
  publicKeyFile: string;
  /** The public key's id, as envelopes and manifests name their signer. */
  keyId: string;
}

/** Make an Ed25519 key pair as two PEM files. Throws UsageError (naming `out (--out)`) for a place that cannot be written or a key already there. */
export async function keygen(o: KeygenOptions): Promise<KeygenResult> {
  if (typeof o.out !== 'string' || o.out === '') throw new UsageError(`out (--out) expects a path prefix such as keys/release (it writes keys/release.private.pem and keys/release.public.pem), found ${JSON.stringify(o.out)}`, { expected: 'a path prefix', found: o.out });
  await checkOutputPath(`${o.out}.private.pem`, 'out (--out)');
  const k = await writeKeyPairFiles(o.out);
  return { privateKeyFile: k.privateKeyFile, publicKeyFile: k.publicKeyFile, keyId: k.keyId };
}

/** What {@link sign} takes (`ndiff sign`). */
export interface SignOptions {
  /** The bare payload (from diff or train): its file's path, or its bytes. */
  payload: string | Uint8Array;
  /** The Ed25519 private key: a `.private.pem` path (from {@link keygen}) or a KeyObject. */
  key: string | KeyObject;
  /** The envelope's file. Default for a payload path: `v1-v2.ndiff` gives `v1-v2.signed.ndiff`, any other name gets `.signed` appended; for bytes, none is written. */
  out?: string;
}

/** What {@link sign} returns: the fields `ndiff sign --json` prints, the envelope, and the warnings. */
export interface SignResult {
  /** The file written, when one was. */
  out?: string;
  /** The envelope's bytes: payload + the envelope's overhead. */
  bytes: number;
  payloadBytes: number;
  keyId: string;
  /** The signed envelope, as written to `out`. */
  envelope: Uint8Array;
  /** What `ndiff sign` prints on stderr as warnings (a private key file others can read). */
  warnings: string[];
}

/** `v1-v2.ndiff` -> `v1-v2.signed.ndiff`; anything else gets `.signed` appended. */
export function signedName(file: string): string {
  return file.endsWith('.ndiff') ? `${file.slice(0, -'.ndiff'.length)}.signed.ndiff` : `${file}.signed`;
}

/**
 * Sign a payload. The payload must decode (a build must not sign garbage) and must not already
 * be an envelope. Throws UsageError for an envelope, a key that is not an Ed25519 private key or
 * an `out` that cannot be written; PayloadFormatError for bytes that are not a payload. The
 * same payload and key give the same envelope bytes (Ed25519 signatures are deterministic).
 */
export async function sign(o: SignOptions): Promise<SignResult> {
  if (typeof o.payload !== 'string' && !(o.payload instanceof Uint8Array)) throw new UsageError('payload expects a payload file\'s path or its bytes (a Uint8Array)', { expected: 'a path or a Uint8Array', found: typeof o.payload });
  if (o.key === undefined || o.key === '') throw new UsageError('key (--key) is needed: the Ed25519 private key (the .private.pem file from ndiff keygen, or a KeyObject)', { expected: 'a private key', found: o.key });
  const payload = typeof o.payload === 'string' ? await readPayloadFile(o.payload) : o.payload;
  const warnings: string[] = [];
  const key = await privateKeyOf(o.key, warnings);
  const envelope = signPayload(payload, key);
  const out = o.out ?? (typeof o.payload === 'string' ? signedName(o.payload) : undefined);
  if (out !== undefined) {
    await checkOutputPath(out, 'out (--out)');
    await writeFile(out, envelope);
  }
  return { ...(out !== undefined ? { out } : {}), bytes: envelope.length, payloadBytes: payload.length, keyId: keyIdOf(rawPublicKey(key)), envelope, warnings };
}
