/**
 * Hostile GGUF headers: every length, count, dimension, type and offset a file claims is checked
 * against the file before it is used; each refusal a ModelFormatError saying what was expected
 * and what was found; no read (and so no buffer) larger than the file, whatever the claim.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ModelFormatError } from '../src/core/errors.ts';
import { bytesSource, readGgufHeader, MAX_GGUF_ARRAY_DEPTH, type GgufArray, type GgufMetadataEntry, type GgufSource } from '../src/io/gguf/header.ts';
import { buildGguf, encodeGgufHeader } from '../src/io/gguf/write.ts';
import { ggmlTypeByName, type GgmlType } from '../src/io/gguf/types.ts';

const Q8_0 = ggmlTypeByName('Q8_0') as GgmlType;
const F32 = ggmlTypeByName('F32') as GgmlType;
const Q4_0 = ggmlTypeByName('Q4_0') as GgmlType;
const text = (s: string) => new TextEncoder().encode(s);

const META: GgufMetadataEntry[] = [
  { key: 'general.architecture', value: { type: 'STRING', value: text('llama') } },
  { key: 'x.list', value: { type: 'ARRAY', itemType: 'UINT32', items: Uint32Array.of(1, 2, 3) } },
];

/** A sound file: two metadata entries, a Q8_0 tensor [2 rows of 32] and an F32 tensor [4]. */
function sound(): Uint8Array {
  return buildGguf({ metadata: META, tensors: [
    { name: 'w', ne: [32, 2], type: Q8_0, data: new Uint8Array(68).fill(1) },
    { name: 'b', ne: [4], type: F32, data: new Uint8Array(16) },
  ] });
}

/** A file whose header is `fields` encoded as given (any dims, types, offsets), padded, with `dataBytes` of data. */
function withHeader(fields: Parameters<typeof encodeGgufHeader>[0], dataBytes = 256): Uint8Array {
  const head = encodeGgufHeader(fields);
  const out = new Uint8Array(Math.ceil(head.length / 32) * 32 + dataBytes);
  out.set(head);
  return out;
}

/** Refused with a ModelFormatError matching `pattern`, never reading more than the file holds. */
function refused(bytes: Uint8Array, pattern: RegExp): void {
  let largest = 0;
  const inner = bytesSource(bytes, 'hostile.gguf');
  const source: GgufSource = {
    name: inner.name, size: inner.size,
    read(offset, length) {
      largest = Math.max(largest, length);
      assert.ok(offset >= 0 && offset + length <= bytes.length, `read [${offset}, ${offset + length}) outside the ${bytes.length}-byte file`);
      return inner.read(offset, length);
    },
  };
  assert.throws(() => readGgufHeader(source), (e: unknown) => {
    assert.ok(e instanceof ModelFormatError, `expected a ModelFormatError, got ${String(e)}`);
    assert.equal(e.code, 'ND_MODEL_FORMAT');
    assert.match(e.message, pattern);
    assert.match(e.message, /expected/);
    assert.match(e.message, /hostile\.gguf/);
    return true;
  });
  assert.ok(largest <= bytes.length, `a read of ${largest} bytes`);
}

function setU64(bytes: Uint8Array, at: number, v: bigint): Uint8Array {
  const copy = bytes.slice();
  new DataView(copy.buffer).setBigUint64(at, v, true);
  return copy;
}

function setU32(bytes: Uint8Array, at: number, v: number): Uint8Array {
  const copy = bytes.slice();
  new DataView(copy.buffer).setUint32(at, v, true);
  return copy;
}

const tensor = (name: string, ne: number[], type: GgmlType, offset: number) => ({ name, ne, type, offset });

test('the sound file reads (the cases below each break one thing of it)', () => {
  const h = readGgufHeader(bytesSource(sound()));
  assert.deepEqual(h.tensors.map((t) => [t.name, t.offset, t.bytes]), [['w', 0, 68], ['b', 96, 16]]);
});

