/**
 * Crash-safe updates of a model folder: each intermediate state of the protocol, built by hand,
 * is recovered to exactly the old or the new version; health-check rollback; verification of the
 * written files before the switch; the apply lock. (Real kills: crash-injection.test.ts.)
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { basename, join } from 'node:path';
import { Unpackr } from 'msgpackr';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, open, readdir, readFile, rename, writeFile, unlink } from 'node:fs/promises';
import { getHasher } from '../src/core/hasher.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { topkDiff } from '../src/topk-diff/encoder.ts';
import { BaseMismatchError, HealthCheckError, ModelFormatError, NeuralDiffError, TargetMismatchError } from '../src/core/errors.ts';
import { openTfjsModelDir, PREVIOUS_MODEL_JSON, listStaleFiles, writeModelDir } from '../src/io/tfjs/index.ts';
import { applyToModelDir, recoverModelDir, rollbackUpdate, lockModelDir, LOCK_FILE } from '../src/io/tfjs/folder-update.ts';
import { baseAndTarget, rng } from './helpers/models.ts';
import { MemoryWeightStore } from '../src/core/weight-store.ts';
import { buildPayload, type PatchSpec } from '../src/diff/build.ts';
import { tempDir, writeStore, folderBytes, withTfjsFrame } from './helpers/dirs.ts';
import { crashingFileOps } from './helpers/file-ops.ts';
import { decodePayload } from '../src/core/format.ts';
import { encodePayload, packPayload, type WirePatch } from '../src/core/encode.ts';
import { nodeFileOps, type FileOps } from '../src/io/durable/durable.ts';
import { applyPayload } from '../src/apply/index.ts';

const hasher = await getHasher();
// With the frame of the folders writeStore makes, so the fingerprints are the folders'.
const pair = baseAndTarget(51);
const [base, target] = [withTfjsFrame(pair.base), withTfjsFrame(pair.target)];
const built = topkDiff(hasher, base, target, { budgetBytes: 1_000_000, codec: 'f32', modelId: 'kws', sequence: 2 });
const OLD = fingerprintStore(hasher, base).fingerprint;
const NEW = built.payload.header.targetFingerprint;

/** What a loader sees: model.json and the shards it names, fingerprinted. */
async function loaderSees(dir: string): Promise<string> {
  return fingerprintStore(hasher, await openTfjsModelDir(dir)).fingerprint;
}

/** The model `built` makes of `base` (bit for bit what the folder holds after applying it). */
function patchedBase() {
  const v = base.clone();
  for (const [name, values] of built.targetValues) v.values(name).set(values);
  return v;
}

async function freshModel(): Promise<string> {
  const dir = join(await tempDir(), 'model');
  await writeStore(dir, base);
  return dir;
}

/**
 * The folder an apply leaves when its process dies right before the operation `crashAt` picks
 * (see test/helpers/file-ops.ts): everything before it done, nothing after.
 */
async function crashedApply(dir: string, crashAt: (op: string) => boolean, payload: Uint8Array = built.bytes): Promise<string> {
  const ops = crashingFileOps(crashAt);
  const err = await applyToModelDir(dir, payload, { fileOps: ops }).then(() => null, (e: unknown) => e);
  // The applier wraps what a failed file operation threw; the crash is what counts.
  assert.ok(ops.crashed() !== undefined && err !== null, `expected the simulated crash, got ${String(err)}`);
  return ops.crashed() as string;
}

/** The state right after the switch of an update (the previous version kept, not confirmed). */
async function switchedButUnconfirmed(dir: string): Promise<void> {
  await crashedApply(dir, (op) => op === 'unlink model.json.prev');
}

type WriteFile = (this: unknown, data: Uint8Array, ...rest: unknown[]) => Promise<void>;

/**
 * Apply `built` to `dir` with every FileHandle.writeFile replaced by `wrap(original)` (the
 * FileHandle prototype, found through a probe file), and put the original back. Returns the
 * error the apply threw, or null.
 */
async function applyWithWriteFile(dir: string, wrap: (original: WriteFile) => WriteFile): Promise<unknown> {
  const probe = await open(join(dir, 'probe'), 'w');
  const proto = Object.getPrototypeOf(probe) as { writeFile: WriteFile };
  await probe.close();
  await unlink(join(dir, 'probe'));
  const original = proto.writeFile;
  proto.writeFile = wrap(original);
  try {
    return await applyToModelDir(dir, built.bytes).then(() => null, (e: unknown) => e);
  } finally {
    proto.writeFile = original;
  }
}

