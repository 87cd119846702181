/**
 * Reading a payload file on a device (Node, the CLI), within the size cap: the cap is checked
 * against the file's size before a byte is read, at most cap + 1 bytes are ever read, and
 * anything that is not a regular file (a FIFO, `/dev/zero`, a folder) is refused at once.
 */
import { PayloadTooLargeError, UsageError } from '../../core/errors.ts';
import { payloadLimit } from '../../core/format.ts';
import { ENVELOPE_OVERHEAD } from '../../apply/envelope.ts';
import { errCode, readRegularFile } from './durable.ts';

/**
 * The bytes of the payload file `file` (bare or signed), refusing one over `maxPayloadBytes`
 * (default 256 MiB; a signed envelope may be {@link ENVELOPE_OVERHEAD} bytes more) from its size,
 * before reading it.
 *
 * @throws PayloadTooLargeError over the cap; UsageError for a missing file, one that is not a
 *   regular file, or a cap that is not a whole number of bytes.
 */
export async function readPayloadFile(file: string, options: { maxPayloadBytes?: number } = {}): Promise<Uint8Array> {
  const limit = payloadLimit(options.maxPayloadBytes);
  let bytes: Uint8Array | null;
  try {
    bytes = await readRegularFile(file, { maxBytes: limit + ENVELOPE_OVERHEAD });
  } catch (e) {
    const code = errCode(e);
    if (code === 'EFBIG') throw new PayloadTooLargeError((e as { size: number }).size, limit);
    if (code === 'EFTYPE') {
      throw new UsageError(`${file} is ${(e as { found: string }).found}: expected a payload file (written by \`ndiff diff\`, \`ndiff train\` or \`ndiff sign\`); save the payload to a file first`, { path: file });
    }
    if (code === 'ENOTDIR') bytes = null;
    else throw e;
  }
  if (bytes === null) throw new UsageError(`no payload file at ${file}: check the path (payloads are written by \`ndiff diff\` or \`ndiff train\`)`, { path: file });
  return bytes;
}
