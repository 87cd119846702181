/**
 * A release whose new version has another structure (ONNX and LiteRT files, TF.js folders):
 * `ndiff release add` plans and publishes a structural payload (format v7) for the edge instead of
 * failing the add, `publish` checks it by rebuilding the job's base as a device would, and `ndiff
 * update` on a device holding the old file downloads that payload (not the full model), rebuilds
 * the file crash-safely and ends at the new version byte for byte. A model held in memory cannot
 * take it and gets the full model (test/updater-structural-memory.test.ts counts the bytes). A TF.js device whose folder an earlier value payload rewrote
 * (shards under its own names) takes the structural payload built from the stored files.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { runNdiff as run } from './helpers/ndiff-run.ts';
import { validateManifest } from '../src/updater/manifest.ts';
import { readMsgpack } from '../src/core/msgpack-read.ts';
import { parseEnvelope } from '../src/apply/envelope.ts';
import type { WeightStore } from '../src/core/weight-store.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { getHasher } from '../src/core/hasher.ts';
import { OnnxWeightStore } from '../src/io/onnx/store.ts';
import { openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { Updater, weightStoreTarget } from '../src/updater/index.ts';
import { MemoryUpdaterState } from '../src/updater/state.ts';
import { serveRelease } from './helpers/release-server.ts';
import { structuralPair } from './helpers/structural-pairs.ts';

for (const kind of ['onnx', 'tflite'] as const) {
  test(`.${kind}: a new version of another structure is published as a structural payload, and ndiff update rebuilds the device's file with it`, { timeout: 300_000 }, async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'nd-release-structural-'));
    const server = await serveRelease(dir);
    try {
      const pair = structuralPair(kind, 1);
      const [v1, v2, device, key, site] = [`v1.${kind}`, `v2.${kind}`, `device.${kind}`, 'k', 'site'].map((f) => path.join(dir, f));
      await writeFile(v1, pair.base);
      await writeFile(v2, pair.target);
      assert.equal((await run('keygen', '--out', key)).code, 0);
      assert.equal((await run('release', 'add', '--release', site, '--model', v1, '--model-id', 'm', '--key', `${key}.private.pem`, '--expires', '30d')).code, 0);
      const add = await run('release', 'add', '--release', site, '--model', v2, '--key', `${key}.private.pem`, '--expires', '30d');
      assert.equal(add.code, 0, add.err);
      assert.match(add.err, /the structure changed .*a structural payload \(format v7\)/);
      const manifest = validateManifest((JSON.parse(await readFile(path.join(site, 'manifest.json'), 'utf8')) as { signed: unknown }).signed);
      assert.equal(manifest.payloads.length, 1);
      const p = manifest.payloads[0];
      assert.equal(p.exact, true);
      const signed = new Uint8Array(await readFile(path.join(site, p.file)));
      assert.equal((readMsgpack(parseEnvelope(signed).payload) as Record<string, unknown>).nd, 7, 'the published payload is a structural one, signed');
      assert.ok(p.length < pair.target.length);

      await writeFile(device, pair.base);
      const up = await run('update', '--model', device, '--from', `${server.url}site/`, '--public-key', `${key}.public.pem`, '--model-id', 'm', '--json');
      assert.equal(up.code, 0, up.err + up.out);
      const doc = JSON.parse(up.out) as { status: string; path: string; steps: { outcome: string }[] };
      assert.equal(doc.status, 'updated');
      assert.equal(doc.path, 'payloads', 'the payload, not the full model');
      assert.deepEqual(doc.steps.map((s) => s.outcome), ['applied']);
      assert.ok(Buffer.from(await readFile(device)).equals(Buffer.from(pair.target)), 'the device holds v2 byte for byte');
      assert.match((await run('update', '--model', device, '--from', `${server.url}site/`, '--public-key', `${key}.public.pem`)).out, /up to date/);

      if (kind === 'onnx') {
        // A model in memory holding v1: the structural payload is refused with a clear reason, and the full model installed.
        const hasher = await getHasher();
        let live: WeightStore = new OnnxWeightStore(pair.base);
        const memory = weightStoreTarget({
          store: () => live,
          install: async (files) => {
            const next = new OnnxWeightStore(files[0].bytes);
            return { store: next, commit: () => { live = next; }, discard: () => {} };
          },
        });
        const updater = new Updater({ modelId: 'm', urls: [`${server.url}site/`], trustedKeys: [await readFile(`${key}.public.pem`, 'utf8')], target: memory, state: new MemoryUpdaterState() });
        const r = await updater.update();
        assert.equal(r.status, 'updated', JSON.stringify(r));
        assert.deepEqual(r.steps.map((s) => s.outcome), ['installed'], 'the manifest marks the payload structural: the full model, without downloading the payload');
        assert.equal(p.structural, true);
        assert.equal(fingerprintStore(hasher, live).fingerprint, manifest.payloads[0].target);
      }
    } finally {
      await server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
}

/** A TF.js graph model's folder: model.json and one shard of float32 weights. */
async function tfjsFolder(dir: string, nodes: string[], weights: { name: string; values: number[] }[]): Promise<void> {
  await mkdir(dir, { recursive: true });
  const data = new Uint8Array(new Float32Array(weights.flatMap((w) => w.values)).buffer);
  await writeFile(path.join(dir, 'group1-shard1of1.bin'), data);
  await writeFile(path.join(dir, 'model.json'), JSON.stringify({
    format: 'graph-model', generatedBy: 'test', modelTopology: { node: nodes.map((n) => ({ name: n, op: n === 'x' ? 'Placeholder' : 'Conv2D' })) },
    weightsManifest: [{ paths: ['group1-shard1of1.bin'], weights: weights.map((w) => ({ name: w.name, shape: [w.values.length], dtype: 'float32' })) }],
  }));
}

