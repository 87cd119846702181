/**
 * GGUF block payloads (format v8, docs/format/gguf.md §18.4): two versions of one GGUF layout
 * (made from the committed fixtures by test/helpers/gguf-pairs.ts) diffed and applied in place,
 * byte for byte, for every block layout the fixtures hold, a split model and metadata changes;
 * deterministic bytes; pairs laid out differently refused by name; a wrong base and hostile
 * payloads refused before any write, the file untouched byte for byte; the library calls and
 * the CLI.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Unpackr } from 'msgpackr';
import { getHasher, type Hasher } from '../src/core/hasher.ts';
import { packDocument } from '../src/core/encode.ts';
import { BaseMismatchError, HealthCheckError, ModelMismatchError, PayloadFormatError, SignatureError, TargetMismatchError, UsageError } from '../src/core/errors.ts';
import { bytesSource } from '../src/io/gguf/header.ts';
import { ggufModelOf, ggufSplitModel } from '../src/io/gguf/model.ts';
import { diffGgufModels } from '../src/io/gguf/diff.ts';
import type { GgufChunkCoding } from '../src/io/gguf/payload.ts';
import { applyToGgufFile, ggufUndoJournal } from '../src/io/gguf/in-place.ts';
import { buildGguf } from '../src/io/gguf/write.ts';
import { ggmlTypeByName } from '../src/io/gguf/types.ts';
import { diff } from '../src/front/diff.ts';
import { apply } from '../src/front/apply.ts';
import { ggufFixture, perturbGguf } from './helpers/gguf-pairs.ts';
import { runNdiff } from './helpers/ndiff-run.ts';
import { generateKeyPair, signPayload } from '../src/sign/node-keys.ts';

let hasher: Hasher;
let root: string;
let n = 0;
const fresh = () => {
  const d = join(root, `case-${n++}`);
  rmSync(d, { recursive: true, force: true });
  return mkdtempSync(`${d}-`);
};
const payloadOf = (a: Uint8Array, b: Uint8Array, chunkCoding?: GgufChunkCoding) => diffGgufModels(hasher, ggufModelOf(bytesSource(a)), ggufModelOf(bytesSource(b)), { modelId: 'tiny', sequence: 1, createdBy: 'test', ...(chunkCoding ? { chunkCoding } : {}) });
const same = (file: string, bytes: Uint8Array) => Buffer.compare(readFileSync(file), bytes) === 0;

before(async () => {
  hasher = await getHasher();
  root = mkdtempSync(join(tmpdir(), 'ndiff-gguf-payload-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

describe('GGUF block payloads: diff and in-place apply', () => {
  const fixtures = ['tiny-llama-f32.gguf', 'tiny-llama-f16.gguf', 'tiny-llama-q8_0.gguf', 'tiny-llama-q8_0-v2.gguf', 'tiny-llama-q4_0.gguf', 'tiny-llama-q4_1.gguf', 'tiny-llama-q5_0.gguf', 'tiny-llama-q5_1.gguf', 'tiny-llama-q2_k.gguf', 'tiny-llama-q4_k_m.gguf', 'tiny-llama-q6_k.gguf', 'tiny-llama-q4_0-align64.gguf'];
  for (const name of fixtures) {
    for (const coding of ['smaller', 'byte-delta', 'xor'] as const) {
      test(`${name}, chunks coded ${coding}: blocks and metadata changed, applied in place byte for byte, padding included; same bytes each run`, async () => {
        const v1 = ggufFixture(name);
        const v2 = perturbGguf(v1, { blockShare: 0.2, metadata: true, seed: 7 });
        assert.notEqual(Buffer.compare(v1, v2), 0);
        const r = payloadOf(v1, v2, coding);
        assert.deepEqual(payloadOf(v1, v2, coding).payload, r.payload, 'deterministic');
        assert.ok(r.header, 'the metadata change is carried');
        assert.ok(r.changedTensors.length > 0);
        if (coding === 'smaller') assert.ok(r.payload.length <= Math.min(payloadOf(v1, v2, 'byte-delta').payload.length, payloadOf(v1, v2, 'xor').payload.length));
        const file = join(fresh(), 'model.gguf');
        writeFileSync(file, v1);
        const res = await applyToGgufFile(file, r.payload, { state: null });
        assert.equal(res.status, 'applied');
        assert.ok(same(file, v2), 'the file is the target byte for byte');
        assert.equal(res.writtenBytes, r.changedBytes);
        assert.ok(!existsSync(ggufUndoJournal(file)), 'no journal left');
        assert.equal((await applyToGgufFile(file, r.payload, { state: null })).status, 'already-applied');
      });
    }
  }

  test('progress: each chunk coded is reported with the bytes coded so far, ending at every changed byte', () => {
    const v1 = ggufFixture('tiny-llama-f32.gguf');
    const v2 = perturbGguf(v1, { blockShare: 0.5, seed: 5 });
    const seen: [number, number][] = [];
    const r = diffGgufModels(hasher, ggufModelOf(bytesSource(v1)), ggufModelOf(bytesSource(v2)), { modelId: 'tiny', sequence: 1, createdBy: 'test', onChunk: (coded, changed) => seen.push([coded, changed]) });
    assert.equal(seen.length, r.chunks);
    for (let i = 0; i < seen.length; i++) {
      assert.equal(seen[i][1], r.changedBytes);
      assert.ok(seen[i][0] > (i ? seen[i - 1][0] : 0));
    }
    assert.equal(seen.at(-1)?.[0], r.changedBytes);
  });

  test('only the changed blocks travel: a payload is a small share of the model', () => {
    const v1 = ggufFixture('tiny-llama-f32.gguf');
    const v2 = perturbGguf(v1, { blockShare: 0.02, seed: 3 });
    const r = payloadOf(v1, v2);
    assert.ok(r.payload.length < v1.length / 4, `${r.payload.length} bytes for a ${v1.length}-byte model`);
  });

  test('a split model: every part patched, named by any part', async () => {
    const dir = fresh();
    const names = [1, 2, 3].map((k) => `tiny-split-0000${k}-of-00003.gguf`);
    const v1 = names.map((x) => ggufFixture(x));
    const v2 = v1.map((b, i) => perturbGguf(b, { blockShare: 0.3, seed: 11 + i, metadata: i === 0 }));
    const split = (parts: Uint8Array[]) => ggufSplitModel(3, (no) => bytesSource(parts[no - 1], names[no - 1]), names[0]);
    const r = diffGgufModels(hasher, split(v1), split(v2), { modelId: 'tiny', sequence: 1, createdBy: 'test' });
    names.forEach((x, i) => writeFileSync(join(dir, x), v1[i]));
    const res = await applyToGgufFile(join(dir, names[1]), r.payload, { state: null });
    assert.equal(res.status, 'applied');
    assert.equal(res.files.length, 3);
    names.forEach((x, i) => assert.ok(same(join(dir, x), v2[i]), `part ${i + 1}`));
  });

  test('a symbolic link to the model: the real file is patched, its journal beside it', async () => {
    const dir = fresh();
    const v1 = ggufFixture('tiny-llama-q5_0.gguf');
    const v2 = perturbGguf(v1, { blockShare: 0.2, seed: 12 });
    mkdirSync(join(dir, 'store'));
    writeFileSync(join(dir, 'store', 'real.gguf'), v1);
    symlinkSync(join('store', 'real.gguf'), join(dir, 'link.gguf'));
    const r = await applyToGgufFile(join(dir, 'link.gguf'), payloadOf(v1, v2).payload, { state: null });
    assert.equal(r.files[0], realpathSync(join(dir, 'store', 'real.gguf')));
    assert.ok(same(join(dir, 'store', 'real.gguf'), v2));
    assert.ok(lstatSync(join(dir, 'link.gguf')).isSymbolicLink(), 'the link stays a link');
  });

  test('pairs laid out differently are refused, saying what differs and that the new file ships whole', () => {
    const q4 = ggufFixture('tiny-llama-q4_0.gguf');
    const q8 = ggufFixture('tiny-llama-q8_0.gguf');
    assert.throws(() => payloadOf(q4, q8), (e: unknown) => e instanceof ModelMismatchError && /laid out differently/.test(e.message) && /whole/.test(e.message));
    // One tensor, then the same with a longer name: the header's length changes.
    const f32 = ggmlTypeByName('F32')!;
    const t = (name: string) => buildGguf({ metadata: [], tensors: [{ name, ne: [8], type: f32, data: new Uint8Array(32) }] });
    assert.throws(() => payloadOf(t('a'), t('abcd')), (e: unknown) => e instanceof ModelMismatchError && /header is/.test(e.message));
  });
});

describe('GGUF payloads: refusals before any write', () => {
  const v1 = () => ggufFixture('tiny-llama-q8_0.gguf');
  const v2 = () => perturbGguf(v1(), { blockShare: 0.3, metadata: true, seed: 5 });

  /** Apply `payload` to a copy of v1 and expect `check`; the file must keep v1's bytes, no journal left. */
  async function refused(payload: Uint8Array, check: (e: unknown) => boolean) {
    const file = join(fresh(), 'model.gguf');
    writeFileSync(file, v1());
    await assert.rejects(applyToGgufFile(file, payload, { state: null }), (e: unknown) => {
      assert.ok(check(e), String(e));
      return true;
    });
    assert.ok(same(file, v1()), 'the file is untouched byte for byte');
    assert.deepEqual(readdirSync(join(file, '..')).sort(), ['model.gguf'], 'nothing left beside it');
  }

  test('a wrong base', async () => {
    const other = perturbGguf(v1(), { blockShare: 0.1, seed: 99 });
    const r = payloadOf(other, v2());
    await refused(r.payload, (e) => e instanceof BaseMismatchError && /nothing was written/.test((e as Error).message));
  });

  const doc = (coding: GgufChunkCoding = 'byte-delta') => new Unpackr({ useRecords: false, mapsAsObjects: true }).unpack(payloadOf(v1(), v2(), coding).payload) as Record<string, unknown>;
  const varints = (...xs: number[]) => {
    const out: number[] = [];
    for (let v of xs) {
      while (v >= 0x80) {
        out.push((v % 0x80) | 0x80);
        v = Math.floor(v / 0x80);
      }
      out.push(v);
    }
    return out;
  };
  /** A chunk's ranges (`rs`) with three raw streams: the given bytes for each, or the varints of the ranges' fields. */
  const rawStreams = (count: number, streams: number[][]) => Uint8Array.from([...varints(count), ...streams.flatMap((b) => [0, ...varints(b.length, b.length), ...b])]);
  const ranges = (...rs: [number, number, number][]) => rawStreams(rs.length, [0, 1, 2].map((k) => varints(...rs.map((r) => r[k]))));
  const withChunk0 = (edit: (c: unknown[]) => void, coding?: GgufChunkCoding) => {
    const d = doc(coding);
    const chunks = d.ch as unknown[][];
    edit(chunks[0]);
    return packDocument(d);
  };
  const format = (pattern: RegExp) => (e: unknown) => e instanceof PayloadFormatError && pattern.test((e as Error).message);

  test('a range past the end of the file', async () => {
    await refused(withChunk0((c) => (c[0] = ranges([0, 100_000, 34]))), format(/goes past/));
  });
  test('a range of length 0', async () => {
    await refused(withChunk0((c) => (c[0] = ranges([0, 100, 0]))), format(/0 bytes/));
  });
  test('a range in a part the model does not have', async () => {
    await refused(withChunk0((c) => (c[0] = ranges([1, 0, 34]))), format(/part 1, the model has 1/));
  });
  test('truncated ranges', async () => {
    await refused(withChunk0((c) => (c[0] = (c[0] as Uint8Array).subarray(0, (c[0] as Uint8Array).length - 1))), format(/truncated/));
  });
  test('a varint past 2^53', async () => {
    await refused(withChunk0((c) => (c[0] = rawStreams(1, [[0], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], [1]]))), format(/2\^53|more than 8 bytes/));
  });
  test('a range-coded stream declaring far more bytes than its coded length can give', async () => {
    await refused(withChunk0((c) => (c[0] = Uint8Array.from([...varints(1_000_000), 1, ...varints(1_000_000, 4), 0, 0, 0, 0]))), format(/at most 64 x \+ 64/));
  });
  test('a chunk of an unknown coding', async () => {
    await refused(withChunk0((c) => (c[3] = 7)), format(/coding must be 0/));
  });
  test('XOR bytes declaring more than their coded length can give', async () => {
    await refused(withChunk0((c) => {
      c[0] = ranges([0, 0, 10_000]);
      c[3] = 1;
      c[4] = new Uint8Array(8);
    }), format(/range-coded in 8/));
  });
  test('a truncated byte delta', async () => {
    await refused(withChunk0((c) => (c[4] = (c[4] as Uint8Array).subarray(0, (c[4] as Uint8Array).length - 3))), (e) => e instanceof PayloadFormatError);
  });
  test('truncated range-coded XOR bytes', async () => {
    await refused(withChunk0((c) => (c[4] = (c[4] as Uint8Array).subarray(0, (c[4] as Uint8Array).length - 3)), 'xor'), (e) => e instanceof PayloadFormatError);
  });
  test('a byte delta for another length than its ranges', async () => {
    await refused(withChunk0((c) => (c[0] = ranges([0, 0, 1]))), format(/the output is declared \d+ bytes, the limit is 1;/));
  });
  test('a chunk whose target digest does not match what its delta writes (an inconsistent payload)', async () => {
    await refused(withChunk0((c) => ((c[2] as Uint8Array)[0] ^= 1)), format(/hash to/));
  });
  test('a chunk whose base digest names other bytes', async () => {
    await refused(withChunk0((c) => ((c[1] as Uint8Array)[0] ^= 1)), format(/not the payload's base/));
  });
  test('a payload whose ranges do not reach its target (an inconsistent target digest): written, found wrong, rolled back', async () => {
    const d = doc();
    ((d.pt as unknown[][])[0][2] as Uint8Array)[0] ^= 1;
    await refused(packDocument(d), (e) => e instanceof TargetMismatchError && /rolled back to its old version/.test((e as Error).message));
  });
  test('a truncated document', async () => {
    const p = payloadOf(v1(), v2()).payload;
    await refused(p.subarray(0, p.length - 10), format(/malformed msgpack/));
  });
});

