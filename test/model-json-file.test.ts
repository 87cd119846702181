/**
 * Model JSON files by path (issue 31, item 4): `--base`, `--target`, `verify --model` and
 * `apply --model` take a `<name>.json` with its shards beside it, several models to a folder as
 * `@vladmandic/human` ships them; an apply updates it in place under its own name, its own
 * files named after it, never touching the folder's other models (nor a shard one of them names);
 * a bare weights manifest (face-api) is refused saying what to pass.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { cp, mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { getHasher } from '../src/core/hasher.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { decodePayload } from '../src/core/format.ts';
import { openTfjsModel, openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { applyToModelDir, readFolderModelId, recoverModelDir } from '../src/io/tfjs/folder-update.ts';
import { FileSequenceStore } from '../src/io/durable/sequence-file.ts';
import { exactDiff } from '../src/diff/exact.ts';
import { main } from '../cli/ndiff.ts';
import { folderBytes, tempDir, withTfjsFrame, writeStore } from './helpers/dirs.ts';
import { baseAndTarget } from './helpers/models.ts';

const hasher = await getHasher();

/** The bytes of the files of `dir` whose names pass `keep`. */
async function filesOf(dir: string, keep: (name: string) => boolean): Promise<Map<string, string>> {
  return new Map([...(await folderBytes(dir))].filter(([name]) => keep(name)));
}

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

