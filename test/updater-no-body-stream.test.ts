/**
 * A fetch without body streams (React Native's): a response is read whole with `arrayBuffer()`,
 * so a size cap checked on the bytes read comes too late. The manifest's cap is checked against
 * Content-Length before the body is read, and a body over it is refused as soon as it is known;
 * a payload's length against the manifest's the same way. A body whose size is unknown until read
 * (no Content-Length, or gzip-coded) is not read at all: the request is made again bounded by a
 * Range header (which a fetch asks uncoded), and a server that still sends one of unknown size is
 * left for the next mirror, nothing of it read.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { downloadFile, emptyStats, fetchSmallFile, type FetchLike } from '../src/updater/download.ts';
import { MemoryDownloadStore } from '../src/updater/state.ts';
import { validateManifest, type ReleaseManifest } from '../src/updater/manifest.ts';
import { releaseChain, type ReleaseChain } from './helpers/release-chain.ts';
import { serveRelease, type ReleaseServer } from './helpers/release-server.ts';

/** The global fetch as React Native's behaves: no `body` stream, only `arrayBuffer()`; counts the bodies read. */
function noStreams(): { fetch: FetchLike; bodiesRead: number[] } {
  const out = {
    bodiesRead: [] as number[],
    fetch: (async (url, init) => {
      const res = await fetch(url, init);
      return {
        status: res.status,
        headers: res.headers,
        body: null,
        arrayBuffer: async () => {
          const b = await res.arrayBuffer();
          out.bodiesRead.push(b.byteLength);
          return b;
        },
      };
    }) as FetchLike,
  };
  return out;
}

describe('downloads over a fetch without body streams', () => {
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

  test('a manifest over the cap with its Content-Length is refused before its body is read', async () => {
    const f = noStreams();
    server.override('/manifest.json', new Uint8Array(1 << 20).fill(0x20));
    try {
      await assert.rejects(fetchSmallFile('manifest.json', 64 * 1024, { fetch: f.fetch, mirrors: [server.url], timeoutMs: 5000 }, emptyStats()), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'ND_DOWNLOAD');
        assert.match(e.message, /declares 1048576 bytes \(Content-Length\), more than the 65536-byte cap: not read/);
        return true;
      });
      assert.deepEqual(f.bodiesRead, [], 'no body was read');
    } finally {
      server.override('/manifest.json', undefined);
    }
  });

  test('a manifest without a Content-Length is not read: asked again bounded by Range, the 206 within the cap is taken', async () => {
    const f = noStreams();
    const bytes = new Uint8Array(await readFile(join(chain.releaseDir, 'manifest.json')));
    const cap = bytes.length + 50;
    server.faults.push({ match: (p) => p === '/manifest.json', times: 1, kind: 'overlong' });
    const from = server.log.length;
    const got = await fetchSmallFile('manifest.json', cap, { fetch: f.fetch, mirrors: [server.url], timeoutMs: 5000 }, emptyStats());
    assert.deepEqual(got.bytes, bytes);
    // The body of unknown size (the file and 100 bytes more, no Content-Length) was never read.
    assert.deepEqual(f.bodiesRead, [bytes.length]);
    const asked = server.log.slice(from);
    assert.deepEqual(asked.map((q) => [q.fault, q.status, q.headers.range]), [['overlong', 200, undefined], [undefined, 206, `bytes=0-${cap}`]]);
    // Asked uncoded: Node's fetch adds `Accept-Encoding: identity` to a Range request (the Fetch standard).
    assert.equal(asked[1].headers['accept-encoding'], 'identity');
  });

  test('a server that sends a body of unknown size to the bounded request too: nothing is read, the mirror is left', async () => {
    const f = noStreams();
    const bytes = new Uint8Array(await readFile(join(chain.releaseDir, 'manifest.json')));
    server.faults.push({ match: (p) => p === '/manifest.json', times: 2, kind: 'overlong' });
    try {
      await assert.rejects(fetchSmallFile('manifest.json', bytes.length + 50, { fetch: f.fetch, mirrors: [server.url], timeoutMs: 5000 }, emptyStats()), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'ND_DOWNLOAD');
        assert.match(e.message, /a body without Content-Length to a request bounded by Range, where fetch has no body streams: not read/);
        return true;
      });
    } finally {
      server.faults.length = 0;
    }
    assert.deepEqual(f.bodiesRead, [], 'no body was read');
  });

  test('a payload sent gzip-coded (its decoded size unknown) is not read: asked again bounded and uncoded, and taken', async () => {
    const f = noStreams();
    const payload = manifest.payloads[0];
    const from = server.log.length;
    server.faults.push({ match: (p) => p === `/${payload.file}`, times: 1, kind: 'gzip' });
    const bytes = await downloadFile(payload, new MemoryDownloadStore(), { fetch: f.fetch, mirrors: [server.url], timeoutMs: 5000, sleep: async () => {} }, emptyStats());
    assert.equal(bytes.length, payload.length);
    assert.deepEqual(f.bodiesRead, [payload.length], 'only the uncoded body was read');
    assert.deepEqual(server.log.slice(from).map((q) => [q.fault, q.status, q.headers.range]), [['gzip', 200, undefined], [undefined, 206, `bytes=0-${payload.length}`]]);
  });

  test('a payload whose Content-Length is not the manifest\'s is refused before its body is read; the mirror serves it', async () => {
    const f = noStreams();
    const payload = manifest.payloads[0];
    const mirror = await serveRelease(chain.releaseDir);
    server.override(`/${payload.file}`, new Uint8Array(payload.length * 4));
    try {
      const bytes = await downloadFile(payload, new MemoryDownloadStore(), { fetch: f.fetch, mirrors: [server.url, mirror.url], timeoutMs: 5000 }, emptyStats());
      assert.equal(bytes.length, payload.length);
      assert.deepEqual(f.bodiesRead, [payload.length], 'only the mirror\'s body was read');
    } finally {
      server.override(`/${payload.file}`, undefined);
      await mirror.close();
    }
  });
});
