/**
 * A worker fetches a job's inputs from the source the job names (a queue is shared: the source
 * is whatever the job says). Each input's length is in the ticket, so a body longer than that is
 * not the input: the worker stops reading it there, instead of holding whatever the server sends
 * in memory until the download's timeout. And the names a job gives the model's files are names,
 * never paths out of the worker's folder.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DownloadError, UsageError } from '../src/core/errors.ts';
import { checkTicket, runTicket } from '../src/release/ticket.ts';

test('an input served with an endless body is refused once it passes the ticket\'s length; one of the right length is fetched', { timeout: 60_000 }, async () => {
  let sent = 0;
  const good = new Uint8Array(1000).fill(3);
  const goodSha = createHash('sha256').update(good).digest('hex');
  const server: Server = createServer((req, res) => {
    if (req.url === `/blobs/${goodSha}`) return void res.end(good);
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    const chunk = Buffer.alloc(64 * 1024, 7);
    const more = () => {
      while (!res.destroyed && sent < 512 * 1024 * 1024) {
        sent += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', more);
      }
      res.end();
    };
    res.on('close', () => res.destroy());
    more();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const cache = await mkdtemp(join(tmpdir(), 'nd-ticket-fetch-'));
  try {
    const sha = 'ab'.repeat(32);
    const file = { path: 'model.json', file: `blobs/${sha}`, length: 1000, sha256: sha };
    const ticket = checkTicket({
      format: 'neural-diff-release-job', version: 1, modelId: 'kws', modelKind: 'tfjs',
      job: { id: 'v2-from-v1', fromVersion: 1, toVersion: 2, base: '0'.repeat(16), policy: { method: 'exact' } },
      versions: [{ version: 1, fingerprint: '0'.repeat(16), files: [{ ...file, file: `blobs/${goodSha}`, sha256: goodSha }] }, { version: 2, fingerprint: '1'.repeat(16), files: [file] }],
    });
    const port = (server.address() as { port: number }).port;
    const error = await runTicket(ticket, { source: `http://127.0.0.1:${port}/`, cacheDir: cache, timeoutMs: 20_000 }).then(() => undefined, (e: unknown) => e);
    assert.ok(error instanceof DownloadError, String(error));
    assert.match((error as Error).message, /longer than the 1000 bytes/);
    assert.deepEqual(new Uint8Array(await readFile(join(cache, 'blobs', goodSha))), good, 'an input of the right length is fetched and kept');
    assert.ok(sent < 256 * 1024 * 1024, `the worker stopped reading (the server got to write ${sent} bytes)`);
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await rm(cache, { recursive: true, force: true });
  }
});

test('a job naming a model file by a path out of the worker\'s folder is refused before anything is fetched or written', async () => {
  const work = await mkdtemp(join(tmpdir(), 'nd-ticket-path-'));
  try {
    const bytes = new TextEncoder().encode('written where the job said\n');
    const sha = createHash('sha256').update(bytes).digest('hex');
    await mkdir(join(work, 'source', 'blobs'), { recursive: true });
    await writeFile(join(work, 'source', 'blobs', sha), bytes);
    const escaped = `nd-ticket-escape-${process.pid}-${Date.now()}`;
    const file = { path: `../${escaped}`, file: `blobs/${sha}`, length: bytes.length, sha256: sha };
    const forged = {
      format: 'neural-diff-release-job', version: 1, modelId: 'kws', modelKind: 'onnx',
      job: { id: 'v2-from-v1', fromVersion: 1, toVersion: 2, base: '0'.repeat(16), policy: { method: 'exact' } },
      versions: [{ version: 1, fingerprint: '0'.repeat(16), files: [file] }, { version: 2, fingerprint: '1'.repeat(16), files: [file] }],
    };
    const error = await Promise.resolve().then(async () => runTicket(checkTicket(forged), { source: join(work, 'source'), cacheDir: join(work, 'cache') })).then(() => undefined, (e: unknown) => e);
    assert.ok(error instanceof UsageError, String(error));
    assert.match((error as Error).message, /release job ticket/);
    assert.equal(await stat(join(tmpdir(), escaped)).then(() => true, () => false), false, 'nothing written out of the worker\'s folder');
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});
