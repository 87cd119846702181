/**
 * Codec xs (format v4, docs/FORMAT.md §4.3): exact payloads of float16 / bfloat16 / uint8 /
 * uint16 tensors carried in the stored width. On a float16 TF.js folder pair (made here: float32
 * folders quantized as the converter does), the exact payload takes xs, is at most the changed
 * values' stored size plus positions (and per-patch headers), applies to the folder bit for bit
 * (the shards equal the target's), and `codecs: ['x', 'xr']` / `--exact-codec xr` still give a
 * version 3 payload for older appliers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { getHasher } from '../src/core/hasher.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { decodePayload } from '../src/core/format.ts';
import { encodePositions } from '../src/core/encode.ts';
import { MemoryWeightStore, type WeightStore } from '../src/core/weight-store.ts';
import { snapValue, type StorageGrid } from '../src/core/grid.ts';
import { exactDiff } from '../src/diff/exact.ts';
import { applyPayload } from '../src/apply/index.ts';
import { openTfjsModelDir, quantizeModelDir } from '../src/io/tfjs/index.ts';
import { applyToModelDir } from '../src/io/tfjs/folder-update.ts';
import { main } from '../cli/ndiff.ts';
import { folderBytes, tempDir, writeStore } from './helpers/dirs.ts';
import { rng } from './helpers/models.ts';
import { cp } from 'node:fs/promises';

const hasher = await getHasher();

/** A float32 model of `n` weights per tensor, and a retrain of it: `changed` of the weights moved a little. */
function pair(n: number, changed: number, seed: number): { base: MemoryWeightStore; target: MemoryWeightStore } {
  const r = rng(seed);
  const names = ['block1/kernel', 'block2/kernel', 'head/bias'];
  const base = new MemoryWeightStore(names.map((name) => [name, { shape: [n], data: Float32Array.from({ length: n }, () => (r() - 0.5) * 0.4) }]));
  const target = base.clone();
  for (const name of names) {
    const w = target.values(name);
    for (let i = 0; i < n; i++) if (r() < changed) w[i] = w[i] * (1 + (r() - 0.5) * 0.05) + (r() - 0.5) * 1e-3;
  }
  return { base, target };
}

/** Folders of the pair, float16 as the TF.js converter writes them. */
async function float16Folders(n: number, changed: number, seed: number): Promise<{ dir: string; base: string; target: string }> {
  const dir = await tempDir('nd-xs-');
  const { base, target } = pair(n, changed, seed);
  await writeStore(join(dir, 'f32-base'), base);
  await writeStore(join(dir, 'f32-target'), target);
  await quantizeModelDir(join(dir, 'f32-base'), join(dir, 'base'), 'float16');
  await quantizeModelDir(join(dir, 'f32-target'), join(dir, 'target'), 'float16');
  return { dir, base: join(dir, 'base'), target: join(dir, 'target') };
}

/** Bytes of the gap-coded or bitmap positions of every changed weight, tensor by tensor. */
function positionBytes(base: WeightStore, target: WeightStore): { changed: number; bytes: number; tensors: number } {
  let changed = 0;
  let bytes = 0;
  let tensors = 0;
  for (const t of base.list().filter((e) => e.patchable !== false)) {
    const a = base.values(t.name);
    const b = target.values(t.name);
    const pos = Uint32Array.from({ length: a.length }, (_, i) => i).filter((i) => !Object.is(a[i], b[i]));
    if (!pos.length) continue;
    tensors++;
    changed += pos.length;
    bytes += encodePositions(pos, a.length).bytes.length;
  }
  return { changed, bytes, tensors };
}

