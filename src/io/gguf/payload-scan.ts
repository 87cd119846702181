/**
 * A GGUF block payload (format v8, `payload.ts`) read from a file a window at a time instead of
 * whole: one pass over the document's msgpack finds where each chunk (an entry of `ch`) sits and
 * hands its bytes to a digest, and keeps only the other fields (the header and the parts, a few
 * KB); the applier then reads the chunks one at a time by those offsets. The format needs no
 * change for it: msgpack frames every value with its length, so a chunk's extent is found by
 * stepping over its values, and a chunk's binaries (its ranges and its coded bytes) are stepped
 * over a window at a time, never held whole.
 *
 * Every byte of the document goes through `observe` once, in order (the caller hashes them for
 * the signature), and each chunk's bytes through a digest made for it (the caller keeps it, and
 * refuses the chunk when the bytes it reads later hash otherwise: a file changed between passes).
 * The document's limits are the same as when it is decoded whole (`decodeGgufPayload`): at most
 * {@link PAYLOAD_MSGPACK_LIMITS} values, keys strings, no extension types, the document ending
 * exactly at the end of its bytes.
 *
 * Pure code (no node, no tfjs): the source is a function reading a byte range.
 */
import { concatBytes } from '../../core/bytes.ts';
import { PayloadFormatError } from '../../core/errors.ts';
import { isObject } from '../../core/format-fields.ts';
import { PAYLOAD_MSGPACK_LIMITS, readMsgpack } from '../../core/msgpack-read.ts';
import { decodeGgufPayloadFields, GGUF_MAX_CHUNK_BYTES, type GgufPartDigests, type GgufPayloadHeader } from './payload.ts';

/** Reads exactly `length` bytes at `position` of the payload's file (or its bytes in memory). */
export type PayloadByteSource = (position: number, length: number) => Promise<Uint8Array>;

/** A digest being taken: bytes in, then its value. */
export interface StreamDigest {
  update(bytes: Uint8Array): void;
  digest(): Uint8Array;
}

/** Where a chunk's msgpack entry sits in the payload's file, and the digest of its bytes. */
export interface GgufChunkExtent {
  offset: number;
  length: number;
  digest: Uint8Array;
}

/** A payload's fields but its chunks, and where each chunk sits. */
export interface ScannedGgufPayload {
  header: GgufPayloadHeader;
  parts: GgufPartDigests[];
  chunks: GgufChunkExtent[];
}

/** Bytes read from the source at a time. */
const WINDOW = 1 << 20;
/** The most bytes the fields other than the chunks may take together (65,535 parts take 1.4 MB). */
const MAX_FIELD_BYTES = 8 << 20;
/** The most bytes one chunk's entry may take: its ranges' varints and its coded bytes, each at most a little over its ranges' bytes. */
export const GGUF_MAX_CHUNK_ENTRY_BYTES = 4 * GGUF_MAX_CHUNK_BYTES;

function fail(message: string, details: Record<string, unknown> = {}): never {
  throw new PayloadFormatError(`GGUF payload: ${message}; the payload is corrupt, hostile or not a neural-diff payload: nothing was written; fetch it again or fall back to the full model`, details);
}

