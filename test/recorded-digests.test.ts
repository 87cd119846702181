/**
 * Applying to a model folder without reading the whole model: a confirmed apply records every
 * tensor's digest tied to its files, the next apply reads and hashes only the tensors it
 * patches, and commits rewrite only the shards holding changed bytes. The recorded digests are
 * trusted only while the files are unchanged: a shard changed in place (even with its mtime
 * put back) or a damaged digests file makes the apply hash again, and a wrong base is still
 * refused with the folder untouched.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { open, readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { getHasher } from '../src/core/hasher.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { seededRandom } from '../src/core/random.ts';
import { BaseMismatchError, ModelFormatError } from '../src/core/errors.ts';
import { MemoryWeightStore } from '../src/core/weight-store.ts';
import { buildPayload, type PatchSpec } from '../src/diff/build.ts';
import { openTfjsModelDir, writeModelDir, MODEL_JSON } from '../src/io/tfjs/index.ts';
import { applyToModelDir } from '../src/io/tfjs/folder-update.ts';
import { DIGESTS_FILE, readRecordedDigests, recordModelDirDigests } from '../src/io/tfjs/recorded-digests.ts';
import { tempDir, folderBytes, withTfjsFrame, TEST_MODEL_JSON } from './helpers/dirs.ts';

const hasher = await getHasher();
const TENSORS = 8;
/** The frame (`tfjs:frame`), computed from model.json on every apply: counted as hashed. */
const FRAME = 1;
const SIZE = 4096; // 16 KiB per tensor
const SHARD = 2 * SIZE * 4; // two tensors per shard: 4 shards

function makeBase(): MemoryWeightStore {
  const r = seededRandom(11);
  // With the frame of the folder writeBase makes: the fingerprints are the folder's.
  return withTfjsFrame(new MemoryWeightStore(Array.from({ length: TENSORS }, (_, i) => [`layer${i}/kernel`, { shape: [SIZE / 64, 64], data: Float32Array.from({ length: SIZE }, () => (r() - 0.5) * 0.2) }] as [string, { shape: number[]; data: Float32Array }])));
}

/** A payload patching `names` (every 7th weight), built against `base`, with `sequence`. */
function payloadFor(base: MemoryWeightStore, names: string[], sequence: number, seed: number) {
  const r = seededRandom(seed);
  const specs: PatchSpec[] = names.map((name) => {
    const positions = Uint32Array.from({ length: Math.floor(SIZE / 7) }, (_, k) => k * 7);
    return { kind: 'sparse', name, positions, values: Float32Array.from(positions, () => (r() - 0.5) * 0.01), codec: 'f32' };
  });
  return buildPayload(hasher, base, specs, { method: 'sparse', modelId: 'm', sequence });
}

/** `base` with `built`'s target values in place (the next base of a chain). */
function targetOf(base: MemoryWeightStore, built: ReturnType<typeof payloadFor>): MemoryWeightStore {
  const next = base.clone();
  for (const [name, v] of built.targetValues) next.values(name).set(v);
  return next;
}

async function writeBase(base: MemoryWeightStore): Promise<string> {
  const dir = join(await tempDir(), 'model');
  const tensors = new Map(base.list().filter((t) => t.patchable !== false).map((t) => [t.name, { shape: t.shape, data: base.values(t.name) }]));
  await writeModelDir(dir, { ...TEST_MODEL_JSON }, tensors, { shardBytes: SHARD });
  return dir;
}

async function shardsOf(dir: string): Promise<string[]> {
  return JSON.parse(await readFile(join(dir, MODEL_JSON), 'utf8')).weightsManifest[0].paths;
}

async function inodes(dir: string, files: string[]): Promise<Map<string, bigint>> {
  const out = new Map<string, bigint>();
  for (const f of files) out.set(f, (await stat(join(dir, f), { bigint: true })).ino);
  return out;
}

