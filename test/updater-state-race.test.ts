/**
 * A check (`ndiff update --check`, `Updater.check()`) records the release number of the manifest
 * it accepted, as an update does. It runs without the update's lock, so an update may finish
 * while the check waits for the manifest: what the update recorded meanwhile (the sequence it
 * applied: the device's replay protection; the payloads that failed a health check) must not be
 * written over by the record the check read before it fetched.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { defaultStateDir, nodeUpdater, updateModel } from '../src/io/updater/node-updater.ts';
import { FileUpdaterState } from '../src/io/updater/state-files.ts';
import type { FetchLike } from '../src/updater/download.ts';
import { releaseChain } from './helpers/release-chain.ts';
import { serveRelease } from './helpers/release-server.ts';

test('a check that overlaps an update keeps the sequence the update recorded', async () => {
  const chain = await releaseChain(2);
  const server = await serveRelease(chain.releaseDir);
  try {
    const model = join(chain.work, 'device', 'model');
    await mkdir(join(model, '..'), { recursive: true });
    await cp(chain.versions[0], model, { recursive: true });
    const common = { model, modelId: 'kws', urls: [server.url], trustedKeys: [chain.keys.publicKeyPem], timeoutMs: 5000 };

    // The check's manifest request waits until the update has finished.
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    let asked!: () => void;
    const waiting = new Promise<void>((resolve) => (asked = resolve));
    const held: FetchLike = async (url, init) => {
      asked();
      await gate;
      return fetch(url, init);
    };
    const check = nodeUpdater({ ...common, fetch: held }).check();
    await waiting;
    const updated = await updateModel(common);
    assert.equal(updated.status, 'updated', JSON.stringify(updated.error));
    const state = new FileUpdaterState(join(defaultStateDir(model), 'state.json'));
    assert.equal((await state.load('kws'))?.sequence, 2, 'the update recorded sequence 2');
    open();
    const c = await check;
    assert.equal(c.release, updated.release);
    assert.equal((await state.load('kws'))?.sequence, 2, 'the check did not write the sequence away');
  } finally {
    await server.close();
    await rm(chain.work, { recursive: true, force: true });
  }
});
