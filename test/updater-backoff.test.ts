/**
 * When the updater asks a failing mirror again (src/updater/retry.ts), against a real HTTP server
 * on 127.0.0.1 (test/helpers/release-server.ts): a 503 with and without `Retry-After` (seconds
 * and HTTP-date), a dropped connection, a `Retry-After` beyond the bound (the next mirror), the
 * bound on a run's waits, and ten devices meeting one failing mirror at once, whose retries are
 * spread and each after the `Retry-After`. The sleep is injected: it records the wait asked for
 * and resolves at once (or when all ten devices have asked), so no test waits on a clock; one
 * test runs the real timer with a short base.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setMaxListeners } from 'node:events';
import { updateModel, type NodeUpdateOptions } from '../src/io/updater/node-updater.ts';
import { validateManifest, type ReleaseManifest } from '../src/updater/manifest.ts';
import { retryAfterMs } from '../src/updater/retry.ts';
import { releaseChain, type ReleaseChain } from './helpers/release-chain.ts';
import { serveRelease, type ReleaseServer } from './helpers/release-server.ts';
import { orTestEnd } from './helpers/waits.ts';

let deviceCount = 0;
/** A device holding version 1 of the chain, in a fresh folder. */
async function device(chain: ReleaseChain): Promise<string> {
  const dir = join(chain.work, 'devices', `d${++deviceCount}`, 'model');
  await mkdir(join(dir, '..'), { recursive: true });
  await cp(chain.versions[0], dir, { recursive: true });
  return dir;
}

/** A sleep that records the waits asked for and resolves at once. */
function recordingSleep(): { sleep: (ms: number) => Promise<void>; waits: number[] } {
  const waits: number[] = [];
  return { waits, sleep: async (ms) => void waits.push(ms) };
}

