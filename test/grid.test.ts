/**
 * Quantized models stay quantized (format v2 storage grids, docs/FORMAT.md §5.1): a patch that
 * names its tensor's grid leaves uint8 / uint16 / float16 tensors of a TF.js folder in their dtype
 * with the same quantization parameters, the folder the same size, and values tfjs reads back
 * bit for bit; out-of-range deltas clamp as the format says, the same bits with and without
 * WebAssembly; a grid that is not the device's is refused with the folder untouched; and
 * `store: 'float32'` keeps the old behaviour (patched tensors widened to float32).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { getHasher } from '../src/core/hasher.ts';
import { affineStep, snapValue, type AffineGrid } from '../src/core/grid.ts';
import { ModelMismatchError, TargetMismatchError } from '../src/core/errors.ts';
import { decodePayload } from '../src/core/format.ts';
import { encodePayload } from '../src/core/encode.ts';
import { applyTensorPatch, undoTensorPatch, useHashKernel } from '../src/core/patch-math.ts';
import { MemoryWeightStore } from '../src/core/weight-store.ts';
import { buildPayload, storageGrids, storedModelBytes, type PatchSpec } from '../src/diff/build.ts';
import { topkDiff } from '../src/topk-diff/encoder.ts';
import { applyPayload } from '../src/apply/apply.ts';
import { applyToModelDir } from '../src/io/tfjs/folder-update.ts';
import { fileSystemIO, openTfjsModelDir } from '../src/io/tfjs/index.ts';
import type { TfjsWeightEntry } from '../src/io/tfjs/manifest.ts';
import { folderBytes } from './helpers/dirs.ts';

let root: string;
let counter = 0;
before(async () => {
  await tf.setBackend('cpu');
  root = await mkdtemp(path.join(tmpdir(), 'nd-grid-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

const U8: AffineGrid = { dtype: 'uint8', scale: 0.003921568859368563, min: -0.5 };
const U16: AffineGrid = { dtype: 'uint16', scale: 0.0001, min: -3.2 };

/** A folder with a uint8, a uint16, a float16 and a float32 tensor (64 values each). */
async function quantizedFolder(): Promise<string> {
  const dir = path.join(root, `m${counter++}`);
  await (await import('node:fs/promises')).mkdir(dir);
  const n = 64;
  const u8 = Uint8Array.from({ length: n }, (_, i) => (i * 37) % 256);
  const u16 = new Uint8Array(2 * n);
  const f16 = new Uint8Array(2 * n);
  const f32 = new Uint8Array(4 * n);
  for (let i = 0; i < n; i++) {
    const q = (i * 977) % 65536;
    u16[2 * i] = q & 255;
    u16[2 * i + 1] = q >>> 8;
    const h = 0x3000 + i * 17; // halves between 0.125 and ~1
    f16[2 * i] = h & 255;
    f16[2 * i + 1] = h >>> 8;
    new DataView(f32.buffer).setFloat32(4 * i, (i - 32) / 64, true);
  }
  const weights: TfjsWeightEntry[] = [
    { name: 'a/q8', shape: [8, 8], dtype: 'float32', quantization: { dtype: 'uint8', scale: U8.scale, min: U8.min, original_dtype: 'float32' } },
    { name: 'b/q16', shape: [64], dtype: 'float32', quantization: { dtype: 'uint16', scale: U16.scale, min: U16.min } },
    { name: 'c/h', shape: [4, 16], dtype: 'float32', quantization: { dtype: 'float16' } },
    { name: 'd/f', shape: [64], dtype: 'float32' },
  ];
  const data = Buffer.concat([u8, u16, f16, f32]);
  await writeFile(path.join(dir, 'model.json'), JSON.stringify({ format: 'graph-model', modelTopology: {}, weightsManifest: [{ paths: ['group1-shard1of2.bin', 'group1-shard2of2.bin'], weights }] }));
  await writeFile(path.join(dir, 'group1-shard1of2.bin'), data.subarray(0, 150));
  await writeFile(path.join(dir, 'group1-shard2of2.bin'), data.subarray(150));
  return dir;
}

async function folderSize(dir: string): Promise<number> {
  let n = 0;
  for (const f of await readdir(dir)) if (f.endsWith('.bin')) n += (await stat(path.join(dir, f))).size;
  return n;
}

