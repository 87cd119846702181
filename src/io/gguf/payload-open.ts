/**
 * A GGUF block payload opened for the in-place apply through a reader of its bytes, never held
 * whole (no node modules: the device's entry and the Node opener, `payload-file.ts`, share it):
 * one pass reads it a window at a time, checks its signature (SHA-512 of the signed bytes taken
 * as they stream past, then Ed25519's point check), decodes the header and the parts, and keeps
 * each chunk's offset, length and digest (`payload-scan.ts`). Then every pass of the apply reads
 * the chunks back one at a time ({@link OpenedGgufPayload.chunks}); a chunk whose bytes no longer
 * hash to what the first pass saw (the file replaced or altered between passes) is refused with a
 * `PayloadFormatError`, so only bytes the signature covered are ever applied: before the first
 * overwrite nothing is written, after it the apply rolls back from its journal.
 *
 * Memory: a window of 1 MiB and one chunk's entry at a time (1 MiB of ranges as the encoder
 * writes them, at most {@link GGUF_MAX_CHUNK_ENTRY_BYTES}), and 48 bytes a chunk.
 */
import { PayloadFormatError, PayloadTooLargeError, SignatureError, UsageError } from '../../core/errors.ts';
import { payloadLimit } from '../../core/format.ts';
import { readMsgpack } from '../../core/msgpack-read.ts';
import { Sha512 } from '../../core/sha512.ts';
import { hasCanonicalScalar, SIGNATURE_BYTES, toHex } from '../../apply/ed25519.ts';
import { verifySignatureDigest } from '../../apply/ed25519-point.ts';
import { ENVELOPE_HEADER_BYTES, ENVELOPE_OVERHEAD, isSignedEnvelope, SUPPORTED_ENVELOPE_VERSIONS, ENVELOPE_VERSION } from '../../apply/envelope.ts';
import { openSignedPayload, parseTrustedKeys, type SignatureCheck, type SignaturePolicy } from '../../apply/signature.ts';
import { decodeGgufChunkEntry, newRangeState, type GgufChunk, type GgufPartDigests, type GgufPayloadHeader } from './payload.ts';
import { scanGgufPayload, type GgufChunkExtent, type PayloadByteSource, type StreamDigest } from './payload-scan.ts';

export { GGUF_MAX_CHUNK_ENTRY_BYTES } from './payload-scan.ts';

/** A GGUF payload checked and scanned, its chunks read on demand. */
export interface OpenedGgufPayload {
  header: GgufPayloadHeader;
  parts: GgufPartDigests[];
  signature: SignatureCheck;
  /** The number of chunks. */
  chunkCount: number;
  /**
   * The chunks in order, each read from the payload, checked against the digest the first pass
   * took of it, and decoded (`decodeGgufChunkEntry`). A pass may stop early; each call starts again.
   * @throws PayloadFormatError a chunk that is malformed, or whose bytes changed since the first pass
   */
  chunks(): AsyncGenerator<GgufChunk>;
  /** Bytes read from the payload in all (its file's, or its bytes' in memory). */
  readonly bytesRead: number;
  close(): Promise<void>;
}

/** A payload read through a function (a file of another store, or a test's reader): its size and exact byte ranges. */
export interface GgufPayloadReader {
  size: number;
  read(position: number, length: number): Promise<Uint8Array>;
}

/**
 * Open a GGUF payload read through `read` (`size` bytes; bare or in a signed envelope), by the
 * signature policy: the size cap, the signature, the header and every chunk's place, in one
 * pass. `streamed`: the bytes are not in memory (read a window at a time; the signature checked
 * as they stream past). `digests` hash what the pass reads (SHA-512 for the signature, and a
 * digest of each chunk checked again at every later read of it).
 * @throws PayloadTooLargeError, SignatureError, UsageError, PayloadFormatError, UnsupportedVersionError
 */