/** A forward-only reader of `[start, end)` of a source through a window; every byte consumed goes to the taps, once, in order. */
class PayloadCursor {
  private buf = new Uint8Array(0);
  private lo = 0;
  private hi = 0;
  /** The file offset of the next byte to consume. */
  pos: number;
  readonly taps: ((bytes: Uint8Array) => void)[] = [];
  constructor(private readonly read: PayloadByteSource, start: number, readonly end: number) {
    this.pos = start;
  }
  get left(): number {
    return this.end - this.pos;
  }
  /** Make `n` bytes from the cursor available (fewer only at the end: {@link available} says how many). */
  async need(n: number): Promise<void> {
    n = Math.min(n, this.left);
    if (this.hi - this.lo >= n) return;
    const kept = this.hi - this.lo;
    const size = Math.max(WINDOW, n);
    if (size > this.buf.length) {
      const next = new Uint8Array(size);
      next.set(this.buf.subarray(this.lo, this.hi), 0);
      this.buf = next;
    } else this.buf.copyWithin(0, this.lo, this.hi);
    this.lo = 0;
    this.hi = kept;
    const want = Math.min(this.buf.length - kept, this.end - (this.pos + kept));
    if (want > 0) {
      this.buf.set(await this.read(this.pos + kept, want), kept);
      this.hi += want;
    }
  }
  get available(): number {
    return this.hi - this.lo;
  }
  peek(i: number): number {
    return this.buf[this.lo + i];
  }
  /** Big-endian unsigned integer of `n` bytes (1, 2 or 4) at `i`. */
  uint(i: number, n: number): number {
    let v = 0;
    for (let k = 0; k < n; k++) v = v * 256 + this.buf[this.lo + i + k];
    return v;
  }
  /** Consume `n` bytes, which must be available. */
  consume(n: number): void {
    const bytes = this.buf.subarray(this.lo, this.lo + n);
    for (const t of this.taps) t(bytes);
    this.lo += n;
    this.pos += n;
  }
  /** Consume `n` bytes a window at a time. */
  async skip(n: number): Promise<void> {
    while (n > 0) {
      const m = Math.min(n, WINDOW);
      await this.need(m);
      if (this.available < m) fail(`malformed msgpack: the document ends at byte ${this.end} inside a value (truncated)`);
      this.consume(m);
      n -= m;
    }
  }
  /** Consume every byte left (after a failure, so that the signature's digest still covers the whole file). */
  async drain(): Promise<void> {
    await this.skip(this.left);
  }
}

/** The msgpack framing of the value starting with byte `b`: its header's length, the bytes after it, and the values it holds. */
function frame(c: PayloadCursor, b: number): { head: number; body: number; children: number } {
  const sized = (n: number) => ({ head: 1 + n, body: c.uint(1, n), children: 0 });
  if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) return { head: 1, body: 0, children: 0 };
  if (b <= 0x8f) return { head: 1, body: 0, children: 2 * (b & 0x0f) };
  if (b <= 0x9f) return { head: 1, body: 0, children: b & 0x0f };
  if (b <= 0xbf) return { head: 1, body: b & 0x1f, children: 0 };
  switch (b) {
    case 0xc4: case 0xd9: return sized(1);
    case 0xc5: case 0xda: return sized(2);
    case 0xc6: case 0xdb: return sized(4);
    case 0xca: return { head: 5, body: 0, children: 0 };
    case 0xcb: return { head: 9, body: 0, children: 0 };
    case 0xcc: case 0xd0: return { head: 2, body: 0, children: 0 };
    case 0xcd: case 0xd1: return { head: 3, body: 0, children: 0 };
    case 0xce: case 0xd2: return { head: 5, body: 0, children: 0 };
    case 0xcf: case 0xd3: return { head: 9, body: 0, children: 0 };
    case 0xdc: return { head: 3, body: 0, children: c.uint(1, 2) };
    case 0xdd: return { head: 5, body: 0, children: c.uint(1, 4) };
    case 0xde: return { head: 3, body: 0, children: 2 * c.uint(1, 2) };
    case 0xdf: return { head: 5, body: 0, children: 2 * c.uint(1, 4) };
    default: fail(`malformed msgpack: byte 0x${b.toString(16)} at ${c.pos} (an extension type or the reserved byte 0xc1) is not allowed in a payload`);
  }
}

/** Counts the document's values against {@link PAYLOAD_MSGPACK_LIMITS}, as the whole-document reader does. */
class ValueBudget {
  used = 1;
  add(n: number, at: number): void {
    this.used += n;
    if (this.used > PAYLOAD_MSGPACK_LIMITS.maxValues) fail(`malformed msgpack: more than ${PAYLOAD_MSGPACK_LIMITS.maxValues} values in the document (at byte ${at})`);
  }
}