test('TF.js folders: a version with a tensor and a node added is published as a structural payload, and a device whose folder an earlier payload rewrote takes it', { timeout: 300_000 }, async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-release-structural-tfjs-'));
  const server = await serveRelease(dir);
  try {
    const w = (n: number, seed: number) => Array.from({ length: n }, (_, i) => Math.fround(Math.sin(seed * 7 + i)));
    const [v1, v2, v3, device, key, site] = ['v1', 'v2', 'v3', 'device', 'k', 'site'].map((f) => path.join(dir, f));
    const convW = w(64, 1).map((x, i) => (i % 5 ? x : Math.fround(x + 0.01)));
    await tfjsFolder(v1, ['x', 'conv'], [{ name: 'conv/w', values: w(64, 1) }, { name: 'conv/b', values: w(8, 2) }]);
    // v2 changes values only; v3 adds a tensor and a node.
    await tfjsFolder(v2, ['x', 'conv'], [{ name: 'conv/w', values: convW }, { name: 'conv/b', values: w(8, 2) }]);
    await tfjsFolder(v3, ['x', 'conv', 'head'], [{ name: 'conv/w', values: convW }, { name: 'conv/b', values: w(8, 2) }, { name: 'head/w', values: w(16, 3) }]);
    assert.equal((await run('keygen', '--out', key)).code, 0);
    assert.equal((await run('release', 'add', '--release', site, '--model', v1, '--model-id', 'm', '--key', `${key}.private.pem`, '--expires', '30d')).code, 0);
    assert.equal((await run('release', 'add', '--release', site, '--model', v2, '--key', `${key}.private.pem`, '--expires', '30d')).code, 0);
    await cp(v1, device, { recursive: true });
    const update = async () => {
      const up = await run('update', '--model', device, '--from', `${server.url}site/`, '--public-key', `${key}.public.pem`, '--model-id', 'm', '--json');
      assert.equal(up.code, 0, up.err + up.out);
      return JSON.parse(up.out) as { status: string; path: string; fingerprint: string };
    };
    // v1 -> v2 by a value payload: the folder's shards are written again under the device's own names.
    const first = await update();
    assert.deepEqual([first.status, first.path], ['updated', 'payloads']);
    assert.notEqual(await readFile(path.join(device, 'model.json'), 'utf8'), await readFile(path.join(v2, 'model.json'), 'utf8'), 'the device\'s model.json is its own');
    const add = await run('release', 'add', '--release', site, '--model', v3, '--key', `${key}.private.pem`, '--expires', '30d');
    assert.equal(add.code, 0, add.err);
    assert.match(add.err, /a structural payload \(format v7\)/);
    const manifest = validateManifest((JSON.parse(await readFile(path.join(site, 'manifest.json'), 'utf8')) as { signed: unknown }).signed);
    const v3Fingerprint = manifest.versions[manifest.versions.length - 1].fingerprint;
    // v2 -> v3: the structural payload, built from v2's stored files, rebuilds the device's folder.
    const doc = await update();
    assert.deepEqual([doc.status, doc.path, doc.fingerprint], ['updated', 'payloads', v3Fingerprint]);
    assert.equal(fingerprintStore(await getHasher(), await openTfjsModelDir(device)).fingerprint, v3Fingerprint);
  } finally {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
});
