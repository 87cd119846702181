/**
 * The updater against what CDNs and mirrors do to a request and its answer, over a real HTTP
 * server on 127.0.0.1 (test/helpers/release-server.ts): a body sent gzip-coded with
 * `Content-Encoding` (its `Content-Length` the coded length: the decoded bytes and their hash
 * decide), a coded answer to a Range request (restarted whole), and the manifest asked for with
 * the request's cache mode, not a `Cache-Control` header (which is not CORS-safelisted; the
 * cross-origin case runs in Chromium, test/browser-updater.test.ts).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { updateModel, type NodeUpdateOptions } from '../src/io/updater/node-updater.ts';
import { validateManifest, type ReleaseManifest } from '../src/updater/manifest.ts';
import { releaseChain, type ReleaseChain } from './helpers/release-chain.ts';
import { serveRelease, type ReleaseServer } from './helpers/release-server.ts';

describe('the updater behind a CDN', () => {
  let chain: ReleaseChain;
  let server: ReleaseServer;
  let manifest: ReleaseManifest;
  let deviceCount = 0;
  const device = async () => {
    const dir = join(chain.work, 'devices', `d${++deviceCount}`, 'model');
    await mkdir(join(dir, '..'), { recursive: true });
    await cp(chain.versions[0], dir, { recursive: true });
    return dir;
  };
  const options = (model: string, extra: Partial<NodeUpdateOptions> = {}): NodeUpdateOptions => ({
    model, modelId: 'kws', urls: [server.url], trustedKeys: [chain.keys.publicKeyPem], timeoutMs: 5000, chunkBytes: 256, sleep: async () => {}, ...extra,
  });
  before(async () => {
    chain = await releaseChain(2);
    server = await serveRelease(chain.releaseDir);
    manifest = validateManifest((JSON.parse(await readFile(join(chain.releaseDir, 'manifest.json'), 'utf8')) as { signed: unknown }).signed);
  });
  after(async () => {
    await server?.close();
    if (chain) await rm(chain.work, { recursive: true, force: true });
  });

  test('a manifest and a payload served gzip-coded (Content-Encoding: gzip): taken by their decoded length and hash', async () => {
    const payload = manifest.payloads[0];
    const model = await device();
    const from = server.log.length;
    server.faults.push({ match: (p) => p === '/manifest.json' || p === `/${payload.file}`, times: 2, kind: 'gzip' });
    const r = await updateModel(options(model));
    server.faults.length = 0;
    assert.equal(r.status, 'updated', JSON.stringify(r.error));
    assert.equal(r.path, 'payloads');
    assert.equal(r.fingerprint, chain.fingerprints[1]);
    const coded = server.log.slice(from).filter((q) => q.fault === 'gzip');
    assert.deepEqual(coded.map((q) => q.path), ['/manifest.json', `/${payload.file}`]);
    // The coded body is not the file's length: the length check could not have been on Content-Length.
    assert.notEqual(coded[1].sent, payload.length);
    assert.equal(r.download.requests, 2);
  });

  test('a gzip-coded answer to a Range request (a resume) is not joined to the decoded bytes: the file is fetched again whole', async () => {
    const payload = manifest.payloads[0];
    assert.ok(payload.length > 300);
    const model = await device();
    const from = server.log.length;
    server.faults.push({ match: (p) => p === `/${payload.file}`, times: 1, kind: 'drop', at: 300 });
    server.faults.push({ match: (p) => p === `/${payload.file}`, times: 1, kind: 'gzip' });
    const r = await updateModel(options(model));
    server.faults.length = 0;
    assert.equal(r.status, 'updated', JSON.stringify(r.error));
    assert.equal(r.path, 'payloads');
    const requests = server.log.slice(from).filter((q) => q.path === `/${payload.file}`);
    assert.deepEqual(requests.map((q) => [q.fault, q.status]), [['drop', 200], ['gzip', 206], [undefined, 200]]);
    assert.equal(requests[2].start, 0);
  });

  test('the manifest is asked for with the cache mode no-cache: no Cache-Control header of the updater, the revalidation fetch adds itself', async () => {
    const model = await device();
    const from = server.log.length;
    const r = await updateModel(options(model));
    assert.equal(r.status, 'updated', JSON.stringify(r.error));
    const asked = server.log.slice(from).find((q) => q.path === '/manifest.json');
    // Node's fetch (undici) applies the Fetch standard's no-cache mode: `Cache-Control: max-age=0`,
    // which makes a proxy or CDN revalidate; `no-cache` was the updater's own header.
    assert.equal(asked?.headers['cache-control'], 'max-age=0');
  });
});
