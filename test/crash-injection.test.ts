/**
 * Crash injection, quick version (the full one: `npm run crash-test`, test/crash/run.ts): a
 * child process applying a payload to a model folder SIGKILLs itself before a chosen
 * file-system operation; the folder must then hold exactly the old or the new version, and the
 * same apply run again must finish cleanly.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { buildFixture, countOperations, killAt, spread, type CrashSummary, type Fixture } from './crash/harness.ts';

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
    const order = ['open(.ndiff-apply.lock', 'rename(group1-shard', 'rename(model.json.prev.tmp', 'rename(model.json.tmp', 'rename(model.json.prev -> model.json.retired)', 'unlink(model.json.retired)', 'rename(.ndiff-state.json.tmp', 'unlink(.ndiff-apply.lock)'];
    let last = -1;
    for (const step of order) {
      const i = ops.findIndex((o, k) => k > last && o.startsWith(step));
      assert.ok(i > last, `step ${step} missing or out of order in:\n${ops.join('\n')}`);
      last = i;
    }
    // every rename is preceded by an fsync of the file it moves, and followed by one of the folder
    ops.forEach((o, i) => {
      if (o.startsWith('rename(') && /\.tmp-/.test(o)) assert.match(ops[i - 1], /^sync\(/, `no fsync before ${o}`);
      if (o.startsWith('rename(')) assert.match(ops[i + 1], /^sync\(/, `no folder fsync after ${o}`);
    });
  });

  test('CLI apply killed at 12 points spread over its 30 operations: always old or new; re-run finishes', async () => {
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
