/**
 * Crash injection, quick version (the full one: `npm run crash-test`, test/crash/run.ts): a
 * child process applying a payload to a model folder (or to a model JSON file sharing its folder
 * with another model) SIGKILLs itself before a chosen file-system operation; the model must then
 * be exactly the old or the new version, the other model untouched, and the same apply run again
 * must finish cleanly. And `ndiff update` killed while its health check runs: the next update
 * finishes that switch with its own health check or refuses without one (test/crash/health-check.ts).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { buildFixture, countOperations, killAt, spread, type CrashSummary, type Fixture } from './crash/harness.ts';
import { buildDeliveryFixture, crashFullInstall, crashReleaseAdd, type DeliveryFixture } from './crash/delivery.ts';
import { crashDuringHealthCheck } from './crash/health-check.ts';

function explain(s: CrashSummary): string {
  return JSON.stringify([...s.neither, ...s.rerunFailures].slice(0, 5));
}

describe('crash injection (quick)', () => {
  let fx: Fixture;
  before(async () => {
    fx = await buildFixture();
  });
  after(async () => {
    await rm(fx.root, { recursive: true, force: true });
  });

  test('the protocol performs the steps it documents, in order', async () => {
    const ops = await countOperations(fx, fx.scenarios[0]);
    const order = ['open(.ndiff-apply.lock-', 'rename(.ndiff-journal.json.tmp', 'link(model.json -> model.json.prev)', 'rename(model.json.tmp', 'unlink(model.json.prev)', 'unlink(.ndiff-journal.json)', 'rename(.ndiff-folder.json.tmp', 'rename(.ndiff-state.json.tmp', 'unlink(.ndiff-apply.lock-'];
    let last = -1;
    for (const step of order) {
      const i = ops.findIndex((o, k) => k > last && o.startsWith(step));
      assert.ok(i > last, `step ${step} missing or out of order in:\n${ops.join('\n')}`);
      last = i;
    }
    // Every temp file is fsynced before it is renamed; the journal's rename is followed by a
    // folder fsync before the kept previous version is linked (the new shards and model.json's
    // temp file are written meanwhile: until something names them, recovery deletes them with
    // or without a journal); every name made before the switch is made
    // durable by a folder fsync before the switch; the switch, the confirmation (dropping
    // model.json.prev), the model id file's and the state file's renames are each followed by
    // a folder fsync. (The recorded digests are a cache, written without fsync.)
    const folderSync = (o: string) => /^sync\([^.]*\)$/.test(o);
    const sw = ops.findIndex((o) => o.startsWith('rename(model.json.tmp'));
    ops.forEach((o, i) => {
      // (its last operation before the rename: other files' operations may come in between)
      const tmp = /^rename\(([^ ]+\.tmp-[^ ]+) -> /.exec(o)?.[1];
      if (tmp && !tmp.startsWith('.ndiff-digests.json')) {
        const own = ops.slice(0, i).filter((x) => x.startsWith(`sync(${tmp})`) || x.startsWith(`writeFile(${tmp},`) || x.startsWith(`open(${tmp},`));
        assert.equal(own.at(-1), `sync(${tmp})`, `no fsync before ${o}`);
      }
      if (i < sw && (o.startsWith('rename(') || o.startsWith('link('))) {
        assert.ok(ops.slice(i + 1, sw).some(folderSync), `no folder fsync between ${o} and the switch`);
      }
      if (i >= sw && o.startsWith('rename(') && !o.startsWith('rename(.ndiff-digests.json')) assert.ok(folderSync(ops[i + 1]), `no folder fsync after ${o}`);
      // (the shards' and model.json's operations, at the same time, may come in between)
      if (o.startsWith('rename(.ndiff-journal.json.tmp')) assert.ok(ops.slice(i + 1).some(folderSync), `no folder fsync after ${o}`);
      // The confirmation deletes model.json.prev and the replaced shards at once (the digests
      // cache is written meanwhile), then fsyncs the folder before the journal goes.
      if (o === 'unlink(model.json.prev)') {
        const next = ops.findIndex((x, k) => k > i && !x.startsWith('unlink(group1-shard') && !/\(\.ndiff-digests\.json\.tmp/.test(x));
        assert.ok(folderSync(ops[next]), `no folder fsync right after ${o} and the shards' deletion: ${ops[next]}`);
        assert.ok(ops.indexOf('unlink(.ndiff-journal.json)') > next, `the journal is deleted before the confirmation is durable`);
      }
    });
    const journal = ops.findIndex((o) => o.startsWith('rename(.ndiff-journal.json.tmp'));
    const link = ops.findIndex((o) => o.startsWith('link(model.json -> model.json.prev)'));
    const journalSynced = ops.findIndex((o, k) => k > journal && folderSync(o));
    assert.ok(journal >= 0 && journalSynced > journal && journalSynced < link, 'the journal is durable before the previous version is kept');
    assert.ok(ops.slice(0, link).some((o) => o.startsWith('rename(group1-shard')), 'the new shards are in place before the previous version is kept');
  });

  test('CLI apply killed at 12 points spread over its operations: always old or new; re-run finishes', async () => {
    const s = fx.scenarios[0];
    const ops = await countOperations(fx, s);
    const r = await killAt(fx, s, ops, spread(ops.length, 12));
    assert.equal(r.kills, 12);
    assert.deepEqual(r.neither, [], explain(r));
    assert.deepEqual(r.rerunFailures, [], explain(r));
    assert.ok(r.sawOld > 0 && r.sawNew > 0, `old ${r.sawOld}, new ${r.sawNew}: the kills did not straddle the switch`);
  });

  test('health check rejects: killed at 8 points of switch-then-rollback; torn writes at 6 points', async () => {
    const health = fx.scenarios.find((x) => x.job.health === 'fail')!;
    const torn = fx.scenarios.find((x) => x.torn)!;
    for (const [s, n] of [[health, 8], [torn, 6]] as const) {
      const ops = await countOperations(fx, s);
      const r = await killAt(fx, s, ops, spread(ops.length, n));
      assert.equal(r.kills, n);
      assert.deepEqual(r.neither, [], explain(r));
      assert.deepEqual(r.rerunFailures, [], explain(r));
    }
  });

  test('a <name>.json sharing its folder: the steps under its own names; killed at 10 points, always old or new, the other model untouched; re-run finishes', async () => {
    const s = fx.scenarios.find((x) => x.modelFile)!;
    const ops = await countOperations(fx, s);
    // The same protocol, its files named after the model file; the lock and the state file the folder's.
    const order = ['open(.ndiff-apply.lock-', 'rename(kws.json.ndiff-journal.json.tmp', 'link(kws.json -> kws.json.ndiff-prev)', 'rename(kws.json.tmp', 'unlink(kws.json.ndiff-prev)', 'unlink(kws.json.ndiff-journal.json)', 'rename(kws.json.ndiff-model.json.tmp', 'rename(.ndiff-state.json.tmp', 'unlink(.ndiff-apply.lock-'];
    let last = -1;
    for (const step of order) {
      const i = ops.findIndex((o, k) => k > last && o.startsWith(step));
      assert.ok(i > last, `step ${step} missing or out of order in:\n${ops.join('\n')}`);
      last = i;
    }
    assert.ok(ops.some((o) => /^rename\(kws\.group1-shard1of1.*\.tmp-.* -> kws\.group1-shard1of1-[0-9a-f]{16}\.bin\)$/.test(o)), `the new shard is not named after the model file:\n${ops.join('\n')}`);
    const onFace = (o: string) => /(\(|-> )face\./.test(o);
    assert.ok(!ops.some(onFace), `an operation on the other model's files:\n${ops.filter(onFace).join('\n')}`);
    const r = await killAt(fx, s, ops, spread(ops.length, 10));
    assert.equal(r.kills, 10);
    assert.deepEqual(r.neither, [], explain(r));
    assert.deepEqual(r.rerunFailures, [], explain(r));
    assert.ok(r.sawOld > 0 && r.sawNew > 0, `old ${r.sawOld}, new ${r.sawNew}: the kills did not straddle the switch`);
  });

  test('a second kill during the recovery of the first', async () => {
    const s = fx.scenarios[0];
    const ops = await countOperations(fx, s);
    // first kill right after the switch (the recovery must roll back), second kill inside that recovery
    const afterSwitch = ops.findIndex((o) => o.startsWith('rename(model.json.tmp')) + 2;
    const r = await killAt(fx, s, ops, [afterSwitch], { second: () => [1, 2] });
    assert.equal(r.kills, 4);
    assert.deepEqual(r.neither, [], explain(r));
    assert.deepEqual(r.rerunFailures, [], explain(r));
  });
});

describe('crash injection on the delivery path (quick)', () => {
  let fx: DeliveryFixture;
  before(async () => {
    fx = await buildDeliveryFixture();
  });
  after(async () => {
    await rm(fx.root, { recursive: true, force: true });
  });

  test('ndiff update\'s full install killed at 12 points: old or new (no folder only between its two renames), recovered to a model with its labels.json; installing again finishes', async () => {
    const r = await crashFullInstall(fx, 12);
    assert.deepEqual(r.bad, []);
    assert.equal(r.kills, 12);
    assert.ok(r.sawOld > 0 && r.sawNew > 0, `old ${r.sawOld}, new ${r.sawNew}: the kills did not straddle the switch`);
  });

  test('ndiff release add killed at 12 points: the folder always serves a verified manifest whose blobs are all there; adding again publishes', async () => {
    const r = await crashReleaseAdd(fx, 12);
    assert.deepEqual(r.bad, []);
    assert.equal(r.kills, 12);
    assert.ok(r.sawOld > 0, `old ${r.sawOld}, new ${r.sawNew}`);
  });
});

describe('ndiff update killed during its health check (quick; issue 61, finding 1)', () => {
  test('a .tflite file, an .onnx file and a TF.js folder, each by a structural payload (the full run adds ordinary ones): the next update refuses without a health check, survives a second kill during its own, confirms with a passing one and rolls back with a failing one', { timeout: 300_000 }, async () => {
    const r = await crashDuringHealthCheck({ structural: [true] });
    assert.deepEqual(r.bad, []);
    assert.deepEqual(r.cases, ['tflite-structural', 'onnx-structural', 'tfjs-structural']);
    assert.equal(r.kills, 6);
    assert.deepEqual([r.refused, r.confirmed, r.rolledBack], [3, 3, 3]);
  });
});
