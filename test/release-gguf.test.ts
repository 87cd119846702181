/**
 * `ndiff release add` of GGUF models: each version stored as blobs (every part of a split model),
 * named by the stored-bytes digest GGUF payloads use, and the exact block payload from each of the
 * last versions to the new one, checked by publish by applying it in place to a copy of its base;
 * then `ndiff update` of a device holding an older version reaches the newest byte for byte,
 * downloading only payloads. Planned as jobs, each job makes its payload and publish refuses one
 * swapped for a payload that reaches another file. On-grid payloads (`--method topk --budget`):
 * within the budget, a chain's devices taking the next payload from the state they hold, publish
 * making each again to check it (measured through llama.cpp in test/gguf-budget-auto.test.ts);
 * one made elsewhere, signed only when the key holder accepts its SHA-256.
 * Refused, the folder unchanged: an ONNX model's eval options, a budget too small for any payload,
 * a learned method, another kind of model.
 * Versions laid out differently get no payload, and the add says devices have no update path.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { validateManifest, type ReleaseManifest } from '../src/updater/manifest.ts';
import { parseEnvelope } from '../src/apply/envelope.ts';
import { getHasher } from '../src/core/hasher.ts';
import { ongridGgufDiff } from '../src/gguf-diff/encoder.ts';
import { diffGgufModels } from '../src/io/gguf/diff.ts';
import { bytesSource } from '../src/io/gguf/header.ts';
import { ggufModelOf } from '../src/io/gguf/model.ts';
import { sha256Of } from '../src/release/blobs.ts';
import { ggufFixture, perturbGguf } from './helpers/gguf-pairs.ts';
import { ggufBytesDigest } from './helpers/gguf-release.ts';
import { runNdiff as ndiff } from './helpers/ndiff-run.ts';
import { tempDir } from './helpers/dirs.ts';
import { serveRelease, type ReleaseServer } from './helpers/release-server.ts';

const same = (a: Uint8Array, b: Uint8Array) => Buffer.compare(a, b) === 0;

describe('ndiff release add of .gguf models', () => {
  let work: string;
  let server: ReleaseServer;
  let priv: string;
  let pub: string;
  before(async () => {
    work = await tempDir('nd-release-gguf-');
    assert.equal((await ndiff('keygen', '--out', join(work, 'release'))).code, 0);
    priv = join(work, 'release.private.pem');
    pub = join(work, 'release.public.pem');
    await mkdir(join(work, 'site'));
    server = await serveRelease(join(work, 'site'));
  });
  after(async () => {
    await server?.close();
  });

  /** `bytes` written as `<work>/<dir>/<name>`; its path. */
  async function file(dir: string, name: string, bytes: Uint8Array): Promise<string> {
    await mkdir(join(work, dir), { recursive: true });
    await writeFile(join(work, dir, name), bytes);
    return join(work, dir, name);
  }
  const manifestOf = async (site: string) => validateManifest((JSON.parse(await readFile(join(site, 'manifest.json'), 'utf8')) as { signed: unknown }).signed) as ReleaseManifest;

  test('three versions: exact block payloads from each older version, and a device on v1 updated to v3 by payload only', async () => {
    const v1 = ggufFixture('tiny-llama-q8_0.gguf');
    const v2 = perturbGguf(v1, { blockShare: 0.05, bytesPerBlock: 3, metadata: true, seed: 7 });
    const v3 = perturbGguf(v2, { blockShare: 0.05, bytesPerBlock: 3, seed: 9 });
    const site = join(work, 'site', 'llm');
    let r = await ndiff('release', 'add', '--release', site, '--model', await file('v1', 'model.gguf', v1), '--model-id', 'tiny-llm', '--key', priv);
    assert.equal(r.code, 0, r.err);
    r = await ndiff('release', 'add', '--release', site, '--model', await file('v2', 'model.gguf', v2), '--key', priv);
    assert.equal(r.code, 0, r.err);
    r = await ndiff('release', 'add', '--release', site, '--model', await file('v3', 'model.gguf', v3), '--key', priv);
    assert.equal(r.code, 0, r.err);
    const m = await manifestOf(site);
    assert.equal(m.modelKind, 'gguf');
    const digests = await Promise.all([v1, v2, v3].map((v) => ggufBytesDigest(v)));
    assert.deepEqual(m.versions.map((v) => v.fingerprint), digests, 'versions named by their stored-bytes digests');
    const edges = m.payloads.map((p) => `${p.fromVersion}->${p.toVersion}`).sort();
    assert.deepEqual(edges, ['1->2', '1->3', '2->3']);
    for (const p of m.payloads) {
      assert.equal(p.exact, true);
      assert.equal(p.base, digests[p.fromVersion - 1]);
      assert.equal(p.target, digests[p.toVersion - 1]);
      assert.ok(p.length < v3.length / 3, `${p.fromVersion}->${p.toVersion}: ${p.length} bytes against a ${v3.length}-byte file`);
    }
    const device = await file('device', 'model.gguf', v1);
    const before = server.log.length;
    r = await ndiff('update', '--model', device, '--from', `${server.url}llm/`, '--public-key', pub, '--model-id', 'tiny-llm');
    assert.equal(r.code, 0, r.err);
    assert.ok(same(new Uint8Array(await readFile(device)), v3), 'the device file is v3 byte for byte');
    const fetched = server.log.slice(before).map((q) => q.path);
    const direct = m.payloads.find((p) => p.fromVersion === 1 && p.toVersion === 3) as { file: string };
    assert.deepEqual(fetched, ['/llm/manifest.json', `/llm/${direct.file}`], 'the manifest and the one payload v1 -> v3, never a full file');
  });

  test('a split model, added by any part: every part stored, the payload patches every part', async () => {
    const names = [1, 2, 3].map((k) => `tiny-split-0000${k}-of-00003.gguf`);
    const s1 = names.map((x) => ggufFixture(x));
    const s2 = s1.map((b, i) => perturbGguf(b, { blockShare: 0.1, seed: 31 + i, metadata: i === 0 }));
    const site = join(work, 'site', 'split');
    for (const [k, parts] of [s1, s2].entries()) for (const [i, x] of names.entries()) await file(`split-v${k + 1}`, x, parts[i]);
    let r = await ndiff('release', 'add', '--release', site, '--model', join(work, 'split-v1', names[1]), '--model-id', 'tiny-llm', '--key', priv);
    assert.equal(r.code, 0, r.err);
    r = await ndiff('release', 'add', '--release', site, '--model', join(work, 'split-v2', names[0]), '--key', priv);
    assert.equal(r.code, 0, r.err);
    const m = await manifestOf(site);
    assert.deepEqual(m.versions[1].files.map((f) => f.path), names);
    assert.equal(m.versions[1].fingerprint, await ggufBytesDigest(s2));
    assert.equal(m.payloads.length, 1);
    for (const [i, x] of names.entries()) await file('split-device', x, s1[i]);
    r = await ndiff('update', '--model', join(work, 'split-device', names[2]), '--from', `${server.url}split/`, '--public-key', pub, '--model-id', 'tiny-llm');
    assert.equal(r.code, 0, r.err);
    for (const [i, x] of names.entries()) assert.ok(same(new Uint8Array(await readFile(join(work, 'split-device', x))), s2[i]), `${x} is v2's`);
  });

  test('planned as jobs (a CI matrix without the key): each job makes its payload, and publish refuses a payload swapped for one that reaches another file', async () => {
    const v1 = ggufFixture('tiny-llama-q8_0.gguf');
    const v2 = perturbGguf(v1, { blockShare: 0.1, seed: 21 });
    const other = perturbGguf(v1, { blockShare: 0.1, seed: 22 });
    const site = join(work, 'site', 'plan');
    let r = await ndiff('release', 'add', '--release', site, '--model', await file('p1', 'model.gguf', v1), '--model-id', 'p', '--key', priv);
    assert.equal(r.code, 0, r.err);
    r = await ndiff('release', 'add', '--release', site, '--model', await file('p2', 'model.gguf', v2), '--plan', '-q');
    assert.equal(r.code, 0, r.err);
    const jobs = r.out.split('\n').map((l) => JSON.parse(l) as { id: string });
    assert.deepEqual(jobs.map((j) => j.id), ['v2-from-v1']);
    r = await ndiff('release', 'job', '--release', site, '--id', 'v2-from-v1');
    assert.equal(r.code, 0, r.err);
    // The job's payload replaced by one from v1 to another file, its result file claiming that payload's bytes.
    const forged = diffGgufModels(await getHasher(), ggufModelOf(bytesSource(v1)), ggufModelOf(bytesSource(other)), { modelId: 'p', sequence: 2, createdBy: 'test' }).payload;
    const resultFile = join(site, 'jobs', 'v2-from-v1.json');
    const honest = await readFile(resultFile, 'utf8');
    const payloadFile = join(site, 'jobs', 'v2-from-v1.ndiff');
    const honestPayload = await readFile(payloadFile);
    const result = JSON.parse(honest) as { payload: { length: number; sha256: string; target: string; exact: boolean } };
    Object.assign(result.payload, { length: forged.length, sha256: sha256Of(forged), target: await ggufBytesDigest(other), exact: false });
    await writeFile(payloadFile, forged);
    await writeFile(resultFile, JSON.stringify(result));
    r = await ndiff('release', 'publish', '--release', site, '--key', priv);
    assert.notEqual(r.code, 0, 'a payload that reaches another file is not signed');
    assert.match(r.err, /reaches .*not version 2/);
    await writeFile(payloadFile, honestPayload);
    await writeFile(resultFile, honest);
    r = await ndiff('release', 'publish', '--release', site, '--key', priv);
    assert.equal(r.code, 0, r.err);
    const m = await manifestOf(site);
    assert.deepEqual(m.payloads.map((p) => [p.fromVersion, p.toVersion, p.exact, p.target]), [[1, 2, true, await ggufBytesDigest(v2)]]);
  });

  test('on-grid payloads (--method topk --budget 5%): each within the budget, devices on a chain take the next one from the state they hold, and publish makes each again to check it', async () => {
    const v1 = ggufFixture('tiny-llama-q8_0.gguf');
    const v2 = perturbGguf(v1, { blockShare: 0.3, seed: 41 });
    const v3 = perturbGguf(v2, { blockShare: 0.3, seed: 43 });
    const site = join(work, 'site', 'ongrid');
    let r = await ndiff('release', 'add', '--release', site, '--model', await file('g1', 'model.gguf', v1), '--model-id', 'g', '--key', priv);
    assert.equal(r.code, 0, r.err);
    r = await ndiff('release', 'add', '--release', site, '--model', await file('g2', 'model.gguf', v2), '--method', 'topk', '--budget', '5%', '--key', priv);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /payload v2-from-v1 is on-grid \(within 5%\): .*each changed block is version 1's or version 2's.*held-out text through llama\.cpp .*--eval TEXT/);
    const digests = await Promise.all([v1, v2, v3].map((v) => ggufBytesDigest(v)));
    let m = await manifestOf(site);
    assert.equal(m.payloads.length, 1);
    const first = m.payloads[0];
    assert.deepEqual([first.method, first.exact, first.base], ['ongrid', false, digests[0]]);
    const unsigned = async (p: { file: string }) => parseEnvelope(new Uint8Array(await readFile(join(site, p.file)))).payload.length;
    assert.ok(await unsigned(first) <= Math.floor(v2.length * 0.05), `${await unsigned(first)} bytes (unsigned) within 5% of ${v2.length}`);
    assert.notEqual(first.target, digests[1], 'the on-grid payload reaches a state of version 2, not version 2');
    // Version 3, planned: a job from each version and one from the state the chain's devices hold.
    r = await ndiff('release', 'add', '--release', site, '--model', await file('g3', 'model.gguf', v3), '--method', 'topk', '--budget', '5%', '--plan', '-q');
    assert.equal(r.code, 0, r.err);
    const ids = r.out.split('\n').map((l) => (JSON.parse(l) as { id: string }).id).sort();
    assert.deepEqual(ids, ['v3-from-v1', 'v3-from-v2', `v3-from-v2-${first.target.slice(0, 8)}`]);
    for (const id of ids) {
      r = await ndiff('release', 'job', '--release', site, '--id', id);
      assert.equal(r.code, 0, r.err);
    }
    // A job's result swapped for the on-grid payload of another budget: publish makes it again and refuses it.
    const chained = `v3-from-v2-${first.target.slice(0, 8)}`;
    const payloadFile = join(site, 'jobs', `${chained}.ndiff`);
    const resultFile = join(site, 'jobs', `${chained}.json`);
    const honest = [await readFile(payloadFile), await readFile(resultFile, 'utf8')] as const;
    const device = await file('g-device', 'model.gguf', v1);
    r = await ndiff('apply', '--model', device, '--patch', join(site, first.file), '--public-key', pub);
    assert.equal(r.code, 0, r.err);
    const state = new Uint8Array(await readFile(device));
    assert.equal(await ggufBytesDigest(state), first.target, 'ndiff apply of the signed payload reaches the state the manifest names');
    const other = ongridGgufDiff(await getHasher(), ggufModelOf(bytesSource(state)), ggufModelOf(bytesSource(v3)), Math.floor(v3.length * 0.03), { modelId: 'g', sequence: 3, createdBy: 'test' });
    const claimed = JSON.parse(honest[1]) as { payload: { length: number; sha256: string; target: string } };
    Object.assign(claimed.payload, { length: other.payload.length, sha256: sha256Of(other.payload), target: other.targetFingerprint });
    await writeFile(payloadFile, other.payload);
    await writeFile(resultFile, JSON.stringify(claimed));
    r = await ndiff('release', 'publish', '--release', site, '--key', priv);
    assert.notEqual(r.code, 0, 'an on-grid payload publish does not make again is not signed');
    assert.match(r.err, /not the on-grid payload of budget 5%/);
    await writeFile(payloadFile, honest[0]);
    await writeFile(resultFile, honest[1]);
    r = await ndiff('release', 'publish', '--release', site, '--key', priv);
    assert.equal(r.code, 0, r.err);
    m = await manifestOf(site);
    const fromState = m.payloads.find((p) => p.base === first.target) as (typeof m.payloads)[number];
    assert.ok(fromState, 'a payload from the state devices on the chain hold');
    assert.deepEqual([fromState.fromVersion, fromState.toVersion, fromState.method], [2, 3, 'ongrid']);
    assert.ok(await unsigned(fromState) <= Math.floor(v3.length * 0.05));
    // The device on the state takes that payload (the updater finds it by the file's digest) and ends where it says.
    const before = server.log.length;
    r = await ndiff('update', '--model', device, '--from', `${server.url}ongrid/`, '--public-key', pub, '--model-id', 'g');
    assert.equal(r.code, 0, r.err);
    assert.equal(await ggufBytesDigest(new Uint8Array(await readFile(device))), fromState.target);
    assert.deepEqual(server.log.slice(before).map((q) => q.path), ['/ongrid/manifest.json', `/ongrid/${fromState.file}`]);
  });

  test('an on-grid payload made elsewhere (ndiff diff), taken in by a planned job: publish signs it only when the key holder accepts its SHA-256', async () => {
    const v1 = ggufFixture('tiny-llama-q8_0.gguf');
    const v2 = perturbGguf(v1, { blockShare: 0.3, seed: 51 });
    const site = join(work, 'site', 'accept');
    let r = await ndiff('release', 'add', '--release', site, '--model', await file('a1', 'model.gguf', v1), '--model-id', 'a', '--key', priv);
    assert.equal(r.code, 0, r.err);
    r = await ndiff('release', 'add', '--release', site, '--model', await file('a2', 'model.gguf', v2), '--plan', '-q');
    assert.equal(r.code, 0, r.err);
    const made = join(work, 'a-made.ndiff');
    r = await ndiff('diff', '--base', join(work, 'a1', 'model.gguf'), '--target', join(work, 'a2', 'model.gguf'), '--model-id', 'a', '--sequence', '2', '--budget', '4%', '--out', made);
    assert.equal(r.code, 0, r.err);
    r = await ndiff('release', 'job', '--release', site, '--id', 'v2-from-v1', '--payload', made);
    assert.equal(r.code, 0, r.err);
    r = await ndiff('release', 'publish', '--release', site, '--key', priv);
    assert.notEqual(r.code, 0, 'a lossy payload nobody vouched for is not signed');
    assert.match(r.err, /names no on-grid budget/);
    const sha = sha256Of(new Uint8Array(await readFile(made)));
    r = await ndiff('release', 'publish', '--release', site, '--key', priv, '--accept', sha.slice(0, 16));
    assert.equal(r.code, 0, r.err);
    const m = await manifestOf(site);
    assert.equal(m.payloads.length, 1);
    assert.deepEqual([m.payloads[0].method, m.payloads[0].exact], ['ongrid', false]);
    const signed = parseEnvelope(new Uint8Array(await readFile(join(site, m.payloads[0].file)))).payload;
    assert.ok(same(signed, new Uint8Array(await readFile(made))), 'the payload signed is the one made by ndiff diff, byte for byte');
  });

  test('refused, the folder untouched: an ONNX model\'s eval options, a budget no payload fits, a learned method, a model of another kind', async () => {
    const v1 = ggufFixture('tiny-llama-q4_0.gguf');
    const site = join(work, 'site', 'refusals');
    let r = await ndiff('release', 'add', '--release', site, '--model', await file('r1', 'model.gguf', v1), '--model-id', 'r', '--key', priv);
    assert.equal(r.code, 0, r.err);
    const snapshot = async () => JSON.stringify([await readFile(join(site, 'release.json'), 'utf8'), await readFile(join(site, 'manifest.json'), 'utf8'), (await readdir(join(site, 'blobs'))).sort()]);
    const before = await snapshot();
    const v2 = await file('r2', 'model.gguf', perturbGguf(v1, { blockShare: 0.2, seed: 3 }));
    r = await ndiff('release', 'add', '--release', site, '--model', v2, '--method', 'topk', '--budget', '5%', '--eval', v2, '--state', 'h:hn', '--key', priv);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /a GGUF model is measured through llama\.cpp on a text \(--eval TEXT\)/);
    r = await ndiff('release', 'add', '--release', site, '--model', v2, '--method', 'topk', '--budget', '10', '--key', priv);
    assert.equal(r.code, 6, r.err);
    assert.match(r.err, /cannot hold an on-grid GGUF payload/);
    r = await ndiff('release', 'add', '--release', site, '--model', v2, '--method', 'sparse', '--budget', '5%', '--train', join(work, 'r2'), '--eval', join(work, 'r2'), '--plan');
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /found method sparse/);
    r = await ndiff('release', 'add', '--release', site, '--model', await file('r3', 'model.safetensors', new Uint8Array(16)), '--key', priv);
    assert.notEqual(r.code, 0);
    assert.match(r.err, /holds \.gguf models, and .* is a \.safetensors file/);
    assert.equal(await snapshot(), before, 'release.json, manifest.json and blobs/ as they were');
  });

  test('a version laid out differently gets no payload, and the add says devices have no update path', async () => {
    const site = join(work, 'site', 'layout');
    let r = await ndiff('release', 'add', '--release', site, '--model', await file('l1', 'model.gguf', ggufFixture('tiny-llama-q8_0.gguf')), '--model-id', 'l', '--key', priv);
    assert.equal(r.code, 0, r.err);
    r = await ndiff('release', 'add', '--release', site, '--model', await file('l2', 'model.gguf', ggufFixture('tiny-llama-q4_0.gguf')), '--key', priv);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err + r.out, /laid out differently .*no update path/);
    const m = await manifestOf(site);
    assert.equal(m.versions.length, 2);
    assert.equal(m.payloads.length, 0);
  });
});
