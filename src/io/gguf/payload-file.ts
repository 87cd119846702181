/**
 * A GGUF block payload opened for the in-place apply (Node) from its file, its bytes or a reader
 * (`payload-open.ts` reads and checks it; here node:crypto hashes what it reads): a file is read a
 * window at a time, never held whole.
 */
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { PayloadFormatError } from '../../core/errors.ts';
import { ENVELOPE_HEADER_BYTES, ENVELOPE_OVERHEAD, isSignedEnvelope } from '../../apply/envelope.ts';
import { SIGNATURE_BYTES } from '../../apply/ed25519.ts';
import type { SignaturePolicy } from '../../apply/signature.ts';
import { GGUF_PAYLOAD_VERSION } from './payload.ts';
import { scanFormatVersion, type PayloadByteSource, type StreamDigest } from './payload-scan.ts';
import { openGgufPayloadFrom, type GgufPayloadReader, type OpenedGgufPayload, type PayloadDigests } from './payload-open.ts';
import { readFully } from './node-volume.ts';

export { GGUF_MAX_CHUNK_ENTRY_BYTES } from './payload-scan.ts';
export type { GgufPayloadReader, OpenedGgufPayload } from './payload-open.ts';

/** A GGUF payload as the in-place apply takes it: a file's path (read a window at a time), a reader, or its bytes. */
export type GgufPayloadInput = Uint8Array | string | GgufPayloadReader;

const nodeDigest = (algorithm: string) => (): StreamDigest => {
  const h = createHash(algorithm);
  return { update: (b) => void h.update(b), digest: () => new Uint8Array(h.digest()) };
};
/** node:crypto's SHA-256 for the chunks, its SHA-512 for the signature. */
const NODE_DIGESTS: PayloadDigests = { chunk: nodeDigest('sha256'), sha512: nodeDigest('sha512') };

/**
 * Open a GGUF payload, a file's path or its bytes (bare or in a signed envelope), by the
 * signature policy: the size cap, the signature, the header and every chunk's place, in one pass.
 * @throws PayloadTooLargeError, SignatureError, UsageError, PayloadFormatError, UnsupportedVersionError
 */
export async function openGgufPayload(payload: GgufPayloadInput, policy: SignaturePolicy = {}): Promise<OpenedGgufPayload> {
  let fh: FileHandle | undefined;
  let size: number;
  let bytesRead = 0;
  let read: PayloadByteSource;
  if (typeof payload === 'object' && !(payload instanceof Uint8Array)) {
    const source = payload;
    size = source.size;
    read = async (position, length) => {
      bytesRead += length;
      const b = await source.read(position, length);
      if (b.length !== length) throw new PayloadFormatError(`GGUF payload: ${length} bytes were asked for at ${position}, the source gave ${b.length}: it changed meanwhile or is damaged; fetch it again`, { position, length });
      return b;
    };
  } else if (typeof payload === 'string') {
    const handle = (fh = await open(payload, 'r'));
    size = (await handle.stat()).size;
    read = async (position, length) => {
      bytesRead += length;
      return readFully(handle, length, position, payload);
    };
  } else {
    const bytes = payload;
    size = bytes.length;
    read = async (position, length) => {
      bytesRead += length;
      return bytes.subarray(position, position + length);
    };
  }
  try {
    return await openGgufPayloadFrom(read, size, policy, !(payload instanceof Uint8Array), NODE_DIGESTS, () => bytesRead, async () => {
      await fh?.close();
      fh = undefined;
    });
  } catch (e) {
    await fh?.close();
    throw e;
  }
}

/**
 * Whether the file at `path` holds a GGUF block payload (format v8), bare or in a signed
 * envelope, by its `nd` field, read without holding the file (the signature is not checked
 * here). False for anything else; throws only what opening the file throws.
 */
export async function isGgufPayloadFile(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    const read: PayloadByteSource = (position, length) => readFully(fh, length, position, path);
    const head = await read(0, Math.min(size, 4));
    const signed = isSignedEnvelope(head);
    if (signed && size < ENVELOPE_OVERHEAD + 1) return false;
    return (await scanFormatVersion(read, signed ? ENVELOPE_HEADER_BYTES : 0, signed ? size - SIGNATURE_BYTES : size)) === GGUF_PAYLOAD_VERSION;
  } finally {
    await fh.close();
  }
}
