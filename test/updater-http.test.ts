/**
 * The device updater against a real HTTP server (test/helpers/release-server.ts: node:http on
 * 127.0.0.1, Range support) serving a release folder made by `ndiff release`'s library, under
 * faults: devices on every older version, an unknown or missing model, a connection dropped
 * mid-body (resumed: the bytes fetched twice are counted), a body cut short or too long, 404 and
 * 500 then a mirror, a stalled server, a replayed old manifest, a tampered payload, an unknown
 * signing key, an expired manifest, a power cut between download and apply, and payloads that
 * failed a health check never tried again. No timing assertions: the stall uses a short timeout
 * against a server that never answers.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { getHasher } from '../src/core/hasher.ts';
import { openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { updateModel, defaultStateDir, type NodeUpdateOptions } from '../src/io/updater/node-updater.ts';
import { FileDownloadStore, FileUpdaterState } from '../src/io/updater/state-files.ts';
import { tfjsFolderTarget, INCOMING_SUFFIX, PREVIOUS_SUFFIX } from '../src/io/updater/targets.ts';
import { Updater } from '../src/updater/updater.ts';
import { validateManifest, packageBytes, type ReleaseManifest } from '../src/updater/manifest.ts';
import { signManifest } from '../src/release/publish.ts';
import { serializeManifest } from '../src/updater/manifest.ts';
import { generateKeyPair, loadPrivateKey } from '../src/sign/node-keys.ts';
import { releaseChain, type ReleaseChain } from './helpers/release-chain.ts';
import { serveRelease, type ReleaseServer } from './helpers/release-server.ts';
import { folderBytes, writeStore } from './helpers/dirs.ts';
import { perturbed } from './helpers/perturb.ts';
import { baseAndTarget } from './helpers/models.ts';

async function fingerprintOf(dir: string): Promise<string> {
  return fingerprintStore(await getHasher(), await openTfjsModelDir(dir)).fingerprint;
}

async function manifestOf(chain: ReleaseChain): Promise<ReleaseManifest> {
  return validateManifest((JSON.parse(await readFile(join(chain.releaseDir, 'manifest.json'), 'utf8')) as { signed: unknown }).signed);
}

let deviceCount = 0;
/** A device holding version `v` (1-based) of the chain, in a fresh folder. */
async function device(chain: ReleaseChain, v: number): Promise<string> {
  const dir = join(chain.work, 'devices', `d${++deviceCount}`, 'model');
  await mkdir(join(dir, '..'), { recursive: true });
  await cp(chain.versions[v - 1], dir, { recursive: true });
  return dir;
}

const options = (chain: ReleaseChain, model: string, urls: string[], extra: Partial<NodeUpdateOptions> = {}): NodeUpdateOptions => ({
  model, modelId: 'kws', urls, trustedKeys: [chain.keys.publicKeyPem], timeoutMs: 5000, chunkBytes: 256, ...extra,
});

/** Body bytes the server sent for release files (not the manifest). */
const blobBytes = (s: ReleaseServer, from = 0) => s.log.slice(from).filter((r) => r.path.startsWith('/blobs/')).reduce((n, r) => n + r.sent, 0);

