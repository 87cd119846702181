/**
 * GGUF files read and written back: every fixture of test/vectors/gguf (made by llama.cpp's
 * gguf-py, make.py there, and by llama.cpp's own quantizer and writer, make-k-quants.py) gives its own bytes back, padding included; the metadata of every value
 * type reads as gguf-py wrote it; a new file laid out by buildGguf is byte for byte gguf-py's; the
 * header is read without reading the data section.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { bytesSource, ggufText, metadataValue, readGgufHeader, type GgufArray, type GgufSource } from '../src/io/gguf/header.ts';
import { buildGguf, encodeGgufHeader, ggufFileChunks } from '../src/io/gguf/write.ts';
import { ggmlTypeByName, GGML_TYPES } from '../src/io/gguf/types.ts';

const DIR = join(import.meta.dirname, 'vectors', 'gguf');
const FIXTURES = readdirSync(DIR).filter((f) => f.endsWith('.gguf')).sort();

function fixture(name: string): Uint8Array {
  return new Uint8Array(readFileSync(join(DIR, name)));
}

function concat(chunks: Iterable<Uint8Array>): Uint8Array {
  const list = [...chunks];
  const out = new Uint8Array(list.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of list) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

test('the fixtures are all there (7 types by gguf-py, 5 K-quant mixtures by llama.cpp, v2, alignment 64, a split in 3 parts)', () => {
  assert.deepEqual(FIXTURES, [
    'tiny-llama-f16.gguf', 'tiny-llama-f32.gguf', 'tiny-llama-q2_k.gguf', 'tiny-llama-q3_k_m.gguf', 'tiny-llama-q4_0-align64.gguf', 'tiny-llama-q4_0.gguf', 'tiny-llama-q4_1.gguf', 'tiny-llama-q4_k_m.gguf',
    'tiny-llama-q5_0.gguf', 'tiny-llama-q5_1.gguf', 'tiny-llama-q5_k_m.gguf', 'tiny-llama-q6_k.gguf',
    'tiny-llama-q8_0-v2.gguf', 'tiny-llama-q8_0.gguf', 'tiny-split-00001-of-00003.gguf', 'tiny-split-00002-of-00003.gguf', 'tiny-split-00003-of-00003.gguf',
  ]);
});

test('every fixture read and written back gives the same bytes, padding bytes included', () => {
  for (const name of FIXTURES) {
    const bytes = fixture(name);
    const header = readGgufHeader(bytesSource(bytes, name));
    assert.deepEqual(concat(ggufFileChunks(header, bytesSource(bytes))), bytes, name);
    // The header alone, encoded from its parsed form, is the file's first headerBytes bytes.
    assert.deepEqual(encodeGgufHeader(header), bytes.subarray(0, header.headerBytes), name);
  }
});

test('the padding bytes of the aligned fixture are 0xA5 and are kept, not rewritten as zeros', () => {
  const bytes = fixture('tiny-llama-q4_0-align64.gguf');
  const header = readGgufHeader(bytesSource(bytes));
  assert.equal(header.alignment, 64);
  assert.equal(header.dataStart % 64, 0);
  assert.ok(header.dataStart > header.headerBytes, 'the header is padded');
  assert.ok(bytes.subarray(header.headerBytes, header.dataStart).every((b) => b === 0xa5));
  for (const t of header.tensors) assert.equal(t.offset % 64, 0, t.name);
  const out = concat(ggufFileChunks(header, bytesSource(bytes)));
  assert.equal(out[header.headerBytes], 0xa5);
  assert.deepEqual(out, bytes);
});

test('the metadata reads as gguf-py wrote it: every value type, typed arrays, nested arrays, the tokenizer', () => {
  const h = readGgufHeader(bytesSource(fixture('tiny-llama-f32.gguf')));
  const v = (key: string) => {
    const value = metadataValue(h, key);
    assert.ok(value, key);
    return value;
  };
  assert.deepEqual(v('test.u8'), { type: 'UINT8', value: 200 });
  assert.deepEqual(v('test.i8'), { type: 'INT8', value: -100 });
  assert.deepEqual(v('test.u16'), { type: 'UINT16', value: 60000 });
  assert.deepEqual(v('test.i16'), { type: 'INT16', value: -30000 });
  assert.deepEqual(v('test.u32'), { type: 'UINT32', value: 4000000000 });
  assert.deepEqual(v('test.i32'), { type: 'INT32', value: -2000000000 });
  assert.deepEqual(v('test.f32'), { type: 'FLOAT32', value: Math.fround(0.1) });
  assert.deepEqual(v('test.bool'), { type: 'BOOL', value: true });
  assert.deepEqual(v('test.u64'), { type: 'UINT64', value: 2n ** 63n + 5n });
  assert.deepEqual(v('test.i64'), { type: 'INT64', value: -(2n ** 62n) });
  assert.deepEqual(v('test.f64'), { type: 'FLOAT64', value: 1 / 3 });
  const s = v('test.string');
  assert.equal(s.type === 'STRING' && ggufText(s.value), 'héllo, wörld');
  assert.equal(v('general.architecture').type, 'STRING');
  const typed: Record<string, unknown> = { uint8: Uint8Array, int8: Int8Array, uint16: Uint16Array, int16: Int16Array, uint32: Uint32Array, int32: Int32Array, uint64: BigUint64Array, int64: BigInt64Array, float32: Float32Array, float64: Float64Array };
  for (const [k, ctor] of Object.entries(typed)) {
    const a = v(`test.array.${k}`) as GgufArray;
    assert.equal(a.type, 'ARRAY');
    assert.equal(a.itemType, k.toUpperCase());
    assert.ok(a.items instanceof (ctor as typeof Uint8Array), k);
  }
  assert.deepEqual([...(v('test.array.float64') as GgufArray).items as Float64Array], [0.1, 2.5]);
  assert.deepEqual((v('test.array.bool') as GgufArray).items, [true, false, true]);
  assert.deepEqual(((v('test.array.string') as GgufArray).items as Uint8Array[]).map(ggufText), ['x', '', 'yz']);
  const nested = v('test.array.nested') as GgufArray;
  assert.equal(nested.itemType, 'ARRAY');
  assert.deepEqual((nested.items as GgufArray[]).map((a) => [...(a.items as Int32Array)]), [[1, 2], [3, 4, 5]]);
  const nested3 = v('test.array.nested3') as GgufArray;
  assert.deepEqual((nested3.items as GgufArray[]).map((a) => (a.items as GgufArray[]).map((b) => (b.items as Uint8Array[]).map(ggufText))), [[['a'], ['b', 'c']], [['d']]]);
  const tokens = v('tokenizer.ggml.tokens') as GgufArray;
  assert.deepEqual((tokens.items as Uint8Array[]).map(ggufText), ['<unk>', '<s>', '</s>', '▁a', '▁b', 'ab', '<0x0A>', 'é']);
  assert.equal(h.version, 3);
  assert.equal(readGgufHeader(bytesSource(fixture('tiny-llama-q8_0-v2.gguf'))).version, 2);
});

test('tensor infos: names, ggml dimensions innermost first, types, aligned offsets, sizes from the types table', () => {
  const h = readGgufHeader(bytesSource(fixture('tiny-llama-q4_0.gguf')));
  const embd = h.tensors.find((t) => t.name === 'token_embd.weight');
  assert.ok(embd);
  assert.deepEqual(embd.ne, [32, 8]);
  assert.equal(embd.type.name, 'Q4_0');
  assert.equal(embd.bytes, 8 * 18);
  const norm = h.tensors.find((t) => t.name === 'blk.0.attn_norm.weight');
  assert.equal(norm?.type.name, 'F32');
  assert.equal(norm?.bytes, 128);
});

test('a float scalar holding a signalling NaN is written back with its own bits', () => {
  const key = new TextEncoder().encode('x.nan');
  const head = new Uint8Array(4 + 4 + 8 + 8 + 8 + key.length + 4 + 4);
  const dv = new DataView(head.buffer);
  dv.setUint32(0, 0x46554747, true);
  dv.setUint32(4, 3, true);
  dv.setBigUint64(16, 1n, true);
  dv.setBigUint64(24, BigInt(key.length), true);
  head.set(key, 32);
  dv.setUint32(32 + key.length, 6, true); // FLOAT32
  dv.setUint32(36 + key.length, 0x7f800001, true); // a signalling NaN
  const file = new Uint8Array(32 * Math.ceil(head.length / 32));
  file.set(head);
  const h = readGgufHeader(bytesSource(file));
  assert.ok(Number.isNaN((metadataValue(h, 'x.nan') as { value: number }).value));
  assert.deepEqual(concat(ggufFileChunks(h, bytesSource(file))), file);
});

test('buildGguf lays a file out as gguf-py does: the fixture rebuilt from its header and tensor bytes is the same file', () => {
  for (const name of ['tiny-llama-f32.gguf', 'tiny-llama-q5_1.gguf', 'tiny-llama-q4_0-align64.gguf']) {
    const bytes = fixture(name);
    const h = readGgufHeader(bytesSource(bytes));
    const rebuilt = buildGguf({ version: h.version, metadata: h.metadata, tensors: h.tensors.map((t) => ({ name: t.name, ne: t.ne, type: t.type, data: bytes.subarray(h.dataStart + t.offset, h.dataStart + t.offset + t.bytes) })) });
    if (name.includes('align64')) {
      // Same layout, zero padding where the fixture has 0xA5.
      assert.equal(rebuilt.length, bytes.length);
      for (let i = 0; i < bytes.length; i++) if (rebuilt[i] !== bytes[i]) assert.equal(bytes[i], 0xa5, `byte ${i}`);
    } else assert.deepEqual(rebuilt, bytes, name);
  }
});

test('the header is read without reading the data section: a source that refuses reads past the header', () => {
  const bytes = fixture('tiny-llama-f32.gguf');
  const full = readGgufHeader(bytesSource(bytes));
  let furthest = 0;
  const source: GgufSource = {
    name: 'guarded', size: bytes.length,
    read(offset, length) {
      furthest = Math.max(furthest, offset + length);
      if (offset + length > full.headerBytes + 65536) throw new Error(`read up to ${offset + length}`);
      return bytes.subarray(offset, offset + length);
    },
  };
  // A 1 GB data section claimed by the size: only the header is read.
  const big: GgufSource = { ...source, size: 2 ** 30, read: source.read };
  assert.equal(readGgufHeader(big).tensors.length, full.tensors.length);
  assert.ok(furthest <= full.headerBytes + 65536, `read up to ${furthest}`);
});

test('the types table: ggml ids and block sizes of the types llama.cpp writes', () => {
  const sizes = Object.fromEntries(GGML_TYPES.map((t) => [t.name, [t.id, t.blockSize, t.typeSize]]));
  assert.deepEqual(sizes.Q8_0, [8, 32, 34]);
  assert.deepEqual(sizes.Q4_0, [2, 32, 18]);
  assert.deepEqual(sizes.Q4_1, [3, 32, 20]);
  assert.deepEqual(sizes.Q5_0, [6, 32, 22]);
  assert.deepEqual(sizes.Q5_1, [7, 32, 24]);
  assert.deepEqual(sizes.Q2_K, [10, 256, 84]);
  assert.deepEqual(sizes.Q3_K, [11, 256, 110]);
  assert.deepEqual(sizes.Q4_K, [12, 256, 144]);
  assert.deepEqual(sizes.Q5_K, [13, 256, 176]);
  assert.deepEqual(sizes.Q6_K, [14, 256, 210]);
  assert.deepEqual(sizes.Q8_K, [15, 256, 292]);
  assert.deepEqual(sizes.BF16, [30, 1, 2]);
  assert.equal(ggmlTypeByName('IQ4_XS')?.dequantizable, false);
  // Every type of the table as gguf-py's GGML_QUANT_SIZES has it (recorded by make.py), and
  // every type there in the table but Q8_1 (refused: ggml and gguf-py disagree on its block).
  const expected = (JSON.parse(readFileSync(join(DIR, 'expected.json'), 'utf8')) as { ggml_quant_sizes: Record<string, number[]> }).ggml_quant_sizes;
  for (const t of GGML_TYPES) assert.deepEqual([t.id, t.blockSize, t.typeSize], expected[t.name], t.name);
  assert.deepEqual(Object.keys(expected).filter((n) => !ggmlTypeByName(n)), ['Q8_1']);
});

test('a header changed in length is written with the data section moved to the next aligned offset, every tensor\'s bytes kept', () => {
  const bytes = fixture('tiny-llama-q4_0-align64.gguf');
  const h = readGgufHeader(bytesSource(bytes));
  const metadata = h.metadata.map((e) => (e.key === 'general.name' ? { key: e.key, value: { type: 'STRING' as const, value: new TextEncoder().encode('a longer name than before, by some bytes') } } : e));
  const out = concat(ggufFileChunks({ ...h, metadata }, bytesSource(bytes)));
  const back = readGgufHeader(bytesSource(out));
  assert.notEqual(back.headerBytes, h.headerBytes);
  assert.equal(back.dataStart % 64, 0);
  assert.ok(out.subarray(back.headerBytes, back.dataStart).every((b) => b === 0), 'new padding is zeros');
  assert.equal(ggufText((metadataValue(back, 'general.name') as { value: Uint8Array }).value), 'a longer name than before, by some bytes');
  for (const [i, t] of back.tensors.entries()) {
    assert.deepEqual(out.subarray(back.dataStart + t.offset, back.dataStart + t.offset + t.bytes), bytes.subarray(h.dataStart + h.tensors[i].offset, h.dataStart + h.tensors[i].offset + t.bytes), t.name);
  }
});
