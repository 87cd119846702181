/**
 * A GGUF diff's chunks coded on worker threads (`ndiff diff --threads`, `diff({ threads })`):
 * the payload is the same bytes at any thread count and reaches the target; each chunk is coded as
 * on the calling thread, and a chunk that cannot be read stops the workers for good (answers left
 * in flight are never taken for another diff's); the library's `diff`
 * with two threads writes what one thread writes; `threads` on another format, or not a whole
 * number of at least 1, is refused before any file is written.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { diff, UsageError } from 'neural-diff';
import { getHasher } from '../src/core/hasher.ts';
import { GgufChunkCoders } from '../src/io/gguf/chunk-coders.ts';
import { diffGgufModels, PARALLEL_MIN_BYTES } from '../src/io/gguf/diff.ts';
import { codeChunk } from '../src/io/gguf/payload.ts';
import { encodeAlignedByteDelta } from '../src/diff/byte-delta.ts';
import { openGgufModel } from '../src/io/gguf/files.ts';
import { applyToGgufFile } from '../src/io/gguf/in-place.ts';
import { writeGeneratedQ8Pair, type GeneratedPair } from '../bench/gguf-generated.ts';

let dir: string;
let pair: GeneratedPair;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'ndiff-gguf-threads-'));
  // 64 MiB (sparse files), 8% of the blocks rewritten: about 5.4 MB changed, a few chunks.
  pair = writeGeneratedQ8Pair(dir, { mib: 64, share: 0.08, seed: 3 });
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('chunks coded by two worker threads: the bytes one thread writes, applied in place to the target', async () => {
  const hasher = await getHasher();
  const a = openGgufModel(pair.v1);
  const b = openGgufModel(pair.v2);
  const coders = new GgufChunkCoders(2);
  const done: number[] = [];
  try {
    const one = diffGgufModels(hasher, a.model, b.model, { modelId: 'm', sequence: 1, createdBy: 'test' });
    assert.ok(one.changedBytes >= PARALLEL_MIN_BYTES && one.chunks > 2, `${one.changedBytes} bytes in ${one.chunks} chunks`);
    const two = diffGgufModels(hasher, a.model, b.model, { modelId: 'm', sequence: 1, createdBy: 'test', coders, onChunk: (coded) => done.push(coded) });
    assert.deepEqual(two.payload, one.payload);
    assert.equal(done.length, one.chunks);
    assert.equal(done.at(-1), one.changedBytes);
    // The workers stay for the next diff (the on-grid search diffs several times).
    assert.deepEqual(diffGgufModels(hasher, a.model, b.model, { modelId: 'm', sequence: 1, createdBy: 'test', coders }).payload, one.payload);
    const device = join(dir, 'device.gguf');
    copyFileSync(pair.v1, device);
    assert.equal((await applyToGgufFile(device, two.payload, { state: null })).status, 'applied');
    assert.equal(Buffer.compare(readFileSync(device), readFileSync(pair.v2)), 0);
  } finally {
    coders.close();
    a.close();
    b.close();
  }
  assert.throws(() => coders.codeAll(() => undefined, undefined, () => {}), UsageError, 'closed coders are refused');
});

test('the workers code each chunk as the calling thread does; a chunk that cannot be read stops them for good', () => {
  const coders = new GgufChunkCoders(2);
  try {
    const chunks = [0, 1, 2, 3, 4].map((k) => {
      const base = Uint8Array.from({ length: 3000 + 500 * k }, (_, i) => (i * 31 + k) & 0xff);
      const target = base.map((v, i) => (i % (3 + k) ? v : v ^ 0x5a));
      return { base, target };
    });
    const expected = chunks.map((c) => codeChunk(c.base, c.target, (a, b) => encodeAlignedByteDelta(a, b).bytes));
    const got: { coding: number; delta: Uint8Array }[] = [];
    let k = 0;
    // Copies: the workers take their inputs' buffers.
    coders.codeAll(() => (k < chunks.length ? { base: chunks[k].base.slice(), target: chunks[k++].target.slice() } : undefined), undefined, (i, c) => (got[i] = c));
    assert.deepEqual(got.map((c) => c.coding), expected.map((c) => c.coding));
    assert.deepEqual(got.map((c) => Buffer.from(c.delta)), expected.map((c) => Buffer.from(c.delta)));
    let n = 0;
    assert.throws(() => coders.codeAll(() => {
      if (n++ === 3) throw new Error('the model file went away');
      return { base: chunks[0].base.slice(), target: chunks[0].target.slice() };
    }, undefined, () => {}), /went away/);
    assert.throws(() => coders.codeAll(() => undefined, undefined, () => {}), UsageError);
  } finally {
    coders.close();
  }
});

test('diff({ threads: 2 }) writes the payload diff({ threads: 1 }) writes; threads refused where they do not apply', async () => {
  const out1 = join(dir, 't1.ndiff');
  const out2 = join(dir, 't2.ndiff');
  const r1 = await diff({ base: pair.v1, target: pair.v2, budget: 'all', modelId: 'm', out: out1, threads: 1 });
  const r2 = await diff({ base: pair.v1, target: pair.v2, budget: 'all', modelId: 'm', out: out2, threads: 2 });
  assert.deepEqual(readFileSync(out2), readFileSync(out1));
  assert.equal(r2.bytes, r1.bytes);
  for (const threads of [0, 1.5, -2]) {
    await assert.rejects(diff({ base: pair.v1, target: pair.v2, budget: 'all', modelId: 'm', out: join(dir, 'bad.ndiff'), threads }), (e: unknown) => e instanceof UsageError && /threads/.test(e.message));
  }
  assert.ok(!existsSync(join(dir, 'bad.ndiff')));
  const tfjs = join(dir, 'no-such-model.json');
  await assert.rejects(diff({ base: tfjs, target: tfjs, budget: 'all', modelId: 'm', out: join(dir, 'bad.ndiff'), threads: 2 }), (e: unknown) => e instanceof UsageError && /\.gguf/.test(e.message));
  assert.ok(!existsSync(join(dir, 'bad.ndiff')));
  assert.throws(() => new GgufChunkCoders(0), UsageError);
});
