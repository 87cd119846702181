/**
 * The library's `update` (neural-diff) against `ndiff update`: two copies of version 1 brought
 * to the newest version of one release folder over HTTP, one by the binary, one by the library,
 * end with the same bytes, and the library's result holds the fields `ndiff update --json` prints.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { cp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { checkUpdate, update } from 'neural-diff';
import { releaseChain } from './helpers/release-chain.ts';
import { serveRelease } from './helpers/release-server.ts';

const BIN = path.join(import.meta.dirname, '..', 'cli', 'ndiff.mjs');
const run = promisify(execFile);

async function files(dir: string): Promise<Map<string, Buffer>> {
  const names = (await readdir(dir)).filter((n) => !n.startsWith('.ndiff')).sort();
  return new Map(await Promise.all(names.map(async (n) => [n, await readFile(path.join(dir, n))] as [string, Buffer])));
}

test('update brings a TF.js folder to the newest version as ndiff update does: the same bytes, the same --json fields', async () => {
  const chain = await releaseChain(3);
  const server = await serveRelease(chain.releaseDir);
  try {
    const publicKey = path.join(chain.work, 'release.public.pem');
    await writeFile(publicKey, chain.keys.publicKeyPem);
    const [cliModel, libModel] = [path.join(chain.work, 'device-cli'), path.join(chain.work, 'device-lib')];
    await cp(chain.versions[0], cliModel, { recursive: true });
    await cp(chain.versions[0], libModel, { recursive: true });
    const options = { model: libModel, from: [server.url], publicKeys: [publicKey], modelId: 'kws' };
    const check = await checkUpdate(options);
    assert.equal(check.latest, 3);
    assert.equal(check.plan?.kind, 'payloads');
    const cli = await run(process.execPath, [BIN, 'update', '--model', cliModel, '--from', server.url, '--public-key', publicKey, '--model-id', 'kws', '--json', '--quiet']);
    const doc = JSON.parse(cli.stdout) as Record<string, unknown>;
    const progress: string[] = [];
    const res = await update({ ...options, onProgress: (l) => progress.push(l) });
    assert.equal(res.status, 'updated');
    assert.equal(res.fingerprint, chain.fingerprints[2]);
    assert.ok(progress.length > 0, 'progress is reported through the callback');
    const [a, b] = [await files(cliModel), await files(libModel)];
    assert.deepEqual([...b.keys()], [...a.keys()]);
    for (const [n, bytes] of a) assert.ok(bytes.equals(b.get(n) as Buffer), `${n}: the bytes ndiff update leaves`);
    const same = (r: Record<string, unknown>) => ({ status: r.status, latest: r.latest, fingerprint: r.fingerprint, path: r.path, release: r.release, fullBytes: r.fullBytes, steps: (r.steps as Record<string, unknown>[]).map((s) => ({ kind: s.kind, fromVersion: s.fromVersion, toVersion: s.toVersion, method: s.method, bytes: s.bytes, outcome: s.outcome })) });
    assert.deepEqual(same(JSON.parse(JSON.stringify(res)) as Record<string, unknown>), same(doc));
    // Up to date now, without the id: the folder recorded it.
    assert.equal((await update({ model: libModel, from: [server.url], publicKeys: [publicKey] })).status, 'up-to-date');
  } finally {
    await server.close();
    await rm(chain.work, { recursive: true, force: true });
  }
});