test('a <name>.json among other models: diff, fingerprint and verify read it; apply updates it in place, the other models untouched', async () => {
  const dir = await tempDir('nd-jsonfile-');
  const { base, target } = baseAndTarget(5);
  const other = baseAndTarget(6);
  for (const [v, store, face] of [['v1', base, other.base], ['v2', target, other.target]] as const) {
    await mkdir(join(dir, v));
    await shipAs(join(dir, v), 'movenet', store);
    await shipAs(join(dir, v), 'blazeface', face);
  }
  const shared = join(dir, 'v1');
  const movenet = join(shared, 'movenet.json');
  // The file's fingerprint is its model's: the same weights and frame in a folder of its own give the same.
  const fp = await ndiff('fingerprint', movenet);
  assert.equal(fp.code, 0, fp.err);
  assert.equal(fp.out.trim(), fingerprintStore(hasher, withTfjsFrame(base)).fingerprint);

  const out = join(dir, 'p.ndiff');
  const d = await ndiff('diff', '--base', movenet, '--target', join(dir, 'v2', 'movenet.json'), '--budget', 'all', '--model-id', 'movenet', '--out', out, '--model-out', join(dir, 'next'));
  assert.equal(d.code, 0, d.err);
  // --model-out: the model alone, in a folder of its own, at the target (its rewritten shard
  // under a content-derived name, as every update writes one).
  const next = (await readdir(join(dir, 'next'))).filter((f) => !f.startsWith('.')).sort();
  assert.equal(next.length, 2, next.join(', '));
  assert.match(next[0], /^group1-shard1of1-[0-9a-f]{16}\.bin$/);
  assert.equal(next[1], 'model.json');
  const payload = decodePayload(new Uint8Array(await readFile(out)));
  assert.equal(payload.header.modelId, 'movenet');
  assert.equal(payload.header.targetFingerprint, fingerprintStore(hasher, withTfjsFrame(target)).fingerprint);
  assert.equal(fingerprintStore(hasher, await openTfjsModelDir(join(dir, 'next'))).fingerprint, payload.header.targetFingerprint);

  const v = await ndiff('verify', out, '--model', movenet);
  assert.equal(v.code, 0, v.err);
  assert.match(v.out, /applies cleanly/);

  // Applied in place: the file keeps its name, its rewritten shard is named after it, the
  // applier's files beside it are named after it, and the other model's files are untouched.
  const faceBefore = await filesOf(shared, (f) => f.startsWith('blazeface'));
  const a = await ndiff('apply', '--model', movenet, '--patch', out);
  assert.equal(a.code, 0, a.err);
  assert.equal(fingerprintStore(hasher, await openTfjsModel(movenet)).fingerprint, payload.header.targetFingerprint);
  assert.deepEqual(await filesOf(shared, (f) => f.startsWith('blazeface')), faceBefore);
  const names = (await readdir(shared)).sort();
  const shard = names.find((f) => /^movenet\.group1-shard1of1-[0-9a-f]{16}\.bin$/.test(f));
  assert.ok(shard, names.join(', '));
  assert.deepEqual(names, ['.ndiff-state.json', 'blazeface.bin', 'blazeface.json', shard, 'movenet.json', 'movenet.json.ndiff-digests.json', 'movenet.json.ndiff-model.json'].sort(), 'the old shard, the journal, the kept version and the lock are gone');
  assert.deepEqual(JSON.parse(await readFile(movenet, 'utf8')).weightsManifest[0].paths, [shard]);
  assert.equal(await readFolderModelId(movenet), 'movenet');
  assert.equal(await new FileSequenceStore(join(shared, '.ndiff-state.json')).get('movenet'), payload.header.sequence);
  // The next diff from the file reads its recorded id; the same payload again is already applied.
  const again = await ndiff('apply', '--model', movenet, '--patch', out);
  assert.equal(again.code, 0, again.err);
  assert.match(again.out, /already at target/);

  // The other model of the folder, updated on its own: movenet's files are not touched.
  const faceOut = join(dir, 'face.ndiff');
  assert.equal((await ndiff('diff', '--base', join(shared, 'blazeface.json'), '--target', join(dir, 'v2', 'blazeface.json'), '--budget', 'all', '--model-id', 'blazeface', '--out', faceOut)).code, 0);
  const movenetBefore = await filesOf(shared, (f) => f.startsWith('movenet'));
  // A payload for the other model is refused by movenet's recorded id, nothing touched.
  const wrong = await ndiff('apply', '--model', movenet, '--patch', faceOut);
  assert.equal(wrong.code, 4, wrong.err);
  assert.match(wrong.err, /payload is for model "blazeface", this device holds "movenet"/);
  assert.deepEqual(await filesOf(shared, (f) => f.startsWith('movenet')), movenetBefore);
  const f = await ndiff('apply', '--model', join(shared, 'blazeface.json'), '--patch', faceOut);
  assert.equal(f.code, 0, f.err);
  assert.deepEqual(await filesOf(shared, (f) => f.startsWith('movenet')), movenetBefore);
  assert.equal(fingerprintStore(hasher, await openTfjsModel(join(shared, 'blazeface.json'))).fingerprint, fingerprintStore(hasher, await openTfjsModel(join(dir, 'v2', 'blazeface.json'))).fingerprint);
  const state = await new FileSequenceStore(join(shared, '.ndiff-state.json')).read();
  assert.deepEqual([...state.keys()].sort(), ['blazeface', 'movenet'], 'one state file for the folder, by model id');

  // --record writes the file's own digests; an applier file given as the model is refused.
  const r = await ndiff('fingerprint', join(dir, 'v2', 'movenet.json'), '--record');
  assert.equal(r.code, 0, r.err);
  assert.ok((await readdir(join(dir, 'v2'))).includes('movenet.json.ndiff-digests.json'));
  const bad = await ndiff('apply', '--model', join(shared, 'movenet.json.ndiff-model.json'), '--patch', out);
  assert.equal(bad.code, 2, bad.err);
  assert.match(bad.err, /a file of the applier/);
});