test('a truncated file is refused wherever it is cut', () => {
  const bytes = sound();
  const h = readGgufHeader(bytesSource(bytes));
  for (const cut of [0, 3, 7, 15, 23, 30, 60, h.headerBytes - 1]) refused(bytes.subarray(0, cut), /expected \d+ bytes at offset \d+, found the file ends|expected at most \d+ .*, found|expected the magic/);
  refused(bytes.subarray(0, h.dataStart + 100), /inside the data section's 100 bytes/);
});

test('counts larger than the file can hold are refused before anything is allocated', () => {
  refused(setU64(sound(), 8, 1n << 40n), /tensor count at offset 8: expected at most \d+ \(what the \d+ bytes left in the file can hold\), found 1099511627776/);
  refused(setU64(sound(), 16, 1n << 62n), /metadata count at offset 16: expected at most \d+ .*, found 4611686018427387904/);
  refused(setU64(sound(), 8, 2n ** 64n - 1n), /tensor count/);
});

test('a huge string length is refused', () => {
  // The first key's length is at offset 24.
  refused(setU64(sound(), 24, 1n << 62n), /metadata entry 0: key: length at offset 24: expected at most \d+ .*, found 4611686018427387904/);
  refused(setU64(sound(), 24, 10_000n), /metadata entry 0: key: length at offset 24: expected at most \d+ .*, found 10000/);
});

test('a huge array length is refused', () => {
  const bytes = sound();
  // x.list: key at 24 + 8 + 20 ("general.architecture") + 4 + 8 + 5 ("llama"), then 8 + 6 ("x.list"), type 4, item type 4, count 8.
  const countAt = 24 + 8 + 20 + 4 + 8 + 5 + 8 + 6 + 4 + 4;
  assert.equal(new DataView(bytes.buffer).getBigUint64(countAt, true), 3n);
  refused(setU64(bytes, countAt, 1n << 40n), /metadata "x\.list": item count at offset \d+: expected at most \d+ .*, found 1099511627776/);
});

test('arrays nested deeper than the limit are refused; at the limit they read', () => {
  const nest = (depth: number): GgufArray => (depth === 1 ? { type: 'ARRAY', itemType: 'UINT8', items: Uint8Array.of(7) } : { type: 'ARRAY', itemType: 'ARRAY', items: [nest(depth - 1)] });
  const file = (depth: number) => withHeader({ version: 3, metadata: [{ key: 'deep', value: nest(depth) }], tensors: [] }, 0);
  assert.equal(readGgufHeader(bytesSource(file(MAX_GGUF_ARRAY_DEPTH))).metadata.length, 1);
  refused(file(MAX_GGUF_ARRAY_DEPTH + 1), new RegExp(`arrays nested ${MAX_GGUF_ARRAY_DEPTH + 1} deep, expected at most ${MAX_GGUF_ARRAY_DEPTH}`));
});

test('a tensor of 5 dimensions is refused (GGML_MAX_DIMS is 4)', () => {
  refused(withHeader({ version: 3, metadata: [], tensors: [tensor('t', [1, 1, 1, 1, 1], F32, 0)] }), /expected at most 4 dimensions \(GGML_MAX_DIMS\), found 5/);
});

test('dimensions whose product overflows are refused', () => {
  refused(withHeader({ version: 3, metadata: [], tensors: [tensor('t', [2 ** 30, 2 ** 30, 2 ** 30], F32, 0)] }), /expected at most 2\^53 weights, found dimensions \[1073741824, 1073741824\.\.\.\]/);
  const huge = withHeader({ version: 3, metadata: [], tensors: [tensor('t', [1], F32, 0)] });
  // The one dimension is the 8 bytes after the name (8 + 1) and n_dims (4): 2^63.
  refused(setU64(huge, 24 + 9 + 4, 1n << 63n), /expected dimension 0 to be at most 2\^53, found 9223372036854775808/);
});

test('tensor data outside the data section, overlapping or misaligned is refused', () => {
  refused(withHeader({ version: 3, metadata: [], tensors: [tensor('t', [32], F32, 4096)] }), /expected its 128 bytes of F32 data at data offset 4096 inside the data section's 256 bytes/);
  refused(withHeader({ version: 3, metadata: [], tensors: [tensor('a', [32], F32, 0), tensor('b', [32], F32, 64)] }), /tensor "b": its data at data offset 64 overlaps tensor "a"'s \(0 to 128\)/);
  refused(withHeader({ version: 3, metadata: [], tensors: [tensor('t', [4], F32, 16)] }), /expected its data offset to be a multiple of the alignment 32, found 16/);
  refused(setU64(withHeader({ version: 3, metadata: [], tensors: [tensor('t', [4], F32, 0)] }), 24 + 9 + 4 + 8 + 4, 1n << 60n), /expected a data offset within the file, found 1152921504606846976/);
});

test('an unknown or removed ggml type id is refused, naming it', () => {
  refused(withHeader({ version: 3, metadata: [], tensors: [tensor('t', [32], { ...F32, id: 99 }, 0)] }), /found type id 99 \(unknown: a newer llama\.cpp may have added it\)/);
  refused(withHeader({ version: 3, metadata: [], tensors: [tensor('t', [32], { ...F32, id: 9 }, 0)] }), /found type id 9 \(Q8_1/);
  refused(withHeader({ version: 3, metadata: [], tensors: [tensor('t', [16], Q4_0, 0)] }), /expected whole Q4_0 blocks, found dimensions \[16\]: its innermost dimension 16 is not a multiple of Q4_0's block of 32 weights/);
});

test('version 1, big-endian files and a wrong magic are refused, saying which', () => {
  refused(setU32(sound(), 4, 1), /expected GGUF version 2 or 3, found version 1/);
  refused(setU32(sound(), 4, 0x03000000), /expected a little-endian GGUF file, found a big-endian one/);
  refused(setU32(sound(), 4, 4), /expected GGUF version 2 or 3, found 4/);
  refused(setU32(sound(), 0, 0x464c457f), /expected the magic "GGUF" \(47 47 55 46\) at offset 0, found 7f 45 4c 46/);
});

test('general.alignment must be a UINT32 power of two', () => {
  refused(withHeader({ version: 3, metadata: [{ key: 'general.alignment', value: { type: 'UINT32', value: 48 } }], tensors: [] }), /expected general\.alignment to be a power of two, found 48/);
  refused(withHeader({ version: 3, metadata: [{ key: 'general.alignment', value: { type: 'UINT32', value: 0 } }], tensors: [] }), /power of two, found 0/);
  refused(withHeader({ version: 3, metadata: [{ key: 'general.alignment', value: { type: 'UINT64', value: 32n } }], tensors: [] }), /expected general\.alignment to be a UINT32, found a UINT64/);
});

test('a key or tensor name twice, a bad value type, a BOOL other than 0 or 1, a key that is not UTF-8 are refused', () => {
  const u8 = (key: string) => ({ key, value: { type: 'UINT8' as const, value: 1 } });
  refused(withHeader({ version: 3, metadata: [u8('k'), u8('k')], tensors: [] }), /expected each key once, found "k" again/);
  refused(withHeader({ version: 3, metadata: [], tensors: [tensor('t', [4], F32, 0), tensor('t', [4], F32, 32)] }), /expected each tensor name once/);
  // The value type of the first entry follows its key (24 + 8 + 1).
  refused(setU32(withHeader({ version: 3, metadata: [u8('k')], tensors: [] }), 33, 13), /expected a value type 0-12, found 13/);
  const bool = withHeader({ version: 3, metadata: [{ key: 'k', value: { type: 'BOOL', value: true } }], tensors: [] });
  bool[37] = 2;
  refused(bool, /expected a BOOL \(0 or 1\), found 2/);
  const badKey = withHeader({ version: 3, metadata: [u8('k')], tensors: [] });
  badKey[32] = 0xff;
  refused(badKey, /expected UTF-8 text/);
});
