/**
 * A GGUF model patched in place (format v8, src/io/gguf/in-place.ts) ends at its old or its new
 * version byte for byte, whatever interrupts the apply:
 *
 * - a kill (SIGKILL of a child running `ndiff apply`, test/crash/gguf.ts) before each step of
 *   the protocol (the lock, the journal's creation, its first and last range, its fsync, rename
 *   and the folder's fsync, each overwrite, the files' fsync, the journal's deletion, the model
 *   id and state records), and in the middle of each overwrite (a torn write): after the
 *   recovery every apply runs first, old or new; the re-run ends at new;
 * - a power cut (test/power-loss/: every prefix of the recorded operations, un-fsynced writes
 *   lost, torn or zeroed, un-synced renames lost in any combination): old or new after the
 *   recovery, a state file never ahead of the bytes, and a second cut during that recovery
 *   likewise.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { applyToGgufFile, recoverGgufFile } from '../src/io/gguf/in-place.ts';
import { crashGguf, ggufCrashPair, type GgufCrashPair } from './crash/gguf.ts';
import { crashStates, describeOp, materialize, snapshotFolder, type FolderImage, type FsOp } from './power-loss/fs-model.ts';
import { recordNodeFs } from './power-loss/node-fs-recorder.ts';
import { harnessRoot } from './power-loss/harness.ts';

let pair: GgufCrashPair;
before(async () => {
  pair = await ggufCrashPair();
});

const same = (a: Uint8Array, b: Uint8Array) => Buffer.compare(a, b) === 0;

describe('GGUF in-place apply killed', () => {
  test('before each step, and amid each overwrite: old or new after recovery, and the re-run reaches new', async () => {
    // Every operation but the journal's middle ranges (the same step repeated; its first and last are kept).
    const points = (ops: string[]) => {
      const journal = ops.map((o, i) => (o.startsWith('write(model.gguf.ndiff-undo.tmp') ? i : -1)).filter((i) => i >= 0);
      const middle = new Set(journal.slice(2, -2));
      return ops.map((_, i) => i + 1).filter((at) => !middle.has(at - 1));
    };
    const s = await crashGguf(pair, { points, torn: true });
    const order = ['open(model.gguf.ndiff-undo.tmp', 'sync(model.gguf.ndiff-undo.tmp)', 'rename(model.gguf.ndiff-undo.tmp -> model.gguf.ndiff-undo)', 'open(model.gguf, r+)', 'sync(model.gguf)', 'unlink(model.gguf.ndiff-undo)', 'rename(model.gguf.ndiff-state.json.tmp'];
    let last = -1;
    for (const step of order) {
      const i = s.operations.findIndex((o, k) => k > last && o.startsWith(step));
      assert.ok(i > last, `step ${step} missing or out of order in:\n${s.operations.join('\n')}`);
      last = i;
    }
    // The journal is durable (its folder fsynced) before the first overwrite.
    const renamed = s.operations.indexOf('rename(model.gguf.ndiff-undo.tmp -> model.gguf.ndiff-undo)');
    const firstWrite = s.operations.findIndex((o) => o.startsWith('write(model.gguf,'));
    assert.ok(s.operations.slice(renamed + 1, firstWrite).some((o) => /^sync\(nd-crash-gguf-/.test(o)), 'no folder fsync between the journal\'s rename and the first overwrite');
    assert.deepEqual(s.bad, []);
    assert.ok(s.kills >= 30, `${s.kills} kills`);
    assert.ok(s.sawOld > 0 && s.sawNew > 0, `old ${s.sawOld}, new ${s.sawNew}`);
  });
});

describe('GGUF in-place apply cut by a power loss', () => {
  let root: string;
  before(async () => {
    root = await harnessRoot();
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  /** Record one apply of the pair on a fresh folder: the operations and the folder before them. */
  async function record(): Promise<{ log: FsOp[]; initial: FolderImage }> {
    const dir = path.join(root, 'recorded');
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'model.gguf'), pair.v1);
    const initial = await snapshotFolder(dir);
    const log = await recordNodeFs(dir, initial, async () => {
      const r = await applyToGgufFile(path.join(dir, 'model.gguf'), pair.payload);
      assert.equal(r.status, 'applied');
    });
    assert.ok(same(new Uint8Array(await readFile(path.join(dir, 'model.gguf'))), pair.v2));
    return { log, initial };
  }

  /** What a folder shows after the recovery: `old`, `new`, or what is wrong. */
  async function afterRecovery(dir: string): Promise<string> {
    try {
      await recoverGgufFile(path.join(dir, 'model.gguf'));
    } catch (e) {
      return `recovery threw ${(e as Error).message}`;
    }
    const bytes = new Uint8Array(await readFile(path.join(dir, 'model.gguf')));
    const seen = same(bytes, pair.v1) ? 'old' : same(bytes, pair.v2) ? 'new' : 'a mix';
    const state = await readFile(path.join(dir, 'model.gguf.ndiff-state.json'), 'utf8').catch(() => undefined);
    if (state !== undefined && JSON.parse(state).models?.tiny?.sequence === 1 && seen !== 'new') return `${seen}, and the state file records sequence 1 (ahead of the bytes)`;
    const left = (await readdir(dir)).filter((n) => /\.ndiff-undo/.test(n));
    return left.length ? `${seen}, and ${left.join(', ')} left` : seen;
  }

  test('every crash state is the old or the new model after the recovery; the re-run reaches new', async () => {
    const { log, initial } = await record();
    assert.ok(log.some((o) => o.op === 'write' && o.name === 'model.gguf'), 'the overwrites are recorded');
    const bad: string[] = [];
    const seen = new Set<string>();
    let states = 0;
    for (const state of crashStates(initial, log, { randomPerPoint: 2 })) {
      states++;
      const dir = path.join(root, `state-${states}`);
      await materialize(state.image, dir);
      const verdict = await afterRecovery(dir);
      seen.add(verdict);
      if (verdict !== 'old' && verdict !== 'new') bad.push(`cut after ${state.point > 0 ? describeOp(log[state.point - 1]) : 'nothing'} (${state.variant}): ${verdict}`);
      // A sample re-run: the same apply finishes.
      if (states % 7 === 0) {
        const again = await applyToGgufFile(path.join(dir, 'model.gguf'), pair.payload).catch((e: Error) => e);
        if (again instanceof Error || !same(new Uint8Array(await readFile(path.join(dir, 'model.gguf'))), pair.v2)) bad.push(`cut at ${state.point} (${state.variant}): the re-run did not reach new${again instanceof Error ? `: ${again.message}` : ''}`);
      }
      await rm(dir, { recursive: true, force: true });
    }
    assert.deepEqual(bad.slice(0, 5), []);
    assert.ok(states > 50, `${states} crash states`);
    assert.ok(seen.has('old') && seen.has('new'), [...seen].join(', '));
  });

  test('a second cut during the recovery of a cut amid the overwrites: old after the recovery', async () => {
    const { log, initial } = await record();
    // Cut right after the second overwrite reached the disk: a mix of both versions, the journal in place.
    const overwrites = log.map((o, i) => (o.op === 'write' && o.name === 'model.gguf' ? i : -1)).filter((i) => i >= 0);
    const point = overwrites[1] + 1;
    const first = [...crashStates(initial, log, { points: [point], randomPerPoint: 0 })].find((s) => s.variant === 'all');
    assert.ok(first, 'the crash state with every pending operation persisted');
    const dir = path.join(root, 'second-cut');
    await materialize(first.image, dir);
    assert.ok(!same(new Uint8Array(await readFile(path.join(dir, 'model.gguf'))), pair.v1), 'the cut left a mix to roll back');
    const start = await snapshotFolder(dir);
    const recovery = await recordNodeFs(dir, start, async () => {
      await recoverGgufFile(path.join(dir, 'model.gguf'));
    });
    assert.ok(recovery.some((o) => o.op === 'write'), 'the recovery wrote the old bytes back');
    const bad: string[] = [];
    let states = 0;
    for (const state of crashStates(start, recovery, { randomPerPoint: 2 })) {
      const d = path.join(root, `second-${states++}`);
      await materialize(state.image, d);
      const verdict = await afterRecovery(d);
      if (verdict !== 'old') bad.push(`second cut after ${state.point > 0 ? describeOp(recovery[state.point - 1]) : 'nothing'} (${state.variant}): ${verdict}`);
      await rm(d, { recursive: true, force: true });
    }
    await rm(dir, { recursive: true, force: true });
    assert.deepEqual(bad.slice(0, 5), []);
    assert.ok(states > 5, `${states} crash states`);
  });
});
