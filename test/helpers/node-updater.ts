/** Checks of examples/node-updater/run.mjs's summary, shared by its test and the consumer test. */
import assert from 'node:assert/strict';

/** The summary the example prints with --json (its last stdout line). */
export function checkNodeUpdaterSummary(stdout: string): void {
  const s = JSON.parse(stdout.trim().split('\n').pop() as string) as {
    updates: { status: string; healthy: boolean; baseCheck: unknown }[];
    refused: unknown;
    final: { fingerprint: string; expected: string };
  };
  assert.equal(s.updates.length, 2);
  for (const u of s.updates) {
    assert.equal(u.status, 'applied');
    assert.equal(u.healthy, true, 'the canary output of the new version matches');
    // The head (kernel + bias) is patched and hashed, and the frame (tfjs:frame) computed from
    // model.json; the other 6 tensors checked by recorded digests.
    assert.deepEqual(u.baseCheck, { hashedTensors: 3, recordedTensors: 6 });
  }
  assert.deepEqual(s.refused, { replay: 'ND_FRESHNESS', tampered: 'ND_SIGNATURE', folderUntouched: true });
  assert.equal(s.final.fingerprint, s.final.expected);
}

