/**
 * GGUF models as a whole: split models read as one (and refused when a part is missing or from
 * another split), the fingerprint of docs/format/gguf.md (pinned, the same through the generic
 * store, what changes it and what does not), and `ndiff fingerprint` / `ndiff inspect` on the
 * fixtures through the CLI, in text and --json.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ModelFormatError } from '../src/core/errors.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { getHasher } from '../src/core/hasher.ts';
import { openGgufModel } from '../src/io/gguf/files.ts';
import { fingerprintGguf, GGUF_FRAME } from '../src/io/gguf/fingerprint.ts';
import { bytesSource, readGgufHeader, type GgufMetadataEntry } from '../src/io/gguf/header.ts';
import { ggufModelOf } from '../src/io/gguf/model.ts';
import { GgufWeightStore } from '../src/io/gguf/store.ts';
import { ggmlTypeByName } from '../src/io/gguf/types.ts';
import { buildGguf, ggufFileChunks } from '../src/io/gguf/write.ts';
import { tempDir } from './helpers/dirs.ts';
import { runNdiff } from './helpers/ndiff-run.ts';

const DIR = join(import.meta.dirname, 'vectors', 'gguf');
const Q4_0_FILE = join(DIR, 'tiny-llama-q4_0.gguf');
/** The fingerprint of tiny-llama-q4_0.gguf (docs/format/gguf.md quotes it). */
const Q4_0_FINGERPRINT = 'e84565f942d47830';
const PARTS = [1, 2, 3].map((i) => `tiny-split-0000${i}-of-00003.gguf`);

function concat(chunks: Iterable<Uint8Array>): Uint8Array {
  return new Uint8Array(Buffer.concat([...chunks]));
}

/** Part `i` of the split with its metadata changed by `edit` (the file rewritten by the writer). */
function editedPart(i: number, edit: (m: GgufMetadataEntry[]) => GgufMetadataEntry[], rename?: [string, string]): Uint8Array {
  const bytes = new Uint8Array(readFileSync(join(DIR, PARTS[i])));
  const h = readGgufHeader(bytesSource(bytes));
  const tensors = h.tensors.map((t) => (rename && t.name === rename[0] ? { ...t, name: rename[1] } : t));
  return concat(ggufFileChunks({ ...h, metadata: edit([...h.metadata]), tensors }, bytesSource(bytes)));
}

async function splitIn(dir: string, files: (Uint8Array | undefined)[]): Promise<string> {
  files.forEach((b, i) => {
    if (b) writeFileSync(join(dir, PARTS[i]), b);
  });
  return join(dir, PARTS[0]);
}

function refusedWith(path: string, pattern: RegExp): void {
  assert.throws(() => openGgufModel(path), (e: unknown) => e instanceof ModelFormatError && pattern.test(e.message) && /expected/.test(e.message) || assert.fail(String(e)));
}

test('a split model is read as one model by any part\'s name, each tensor from its own part', async () => {
  const hasher = await getHasher();
  for (const part of PARTS) {
    const split = openGgufModel(join(DIR, part));
    try {
      assert.equal(split.model.parts.length, 3);
      assert.deepEqual(split.model.parts.map((p) => p.header.tensors.length), [4, 4, 3]);
      assert.equal(split.model.tensors.length, 11);
      assert.ok(split.model.metadata.some((e) => e.key === 'general.architecture'), 'the metadata is the first part\'s');
      // The same seeded weights as the unsplit Q8_0 model: every weight's digest agrees; the frame (the headers) does not.
      const single = openGgufModel(join(DIR, 'tiny-llama-q8_0.gguf'));
      const a = fingerprintGguf(hasher, split.model).digests;
      const b = fingerprintGguf(hasher, single.model).digests;
      single.close();
      assert.deepEqual([...a.keys()], [...b.keys()]);
      for (const [name, digest] of a) if (name !== GGUF_FRAME) assert.equal(digest, b.get(name), name);
      assert.notEqual(a.get(GGUF_FRAME), b.get(GGUF_FRAME));
    } finally {
      split.close();
    }
  }
});

