/**
 * `ndiff release` and `ndiff update` end to end, in-process (cli/ndiff.ts `main`), against the
 * static server of test/helpers/release-server.ts: help that teaches; the model id from the
 * record (required once, never a folder name, a different one refused); `--plan`, one job per
 * line, `job`, `publish`; devices updated by `ndiff update` (TF.js folders, .onnx and .tflite files); a
 * lossy `--method topk` edge and the exact edge from the state it reached; a failing
 * `--health-check` (exit 5, model untouched).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { main } from '../cli/ndiff.ts';
import type { CliIO } from '../cli/common.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { getHasher } from '../src/core/hasher.ts';
import { openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { openOnnxFile } from '../src/io/onnx/files.ts';
import { validateManifest } from '../src/updater/manifest.ts';
import { readRecord } from '../src/release/record.ts';
import { baseAndTarget } from './helpers/models.ts';
import { perturbed } from './helpers/perturb.ts';
import { folderBytes, tempDir, writeStore } from './helpers/dirs.ts';
import { serveRelease, type ReleaseServer } from './helpers/release-server.ts';
import { graph, tensor, model as onnxModel, f32le, DT, node } from './helpers/onnx-build.ts';
import { buildTflite, f32Bytes, T } from './helpers/tflite-build.ts';
import { seededRandom } from '../src/core/random.ts';

async function ndiff(...argv: string[]) {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const io: CliIO = { out: (l) => stdout.push(l), err: (l) => stderr.push(l), progress: (l) => stderr.push(l) };
  const code = await main(argv, io);
  return { code, out: stdout.join('\n'), err: stderr.join('\n') };
}

const folderFingerprint = async (dir: string) => fingerprintStore(await getHasher(), await openTfjsModelDir(dir)).fingerprint;
const onnxFingerprint = async (file: string) => {
  const opened = await openOnnxFile(file);
  try {
    return fingerprintStore(await getHasher(), opened.contents).fingerprint;
  } finally {
    await opened.close();
  }
};

/** A one-MatMul ONNX model whose 64x64 weights are drawn with `seed`, `moved` of them changed. */
function onnxVersion(seed: number, moved: number): Uint8Array {
  const r = seededRandom(1);
  const w = Array.from({ length: 4096 }, () => r() - 0.5);
  const m = seededRandom(seed);
  for (let k = 0; k < moved; k++) w[Math.floor(m() * w.length)] += m() - 0.5;
  return onnxModel(graph({ name: 'main', initializers: [tensor({ name: 'w', dims: [64, 64], dataType: DT.FLOAT, raw: f32le(w) })], nodes: [node({ opType: 'MatMul', inputs: ['x', 'w'], outputs: ['y'] })] }));
}