export async function openGgufPayloadFrom(read: PayloadByteSource, size: number, policy: SignaturePolicy, streamed: boolean, digests: PayloadDigests, bytesRead: () => number, close: () => Promise<void>): Promise<OpenedGgufPayload> {
  const { scanned, signature } = await openSource(read, size, payloadLimit(policy.maxPayloadBytes), policy, streamed, digests);
  return {
    header: scanned.header,
    parts: scanned.parts,
    signature,
    chunkCount: scanned.chunks.length,
    chunks: () => chunksOf(read, scanned.chunks, scanned.parts, digests.chunk),
    get bytesRead() {
      return bytesRead();
    },
    close,
  };
}

/** What a payload's reading hashes with. */
export interface PayloadDigests {
  /** The digest kept of each chunk at the first pass, checked at every later read. */
  chunk: () => StreamDigest;
  /** SHA-512, for the Ed25519 signature of a streamed payload. */
  sha512: () => StreamDigest;
}

/** SHA-512 written here (src/core/sha512.ts) for both: no node module, no WebCrypto (which takes a message whole). */
export const PURE_PAYLOAD_DIGESTS: PayloadDigests = {
  chunk: () => pureSha512(),
  sha512: () => pureSha512(),
};

function pureSha512(): StreamDigest {
  const h = new Sha512();
  return { update: (b) => void h.update(b), digest: () => h.digest() };
}

async function* chunksOf(read: PayloadByteSource, extents: readonly GgufChunkExtent[], parts: readonly GgufPartDigests[], digest: () => StreamDigest): AsyncGenerator<GgufChunk> {
  const state = newRangeState();
  for (let i = 0; i < extents.length; i++) {
    const x = extents[i];
    const bytes = await read(x.offset, x.length);
    const d = digest();
    d.update(bytes);
    const now = d.digest();
    if (toHex(now) !== toHex(x.digest)) {
      throw new PayloadFormatError(`GGUF payload: chunk ${i} (bytes ${x.offset} to ${x.offset + x.length}) no longer holds the bytes that were verified when the apply began: the payload file was replaced or altered meanwhile; its bytes were not applied (anything already written was rolled back); keep the payload file unchanged until the apply ends, fetch it again and retry`, { chunk: i, stage: 'reread' });
    }
    let entry: unknown;
    try {
      entry = readMsgpack(bytes);
    } catch (e) {
      throw new PayloadFormatError(`GGUF payload: chunk ${i}: malformed msgpack: ${(e as Error).message}; the payload is corrupt, hostile or not a neural-diff payload: nothing was written; fetch it again or fall back to the full model`, { chunk: i });
    }
    yield decodeGgufChunkEntry(entry, i, parts, state);
  }
}

