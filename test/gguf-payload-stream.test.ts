/**
 * The in-place GGUF apply reads its payload a window and a chunk at a time (docs/format/gguf.md
 * §18.5, src/io/gguf/payload-file.ts), never whole: through an injected reader, no read of the
 * payload is larger than the window or one chunk's entry, whatever the payload's size; a payload
 * altered between the pass that verifies it and the passes that apply it is refused (before the
 * first overwrite: nothing written; during the overwrite: rolled back), so only verified bytes
 * are applied; a signed payload file is verified as it streams past.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getHasher, type Hasher } from '../src/core/hasher.ts';
import { PayloadFormatError, SignatureError } from '../src/core/errors.ts';
import { seededRandom } from '../src/core/random.ts';
import { bytesSource, GGUF_DEFAULT_ALIGNMENT, padTo } from '../src/io/gguf/header.ts';
import { ggufModelOf } from '../src/io/gguf/model.ts';
import { diffGgufModels } from '../src/io/gguf/diff.ts';
import { applyToGgufFile } from '../src/io/gguf/in-place.ts';
import { ggmlTypeByName } from '../src/io/gguf/types.ts';
import { encodeGgufHeader } from '../src/io/gguf/write.ts';
import { apply } from '../src/front/apply.ts';
import { generateKeyPair, signPayload } from '../src/sign/node-keys.ts';

/** The payload window of payload-scan.ts. */
const WINDOW = 1 << 20;

let hasher: Hasher;
let root: string;
let v1: Uint8Array;
let v2: Uint8Array;
let payload: Uint8Array;
let n = 0;
const fresh = () => mkdtempSync(join(root, `case-${n++}-`));
const same = (file: string, bytes: Uint8Array) => Buffer.compare(readFileSync(file), bytes) === 0;

/** A reader of `bytes` that records every read; `alter` may change what a read returns. */
function recordingReader(bytes: Uint8Array, alter?: (position: number, length: number, out: Uint8Array) => void) {
  const reads: { position: number; length: number }[] = [];
  return {
    reads,
    reader: {
      size: bytes.length,
      async read(position: number, length: number) {
        reads.push({ position, length });
        const out = bytes.slice(position, position + length);
        alter?.(position, length, out);
        return out;
      },
    },
  };
}

before(async () => {
  hasher = await getHasher();
  root = mkdtempSync(join(tmpdir(), 'ndiff-gguf-stream-'));
  // A Q8_0 model of 24 MiB, v2 with 3 MiB of its blocks rewritten at random: a payload of over
  // 3 MiB (random bytes do not compress), in 3 or more chunks.
  const q8 = ggmlTypeByName('Q8_0')!;
  const perTensor = Math.floor((8 << 20) / q8.typeSize);
  const tensors = [];
  let offset = 0;
  for (let i = 0; i < 3; i++) {
    tensors.push({ name: `blk.${i}.weight`, ne: [q8.blockSize * perTensor], type: q8, offset });
    offset = padTo(offset + perTensor * q8.typeSize, GGUF_DEFAULT_ALIGNMENT);
  }
  const header = encodeGgufHeader({ version: 3, metadata: [], tensors });
  const dataStart = padTo(header.length, GGUF_DEFAULT_ALIGNMENT);
  v1 = new Uint8Array(dataStart + offset);
  v1.set(header);
  v2 = v1.slice();
  const random = seededRandom(3);
  const runBytes = 64 * q8.typeSize;
  for (let at = dataStart; at + runBytes <= v2.length; at += 8 * runBytes) {
    for (let i = 0; i < runBytes; i++) v2[at + i] = Math.floor(random() * 256);
  }
  payload = diffGgufModels(hasher, ggufModelOf(bytesSource(v1)), ggufModelOf(bytesSource(v2)), { modelId: 'big', sequence: 1, createdBy: 'test', chunkCoding: 'xor' }).payload;
});
after(() => rmSync(root, { recursive: true, force: true }));

