/**
 * examples/node-updater: a Node app installs v1, applies two signed updates with a health check
 * that loads each new version with tfjs, then refuses a replayed and a tampered update with the
 * folder untouched.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { rm } from 'node:fs/promises';
import { runNodeUpdaterExample } from '../examples/node-updater/run.ts';
import { tempDir } from './helpers/dirs.ts';

test('the Node updater example applies two signed updates and refuses a replay and a tampered one', async () => {
  const dir = await tempDir('nd-node-updater-');
  try {
    const s = await runNodeUpdaterExample(join(dir, 'out'), () => {});
    assert.equal(s.updates.length, 2);
    for (const u of s.updates) {
      assert.equal(u.status, 'applied');
      assert.equal(u.healthy, true, 'the canary output of the new version matches');
      // The head (kernel + bias) is patched and hashed; the other 6 tensors checked by recorded digests.
      assert.deepEqual(u.baseCheck, { hashedTensors: 2, recordedTensors: 6 });
    }
    assert.deepEqual(s.refused, { replay: 'ND_FRESHNESS', tampered: 'ND_SIGNATURE', folderUntouched: true });
    assert.equal(s.final.fingerprint, s.final.expected);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
