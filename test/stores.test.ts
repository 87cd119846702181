/**
 * One applier, every kind of weight store, on real pretrained weights nobody here wrote: the
 * MobileNetV2 layers-model and graph-model shipped in the nsfwjs package (uint8-quantized).
 * Each test builds a payload against a perturbed copy of the base and applies it through one
 * store kind: the TF.js folder on disk, a live tf.LayersModel / tf.GraphModel (wasm backend:
 * copy and assign), safetensors files (F32 in place; F16 with pass-through entries) and plain
 * named Float32Arrays, then checks the fingerprint the payload promised and, for live models,
 * that predictions change and equal a model loaded from the patched folder.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { applyPayload, BaseMismatchError, ModelMismatchError, type ApplyResult } from '../src/apply/index.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { getHasher } from '../src/core/hasher.ts';
import { ModelFormatError } from '../src/core/errors.ts';
import { fromHalfBits, toHalfBits } from '../src/core/float16.ts';
import { buildPayload, type PatchSpec } from '../src/diff/build.ts';
import { topkDiff } from '../src/topk-diff/encoder.ts';
import { fileSystemIO, openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { tfModelStore } from '../src/io/tfjs/live-model-store.ts';
import { SafetensorsWeightStore, parseSafetensorsHeader, serializeSafetensors, concatChunks } from '../src/io/safetensors/store.ts';
import { openSafetensorsFile, writeSafetensorsFile } from '../src/io/safetensors/files.ts';
import { initBackend } from '../src/engine/backend.ts';
import { pretrainedModelDir } from './helpers/pretrained.ts';
import { memoryCopy, perturbed } from './helpers/perturb.ts';
import { rng } from './helpers/models.ts';
import type { MemoryWeightStore } from '../src/core/weight-store.ts';

const hasher = await getHasher();
let work: string;
before(async () => {
  await initBackend('wasm');
  work = await mkdtemp(path.join(tmpdir(), 'nd-stores-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

let copies = 0;
async function copyOf(dir: string): Promise<string> {
  const to = path.join(work, `model-${++copies}`);
  await cp(dir, to, { recursive: true });
  return to;
}

/** A fixed pseudo-random image batch, the same on every run. */
function image(): tf.Tensor4D {
  const r = rng(42);
  return tf.tensor4d(Float32Array.from({ length: 224 * 224 * 3 }, () => r()), [1, 224, 224, 3]);
}