describe('GGUF payloads read a window and a chunk at a time', () => {
  test('through a reader: no read larger than the window or a chunk, the model its target byte for byte', async () => {
    assert.ok(payload.length > 3 * WINDOW, `a payload of ${payload.length} bytes, over 3 windows`);
    const file = join(fresh(), 'm.gguf');
    writeFileSync(file, v1);
    const { reads, reader } = recordingReader(payload);
    const r = await applyToGgufFile(file, reader, { state: null });
    assert.equal(r.status, 'applied');
    assert.ok(same(file, v2), 'the target byte for byte');
    const largest = Math.max(...reads.map((x) => x.length));
    // A chunk's entry: its 1 MiB of ranges XOR range-coded (random bytes: a little over 1 MiB), and its ranges' varints.
    assert.ok(largest <= WINDOW + (64 << 10), `the largest read is ${largest} bytes, at most a window or a chunk's entry`);
    assert.ok(payload.length > 3 * largest, `the payload (${payload.length} bytes) is never read whole: largest read ${largest}`);
    // Every byte read once by the verifying pass, each chunk once more by each later pass: nothing else.
    const total = reads.reduce((s, x) => s + x.length, 0);
    assert.ok(total < 5 * payload.length, `${total} bytes read for a payload of ${payload.length}`);
  });

  test('a payload altered after it was verified, before the first overwrite: refused, nothing written', async () => {
    const file = join(fresh(), 'm.gguf');
    writeFileSync(file, v1);
    const seen = new Map<string, number>();
    // The second read of a chunk's entry (the journal's pass) returns one byte changed.
    const { reader } = recordingReader(payload, (position, length, out) => {
      const key = `${position}:${length}`;
      const times = (seen.get(key) ?? 0) + 1;
      seen.set(key, times);
      if (times >= 2) out[out.length >> 1] ^= 1;
    });
    await assert.rejects(applyToGgufFile(file, reader, { state: null }), (e: unknown) => e instanceof PayloadFormatError && (e.details as { stage?: string }).stage === 'reread' && /replaced or altered/.test((e as Error).message));
    assert.ok(same(file, v1), 'the model untouched byte for byte');
    assert.deepEqual(readdirSync(join(file, '..')), ['m.gguf'], 'no journal left');
  });

  test('a payload altered amid the overwrite: refused and rolled back, never applied', async () => {
    const file = join(fresh(), 'm.gguf');
    writeFileSync(file, v1);
    const seen = new Map<string, number>();
    let altered = 0;
    // The third read of the last chunks' entries (the overwrite's pass, after earlier chunks were written).
    const { reader } = recordingReader(payload, (position, length, out) => {
      const key = `${position}:${length}`;
      const times = (seen.get(key) ?? 0) + 1;
      seen.set(key, times);
      if (times >= 3 && position > payload.length / 2) {
        out[out.length >> 1] ^= 1;
        altered++;
      }
    });
    await assert.rejects(applyToGgufFile(file, reader, { state: null }), (e: unknown) => e instanceof PayloadFormatError && (e.details as { stage?: string; rolledBack?: boolean }).stage === 'reread' && (e.details as { rolledBack?: boolean }).rolledBack === true && /rolled back/.test((e as Error).message));
    assert.ok(altered > 0);
    assert.ok(same(file, v1), 'rolled back to the old version byte for byte');
    assert.deepEqual(readdirSync(join(file, '..')), ['m.gguf'], 'no journal left');
  });

  test('a signed payload file, by its path: verified as it streams past, applied; altered by a byte: refused, untouched', async () => {
    const dir = fresh();
    const file = join(dir, 'm.gguf');
    writeFileSync(file, v1);
    const keys = generateKeyPair();
    const signed = signPayload(payload, keys.privateKeyPem);
    const tampered = signed.slice();
    tampered[tampered.length >> 1] ^= 1;
    writeFileSync(join(dir, 'bad.ndiff'), tampered);
    writeFileSync(join(dir, 'p.ndiff'), signed);
    const trusted = { trustedKeys: [keys.publicKey], state: null };
    await assert.rejects(applyToGgufFile(file, join(dir, 'bad.ndiff'), trusted), (e: unknown) => e instanceof SignatureError && /altered after signing/.test((e as Error).message));
    assert.ok(same(file, v1));
    const r = await applyToGgufFile(file, join(dir, 'p.ndiff'), trusted);
    assert.equal(r.signature.verified, true);
    assert.deepEqual(r.changedTensors, ['blk.0.weight', 'blk.1.weight', 'blk.2.weight']);
    assert.ok(same(file, v2));
  });

  test('apply({ model, payload: path }) (ndiff apply) takes the payload by its path', async () => {
    const dir = fresh();
    const file = join(dir, 'm.gguf');
    writeFileSync(file, v1);
    writeFileSync(join(dir, 'p.ndiff'), payload);
    const r = await apply({ model: file, payload: join(dir, 'p.ndiff'), state: null });
    assert.equal(r.status, 'applied');
    assert.ok(r.writtenValues > 3 * WINDOW);
    assert.ok(same(file, v2));
  });
});