/** Consume one value (and the values it holds), at most `max` bytes of it; returns its length. */
async function skipValue(c: PayloadCursor, max: number, budget: ValueBudget, what: string): Promise<number> {
  const from = c.pos;
  let pending = 1;
  while (pending > 0) {
    pending--;
    await c.need(9);
    if (c.available < 1) fail(`malformed msgpack: the document ends at byte ${c.end} inside ${what} (truncated)`);
    const f = frame(c, c.peek(0));
    if (c.available < f.head) fail(`malformed msgpack: the document ends at byte ${c.end} inside ${what} (truncated)`);
    if (f.body > c.left - f.head) fail(`malformed msgpack: ${what} declares ${f.body} bytes at byte ${c.pos}, ${c.left - f.head} are left (truncated)`);
    if (f.children > c.left - f.head) fail(`malformed msgpack: ${what} declares ${f.children} values at byte ${c.pos}, ${c.left - f.head} bytes are left (truncated)`);
    if (c.pos + f.head + f.body - from > max) fail(`${what} takes more than ${max} bytes`);
    budget.add(f.children, c.pos);
    c.consume(f.head);
    await c.skip(f.body);
    pending += f.children;
  }
  return c.pos - from;
}

/**
 * Read the document in `[start, end)` of `source` once: the fields other than `ch` decoded and
 * checked as `decodeGgufPayload` checks them, and for each chunk its offset, length and the digest
 * `chunkDigest()` takes of its bytes. Chunks are not decoded here: the applier decodes each when it
 * reads it back (`ggufChunkReader`), before anything is written. `observe` sees every byte in
 * order, including the bytes after a failure (the caller's signature check comes first).
 * @throws PayloadFormatError, UnsupportedVersionError
 */
export async function scanGgufPayload(source: PayloadByteSource, start: number, end: number, chunkDigest: () => StreamDigest, observe?: (bytes: Uint8Array) => void): Promise<ScannedGgufPayload> {
  const c = new PayloadCursor(source, start, end);
  if (observe) c.taps.push(observe);
  try {
    return await scan(c, chunkDigest);
  } catch (e) {
    await c.drain();
    throw e;
  }
}