function predict(model: tf.LayersModel | tf.GraphModel): Float32Array {
  return tf.tidy(() => (model.predict(image()) as tf.Tensor).dataSync() as Float32Array).slice();
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

interface Fixture {
  dir: string;
  base: MemoryWeightStore;
  baseFingerprint: string;
  targetFingerprint: string;
  payload: Uint8Array;
}

const fixtures = new Map<string, Promise<Fixture>>();
/** The pretrained base, a 2%-perturbed target and a 64 KB top-k payload between them. */
function fixture(kind: 'layers' | 'graph'): Promise<Fixture> {
  let f = fixtures.get(kind);
  if (!f) {
    f = (async () => {
      const dir = await pretrainedModelDir(kind);
      const base = memoryCopy(await openTfjsModelDir(dir));
      const built = topkDiff(hasher, base, perturbed(base, 0.02, kind === 'layers' ? 1 : 2), { budgetBytes: 64_000, codec: 'f16', modelId: `nsfwjs-${kind}` });
      assert.ok(built.kept > 1000, `the payload should carry many changes, kept ${built.kept}`);
      const h = built.payload.header;
      assert.notEqual(h.baseFingerprint, h.targetFingerprint);
      return { dir, base, baseFingerprint: h.baseFingerprint, targetFingerprint: h.targetFingerprint, payload: built.bytes };
    })();
    fixtures.set(kind, f);
  }
  return f;
}

function assertApplied(res: ApplyResult, fx: Fixture): void {
  assert.equal(res.status, 'applied');
  assert.equal(res.baseFingerprint, fx.baseFingerprint);
  assert.equal(res.targetFingerprint, fx.targetFingerprint);
  assert.ok(res.changedTensors.length > 10, `changed ${res.changedTensors.length} tensors`);
}

describe('TF.js folder on disk (the nsfwjs files as shipped: uint8-quantized)', () => {
  for (const kind of ['layers', 'graph'] as const) {
    test(`${kind}-model: apply, commit, reopen: the folder holds the target`, async () => {
      const fx = await fixture(kind);
      const dir = await copyOf(fx.dir);
      const store = await openTfjsModelDir(dir);
      assert.equal(fingerprintStore(hasher, store).fingerprint, fx.baseFingerprint, 'the dir store reads the quantized base exactly');
      assertApplied(await applyPayload(store, fx.payload), fx);
      const reopened = await openTfjsModelDir(dir);
      assert.equal(fingerprintStore(hasher, reopened).fingerprint, fx.targetFingerprint);
      // Patched tensors are now float32, untouched ones keep their uint8 quantization.
      const storage = new Set(reopened.list().map((e) => e.storage));
      assert.ok(storage.has('float32') && storage.has('uint8'), `storage kinds: ${[...storage].join(', ')}`);
      // A second apply is recognised as done.
      assert.equal((await applyPayload(reopened, fx.payload)).status, 'already-applied');
    });
  }
});

describe('live tf models in memory (wasm backend: copy and assign, no reload)', () => {
  for (const kind of ['layers', 'graph'] as const) {
    test(`${kind}-model: predictions change and equal a model loaded from the patched folder`, async () => {
      const fx = await fixture(kind);
      const load = (dir: string) => (kind === 'layers' ? tf.loadLayersModel(fileSystemIO(dir)) : tf.loadGraphModel(fileSystemIO(dir)));
      // Load the base twice: the second LayersModel's runtime variable names get `_1`
      // suffixes, and the store must still find every weight by its manifest name.
      const first = await load(fx.dir);
      const model = await load(fx.dir);
      if (kind === 'layers') {
        const runtime = (model as tf.LayersModel).weights.map((w) => w.name);
        assert.ok(runtime.some((n) => /_\d+$/.test(n.split('/')[0]) || /_\d+$/.test(n)), 'expected renamed runtime variables on the second load');
      }
      // Given the model.json it was loaded from, the live model has the folder's fingerprint (its frame included).
      const store = tfModelStore(model, { modelJson: JSON.parse(await readFile(path.join(fx.dir, 'model.json'), 'utf8')) });
      assert.notEqual(fingerprintStore(hasher, tfModelStore(model)).fingerprint, fx.baseFingerprint, 'without it, the frame is missing');
      assert.equal(store.kind, kind);
      assert.equal(fingerprintStore(hasher, store).fingerprint, fx.baseFingerprint);
      assert.deepEqual(store.heldCopies, [], 'verification hashes transient copies and keeps none');
      const before = predict(model);
      assert.ok(sameBits(before, predict(first)));

      // Copies are held only for the tensors the payload patches (seen when commit runs).
      const heldAtCommit: string[][] = [];
      const commit = store.commit.bind(store);
      store.commit = (changed) => {
        heldAtCommit.push([...store.heldCopies].sort());
        return commit(changed);
      };
      const res = await applyPayload(store, fx.payload);
      assertApplied(res, fx);
      assert.deepEqual(heldAtCommit, [[...res.changedTensors].sort()]);
      assert.deepEqual(store.heldCopies, [], 'released after commit');
      assert.equal(fingerprintStore(hasher, store).fingerprint, fx.targetFingerprint, 'the model re-read after commit is the target');
      const afterPredict = predict(model);
      assert.ok(!sameBits(afterPredict, before), 'predictions must change');
      assert.ok(sameBits(predict(first), before), 'the other loaded copy is untouched');

      const patchedDir = await copyOf(fx.dir);
      await applyPayload(await openTfjsModelDir(patchedDir), fx.payload);
      const reloaded = await load(patchedDir);
      assert.ok(sameBits(predict(reloaded), afterPredict), 'equal to the model loaded from the patched folder');
      assert.equal(store.isInPlace(store.list()[0].name), false, 'wasm memory is not handed out: copy and assign');
      for (const m of [first, model, reloaded]) m.dispose();
    });
  }

  test('a payload for another model is refused and the live model keeps predicting the same', async () => {
    const fx = await fixture('graph');
    const other = await fixture('layers');
    const model = await tf.loadGraphModel(fileSystemIO(fx.dir));
    const before = predict(model);
    await assert.rejects(applyPayload(tfModelStore(model), other.payload), ModelMismatchError);
    assert.ok(sameBits(predict(model), before));
    model.dispose();
  });
});

describe('safetensors', () => {
  test('F32 file: tensors are views into the file bytes, patched in place and written back atomically', async () => {
    const fx = await fixture('layers');
    const file = path.join(work, 'mobilenet.safetensors');
    const tensors = new Map(fx.base.list().map((t) => [t.name, { shape: t.shape, data: fx.base.values(t.name) }]));
    await writeSafetensorsFile(file, tensors, { source: 'nsfwjs mobilenet_v2' });
    const store = await openSafetensorsFile(file);
    assert.equal(store.list().length, fx.base.list().length);
    assert.ok(store.list().every((e) => store.contents.isInPlace(e.name)), 'every F32 tensor is a view');
    assert.equal(fingerprintStore(hasher, store).fingerprint, fx.baseFingerprint);
    assertApplied(await applyPayload(store, fx.payload), fx);
    const reopened = await openSafetensorsFile(file);
    assert.equal(fingerprintStore(hasher, reopened).fingerprint, fx.targetFingerprint);
    assert.deepEqual(reopened.contents.header.metadata, { source: 'nsfwjs mobilenet_v2' });
    assert.equal(reopened.contents.needsRebuild(), false);
  });

  test('F16 file with an I64 entry: unchanged tensors keep F16, patched ones become F32, I64 passes through', async () => {
    const fx = await fixture('layers');
    // Round the pretrained weights to float16 so they are an exact F16 base.
    const half = memoryCopy(fx.base);
    for (const t of half.list()) {
      const w = half.values(t.name);
      for (let i = 0; i < w.length; i++) w[i] = fromHalfBits(toHalfBits(w[i]));
    }
    const steps = new Uint8Array(8);
    new DataView(steps.buffer).setBigInt64(0, 123456789n, true);
    const file = path.join(work, 'mobilenet-f16.safetensors');
    const input = new Map<string, { shape: readonly number[]; data: Float32Array | Uint8Array; dtype: string }>();
    for (const t of half.list()) input.set(t.name, { shape: t.shape, data: half.values(t.name), dtype: 'F16' });
    input.set('global_step', { shape: [], data: steps, dtype: 'I64' });
    await writeSafetensorsFile(file, input);
    // Patch three tensors only.
    const names = half.list().map((t) => t.name).slice(0, 3);
    const r = rng(5);
    const specs: PatchSpec[] = names.map((name) => {
      const n = half.values(name).length;
      const positions = Uint32Array.from(new Set(Array.from({ length: Math.min(50, n) }, () => Math.floor(r() * n)))).sort();
      return { kind: 'sparse', name, positions, values: Float32Array.from(positions, () => (r() - 0.5) * 1e-3), codec: 'f32' };
    });
    const built = buildPayload(hasher, half, specs, { method: 'topk' });

    const store = await openSafetensorsFile(file);
    assert.equal(fingerprintStore(hasher, store).fingerprint, built.payload.header.baseFingerprint, 'F16 is read as exact float32');
    assert.equal(store.contents.needsRebuild(), false, 'hashing for verification keeps no decoded copies');
    await applyPayload(store, built.bytes);
    const reopened = await openSafetensorsFile(file);
    assert.equal(fingerprintStore(hasher, reopened).fingerprint, built.payload.header.targetFingerprint);
    const dtypes = new Map(reopened.contents.entries().map((e) => [e.name, e.dtype]));
    for (const n of names) assert.equal(dtypes.get(n), 'F32', `${n} was patched: written as F32 (F16 would round it)`);
    assert.equal(dtypes.get(half.list()[5].name), 'F16');
    assert.equal(dtypes.get('global_step'), 'I64');
    assert.deepEqual(reopened.contents.storedBytes('global_step'), steps);
    assert.ok(!reopened.list().some((e) => e.name === 'global_step'), 'integers are not patchable tensors');
  });

  test('malformed files are refused with a typed error and nothing is changed', async () => {
    const good = concatChunks(serializeSafetensors({ a: { shape: [2], data: new Float32Array([1, 2]) } }));
    assert.equal(parseSafetensorsHeader(good).entries.length, 1);
    const cases: [string, Uint8Array][] = [
      ['short', good.subarray(0, 5)],
      ['truncated data', good.subarray(0, good.length - 1)],
      ['huge header length', (() => { const b = good.slice(); new DataView(b.buffer).setUint32(0, 1e9, true); return b; })()],
      ['not json', (() => { const b = good.slice(); b[8] = 0x41; return b; })()],
      ['extra bytes', concatChunks([good, new Uint8Array(4)])],
    ];
    for (const [what, bytes] of cases) {
      assert.throws(() => new SafetensorsWeightStore(bytes, what), (e: unknown) => e instanceof ModelFormatError && /safetensors/.test((e as Error).message), what);
    }
    const file = path.join(work, 'bad.safetensors');
    await writeFile(file, good.subarray(0, good.length - 2));
    await assert.rejects(openSafetensorsFile(file), ModelFormatError);
    assert.equal((await readFile(file)).length, good.length - 2);
  });

  test('a tensor named __proto__ is written, kept through a rebuild and read back (it was dropped from the header, so the file written was corrupt)', () => {
    const tensors = new Map([
      ['__proto__', { shape: [1], data: new Float32Array([2.5]) }],
      ['w', { shape: [2], dtype: 'F16', data: new Float32Array([1, 2]) }],
    ]);
    const written = new SafetensorsWeightStore(concatChunks(serializeSafetensors(tensors, JSON.parse('{"__proto__": "a metadata key too"}') as Record<string, string>)), 'written');
    assert.deepEqual(written.list().map((e) => e.name), ['__proto__', 'w']);
    assert.deepEqual([...written.values('__proto__')], [2.5]);
    // A patch an F16 tensor cannot hold rebuilds the file: every other tensor is written again by name.
    written.values('w')[0] = 1 / 3;
    written.commit(['w']);
    const rebuilt = new SafetensorsWeightStore(written.modelBytes(), 'rebuilt');
    assert.deepEqual(rebuilt.list().map((e) => [e.name, e.dtype]), [['__proto__', 'F32'], ['w', 'F32']]);
    assert.deepEqual([...rebuilt.values('__proto__')], [2.5]);
    assert.equal(rebuilt.values('w')[0], Math.fround(1 / 3));
    assert.deepEqual(Object.entries(rebuilt.header.metadata ?? {}), [['__proto__', 'a metadata key too']]);
  });

  test('a payload for another base is refused; the file is unchanged', async () => {
    const fx = await fixture('layers');
    const file = path.join(work, 'other.safetensors');
    const other = perturbed(fx.base, 0.001, 9);
    await writeSafetensorsFile(file, new Map(other.list().map((t) => [t.name, { shape: t.shape, data: other.values(t.name) }])));
    const before = await readFile(file);
    await assert.rejects(applyPayload(await openSafetensorsFile(file), fx.payload), BaseMismatchError);
    assert.ok(before.equals(await readFile(file)));
  });
});

describe('plain named Float32Arrays', () => {
  test('the same payload brings a memory copy to the same target', async () => {
    const fx = await fixture('graph');
    const store = memoryCopy(fx.base);
    assertApplied(await applyPayload(store, fx.payload), fx);
    assert.equal(fingerprintStore(hasher, store).fingerprint, fx.targetFingerprint);
  });
});
