/**
 * `ndiff keygen`, `ndiff sign`, `ndiff verify --public-key`, and `ndiff apply` with keys, state,
 * health check and recovery: exit codes, messages, and folders untouched on every refusal.
 */
import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { cp, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { main } from '../cli/ndiff.ts';
import type { CliIO } from '../cli/common.ts';
import { getHasher } from '../src/core/hasher.ts';
import { topkDiff } from '../src/topk-diff/encoder.ts';
import { openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { applyToModelDir } from '../src/io/tfjs/folder-update.ts';
import { crashingFileOps } from './helpers/file-ops.ts';
import { MemoryWeightStore } from '../src/core/weight-store.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { baseAndTarget } from './helpers/models.ts';
import { tempDir, writeStore, folderBytes, withTfjsFrame } from './helpers/dirs.ts';

const hasher = await getHasher();

async function ndiff(...argv: string[]) {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const io: CliIO = { out: (l) => stdout.push(l), err: (l) => stderr.push(l), progress: (l) => stderr.push(l) };
  const code = await main(argv, io);
  return { code, out: stdout.join('\n'), err: stderr.join('\n') };
}

async function fingerprintOf(dir: string): Promise<string> {
  return fingerprintStore(hasher, await openTfjsModelDir(dir)).fingerprint;
}

describe('ndiff keygen / sign / verify / apply with signatures and freshness', () => {
  let dir: string;
  let v1: string;
  let keys: string;
  let other: string;
  let p12: string;
  let p12signed: string;
  let target12: string;
  let v2store: MemoryWeightStore;
  before(async () => {
    dir = await tempDir();
    // With the frame of the folder writeStore makes: the payloads are for that folder.
    const pair = baseAndTarget(61);
    const [base, target] = [withTfjsFrame(pair.base), withTfjsFrame(pair.target)];
    v1 = join(dir, 'v1');
    await writeStore(v1, base);
    const built = topkDiff(hasher, base, target, { budgetBytes: 1_000_000, codec: 'f32', modelId: 'kws', sequence: 2 });
    p12 = join(dir, 'v1-v2.ndiff');
    await writeFile(p12, built.bytes);
    target12 = built.payload.header.targetFingerprint;
    v2store = base.clone();
    for (const [n, v] of built.targetValues) v2store.values(n).set(v);
    keys = join(dir, 'release');
    other = join(dir, 'other');
  });

  test('keygen writes a private key only its owner can read and a public key; never overwrites', async () => {
    const r = await ndiff('keygen', '--out', keys);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /key id [0-9a-f]{16}/);
    assert.equal((await stat(`${keys}.private.pem`)).mode & 0o777, 0o600);
    assert.match(await readFile(`${keys}.public.pem`, 'utf8'), /BEGIN PUBLIC KEY/);
    const again = await ndiff('keygen', '--out', keys);
    assert.equal(again.code, 2);
    assert.match(again.err, /already exists: keygen never overwrites a key/);
    assert.equal((await ndiff('keygen', '--out', other)).code, 0);
  });

  test('sign writes <payload>.signed.ndiff; verify --public-key accepts it and names the key', async () => {
    const r = await ndiff('sign', p12, '--key', `${keys}.private.pem`);
    assert.equal(r.code, 0, r.err);
    p12signed = join(dir, 'v1-v2.signed.ndiff');
    assert.match(r.out, new RegExp(`wrote ${p12signed.replace(/[.]/g, '\\.')}: \\d+ bytes \\(payload \\+ 77\\), signed with key id [0-9a-f]{16}`));
    const v = await ndiff('verify', p12signed, '--public-key', `${keys}.public.pem`, '--model', v1);
    assert.equal(v.code, 0, v.err);
    assert.match(v.out, /signature: valid, trusted key id [0-9a-f]{16} \(webcrypto\)/);
    assert.match(v.out, /applies cleanly/);
    // without a key it still reads, and says the signature was not checked
    const nokey = await ndiff('verify', p12signed);
    assert.equal(nokey.code, 0);
    assert.match(nokey.out, /NOT checked \(pass --public-key to check it\)/);
  });

  test('inspect shows a signed envelope\'s payload and key id, saying the signature is not checked there', async () => {
    const r = await ndiff('inspect', p12signed);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /signed by {2}key id [0-9a-f]{16} \(not checked here: ndiff verify --public-key KEY checks it\)/);
    assert.match(r.out, /sequence +2/);
    const j = JSON.parse((await ndiff('inspect', p12signed, '--json')).out);
    assert.match(j.signedBy, /^[0-9a-f]{16}$/);
    assert.equal(j.signatureChecked, false);
  });

  test('verify refusals exit 3: wrong key, flipped bit, unsigned under a key', async () => {
    const wrong = await ndiff('verify', p12signed, '--public-key', `${other}.public.pem`);
    assert.equal(wrong.code, 3);
    assert.match(wrong.err, /not one of the 1 key\(s\) this device trusts/);
    const bytes = await readFile(p12signed);
    bytes[100] ^= 0x01;
    const flipped = join(dir, 'flipped.ndiff');
    await writeFile(flipped, bytes);
    const f = await ndiff('verify', flipped, '--public-key', `${keys}.public.pem`);
    assert.equal(f.code, 3);
    assert.match(f.err, /signature does not match the payload .*fetch it again/);
    const bare = await ndiff('verify', p12, '--public-key', `${keys}.public.pem`);
    assert.equal(bare.code, 3);
    assert.match(bare.err, /payload is not signed/);
    // a key file that is not a public key: usage error
    const priv = await ndiff('verify', p12signed, '--public-key', `${keys}.private.pem`);
    assert.equal(priv.code, 2);
    assert.match(priv.err, /a private key must never be given to a device/);
  });

  test('sign refuses what is not a payload (exit 3) and what is already signed (exit 2)', async () => {
    const junk = join(dir, 'junk.bin');
    await writeFile(junk, 'hello');
    const r = await ndiff('sign', junk, '--key', `${keys}.private.pem`);
    assert.equal(r.code, 3);
    assert.match(r.err, /refusing to sign/);
    const twice = await ndiff('sign', p12signed, '--key', `${keys}.private.pem`, '--out', join(dir, 'x'));
    assert.equal(twice.code, 2);
    assert.match(twice.err, /already a signed envelope/);
  });

  test('apply with --public-key: unsigned and wrong-key payloads are refused, the folder untouched; the signed one applies', async () => {
    const device = join(dir, 'device-sig');
    await cp(v1, device, { recursive: true });
    const before = await folderBytes(device);
    const bare = await ndiff('apply', '--model', device, '--patch', p12, '--public-key', `${keys}.public.pem`);
    assert.equal(bare.code, 3);
    assert.match(bare.err, /payload is not signed/);
    const wrong = await ndiff('apply', '--model', device, '--patch', p12signed, '--public-key', `${other}.public.pem`);
    assert.equal(wrong.code, 3);
    assert.deepEqual(await folderBytes(device), before);
    const ok = await ndiff('apply', '--model', device, '--patch', p12signed, '--public-key', `${keys}.public.pem`);
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.err, /signature: valid/);
    assert.match(ok.err, /recorded sequence 2 for model "kws" in .*\.ndiff-state\.json/);
    assert.equal(await fingerprintOf(device), target12);
  });

  test('replay and rollback refused by the state file; expired payloads refused; all exit 3 with the folder untouched', async () => {
    const device = join(dir, 'device-fresh');
    await cp(v1, device, { recursive: true });
    assert.equal((await ndiff('apply', '--model', device, '--patch', p12)).code, 0);
    // the device is at v2 (sequence 2). A payload back to v1 under sequence 1: a rollback attack
    const v1store = withTfjsFrame(baseAndTarget(61).base);
    const back = topkDiff(hasher, v2store, v1store, { budgetBytes: 1_000_000, codec: 'f32', modelId: 'kws', sequence: 1 });
    const backFile = join(dir, 'v2-v1.ndiff');
    await writeFile(backFile, back.bytes);
    const before = await folderBytes(device);
    const r = await ndiff('apply', '--model', device, '--patch', backFile);
    assert.equal(r.code, 3);
    assert.match(r.err, /payload sequence 1 for model "kws" is older than sequence 2/);
    // the same under sequence 2: a replay of an applied sequence
    const same = topkDiff(hasher, v2store, v1store, { budgetBytes: 1_000_000, codec: 'f32', modelId: 'kws', sequence: 2 });
    await writeFile(backFile, same.bytes);
    const s = await ndiff('apply', '--model', device, '--patch', backFile);
    assert.equal(s.code, 3);
    assert.match(s.err, /sequence 2 .* was already applied on this device/);
    // expired
    const old = topkDiff(hasher, v2store, v1store, { budgetBytes: 1_000_000, codec: 'f32', modelId: 'kws', sequence: 3, expiresAt: Math.floor(Date.now() / 1000) - 60 });
    await writeFile(backFile, old.bytes);
    const e = await ndiff('apply', '--model', device, '--patch', backFile);
    assert.equal(e.code, 3);
    assert.match(e.err, /expired at .* fetch a fresh payload/);
    assert.deepEqual(await folderBytes(device), before);
    // --no-state turns the record off: the same rollback payload then applies, and the state
    // file is neither read nor written
    const copy = join(dir, 'device-nostate');
    await cp(device, copy, { recursive: true });
    const stateBefore = await readFile(join(copy, '.ndiff-state.json'), 'utf8');
    await writeFile(backFile, back.bytes);
    const n = await ndiff('apply', '--model', copy, '--patch', backFile, '--no-state');
    assert.equal(n.code, 0, n.err);
    assert.equal(await fingerprintOf(copy), back.payload.header.targetFingerprint);
    assert.equal(await readFile(join(copy, '.ndiff-state.json'), 'utf8'), stateBefore);
  });

  test('--state puts the record elsewhere', async () => {
    const device = join(dir, 'device-state');
    await cp(v1, device, { recursive: true });
    const stateFile = join(dir, 'device-state.json');
    assert.equal((await ndiff('apply', '--model', device, '--patch', p12, '--state', stateFile)).code, 0);
    assert.equal(JSON.parse(await readFile(stateFile, 'utf8')).models.kws.sequence, 2);
    assert.ok(!(await readdir(device)).includes('.ndiff-state.json'));
  });

  test('--health-check: a failing command rolls back (exit 5, folder byte for byte); a passing one keeps the update', async () => {
    const device = join(dir, 'device-health');
    await cp(v1, device, { recursive: true });
    const before = await folderBytes(device);
    const bad = await ndiff('apply', '--model', device, '--patch', p12, '--health-check', 'echo "canary accuracy 0.10" >&2; exit 3');
    assert.equal(bad.code, 5, bad.err);
    assert.match(bad.err, /health check: canary accuracy 0\.10/);
    assert.match(bad.err, /health check rejected the updated model .* rolled back/);
    // What happened, not how the library was told: the command's exit code and its last line.
    assert.match(bad.err, /it failed: the command .* exited with code 3; its last line: canary accuracy 0\.10/);
    assert.doesNotMatch(bad.err, /returned false/);
    assert.deepEqual(await folderBytes(device), before);
    const good = await ndiff('apply', '--model', device, '--patch', p12, '--health-check', `test -f "$NDIFF_MODEL_DIR/model.json"`);
    assert.equal(good.code, 0, good.err);
    assert.equal(await fingerprintOf(device), target12);
  });

  test('a health check that never answers counts as failed after --health-check-timeout', async () => {
    const device = join(dir, 'device-hang');
    await cp(v1, device, { recursive: true });
    const before = await folderBytes(device);
    const r = await ndiff('apply', '--model', device, '--patch', p12, '--health-check', 'sleep 30', '--health-check-timeout', '1');
    assert.equal(r.code, 5, r.err);
    assert.match(r.err, /no answer after 1 s, stopping it/);
    assert.deepEqual(await folderBytes(device), before);
    const bad = await ndiff('apply', '--model', device, '--patch', p12, '--health-check', 'true', '--health-check-timeout', '0');
    assert.equal(bad.code, 2);
    assert.match(bad.err, /--health-check-timeout must be a positive number of seconds/);
  });

  test('files that are not there, or keys of the wrong kind: exit codes and messages', async () => {
    const missing = await ndiff('apply', '--model', join(dir, 'no-such-model'), '--patch', p12);
    assert.equal(missing.code, 7);
    assert.match(missing.err, /no model folder at .*no-such-model: check the path/);
    const nokey = await ndiff('verify', p12signed, '--public-key', join(dir, 'nope.pem'));
    assert.equal(nokey.code, 2);
    assert.match(nokey.err, /cannot read the public key file .*nope\.pem \(ENOENT\)/);
    const { generateKeyPairSync } = await import('node:crypto');
    const ec = join(dir, 'ec.pem');
    await writeFile(ec, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
    const wrongType = await ndiff('sign', p12, '--key', ec);
    assert.equal(wrongType.code, 2);
    assert.match(wrongType.err, /is a ec key: expected an Ed25519 key \(make one with `ndiff keygen`\)/);
    // keygen makes the folder it writes to (`ndiff keygen --out keys/release` on a fresh checkout).
    const newFolder = await ndiff('keygen', '--out', join(dir, 'no', 'such', 'folder', 'k'));
    assert.equal(newFolder.code, 0, newFolder.err);
    assert.ok((await readFile(join(dir, 'no', 'such', 'folder', 'k.public.pem'), 'utf8')).includes('PUBLIC KEY'));
  });

  test('re-running apply after an interrupted update recovers it, says so, and finishes', async () => {
    const device = join(dir, 'device-recover');
    await cp(v1, device, { recursive: true });
    // an update that switched but was never confirmed (the process died in its health check)
    const ops = crashingFileOps((op) => op === 'unlink model.json.prev');
    await assert.rejects(applyToModelDir(device, await readFile(p12), { fileOps: ops }));
    assert.equal(ops.crashed(), 'unlink model.json.prev');
    assert.equal(await fingerprintOf(device), target12);
    await writeFile(join(device, 'model.json.tmp-999-abcdefabcdef'), 'half');
    const r = await ndiff('apply', '--model', device, '--patch', p12);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /recovered .*: update [0-9a-f-]+ was interrupted after its switch but before it was confirmed: rolled back/);
    assert.match(r.out, /patched/);
    assert.equal(await fingerprintOf(device), target12);
    assert.deepEqual((await readdir(device)).filter((f) => /tmp|prev|retired|lock/.test(f)), []);
  });
});
