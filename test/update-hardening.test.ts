/**
 * What an attack on `ndiff update` and shared model folders tried (issue 44, docs/SECURITY.md
 * "Round four"): a folder of user files given as the model, a damaged model.json beside the app's
 * own files, a model file in a shared folder, a full install racing an apply.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { main } from '../cli/ndiff.ts';
import type { CliIO } from '../cli/common.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { getHasher } from '../src/core/hasher.ts';
import { openTfjsModel, openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { lockModelDir } from '../src/io/durable/lock.ts';
import { baseAndTarget } from './helpers/models.ts';
import { perturbed } from './helpers/perturb.ts';
import { folderBytes, tempDir, writeStore } from './helpers/dirs.ts';
import { serveRelease, type ReleaseServer } from './helpers/release-server.ts';

async function ndiff(...argv: string[]) {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const io: CliIO = { out: (l) => stdout.push(l), err: (l) => stderr.push(l), progress: (l) => stderr.push(l) };
  const code = await main(argv, io);
  return { code, out: stdout.join('\n'), err: stderr.join('\n') };
}

const fingerprintOf = async (p: string) => fingerprintStore(await getHasher(), p.endsWith('.json') ? await openTfjsModel(p) : await openTfjsModelDir(p)).fingerprint;

describe('ndiff update on folders that are not (only) a model', () => {
  let work: string;
  let server: ReleaseServer;
  let pub: string;
  let url: string;
  before(async () => {
    work = await tempDir('nd-update-hard-');
    assert.equal((await ndiff('keygen', '--out', join(work, 'k'))).code, 0);
    pub = join(work, 'k.public.pem');
    let m = baseAndTarget(3).base;
    for (let v = 1; v <= 2; v++) {
      await writeStore(join(work, 'models', `v${v}`), m);
      m = perturbed(m, 0.05, 40 + v);
    }
    await writeStore(join(work, 'models', 'stranger'), perturbed(baseAndTarget(3).base, 0.3, 5));
    const site = join(work, 'site', 'kws');
    for (const v of ['v1', 'v2']) {
      const r = await ndiff('release', 'add', '--release', site, '--model', join(work, 'models', v), '--model-id', 'kws', '--key', join(work, 'k.private.pem'), '-q');
      assert.equal(r.code, 0, r.err);
    }
    server = await serveRelease(join(work, 'site'));
    url = `${server.url}kws/`;
  });
  after(async () => {
    await server?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });
  const update = (model: string, ...extra: string[]) => ndiff('update', '--model', model, '--from', url, '--public-key', pub, '--model-id', 'kws', '-q', ...extra);

  test('case 2: a folder of user files without model.json is refused, every file kept', async () => {
    const dir = join(work, 'documents');
    await mkdir(join(dir, 'photos'), { recursive: true });
    await writeFile(join(dir, 'notes.txt'), 'mine');
    await writeFile(join(dir, 'photos', 'a.jpg'), 'jpeg');
    const r = await update(dir);
    assert.equal(r.code, 7, r.err);
    assert.match(r.err, /holds 2 file\(s\) \(notes\.txt, photos\) but no model\.json: not a TF\.js model folder/);
    assert.deepEqual((await readdir(dir)).sort(), ['notes.txt', 'photos']);
    assert.equal(await readFile(join(dir, 'notes.txt'), 'utf8'), 'mine');
    assert.equal(await readFile(join(dir, 'photos', 'a.jpg'), 'utf8'), 'jpeg');
  });

  test('case 2: a full install keeps the files a model folder holds beside the model (damaged model.json, unknown model)', async () => {
    for (const how of ['damaged', 'stranger'] as const) {
      const dir = join(work, `device-${how}`);
      await cp(join(work, 'models', how === 'damaged' ? 'v1' : 'stranger'), dir, { recursive: true });
      if (how === 'damaged') await writeFile(join(dir, 'model.json'), '{"modelTopology": ');
      await writeFile(join(dir, 'labels.json'), '["yes","no"]');
      await mkdir(join(dir, 'assets'));
      await writeFile(join(dir, 'assets', 'icon.svg'), '<svg/>');
      const r = await update(dir);
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /installed the full model|version 2/);
      assert.equal(await fingerprintOf(dir), await fingerprintOf(join(work, 'models', 'v2')));
      assert.equal(await readFile(join(dir, 'labels.json'), 'utf8'), '["yes","no"]', `${how}: labels.json kept`);
      assert.equal(await readFile(join(dir, 'assets', 'icon.svg'), 'utf8'), '<svg/>', `${how}: assets/ kept`);
      const names = await readdir(dir);
      assert.ok(!names.some((n) => n.startsWith('.ndiff-apply.lock')), `no lock file left: ${names}`);
      if (how === 'stranger') {
        // The stranger's shards (named by its readable model.json) went with it.
        const v2 = new Set(await readdir(join(work, 'models', 'v2')));
        assert.deepEqual(names.filter((n) => n.endsWith('.bin')).every((n) => v2.has(n)), true);
      }
    }
  });

  test('case 3: a model file in a shared folder is updated by payload; a full install is refused, the file stays a file', async () => {
    const shared = join(work, 'shared');
    await mkdir(shared, { recursive: true });
    // kws.json + its shard as human ships models, beside face.json.
    const asFile = async (from: string, name: string) => {
      const json = JSON.parse(await readFile(join(from, 'model.json'), 'utf8')) as { weightsManifest: { paths: string[] }[] };
      json.weightsManifest = json.weightsManifest.map((g) => ({ ...g, paths: g.paths.map((p) => `${name}-${p}`) }));
      for (const p of (await readdir(from)).filter((n) => n.endsWith('.bin'))) await cp(join(from, p), join(shared, `${name}-${p}`));
      await writeFile(join(shared, `${name}.json`), JSON.stringify(json));
    };
    await asFile(join(work, 'models', 'stranger'), 'kws');
    await asFile(join(work, 'models', 'v1'), 'face');
    // The updater's own state folder (kws.json.ndiff-updater/) aside, the folder's files byte for byte.
    const filesOf = async () => new Map(await Promise.all((await readdir(shared, { withFileTypes: true })).filter((e) => e.isFile()).map(async (e) => [e.name, (await readFile(join(shared, e.name))).toString('base64')] as const)));
    const before = await filesOf();
    let r = await update(join(shared, 'kws.json'));
    // No way to version 2 (exit 5), and the step says why.
    assert.equal(r.code, 5, r.err);
    assert.match(r.out, /is a model file in a folder other models may share.*nothing was changed/);
    assert.deepEqual(await filesOf(), before, 'the shared folder byte for byte');
    // Holding version 1: the payload applies in place.
    await rm(join(shared, 'kws.json'));
    await asFile(join(work, 'models', 'v1'), 'kws');
    r = await update(join(shared, 'kws.json'));
    assert.equal(r.code, 0, r.err);
    assert.equal(await fingerprintOf(join(shared, 'kws.json')), await fingerprintOf(join(work, 'models', 'v2')));
    assert.equal(await fingerprintOf(join(shared, 'face.json')), await fingerprintOf(join(work, 'models', 'v1')), 'face.json untouched');
  });

  test('one writer: a full install waits for no one, it is refused while an apply holds the folder', async () => {
    const dir = join(work, 'device-locked');
    await cp(join(work, 'models', 'stranger'), dir, { recursive: true });
    const before = await folderBytes(dir);
    const unlock = await lockModelDir(dir);
    try {
      const r = await update(dir);
      assert.equal(r.code, 5, r.err);
      assert.match(r.out, /full model, .*: refused \(ND_MODEL_FORMAT: an apply or update to .* is already running in this process/);
    } finally {
      await unlock();
    }
    assert.deepEqual(await folderBytes(dir), before);
    const r = await update(dir);
    assert.equal(r.code, 0, r.err);
    assert.equal(await fingerprintOf(dir), await fingerprintOf(join(work, 'models', 'v2')));
  });

  test('issue 45, item 7: a network failure exits 11; --json prints the error; a failed health check is explained on later runs and --retry-failed tries again', async () => {
    const dir = join(work, 'device-exits');
    await cp(join(work, 'models', 'v1'), dir, { recursive: true });
    const before = await folderBytes(dir);
    // Every blob cut mid-body, every time: nothing can be downloaded.
    server.faults.push({ match: (p) => p.startsWith('/kws/blobs/'), times: 1000, kind: 'drop', at: 10 });
    let r: Awaited<ReturnType<typeof ndiff>>;
    try {
      r = await update(dir, '--json');
    } finally {
      server.faults.length = 0;
    }
    assert.equal(r.code, 11, r.err);
    const doc = JSON.parse(r.out) as { error: { code: string; exitCode: number; message: string }; result: { steps: unknown[] } };
    assert.deepEqual([doc.error.code, doc.error.exitCode], ['ND_DOWNLOAD', 11]);
    assert.match(doc.error.message, /check the network/);
    assert.ok(doc.result.steps.length >= 2, 'the steps tried are in the document');
    assert.deepEqual(await folderBytes(dir), before);
    // A health check that fails: exit 5; the next run says why nothing is tried, and how to try again.
    r = await update(dir, '--health-check', 'exit 1');
    assert.equal(r.code, 5, r.err);
    r = await update(dir);
    assert.equal(r.code, 5, r.err);
    assert.match(r.err, /failed a health check on this device before and are not tried again.*ndiff update --retry-failed/);
    assert.deepEqual(await folderBytes(dir), before);
    r = await update(dir, '--retry-failed');
    assert.equal(r.code, 0, r.err);
    assert.equal(await fingerprintOf(dir), await fingerprintOf(join(work, 'models', 'v2')));
  });
});
