/**
 * A device whose model lives in memory (`weightStoreTarget`: a browser tab, React Native) cannot
 * take a structural payload (format v7 rebuilds model files). The manifest marks such payloads,
 * and the updater plans around them: such a device is offered the full package first and never
 * downloads a payload it cannot apply, from the version just before the change or from further
 * back (a chain through a structural step is no path for it). Bytes are counted as the release
 * server sent them. A file target still takes the structural payload.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { runNdiff as run } from './helpers/ndiff-run.ts';
import { validateManifest, type ReleaseManifest } from '../src/updater/manifest.ts';
import { planUpdate } from '../src/updater/plan.ts';
import type { WeightStore } from '../src/core/weight-store.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { getHasher } from '../src/core/hasher.ts';
import { OnnxWeightStore } from '../src/io/onnx/store.ts';
import { Updater, weightStoreTarget } from '../src/updater/index.ts';
import { MemoryUpdaterState } from '../src/updater/state.ts';
import { serveRelease } from './helpers/release-server.ts';
import { DT, f32le, graph, model, node, tensor, valueInfo } from './helpers/onnx-build.ts';

/** An ONNX model of float tensors (large enough that a payload is far smaller than the file). */
function onnxModel(tensors: { name: string; values: number[] }[]): Uint8Array {
  return model(graph({
    name: 'g',
    initializers: tensors.map((t) => tensor({ name: t.name, dims: [t.values.length], dataType: DT.FLOAT, raw: f32le(t.values) })),
    nodes: [node({ opType: 'Identity', inputs: ['x'], outputs: ['y'] })],
    inputs: [valueInfo('x', [1, 4])],
    outputs: [valueInfo('y', [1, 4])],
  }));
}

const values = (n: number, seed: number) => Array.from({ length: n }, (_, i) => Math.fround(Math.sin(seed * 13 + i * 0.37)));

test('a model held in memory is offered the full package, not a structural payload it cannot apply, and downloads nothing else', { timeout: 300_000 }, async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-updater-structural-memory-'));
  const server = await serveRelease(dir);
  try {
    const w1 = values(4096, 1);
    const w2 = w1.map((x, i) => (i % 97 ? x : Math.fround(x + 0.25)));
    // v2 changes a few values; v3 adds a tensor (another structure).
    const files = {
      v1: onnxModel([{ name: 'a', values: w1 }, { name: 'b', values: values(512, 2) }]),
      v2: onnxModel([{ name: 'a', values: w2 }, { name: 'b', values: values(512, 2) }]),
      v3: onnxModel([{ name: 'a', values: w2 }, { name: 'b', values: values(512, 2) }, { name: 'c', values: values(64, 3) }]),
    };
    const [key, site] = [path.join(dir, 'k'), path.join(dir, 'site')];
    assert.equal((await run('keygen', '--out', key)).code, 0);
    for (const [i, v] of (['v1', 'v2', 'v3'] as const).entries()) {
      await writeFile(path.join(dir, `${v}.onnx`), files[v]);
      const r = await run('release', 'add', '--release', site, '--model', path.join(dir, `${v}.onnx`), ...(i ? [] : ['--model-id', 'm']), '--key', `${key}.private.pem`, '--expires', '30d');
      assert.equal(r.code, 0, r.err);
    }
    const manifestBytes = await readFile(path.join(site, 'manifest.json'));
    const manifest: ReleaseManifest = validateManifest((JSON.parse(manifestBytes.toString('utf8')) as { signed: unknown }).signed);
    const into3 = manifest.payloads.filter((p) => p.toVersion === 3);
    assert.equal(into3.length, 2, 'payloads into v3 from v1 and from v2');
    assert.ok(into3.every((p) => p.structural === true), 'the manifest marks the payloads into v3 as structural');
    assert.ok(manifest.payloads.filter((p) => p.toVersion === 2).every((p) => p.structural === undefined), 'a value payload is not marked');
    const v3 = manifest.versions.find((v) => v.version === 3)!;
    const packageBytes = v3.files.reduce((n, f) => n + f.length, 0);
    assert.ok(into3.every((p) => p.length < packageBytes), 'a file target would take the smaller payload');

    // The planner: a target that rebuilds files takes the structural payload; one that cannot, the package.
    const v2Fingerprint = manifest.versions.find((v) => v.version === 2)!.fingerprint;
    assert.equal(planUpdate(manifest, v2Fingerprint)?.kind, 'payloads');
    const memoryPlan = planUpdate(manifest, v2Fingerprint, { noStructural: true });
    assert.deepEqual([memoryPlan?.kind, memoryPlan?.bytes], ['full', packageBytes]);

    const hasher = await getHasher();
    for (const from of ['v1', 'v2'] as const) {
      let live: WeightStore = new OnnxWeightStore(files[from]);
      const target = weightStoreTarget({
        store: () => live,
        install: async (pkg) => {
          const next = new OnnxWeightStore(pkg[0].bytes);
          return { store: next, commit: () => { live = next; }, discard: () => {} };
        },
      });
      server.log.length = 0;
      const updater = new Updater({ modelId: 'm', urls: [`${server.url}site/`], trustedKeys: [await readFile(`${key}.public.pem`, 'utf8')], target, state: new MemoryUpdaterState() });
      const r = await updater.update();
      assert.equal(r.status, 'updated', JSON.stringify(r));
      assert.deepEqual(r.steps.map((s) => `${s.kind} ${s.outcome}`), ['full installed'], `from ${from}: the full package first, nothing refused`);
      assert.equal(fingerprintStore(hasher, live).fingerprint, v3.fingerprint);
      const fetched = server.log.reduce((n, e) => n + e.sent, 0);
      assert.deepEqual(server.log.map((e) => e.path).sort(), ['/site/manifest.json', ...v3.files.map((f) => `/site/${f.file}`)].sort(), `from ${from}: only the manifest and the package are requested`);
      assert.equal(fetched, manifestBytes.length + packageBytes, `from ${from}: bytes fetched are the manifest's and the package's`);
    }

    // A release folder whose record predates the marks: the next publish marks its structural payloads.
    const recordFile = path.join(site, 'release.json');
    const record = JSON.parse(await readFile(recordFile, 'utf8')) as { payloads: { structural?: boolean }[] };
    for (const p of record.payloads) delete p.structural;
    await writeFile(recordFile, JSON.stringify(record));
    const republished = await run('release', 'publish', '--release', site, '--key', `${key}.private.pem`, '--expires', '30d');
    assert.equal(republished.code, 0, republished.err);
    const remarked = validateManifest((JSON.parse(await readFile(path.join(site, 'manifest.json'), 'utf8')) as { signed: unknown }).signed);
    assert.deepEqual(remarked.payloads.map((p) => [p.toVersion, p.structural ?? false]).sort(), manifest.payloads.map((p) => [p.toVersion, p.structural ?? false]).sort());

    // A file target holding v2 still takes the structural payload (not the package).
    const device = path.join(dir, 'device.onnx');
    await writeFile(device, files.v2);
    server.log.length = 0;
    const up = await run('update', '--model', device, '--from', `${server.url}site/`, '--public-key', `${key}.public.pem`, '--model-id', 'm', '--json');
    assert.equal(up.code, 0, up.err + up.out);
    assert.deepEqual((JSON.parse(up.out) as { steps: { kind: string; outcome: string }[] }).steps.map((s) => `${s.kind} ${s.outcome}`), ['payload applied']);
    assert.ok(Buffer.from(await readFile(device)).equals(Buffer.from(files.v3)), 'the device holds v3 byte for byte');
  } finally {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
});