describe('applyToModelDir', () => {
  test('applies, confirms, records the sequence, and leaves only the new files', async () => {
    const dir = await freshModel();
    const res = await applyToModelDir(dir, built.bytes);
    assert.equal(res.status, 'applied');
    assert.equal(res.sequenceRecorded, true);
    assert.deepEqual(res.recovery.actions, []);
    assert.equal(await loaderSees(dir), NEW);
    const files = (await readdir(dir)).sort();
    assert.deepEqual(files.filter((f) => !f.endsWith('.bin')), ['.ndiff-digests.json', '.ndiff-folder.json', '.ndiff-state.json', 'model.json']);
    assert.equal(files.filter((f) => f.endsWith('.bin')).length, 1);
    assert.deepEqual(await listStaleFiles(dir), []);
    const state = JSON.parse(await readFile(join(dir, '.ndiff-state.json'), 'utf8'));
    assert.equal(state.models.kws.sequence, 2);
    assert.equal(state.models.kws.fingerprint, NEW);
    const again = await applyToModelDir(dir, built.bytes);
    assert.equal(again.status, 'already-applied');
  });

  test('a failing health check rolls the folder back byte for byte; the check saw the new version on disk', async () => {
    const dir = await freshModel();
    const before = await folderBytes(dir);
    let seenOnDisk = '';
    const err = await applyToModelDir(dir, built.bytes, {
      healthCheck: async ({ dir: d }) => {
        seenOnDisk = await loaderSees(d);
        return false;
      },
    }).then(() => null, (e: unknown) => e);
    assert.ok(err instanceof HealthCheckError, String(err));
    assert.equal(seenOnDisk, NEW);
    assert.deepEqual(await folderBytes(dir), before);
    assert.equal(await loaderSees(dir), OLD);
  });

  test('files that do not read back as the target are never switched to (a disk that corrupts writes)', async () => {
    const dir = await freshModel();
    const before = await folderBytes(dir);
    // every FileHandle.writeFile of more than 4 KB (the shards) flips its last byte
    const err = await applyWithWriteFile(dir, (original) => function (this: unknown, data: Uint8Array, ...rest: unknown[]) {
      if (data instanceof Uint8Array && data.length > 4096) {
        data = data.slice();
        data[data.length - 1] ^= 0x40;
      }
      return original.call(this, data, ...rest);
    });
    assert.ok(err instanceof TargetMismatchError, String(err));
    assert.match((err as Error).message, /read back as .*not the target .*nothing was switched and the model is unchanged: check the storage/);
    assert.deepEqual(await folderBytes(dir), before);
  });

  test('a write that fails among shards written at once (disk full) leaves the folder byte for byte, with no leftovers', async () => {
    const dir = join(await tempDir(), 'model');
    const tensors = new Map(base.list().filter((t) => t.patchable !== false).map((t) => [t.name, { shape: t.shape, data: base.values(t.name) }]));
    await writeModelDir(dir, { format: 'graph-model', generatedBy: 'neural-diff tests', modelTopology: {} }, tensors, { shardBytes: 2048 });
    const before = await folderBytes(dir);
    assert.ok([...before.keys()].filter((f) => f.endsWith('.bin')).length >= 8, 'a model of many shards');
    // Shard files are written before model.json: the third file written to is a shard.
    const files = new Set<unknown>();
    const err = await applyWithWriteFile(dir, (original) => async function (this: unknown, data: Uint8Array, ...rest: unknown[]) {
      files.add(this);
      if ([...files].indexOf(this) === 2) {
        await new Promise((r) => setTimeout(r, 20)); // the other writes get ahead of this one
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      }
      return original.call(this, data, ...rest);
    });
    assert.ok(files.size > 3, `several shards were being written (${files.size} files)`);
    assert.ok(err instanceof NeuralDiffError && err.code === 'ND_COMMIT_FAILED', String(err));
    assert.match((err as Error).message, /ENOSPC.*retry, or fetch the full model/);
    assert.deepEqual(await folderBytes(dir), before);
    const res = await applyToModelDir(dir, built.bytes);
    assert.equal(res.status, 'applied');
    assert.equal(await loaderSees(dir), NEW);
  });

  test('shards are written while later tensors are patched; a later tensor that misses its target leaves the folder byte for byte, with no leftovers', async () => {
    const dir = join(await tempDir(), 'model');
    const tensors = new Map(base.list().filter((t) => t.patchable !== false).map((t) => [t.name, { shape: t.shape, data: base.values(t.name) }]));
    await writeModelDir(dir, { format: 'graph-model', generatedBy: 'neural-diff tests', modelTopology: {} }, tensors, { shardBytes: 2048 });
    const before = await folderBytes(dir);
    // The payload with one value of the last tensor it patches (in the folder's order) changed:
    // well-formed, but that tensor misses its target digest, after every other one was patched.
    const doc = decodePayload(built.bytes);
    const last = base.list().map((t) => t.name).filter((n) => doc.patches.some((p) => p.name === n)).pop();
    const wires = doc.patches.map((p) => (new Unpackr({ useRecords: false, mapsAsObjects: true }).unpack(encodePayload({ header: doc.header, patches: [p] })) as { p: WirePatch[] }).p[0]);
    const tampered = wires.find((w) => w.t === last) as WirePatch;
    tampered.v = tampered.v.slice();
    tampered.v[2] ^= 0x80; // the exponent's lowest bit of its first delta (f32): doubled or halved
    const created: string[] = [];
    const ops: FileOps = {
      ...nodeFileOps,
      writeNewFile: (file, parts, o) => (created.push(basename(file)), nodeFileOps.writeNewFile(file, parts, o)),
      openNewFile: (file) => (created.push(basename(file)), nodeFileOps.openNewFile!(file)),
    };
    const err = await applyToModelDir(dir, packPayload(doc.header, wires), { fileOps: ops }).then(() => null, (e: unknown) => e);
    assert.ok(err instanceof TargetMismatchError, String(err));
    assert.match((err as Error).message, /undone and the model is unchanged/);
    // A shard written whole (named by its content) or a piece at a time (named at the end).
    const shardsWritten = created.filter((f) => /^group1-shard\d+of\d+(-[0-9a-f]{16})?\.bin\.tmp-/.test(f));
    assert.ok(shardsWritten.length >= 3, `shards were written before the last tensor was patched: ${created.join(', ')}`);
    assert.deepEqual(await folderBytes(dir), before);
    // and the untampered payload then applies as usual
    assert.equal((await applyToModelDir(dir, built.bytes)).status, 'applied');
    assert.equal(await loaderSees(dir), NEW);
    assert.deepEqual(await listStaleFiles(dir), []);
  });

  test('a store opened with stageWrites and a failing health check: the second commit (going back) writes the old bytes, not the staged new ones', async () => {
    const dir = join(await tempDir(), 'model');
    const tensors = new Map(base.list().filter((t) => t.patchable !== false).map((t) => [t.name, { shape: t.shape, data: base.values(t.name) }]));
    await writeModelDir(dir, { format: 'graph-model', generatedBy: 'neural-diff tests', modelTopology: {} }, tensors, { shardBytes: 2048 });
    const store = await openTfjsModelDir(dir, { stageWrites: true });
    try {
      await assert.rejects(applyPayload(store, built.bytes, { healthCheck: () => false }), HealthCheckError);
    } finally {
      await store.dropStaged();
    }
    assert.equal(fingerprintStore(hasher, store).fingerprint, OLD, 'in memory: the old model');
    assert.equal(await loaderSees(dir), OLD, 'on disk: the old model too, as the error says');
    assert.deepEqual(await listStaleFiles(dir), []);
  });

  test('I/O errors right after the switch, and in the rollback after it: the shards model.json names are never deleted', async () => {
    const dir = join(await tempDir(), 'model');
    const tensors = new Map(base.list().filter((t) => t.patchable !== false).map((t) => [t.name, { shape: t.shape, data: base.values(t.name) }]));
    await writeModelDir(dir, { format: 'graph-model', generatedBy: 'neural-diff tests', modelTopology: {} }, tensors, { shardBytes: 2048 });
    let switched = false;
    const eio = () => Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });
    const ops: FileOps = {
      ...nodeFileOps,
      async rename(from, to) {
        if (basename(to) === 'model.json' && basename(from) === PREVIOUS_MODEL_JSON) throw eio(); // the rollback
        await nodeFileOps.rename(from, to);
        if (basename(to) === 'model.json') switched = true;
      },
      async syncDir(d) {
        if (switched) throw eio();
        await nodeFileOps.syncDir(d);
      },
    };
    const err = await applyToModelDir(dir, built.bytes, { fileOps: ops }).then(() => null, (e: unknown) => e);
    assert.ok(err instanceof NeuralDiffError, String(err));
    // Whatever version model.json is now, every file it names is there: a loader reads a whole model.
    const seen = await loaderSees(dir);
    assert.ok(seen === NEW || seen === OLD, seen);
    // and the next apply (I/O healthy again) recovers and finishes
    assert.equal((await applyToModelDir(dir, built.bytes)).status, 'applied');
    assert.equal(await loaderSees(dir), NEW);
    assert.deepEqual(await listStaleFiles(dir), []);
  });

  test('dry run: everything checked, nothing written', async () => {
    const dir = await freshModel();
    const before = await folderBytes(dir);
    const res = await applyToModelDir(dir, built.bytes, { dryRun: true });
    assert.equal(res.status, 'applied');
    assert.equal(res.sequenceRecorded, false);
    assert.deepEqual(await folderBytes(dir), before);
  });

  test('a refused payload touches nothing, not even an interrupted update waiting for recovery', async () => {
    const dir = await freshModel();
    await switchedButUnconfirmed(dir);
    const before = await folderBytes(dir);
    await assert.rejects(applyToModelDir(dir, built.bytes.subarray(0, 50)), /corrupt/);
    assert.deepEqual(await folderBytes(dir), before);
  });
});