test('shared shards: an update never deletes a shard another model file of the folder names; recovery neither', async () => {
  const dir = await tempDir('nd-jsonfile-');
  const { base, target } = baseAndTarget(8);
  await shipAs(dir, 'a', base);
  // b.json is a copy of a.json naming the same shard (a.bin), as a folder may hold an alias.
  await writeFile(join(dir, 'b.json'), await readFile(join(dir, 'a.json')));
  const p1 = exactDiff(hasher, await openTfjsModel(join(dir, 'a.json')), withTfjsFrame(target), { modelId: 'a', sequence: 1 });
  const res = await applyToModelDir(join(dir, 'a.json'), p1.bytes, { state: null });
  assert.equal(res.status, 'applied');
  // a.bin is a's retired shard, but b.json names it: kept, and b still loads as the base.
  assert.ok((await readdir(dir)).includes('a.bin'));
  assert.equal(fingerprintStore(hasher, await openTfjsModel(join(dir, 'b.json'))).fingerprint, p1.payload.header.baseFingerprint);
  // Now c.json names a's writer-made shard, and a is updated again: that shard is retired by a,
  // named by c, and kept; a recovery of a (nothing to settle) deletes nothing c names either.
  const aShard = (JSON.parse(await readFile(join(dir, 'a.json'), 'utf8')) as { weightsManifest: { paths: string[] }[] }).weightsManifest[0].paths[0];
  await writeFile(join(dir, 'c.json'), await readFile(join(dir, 'a.json')));
  const moved = withTfjsFrame(target);
  moved.values('out/bias')[0] += 0.5;
  const p2 = exactDiff(hasher, await openTfjsModel(join(dir, 'a.json')), moved, { modelId: 'a', sequence: 2 });
  await applyToModelDir(join(dir, 'a.json'), p2.bytes, { state: null });
  assert.ok((await readdir(dir)).includes(aShard), `${aShard} is named by c.json`);
  assert.deepEqual((await recoverModelDir(join(dir, 'a.json'))).removed, []);
  assert.equal(fingerprintStore(hasher, await openTfjsModel(join(dir, 'c.json'))).fingerprint, p1.payload.header.targetFingerprint);
  // The store's own commit (no journal, old shards deleted at once) keeps them too: d.json names
  // a.bin as b.json does; b is rewritten, a.bin stays for d.
  await writeFile(join(dir, 'd.json'), await readFile(join(dir, 'b.json')));
  const b = await openTfjsModelDir(dir, { modelJsonFile: 'b.json' });
  b.values('out/bias')[1] += 0.25;
  await b.commit(['out/bias']);
  assert.match(b.files()[1], /^b\.group1-shard1of1-[0-9a-f]{16}\.bin$/);
  assert.ok((await readdir(dir)).includes('a.bin'), 'a.bin is named by d.json');
  assert.equal(fingerprintStore(hasher, await openTfjsModel(join(dir, 'd.json'))).fingerprint, p1.payload.header.baseFingerprint);
});