describe('GGUF payloads through the library calls and the CLI', () => {
  test('diff and apply: budget all only; the state records the sequence; a replay is refused; a failed health check rolls back', async () => {
    const dir = fresh();
    const [a, b, c] = ['v1.gguf', 'v2.gguf', 'device.gguf'].map((x) => join(dir, x));
    const v1 = ggufFixture('tiny-llama-q4_k_m.gguf');
    const v2 = perturbGguf(v1, { blockShare: 0.25, metadata: true, seed: 2 });
    writeFileSync(a, v1);
    writeFileSync(b, v2);
    writeFileSync(c, v1);
    await assert.rejects(diff({ base: a, target: b, budget: 'auto', modelId: 'tiny', out: join(dir, 'x.ndiff') }), (e: unknown) => e instanceof UsageError && /budget auto/.test((e as Error).message));
    await assert.rejects(diff({ base: a, target: b, budget: 'all', modelId: 'tiny', method: 'lowbit' }), (e: unknown) => e instanceof UsageError && /method/.test((e as Error).message));
    const out = join(dir, 'v1-v2.ndiff');
    const made = await diff({ base: a, target: b, budget: 'all', modelId: 'tiny', out, sequence: 3 });
    assert.ok(!made.structural);
    assert.equal(made.method, 'exact');
    assert.equal(made.formatVersion, 8);
    // A failing health check: rolled back to v1, nothing recorded.
    await assert.rejects(apply({ model: c, payload: out, healthCheck: () => false }), (e: unknown) => e instanceof HealthCheckError);
    assert.ok(same(c, v1));
    const r = await apply({ model: c, payload: out });
    assert.equal(r.status, 'applied');
    assert.equal(r.formatVersion, 8);
    assert.ok(same(c, v2));
    assert.equal(r.sequenceRecorded, true);
    assert.equal(JSON.parse(readFileSync(`${c}.ndiff-state.json`, 'utf8')).models.tiny.sequence, 3);
    // The same payload again: already applied; onto v1 again: a replay.
    assert.equal((await apply({ model: c, payload: out })).status, 'already-applied');
    writeFileSync(c, v1);
    await assert.rejects(apply({ model: c, payload: out }), (e: unknown) => (e as { code?: string }).code === 'ND_FRESHNESS');
    assert.ok(same(c, v1));
  });

  test('signed: applied with the trusted key; a tampered or unsigned one refused, the file untouched; a dry run writes nothing', async () => {
    const dir = fresh();
    const file = join(dir, 'm.gguf');
    const v1 = ggufFixture('tiny-llama-q6_k.gguf');
    const v2 = perturbGguf(v1, { blockShare: 0.2, seed: 6 });
    writeFileSync(file, v1);
    const keys = generateKeyPair();
    const bare = payloadOf(v1, v2).payload;
    const signed = signPayload(bare, keys.privateKeyPem);
    const tampered = signed.slice();
    tampered[tampered.length - 100] ^= 1;
    const trusted = { trustedKeys: [keys.publicKey], state: null };
    await assert.rejects(applyToGgufFile(file, tampered, trusted), (e: unknown) => e instanceof SignatureError || e instanceof PayloadFormatError);
    await assert.rejects(applyToGgufFile(file, bare, trusted), (e: unknown) => e instanceof SignatureError);
    assert.ok(same(file, v1));
    const dry = await applyToGgufFile(file, signed, { ...trusted, dryRun: true });
    assert.equal(dry.signature.verified, true);
    assert.equal(dry.writtenBytes, 0);
    assert.ok(same(file, v1), 'a dry run writes nothing');
    assert.deepEqual(readdirSync(dir), ['m.gguf']);
    const r = await applyToGgufFile(file, signed, trusted);
    assert.equal(r.signature.verified, true);
    assert.ok(same(file, v2));
  });

  test('a GGUF payload on another model, and another payload on a GGUF model, are refused by kind', async () => {
    const dir = fresh();
    const file = join(dir, 'm.gguf');
    const v1 = ggufFixture('tiny-llama-q4_0.gguf');
    writeFileSync(file, v1);
    const p = payloadOf(v1, perturbGguf(v1, { seed: 4 })).payload;
    await assert.rejects(apply({ model: join(dir, 'm.onnx'), payload: p }), (e: unknown) => e instanceof ModelMismatchError && /GGUF payload/.test((e as Error).message));
    await assert.rejects(apply({ model: file, payload: new Uint8Array([0x81, 0xa2, 0x6e, 0x64, 0x01]) }), (e: unknown) => e instanceof ModelMismatchError && /not a GGUF payload/.test((e as Error).message));
    assert.ok(same(file, v1));
  });

  test('ndiff diff --base v1.gguf --target v2.gguf --budget all, then ndiff apply', async () => {
    const dir = fresh();
    const [a, b, c, p] = ['v1.gguf', 'v2.gguf', 'device.gguf', 'p.ndiff'].map((x) => join(dir, x));
    const v1 = ggufFixture('tiny-llama-q5_k_m.gguf');
    const v2 = perturbGguf(v1, { blockShare: 0.1, seed: 8 });
    writeFileSync(a, v1);
    writeFileSync(b, v2);
    writeFileSync(c, v1);
    const d = await runNdiff('diff', '--base', a, '--target', b, '--budget', 'all', '--model-id', 'tiny', '--out', p);
    assert.equal(d.code, 0, d.err);
    assert.match(d.out, /every changed ggml block exactly/);
    const lossy = await runNdiff('diff', '--base', a, '--target', b, '--budget', 'auto', '--model-id', 'tiny', '--out', p);
    assert.notEqual(lossy.code, 0);
    assert.match(lossy.err, /budget auto/);
    const r = await runNdiff('apply', '--model', c, '--patch', p);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /patched .* in place/);
    assert.ok(same(c, v2));
  });
});