describe('recoverModelDir: every intermediate state ends as exactly the old or the new version', () => {
  test('clean folder: nothing to do', async () => {
    const dir = await freshModel();
    const before = await folderBytes(dir);
    const r = await recoverModelDir(dir);
    assert.deepEqual(r, { actions: [], rolledBack: false, removed: [] });
    assert.deepEqual(await folderBytes(dir), before);
  });

  test('crashed before the switch (journal, new shards, model.json.tmp and model.json.prev written): old version, leftovers gone', async () => {
    const dir = await freshModel();
    const before = await folderBytes(dir);
    await crashedApply(dir, (op) => /^rename model\.json\.tmp-.* -> model\.json$/.test(op));
    const files = await readdir(dir);
    for (const f of ['.ndiff-journal.json', PREVIOUS_MODEL_JSON]) assert.ok(files.includes(f), `${f} in ${files}`);
    await writeFile(join(dir, 'group1-shard1of1-0123456789abcdef.bin.tmp-4242-0a1b2c3d4e5f'), new Uint8Array(3));
    assert.equal(await loaderSees(dir), OLD);
    const r = await recoverModelDir(dir);
    assert.equal(r.rolledBack, false);
    assert.match(r.actions[0], /^update [0-9]+-[0-9a-f]+ was interrupted before its switch/);
    await unlink(join(dir, [...(await readdir(dir))].find((f) => f.startsWith('.ndiff-apply.lock-')) as string)); // the dead apply's lock
    assert.deepEqual(await folderBytes(dir), before);
  });

  test('crashed after the switch, before confirmation: rolled back to the old version, new shards removed', async () => {
    const dir = await freshModel();
    const before = await folderBytes(dir);
    await switchedButUnconfirmed(dir);
    assert.equal(await loaderSees(dir), NEW);
    const r = await recoverModelDir(dir);
    assert.equal(r.rolledBack, true);
    assert.match(r.actions[0], /after its switch but before it was confirmed: rolled back/);
    for (const f of await readdir(dir)) if (f.startsWith('.ndiff-apply.lock-')) await unlink(join(dir, f));
    assert.deepEqual(await folderBytes(dir), before);
    assert.equal(await loaderSees(dir), OLD);
  });

  test('crashed inside the confirmation (previous version dropped, old shards not yet): new version kept, old shards deleted', async () => {
    const dir = await freshModel();
    const oldShards = (await readdir(dir)).filter((f) => f.endsWith('.bin'));
    await crashedApply(dir, (op) => op === `unlink ${oldShards[0]}`);
    assert.ok(!(await readdir(dir)).includes(PREVIOUS_MODEL_JSON));
    const r = await recoverModelDir(dir);
    assert.equal(r.rolledBack, false);
    assert.match(r.actions[0], /was confirmed; finished deleting the shards of the previous version/);
    assert.equal(await loaderSees(dir), NEW);
    const files = await readdir(dir);
    for (const s of oldShards) assert.ok(!files.includes(s), `${s} kept`);
    assert.ok(!files.includes('.ndiff-journal.json'));
    assert.deepEqual(await listStaleFiles(dir), []);
  });

  test('a power cut inside the confirmation that kept model.json.prev but lost an old shard: the confirmation is finished, never a rollback to a version without its shard', async () => {
    const dir = await freshModel();
    const oldShards = (await readdir(dir)).filter((f) => f.endsWith('.bin'));
    // The confirmation deletes model.json.prev and the old shards at once: a power cut can make
    // the shard's deletion durable and not model.json.prev's.
    await switchedButUnconfirmed(dir);
    await unlink(join(dir, oldShards[0]));
    for (const f of await readdir(dir)) if (f.startsWith('.ndiff-apply.lock-')) await unlink(join(dir, f));
    const state = await folderBytes(dir);
    // An explicit rollback (a failed health check) refuses: the previous version is not whole.
    await assert.rejects(rollbackUpdate(dir), (e: unknown) => e instanceof ModelFormatError && /cannot roll back .* shard .* is gone/.test((e as Error).message));
    assert.deepEqual(await folderBytes(dir), state);
    const r = await recoverModelDir(dir);
    assert.equal(r.rolledBack, false);
    assert.match(r.actions[0], /was confirmed; finished deleting the shards of the previous version/);
    assert.equal(await loaderSees(dir), NEW);
    const files = await readdir(dir);
    for (const f of [PREVIOUS_MODEL_JSON, '.ndiff-journal.json', ...oldShards]) assert.ok(!files.includes(f), `${f} kept`);
    assert.deepEqual(await listStaleFiles(dir), []);
    assert.equal((await applyToModelDir(dir, built.bytes)).status, 'already-applied');
  });

  test('a shard some other tool put there (not named like ours) is never deleted', async () => {
    const dir = await freshModel();
    await writeFile(join(dir, 'weights.bin'), new Uint8Array(8));
    await recoverModelDir(dir);
    assert.ok((await readdir(dir)).includes('weights.bin'));
  });

  test('states no apply leaves behind are refused, not guessed at', async () => {
    const dir = await freshModel();
    await assert.rejects(rollbackUpdate(dir), (e: unknown) => e instanceof ModelFormatError && /expected an update journal and the previous version it names in model\.json\.prev, found no journal/.test(e.message));
    // a journal whose model.json is neither version: changed by hand during an update
    await crashedApply(dir, (op) => /^rename model\.json\.tmp-.* -> model\.json$/.test(op));
    await writeFile(join(dir, 'model.json'), (await readFile(join(dir, 'model.json'), 'utf8')) + ' ');
    const before = await folderBytes(dir);
    await assert.rejects(recoverModelDir(dir), (e: unknown) => e instanceof ModelFormatError && /holds the journal of update .* but model\.json is neither the version it started from nor the one it wrote.*Nothing was touched/.test(e.message));
    assert.deepEqual(await folderBytes(dir), before);
    await assert.rejects(applyToModelDir(join(dir, 'nope'), built.bytes), (e: unknown) => e instanceof ModelFormatError && /no model folder at .*nope: check the path/.test(e.message));
  });

  test('keepPrevious refuses to start a second update while one is unconfirmed', async () => {
    const dir = await freshModel();
    await switchedButUnconfirmed(dir);
    const store = await openTfjsModelDir(dir, { keepPrevious: true });
    for (const [name, values] of built.targetValues) store.values(name).set(values.map((v) => v + 1));
    await assert.rejects(store.commit([...built.targetValues.keys()]), (e: unknown) => e instanceof ModelFormatError && /still waiting to be confirmed or rolled back/.test(e.message));
    // and applyToModelDir recovers it first, then applies
    const res = await applyToModelDir(dir, built.bytes);
    assert.equal(res.status, 'applied');
    assert.equal(res.recovery.rolledBack, true);
    assert.equal(await loaderSees(dir), NEW);
  });
});

