/**
 * Ed25519 keys and signing on the build server (node:crypto). Devices only verify: that code is
 * pure and lives in src/apply (ed25519.ts, signature.ts, envelope.ts).
 *
 * Key files are PEM: the private key as PKCS#8 (`-----BEGIN PRIVATE KEY-----`, written with
 * mode 0600), the public key as SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`), the form
 * `openssl pkey` reads and writes.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign as nodeSign, type KeyObject } from 'node:crypto';
import { open, readFile, stat, unlink } from 'node:fs/promises';
import { PayloadFormatError, UsageError } from '../core/errors.ts';
import { decodePayload } from '../core/format.ts';
import { readMsgpack } from '../core/msgpack-read.ts';
import { isStructuralPayload } from '../apply/rebuild.ts';
import { decodeGgufPayload, isGgufPayloadDocument } from '../io/gguf/payload.ts';
import { keyIdOf, parsePublicKey, type TrustedKey } from '../apply/ed25519.ts';
import { envelopeSigningInput, isSignedEnvelope, sealEnvelope } from '../apply/envelope.ts';

export interface GeneratedKeyPair {
  privateKeyPem: string;
  publicKeyPem: string;
  /** The raw 32-byte public key. */
  publicKey: Uint8Array;
  keyId: string;
}

/** A fresh Ed25519 key pair. */
export function generateKeyPair(): GeneratedKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const raw = rawPublicKey(publicKey);
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }) as string,
    publicKey: raw,
    keyId: keyIdOf(raw),
  };
}

/** The raw 32 bytes of an Ed25519 public (or private) key object. */
export function rawPublicKey(key: KeyObject): Uint8Array {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const jwk = pub.export({ format: 'jwk' }) as { crv?: string; x?: string };
  if (jwk.crv !== 'Ed25519' || !jwk.x) throw new UsageError(`expected an Ed25519 key, found a ${pub.asymmetricKeyType ?? 'different'} key`);
  return new Uint8Array(Buffer.from(jwk.x, 'base64url'));
}

/** Parse a PEM private key, refusing anything but Ed25519. */
export function loadPrivateKey(pem: string | Uint8Array, label = 'private key'): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(typeof pem === 'string' ? pem : Buffer.from(pem));
  } catch (e) {
    // What was found, in words: never the key's text (a secret), nor OpenSSL's decoder codes.
    const text = typeof pem === 'string' ? pem : Buffer.from(pem).toString('latin1');
    const block = /-----BEGIN ([A-Z0-9 ]+)-----/.exec(text)?.[1];
    const found = block === 'PUBLIC KEY'
      ? 'found a PUBLIC KEY: the key devices verify with; signing needs its private half, the .private.pem file `ndiff keygen` wrote beside it'
      : block === undefined
        ? `found no PEM block (${text.length} characters)`
        : block.endsWith('PRIVATE KEY')
          ? `found a PEM block labelled ${block} that does not decode, ${(e as NodeJS.ErrnoException).code ?? 'unreadable'}; an encrypted key must be decrypted first`
          : `found a PEM block labelled ${block}`;
    throw new UsageError(`${label} is not a readable private key (${found}): expected the .private.pem file written by \`ndiff keygen\``, { label, found: block ?? 'no PEM block' });
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new UsageError(`${label} is a ${key.asymmetricKeyType} key: expected an Ed25519 key (make one with \`ndiff keygen\`)`, { label, found: key.asymmetricKeyType });
  }
  return key;
}

async function readKeyFile(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UsageError(`cannot read the ${what} file ${file} (${code ?? (e as Error).message}): check the path (\`ndiff keygen --out NAME\` writes NAME.private.pem and NAME.public.pem)`, { file, code });
  }
}

/** Read a private key file (PEM). */
export async function readPrivateKeyFile(file: string, onWarning: (line: string) => void = () => {}): Promise<KeyObject> {
  const key = loadPrivateKey(await readKeyFile(file, 'private key'), file);
  // As ssh does: a signing key others can read is a key others may have copied.
  const mode = (await stat(file)).mode & 0o777;
  if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
    onWarning(`warning: the private key ${file} can be read by other users (mode ${mode.toString(8).padStart(4, '0')}): anyone who copied it can sign releases devices accept. Restrict it (chmod 600 ${file}); if others may have read it, make a new key (ndiff keygen) and ship its public key`);
  }
  return key;
}