describe('updater over HTTP', () => {
  let chain: ReleaseChain;
  let server: ReleaseServer;
  let mirror: ReleaseServer;
  let manifest: ReleaseManifest;
  before(async () => {
    chain = await releaseChain(4);
    server = await serveRelease(chain.releaseDir);
    mirror = await serveRelease(chain.releaseDir);
    manifest = await manifestOf(chain);
  });
  after(async () => {
    await server?.close();
    await mirror?.close();
    if (chain) await rm(chain.work, { recursive: true, force: true });
  });

  test('a device on every older version reaches the newest with fewer bytes than the full model', async () => {
    const full = packageBytes(manifest.versions[3]);
    for (const v of [1, 2, 3]) {
      const model = await device(chain, v);
      const from = server.log.length;
      const r = await updateModel(options(chain, model, [server.url]));
      assert.equal(r.status, 'updated', JSON.stringify(r.error));
      assert.equal(r.path, 'payloads');
      assert.equal(await fingerprintOf(model), chain.fingerprints[3], `device on v${v}`);
      const sent = blobBytes(server, from);
      assert.ok(sent > 0 && sent < full, `v${v}: ${sent} bytes of payloads, full model ${full}`);
      assert.equal(sent, r.steps.reduce((n, s) => n + s.bytes, 0), 'exactly the planned bytes were fetched');
      const again = await updateModel(options(chain, model, [server.url]));
      assert.equal(again.status, 'up-to-date');
    }
  });

  test('an unknown model and a missing model get the full model', async () => {
    const unknown = join(chain.work, 'devices', 'unknown', 'model');
    await writeStore(unknown, perturbed(baseAndTarget(7).base, 0.5, 7));
    const r = await updateModel(options(chain, unknown, [server.url]));
    assert.equal(r.path, 'full');
    assert.equal(r.status, 'updated', JSON.stringify(r.error));
    assert.equal(await fingerprintOf(unknown), chain.fingerprints[3]);
    assert.equal(await stat(unknown + PREVIOUS_SUFFIX).catch(() => null), null, 'the previous model was deleted once the new one was confirmed');
    const missing = join(chain.work, 'devices', 'fresh', 'model');
    const fresh = await updateModel(options(chain, missing, [server.url]));
    assert.deepEqual([fresh.status, fresh.path], ['updated', 'full']);
    assert.equal(await fingerprintOf(missing), chain.fingerprints[3]);
  });

  test('a connection dropped mid-body is resumed with Range, not restarted: no byte is fetched twice', async () => {
    const model = await device(chain, 3);
    const payload = manifest.payloads.find((p) => p.fromVersion === 3 && p.toVersion === 4);
    assert.ok(payload && payload.length > 600);
    const from = server.log.length;
    server.faults.push({ match: (p) => p === `/${payload.file}`, times: 1, kind: 'drop', at: 600 });
    const r = await updateModel(options(chain, model, [server.url]));
    assert.equal(r.status, 'updated', JSON.stringify(r.error));
    const requests = server.log.slice(from).filter((q) => q.path === `/${payload.file}`);
    assert.deepEqual(requests.map((q) => [q.start, q.sent]), [[0, 600], [600, payload.length - 600]]);
    assert.equal(r.download.bytesRefetched, 0);
    assert.equal(r.download.resumes, 1);
    assert.equal(await fingerprintOf(model), chain.fingerprints[3]);
  });

  test('a mirror that answers a Range request with 200 and the whole file: the download restarts from byte 0 and the payload is taken', async () => {
    const model = await device(chain, 3);
    const payload = manifest.payloads.find((p) => p.fromVersion === 3 && p.toVersion === 4);
    assert.ok(payload && payload.length > 600);
    const from = server.log.length;
    server.faults.push({ match: (p) => p === `/${payload.file}`, times: 1, kind: 'drop', at: 600 });
    server.faults.push({ match: (p) => p === `/${payload.file}`, times: 100, kind: 'whole' });
    const r = await updateModel(options(chain, model, [server.url]));
    server.faults.length = 0;
    assert.equal(r.status, 'updated', JSON.stringify(r.error));
    assert.equal(r.path, 'payloads');
    const requests = server.log.slice(from).filter((q) => q.path === `/${payload.file}`);
    assert.deepEqual(requests.map((q) => [q.status, q.start, q.sent]), [[200, 0, 600], [200, 0, payload.length]]);
    assert.equal(r.download.bytesRefetched, 600, 'the 600 bytes received before the drop came again in the whole file');
    assert.equal(await fingerprintOf(model), chain.fingerprints[3]);
  });

  test('an app restarted mid-download fetches again at most one chunk and the network read in flight', async () => {
    const model = await device(chain, 3);
    const payload = manifest.payloads.find((p) => p.fromVersion === 3 && p.toVersion === 4);
    assert.ok(payload && payload.length > 1024);
    const stateDir = join(model, '..', 'updater');
    // The first run dies (a simulated power cut) while storing its third 256-byte chunk; the
    // server sends 64 bytes per write, so the network reads are small.
    class PowerCut extends Error {}
    let appends = 0;
    const downloads = new FileDownloadStore(join(stateDir, 'downloads'));
    const dying = Object.assign(Object.create(downloads), {
      append: async (key: string, bytes: Uint8Array) => {
        if (++appends === 3) throw new PowerCut('power cut');
        return downloads.append(key, bytes);
      },
    }) as FileDownloadStore;
    server.faults.push({ match: (p) => p === `/${payload.file}`, times: 1, kind: 'trickle', at: 64 });
    let received = 0;
    let largestRead = 0;
    const counting = async (url: string, init: { headers: Record<string, string>; signal: AbortSignal }) => {
      const res = await fetch(url, init);
      const reader = res.body?.getReader();
      const body = reader && new ReadableStream<Uint8Array>({
        async pull(c) {
          const { done, value } = await reader.read();
          if (done) c.close();
          else {
            if (url.includes('/blobs/')) {
              received += value.length;
              largestRead = Math.max(largestRead, value.length);
            }
            c.enqueue(value);
          }
        },
        cancel: (why) => reader.cancel(why),
      }, { highWaterMark: 0 }); // read only when the updater reads: what it received
      return { status: res.status, headers: res.headers, body, arrayBuffer: () => res.arrayBuffer() };
    };
    const from = server.log.length;
    const first = new Updater({ modelId: 'kws', urls: [server.url], trustedKeys: [chain.keys.publicKeyPem], chunkBytes: 256, fetch: counting, target: tfjsFolderTarget(model), state: new FileUpdaterState(join(stateDir, 'state.json')), downloads: dying });
    await assert.rejects(first.update(), PowerCut);
    const r = await updateModel(options(chain, model, [server.url], { stateDir }));
    assert.equal(r.status, 'updated', JSON.stringify(r.error));
    const resumed = server.log.slice(from).filter((q) => q.path === `/${payload.file}`).at(-1);
    assert.equal(resumed?.start, 512, 'the second run resumed after the two chunks stored');
    const twice = received - (resumed?.start ?? 0);
    assert.ok(twice > 0 && twice <= 256 + largestRead, `${twice} bytes fetched twice: at most one 256-byte chunk and the read in flight (at most ${largestRead} bytes)`);
    assert.ok(largestRead < payload.length, 'the body came in several reads');
    assert.equal(await fingerprintOf(model), chain.fingerprints[3]);
  });

  test('a body cut short is resumed; a body longer than listed is refused and the mirror serves the file', async () => {
    const payload = manifest.payloads.find((p) => p.fromVersion === 2 && p.toVersion === 4);
    assert.ok(payload);
    const short = await device(chain, 2);
    server.faults.push({ match: (p) => p === `/${payload.file}`, times: 1, kind: 'truncate', at: 300 });
    const a = await updateModel(options(chain, short, [server.url]));
    assert.equal(a.status, 'updated', JSON.stringify(a.error));
    assert.equal(a.download.resumes, 1);
    assert.equal(a.download.bytesRefetched, 0);
    const long = await device(chain, 2);
    server.faults.push({ match: (p) => p === `/${payload.file}`, times: 4, kind: 'overlong' });
    const fromMirror = mirror.log.length;
    const b = await updateModel(options(chain, long, [server.url, mirror.url]));
    assert.equal(b.status, 'updated', JSON.stringify(b.error));
    assert.ok(mirror.log.slice(fromMirror).some((q) => q.path === `/${payload.file}` && q.status === 200));
    assert.equal(await fingerprintOf(long), chain.fingerprints[3]);
  });

  test('404 and 500 from the first URL, then the mirror; a stalled server times out and the mirror serves', async () => {
    for (const status of [404, 500]) {
      const model = await device(chain, 1);
      server.faults.push({ match: () => true, times: 1000, kind: 'status', status });
      const r = await updateModel(options(chain, model, [server.url, mirror.url]));
      server.faults.length = 0;
      assert.equal(r.status, 'updated', JSON.stringify(r.error));
      assert.equal(await fingerprintOf(model), chain.fingerprints[3]);
    }
    // A stalled server never answers the manifest request; the timeout is the honest mirror's
    // too, so it is generous (seconds, against a local server): no race with a busy machine.
    const model = await device(chain, 1);
    const stalled = await serveRelease(chain.releaseDir);
    stalled.faults.push({ match: (p) => p === '/manifest.json', times: 1000, kind: 'stall' });
    try {
      const r = await updateModel(options(chain, model, [stalled.url, mirror.url], { timeoutMs: 3000 }));
      assert.equal(r.status, 'updated', JSON.stringify(r.error));
      assert.ok(stalled.log.some((e) => e.path === '/manifest.json' && e.fault === 'stall'), 'the stalled server was asked first');
      assert.equal(await fingerprintOf(model), chain.fingerprints[3]);
    } finally {
      await stalled.close();
    }
  });

  test('slow retrieval: a mirror sending a byte every 300 ms is left for the next, manifest or payload', async () => {
    for (const what of ['manifest', 'payload'] as const) {
      const model = await device(chain, 3);
      const slow = await serveRelease(chain.releaseDir);
      // Never idle for the 2.5 s timeout, and never done: only the minimum pace ends it.
      slow.faults.push({ match: (p) => (what === 'manifest' ? p === '/manifest.json' : p.startsWith('/blobs/')), times: 1000, kind: 'slow', at: 300 });
      try {
        const r = await updateModel(options(chain, model, [slow.url, mirror.url], { timeoutMs: 2500, attemptsPerMirror: 1 }));
        assert.equal(r.status, 'updated', JSON.stringify(r.error));
        assert.equal(await fingerprintOf(model), chain.fingerprints[3]);
        const cut = slow.log.filter((e) => e.fault === 'slow');
        assert.ok(cut.length >= 1, 'the slow mirror was asked first');
        // The body is read only while it keeps the pace: a few bytes, not the whole file.
        for (const e of cut) assert.ok(e.sent < 200, `${e.path}: ${e.sent} bytes trickled before the mirror was left`);
      } finally {
        await slow.close();
      }
    }
  });

  test('a tampered payload is refused by its hash and the device falls back to the full model', async () => {
    const model = await device(chain, 3);
    const payload = manifest.payloads.find((p) => p.fromVersion === 3 && p.toVersion === 4);
    assert.ok(payload);
    server.faults.push({ match: (p) => p === `/${payload.file}`, times: 100, kind: 'tamper', at: 200 });
    const r = await updateModel(options(chain, model, [server.url]));
    server.faults.length = 0;
    assert.equal(r.status, 'updated', JSON.stringify(r.error));
    assert.deepEqual(r.steps.map((s) => [s.kind, s.outcome]), [['payload', 'download-failed'], ['full', 'installed']]);
    assert.match(r.steps[0].error?.message ?? '', /SHA-256/);
    assert.equal(await fingerprintOf(model), chain.fingerprints[3]);
  });

  test('a manifest signed by an unknown key, or expired, is refused and the model is untouched', async () => {
    const model = await device(chain, 2);
    const before = await folderBytes(model);
    const stranger = generateKeyPair();
    server.override('/manifest.json', serializeManifest(signManifest({ ...manifest, release: manifest.release + 1 }, loadPrivateKey(stranger.privateKeyPem))));
    const r = await updateModel(options(chain, model, [server.url]));
    server.override('/manifest.json', undefined);
    assert.deepEqual([r.status, r.error?.code], ['failed', 'ND_SIGNATURE']);
    assert.match(r.error?.message ?? '', new RegExp(stranger.keyId));
    const expired = await updateModel(options(chain, model, [server.url], { now: () => (manifest.expiresAt + 1) * 1000 }));
    assert.deepEqual([expired.status, expired.error?.code], ['failed', 'ND_FRESHNESS']);
    assert.match(expired.error?.message ?? '', /expired/);
    // A cap on the bytes one run may download, and the report callback.
    const reports: unknown[] = [];
    const capped = await updateModel(options(chain, model, [server.url], { maxDownloadBytes: 100, onReport: (r) => void reports.push(r) }));
    assert.deepEqual([capped.status, capped.error?.code], ['failed', 'ND_PAYLOAD_TOO_LARGE']);
    assert.deepEqual(reports, [capped]);
    assert.deepEqual(await folderBytes(model), before);
  });
});