test('in a shared folder a manifest naming another model\'s file (or an applier file) as a shard is refused before anything is touched; a dry run writes nothing', async () => {
  const dir = await tempDir('nd-jsonfile-');
  const { base, target } = baseAndTarget(9);
  await shipAs(dir, 'a', base);
  await shipAs(dir, 'b', baseAndTarget(10).base);
  const p = exactDiff(hasher, await openTfjsModel(join(dir, 'a.json')), withTfjsFrame(target), { modelId: 'a', sequence: 1 });
  await writeFile(join(dir, 'p.ndiff'), p.bytes);
  // A dry run checks everything and writes nothing.
  const before = await folderBytes(dir);
  const dry = await ndiff('apply', '--model', join(dir, 'a.json'), '--patch', join(dir, 'p.ndiff'), '--dry-run');
  assert.equal(dry.code, 0, dry.err);
  assert.match(dry.out, /dry run: would patch/);
  assert.deepEqual(await folderBytes(dir), before);
  // a.json names b.json (another model's file) as its second shard: an update would retire and delete it.
  for (const shard of ['b.json', 'b.json.ndiff-model.json']) {
    const json = JSON.parse(await readFile(join(dir, 'a.json'), 'utf8')) as { weightsManifest: { paths: string[] }[] };
    await writeFile(join(dir, 'bad.json'), JSON.stringify({ ...json, weightsManifest: [{ ...json.weightsManifest[0], paths: [...json.weightsManifest[0].paths, shard] }] }));
    await writeFile(join(dir, 'b.json.ndiff-model.json'), '{"format": "neural-diff-model", "version": 1, "modelId": "b"}\n');
    const snapshot = await folderBytes(dir);
    const r = await ndiff('apply', '--model', join(dir, 'bad.json'), '--patch', join(dir, 'p.ndiff'));
    assert.equal(r.code, 7, r.err);
    assert.match(r.err, new RegExp(`names "${shard.replace(/\./g, '\\.')}" as a weight shard of group 1, which is (a model file of the folder|a file of the applier beside a model file)`));
    assert.deepEqual(await folderBytes(dir), snapshot, 'nothing touched');
  }
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

test('model.json beside other model files: an apply keeps the shard face.json also names (issue 44, case 9)', async () => {
  const dir = await tempDir('nd-jsonfile-');
  const { base, target } = baseAndTarget(8);
  await writeStore(dir, base);
  // face.json names model.json's own shard, as a folder may hold a second model file.
  await writeFile(join(dir, 'face.json'), await readFile(join(dir, 'model.json')));
  const shards = (JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as { weightsManifest: { paths: string[] }[] }).weightsManifest.flatMap((g) => g.paths);
  const p = exactDiff(hasher, await openTfjsModelDir(dir), withTfjsFrame(target), { modelId: 'kws', sequence: 1 });
  const r = await ndiff('apply', '--model', dir, '--patch', await writeTemp(p.bytes));
  assert.equal(r.code, 0, r.err);
  for (const s of shards) assert.ok((await readdir(dir)).includes(s), `${s} is named by face.json, and kept`);
  assert.equal(fingerprintStore(hasher, await openTfjsModel(join(dir, 'face.json'))).fingerprint, p.payload.header.baseFingerprint, 'face.json still loads');
  assert.equal(fingerprintStore(hasher, await openTfjsModelDir(dir)).fingerprint, p.payload.header.targetFingerprint);
});

test('a model file beside it too big to read: the apply refuses, every file as it was (fail closed, issue 44, case 10)', async () => {
  for (const layout of ['folder', 'shared'] as const) {
    const dir = await tempDir('nd-jsonfile-');
    const { base, target } = baseAndTarget(8);
    if (layout === 'folder') await writeStore(dir, base);
    else await shipAs(dir, 'a', base);
    const model = layout === 'folder' ? dir : join(dir, 'a.json');
    // big.json names the model's shard, behind 65 MiB of whitespace (JSON allows it): which shards it names cannot be known without reading it all.
    const json = await readFile(layout === 'folder' ? join(dir, 'model.json') : model, 'utf8');
    await writeFile(join(dir, 'big.json'), ' '.repeat(65 * 1024 * 1024) + json);
    const before = await filesOf(dir, (n) => n !== 'big.json');
    const p = exactDiff(hasher, await openTfjsModel(layout === 'folder' ? join(dir, 'model.json') : model), withTfjsFrame(target), { modelId: 'a', sequence: 1 });
    const r = await ndiff('apply', '--model', model, '--patch', await writeTemp(p.bytes));
    assert.equal(r.code, 7, r.err);
    assert.match(r.err, /big\.json sits beside .* cannot be read \(over 64 MiB\).*nothing was changed/);
    assert.deepEqual(await filesOf(dir, (n) => n !== 'big.json' && !n.startsWith('.ndiff-apply.lock')), before);
  }
});

async function writeTemp(bytes: Uint8Array): Promise<string> {
  const file = join(await tempDir('nd-jsonfile-p-'), 'p.ndiff');
  await writeFile(file, bytes);
  return file;
}