/** Read a public key file (PEM, hex or base64) as a trusted key. */
export async function readPublicKeyFile(file: string): Promise<TrustedKey> {
  const text = await readKeyFile(file, 'public key');
  // A PEM file is the block alone: text around it (a pasted mail, a second key's remains) is refused, not skipped.
  const trimmed = text.trim();
  if (trimmed.split('-----BEGIN').length === 2 && trimmed.includes('-----BEGIN PUBLIC KEY-----') && !/^-----BEGIN PUBLIC KEY-----[A-Za-z0-9+/=\s]*-----END PUBLIC KEY-----$/.test(trimmed)) {
    throw new UsageError(`public key file ${file} holds text besides one PUBLIC KEY block: expected the .public.pem file written by \`ndiff keygen\`, the block alone; remove what surrounds it`, { file });
  }
  return parsePublicKey(text, file);
}

/**
 * Sign a payload: returns the signed envelope (see envelope.ts). The payload must decode (a
 * build pipeline must not sign garbage) and must not already be an envelope.
 *
 * @throws UsageError for an envelope or a non-Ed25519 key; PayloadFormatError (and the other
 *   decode errors) for bytes that are not a valid payload.
 */
export function signPayload(payload: Uint8Array, privateKey: KeyObject | string): Uint8Array {
  if (isSignedEnvelope(payload)) {
    throw new UsageError('this file is already a signed envelope: sign the bare payload (as written by `ndiff diff` or `ndiff train`), not an envelope');
  }
  try {
    // A structural payload (format v7): its document and the value payload inside it (the
    // device checks the rest: the byte delta against the model's own bytes). A GGUF block
    // payload (format v8): its document (the device checks its chunks against the file).
    if (isStructuralPayload(payload)) {
      const pv = (readMsgpack(payload) as Record<string, unknown>).pv;
      if (!(pv instanceof Uint8Array)) throw new PayloadFormatError('a structural payload (format v7) without its value payload "pv"');
      decodePayload(pv);
    } else if (isGgufPayloadDocument(payload)) decodeGgufPayload(payload);
    else decodePayload(payload);
  } catch (e) {
    if (e instanceof PayloadFormatError) throw new PayloadFormatError(`refusing to sign: ${e.message}`, e.details);
    throw e;
  }
  const key = typeof privateKey === 'string' ? loadPrivateKey(privateKey) : privateKey;
  if (key.type !== 'private' || key.asymmetricKeyType !== 'ed25519') throw new UsageError('signPayload needs an Ed25519 private key');
  const input = envelopeSigningInput(payload, keyIdOf(rawPublicKey(key)));
  return sealEnvelope(input, new Uint8Array(nodeSign(null, input, key)));
}

/**
 * Write key files `<prefix>.private.pem` (mode 0600) and `<prefix>.public.pem`; never overwrites,
 * and never leaves half a pair: when the public file cannot be written, the private one just
 * written is removed (beside an old public key it would sign payloads no device can verify).
 */
export async function writeKeyPairFiles(prefix: string): Promise<{ privateKeyFile: string; publicKeyFile: string; keyId: string }> {
  const pair = generateKeyPair();
  const privateKeyFile = `${prefix}.private.pem`;
  const publicKeyFile = `${prefix}.public.pem`;
  const write = async (file: string, text: string, mode: number) => {
    let fh;
    try {
      fh = await open(file, 'wx', mode);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') throw new UsageError(`${file} already exists: keygen never overwrites a key, and writes both halves of a pair or neither; pick another out (--out) name or remove the old key deliberately`, { file });
      throw new UsageError(`cannot create ${file} (${code ?? (e as Error).message}): check that the folder exists and is writable`, { file, code });
    }
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
  };
  await write(privateKeyFile, pair.privateKeyPem, 0o600);
  try {
    await write(publicKeyFile, pair.publicKeyPem, 0o644);
  } catch (e) {
    await unlink(privateKeyFile);
    throw e;
  }
  return { privateKeyFile, publicKeyFile, keyId: pair.keyId };
}
