/**
 * The dequantizers of src/io/gguf/blocks.ts against gguf-py's `gguf.quants.dequantize`, bit for
 * bit: every tensor of every fixture (F32, F16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, made by llama.cpp's
 * quantizer in gguf-py; Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, made by llama.cpp's own quantizer in its
 * K-quant mixtures), and seeded K-quant blocks (Q2_K ... Q6_K; Q8_K against ggml's formula),
 * each compared by the SHA-256 of its float32 values that make.py recorded in expected.json.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { bytesSource, readGgufHeader } from '../src/io/gguf/header.ts';
import { dequantize, dequantizeInto } from '../src/io/gguf/blocks.ts';
import { ggmlTypeByName } from '../src/io/gguf/types.ts';
import { NeuralDiffError } from '../src/core/errors.ts';

const DIR = join(import.meta.dirname, 'vectors', 'gguf');
const expected = JSON.parse(readFileSync(join(DIR, 'expected.json'), 'utf8')) as { files: Record<string, Record<string, { type?: string; sha256: string; offset?: number; bytes?: number }>> };

function sha(values: Float32Array): string {
  return createHash('sha256').update(new Uint8Array(values.buffer, values.byteOffset, values.byteLength)).digest('hex');
}

test('every tensor of every fixture, K-quants by llama.cpp\'s quantizer included, dequantizes to gguf-py\'s float32 values, bit for bit', () => {
  let checked = 0;
  const types = new Set<string>();
  for (const [file, tensors] of Object.entries(expected.files)) {
    if (!file.endsWith('.gguf')) continue;
    const bytes = new Uint8Array(readFileSync(join(DIR, file)));
    const h = readGgufHeader(bytesSource(bytes, file));
    assert.deepEqual(h.tensors.map((t) => t.name).sort(), Object.keys(tensors).sort(), file);
    for (const t of h.tensors) {
      const want = tensors[t.name];
      assert.equal(t.type.name, want.type, `${file} ${t.name}`);
      const values = dequantize(t.type, bytes.subarray(h.dataStart + t.offset, h.dataStart + t.offset + t.bytes));
      assert.equal(values.length, t.elements);
      assert.equal(sha(values), want.sha256, `${file} ${t.name} (${t.type.name})`);
      types.add(t.type.name);
      checked++;
    }
  }
  assert.deepEqual([...types].sort(), ['F16', 'F32', 'Q2_K', 'Q3_K', 'Q4_0', 'Q4_1', 'Q4_K', 'Q5_0', 'Q5_1', 'Q5_K', 'Q6_K', 'Q8_0']);
  assert.ok(checked >= 100, `${checked} tensors`);
});

test('K-quant blocks (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K) dequantize to gguf-py\'s values, bit for bit', () => {
  const bin = new Uint8Array(readFileSync(join(DIR, 'k-quant-blocks.bin')));
  const blocks = expected.files['k-quant-blocks.bin'];
  assert.deepEqual(Object.keys(blocks).sort(), ['Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K', 'Q8_K']);
  for (const [name, want] of Object.entries(blocks)) {
    const type = ggmlTypeByName(name);
    assert.ok(type);
    const raw = bin.subarray(want.offset, (want.offset as number) + (want.bytes as number));
    const values = dequantize(type, raw);
    assert.equal(values.length, (raw.length / type.typeSize) * 256);
    assert.equal(sha(values), want.sha256, name);
    // Dequantized a block at a time into one array: the same values.
    const pieces = new Float32Array(values.length);
    for (let b = 0; b < raw.length / type.typeSize; b++) dequantizeInto(type, raw.subarray(b * type.typeSize, (b + 1) * type.typeSize), pieces, b * 256);
    assert.deepEqual(pieces, values, name);
  }
});

test('a Q8_0 block by hand: d = 0.5 (fp16 0x3800), qs = -128..-97 give d * q', () => {
  const block = new Uint8Array(34);
  block[0] = 0x00;
  block[1] = 0x38;
  for (let j = 0; j < 32; j++) block[2 + j] = (j - 128) & 0xff;
  assert.deepEqual([...dequantize(ggmlTypeByName('Q8_0')!, block)], Array.from({ length: 32 }, (_, j) => 0.5 * (j - 128)));
});

test('types without a dequantizer and partial blocks are refused with a typed error', () => {
  assert.throws(() => dequantize(ggmlTypeByName('IQ2_XXS')!, new Uint8Array(66)), (e: unknown) => e instanceof NeuralDiffError && /IQ2_XXS blocks are carried as they are/.test(e.message));
  assert.throws(() => dequantizeInto(ggmlTypeByName('Q4_0')!, new Uint8Array(19), new Float32Array(64)), (e: unknown) => e instanceof NeuralDiffError && /not whole Q4_0 blocks/.test(e.message));
  assert.throws(() => dequantizeInto(ggmlTypeByName('Q4_0')!, new Uint8Array(36), new Float32Array(32)), (e: unknown) => e instanceof NeuralDiffError && /do not fit/.test(e.message));
});