/** A patch per tensor, with deltas of a few grid steps (and some beyond the range). */
function specsFor(store: MemoryWeightStore | Awaited<ReturnType<typeof openTfjsModelDir>>): PatchSpec[] {
  return [
    // q at position i is (37 i) mod 256: 0, 111, 148, 77, 27 at 0, 3, 4, 9, 63; ±120 steps clamp at 3 and 4.
    { kind: 'sparse', name: 'a/q8', positions: Uint32Array.of(0, 3, 4, 9, 63), values: Float32Array.from([3, -120, 120, -2, 1].map((k) => k * U8.scale)), codec: 'i8' },
    { kind: 'dense', name: 'b/q16', values: Float32Array.from({ length: 64 }, (_, i) => (i - 30) * 7 * U16.scale), codec: 'f16' },
    { kind: 'hash', name: 'c/h', seed: 99, signed: true, buckets: Float32Array.of(0.01, -0.0031, 0.2), codec: 'f32' },
    { kind: 'sparse', name: 'd/f', positions: Uint32Array.of(1, 2), values: Float32Array.of(0.1, -0.1), codec: 'f32' },
  ].filter((s) => store.list().some((t) => t.name === s.name)) as PatchSpec[];
}

describe('storage grids', () => {
  test('uint8 / uint16 / float16 tensors keep their dtype, quantization and the folder its size; tfjs reads the applied values', async () => {
    const dir = await quantizedFolder();
    const before = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8'));
    const sizeBefore = await folderSize(dir);
    const base = await openTfjsModelDir(dir);
    assert.deepEqual(base.grid('a/q8'), U8);
    assert.deepEqual(base.grid('c/h'), { dtype: 'float16' });
    assert.equal(storedModelBytes(base), 64 * (1 + 2 + 2 + 4), 'budgets count the model as stored');
    const hasher = await getHasher();
    const built = buildPayload(hasher, MemoryWeightStore.copyOf(base), specsFor(base), { method: 'sparse', grids: storageGrids(base) });
    assert.equal(built.payload.header.version, 2);
    assert.deepEqual(built.payload.patches.map((p) => p.grid?.dtype ?? 'float32'), ['uint8', 'uint16', 'float16', 'float32']);
    // i8 on a uint8 grid: the scale is the grid step, so the values are whole steps.
    const q8 = built.payload.patches[0];
    assert.equal(q8.scale, Math.fround(U8.scale));

    const res = await applyToModelDir(dir, built.bytes, { state: null });
    assert.equal(res.status, 'applied');
    const after = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8'));
    assert.deepEqual(after.weightsManifest[0].weights, before.weightsManifest[0].weights, 'every manifest entry as before: same dtype and quantization');
    assert.equal(await folderSize(dir), sizeBefore, 'the weights take the same bytes');
    const reopened = await openTfjsModelDir(dir);
    for (const [name, expected] of built.targetValues) {
      assert.deepEqual(new Uint32Array(reopened.values(name).slice().buffer), new Uint32Array(expected.slice().buffer), `${name}: stored values are the target`);
    }
    // Whole steps, clamped where the delta left the range: 111 - 120 is 0, 148 + 120 is 255.
    const q = Array.from(reopened.values('a/q8'), (v) => affineStep(v, U8));
    assert.deepEqual([q[0], q[3], q[4], q[9], q[63]], [3, 0, 255, 75, 28]);
    // Stock tfjs decodes the folder to exactly these values.
    const artifacts = await fileSystemIO(dir).load();
    const decoded = tf.io.decodeWeights(artifacts.weightData!, artifacts.weightSpecs!);
    for (const t of reopened.list().filter((x) => x.patchable !== false)) {
      assert.deepEqual(new Uint32Array((decoded[t.name].dataSync() as Float32Array).slice().buffer), new Uint32Array(reopened.values(t.name).slice().buffer), `tfjs ${t.name}`);
    }
  });

  test("store: 'float32' leaves results unrounded (v1 payload); the folder then holds the patched tensors as float32", async () => {
    const dir = await quantizedFolder();
    const base = await openTfjsModelDir(dir);
    const hasher = await getHasher();
    const target = MemoryWeightStore.copyOf(base);
    target.values('a/q8')[5] += 0.0123;
    const diff = topkDiff(hasher, base, target, { budgetBytes: 4000, codec: 'f32', store: 'float32' });
    assert.equal(diff.payload.header.version, 1);
    await applyToModelDir(dir, diff.bytes, { state: null });
    const after = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8'));
    const q8 = after.weightsManifest[0].weights.find((w: TfjsWeightEntry) => w.name === 'a/q8');
    assert.equal(q8.quantization, undefined, 'widened to float32, as asked');
    // The default keeps the grid: the same change arrives rounded to the nearest step.
    const dir2 = await quantizedFolder();
    const base2 = await openTfjsModelDir(dir2);
    const onGrid = topkDiff(hasher, base2, target, { budgetBytes: 4000, codec: 'f32' });
    assert.equal(onGrid.payload.header.version, 2);
    await applyToModelDir(dir2, onGrid.bytes, { state: null });
    const kept = JSON.parse(await readFile(path.join(dir2, 'model.json'), 'utf8')).weightsManifest[0].weights.find((w: TfjsWeightEntry) => w.name === 'a/q8');
    assert.deepEqual(kept.quantization.dtype, 'uint8');
    const v = (await openTfjsModelDir(dir2)).values('a/q8')[5];
    assert.equal(v, snapValue(Math.fround(base.values('a/q8')[5] + 0.0123), U8));
  });

  test('a payload whose grid is not the folder\'s is refused before anything is written', async () => {
    const dir = await quantizedFolder();
    const base = await openTfjsModelDir(dir);
    const hasher = await getHasher();
    const otherScale: AffineGrid = { ...U8, scale: U8.scale * 2 };
    const built = buildPayload(hasher, MemoryWeightStore.copyOf(base), [{ kind: 'sparse', name: 'a/q8', positions: Uint32Array.of(1), values: Float32Array.of(otherScale.scale), codec: 'f32', grid: otherScale }], { method: 'sparse' });
    const untouched = await folderBytes(dir);
    await assert.rejects(applyToModelDir(dir, built.bytes, { state: null }), (e: unknown) => e instanceof ModelMismatchError && /stored as uint8 \(scale 0\.0039.*rounds it onto uint8 \(scale 0\.0078/.test(e.message));
    assert.deepEqual(await folderBytes(dir), untouched);
    // A float32 tensor given a uint8 grid: refused too.
    const wrongDtype = buildPayload(hasher, MemoryWeightStore.copyOf(base), [{ kind: 'sparse', name: 'd/f', positions: Uint32Array.of(1), values: Float32Array.of(0.5), codec: 'f32', grid: U8 }], { method: 'sparse' });
    await assert.rejects(applyToModelDir(dir, wrongDtype.bytes, { state: null }), (e: unknown) => e instanceof ModelMismatchError && /stored as float32/.test(e.message));
    assert.deepEqual(await folderBytes(dir), untouched);
  });

  test('grid patches give the same bits with the WebAssembly and the TypeScript hashed kernel, and undo restores every bit', async () => {
    const hasher = await getHasher();
    for (const grid of [U8, U16, { dtype: 'float16' } as const, { dtype: 'bfloat16' } as const]) {
      const n = 10_007;
      const values = Float32Array.from({ length: n }, (_, i) => snapValue(Math.sin(i) * 0.4, grid));
      const base = new MemoryWeightStore({ w: { shape: [n], data: values } });
      const built = buildPayload(hasher, base, [{ kind: 'hash', name: 'w', seed: 5, signed: true, buckets: Float32Array.from({ length: 31 }, (_, i) => (i - 15) * 0.013), codec: 'f32', grid }], { method: 'hash' });
      const patch = decodePayload(built.bytes).patches[0];
      const results: Uint32Array[] = [];
      for (const kernel of ['wasm', 'js'] as const) {
        const was = useHashKernel(kernel);
        try {
          const w = values.slice();
          const undo = applyTensorPatch(w, patch, true);
          results.push(new Uint32Array(w.slice().buffer));
          undoTensorPatch(w, undo!);
          assert.deepEqual(new Uint32Array(w.buffer), new Uint32Array(values.slice().buffer), `${grid.dtype} ${kernel}: undo restores every bit`);
        } finally {
          useHashKernel(was);
        }
      }
      assert.deepEqual(results[0], results[1], `${grid.dtype}: wasm and js kernels agree`);
      assert.deepEqual(results[0], new Uint32Array(built.targetValues.get('w')!.slice().buffer), `${grid.dtype}: the builder's target`);
    }
  });

  test('a grid patch that misses its target digest is undone bit for bit in memory', async () => {
    const hasher = await getHasher();
    const values = Float32Array.from({ length: 300 }, (_, i) => snapValue(i / 1000 - 0.1, U8));
    const base = new MemoryWeightStore({ w: { shape: [300], data: values.slice() } });
    const built = buildPayload(hasher, base, [{ kind: 'dense', name: 'w', values: new Float32Array(300).fill(5 * U8.scale), codec: 'f32' }], { method: 'dense', grids: new Map([['w', U8]]) });
    const tampered = decodePayload(built.bytes);
    const p = tampered.patches[0] as { values: Float32Array };
    p.values[7] = 9 * U8.scale; // still a whole number of steps, still finite: only the digest catches it
    const bytes = encodePayload(tampered);
    await assert.rejects(applyPayload(base, bytes), TargetMismatchError);
    assert.deepEqual(new Uint32Array(base.values('w').slice().buffer), new Uint32Array(values.buffer));
  });
});

describe('quantizing a folder the converter\'s way', () => {
  test('uint8: per-tensor range nudged so 0 is a grid value, ties to even; tfjs loads the result', async () => {
    const { converterQuantize, quantizeModelDir, writeModelDir } = await import('../src/io/tfjs/index.ts');
    // range [-1, fround(1.55)]: scale = range / 255; the zero point round(1 / scale) = 100 makes min = -100 scale
    const v = Float32Array.from([-1, 0, 1.55, 0.005, 0.015, 0.5]);
    const { q, scale, min } = converterQuantize(v, 'uint8');
    assert.equal(scale, (Math.fround(1.55) + 1) / 255);
    assert.equal(min, -100 * scale);
    assert.deepEqual([q[0], q[1], q[2]], [0, 100, 255], 'the ends, and 0 exactly at step 100');
    assert.equal(snapValue(0, { dtype: 'uint8', scale, min }), 0);
    for (let i = 0; i < v.length; i++) assert.ok(Math.abs(q[i] * scale + min - v[i]) <= scale / 2 + 1e-9, `value ${i}`);
    const constant = converterQuantize(Float32Array.of(0.25, 0.25), 'uint16');
    assert.deepEqual([Array.from(constant.q), constant.scale, constant.min], [[0, 0], 1, 0.25]);

    const src = path.join(root, `conv-src-${counter++}`);
    const w = Float32Array.from({ length: 300 }, (_, i) => Math.sin(i) * 0.3);
    await writeModelDir(src, { format: 'graph-model', modelTopology: {} }, { w: { shape: [300], data: w } });
    for (const dtype of ['uint8', 'uint16', 'float16'] as const) {
      const out = path.join(root, `conv-${dtype}-${counter++}`);
      const sizes = await quantizeModelDir(src, out, dtype);
      assert.equal(sizes.bytesBefore, 1200);
      assert.equal(sizes.bytesAfter, dtype === 'uint8' ? 300 : 600);
      const store = await openTfjsModelDir(out);
      const g = store.grid('w');
      assert.equal(g.dtype, dtype);
      const got = store.values('w');
      const tol = g.dtype === 'uint8' || g.dtype === 'uint16' ? g.scale / 2 + 1e-7 : 2 ** -11;
      for (let i = 0; i < w.length; i++) assert.ok(Math.abs(got[i] - w[i]) <= tol, `${dtype} ${i}: ${got[i]} vs ${w[i]}`);
      const artifacts = await fileSystemIO(out).load();
      const decoded = tf.io.decodeWeights(artifacts.weightData!, artifacts.weightSpecs!);
      assert.deepEqual(new Uint32Array((decoded.w.dataSync() as Float32Array).slice().buffer), new Uint32Array(got.slice().buffer), `tfjs reads ${dtype} the same`);
    }
  });
});
