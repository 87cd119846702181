/**
 * Crash injection of a structural apply (format v7), quick version (every point of several pairs:
 * `npm run crash-test`, test/crash/rebuild.ts): `ndiff apply` rebuilding an ONNX or a LiteRT file
 * whose structure changed is killed before chosen file-system operations; after the recovery the
 * file is the old or the new one byte for byte, nothing is left behind, and a re-run finishes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crashRebuild } from './crash/rebuild.ts';

/** The operations that matter, 1-based: the first, the new file's write, the switch, the commit point and the one after it, the last. */
function keyPoints(ops: readonly string[]): number[] {
  const at = (re: RegExp) => ops.findIndex((o) => re.test(o)) + 1;
  const commit = at(/-> model\.\w+\.ndiff-update\.done\)$/);
  const points = [1, at(/^write\(model\.\w+\.tmp-/), at(/^rename\(model\.\w+\.tmp-\S+ -> model\.\w+\)$/), commit, commit + 1, ops.length];
  assert.ok(points.every((p) => p > 0) && commit > 0, `a step is missing from:\n${ops.join('\n')}`);
  return points;
}

for (const format of ['onnx', 'tflite'] as const) {
  test(`a structural apply of a ${format === 'onnx' ? 'ONNX' : 'LiteRT'} file killed at its key steps: the old or the new file after recovery, nothing left, the re-run finishes`, { timeout: 300_000 }, async () => {
    const s = await crashRebuild(format, 3, { points: keyPoints });
    assert.deepEqual(s.bad, []);
    assert.equal(s.kills, 6);
    // The documented protocol, in order: the journal, the new file written and fsynced, the
    // previous file kept, the switch, the commit point, the kept file dropped, the sequence last.
    const order = ['rename(model.' + format + '.ndiff-update.json.tmp', 'write(model.' + format + '.tmp-', 'sync(model.' + format + '.tmp-', 'link(model.' + format + ' -> model.' + format + '.ndiff-prev)', 'rename(model.' + format + '.tmp-', 'rename(model.' + format + '.ndiff-update.json -> model.' + format + '.ndiff-update.done)', 'unlink(model.' + format + '.ndiff-prev)', 'rename(model.' + format + '.ndiff-state.json.tmp', 'unlink(.ndiff-apply.lock-'];
    let last = -1;
    for (const step of order) {
      const i = s.ops.findIndex((o, k) => k > last && o.startsWith(step));
      assert.ok(i > last, `step ${step} missing or out of order in:\n${s.ops.join('\n')}`);
      last = i;
    }
    // Up to the commit point (the journal renamed to .done) a kill is rolled back to the old
    // file, the switch included; after it, the new file stays.
    assert.deepEqual({ old: s.sawOld, new: s.sawNew }, { old: 4, new: 2 });
  });
}

test('a torn write of the rebuilt file (half its bytes, then the kill) is never switched in', { timeout: 300_000 }, async () => {
  const s = await crashRebuild('onnx', 5, { torn: true, points: (ops) => [ops.findIndex((o) => /^write\(model\.onnx\.tmp-/.test(o)) + 1] });
  assert.deepEqual(s.bad, []);
  assert.equal(s.sawOld, 1);
});

/**
 * The steps of a rebuild that changes an ONNX model's set of data files, 1-based: the first
 * operation, the folder made for a new data file, each created file linked into place, each
 * temp file renamed over a data file, the model file's rename, the commit point, each dropped
 * data file's deletion, the last operation.
 */
function dataFilePoints(ops: readonly string[]): number[] {
  const points = new Set([1, ops.length]);
  ops.forEach((o, i) => {
    if (/^mkdir\(|^link\(\S+\.bin\.tmp-\S+ -> \S+\.bin\)$|^rename\(\S+\.bin\.tmp-|^rename\(model\.onnx\.tmp-|-> model\.onnx\.ndiff-update\.done\)$|^unlink\([^.]+(\.[^.]+)?\.bin\)$/.test(o)) points.add(i + 1);
  });
  return [...points].sort((a, b) => a - b);
}

for (const change of ['added', 'dropped', 'renamed'] as const) {
  test(`a rebuild whose ONNX model has a data file ${change}, killed at its key steps: exactly the old or the new files after recovery, nothing left, the re-run finishes`, { timeout: 300_000 }, async () => {
    const s = await crashRebuild(`onnx-data-${change}`, 3, { points: dataFilePoints });
    assert.deepEqual(s.bad, []);
    const at = (re: RegExp) => s.ops.findIndex((o) => re.test(o));
    const commit = at(/-> model\.onnx\.ndiff-update\.done\)$/);
    const modelSwitch = at(/^rename\(model\.onnx\.tmp-\S+ -> model\.onnx\)$/);
    assert.ok(commit > modelSwitch && modelSwitch > 0, s.ops.join('\n'));
    if (change !== 'dropped') {
      // A created data file is linked into place (never renamed over a file) before the model switches.
      const created = at(/^link\(\S+\.bin\.tmp-\S+ -> \S+\.bin\)$/);
      assert.ok(created > 0 && created < modelSwitch, s.ops.join('\n'));
    }
    if (change === 'added') assert.ok(at(/^mkdir\(extra\)$/) > 0 && at(/^mkdir\(extra\)$/) < at(/^open\(more\.bin\.tmp-/), 'the new folder is made before its file is written');
    if (change !== 'added') {
      // A dropped data file is deleted only after the commit point.
      const dropped = at(/^unlink\((more|weights)\.bin\)$/);
      assert.ok(dropped > commit, s.ops.join('\n'));
    }
    // Kills up to the commit point roll back to the old files; after it, the new ones stay.
    const killsBeforeCommit = dataFilePoints(s.ops).filter((p) => p <= commit + 1).length;
    assert.deepEqual({ kills: s.kills, old: s.sawOld, new: s.sawNew }, { kills: dataFilePoints(s.ops).length, old: killsBeforeCommit, new: s.kills - killsBeforeCommit });
  });
}
