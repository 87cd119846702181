/**
 * examples/node-updater: a Node app installs v1, applies two signed updates with a health check
 * that loads each new version with tfjs, then refuses a replayed and a tampered update with the
 * folder untouched. (test/consumer.test.ts runs the same file with plain node from the installed
 * package.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { tempDir } from './helpers/dirs.ts';
import { checkNodeUpdaterSummary } from './helpers/node-updater.ts';

const example = fileURLToPath(new URL('../examples/node-updater/run.mjs', import.meta.url));

test('the Node updater example applies two signed updates and refuses a replay and a tampered one', async () => {
  const dir = await tempDir('nd-node-updater-');
  try {
    const r = spawnSync(process.execPath, [...process.execArgv, example, join(dir, 'out'), '--json'], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    checkNodeUpdaterSummary(r.stdout);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
