/**
 * `maxDownloadBytes` (`ndiff update --max-bytes`) caps the bytes one run downloads, across every
 * way the run tries: a payload that failed its health check, then the full model, may not take a
 * run past the cap; the refusal names the option and what the run would have needed.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { getHasher } from '../src/core/hasher.ts';
import { openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { defaultStateDir, updateModel } from '../src/io/updater/node-updater.ts';
import { FileDownloadStore } from '../src/io/updater/state-files.ts';
import { packageBytes, validateManifest, type ReleaseManifest } from '../src/updater/manifest.ts';
import { releaseChain, type ReleaseChain } from './helpers/release-chain.ts';
import { serveRelease, type ReleaseServer } from './helpers/release-server.ts';

const fingerprintOf = async (dir: string) => fingerprintStore(await getHasher(), await openTfjsModelDir(dir)).fingerprint;

describe('the download cap of one update run', () => {
  let chain: ReleaseChain;
  let server: ReleaseServer;
  let manifest: ReleaseManifest;
  before(async () => {
    chain = await releaseChain(2);
    server = await serveRelease(chain.releaseDir);
    manifest = validateManifest((JSON.parse(await readFile(join(chain.releaseDir, 'manifest.json'), 'utf8')) as { signed: unknown }).signed);
  });
  after(async () => {
    await server?.close();
    if (chain) await rm(chain.work, { recursive: true, force: true });
  });

  test('a payload that fails its health check, then the full model: the run stops at the cap', async () => {
    const model = join(chain.work, 'device', 'model');
    await mkdir(join(model, '..'), { recursive: true });
    await cp(chain.versions[0], model, { recursive: true });
    assert.equal(manifest.payloads.length, 1);
    const payload = manifest.payloads[0].length;
    const full = packageBytes(manifest.versions[1]);
    assert.ok(payload < full);
    // Room for either way alone, not for both.
    const cap = payload + full - 1;
    const r = await updateModel({
      model, modelId: 'kws', urls: [server.url], trustedKeys: [chain.keys.publicKeyPem], timeoutMs: 5000,
      maxDownloadBytes: cap,
      healthCheck: ({ kind }) => kind !== 'payload',
    });
    assert.deepEqual(r.steps.map((s) => [s.kind, s.outcome]), [['payload', 'health-check-failed']]);
    assert.ok(r.download.bytesReceived <= cap, `received ${r.download.bytesReceived} bytes, the cap is ${cap}`);
    assert.deepEqual([r.status, r.error?.code], ['failed', 'ND_PAYLOAD_TOO_LARGE']);
    assert.match(r.error?.message ?? '', /maxDownloadBytes \(--max-bytes\)/);
    assert.match(r.error?.message ?? '', new RegExp(`${cap}`));
    assert.doesNotMatch(r.error?.message ?? '', /maxPayloadBytes/);
    assert.equal(await fingerprintOf(model), chain.fingerprints[0], 'the device keeps its model');
  });

  test('a partial download from an earlier run, then a mirror answering the rest with the whole file: restarted within the cap, refused past it', async () => {
    const payload = manifest.payloads[0];
    const blob = new Uint8Array(await readFile(join(chain.releaseDir, payload.file)));
    const held = 600;
    assert.ok(payload.length > held + 100);
    const manifestBytes = (await readFile(join(chain.releaseDir, 'manifest.json'))).length;
    const run = async (name: string, cap: number) => {
      const model = join(chain.work, name, 'model');
      await mkdir(join(model, '..'), { recursive: true });
      await cp(chain.versions[0], model, { recursive: true });
      // What an earlier run stored before it stopped.
      const store = new FileDownloadStore(join(defaultStateDir(model), 'downloads'));
      await store.append(payload.sha256, blob.subarray(0, held));
      server.faults.push({ match: (p) => p === `/${payload.file}`, times: 100, kind: 'whole' });
      const from = server.log.length;
      try {
        const r = await updateModel({ model, modelId: 'kws', urls: [server.url], trustedKeys: [chain.keys.publicKeyPem], timeoutMs: 5000, chunkBytes: 256, maxDownloadBytes: cap });
        return { r, model, store, requests: server.log.slice(from).filter((q) => q.path === `/${payload.file}`) };
      } finally {
        server.faults.length = 0;
      }
    };
    // Room for the whole payload: the answer is taken as a restart from byte 0.
    const roomy = await run('roomy', manifestBytes + payload.length);
    assert.equal(roomy.r.status, 'updated', JSON.stringify(roomy.r.error));
    assert.equal(roomy.r.path, 'payloads');
    assert.deepEqual(roomy.requests.map((q) => [q.status, q.sent]), [[200, payload.length]]);
    assert.equal(await fingerprintOf(roomy.model), chain.fingerprints[1]);
    // Room for the rest only (what the run planned): the whole file is refused before it is read,
    // the partial dropped so that the next run plans the whole file.
    const cap = manifestBytes + payload.length - held + 10;
    assert.ok(cap < packageBytes(manifest.versions[1]), 'the full model does not fit either');
    const tight = await run('tight', cap);
    assert.ok(tight.r.download.bytesReceived <= cap, `received ${tight.r.download.bytesReceived} bytes, the cap is ${cap}`);
    assert.deepEqual([tight.r.status, tight.r.error?.code], ['failed', 'ND_PAYLOAD_TOO_LARGE']);
    assert.deepEqual(tight.r.steps.map((s) => [s.kind, s.outcome, s.error?.code]), [['payload', 'download-failed', 'ND_PAYLOAD_TOO_LARGE']]);
    assert.match(tight.r.steps[0].error?.message ?? '', /with the whole file \(HTTP 200/);
    assert.match(tight.r.steps[0].error?.message ?? '', /maxDownloadBytes \(--max-bytes\)/);
    assert.equal(await tight.store.size(payload.sha256), 0, 'the partial download was dropped');
    assert.equal(await fingerprintOf(tight.model), chain.fingerprints[0], 'the device keeps its model');
  });
});