describe('updater over HTTP: replays and health checks across releases', () => {
  let chain: ReleaseChain;
  let server: ReleaseServer;
  before(async () => {
    chain = await releaseChain(3);
    server = await serveRelease(chain.releaseDir);
  });
  after(async () => {
    await server?.close();
    if (chain) await rm(chain.work, { recursive: true, force: true });
  });

  test('payloads that failed a health check are never tried again; a later release gets through', async () => {
    const model = await device(chain, 2);
    const before = await folderBytes(model);
    // Everything fails its health check: the payload and then the full package, both rolled back.
    const sick = await updateModel(options(chain, model, [server.url], { healthCheck: () => false }));
    assert.equal(sick.status, 'failed');
    assert.deepEqual(sick.steps.map((s) => s.outcome), ['health-check-failed', 'health-check-failed']);
    assert.deepEqual(await folderBytes(model), before, 'rolled back byte for byte');
    const state = await new FileUpdaterState(join(defaultStateDir(model), 'state.json')).load('kws');
    assert.equal(state?.failed.length, 2);
    // With a healthy check the same release offers nothing left to try: nothing is downloaded.
    const from = server.log.length;
    const again = await updateModel(options(chain, model, [server.url]));
    assert.deepEqual([again.status, again.error?.code], ['failed', 'ND_NO_UPDATE_PATH']);
    assert.equal(blobBytes(server, from), 0, 'no payload or package was fetched again');
    // A new version: its payload from the device's version is new, and applies.
    await chain.addNext();
    const later = await updateModel(options(chain, model, [server.url]));
    assert.equal(later.status, 'updated', JSON.stringify(later.error));
    assert.deepEqual(later.steps.map((s) => [s.fromVersion, s.toVersion]), [[2, 4]]);
    assert.equal(await fingerprintOf(model), chain.fingerprints[3]);
  });

  test('a payload failing its health check is replaced by the next cheapest path', async () => {
    const model = await device(chain, 1);
    const r = await updateModel(options(chain, model, [server.url], { healthCheck: ({ kind }) => kind === 'full' }));
    assert.equal(r.status, 'updated', JSON.stringify(r.error));
    // Each payload path tried failed its check (each payload once), then the full package passed.
    const failed = r.steps.filter((s) => s.outcome === 'health-check-failed');
    assert.ok(failed.length >= 1 && failed.every((s) => s.kind === 'payload'));
    assert.equal(new Set(failed.map((s) => s.file)).size, failed.length, 'no payload tried twice');
    assert.deepEqual(r.steps.slice(failed.length).map((s) => [s.kind, s.outcome]), [['full', 'installed']]);
    assert.equal(await fingerprintOf(model), chain.fingerprints[chain.fingerprints.length - 1]);
  });

  test('an old manifest replayed after a newer one was accepted is refused', async () => {
    const model = await device(chain, 3);
    const old = await readFile(join(chain.releaseDir, 'manifest.json'));
    const first = await updateModel(options(chain, model, [server.url]));
    assert.equal(first.status, 'updated', JSON.stringify(first.error));
    await chain.addNext();
    const newer = await updateModel(options(chain, model, [server.url]));
    assert.equal(newer.status, 'updated', JSON.stringify(newer.error));
    const before = await folderBytes(model);
    server.override('/manifest.json', new Uint8Array(old));
    const replay = await updateModel(options(chain, model, [server.url]));
    server.override('/manifest.json', undefined);
    assert.deepEqual([replay.status, replay.error?.code], ['failed', 'ND_FRESHNESS']);
    assert.match(replay.error?.message ?? '', /older than release/);
    assert.deepEqual(await folderBytes(model), before);
  });

  test('a power cut between download and apply: the next run applies the stored payload without fetching it again', async () => {
    const model = await device(chain, chain.versions.length - 1);
    const stateDir = join(model, '..', 'updater');
    class PowerCut extends Error {}
    const target = tfjsFolderTarget(model);
    const cut = { ...target, applyPayload: async () => { throw new PowerCut('power cut before apply'); } };
    const first = new Updater({ modelId: 'kws', urls: [server.url], trustedKeys: [chain.keys.publicKeyPem], target: cut, state: new FileUpdaterState(join(stateDir, 'state.json')), downloads: new FileDownloadStore(join(stateDir, 'downloads')) });
    await assert.rejects(first.update(), PowerCut);
    const from = server.log.length;
    const r = await updateModel(options(chain, model, [server.url], { stateDir }));
    assert.equal(r.status, 'updated', JSON.stringify(r.error));
    assert.equal(blobBytes(server, from), 0, 'the payload came from the download store');
    assert.equal(await fingerprintOf(model), chain.fingerprints[chain.fingerprints.length - 1]);
  });

  test('a stored download damaged between runs is not applied: it is fetched again', async () => {
    const model = await device(chain, chain.versions.length - 1);
    const stateDir = join(model, '..', 'updater');
    const manifest = await manifestOf(chain);
    const payload = manifest.payloads.find((p) => p.fromVersion === chain.versions.length - 1 && p.toVersion === chain.versions.length);
    assert.ok(payload);
    const downloads = new FileDownloadStore(join(stateDir, 'downloads'));
    await downloads.append(payload.sha256, new Uint8Array(payload.length).fill(7)); // the right length, other bytes
    const from = server.log.length;
    const r = await updateModel(options(chain, model, [server.url], { stateDir }));
    assert.equal(r.status, 'updated', JSON.stringify(r.error));
    assert.equal(blobBytes(server, from), payload.length, 'fetched once, whole');
    assert.equal(await fingerprintOf(model), chain.fingerprints[chain.fingerprints.length - 1]);
  });

  test('a full install cut by a power cut after the switch is rolled back on the next run, then completed', async () => {
    const model = await device(chain, 1);
    const before = await folderBytes(model);
    // The state a power cut leaves after the two renames and before the confirmation.
    await cp(model, model + PREVIOUS_SUFFIX, { recursive: true });
    await rm(model, { recursive: true });
    await cp(chain.versions[chain.versions.length - 1], model, { recursive: true });
    await mkdir(model + INCOMING_SUFFIX);
    assert.equal(await tfjsFolderTarget(model).fingerprint(), chain.fingerprints[0], 'recovery brought the previous model back');
    assert.deepEqual(await folderBytes(model), before);
    assert.equal(await stat(model + INCOMING_SUFFIX).catch(() => null), null);
    const r = await updateModel(options(chain, model, [server.url]));
    assert.equal(r.status, 'updated', JSON.stringify(r.error));
  });
});
