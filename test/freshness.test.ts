/**
 * Freshness (sequence numbers, expiry), the state file, and the health check, on in-memory
 * models: every refusal is typed, says why, and leaves the weights and the record untouched.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { getHasher } from '../src/core/hasher.ts';
import { topkDiff } from '../src/topk-diff/encoder.ts';
import { applyPayload, MemorySequenceStore, MemoryWeightStore, FreshnessError, HealthCheckError, StateStoreError, NeuralDiffError, TargetMismatchError, type SequenceStore } from '../src/apply/index.ts';
import { decodePayload } from '../src/core/format.ts';
import { encodePayload } from '../src/core/encode.ts';
import { FileSequenceStore } from '../src/io/durable/sequence-file.ts';
import { baseAndTarget, snapshot, sameBytes } from './helpers/models.ts';
import { tempDir } from './helpers/dirs.ts';

const hasher = await getHasher();
const { base: v1, target: v2 } = baseAndTarget(41);
const v3 = baseAndTarget(42).target;
const NOW = Date.parse('2026-06-01T00:00:00Z');
const p12 = topkDiff(hasher, v1, v2, { budgetBytes: 1_000_000, codec: 'f32', modelId: 'kws', sequence: 5 });
/** The model v1 + p12 actually is (the target of p12). */
function atV2(): MemoryWeightStore {
  const m = v1.clone();
  for (const [n, v] of p12.targetValues) m.values(n).set(v);
  return m;
}
const p23 = topkDiff(hasher, atV2(), v3, { budgetBytes: 1_000_000, codec: 'f32', modelId: 'kws', sequence: 6 });

async function refused(store: MemoryWeightStore, bytes: Uint8Array, options: Parameters<typeof applyPayload>[2], type: new (...a: never[]) => NeuralDiffError, pattern: RegExp): Promise<NeuralDiffError> {
  const before = snapshot(store);
  const err = await applyPayload(store, bytes, options).then(() => assert.fail('expected a refusal'), (e: unknown) => e);
  assert.ok(err instanceof type, `expected ${type.name}, got ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`);
  assert.match((err as Error).message, pattern);
  assert.ok(sameBytes(before, snapshot(store)), 'the model was modified');
  return err as NeuralDiffError;
}

