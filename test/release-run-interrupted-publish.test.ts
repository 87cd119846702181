/**
 * A publication stopped between recording its release and writing the manifest (`release run
 * --key` or `release publish` killed there; publish writes the record first so that a crash costs
 * a release number and never reuses one): the version is half published, its payloads signed and
 * recorded while devices still read the old manifest. Running the plan again says so and what
 * writes the manifest, instead of "plan one first".
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runPlanOnQueue } from '../src/release/queue/plan.ts';
import { releaseChain } from './helpers/release-chain.ts';

test('release run after a publication stopped before its manifest: half published, and how to finish it', async () => {
  const chain = await releaseChain(2);
  try {
    // The record as a publication leaves it just before the manifest is written.
    const recordFile = join(chain.releaseDir, 'release.json');
    const record = JSON.parse(await readFile(recordFile, 'utf8')) as { release: number };
    const served = record.release;
    record.release += 1;
    await writeFile(recordFile, JSON.stringify(record, null, 2) + '\n');
    await assert.rejects(runPlanOnQueue(chain.releaseDir, 'redis://127.0.0.1:9'), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'ND_USAGE');
      assert.match(e.message, new RegExp(`recorded release ${served + 1}, but its manifest\\.json is release ${served}`));
      assert.match(e.message, /ndiff release publish --release /);
      return true;
    });
  } finally {
    await rm(chain.work, { recursive: true, force: true });
  }
});