describe('the updater backs off before asking a mirror again', () => {
  let chain: ReleaseChain;
  let server: ReleaseServer;
  let mirror: ReleaseServer;
  let payloadPath: string;
  const options = (model: string, urls: string[], extra: Partial<NodeUpdateOptions> = {}): NodeUpdateOptions => ({
    model, modelId: 'kws', urls, trustedKeys: [chain.keys.publicKeyPem], timeoutMs: 5000, ...extra,
  });
  before(async () => {
    chain = await releaseChain(2);
    server = await serveRelease(chain.releaseDir);
    mirror = await serveRelease(chain.releaseDir);
    const manifest: ReleaseManifest = validateManifest((JSON.parse(await readFile(join(chain.releaseDir, 'manifest.json'), 'utf8')) as { signed: unknown }).signed);
    payloadPath = `/${manifest.payloads[0].file}`;
  });
  after(async () => {
    await server?.close();
    await mirror?.close();
    if (chain) await rm(chain.work, { recursive: true, force: true });
  });

  test('Retry-After is read as delta-seconds or an HTTP-date; anything else is no hint', () => {
    const now = Date.UTC(2026, 0, 1, 12, 0, 0);
    assert.equal(retryAfterMs('120', now), 120_000);
    assert.equal(retryAfterMs(' 0 ', now), 0);
    assert.equal(retryAfterMs(new Date(now + 7000).toUTCString(), now), 7000);
    assert.equal(retryAfterMs('Thu, 01 Jan 2026 11:00:00 GMT', now), 0, 'a date in the past: no wait');
    // The obsolete forms (RFC 9110 §5.6.7): RFC 850 and asctime, GMT both.
    assert.equal(retryAfterMs('Thursday, 01-Jan-26 12:00:30 GMT', now), 30_000);
    assert.equal(retryAfterMs('Thu Jan  1 12:00:30 2026', now), 30_000);
    for (const bad of [null, '', '-5', '1.5', 'soon', 'Thu, 01 Jan']) assert.equal(retryAfterMs(bad, now), undefined, String(bad));
  });

  test('a payload answered 503 twice (no Retry-After), then 200: each retry waits a full-jitter backoff', async () => {
    const model = await device(chain);
    const { sleep, waits } = recordingSleep();
    server.faults.push({ match: (p) => p === payloadPath, times: 2, kind: 'status', status: 503 });
    const r = await updateModel(options(model, [server.url], { sleep, random: () => 0.5 }));
    server.faults.length = 0;
    assert.equal(r.status, 'updated', JSON.stringify(r.error));
    assert.equal(r.path, 'payloads');
    // random 0.5 of min(30 s, 1 s * 2^n): 500 ms, then 1000 ms.
    assert.deepEqual(waits, [500, 1000]);
    assert.equal(r.download.retryWaitMs, 1500);
  });

  test('a manifest answered 503 with Retry-After (seconds, then an HTTP-date), then 200: each retry waits what the server asked, plus the jitter', async () => {
    const t0 = Math.floor(Date.now() / 1000) * 1000;
    for (const [retryAfter, asked] of [['2', 2000], [new Date(t0 + 7000).toUTCString(), 7000]] as const) {
      const model = await device(chain);
      const { sleep, waits } = recordingSleep();
      server.faults.push({ match: (p) => p === '/manifest.json', times: 1, kind: 'status', status: 503, headers: { 'Retry-After': retryAfter } });
      const r = await updateModel(options(model, [server.url], { sleep, random: () => 0.25, now: () => t0 }));
      server.faults.length = 0;
      assert.equal(r.status, 'updated', JSON.stringify(r.error));
      assert.deepEqual(waits, [asked + 250], retryAfter);
    }
  });

  test('a dropped connection waits a backoff before it is resumed', async () => {
    const model = await device(chain);
    const { sleep, waits } = recordingSleep();
    server.faults.push({ match: (p) => p === payloadPath, times: 1, kind: 'drop', at: 100 });
    const r = await updateModel(options(model, [server.url], { sleep, random: () => 0.9 }));
    server.faults.length = 0;
    assert.equal(r.status, 'updated', JSON.stringify(r.error));
    assert.deepEqual(waits, [900]);
  });

  test('a Retry-After beyond maxRetryAfterMs is not waited for: the next mirror serves at once', async () => {
    const model = await device(chain);
    const { sleep, waits } = recordingSleep();
    server.faults.push({ match: (p) => p === payloadPath, times: 1, kind: 'status', status: 503, headers: { 'Retry-After': '3600' } });
    const fromMirror = mirror.log.length;
    const r = await updateModel(options(model, [server.url, mirror.url], { sleep }));
    server.faults.length = 0;
    assert.equal(r.status, 'updated', JSON.stringify(r.error));
    assert.equal(r.path, 'payloads');
    assert.deepEqual(waits, []);
    assert.ok(mirror.log.slice(fromMirror).some((q) => q.path === payloadPath && q.status === 200));
  });

  test('the waits of one run are bounded by maxRetryWaitMs: a mirror that keeps asking for 40 s is given up after one wait', async () => {
    const model = await device(chain);
    const { sleep, waits } = recordingSleep();
    server.faults.push({ match: (p) => p.startsWith('/blobs/'), times: 1000, kind: 'status', status: 503, headers: { 'Retry-After': '40' } });
    const r = await updateModel(options(model, [server.url], { sleep, random: () => 0, maxRetryWaitMs: 60_000 }));
    server.faults.length = 0;
    assert.equal(r.status, 'failed');
    assert.equal(r.error?.code, 'ND_DOWNLOAD');
    // The payload's first retry waits 40 s; every later one would pass 60 s: the payload and then
    // the full model fail without another wait.
    assert.deepEqual(waits, [40_000]);
    assert.equal(r.download.retryWaitMs, 40_000);
    assert.match(JSON.stringify(r), /maxRetryWaitMs/);
  });

  test('ten devices meeting one failing mirror at once: their retries are spread, each after the Retry-After', async (t) => {
    const devices = await Promise.all(Array.from({ length: 10 }, () => device(chain)));
    setMaxListeners(devices.length + 5, t.signal); // one wait per device listens for the test's end
    // Every device's first payload request is answered 503 (Retry-After: 1); the waits resolve
    // once all ten have asked for theirs, so all ten met the failure before any retried.
    const waits: number[] = [];
    let allAsked!: () => void;
    const asked = new Promise<void>((resolve) => (allAsked = resolve));
    const sleep = async (ms: number) => {
      waits.push(ms);
      if (waits.length === devices.length) allAsked();
      await orTestEnd(t.signal, () => `all ten devices to back off (${waits.length} did)`, asked);
    };
    server.faults.push({ match: (p) => p === payloadPath, times: devices.length, kind: 'status', status: 503, headers: { 'Retry-After': '1' } });
    const results = await Promise.all(devices.map((model) => updateModel(options(model, [server.url], { sleep }))));
    server.faults.length = 0;
    for (const r of results) assert.equal(r.status, 'updated', JSON.stringify(r.error));
    assert.equal(waits.length, devices.length);
    // Respected: at least the second asked for; spread: a full-jitter draw of up to 1 s on top.
    for (const ms of waits) assert.ok(ms >= 1000 && ms < 2000, `waited ${ms} ms`);
    assert.ok(new Set(waits).size > 1, `all ten waited the same ${waits[0]} ms`);
  });

  test('with the real timer (a short base): a 503 then 200, the wait counted in the run\'s stats', async () => {
    const model = await device(chain);
    const from = server.log.length;
    server.faults.push({ match: (p) => p === payloadPath, times: 1, kind: 'status', status: 503 });
    const r = await updateModel(options(model, [server.url], { retryBaseMs: 20, random: () => 0.5 }));
    server.faults.length = 0;
    assert.equal(r.status, 'updated', JSON.stringify(r.error));
    assert.deepEqual(server.log.slice(from).filter((q) => q.path === payloadPath).map((q) => q.status), [503, 200]);
    assert.equal(r.download.retryWaitMs, 10);
  });
});