async function scan(c: PayloadCursor, chunkDigest: () => StreamDigest): Promise<ScannedGgufPayload> {
  const budget = new ValueBudget();
  await c.need(5);
  if (c.available < 1) fail('malformed msgpack: no document');
  const b = c.peek(0);
  const f = b >= 0x80 && b <= 0x8f ? { head: 1, n: b & 0x0f } : b === 0xde && c.available >= 3 ? { head: 3, n: c.uint(1, 2) } : b === 0xdf && c.available >= 5 ? { head: 5, n: c.uint(1, 4) } : undefined;
  if (!f) fail('expected a msgpack map');
  if (2 * f.n > c.left - f.head) fail(`malformed msgpack: a map of ${f.n} entries in ${c.left - f.head} bytes (truncated)`);
  budget.add(2 * f.n, c.pos);
  c.consume(f.head);
  // The fields but `ch`, kept as their msgpack bytes and decoded as one map.
  const kept: Uint8Array[] = [];
  let keptBytes = 0;
  let keptEntries = 0;
  const keep = (bytes: Uint8Array) => {
    keptBytes += bytes.length;
    if (keptBytes > MAX_FIELD_BYTES) fail(`the fields other than the chunks take more than ${MAX_FIELD_BYTES} bytes`);
    kept.push(bytes.slice());
  };
  const chunks: GgufChunkExtent[] = [];
  let sawChunks = false;
  for (let i = 0; i < f.n; i++) {
    c.taps.push(keep);
    const keyStart = kept.length;
    await skipValue(c, 256, budget, 'a key');
    let key: unknown;
    try {
      key = readMsgpack(concatBytes(kept.slice(keyStart)));
    } catch (e) {
      fail(`malformed msgpack: a map key: ${(e as Error).message}`);
    }
    if (key === 'ch') {
      c.taps.pop();
      kept.length = keyStart;
      if (sawChunks) fail('"ch" appears twice');
      sawChunks = true;
      await c.need(5);
      const a = c.available >= 1 ? c.peek(0) : -1;
      const af = a >= 0x90 && a <= 0x9f ? { head: 1, n: a & 0x0f } : a === 0xdc && c.available >= 3 ? { head: 3, n: c.uint(1, 2) } : a === 0xdd && c.available >= 5 ? { head: 5, n: c.uint(1, 4) } : undefined;
      if (!af) fail('"ch" must be an array of chunks');
      if (af.n > c.left - af.head) fail(`malformed msgpack: "ch" declares ${af.n} chunks in ${c.left - af.head} bytes (truncated)`);
      budget.add(af.n, c.pos);
      c.consume(af.head);
      for (let k = 0; k < af.n; k++) {
        const d = chunkDigest();
        const tap = (bytes: Uint8Array) => d.update(bytes);
        c.taps.push(tap);
        const offset = c.pos;
        const length = await skipValue(c, GGUF_MAX_CHUNK_ENTRY_BYTES, budget, `chunk ${k}`);
        c.taps.pop();
        chunks.push({ offset, length, digest: d.digest() });
      }
    } else {
      if (typeof key !== 'string' && typeof key !== 'number') fail('malformed msgpack: a map key that is not a string or a number');
      await skipValue(c, MAX_FIELD_BYTES, budget, `the field ${JSON.stringify(key)}`);
      c.taps.pop();
      keptEntries++;
    }
  }
  if (c.left > 0) fail(`malformed msgpack: ${c.left} bytes after the document`);
  const head = keptEntries < 16 ? Uint8Array.of(0x80 | keptEntries) : Uint8Array.of(0xdf, keptEntries >>> 24, (keptEntries >>> 16) & 255, (keptEntries >>> 8) & 255, keptEntries & 255);
  let doc: unknown;
  try {
    doc = readMsgpack(concatBytes([head, ...kept]));
  } catch (e) {
    fail(`malformed msgpack: ${(e as Error).message}`);
  }
  if (!isObject(doc)) fail('expected a msgpack map');
  const { header, parts } = decodeGgufPayloadFields(doc);
  if (!sawChunks) fail('"ch" must be an array of chunks, found undefined');
  return { header, parts, chunks };
}

/**
 * The format version (`nd`) of the msgpack document in `[start, end)` of `source`, read without
 * holding the document: the top-level entries before it are stepped over. Undefined when the
 * bytes are no map, hold no `nd`, or end early; never throws for hostile bytes.
 */
export async function scanFormatVersion(source: PayloadByteSource, start: number, end: number): Promise<unknown> {
  const c = new PayloadCursor(source, start, end);
  try {
    const budget = new ValueBudget();
    await c.need(5);
    const b = c.available >= 1 ? c.peek(0) : -1;
    const f = b >= 0x80 && b <= 0x8f ? { head: 1, n: b & 0x0f } : b === 0xde && c.available >= 3 ? { head: 3, n: c.uint(1, 2) } : b === 0xdf && c.available >= 5 ? { head: 5, n: c.uint(1, 4) } : undefined;
    if (!f) return undefined;
    c.consume(f.head);
    for (let i = 0; i < f.n; i++) {
      const captured: Uint8Array[] = [];
      const capture = (bytes: Uint8Array) => void captured.push(bytes.slice());
      c.taps.push(capture);
      await skipValue(c, 256, budget, 'a key');
      const isVersion = readMsgpack(concatBytes(captured)) === 'nd';
      captured.length = 0;
      if (!isVersion) c.taps.pop();
      await skipValue(c, isVersion ? 256 : Number.MAX_SAFE_INTEGER, budget, 'a value');
      if (isVersion) return readMsgpack(concatBytes(captured));
    }
    return undefined;
  } catch {
    return undefined;
  }
}
