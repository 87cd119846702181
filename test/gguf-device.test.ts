/**
 * The device's GGUF in-place apply (`neural-diff/gguf`, src/io/gguf/opfs.ts: no node module, no
 * WebAssembly), here over a folder in memory (test/helpers/memory-volume.ts) so every step can be
 * cut: the same protocol as `ndiff apply` on disk, through the store interface the browser's
 * OPFS folder implements (test/browser-gguf-opfs.test.ts runs it there, with wllama).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { getHasher } from '../src/core/hasher.ts';
import { BaseMismatchError, ModelFormatError, PayloadFormatError, SignatureError, TargetMismatchError } from '../src/core/errors.ts';
import { MemorySequenceStore } from '../src/apply/freshness.ts';
import { bytesSource } from '../src/io/gguf/header.ts';
import { ggufModelOf, ggufSplitModel } from '../src/io/gguf/model.ts';
import { diffGgufModels } from '../src/io/gguf/diff.ts';
import { ongridGgufDiff } from '../src/gguf-diff/index.ts';
import { applyGgufInPlace, ggufFingerprintIn, ggufUpdatePendingIn, ggufVolumeTarget, recoverGgufInPlace } from '../src/io/gguf/opfs.ts';
import { Updater } from '../src/updater/updater.ts';
import { MemoryUpdaterState } from '../src/updater/state.ts';
import { writeGgufRelease } from './helpers/gguf-release.ts';
import { serveRelease } from './helpers/release-server.ts';
import { generateKeyPair, signPayload } from '../src/sign/node-keys.ts';
import { ggufFixture, perturbGguf } from './helpers/gguf-pairs.ts';
import { Cut, memoryVolume } from './helpers/memory-volume.ts';

const hasher = await getHasher();
const v1 = ggufFixture('tiny-llama-q6_k.gguf');
const v2 = perturbGguf(v1, { blockShare: 0.3, seed: 21, metadata: true });
const diffed = diffGgufModels(hasher, ggufModelOf(bytesSource(v1)), ggufModelOf(bytesSource(v2)), { modelId: 'tiny', sequence: 1, createdBy: 'test' });
const payload = diffed.payload;
const same = (a: Uint8Array | undefined, b: Uint8Array) => a !== undefined && Buffer.compare(a, b) === 0;
const only = (name: string, bytes: Uint8Array) => new Map([[name, bytes.slice()]]);

test('applied in a store without node:fs: the model reaches the target byte for byte, the fingerprint the payload names; again: already applied; the sequence recorded', async () => {
  const volume = memoryVolume(only('m.gguf', v1));
  const sequences = new MemorySequenceStore();
  assert.equal(await ggufFingerprintIn(volume, 'm.gguf'), diffed.baseFingerprint);
  const r = await applyGgufInPlace(volume, 'm.gguf', payload, { sequences });
  assert.equal(r.status, 'applied');
  assert.ok(r.writtenBytes > 0 && r.changedTensors.length > 0);
  assert.deepEqual(r.files, ['mem:m.gguf']);
  assert.ok(same(volume.files.get('m.gguf'), v2));
  assert.equal(await ggufFingerprintIn(volume, 'm.gguf'), diffed.targetFingerprint);
  assert.deepEqual([...volume.files.keys()].sort(), ['m.gguf', 'm.gguf.ndiff-model.json'], 'no journal, no marker left');
  assert.equal(sequences.get('tiny'), 1);
  const again = await applyGgufInPlace(volume, 'm.gguf', payload, { sequences });
  assert.equal(again.status, 'already-applied');
  // The journal was written before the model: its rename precedes the first write of m.gguf.
  const renamed = volume.changes.indexOf('rename(m.gguf.ndiff-undo.tmp -> m.gguf.ndiff-undo)');
  const firstWrite = volume.changes.findIndex((c) => c.startsWith('write(m.gguf,'));
  assert.ok(renamed >= 0 && renamed < firstWrite, volume.changes.join('\n'));
});

test('cut before every change of the apply: after the recovery the model is the base or the target byte for byte, and the apply run again reaches the target', async () => {
  const full = memoryVolume(only('m.gguf', v1));
  await applyGgufInPlace(full, 'm.gguf', payload, { sequences: null });
  const steps = full.changes.length;
  assert.ok(steps > 10, `${steps} changes`);
  const ended = { base: 0, target: 0 };
  for (let cut = 1; cut <= steps; cut++) {
    const files = only('m.gguf', v1);
    await assert.rejects(applyGgufInPlace(memoryVolume(files, cut), 'm.gguf', payload, { sequences: null }), Cut, `cut ${cut}`);
    const after = memoryVolume(files);
    await recoverGgufInPlace(after, 'm.gguf');
    const now = files.get('m.gguf');
    assert.ok(same(now, v1) || same(now, v2), `cut before change ${cut} (${full.changes[cut - 1]}): neither version after the recovery`);
    ended[same(now, v1) ? 'base' : 'target']++;
    assert.equal(await ggufUpdatePendingIn(after, 'm.gguf'), false);
    const r = await applyGgufInPlace(after, 'm.gguf', payload, { sequences: null });
    assert.ok(same(files.get('m.gguf'), v2), `cut ${cut}: re-run ${r.status}`);
  }
  assert.ok(ended.base > 0 && ended.target > 0, JSON.stringify(ended));
});

test('a wrong base, a tampered chunk, an unsigned payload where a key is trusted: refused, the model untouched', async () => {
  const other = perturbGguf(v1, { blockShare: 0.1, seed: 5 });
  const volume = memoryVolume(only('m.gguf', other));
  await assert.rejects(applyGgufInPlace(volume, 'm.gguf', payload, { sequences: null }), BaseMismatchError);
  assert.ok(same(volume.files.get('m.gguf'), other));
  assert.deepEqual([...volume.files.keys()], ['m.gguf']);
  const tampered = payload.slice();
  tampered[tampered.length - 40] ^= 0x10;
  const base = memoryVolume(only('m.gguf', v1));
  await assert.rejects(applyGgufInPlace(base, 'm.gguf', tampered, { sequences: null }), (e: unknown) => e instanceof PayloadFormatError || e instanceof TargetMismatchError || e instanceof BaseMismatchError);
  assert.ok(same(base.files.get('m.gguf'), v1));
  const keys = generateKeyPair();
  await assert.rejects(applyGgufInPlace(base, 'm.gguf', payload, { sequences: null, trustedKeys: [keys.publicKey] }), SignatureError);
  assert.ok(same(base.files.get('m.gguf'), v1));
});

test('signed, verified as it streams past by the SHA-512 written here (a Blob, read a window at a time); a split model named by any part', async () => {
  const keys = generateKeyPair();
  const signed = signPayload(payload, keys.privateKeyPem);
  const volume = memoryVolume(only('m.gguf', v1));
  const r = await applyGgufInPlace(volume, 'm.gguf', new Blob([new Uint8Array(signed)]), { sequences: null, trustedKeys: [keys.publicKey] });
  assert.equal(r.signature.verified, true);
  assert.ok(same(volume.files.get('m.gguf'), v2));
  const altered = signed.slice();
  altered[200] ^= 1;
  const fresh = memoryVolume(only('m.gguf', v1));
  await assert.rejects(applyGgufInPlace(fresh, 'm.gguf', new Blob([new Uint8Array(altered)]), { sequences: null, trustedKeys: [keys.publicKey] }), (e: unknown) => e instanceof SignatureError || e instanceof PayloadFormatError);
  assert.ok(same(fresh.files.get('m.gguf'), v1));

  const names = [1, 2, 3].map((k) => `tiny-split-0000${k}-of-00003.gguf`);
  const p1 = names.map((x) => ggufFixture(x));
  const p2 = p1.map((b, i) => perturbGguf(b, { blockShare: 0.3, seed: 31 + i }));
  const split = (parts: Uint8Array[]) => ggufSplitModel(3, (no) => bytesSource(parts[no - 1], names[no - 1]), names[0]);
  const d = diffGgufModels(hasher, split(p1), split(p2), { modelId: 'tiny', sequence: 1, createdBy: 'test' });
  const files = new Map(names.map((x, i) => [x, p1[i].slice()]));
  const res = await applyGgufInPlace(memoryVolume(files), names[2], d.payload, { sequences: null });
  assert.equal(res.status, 'applied');
  names.forEach((x, i) => assert.ok(same(files.get(x), p2[i]), `part ${i + 1}`));
});

test('an on-grid (lossy) payload: the model reaches the mixed version the payload names (every block v1\'s or v2\'s), within its budget', async () => {
  const a = ggufFixture('tiny-llama-q8_0.gguf');
  const b = perturbGguf(a, { blockShare: 0.6, seed: 41, bytesPerBlock: 64 });
  const exact = diffGgufModels(hasher, ggufModelOf(bytesSource(a)), ggufModelOf(bytesSource(b)), { modelId: 'tiny', sequence: 1, createdBy: 'test' });
  // Half the exact payload: some changed blocks must stay v1's.
  const budget = Math.floor(exact.payload.length / 2);
  const r = ongridGgufDiff(hasher, ggufModelOf(bytesSource(a)), ggufModelOf(bytesSource(b)), budget, { modelId: 'tiny', sequence: 1, createdBy: 'test' });
  assert.ok(r.payload.length <= budget);
  assert.notEqual(r.targetFingerprint, exact.targetFingerprint, 'lossy: not v2 itself');
  const volume = memoryVolume(only('m.gguf', a));
  const res = await applyGgufInPlace(volume, 'm.gguf', r.payload, { sequences: null });
  assert.equal(res.status, 'applied');
  assert.equal(await ggufFingerprintIn(volume, 'm.gguf'), r.targetFingerprint);
  const now = volume.files.get('m.gguf') as Uint8Array;
  assert.ok(!same(now, a) && !same(now, b));
  // Every byte is v1's or v2's at its place.
  assert.ok(now.every((x, i) => x === a[i] || x === b[i]));
});

test('kept up to date by the updater (ggufVolumeTarget): a failing health check brings v1 back byte for byte; a passing one keeps v2, patched in place; a model no payload starts from is refused, never installed whole', async () => {
  const work = await mkdtemp(path.join(tmpdir(), 'nd-gguf-device-updater-'));
  const release = await writeGgufRelease(path.join(work, 'site', 'llm'), [v1, v2]);
  const server = await serveRelease(path.join(work, 'site'));
  try {
    const volume = memoryVolume(only('m.gguf', v1));
    const updater = (healthCheck: () => boolean, target = ggufVolumeTarget(volume, 'm.gguf')) => new Updater({
      modelId: 'tiny-llm', urls: [`${server.url}llm/`], trustedKeys: [release.keys.publicKeyPem], target, state: new MemoryUpdaterState(), healthCheck,
    });
    let saw: Uint8Array | undefined;
    const failed = await updater(() => {
      saw = volume.files.get('m.gguf')?.slice();
      return false;
    }).update();
    assert.equal(failed.status, 'failed', JSON.stringify(failed));
    assert.ok(same(saw, v2), 'the health check saw v2 in place');
    assert.ok(same(volume.files.get('m.gguf'), v1), 'v1 back byte for byte');
    assert.deepEqual([...volume.files.keys()].filter((n) => n.endsWith('.ndiff-undo')), [], 'no journal left');

    const r = await updater(() => true).update();
    assert.equal(r.status, 'updated', JSON.stringify(r));
    assert.deepEqual(r.steps.map((s) => `${s.kind} ${s.outcome}`), ['payload applied']);
    assert.equal(r.fingerprint, release.digests[1]);
    assert.ok(same(volume.files.get('m.gguf'), v2), 'v2 byte for byte');
    assert.ok(!server.log.some((q) => q.path.endsWith(release.manifest.versions[1].files[0].file)), 'the full model was not downloaded');
    assert.equal((await updater(() => true).update()).status, 'up-to-date');

    // Another version of the model: no payload starts from it, and the updater never installs a GGUF whole.
    const other = perturbGguf(v1, { blockShare: 0.05, seed: 8 });
    const elsewhere = memoryVolume(only('m.gguf', other));
    const before = server.log.length;
    const refused = await updater(() => true, ggufVolumeTarget(elsewhere, 'm.gguf')).update();
    assert.equal(refused.status, 'failed');
    assert.equal(refused.error?.code, 'ND_NO_UPDATE_PATH');
    assert.match(refused.error?.message ?? '', /which no payload of this release starts from .* a gguf model is never installed whole by the updater/);
    assert.deepEqual(server.log.slice(before).map((q) => q.path), ['/llm/manifest.json'], 'only the manifest was fetched');
    assert.ok(same(elsewhere.files.get('m.gguf'), other), 'the model untouched');
    await assert.rejects(ggufVolumeTarget(elsewhere, 'm.gguf').installPackage([], { modelId: 'tiny-llm', fingerprint: release.digests[1] }), (e: unknown) => e instanceof ModelFormatError && /never installs whole/.test(e.message));
  } finally {
    await server.close();
    await rm(work, { recursive: true, force: true });
  }
});