test('a split model with a part missing, out of place, from another split or sharing a tensor is refused', async () => {
  const parts = PARTS.map((p) => new Uint8Array(readFileSync(join(DIR, p))));
  refusedWith(await splitIn(await tempDir(), [parts[0], undefined, parts[2]]), /expected part 2 of 3 beside it, found no such file/);
  refusedWith(await splitIn(await tempDir(), [parts[0], parts[0], parts[2]]), /expected split\.no 1 and split\.count 3 \(part 2 of 3\), found split\.no 0/);
  const otherCount = editedPart(2, (m) => m.map((e) => (e.key === 'split.tensors.count' ? { key: e.key, value: { type: 'INT32', value: 12 } } : e)));
  refusedWith(await splitIn(await tempDir(), [parts[0], parts[1], otherCount]), /expected split\.tensors\.count 11 as in part 1, found 12/);
  const shared = editedPart(2, (m) => m, ['output_norm.weight', 'token_embd.weight']);
  refusedWith(await splitIn(await tempDir(), [parts[0], parts[1], shared]), /found "token_embd\.weight" in parts 1 and 3/);
  const dir = await tempDir();
  copyFileSync(join(DIR, PARTS[0]), join(dir, 'model.gguf'));
  refusedWith(join(dir, 'model.gguf'), /expected a whole model, found part 1 of a model split in 3 files/);
});

test('the fingerprint of a GGUF model: pinned, and the same through the generic store and either hasher', async () => {
  const files = openGgufModel(Q4_0_FILE);
  try {
    const wasm = fingerprintGguf(await getHasher(), files.model);
    assert.equal(wasm.fingerprint, Q4_0_FINGERPRINT);
    assert.equal(wasm.digests.size, 12);
    assert.equal(fingerprintGguf(await getHasher({ prefer: 'pure' }), files.model).fingerprint, Q4_0_FINGERPRINT);
    // The store dequantizes each tensor whole; the fingerprint hashes blocks a range at a time: the same digests.
    const store = new GgufWeightStore(files.model, await getHasher());
    const generic = fingerprintStore(await getHasher(), store);
    assert.equal(generic.fingerprint, Q4_0_FINGERPRINT);
    assert.deepEqual(store.list().map((t) => t.dtype), ['Q4_0', 'F32', 'Q4_0', 'Q4_0', 'Q4_0', 'Q4_0', 'F32', 'Q4_0', 'Q4_0', 'Q4_0', 'F32', 'frame']);
    assert.deepEqual(store.list()[0].shape, [8, 32]);
    assert.throws(() => store.values('token_embd.weight'), /read-only: GGUF models are inspected and fingerprinted here, not patched/);
  } finally {
    files.close();
  }
});

test('the fingerprint covers the weights, the header and opaque tensors\' bytes, not the padding', async () => {
  const hasher = await getHasher();
  const fp = (bytes: Uint8Array) => fingerprintGguf(hasher, ggufModelOf(bytesSource(bytes, 'm.gguf'))).fingerprint;
  const bytes = new Uint8Array(readFileSync(join(DIR, 'tiny-llama-q4_0-align64.gguf')));
  const h = readGgufHeader(bytesSource(bytes));
  const base = fp(bytes);
  const flip = (at: number) => {
    const copy = bytes.slice();
    copy[at] ^= 1;
    return copy;
  };
  assert.equal(fp(flip(h.headerBytes)), base, 'a padding byte after the header');
  const embd = h.tensors[0];
  assert.equal(fp(flip(h.dataStart + embd.offset + embd.bytes)), base, 'a padding byte after a tensor');
  assert.notEqual(fp(flip(h.dataStart + embd.offset + 5)), base, 'a weight');
  assert.notEqual(fp(flip(40)), base, 'a header byte (metadata)');
  // An IQ4_NL tensor has no dequantizer here: its bytes enter the frame, it is not a weight.
  const iq = ggmlTypeByName('IQ4_NL');
  assert.ok(iq);
  const withOpaque = (fill: number) => buildGguf({ metadata: [], tensors: [{ name: 'q', ne: [32], type: iq, data: new Uint8Array(18).fill(fill) }] });
  const model = ggufModelOf(bytesSource(withOpaque(1)));
  assert.deepEqual([...fingerprintGguf(hasher, model).digests.keys()], [GGUF_FRAME]);
  assert.notEqual(fp(withOpaque(1)), fp(withOpaque(2)));
  // A tensor named like the frame is refused.
  const clash = buildGguf({ metadata: [], tensors: [{ name: GGUF_FRAME, ne: [1], type: ggmlTypeByName('F32')!, data: new Uint8Array(4) }] });
  assert.throws(() => fp(clash), (e: unknown) => e instanceof ModelFormatError && /named "gguf:frame"/.test(e.message));
});

