/**
 * `ndiff update` (and the library's `update`) of a `.gguf` model from a release folder served
 * over HTTP (test/helpers/gguf-release.ts: the blobs, the signed manifest of `modelKind: "gguf"`,
 * the signed GGUF block payloads): the payload for the file's stored-bytes digest is picked,
 * downloaded, checked and applied in place behind the undo journal, never a second copy of the
 * file. The journal is the way back until the health check passes:
 *
 * - v1 reaches v2 byte for byte, nothing left beside the model, and the next run is up to date;
 * - a failing health check (which sees v2 in place, and no copy of the model beside it) brings v1
 *   back byte for byte from the journal, and the payload is remembered as failed;
 * - a kill (SIGKILL) during the health check leaves v2 with its journal and switch marker: the next
 *   run without a check refuses, the model untouched; with a passing check it confirms v2 (the
 *   journal goes); with a failing one it restores v1 byte for byte;
 * - a model no payload starts from (another version, or no model) is refused, saying that a GGUF
 *   model is never installed whole and what to do, nothing downloaded but the manifest, the file
 *   untouched; a payload the manifest lists for the wrong base is refused, the file untouched.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { update } from '../src/front/update.ts';
import { PendingUpdateError } from '../src/core/errors.ts';
import { recoverGgufFile } from '../src/io/gguf/in-place.ts';
import { readModelIdRecord } from '../src/io/durable/model-id-file.ts';
import { weightsFileSequenceStore } from '../src/io/durable/weights-file-update.ts';
import { getHasher } from '../src/core/hasher.ts';
import { diffGgufModels } from '../src/io/gguf/diff.ts';
import { bytesSource } from '../src/io/gguf/header.ts';
import { ggufModelOf } from '../src/io/gguf/model.ts';
import { ggufFixture, perturbGguf } from './helpers/gguf-pairs.ts';
import { writeGgufRelease, type GgufRelease } from './helpers/gguf-release.ts';
import { serveRelease, type ReleaseServer } from './helpers/release-server.ts';
import { ndiffProcess, runNdiff as run } from './helpers/ndiff-run.ts';

const same = (a: Uint8Array, b: Uint8Array) => Buffer.compare(a, b) === 0;

describe('ndiff update of a .gguf model', () => {
  let work: string;
  let server: ReleaseServer;
  let release: GgufRelease;
  let v1: Uint8Array;
  let v2: Uint8Array;
  let other: Uint8Array;
  let n = 0;

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'nd-gguf-update-'));
    v1 = ggufFixture('tiny-llama-q8_0.gguf');
    v2 = perturbGguf(v1, { blockShare: 0.05, bytesPerBlock: 3, metadata: true, seed: 7 });
    other = perturbGguf(v1, { blockShare: 0.05, bytesPerBlock: 3, seed: 8 });
    await mkdir(path.join(work, 'site'));
    release = await writeGgufRelease(path.join(work, 'site', 'llm'), [v1, v2], {
      // A payload listed from the digest of `other`, but made from v1: a release whose files were mixed.
      extraPayloads: async ({ blob, sign }) => {
        const hasher = await getHasher();
        const { ggufBytesDigest } = await import('./helpers/gguf-release.ts');
        const r = diffGgufModels(hasher, ggufModelOf(bytesSource(v1)), ggufModelOf(bytesSource(v2)), { modelId: 'tiny-llm', sequence: 2, createdBy: 'test' });
        const signed = sign(r.payload);
        return [{ ...(await blob(signed)), base: await ggufBytesDigest(other), target: r.targetFingerprint, sequence: 2, fromVersion: 1, toVersion: 2, method: 'exact', exact: true }];
      },
    });
    server = await serveRelease(path.join(work, 'site'));
  });
  after(async () => {
    await server?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  /** A device folder holding `bytes` as model.gguf. */
  async function device(bytes: Uint8Array): Promise<string> {
    const dir = path.join(work, `device-${++n}`);
    await mkdir(dir);
    const file = path.join(dir, 'model.gguf');
    await writeFile(file, bytes);
    return file;
  }
  const from = (file: string) => ['--model', file, '--from', `${server.url}llm/`, '--public-key', release.publicKeyFile, '--model-id', 'tiny-llm'];
  /** What the update left beside the model (its journal, its switch marker). */
  const beside = async (file: string) => (await readdir(path.dirname(file))).filter((f) => f.startsWith('model.gguf.ndiff-undo')).sort();

  test('v1 is updated to v2 byte for byte by its payload, in place; the next run is up to date', async () => {
    const file = await device(v1);
    const check = await run('update', ...from(file), '--check', '--json');
    assert.equal(check.code, 0, check.err);
    assert.equal((JSON.parse(check.out) as { plan: { kind: string } }).plan.kind, 'payloads');
    const r = await run('update', ...from(file), '--health-check', 'test -f "$NDIFF_MODEL_FILE"', '--json');
    assert.equal(r.code, 0, r.err);
    const doc = JSON.parse(r.out) as { status: string; path: string; fingerprint: string; fromFingerprint: string };
    assert.equal(doc.status, 'updated');
    assert.equal(doc.path, 'payloads');
    assert.equal(doc.fromFingerprint, release.digests[0]);
    assert.equal(doc.fingerprint, release.digests[1]);
    assert.ok(same(new Uint8Array(await readFile(file)), v2), 'the file is v2 byte for byte');
    assert.deepEqual(await beside(file), [], 'the journal is gone once the update is confirmed');
    // Only the payload was downloaded, never the full file.
    const full = release.manifest.versions[1].files[0].file;
    assert.ok(!server.log.some((q) => q.path.endsWith(full)), 'the full model was not downloaded');
    const again = await run('update', ...from(file), '--json');
    assert.equal(again.code, 0, again.err);
    assert.equal((JSON.parse(again.out) as { status: string }).status, 'up-to-date');
  });

  test('a failing health check sees v2 in place with no copy of the model beside it, and the journal brings v1 back byte for byte', async () => {
    const file = await device(v1);
    let seen: { bytes: Uint8Array; names: string[]; largestOther: number } | undefined;
    const r = await update({
      model: file, from: [`${server.url}llm/`], publicKeys: [release.publicKeyFile], modelId: 'tiny-llm',
      healthCheck: async ({ path: p }) => {
        const dir = path.dirname(p);
        const names = (await readdir(dir)).sort();
        let largestOther = 0;
        for (const name of names) if (name !== 'model.gguf') largestOther = Math.max(largestOther, (await stat(path.join(dir, name))).size);
        seen = { bytes: new Uint8Array(await readFile(p)), names, largestOther };
        return false;
      },
    });
    assert.equal(r.status, 'failed');
    assert.equal(r.error?.code, 'ND_NO_UPDATE_PATH', r.error?.message);
    assert.equal(r.steps[0]?.outcome, 'health-check-failed');
    assert.ok(seen, 'the health check ran');
    assert.ok(same(seen.bytes, v2), 'the health check ran on v2');
    assert.ok(seen.names.includes('model.gguf.ndiff-undo'), `the undo journal waits beside the model: ${seen.names.join(', ')}`);
    assert.ok(seen.largestOther < v1.length / 2, `no copy of the model beside it (largest other file ${seen.largestOther} bytes, the model ${v1.length})`);
    assert.ok(same(new Uint8Array(await readFile(file)), v1), 'v1 is back byte for byte');
    assert.deepEqual(await beside(file), []);
    // Remembered: the next run does not apply it again, and says how to retry.
    const next = await run('update', ...from(file), '--json');
    assert.equal(next.code, 5, next.out + next.err);
    assert.match(next.err, /failed a health check on this device before/);
    assert.ok(same(new Uint8Array(await readFile(file)), v1));
    const retried = await run('update', ...from(file), '--retry-failed', '--health-check', 'true');
    assert.equal(retried.code, 0, retried.err);
    assert.ok(same(new Uint8Array(await readFile(file)), v2));
  });

  test('killed during its health check: v2 with its journal waits; the next run refuses without a check, confirms v2 with a passing one, restores v1 with a failing one', { timeout: 120_000 }, async () => {
    const file = await device(v1);
    const killed = await ndiffProcess(['update', ...from(file), '--health-check', 'kill -9 $PPID']);
    assert.equal(killed.signal, 'SIGKILL', killed.stderr);
    assert.ok(same(new Uint8Array(await readFile(file)), v2), 'killed after the switch: the model is v2 byte for byte');
    assert.deepEqual(await beside(file), ['model.gguf.ndiff-undo', 'model.gguf.ndiff-undo.switched'], 'the journal and the switch marker wait beside it');
    // Other devices in the same state: for the failing check, for ndiff apply, for the library's recovery.
    const [fileB, fileC, fileD] = [await device(v1), await device(v1), await device(v1)];
    for (const f of [fileB, fileC, fileD]) {
      for (const name of ['model.gguf', 'model.gguf.ndiff-undo', 'model.gguf.ndiff-undo.switched']) await copyFile(path.join(path.dirname(file), name), path.join(path.dirname(f), name));
    }

    // A read says the version in place is not confirmed yet.
    const fp = await run('fingerprint', file, '--json');
    assert.equal(fp.code, 0, fp.err);
    assert.equal((JSON.parse(fp.out) as { unfinishedUpdate?: boolean }).unfinishedUpdate, true);

    // No health check: refused, nothing changed.
    const plain = await run('update', ...from(file), '--json');
    assert.equal(plain.code, 5, plain.out + plain.err);
    assert.equal((JSON.parse(plain.out) as { error: { code: string } }).error.code, 'ND_PENDING_UPDATE');
    assert.ok(same(new Uint8Array(await readFile(file)), v2));
    assert.equal((await beside(file)).length, 2);

    // A passing check confirms it: v2 stays, the journal goes, nothing downloaded again.
    const payload = release.manifest.payloads[0].file;
    const fetchedBefore = server.log.filter((q) => q.path.endsWith(payload)).length;
    const ok = await run('update', ...from(file), '--health-check', 'true', '--json');
    assert.equal(ok.code, 0, ok.err);
    const done = JSON.parse(ok.out) as { status: string; pendingUpdate?: { outcome: string; healthCheck: string } };
    assert.equal(done.status, 'up-to-date');
    assert.deepEqual({ outcome: done.pendingUpdate?.outcome, healthCheck: done.pendingUpdate?.healthCheck }, { outcome: 'confirmed', healthCheck: 'passed' });
    assert.ok(same(new Uint8Array(await readFile(file)), v2));
    assert.deepEqual(await beside(file), []);
    assert.equal(server.log.filter((q) => q.path.endsWith(payload)).length, fetchedBefore, 'the payload was not fetched again');

    // A failing check rolls it back from the journal: v1 byte for byte, the payload remembered.
    const bad = await run('update', ...from(fileB), '--health-check', 'false', '--json');
    assert.equal(bad.code, 5, bad.out + bad.err);
    assert.match(bad.err, /health check failed .*rolled back to the previous version/);
    assert.ok(same(new Uint8Array(await readFile(fileB)), v1), 'v1 is back byte for byte');
    assert.deepEqual(await beside(fileB), []);

    // ndiff apply meets it the same way: refused without a check; with one, finished first and said so.
    const payloadFile = path.join(release.dir, payload);
    const applyArgs = ['apply', '--model', fileC, '--patch', payloadFile, '--public-key', release.publicKeyFile, '--json'];
    const refused = await run(...applyArgs);
    assert.equal(refused.code, 5, refused.out + refused.err);
    assert.ok(same(new Uint8Array(await readFile(fileC)), v2));
    const applied = await run(...applyArgs, '--health-check', 'true');
    assert.equal(applied.code, 0, applied.err);
    const report = JSON.parse(applied.out) as { status: string; pendingUpdate?: { outcome: string } };
    assert.equal(report.status, 'already-applied');
    assert.equal(report.pendingUpdate?.outcome, 'confirmed');
    assert.deepEqual(await beside(fileC), []);
    // Its model id and sequence recorded, as the interrupted apply's own commit would have.
    assert.equal(await readModelIdRecord(fileC), 'tiny-llm');
    assert.equal(await weightsFileSequenceStore(fileC).get('tiny-llm'), 2);

    // The library's recovery, as an app calls it before loading the model.
    await assert.rejects(recoverGgufFile(fileD), (e: Error) => e instanceof PendingUpdateError);
    assert.ok(same(new Uint8Array(await readFile(fileD)), v2), 'refused: nothing changed');
    const rolled = await recoverGgufFile(fileD, { healthCheck: () => false });
    assert.equal(rolled.pending?.outcome, 'rolled-back');
    assert.ok(same(new Uint8Array(await readFile(fileD)), v1), 'v1 is back byte for byte');
    assert.deepEqual(await beside(fileD), []);
  });

  test('a model no payload starts from is refused, never installed whole: nothing downloaded, the file untouched', async () => {
    const file = await device(other.slice(0, other.length - 1));
    const check = await run('update', ...from(file), '--check');
    assert.equal(check.code, 0, check.err);
    assert.match(check.out, /no payload left starts from this model, and a \.gguf model is never installed whole/);
    const before = server.log.length;
    const r = await run('update', ...from(file), '--json');
    assert.equal(r.code, 5, r.out + r.err);
    const err = (JSON.parse(r.out) as { error: { code: string; message: string } }).error;
    assert.equal(err.code, 'ND_NO_UPDATE_PATH');
    assert.match(err.message, /never installed whole by the updater.*download the full model yourself/);
    assert.ok(same(new Uint8Array(await readFile(file)), other.slice(0, other.length - 1)), 'the file is untouched');
    assert.deepEqual(server.log.slice(before).map((q) => q.path), ['/llm/manifest.json'], 'only the manifest was fetched');
    // No model at all: the same refusal, nothing created.
    const missing = path.join(path.dirname(file), 'absent.gguf');
    const none = await run('update', ...from(missing), '--json');
    assert.equal(none.code, 5, none.out + none.err);
    assert.match(none.err, /there is no model here .*never installed whole/);
    await assert.rejects(stat(missing), { code: 'ENOENT' });
  });

  test('a split model, named by any part: every part reaches v2 byte for byte; a failing health check brings every part of v1 back', async () => {
    const names = [1, 2, 3].map((k) => `tiny-split-0000${k}-of-00003.gguf`);
    const s1 = names.map((x) => ggufFixture(x));
    const s2 = s1.map((b, i) => perturbGguf(b, { blockShare: 0.1, seed: 31 + i, metadata: i === 0 }));
    const split = await writeGgufRelease(path.join(work, 'site', 'split'), [s1, s2], { partNames: names });
    const dirs = [path.join(work, 'split-a'), path.join(work, 'split-b')];
    for (const dir of dirs) {
      await mkdir(dir);
      for (const [i, x] of names.entries()) await writeFile(path.join(dir, x), s1[i]);
    }
    const args = (dir: string) => ['--model', path.join(dir, names[1]), '--from', `${server.url}split/`, '--public-key', split.publicKeyFile, '--model-id', 'tiny-llm'];
    const bad = await run('update', ...args(dirs[1]), '--health-check', 'false', '--json');
    assert.equal(bad.code, 5, bad.out + bad.err);
    assert.equal((JSON.parse(bad.out) as { result: { steps: { outcome: string }[] } }).result.steps[0].outcome, 'health-check-failed');
    for (const [i, x] of names.entries()) assert.ok(same(new Uint8Array(await readFile(path.join(dirs[1], x))), s1[i]), `part ${i + 1} is v1 again`);
    const r = await run('update', ...args(dirs[0]), '--health-check', 'true', '--json');
    assert.equal(r.code, 0, r.err);
    assert.equal((JSON.parse(r.out) as { fingerprint: string }).fingerprint, split.digests[1]);
    for (const [i, x] of names.entries()) assert.ok(same(new Uint8Array(await readFile(path.join(dirs[0], x))), s2[i]), `part ${i + 1} is v2`);
    assert.deepEqual((await readdir(dirs[0])).filter((n) => n.includes('.ndiff-undo')), []);
  });

  test('a payload the manifest lists for a base it was not made from is refused, the file untouched', async () => {
    const file = await device(other);
    const r = await run('update', ...from(file), '--json');
    assert.equal(r.code, 5, r.out + r.err);
    const doc = JSON.parse(r.out) as { result: { steps: { outcome: string; error?: { code: string; message: string } }[] } };
    assert.equal(doc.result.steps[0].outcome, 'refused');
    assert.equal(doc.result.steps[0].error?.code, 'ND_MODEL_MISMATCH');
    assert.match(doc.result.steps[0].error?.message ?? '', /has base .*the release folder is inconsistent/);
    assert.ok(same(new Uint8Array(await readFile(file)), other), 'the file is untouched');
    assert.deepEqual(await beside(file), []);
  });
});
