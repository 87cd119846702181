/**
 * An ONNX model with external data files rebuilt on disk by a structural payload (format v7,
 * `rebuildOnnxFile`, src/io/durable/weights-file-rebuild.ts) whose new version names another set
 * of data files: one added (in a folder the model lacked), one dropped, one renamed. Each ends
 * with the folder holding exactly the target's files byte for byte, nothing more; a failed health
 * check and a power cut after the switch leave exactly the old files; a file in the way of a data
 * file to be created is refused with every file untouched; `ndiff apply` and the updater's ONNX
 * target take such payloads. The crash at every file operation is test/rebuild-crash.test.ts.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { getHasher } from '../src/core/hasher.ts';
import { HealthCheckError, ModelFormatError, PendingUpdateError, UsageError } from '../src/core/errors.ts';
import { structuralDiffFiles } from '../src/diff/structural.ts';
import { rebuildOnnxFile, recoverOnnxFile } from '../src/io/onnx/files.ts';
import { onnxFileTarget } from '../src/io/updater/targets.ts';
import { MemorySequenceStore } from '../src/apply/freshness.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { ONNX_FILES_REBUILD, OnnxFilesStore } from '../src/io/onnx/files-store.ts';
import { onnxDataFilesPair, type DataFilesChange, type PairFile } from './helpers/structural-pairs.ts';

const hasher = await getHasher();
const ofFiles = (files: readonly PairFile[]) => fingerprintStore(hasher, new OnnxFilesStore(files.map((f) => ({ path: f.path, bytes: f.bytes.slice() })))).fingerprint;

/** Every file and folder under `dir` but the applier's own (`.ndiff-*`, the lock), by path: a file's bytes as base64 and its mode, a folder as `folder`. */
async function snapshot(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    const rel = path.relative(dir, path.join(e.parentPath, e.name)).split(path.sep).join('/');
    if (/\.ndiff-(state|model|apply\.lock)/.test(e.name)) continue;
    if (e.isDirectory()) out.set(rel, 'folder');
    else if (e.isSymbolicLink()) out.set(rel, 'link');
    else out.set(rel, `${(await stat(path.join(dir, rel))).mode.toString(8)} ${(await readFile(path.join(dir, rel))).toString('base64')}`);
  }
  return out;
}

/** The snapshot a folder holding exactly `files` has (modes aside). */
function expected(files: readonly PairFile[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of files) {
    const segments = f.path.split('/');
    for (let i = 1; i < segments.length; i++) out.set(segments.slice(0, i).join('/'), 'folder');
    out.set(f.path, Buffer.from(f.bytes).toString('base64'));
  }
  return out;
}

/** A snapshot without file modes, to compare with {@link expected}. */
const contents = (s: Map<string, string>) => new Map([...s].map(([k, v]) => [k, v === 'folder' || v === 'link' ? v : v.split(' ')[1]]));

async function writeModel(dir: string, files: readonly PairFile[]): Promise<string> {
  for (const f of files) {
    await mkdir(path.dirname(path.join(dir, f.path)), { recursive: true });
    await writeFile(path.join(dir, f.path), f.bytes);
  }
  return path.join(dir, files[0].path);
}

function pairFor(seed: number, change: DataFilesChange) {
  const pair = onnxDataFilesPair(seed, change);
  const [baseFiles, targetFiles] = [pair.baseFiles as PairFile[], pair.targetFiles as PairFile[]];
  const payload = structuralDiffFiles(hasher, baseFiles, targetFiles, ONNX_FILES_REBUILD, { modelId: 'net', sequence: 1 }).bytes;
  return { baseFiles, targetFiles, payload };
}