describe('sequence numbers', () => {
  test('an applied sequence is recorded; re-running the same payload is already-applied, not a refusal', async () => {
    const seq = new MemorySequenceStore();
    const device = v1.clone();
    const r1 = await applyPayload(device, p12.bytes, { sequenceStore: seq });
    assert.equal(r1.status, 'applied');
    assert.equal(r1.sequenceRecorded, true);
    assert.equal(seq.get('kws'), 5);
    const r2 = await applyPayload(device, p12.bytes, { sequenceStore: seq });
    assert.equal(r2.status, 'already-applied');
    assert.equal(r2.sequenceRecorded, false);
    assert.equal(r2.previousSequence, 5);
  });

  test('an older payload is refused as stale, naming both numbers and what to do', async () => {
    const seq = new MemorySequenceStore();
    seq.set('kws', 9);
    const e = await refused(v1.clone(), p12.bytes, { sequenceStore: seq }, FreshnessError, /payload sequence 5 for model "kws" is older than sequence 9, the highest this device has applied.*fetch the current update \(sequence above 9\)/);
    assert.equal(e.details.reason, 'stale');
    assert.equal(seq.get('kws'), 9);
  });

  test('rollback attack: a signed-looking old update whose base matches the current model is refused', async () => {
    // the device is at v3 (sequence 6); the attacker replays a payload v3 -> v2 built under sequence 5
    const seq = new MemorySequenceStore();
    seq.set('kws', 6);
    const v3model = atV2();
    for (const [n, v] of p23.targetValues) v3model.values(n).set(v);
    const back = topkDiff(hasher, v3model, atV2(), { budgetBytes: 1_000_000, codec: 'f32', modelId: 'kws', sequence: 5 });
    await refused(v3model, back.bytes, { sequenceStore: seq }, FreshnessError, /older than sequence 6/);
    // without the sequence store it would have applied: the check is what stops it
    assert.equal((await applyPayload(v3model.clone(), back.bytes)).status, 'applied');
  });

  test('a payload under the recorded sequence, on a device back at its base, is refused saying the device went back to an older model', async () => {
    const seq = new MemorySequenceStore();
    seq.set('kws', 6);
    const device = atV2();
    // p23 carries sequence 6 and the device already recorded 6, but holds p23's base: the model
    // it applied 6 to was replaced by an older one (an app that reloads its original files).
    const e = await refused(device, p23.bytes, { sequenceStore: seq }, FreshnessError, /payload sequence 6 for model "kws" was already applied on this device, yet the model it holds now .* is that payload's base, not its target: the device went back to a model older than the sequence it recorded.*Nothing was written: keep the updated model where the app loads it from/);
    assert.equal(e.details.reason, 'model-went-back');
    assert.doesNotMatch(e.message, /publish the update with a sequence above/, 'the device is told what happened to it, not given advice for the publisher');
  });

  test('sequences are per model id', async () => {
    const seq = new MemorySequenceStore();
    seq.set('other-model', 100);
    assert.equal((await applyPayload(v1.clone(), p12.bytes, { sequenceStore: seq })).status, 'applied');
    assert.equal(seq.get('kws'), 5);
    assert.equal(seq.get('other-model'), 100);
  });

  test('already at the target with a higher sequence than recorded: recorded (crash after commit, before the record)', async () => {
    const seq = new MemorySequenceStore();
    seq.set('kws', 4);
    const r = await applyPayload(atV2(), p12.bytes, { sequenceStore: seq });
    assert.equal(r.status, 'already-applied');
    assert.equal(r.sequenceRecorded, true);
    assert.equal(seq.get('kws'), 5);
  });

  test('nothing is recorded when the apply fails or the health check rejects', async () => {
    const seq = new MemorySequenceStore();
    // one value changed, digests kept: a payload whose patch no longer reaches its target
    const decoded = decodePayload(p12.bytes);
    const patch = decoded.patches[0] as { values: Float32Array };
    patch.values = patch.values.slice();
    patch.values[0] += 0.25;
    const bad = encodePayload(decoded);
    await refused(v1.clone(), bad, { sequenceStore: seq }, TargetMismatchError, /undone/);
    await refused(v1.clone(), p12.bytes, { sequenceStore: seq, healthCheck: () => false }, HealthCheckError, /rolled back/);
    assert.equal(seq.get('kws'), undefined);
  });
});

describe('expiry', () => {
  const expiring = topkDiff(hasher, v1, v2, { budgetBytes: 1_000_000, codec: 'f32', modelId: 'kws', sequence: 5, expiresAt: NOW / 1000 });
  test('before expiresAt: applies', async () => {
    assert.equal((await applyPayload(v1.clone(), expiring.bytes, { now: () => NOW - 1 })).status, 'applied');
  });
  test('at and after expiresAt: refused, with both times and what to do', async () => {
    for (const now of [NOW, NOW + 86_400_000]) {
      const e = await refused(v1.clone(), expiring.bytes, { now: () => now }, FreshnessError, /payload for model "kws" \(sequence 5\) expired at 2026-06-01T00:00:00.000Z and the device clock says .*fetch a fresh payload. If the device clock is wrong, fix it first/);
      assert.equal(e.details.reason, 'expired');
    }
  });
  test('expiry is checked without a sequence store too, against Date.now by default', async () => {
    const past = topkDiff(hasher, v1, v2, { budgetBytes: 1_000_000, codec: 'f32', modelId: 'kws', sequence: 5, expiresAt: 1_000_000_000 });
    await refused(v1.clone(), past.bytes, {}, FreshnessError, /expired at 2001-09-09/);
  });
  test('a broken clock refuses rather than guessing', async () => {
    await refused(v1.clone(), expiring.bytes, { now: () => NaN }, FreshnessError, /device clock returned NaN/);
  });
  test('an expired payload whose target the model already is: reported as already applied (nothing to write)', async () => {
    const r = await applyPayload(atV2(), expiring.bytes, { now: () => NOW + 1000 });
    assert.equal(r.status, 'already-applied');
  });
});

describe('a sequence store that fails', () => {
  test('unreadable store: refused before anything is written', async () => {
    const broken: SequenceStore = { get: () => { throw new Error('EIO: i/o error'); }, set: () => {} };
    const e = await refused(v1.clone(), p12.bytes, { sequenceStore: broken }, StateStoreError, /cannot read the applied sequence of model "kws" .*EIO.*nothing was applied/);
    assert.equal(e.details.applied, false);
  });
  test('a store holding garbage: refused', async () => {
    const weird: SequenceStore = { get: () => -3 as number, set: () => {} };
    await refused(v1.clone(), p12.bytes, { sequenceStore: weird }, StateStoreError, /holds -3 .* expected a non-negative integer/);
  });
  test('unwritable store after a successful apply: the error says the model WAS updated and how to finish', async () => {
    const device = v1.clone();
    const ro: SequenceStore = { get: () => undefined, set: () => Promise.reject(new Error('ENOSPC: no space left')) };
    const err = await applyPayload(device, p12.bytes, { sequenceStore: ro }).then(() => null, (e: unknown) => e);
    assert.ok(err instanceof StateStoreError);
    assert.match(err.message, /the model is now .* but recording sequence 5 .* failed \(ENOSPC.*run the same apply again: it reports already applied and records the sequence/);
    assert.equal(err.details.applied, true);
    // and indeed re-running with a working store finishes the job
    const seq = new MemorySequenceStore();
    const r = await applyPayload(device, p12.bytes, { sequenceStore: seq });
    assert.equal(r.status, 'already-applied');
    assert.equal(seq.get('kws'), 5);
  });
});

describe('the state file', () => {
  test('round trip, atomic replacement, per-model records, hostile model ids', async () => {
    const dir = await tempDir();
    const file = join(dir, 'state.json');
    const s = new FileSequenceStore(file);
    assert.equal(await s.get('kws'), undefined);
    await s.set('kws', 3, { fingerprint: 'aaaaaaaaaaaaaaaa' });
    await s.set('__proto__', 7, { fingerprint: 'bbbbbbbbbbbbbbbb' });
    await s.set('kws', 4, { fingerprint: 'cccccccccccccccc' });
    const again = new FileSequenceStore(file);
    assert.equal(await again.get('kws'), 4);
    assert.equal(await again.get('__proto__'), 7);
    assert.equal(await again.get('constructor'), undefined);
    const doc = JSON.parse(await readFile(file, 'utf8'));
    assert.equal(doc.format, 'neural-diff-state');
    assert.equal(doc.models.kws.fingerprint, 'cccccccccccccccc');
    assert.deepEqual((await readdir(dir)).sort(), ['state.json']);
    // a leftover temp file of an interrupted write is removed by the next write
    await writeFile(join(dir, 'state.json.tmp-12345-abcdef012345'), '{"half');
    await s.set('kws', 5, { fingerprint: 'dddddddddddddddd' });
    assert.deepEqual((await readdir(dir)).sort(), ['state.json']);
  });

  test('a damaged state file fails closed with a message that says what not to do', async () => {
    const dir = await tempDir();
    const file = join(dir, 'state.json');
    for (const [content, why] of [['{"format": "neural-diff-state", "version": 1, "models": {"kws": {"sequence": "7"}}}', /model "kws" has sequence "7"/], ['{"trunc', /not JSON/], ['[]', /not a neural-diff state file/], ['{"format": "neural-diff-state", "version": 2, "models": {}}', /version 2, this code reads version 1/]] as const) {
      await writeFile(file, content);
      const e = await refused(v1.clone(), p12.bytes, { sequenceStore: new FileSequenceStore(file) }, StateStoreError, /state file .* is damaged/);
      assert.match(e.message, why);
      assert.match(e.message, /deleting it drops the device's protection against replayed older updates/);
    }
  });
});

describe('the health check', () => {
  test('passing: the update stays; it sees the patched weights', async () => {
    const device = v1.clone();
    let seen = 0;
    const r = await applyPayload(device, p12.bytes, {
      healthCheck: ({ store, result }) => {
        seen = store.values('dense/kernel')[0];
        return result.status === 'applied';
      },
    });
    assert.equal(r.status, 'applied');
    assert.equal(seen, device.values('dense/kernel')[0]);
    assert.ok(sameBytes(snapshot(device), snapshot(atV2())));
  });
  test('returning false or throwing: rolled back byte for byte, the message carries the cause', async () => {
    await refused(v1.clone(), p12.bytes, { healthCheck: () => false }, HealthCheckError, /health check rejected the updated model .* it returned false; the update was rolled back and the model is .* again/);
    await refused(v1.clone(), p12.bytes, { healthCheck: async () => { throw new Error('accuracy 0.12 on the canary set'); } }, HealthCheckError, /it failed: accuracy 0\.12 on the canary set/);
  });
  test('going back fails too: ND_ROLLBACK_FAILED says the weights in memory are the previous version and what to run', async () => {
    const device = v1.clone();
    let commits = 0;
    (device as unknown as { commit: () => void }).commit = () => {
      if (++commits === 2) throw new Error('EROFS: read-only file system');
    };
    const err = await applyPayload(device, p12.bytes, { healthCheck: () => false }).then(() => null, (e: unknown) => e);
    assert.ok(err instanceof NeuralDiffError && err.code === 'ND_ROLLBACK_FAILED', String(err));
    assert.match(err.message, /health check rejected .* going back to the previous version failed too \(EROFS.*the weights in memory are the previous version.*run the apply again/);
    assert.ok(sameBytes(snapshot(device), snapshot(v1)));
  });

  test('a two-phase store: confirmed after a passing check; reverted when the check fails or the confirmation fails', async () => {
    const calls: string[] = [];
    const twoPhase = (failConfirm: boolean) => Object.assign(v1.clone(), {
      commit: () => { calls.push('commit'); },
      confirmCommit: () => { calls.push('confirm'); if (failConfirm) throw new Error('EIO while renaming'); },
      revertCommit: () => { calls.push('revert'); },
    });
    assert.equal((await applyPayload(twoPhase(false), p12.bytes, { healthCheck: () => true })).status, 'applied');
    assert.deepEqual(calls.splice(0), ['commit', 'confirm']);
    await refused(twoPhase(false), p12.bytes, { healthCheck: () => false }, HealthCheckError, /rolled back/);
    assert.deepEqual(calls.splice(0), ['commit', 'revert']);
    const store = twoPhase(true);
    const err = await refused(store, p12.bytes, {}, NeuralDiffError, /confirming the update failed \(EIO while renaming\); the update was rolled back/);
    assert.equal(err.code, 'ND_COMMIT_FAILED');
    assert.deepEqual(calls.splice(0), ['commit', 'confirm', 'revert']);
  });

  test('a store that commits but cannot keep two versions gets the restored weights committed again', async () => {
    const device = v1.clone();
    const commits: Float32Array[] = [];
    (device as unknown as { commit: () => void }).commit = () => { commits.push(device.values('dense/kernel').slice()); };
    await refused(device, p12.bytes, { healthCheck: () => false }, HealthCheckError, /rolled back/);
    assert.equal(commits.length, 2);
    assert.deepEqual(commits[1], v1.values('dense/kernel'));
    assert.notDeepEqual(commits[0], v1.values('dense/kernel'));
  });
});
