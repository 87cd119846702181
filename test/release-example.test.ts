/**
 * examples/release-updater: three versions added to a release folder, served by a static host,
 * and devices on v1, on v2 and with no model brought to v3 by `updateModel`, each new version
 * loaded with tfjs by the health check.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { tempDir } from './helpers/dirs.ts';

const example = fileURLToPath(new URL('../examples/release-updater/run.mjs', import.meta.url));

test('the release example brings devices on every version, and a new install, to the newest', async () => {
  const dir = await tempDir('nd-release-example-');
  try {
    const r = spawnSync(process.execPath, [...process.execArgv, example, join(dir, 'out'), '--json'], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    const s = JSON.parse(r.stdout.trim().split('\n').pop() as string) as { devices: { from: string; status: string; path: string; bytes: number; fullBytes: number; healthy: boolean }[]; expected: string; fingerprints: string[] };
    assert.deepEqual(s.devices.map((d) => [d.from, d.status, d.path, d.healthy]), [['v1', 'updated', 'payloads', true], ['v2', 'updated', 'payloads', true], ['new install', 'updated', 'full', true]]);
    assert.deepEqual(s.fingerprints, [s.expected, s.expected, s.expected]);
    // Only the head changed between versions: its payloads are a small part of the model.
    for (const d of s.devices.slice(0, 2)) assert.ok(d.bytes * 20 < d.fullBytes, `${d.from}: ${d.bytes} of ${d.fullBytes}`);
    assert.equal(s.devices[2].bytes, s.devices[2].fullBytes);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