describe('recorded digests', () => {
  test('the second apply hashes only the tensors it patches and keeps the untouched shard files', async () => {
    const base = makeBase();
    const dir = await writeBase(base);
    const first = payloadFor(base, ['layer7/kernel'], 1, 1);
    const r1 = await applyToModelDir(dir, first.bytes, { state: null });
    assert.equal(r1.status, 'applied');
    assert.deepEqual(r1.baseCheck, { hashedTensors: TENSORS + FRAME, recordedTensors: 0 }, 'nothing recorded yet: every tensor hashed');
    assert.equal((await readRecordedDigests(dir)).size, TENSORS, 'the confirmed apply recorded every tensor');

    const mid = targetOf(base, first);
    const shardsBefore = await shardsOf(dir);
    const inoBefore = await inodes(dir, shardsBefore);
    const second = payloadFor(mid, ['layer0/kernel'], 2, 2);
    const r2 = await applyToModelDir(dir, second.bytes, { state: null });
    assert.equal(r2.status, 'applied');
    assert.deepEqual(r2.baseCheck, { hashedTensors: 1 + FRAME, recordedTensors: TENSORS - 1 });

    // Only the shard holding layer0 is a new file; the other three are the same files.
    const shardsAfter = await shardsOf(dir);
    assert.equal(shardsAfter.length, 4);
    assert.notEqual(shardsAfter[0], shardsBefore[0]);
    assert.deepEqual(shardsAfter.slice(1), shardsBefore.slice(1));
    const inoAfter = await inodes(dir, shardsAfter.slice(1));
    for (const f of shardsAfter.slice(1)) assert.equal(inoAfter.get(f), inoBefore.get(f), `${f} kept, not rewritten`);

    // What a loader sees is the target, read from the files.
    const end = targetOf(mid, second);
    assert.equal(fingerprintStore(hasher, await openTfjsModelDir(dir)).fingerprint, fingerprintStore(hasher, end).fingerprint);
    assert.equal(fingerprintStore(hasher, end).fingerprint, second.payload.header.targetFingerprint);
  });

  test('baseCheck "full" hashes every tensor even with digests recorded', async () => {
    const base = makeBase();
    const dir = await writeBase(base);
    await recordModelDirDigests(dir);
    const res = await applyToModelDir(dir, payloadFor(base, ['layer3/kernel'], 1, 3).bytes, { state: null, baseCheck: 'full' });
    assert.deepEqual(res.baseCheck, { hashedTensors: TENSORS + FRAME, recordedTensors: 0 });
  });

  test('recordModelDirDigests gives the fingerprint of a full read, and the next apply uses it', async () => {
    const base = makeBase();
    const dir = await writeBase(base);
    const rec = await recordModelDirDigests(dir);
    assert.equal(rec.fingerprint, fingerprintStore(hasher, base).fingerprint);
    assert.equal(rec.tensors, TENSORS);
    const res = await applyToModelDir(dir, payloadFor(base, ['layer5/kernel'], 1, 4).bytes, { state: null });
    assert.deepEqual(res.baseCheck, { hashedTensors: 1 + FRAME, recordedTensors: TENSORS - 1 });
  });

  for (const how of ['rewritten in place', 'rewritten in place, mtime put back'] as const) {
    test(`an untouched shard ${how} after the digests were recorded: the apply hashes it and refuses the wrong base, folder untouched`, async () => {
      const base = makeBase();
      const dir = await writeBase(base);
      await recordModelDirDigests(dir);
      const shards = await shardsOf(dir);
      const victim = join(dir, shards[3]); // layer6 + layer7; the payload patches layer0
      const st = await stat(victim);
      const fh = await open(victim, 'r+');
      const four = Buffer.alloc(4);
      await fh.read(four, 0, 4, 100);
      four[0] ^= 1; // one bit of one weight of layer6
      await fh.write(four, 0, 4, 100);
      await fh.close();
      if (how.includes('mtime')) await utimes(victim, st.atime, st.mtime);
      const before = await folderBytes(dir);
      const err = await applyToModelDir(dir, payloadFor(base, ['layer0/kernel'], 1, 5).bytes, { state: null }).catch((e) => e);
      assert.ok(err instanceof BaseMismatchError, `expected BaseMismatchError, got ${err}`);
      assert.deepEqual(await folderBytes(dir), before, 'folder byte for byte as it was');
    });
  }

  test('a damaged or foreign digests file is ignored: every tensor is hashed and the apply works', async () => {
    for (const text of ['{ not json', '{"format":"neural-diff-digests","version":2,"tensors":{}}', '{"format":"neural-diff-digests","version":1,"tensors":{"layer1/kernel":{"entry":1}}}']) {
      const base = makeBase();
      const dir = await writeBase(base);
      await writeFile(join(dir, DIGESTS_FILE), text);
      const res = await applyToModelDir(dir, payloadFor(base, ['layer2/kernel'], 1, 6).bytes, { state: null });
      assert.deepEqual(res.baseCheck, { hashedTensors: TENSORS + FRAME, recordedTensors: 0 }, text);
    }
  });

  test('a recorded digest that is wrong can only make the apply refuse, never accept another base', async () => {
    const base = makeBase();
    const dir = await writeBase(base);
    await recordModelDirDigests(dir);
    const doc = JSON.parse(await readFile(join(dir, DIGESTS_FILE), 'utf8'));
    doc.tensors['layer4/kernel'].digest = '0123456789abcdef';
    await writeFile(join(dir, DIGESTS_FILE), JSON.stringify(doc));
    const before = await folderBytes(dir);
    const bytes = payloadFor(base, ['layer1/kernel'], 1, 7).bytes;
    await assert.rejects(applyToModelDir(dir, bytes, { state: null }), BaseMismatchError);
    assert.deepEqual(await folderBytes(dir), before);
    const res = await applyToModelDir(dir, bytes, { state: null, baseCheck: 'full' });
    assert.equal(res.status, 'applied', 'a full check reads the files, which are right');
  });

  test('hashing a lazily opened folder keeps no shard in memory: every tensor is read for itself', async () => {
    const base = makeBase();
    const dir = await writeBase(base);
    const store = await openTfjsModelDir(dir, { lazy: true });
    // A full hash (what a first apply or `ndiff fingerprint` does) reads every tensor once...
    assert.equal(fingerprintStore(hasher, store).fingerprint, fingerprintStore(hasher, base).fingerprint);
    // ...and keeps none of the shards: a shard changed afterwards is read again, and refused.
    const shards = await shardsOf(dir);
    await writeFile(join(dir, shards[1]), await readFile(join(dir, shards[1])));
    assert.throws(() => store.values('layer2/kernel'), ModelFormatError);
    assert.equal(store.values('layer0/kernel')[5], base.values('layer0/kernel')[5], 'an unchanged shard still reads');
  });

  test('a lazily opened folder refuses a shard that changed after the open', async () => {
    const base = makeBase();
    const dir = await writeBase(base);
    const store = await openTfjsModelDir(dir, { lazy: true });
    assert.equal(store.values('layer0/kernel')[0], base.values('layer0/kernel')[0], 'first shard read on demand');
    const shards = await shardsOf(dir);
    await writeFile(join(dir, shards[2]), await readFile(join(dir, shards[2]))); // same bytes, new write
    assert.throws(() => store.values('layer4/kernel'), ModelFormatError);
    assert.deepEqual([...(await readdir(dir))].filter((f) => f.includes('tmp')), []);
  });
});