describe('ndiff release and ndiff update', () => {
  let work: string;
  let server: ReleaseServer;
  let priv: string;
  let pub: string;
  before(async () => {
    work = await tempDir('nd-release-cli-');
    assert.equal((await ndiff('keygen', '--out', join(work, 'release'))).code, 0);
    priv = join(work, 'release.private.pem');
    pub = join(work, 'release.public.pem');
    server = await serveRelease(join(work, 'site'));
  });
  after(async () => {
    await server?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('--help teaches both commands', () => {
    const help = (...args: string[]) => spawnSync(process.execPath, [join(import.meta.dirname, '..', 'cli', 'ndiff.mjs'), ...args, '--help'], { encoding: 'utf8' });
    const rel = help('release', 'add');
    assert.equal(rel.status, 0, rel.stderr);
    // Words, whatever column the help wraps at.
    const relText = rel.stdout.replace(/\s+/g, ' ');
    for (const word of ['--model-id', '--history', '--plan', 'static host', 'release.json', 'teacher', '--eval']) assert.ok(relText.includes(word), `release add --help mentions ${word}`);
    const up = help('update');
    for (const word of ['--from', 'mirrors', '--public-key', '--health-check', 'full model', 'resume']) assert.ok(up.stdout.includes(word), `update --help mentions ${word}`);
    assert.match(help().stdout, /ndiff release[\s\S]*ndiff update[\s\S]*11 +a release file/);
  });

  test('TF.js: the model id comes from the record; --plan, job, publish; devices updated over HTTP', async () => {
    const site = join(work, 'site', 'kws');
    let m = baseAndTarget(3).base;
    for (let v = 1; v <= 3; v++) {
      await writeStore(join(work, 'models', `v${v}`), m);
      m = perturbed(m, 0.05, 10 + v);
    }
    const noId = await ndiff('release', 'add', '--release', site, '--model', join(work, 'models', 'v1'), '--key', priv);
    assert.equal(noId.code, 2);
    assert.match(noId.err, /--model-id/);
    assert.equal((await ndiff('release', 'add', '--release', site, '--model', join(work, 'models', 'v1'), '--model-id', 'kws', '--key', priv)).code, 0);
    // The folder is named v2: the id stays the record's.
    assert.equal((await ndiff('release', 'add', '--release', site, '--model', join(work, 'models', 'v2'), '--key', priv)).code, 0);
    const other = await ndiff('release', 'add', '--release', site, '--model', join(work, 'models', 'v3'), '--model-id', 'v3', '--key', priv);
    assert.equal(other.code, 2);
    assert.match(other.err, /release of model "kws"/);
    const plan = await ndiff('release', 'add', '--release', site, '--model', join(work, 'models', 'v3'), '--plan', '-q');
    assert.equal(plan.code, 0, plan.err);
    const jobs = plan.out.split('\n').map((l) => JSON.parse(l) as { id: string; command: string; fromVersion: number; inputs: string[] });
    assert.deepEqual(jobs.map((j) => j.id), ['v3-from-v2', 'v3-from-v1']);
    // Each line names the files its job reads (for a CI job given only those): its base's and target's.
    const record = await readRecord(site);
    const filesOf = (n: number) => record?.versions.find((v) => v.version === n)?.files.map((f) => f.file) ?? [];
    for (const j of jobs) assert.deepEqual([...j.inputs].sort(), [...new Set([...filesOf(j.fromVersion), ...filesOf(3)])].sort(), j.id);
    assert.equal((await ndiff('release', 'publish', '--release', site, '--key', priv)).code, 2, 'publishing before the jobs ran is refused');
    for (const j of jobs) assert.equal((await ndiff('release', 'job', '--release', site, '--id', j.id)).code, 0);
    assert.equal((await ndiff('release', 'publish', '--release', site, '--key', priv)).code, 0);
    const manifest = validateManifest((JSON.parse(await readFile(join(site, 'manifest.json'), 'utf8')) as { signed: unknown }).signed);
    assert.deepEqual([manifest.modelId, manifest.latest, manifest.payloads.length, manifest.release], ['kws', 3, 3, 3]);

    const target = await folderFingerprint(join(work, 'models', 'v3'));
    const device = join(work, 'devices', 'kws');
    await mkdir(join(device, '..'), { recursive: true });
    await cp(join(work, 'models', 'v1'), device, { recursive: true });
    const url = `${server.url}kws/`;
    const check = await ndiff('update', '--model', device, '--from', url, '--public-key', pub, '--model-id', 'kws', '--check');
    assert.match(check.out, /would download 1 payload/);
    const up = await ndiff('update', '--model', device, '--from', url, '--public-key', pub, '--model-id', 'kws');
    assert.equal(up.code, 0, up.err);
    assert.match(up.out, /updated to version 3/);
    assert.equal(await folderFingerprint(device), target);
    // The model id is remembered (the folder records it): no --model-id needed now.
    assert.match((await ndiff('update', '--model', device, '--from', url, '--public-key', pub)).out, /up to date/);

    // A failing health check: exit 5, the model as it was.
    const sick = join(work, 'devices', 'sick');
    await cp(join(work, 'models', 'v2'), sick, { recursive: true });
    const before = await folderBytes(sick);
    const bad = await ndiff('update', '--model', sick, '--from', url, '--public-key', pub, '--model-id', 'kws', '--health-check', 'test "$NDIFF_VERSION" = 4');
    assert.equal(bad.code, 5, bad.err);
    assert.deepEqual(await folderBytes(sick), before);
    // A wrong key: exit 3.
    assert.equal((await ndiff('keygen', '--out', join(work, 'stranger'))).code, 0);
    const stranger = await ndiff('update', '--model', sick, '--from', url, '--public-key', join(work, 'stranger.public.pem'), '--model-id', 'kws');
    assert.equal(stranger.code, 3);
  });

  test('a lossy --method topk edge, then the exact edge from the state it reached', async () => {
    const site = join(work, 'site', 'lossy');
    let m = baseAndTarget(5).base;
    for (let v = 1; v <= 3; v++) {
      await writeStore(join(work, 'lossy', `v${v}`), m);
      m = perturbed(m, 0.1, 20 + v);
    }
    const add = (v: number, ...extra: string[]) => ndiff('release', 'add', '--release', site, '--model', join(work, 'lossy', `v${v}`), '--model-id', 'lossy', '--key', priv, '-q', ...extra);
    assert.equal((await add(1)).code, 0);
    const topk = await add(2, '--method', 'topk', '--budget', '400');
    assert.equal(topk.code, 0, topk.err);
    const device = join(work, 'devices', 'lossy');
    await cp(join(work, 'lossy', 'v1'), device, { recursive: true });
    const url = `${server.url}lossy/`;
    assert.equal((await ndiff('update', '--model', device, '--from', url, '--public-key', pub, '--model-id', 'lossy')).code, 0);
    const reached = await folderFingerprint(device);
    assert.notEqual(reached, await folderFingerprint(join(work, 'lossy', 'v2')), 'the lossy payload ends near version 2, not at it');
    assert.match((await ndiff('update', '--model', device, '--from', url, '--public-key', pub)).out, /up to date/);
    // Version 3 planned; one edge gets its own policy (a budget), the edge from the lossy state stays exact.
    const plan = await ndiff('release', 'add', '--release', site, '--model', join(work, 'lossy', 'v3'), '--plan', '-q');
    const jobs = plan.out.split('\n').map((l) => JSON.parse(l) as { id: string; base: string });
    const fromLossy = jobs.find((j) => j.base === reached);
    assert.ok(fromLossy, 'a job from the state the lossy payload reached');
    assert.equal((await ndiff('release', 'job', '--release', site, '--id', fromLossy.id, '--method', 'topk', '--budget', '300')).code, 2);
    for (const j of jobs) {
      const extra = j.id === 'v3-from-v2' ? ['--method', 'topk', '--budget', '300'] : [];
      assert.equal((await ndiff('release', 'job', '--release', site, '--id', j.id, ...extra)).code, 0);
    }
    assert.equal((await ndiff('release', 'publish', '--release', site, '--key', priv)).code, 0);
    const record = JSON.parse(await readFile(join(site, 'release.json'), 'utf8')) as { payloads: { base: string; fromVersion: number; toVersion: number; exact: boolean; method: string }[] };
    assert.ok(record.payloads.some((p) => p.base === reached && p.toVersion === 3 && p.exact), 'an exact payload from the lossy state');
    assert.ok(record.payloads.some((p) => p.fromVersion === 2 && p.toVersion === 3 && p.method === 'topk' && !p.exact), 'the edge given its own budget');
    const up = await ndiff('update', '--model', device, '--from', url, '--public-key', pub);
    assert.equal(up.code, 0, up.err);
    assert.match(up.out, /payload v2 -> v3/);
    assert.equal(await folderFingerprint(device), await folderFingerprint(join(work, 'lossy', 'v3')));
  });

  test('ONNX: a release of .onnx files; a device updated by payload, an unknown one by the full model', async () => {
    const site = join(work, 'site', 'vad');
    for (const v of [1, 2, 3]) {
      const file = join(work, 'onnx', `v${v}`, 'vad.onnx');
      await mkdir(join(file, '..'), { recursive: true });
      await writeFile(file, onnxVersion(v, v === 1 ? 0 : 40 * v));
      const r = await ndiff('release', 'add', '--release', site, '--model', file, '--model-id', 'vad', '--key', priv, '-q');
      assert.equal(r.code, 0, r.err);
    }
    const url = `${server.url}vad/`;
    const target = await onnxFingerprint(join(work, 'onnx', 'v3', 'vad.onnx'));
    const device = join(work, 'devices', 'onnx', 'vad.onnx');
    await mkdir(join(device, '..'), { recursive: true });
    await cp(join(work, 'onnx', 'v1', 'vad.onnx'), device);
    const up = await ndiff('update', '--model', device, '--from', url, '--public-key', pub, '--model-id', 'vad');
    assert.equal(up.code, 0, up.err);
    assert.match(up.out, /by payloads/);
    assert.equal(await onnxFingerprint(device), target);
    const unknown = join(work, 'devices', 'onnx2', 'vad.onnx');
    await mkdir(join(unknown, '..'), { recursive: true });
    await writeFile(unknown, onnxVersion(99, 500));
    const full = await ndiff('update', '--model', unknown, '--from', url, '--public-key', pub, '--model-id', 'vad');
    assert.equal(full.code, 0, full.err);
    assert.match(full.out, /by the full model/);
    assert.equal(await onnxFingerprint(unknown), target);
  });

  test('LiteRT: a release of .tflite files; a device updated by payload to the version byte for byte, an unknown one by the full model', async () => {
    const site = join(work, 'site', 'dense');
    const version = (v: number) => {
      const r = seededRandom(v);
      return buildTflite({
        tensors: [
          { name: 'x', shape: [1, 64], type: T.FLOAT32 },
          { name: 'w', shape: [16, 64], type: T.FLOAT32, buffer: 1 },
          { name: 'y', shape: [1, 16], type: T.FLOAT32 },
        ],
        buffers: [f32Bytes(Array.from({ length: 1024 }, (_, i) => Math.sin(i) + (v > 1 ? 0.01 * (r() - 0.5) : 0)))],
        operators: [{ op: 9, inputs: [0, 1, -1], outputs: [2] }],
        inputs: [0],
        outputs: [2],
      });
    };
    for (const v of [1, 2, 3]) {
      const file = join(work, 'tflite', `v${v}`, 'dense.tflite');
      await mkdir(join(file, '..'), { recursive: true });
      await writeFile(file, version(v));
      const r = await ndiff('release', 'add', '--release', site, '--model', file, '--model-id', 'dense', '--key', priv, '-q');
      assert.equal(r.code, 0, r.err);
    }
    const manifest = validateManifest((JSON.parse(await readFile(join(site, 'manifest.json'), 'utf8')) as { signed: unknown }).signed);
    assert.equal(manifest.modelKind, 'tflite');
    const url = `${server.url}dense/`;
    const device = join(work, 'devices', 'tflite', 'dense.tflite');
    await mkdir(join(device, '..'), { recursive: true });
    await writeFile(device, version(1));
    const up = await ndiff('update', '--model', device, '--from', url, '--public-key', pub, '--model-id', 'dense');
    assert.equal(up.code, 0, up.err);
    assert.match(up.out, /by payloads/);
    assert.deepEqual(new Uint8Array(await readFile(device)), version(3));
    const unknown = join(work, 'devices', 'tflite2', 'dense.tflite');
    await mkdir(join(unknown, '..'), { recursive: true });
    await writeFile(unknown, version(99));
    const full = await ndiff('update', '--model', unknown, '--from', url, '--public-key', pub, '--model-id', 'dense');
    assert.equal(full.code, 0, full.err);
    assert.match(full.out, /by the full model/);
    assert.deepEqual(new Uint8Array(await readFile(unknown)), version(3));
  });
});