for (const [label, changed] of [['a retrain (every weight moves)', 1], ['a sparse update (10% of the weights move)', 0.1]] as const) {
  test(`float16 folders, ${label}: codec xs, at most the changed halves plus positions, applied bit for bit`, async () => {
    const f = await float16Folders(4096, changed, 7);
    const base = await openTfjsModelDir(f.base);
    const target = await openTfjsModelDir(f.target);
    assert.ok(base.list().filter((e) => e.patchable !== false).every((e) => e.storage === 'float16'), 'the folders are float16');
    const built = exactDiff(hasher, base, target, { modelId: 'f16' });
    assert.equal(built.payload.header.version, 4);
    assert.ok(built.payload.patches.every((p) => p.codec === 'xs' && p.grid?.dtype === 'float16'), 'every patch carries stored bits');
    const pos = positionBytes(base, target);
    assert.equal(built.changed, pos.changed);
    // The stored size of the changed values (2 bytes a half) plus their positions, plus what every
    // patch and the header carry whatever the values (names, digests, keys): at most 100 bytes each.
    const bound = 2 * pos.changed + pos.bytes + 100 * (pos.tensors + 1);
    assert.ok(built.bytes.length <= bound, `${built.bytes.length} bytes, over the bound of ${bound}`);
    assert.ok(built.smallerThanModel);
    // Float32 XOR masks (format v3) take far more: the codec is what makes the difference.
    const v3 = exactDiff(hasher, base, target, { modelId: 'f16', codecs: ['x', 'xr'] });
    assert.equal(v3.payload.header.version, 3);
    assert.ok(built.bytes.length < 0.7 * v3.bytes.length, `xs ${built.bytes.length} vs x/xr ${v3.bytes.length}`);
    // Applied to a copy of the base folder: the target's fingerprint, and its shards byte for byte
    // (the tensors stay float16).
    const device = join(f.dir, 'device');
    await cp(f.base, device, { recursive: true });
    const res = await applyToModelDir(device, built.bytes, { state: null });
    assert.equal(res.status, 'applied');
    assert.equal(fingerprintStore(hasher, await openTfjsModelDir(device)).fingerprint, fingerprintStore(hasher, target).fingerprint);
    const shards = async (dir: string) => {
      const json = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as { weightsManifest: { paths: string[] }[] };
      return Buffer.concat(await Promise.all(json.weightsManifest.flatMap((g) => g.paths).map((p) => readFile(join(dir, p)))));
    };
    assert.deepEqual(await shards(device), await shards(f.target));
    // The version 3 payload applies as well (appliers read every version).
    const device3 = join(f.dir, 'device3');
    await cp(f.base, device3, { recursive: true });
    assert.equal((await applyToModelDir(device3, v3.bytes, { state: null })).status, 'applied');
    assert.deepEqual(await shards(device3), await shards(f.target));
  });
}

test('bfloat16, uint8 and uint16 tensors take codec xs too; a model in memory on the grid applies it', async () => {
  const r = rng(3);
  const grids: StorageGrid[] = [{ dtype: 'bfloat16' }, { dtype: 'uint8', scale: 0.01, min: -1.2 }, { dtype: 'uint16', scale: 1e-4, min: -3 }];
  for (const grid of grids) {
    const n = 3000;
    const a = Float32Array.from({ length: n }, () => snapValue((r() - 0.5) * 2, grid));
    const b = a.map((x) => snapValue(x + (r() - 0.5) * 0.02, grid));
    const store = (v: Float32Array): WeightStore => Object.assign(new MemoryWeightStore({ w: { shape: [n], data: v.slice() } }), { grid: () => grid });
    const built = exactDiff(hasher, store(a), store(b));
    assert.deepEqual(built.payload.patches.map((p) => p.codec), ['xs'], grid.dtype);
    const width = grid.dtype === 'uint8' ? 1 : 2;
    assert.ok(built.bytes.length <= width * built.changed + 200, `${grid.dtype}: ${built.bytes.length} bytes for ${built.changed} changed values of ${width} byte(s)`);
    const device = store(a);
    assert.equal((await applyPayload(device, built.bytes, { hasher })).status, 'applied');
    assert.deepEqual(new Uint32Array(device.values('w').buffer), new Uint32Array(b.buffer), grid.dtype);
  }
});

test('ndiff diff --budget all writes format v4 on float16 folders; --exact-codec xr writes v3; both reach the target', async () => {
  const f = await float16Folders(1024, 0.5, 11);
  const io = { out: () => {}, err: () => {}, progress: () => {} };
  for (const [extra, version] of [[[], 4], [['--exact-codec', 'xr'], 3]] as const) {
    const out = join(f.dir, `p${version}.ndiff`);
    assert.equal(await main(['diff', '--base', f.base, '--target', f.target, '--budget', 'all', '--model-id', 'pose', '--out', out, ...extra], io), 0);
    const bytes = new Uint8Array(await readFile(out));
    assert.equal(decodePayload(bytes).header.version, version);
    const device = join(f.dir, `device-v${version}`);
    await cp(f.base, device, { recursive: true });
    const before = await folderBytes(f.target);
    assert.equal(await main(['apply', '--model', device, '--patch', out, '--no-state'], io), 0);
    assert.equal(fingerprintStore(hasher, await openTfjsModelDir(device)).fingerprint, fingerprintStore(hasher, await openTfjsModelDir(f.target)).fingerprint);
    assert.deepEqual(await folderBytes(f.target), before, 'the target folder is only read');
  }
});
