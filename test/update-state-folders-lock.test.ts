/**
 * Two updates of one model whose state folders differ (`--state`, `stateDir`) exclude each other:
 * each state folder's lock alone kept them apart only from updates with the same folder, so a
 * second update could run while the first waited on its health check, finishing or undoing the
 * first's install under it. Real HTTP server on 127.0.0.1; the first update is held inside its
 * health check (an event, no clock) while the second starts.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { updateModel, type NodeUpdateOptions } from '../src/io/updater/node-updater.ts';
import { releaseChain, type ReleaseChain } from './helpers/release-chain.ts';
import { serveRelease, type ReleaseServer } from './helpers/release-server.ts';

let chain: ReleaseChain;
let server: ReleaseServer;
before(async () => {
  chain = await releaseChain(2);
  server = await serveRelease(chain.releaseDir);
});
after(async () => {
  await server?.close();
  if (chain) await rm(chain.work, { recursive: true, force: true });
});

test('a second update of one model with another state folder is refused while the first runs', async () => {
  const model = join(chain.work, 'device', 'model');
  await cp(chain.versions[0], model, { recursive: true });
  const options = (stateDir: string, extra: Partial<NodeUpdateOptions> = {}): NodeUpdateOptions => ({
    model, stateDir: join(chain.work, 'device', stateDir), modelId: 'kws', urls: [server.url], trustedKeys: [chain.keys.publicKeyPem], timeoutMs: 5000, ...extra,
  });
  let entered!: () => void;
  const inHealthCheck = new Promise<void>((resolve) => (entered = resolve));
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const first = updateModel(options('state-a', { healthCheck: async () => { entered(); await gate; } }));
  try {
    await inHealthCheck;
    await assert.rejects(updateModel(options('state-b')), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'ND_MODEL_FORMAT');
      assert.match(e.message, /already running/);
      return true;
    });
  } finally {
    release();
  }
  const r = await first;
  assert.equal(r.status, 'updated', JSON.stringify(r.error));
  assert.equal(r.fingerprint, chain.fingerprints[1]);
  // Once the first is done, the other state folder's update runs (and finds the model up to date).
  const second = await updateModel(options('state-b'));
  assert.equal(second.status, 'up-to-date', JSON.stringify(second.error));
});