/** The signature policy over a source, then the scan (payload-scan.ts) of the payload inside. */
async function openSource(read: PayloadByteSource, size: number, limit: number, policy: SignaturePolicy, streamed: boolean, digests: PayloadDigests) {
  if (size > limit + ENVELOPE_OVERHEAD) throw new PayloadTooLargeError(size, limit);
  if (!streamed) {
    // Bytes in memory: the signature checked over them as they are (signature.ts), then the scan.
    const bytes = await read(0, size);
    const opened = await openSignedPayload(bytes, policy);
    const start = opened.signature.signed ? ENVELOPE_HEADER_BYTES : 0;
    if (opened.payload.length > limit) throw new PayloadTooLargeError(opened.payload.length, limit);
    return { signature: opened.signature, scanned: await scanGgufPayload(read, start, start + opened.payload.length, digests.chunk) };
  }
  const keys = parseTrustedKeys(policy.trustedKeys);
  const require = policy.requireSignature ?? keys.length > 0;
  if (require && keys.length === 0) {
    throw new UsageError('requireSignature is set but no trusted key is configured: pass the publisher\'s public key (trustedKeys, or --public-key FILE on the command line)');
  }
  const first = await read(0, Math.min(size, ENVELOPE_HEADER_BYTES));
  if (!isSignedEnvelope(first)) {
    if (require) {
      throw new SignatureError(
        `payload is not signed: expected a signed envelope starting with "NDSG", found a bare payload (first bytes ${toHex(first.subarray(0, 4)) || 'none'}); this device accepts only payloads signed by one of its ${keys.length} trusted key(s) (${keys.map((k) => k.keyId).join(', ')}): sign it on the build server with \`ndiff sign <payload> --key <private.pem>\``,
        { trusted: keys.map((k) => k.keyId) },
      );
    }
    if (size > limit) throw new PayloadTooLargeError(size, limit);
    return { signature: { signed: false, verified: false } as SignatureCheck, scanned: await scanGgufPayload(read, 0, size, digests.chunk) };
  }
  if (size < ENVELOPE_OVERHEAD + 1) {
    throw new SignatureError(`signed envelope is ${size} bytes: expected at least ${ENVELOPE_OVERHEAD + 1} (a ${ENVELOPE_HEADER_BYTES}-byte header, the payload and a ${SIGNATURE_BYTES}-byte signature); it was truncated: fetch it again`, { found: size, expected: ENVELOPE_OVERHEAD + 1 });
  }
  const version = first[4];
  if (!SUPPORTED_ENVELOPE_VERSIONS.includes(version)) {
    throw new SignatureError(`signed envelope version ${version} is not supported (this applier reads version ${SUPPORTED_ENVELOPE_VERSIONS.join(', ')}): update neural-diff on the device, or ask the server for an envelope of version ${ENVELOPE_VERSION}`, { found: version, supported: SUPPORTED_ENVELOPE_VERSIONS });
  }
  const keyId = toHex(first.subarray(5, ENVELOPE_HEADER_BYTES));
  const end = size - SIGNATURE_BYTES;
  if (end - ENVELOPE_HEADER_BYTES > limit) throw new PayloadTooLargeError(end - ENVELOPE_HEADER_BYTES, limit);
  if (keys.length === 0) return { signature: { signed: true, keyId, verified: false } as SignatureCheck, scanned: await scanGgufPayload(read, ENVELOPE_HEADER_BYTES, end, digests.chunk) };
  const key = keys.find((k) => k.keyId === keyId);
  if (!key) {
    throw new SignatureError(
      `payload is signed by key id ${keyId}, which is not one of the ${keys.length} key(s) this device trusts (${keys.map((k) => k.keyId).join(', ')}): it was signed with another key (a test key, a rotated-out key, or an attacker's); re-sign it with a trusted key, or add that publisher's public key to the device if it is legitimate`,
      { keyId, trusted: keys.map((k) => k.keyId) },
    );
  }
  if (policy.verifier === 'webcrypto') throw new UsageError("verifier 'webcrypto' was asked for, but a payload file is verified as it is read (WebCrypto takes the whole message): use verifier 'auto' or 'pure', or pass the payload's bytes");
  const signature = (await read(end, SIGNATURE_BYTES)).slice();
  // k = SHA-512(R || A || M), M the envelope's header and the payload, hashed as the scan reads them.
  const k = digests.sha512();
  k.update(signature.subarray(0, 32));
  k.update(key.raw);
  k.update(first.subarray(0, ENVELOPE_HEADER_BYTES));
  const verdict = () => hasCanonicalScalar(signature) && verifySignatureDigest(key.raw, signature, k.digest());
  const refused = () => new SignatureError(
    `the Ed25519 signature does not match the payload for trusted key id ${keyId}: the payload or its signature was altered after signing (corruption in transit or storage, or tampering); do not apply it: fetch it again`,
    { keyId, verifier: 'pure' },
  );
  let scanned;
  try {
    scanned = await scanGgufPayload(read, ENVELOPE_HEADER_BYTES, end, digests.chunk, (b) => void k.update(b));
  } catch (e) {
    // The scan read every byte even so: a payload altered after signing says so first.
    if (!verdict()) throw refused();
    throw e;
  }
  if (!verdict()) throw refused();
  return { signature: { signed: true, keyId, verified: true, verifier: 'pure' } as SignatureCheck, scanned };
}
