/**
 * Model JSON files by path (issue 31, item 4): `--base`, `--target` and `verify --model` take a
 * `<name>.json` with its shards beside it, several models to a folder as `@vladmandic/human`
 * ships them; `ndiff apply --model <name>.json` is refused saying how to give the model a folder
 * of its own and that shard names change; a bare weights manifest (face-api) is refused saying
 * what to pass.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { cp, mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { getHasher } from '../src/core/hasher.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { decodePayload } from '../src/core/format.ts';
import { openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { main } from '../cli/ndiff.ts';
import { folderBytes, tempDir, withTfjsFrame, writeStore } from './helpers/dirs.ts';
import { baseAndTarget } from './helpers/models.ts';

const hasher = await getHasher();

/** Run the CLI, collecting what it prints. */
async function ndiff(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l), progress: () => {} });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** Write `store` as `<dir>/<name>.json` + `<dir>/<name>.bin`, the way human ships its models. */
async function shipAs(dir: string, name: string, store: Parameters<typeof writeStore>[1]): Promise<void> {
  const tmp = join(await tempDir('nd-jsonfile-'), name);
  await writeStore(tmp, store);
  const json = JSON.parse(await readFile(join(tmp, 'model.json'), 'utf8')) as { weightsManifest: { paths: string[] }[] };
  assert.equal(json.weightsManifest.length, 1);
  assert.equal(json.weightsManifest[0].paths.length, 1, 'one shard');
  await rename(join(tmp, json.weightsManifest[0].paths[0]), join(dir, `${name}.bin`));
  json.weightsManifest[0].paths = [`${name}.bin`];
  await writeFile(join(dir, `${name}.json`), JSON.stringify(json));
}

test('a <name>.json among other models: diff, fingerprint and verify read it; the payload reaches the target in a folder of its own', async () => {
  const dir = await tempDir('nd-jsonfile-');
  const { base, target } = baseAndTarget(5);
  const other = baseAndTarget(6).base;
  for (const [v, store] of [['v1', base], ['v2', target]] as const) {
    await mkdir(join(dir, v));
    await shipAs(join(dir, v), 'movenet', store);
    await shipAs(join(dir, v), 'blazeface', other);
  }
  // The file's fingerprint is its model's: the same weights and frame in a folder of its own give the same.
  const fp = await ndiff('fingerprint', join(dir, 'v1', 'movenet.json'));
  assert.equal(fp.code, 0, fp.err);
  assert.equal(fp.out.trim(), fingerprintStore(hasher, withTfjsFrame(base)).fingerprint);

  const before = await folderBytes(join(dir, 'v1'));
  const out = join(dir, 'p.ndiff');
  const d = await ndiff('diff', '--base', join(dir, 'v1', 'movenet.json'), '--target', join(dir, 'v2', 'movenet.json'), '--budget', 'all', '--model-id', 'movenet', '--out', out, '--model-out', join(dir, 'next'));
  assert.equal(d.code, 0, d.err);
  // --model-out: the model alone, in a folder of its own, at the target (its rewritten shard
  // under a content-derived name, as every update writes one).
  const next = (await readdir(join(dir, 'next'))).filter((f) => !f.startsWith('.')).sort();
  assert.equal(next.length, 2, next.join(', '));
  assert.match(next[0], /^group1-shard1of1-[0-9a-f]{16}\.bin$/);
  assert.equal(next[1], 'model.json');
  const payload = decodePayload(new Uint8Array(await readFile(out)));
  assert.equal(payload.header.modelId, 'movenet', 'the model id defaults to the file\'s name');
  assert.equal(payload.header.targetFingerprint, fingerprintStore(hasher, withTfjsFrame(target)).fingerprint);
  assert.equal(fingerprintStore(hasher, await openTfjsModelDir(join(dir, 'next'))).fingerprint, payload.header.targetFingerprint);

  const v = await ndiff('verify', out, '--model', join(dir, 'v1', 'movenet.json'));
  assert.equal(v.code, 0, v.err);
  assert.match(v.out, /applies cleanly/);

  // Applying in place to the file is refused, the shared folder byte for byte, saying what to do.
  const a = await ndiff('apply', '--model', join(dir, 'v1', 'movenet.json'), '--patch', out);
  assert.equal(a.code, 2, a.err);
  assert.match(a.err, /a model folder of its own/);
  assert.match(a.err, /cp ".*movenet\.json" m\/model\.json/);
  assert.match(a.err, /Shard names change where an update rewrites a shard/);
  assert.deepEqual(await folderBytes(join(dir, 'v1')), before);
  // Done as it says: the folder reaches the target.
  const own = join(dir, 'm');
  await mkdir(own);
  await cp(join(dir, 'v1', 'movenet.json'), join(own, 'model.json'));
  await cp(join(dir, 'v1', 'movenet.bin'), join(own, 'movenet.bin'));
  const applied = await ndiff('apply', '--model', own, '--patch', out, '--no-state');
  assert.equal(applied.code, 0, applied.err);
  assert.equal(fingerprintStore(hasher, await openTfjsModelDir(own)).fingerprint, payload.header.targetFingerprint);
  // --record writes per-folder digests: refused for a file.
  const r = await ndiff('fingerprint', join(dir, 'v1', 'movenet.json'), '--record');
  assert.equal(r.code, 2);
  assert.match(r.err, /--record writes the digests of a model folder/);
});

test('a weights manifest without a model (face-api) is refused, saying what to pass; wrapped as it says, it is read', async () => {
  const dir = await tempDir('nd-jsonfile-');
  const { base } = baseAndTarget(7);
  await shipAs(dir, 'tiny_face_detector_model', base);
  const json = JSON.parse(await readFile(join(dir, 'tiny_face_detector_model.json'), 'utf8')) as { weightsManifest: unknown[] };
  const manifest = join(dir, 'tiny_face_detector_model-weights_manifest.json');
  await writeFile(manifest, JSON.stringify(json.weightsManifest));
  for (const argv of [['fingerprint', manifest], ['diff', '--base', manifest, '--target', manifest, '--budget', 'all', '--model-id', 'face', '--out', join(dir, 'p.ndiff')]]) {
    const r = await ndiff(...argv);
    assert.equal(r.code, 7, r.err);
    assert.match(r.err, /is a weights manifest \(a list of \{paths, weights\} groups\) without a model/);
    assert.match(r.err, /"format": "weights-manifest", "modelTopology": \{"builtBy": "<package>@<version>"\}/);
  }
  // What the message says to pass: a folder whose model.json wraps the list.
  const wrapped = join(dir, 'wrapped');
  await mkdir(wrapped);
  await writeFile(join(wrapped, 'model.json'), JSON.stringify({ format: 'weights-manifest', modelTopology: { builtBy: 'face-api@1.7.15' }, weightsManifest: json.weightsManifest }));
  await cp(join(dir, 'tiny_face_detector_model.bin'), join(wrapped, 'tiny_face_detector_model.bin'));
  const ok = await ndiff('fingerprint', wrapped);
  assert.equal(ok.code, 0, ok.err);
  // The code version is in the frame: another one is another fingerprint.
  await writeFile(join(wrapped, 'model.json'), JSON.stringify({ format: 'weights-manifest', modelTopology: { builtBy: 'face-api@1.7.16' }, weightsManifest: json.weightsManifest }));
  assert.notEqual((await ndiff('fingerprint', wrapped)).out, ok.out);
});