async function withFolder(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-onnx-data-files-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const DATA_FILES: Record<DataFilesChange, { base: string[]; target: string[] }> = {
  added: { base: ['weights.bin'], target: ['weights.bin', 'extra/more.bin'] },
  dropped: { base: ['weights.bin', 'more.bin'], target: ['weights.bin'] },
  renamed: { base: ['weights.bin'], target: ['weights-v2.bin'] },
};

for (const change of ['added', 'dropped', 'renamed'] as const) {
  describe(`an ONNX model whose new version has a data file ${change}`, () => {
    for (const seed of [3, 11, 29]) {
      test(`pair ${seed}: rebuilt on disk to exactly the target's files; the same payload again is already applied`, () => withFolder(async (dir) => {
        const { baseFiles, targetFiles, payload } = pairFor(seed, change);
        assert.deepEqual(baseFiles.slice(1).map((f) => f.path), DATA_FILES[change].base);
        assert.deepEqual(targetFiles.slice(1).map((f) => f.path), DATA_FILES[change].target);
        const file = await writeModel(dir, baseFiles);
        const r = await rebuildOnnxFile(file, payload);
        assert.equal(r.status, 'applied');
        assert.ok(r.sequenceRecorded);
        assert.deepEqual(contents(await snapshot(dir)), expected(targetFiles), 'every file the target\'s, no other file or folder');
        const created = DATA_FILES[change].target.filter((p) => !DATA_FILES[change].base.includes(p));
        const dropped = DATA_FILES[change].base.filter((p) => !DATA_FILES[change].target.includes(p));
        for (const p of created) assert.ok(r.filesWritten.includes(path.join(dir, p)), `${p} reported written`);
        assert.deepEqual(r.filesRemoved, dropped.map((p) => path.join(dir, p)));
        // Only the state and the model id are the applier's.
        assert.deepEqual((await readdir(dir)).filter((n) => n.includes('.ndiff-')).sort(), ['model.onnx.ndiff-model.json', 'model.onnx.ndiff-state.json']);
        assert.equal((await rebuildOnnxFile(file, payload)).status, 'already-applied');
        assert.deepEqual(contents(await snapshot(dir)), expected(targetFiles));
      }));
    }

    test('a failed health check, a power cut after the switch and a dry run each leave exactly the old files', () => withFolder(async (work) => {
      const { baseFiles, targetFiles, payload } = pairFor(5, change);
      const live = path.join(work, 'live');
      const file = await writeModel(live, baseFiles);
      const before = await snapshot(live);
      assert.deepEqual(contents(before), expected(baseFiles));
      const dry = await rebuildOnnxFile(file, payload, { dryRun: true });
      assert.equal(dry.status, 'applied');
      assert.deepEqual(dry.files?.map((f) => f.path), targetFiles.map((f) => f.path));
      assert.deepEqual(await snapshot(live), before, 'a dry run writes nothing');
      // The health check runs with the new files in place and the dropped ones still there.
      let seen: Map<string, string> | undefined;
      await assert.rejects(rebuildOnnxFile(file, payload, { healthCheck: async () => { seen = await snapshot(live); return false; } }), HealthCheckError);
      for (const f of targetFiles) assert.equal(contents(seen!).get(f.path), Buffer.from(f.bytes).toString('base64'), `${f.path} switched in before the health check`);
      for (const p of DATA_FILES[change].base) assert.ok(seen!.has(p), `${p} still there until the confirmation`);
      assert.deepEqual(await snapshot(live), before, 'rolled back byte for byte, created files and folders gone');
      // Power lost after the switch: the folder as the health check sees it.
      const frozen = path.join(work, 'frozen');
      await assert.rejects(rebuildOnnxFile(file, payload, { healthCheck: async () => { await cp(live, frozen, { recursive: true }); return false; } }), HealthCheckError);
      const journal = JSON.parse(await readFile(path.join(frozen, 'model.onnx.ndiff-update.json'), 'utf8')) as { version: number; created: string[]; removed: string[] };
      assert.equal(journal.version, 2);
      assert.deepEqual(journal.created, DATA_FILES[change].target.filter((p) => !DATA_FILES[change].base.includes(p)));
      assert.deepEqual(journal.removed, DATA_FILES[change].base.filter((p) => !DATA_FILES[change].target.includes(p)));
      // The rebuild awaited a health check: without one the next command refuses, the files as the cut left them.
      const cut = await snapshot(frozen);
      await assert.rejects(recoverOnnxFile(path.join(frozen, 'model.onnx')), PendingUpdateError);
      assert.deepEqual(await snapshot(frozen), cut);
      const report = await recoverOnnxFile(path.join(frozen, 'model.onnx'), { healthCheck: () => false });
      assert.equal(report.rolledBack, true);
      assert.equal(report.pending?.outcome, 'rolled-back');
      assert.deepEqual(contents(await snapshot(frozen)), expected(baseFiles), 'recovery leaves exactly the old files');
      // The same rebuild then ends at the target there.
      assert.equal((await rebuildOnnxFile(path.join(frozen, 'model.onnx'), payload)).status, 'applied');
      assert.deepEqual(contents(await snapshot(frozen)), expected(targetFiles));
    }));
  });
}

describe('a data file the new version creates, where something already is', () => {
  test('an unrelated file at its path: refused with a typed error saying what was found, every file byte for byte untouched', () => withFolder(async (dir) => {
    for (const [change, inTheWay] of [['added', 'extra/more.bin'], ['renamed', 'weights-v2.bin']] as const) {
      const { baseFiles, payload } = pairFor(7, change);
      const sub = path.join(dir, change);
      const file = await writeModel(sub, baseFiles);
      await mkdir(path.dirname(path.join(sub, inTheWay)), { recursive: true });
      await writeFile(path.join(sub, inTheWay), 'another model\'s weights');
      const before = await snapshot(sub);
      await assert.rejects(rebuildOnnxFile(file, payload), (e: Error) => {
        assert.ok(e instanceof UsageError, String(e));
        assert.match(e.message, new RegExp(`creates the data file "${inTheWay}", but .* already exists and is not one of the model's files \\(a file of 23 bytes\\).*nothing was written.*move it away`));
        assert.equal((e as UsageError).details.location, inTheWay);
        return true;
      });
      assert.deepEqual(await snapshot(sub), before, `${change}: nothing written, nothing deleted`);
      await assert.rejects(rebuildOnnxFile(file, payload, { dryRun: true }), (e: Error) => e instanceof UsageError && /already exists/.test(e.message), 'a dry run says so too');
      assert.deepEqual((await readdir(sub)).filter((n) => /\.ndiff-(update|prev)|\.tmp-/.test(n)), []);
    }
  }));

  test('a file where its folder should be, and a folder reached through a symbolic link: refused, untouched', () => withFolder(async (dir) => {
    const { baseFiles, payload } = pairFor(7, 'added');
    const blocked = path.join(dir, 'blocked');
    const file = await writeModel(blocked, baseFiles);
    await writeFile(path.join(blocked, 'extra'), 'a file, not a folder');
    let before = await snapshot(blocked);
    await assert.rejects(rebuildOnnxFile(file, payload), (e: Error) => e instanceof UsageError && /extra is a file, not a folder/.test(e.message));
    assert.deepEqual(await snapshot(blocked), before);
    const linked = path.join(dir, 'linked');
    const outside = path.join(dir, 'outside');
    await mkdir(outside);
    const file2 = await writeModel(linked, baseFiles);
    await symlink(outside, path.join(linked, 'extra'));
    before = await snapshot(linked);
    await assert.rejects(rebuildOnnxFile(file2, payload), (e: Error) => e instanceof UsageError && /extra is a symbolic link/.test(e.message));
    assert.deepEqual(await snapshot(linked), before);
    assert.deepEqual(await readdir(outside), [], 'nothing written through the link');
  }));

  test('a journal naming a created file outside the folder is damaged: recovery refuses it, deleting nothing', () => withFolder(async (dir) => {
    const { baseFiles } = pairFor(7, 'added');
    const sub = path.join(dir, 'model');
    const file = await writeModel(sub, baseFiles);
    await writeFile(path.join(dir, 'precious.bin'), 'keep me');
    await writeFile(file + '.ndiff-update.json', JSON.stringify({ format: 'neural-diff-onnx-update', version: 2, files: [''], created: ['../precious.bin'] }));
    await assert.rejects(recoverOnnxFile(file), ModelFormatError);
    assert.equal(await readFile(path.join(dir, 'precious.bin'), 'utf8'), 'keep me');
  }));
});

describe('the delivery paths take such payloads', () => {
  test('ndiff apply rebuilds a model whose new version drops a data file, and reports it', () => withFolder(async (dir) => {
    const { baseFiles, targetFiles, payload } = pairFor(11, 'dropped');
    const file = await writeModel(path.join(dir, 'm'), baseFiles);
    const p = path.join(dir, 'p.ndiff');
    await writeFile(p, payload);
    const { main } = await import('../cli/ndiff.ts');
    const out: string[] = [];
    const err: string[] = [];
    const code = await main(['apply', '--model', file, '--patch', p, '--json'], { out: (l) => out.push(l), err: (l) => err.push(l), progress: (l) => err.push(l) });
    assert.equal(code, 0, err.join('\n'));
    const doc = JSON.parse(out.join('\n')) as Record<string, unknown>;
    assert.equal(doc.structural, true);
    assert.equal(doc.status, 'applied');
    assert.deepEqual(contents(await snapshot(path.join(dir, 'm'))), expected(targetFiles));
  }));

  test('the updater\'s ONNX target applies one that adds a data file in a new folder', () => withFolder(async (dir) => {
    const { baseFiles, targetFiles, payload } = pairFor(11, 'added');
    const file = await writeModel(dir, baseFiles);
    const target = onnxFileTarget(file);
    const sequenceStore = new MemorySequenceStore();
    await target.applyPayload(payload, { trustedKeys: [], expectedModelId: 'net', sequenceStore, now: () => Math.floor(Date.now() / 1000) });
    assert.deepEqual(contents(await snapshot(dir)), expected(targetFiles));
    assert.equal(await sequenceStore.get('net'), 1);
    assert.equal(await target.fingerprint(), ofFiles(targetFiles));
  }));
});