describe('recovery acts only on its own journal (#14 item 3)', () => {
  test('a model.json.prev no journal names (an admin\'s copy of an older model.json) is never rolled back to', async () => {
    const dir = await freshModel();
    const oldModelJson = await readFile(join(dir, 'model.json'));
    assert.equal((await applyToModelDir(dir, built.bytes)).status, 'applied');
    // The admin keeps a copy of the old model.json beside the new one (its shards are gone).
    await writeFile(join(dir, PREVIOUS_MODEL_JSON), oldModelJson);
    const before = await folderBytes(dir);
    // A payload for another base is refused (exit 4): the folder must not change at all.
    const other = topkDiff(hasher, baseAndTarget(52).base, baseAndTarget(52).target, { budgetBytes: 100_000, codec: 'f32', modelId: 'kws', sequence: 3 });
    const err = await applyToModelDir(dir, other.bytes).then(() => null, (e: unknown) => e);
    assert.ok(err instanceof BaseMismatchError, String(err));
    assert.deepEqual(await folderBytes(dir), before);
    assert.equal(await loaderSees(dir), NEW);
    // and the error says what recovery found
    const recovery = (err as NeuralDiffError).details.recovery as { actions: string[]; rolledBack: boolean };
    assert.equal(recovery.rolledBack, false);
    assert.match(recovery.actions.join('\n'), /left model\.json\.prev alone: no update journal names it/);
    // An update that would keep its own previous version refuses to take the name, and says why.
    const next = topkDiff(hasher, patchedBase(), withTfjsFrame(baseAndTarget(53).target), { budgetBytes: 100_000, codec: 'f32', modelId: 'kws', sequence: 3 });
    const err2 = await applyToModelDir(dir, next.bytes).then(() => null, (e: unknown) => e);
    assert.ok(err2 instanceof ModelFormatError, String(err2));
    assert.match((err2 as Error).message, /not the applier's \(no update journal names it.*move it out of the folder, then retry/);
    assert.deepEqual(await folderBytes(dir), before);
  });

  test('a journal that is not this applier\'s format is left alone, and so is the model', async () => {
    const dir = await freshModel();
    await writeFile(join(dir, '.ndiff-journal.json'), '{"format": "something-else"}');
    await copyFile(join(dir, 'model.json'), join(dir, PREVIOUS_MODEL_JSON));
    const before = await folderBytes(dir);
    const r = await recoverModelDir(dir);
    assert.equal(r.rolledBack, false);
    assert.match(r.actions.join('\n'), /left \.ndiff-journal\.json alone: not a neural-diff update journal/);
    assert.deepEqual(await folderBytes(dir), before);
  });

  test('recovery reports what it did even when the apply then fails', async () => {
    const dir = await freshModel();
    await switchedButUnconfirmed(dir);
    const other = topkDiff(hasher, baseAndTarget(52).base, baseAndTarget(52).target, { budgetBytes: 100_000, codec: 'f32', modelId: 'kws', sequence: 3 });
    const err = await applyToModelDir(dir, other.bytes).then(() => null, (e: unknown) => e);
    assert.ok(err instanceof BaseMismatchError, String(err));
    const recovery = (err as NeuralDiffError).details.recovery as { actions: string[]; rolledBack: boolean };
    assert.equal(recovery.rolledBack, true);
    assert.match(recovery.actions[0], /after its switch but before it was confirmed: rolled back to the previous version/);
    assert.equal(await loaderSees(dir), OLD);
  });
});

describe('the apply lock', () => {
  test('two applies in one process: the second is refused', async () => {
    const dir = await freshModel();
    const release = await lockModelDir(dir);
    await assert.rejects(applyToModelDir(dir, built.bytes), (e: unknown) => e instanceof ModelFormatError && /already running in this process/.test(e.message));
    await release();
    assert.ok(!(await readdir(dir)).includes(LOCK_FILE));
    assert.equal((await applyToModelDir(dir, built.bytes)).status, 'applied');
  });

  test('a lock held by another live process is respected; one left by a dead process or before the last boot is taken over', async () => {
    const dir = await freshModel();
    const lock = join(dir, LOCK_FILE);
    await writeFile(lock, JSON.stringify({ pid: process.ppid, startedAt: new Date().toISOString() }));
    await assert.rejects(applyToModelDir(dir, built.bytes), (e: unknown) => e instanceof ModelFormatError && new RegExp(`another apply or update \\(pid ${process.ppid}\\) is updating`).test(e.message));
    // the same live pid, but taken before this machine booted: stale
    await writeFile(lock, JSON.stringify({ pid: process.ppid, startedAt: '1999-01-01T00:00:00Z' }));
    const release = await lockModelDir(dir);
    await release();
    // a pid that no longer runs
    const dead = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
    await writeFile(lock, JSON.stringify({ pid: Number(dead.stdout.trim()), startedAt: new Date().toISOString() }));
    assert.equal((await applyToModelDir(dir, built.bytes)).status, 'applied');
    // a lock file cut short by a crash
    await writeFile(lock, '{"pid": 12');
    assert.equal((await applyToModelDir(dir, built.bytes)).status, 'already-applied');
  });
});

describe('the apply lock by boot and process start (Linux)', { skip: existsSync('/proc/sys/kernel/random/boot_id') ? false : 'no /proc boot id here' }, () => {
  const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  const startOf = (pid: number) => { const t = readFileSync(`/proc/${pid}/stat`, 'utf8'); return t.slice(t.lastIndexOf(')') + 2).split(' ')[19]; };
  const lockOf = (dir: string, pid: number, takenAt: number, body: object) => writeFile(join(dir, `${LOCK_FILE}-${pid}-${takenAt}-0123456789ab`), JSON.stringify({ pid, startedAt: new Date(takenAt).toISOString(), ...body }));

  test('a lock whose pid now runs another process (started at another time) is stale: it was refused for ever while that process ran', async () => {
    const dir = await freshModel();
    await lockOf(dir, process.ppid, Date.now(), { boot, start: String(Number(startOf(process.ppid)) + 1) });
    assert.equal((await applyToModelDir(dir, built.bytes)).status, 'applied');
    assert.ok(!(await readdir(dir)).some((f) => f.startsWith(LOCK_FILE)), 'the stale lock removed');
  });

  test('a live lock taken when the clock read a time before this boot (set forward since) is respected: it was taken over as stale', async () => {
    const dir = await freshModel();
    await lockOf(dir, process.ppid, Date.parse('1999-01-01T00:00:00Z'), { boot, start: startOf(process.ppid) });
    await assert.rejects(applyToModelDir(dir, built.bytes), (e: unknown) => e instanceof ModelFormatError && new RegExp(`another apply or update \\(pid ${process.ppid}\\) is updating`).test(e.message));
    // The same holder in another boot: stale.
    await unlink(join(dir, `${LOCK_FILE}-${process.ppid}-${Date.parse('1999-01-01T00:00:00Z')}-0123456789ab`));
    await lockOf(dir, process.ppid, Date.now(), { boot: '00000000-0000-0000-0000-000000000000', start: startOf(process.ppid) });
    assert.equal((await applyToModelDir(dir, built.bytes)).status, 'applied');
  });

  test('the lock an apply takes says its boot and start', async () => {
    const dir = await freshModel();
    const release = await lockModelDir(dir);
    const name = (await readdir(dir)).find((f) => f.startsWith(`${LOCK_FILE}-`));
    assert.ok(name);
    const body = JSON.parse(await readFile(join(dir, name), 'utf8'));
    assert.equal(body.boot, boot);
    assert.equal(body.start, startOf(process.pid));
    await release();
  });
});

describe('a spread diff holds a few shards in memory (releaseWritten)', () => {
  // 16 tensors of 4 KiB, one per shard, and a diff that changes 10% of every one.
  const TENSORS = 16;
  const r = rng(77);
  // With the frame of the folder spreadModel writes, so its fingerprint is the folder's.
  const spreadBase = withTfjsFrame(new MemoryWeightStore(Array.from({ length: TENSORS }, (_, i) => [`layer_${String(i).padStart(2, '0')}/kernel`, { shape: [32, 32], data: Float32Array.from({ length: 1024 }, () => r() - 0.5) }] as [string, { shape: number[]; data: Float32Array }])));
  const specs: PatchSpec[] = spreadBase.list().filter((t) => t.patchable !== false).map((t) => {
    const positions = Uint32Array.from({ length: 1024 }, (_, i) => i).filter(() => r() < 0.1);
    return { kind: 'sparse', name: t.name, positions, values: Float32Array.from(positions, () => (r() - 0.5) * 0.01), codec: 'f32' };
  });
  const spread = buildPayload(hasher, spreadBase, specs, { method: 'sparse', modelId: 'spread', sequence: 1 });
  const spreadTarget = spread.payload.header.targetFingerprint;

  async function spreadModel(): Promise<string> {
    const dir = join(await tempDir(), 'model');
    const tensors = new Map(spreadBase.list().filter((t) => t.patchable !== false).map((t) => [t.name, { shape: t.shape, data: spreadBase.values(t.name) }]));
    await writeModelDir(dir, { format: 'graph-model', generatedBy: 'neural-diff tests', modelTopology: {} }, tensors, { shardBytes: 4096 });
    assert.equal((await readdir(dir)).filter((f) => f.endsWith('.bin')).length, TENSORS);
    return dir;
  }

  /**
   * A store as applyToModelDir opens it, on file operations whose fsyncs take 10 ms (so the
   * patching would run far ahead of the writes if nothing held it back), counting the tensors
   * handed out, the buffers behind them, and the shard files finished (renamed into place).
   */
  async function instrumentedStore(dir: string) {
    const count = { handed: 0, renamed: 0, ahead: 0, buffers: new Set<ArrayBufferLike>() };
    const ops: FileOps = {
      ...nodeFileOps,
      writeNewFile: async (file, parts, o) => {
        await nodeFileOps.writeNewFile(file, parts, o);
        if (o?.sync) await new Promise((res) => setTimeout(res, 10));
      },
      rename: async (from, to) => {
        await nodeFileOps.rename(from, to);
        if (/\.bin$/.test(to)) count.renamed++;
      },
    };
    const store = await openTfjsModelDir(dir, { lazy: true, stageWrites: true, releaseWritten: true, verifyWrites: true, fileOps: ops });
    const values = store.values.bind(store);
    store.values = (name: string) => {
      const a = values(name);
      count.handed++;
      // While patching (each tensor once; the health check reads them all again after the commit).
      if (count.handed <= TENSORS) {
        count.buffers.add(a.buffer);
        count.ahead = Math.max(count.ahead, count.handed - count.renamed);
      }
      return a;
    };
    return { store, count };
  }

  test('never more than four shards unwritten behind the patching, their arrays reused, and the committed folder is the target (values read back from the new files match it)', async () => {
    const dir = await spreadModel();
    const { store, count } = await instrumentedStore(dir);
    let checked = 0;
    try {
      const res = await applyPayload(store, spread.bytes, {
        healthCheck: ({ store: s }) => {
          // After the commit: every tensor's values, read again from the new files, are the target's.
          for (const [name, want] of spread.targetValues) {
            assert.deepEqual(s.values(name), want, name);
            checked++;
          }
          return true;
        },
      });
      assert.equal(res.status, 'applied');
    } finally {
      await store.dropStaged();
    }
    assert.equal(checked, TENSORS);
    // Patching: each tensor handed out once (then 16 more for the health check).
    assert.ok(count.ahead <= 4, `at most 4 tensors read ahead of the finished shards, found ${count.ahead}`);
    assert.ok(count.buffers.size < TENSORS, `the 16 tensors patched took fewer buffers than 16 (${count.buffers.size}): finished shards' arrays were reused`);
    assert.equal(await loaderSees(dir), spreadTarget);
    assert.deepEqual(await listStaleFiles(dir), []);
  });

  test('a later tensor that misses its target, after earlier shards were written and let go of: the folder byte for byte, and the store holds the old model again', async () => {
    const dir = await spreadModel();
    const before = await folderBytes(dir);
    const doc = decodePayload(spread.bytes);
    const wires = doc.patches.map((p) => (new Unpackr({ useRecords: false, mapsAsObjects: true }).unpack(encodePayload({ header: doc.header, patches: [p] })) as { p: WirePatch[] }).p[0]);
    const last = wires[wires.length - 1];
    last.v = last.v.slice();
    last.v[2] ^= 0x80; // the first delta of the last tensor doubled or halved: it misses its target digest
    const { store, count } = await instrumentedStore(dir);
    try {
      await assert.rejects(applyPayload(store, packPayload(doc.header, wires)), TargetMismatchError);
      assert.ok(count.buffers.size < count.handed, `arrays were let go of and reused before the failure (${count.buffers.size} buffers for ${count.handed} tensors)`);
      // Undone by reading the stored copy again: the old model, bit for bit.
      assert.equal(fingerprintStore(hasher, store).fingerprint, fingerprintStore(hasher, spreadBase).fingerprint);
    } finally {
      await store.dropStaged();
    }
    assert.deepEqual(await folderBytes(dir), before);
    assert.deepEqual(await listStaleFiles(dir), []);
  });

  test('a store opened with releaseWritten and a health check that reads every tensor, then fails: rolled back to the old model on disk and in memory (the undo log, never the committed files)', async () => {
    const dir = await spreadModel();
    const before = await folderBytes(dir);
    const { store } = await instrumentedStore(dir);
    try {
      await assert.rejects(
        applyPayload(store, spread.bytes, {
          healthCheck: ({ store: s }) => {
            for (const t of s.list()) s.values(t.name); // read again from the committed files
            return false;
          },
        }),
        HealthCheckError,
      );
      assert.equal(fingerprintStore(hasher, store).fingerprint, fingerprintStore(hasher, spreadBase).fingerprint, 'in memory: the old model');
    } finally {
      await store.dropStaged();
    }
    assert.equal(await loaderSees(dir), fingerprintStore(hasher, spreadBase).fingerprint, 'on disk: the old model');
    assert.deepEqual(await listStaleFiles(dir), []);
    assert.deepEqual([...(await folderBytes(dir)).keys()].sort(), [...before.keys()].sort());
  });

  test('a quantized tensor patched off its grid after earlier tensors were let go of: the group is laid out again from their values read back, and the folder is the target', async () => {
    // 12 float32 tensors of 4 KiB and a uint8 one last, one group in shards of 4 KiB: the last
    // tensor's new values are off its grid, so it is stored as float32 and the group laid out again.
    const rq = rng(5);
    const floats = Array.from({ length: 12 }, () => Float32Array.from({ length: 1024 }, () => rq() - 0.5));
    const q = Uint8Array.from({ length: 1024 }, () => Math.floor(rq() * 256));
    const all = new Uint8Array(12 * 4096 + 1024);
    floats.forEach((f, i) => all.set(new Uint8Array(f.buffer), i * 4096));
    all.set(q, 12 * 4096);
    const dir = join(await tempDir(), 'model');
    await mkdir(dir, { recursive: true });
    const shardCount = Math.ceil(all.length / 4096);
    const paths = Array.from({ length: shardCount }, (_, i) => `group1-shard${i + 1}of${shardCount}.bin`);
    for (const [i, p] of paths.entries()) await writeFile(join(dir, p), all.subarray(i * 4096, (i + 1) * 4096));
    const weights = [...floats.map((_, i) => ({ name: `w${String(i).padStart(2, '0')}`, shape: [1024], dtype: 'float32' })), { name: 'zq', shape: [1024], dtype: 'float32', quantization: { dtype: 'uint8', scale: 0.01, min: -1 } }];
    await writeFile(join(dir, 'model.json'), JSON.stringify({ format: 'graph-model', modelTopology: {}, weightsManifest: [{ paths, weights }] }));
    // With the frame of that model.json (no non-float entries): the folder's fingerprint, computed independently.
    const qbase = withTfjsFrame(new MemoryWeightStore([...floats.map((f, i) => [`w${String(i).padStart(2, '0')}`, { shape: [1024], data: f.slice() }]), ['zq', { shape: [1024], data: Float32Array.from(q, (b) => b * 0.01 - 1) }]] as [string, { shape: number[]; data: Float32Array }][]), { format: 'graph-model', modelTopology: {} });
    assert.equal(await loaderSees(dir), fingerprintStore(hasher, qbase).fingerprint);
    const qspecs: PatchSpec[] = qbase.list().filter((t) => t.patchable !== false).map((t) => {
      const positions = Uint32Array.from({ length: 1024 }, (_, i) => i).filter(() => rq() < 0.1);
      return { kind: 'sparse', name: t.name, positions, values: Float32Array.from(positions, () => (rq() - 0.5) * 0.0137), codec: 'f32' };
    });
    const qpayload = buildPayload(hasher, qbase, qspecs, { method: 'sparse', modelId: 'q', sequence: 1 });
    const { store, count } = await instrumentedStore(dir);
    try {
      assert.equal((await applyPayload(store, qpayload.bytes)).status, 'applied');
    } finally {
      await store.dropStaged();
    }
    assert.ok(count.buffers.size < count.handed, `arrays were let go of before the commit (${count.buffers.size} buffers for ${count.handed} tensors)`);
    assert.equal(await loaderSees(dir), qpayload.payload.header.targetFingerprint);
    assert.deepEqual(await listStaleFiles(dir), []);
  });

  test('applyToModelDir: the same spread diff applies, and a failed write among the let-go shards leaves the folder byte for byte', async () => {
    const dir = await spreadModel();
    const before = await folderBytes(dir);
    let writes = 0;
    const ops: FileOps = {
      ...nodeFileOps,
      writeNewFile: async (file, parts, o) => {
        // The 12th shard file fails (disk full), after earlier ones were written and let go of.
        if (/\.bin\.tmp-/.test(file) && ++writes === 12) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
        await nodeFileOps.writeNewFile(file, parts, o);
      },
    };
    const { openNewFile: _, ...wholeFiles } = ops;
    const err = await applyToModelDir(dir, spread.bytes, { fileOps: wholeFiles }).then(() => null, (e: unknown) => e);
    assert.ok(err instanceof NeuralDiffError && err.code === 'ND_COMMIT_FAILED', String(err));
    assert.deepEqual(await folderBytes(dir), before);
    assert.equal((await applyToModelDir(dir, spread.bytes)).status, 'applied');
    assert.equal(await loaderSees(dir), spreadTarget);
    assert.deepEqual(await listStaleFiles(dir), []);
  });
});
