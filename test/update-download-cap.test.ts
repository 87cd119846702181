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
import { updateModel } from '../src/io/updater/node-updater.ts';
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
});