test('ndiff fingerprint model.gguf: the fingerprint, --tensors with ggml types, --json; --record refused', async () => {
  const plain = await runNdiff('fingerprint', Q4_0_FILE);
  assert.equal(plain.code, 0, plain.err);
  assert.equal(plain.out.trim(), Q4_0_FINGERPRINT);
  const tensors = await runNdiff('fingerprint', Q4_0_FILE, '--tensors');
  assert.match(tensors.out, /token_embd\.weight\s+Q4_0\s+\[8x32\]\s+[0-9a-f]{16}/);
  assert.match(tensors.out, /gguf:frame\s+frame\s+\[8\]/);
  const json = await runNdiff('fingerprint', join(DIR, PARTS[1]), '--json');
  const doc = JSON.parse(json.out) as { fingerprint: string; tensorCount: number };
  assert.match(doc.fingerprint, /^[0-9a-f]{16}$/);
  assert.equal(doc.tensorCount, 12);
  const record = await runNdiff('fingerprint', Q4_0_FILE, '--record');
  assert.equal(record.code, 2);
  assert.match(record.err, /--record is for TF\.js model folders/);
});

test('ndiff inspect model.gguf: parts, architecture, name, tokenizer, metadata and tensors, in text and --json', async () => {
  const text = await runNdiff('inspect', Q4_0_FILE);
  assert.equal(text.code, 0, text.err);
  assert.match(text.out, /tiny-llama-q4_0\.gguf: GGUF v3 model, 1 file/);
  assert.match(text.out, /arch {7}llama/);
  assert.match(text.out, /name {7}tiny llama Q4_0/);
  assert.match(text.out, /tokenizer {2}8 tokens \(llama\)/);
  assert.match(text.out, /tensors {4}11 tensors, 7520 weights, .*: Q4_0 8, F32 3/);
  assert.match(text.out, /test\.array\.nested \(ARRAY\[ARRAY\[INT32\]\]\) = 2 items/);
  assert.match(text.out, /blk\.0\.ffn_down\.weight\s+Q4_0\s+\[32x32\]\s+576/);
  const json = await runNdiff('inspect', join(DIR, PARTS[2]), '--json');
  const doc = JSON.parse(json.out) as Record<string, any>;
  assert.equal(doc.format, 'gguf');
  assert.equal(doc.architecture, 'llama');
  assert.equal(doc.tokenizerTokens, 8);
  assert.equal(doc.parts.length, 3);
  assert.equal(doc.tensors.length, 11);
  assert.deepEqual(doc.tensors[0], { name: 'token_embd.weight', type: 'Q8_0', shape: [8, 32], elements: 256, bytes: 272, part: 1 });
  assert.deepEqual(doc.metadata.find((m: { key: string }) => m.key === 'test.u64'), { key: 'test.u64', type: 'UINT64', value: '9223372036854775813' });
});

test('ndiff on a damaged .gguf exits with the files code and a typed error; diff refuses a lossy budget on .gguf, and two layouts', async () => {
  const dir = await tempDir();
  const bad = join(dir, 'cut.gguf');
  writeFileSync(bad, readFileSync(Q4_0_FILE).subarray(0, 100));
  const r = await runNdiff('inspect', bad, '--json');
  assert.equal(r.code, 7);
  const doc = JSON.parse(r.out) as { error: { code: string; message: string } };
  assert.equal(doc.error.code, 'ND_MODEL_FORMAT');
  assert.match(doc.error.message, /tensor count at offset 8: expected at most 3 \(what the 84 bytes left in the file can hold\), found 11/);
  const diff = await runNdiff('diff', '--base', Q4_0_FILE, '--target', join(DIR, 'tiny-llama-q4_1.gguf'), '--out', join(dir, 'x.ndiff'), '--budget', '10%', '--model-id', 'tiny');
  assert.equal(diff.code, 4);
  assert.match(diff.err, /laid out differently .*ship the new \.gguf file whole/);
  const layouts = await runNdiff('diff', '--base', Q4_0_FILE, '--target', join(DIR, 'tiny-llama-q4_1.gguf'), '--out', join(dir, 'x.ndiff'), '--budget', 'all', '--model-id', 'tiny');
  assert.equal(layouts.code, 4);
  assert.match(layouts.err, /laid out differently \(the base file is 7104 bytes, the target 7552\).*ship the new \.gguf file whole/);
});
