/**
 * A blob whose bytes no longer hash to its name (a bad disk, a copy cut short then padded, an
 * edit): `release publish` listed it in the signed manifest without reading it, so every device
 * downloaded it, refused it and fell back to the full model; and `writeBlob` kept a damaged blob
 * of the right size when the same bytes were written again. Publish now checks every blob the
 * manifest lists and refuses, naming the blob; writing a blob replaces a damaged one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { publishReleaseFolder } from '../src/release/publish.ts';
import { sha256Of, writeBlob } from '../src/release/blobs.ts';
import { inAnHour, releaseChain } from './helpers/release-chain.ts';
import { tempDir } from './helpers/dirs.ts';

async function damage(file: string): Promise<void> {
  const bytes = await readFile(file);
  bytes[bytes.length >> 1] ^= 0xff; // the same size, another hash
  await writeFile(file, bytes);
}

test('release publish refuses a damaged (lossy) payload blob, names it, and leaves the manifest and record as they were', async () => {
  const chain = await releaseChain(2, { policy: { method: 'topk', budget: '1%' } });
  try {
    const manifestFile = join(chain.releaseDir, 'manifest.json');
    const recordFile = join(chain.releaseDir, 'release.json');
    const manifestBefore = await readFile(manifestFile, 'utf8');
    const recordBefore = await readFile(recordFile, 'utf8');
    const record = JSON.parse(recordBefore) as { payloads: { file: string; exact: boolean }[] };
    assert.equal(record.payloads.length, 1);
    assert.equal(record.payloads[0].exact, false);
    const payload = record.payloads[0].file;
    await damage(join(chain.releaseDir, payload));
    await assert.rejects(publishReleaseFolder(chain.releaseDir, { key: chain.key, expiresAt: inAnHour() }), (e: Error & { code?: string; details?: { damaged?: { file: string }[] } }) => {
      assert.equal(e.code, 'ND_MODEL_FORMAT');
      assert.ok(e.message.includes(payload), e.message);
      assert.match(e.message, /the payload from version 1 to 2/);
      assert.match(e.message, /SHA-256 is [0-9a-f]{64}, not its name/);
      assert.match(e.message, /nothing was published: restore that blob from a copy/);
      assert.deepEqual(e.details?.damaged?.map((d) => d.file), [payload]);
      return true;
    });
    assert.equal(await readFile(manifestFile, 'utf8'), manifestBefore);
    assert.equal(await readFile(recordFile, 'utf8'), recordBefore);
  } finally {
    await rm(chain.work, { recursive: true, force: true });
  }
});

test('release publish refuses a version file that is missing or cut short', async () => {
  const chain = await releaseChain(1);
  try {
    const record = JSON.parse(await readFile(join(chain.releaseDir, 'release.json'), 'utf8')) as { versions: { files: { file: string; path: string }[] }[] };
    const [first, second] = record.versions[0].files;
    await rm(join(chain.releaseDir, first.file));
    await writeFile(join(chain.releaseDir, second.file), 'short');
    await assert.rejects(publishReleaseFolder(chain.releaseDir, { key: chain.key, expiresAt: inAnHour() }), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'ND_MODEL_FORMAT');
      assert.ok(e.message.includes(`${first.file} (version 1's ${first.path}) is missing`), e.message);
      assert.ok(e.message.includes(`${second.file} (version 1's ${second.path}) is 5 bytes, not the recorded`), e.message);
      assert.match(e.message, /restore those blobs from a copy/);
      return true;
    });
  } finally {
    await rm(chain.work, { recursive: true, force: true });
  }
});

test('writing a blob again replaces a damaged one of the same size', async () => {
  const dir = await tempDir('nd-blob-');
  try {
    const bytes = new Uint8Array(4096).map((_, i) => (i * 31) & 0xff);
    const blob = await writeBlob(dir, bytes);
    const file = join(dir, blob.file);
    await damage(file);
    assert.notEqual(sha256Of(await readFile(file)), blob.sha256);
    assert.deepEqual(await writeBlob(dir, bytes), blob);
    assert.equal(sha256Of(await readFile(file)), blob.sha256);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
